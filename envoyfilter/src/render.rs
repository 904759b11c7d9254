//! Manifests that deploy the filters: Istio's WasmPlugin and EnvoyFilter
//! (inline and ECDS), the companion VirtualServices Istio needs, and plain
//! Envoy configuration.
//!
//! Every function returns JSON values; [`crate::yaml::dump`] writes them
//! as one YAML stream.

pub mod mesh;
pub mod stats;
pub mod traffic_policy;

use crate::translate::{
    AuthzFilter, Placement, RateLimitFilter, Service, TelemetryFilter, Translation, Upstream, fqdn,
};
use meshwasm_core::handoff;
use meshwasm_core::router::{DEFAULT_CLUSTER_HEADER, DEFAULT_CLUSTER_TEMPLATE, cluster_name};
use serde_json::{Map, Value, json};
use std::collections::BTreeMap;
use std::fmt;

/// The Envoy type of a Wasm HTTP filter's configuration.
pub const WASM_FILTER_TYPE: &str = "type.googleapis.com/envoy.extensions.filters.http.wasm.v3.Wasm";
/// The Envoy type of a Wasm network filter's configuration.
pub const WASM_NETWORK_FILTER_TYPE: &str =
    "type.googleapis.com/envoy.extensions.filters.network.wasm.v3.Wasm";
/// Label put on every generated resource, so they can be listed and pruned.
pub const MANAGED_BY: (&str, &str) = ("app.kubernetes.io/managed-by", "meshwasm-envoyfilter");

/// A meshwasm filter.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord)]
pub enum Filter {
    /// Istio's standard metrics, access logs and trace context, from an
    /// Istio Telemetry.
    Telemetry,
    /// Istio AuthorizationPolicy access rules and header rules.
    HeaderMatch,
    /// Envoy's local rate limit, from an EnvoyFilter that inserts
    /// `envoy.filters.http.local_ratelimit`.
    RateLimit,
    /// VirtualService faults (delay, abort).
    Fault,
    /// VirtualService routing.
    Router,
    /// All of the above in one module (`meshwasm-mesh`), configured with
    /// each one's document: what `--mesh` renders ([`mesh`]).
    Mesh,
}

/// An Istio WasmPlugin phase.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Phase {
    /// Before Istio's authentication filters.
    Authn,
    /// After authentication, before Istio's authorization filters.
    Authz,
    /// After authorization, before Istio's stats filters.
    Stats,
    /// Istio decides; generally the end of the chain, before the router.
    Unspecified,
}

impl fmt::Display for Phase {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(match self {
            Phase::Authn => "AUTHN",
            Phase::Authz => "AUTHZ",
            Phase::Stats => "STATS",
            Phase::Unspecified => "UNSPECIFIED_PHASE",
        })
    }
}

impl Filter {
    /// Every filter, in the order they run in plain Envoy: the telemetry
    /// first, so it measures every request, including those the others
    /// refuse; the access rules, where Istio's RBAC runs; then the rate
    /// limit, a cheap pre-filter that refuses a request before the others
    /// work on it.
    pub const ALL: [Filter; 5] = [
        Filter::Telemetry,
        Filter::HeaderMatch,
        Filter::RateLimit,
        Filter::Fault,
        Filter::Router,
    ];

    /// The filter's name in Envoy and its root id (`meshwasm.router`).
    pub fn plugin_name(self) -> &'static str {
        match self {
            Filter::Telemetry => "meshwasm.telemetry",
            Filter::HeaderMatch => "meshwasm.header-match",
            Filter::RateLimit => "meshwasm.rate-limit",
            Filter::Fault => "meshwasm.fault",
            Filter::Router => "meshwasm.router",
            Filter::Mesh => "meshwasm.mesh",
        }
    }

    /// The crate, the image repository and the base of Kubernetes names.
    pub fn crate_name(self) -> &'static str {
        match self {
            Filter::Telemetry => "meshwasm-telemetry",
            Filter::HeaderMatch => "meshwasm-header-match",
            Filter::RateLimit => "meshwasm-rate-limit",
            Filter::Fault => "meshwasm-fault",
            Filter::Router => "meshwasm-router",
            Filter::Mesh => "meshwasm-mesh",
        }
    }

    /// The built module's file name.
    pub fn wasm_file(self) -> &'static str {
        match self {
            Filter::Telemetry => "meshwasm_telemetry.wasm",
            Filter::HeaderMatch => "meshwasm_header_match.wasm",
            Filter::RateLimit => "meshwasm_rate_limit.wasm",
            Filter::Fault => "meshwasm_fault.wasm",
            Filter::Router => "meshwasm_router.wasm",
            Filter::Mesh => "meshwasm_mesh.wasm",
        }
    }

    /// Default WasmPlugin phase and priority.
    ///
    /// All run in STATS: after Istio's authentication and authorization
    /// (a request that RBAC denies is neither delayed nor routed), and before
    /// Istio's own fault and CORS filters, which come later in the chain
    /// whatever the phase. Within the phase a higher priority runs first:
    /// the fault filter (20) before the router (10), as Istio orders its
    /// fault filter before its router, so an aborted request never picks a
    /// destination. A telemetry filter belongs above both, so it sees the
    /// aborts as responses. The rate limit (30) runs before both, where
    /// Istio's examples insert the native one (before the router): a
    /// request over the limit is refused before any other work is done on
    /// it. An EnvoyFilter that inserts it first (`INSERT_FIRST`) gets
    /// AUTHN instead ([`rate_limit_order`]). The header-match filter runs
    /// in AUTHZ, where Istio's RBAC filter enforces AuthorizationPolicies:
    /// after authentication, before everything above. The telemetry filter
    /// runs in STATS, where Istio's own stats filters are, above all the
    /// others of the phase (40): it measures the rate limit's, the fault
    /// filter's and the router's answers.
    pub fn default_order(self) -> (Phase, i32) {
        match self {
            Filter::Telemetry => (Phase::Stats, 40),
            Filter::HeaderMatch => (Phase::Authz, 10),
            Filter::RateLimit => (Phase::Stats, 30),
            Filter::Fault => (Phase::Stats, 20),
            Filter::Router => (Phase::Stats, 10),
            // Where its first part, the access rules, runs.
            Filter::Mesh => (Phase::Authz, 10),
        }
    }

    /// Its plugin configuration in a translation, at a placement. The rate
    /// limit, the header-match and the telemetry filter have none at a
    /// VirtualService placement: each of [`Translation::rate_limits`],
    /// [`Translation::authz`] and [`Translation::telemetry`] has its own
    /// workloads.
    pub fn config(self, translation: &Translation, placement: &Placement) -> Option<Value> {
        match self {
            Filter::RateLimit | Filter::HeaderMatch | Filter::Telemetry | Filter::Mesh => None,
            Filter::Fault => translation.fault_config(placement),
            Filter::Router => translation.router_config(placement),
        }
    }
}

/// WasmPlugin `failStrategy`: what requests get when the filter's VM
/// failed (measured in Envoy 1.40 by `tests/e2e/failure_policy.rs`).
/// meshwasm renders [`FailReload`](Self::FailReload) unless told otherwise:
/// like `FAIL_CLOSE` no request ever skips the filter, but one trap costs
/// a second of 503s instead of every later request on that worker.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum FailStrategy {
    /// A failed VM fails its requests (503) for good: no request skips
    /// the filter, and after a trap the worker answers 503 until Envoy
    /// restarts.
    FailClose,
    /// A failed VM is skipped: requests go on without the filter.
    FailOpen,
    /// A trapped VM fails requests (503) for Envoy's reload backoff (1 s),
    /// then is made again; a module that never loaded stays closed (Istio
    /// 1.24+, Envoy 1.33+).
    FailReload,
}

impl FailStrategy {
    /// Every strategy, by the name Istio's `failStrategy` field takes.
    ///
    /// ```
    /// use envoyfilter::render::FailStrategy;
    /// assert_eq!(FailStrategy::ALL.map(FailStrategy::name), ["FAIL_CLOSE", "FAIL_OPEN", "FAIL_RELOAD"]);
    /// ```
    pub const ALL: [FailStrategy; 3] = [
        FailStrategy::FailClose,
        FailStrategy::FailOpen,
        FailStrategy::FailReload,
    ];

    /// The name Istio's `failStrategy` field takes.
    ///
    /// ```
    /// assert_eq!(envoyfilter::render::FailStrategy::FailOpen.name(), "FAIL_OPEN");
    /// ```
    pub fn name(self) -> &'static str {
        match self {
            FailStrategy::FailClose => "FAIL_CLOSE",
            FailStrategy::FailOpen => "FAIL_OPEN",
            FailStrategy::FailReload => "FAIL_RELOAD",
        }
    }

    /// Envoy's `PluginConfig.failure_policy` for the strategy, as istiod
    /// writes it for a WasmPlugin: `FAIL_CLOSE` is `FAIL_CLOSED`. Envoy
    /// refuses a config with both this and the deprecated `fail_open`.
    ///
    /// ```
    /// use envoyfilter::render::FailStrategy;
    /// assert_eq!(FailStrategy::ALL.map(FailStrategy::envoy_policy), ["FAIL_CLOSED", "FAIL_OPEN", "FAIL_RELOAD"]);
    /// ```
    pub fn envoy_policy(self) -> &'static str {
        match self {
            FailStrategy::FailClose => "FAIL_CLOSED",
            FailStrategy::FailOpen => "FAIL_OPEN",
            FailStrategy::FailReload => "FAIL_RELOAD",
        }
    }
}

/// The warning a `strategy` deserves for `translation`: under
/// `FAIL_OPEN`, a request skips a filter whose VM failed (a module that
/// could not be fetched, a trap), so the AuthorizationPolicies that
/// header-match enforces stop being enforced.
///
/// ```
/// use envoyfilter::render::{fail_open_warning, FailStrategy};
/// use envoyfilter::translate::{translate, Options};
///
/// let t = translate(include_str!("../../examples/virtual-services/deny-admin.yaml"), &Options::default()).unwrap();
/// assert!(fail_open_warning(&t, FailStrategy::FailOpen).unwrap().contains("AuthorizationPolicies"));
/// assert_eq!(fail_open_warning(&t, FailStrategy::FailClose), None);
/// ```
pub fn fail_open_warning(translation: &Translation, strategy: FailStrategy) -> Option<String> {
    (strategy == FailStrategy::FailOpen && !translation.authz.is_empty()).then(|| {
        "warning: failStrategy FAIL_OPEN: a request skips a filter whose VM failed, so \
         header-match's AuthorizationPolicies go unenforced then (and Istio's agent allows \
         every request when the module cannot be fetched); FAIL_RELOAD or FAIL_CLOSE refuse \
         those requests instead"
            .to_owned()
    })
}

