//! The scenario format: what a file says, what a run observed, and the
//! report that compares them.

use crate::{HeaderMap, LogLevel};
use serde::{Deserialize, Deserializer};
use serde_json::Value;
use std::collections::BTreeMap;
use std::fmt;
use std::path::PathBuf;
use std::time::Duration;

/// How long the sdk-host runner lets simulated time pass for a request the
/// filter holds before it reports that no answer came.
///
/// ```
/// # let module = sdk_host::doc_support::module("hold.wasm", r#"(func (export "proxy_on_request_headers") (param i32 i32 i32) (result i32) (i32.const 1))"#)?;
/// use sdk_host::scenario::Scenario;
/// // A filter that pauses every request and never resumes it.
/// let yaml = "filter: hold.wasm\nrequests: [{expect: {status: 200}}]\n";
/// let report = Scenario::from_yaml("hold.yaml", yaml)?.run(&module)?;
/// assert_eq!(report.failures, ["request 1: status: expected 200, no answer came"]);
/// # Ok::<(), Box<dyn std::error::Error>>(())
/// ```
pub const PATIENCE: Duration = Duration::from_secs(60);

/// The cluster requests go to. A scenario's hosts know it and every
/// cluster of its `clusters:`; HTTP callouts to it get the request's own
/// `response`, unless `clusters:` says what it answers.
///
/// ```
/// use sdk_host::scenario::{Scenario, UPSTREAM_CLUSTER};
/// let scenario = Scenario::from_yaml("s.yaml", "filter: f.wasm\nrequests: [{}]\n")?;
/// // Its hosts know this one cluster: callouts to others get BadArgument.
/// let _host = scenario.host_builder();
/// assert_eq!(UPSTREAM_CLUSTER, "upstream");
/// # Ok::<(), Box<dyn std::error::Error>>(())
/// ```
pub const UPSTREAM_CLUSTER: &str = "upstream";

/// A delay matches if the answer came no sooner (within
/// [`EARLY_TOLERANCE`]) and less than this later.
///
/// ```
/// use sdk_host::scenario::{Expect, Observed, DELAY_TOLERANCE};
/// use std::time::Duration;
/// let expect = Expect { delay: Some(Duration::from_secs(2)), ..Expect::default() };
/// let on_time = Observed { elapsed: Duration::from_millis(2004), ..Observed::default() };
/// let late = Observed { elapsed: Duration::from_secs(2) + DELAY_TOLERANCE, ..Observed::default() };
/// assert!(expect.mismatches(&on_time).is_empty());
/// assert_eq!(expect.mismatches(&late), ["delay: expected 2000 ms, the answer came after 3000 ms"]);
/// ```
pub const DELAY_TOLERANCE: Duration = Duration::from_secs(1);

/// How much sooner than its delay an answer may come: Envoy 1.40 was seen
/// to answer a request held by a 100 ms tick 99.x ms after the client
/// sent it (its event loop fires timers by a coarse cached clock).
pub const EARLY_TOLERANCE: Duration = Duration::from_millis(1);

