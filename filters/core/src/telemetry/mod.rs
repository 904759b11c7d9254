//! Istio's telemetry from any Envoy: the standard metrics with Istio's
//! labels, peer metadata exchange, access logs and trace context, from an
//! Istio Telemetry `spec`.
//!
//! - [`config`]: the document.
//! - [`labels`], [`workload`], [`flags`]: Istio's labels and where their
//!   values come from.
//! - [`peer`], [`proto`]: the HTTP metadata exchange.
//! - [`expr`]: the attribute expressions of `tagOverrides` and log filters.
//! - [`access_log`], [`otlp`]: log entries, and their export.
//! - [`trace`], [`grpc`]: request ids, trace context, gRPC message counts.
//!
//! The plan says, per request, which series to update with which label
//! values; the filter gathers the facts and carries the updates out.

pub mod access_log;
pub mod config;
pub mod expr;
pub mod flags;
pub mod grpc;
pub mod labels;
pub mod otlp;
pub mod peer;
pub mod proto;
pub mod trace;
pub mod workload;

use crate::config::{Document, parse};
use crate::duration::parse_duration;
use crate::error::{ConfigError, ConfigErrorKind, ConfigNote, FieldPath};
use crate::metrics::{MetricKind, MetricRef, MetricSpec};
use crate::percent::PerMillion;
use crate::plan::Plan;
use access_log::{Entry, Format};
use config::{CustomTag, Meshwasm, TelemetrySpec};
use expr::{Attribute, Attributes, Expr};
use labels::{Facts, Reporter, STANDARD_LABELS, Service, TCP_LABEL_COUNT};
use std::collections::{BTreeSet, HashMap};
use std::time::Duration;

/// Istio's standard metrics: the `IstioMetric` name, the metric, its
/// kind, and whether it is a TCP metric.
pub const ISTIO_METRICS: [(&str, &str, MetricKind, bool); 10] = [
    (
        "REQUEST_COUNT",
        "istio_requests_total",
        MetricKind::Counter,
        false,
    ),
    (
        "REQUEST_DURATION",
        "istio_request_duration_milliseconds",
        MetricKind::Histogram,
        false,
    ),
    (
        "REQUEST_SIZE",
        "istio_request_bytes",
        MetricKind::Histogram,
        false,
    ),
    (
        "RESPONSE_SIZE",
        "istio_response_bytes",
        MetricKind::Histogram,
        false,
    ),
    (
        "GRPC_REQUEST_MESSAGES",
        "istio_request_messages_total",
        MetricKind::Counter,
        false,
    ),
    (
        "GRPC_RESPONSE_MESSAGES",
        "istio_response_messages_total",
        MetricKind::Counter,
        false,
    ),
    (
        "TCP_OPENED_CONNECTIONS",
        "istio_tcp_connections_opened_total",
        MetricKind::Counter,
        true,
    ),
    (
        "TCP_CLOSED_CONNECTIONS",
        "istio_tcp_connections_closed_total",
        MetricKind::Counter,
        true,
    ),
    (
        "TCP_SENT_BYTES",
        "istio_tcp_sent_bytes_total",
        MetricKind::Counter,
        true,
    ),
    (
        "TCP_RECEIVED_BYTES",
        "istio_tcp_received_bytes_total",
        MetricKind::Counter,
        true,
    ),
];

/// Indexes into [`ISTIO_METRICS`].
pub mod istio_metric {
    /// `istio_requests_total`.
    pub const REQUESTS: usize = 0;
    /// `istio_request_duration_milliseconds`.
    pub const DURATION: usize = 1;
    /// `istio_request_bytes`.
    pub const REQUEST_BYTES: usize = 2;
    /// `istio_response_bytes`.
    pub const RESPONSE_BYTES: usize = 3;
    /// `istio_request_messages_total`.
    pub const REQUEST_MESSAGES: usize = 4;
    /// `istio_response_messages_total`.
    pub const RESPONSE_MESSAGES: usize = 5;
    /// `istio_tcp_connections_opened_total`.
    pub const TCP_OPENED: usize = 6;
    /// `istio_tcp_connections_closed_total`.
    pub const TCP_CLOSED: usize = 7;
    /// `istio_tcp_sent_bytes_total`.
    pub const TCP_SENT: usize = 8;
    /// `istio_tcp_received_bytes_total`.
    pub const TCP_RECEIVED: usize = 9;
}

/// The filter's own counters, label-free, before the Istio metrics.
pub mod metric {
    use crate::metrics::MetricRef;
    /// Updates that went to a metric's `other` series, its bound reached.
    pub const SERIES_OVERFLOW: MetricRef = MetricRef(0);
    /// Access log records dropped because the export buffer was full.
    pub const LOG_DROPPED: MetricRef = MetricRef(1);
    /// Access log records the collector accepted.
    pub const LOG_EXPORTED: MetricRef = MetricRef(2);
    /// Access log records lost to a failed export.
    pub const LOG_EXPORT_FAILED: MetricRef = MetricRef(3);
    /// Peer metadata headers that could not be decoded.
    pub const PEER_INVALID: MetricRef = MetricRef(4);
}

const OWN_METRICS: [&str; 5] = [
    "meshwasm.telemetry.series_overflow",
    "meshwasm.telemetry.access_log.dropped",
    "meshwasm.telemetry.access_log.exported",
    "meshwasm.telemetry.access_log.export_failed",
    "meshwasm.telemetry.peer_metadata_invalid",
];

