//! meshwasm mesh module: every meshwasm behaviour in one Proxy-Wasm VM and
//! one stream context, so that a sidecar pays a Wasm filter's fixed cost,
//! its memory and its start-up once rather than once per behaviour.
//!
//! The configuration is one document holding each filter's own
//! (`meshwasm_core::mesh`): `virtualServices`, `authorization`,
//! `rateLimit`, `telemetry`. A part that is absent does not run, and the
//! fault part runs only when a route injects a fault.
//!
//! A request passes the parts in Istio's filter order:
//! 1. telemetry takes the peer's metadata and adds trace headers, first,
//!    as Istio's metadata exchange does, so that a request another part
//!    answers is still reported;
//! 2. access rules (header-match), then rate limits, then the fault, then
//!    routing. A part that answers the request ends it there; one that
//!    waits for a call (the external authorizer, the rate limit service)
//!    holds it, and the parts after it run when the answer comes. A
//!    delayed request is routed before it waits, since Envoy resolves the
//!    route before its fault filter runs;
//! 3. on the response, routing's, the rate limit's and the access rules'
//!    header edits, then telemetry reads the response as it leaves;
//!    telemetry reports the request in `on_log`.
//!
//! The parts share one view of the request (`HostRequest`): the header
//! map is read once, and again only after a part edited it. Each part is
//! its filter's stage from `meshwasm-stages`, with its own metrics, log
//! name and VM state, exactly as the filter alone runs it.

use meshwasm_core::mesh::MeshPlan;
use meshwasm_plugin::headers::HostRequest;
use meshwasm_plugin::{Filter, Log, Metrics, Plugin, Setup};
use meshwasm_stages::fault::{Fault, FaultStream};
use meshwasm_stages::header_match::{HeaderMatch, HeaderMatchStream};
use meshwasm_stages::rate_limit::{RateLimit, RateLimitStream};
use meshwasm_stages::router::{Router, RouterStream};
use meshwasm_stages::telemetry::{Telemetry, TelemetryStream};
use proxy_wasm::hostcalls;
use proxy_wasm::traits::{Context, HttpContext};
use proxy_wasm::types::Action;
use std::cell::OnceCell;
use std::rc::Rc;

meshwasm_plugin::main!(Mesh);

/// The module's state for the whole VM: each part's filter, made at the
/// first configuration (they need the root's id) and kept across the
/// next ones, so that delayed requests and buckets outlive a change.
#[derive(Default)]
pub struct Mesh {
    parts: OnceCell<Parts>,
}

/// Each behaviour's filter, run as a part of the mesh.
struct Parts {
    access: Rc<Plugin<HeaderMatch>>,
    rate_limit: Rc<Plugin<RateLimit>>,
    fault: Rc<Plugin<Fault>>,
    routing: Rc<Plugin<Router>>,
    telemetry: Rc<Plugin<Telemetry>>,
}

/// A configuration is in force: each part holds its own (or none, where
/// it does not run), installed together by [`Mesh::configure`].
pub struct Configured;

/// Configures one part from its plan, if it has one, as the plugin root
/// configures a filter alone, and puts it in force for the part's streams
/// and its own callbacks (its tick, its root's calls).
fn configure<F: Filter>(part: &Rc<Plugin<F>>, plan: Option<F::Plan>, raw: &[u8]) {
    use meshwasm_core::plan::Plan as _;
    let config = plan.map(|plan| {
        let metrics = Metrics::define(plan.metrics());
        Rc::new(F::configure(part, plan, Setup { raw, metrics }))
    });
    part.install(config);
}

/// A part's stream for a new request, under the part's configuration in
/// force, if the part runs.
fn stream<F: Filter>(part: &Rc<Plugin<F>>, context_id: u32) -> Option<F::Stream> {
    part.config()
        .map(|config| F::stream(part, config, context_id))
}