/// Writes `strategy` as the `failure_policy` of every Wasm plugin
/// configuration (HTTP or network filter) found in `rendered`, so that an
/// output says what it does when a VM fails instead of leaving it to
/// Envoy's default.
fn set_failure_policy(rendered: &mut Value, strategy: FailStrategy) {
    match rendered {
        Value::Object(map) => {
            let wasm = map
                .get("@type")
                .and_then(Value::as_str)
                .is_some_and(|t| t == WASM_FILTER_TYPE || t == WASM_NETWORK_FILTER_TYPE);
            if wasm && let Some(Value::Object(config)) = map.get_mut("config") {
                config.insert("failure_policy".into(), json!(strategy.envoy_policy()));
            }
            map.values_mut()
                .for_each(|v| set_failure_policy(v, strategy));
        }
        Value::Array(items) => items
            .iter_mut()
            .for_each(|v| set_failure_policy(v, strategy)),
        _ => {}
    }
}

impl std::str::FromStr for FailStrategy {
    type Err = String;

    /// Istio's name for the strategy.
    ///
    /// ```
    /// use envoyfilter::render::FailStrategy;
    /// assert_eq!("FAIL_OPEN".parse(), Ok(FailStrategy::FailOpen));
    /// assert!("open".parse::<FailStrategy>().unwrap_err().contains("FAIL_CLOSE, FAIL_OPEN, FAIL_RELOAD"));
    /// ```
    fn from_str(name: &str) -> Result<FailStrategy, String> {
        FailStrategy::ALL
            .into_iter()
            .find(|s| s.name() == name)
            .ok_or_else(|| {
                let names = FailStrategy::ALL.map(FailStrategy::name).join(", ");
                format!("{name:?} is not a failStrategy; use {names}")
            })
    }
}

impl fmt::Display for FailStrategy {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.name())
    }
}

/// Where Istio gets a filter's module, and how the plugins are set up.
#[derive(Debug, Clone)]
pub struct IstioOptions {
    /// Image repository prefix: `oci://ghcr.io/acme` gives `oci://ghcr.io/acme/meshwasm-router:TAG`.
    /// `file://` and `https://` prefixes are used the same way (with `.wasm` names).
    pub image_prefix: String,
    /// Image tag.
    pub tag: String,
    /// Manifest digest (`sha256:...` or hex) of each filter's image, as `wasmhub inspect` prints it.
    pub sha256: BTreeMap<Filter, String>,
    /// Namespace of mesh-wide plugins; Istio's root namespace makes them apply to every namespace.
    pub namespace: String,
    /// Namespace of the gateway workloads (the ingress gateway's pods): a
    /// WasmPlugin or EnvoyFilter selects pods of its own namespace only,
    /// unless it is in the root namespace, so a Gateway's namespace is not
    /// where its plugins go.
    pub gateway_namespace: String,
    /// What a plugin that cannot load does.
    pub fail_strategy: FailStrategy,
    /// `imagePullPolicy`.
    pub pull_policy: Option<String>,
    /// `imagePullSecret`.
    pub pull_secret: Option<String>,
    /// `vmConfig.env` as name and value pairs.
    pub vm_env: Vec<(String, String)>,
    /// Select workloads by Gateway API `targetRefs` (kind/name) instead of labels.
    pub target_refs: Vec<(String, String)>,
    /// The mesh's DNS domain, for short host names made FQDNs.
    pub cluster_domain: String,
}

impl Default for IstioOptions {
    fn default() -> Self {
        IstioOptions {
            image_prefix: "oci://ghcr.io/meshwasm".into(),
            tag: "latest".into(),
            sha256: BTreeMap::new(),
            namespace: "istio-system".into(),
            gateway_namespace: "istio-system".into(),
            fail_strategy: FailStrategy::FailReload,
            pull_policy: Some("IfNotPresent".into()),
            pull_secret: None,
            vm_env: Vec::new(),
            target_refs: Vec::new(),
            cluster_domain: "cluster.local".into(),
        }
    }
}

impl IstioOptions {
    /// The module url of a filter.
    pub fn url(&self, filter: Filter) -> String {
        let prefix = self.image_prefix.trim_end_matches('/');
        if prefix.starts_with("oci://") {
            format!("{prefix}/{}:{}", filter.crate_name(), self.tag)
        } else {
            format!("{prefix}/{}", filter.wasm_file())
        }
    }

    fn sha256(&self, filter: Filter) -> Option<String> {
        self.sha256
            .get(&filter)
            .map(|d| d.strip_prefix("sha256:").unwrap_or(d).to_owned())
    }
}

/// Everything Istio needs for a translation: per placement one WasmPlugin
/// per filter that has work there and the EnvoyFilter that strips the
/// hand-off headers ([`handoff_envoy_filters`]), a companion
/// VirtualService per VirtualService, and the DestinationRules and
/// Gateways as they were.
///
/// # Examples
///
/// ```
/// use envoyfilter::render::{istio_manifests, IstioOptions};
/// use envoyfilter::translate::{translate, Options};
///
/// let t = translate(include_str!("../../examples/virtual-services/fault-jason-abort.yaml"), &Options::default()).unwrap();
/// let docs = istio_manifests(&t, &IstioOptions::default());
/// let kinds: Vec<&str> = docs.iter().map(|d| d["kind"].as_str().unwrap()).collect();
/// assert_eq!(kinds, ["WasmPlugin", "WasmPlugin", "EnvoyFilter", "VirtualService"]);
/// assert_eq!(docs[0]["spec"]["url"], "oci://ghcr.io/meshwasm/meshwasm-fault:latest");
/// ```
pub fn istio_manifests(translation: &Translation, options: &IstioOptions) -> Vec<Value> {
    let mut out: Vec<Value> = Vec::new();
    for telemetry in &translation.telemetry {
        out.push(telemetry_plugin(telemetry, options));
    }
    for authz in &translation.authz {
        out.push(authz_plugin(authz, options));
    }
    for limit in &translation.rate_limits {
        out.push(rate_limit_plugin(limit, options));
        out.extend(rate_limit_clusters(limit));
    }
    for placement in translation.placements() {
        for filter in Filter::ALL {
            if let Some(config) = filter.config(translation, &placement) {
                let config = qualify_for_istio(filter, config, translation, &placement, options);
                out.push(wasm_plugin(filter, &placement, config, options));
            }
        }
    }
    out.extend(handoff_envoy_filters(translation, options));
    out.extend(istio_routing(translation, options));
    out
}

/// What Istio needs beside the filters, whichever way they are deployed:
/// a companion VirtualService per VirtualService, a companion Telemetry
/// per Telemetry ([`companion_telemetry`]), then the DestinationRules and
/// Gateways as they were given.
pub fn istio_routing(translation: &Translation, options: &IstioOptions) -> Vec<Value> {
    translation
        .services
        .iter()
        .map(|service| companion_virtual_service(service, options))
        .chain(translation.telemetry.iter().map(companion_telemetry))
        .chain(translation.passthrough.iter().cloned())
        .collect()
}

fn labels() -> Value {
    json!({ MANAGED_BY.0: MANAGED_BY.1 })
}

fn placement_namespace(placement: &Placement, options: &IstioOptions) -> String {
    match placement {
        Placement::Mesh => options.namespace.clone(),
        Placement::Gateway { .. } => options.gateway_namespace.clone(),
    }
}

/// One WasmPlugin.
///
/// # Examples
///
/// ```
/// use envoyfilter::render::{wasm_plugin, Filter, IstioOptions};
/// use envoyfilter::translate::Placement;
/// use serde_json::json;
///
/// let plugin = wasm_plugin(Filter::Router, &Placement::Mesh, json!({"hosts": ["*"]}), &IstioOptions::default());
/// assert_eq!(plugin["spec"]["phase"], "STATS");
/// assert_eq!(plugin["spec"]["match"][0]["mode"], "CLIENT"); // VirtualServices apply to outbound calls
/// assert_eq!(plugin["spec"]["pluginConfig"]["hosts"][0], "*");
/// ```
pub fn wasm_plugin(
    filter: Filter,
    placement: &Placement,
    config: Value,
    options: &IstioOptions,
) -> Value {
    let targets = match placement {
        _ if !options.target_refs.is_empty() => Targets::Refs,
        Placement::Gateway { selector, .. } => Targets::Labels(selector),
        Placement::Mesh => Targets::Namespace,
    };
    let mode = (*placement == Placement::Mesh).then(|| json!([{"mode": "CLIENT"}]));
    plugin_resource(
        filter,
        format!("{}-{}", filter.crate_name(), placement.slug()),
        placement_namespace(placement, options),
        targets,
        filter.default_order(),
        mode,
        config,
        options,
    )
}

/// The phase and priority of a local rate limit's WasmPlugin: AUTHN when
/// the EnvoyFilter inserted it first, else the filter's default (STATS,
/// before meshwasm's fault filter and router).
pub fn rate_limit_order(limit: &RateLimitFilter) -> (Phase, i32) {
    if limit.first {
        (Phase::Authn, Filter::RateLimit.default_order().1)
    } else {
        Filter::RateLimit.default_order()
    }
}

/// The WasmPlugin of a rate limit: in the EnvoyFilter's namespace,
/// selecting its `workloadSelector`, on the traffic its patch's context
/// and port picked (`SIDECAR_INBOUND` is `mode: SERVER`,
/// `SIDECAR_OUTBOUND` is `CLIENT`), with the `LocalRateLimit`, the
/// (global) `RateLimit`, or `{"local": ..., "global": ...}` as
/// `pluginConfig`.
///
/// # Examples
///
/// ```
/// use envoyfilter::render::{rate_limit_plugin, IstioOptions};
/// use envoyfilter::translate::{translate, Options};
///
/// let t = translate(include_str!("../../examples/virtual-services/local-rate-limit.yaml"), &Options::default()).unwrap();
/// let plugin = rate_limit_plugin(&t.rate_limits[0], &IstioOptions::default());
/// assert_eq!(plugin["spec"]["url"], "oci://ghcr.io/meshwasm/meshwasm-rate-limit:latest");
/// assert_eq!(plugin["spec"]["selector"]["matchLabels"]["app"], "productpage");
/// assert_eq!(plugin["spec"]["match"][0]["mode"], "SERVER");
/// assert_eq!(plugin["spec"]["pluginConfig"]["token_bucket"]["max_tokens"], 4);
/// ```
pub fn rate_limit_plugin(limit: &RateLimitFilter, options: &IstioOptions) -> Value {
    let filter = Filter::RateLimit;
    let mut selector = Map::new();
    let mode = match limit.context.as_str() {
        "SIDECAR_INBOUND" => Some("SERVER"),
        "SIDECAR_OUTBOUND" => Some("CLIENT"),
        _ => None,
    };
    if let Some(mode) = mode {
        selector.insert("mode".into(), json!(mode));
    }
    if let Some(port) = limit.port {
        selector.insert("ports".into(), json!([{"number": port}]));
    }
    let matches = (!selector.is_empty()).then(|| json!([Value::Object(selector)]));
    // The EnvoyFilter's workloadSelector is the user's choice of
    // workloads; `target_refs` only stand in when it selected none.
    let targets = match () {
        _ if !limit.selector.is_empty() => Targets::Labels(&limit.selector),
        _ if !options.target_refs.is_empty() => Targets::Refs,
        _ => Targets::Namespace,
    };
    plugin_resource(
        filter,
        format!("{}-{}", filter.crate_name(), limit.name),
        limit.namespace.clone(),
        targets,
        rate_limit_order(limit),
        matches,
        limit.config.clone(),
        options,
    )
}

