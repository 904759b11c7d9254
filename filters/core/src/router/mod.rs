//! VirtualService HTTP routing, decided per request.
//!
//! The router filter reads a request, asks [`RouterPlan::decide`], and
//! carries out the [`Decision`]: header edits that steer Envoy's router, a
//! local response, or nothing. The chosen destination reaches Envoy as two
//! request headers:
//! - the cluster (`x-meshwasm-cluster`), rendered from a template that
//!   defaults to Istio's cluster naming `outbound|{port}|{subset}|{host}`,
//!   for a route with `cluster_header: x-meshwasm-cluster`;
//! - the subset (`x-meshwasm-subset`), for an Istio companion
//!   VirtualService that matches on it.
//!
//! A client may not pick a cluster itself: when no route matches, both
//! headers are removed if the client sent them.
//!
//! Everything else follows Istio's route translation; see the submodules.

pub mod cors;
pub mod path;
pub mod split;
pub mod upstream;

use crate::config::Document;
use crate::error::{ConfigError, ConfigErrorKind, ConfigNote, FieldPath};
use crate::header_ops::{HeaderOp, HeaderOps, check_name};
use crate::metrics::{MetricRef, MetricSpec};
use crate::percent::{PerMillion, Rng, compile_percent};
use crate::plan::Plan;
use crate::request::RequestAttributes;
use crate::route_table::RouteTable;
use crate::string_match::StringMatcher;
use crate::virtual_service::{
    Destination, Headers, HttpDirectResponse, HttpRoute, RouterExtensions, VirtualService,
};
use cors::{Cors, CorsVerdict};
use path::{PathRewrite, Redirect, RequestUrl, shadow_authority};
use split::{Split, StickyKey};
use std::borrow::Cow;
use upstream::UpstreamHeaders;

/// The note on a route's `fault`, which the router filter leaves to the
/// fault filter.
pub const FAULT_NOTE: &str = "applied by the meshwasm fault filter, not the router";

/// Default request header naming the chosen cluster.
pub const DEFAULT_CLUSTER_HEADER: &str = "x-meshwasm-cluster";
/// Default request header naming the chosen subset.
pub const DEFAULT_SUBSET_HEADER: &str = "x-meshwasm-subset";
/// Default cluster name template: Istio's outbound cluster names.
pub const DEFAULT_CLUSTER_TEMPLATE: &str = "outbound|{port}|{subset}|{host}";
/// Largest request body copied to mirrors unless configured.
pub const DEFAULT_MAX_MIRROR_BODY_BYTES: u64 = 1 << 20;
/// Envoy's header recording the path before a rewrite.
pub const ORIGINAL_PATH_HEADER: &str = "x-envoy-original-path";

/// One destination of a route, with its cluster name rendered.
#[derive(Debug, Clone)]
pub struct RouteDestination {
    /// Cluster name for Envoy, from the template.
    pub cluster: String,
    /// The DestinationRule subset, if any.
    pub subset: Option<String>,
    request_ops: HeaderOps,
    response_ops: HeaderOps,
}

/// A mirror target and the share of requests it gets.
#[derive(Debug, Clone)]
pub struct Mirror {
    /// Cluster the copy is sent to.
    pub cluster: String,
    /// Share of requests mirrored.
    pub percentage: PerMillion,
}

/// A route that forwards to its destinations.
#[derive(Debug, Clone)]
pub struct Forward {
    destinations: Vec<RouteDestination>,
    split: Split,
    rewrite: Option<PathRewrite>,
    authority: Option<String>,
    upstream: UpstreamHeaders,
    mirrors: Vec<Mirror>,
    cors: Option<Cors>,
    request_ops: HeaderOps,
    response_ops: HeaderOps,
}

impl Forward {
    /// The route's destinations, in order.
    pub fn destinations(&self) -> &[RouteDestination] {
        &self.destinations
    }
}

/// What a route does with a request it matches.
#[derive(Debug, Clone)]
pub enum RouteAction {
    /// Forward to one of the destinations.
    Forward(Box<Forward>),
    /// Answer with a redirect.
    Redirect {
        /// The redirect.
        redirect: Redirect,
        /// Headers added to the answer (the route's response `set` and `add`).
        headers: Vec<(String, String)>,
    },
    /// Answer with a fixed response.
    Respond {
        /// Status code.
        status: u16,
        /// Body.
        body: Vec<u8>,
        /// Headers added to the answer (the route's response `set` and `add`).
        headers: Vec<(String, String)>,
    },
}

/// Why the filter answers a request itself.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum LocalKind {
    /// A route's `redirect`.
    Redirect,
    /// `meshwasm.router.httpsRedirect`.
    HttpsRedirect,
    /// A route's `directResponse`.
    DirectResponse,
    /// A CORS preflight.
    CorsPreflight,
}

