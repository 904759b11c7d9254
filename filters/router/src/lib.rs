//! meshwasm router filter: Istio VirtualService HTTP routing as a
//! Proxy-Wasm filter.
//!
//! The configuration is a VirtualService spec. For each request the filter
//! asks `meshwasm_core::router::RouterPlan` what to do, then does it:
//! - forward: set the cluster and subset headers that Envoy's
//!   `cluster_header` route (or Istio's companion VirtualService) reads,
//!   plus rewrites, header edits and the router's timeout/retry headers;
//!   Envoy clears the route cache when a filter changes request headers;
//! - answer locally: redirects, direct responses, CORS preflights;
//! - mirror: copy the request (with its body, up to a limit) to the mirror
//!   cluster through an HTTP callout owned by the root context, so that
//!   neither its latency nor its failure touches the request, and it is not
//!   cancelled when the request ends first;
//! - edit the response headers, for routes that ask.
//!
//! Metrics (Envoy shows them as `wasmcustom.*`):
//! `meshwasm.router.routed.<cluster>` per destination,
//! `meshwasm.router.{unmatched,redirects,direct_responses,cors_preflights}`,
//! `meshwasm.router.{mirrors_sent,mirrors_failed,mirrors_skipped}`.

use meshwasm_abi::{
    HeaderMapKind, HostRequest, LocalReply, Log, Metric, apply_edits, entropy_seed,
    send_local_reply,
};
use meshwasm_core::header_ops;
use meshwasm_core::percent::Rng;
use meshwasm_core::router::{
    Decision, LocalKind, LocalResponse, ResponsePlan, RouteAction, Routed, RouterPlan,
    mirror_headers,
};
use proxy_wasm::hostcalls;
use proxy_wasm::traits::{Context, HttpContext, RootContext};
use proxy_wasm::types::{Action, ContextType, LogLevel};
use std::cell::RefCell;
use std::rc::Rc;
use std::time::Duration;

proxy_wasm::main! {{
    proxy_wasm::set_root_context(|context_id| Box::new(RouterRoot::new(context_id)));
}}

const LOG: Log = Log("meshwasm router");

/// How long a mirrored copy may take; Envoy's default route timeout.
const MIRROR_TIMEOUT: Duration = Duration::from_secs(15);

/// Metrics, defined once per configuration.
struct Metrics {
    /// Per VirtualService, per route, per destination.
    routed: Vec<Vec<Vec<Metric>>>,
    unmatched: Metric,
    redirects: Metric,
    direct_responses: Metric,
    cors_preflights: Metric,
    mirrors_sent: Metric,
    mirrors_failed: Metric,
    mirrors_skipped: Metric,
}

impl Metrics {
    fn define(plan: &RouterPlan) -> Metrics {
        let routed = plan
            .services()
            .map(|routes| {
                routes
                    .iter()
                    .map(|route| match &route.value {
                        RouteAction::Forward(f) => f
                            .destinations()
                            .iter()
                            .map(|d| {
                                Metric::counter(&format!("meshwasm.router.routed.{}", d.cluster))
                            })
                            .collect(),
                        _ => Vec::new(),
                    })
                    .collect()
            })
            .collect();
        let counter = |name: &str| Metric::counter(&format!("meshwasm.router.{name}"));
        Metrics {
            routed,
            unmatched: counter("unmatched"),
            redirects: counter("redirects"),
            direct_responses: counter("direct_responses"),
            cors_preflights: counter("cors_preflights"),
            mirrors_sent: counter("mirrors_sent"),
            mirrors_failed: counter("mirrors_failed"),
            mirrors_skipped: counter("mirrors_skipped"),
        }
    }

    fn local(&self, kind: LocalKind) -> Metric {
        match kind {
            LocalKind::Redirect | LocalKind::HttpsRedirect => self.redirects,
            LocalKind::DirectResponse => self.direct_responses,
            LocalKind::CorsPreflight => self.cors_preflights,
        }
    }
}

/// The configuration in force; streams hold it for their lifetime, so a
/// new configuration never changes a request half-way.
struct Config {
    plan: RouterPlan,
    metrics: Metrics,
    edits_responses: bool,
}

struct Shared {
    root_context_id: u32,
    config: RefCell<Option<Rc<Config>>>,
    rng: RefCell<Rng>,
}

