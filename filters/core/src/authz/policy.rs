//! Istio's `security.istio.io/v1` AuthorizationPolicy `spec`, as written.

use crate::virtual_service::{HeaderOperations, HttpMatchRequest};
use serde::Deserialize;
use serde::de::IgnoredAny;

/// A field Istio defines that the filter refuses by name when it is set.
pub type Refused = Option<IgnoredAny>;

/// An AuthorizationPolicy `spec`.
#[derive(Debug, Default, Deserialize)]
#[serde(rename_all = "camelCase", deny_unknown_fields)]
pub struct AuthorizationPolicy {
    /// The workloads it applies to: the filter's placement decides that.
    pub selector: Option<IgnoredAny>,
    /// Istio's gateway or service targets: the filter's placement decides that.
    pub target_ref: Option<IgnoredAny>,
    /// The same, several.
    pub target_refs: Option<IgnoredAny>,
    /// `ALLOW` (default), `DENY`, `AUDIT` or `CUSTOM`.
    pub action: Option<String>,
    /// The external authorizer of a `CUSTOM` policy.
    pub provider: Option<Provider>,
    /// Who may do what; none matches nothing.
    pub rules: Option<Vec<Rule>>,
    /// meshwasm's own settings.
    pub meshwasm: Option<Settings>,
}

/// `provider` of a CUSTOM policy.
#[derive(Debug, Default, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Provider {
    /// An `extensionProviders` name.
    #[serde(default)]
    pub name: String,
}

/// `Rule`: every set part must match.
#[derive(Debug, Default, Deserialize)]
#[serde(rename_all = "camelCase", deny_unknown_fields)]
pub struct Rule {
    /// Any one must match.
    #[serde(default)]
    pub from: Vec<From>,
    /// Any one must match.
    #[serde(default)]
    pub to: Vec<To>,
    /// Every one must match.
    #[serde(default)]
    pub when: Vec<Condition>,
}

/// `Rule.From`.
#[derive(Debug, Default, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct From {
    /// The source.
    #[serde(default)]
    pub source: Source,
}

/// `Source`: each set field must match.
#[derive(Debug, Default, Deserialize)]
#[serde(rename_all = "camelCase", deny_unknown_fields)]
pub struct Source {
    /// Peer identities, `<trust-domain>/ns/<ns>/sa/<sa>`.
    pub principals: Option<Vec<String>>,
    /// Not these identities.
    pub not_principals: Option<Vec<String>>,
    /// Refused: JWT identities.
    pub request_principals: Refused,
    /// Refused: JWT identities.
    pub not_request_principals: Refused,
    /// Peer namespaces.
    pub namespaces: Option<Vec<String>>,
    /// Not these namespaces.
    pub not_namespaces: Option<Vec<String>>,
    /// Refused: service accounts (Istio 1.25's shorthand for principals).
    pub service_accounts: Refused,
    /// Refused.
    pub not_service_accounts: Refused,
    /// The peer's address: IPs and CIDRs.
    pub ip_blocks: Option<Vec<String>>,
    /// Not these addresses.
    pub not_ip_blocks: Option<Vec<String>>,
    /// The client's address as Envoy derived it.
    pub remote_ip_blocks: Option<Vec<String>>,
    /// Not these addresses.
    pub not_remote_ip_blocks: Option<Vec<String>>,
}

/// `Rule.To`.
#[derive(Debug, Default, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct To {
    /// The operation.
    #[serde(default)]
    pub operation: Operation,
}

/// `Operation`: each set field must match.
#[derive(Debug, Default, Deserialize)]
#[serde(rename_all = "camelCase", deny_unknown_fields)]
pub struct Operation {
    /// Hosts, `host` or `host:port`, with `*` prefix or suffix.
    pub hosts: Option<Vec<String>>,
    /// Not these hosts.
    pub not_hosts: Option<Vec<String>>,
    /// Destination ports.
    pub ports: Option<Vec<String>>,
    /// Not these ports.
    pub not_ports: Option<Vec<String>>,
    /// Methods, case-sensitive.
    pub methods: Option<Vec<String>>,
    /// Not these methods.
    pub not_methods: Option<Vec<String>>,
    /// Paths: exact, `/prefix/*`, `*suffix`, `*`, `{*}` and `{**}` templates.
    pub paths: Option<Vec<String>>,
    /// Not these paths.
    pub not_paths: Option<Vec<String>>,
}

/// `Condition`.
#[derive(Debug, Default, Deserialize)]
#[serde(rename_all = "camelCase", deny_unknown_fields)]
pub struct Condition {
    /// `request.headers[NAME]`, `source.ip`, `remote.ip`, ...
    #[serde(default)]
    pub key: String,
    /// Any one must match.
    pub values: Option<Vec<String>>,
    /// None may match.
    pub not_values: Option<Vec<String>>,
}