impl LocalKind {
    /// The counter of these answers.
    pub fn metric(self) -> MetricRef {
        match self {
            LocalKind::Redirect | LocalKind::HttpsRedirect => metric::REDIRECTS,
            LocalKind::DirectResponse => metric::DIRECT_RESPONSES,
            LocalKind::CorsPreflight => metric::CORS_PREFLIGHTS,
        }
    }

    /// Envoy's response code details for the answer.
    pub fn details(self) -> &'static str {
        match self {
            LocalKind::Redirect => "meshwasm_router_redirect",
            LocalKind::HttpsRedirect => "meshwasm_router_https_redirect",
            LocalKind::DirectResponse => "meshwasm_router_direct_response",
            LocalKind::CorsPreflight => "meshwasm_router_cors_preflight",
        }
    }
}

/// An answer the filter sends instead of forwarding.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct LocalResponse<'p> {
    /// Why.
    pub kind: LocalKind,
    /// Status code.
    pub status: u16,
    /// Headers of the answer.
    pub headers: Vec<(&'p str, Cow<'p, str>)>,
    /// Body of the answer.
    pub body: &'p [u8],
}

/// A forwarded request: what to change, where copies go, and what to do to
/// the response.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Routed<'p> {
    /// Position of the VirtualService in the configuration (0 for a single spec).
    pub service: usize,
    /// Position of the route in `http`.
    pub route: usize,
    /// Position of the chosen destination in the route.
    pub destination: usize,
    /// Request header edits, in order.
    pub request_edits: Vec<HeaderOp<'p>>,
    /// Clusters the request is mirrored to.
    pub mirrors: Vec<&'p str>,
    /// Kept by the filter until the response headers arrive.
    pub response: ResponsePlan,
}

/// What the response of a forwarded request needs; owned, so a filter can
/// keep it across callbacks.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct ResponsePlan {
    service: usize,
    route: usize,
    destination: usize,
    cors: Vec<(&'static str, String)>,
}

