//! Envoy's rate-limit documents as proto-JSON: `LocalRateLimit`
//! (`envoy.extensions.filters.http.local_ratelimit.v3`) and the route
//! `RateLimit` actions it carries inline.
//!
//! Proto-JSON accepts a field by its lowerCamelCase name or by its proto
//! name, so each multi-word field takes both (`statPrefix`, `stat_prefix`).
//! Fields Envoy has that meshwasm does not carry out are typed as
//! [`Refused`] and turned into an error naming them, not ignored.

use serde::Deserialize;
use serde::de::IgnoredAny;

/// A field Envoy defines that the filter refuses by name when it is set.
pub type Refused = Option<IgnoredAny>;

/// `envoy.extensions.filters.http.local_ratelimit.v3.LocalRateLimit`.
#[derive(Debug, Deserialize)]
#[serde(rename_all = "camelCase", deny_unknown_fields)]
pub struct LocalRateLimit {
    /// The `typed_config` type, when the whole typed config was pasted.
    #[serde(rename = "@type")]
    pub type_url: Option<String>,
    /// Prefix of the filter's stats.
    #[serde(alias = "stat_prefix")]
    pub stat_prefix: Option<String>,
    /// The status of a denial (default 429).
    pub status: Option<HttpStatus>,
    /// The default bucket.
    #[serde(alias = "token_bucket")]
    pub token_bucket: Option<TokenBucket>,
    /// The share of requests the filter looks at (unset: none).
    #[serde(alias = "filter_enabled")]
    pub filter_enabled: Option<RuntimeFractionalPercent>,
    /// The share of limited requests that are denied (unset: none).
    #[serde(alias = "filter_enforced")]
    pub filter_enforced: Option<RuntimeFractionalPercent>,
    /// Request headers added to a limited request that is not denied.
    #[serde(alias = "request_headers_to_add_when_not_enforced", default)]
    pub request_headers_to_add_when_not_enforced: Vec<HeaderValueOption>,
    /// Headers of the denial.
    #[serde(alias = "response_headers_to_add", default)]
    pub response_headers_to_add: Vec<HeaderValueOption>,
    /// Buckets for requests with these descriptors.
    #[serde(default)]
    pub descriptors: Vec<LocalRateLimitDescriptor>,
    /// The stage of the route rate limits the filter reads (0..=10).
    pub stage: Option<u32>,
    /// One bucket per downstream connection instead of one per filter.
    #[serde(alias = "local_rate_limit_per_downstream_connection", default)]
    pub local_rate_limit_per_downstream_connection: bool,
    /// Share buckets across the local cluster: refused.
    #[serde(alias = "local_cluster_rate_limit")]
    pub local_cluster_rate_limit: Refused,
    /// `OFF` or `DRAFT_VERSION_03`.
    #[serde(alias = "enable_x_ratelimit_headers")]
    pub enable_x_ratelimit_headers: Option<XRateLimitHeaders>,
    /// How the virtual host's rate limits combine with the route's.
    #[serde(alias = "vh_rate_limits")]
    pub vh_rate_limits: Option<String>,
    /// Whether matched descriptors also draw on the default bucket (default true).
    #[serde(alias = "always_consume_default_token_bucket")]
    pub always_consume_default_token_bucket: Option<bool>,
    /// gRPC denials as RESOURCE_EXHAUSTED (8) instead of UNAVAILABLE (14).
    #[serde(alias = "rate_limited_as_resource_exhausted", default)]
    pub rate_limited_as_resource_exhausted: bool,
    /// The descriptors' actions, inline.
    #[serde(alias = "rate_limits", default)]
    pub rate_limits: Vec<RateLimit>,
    /// The most buckets a descriptor with an empty value keeps.
    #[serde(alias = "max_dynamic_descriptors")]
    pub max_dynamic_descriptors: Option<u32>,
}

/// `envoy.type.v3.HttpStatus`.
#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct HttpStatus {
    /// A number, or the name of Envoy's `StatusCode` enum (`TooManyRequests`).
    pub code: StatusCode,
}