struct RouterRoot {
    shared: Rc<Shared>,
}

impl RouterRoot {
    fn new(root_context_id: u32) -> Self {
        RouterRoot {
            shared: Rc::new(Shared {
                root_context_id,
                config: RefCell::new(None),
                rng: RefCell::new(Rng::with_seed(0)),
            }),
        }
    }
}

impl Context for RouterRoot {}

impl RootContext for RouterRoot {
    fn on_vm_start(&mut self, _vm_configuration_size: usize) -> bool {
        *self.shared.rng.borrow_mut() = Rng::with_seed(entropy_seed(LOG));
        true
    }

    fn on_configure(&mut self, _plugin_configuration_size: usize) -> bool {
        let config = self.get_plugin_configuration().unwrap_or_default();
        let plan = match RouterPlan::from_json(&config) {
            Ok(plan) => plan,
            Err(e) => {
                LOG.line(LogLevel::Error, &format!("invalid configuration: {e}"));
                return false;
            }
        };
        for note in plan.notes() {
            LOG.line(LogLevel::Warn, &note.to_string());
        }
        LOG.line(LogLevel::Info, &format!("configured: {}", plan.summary()));
        *self.shared.config.borrow_mut() = Some(Rc::new(Config {
            metrics: Metrics::define(&plan),
            edits_responses: plan.edits_responses(),
            plan,
        }));
        true
    }

    fn create_http_context(&self, context_id: u32) -> Option<Box<dyn HttpContext>> {
        Some(Box::new(RouterStream {
            context_id,
            shared: Rc::clone(&self.shared),
            config: None,
            response: None,
            mirror: None,
        }))
    }

    fn get_type(&self) -> Option<ContextType> {
        Some(ContextType::HttpContext)
    }
}

/// A request being copied to mirrors, waiting for the rest of its body.
struct PendingMirror {
    clusters: Vec<String>,
    headers: Vec<(String, String)>,
    body: Vec<u8>,
}

struct RouterStream {
    context_id: u32,
    shared: Rc<Shared>,
    config: Option<Rc<Config>>,
    response: Option<ResponsePlan>,
    mirror: Option<PendingMirror>,
}

impl RouterStream {
    fn answer(&self, config: &Config, reply: LocalResponse<'_>) -> Action {
        config.metrics.local(reply.kind).add(1);
        let headers = reply.headers.iter().map(|(n, v)| (*n, v.as_ref()));
        let local = LocalReply {
            status: reply.status,
            details: reply.kind.details(),
            body: reply.body,
            grpc_status: None,
        };
        if let Err(status) = send_local_reply(local, headers) {
            LOG.line(
                LogLevel::Error,
                &format!(
                    "local response ({}) failed: {status:?}",
                    reply.kind.details()
                ),
            );
            return Action::Continue;
        }
        Action::Pause
    }

    fn forward(
        &mut self,
        config: &Config,
        routed: Routed<'_>,
        req: &mut HostRequest,
        end_of_stream: bool,
    ) {
        if let Some(metric) = config
            .metrics
            .routed
            .get(routed.service)
            .and_then(|s| s.get(routed.route))
            .and_then(|r| r.get(routed.destination))
        {
            metric.add(1);
        }
        if !routed.mirrors.is_empty() {
            // The copy carries the request as forwarded: after the edits.
            let mut headers: Vec<(String, String)> = req
                .headers()
                .iter()
                .map(|(n, v)| {
                    (
                        String::from_utf8_lossy(n).into_owned(),
                        String::from_utf8_lossy(v).into_owned(),
                    )
                })
                .collect();
            header_ops::apply(&mut headers, routed.request_edits.iter().cloned());
            self.mirror = Some(PendingMirror {
                clusters: routed.mirrors.iter().map(|c| (*c).to_owned()).collect(),
                headers: mirror_headers(headers),
                body: Vec::new(),
            });
        }
        if let Err(e) = apply_edits(HeaderMapKind::HttpRequestHeaders, routed.request_edits) {
            LOG.line(LogLevel::Error, &format!("request headers: {e}"));
        }
        if config.edits_responses {
            self.response = Some(routed.response);
        }
        if end_of_stream {
            self.send_mirrors();
        }
    }