/// The filter's configuration in its list form.
#[derive(Debug, Default, Deserialize)]
#[serde(rename_all = "camelCase", deny_unknown_fields)]
pub struct Policies {
    /// AuthorizationPolicy specs.
    #[serde(default)]
    pub policies: Vec<AuthorizationPolicy>,
    /// Header edits for allowed requests.
    #[serde(default)]
    pub header_rules: Vec<HeaderRule>,
    /// External authorizers that CUSTOM policies name, shaped like Istio
    /// meshConfig's `extensionProviders`.
    #[serde(default)]
    pub extension_providers: Vec<ExtensionProvider>,
    /// meshwasm's own settings.
    pub meshwasm: Option<Settings>,
}

/// An `extensionProviders` entry. Its keys besides the two ext_authz
/// kinds are checked against Istio's provider kinds when compiled.
#[derive(Debug, Default, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct ExtensionProvider {
    /// The name CUSTOM policies give as `provider.name`.
    #[serde(default)]
    pub name: String,
    /// An HTTP authorization service, as Envoy's ext_authz HTTP client calls it.
    pub envoy_ext_authz_http: Option<ExtAuthzHttp>,
    /// The gRPC authorization API: refused when a CUSTOM policy names it.
    pub envoy_ext_authz_grpc: Refused,
    /// Istio's other provider kinds (tracing, access logs, metrics): an
    /// `extensionProviders` list from meshConfig may carry them, unnamed
    /// by any policy here.
    #[serde(flatten)]
    pub other: std::collections::BTreeMap<String, IgnoredAny>,
}

/// Istio's `EnvoyExternalAuthorizationHttpProvider`.
#[derive(Debug, Default, Deserialize)]
#[serde(rename_all = "camelCase", deny_unknown_fields)]
pub struct ExtAuthzHttp {
    /// The Envoy cluster of the service.
    #[serde(default)]
    pub service: String,
    /// The service's port, for the check's `:authority`.
    pub port: Option<u32>,
    /// How long to wait (an Istio duration, default 600 s as Istio's).
    pub timeout: Option<crate::duration::IstioDuration>,
    /// Prepended to the request's path in the check.
    pub path_prefix: Option<String>,
    /// Let the request through when the service fails.
    #[serde(default)]
    pub fail_open: bool,
    /// The status when the service fails and `failOpen` is false (default 403).
    pub status_on_error: Option<String>,
    /// Request headers sent in the check, besides the method, path and host.
    #[serde(default)]
    pub include_request_headers_in_check: Vec<String>,
    /// Deprecated form of `includeRequestHeadersInCheck`.
    #[serde(default)]
    pub include_headers_in_check: Vec<String>,
    /// Headers added to every check.
    #[serde(default)]
    pub include_additional_headers_in_check: std::collections::BTreeMap<String, String>,
    /// Refused: the request body.
    pub include_request_body_in_check: Refused,
    /// Service answer headers copied to the request when it allows.
    #[serde(default)]
    pub headers_to_upstream_on_allow: Vec<String>,
    /// Service answer headers copied to the client when it denies.
    #[serde(default)]
    pub headers_to_downstream_on_deny: Vec<String>,
    /// Service answer headers copied to the client's response when it allows.
    #[serde(default)]
    pub headers_to_downstream_on_allow: Vec<String>,
    /// Envoy re-resolves the route after a Wasm filter edits headers.
    pub clear_route_cache: Option<bool>,
}

/// A header rule: when a request matches, edit it and its response.
#[derive(Debug, Default, Deserialize)]
#[serde(rename_all = "camelCase", deny_unknown_fields)]
pub struct HeaderRule {
    /// Istio's `HTTPMatchRequest`s; any one must match, none means all.
    #[serde(default, rename = "match")]
    pub matches: Vec<HttpMatchRequest>,
    /// Edits of the request.
    pub request: Option<HeaderOperations>,
    /// Edits of the response.
    pub response: Option<HeaderOperations>,
}

/// meshwasm's settings.
#[derive(Debug, Default, Deserialize)]
#[serde(rename_all = "camelCase", deny_unknown_fields)]
pub struct Settings {
    /// `NONE`, `BASE`, `MERGE_SLASHES` or `DECODE_AND_MERGE_SLASHES` (default).
    pub path_normalization: Option<super::path::Normalization>,
    /// `DASH` (default: `x_user` is read as `x-user`) or `REJECT` (400).
    pub headers_with_underscores: Option<Underscores>,
    /// The status of a denial (default 403).
    pub deny_status: Option<u16>,
}

/// What to make of `_` in header names.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default, Deserialize)]
#[serde(rename_all = "SCREAMING_SNAKE_CASE")]
pub enum Underscores {
    /// Read `_` as `-`, as a CGI backend does.
    #[default]
    Dash,
    /// Reject the request with 400.
    Reject,
}