/// A proto-JSON enum value: its number or its name.
#[derive(Debug, Deserialize)]
#[serde(untagged)]
pub enum StatusCode {
    /// `429`.
    Number(i64),
    /// `TooManyRequests`.
    Name(String),
}

/// `envoy.type.v3.TokenBucket`.
#[derive(Debug, Deserialize)]
#[serde(rename_all = "camelCase", deny_unknown_fields)]
pub struct TokenBucket {
    /// Capacity, and the tokens a new bucket starts with.
    #[serde(alias = "max_tokens")]
    pub max_tokens: Option<u32>,
    /// Tokens added per fill interval (default 1).
    #[serde(alias = "tokens_per_fill")]
    pub tokens_per_fill: Option<u32>,
    /// A proto-JSON duration such as `"1s"` or `"0.25s"`.
    #[serde(alias = "fill_interval")]
    pub fill_interval: Option<String>,
}

/// `envoy.config.core.v3.RuntimeFractionalPercent`.
#[derive(Debug, Deserialize)]
#[serde(rename_all = "camelCase", deny_unknown_fields)]
pub struct RuntimeFractionalPercent {
    /// The share when the runtime has no override.
    #[serde(alias = "default_value")]
    pub default_value: Option<FractionalPercent>,
    /// Envoy's runtime key; a Wasm filter cannot read the runtime.
    #[serde(alias = "runtime_key")]
    pub runtime_key: Option<String>,
}

/// `envoy.type.v3.FractionalPercent`.
#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct FractionalPercent {
    /// The numerator.
    #[serde(default)]
    pub numerator: u32,
    /// `HUNDRED` (default), `TEN_THOUSAND` or `MILLION`.
    #[serde(default)]
    pub denominator: Denominator,
}

/// The denominator of a [`FractionalPercent`].
#[derive(Debug, Clone, Copy, Default, Deserialize)]
pub enum Denominator {
    /// 100.
    #[default]
    #[serde(rename = "HUNDRED")]
    Hundred,
    /// 10,000.
    #[serde(rename = "TEN_THOUSAND")]
    TenThousand,
    /// 1,000,000.
    #[serde(rename = "MILLION")]
    Million,
}

/// `envoy.config.core.v3.HeaderValueOption`.
#[derive(Debug, Deserialize)]
#[serde(rename_all = "camelCase", deny_unknown_fields)]
pub struct HeaderValueOption {
    /// The header.
    pub header: Option<HeaderValue>,
    /// Deprecated: true appends, false overwrites.
    pub append: Option<bool>,
    /// What to do when the header exists.
    #[serde(alias = "append_action")]
    pub append_action: Option<AppendAction>,
    /// Add the header even when its value is empty.
    #[serde(alias = "keep_empty_value", default)]
    pub keep_empty_value: bool,
}

/// `envoy.config.core.v3.HeaderValue`.
#[derive(Debug, Deserialize)]
#[serde(rename_all = "camelCase", deny_unknown_fields)]
pub struct HeaderValue {
    /// The name.
    #[serde(default)]
    pub key: String,
    /// The value; `%` starts one of Envoy's format commands.
    #[serde(default)]
    pub value: String,
    /// The value as bytes: refused.
    #[serde(alias = "raw_value")]
    pub raw_value: Refused,
}

/// `HeaderValueOption.HeaderAppendAction`.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Deserialize)]
#[serde(rename_all = "SCREAMING_SNAKE_CASE")]
pub enum AppendAction {
    /// Add a value, keeping the others.
    AppendIfExistsOrAdd,
    /// Add only if the header is absent.
    AddIfAbsent,
    /// Replace every value, or add.
    OverwriteIfExistsOrAdd,
    /// Replace only if the header exists.
    OverwriteIfExists,
}

/// `envoy.extensions.common.ratelimit.v3.XRateLimitHeadersRFCVersion`.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Deserialize)]
pub enum XRateLimitHeaders {
    /// No headers.
    #[serde(rename = "OFF")]
    Off,
    /// `x-ratelimit-limit`, `-remaining`, `-reset`.
    #[serde(rename = "DRAFT_VERSION_03")]
    DraftVersion03,
}