/// The router's answer for one request.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Decision<'p> {
    /// No route applies; the edits remove routing headers the client sent.
    Pass(Vec<HeaderOp<'p>>),
    /// Answer locally.
    Respond(LocalResponse<'p>),
    /// Forward.
    Forward(Routed<'p>),
}

/// The router filter's compiled configuration.
///
/// # Examples
///
/// The Istio docs' "jason sees v2" rule:
///
/// ```
/// use meshwasm_core::header_ops::HeaderOp;
/// use meshwasm_core::percent::Rng;
/// use meshwasm_core::plan::Plan;
/// use meshwasm_core::request::StaticRequest;
/// use meshwasm_core::router::{Decision, RouterPlan};
///
/// let plan = RouterPlan::from_json(br#"{"hosts": ["reviews"], "http": [
///   {"match": [{"headers": {"end-user": {"exact": "jason"}}}],
///    "route": [{"destination": {"host": "reviews", "subset": "v2"}}]},
///   {"route": [{"destination": {"host": "reviews", "subset": "v1"}}]}]}"#).unwrap();
/// let mut rng = Rng::with_seed(1);
/// let mut jason = StaticRequest::get("/").set_header(":authority", "reviews").with_header("end-user", "jason");
/// let Decision::Forward(routed) = plan.decide(&mut jason, &mut rng) else { panic!() };
/// assert_eq!(routed.request_edits[0], HeaderOp::Set("x-meshwasm-cluster", "outbound||v2|reviews".into()));
/// assert_eq!(routed.request_edits[1], HeaderOp::Set("x-meshwasm-subset", "v2".into()));
/// ```
#[derive(Debug, Clone)]
pub struct RouterPlan {
    services: Vec<ServiceRouter>,
    notes: Vec<ConfigNote>,
    /// Per VirtualService, per route: the place of its first destination's
    /// counter in [`Plan::metrics`].
    routed_metrics: Vec<Vec<usize>>,
}

/// One VirtualService, compiled.
#[derive(Debug, Clone)]
struct ServiceRouter {
    table: RouteTable<RouteAction>,
    cluster_header: String,
    subset_header: String,
    sticky: Option<StickyKey>,
    https_redirect: Option<Redirect>,
    max_mirror_body_bytes: u64,
}

/// The router's label-free metrics, in the order of [`RouterPlan`]'s
/// [`Plan::metrics`]; one `meshwasm.router.routed.<cluster>` counter per
/// destination follows them ([`RouterPlan::routed_metric`]).
pub mod metric {
    use crate::metrics::MetricRef;

    /// Counter: requests no route matched.
    pub const UNMATCHED: MetricRef = MetricRef(0);
    /// Counter: redirects answered, HTTPS redirects included.
    pub const REDIRECTS: MetricRef = MetricRef(1);
    /// Counter: direct responses answered.
    pub const DIRECT_RESPONSES: MetricRef = MetricRef(2);
    /// Counter: CORS preflights answered.
    pub const CORS_PREFLIGHTS: MetricRef = MetricRef(3);
    /// Counter: mirror copies sent.
    pub const MIRRORS_SENT: MetricRef = MetricRef(4);
    /// Counter: mirror copies the host refused.
    pub const MIRRORS_FAILED: MetricRef = MetricRef(5);
    /// Counter: requests not mirrored because their body was too long.
    pub const MIRRORS_SKIPPED: MetricRef = MetricRef(6);

    /// The names of the metrics above, in order.
    pub(super) const NAMES: [&str; 7] = [
        "unmatched",
        "redirects",
        "direct_responses",
        "cors_preflights",
        "mirrors_sent",
        "mirrors_failed",
        "mirrors_skipped",
    ];
}

impl Plan for RouterPlan {
    const DOCUMENT: Document = crate::virtual_service::DOCUMENT;

    /// Parses and compiles a plugin configuration: one VirtualService spec,
    /// or `{"virtualServices": [...]}` (see [`VirtualService::list_from_json`]).
    fn from_json(json: &[u8]) -> Result<Self, ConfigError> {
        Self::compile_all(&VirtualService::list_from_json(json)?)
    }

    /// What was accepted but is handled elsewhere or not evaluated.
    fn notes(&self) -> &[ConfigNote] {
        &self.notes
    }

    fn summary(&self) -> String {
        let parts: Vec<String> = self.services.iter().map(ServiceRouter::summary).collect();
        match parts.as_slice() {
            [one] => one.clone(),
            _ => format!("{} VirtualServices: {}", parts.len(), parts.join("; ")),
        }
    }

    fn metrics(&self) -> Vec<MetricSpec> {
        let fixed = metric::NAMES
            .iter()
            .map(|name| MetricSpec::counter(format!("meshwasm.router.{name}")));
        let routed = self
            .services()
            .flatten()
            .flat_map(|route| match &route.value {
                RouteAction::Forward(f) => f.destinations(),
                _ => &[],
            })
            .map(|d| MetricSpec::counter(format!("meshwasm.router.routed.{}", d.cluster)));
        fixed.chain(routed).collect()
    }
}

impl RouterPlan {
    /// Compiles a parsed VirtualService spec.
    ///
    /// # Errors
    ///
    /// The first [`ConfigError`], naming the field.
    pub fn compile(vs: &VirtualService) -> Result<Self, ConfigError> {
        Self::compile_all(std::slice::from_ref(vs))
    }

    /// Compiles several VirtualService specs. A request is routed by the
    /// one whose `hosts` match its authority most specifically (Envoy's
    /// virtual-host order), so one filter serves several services as one
    /// sidecar does. Paths in errors and notes start with
    /// `virtualServices[i]` when there is more than one.
    ///
    /// # Errors
    ///
    /// The first [`ConfigError`], naming the field.
    pub fn compile_all(specs: &[VirtualService]) -> Result<Self, ConfigError> {
        let mut notes = Vec::new();
        let services: Vec<ServiceRouter> = crate::route_table::compile_each(specs, |root, vs| {
            ServiceRouter::compile_at(root, vs, &mut notes)
        })?;
        let mut next = metric::NAMES.len();
        let routed_metrics = services
            .iter()
            .map(|s| {
                s.table
                    .routes()
                    .iter()
                    .map(|route| {
                        let first = next;
                        if let RouteAction::Forward(f) = &route.value {
                            next += f.destinations().len();
                        }
                        first
                    })
                    .collect()
            })
            .collect();
        Ok(RouterPlan {
            services,
            notes,
            routed_metrics,
        })
    }

    /// The `meshwasm.router.routed.<cluster>` counter of a forwarded
    /// request's destination.
    pub fn routed_metric(&self, routed: &Routed<'_>) -> Option<MetricRef> {
        let first = self.routed_metrics.get(routed.service)?.get(routed.route)?;
        Some(MetricRef(first + routed.destination))
    }

    /// The compiled routes of each VirtualService, in order.
    pub fn services(&self) -> impl Iterator<Item = &[crate::route_table::Route<RouteAction>]> {
        self.services.iter().map(|s| s.table.routes())
    }

    /// Largest request body copied to mirrors, over all VirtualServices.
    pub fn max_mirror_body_bytes(&self) -> u64 {
        self.services
            .iter()
            .map(|s| s.max_mirror_body_bytes)
            .max()
            .unwrap_or(DEFAULT_MAX_MIRROR_BODY_BYTES)
    }

    /// Decides what to do with a request.
    pub fn decide(&self, req: &mut impl RequestAttributes, rng: &mut Rng) -> Decision<'_> {
        let chosen = crate::route_table::most_specific(self.services.iter().map(|s| &s.table), req);
        match chosen.and_then(|i| self.services.get(i).map(|s| (i, s))) {
            Some((service, router)) => router.decide(service, req, rng),
            None => Decision::Pass(self.strip_routing_headers(req)),
        }
    }

    /// Response header edits for a forwarded request; empty for most routes,
    /// so a filter can skip the response callback's host calls.
    pub fn response_edits<'p>(&'p self, plan: &'p ResponsePlan) -> Vec<HeaderOp<'p>> {
        self.services
            .get(plan.service)
            .map(|s| s.response_edits(plan))
            .unwrap_or_default()
    }

    /// True if some route edits responses, so the response callback has work.
    pub fn edits_responses(&self) -> bool {
        self.services.iter().any(ServiceRouter::edits_responses)
    }

    /// Removes every routing header a client sent, so it cannot pick a cluster.
    fn strip_routing_headers(&self, req: &mut impl RequestAttributes) -> Vec<HeaderOp<'_>> {
        let mut edits: Vec<HeaderOp<'_>> = Vec::new();
        for service in &self.services {
            for op in service.strip_routing_headers(req) {
                if !edits.contains(&op) {
                    edits.push(op);
                }
            }
        }
        edits
    }
}