/// Where a label's value comes from.
#[derive(Debug, Clone, PartialEq)]
enum LabelSource {
    /// One of [`STANDARD_LABELS`], by index.
    Standard(usize),
    /// A `tagOverrides` expression.
    Expr(Expr),
}

/// A metric as one reporter reports it.
#[derive(Debug, Clone)]
struct Family {
    metric: usize,
    reporter: Reporter,
    enabled: bool,
    labels: Vec<(String, LabelSource)>,
}

/// Which side's traffic a setting applies to.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Mode {
    ClientAndServer,
    Client,
    Server,
}

impl Mode {
    fn parse(mode: Option<&str>, path: &FieldPath<'_>) -> Result<Mode, ConfigError> {
        match mode {
            None | Some("CLIENT_AND_SERVER") => Ok(Mode::ClientAndServer),
            Some("CLIENT") => Ok(Mode::Client),
            Some("SERVER") => Ok(Mode::Server),
            Some(other) => Err(path.error(ConfigErrorKind::Invalid {
                reason: format!("unknown mode {other:?}; use CLIENT_AND_SERVER, CLIENT or SERVER"),
            })),
        }
    }

    fn covers(self, reporter: Reporter) -> bool {
        match self {
            Mode::ClientAndServer => true,
            Mode::Client => reporter == Reporter::Source,
            Mode::Server => reporter == Reporter::Destination,
        }
    }
}

/// One access log setting in force.
#[derive(Debug, Clone)]
struct Sink {
    mode: Mode,
    filter: Option<Expr>,
    envoy_log: bool,
    otlp: bool,
}

/// Where a tracing custom tag's value comes from.
#[derive(Debug, Clone, PartialEq, Eq)]
enum TagSource {
    Fixed(String),
    Header(String, Option<String>),
}

/// The OTLP exporter's settings.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct OtlpExport {
    /// The collector's Envoy cluster.
    pub cluster: String,
    /// The `:authority` of the requests.
    pub authority: String,
    /// The path.
    pub path: String,
    /// Records per export.
    pub batch_size: usize,
    /// Records waiting per worker, at most.
    pub buffer_size: usize,
    /// How often to export.
    pub flush_interval: Duration,
    /// How long an export may take.
    pub timeout: Duration,
    /// The `service.name` resource attribute, if configured.
    pub service_name: Option<String>,
}

/// The request and response headers a plan reads.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct Needs {
    /// Request headers, lower case.
    pub request_headers: BTreeSet<String>,
    /// Response headers, lower case.
    pub response_headers: BTreeSet<String>,
}

/// What an HTTP request measured, besides its labels.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct HttpMeasures {
    /// `request.duration`, in milliseconds.
    pub duration_ms: u64,
    /// Request bytes, headers included.
    pub request_bytes: u64,
    /// Response bytes, headers included.
    pub response_bytes: u64,
    /// gRPC messages received from the client.
    pub request_messages: u64,
    /// gRPC messages sent to the client.
    pub response_messages: u64,
}

/// What a TCP connection did since it was last reported.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct TcpMeasures {
    /// The connection opened.
    pub opened: bool,
    /// The connection closed.
    pub closed: bool,
    /// Bytes sent to the downstream client.
    pub sent: u64,
    /// Bytes received from the downstream client.
    pub received: u64,
}

/// How one update changes a metric.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Change {
    /// Add to a counter.
    Add(i64),
    /// Record in a histogram.
    Record(u64),
}

/// The metric updates of one report: each update names its metric and
/// the label values it goes to.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct Report {
    /// The distinct lists of label values, referred to by index.
    pub label_sets: Vec<Vec<String>>,
    /// The updates: metric, index into `label_sets`, change.
    pub updates: Vec<(MetricRef, usize, Change)>,
}

/// A Telemetry spec, compiled.
///
/// # Examples
///
/// ```
/// use meshwasm_core::plan::Plan;
/// use meshwasm_core::telemetry::TelemetryPlan;
///
/// let plan = TelemetryPlan::from_json(br#"{"metrics": [{"overrides": [{
///     "match": {"metric": "REQUEST_COUNT", "mode": "SERVER"},
///     "tagOverrides": {"tenant": {"value": "request.headers['x-tenant']"},
///                      "source_principal": {"operation": "REMOVE"}}
/// }]}]}"#).unwrap();
/// let labels = plan.label_names("istio_requests_total", "destination").unwrap();
/// assert_eq!(labels.len(), 25);
/// assert_eq!(labels.last().map(String::as_str), Some("tenant"));
/// assert!(!labels.iter().any(|l| l == "source_principal"));
/// assert_eq!(plan.label_names("istio_requests_total", "source").unwrap().len(), 25);
/// assert!(plan.needs().request_headers.contains("x-tenant"));
///
/// let err = TelemetryPlan::from_json(br#"{"metrics": [{"overrides": [{"match": {"metric": "REQUEST_BYTES"}}]}]}"#).unwrap_err();
/// assert_eq!(err.path, "metrics[0].overrides[0].match.metric");
/// ```
#[derive(Debug, Clone)]
pub struct TelemetryPlan {
    network: bool,
    reporter: Option<Reporter>,
    max_label_length: usize,
    max_series: usize,
    peer_cache_size: usize,
    peer_exchange: bool,
    trace_sampling: Option<PerMillion>,
    families: Vec<Family>,
    /// The distinct label expressions of each reporter's families
    /// (source, destination), for [`TelemetryPlan::report_key`].
    expressions: [Vec<Expr>; 2],
    sinks: Vec<Sink>,
    log_format: Format,
    custom_tags: Vec<(String, TagSource)>,
    otlp: Option<OtlpExport>,
    otlp_provider: String,
    needs: Needs,
    notes: Vec<ConfigNote>,
}

