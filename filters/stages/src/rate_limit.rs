//! meshwasm rate-limit filter: Envoy's `local_ratelimit` and `ratelimit`
//! as a Proxy-Wasm filter, configured with the same documents.
//!
//! For each request the filter asks `meshwasm_core::rate_limit::RateLimitPlan`
//! which buckets to draw on and draws them in Proxy-Wasm shared data, so
//! that every worker thread of Envoy draws on the same buckets; then it
//! denies (a local reply as Envoy's), forwards with the configured request
//! headers, or forwards, and adds the `x-ratelimit-*` headers to the
//! response. With `localRateLimitPerDownstreamConnection` the buckets are
//! the connection's and stay in the worker's VM.
//!
//! With a global `RateLimit` config (or `{"local": ..., "global": ...}`),
//! a request the local buckets admitted is then held while the filter asks
//! the rate limit service (`ShouldRateLimit`, through Envoy's gRPC client
//! to the configured cluster), and the answer is carried out as Envoy's
//! `ratelimit` filter does.
//!
//! Metrics: `<statPrefix>.http_local_rate_limit.{enabled,ok,rate_limited,enforced,shadow_mode}`
//! and `cluster.<cluster>.ratelimit.{ok,over_limit,error,failure_mode_allowed}`,
//! as Envoy names its own (shown under `wasmcustom.`).

use meshwasm_core::header_ops::HeaderOp;
use meshwasm_core::properties::attributes;
use meshwasm_core::rate_limit::global::Answer;
use meshwasm_core::rate_limit::rls;
use meshwasm_core::rate_limit::{DENIED_BODY, DENIED_DETAILS, RateHeaders, RateLimitPlan, Verdict};
use meshwasm_core::request::RequestAttributes;
use meshwasm_core::shared_counter::{MemorySharedData, fnv1a64};
use meshwasm_plugin::headers::{HeaderMapKind, HostRequest, apply_edits};
use meshwasm_plugin::host::{
    HostProperties, HostSharedData, NamedCounters, grpc_response_body, now_nanos,
};
use meshwasm_plugin::reply::{LocalReply, send_local_reply};
use meshwasm_plugin::{Filter, Log, Metrics, Plugin, Setup};
use proxy_wasm::hostcalls;
use proxy_wasm::traits::{Context, HttpContext};
use proxy_wasm::types::{Action, LogLevel};
use std::borrow::Cow;
use std::cell::Cell;
use std::rc::Rc;

/// Per-connection bucket keys kept before they are all dropped; a dropped
/// bucket starts full again, which only ever favours its own connection.
const MAX_CONNECTION_BUCKETS: usize = 65_536;

/// The filter's state for the whole VM.
#[derive(Default)]
pub struct RateLimit {
    /// Buckets of `localRateLimitPerDownstreamConnection`: a connection
    /// lives on one worker, so they need not be shared.
    connection_buckets: MemorySharedData,
    /// Whether a shared-data failure was logged already.
    store_warned: Cell<bool>,
    /// The global part's stats, named after each request's cluster.
    global_stats: NamedCounters,
}

/// The configuration in force.
pub struct Configured {
    plan: RateLimitPlan,
    /// The shared-data key prefix of this configuration's buckets.
    scope: String,
    metrics: Metrics,
}

impl Filter for RateLimit {
    const NAME: &'static str = "meshwasm rate-limit";
    type Plan = RateLimitPlan;
    type Config = Configured;
    type Stream = RateLimitStream;

    fn configure(plugin: &Plugin<Self>, plan: RateLimitPlan, setup: Setup<'_>) -> Configured {
        // Keyed by root id and configuration: a new configuration starts
        // with full buckets rather than inherit ones of another shape.
        let root_id = attributes::PLUGIN_ROOT_ID
            .read(&mut HostProperties)
            .unwrap_or_default();
        let scope = format!("meshwasm.ratelimit.{root_id}.{:016x}", fnv1a64(setup.raw));
        if !plan.per_connection()
            && let Err(e) = plan.prepare(&HostSharedData, &scope)
        {
            plugin.log().line(
                LogLevel::Warn,
                &format!("creating the buckets in shared data: {e}"),
            );
        }
        Configured {
            plan,
            scope,
            metrics: setup.metrics,
        }
    }

    fn stream(
        plugin: &Rc<Plugin<Self>>,
        config: Rc<Configured>,
        _context_id: u32,
    ) -> RateLimitStream {
        RateLimitStream {
            plugin: Rc::clone(plugin),
            config,
            rate_headers: None,
            response_headers: Vec::new(),
            pending: None,
        }
    }
}