impl Mesh {
    fn parts(&self, plugin: &Plugin<Self>) -> &Parts {
        self.parts.get_or_init(|| {
            let root = plugin.root_context_id();
            let mut rng = plugin.rng();
            Parts {
                access: Plugin::part(root, rng.bits()),
                rate_limit: Plugin::part(root, rng.bits()),
                fault: Plugin::part(root, rng.bits()),
                routing: Plugin::part(root, rng.bits()),
                telemetry: Plugin::part(root, rng.bits()),
            }
        })
    }
}

impl Filter for Mesh {
    const NAME: &'static str = "meshwasm mesh";
    type Plan = MeshPlan;
    type Config = Configured;
    type Stream = MeshStream;

    fn configure(plugin: &Plugin<Self>, plan: MeshPlan, setup: Setup<'_>) -> Configured {
        let parts = plugin.parts(plugin);
        let raw = setup.raw;
        // The buckets and the active-fault count are keyed by the text of
        // their own part: a change elsewhere in the document keeps them.
        let text = |span: &Option<std::ops::Range<usize>>| {
            span.clone().and_then(|s| raw.get(s)).unwrap_or(raw)
        };
        let limits = text(&plan.spans.rate_limit);
        let services = text(&plan.spans.virtual_services);
        configure(&parts.access, plan.access, raw);
        configure(&parts.rate_limit, plan.rate_limit, limits);
        configure(&parts.fault, plan.fault, services);
        configure(&parts.routing, plan.routing, services);
        configure(&parts.telemetry, plan.telemetry, raw);
        Configured
    }

    fn stream(plugin: &Rc<Plugin<Self>>, _config: Rc<Configured>, context_id: u32) -> MeshStream {
        let parts = plugin.parts(plugin);
        MeshStream {
            log: plugin.log(),
            access: stream(&parts.access, context_id),
            rate_limit: stream(&parts.rate_limit, context_id),
            fault: stream(&parts.fault, context_id),
            routing: stream(&parts.routing, context_id),
            telemetry: stream(&parts.telemetry, context_id),
            end_of_stream: false,
        }
    }

    fn on_tick(plugin: &Plugin<Self>) {
        // One root, one tick: each part that set one finds what is due.
        if let Some(parts) = plugin.parts.get() {
            Fault::on_tick(&parts.fault);
            Telemetry::on_tick(&parts.telemetry);
        }
    }

    fn on_root_http_call_response(
        plugin: &Plugin<Self>,
        token: u32,
        headers: usize,
        body_size: usize,
    ) {
        // The root's calls are telemetry's exports (and routing's mirrors,
        // whose answers nobody waits for).
        if let Some(parts) = plugin.parts.get() {
            Telemetry::on_root_http_call_response(&parts.telemetry, token, headers, body_size);
        }
    }
}

/// Where a request goes on from, after a part held it.
#[derive(Clone, Copy, PartialEq, Eq, PartialOrd, Ord)]
enum From {
    Access,
    RateLimit,
    Fault,
}

/// One request, through every part that runs.
pub struct MeshStream {
    log: Log,
    access: Option<HeaderMatchStream>,
    rate_limit: Option<RateLimitStream>,
    fault: Option<FaultStream>,
    routing: Option<RouterStream>,
    telemetry: Option<TelemetryStream>,
    /// The request headers ended the request (no body follows).
    end_of_stream: bool,
}

impl MeshStream {
    /// Runs the request parts from `from` on: `Pause` as soon as one
    /// answers, waits or delays the request.
    fn run(&mut self, from: From, req: &mut HostRequest) -> Action {
        if from <= From::Access
            && let Some(access) = &mut self.access
            && access.request_headers(req) == Action::Pause
        {
            return Action::Pause;
        }
        if from <= From::RateLimit
            && let Some(rate_limit) = &mut self.rate_limit
            && rate_limit.request_headers(req) == Action::Pause
        {
            return Action::Pause;
        }
        if let Some(fault) = &mut self.fault
            && fault.request_headers(req) == Action::Pause
        {
            if fault.is_delayed() {
                // The root's tick resumes (or aborts) it; it must be
                // routed by then.
                self.route(req);
            }
            return Action::Pause;
        }
        self.route(req)
    }