/// The WasmPlugin of the AuthorizationPolicies on one set of workloads:
/// in their namespace, selecting their `selector.matchLabels` (or naming
/// their `targetRefs`), in phase AUTHZ where Istio's RBAC filter runs, on
/// inbound traffic (`mode: SERVER`) as Istio enforces AuthorizationPolicies,
/// or on all of a gateway's listeners, with `{"policies": [...]}` as
/// `pluginConfig`.
///
/// # Examples
///
/// ```
/// use envoyfilter::render::{authz_plugin, IstioOptions};
/// use envoyfilter::translate::{translate, Options};
///
/// let t = translate(include_str!("../../examples/virtual-services/deny-admin.yaml"), &Options::default()).unwrap();
/// let plugin = authz_plugin(&t.authz[0], &IstioOptions::default());
/// assert_eq!(plugin["spec"]["url"], "oci://ghcr.io/meshwasm/meshwasm-header-match:latest");
/// assert_eq!(plugin["spec"]["phase"], "AUTHZ");
/// assert_eq!(plugin["spec"]["selector"]["matchLabels"]["app"], "httpbin");
/// assert_eq!(plugin["spec"]["match"][0]["mode"], "SERVER");
/// assert_eq!(plugin["spec"]["pluginConfig"]["policies"][0]["action"], "DENY");
/// ```
pub fn authz_plugin(authz: &AuthzFilter, options: &IstioOptions) -> Value {
    let filter = Filter::HeaderMatch;
    let targets = match () {
        _ if !authz.target_refs.is_empty() => Targets::Given(&authz.target_refs),
        _ if !authz.selector.is_empty() => Targets::Labels(&authz.selector),
        // A mesh-wide policy stays mesh-wide, whatever --target-ref says.
        _ if !authz.mesh_wide && !options.target_refs.is_empty() => Targets::Refs,
        _ => Targets::Namespace,
    };
    // A gateway's listeners are Istio's CLIENT class: no mode picks them all.
    let matches = (!authz.gateway).then(|| json!([{"mode": "SERVER"}]));
    plugin_resource(
        filter,
        format!("{}-{}", filter.crate_name(), authz.name),
        authz.namespace.clone(),
        targets,
        filter.default_order(),
        matches,
        authz.config.clone(),
        options,
    )
}

/// The WasmPlugin of a Telemetry: in its namespace, selecting its
/// `selector.matchLabels` (or naming its `targetRefs`; neither for every
/// workload of the namespace, or of the mesh from the root namespace), on
/// all traffic (no `match`: the filter reports as `source` on outbound and
/// `destination` on inbound listeners, as Istio does), in phase STATS
/// priority 40, before meshwasm's other STATS filters, with the spec as
/// `pluginConfig`; `type: NETWORK` for `meshwasm.filter: network`.
///
/// # Examples
///
/// ```
/// use envoyfilter::render::{telemetry_plugin, IstioOptions};
/// use envoyfilter::translate::{translate, Options};
///
/// let yaml = "apiVersion: telemetry.istio.io/v1\nkind: Telemetry\nmetadata: {name: logs, namespace: shop}\nspec:\n  selector: {matchLabels: {app: cart}}\n  accessLogging: [{providers: [{name: envoy}]}]\n";
/// let t = translate(yaml, &Options::default()).unwrap();
/// let plugin = telemetry_plugin(&t.telemetry[0], &IstioOptions::default());
/// assert_eq!(plugin["metadata"]["name"], "meshwasm-telemetry-logs");
/// assert_eq!((&plugin["spec"]["phase"], &plugin["spec"]["priority"]), (&"STATS".into(), &40.into()));
/// assert_eq!(plugin["spec"]["type"], "HTTP");
/// assert_eq!(plugin["spec"]["selector"]["matchLabels"]["app"], "cart");
/// assert!(plugin["spec"]["pluginConfig"].get("selector").is_none());
/// ```
pub fn telemetry_plugin(telemetry: &TelemetryFilter, options: &IstioOptions) -> Value {
    let filter = Filter::Telemetry;
    let targets = match () {
        _ if !telemetry.target_refs.is_empty() => Targets::Given(&telemetry.target_refs),
        _ if !telemetry.selector.is_empty() => Targets::Labels(&telemetry.selector),
        // A mesh-wide Telemetry stays mesh-wide, whatever --target-ref says.
        _ if !telemetry.mesh_wide && !options.target_refs.is_empty() => Targets::Refs,
        _ => Targets::Namespace,
    };
    let mut plugin = plugin_resource(
        filter,
        format!("{}-{}", filter.crate_name(), telemetry.name),
        telemetry.namespace.clone(),
        targets,
        filter.default_order(),
        None,
        telemetry.config.clone(),
        options,
    );
    if telemetry.network {
        plugin["spec"]["type"] = json!("NETWORK");
    }
    plugin
}

/// The Telemetry that goes to Istio in place of the user's: the same name,
/// namespace and workloads (so `kubectl apply` replaces it), with Istio's
/// own metrics turned off there, since the telemetry filter reports the
/// same `istio_*` families and Prometheus would get every series twice;
/// Istio's access logs off too when the user's Telemetry configures
/// `accessLogging` (the filter writes them); `tracing` as written, since
/// Envoy's tracer, which Istio configures, still reports the spans.
///
/// # Examples
///
/// ```
/// use envoyfilter::render::companion_telemetry;
/// use envoyfilter::translate::{translate, Options};
///
/// let yaml = "apiVersion: telemetry.istio.io/v1\nkind: Telemetry\nmetadata: {name: logs, namespace: shop}\nspec:\n  accessLogging: [{providers: [{name: envoy}]}]\n";
/// let t = translate(yaml, &Options::default()).unwrap();
/// let companion = companion_telemetry(&t.telemetry[0]);
/// assert_eq!(companion["metadata"]["name"], "logs");
/// assert_eq!(companion["spec"]["metrics"][0]["overrides"][0]["disabled"], true);
/// assert_eq!(companion["spec"]["accessLogging"][0]["disabled"], true);
/// ```
pub fn companion_telemetry(telemetry: &TelemetryFilter) -> Value {
    let mut spec = Map::new();
    if !telemetry.target_refs.is_empty() {
        spec.insert("targetRefs".into(), json!(telemetry.target_refs));
    } else if !telemetry.selector.is_empty() {
        spec.insert(
            "selector".into(),
            json!({ "matchLabels": telemetry.selector }),
        );
    }
    spec.insert(
        "metrics".into(),
        json!([{"providers": [{"name": "prometheus"}], "overrides": [{"disabled": true}]}]),
    );
    if telemetry.config.get("accessLogging").is_some() {
        spec.insert("accessLogging".into(), json!([{"disabled": true}]));
    }
    if let Some(tracing) = &telemetry.tracing {
        spec.insert("tracing".into(), tracing.clone());
    }
    json!({
        "apiVersion": "telemetry.istio.io/v1",
        "kind": "Telemetry",
        "metadata": {
            "name": telemetry.name,
            "namespace": telemetry.namespace,
            "labels": labels(),
        },
        "spec": Value::Object(spec),
    })
}

/// The EnvoyFilter that keeps the `CLUSTER` patches of the EnvoyFilters a
/// rate limit replaces (a rate limit service's cluster, which a WasmPlugin
/// cannot add), as written, on the same workloads; none without them.
///
/// # Examples
///
/// ```
/// use envoyfilter::render::rate_limit_clusters;
/// use envoyfilter::translate::{translate, Options};
///
/// let t = translate(include_str!("../../examples/virtual-services/global-rate-limit.yaml"), &Options::default()).unwrap();
/// assert!(rate_limit_clusters(&t.rate_limits[0]).is_none()); // the mesh's own cluster
/// ```
pub fn rate_limit_clusters(limit: &RateLimitFilter) -> Option<Value> {
    if limit.cluster_patches.is_empty() {
        return None;
    }
    let mut spec = Map::new();
    if !limit.selector.is_empty() {
        spec.insert(
            "workloadSelector".into(),
            json!({ "labels": limit.selector }),
        );
    }
    spec.insert("configPatches".into(), json!(limit.cluster_patches));
    Some(json!({
        "apiVersion": "networking.istio.io/v1alpha3",
        "kind": "EnvoyFilter",
        "metadata": {
            "name": format!("{}-{}-cluster", Filter::RateLimit.crate_name(), limit.name),
            "namespace": limit.namespace,
            "labels": labels(),
        },
        "spec": Value::Object(spec),
    }))
}

