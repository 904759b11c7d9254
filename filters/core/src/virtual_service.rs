//! Istio's VirtualService `spec`, as users write it, plus meshwasm's one
//! extension key.
//!
//! Every field of `networking.istio.io` VirtualService is modelled, so a
//! pasted spec is accepted as is and a typo is refused with its path. The
//! filters share this one document: the fault filter reads `match` and
//! `fault`, the router reads the routing fields. Options that Istio has no
//! field for live under the top-level `meshwasm` key.

use crate::config::{self, Document};
use crate::duration::IstioDuration;
use crate::percent::Percent;
use crate::string_match::StringMatch;
use serde::Deserialize;
use std::collections::BTreeMap;

/// A VirtualService `spec`: `{"hosts": [...], "http": [...]}`.
#[derive(Debug, Clone, Default, Deserialize)]
#[serde(rename_all = "camelCase", deny_unknown_fields)]
pub struct VirtualService {
    /// Destination hosts the rules apply to, matched against the request's authority.
    #[serde(default)]
    pub hosts: Vec<String>,
    /// Gateways and sidecars the rules apply to; the filter runs where it is deployed, so this is not evaluated.
    #[serde(default)]
    pub gateways: Vec<String>,
    /// HTTP routes, evaluated in order; the first match wins.
    #[serde(default)]
    pub http: Vec<HttpRoute>,
    /// TLS routes; HTTP filters do not see this traffic.
    #[serde(default)]
    pub tls: Vec<TlsRoute>,
    /// TCP routes; HTTP filters do not see this traffic.
    #[serde(default)]
    pub tcp: Vec<TcpRoute>,
    /// Namespaces the resource is visible to; a Kubernetes concern.
    #[serde(default)]
    pub export_to: Vec<String>,
    /// meshwasm's own options, for what Istio has no field for.
    #[serde(default)]
    pub meshwasm: Option<Extensions>,
}

/// One `http` rule.
#[derive(Debug, Clone, Default, Deserialize)]
#[serde(rename_all = "camelCase", deny_unknown_fields)]
pub struct HttpRoute {
    /// Name used in logs and metrics.
    pub name: Option<String>,
    /// Match blocks, ORed; conditions within a block are ANDed. Empty matches everything.
    #[serde(default, rename = "match")]
    pub matches: Vec<HttpMatchRequest>,
    /// Weighted destinations.
    #[serde(default)]
    pub route: Vec<HttpRouteDestination>,
    /// Answer with a redirect.
    pub redirect: Option<HttpRedirect>,
    /// Answer directly.
    pub direct_response: Option<HttpDirectResponse>,
    /// Delegate to another VirtualService.
    pub delegate: Option<Delegate>,
    /// Rewrite the path or authority.
    pub rewrite: Option<HttpRewrite>,
    /// Request timeout.
    pub timeout: Option<IstioDuration>,
    /// Retry policy.
    pub retries: Option<HttpRetry>,
    /// Fault injection.
    pub fault: Option<HttpFaultInjection>,
    /// Mirror destination.
    pub mirror: Option<Destination>,
    /// Several mirror destinations.
    #[serde(default)]
    pub mirrors: Vec<HttpMirrorPolicy>,
    /// Deprecated integer mirror percentage.
    pub mirror_percent: Option<u32>,
    /// Mirror percentage.
    pub mirror_percentage: Option<Percent>,
    /// CORS policy.
    pub cors_policy: Option<CorsPolicy>,
    /// Header manipulation.
    pub headers: Option<Headers>,
}

/// Conditions on a request; all given ones must hold.
#[derive(Debug, Clone, Default, Deserialize)]
#[serde(rename_all = "camelCase", deny_unknown_fields)]
pub struct HttpMatchRequest {
    /// Name of the match, for logs.
    pub name: Option<String>,
    /// The path, without the query string for exact and regex.
    pub uri: Option<StringMatch>,
    /// The `:scheme`.
    pub scheme: Option<StringMatch>,
    /// The `:method`.
    pub method: Option<StringMatch>,
    /// The `:authority`.
    pub authority: Option<StringMatch>,
    /// Headers that must match; `{}` means present.
    #[serde(default)]
    pub headers: BTreeMap<String, StringMatch>,
    /// The port the request was addressed to.
    pub port: Option<u32>,
    /// Client workload labels (a workload selector in Istio).
    #[serde(default)]
    pub source_labels: BTreeMap<String, String>,
    /// Gateways this match applies to.
    #[serde(default)]
    pub gateways: Vec<String>,
    /// Query parameters that must match.
    #[serde(default)]
    pub query_params: BTreeMap<String, StringMatch>,
    /// Compare exact and prefix `uri` matches without ASCII case.
    #[serde(default)]
    pub ignore_uri_case: bool,
    /// Headers that must not match.
    #[serde(default)]
    pub without_headers: BTreeMap<String, StringMatch>,
    /// Client namespace (a workload selector in Istio).
    pub source_namespace: Option<String>,
    /// Stat prefix for Envoy route stats.
    pub stat_prefix: Option<String>,
}