impl ServiceRouter {
    fn compile_at(
        root: &FieldPath<'_>,
        vs: &VirtualService,
        notes: &mut Vec<ConfigNote>,
    ) -> Result<Self, ConfigError> {
        let ext_path = root.field("meshwasm");
        let ext_path = ext_path.field("router");
        let default_ext = RouterExtensions::default();
        let ext = vs
            .meshwasm
            .as_ref()
            .and_then(|m| m.router.as_ref())
            .unwrap_or(&default_ext);
        let cluster_header = header_name(
            &ext_path.field("clusterHeader"),
            ext.cluster_header.as_deref(),
            DEFAULT_CLUSTER_HEADER,
        )?;
        let subset_header = header_name(
            &ext_path.field("subsetHeader"),
            ext.subset_header.as_deref(),
            DEFAULT_SUBSET_HEADER,
        )?;
        let template = ext
            .cluster_template
            .as_deref()
            .unwrap_or(DEFAULT_CLUSTER_TEMPLATE);
        if !template.contains("{host}") {
            return Err(ext_path
                .field("clusterTemplate")
                .error(ConfigErrorKind::Invalid {
                    reason: format!(
                        "{template:?} has no {{host}}, so every service would get the same cluster"
                    ),
                }));
        }
        let sticky = ext
            .sticky
            .as_ref()
            .map(|s| StickyKey::compile_at(&ext_path.field("sticky"), s))
            .transpose()?;
        let names = Names {
            template,
            reserved: [&cluster_header, &subset_header],
        };
        let table = RouteTable::compile_at(root, vs, notes, |at, route, notes| {
            compile_route(at, route, &names, notes)
        })?;
        Ok(ServiceRouter {
            table,
            sticky,
            https_redirect: ext.https_redirect.then(Redirect::to_https),
            max_mirror_body_bytes: ext
                .max_mirror_body_bytes
                .unwrap_or(DEFAULT_MAX_MIRROR_BODY_BYTES),
            cluster_header,
            subset_header,
        })
    }

    fn summary(&self) -> String {
        let (mut forward, mut split, mut mirror, mut local) = (0, 0, 0, 0);
        for route in self.table.routes() {
            match &route.value {
                RouteAction::Forward(f) => {
                    forward += 1;
                    split += usize::from(!f.split.is_single());
                    mirror += usize::from(!f.mirrors.is_empty());
                }
                RouteAction::Redirect { .. } | RouteAction::Respond { .. } => local += 1,
            }
        }
        format!(
            "{} routes ({forward} forwarding, {split} weighted, {mirror} mirrored, {local} answered locally); cluster header {}, subset header {}{}",
            self.table.routes().len(),
            self.cluster_header,
            self.subset_header,
            if self.sticky.is_some() {
                ", sticky splits"
            } else {
                ""
            }
        )
    }