/// Headers every HTTP request is read for.
const BASE_REQUEST_HEADERS: [&str; 8] = [
    ":authority",
    "content-type",
    peer::METADATA_HEADER,
    peer::ID_HEADER,
    "x-request-id",
    "traceparent",
    "x-b3-traceid",
    "b3",
];

/// Headers the access log entry reads.
const LOG_REQUEST_HEADERS: [&str; 5] = [
    ":method",
    ":path",
    "x-envoy-original-path",
    "x-forwarded-for",
    "user-agent",
];

impl Plan for TelemetryPlan {
    const DOCUMENT: Document = Document {
        name: "a Telemetry spec",
        example: r#"{} (Istio's defaults) or {"accessLogging": [{"providers": [{"name": "envoy"}]}]}"#,
        list_key: None,
    };

    fn from_json(json: &[u8]) -> Result<Self, ConfigError> {
        let spec: TelemetrySpec = parse(json, Self::DOCUMENT)?;
        compile(spec)
    }

    fn notes(&self) -> &[ConfigNote] {
        &self.notes
    }

    fn summary(&self) -> String {
        let enabled: BTreeSet<&str> = self
            .families
            .iter()
            .filter(|f| f.enabled && ISTIO_METRICS[f.metric].3 == self.network)
            .map(|f| ISTIO_METRICS[f.metric].1)
            .collect();
        format!(
            "{} filter; reporter {}; metrics: {}; access log: {}; trace headers: {}; peer exchange: {}",
            if self.network { "network" } else { "http" },
            self.reporter
                .map_or("by listener direction", Reporter::as_str),
            if enabled.is_empty() {
                "none".to_owned()
            } else {
                enabled.into_iter().collect::<Vec<_>>().join(", ")
            },
            match (self.sinks.is_empty(), self.otlp.as_ref()) {
                (true, _) => "off".to_owned(),
                (false, Some(o)) => format!("on, exported to cluster {}", o.cluster),
                (false, None) => "on".to_owned(),
            },
            if self.trace_sampling.is_some() {
                "on"
            } else {
                "off"
            },
            if self.peer_exchange { "on" } else { "off" },
        )
    }

    fn metrics(&self) -> Vec<MetricSpec> {
        let own = OWN_METRICS.iter().map(|name| MetricSpec::counter(*name));
        let families = self.families.iter().map(|f| {
            let (_, name, kind, _) = ISTIO_METRICS[f.metric];
            let spec = match kind {
                MetricKind::Histogram => MetricSpec::histogram(name),
                MetricKind::Gauge => MetricSpec::gauge(name),
                MetricKind::Counter => MetricSpec::counter(name),
            };
            spec.with_labels(f.labels.iter().map(|(n, _)| n.clone()))
                .with_max_series(self.max_series)
        });
        own.chain(families).collect()
    }
}

fn compile(spec: TelemetrySpec) -> Result<TelemetryPlan, ConfigError> {
    let root = FieldPath::ROOT;
    let mut notes = Vec::new();
    for (field, value) in [
        ("selector", &spec.selector),
        ("targetRef", &spec.target_ref),
        ("targetRefs", &spec.target_refs),
    ] {
        if value.is_some() {
            notes.push(root.field(field).note(
                "workload selection is Istio's: the filter measures the traffic of the Envoy it is loaded in",
            ));
        }
    }
    let meshwasm = &spec.meshwasm;
    let mw = root.field("meshwasm");
    let network = match meshwasm.filter.as_deref() {
        None | Some("http") => false,
        Some("network") => true,
        Some(other) => {
            return Err(mw.field("filter").error(ConfigErrorKind::Invalid {
                reason: format!(
                    "unknown filter {other:?}; use \"http\" (envoy.filters.http.wasm) or \"network\" (envoy.filters.network.wasm)"
                ),
            }));
        }
    };
    let reporter = match meshwasm.reporter.as_deref() {
        None => None,
        Some("source") => Some(Reporter::Source),
        Some("destination") => Some(Reporter::Destination),
        Some(other) => {
            return Err(mw.field("reporter").error(ConfigErrorKind::Invalid {
                reason: format!("unknown reporter {other:?}; use \"source\" or \"destination\""),
            }));
        }
    };
    let mut needs = Needs::default();
    if !network {
        needs
            .request_headers
            .extend(BASE_REQUEST_HEADERS.iter().map(|h| (*h).to_owned()));
        needs
            .response_headers
            .extend([peer::METADATA_HEADER, peer::ID_HEADER].map(str::to_owned));
    }
    let families = compile_metrics(&spec, &mut needs, &mut notes)?;
    let otlp_provider = meshwasm
        .otlp
        .as_ref()
        .and_then(|o| o.provider.clone())
        .unwrap_or_else(|| "otel".to_owned());
    let otlp = meshwasm
        .otlp
        .as_ref()
        .map(|o| compile_otlp(o, &mw.field("otlp")))
        .transpose()?;
    let sinks = compile_access_logs(&spec, &otlp_provider, otlp.is_some(), &mut needs)?;
    if !sinks.is_empty() && !network {
        needs
            .request_headers
            .extend(LOG_REQUEST_HEADERS.iter().map(|h| (*h).to_owned()));
        needs
            .response_headers
            .insert("x-envoy-upstream-service-time".to_owned());
    }
    let log_format = match meshwasm.access_log_format.as_deref() {
        None | Some("JSON") => Format::Json,
        Some("TEXT") => Format::Text,
        Some(other) => {
            return Err(mw.field("accessLogFormat").error(ConfigErrorKind::Invalid {
                reason: format!("unknown format {other:?}; use \"JSON\" or \"TEXT\""),
            }));
        }
    };
    let (trace_sampling, custom_tags) = compile_tracing(&spec, meshwasm, &mut needs, &mut notes)?;
    let expressions = [Reporter::Source, Reporter::Destination].map(|reporter| {
        let mut exprs: Vec<Expr> = Vec::new();
        for family in families
            .iter()
            .filter(|f| f.reporter == reporter && f.enabled)
        {
            for (_, source) in &family.labels {
                if let LabelSource::Expr(expr) = source
                    && !exprs.contains(expr)
                {
                    exprs.push(expr.clone());
                }
            }
        }
        exprs
    });
    let plan = TelemetryPlan {
        network,
        reporter,
        expressions,
        max_label_length: meshwasm.max_label_length.unwrap_or(64).max(1),
        max_series: meshwasm
            .max_series
            .unwrap_or(crate::metrics::DEFAULT_MAX_SERIES),
        peer_cache_size: meshwasm.peer_cache_size.unwrap_or(1000),
        peer_exchange: meshwasm.peer_exchange.unwrap_or(true) && !network,
        trace_sampling,
        families,
        sinks,
        log_format,
        custom_tags,
        otlp,
        otlp_provider,
        needs,
        notes,
    };
    Ok(plan)
}