/// `envoy.extensions.common.ratelimit.v3.LocalRateLimitDescriptor`.
#[derive(Debug, Deserialize)]
#[serde(rename_all = "camelCase", deny_unknown_fields)]
pub struct LocalRateLimitDescriptor {
    /// The entries a request's descriptor must have, in order.
    #[serde(default)]
    pub entries: Vec<DescriptorEntry>,
    /// The descriptor's bucket.
    #[serde(alias = "token_bucket")]
    pub token_bucket: Option<TokenBucket>,
    /// Count a denial, but let the request through.
    #[serde(alias = "shadow_mode", default)]
    pub shadow_mode: bool,
}

/// `envoy.extensions.common.ratelimit.v3.RateLimitDescriptor.Entry`.
#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct DescriptorEntry {
    /// The key.
    #[serde(default)]
    pub key: String,
    /// The value; empty matches any value, with a bucket per value.
    #[serde(default)]
    pub value: String,
}

/// `envoy.config.route.v3.RateLimit`.
#[derive(Debug, Deserialize)]
#[serde(rename_all = "camelCase", deny_unknown_fields)]
pub struct RateLimit {
    /// The actions that build one descriptor.
    #[serde(default)]
    pub actions: Vec<Action>,
    /// Refused: the stage is the filter's.
    pub stage: Refused,
    /// Refused: a runtime key.
    #[serde(alias = "disable_key")]
    pub disable_key: Refused,
    /// Refused: a limit from dynamic metadata.
    pub limit: Refused,
    /// Refused: global rate limiting only.
    #[serde(alias = "hits_addend")]
    pub hits_addend: Refused,
    /// Refused: global rate limiting only.
    #[serde(alias = "apply_on_stream_done")]
    pub apply_on_stream_done: Refused,
    /// Refused: global rate limiting only.
    #[serde(alias = "x_ratelimit_option")]
    pub x_ratelimit_option: Refused,
}

/// `envoy.config.route.v3.RateLimit.Action`: exactly one field is set.
#[derive(Debug, Deserialize)]
#[serde(rename_all = "camelCase", deny_unknown_fields)]
pub struct Action {
    /// The cluster the route sends the request to.
    #[serde(alias = "destination_cluster")]
    pub destination_cluster: Option<Empty>,
    /// A request header's value.
    #[serde(alias = "request_headers")]
    pub request_headers: Option<RequestHeaders>,
    /// A query parameter's value.
    #[serde(alias = "query_parameters")]
    pub query_parameters: Option<QueryParameters>,
    /// The client's address.
    #[serde(alias = "remote_address")]
    pub remote_address: Option<Empty>,
    /// The client's address under a mask.
    #[serde(alias = "masked_remote_address")]
    pub masked_remote_address: Option<MaskedRemoteAddress>,
    /// A fixed entry.
    #[serde(alias = "generic_key")]
    pub generic_key: Option<GenericKey>,
    /// A fixed entry when headers match (or do not).
    #[serde(alias = "header_value_match")]
    pub header_value_match: Option<HeaderValueMatch>,
    /// A fixed entry when query parameters match (or do not).
    #[serde(alias = "query_parameter_value_match")]
    pub query_parameter_value_match: Option<QueryParameterValueMatch>,
    /// Refused: the local cluster is not known to a filter.
    #[serde(alias = "source_cluster")]
    pub source_cluster: Refused,
    /// Refused: dynamic metadata.
    #[serde(alias = "dynamic_metadata")]
    pub dynamic_metadata: Refused,
    /// Refused: metadata.
    pub metadata: Refused,
    /// Refused: an extension.
    pub extension: Refused,
}

/// An action without fields, `{}`.
#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Empty {}

/// `RateLimit.Action.RequestHeaders`.
#[derive(Debug, Deserialize)]
#[serde(rename_all = "camelCase", deny_unknown_fields)]
pub struct RequestHeaders {
    /// The header to read.
    #[serde(alias = "header_name", default)]
    pub header_name: String,
    /// The entry's key.
    #[serde(alias = "descriptor_key", default)]
    pub descriptor_key: String,
    /// Leave the entry out when the header is absent, instead of the descriptor.
    #[serde(alias = "skip_if_absent", default)]
    pub skip_if_absent: bool,
}