    fn decide(
        &self,
        service: usize,
        req: &mut impl RequestAttributes,
        rng: &mut Rng,
    ) -> Decision<'_> {
        if let Some(https) = &self.https_redirect
            && self.table.hosts_match(req)
            && request_scheme(req).as_deref() == Some("http")
        {
            let location = https.location(request_url(req).as_url(), None);
            return Decision::Respond(LocalResponse {
                kind: LocalKind::HttpsRedirect,
                status: https.code,
                headers: vec![("location", Cow::Owned(location))],
                body: b"",
            });
        }
        let Some((route, block)) = self.table.select_with_match(req) else {
            return Decision::Pass(self.strip_routing_headers(req));
        };
        let uri = block.and_then(|b| b.uri());
        match &route.value {
            RouteAction::Redirect { redirect, headers } => {
                let location = redirect.location(request_url(req).as_url(), uri);
                let mut all = vec![("location", Cow::Owned(location))];
                all.extend(
                    headers
                        .iter()
                        .map(|(n, v)| (n.as_str(), Cow::Borrowed(v.as_str()))),
                );
                Decision::Respond(LocalResponse {
                    kind: LocalKind::Redirect,
                    status: redirect.code,
                    headers: all,
                    body: b"",
                })
            }
            RouteAction::Respond {
                status,
                body,
                headers,
            } => Decision::Respond(LocalResponse {
                kind: LocalKind::DirectResponse,
                status: *status,
                headers: headers
                    .iter()
                    .map(|(n, v)| (n.as_str(), Cow::Borrowed(v.as_str())))
                    .collect(),
                body,
            }),
            RouteAction::Forward(forward) => {
                self.forward(service, route.index, forward, uri, req, rng)
            }
        }
    }

    fn forward<'p>(
        &'p self,
        service: usize,
        route: usize,
        forward: &'p Forward,
        uri: Option<&StringMatcher>,
        req: &mut impl RequestAttributes,
        rng: &mut Rng,
    ) -> Decision<'p> {
        let cors = match forward.cors.as_ref().map(|c| c.verdict(req)) {
            Some(CorsVerdict::Preflight(headers)) => {
                return Decision::Respond(LocalResponse {
                    kind: LocalKind::CorsPreflight,
                    status: 200,
                    headers: headers
                        .into_iter()
                        .map(|(n, v)| (n, Cow::Owned(v)))
                        .collect(),
                    body: b"",
                });
            }
            Some(CorsVerdict::Simple(headers)) => headers,
            Some(CorsVerdict::None) | None => Vec::new(),
        };
        let index = if forward.split.is_single() {
            0
        } else {
            let draw = self
                .sticky
                .as_ref()
                .and_then(|key| key.draw(req))
                .unwrap_or_else(|| rng.below_million());
            forward.split.pick(draw)
        };
        let Some(destination) = forward.destinations.get(index) else {
            return Decision::Pass(Vec::new());
        };
        let mut edits = Vec::with_capacity(4);
        edits.push(HeaderOp::Set(
            &self.cluster_header,
            Cow::Borrowed(&destination.cluster),
        ));
        match &destination.subset {
            Some(subset) => edits.push(HeaderOp::Set(&self.subset_header, Cow::Borrowed(subset))),
            None if req.header(&self.subset_header).is_some() => {
                edits.push(HeaderOp::Remove(&self.subset_header));
            }
            None => {}
        }
        edits.extend(
            forward
                .upstream
                .pairs()
                .iter()
                .map(|(n, v)| HeaderOp::Set(n, Cow::Borrowed(v.as_str()))),
        );
        if let Some(rewrite) = &forward.rewrite
            && let Some(path) = req.header(":path")
        {
            let new_path = rewrite.apply(&path, uri);
            if new_path != *path {
                edits.push(HeaderOp::Set(
                    ORIGINAL_PATH_HEADER,
                    Cow::Owned(path.into_owned()),
                ));
                edits.push(HeaderOp::Set(":path", Cow::Owned(new_path)));
            }
        }
        if let Some(authority) = &forward.authority {
            edits.push(HeaderOp::Set(":authority", Cow::Borrowed(authority)));
        }
        // The destination's operations come last: the more specific wins.
        edits.extend(forward.request_ops.edits());
        edits.extend(destination.request_ops.edits());
        let mirrors = forward
            .mirrors
            .iter()
            .filter(|m| m.percentage.sample(rng))
            .map(|m| m.cluster.as_str())
            .collect();
        Decision::Forward(Routed {
            service,
            route,
            destination: index,
            request_edits: edits,
            mirrors,
            response: ResponsePlan {
                service,
                route,
                destination: index,
                cors,
            },
        })
    }

    fn response_edits<'p>(&'p self, plan: &'p ResponsePlan) -> Vec<HeaderOp<'p>> {
        let mut edits = Vec::new();
        if let Some(RouteAction::Forward(forward)) =
            self.table.routes().get(plan.route).map(|r| &r.value)
        {
            edits.extend(forward.response_ops.edits());
            if let Some(d) = forward.destinations.get(plan.destination) {
                edits.extend(d.response_ops.edits());
            }
        }
        edits.extend(
            plan.cors
                .iter()
                .map(|(n, v)| HeaderOp::Set(n, Cow::Borrowed(v.as_str()))),
        );
        edits
    }

    fn edits_responses(&self) -> bool {
        self.table.routes().iter().any(|r| match &r.value {
            RouteAction::Forward(f) => {
                f.cors.is_some()
                    || !f.response_ops.is_empty()
                    || f.destinations.iter().any(|d| !d.response_ops.is_empty())
            }
            _ => false,
        })
    }

    fn strip_routing_headers(&self, req: &mut impl RequestAttributes) -> Vec<HeaderOp<'_>> {
        [&self.cluster_header, &self.subset_header]
            .into_iter()
            .filter(|h| req.header(h).is_some())
            .map(|h| HeaderOp::Remove(h))
            .collect()
    }
}