fn compile_metrics(
    spec: &TelemetrySpec,
    needs: &mut Needs,
    notes: &mut Vec<ConfigNote>,
) -> Result<Vec<Family>, ConfigError> {
    let mut families: Vec<Family> = (0..ISTIO_METRICS.len())
        .flat_map(|metric| {
            let count = if ISTIO_METRICS[metric].3 {
                TCP_LABEL_COUNT
            } else {
                STANDARD_LABELS.len()
            };
            let labels: Vec<(String, LabelSource)> = STANDARD_LABELS[..count]
                .iter()
                .enumerate()
                .map(|(i, name)| ((*name).to_owned(), LabelSource::Standard(i)))
                .collect();
            [Reporter::Source, Reporter::Destination].map(|reporter| Family {
                metric,
                reporter,
                enabled: true,
                labels: labels.clone(),
            })
        })
        .collect();
    let root = FieldPath::ROOT;
    let metrics_path = root.field("metrics");
    for (i, metrics) in spec.metrics.iter().enumerate() {
        let at = metrics_path.index(i);
        if metrics.reporting_interval.is_some() {
            notes.push(
                at.field("reportingInterval")
                    .note("TCP metrics are updated as bytes flow, not on an interval"),
            );
        }
        if metrics.providers.iter().any(|p| p.name != "prometheus") {
            notes.push(at.field("providers").note(
                "metrics are Envoy stats, served to every stats sink Envoy has: the provider names are not used",
            ));
        }
        let overrides_path = at.field("overrides");
        for (j, entry) in metrics.overrides.iter().enumerate() {
            let at = overrides_path.index(j);
            let selected = select_metrics(entry.selector.as_ref(), &at)?;
            let mode_path = at.field("match");
            let mode = Mode::parse(
                entry.selector.as_ref().and_then(|s| s.mode.as_deref()),
                &mode_path.field("mode"),
            )?;
            let tags_path = at.field("tagOverrides");
            let mut tags = Vec::new();
            for (name, tag) in &entry.tag_overrides {
                let tag_path = tags_path.field(name);
                if !is_label_name(name) {
                    return Err(tag_path.error(ConfigErrorKind::Invalid {
                        reason: format!(
                            "{name:?} is not a Prometheus label name ([a-zA-Z_][a-zA-Z0-9_]*)"
                        ),
                    }));
                }
                let remove = match tag.operation.as_deref() {
                    None | Some("UPSERT") => false,
                    Some("REMOVE") => true,
                    Some(other) => {
                        return Err(tag_path.field("operation").error(ConfigErrorKind::Invalid {
                            reason: format!("unknown operation {other:?}; use UPSERT or REMOVE"),
                        }));
                    }
                };
                let source = match (remove, tag.value.as_deref()) {
                    (true, Some(_)) => {
                        return Err(tag_path.field("value").error(ConfigErrorKind::Conflict {
                            reason: "a REMOVE takes no value",
                        }));
                    }
                    (true, None) => None,
                    (false, None) => {
                        return Err(tag_path.field("value").error(ConfigErrorKind::Missing {
                            reason: "an UPSERT needs the label's value, an attribute expression",
                        }));
                    }
                    (false, Some(source)) => {
                        let expr = Expr::parse(source).map_err(|reason| {
                            tag_path
                                .field("value")
                                .error(ConfigErrorKind::Invalid { reason })
                        })?;
                        note_needs(&expr, needs);
                        Some(LabelSource::Expr(expr))
                    }
                };
                tags.push((name.clone(), source));
            }
            for family in families
                .iter_mut()
                .filter(|f| selected.contains(&f.metric) && mode.covers(f.reporter))
            {
                if let Some(disabled) = entry.disabled {
                    family.enabled = !disabled;
                }
                for (name, source) in &tags {
                    let place = family.labels.iter().position(|(n, _)| n == name);
                    match (place, source) {
                        (Some(i), None) => {
                            family.labels.remove(i);
                        }
                        (Some(i), Some(source)) => family.labels[i].1 = source.clone(),
                        (None, Some(source)) => family.labels.push((name.clone(), source.clone())),
                        (None, None) => {}
                    }
                }
            }
        }
    }
    Ok(families)
}