/// A destination with a weight.
#[derive(Debug, Clone, Default, Deserialize)]
#[serde(rename_all = "camelCase", deny_unknown_fields)]
pub struct HttpRouteDestination {
    /// Where to send the request.
    pub destination: Destination,
    /// Relative weight.
    #[serde(default)]
    pub weight: i32,
    /// Header manipulation for this destination.
    pub headers: Option<Headers>,
}

/// A service, subset and port.
#[derive(Debug, Clone, Default, Deserialize)]
#[serde(rename_all = "camelCase", deny_unknown_fields)]
pub struct Destination {
    /// Service name.
    pub host: String,
    /// DestinationRule subset.
    pub subset: Option<String>,
    /// Port on the service.
    pub port: Option<PortSelector>,
}

/// A port by number.
#[derive(Debug, Clone, Default, Deserialize)]
#[serde(rename_all = "camelCase", deny_unknown_fields)]
pub struct PortSelector {
    /// Port number.
    pub number: u32,
}

/// Request and response header operations.
#[derive(Debug, Clone, Default, Deserialize)]
#[serde(rename_all = "camelCase", deny_unknown_fields)]
pub struct Headers {
    /// Operations on the request.
    pub request: Option<HeaderOperations>,
    /// Operations on the response.
    pub response: Option<HeaderOperations>,
}

/// Set, add and remove headers.
#[derive(Debug, Clone, Default, Deserialize)]
#[serde(rename_all = "camelCase", deny_unknown_fields)]
pub struct HeaderOperations {
    /// Overwrite.
    #[serde(default)]
    pub set: BTreeMap<String, String>,
    /// Append.
    #[serde(default)]
    pub add: BTreeMap<String, String>,
    /// Remove.
    #[serde(default)]
    pub remove: Vec<String>,
}

/// Redirect instead of forwarding.
#[derive(Debug, Clone, Default, Deserialize)]
#[serde(rename_all = "camelCase", deny_unknown_fields)]
pub struct HttpRedirect {
    /// Replacement path.
    pub uri: Option<String>,
    /// Replacement authority.
    pub authority: Option<String>,
    /// Replacement port.
    pub port: Option<u32>,
    /// How to choose the port.
    pub derive_port: Option<RedirectPortSelection>,
    /// Replacement scheme.
    pub scheme: Option<String>,
    /// Status code, 301 by default.
    pub redirect_code: Option<u32>,
    /// Replacement for the matched prefix.
    pub prefix_rewrite: Option<String>,
}

/// Where a redirect's port comes from.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Deserialize)]
#[serde(rename_all = "SCREAMING_SNAKE_CASE")]
pub enum RedirectPortSelection {
    /// 80 for http, 443 for https.
    FromProtocolDefault,
    /// The port of the request.
    FromRequestPort,
}

/// A fixed answer.
#[derive(Debug, Clone, Default, Deserialize)]
#[serde(rename_all = "camelCase", deny_unknown_fields)]
pub struct HttpDirectResponse {
    /// Status code.
    pub status: u32,
    /// Body.
    pub body: Option<HttpBody>,
}

/// A body given as text or base64 bytes.
#[derive(Debug, Clone, Default, Deserialize)]
#[serde(rename_all = "camelCase", deny_unknown_fields)]
pub struct HttpBody {
    /// Text body.
    pub string: Option<String>,
    /// Base64 body.
    pub bytes: Option<String>,
}

/// Delegation to another VirtualService.
#[derive(Debug, Clone, Default, Deserialize)]
#[serde(rename_all = "camelCase", deny_unknown_fields)]
pub struct Delegate {
    /// Its name.
    pub name: String,
    /// Its namespace.
    pub namespace: Option<String>,
}

/// FieldPath and authority rewrites.
#[derive(Debug, Clone, Default, Deserialize)]
#[serde(rename_all = "camelCase", deny_unknown_fields)]
pub struct HttpRewrite {
    /// Replacement for the matched prefix.
    pub uri: Option<String>,
    /// Replacement authority.
    pub authority: Option<String>,
    /// Regex rewrite of the path.
    pub uri_regex_rewrite: Option<RegexRewrite>,
}