/// Which workloads a WasmPlugin selects.
enum Targets<'a> {
    /// Every workload of its namespace.
    Namespace,
    /// Those with these labels.
    Labels(&'a BTreeMap<String, String>),
    /// The options' `target_refs`.
    Refs,
    /// These `targetRefs`, as the user wrote them.
    Given(&'a [Value]),
}

#[allow(clippy::too_many_arguments)]
fn plugin_resource(
    filter: Filter,
    name: String,
    namespace: String,
    targets: Targets<'_>,
    (phase, priority): (Phase, i32),
    matches: Option<Value>,
    config: Value,
    options: &IstioOptions,
) -> Value {
    let mut spec = Map::new();
    match targets {
        Targets::Labels(selector) => {
            spec.insert("selector".into(), json!({ "matchLabels": selector }));
        }
        Targets::Refs => {
            let refs: Vec<Value> = options
                .target_refs
                .iter()
                .map(|(kind, name)| {
                    let group = if kind == "Service" {
                        ""
                    } else {
                        "gateway.networking.k8s.io"
                    };
                    json!({"group": group, "kind": kind, "name": name})
                })
                .collect();
            spec.insert("targetRefs".into(), Value::Array(refs));
        }
        Targets::Given(refs) => {
            spec.insert("targetRefs".into(), Value::Array(refs.to_vec()));
        }
        Targets::Namespace => {}
    }
    spec.insert("url".into(), json!(options.url(filter)));
    if let Some(sha) = options.sha256(filter) {
        spec.insert("sha256".into(), json!(sha));
    }
    if let Some(policy) = &options.pull_policy {
        spec.insert("imagePullPolicy".into(), json!(policy));
    }
    if let Some(secret) = &options.pull_secret {
        spec.insert("imagePullSecret".into(), json!(secret));
    }
    spec.insert("pluginName".into(), json!(filter.plugin_name()));
    spec.insert("phase".into(), json!(phase.to_string()));
    spec.insert("priority".into(), json!(priority));
    spec.insert(
        "failStrategy".into(),
        json!(options.fail_strategy.to_string()),
    );
    spec.insert("type".into(), json!("HTTP"));
    if let Some(matches) = matches {
        spec.insert("match".into(), matches);
    }
    if !options.vm_env.is_empty() {
        let env: Vec<Value> = options
            .vm_env
            .iter()
            .map(|(name, value)| json!({"name": name, "valueFrom": "INLINE", "value": value}))
            .collect();
        spec.insert("vmConfig".into(), json!({ "env": env }));
    }
    spec.insert("pluginConfig".into(), config);
    json!({
        "apiVersion": "extensions.istio.io/v1alpha1",
        "kind": "WasmPlugin",
        "metadata": {
            "name": name,
            "namespace": namespace,
            "labels": labels(),
        },
        "spec": Value::Object(spec),
    })
}

/// The router's configuration for Istio: destination hosts made FQDNs, so
/// the clusters it names (mirror targets) are Istio's
/// `outbound|PORT|SUBSET|FQDN` clusters.
fn qualify_for_istio(
    filter: Filter,
    config: Value,
    translation: &Translation,
    placement: &Placement,
    options: &IstioOptions,
) -> Value {
    if filter != Filter::Router {
        return config;
    }
    let namespaces: Vec<&str> = translation
        .services
        .iter()
        .filter(|s| s.placements.contains(placement))
        .map(|s| s.namespace.as_str())
        .collect();
    let qualify_spec = |spec: &mut Value, ns: &str| {
        for_each_destination(spec, |d| {
            if let Some(host) = d.get("host").and_then(Value::as_str)
                && !host.contains('.')
            {
                let fqdn = fqdn(host, ns, &options.cluster_domain);
                d.insert("host".into(), json!(fqdn));
            }
        });
    };
    let mut config = config;
    match config.get_mut(meshwasm_core::virtual_service::LIST_KEY) {
        Some(Value::Array(specs)) => {
            for (spec, ns) in specs.iter_mut().zip(&namespaces) {
                qualify_spec(spec, ns);
            }
        }
        _ => {
            if let Some(ns) = namespaces.first() {
                qualify_spec(&mut config, ns);
            }
        }
    }
    config
}

/// Calls `f` on every `destination` and mirror object of a spec.
fn for_each_destination(spec: &mut Value, mut f: impl FnMut(&mut Map<String, Value>)) {
    let Some(routes) = spec.get_mut("http").and_then(Value::as_array_mut) else {
        return;
    };
    for route in routes {
        if let Some(ds) = route.get_mut("route").and_then(Value::as_array_mut) {
            for d in ds {
                if let Some(Value::Object(dest)) = d.get_mut("destination") {
                    f(dest);
                }
            }
        }
        if let Some(Value::Object(mirror)) = route.get_mut("mirror") {
            f(mirror);
        }
        if let Some(ms) = route.get_mut("mirrors").and_then(Value::as_array_mut) {
            for m in ms {
                if let Some(Value::Object(dest)) = m.get_mut("destination") {
                    f(dest);
                }
            }
        }
    }
}

/// The VirtualService that makes Istio follow the router's choice.
///
/// Istio's own route for the hosts still runs after the filter; this one
/// replaces the user's VirtualService (apply it instead, not beside), with
/// the same hosts and gateways and one rule per destination, matched on
/// the cluster header the router sets. Faults, rewrites, retries and the
/// rest are done by the filters, so they are not repeated here.
pub fn companion_virtual_service(
    service: &crate::translate::Service,
    options: &IstioOptions,
) -> Value {
    let ns = &service.namespace;
    let header = service.spec["meshwasm"]["router"]["clusterHeader"]
        .as_str()
        .unwrap_or(DEFAULT_CLUSTER_HEADER)
        .to_owned();
    let template = service.spec["meshwasm"]["router"]["clusterTemplate"]
        .as_str()
        .unwrap_or(DEFAULT_CLUSTER_TEMPLATE);
    let mut http = Vec::new();
    for upstream in service.upstreams.iter().filter(|u| !u.mirror) {
        let mut qualified = upstream.destination();
        qualified.host = fqdn(&qualified.host, ns, &options.cluster_domain);
        let cluster = cluster_name(template, &qualified);
        let mut destination = Map::new();
        destination.insert("host".into(), json!(upstream.host));
        if let Some(subset) = &upstream.subset {
            destination.insert("subset".into(), json!(subset));
        }
        if let Some(port) = upstream.port {
            destination.insert("port".into(), json!({"number": port}));
        }
        http.push(json!({
            "name": cluster,
            "match": [{"headers": {header.clone(): {"exact": cluster}}}],
            "route": [{"destination": Value::Object(destination)}],
        }));
    }
    let mut spec = Map::new();
    spec.insert("hosts".into(), json!(service.hosts));
    if !service.gateways.is_empty() {
        spec.insert("gateways".into(), json!(service.gateways));
    }
    spec.insert("http".into(), Value::Array(http));
    let mut metadata = Map::new();
    metadata.insert("name".into(), json!(service.source.name));
    // Written out even when the input left it to kubectl: the WasmPlugins
    // beside it name theirs, and kubectl refuses a mix under `-n`.
    metadata.insert("namespace".into(), json!(ns));
    metadata.insert("labels".into(), labels());
    json!({
        "apiVersion": "networking.istio.io/v1",
        "kind": "VirtualService",
        "metadata": Value::Object(metadata),
        "spec": Value::Object(spec),
    })
}

/// Where Envoy gets a module.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Code {
    /// A file on the proxy's filesystem.
    Local {
        /// Its path.
        filename: String,
    },
    /// Fetched by Envoy (or, for `oci://`, by Istio's agent) from a url.
    Remote {
        /// `https://` or `oci://` url.
        uri: String,
        /// Envoy cluster serving the url (ignored for `oci://`, which Istio's agent fetches).
        cluster: String,
        /// Module digest (hex) Envoy checks.
        sha256: Option<String>,
    },
}

/// One filter entry for an Envoy `http_filters` list.
///
/// # Examples
///
/// ```
/// use envoyfilter::render::{http_filter, Code, Filter};
/// use serde_json::json;
///
/// let entry = http_filter(Filter::Router, &json!({"hosts": ["*"]}), &Code::Local { filename: "meshwasm_router.wasm".into() });
/// assert_eq!(entry["name"], "meshwasm.router");
/// let config = &entry["typed_config"]["config"];
/// assert_eq!(config["root_id"], "meshwasm.router");
/// assert_eq!(config["configuration"]["value"], r#"{"hosts":["*"]}"#);
/// assert_eq!(config["vm_config"]["runtime"], "envoy.wasm.runtime.v8");
/// ```
pub fn http_filter(filter: Filter, config: &Value, code: &Code) -> Value {
    json!({
        "name": filter.plugin_name(),
        "typed_config": {
            "@type": WASM_FILTER_TYPE,
            "config": plugin_config(filter, config, code),
        },
    })
}

fn plugin_config(filter: Filter, config: &Value, code: &Code) -> Value {
    let code = match code {
        Code::Local { filename } => json!({"local": {"filename": filename}}),
        Code::Remote {
            uri,
            cluster,
            sha256,
        } => {
            let mut remote =
                json!({"http_uri": {"uri": uri, "cluster": cluster, "timeout": "30s"}});
            if let Some(sha) = sha256 {
                remote["sha256"] = json!(sha.strip_prefix("sha256:").unwrap_or(sha));
            }
            json!({ "remote": remote })
        }
    };
    json!({
        "name": filter.plugin_name(),
        "root_id": filter.plugin_name(),
        "configuration": {
            "@type": "type.googleapis.com/google.protobuf.StringValue",
            "value": config.to_string(),
        },
        // The filters share one VM per worker: it saves memory and costs
        // nothing per request (see DESIGN.md).
        "vm_config": {
            "vm_id": "meshwasm",
            "runtime": "envoy.wasm.runtime.v8",
            "code": code,
        },
    })
}

/// Which Istio listeners an EnvoyFilter patches.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum PatchContext {
    /// Sidecars' outbound listeners (VirtualService routing applies here).
    SidecarOutbound,
    /// Sidecars' inbound listeners.
    SidecarInbound,
    /// Gateways.
    Gateway,
}

impl fmt::Display for PatchContext {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(match self {
            PatchContext::SidecarOutbound => "SIDECAR_OUTBOUND",
            PatchContext::SidecarInbound => "SIDECAR_INBOUND",
            PatchContext::Gateway => "GATEWAY",
        })
    }
}

/// The EnvoyFilter form.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum EnvoyFilterForm {
    /// The filter inline in an `HTTP_FILTER` patch, with its code.
    Inline(Code),
    /// An `EXTENSION_CONFIG` patch plus a filter that points at it with
    /// `config_discovery`; Istio's agent fetches `oci://` and `https://`
    /// code for it.
    Ecds {
        /// Module url.
        uri: String,
        /// Module digest.
        sha256: Option<String>,
    },
}

/// The placement's context, namespace and workload labels.
fn envoy_filter_target(
    placement: &Placement,
    options: &IstioOptions,
) -> (PatchContext, String, Option<BTreeMap<String, String>>) {
    let (context, selector) = match placement {
        Placement::Mesh => (PatchContext::SidecarOutbound, None),
        Placement::Gateway { selector, .. } => (PatchContext::Gateway, Some(selector.clone())),
    };
    (context, placement_namespace(placement, options), selector)
}

/// An EnvoyFilter that inserts one filter before Envoy's router, for each
/// placement of the translation where the filter has work.
///
/// # Examples
///
/// ```
/// use envoyfilter::render::{envoy_filters, Code, EnvoyFilterForm, IstioOptions};
/// use envoyfilter::translate::{translate, Options};
///
/// let t = translate(include_str!("../../examples/virtual-services/canary-split.yaml"), &Options::default()).unwrap();
/// let form = EnvoyFilterForm::Inline(Code::Local { filename: "/var/local/lib/wasm/meshwasm_router.wasm".into() });
/// let docs = envoy_filters(&t, &form, &IstioOptions::default());
/// let patch = &docs[0]["spec"]["configPatches"][0];
/// assert_eq!(patch["patch"]["operation"], "INSERT_BEFORE");
/// assert_eq!(patch["match"]["context"], "GATEWAY");
/// ```
pub fn envoy_filters(
    translation: &Translation,
    form: &EnvoyFilterForm,
    options: &IstioOptions,
) -> Vec<Value> {
    let mut out: Vec<Value> = translation
        .telemetry
        .iter()
        .map(|telemetry| telemetry_envoy_filter(telemetry, form))
        .collect();
    out.extend(
        translation
            .authz
            .iter()
            .map(|authz| authz_envoy_filter(authz, form)),
    );
    out.extend(
        translation
            .rate_limits
            .iter()
            .map(|limit| rate_limit_envoy_filter(limit, form)),
    );
    for placement in translation.placements() {
        for filter in Filter::ALL {
            let Some(config) = filter.config(translation, &placement) else {
                continue;
            };
            let config = qualify_for_istio(filter, config, translation, &placement, options);
            let (context, namespace, selector) = envoy_filter_target(&placement, options);
            let (_, priority) = filter.default_order();
            let patches = form_patches(filter, &config, form, |value| {
                insert_before_router(&context, value)
            });
            let mut spec = Map::new();
            if let Some(labels) = &selector {
                spec.insert("workloadSelector".into(), json!({ "labels": labels }));
            }
            // EnvoyFilters apply in priority order (lower first): the fault filter first.
            spec.insert("priority".into(), json!(-priority));
            spec.insert("configPatches".into(), Value::Array(patches));
            out.push(json!({
                "apiVersion": "networking.istio.io/v1alpha3",
                "kind": "EnvoyFilter",
                "metadata": {
                    "name": format!("{}-{}", filter.crate_name(), placement.slug()),
                    "namespace": namespace,
                    "labels": labels(),
                },
                "spec": Value::Object(spec),
            }));
        }
    }
    out.extend(handoff_envoy_filters(translation, options));
    out.iter_mut()
        .for_each(|doc| set_failure_policy(doc, options.fail_strategy));
    out
}