fn select_metrics(
    selector: Option<&config::MetricSelector>,
    at: &FieldPath<'_>,
) -> Result<Vec<usize>, ConfigError> {
    let all = (0..ISTIO_METRICS.len()).collect();
    let Some(selector) = selector else {
        return Ok(all);
    };
    let m = at.field("match");
    if selector.custom_metric.is_some() {
        return Err(m.field("customMetric").error(ConfigErrorKind::Unsupported {
            reason: "meshwasm reports Istio's standard metrics; select one with `metric`",
        }));
    }
    match selector.metric.as_deref() {
        None | Some("ALL_METRICS") => Ok(all),
        Some(name) => ISTIO_METRICS
            .iter()
            .position(|(enum_name, ..)| *enum_name == name)
            .map(|i| vec![i])
            .ok_or_else(|| {
                let known: Vec<&str> = ISTIO_METRICS.iter().map(|m| m.0).collect();
                m.field("metric").error(ConfigErrorKind::Invalid {
                    reason: format!(
                        "unknown metric {name:?}; use ALL_METRICS or one of {}",
                        known.join(", ")
                    ),
                })
            }),
    }
}

fn is_label_name(name: &str) -> bool {
    let mut chars = name.chars();
    chars
        .next()
        .is_some_and(|c| c.is_ascii_alphabetic() || c == '_')
        && chars.all(|c| c.is_ascii_alphanumeric() || c == '_')
}

fn note_needs(expr: &Expr, needs: &mut Needs) {
    for attribute in expr.attributes() {
        match attribute {
            Attribute::RequestHeader(name) => {
                needs.request_headers.insert(name.clone());
            }
            Attribute::ResponseHeader(name) => {
                needs.response_headers.insert(name.clone());
            }
            Attribute::Property(_) | Attribute::Peer(..) => {}
        }
    }
}

fn compile_access_logs(
    spec: &TelemetrySpec,
    otlp_provider: &str,
    have_otlp: bool,
    needs: &mut Needs,
) -> Result<Vec<Sink>, ConfigError> {
    let root = FieldPath::ROOT;
    let logs = root.field("accessLogging");
    let mut sinks = Vec::new();
    for (i, entry) in spec.access_logging.iter().enumerate() {
        let at = logs.index(i);
        let mode = Mode::parse(
            entry.selector.as_ref().and_then(|s| s.mode.as_deref()),
            &at.field("match").field("mode"),
        )?;
        let filter = entry
            .filter
            .as_ref()
            .map(|f| {
                Expr::parse(&f.expression).map_err(|reason| {
                    at.field("filter")
                        .field("expression")
                        .error(ConfigErrorKind::Invalid { reason })
                })
            })
            .transpose()?;
        if let Some(expr) = &filter {
            note_needs(expr, needs);
        }
        let mut sink = Sink {
            mode,
            filter,
            envoy_log: entry.providers.is_empty(),
            otlp: false,
        };
        let providers = at.field("providers");
        for (j, provider) in entry.providers.iter().enumerate() {
            match provider.name.as_str() {
                "envoy" => sink.envoy_log = true,
                name if name == otlp_provider && have_otlp => sink.otlp = true,
                name => {
                    return Err(providers.index(j).field("name").error(ConfigErrorKind::Invalid {
                        reason: format!(
                            "unknown provider {name:?}: meshwasm logs to `envoy` (Envoy's log) and to the OTLP exporter of `meshwasm.otlp` (named {otlp_provider:?}{})",
                            if have_otlp { "" } else { ", not configured" }
                        ),
                    }));
                }
            }
        }
        if entry.disabled != Some(true) {
            sinks.push(sink);
        }
    }
    Ok(sinks)
}

fn compile_otlp(otlp: &config::Otlp, at: &FieldPath<'_>) -> Result<OtlpExport, ConfigError> {
    let duration = |value: Option<&str>, field: &str, default: Duration| {
        value.map_or(Ok(default), |v| {
            parse_duration(v).map_err(|e| {
                at.field(field).error(ConfigErrorKind::InvalidDuration {
                    reason: e.to_string(),
                })
            })
        })
    };
    if otlp.cluster.is_empty() {
        return Err(at.field("cluster").error(ConfigErrorKind::Missing {
            reason: "the Envoy cluster of the OpenTelemetry collector",
        }));
    }
    Ok(OtlpExport {
        cluster: otlp.cluster.clone(),
        authority: otlp
            .authority
            .clone()
            .unwrap_or_else(|| otlp.cluster.clone()),
        path: otlp.path.clone().unwrap_or_else(|| "/v1/logs".to_owned()),
        batch_size: otlp.batch_size.unwrap_or(100).max(1),
        buffer_size: otlp.buffer_size.unwrap_or(1000),
        flush_interval: duration(
            otlp.flush_interval.as_deref(),
            "flushInterval",
            Duration::from_secs(1),
        )?
        .max(Duration::from_millis(10)),
        timeout: duration(otlp.timeout.as_deref(), "timeout", Duration::from_secs(5))?,
        service_name: otlp.service_name.clone(),
    })
}

/// Istio's default share of new traces that are sampled: 1 %.
const DEFAULT_SAMPLING_PERCENT: f64 = 1.0;