/// One request.
pub struct RateLimitStream {
    plugin: Rc<Plugin<RateLimit>>,
    config: Rc<Configured>,
    /// The local buckets' `x-ratelimit-*` values for the response.
    rate_headers: Option<RateHeaders>,
    /// What the rate limit service asked to add to the response.
    response_headers: Vec<(String, String)>,
    /// The call to the rate limit service the request waits for, and the
    /// cluster its stats are named after.
    pending: Option<(u32, String)>,
}

impl RateLimitStream {
    /// Draws on the local buckets; `Some` when the request is answered.
    fn draw_local(&mut self, req: &mut HostRequest) -> Option<Action> {
        let log = self.plugin.log();
        let config = Rc::clone(&self.config);
        let now = now_nanos();
        let decision = if config.plan.per_connection() {
            let buckets = &self.plugin.connection_buckets;
            if buckets.len() > MAX_CONNECTION_BUCKETS {
                buckets.clear();
            }
            let connection = attributes::CONNECTION_ID
                .read(&mut HostProperties)
                .unwrap_or_default();
            let scope = format!("{}.c{connection}", config.scope);
            config
                .plan
                .decide(req, buckets, &scope, now, &mut self.plugin.rng())
        } else {
            let rng = &mut self.plugin.rng();
            config
                .plan
                .decide(req, &HostSharedData, &config.scope, now, rng)
        };
        for metric in RateLimitPlan::counted(decision.verdict) {
            config.metrics.add(*metric, 1);
        }
        if let Some(e) = decision.store_error
            && !self.plugin.store_warned.replace(true)
        {
            log.line(
                LogLevel::Warn,
                &format!("a bucket in shared data failed ({e}); such requests are let through"),
            );
        }
        match decision.verdict {
            Verdict::Denied => {
                deny(log, &config.plan, decision.rate_headers);
                Some(Action::Pause)
            }
            verdict => {
                if verdict == Verdict::NotEnforced
                    && let Err(e) =
                        apply_edits(HeaderMapKind::HttpRequestHeaders, decision.request_edits)
                {
                    log.line(LogLevel::Warn, &e);
                }
                self.rate_headers = decision.rate_headers;
                None
            }
        }
    }

    /// Asks the rate limit service about the request, if the global part
    /// wants to: `Pause` until it answers.
    fn ask_service(&mut self, req: &mut HostRequest) -> Action {
        let config = Rc::clone(&self.config);
        let Some(global) = config.plan.global() else {
            return Action::Continue;
        };
        let Some(call) = global.call(req, &mut self.plugin.rng()) else {
            return Action::Continue;
        };
        let cluster = req.route_cluster().map(Cow::into_owned).unwrap_or_default();
        let metadata = call
            .metadata
            .iter()
            .map(|(k, v)| (k.as_str(), v.as_bytes()))
            .collect();
        match self.dispatch_grpc_call(
            call.service,
            rls::SERVICE,
            rls::METHOD,
            metadata,
            Some(&call.message),
            call.timeout,
        ) {
            Ok(token) => {
                self.pending = Some((token, cluster));
                Action::Pause
            }
            Err(status) => {
                self.plugin.log().line(
                    LogLevel::Warn,
                    &format!(
                        "calling the rate limit service in cluster {}: {status:?}",
                        global.cluster()
                    ),
                );
                self.carry_out(&cluster, None)
            }
        }
    }

    /// Carries out the service's answer (`None`: the call failed).
    fn carry_out(&mut self, cluster: &str, response: Option<rls::Response>) -> Action {
        let config = Rc::clone(&self.config);
        let Some(global) = config.plan.global() else {
            return Action::Continue;
        };
        let (answer, stats) = global.answer(response, &mut self.plugin.rng());
        for stat in stats {
            self.plugin
                .global_stats
                .add(&global.stat_name(cluster, *stat), 1);
        }
        let log = self.plugin.log();
        match answer {
            Answer::Allow {
                request_headers,
                response_headers,
            } => {
                let edits = request_headers
                    .iter()
                    .map(|(n, v)| HeaderOp::Set(n, Cow::Borrowed(v.as_str())));
                if let Err(e) = apply_edits(HeaderMapKind::HttpRequestHeaders, edits) {
                    log.line(LogLevel::Warn, &e);
                }
                self.response_headers = response_headers;
                Action::Continue
            }
            Answer::Deny {
                status,
                details,
                body,
                headers,
                grpc_status,
            } => {
                let reply = LocalReply {
                    status,
                    details,
                    body: &body,
                    grpc_status: Some(grpc_status),
                };
                let headers = headers.iter().map(|(n, v)| (n.as_str(), v.as_str()));
                if let Err(status) = send_local_reply(reply, headers) {
                    log.line(
                        LogLevel::Error,
                        &format!("local response for a rate-limited request failed: {status:?}"),
                    );
                }
                Action::Pause
            }
        }
    }
}