/// The EnvoyFilter of the AuthorizationPolicies on one set of workloads:
/// the header-match filter before Envoy's router on the sidecars' inbound
/// listeners (a gateway's, for a gateway), selecting what the policies
/// select.
///
/// # Examples
///
/// ```
/// use envoyfilter::render::{authz_envoy_filter, Code, EnvoyFilterForm};
/// use envoyfilter::translate::{translate, Options};
///
/// let t = translate(include_str!("../../examples/virtual-services/deny-admin.yaml"), &Options::default()).unwrap();
/// let form = EnvoyFilterForm::Inline(Code::Local { filename: "/var/local/lib/wasm/{file}".into() });
/// let doc = authz_envoy_filter(&t.authz[0], &form);
/// assert_eq!(doc["spec"]["workloadSelector"]["labels"]["app"], "httpbin");
/// let patch = &doc["spec"]["configPatches"][0];
/// assert_eq!(patch["match"]["context"], "SIDECAR_INBOUND");
/// assert_eq!(patch["patch"]["value"]["name"], "meshwasm.header-match");
/// ```
pub fn authz_envoy_filter(authz: &AuthzFilter, form: &EnvoyFilterForm) -> Value {
    let filter = Filter::HeaderMatch;
    let context = if authz.gateway {
        PatchContext::Gateway
    } else {
        PatchContext::SidecarInbound
    };
    let mut spec = Map::new();
    if !authz.target_refs.is_empty() {
        spec.insert("targetRefs".into(), json!(authz.target_refs));
    } else if !authz.selector.is_empty() {
        spec.insert(
            "workloadSelector".into(),
            json!({ "labels": authz.selector }),
        );
    }
    spec.insert("priority".into(), json!(-filter.default_order().1));
    spec.insert(
        "configPatches".into(),
        Value::Array(form_patches(filter, &authz.config, form, |value| {
            insert_before_router(&context, value)
        })),
    );
    json!({
        "apiVersion": "networking.istio.io/v1alpha3",
        "kind": "EnvoyFilter",
        "metadata": {
            "name": format!("{}-{}", filter.crate_name(), authz.name),
            "namespace": authz.namespace,
            "labels": labels(),
        },
        "spec": Value::Object(spec),
    })
}

/// The EnvoyFilter of a Telemetry: the telemetry filter on every listener
/// (`context: ANY`: a sidecar's inbound and outbound ones, a gateway's),
/// selecting what the Telemetry selects. The HTTP filter goes before
/// Envoy's router with priority -40, so it is applied first and lands
/// ahead of meshwasm's other filters; the network filter (`meshwasm.filter:
/// network`) goes before `envoy.filters.network.tcp_proxy`.
///
/// # Examples
///
/// ```
/// use envoyfilter::render::{telemetry_envoy_filter, Code, EnvoyFilterForm};
/// use envoyfilter::translate::{translate, Options};
///
/// let yaml = "apiVersion: telemetry.istio.io/v1\nkind: Telemetry\nmetadata: {name: tcp, namespace: shop}\nspec:\n  selector: {matchLabels: {app: db}}\n  meshwasm: {filter: network}\n";
/// let t = translate(yaml, &Options::default()).unwrap();
/// let form = EnvoyFilterForm::Inline(Code::Local { filename: "/var/local/lib/wasm/{file}".into() });
/// let doc = telemetry_envoy_filter(&t.telemetry[0], &form);
/// let patch = &doc["spec"]["configPatches"][0];
/// assert_eq!(patch["applyTo"], "NETWORK_FILTER");
/// assert_eq!(patch["match"]["listener"]["filterChain"]["filter"]["name"], "envoy.filters.network.tcp_proxy");
/// assert_eq!(patch["patch"]["value"]["typed_config"]["@type"], envoyfilter::render::WASM_NETWORK_FILTER_TYPE);
/// ```
pub fn telemetry_envoy_filter(telemetry: &TelemetryFilter, form: &EnvoyFilterForm) -> Value {
    let filter = Filter::Telemetry;
    let mut spec = Map::new();
    if !telemetry.target_refs.is_empty() {
        spec.insert("targetRefs".into(), json!(telemetry.target_refs));
    } else if !telemetry.selector.is_empty() {
        spec.insert(
            "workloadSelector".into(),
            json!({ "labels": telemetry.selector }),
        );
    }
    spec.insert("priority".into(), json!(-filter.default_order().1));
    let patches = if telemetry.network {
        network_form_patches(filter, &telemetry.config, form, |value| {
            json!({
                "applyTo": "NETWORK_FILTER",
                "match": {
                    "context": "ANY",
                    "listener": {"filterChain": {"filter": {"name": "envoy.filters.network.tcp_proxy"}}},
                },
                "patch": {"operation": "INSERT_BEFORE", "value": value},
            })
        })
    } else {
        form_patches(filter, &telemetry.config, form, |value| {
            insert_before_router(&"ANY", value)
        })
    };
    spec.insert("configPatches".into(), Value::Array(patches));
    json!({
        "apiVersion": "networking.istio.io/v1alpha3",
        "kind": "EnvoyFilter",
        "metadata": {
            "name": format!("{}-{}", filter.crate_name(), telemetry.name),
            "namespace": telemetry.namespace,
            "labels": labels(),
        },
        "spec": Value::Object(spec),
    })
}

/// The EnvoyFilter that puts the rate-limit filter where the user's
/// EnvoyFilter put Envoy's `local_ratelimit`: the same workloads, the same
/// patch `match` and operation, the Wasm filter in its place.
///
/// # Examples
///
/// ```
/// use envoyfilter::render::{rate_limit_envoy_filter, Code, EnvoyFilterForm};
/// use envoyfilter::translate::{translate, Options};
///
/// let t = translate(include_str!("../../examples/virtual-services/local-rate-limit.yaml"), &Options::default()).unwrap();
/// let form = EnvoyFilterForm::Inline(Code::Local { filename: "/var/local/lib/wasm/{file}".into() });
/// let doc = rate_limit_envoy_filter(&t.rate_limits[0], &form);
/// let patch = &doc["spec"]["configPatches"][0];
/// assert_eq!(patch["match"]["context"], "SIDECAR_INBOUND");
/// assert_eq!(patch["patch"]["value"]["name"], "meshwasm.rate-limit");
/// ```
pub fn rate_limit_envoy_filter(limit: &RateLimitFilter, form: &EnvoyFilterForm) -> Value {
    let filter = Filter::RateLimit;
    let insert = |value: Value| {
        json!({
            "applyTo": "HTTP_FILTER",
            "match": limit.patch_match,
            "patch": {"operation": limit.operation, "value": value},
        })
    };
    let mut spec = Map::new();
    if !limit.selector.is_empty() {
        spec.insert(
            "workloadSelector".into(),
            json!({ "labels": limit.selector }),
        );
    }
    spec.insert("priority".into(), json!(-filter.default_order().1));
    // The rate limit service's cluster, if the user's EnvoyFilter added it.
    let mut patches = form_patches(filter, &limit.config, form, insert);
    patches.extend(limit.cluster_patches.iter().cloned());
    spec.insert("configPatches".into(), Value::Array(patches));
    json!({
        "apiVersion": "networking.istio.io/v1alpha3",
        "kind": "EnvoyFilter",
        "metadata": {
            "name": format!("{}-{}", filter.crate_name(), limit.name),
            "namespace": limit.namespace,
            "labels": labels(),
        },
        "spec": Value::Object(spec),
    })
}

/// The patches that put one filter in a chain in the given form: the
/// filter inline, or an `EXTENSION_CONFIG` and a filter that discovers it.
/// `insert` wraps the filter entry in the `HTTP_FILTER` patch.
/// An `HTTP_FILTER` patch that inserts `value` before Envoy's router on
/// the listeners of `context`.
fn insert_before_router(context: &impl std::fmt::Display, value: Value) -> Value {
    json!({
        "applyTo": "HTTP_FILTER",
        "match": {
            "context": context.to_string(),
            "listener": {"filterChain": {"filter": {
                "name": "envoy.filters.network.http_connection_manager",
                "subFilter": {"name": "envoy.filters.http.router"},
            }}},
        },
        "patch": {"operation": "INSERT_BEFORE", "value": value},
    })
}

fn form_patches(
    filter: Filter,
    config: &Value,
    form: &EnvoyFilterForm,
    insert: impl Fn(Value) -> Value,
) -> Vec<Value> {
    typed_form_patches(filter, WASM_FILTER_TYPE, config, form, insert)
}

/// [`form_patches`] for Envoy's network Wasm filter: the `NETWORK_FILTER`
/// patch `insert` makes carries the filter inline, or discovers it.
fn network_form_patches(
    filter: Filter,
    config: &Value,
    form: &EnvoyFilterForm,
    insert: impl Fn(Value) -> Value,
) -> Vec<Value> {
    typed_form_patches(filter, WASM_NETWORK_FILTER_TYPE, config, form, insert)
}

fn typed_form_patches(
    filter: Filter,
    type_url: &str,
    config: &Value,
    form: &EnvoyFilterForm,
    insert: impl Fn(Value) -> Value,
) -> Vec<Value> {
    match form {
        EnvoyFilterForm::Inline(code) => {
            let code = match code {
                Code::Local { filename } => Code::Local {
                    filename: filename.replace("{file}", filter.wasm_file()),
                },
                Code::Remote {
                    uri,
                    cluster,
                    sha256,
                } => Code::Remote {
                    uri: uri.replace("{file}", filter.wasm_file()),
                    cluster: cluster.clone(),
                    sha256: sha256.clone(),
                },
            };
            vec![insert(json!({
                "name": filter.plugin_name(),
                "typed_config": {
                    "@type": type_url,
                    "config": plugin_config(filter, config, &code),
                },
            }))]
        }
        EnvoyFilterForm::Ecds { uri, sha256 } => {
            let uri = uri
                .replace("{file}", filter.wasm_file())
                .replace("{image}", filter.crate_name());
            let mut remote = json!({"http_uri": {"uri": uri}});
            if let Some(sha) = sha256 {
                remote["sha256"] = json!(sha.strip_prefix("sha256:").unwrap_or(sha));
            }
            let mut typed = json!({
                "@type": type_url,
                "config": plugin_config(filter, config, &Code::Local { filename: String::new() }),
            });
            typed["config"]["vm_config"]["code"] = json!({ "remote": remote });
            // A network filter's extension config has a name of its own:
            // one proxy may discover both the HTTP and the network filter
            // of one module.
            let name = if type_url == WASM_NETWORK_FILTER_TYPE {
                format!("{}.network", filter.plugin_name())
            } else {
                filter.plugin_name().to_owned()
            };
            vec![
                json!({
                    "applyTo": "EXTENSION_CONFIG",
                    "patch": {"operation": "ADD", "value": {
                        "name": name,
                        "typed_config": typed,
                    }},
                }),
                insert(json!({
                    "name": name,
                    "config_discovery": {
                        "config_source": {"ads": {}, "initial_fetch_timeout": "0s"},
                        "type_urls": [type_url],
                    },
                })),
            ]
        }
    }
}

