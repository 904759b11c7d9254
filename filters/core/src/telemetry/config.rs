//! The configuration document: an Istio `telemetry.istio.io/v1` Telemetry
//! `spec`, as users write it, plus meshwasm's own `meshwasm` block for
//! what Istio configures elsewhere (the reporter, bounds, the exporter).

use serde::Deserialize;
use std::collections::BTreeMap;

/// A Telemetry `spec`.
#[derive(Debug, Default, Deserialize)]
#[serde(rename_all = "camelCase", deny_unknown_fields)]
pub struct TelemetrySpec {
    /// Istio's workload selection; the filter measures the Envoy it is in.
    pub selector: Option<serde_json::Value>,
    /// Istio's policy attachment; as `selector`.
    pub target_ref: Option<serde_json::Value>,
    /// As `targetRef`.
    pub target_refs: Option<serde_json::Value>,
    /// Metrics settings; later entries override earlier ones.
    #[serde(default)]
    pub metrics: Vec<Metrics>,
    /// Access logging settings.
    #[serde(default)]
    pub access_logging: Vec<AccessLogging>,
    /// Tracing settings; the first applies.
    #[serde(default)]
    pub tracing: Vec<Tracing>,
    /// meshwasm's own settings.
    #[serde(default)]
    pub meshwasm: Meshwasm,
}

/// A provider by name.
#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct ProviderRef {
    /// Its name, as in the mesh's `extensionProviders`.
    pub name: String,
}

/// `Metrics`.
#[derive(Debug, Deserialize)]
#[serde(rename_all = "camelCase", deny_unknown_fields)]
pub struct Metrics {
    /// Where metrics go; Envoy's stats serve every sink, Prometheus included.
    #[serde(default)]
    pub providers: Vec<ProviderRef>,
    /// The overrides, applied in order.
    #[serde(default)]
    pub overrides: Vec<MetricsOverride>,
    /// Istio's TCP reporting period; the filter reports as bytes flow.
    pub reporting_interval: Option<String>,
}

/// `MetricsOverrides`.
#[derive(Debug, Deserialize)]
#[serde(rename_all = "camelCase", deny_unknown_fields)]
pub struct MetricsOverride {
    /// Which metrics and modes; all when absent.
    #[serde(rename = "match")]
    pub selector: Option<MetricSelector>,
    /// Turns the metrics off (or back on).
    pub disabled: Option<bool>,
    /// Labels to add, change or remove, by name.
    #[serde(default)]
    pub tag_overrides: BTreeMap<String, TagOverride>,
}

/// `MetricSelector`.
#[derive(Debug, Deserialize)]
#[serde(rename_all = "camelCase", deny_unknown_fields)]
pub struct MetricSelector {
    /// An `IstioMetric` name (`REQUEST_COUNT`...), or `ALL_METRICS`.
    pub metric: Option<String>,
    /// A metric outside Istio's standard ones.
    pub custom_metric: Option<String>,
    /// `CLIENT_AND_SERVER` (default), `CLIENT` or `SERVER`.
    pub mode: Option<String>,
}

/// `TagOverride`.
#[derive(Debug, Deserialize)]
#[serde(rename_all = "camelCase", deny_unknown_fields)]
pub struct TagOverride {
    /// `UPSERT` (default) or `REMOVE`.
    pub operation: Option<String>,
    /// The label's value, an attribute expression (with `UPSERT`).
    pub value: Option<String>,
}

/// `AccessLogging`.
#[derive(Debug, Deserialize)]
#[serde(rename_all = "camelCase", deny_unknown_fields)]
pub struct AccessLogging {
    /// Which traffic: `{"mode": "CLIENT" | "SERVER" | "CLIENT_AND_SERVER"}`.
    #[serde(rename = "match")]
    pub selector: Option<ModeSelector>,
    /// Where entries go: `envoy` (Envoy's log) or the OTLP exporter's name.
    #[serde(default)]
    pub providers: Vec<ProviderRef>,
    /// Turns logging off.
    pub disabled: Option<bool>,
    /// Which requests are logged.
    pub filter: Option<AccessLogFilter>,
}

/// A `match` that selects by mode only.
#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct ModeSelector {
    /// `CLIENT_AND_SERVER` (default), `CLIENT` or `SERVER`.
    pub mode: Option<String>,
}