/// A scenario: one plugin, its requests, and the expected outcome.
///
/// ```
/// use sdk_host::scenario::Scenario;
/// let scenario = Scenario::from_yaml(
///     "deny.yaml",
///     "filter: deny.wasm\nrequests:\n  - headers: {\":path\": /admin}\n    expect: {status: 403}\n",
/// )?;
/// assert_eq!(scenario.plugin_name(), "deny");
/// assert_eq!(scenario.requests[0].expect.status, Some(403));
/// # Ok::<(), sdk_host::scenario::ScenarioError>(())
/// ```
#[derive(Debug, Clone, Default, Deserialize)]
#[serde(deny_unknown_fields, rename_all = "camelCase")]
pub struct Scenario {
    /// What the scenario shows.
    #[serde(default)]
    pub description: String,
    /// The module: a path relative to the file, or a name the runner knows.
    pub filter: String,
    /// The plugin's root id.
    #[serde(default)]
    pub root_id: String,
    /// The VM id.
    #[serde(default)]
    pub vm_id: String,
    /// Plugin configuration: a string is given as is, anything else as JSON.
    #[serde(default)]
    pub config: Value,
    /// VM configuration, in the same form.
    #[serde(default)]
    pub vm_config: Value,
    /// More plugins of the same VM, after the first (`rootId`, `config`):
    /// they share its shared data and queues. Only for scenarios without
    /// requests, since sdk-host gives each stream to one plugin.
    #[serde(default)]
    pub plugins: Vec<PluginEntry>,
    /// Properties the filter reads, by dotted path (`xds.node.metadata.REGION`),
    /// over the host's defaults: a string, number or boolean, or a map whose
    /// keys continue the path whole (for segments with dots).
    #[serde(default)]
    pub properties: BTreeMap<String, Value>,
    /// What each callout cluster answers, by name.
    #[serde(default)]
    pub clusters: BTreeMap<String, ClusterAnswers>,
    /// The requests, played one after the other; none for a plugin that
    /// only works on ticks, queues and callouts of its own.
    #[serde(default)]
    pub requests: Vec<Exchange>,
    /// Time to let pass after the requests (ticks, callouts on ticks).
    #[serde(default, deserialize_with = "duration_opt")]
    pub advance: Option<Duration>,
    /// Metric values at the end, by the name the filter defined.
    #[serde(default)]
    pub metrics: BTreeMap<String, i64>,
    /// Messages the filter logs, in this order (other lines may come between).
    #[serde(default)]
    pub logs: Vec<ExpectedLog>,
    /// Things the filter does that Envoy refuses or ignores, which sdk-host
    /// reports ([`Host::violations`]): each entry is part of one report's
    /// text. Any other violation fails the scenario.
    #[serde(default)]
    pub violations: Vec<String>,
    /// The file it came from.
    #[serde(skip)]
    pub source: PathBuf,
}

/// One request, the upstream's answer to it, and what should come back.
///
/// ```
/// use sdk_host::scenario::Scenario;
/// let yaml = r#"
/// filter: f.wasm
/// requests:
///   - name: upload
///     headers: {":method": POST, x-user: [a, b]}
///     body: {repeat: "x", times: 1024}
///     response: {status: 201}
///     expect: {status: 201, upstreamHeaders: {x-user: a}}
/// "#;
/// let exchange = &Scenario::from_yaml("s.yaml", yaml)?.requests[0];
/// assert_eq!(exchange.body.as_ref().map(|b| b.bytes().len()), Some(1024));
/// assert_eq!(exchange.response.as_ref().map(|r| r.status), Some(201));
/// # Ok::<(), Box<dyn std::error::Error>>(())
/// ```
#[derive(Debug, Clone, Default, Deserialize)]
#[serde(deny_unknown_fields, rename_all = "camelCase")]
pub struct Exchange {
    /// A name for reports.
    #[serde(default)]
    pub name: String,
    /// Request headers, in the order the client sends them; `:method`,
    /// `:path`, `:authority` and `:scheme` default to `GET`, `/`,
    /// `example.com` and `http`. A list sends the header once per value.
    #[serde(default, deserialize_with = "ordered_headers")]
    pub headers: Vec<(String, HeaderValues)>,
    /// The request body.
    pub body: Option<Body>,
    /// Request trailers (sdk-host only: HTTP/1 clients do not send them).
    pub trailers: Option<BTreeMap<String, String>>,
    /// The upstream's answer if the request reaches it (default: 200, no
    /// body), and to the filter's HTTP callouts to [`UPSTREAM_CLUSTER`]
    /// meanwhile, unless `clusters:` names it.
    pub response: Option<UpstreamResponse>,
    /// Time to let pass after the answer (ticks, timers), e.g. `2s`, `150ms`.
    #[serde(default, deserialize_with = "duration_opt")]
    pub advance: Option<Duration>,
    /// What should come back.
    #[serde(default)]
    pub expect: Expect,
}