/// Pod annotations that mount a ConfigMap holding the modules into the
/// sidecar, for the inline form with `local` code. Put them on the pod
/// template; create the ConfigMap with
/// `kubectl create configmap meshwasm-filters --from-file=target/wasm32-wasip1/wasm/meshwasm_router.wasm ...`.
///
/// # Examples
///
/// ```
/// let a = envoyfilter::render::user_volume_annotations("meshwasm-filters", "/var/local/lib/wasm");
/// assert!(a["sidecar.istio.io/userVolumeMount"].as_str().unwrap().contains("/var/local/lib/wasm"));
/// ```
pub fn user_volume_annotations(config_map: &str, mount_path: &str) -> Value {
    let volume = json!([{"name": "meshwasm-filters", "configMap": {"name": config_map}}]);
    let mount = json!([{"name": "meshwasm-filters", "mountPath": mount_path, "readOnly": true}]);
    json!({
        "sidecar.istio.io/userVolume": volume.to_string(),
        "sidecar.istio.io/userVolumeMount": mount.to_string(),
    })
}

/// Envoy's type of the early header mutation that strips the hand-off headers.
pub const EARLY_HEADER_MUTATION_TYPE: &str = "type.googleapis.com/envoy.extensions.http.early_header_mutation.header_mutation.v3.HeaderMutation";

/// The connection manager's `early_header_mutation_extensions` that remove,
/// from every incoming request, the headers meshwasm filters hand on to
/// Envoy (see [`meshwasm_core::handoff`]): every `x-meshwasm-*` header,
/// Envoy's router headers for timeouts and retries, and the cluster and
/// subset headers a VirtualService names in `meshwasm.router`.
///
/// They run before Envoy picks a route and before any HTTP filter, so a
/// client cannot choose a cluster even when a filter is skipped (a module
/// that failed to load under `fail_open`, or a trapped VM). An HTTP filter
/// that removes them would not do: Envoy keeps the route it picked before
/// the filters ran unless a filter clears the route cache, and Envoy's
/// `header_mutation` filter does not.
///
/// # Examples
///
/// ```
/// use envoyfilter::translate::{translate, Options};
///
/// let t = translate(include_str!("../../examples/virtual-services/header-routing.yaml"), &Options::default()).unwrap();
/// let early = envoyfilter::render::handoff_header_removal(&t);
/// let mutations = &early[0]["typed_config"]["mutations"];
/// assert_eq!(mutations[0]["remove_on_match"]["key_matcher"]["prefix"], "x-meshwasm-");
/// assert_eq!(mutations[1]["remove"], "x-envoy-upstream-rq-timeout-ms");
/// ```
pub fn handoff_header_removal(translation: &Translation) -> Value {
    let configured: Vec<&str> = translation
        .services
        .iter()
        .flat_map(|s| ["clusterHeader", "subsetHeader"].map(|k| &s.spec["meshwasm"]["router"][k]))
        .filter_map(Value::as_str)
        .collect();
    header_removal(configured)
}

/// The `early_header_mutation_extensions` of [`handoff_header_removal`]
/// for routers whose cluster and subset headers are `configured` (the
/// defaults need not be named: they start with `x-meshwasm-`).
///
/// # Examples
///
/// ```
/// let early = envoyfilter::render::header_removal(["x-route-to"]);
/// let mutations = early[0]["typed_config"]["mutations"].as_array().unwrap();
/// assert_eq!(mutations.last().unwrap()["remove"], "x-route-to");
/// ```
pub fn header_removal<'a>(configured: impl IntoIterator<Item = &'a str>) -> Value {
    let mut mutations =
        vec![json!({"remove_on_match": {"key_matcher": {"prefix": handoff::PREFIX}}})];
    mutations.extend(
        handoff::names_to_remove(configured)
            .into_iter()
            .map(|name| json!({"remove": name})),
    );
    json!([{
        "name": "envoy.http.early_header_mutation.header_mutation",
        "typed_config": {"@type": EARLY_HEADER_MUTATION_TYPE, "mutations": mutations},
    }])
}

/// Envoy's type of the HTTP connection manager.
const HCM_TYPE: &str = "type.googleapis.com/envoy.extensions.filters.network.http_connection_manager.v3.HttpConnectionManager";

/// For Istio: one EnvoyFilter per placement that merges
/// [`handoff_header_removal`] into the connection manager of every
/// listener the filters run on (a sidecar's outbound and inbound listeners,
/// or a gateway's), so that no client-sent `x-meshwasm-cluster` or
/// `x-meshwasm-subset` reaches the router filter, or the companion
/// VirtualService when the filter fails open.
///
/// # Examples
///
/// ```
/// use envoyfilter::render::{handoff_envoy_filters, IstioOptions};
/// use envoyfilter::translate::{translate, Options};
///
/// let t = translate(include_str!("../../examples/virtual-services/canary-split.yaml"), &Options::default()).unwrap();
/// let docs = handoff_envoy_filters(&t, &IstioOptions::default());
/// let patch = &docs[0]["spec"]["configPatches"][0];
/// assert_eq!(patch["applyTo"], "NETWORK_FILTER");
/// assert_eq!(patch["patch"]["operation"], "MERGE");
/// assert!(patch["patch"]["value"]["typed_config"]["early_header_mutation_extensions"].is_array());
/// ```
pub fn handoff_envoy_filters(translation: &Translation, options: &IstioOptions) -> Vec<Value> {
    let removal = handoff_header_removal(translation);
    translation
        .placements()
        .into_iter()
        .map(|placement| {
            let (context, namespace, selector) = envoy_filter_target(&placement, options);
            let contexts = match context {
                PatchContext::SidecarOutbound | PatchContext::SidecarInbound => {
                    vec![PatchContext::SidecarOutbound, PatchContext::SidecarInbound]
                }
                PatchContext::Gateway => vec![PatchContext::Gateway],
            };
            let patches: Vec<Value> = contexts
                .iter()
                .map(|context| {
                    json!({
                        "applyTo": "NETWORK_FILTER",
                        "match": {
                            "context": context.to_string(),
                            "listener": {"filterChain": {"filter": {
                                "name": "envoy.filters.network.http_connection_manager",
                            }}},
                        },
                        "patch": {"operation": "MERGE", "value": {"typed_config": {
                            "@type": HCM_TYPE,
                            "early_header_mutation_extensions": removal,
                        }}},
                    })
                })
                .collect();
            let mut spec = Map::new();
            if let Some(labels) = &selector {
                spec.insert("workloadSelector".into(), json!({ "labels": labels }));
            }
            spec.insert("configPatches".into(), Value::Array(patches));
            json!({
                "apiVersion": "networking.istio.io/v1alpha3",
                "kind": "EnvoyFilter",
                "metadata": {
                    "name": format!("meshwasm-handoff-headers-{}", placement.slug()),
                    "namespace": namespace,
                    "labels": labels(),
                },
                "spec": Value::Object(spec),
            })
        })
        .collect()
}

/// A plain Envoy deployment: listener, routes, filters and clusters.
#[derive(Debug, Clone)]
pub struct EnvoyOptions {
    /// Listener address.
    pub listen: (String, u16),
    /// Admin address.
    pub admin: (String, u16),
    /// Directory holding the built modules, as Envoy sees it.
    pub wasm_dir: String,
    /// The endpoints of each upstream cluster (one address, or several
    /// for the load balancer to spread over), by cluster name or by host
    /// (`reviews` covers every `reviews` cluster); others resolve
    /// `HOST:PORT` (port 80 when the destination has none) by DNS.
    pub upstreams: BTreeMap<String, Vec<(String, u16)>>,
    /// Cluster for requests no VirtualService routes, with its address.
    pub default_cluster: Option<(String, u16)>,
    /// Proxies in front of Envoy whose `x-forwarded-for` and
    /// `x-forwarded-proto` it trusts (Envoy's `xff_num_trusted_hops`, Istio's
    /// `numTrustedProxies`); 0 means Envoy is the edge and takes the client
    /// address and scheme from the connection.
    pub trusted_proxies: u32,
    /// The filters as one module, `meshwasm-mesh` ([`mesh`]).
    pub mesh: bool,
    /// What a filter does when its VM fails, written as each plugin's
    /// `failure_policy`.
    pub fail_strategy: FailStrategy,
    /// A directory, as Envoy sees it, from which Envoy discovers each
    /// filter's configuration (ECDS from files): the bootstrap names a file
    /// there per filter instead of holding the filter, and
    /// [`envoy_discovered_configs`] gives the files. Writing new files
    /// (renamed over the old ones) reconfigures a running Envoy, on every
    /// open connection's next request.
    pub ecds_dir: Option<String>,
}

impl Default for EnvoyOptions {
    fn default() -> Self {
        EnvoyOptions {
            listen: ("0.0.0.0".into(), 10000),
            admin: ("127.0.0.1".into(), 9901),
            wasm_dir: "target/wasm32-wasip1/wasm".into(),
            upstreams: BTreeMap::new(),
            default_cluster: None,
            trusted_proxies: 0,
            mesh: false,
            fail_strategy: FailStrategy::FailReload,
            ecds_dir: None,
        }
    }
}

/// Every cluster a plain Envoy bootstrap renders for the destinations, by
/// name, each once, with the destination it serves.
fn destination_clusters(translation: &Translation) -> Vec<(String, &Upstream)> {
    destination_services(translation)
        .into_iter()
        .map(|(name, upstream, _)| (name, upstream))
        .collect()
}

/// [`destination_clusters`], with the VirtualService that names each first.
fn destination_services(translation: &Translation) -> Vec<(String, &Upstream, &Service)> {
    let mut out: Vec<(String, &Upstream, &Service)> = Vec::new();
    for service in &translation.services {
        let template = service.spec["meshwasm"]["router"]["clusterTemplate"]
            .as_str()
            .unwrap_or(DEFAULT_CLUSTER_TEMPLATE);
        for upstream in &service.upstreams {
            let name = cluster_name(template, &upstream.destination());
            if !out.iter().any(|(n, _, _)| *n == name) {
                out.push((name, upstream, service));
            }
        }
    }
    out
}