    /// Sends the copies from the root context, which outlives the request.
    fn send_mirrors(&mut self) {
        let Some(mirror) = self.mirror.take() else {
            return;
        };
        let Some(config) = self.config.clone() else {
            return;
        };
        let headers: Vec<(&str, &str)> = mirror
            .headers
            .iter()
            .map(|(n, v)| (n.as_str(), v.as_str()))
            .collect();
        let body = (!mirror.body.is_empty()).then_some(mirror.body.as_slice());
        if hostcalls::set_effective_context(self.shared.root_context_id).is_err() {
            config.metrics.mirrors_failed.add(1);
            return;
        }
        for cluster in &mirror.clusters {
            match self.dispatch_http_call(
                cluster,
                headers.clone(),
                body,
                Vec::new(),
                MIRROR_TIMEOUT,
            ) {
                Ok(_) => config.metrics.mirrors_sent.add(1),
                Err(status) => {
                    config.metrics.mirrors_failed.add(1);
                    LOG.line(
                        LogLevel::Warn,
                        &format!(
                            "mirror to {cluster} refused: {status:?} (is the cluster defined?)"
                        ),
                    );
                }
            }
        }
        let _ = hostcalls::set_effective_context(self.context_id);
    }
}

impl Context for RouterStream {
    // A mirror's answer is not the client's business.
    fn on_http_call_response(&mut self, _: u32, _: usize, _: usize, _: usize) {}
}

impl HttpContext for RouterStream {
    fn on_http_request_headers(&mut self, _num_headers: usize, end_of_stream: bool) -> Action {
        let Some(config) = self.shared.config.borrow().clone() else {
            return Action::Continue;
        };
        let mut req = HostRequest::new(LOG);
        let decision = config
            .plan
            .decide(&mut req, &mut self.shared.rng.borrow_mut());
        match decision {
            Decision::Pass(edits) => {
                config.metrics.unmatched.add(1);
                if let Err(e) = apply_edits(HeaderMapKind::HttpRequestHeaders, edits) {
                    LOG.line(LogLevel::Error, &format!("request headers: {e}"));
                }
                Action::Continue
            }
            Decision::Respond(reply) => self.answer(&config, reply),
            Decision::Forward(routed) => {
                self.config = Some(Rc::clone(&config));
                self.forward(&config, routed, &mut req, end_of_stream);
                Action::Continue
            }
        }
    }

    fn on_http_request_body(&mut self, body_size: usize, end_of_stream: bool) -> Action {
        let Some(buffered) = self.mirror.as_ref().map(|m| m.body.len()) else {
            return Action::Continue;
        };
        let limit = self
            .config
            .as_ref()
            .map_or(0, |c| c.plan.max_mirror_body_bytes());
        let total = buffered.saturating_add(body_size);
        if u64::try_from(total).unwrap_or(u64::MAX) > limit {
            // Envoy mirrors bodies of any size; a filter must hold the copy
            // in memory, so past the limit the copy is not sent at all.
            if let Some(config) = &self.config {
                config.metrics.mirrors_skipped.add(1);
            }
            LOG.line(
                LogLevel::Debug,
                &format!("request body over {limit} bytes; not mirrored"),
            );
            self.mirror = None;
            return Action::Continue;
        }
        if body_size > 0 {
            let chunk = self.get_http_request_body(0, body_size);
            match (chunk, self.mirror.as_mut()) {
                (Some(chunk), Some(mirror)) => mirror.body.extend_from_slice(&chunk),
                _ => LOG.line(
                    LogLevel::Warn,
                    "request body chunk unreadable; mirror sent without it",
                ),
            }
        }
        if end_of_stream {
            self.send_mirrors();
        }
        Action::Continue
    }

    fn on_http_request_trailers(&mut self, _num_trailers: usize) -> Action {
        self.send_mirrors();
        Action::Continue
    }

    fn on_http_response_headers(&mut self, _num_headers: usize, _end_of_stream: bool) -> Action {
        let (Some(plan), Some(config)) = (self.response.take(), self.config.as_ref()) else {
            return Action::Continue;
        };
        let edits = config.plan.response_edits(&plan);
        if let Err(e) = apply_edits(HeaderMapKind::HttpResponseHeaders, edits) {
            LOG.line(LogLevel::Error, &format!("response headers: {e}"));
        }
        Action::Continue
    }
}