/// Regex-based path rewrite.
#[derive(Debug, Clone, Default, Deserialize)]
#[serde(rename_all = "camelCase", deny_unknown_fields)]
pub struct RegexRewrite {
    /// RE2 pattern.
    #[serde(rename = "match")]
    pub pattern: String,
    /// Replacement, with `\1` capture references.
    pub rewrite: String,
}

/// Retry policy.
#[derive(Debug, Clone, Default, Deserialize)]
#[serde(rename_all = "camelCase", deny_unknown_fields)]
pub struct HttpRetry {
    /// Number of retries.
    #[serde(default)]
    pub attempts: i32,
    /// Timeout per attempt.
    pub per_try_timeout: Option<IstioDuration>,
    /// Envoy retry conditions.
    pub retry_on: Option<String>,
    /// Retry in other localities.
    pub retry_remote_localities: Option<bool>,
    /// Avoid hosts already tried.
    pub retry_ignore_previous_hosts: Option<bool>,
    /// Base backoff interval.
    pub backoff: Option<IstioDuration>,
}

/// CORS policy.
#[derive(Debug, Clone, Default, Deserialize)]
#[serde(rename_all = "camelCase", deny_unknown_fields)]
pub struct CorsPolicy {
    /// Deprecated exact origins.
    #[serde(default)]
    pub allow_origin: Vec<String>,
    /// Allowed origins.
    #[serde(default)]
    pub allow_origins: Vec<StringMatch>,
    /// Allowed methods.
    #[serde(default)]
    pub allow_methods: Vec<String>,
    /// Allowed request headers.
    #[serde(default)]
    pub allow_headers: Vec<String>,
    /// Exposed response headers.
    #[serde(default)]
    pub expose_headers: Vec<String>,
    /// Preflight cache lifetime.
    pub max_age: Option<IstioDuration>,
    /// Allow credentials.
    pub allow_credentials: Option<bool>,
    /// What to do with preflights from unmatched origins.
    pub unmatched_preflights: Option<UnmatchedPreflights>,
}

/// Handling of preflight requests whose origin does not match.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Deserialize)]
#[serde(rename_all = "SCREAMING_SNAKE_CASE")]
pub enum UnmatchedPreflights {
    /// Default (forward).
    Unspecified,
    /// Forward to the upstream.
    Forward,
    /// Answer without CORS headers.
    Ignore,
}

/// Fault injection: a delay, an abort, or both.
#[derive(Debug, Clone, Default, Deserialize)]
#[serde(rename_all = "camelCase", deny_unknown_fields)]
pub struct HttpFaultInjection {
    /// Delay before forwarding.
    pub delay: Option<FaultDelay>,
    /// Answer with an error instead of forwarding.
    pub abort: Option<FaultAbort>,
}

/// A delay fault.
#[derive(Debug, Clone, Default, Deserialize)]
#[serde(rename_all = "camelCase", deny_unknown_fields)]
pub struct FaultDelay {
    /// Deprecated integer percentage; `percentage` wins when both are set.
    pub percent: Option<i32>,
    /// The delay.
    pub fixed_delay: Option<IstioDuration>,
    /// Not implemented by Istio either.
    pub exponential_delay: Option<IstioDuration>,
    /// Share of requests delayed; none when unset, as in Istio.
    pub percentage: Option<Percent>,
}

/// An abort fault.
#[derive(Debug, Clone, Default, Deserialize)]
#[serde(rename_all = "camelCase", deny_unknown_fields)]
pub struct FaultAbort {
    /// Deprecated integer percentage (v1alpha3); `percentage` wins when both are set.
    pub percent: Option<i32>,
    /// HTTP status to answer with.
    pub http_status: Option<i64>,
    /// gRPC status name to answer with, e.g. `UNAVAILABLE`.
    pub grpc_status: Option<String>,
    /// Not implemented by Istio either.
    pub http2_error: Option<String>,
    /// Share of requests aborted; none when unset, as in Istio.
    pub percentage: Option<Percent>,
}

/// One mirror destination.
#[derive(Debug, Clone, Default, Deserialize)]
#[serde(rename_all = "camelCase", deny_unknown_fields)]
pub struct HttpMirrorPolicy {
    /// Where to mirror.
    pub destination: Destination,
    /// Share mirrored.
    pub percentage: Option<Percent>,
}

/// A TLS route (not seen by HTTP filters).
#[derive(Debug, Clone, Default, Deserialize)]
#[serde(rename_all = "camelCase", deny_unknown_fields)]
pub struct TlsRoute {
    /// SNI matches.
    #[serde(default, rename = "match")]
    pub matches: Vec<TlsMatchAttributes>,
    /// Destinations.
    #[serde(default)]
    pub route: Vec<RouteDestination>,
}