/// An `upstreams` entry of [`EnvoyOptions`] that names no cluster and no
/// destination host: a typo that would leave the cluster resolving by DNS.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error(
    "upstream {name:?} is neither a cluster nor a destination host of the input; the clusters are {}, the hosts {}",
    .clusters.join(", "),
    .hosts.join(", ")
)]
pub struct UnknownUpstream {
    /// The name given.
    pub name: String,
    /// The clusters the bootstrap renders.
    pub clusters: Vec<String>,
    /// The destination hosts.
    pub hosts: Vec<String>,
}

/// Checks that every name in `options.upstreams` is a cluster or a host
/// the bootstrap renders.
///
/// # Errors
///
/// The first [`UnknownUpstream`].
///
/// # Examples
///
/// ```
/// use envoyfilter::render::{check_upstreams, EnvoyOptions};
/// use envoyfilter::translate::{translate, Options};
///
/// let t = translate(include_str!("../../examples/virtual-services/canary-split.yaml"), &Options::default()).unwrap();
/// let mut options = EnvoyOptions::default();
/// options.upstreams.insert("outbound|5005|v1|web".into(), vec![("127.0.0.1".into(), 8081)]);
/// options.upstreams.insert("web".into(), vec![("127.0.0.1".into(), 8080)]);
/// assert!(check_upstreams(&t, &options).is_ok());
/// options.upstreams.insert("outbound|5005|v3|web".into(), vec![("127.0.0.1".into(), 8083)]);
/// let err = check_upstreams(&t, &options).unwrap_err();
/// assert_eq!(err.name, "outbound|5005|v3|web");
/// assert_eq!(err.clusters, ["outbound|5005|v1|web", "outbound|5005|v2|web"]);
/// ```
pub fn check_upstreams(
    translation: &Translation,
    options: &EnvoyOptions,
) -> Result<(), UnknownUpstream> {
    let mut clusters: Vec<String> = Vec::new();
    let mut hosts: Vec<String> = Vec::new();
    let destinations = destination_clusters(translation)
        .into_iter()
        .map(|(n, u)| (n, u.host.clone()));
    let entries = external_clusters(translation)
        .into_iter()
        .map(|(n, e)| (n, e.host.clone()));
    let services = translation.service_clusters.iter().map(|c| {
        let host = c
            .address
            .as_ref()
            .map_or(c.name.clone(), |(h, _)| h.clone());
        (c.name.clone(), host)
    });
    let authorizers = translation
        .authz_clusters
        .iter()
        .map(|c| (c.name.clone(), c.service.clone()));
    for (name, host) in destinations
        .chain(entries)
        .chain(services)
        .chain(authorizers)
    {
        if !clusters.contains(&name) {
            clusters.push(name);
        }
        if !hosts.contains(&host) {
            hosts.push(host);
        }
    }
    for name in options.upstreams.keys() {
        if !clusters.contains(name) && !hosts.contains(name) {
            return Err(UnknownUpstream {
                name: name.clone(),
                clusters,
                hosts,
            });
        }
    }
    Ok(())
}

/// A complete Envoy bootstrap for a translation's mesh placement (and
/// every gateway's, since plain Envoy has one listener): the filters, the
/// route that follows the router's cluster header, and one cluster per
/// destination.
///
/// # Examples
///
/// ```
/// use envoyfilter::render::{envoy_bootstrap, EnvoyOptions};
/// use envoyfilter::translate::{translate, Options};
///
/// let t = translate(include_str!("../../examples/virtual-services/canary-split.yaml"), &Options::default()).unwrap();
/// let bootstrap = envoy_bootstrap(&t, &EnvoyOptions::default());
/// let clusters = bootstrap["static_resources"]["clusters"].as_array().unwrap();
/// let names: Vec<&str> = clusters.iter().map(|c| c["name"].as_str().unwrap()).collect();
/// assert_eq!(names, ["outbound|5005|v1|web", "outbound|5005|v2|web"]);
/// ```
pub fn envoy_bootstrap(translation: &Translation, options: &EnvoyOptions) -> Value {
    let everywhere = Translation {
        services: translation
            .services
            .iter()
            .cloned()
            .map(|mut s| {
                s.placements = vec![Placement::Mesh];
                s
            })
            .collect(),
        ..translation.clone()
    };
    let wasm_file = |filter: Filter| {
        format!(
            "{}/{}",
            options.wasm_dir.trim_end_matches('/'),
            filter.wasm_file()
        )
    };
    // The filters in the order of Istio's phases: a rate limit inserted
    // first (AUTHN), the access rules (AUTHZ, where Istio's RBAC runs),
    // the other rate limits (STATS, a cheap pre-filter, so that a request
    // over the limit is refused before the fault filter and the router do
    // any work for it), then the fault filter and the router. Plain Envoy
    // has one listener, so each applies to all of its traffic, whatever
    // workloads its EnvoyFilter or AuthorizationPolicy selected.
    let rate_limit = |limit: &RateLimitFilter| {
        let filename = wasm_file(Filter::RateLimit);
        let config = envoy_service_cluster(limit, translation);
        http_filter(Filter::RateLimit, &config, &Code::Local { filename })
    };
    let (first, later): (Vec<&RateLimitFilter>, Vec<&RateLimitFilter>) =
        translation.rate_limits.iter().partition(|l| l.first);
    // The telemetry first of all, so that it measures every request,
    // those the other filters refuse included: the first HTTP one (plain
    // Envoy has one listener, and no TCP proxy chain for a network one;
    // both said at translation).
    let telemetry = translation.telemetry.iter().find(|t| !t.network);
    let mut http_filters: Vec<Value> = telemetry
        .map(|t| {
            let filename = wasm_file(Filter::Telemetry);
            http_filter(Filter::Telemetry, &t.config, &Code::Local { filename })
        })
        .into_iter()
        .collect();
    http_filters.extend(first.into_iter().map(rate_limit));
    if let Some(config) = translation.authz_config_everywhere() {
        let filename = wasm_file(Filter::HeaderMatch);
        http_filters.push(http_filter(
            Filter::HeaderMatch,
            &config,
            &Code::Local { filename },
        ));
    }
    http_filters.extend(later.into_iter().map(rate_limit));
    for filter in Filter::ALL {
        if let Some(config) = filter.config(&everywhere, &Placement::Mesh) {
            let filename = wasm_file(filter);
            http_filters.push(http_filter(filter, &config, &Code::Local { filename }));
        }
    }
    if options.mesh {
        let filename = wasm_file(Filter::Mesh);
        http_filters = mesh::envoy_http_filters(http_filters, &Code::Local { filename });
    }
    http_filters
        .iter_mut()
        .for_each(|f| set_failure_policy(f, options.fail_strategy));
    if let Some(dir) = &options.ecds_dir {
        http_filters = http_filters
            .into_iter()
            .map(|f| discovered_filter(&f, dir))
            .collect();
    }
    http_filters.push(json!({
        "name": "envoy.filters.http.router",
        "typed_config": {"@type": "type.googleapis.com/envoy.extensions.filters.http.router.v3.Router"},
    }));
    let mut clusters = Vec::new();
    let external = external_clusters(translation);
    let chosen = |name: &str, host: &str| {
        options
            .upstreams
            .get(name)
            .or_else(|| options.upstreams.get(host))
            .cloned()
    };
    // A consistent hash needs the route's hash policy: a route of its own
    // for each such cluster, ahead of the one that follows the header.
    let mut hash_routes = Vec::new();
    for (name, upstream, service) in destination_services(translation) {
        let policy = translation
            .destination_rules
            .iter()
            .find(|r| r.covers(&upstream.host, &service.namespace))
            .and_then(|r| r.policy_for(upstream));
        let mut rendered = match (
            chosen(&name, &upstream.host),
            external.iter().find(|(n, _)| *n == name),
        ) {
            (Some(address), _) => cluster(&name, &address),
            // A ServiceEntry says where this destination is.
            (None, Some((_, entry))) => entry_cluster(&name, entry),
            (None, None) => cluster(
                &name,
                &[(
                    upstream.host.clone(),
                    upstream.port.map_or(80, |p| p as u16),
                )],
            ),
        };
        if let Some(policy) = &policy {
            traffic_policy::apply(policy, &mut rendered);
            if let Some(hash) = traffic_policy::hash_policy(policy) {
                hash_routes.push(json!({
                    "match": {"prefix": "/", "headers": [{"name": DEFAULT_CLUSTER_HEADER, "string_match": {"exact": name}}]},
                    "route": {"cluster": name, "timeout": "30s", "hash_policy": hash},
                }));
            }
        }
        clusters.push(rendered);
    }
    for (name, entry) in &external {
        if clusters.iter().any(|c| c["name"] == name.as_str()) {
            continue;
        }
        clusters.push(match chosen(name, &entry.host) {
            Some(address) => cluster(name, &address),
            None => entry_cluster(name, entry),
        });
    }
    // The rate limit services' clusters, where the global rate limits call:
    // gRPC, so HTTP/2. A cluster the user's CLUSTER patch defined is theirs.
    for service in &translation.service_clusters {
        let name = service.envoy_name.as_str();
        if let Some(existing) = clusters.iter_mut().find(|c| c["name"] == name) {
            existing["typed_extension_protocol_options"] = http2_options();
            continue;
        }
        let host = service.address.as_ref().map(|(h, _)| h.as_str());
        let given = options
            .upstreams
            .get(&service.name)
            .or_else(|| host.and_then(|h| options.upstreams.get(h)));
        let grpc = |addresses: &[(String, u16)]| {
            let mut c = cluster(name, addresses);
            c["typed_extension_protocol_options"] = http2_options();
            c
        };
        let rendered = match (given, &service.defined, &service.address) {
            (Some(address), _, _) => grpc(address),
            (None, Some(defined), _) => defined.clone(),
            (None, None, Some(address)) => grpc(std::slice::from_ref(address)),
            // Said at translation: it must exist, and plain Envoy lacks it.
            (None, None, None) => continue,
        };
        clusters.push(rendered);
    }
    // The HTTP authorizers' clusters, where CUSTOM policies' checks go:
    // HTTP/1.1, as Envoy's ext_authz HTTP client speaks. Without a port,
    // only from --upstream (said at translation).
    for authorizer in &translation.authz_clusters {
        let name = authorizer.name.as_str();
        if clusters.iter().any(|c| c["name"] == name) {
            continue;
        }
        let given = options
            .upstreams
            .get(name)
            .or_else(|| options.upstreams.get(&authorizer.service));
        let addresses = match (given, &authorizer.address) {
            (Some(given), _) => given.as_slice(),
            (None, Some(address)) => std::slice::from_ref(address),
            (None, None) => continue,
        };
        clusters.push(cluster(name, addresses));
    }
    // The route that follows the router's decision, only where a router runs.
    let mut routes = Vec::new();
    if Filter::Router
        .config(&everywhere, &Placement::Mesh)
        .is_some()
    {
        routes.append(&mut hash_routes);
        routes.push(json!({
            "match": {"prefix": "/", "headers": [{"name": DEFAULT_CLUSTER_HEADER, "present_match": true}]},
            "route": {"cluster_header": DEFAULT_CLUSTER_HEADER, "timeout": "30s"},
        }));
    }
    match &options.default_cluster {
        Some(address) => {
            routes.push(json!({"match": {"prefix": "/"}, "route": {"cluster": "default", "timeout": "30s"}}));
            clusters.push(cluster("default", std::slice::from_ref(address)));
        }
        None => routes.push(json!({
            "match": {"prefix": "/"},
            "direct_response": {"status": 404, "body": {"inline_string": "no VirtualService route\n"}},
        })),
    }
    let mut bootstrap = json!({
        "admin": {"address": socket(&options.admin)},
        "static_resources": {
            "listeners": [{
                "name": "meshwasm",
                "address": socket(&options.listen),
                "filter_chains": [{"filters": [{
                    "name": "envoy.filters.network.http_connection_manager",
                    "typed_config": {
                        "@type": "type.googleapis.com/envoy.extensions.filters.network.http_connection_manager.v3.HttpConnectionManager",
                        "stat_prefix": "meshwasm",
                        // An edge proxy: the client's address and scheme come
                        // from the connection, or from as many trusted
                        // proxies in front, never from what a client wrote,
                        // so a client cannot skip an HTTPS redirect.
                        "use_remote_address": true,
                        "xff_num_trusted_hops": options.trusted_proxies,
                        "early_header_mutation_extensions": handoff_header_removal(translation),
                        "route_config": {"virtual_hosts": [{"name": "all", "domains": ["*"], "routes": routes}]},
                        "http_filters": http_filters,
                    },
                }]}],
            }],
            "clusters": clusters,
        },
    });
    // The stats tags that make the labels the telemetry filter encodes in
    // its stat names Prometheus labels.
    if let (Some(t), Value::Object(map)) = (telemetry, &mut bootstrap) {
        map.insert("stats_config".into(), stats::stats_config(&t.labels));
    }
    // Envoy subscribes to nothing without a node id and cluster.
    if options.ecds_dir.is_some() {
        bootstrap["node"] = json!({"id": "meshwasm", "cluster": "meshwasm"});
    }
    bootstrap
}