type Tracing = (Option<PerMillion>, Vec<(String, TagSource)>);

fn compile_tracing(
    spec: &TelemetrySpec,
    meshwasm: &Meshwasm,
    needs: &mut Needs,
    notes: &mut Vec<ConfigNote>,
) -> Result<Tracing, ConfigError> {
    let root = FieldPath::ROOT;
    let tracing_path = root.field("tracing");
    let first = spec.tracing.first();
    let at = tracing_path.index(0);
    let percent = first
        .and_then(|t| t.random_sampling_percentage)
        .unwrap_or(DEFAULT_SAMPLING_PERCENT);
    let sampling = PerMillion::from_percent(percent)
        .map_err(|kind| at.field("randomSamplingPercentage").error(kind))?;
    let propagate = meshwasm.trace_headers.unwrap_or(true)
        && first.and_then(|t| t.disable_context_propagation) != Some(true);
    if spec.tracing.len() > 1 {
        notes.push(
            tracing_path
                .index(1)
                .note("only the first tracing entry applies"),
        );
    }
    let mut tags = Vec::new();
    if let Some(tracing) = first {
        if !tracing.providers.is_empty() || tracing.disable_span_reporting.is_some() {
            notes.push(at.field("providers").note(
                "spans are reported by Envoy's tracer: the filter starts and forwards the trace context only",
            ));
        }
        if tracing.use_request_id_for_trace_sampling.is_some()
            || tracing.enable_istio_tags.is_some()
        {
            notes.push(at.note(
                "useRequestIdForTraceSampling and enableIstioTags are Envoy tracer settings, not used by the filter",
            ));
        }
        if tracing.selector.is_some() {
            notes.push(
                at.field("match")
                    .note("trace context is started for all traffic the filter sees"),
            );
        }
        let tags_path = at.field("customTags");
        for (name, tag) in &tracing.custom_tags {
            let tag_path = tags_path.field(name);
            tags.push((name.clone(), custom_tag(tag, &tag_path)?));
            if let TagSource::Header(header, _) = &tags[tags.len() - 1].1 {
                needs.request_headers.insert(header.clone());
            }
        }
        if !tags.is_empty() {
            notes.push(tags_path.note(
                "custom tags are added to each access log entry (and its OTLP attributes), since the filter reports no spans",
            ));
        }
    }
    Ok((propagate.then_some(sampling), tags))
}

fn custom_tag(tag: &CustomTag, at: &FieldPath<'_>) -> Result<TagSource, ConfigError> {
    match (&tag.literal, &tag.environment, &tag.header, &tag.formatter) {
        (Some(literal), None, None, None) => Ok(TagSource::Fixed(literal.value.clone())),
        (None, Some(env), None, None) => Ok(TagSource::Fixed(
            std::env::var(&env.name)
                .ok()
                .or_else(|| env.default_value.clone())
                .unwrap_or_default(),
        )),
        (None, None, Some(header), None) => Ok(TagSource::Header(
            header.name.to_ascii_lowercase(),
            header.default_value.clone(),
        )),
        (None, None, None, Some(_)) => Err(at.field("formatter").error(ConfigErrorKind::Unsupported {
            reason: "access log operators are Envoy's formatter; use literal, environment or header",
        })),
        _ => Err(at.error(ConfigErrorKind::Conflict {
            reason: "set exactly one of literal, environment, header and formatter",
        })),
    }
}

impl TelemetryPlan {
    /// Whether the module runs as Envoy's network (TCP) Wasm filter.
    pub fn network(&self) -> bool {
        self.network
    }

    /// The reporter for a listener with this direction.
    pub fn reporter(&self, direction: Option<i64>) -> Reporter {
        self.reporter
            .unwrap_or_else(|| Reporter::from_direction(direction))
    }

    /// Whether the listener's direction must be read.
    pub fn needs_direction(&self) -> bool {
        self.reporter.is_none()
    }

    /// Whether peers exchange metadata.
    pub fn peer_exchange(&self) -> bool {
        self.peer_exchange
    }

    /// How many peers to remember.
    pub fn peer_cache_size(&self) -> usize {
        self.peer_cache_size
    }

    /// The sampling of new traces, when the filter adds trace headers.
    pub fn trace_sampling(&self) -> Option<PerMillion> {
        self.trace_sampling
    }

    /// What the plan reads from requests.
    pub fn needs(&self) -> &Needs {
        &self.needs
    }

    /// The OTLP exporter, if configured.
    pub fn otlp(&self) -> Option<&OtlpExport> {
        self.otlp.as_ref()
    }

    /// The name `accessLogging[].providers` give the OTLP exporter.
    pub fn otlp_provider(&self) -> &str {
        &self.otlp_provider
    }

    /// The access log format.
    pub fn log_format(&self) -> Format {
        self.log_format
    }

    /// Whether any access log setting applies to `reporter`'s traffic.
    pub fn logs(&self, reporter: Reporter) -> bool {
        self.sinks.iter().any(|s| s.mode.covers(reporter))
    }

    /// The label names of a metric as `reporter` (`source` or
    /// `destination`) reports it, or `None` for an unknown metric.
    pub fn label_names(&self, metric: &str, reporter: &str) -> Option<Vec<String>> {
        self.families
            .iter()
            .find(|f| ISTIO_METRICS[f.metric].1 == metric && f.reporter.as_str() == reporter)
            .map(|f| f.labels.iter().map(|(n, _)| n.clone()).collect())
    }