/// A plugin beside a scenario's first one, in the same VM.
///
/// ```
/// use sdk_host::scenario::Scenario;
/// let yaml = "filter: f.wasm\nrootId: sender\nplugins: [{rootId: receiver, config: {queue: q}}]\nadvance: 1s\n";
/// let scenario = Scenario::from_yaml("s.yaml", yaml)?;
/// assert_eq!(scenario.plugins[0].root_id, "receiver");
/// # Ok::<(), Box<dyn std::error::Error>>(())
/// ```
#[derive(Debug, Clone, Default, Deserialize)]
#[serde(deny_unknown_fields, rename_all = "camelCase")]
pub struct PluginEntry {
    /// Its name (default: the scenario's, then `-` and the root id).
    #[serde(default)]
    pub name: String,
    /// Its root id.
    #[serde(default)]
    pub root_id: String,
    /// Its configuration: a string is given as is, anything else as JSON.
    #[serde(default)]
    pub config: Value,
}

/// What one cluster answers: the same answer to every call, or a list
/// used in order whose last answer repeats.
///
/// ```
/// use sdk_host::scenario::{CalloutAnswer, Scenario};
/// let yaml = "filter: f.wasm\nclusters: {auth: [{status: 200}, {status: 403}], down: unreachable}\nrequests: [{}]\n";
/// let scenario = Scenario::from_yaml("s.yaml", yaml)?;
/// let auth = &scenario.clusters["auth"];
/// assert!(matches!(auth.nth(5), CalloutAnswer::Http(r) if r.status == 403));
/// assert!(matches!(scenario.clusters["down"].nth(0), CalloutAnswer::Unreachable));
/// # Ok::<(), Box<dyn std::error::Error>>(())
/// ```
#[derive(Debug, Clone)]
pub struct ClusterAnswers(pub Vec<CalloutAnswer>);

impl ClusterAnswers {
    /// The answer to the cluster's `n`th call (from 0).
    ///
    /// ```
    /// use sdk_host::scenario::{CalloutAnswer, ClusterAnswers};
    /// let answers = ClusterAnswers(vec![CalloutAnswer::Timeout, CalloutAnswer::Unreachable]);
    /// assert!(matches!(answers.nth(0), CalloutAnswer::Timeout));
    /// assert!(matches!(answers.nth(9), CalloutAnswer::Unreachable));
    /// ```
    pub fn nth(&self, n: usize) -> &CalloutAnswer {
        const NONE: &CalloutAnswer = &CalloutAnswer::Unreachable;
        self.0.get(n).or(self.0.last()).unwrap_or(NONE)
    }
}

impl<'de> Deserialize<'de> for ClusterAnswers {
    fn deserialize<D: Deserializer<'de>>(deserializer: D) -> Result<Self, D::Error> {
        let value = Value::deserialize(deserializer)?;
        let answers = match value {
            Value::Array(items) if items.is_empty() => {
                return Err(serde::de::Error::custom(
                    "an empty list: give at least one answer",
                ));
            }
            Value::Array(items) => items
                .into_iter()
                .enumerate()
                .map(|(i, item)| {
                    CalloutAnswer::from_value(item)
                        .map_err(|e| serde::de::Error::custom(format!("answer {}: {e}", i + 1)))
                })
                .collect::<Result<Vec<_>, D::Error>>()?,
            one => vec![CalloutAnswer::from_value(one).map_err(serde::de::Error::custom)?],
        };
        Ok(ClusterAnswers(answers))
    }
}