/// `RateLimit.Action.QueryParameters`.
#[derive(Debug, Deserialize)]
#[serde(rename_all = "camelCase", deny_unknown_fields)]
pub struct QueryParameters {
    /// The parameter to read.
    #[serde(alias = "query_parameter_name", default)]
    pub query_parameter_name: String,
    /// The entry's key.
    #[serde(alias = "descriptor_key", default)]
    pub descriptor_key: String,
    /// Leave the entry out when the parameter is absent, instead of the descriptor.
    #[serde(alias = "skip_if_absent", default)]
    pub skip_if_absent: bool,
}

/// `RateLimit.Action.MaskedRemoteAddress`.
#[derive(Debug, Deserialize)]
#[serde(rename_all = "camelCase", deny_unknown_fields)]
pub struct MaskedRemoteAddress {
    /// IPv4 prefix length (default 32).
    #[serde(alias = "v4_prefix_mask_len")]
    pub v4_prefix_mask_len: Option<u32>,
    /// IPv6 prefix length (default 128).
    #[serde(alias = "v6_prefix_mask_len")]
    pub v6_prefix_mask_len: Option<u32>,
}

/// `RateLimit.Action.GenericKey`.
#[derive(Debug, Deserialize)]
#[serde(rename_all = "camelCase", deny_unknown_fields)]
pub struct GenericKey {
    /// The entry's value.
    #[serde(alias = "descriptor_value", default)]
    pub descriptor_value: String,
    /// The entry's key (default `generic_key`).
    #[serde(alias = "descriptor_key")]
    pub descriptor_key: Option<String>,
    /// Only used by Envoy's formatter, which is off by default: refused.
    #[serde(alias = "default_value")]
    pub default_value: Refused,
}

/// `RateLimit.Action.HeaderValueMatch`.
#[derive(Debug, Deserialize)]
#[serde(rename_all = "camelCase", deny_unknown_fields)]
pub struct HeaderValueMatch {
    /// The entry's value.
    #[serde(alias = "descriptor_value", default)]
    pub descriptor_value: String,
    /// The entry's key (default `header_match`).
    #[serde(alias = "descriptor_key")]
    pub descriptor_key: Option<String>,
    /// Whether the entry is added when the headers match (default) or when they do not.
    #[serde(alias = "expect_match")]
    pub expect_match: Option<bool>,
    /// Every one must match.
    #[serde(default)]
    pub headers: Vec<HeaderMatcher>,
    /// Only used by Envoy's formatter, which is off by default: refused.
    #[serde(alias = "default_value")]
    pub default_value: Refused,
}

/// `RateLimit.Action.QueryParameterValueMatch`.
#[derive(Debug, Deserialize)]
#[serde(rename_all = "camelCase", deny_unknown_fields)]
pub struct QueryParameterValueMatch {
    /// The entry's value.
    #[serde(alias = "descriptor_value", default)]
    pub descriptor_value: String,
    /// The entry's key (default `query_match`).
    #[serde(alias = "descriptor_key")]
    pub descriptor_key: Option<String>,
    /// Whether the entry is added when the parameters match (default) or when they do not.
    #[serde(alias = "expect_match")]
    pub expect_match: Option<bool>,
    /// Every one must match.
    #[serde(alias = "query_parameters", default)]
    pub query_parameters: Vec<QueryParameterMatcher>,
    /// Only used by Envoy's formatter, which is off by default: refused.
    #[serde(alias = "default_value")]
    pub default_value: Refused,
}