    /// Every label name any metric carries, standard ones first: what
    /// Envoy's `stats_tags` must extract.
    pub fn all_label_names(&self) -> Vec<String> {
        let mut names: Vec<String> = STANDARD_LABELS.iter().map(|l| (*l).to_owned()).collect();
        for family in &self.families {
            for (name, _) in &family.labels {
                if !names.contains(name) {
                    names.push(name.clone());
                }
            }
        }
        names
    }

    /// A value from client input, cut to the label length bound.
    pub fn cap(&self, value: &str) -> String {
        if value.len() <= self.max_label_length {
            return value.to_owned();
        }
        let mut end = self.max_label_length;
        while !value.is_char_boundary(end) {
            end -= 1;
        }
        value[..end].to_owned()
    }

    /// The service a request names by its host, as Istio falls back to
    /// without cluster metadata; cut to the label length bound, since the
    /// client chose it.
    pub fn service_from_authority(&self, authority: &str) -> Service {
        Service::from_authority(&self.cap(authority))
    }

    /// The metric changes of one finished HTTP request, before labels:
    /// the four HTTP metrics, and gRPC's message counts for gRPC, of the
    /// families `reporter` reports and the spec leaves enabled.
    pub fn http_changes(
        &self,
        reporter: Reporter,
        grpc: bool,
        measures: &HttpMeasures,
    ) -> Vec<(MetricRef, Change)> {
        use istio_metric::*;
        let mut changes = vec![
            (REQUESTS, Change::Add(1)),
            (DURATION, Change::Record(measures.duration_ms)),
            (REQUEST_BYTES, Change::Record(measures.request_bytes)),
            (RESPONSE_BYTES, Change::Record(measures.response_bytes)),
        ];
        if grpc {
            for (metric, count) in [
                (REQUEST_MESSAGES, measures.request_messages),
                (RESPONSE_MESSAGES, measures.response_messages),
            ] {
                if let Ok(count @ 1..) = i64::try_from(count) {
                    changes.push((metric, Change::Add(count)));
                }
            }
        }
        self.enabled(reporter, changes)
    }

    /// The metric changes of what a TCP connection did, before labels.
    pub fn tcp_changes(
        &self,
        reporter: Reporter,
        measures: &TcpMeasures,
    ) -> Vec<(MetricRef, Change)> {
        use istio_metric::*;
        let mut changes = Vec::new();
        if measures.opened {
            changes.push((TCP_OPENED, Change::Add(1)));
        }
        for (metric, bytes) in [(TCP_SENT, measures.sent), (TCP_RECEIVED, measures.received)] {
            if let Ok(bytes @ 1..) = i64::try_from(bytes) {
                changes.push((metric, Change::Add(bytes)));
            }
        }
        if measures.closed {
            changes.push((TCP_CLOSED, Change::Add(1)));
        }
        self.enabled(reporter, changes)
    }

    /// The enabled families of `reporter` for Istio metrics, as refs.
    fn enabled(
        &self,
        reporter: Reporter,
        changes: Vec<(usize, Change)>,
    ) -> Vec<(MetricRef, Change)> {
        changes
            .into_iter()
            .filter_map(|(metric, change)| {
                let index = self
                    .families
                    .iter()
                    .position(|f| f.metric == metric && f.reporter == reporter)?;
                self.families[index]
                    .enabled
                    .then_some((MetricRef(OWN_METRICS.len() + index), change))
            })
            .collect()
    }

    /// The label values of `metric` (a ref from the changes), from the
    /// facts' standard values and the spec's expressions.
    pub fn labels(
        &self,
        metric: MetricRef,
        standard: &[String],
        attrs: &mut dyn Attributes,
    ) -> Vec<String> {
        let Some(family) = metric
            .0
            .checked_sub(OWN_METRICS.len())
            .and_then(|i| self.families.get(i))
        else {
            return Vec::new();
        };
        family
            .labels
            .iter()
            .map(|(_, source)| match source {
                LabelSource::Standard(i) => standard.get(*i).cloned().unwrap_or_default(),
                LabelSource::Expr(expr) => self.cap(&expr.eval(attrs).to_label()),
            })
            .collect()
    }

    /// A key for the label values of every metric `facts.reporter`
    /// reports: equal keys, equal labels. It holds the facts and the
    /// values of the spec's expressions, so a filter may keep each
    /// series' host id by it instead of building 25 values per request.
    pub fn report_key(&self, facts: &Facts<'_>, attrs: &mut dyn Attributes) -> Vec<u8> {
        let mut key = Vec::with_capacity(160);
        facts.write_key(&mut key);
        let exprs = match facts.reporter {
            Reporter::Source => &self.expressions[0],
            Reporter::Destination => &self.expressions[1],
        };
        for expr in exprs {
            key.extend_from_slice(self.cap(&expr.eval(attrs).to_label()).as_bytes());
            key.push(0xff);
        }
        key
    }

    /// The metric updates for one finished HTTP request, with their labels.
    pub fn http_report(
        &self,
        facts: &Facts<'_>,
        measures: &HttpMeasures,
        attrs: &mut dyn Attributes,
    ) -> Report {
        let grpc = facts.protocol == labels::Protocol::Grpc;
        let changes = self.http_changes(facts.reporter, grpc, measures);
        self.report(facts, &changes, attrs)
    }

    /// The metric updates for what a TCP connection did, with their labels.
    pub fn tcp_report(
        &self,
        facts: &Facts<'_>,
        measures: &TcpMeasures,
        attrs: &mut dyn Attributes,
    ) -> Report {
        let changes = self.tcp_changes(facts.reporter, measures);
        self.report(facts, &changes, attrs)
    }