/// One answer a cluster gives a callout.
///
/// ```
/// use sdk_host::scenario::{CalloutAnswer, Scenario};
/// let yaml = "filter: f.wasm\nclusters: {rls: {grpc: {status: 14, message: unavailable}}}\nrequests: [{}]\n";
/// let scenario = Scenario::from_yaml("s.yaml", yaml)?;
/// assert!(matches!(scenario.clusters["rls"].nth(0), CalloutAnswer::Grpc(g) if g.status == 14));
/// # Ok::<(), Box<dyn std::error::Error>>(())
/// ```
#[derive(Debug, Clone)]
pub enum CalloutAnswer {
    /// An HTTP response (`{status, headers, body}`).
    Http(UpstreamResponse),
    /// A gRPC answer (`{grpc: {status, message, body, messages, ...}}`).
    Grpc(GrpcAnswer),
    /// `unreachable`: nothing listens there; Envoy's router answers the
    /// call itself (HTTP 503, gRPC status 14).
    Unreachable,
    /// `timeout`: no answer comes; the call's own timeout ends it.
    Timeout,
}

impl CalloutAnswer {
    fn from_value(value: Value) -> Result<CalloutAnswer, String> {
        match value {
            Value::String(word) => match word.as_str() {
                "unreachable" => Ok(CalloutAnswer::Unreachable),
                "timeout" => Ok(CalloutAnswer::Timeout),
                other => Err(format!(
                    "unknown answer {other:?}: give unreachable, timeout, an HTTP response {{status, headers, body}} or {{grpc: ...}}"
                )),
            },
            Value::Object(mut fields) if fields.contains_key("grpc") => {
                if fields.len() > 1 {
                    return Err("a gRPC answer holds only `grpc:`".into());
                }
                let grpc = fields.remove("grpc").unwrap_or_default();
                serde_json::from_value(grpc)
                    .map(CalloutAnswer::Grpc)
                    .map_err(|e| format!("grpc: {e}"))
            }
            other => serde_json::from_value(other)
                .map(CalloutAnswer::Http)
                .map_err(|e| e.to_string()),
        }
    }
}

/// A gRPC answer: to a unary call, `body` (status 0) or the status and
/// message; to a stream, its metadata, messages, trailers, then the
/// status that closes it.
///
/// ```
/// use sdk_host::scenario::GrpcAnswer;
/// let ok: GrpcAnswer = serde_json::from_str(r#"{"body": "allowed"}"#)?;
/// assert_eq!((ok.status, ok.message.as_str()), (0, ""));
/// # Ok::<(), serde_json::Error>(())
/// ```
#[derive(Debug, Clone, Default, Deserialize)]
#[serde(deny_unknown_fields, rename_all = "camelCase")]
pub struct GrpcAnswer {
    /// The gRPC status code (0 is OK).
    #[serde(default)]
    pub status: u32,
    /// The status message.
    #[serde(default)]
    pub message: String,
    /// The response message of a unary call (its serialized bytes, as text).
    pub body: Option<Body>,
    /// A stream's messages, in order.
    #[serde(default)]
    pub messages: Vec<Body>,
    /// A stream's initial metadata.
    #[serde(default)]
    pub initial_metadata: BTreeMap<String, String>,
    /// A stream's trailing metadata (besides `grpc-status` and `grpc-message`).
    #[serde(default)]
    pub trailers: BTreeMap<String, String>,
}

/// One header value, or several (the header is sent once per value).
///
/// ```
/// use sdk_host::scenario::Scenario;
/// let yaml = "filter: f.wasm\nrequests: [{headers: {x-one: a, x-two: [b, c]}}]\n";
/// let scenario = Scenario::from_yaml("s.yaml", yaml)?;
/// let values: Vec<_> = scenario.requests[0].headers.iter().map(|(_, v)| v.values().len()).collect();
/// assert_eq!(values, [1, 2]);
/// # Ok::<(), Box<dyn std::error::Error>>(())
/// ```
#[derive(Debug, Clone, Deserialize)]
#[serde(untagged)]
pub enum HeaderValues {
    /// One value.
    One(String),
    /// Several values, in order.
    Many(Vec<String>),
}

impl HeaderValues {
    /// The values, in order.
    ///
    /// ```
    /// use sdk_host::scenario::HeaderValues;
    /// let many = HeaderValues::Many(vec!["a".into(), "b".into()]);
    /// assert_eq!(many.values(), ["a", "b"]);
    /// assert_eq!(HeaderValues::One("a".into()).values(), ["a"]);
    /// ```
    pub fn values(&self) -> &[String] {
        match self {
            HeaderValues::One(value) => std::slice::from_ref(value),
            HeaderValues::Many(values) => values,
        }
    }
}

