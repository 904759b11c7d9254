//! meshwasm rate-limit filter: Envoy's `local_ratelimit` as a Proxy-Wasm
//! filter, configured with the same `LocalRateLimit` document.
//!
//! For each request the filter asks `meshwasm_core::rate_limit::RateLimitPlan`
//! which buckets to draw on and draws them in Proxy-Wasm shared data, so
//! that every worker thread of Envoy draws on the same buckets; then it
//! denies (a local reply as Envoy's), forwards with the configured request
//! headers, or forwards, and adds the `x-ratelimit-*` headers to the
//! response. With `localRateLimitPerDownstreamConnection` the buckets are
//! the connection's and stay in the worker's VM.
//!
//! Metrics: `<statPrefix>.http_local_rate_limit.{enabled,ok,rate_limited,enforced,shadow_mode}`,
//! as Envoy names its own (shown under `wasmcustom.`).

use meshwasm_core::properties::attributes;
use meshwasm_core::rate_limit::{DENIED_BODY, DENIED_DETAILS, RateHeaders, RateLimitPlan, Verdict};
use meshwasm_core::shared_counter::{MemorySharedData, fnv1a64};
use meshwasm_plugin::headers::{HeaderMapKind, HostRequest, apply_edits};
use meshwasm_plugin::host::{HostProperties, HostSharedData, now_nanos};
use meshwasm_plugin::reply::{LocalReply, send_local_reply};
use meshwasm_plugin::{Filter, Log, Metrics, Plugin, Setup};
use proxy_wasm::hostcalls;
use proxy_wasm::traits::{Context, HttpContext};
use proxy_wasm::types::{Action, LogLevel};
use std::cell::Cell;
use std::rc::Rc;

meshwasm_plugin::main!(RateLimit);

/// Per-connection buckets kept before the oldest are dropped; a dropped
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
        }
    }
}

/// One request.
pub struct RateLimitStream {
    plugin: Rc<Plugin<RateLimit>>,
    config: Rc<Configured>,
    /// The `x-ratelimit-*` values for the response.
    rate_headers: Option<RateHeaders>,
}

impl Context for RateLimitStream {}

impl HttpContext for RateLimitStream {
    fn on_http_request_headers(&mut self, _num_headers: usize, _end_of_stream: bool) -> Action {
        let log = self.plugin.log();
        let config = Rc::clone(&self.config);
        let mut req = HostRequest::new(log);
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
                .decide(&mut req, buckets, &scope, now, &mut self.plugin.rng())
        } else {
            config.plan.decide(
                &mut req,
                &HostSharedData,
                &config.scope,
                now,
                &mut self.plugin.rng(),
            )
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
                Action::Pause
            }
            verdict => {
                if verdict == Verdict::NotEnforced
                    && let Err(e) =
                        apply_edits(HeaderMapKind::HttpRequestHeaders, decision.request_edits)
                {
                    log.line(LogLevel::Warn, &e);
                }
                self.rate_headers = decision.rate_headers;
                Action::Continue
            }
        }
    }

    fn on_http_response_headers(&mut self, _num_headers: usize, _end_of_stream: bool) -> Action {
        if let Some(headers) = self.rate_headers.take() {
            for (name, value) in headers.pairs() {
                let _ = hostcalls::set_map_value_bytes(
                    HeaderMapKind::HttpResponseHeaders,
                    name,
                    Some(value.as_bytes()),
                );
            }
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