/// `AccessLogging.Filter`.
#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct AccessLogFilter {
    /// An attribute expression such as `response.code >= 400`.
    pub expression: String,
}

/// `Tracing`.
#[derive(Debug, Deserialize)]
#[serde(rename_all = "camelCase", deny_unknown_fields)]
pub struct Tracing {
    /// Which traffic.
    #[serde(rename = "match")]
    pub selector: Option<ModeSelector>,
    /// Where spans go: Envoy's tracer reports them.
    #[serde(default)]
    pub providers: Vec<ProviderRef>,
    /// The share of new traces sampled, 0 to 100 (Istio's default is 1).
    pub random_sampling_percentage: Option<f64>,
    /// Envoy's span reporting switch.
    pub disable_span_reporting: Option<bool>,
    /// Extra fields of each request's record.
    #[serde(default)]
    pub custom_tags: BTreeMap<String, CustomTag>,
    /// Envoy's sampling by request id.
    pub use_request_id_for_trace_sampling: Option<bool>,
    /// Istio's own span tags.
    pub enable_istio_tags: Option<bool>,
    /// Leaves trace headers alone.
    pub disable_context_propagation: Option<bool>,
}

/// `Tracing.CustomTag`: one of its kinds.
#[derive(Debug, Deserialize)]
#[serde(rename_all = "camelCase", deny_unknown_fields)]
pub struct CustomTag {
    /// A fixed value.
    pub literal: Option<LiteralTag>,
    /// An environment variable of the Wasm VM.
    pub environment: Option<NamedTag>,
    /// A request header.
    pub header: Option<NamedTag>,
    /// An access log operator.
    pub formatter: Option<LiteralTag>,
}

/// `{"value": ...}`.
#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct LiteralTag {
    /// The value.
    pub value: String,
}

/// `{"name": ..., "defaultValue": ...}`.
#[derive(Debug, Deserialize)]
#[serde(rename_all = "camelCase", deny_unknown_fields)]
pub struct NamedTag {
    /// The variable or header.
    pub name: String,
    /// The value when it is absent.
    pub default_value: Option<String>,
}

/// meshwasm's own settings, in the `meshwasm` key of the spec.
#[derive(Debug, Default, Deserialize)]
#[serde(rename_all = "camelCase", deny_unknown_fields)]
pub struct Meshwasm {
    /// `http` (default) or `network`: which of Envoy's Wasm filters loads
    /// the module (`envoy.filters.http.wasm` or `envoy.filters.network.wasm`).
    pub filter: Option<String>,
    /// `source` or `destination`, instead of the listener's direction.
    pub reporter: Option<String>,
    /// The longest label value taken from client input (default 64).
    pub max_label_length: Option<usize>,
    /// The most series per metric and reporter (default 1000).
    pub max_series: Option<usize>,
    /// The most peers remembered (default 1000).
    pub peer_cache_size: Option<usize>,
    /// Whether peers exchange metadata (default true).
    pub peer_exchange: Option<bool>,
    /// Whether requests get an `x-request-id` and a `traceparent` when
    /// missing (default true).
    pub trace_headers: Option<bool>,
    /// `JSON` (default) or `TEXT`: the access log format.
    pub access_log_format: Option<String>,
    /// The OpenTelemetry collector access logs can be exported to.
    pub otlp: Option<Otlp>,
}

/// An OTLP/HTTP logs exporter.
#[derive(Debug, Deserialize)]
#[serde(rename_all = "camelCase", deny_unknown_fields)]
pub struct Otlp {
    /// The provider name `accessLogging[].providers` use (default `otel`).
    pub provider: Option<String>,
    /// The Envoy cluster of the collector.
    pub cluster: String,
    /// The `:authority` of the export requests (default the cluster name).
    pub authority: Option<String>,
    /// The path (default `/v1/logs`).
    pub path: Option<String>,
    /// The most records per export (default 100).
    pub batch_size: Option<usize>,
    /// The most records waiting per worker (default 1000).
    pub buffer_size: Option<usize>,
    /// How often to export (default `1s`).
    pub flush_interval: Option<String>,
    /// How long an export may take (default `5s`).
    pub timeout: Option<String>,
    /// The `service.name` resource attribute (default the workload's canonical service).
    pub service_name: Option<String>,
}