/// Headers a mirrored copy carries: the forwarded request's, with the
/// authority marked `-shadow` as Envoy marks it.
///
/// # Examples
///
/// ```
/// use meshwasm_core::router::mirror_headers;
///
/// let headers = mirror_headers(vec![(":authority".into(), "httpbin:8000".into()), ("x-a".into(), "1".into())]);
/// assert_eq!(headers[0].1, "httpbin-shadow:8000");
/// ```
pub fn mirror_headers(mut headers: Vec<(String, String)>) -> Vec<(String, String)> {
    for (name, value) in &mut headers {
        if name == ":authority" {
            *value = shadow_authority(value);
        }
    }
    headers
}

struct Names<'a> {
    template: &'a str,
    reserved: [&'a String; 2],
}

/// The cluster a destination is sent to: `template` with `{host}`,
/// `{subset}` and `{port}` filled in, empty where the destination has none.
/// Envoy configurations that receive the router's choice need clusters of
/// exactly these names.
///
/// # Examples
///
/// ```
/// use meshwasm_core::router::{DEFAULT_CLUSTER_TEMPLATE, cluster_name};
/// use meshwasm_core::virtual_service::{Destination, PortSelector};
///
/// let d = Destination { host: "reviews".into(), subset: Some("v2".into()), port: Some(PortSelector { number: 9080 }) };
/// assert_eq!(cluster_name(DEFAULT_CLUSTER_TEMPLATE, &d), "outbound|9080|v2|reviews");
/// let d = Destination { host: "ratings".into(), subset: None, port: None };
/// assert_eq!(cluster_name(DEFAULT_CLUSTER_TEMPLATE, &d), "outbound|||ratings");
/// ```
pub fn cluster_name(template: &str, d: &Destination) -> String {
    let port = d
        .port
        .as_ref()
        .map(|p| p.number.to_string())
        .unwrap_or_default();
    template
        .replace("{host}", &d.host)
        .replace("{subset}", d.subset.as_deref().unwrap_or(""))
        .replace("{port}", &port)
}

impl Names<'_> {
    fn cluster(&self, d: &Destination) -> String {
        cluster_name(self.template, d)
    }

    fn check_ops(&self, path: &FieldPath<'_>, ops: &HeaderOps) -> Result<(), ConfigError> {
        for reserved in self.reserved {
            if ops.touches(reserved) {
                return Err(path.error(ConfigErrorKind::Invalid {
                    reason: format!(
                        "{reserved} carries the router's decision and cannot be edited"
                    ),
                }));
            }
        }
        Ok(())
    }
}

fn header_name(
    path: &FieldPath<'_>,
    given: Option<&str>,
    default: &str,
) -> Result<String, ConfigError> {
    check_name(path, given.unwrap_or(default))
}

fn compile_route(
    at: &FieldPath<'_>,
    route: &HttpRoute,
    names: &Names<'_>,
    notes: &mut Vec<ConfigNote>,
) -> Result<RouteAction, ConfigError> {
    if route.delegate.is_some() {
        return Err(at.field("delegate").error(ConfigErrorKind::Unsupported {
            reason: "delegation is joined by istiod, which a filter cannot ask; inline it: replace this route with the delegate's http routes, each with this route's match added to its own",
        }));
    }
    if route.fault.is_some() {
        notes.push(at.field("fault").note(FAULT_NOTE));
    }
    let (req_ops, resp_ops) = compile_headers(&at.field("headers"), route.headers.as_ref(), names)?;
    let kinds = [
        route.redirect.is_some(),
        route.direct_response.is_some(),
        !route.route.is_empty(),
    ];
    match kinds {
        [true, false, false] | [false, true, false] => {
            for (set, field) in [
                (route.rewrite.is_some(), "rewrite"),
                (route.timeout.is_some(), "timeout"),
                (route.retries.is_some(), "retries"),
                (
                    route.mirror.is_some() || !route.mirrors.is_empty(),
                    "mirror",
                ),
                (route.cors_policy.is_some(), "corsPolicy"),
            ] {
                if set {
                    return Err(at.field(field).error(ConfigErrorKind::Conflict {
                        reason: "this route answers by itself (redirect or directResponse), so it forwards nothing this could apply to",
                    }));
                }
            }
            if !req_ops.is_empty() {
                notes.push(at.field("headers").field("request").note(
                    "the route answers by itself, so no request is forwarded to edit; ignored",
                ));
            }
            let headers = local_headers(&resp_ops);
            if let Some(redirect) = &route.redirect {
                let redirect = Redirect::compile_at(&at.field("redirect"), redirect)?;
                Ok(RouteAction::Redirect { redirect, headers })
            } else if let Some(direct) = &route.direct_response {
                let (status, body) = compile_direct(&at.field("directResponse"), direct)?;
                Ok(RouteAction::Respond {
                    status,
                    body,
                    headers,
                })
            } else {
                Err(at.error(ConfigErrorKind::Missing {
                    reason: "a route needs route, redirect or directResponse",
                }))
            }
        }
        [false, false, true] => Ok(RouteAction::Forward(Box::new(compile_forward(
            at, route, names, req_ops, resp_ops, notes,
        )?))),
        [false, false, false] => Err(at.error(ConfigErrorKind::Missing {
            reason: "a route needs route, redirect or directResponse",
        })),
        _ => Err(at.error(ConfigErrorKind::Conflict {
            reason: "set only one of route, redirect and directResponse",
        })),
    }
}