/// `envoy.config.route.v3.HeaderMatcher`.
#[derive(Debug, Deserialize)]
#[serde(rename_all = "camelCase", deny_unknown_fields)]
pub struct HeaderMatcher {
    /// The header.
    #[serde(default)]
    pub name: String,
    /// Deprecated exact match.
    #[serde(alias = "exact_match")]
    pub exact_match: Option<String>,
    /// Deprecated prefix match.
    #[serde(alias = "prefix_match")]
    pub prefix_match: Option<String>,
    /// Deprecated suffix match.
    #[serde(alias = "suffix_match")]
    pub suffix_match: Option<String>,
    /// Deprecated contains match.
    #[serde(alias = "contains_match")]
    pub contains_match: Option<String>,
    /// Deprecated regex match.
    #[serde(alias = "safe_regex_match")]
    pub safe_regex_match: Option<RegexMatcher>,
    /// Whether the header is present (true) or absent (false).
    #[serde(alias = "present_match")]
    pub present_match: Option<bool>,
    /// The value's string match.
    #[serde(alias = "string_match")]
    pub string_match: Option<EnvoyStringMatcher>,
    /// Refused: integer ranges.
    #[serde(alias = "range_match")]
    pub range_match: Refused,
    /// Invert the result.
    #[serde(alias = "invert_match", default)]
    pub invert_match: bool,
    /// An absent header is matched as an empty value.
    #[serde(alias = "treat_missing_header_as_empty", default)]
    pub treat_missing_header_as_empty: bool,
}

/// `envoy.config.route.v3.QueryParameterMatcher`.
#[derive(Debug, Deserialize)]
#[serde(rename_all = "camelCase", deny_unknown_fields)]
pub struct QueryParameterMatcher {
    /// The parameter.
    #[serde(default)]
    pub name: String,
    /// The value's string match.
    #[serde(alias = "string_match")]
    pub string_match: Option<EnvoyStringMatcher>,
    /// Whether the parameter is present.
    #[serde(alias = "present_match")]
    pub present_match: Option<bool>,
}

/// `envoy.type.matcher.v3.StringMatcher`.
#[derive(Debug, Deserialize)]
#[serde(rename_all = "camelCase", deny_unknown_fields)]
pub struct EnvoyStringMatcher {
    /// Equal to.
    pub exact: Option<String>,
    /// Starts with.
    pub prefix: Option<String>,
    /// Ends with.
    pub suffix: Option<String>,
    /// Contains.
    pub contains: Option<String>,
    /// Matches as a whole.
    #[serde(alias = "safe_regex")]
    pub safe_regex: Option<RegexMatcher>,
    /// Compare ASCII letters in either case (not for regexes).
    #[serde(alias = "ignore_case", default)]
    pub ignore_case: bool,
    /// Refused: an extension.
    pub custom: Refused,
}

/// `envoy.type.matcher.v3.RegexMatcher`.
#[derive(Debug, Deserialize)]
#[serde(rename_all = "camelCase", deny_unknown_fields)]
pub struct RegexMatcher {
    /// The RE2 pattern.
    #[serde(default)]
    pub regex: String,
    /// The engine, `{}` for RE2.
    #[serde(alias = "google_re2")]
    pub google_re2: Option<IgnoredAny>,
}