/// A TCP route (not seen by HTTP filters).
#[derive(Debug, Clone, Default, Deserialize)]
#[serde(rename_all = "camelCase", deny_unknown_fields)]
pub struct TcpRoute {
    /// L4 matches.
    #[serde(default, rename = "match")]
    pub matches: Vec<L4MatchAttributes>,
    /// Destinations.
    #[serde(default)]
    pub route: Vec<RouteDestination>,
}

/// An L4 destination with a weight.
#[derive(Debug, Clone, Default, Deserialize)]
#[serde(rename_all = "camelCase", deny_unknown_fields)]
pub struct RouteDestination {
    /// Where to send.
    pub destination: Destination,
    /// Relative weight.
    #[serde(default)]
    pub weight: i32,
}

/// TLS match conditions.
#[derive(Debug, Clone, Default, Deserialize)]
#[serde(rename_all = "camelCase", deny_unknown_fields)]
pub struct TlsMatchAttributes {
    /// SNI names.
    #[serde(default)]
    pub sni_hosts: Vec<String>,
    /// Destination subnets.
    #[serde(default)]
    pub destination_subnets: Vec<String>,
    /// Port.
    pub port: Option<u32>,
    /// Client workload labels.
    #[serde(default)]
    pub source_labels: BTreeMap<String, String>,
    /// Gateways.
    #[serde(default)]
    pub gateways: Vec<String>,
    /// Client namespace.
    pub source_namespace: Option<String>,
}

/// L4 match conditions.
#[derive(Debug, Clone, Default, Deserialize)]
#[serde(rename_all = "camelCase", deny_unknown_fields)]
pub struct L4MatchAttributes {
    /// Destination subnets.
    #[serde(default)]
    pub destination_subnets: Vec<String>,
    /// Port.
    pub port: Option<u32>,
    /// Client subnet.
    pub source_subnet: Option<String>,
    /// Client workload labels.
    #[serde(default)]
    pub source_labels: BTreeMap<String, String>,
    /// Gateways.
    #[serde(default)]
    pub gateways: Vec<String>,
    /// Client namespace.
    pub source_namespace: Option<String>,
}

/// meshwasm's options: everything the filters need that Istio has no field for.
#[derive(Debug, Clone, Default, Deserialize)]
#[serde(rename_all = "camelCase", deny_unknown_fields)]
pub struct Extensions {
    /// Options of the fault filter.
    pub fault: Option<FaultExtensions>,
    /// Options of the router filter.
    pub router: Option<RouterExtensions>,
}

/// Options of the router filter: how its decision reaches Envoy, and what
/// Istio keeps in other resources (DestinationRule, Gateway).
#[derive(Debug, Clone, Default, Deserialize)]
#[serde(rename_all = "camelCase", deny_unknown_fields)]
pub struct RouterExtensions {
    /// Request header that carries the chosen cluster to Envoy's
    /// `cluster_header` route; `x-meshwasm-cluster` when unset.
    pub cluster_header: Option<String>,
    /// Request header that carries the chosen subset (for Istio's companion
    /// VirtualService); `x-meshwasm-subset` when unset.
    pub subset_header: Option<String>,
    /// Cluster name for a destination, with `{host}`, `{subset}` and
    /// `{port}` placeholders; Istio's `outbound|{port}|{subset}|{host}` when unset.
    pub cluster_template: Option<String>,
    /// Keep each client on one destination of a weighted split.
    pub sticky: Option<Stickiness>,
    /// Answer plain-HTTP requests for these hosts with a 301 to HTTPS, as a
    /// Gateway server's `tls.httpsRedirect` does.
    #[serde(default)]
    pub https_redirect: bool,
    /// Largest request body copied to mirrors; a longer request is not
    /// mirrored. 1 MiB when unset.
    pub max_mirror_body_bytes: Option<u64>,
}

/// What identifies a client for sticky splits; set exactly one. Named as in
/// a DestinationRule's `consistentHash`.
#[derive(Debug, Clone, Default, Deserialize)]
#[serde(rename_all = "camelCase", deny_unknown_fields)]
pub struct Stickiness {
    /// Hash this request header's value.
    pub http_header_name: Option<String>,
    /// Hash this cookie's value.
    pub http_cookie: Option<StickyCookie>,
    /// Hash the client's IP address.
    #[serde(default)]
    pub use_source_ip: bool,
    /// Hash this query parameter's value.
    pub http_query_parameter_name: Option<String>,
}