impl Context for RateLimitStream {
    fn on_grpc_call_response(&mut self, token_id: u32, status_code: u32, response_size: usize) {
        if self.service_answered(token_id, status_code, response_size) == Some(Action::Continue) {
            let _ = hostcalls::resume_http_request();
        }
    }
}

impl RateLimitStream {
    /// Draws on the local buckets, then asks the rate limit service if the
    /// global part wants to: `Pause` when the request was answered or
    /// waits for the service (see [`is_waiting`](Self::is_waiting)).
    pub fn request_headers(&mut self, req: &mut HostRequest) -> Action {
        if let Some(answered) = self.draw_local(req) {
            return answered;
        }
        self.ask_service(req)
    }

    /// Whether the request waits for the rate limit service's answer.
    pub fn is_waiting(&self) -> bool {
        self.pending.is_some()
    }

    /// Carries out the service's answer to call `token_id`: `Continue`
    /// when the request may go on (the caller resumes it), `Pause` when it
    /// was answered; `None` when the call is not this stream's.
    pub fn service_answered(
        &mut self,
        token_id: u32,
        status_code: u32,
        response_size: usize,
    ) -> Option<Action> {
        let (_, cluster) = self.pending.take_if(|(token, _)| *token == token_id)?;
        let log = self.plugin.log();
        let response = if status_code == 0 {
            match grpc_response_body(response_size).map(|b| rls::decode_response(&b)) {
                Ok(Ok(response)) => Some(response),
                Ok(Err(e)) => {
                    log.line(LogLevel::Warn, &format!("rate limit service: {e}"));
                    None
                }
                Err(status) => {
                    log.line(
                        LogLevel::Warn,
                        &format!("reading the rate limit service's answer: {status:?}"),
                    );
                    None
                }
            }
        } else {
            log.line(
                LogLevel::Debug,
                &format!("the rate limit service call ended with gRPC status {status_code}"),
            );
            None
        };
        Some(self.carry_out(&cluster, response))
    }
}

impl HttpContext for RateLimitStream {
    fn on_http_request_headers(&mut self, _num_headers: usize, _end_of_stream: bool) -> Action {
        // One request view for both parts: the header map is read once.
        self.request_headers(&mut HostRequest::new(self.plugin.log()))
    }

    fn on_http_response_headers(&mut self, _num_headers: usize, _end_of_stream: bool) -> Action {
        let local = self.rate_headers.take().map(|h| h.pairs());
        let global = std::mem::take(&mut self.response_headers);
        let headers = local
            .iter()
            .flatten()
            .map(|(n, v)| (*n, v.as_str()))
            .chain(global.iter().map(|(n, v)| (n.as_str(), v.as_str())));
        for (name, value) in headers {
            let _ = hostcalls::set_map_value_bytes(
                HeaderMapKind::HttpResponseHeaders,
                name,
                Some(value.as_bytes()),
            );
        }
        Action::Continue
    }
}

/// Answers as Envoy's local rate limit filter does: the configured status,
/// body `local_rate_limited`, the configured headers and the rate headers.
fn deny(log: Log, plan: &RateLimitPlan, rate_headers: Option<RateHeaders>) {
    let denial = plan.denial();
    let rate = rate_headers.map(|h| h.pairs());
    let headers = denial
        .headers
        .iter()
        .map(|(n, v)| (n.as_str(), v.as_str()))
        .chain(rate.iter().flatten().map(|(n, v)| (*n, v.as_str())));
    let reply = LocalReply {
        status: denial.status,
        details: DENIED_DETAILS,
        body: DENIED_BODY.as_bytes(),
        grpc_status: Some(denial.grpc_status),
    };
    if let Err(status) = send_local_reply(reply, headers) {
        log.line(
            LogLevel::Error,
            &format!("local response for a rate-limited request failed: {status:?}"),
        );
    }
}