/// A body: text, or one string repeated (for large bodies).
///
/// ```
/// use sdk_host::scenario::Body;
/// assert_eq!(Body::Text("hi".into()).bytes(), b"hi");
/// let big = Body::Repeat { repeat: "ab".into(), times: 3 };
/// assert_eq!(big.bytes(), b"ababab");
/// ```
#[derive(Debug, Clone, Deserialize)]
#[serde(untagged)]
pub enum Body {
    /// The body as written.
    Text(String),
    /// `repeat` written `times` times.
    Repeat {
        /// The piece.
        repeat: String,
        /// How many times.
        times: usize,
    },
}

impl Body {
    /// The bytes.
    ///
    /// ```
    /// use sdk_host::scenario::Body;
    /// assert_eq!(Body::Repeat { repeat: "0".into(), times: 4 }.bytes(), b"0000");
    /// ```
    pub fn bytes(&self) -> Vec<u8> {
        match self {
            Body::Text(text) => text.as_bytes().to_vec(),
            Body::Repeat { repeat, times } => repeat.repeat(*times).into_bytes(),
        }
    }
}

/// What the upstream answers.
///
/// ```
/// use sdk_host::scenario::UpstreamResponse;
/// // What the upstream answers when a scenario does not say.
/// let default = UpstreamResponse::default();
/// assert_eq!((default.status, default.headers.len(), default.body.is_none()), (200, 0, true));
/// ```
#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct UpstreamResponse {
    /// Status code.
    #[serde(default = "ok_status")]
    pub status: u16,
    /// Headers.
    #[serde(default)]
    pub headers: BTreeMap<String, String>,
    /// Body.
    pub body: Option<Body>,
}

impl Default for UpstreamResponse {
    fn default() -> Self {
        UpstreamResponse {
            status: ok_status(),
            headers: BTreeMap::new(),
            body: None,
        }
    }
}

fn ok_status() -> u16 {
    200
}

/// What should come back; every field left out is not checked.
///
/// ```
/// use sdk_host::scenario::{Expect, Observed};
/// use sdk_host::HeaderMap;
/// let expect = Expect {
///     status: Some(403),
///     headers: [("x-reason".to_string(), Some("denied".to_string()))].into(),
///     reaches_upstream: Some(false),
///     ..Expect::default()
/// };
/// let got = Observed {
///     status: Some(403),
///     headers: HeaderMap::from_pairs([(":status", "403"), ("x-reason", "denied")]),
///     ..Observed::default()
/// };
/// assert!(expect.mismatches(&got).is_empty());
/// ```
#[derive(Debug, Clone, Default, Deserialize)]
#[serde(deny_unknown_fields, rename_all = "camelCase")]
pub struct Expect {
    /// The status the client gets.
    pub status: Option<u16>,
    /// Response headers the client gets; `null` means absent.
    #[serde(default)]
    pub headers: BTreeMap<String, Option<String>>,
    /// The body the client gets.
    pub body: Option<String>,
    /// Whether the request reached the upstream.
    pub reaches_upstream: Option<bool>,
    /// Request headers the upstream gets; `null` means absent.
    #[serde(default)]
    pub upstream_headers: BTreeMap<String, Option<String>>,
    /// The request body the upstream gets.
    pub upstream_body: Option<String>,
    /// The answer comes this long after the request, within [`DELAY_TOLERANCE`].
    #[serde(default, deserialize_with = "duration_opt")]
    pub delay: Option<Duration>,
}