fn compile_forward(
    at: &FieldPath<'_>,
    route: &HttpRoute,
    names: &Names<'_>,
    request_ops: HeaderOps,
    response_ops: HeaderOps,
    notes: &mut Vec<ConfigNote>,
) -> Result<Forward, ConfigError> {
    let route_path = at.field("route");
    let mut destinations = Vec::with_capacity(route.route.len());
    for (i, d) in route.route.iter().enumerate() {
        let d_path = route_path.index(i);
        let dest_path = d_path.field("destination");
        check_destination(&dest_path, &d.destination)?;
        let (req, resp) = compile_headers(&d_path.field("headers"), d.headers.as_ref(), names)?;
        destinations.push(RouteDestination {
            cluster: names.cluster(&d.destination),
            subset: d.destination.subset.clone(),
            request_ops: req,
            response_ops: resp,
        });
    }
    let weights: Vec<i32> = route.route.iter().map(|d| d.weight).collect();
    let split = Split::compile_at(&route_path, &weights)?;
    let rewrite_path = at.field("rewrite");
    let (rewrite, authority) = match &route.rewrite {
        None => (None, None),
        Some(r) => {
            let path_rewrite = match (&r.uri, &r.uri_regex_rewrite) {
                (Some(_), Some(_)) => {
                    return Err(rewrite_path.error(ConfigErrorKind::Conflict {
                        reason: "set only one of uri and uriRegexRewrite",
                    }));
                }
                (Some(uri), None) => Some(PathRewrite::Prefix(uri.clone())),
                (None, Some(regex)) => Some(PathRewrite::compile_regex(
                    &rewrite_path.field("uriRegexRewrite"),
                    regex,
                )?),
                (None, None) => None,
            };
            (path_rewrite, r.authority.clone())
        }
    };
    let upstream = UpstreamHeaders::compile_at(at, route.timeout.as_ref(), route.retries.as_ref())?;
    let mirrors = compile_mirrors(at, route, names)?;
    let cors = route
        .cors_policy
        .as_ref()
        .map(|c| Cors::compile_at(&at.field("corsPolicy"), c))
        .transpose()?;
    if route.matches.iter().any(|m| m.ignore_uri_case)
        && matches!(rewrite, Some(PathRewrite::Prefix(_)))
    {
        notes.push(
            at.field("rewrite")
                .field("uri")
                .note("with ignoreUriCase the prefix is replaced whatever its case, as Envoy does"),
        );
    }
    Ok(Forward {
        destinations,
        split,
        rewrite,
        authority,
        upstream,
        mirrors,
        cors,
        request_ops,
        response_ops,
    })
}

fn check_destination(path: &FieldPath<'_>, d: &Destination) -> Result<(), ConfigError> {
    if d.host.is_empty() {
        return Err(path.field("host").error(ConfigErrorKind::Missing {
            reason: "a destination needs a host",
        }));
    }
    if let Some(port) = &d.port
        && !(1..=65535).contains(&port.number)
    {
        return Err(path
            .field("port")
            .field("number")
            .error(ConfigErrorKind::Invalid {
                reason: format!("{} is not a port in 1..=65535", port.number),
            }));
    }
    Ok(())
}