/// The file Envoy discovers a filter's configuration from.
fn discovered_file(dir: &str, name: &str) -> String {
    format!("{}/{name}.json", dir.trim_end_matches('/'))
}

/// A Wasm `http_filters` entry made one that discovers its configuration
/// from its file in `dir`; Envoy's own filters stay as they are.
fn discovered_filter(entry: &Value, dir: &str) -> Value {
    let Some(name) = entry["name"].as_str() else {
        return entry.clone();
    };
    if entry["typed_config"]["@type"] != WASM_FILTER_TYPE {
        return entry.clone();
    }
    json!({
        "name": name,
        "config_discovery": {
            "config_source": {
                "path_config_source": {
                    "path": discovered_file(dir, name),
                    "watched_directory": {"path": dir},
                },
                "resource_api_version": "V3",
            },
            "type_urls": [WASM_FILTER_TYPE],
        },
    })
}

/// The files of an [`EnvoyOptions::ecds_dir`] deployment, by file name
/// (`meshwasm.router.json`): each a discovery response holding one
/// filter's `TypedExtensionConfig`, the plugin as [`envoy_bootstrap`]
/// would have held it. Write each to a new file and rename it over the
/// old one, so that Envoy never reads half a file.
///
/// # Examples
///
/// ```
/// use envoyfilter::render::{envoy_bootstrap, envoy_discovered_configs, EnvoyOptions};
/// use envoyfilter::translate::{translate, Options};
///
/// let t = translate(include_str!("../../examples/virtual-services/canary-split.yaml"), &Options::default()).unwrap();
/// let options = EnvoyOptions { ecds_dir: Some("/etc/envoy/filters".into()), ..EnvoyOptions::default() };
/// let bootstrap = envoy_bootstrap(&t, &options);
/// let hcm = &bootstrap["static_resources"]["listeners"][0]["filter_chains"][0]["filters"][0]["typed_config"];
/// let source = &hcm["http_filters"][0]["config_discovery"]["config_source"]["path_config_source"];
/// assert_eq!(source["path"], "/etc/envoy/filters/meshwasm.router.json");
///
/// let files = envoy_discovered_configs(&t, &options);
/// assert_eq!(files[0].0, "meshwasm.router.json");
/// assert_eq!(files[0].1["resources"][0]["name"], "meshwasm.router");
/// ```
pub fn envoy_discovered_configs(
    translation: &Translation,
    options: &EnvoyOptions,
) -> Vec<(String, Value)> {
    let inline = EnvoyOptions {
        ecds_dir: None,
        ..options.clone()
    };
    let bootstrap = envoy_bootstrap(translation, &inline);
    let hcm = &bootstrap["static_resources"]["listeners"][0]["filter_chains"][0]["filters"][0]["typed_config"];
    hcm["http_filters"]
        .as_array()
        .into_iter()
        .flatten()
        .filter(|f| f["typed_config"]["@type"] == WASM_FILTER_TYPE)
        .filter_map(|f| {
            let name = f["name"].as_str()?;
            Some((
                format!("{name}.json"),
                json!({"resources": [{
                    "@type": "type.googleapis.com/envoy.config.core.v3.TypedExtensionConfig",
                    "name": name,
                    "typed_config": f["typed_config"],
                }]}),
            ))
        })
        .collect()
}

/// Writes [`envoy_discovered_configs`]' files into `dir` (made if
/// missing), each to a new file renamed over the old one, so that a
/// watching Envoy never reads half a file. Returns the paths written.
///
/// # Errors
///
/// The first file that cannot be written or renamed, with its path.
///
/// # Examples
///
/// ```
/// use envoyfilter::render::{envoy_discovered_configs, write_discovered_configs, EnvoyOptions};
/// use envoyfilter::translate::{translate, Options};
///
/// let t = translate(include_str!("../../examples/virtual-services/canary-split.yaml"), &Options::default()).unwrap();
/// let dir = tempfile::tempdir().unwrap();
/// let written = write_discovered_configs(dir.path(), &envoy_discovered_configs(&t, &EnvoyOptions::default())).unwrap();
/// assert_eq!(written, [dir.path().join("meshwasm.router.json")]);
/// ```
pub fn write_discovered_configs(
    dir: &std::path::Path,
    files: &[(String, Value)],
) -> std::io::Result<Vec<std::path::PathBuf>> {
    let named = |e: std::io::Error, path: &std::path::Path| {
        std::io::Error::new(e.kind(), format!("{}: {e}", path.display()))
    };
    std::fs::create_dir_all(dir).map_err(|e| named(e, dir))?;
    let mut written = Vec::with_capacity(files.len());
    for (name, resource) in files {
        let path = dir.join(name);
        let staged = dir.join(format!(".{name}.new"));
        let text = serde_json::to_string_pretty(resource).map_err(std::io::Error::other)?;
        std::fs::write(&staged, text).map_err(|e| named(e, &staged))?;
        std::fs::rename(&staged, &path).map_err(|e| named(e, &path))?;
        written.push(path);
    }
    Ok(written)
}

/// The clusters of the ServiceEntries, by Istio's names
/// (`outbound|PORT||HOST`), each once.
fn external_clusters(
    translation: &Translation,
) -> Vec<(String, &crate::translate::ExternalCluster)> {
    let mut out: Vec<(String, &crate::translate::ExternalCluster)> = Vec::new();
    for entry in &translation.external {
        let destination = meshwasm_core::virtual_service::Destination {
            host: entry.host.clone(),
            port: Some(meshwasm_core::virtual_service::PortSelector {
                number: u32::from(entry.port),
            }),
            ..Default::default()
        };
        let name = cluster_name(DEFAULT_CLUSTER_TEMPLATE, &destination);
        if !out.iter().any(|(n, _)| *n == name) {
            out.push((name, entry));
        }
    }
    out
}

/// A ServiceEntry's cluster: its endpoints, by DNS or static addresses.
fn entry_cluster(name: &str, entry: &crate::translate::ExternalCluster) -> Value {
    let endpoints: Vec<Value> = entry
        .endpoints
        .iter()
        .map(|address| json!({"endpoint": {"address": socket(address)}}))
        .collect();
    json!({
        "name": name,
        "connect_timeout": "1s",
        "type": if entry.dns { "STRICT_DNS" } else { "STATIC" },
        "load_assignment": {
            "cluster_name": name,
            "endpoints": [{"lb_endpoints": endpoints}],
        },
    })
}

/// A rate limit's config for plain Envoy: the service's cluster under the
/// name plain Envoy gives it ([`ServiceCluster::envoy_name`](crate::translate::ServiceCluster)),
/// which the call sends as its `:authority`.
fn envoy_service_cluster(limit: &RateLimitFilter, translation: &Translation) -> Value {
    let mut config = limit.config.clone();
    let Some(service) = translation
        .service_clusters
        .iter()
        .find(|c| Some(&c.name) == limit.service_cluster.as_ref() && c.envoy_name != c.name)
    else {
        return config;
    };
    let mut global = if config.get("global").is_some() {
        &mut config["global"]
    } else {
        &mut config
    };
    for (snake, camel) in [
        ("rate_limit_service", "rateLimitService"),
        ("grpc_service", "grpcService"),
        ("envoy_grpc", "envoyGrpc"),
    ] {
        let key = if global.get(snake).is_some() {
            snake
        } else {
            camel
        };
        let Some(inner) = global.get_mut(key) else {
            return config;
        };
        global = inner;
    }
    let key = if global.get("cluster_name").is_some() {
        "cluster_name"
    } else {
        "clusterName"
    };
    global[key] = json!(service.envoy_name);
    config
}

/// `typed_extension_protocol_options` for a cluster that speaks HTTP/2 (gRPC).
fn http2_options() -> Value {
    json!({"envoy.extensions.upstreams.http.v3.HttpProtocolOptions": {
        "@type": "type.googleapis.com/envoy.extensions.upstreams.http.v3.HttpProtocolOptions",
        "explicit_http_config": {"http2_protocol_options": {}},
    }})
}

fn socket((address, port): &(String, u16)) -> Value {
    json!({"socket_address": {"address": address, "port_value": port}})
}

/// A cluster of these endpoints: static addresses, or names resolved by
/// DNS if any is a name.
fn cluster(name: &str, addresses: &[(String, u16)]) -> Value {
    let all_ips = addresses
        .iter()
        .all(|(host, _)| host.parse::<std::net::IpAddr>().is_ok());
    let endpoints: Vec<Value> = addresses
        .iter()
        .map(|address| json!({"endpoint": {"address": socket(address)}}))
        .collect();
    json!({
        "name": name,
        "connect_timeout": "1s",
        "type": if all_ips { "STATIC" } else { "STRICT_DNS" },
        "load_assignment": {
            "cluster_name": name,
            "endpoints": [{"lb_endpoints": endpoints}],
        },
    })
}