/// A log message the filter should write.
///
/// ```
/// use sdk_host::scenario::Scenario;
/// let yaml = "filter: f.wasm\nrequests: [{}]\nlogs: [ready, {level: warning, message: slow}]\n";
/// let scenario = Scenario::from_yaml("s.yaml", yaml)?;
/// assert_eq!(scenario.logs[1].to_string(), r#"[warning] "slow""#);
/// # Ok::<(), Box<dyn std::error::Error>>(())
/// ```
#[derive(Debug, Clone, Deserialize)]
#[serde(untagged)]
pub enum ExpectedLog {
    /// This message, at any level.
    Message(String),
    /// This message at this level (`trace`, `debug`, `info`, `warning`,
    /// `error`, `critical`).
    AtLevel {
        /// The level's name.
        level: String,
        /// The message.
        message: String,
    },
}

impl ExpectedLog {
    pub(super) fn matches(&self, level: LogLevel, message: &str) -> bool {
        match self {
            ExpectedLog::Message(m) => m == message,
            ExpectedLog::AtLevel {
                level: l,
                message: m,
            } => m == message && (l == level.name() || (l == "warn" && level == LogLevel::Warn)),
        }
    }
}

impl fmt::Display for ExpectedLog {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            ExpectedLog::Message(m) => write!(f, "{m:?}"),
            ExpectedLog::AtLevel { level, message } => write!(f, "[{level}] {message:?}"),
        }
    }
}

/// What one request got, from sdk-host or from Envoy.
///
/// ```
/// # let module = sdk_host::doc_support::pass_through()?;
/// use sdk_host::scenario::Scenario;
/// let yaml = "filter: pass.wasm\nrequests: [{response: {status: 204}}]\n";
/// let report = Scenario::from_yaml("pass.yaml", yaml)?.run(&module)?;
/// let got = &report.observed[0];
/// assert_eq!(got.status, Some(204));
/// assert!(got.upstream.is_some());
/// # Ok::<(), Box<dyn std::error::Error>>(())
/// ```
#[derive(Debug, Clone, Default)]
pub struct Observed {
    /// The status the client got; `None` if no answer came.
    pub status: Option<u16>,
    /// The response headers the client got.
    pub headers: HeaderMap,
    /// The body the client got.
    pub body: Vec<u8>,
    /// What reached the upstream, if anything did.
    pub upstream: Option<UpstreamSaw>,
    /// From the request to the answer.
    pub elapsed: Duration,
    /// The details of the filter's local reply, if it sent one (sdk-host
    /// only), e.g. `fault_filter_abort`.
    pub local_reply: Option<String>,
    /// The callouts still waiting when no answer came (sdk-host only),
    /// e.g. `HTTP call 4 to auth: GET /check`.
    pub pending: Vec<String>,
}

/// The request as the upstream got it.
///
/// ```
/// # let module = sdk_host::doc_support::pass_through()?;
/// use sdk_host::scenario::Scenario;
/// let yaml = "filter: pass.wasm\nrequests: [{headers: {\":path\": /a}, body: hi}]\n";
/// let report = Scenario::from_yaml("pass.yaml", yaml)?.run(&module)?;
/// let saw = report.observed[0].upstream.as_ref().ok_or("not forwarded")?;
/// assert_eq!((saw.headers.get(":path"), saw.body.as_slice()), (Some("/a"), &b"hi"[..]));
/// # Ok::<(), Box<dyn std::error::Error>>(())
/// ```
#[derive(Debug, Clone, Default)]
pub struct UpstreamSaw {
    /// Its headers.
    pub headers: HeaderMap,
    /// Its body.
    pub body: Vec<u8>,
}

/// The outcome of a run: what each request got and everything that did
/// not match.
///
/// ```
/// # let module = sdk_host::doc_support::pass_through()?;
/// use sdk_host::scenario::Scenario;
/// let yaml = "filter: pass.wasm\nrequests: [{name: home, expect: {status: 404}}]\n";
/// let report = Scenario::from_yaml("pass.yaml", yaml)?.run(&module)?;
/// assert!(!report.passed());
/// assert_eq!(report.failures, ["request 1 (home): status: expected 404, got 200"]);
/// # Ok::<(), Box<dyn std::error::Error>>(())
/// ```
#[derive(Debug, Clone, Default)]
pub struct Report {
    /// Per request, in order.
    pub observed: Vec<Observed>,
    /// Every mismatch, one line each, naming the request and the field.
    pub failures: Vec<String>,
    /// What the filter logged, to explain the failures.
    pub logs: Vec<(LogLevel, String)>,
}