/// A cookie to hash.
#[derive(Debug, Clone, Default, Deserialize)]
#[serde(rename_all = "camelCase", deny_unknown_fields)]
pub struct StickyCookie {
    /// The cookie's name.
    pub name: String,
}

/// Options of the fault filter.
#[derive(Debug, Clone, Default, Deserialize)]
#[serde(rename_all = "camelCase", deny_unknown_fields)]
pub struct FaultExtensions {
    /// Let clients request faults with Envoy's `x-envoy-fault-*` headers. Off unless given.
    pub header_faults: Option<HeaderFaults>,
    /// At most this many requests carry a fault at once, across all worker threads.
    pub max_active_faults: Option<u64>,
}

/// Which header-controlled faults are enabled, and their caps.
#[derive(Debug, Clone, Default, Deserialize)]
#[serde(rename_all = "camelCase", deny_unknown_fields)]
pub struct HeaderFaults {
    /// Enables `x-envoy-fault-abort-request` and `x-envoy-fault-abort-grpc-request`.
    pub abort: Option<HeaderFault>,
    /// Enables `x-envoy-fault-delay-request`.
    pub delay: Option<HeaderFault>,
}

/// One header-controlled fault kind.
#[derive(Debug, Clone, Default, Deserialize)]
#[serde(rename_all = "camelCase", deny_unknown_fields)]
pub struct HeaderFault {
    /// Share of requests that honour the header (100 when unset); a
    /// `-percentage` header can lower it, never raise it.
    pub percentage: Option<Percent>,
}

impl VirtualService {
    /// Parses a VirtualService spec from JSON, refusing unknown fields.
    ///
    /// # Errors
    ///
    /// A [`ConfigError`](crate::ConfigError) whose path names the field,
    /// with the line and column in the document.
    ///
    /// # Examples
    ///
    /// ```
    /// use meshwasm_core::virtual_service::VirtualService;
    ///
    /// let err = VirtualService::from_json(br#"{"hosts":["a"],"http":[{"fault":{"abort":{"httpStauts":500}}}]}"#)
    ///     .unwrap_err();
    /// assert_eq!(err.path, "http[0].fault.abort.httpStauts");
    /// assert!(err.to_string().contains("unknown field `httpStauts`"));
    /// ```
    pub fn from_json(json: &[u8]) -> Result<Self, crate::ConfigError> {
        config::parse(json, DOCUMENT)
    }

    /// Parses a plugin configuration that holds one VirtualService spec, or
    /// several as `{"virtualServices": [spec, ...]}` (one filter serving
    /// several hosts, as one sidecar serves every VirtualService in the
    /// mesh). The list is an object, not a bare array, because a WasmPlugin's
    /// `pluginConfig` must be one. Paths in errors of a list name the spec:
    /// `virtualServices[1].http[0].route`.
    ///
    /// # Errors
    ///
    /// As [`from_json`](Self::from_json); an empty list is refused too.
    ///
    /// # Examples
    ///
    /// ```
    /// use meshwasm_core::virtual_service::VirtualService;
    ///
    /// let specs = VirtualService::list_from_json(br#"{"virtualServices": [{"hosts":["ratings"]},{"hosts":["details"]}]}"#).unwrap();
    /// assert_eq!(specs[1].hosts, ["details"]);
    /// let err = VirtualService::list_from_json(br#"{"virtualServices": [{"hosts":["a"]},{"hosts":["b"],"htp":[]}]}"#).unwrap_err();
    /// assert_eq!(err.path, "virtualServices[1].htp");
    /// ```
    pub fn list_from_json(json: &[u8]) -> Result<Vec<Self>, crate::ConfigError> {
        use crate::error::{ConfigError, ConfigErrorKind};
        if !config::first_key_is(json, LIST_KEY) {
            return Ok(vec![Self::from_json(json)?]);
        }
        let list: VirtualServiceList = config::parse(json, DOCUMENT)?;
        if list.virtual_services.is_empty() {
            return Err(ConfigError::new(LIST_KEY, ConfigErrorKind::empty(DOCUMENT)));
        }
        Ok(list.virtual_services)
    }
}

/// The key of the list form of a plugin configuration.
pub const LIST_KEY: &str = "virtualServices";

/// What the router and fault filters are configured with.
pub const DOCUMENT: Document = Document {
    name: "a VirtualService spec",
    example: r#"{"hosts": ["*"], "http": [...]}"#,
    list_key: Some(LIST_KEY),
};

/// Several specs in one plugin configuration.
#[derive(Deserialize)]
#[serde(rename_all = "camelCase", deny_unknown_fields)]
struct VirtualServiceList {
    virtual_services: Vec<VirtualService>,
}