/// `envoy.extensions.filters.http.ratelimit.v3.RateLimit`: Envoy's global
/// rate limit filter, which asks a rate limit service.
#[derive(Debug, Deserialize)]
#[serde(rename_all = "camelCase", deny_unknown_fields)]
pub struct GlobalRateLimit {
    /// The `typed_config` type, when the whole typed config was pasted.
    #[serde(rename = "@type")]
    pub type_url: Option<String>,
    /// The rate limit service's domain.
    #[serde(default)]
    pub domain: String,
    /// The stage of the route rate limits the filter reads (0..=10).
    pub stage: Option<u32>,
    /// `internal`, `external` or `both` (default).
    #[serde(alias = "request_type")]
    pub request_type: Option<String>,
    /// The call's timeout (default 20 ms; `0s` for none).
    pub timeout: Option<String>,
    /// Deny when the service fails (default: allow).
    #[serde(alias = "failure_mode_deny", default)]
    pub failure_mode_deny: bool,
    /// gRPC denials as RESOURCE_EXHAUSTED (8) instead of UNAVAILABLE (14).
    #[serde(alias = "rate_limited_as_resource_exhausted", default)]
    pub rate_limited_as_resource_exhausted: bool,
    /// Where the service is.
    #[serde(alias = "rate_limit_service")]
    pub rate_limit_service: Option<RateLimitServiceConfig>,
    /// `OFF` or `DRAFT_VERSION_03`.
    #[serde(alias = "enable_x_ratelimit_headers")]
    pub enable_x_ratelimit_headers: Option<XRateLimitHeaders>,
    /// Leave `x-envoy-ratelimited` off denials.
    #[serde(alias = "disable_x_envoy_ratelimited_header", default)]
    pub disable_x_envoy_ratelimited_header: bool,
    /// The status of a denial (default 429).
    #[serde(alias = "rate_limited_status")]
    pub rate_limited_status: Option<HttpStatus>,
    /// Headers of a denial.
    #[serde(alias = "response_headers_to_add", default)]
    pub response_headers_to_add: Vec<HeaderValueOption>,
    /// The status when the service fails and `failureModeDeny` (default 500).
    #[serde(alias = "status_on_error")]
    pub status_on_error: Option<HttpStatus>,
    /// A prefix for the stats.
    #[serde(alias = "stat_prefix")]
    pub stat_prefix: Option<String>,
    /// The share of requests checked (unset: all).
    #[serde(alias = "filter_enabled")]
    pub filter_enabled: Option<RuntimeFractionalPercent>,
    /// The share of over-limit requests denied (unset: all).
    #[serde(alias = "filter_enforced")]
    pub filter_enforced: Option<RuntimeFractionalPercent>,
    /// With `failureModeDeny`, the share of failures denied (unset: all).
    #[serde(alias = "failure_mode_deny_percent")]
    pub failure_mode_deny_percent: Option<RuntimeFractionalPercent>,
    /// The descriptors' actions, inline.
    #[serde(alias = "rate_limits", default)]
    pub rate_limits: Vec<RateLimit>,
}

/// `envoy.config.ratelimit.v3.RateLimitServiceConfig`.
#[derive(Debug, Deserialize)]
#[serde(rename_all = "camelCase", deny_unknown_fields)]
pub struct RateLimitServiceConfig {
    /// The gRPC service.
    #[serde(alias = "grpc_service")]
    pub grpc_service: Option<GrpcService>,
    /// Must be `V3`.
    #[serde(alias = "transport_api_version")]
    pub transport_api_version: Option<String>,
}

/// `envoy.config.core.v3.GrpcService`.
#[derive(Debug, Deserialize)]
#[serde(rename_all = "camelCase", deny_unknown_fields)]
pub struct GrpcService {
    /// A cluster of Envoy's.
    #[serde(alias = "envoy_grpc")]
    pub envoy_grpc: Option<EnvoyGrpc>,
    /// Refused: the Google gRPC client.
    #[serde(alias = "google_grpc")]
    pub google_grpc: Refused,
    /// Ignored by Envoy's rate limit filter, which uses its own `timeout`.
    pub timeout: Option<String>,
    /// Refused: retries.
    #[serde(alias = "retry_policy")]
    pub retry_policy: Refused,
    /// Metadata sent with every call.
    #[serde(alias = "initial_metadata", default)]
    pub initial_metadata: Vec<HeaderValue>,
}

/// `GrpcService.EnvoyGrpc`.
#[derive(Debug, Deserialize)]
#[serde(rename_all = "camelCase", deny_unknown_fields)]
pub struct EnvoyGrpc {
    /// The cluster the service is in.
    #[serde(alias = "cluster_name", default)]
    pub cluster_name: String,
    /// The `:authority` of the calls (default: the cluster name).
    pub authority: Option<String>,
    /// Refused: retries.
    #[serde(alias = "retry_policy")]
    pub retry_policy: Refused,
    /// Refused.
    #[serde(alias = "max_receive_message_length")]
    pub max_receive_message_length: Refused,
    /// Refused.
    #[serde(alias = "skip_envoy_headers")]
    pub skip_envoy_headers: Refused,
}