impl Report {
    /// Whether everything matched.
    ///
    /// ```
    /// use sdk_host::scenario::Report;
    /// assert!(Report::default().passed());
    /// ```
    pub fn passed(&self) -> bool {
        self.failures.is_empty()
    }
}

/// A scenario file that cannot be used.
///
/// ```
/// use sdk_host::scenario::Scenario;
/// let err = Scenario::from_yaml("s.yaml", "filter: f.wasm\nrequests: [{hedaers: {}}]\n").unwrap_err();
/// assert!(err.to_string().starts_with("s.yaml: line 2, column 13: requests[0].hedaers: unknown field"));
/// ```
#[derive(Debug, thiserror::Error)]
#[error("{path}: {message}")]
pub struct ScenarioError {
    /// The file.
    pub path: String,
    /// What is wrong, with the line and field where there is one.
    pub message: String,
}

/// A map of header names to values, keeping the order of the file.
fn ordered_headers<'de, D: Deserializer<'de>>(
    deserializer: D,
) -> Result<Vec<(String, HeaderValues)>, D::Error> {
    struct Ordered;
    impl<'de> serde::de::Visitor<'de> for Ordered {
        type Value = Vec<(String, HeaderValues)>;
        fn expecting(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
            f.write_str("a map of header names to a value or a list of values")
        }
        fn visit_map<A: serde::de::MapAccess<'de>>(
            self,
            mut map: A,
        ) -> Result<Self::Value, A::Error> {
            let mut pairs = Vec::new();
            while let Some(entry) = map.next_entry()? {
                pairs.push(entry);
            }
            Ok(pairs)
        }
    }
    deserializer.deserialize_map(Ordered)
}

fn duration_opt<'de, D: Deserializer<'de>>(deserializer: D) -> Result<Option<Duration>, D::Error> {
    let text = Option::<Value>::deserialize(deserializer)?;
    match text {
        None | Some(Value::Null) => Ok(None),
        Some(Value::String(s)) => parse_duration(&s)
            .map(Some)
            .map_err(serde::de::Error::custom),
        Some(Value::Number(n)) => n
            .as_f64()
            .and_then(|s| Duration::try_from_secs_f64(s).ok())
            .map(Some)
            .ok_or_else(|| serde::de::Error::custom(format!("{n} is not a duration"))),
        Some(other) => Err(serde::de::Error::custom(format!(
            "{other} is not a duration like 2s or 150ms"
        ))),
    }
}

/// Parses `2s`, `150ms`, `20us` or `1m`; a bare number is seconds.
///
/// # Errors
///
/// Not a number with one of those units.
///
/// ```
/// use sdk_host::scenario::parse_duration;
/// use std::time::Duration;
/// assert_eq!(parse_duration("150ms"), Ok(Duration::from_millis(150)));
/// assert_eq!(parse_duration("2"), Ok(Duration::from_secs(2)));
/// assert!(parse_duration("2 days").is_err());
/// ```
pub fn parse_duration(text: &str) -> Result<Duration, String> {
    let text = text.trim();
    let (number, unit) = text
        .find(|c: char| !c.is_ascii_digit() && c != '.')
        .map_or((text, "s"), |at| text.split_at(at));
    let value: f64 = number
        .parse()
        .map_err(|_| format!("{text:?} is not a duration like 2s or 150ms"))?;
    let seconds = match unit {
        "s" => value,
        "ms" => value / 1e3,
        "us" => value / 1e6,
        "m" => value * 60.0,
        _ => return Err(format!("unknown unit in {text:?} (use us, ms, s or m)")),
    };
    Duration::try_from_secs_f64(seconds).map_err(|e| format!("{text:?}: {e}"))
}
