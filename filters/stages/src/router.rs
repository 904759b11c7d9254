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

use meshwasm_core::header_ops;
use meshwasm_core::router::{
    Decision, LocalResponse, ResponsePlan, Routed, RouterPlan, metric, mirror_headers,
};
use meshwasm_plugin::headers::{HeaderMapKind, HostRequest, apply_edits};
use meshwasm_plugin::host::request_body;
use meshwasm_plugin::reply::{LocalReply, send_local_reply};
use meshwasm_plugin::{Filter, Log, Metrics, Plugin, Setup};
use proxy_wasm::hostcalls;
use proxy_wasm::traits::{Context, HttpContext};
use proxy_wasm::types::{Action, LogLevel};
use std::rc::Rc;
use std::time::Duration;

/// How long a mirrored copy may take; Envoy's default route timeout.
const MIRROR_TIMEOUT: Duration = Duration::from_secs(15);

/// The router keeps nothing across configurations.
#[derive(Default)]
pub struct Router;

/// The configuration in force.
pub struct Configured {
    plan: RouterPlan,
    metrics: Metrics,
    edits_responses: bool,
}

impl Filter for Router {
    const NAME: &'static str = "meshwasm router";
    type Plan = RouterPlan;
    type Config = Configured;
    type Stream = RouterStream;

    fn configure(_: &Plugin<Self>, plan: RouterPlan, setup: Setup<'_>) -> Configured {
        Configured {
            edits_responses: plan.edits_responses(),
            plan,
            metrics: setup.metrics,
        }
    }

    fn stream(plugin: &Rc<Plugin<Self>>, config: Rc<Configured>, context_id: u32) -> RouterStream {
        RouterStream {
            context_id,
            plugin: Rc::clone(plugin),
            config,
            response: None,
            mirror: None,
        }
    }
}

/// A request being copied to mirrors, waiting for the rest of its body.
struct PendingMirror {
    clusters: Vec<String>,
    headers: Vec<(String, String)>,
    body: Vec<u8>,
}

/// One request.
pub struct RouterStream {
    context_id: u32,
    plugin: Rc<Plugin<Router>>,
    config: Rc<Configured>,
    response: Option<ResponsePlan>,
    mirror: Option<PendingMirror>,
}

impl RouterStream {
    fn log(&self) -> Log {
        self.plugin.log()
    }

    fn answer(&self, reply: LocalResponse<'_>) -> Action {
        self.config.metrics.add(reply.kind.metric(), 1);
        let headers = reply.headers.iter().map(|(n, v)| (*n, v.as_ref()));
        let local = LocalReply {
            status: reply.status,
            details: reply.kind.details(),
            body: reply.body,
            grpc_status: None,
        };
        if let Err(status) = send_local_reply(local, headers) {
            self.log().line(
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
        config: &Configured,
        routed: Routed<'_>,
        req: &mut HostRequest,
        end: bool,
    ) {
        if let Some(metric) = config.plan.routed_metric(&routed) {
            config.metrics.add(metric, 1);
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
            self.log()
                .line(LogLevel::Error, &format!("request headers: {e}"));
        }
        if config.edits_responses {
            self.response = Some(routed.response);
        }
        if end {
            self.send_mirrors();
        }
    }

    /// Sends the copies from the root context, which outlives the request.
    fn send_mirrors(&mut self) {
        let Some(mirror) = self.mirror.take() else {
            return;
        };
        let metrics = &self.config.metrics;
        let headers: Vec<(&str, &str)> = mirror
            .headers
            .iter()
            .map(|(n, v)| (n.as_str(), v.as_str()))
            .collect();
        let body = (!mirror.body.is_empty()).then_some(mirror.body.as_slice());
        if hostcalls::set_effective_context(self.plugin.root_context_id()).is_err() {
            metrics.add(metric::MIRRORS_FAILED, 1);
            return;
        }
        for cluster in &mirror.clusters {
            match hostcalls::dispatch_http_call(
                cluster,
                headers.clone(),
                body,
                Vec::new(),
                MIRROR_TIMEOUT,
            ) {
                Ok(_) => metrics.add(metric::MIRRORS_SENT, 1),
                Err(status) => {
                    metrics.add(metric::MIRRORS_FAILED, 1);
                    self.log().line(
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

impl Context for RouterStream {}

impl RouterStream {
    /// Routes the request seen through `req`: `Pause` when it was
    /// answered locally (a redirect, a direct response, a preflight).
    pub fn request_headers(&mut self, req: &mut HostRequest, end_of_stream: bool) -> Action {
        let config = Rc::clone(&self.config);
        let decision = config.plan.decide(req, &mut self.plugin.rng());
        match decision {
            Decision::Pass(edits) => {
                config.metrics.add(metric::UNMATCHED, 1);
                if let Err(e) = apply_edits(HeaderMapKind::HttpRequestHeaders, edits) {
                    self.log()
                        .line(LogLevel::Error, &format!("request headers: {e}"));
                }
                Action::Continue
            }
            Decision::Respond(reply) => self.answer(reply),
            Decision::Forward(routed) => {
                self.forward(&config, routed, req, end_of_stream);
                Action::Continue
            }
        }
    }
}

impl HttpContext for RouterStream {
    fn on_http_request_headers(&mut self, _num_headers: usize, end_of_stream: bool) -> Action {
        let mut req = HostRequest::new(self.log());
        self.request_headers(&mut req, end_of_stream)
    }

    fn on_http_request_body(&mut self, body_size: usize, end_of_stream: bool) -> Action {
        let Some(buffered) = self.mirror.as_ref().map(|m| m.body.len()) else {
            return Action::Continue;
        };
        let limit = self.config.plan.max_mirror_body_bytes();
        let total = buffered.saturating_add(body_size);
        if u64::try_from(total).unwrap_or(u64::MAX) > limit {
            // Envoy mirrors bodies of any size; a filter must hold the copy
            // in memory, so past the limit the copy is not sent at all.
            self.config.metrics.add(metric::MIRRORS_SKIPPED, 1);
            self.log().line(
                LogLevel::Debug,
                &format!("request body over {limit} bytes; not mirrored"),
            );
            self.mirror = None;
            return Action::Continue;
        }
        if body_size > 0 {
            match (request_body(body_size), self.mirror.as_mut()) {
                (Ok(chunk), Some(mirror)) => mirror.body.extend_from_slice(&chunk),
                _ => self.log().line(
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
        let Some(plan) = self.response.take() else {
            return Action::Continue;
        };
        let edits = self.config.plan.response_edits(&plan);
        if let Err(e) = apply_edits(HeaderMapKind::HttpResponseHeaders, edits) {
            self.log()
                .line(LogLevel::Error, &format!("response headers: {e}"));
        }
        Action::Continue
    }
}