    fn report(
        &self,
        facts: &Facts<'_>,
        changes: &[(MetricRef, Change)],
        attrs: &mut dyn Attributes,
    ) -> Report {
        let mut report = Report::default();
        if changes.is_empty() {
            return report;
        }
        let standard = facts.values();
        for &(metric, change) in changes {
            let values = self.labels(metric, &standard, attrs);
            let set = match report.label_sets.iter().position(|s| *s == values) {
                Some(set) => set,
                None => {
                    report.label_sets.push(values);
                    report.label_sets.len() - 1
                }
            };
            report.updates.push((metric, set, change));
        }
        report
    }

    /// Whether `reporter`'s request is logged, and where: `(to Envoy's
    /// log, to the OTLP exporter)`.
    pub fn log_targets(&self, reporter: Reporter, attrs: &mut dyn Attributes) -> (bool, bool) {
        let mut targets = (false, false);
        for sink in self.sinks.iter().filter(|s| s.mode.covers(reporter)) {
            if sink.filter.as_ref().is_none_or(|f| f.matches(attrs)) {
                targets.0 |= sink.envoy_log;
                targets.1 |= sink.otlp;
            }
        }
        targets
    }

    /// The custom tags' values for an entry: fixed ones, and headers read
    /// through `attrs`, cut to the label length bound.
    pub fn custom_tags(&self, attrs: &mut dyn Attributes) -> Vec<(String, String)> {
        self.custom_tags
            .iter()
            .map(|(name, source)| {
                let value = match source {
                    TagSource::Fixed(value) => value.clone(),
                    TagSource::Header(header, default) => attrs
                        .request_header(header)
                        .or_else(|| default.clone())
                        .unwrap_or_default(),
                };
                (name.clone(), self.cap(&value))
            })
            .collect()
    }

    /// An entry rendered in the configured format.
    pub fn render(&self, entry: &Entry) -> String {
        entry.render(self.log_format)
    }
}

/// The host ids of the series each [report key](TelemetryPlan::report_key)
/// names, so that a request like one seen before updates its series
/// without building label values. Bounded: past `capacity` keys it starts
/// over (the metrics keep their series; only the shortcut is lost).
///
/// # Examples
///
/// ```
/// use meshwasm_core::metrics::MetricRef;
/// use meshwasm_core::telemetry::SeriesCache;
///
/// let mut cache = SeriesCache::new(1);
/// cache.insert(b"200", MetricRef(5), Some(7), false);
/// assert_eq!(cache.get(b"200", MetricRef(5)), Some((Some(7), false)));
/// assert_eq!(cache.get(b"200", MetricRef(6)), None);
/// cache.insert(b"404", MetricRef(5), Some(8), false);
/// assert_eq!(cache.get(b"200", MetricRef(5)), None, "over capacity: started over");
/// ```
#[derive(Debug)]
pub struct SeriesCache {
    capacity: usize,
    entries: HashMap<Vec<u8>, Vec<CachedSeries>>,
}

/// A metric, its series' host id, and whether that is the overflow series.
type CachedSeries = (MetricRef, Option<u32>, bool);

impl SeriesCache {
    /// A cache of at most `capacity` keys.
    pub fn new(capacity: usize) -> SeriesCache {
        SeriesCache {
            capacity,
            entries: HashMap::new(),
        }
    }

    /// The host id of `metric`'s series under `key`, and whether it is the
    /// overflow series, if known.
    pub fn get(&self, key: &[u8], metric: MetricRef) -> Option<(Option<u32>, bool)> {
        self.entries
            .get(key)?
            .iter()
            .find(|(m, _, _)| *m == metric)
            .map(|(_, id, overflow)| (*id, *overflow))
    }

    /// The series to update for `changes` of the request `facts` describe:
    /// each series' host id, its change, and whether it is an overflow
    /// series. Ids come from the cache when these facts were seen before;
    /// otherwise the labels are built once and `resolve` gives the id (the
    /// host's metric table, defining the series at its first use).
    pub fn updates(
        &mut self,
        plan: &TelemetryPlan,
        facts: &Facts<'_>,
        changes: &[(MetricRef, Change)],
        attrs: &mut dyn Attributes,
        mut resolve: impl FnMut(MetricRef, &[&str]) -> (Option<u32>, bool),
    ) -> Vec<(Option<u32>, Change, bool)> {
        if changes.is_empty() {
            return Vec::new();
        }
        let key = plan.report_key(facts, attrs);
        let mut standard: Option<Vec<String>> = None;
        changes
            .iter()
            .map(|&(metric, change)| {
                let (id, overflow) = self.get(&key, metric).unwrap_or_else(|| {
                    let standard = standard.get_or_insert_with(|| facts.values());
                    let values = plan.labels(metric, standard, attrs);
                    let values: Vec<&str> = values.iter().map(String::as_str).collect();
                    let (id, overflow) = resolve(metric, &values);
                    self.insert(&key, metric, id, overflow);
                    (id, overflow)
                });
                (id, change, overflow)
            })
            .collect()
    }

    /// Remembers `metric`'s series under `key`.
    pub fn insert(&mut self, key: &[u8], metric: MetricRef, id: Option<u32>, overflow: bool) {
        if !self.entries.contains_key(key) && self.entries.len() >= self.capacity {
            self.entries.clear();
        }
        self.entries
            .entry(key.to_vec())
            .or_default()
            .push((metric, id, overflow));
    }
}