    fn route(&mut self, req: &mut HostRequest) -> Action {
        match &mut self.routing {
            Some(routing) => routing.request_headers(req, self.end_of_stream),
            None => Action::Continue,
        }
    }

    /// Goes on after a part's call was answered: resumes the request when
    /// every part after it lets it go.
    fn go_on(&mut self, answered: Option<Action>, from: From, req: &mut HostRequest) {
        if answered == Some(Action::Continue) && self.run(from, req) == Action::Continue {
            let _ = hostcalls::resume_http_request();
        }
    }
}

impl Context for MeshStream {
    fn on_http_call_response(&mut self, token: u32, headers: usize, body_size: usize, _: usize) {
        let mut req = HostRequest::new(self.log);
        let answered = self
            .access
            .as_mut()
            .and_then(|access| access.check_answered(token, headers, body_size, &mut req));
        self.go_on(answered, From::RateLimit, &mut req);
    }

    fn on_grpc_call_response(&mut self, token: u32, status_code: u32, response_size: usize) {
        let answered = self
            .rate_limit
            .as_mut()
            .and_then(|rate_limit| rate_limit.service_answered(token, status_code, response_size));
        self.go_on(answered, From::Fault, &mut HostRequest::new(self.log));
    }
}

impl HttpContext for MeshStream {
    fn on_http_request_headers(&mut self, _num_headers: usize, end_of_stream: bool) -> Action {
        self.end_of_stream = end_of_stream;
        let mut req = HostRequest::new(self.log);
        if let Some(telemetry) = &mut self.telemetry {
            telemetry.request_headers(&mut req);
        }
        self.run(From::Access, &mut req)
    }

    fn on_http_request_body(&mut self, body_size: usize, end_of_stream: bool) -> Action {
        if let Some(telemetry) = &mut self.telemetry {
            telemetry.on_http_request_body(body_size, end_of_stream);
        }
        // Routing buffers the body for its mirrors whatever the fault does.
        if let Some(routing) = &mut self.routing {
            routing.on_http_request_body(body_size, end_of_stream);
        }
        match &mut self.fault {
            Some(fault) => fault.on_http_request_body(body_size, end_of_stream),
            None => Action::Continue,
        }
    }

    fn on_http_request_trailers(&mut self, num_trailers: usize) -> Action {
        if let Some(routing) = &mut self.routing {
            routing.on_http_request_trailers(num_trailers);
        }
        match &mut self.fault {
            Some(fault) => fault.on_http_request_trailers(num_trailers),
            None => Action::Continue,
        }
    }

    fn on_http_response_headers(&mut self, num_headers: usize, end_of_stream: bool) -> Action {
        // Envoy runs encoders in the reverse of the decoders' order.
        if let Some(routing) = &mut self.routing {
            routing.on_http_response_headers(num_headers, end_of_stream);
        }
        if let Some(rate_limit) = &mut self.rate_limit {
            rate_limit.on_http_response_headers(num_headers, end_of_stream);
        }
        if let Some(access) = &mut self.access {
            access.on_http_response_headers(num_headers, end_of_stream);
        }
        if let Some(telemetry) = &mut self.telemetry {
            telemetry.on_http_response_headers(num_headers, end_of_stream);
        }
        Action::Continue
    }

    fn on_http_response_body(&mut self, body_size: usize, end_of_stream: bool) -> Action {
        if let Some(telemetry) = &mut self.telemetry {
            telemetry.on_http_response_body(body_size, end_of_stream);
        }
        Action::Continue
    }

    fn on_log(&mut self) {
        if let Some(telemetry) = &mut self.telemetry {
            telemetry.on_log();
        }
    }
}