fn compile_mirrors(
    at: &FieldPath<'_>,
    route: &HttpRoute,
    names: &Names<'_>,
) -> Result<Vec<Mirror>, ConfigError> {
    if route.mirror.is_some() && !route.mirrors.is_empty() {
        return Err(at.error(ConfigErrorKind::Conflict {
            reason: "set only one of mirror and mirrors",
        }));
    }
    if let Some(mirror) = &route.mirror {
        check_destination(&at.field("mirror"), mirror)?;
        let percentage = match (&route.mirror_percentage, route.mirror_percent) {
            (Some(p), _) => compile_percent(&at.field("mirrorPercentage"), p)?,
            (None, Some(whole)) => PerMillion::from_whole_percent(whole),
            // Istio mirrors every request when no percentage is given.
            (None, None) => PerMillion::ALWAYS,
        };
        return Ok(vec![Mirror {
            cluster: names.cluster(mirror),
            percentage,
        }]);
    }
    if route.mirror_percentage.is_some() || route.mirror_percent.is_some() {
        return Err(at.field("mirrorPercentage").error(ConfigErrorKind::Missing {
            reason: "a mirror percentage needs a mirror; with mirrors, give each its percentage",
        }));
    }
    let path = at.field("mirrors");
    route
        .mirrors
        .iter()
        .enumerate()
        .map(|(i, m)| {
            let at = path.index(i);
            check_destination(&at.field("destination"), &m.destination)?;
            Ok(Mirror {
                cluster: names.cluster(&m.destination),
                percentage: match &m.percentage {
                    Some(p) => compile_percent(&at.field("percentage"), p)?,
                    None => PerMillion::ALWAYS,
                },
            })
        })
        .collect()
}

fn compile_headers(
    path: &FieldPath<'_>,
    headers: Option<&Headers>,
    names: &Names<'_>,
) -> Result<(HeaderOps, HeaderOps), ConfigError> {
    let Some(headers) = headers else {
        return Ok(Default::default());
    };
    let one = |field: &'static str, ops: &Option<crate::virtual_service::HeaderOperations>| {
        let at = path.field(field);
        let compiled = ops
            .as_ref()
            .map(|o| HeaderOps::compile_at(&at, o))
            .transpose()?
            .unwrap_or_default();
        names.check_ops(&at, &compiled)?;
        Ok::<_, ConfigError>(compiled)
    };
    Ok((
        one("request", &headers.request)?,
        one("response", &headers.response)?,
    ))
}

fn local_headers(ops: &HeaderOps) -> Vec<(String, String)> {
    ops.edits()
        .filter_map(|op| match op {
            HeaderOp::Set(n, v) | HeaderOp::Add(n, v) => Some((n.to_owned(), v.into_owned())),
            HeaderOp::Remove(_) => None,
        })
        .collect()
}

fn compile_direct(
    path: &FieldPath<'_>,
    d: &HttpDirectResponse,
) -> Result<(u16, Vec<u8>), ConfigError> {
    let status = match u16::try_from(d.status) {
        Ok(s @ 200..=599) => s,
        _ => {
            return Err(path
                .field("status")
                .error(ConfigErrorKind::HttpStatusOutOfRange {
                    status: i64::from(d.status),
                    min: 200,
                    max: 599,
                }));
        }
    };
    let body = match &d.body {
        None => Vec::new(),
        Some(b) => match (&b.string, &b.bytes) {
            (Some(s), None) => s.clone().into_bytes(),
            (None, Some(encoded)) => {
                use base64::Engine as _;
                base64::engine::general_purpose::STANDARD
                    .decode(encoded)
                    .map_err(|e| {
                        path.field("body")
                            .field("bytes")
                            .error(ConfigErrorKind::Invalid {
                                reason: format!("not base64: {e}"),
                            })
                    })?
            }
            _ => {
                return Err(path.field("body").error(ConfigErrorKind::Conflict {
                    reason: "set exactly one of string and bytes",
                }));
            }
        },
    };
    Ok((status, body))
}

/// The scheme Envoy established for the request: `:scheme`. Never the
/// client's `x-forwarded-proto` itself: Envoy sets `:scheme` from it only
/// when its listener trusts the hop that sent it (no `use_remote_address`,
/// or `xff_num_trusted_hops`), and otherwise from the connection.
fn request_scheme(req: &mut impl RequestAttributes) -> Option<String> {
    req.header(":scheme").map(|s| s.to_ascii_lowercase())
}

struct OwnedUrl {
    scheme: String,
    authority: String,
    path: String,
    destination_port: Option<u32>,
}

impl OwnedUrl {
    fn as_url(&self) -> RequestUrl<'_> {
        RequestUrl {
            scheme: &self.scheme,
            authority: &self.authority,
            path: &self.path,
            destination_port: self.destination_port,
        }
    }
}

fn request_url(req: &mut impl RequestAttributes) -> OwnedUrl {
    OwnedUrl {
        scheme: request_scheme(req).unwrap_or_else(|| "http".into()),
        authority: req
            .header(":authority")
            .map(Cow::into_owned)
            .unwrap_or_default(),
        path: req
            .header(":path")
            .map_or_else(|| "/".into(), Cow::into_owned),
        destination_port: req.destination_port(),
    }
}
