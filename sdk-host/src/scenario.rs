//! Scenario files: a plugin's configuration, the requests to play, and what
//! should come back. The same file runs in sdk-host ([`Scenario::run`]) and
//! in a real Envoy (meshwasm-local's `scenario` module), and both runs are
//! judged by the same [`Scenario::judge`], so a difference between the two
//! shows up as a failure on one side.
//!
//! ```yaml
//! description: jason gets a 500, everyone else reaches the upstream
//! filter: fault                  # resolved by the runner (a path by default)
//! rootId: ""                     # optional, as are vmId and vmConfig
//! config: {hosts: ["*"], http: [...]}   # a string is passed as is; anything else as JSON
//! requests:
//!   - name: jason
//!     headers: {":path": /ratings/0, ":authority": ratings, cookie: user=jason}
//!     body: optional text, or {repeat: "x", times: 65536}
//!     response: {status: 200, headers: {x-upstream: v1}, body: "v1"}  # the upstream's answer
//!     expect:
//!       status: 500
//!       headers: {content-type: text/plain, x-removed: null}
//!       body: fault filter abort
//!       reachesUpstream: false
//!       upstreamHeaders: {x-added: "yes"}
//!       delay: 2s                # the answer came after [2 s - 1 ms, 3 s)
//! metrics: {meshwasm.fault.aborts_injected: 1}
//! logs: ["a message", {level: warning, message: "another, later"}]
//! violations: ["read after the callback"]   # sdk-host's Envoy-behaviour reports
//! ```

use crate::{
    CalloutResponse, Error, HeaderMap, Host, HostBuilder, LogLevel, MetricValue, WasmModule,
};
use envoyfilter::yaml::Document;
use serde::{Deserialize, Deserializer};
use serde_json::Value;
use std::collections::BTreeMap;
use std::fmt;
use std::path::{Path, PathBuf};
use std::time::Duration;

/// How long the sdk-host runner lets simulated time pass for a request the
/// filter holds before it reports that no answer came.
///
/// ```
/// # let wat = r#"(module (memory (export "memory") 1) (func (export "proxy_abi_version_0_2_1"))
/// #   (func (export "malloc") (param i32) (result i32) (i32.const 1024))
/// #   (func (export "proxy_on_request_headers") (param i32 i32 i32) (result i32) (i32.const 1)))"#;
/// # let module = sdk_host::WasmModule::from_bytes("hold.wasm", &wat::parse_str(wat)?)?;
/// use sdk_host::scenario::Scenario;
/// // A filter that pauses every request and never resumes it.
/// let yaml = "filter: hold.wasm\nrequests: [{expect: {status: 200}}]\n";
/// let report = Scenario::from_yaml("hold.yaml", yaml)?.run(&module)?;
/// assert_eq!(report.failures, ["request 1: status: expected 200, no answer came"]);
/// # Ok::<(), Box<dyn std::error::Error>>(())
/// ```
pub const PATIENCE: Duration = Duration::from_secs(60);

/// The one cluster a scenario has: requests go there, and so do HTTP
/// callouts, which get the same answer as the request being played.
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
#[derive(Debug, Clone, Deserialize)]
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
    /// The requests, played one after the other.
    pub requests: Vec<Exchange>,
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
    /// Request headers; `:method`, `:path`, `:authority` and `:scheme`
    /// default to `GET`, `/`, `example.com` and `http`. A list sends the
    /// header once per value.
    #[serde(default)]
    pub headers: BTreeMap<String, HeaderValues>,
    /// The request body.
    pub body: Option<Body>,
    /// Request trailers (sdk-host only: HTTP/1 clients do not send them).
    pub trailers: Option<BTreeMap<String, String>>,
    /// The upstream's answer if the request reaches it (default: 200, no
    /// body), and to the filter's HTTP callouts meanwhile.
    pub response: Option<UpstreamResponse>,
    /// Time to let pass after the answer (ticks, timers), e.g. `2s`, `150ms`.
    #[serde(default, deserialize_with = "duration_opt")]
    pub advance: Option<Duration>,
    /// What should come back.
    #[serde(default)]
    pub expect: Expect,
}

/// One header value, or several (the header is sent once per value).
///
/// ```
/// use sdk_host::scenario::Scenario;
/// let yaml = "filter: f.wasm\nrequests: [{headers: {x-one: a, x-two: [b, c]}}]\n";
/// let scenario = Scenario::from_yaml("s.yaml", yaml)?;
/// let values: Vec<_> = scenario.requests[0].headers.values().map(|v| v.values().len()).collect();
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
    fn matches(&self, level: LogLevel, message: &str) -> bool {
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
/// # let wat = r#"(module (memory (export "memory") 1) (func (export "proxy_abi_version_0_2_1"))
/// #   (func (export "malloc") (param i32) (result i32) (i32.const 1024)))"#;
/// # let module = sdk_host::WasmModule::from_bytes("pass.wasm", &wat::parse_str(wat)?)?;
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
}

/// The request as the upstream got it.
///
/// ```
/// # let wat = r#"(module (memory (export "memory") 1) (func (export "proxy_abi_version_0_2_1"))
/// #   (func (export "malloc") (param i32) (result i32) (i32.const 1024)))"#;
/// # let module = sdk_host::WasmModule::from_bytes("pass.wasm", &wat::parse_str(wat)?)?;
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
/// # let wat = r#"(module (memory (export "memory") 1) (func (export "proxy_abi_version_0_2_1"))
/// #   (func (export "malloc") (param i32) (result i32) (i32.const 1024)))"#;
/// # let module = sdk_host::WasmModule::from_bytes("pass.wasm", &wat::parse_str(wat)?)?;
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

impl Scenario {
    /// Reads a scenario from a YAML or JSON file.
    ///
    /// # Errors
    ///
    /// The file cannot be read or is not a scenario; the message names the
    /// line, column and field.
    ///
    /// ```no_run
    /// use sdk_host::{scenario::Scenario, WasmModule};
    /// let scenario = Scenario::from_file("tests/scenarios/deny-admin.yaml")?;
    /// let report = scenario.run(&WasmModule::from_file(scenario.filter_path())?)?;
    /// assert!(report.passed(), "{:#?}", report.failures);
    /// # Ok::<(), Box<dyn std::error::Error>>(())
    /// ```
    pub fn from_file(path: impl AsRef<Path>) -> Result<Scenario, ScenarioError> {
        let path = path.as_ref();
        let text = std::fs::read_to_string(path).map_err(|e| ScenarioError {
            path: path.display().to_string(),
            message: e.to_string(),
        })?;
        Scenario::from_yaml(path, &text)
    }

    /// Reads a scenario from YAML (or JSON) text; `path` names it in errors
    /// and anchors relative `filter` paths.
    ///
    /// # Errors
    ///
    /// As [`from_file`](Self::from_file).
    ///
    /// ```
    /// use sdk_host::scenario::Scenario;
    /// let scenario = Scenario::from_yaml("dir/s.yaml", "filter: f.wasm\nconfig: {a: 1}\nrequests: [{}]\n")?;
    /// assert_eq!(scenario.config_bytes(), br#"{"a":1}"#);
    /// assert!(Scenario::from_yaml("s.yaml", "filter: f.wasm\nrequests: []\n").is_err());
    /// # Ok::<(), Box<dyn std::error::Error>>(())
    /// ```
    pub fn from_yaml(path: impl AsRef<Path>, text: &str) -> Result<Scenario, ScenarioError> {
        let path = path.as_ref();
        let mut scenario: Scenario = load_yaml(path, text)?;
        scenario.source = path.to_path_buf();
        if scenario.requests.is_empty() {
            return Err(ScenarioError {
                path: path.display().to_string(),
                message: "requests: at least one request is needed".into(),
            });
        }
        Ok(scenario)
    }

    /// The plugin's name: the file's stem.
    ///
    /// ```
    /// use sdk_host::scenario::Scenario;
    /// let scenario = Scenario::from_yaml("tests/deny-admin.yaml", "filter: f.wasm\nrequests: [{}]\n")?;
    /// assert_eq!(scenario.plugin_name(), "deny-admin");
    /// # Ok::<(), Box<dyn std::error::Error>>(())
    /// ```
    pub fn plugin_name(&self) -> String {
        self.source
            .file_stem()
            .map_or_else(|| "scenario".into(), |s| s.to_string_lossy().into_owned())
    }

    /// `filter` as a path, relative to the scenario's directory.
    ///
    /// ```
    /// use sdk_host::scenario::Scenario;
    /// use std::path::Path;
    /// let scenario = Scenario::from_yaml("tests/s.yaml", "filter: ../f.wasm\nrequests: [{}]\n")?;
    /// assert_eq!(scenario.filter_path(), Path::new("tests/../f.wasm"));
    /// # Ok::<(), Box<dyn std::error::Error>>(())
    /// ```
    pub fn filter_path(&self) -> PathBuf {
        self.source
            .parent()
            .unwrap_or(Path::new(""))
            .join(&self.filter)
    }

    /// The plugin configuration as the filter gets it.
    ///
    /// ```
    /// use sdk_host::scenario::Scenario;
    /// let as_text = Scenario::from_yaml("s.yaml", "filter: f.wasm\nconfig: 'deny /admin'\nrequests: [{}]\n")?;
    /// assert_eq!(as_text.config_bytes(), b"deny /admin");
    /// let as_json = Scenario::from_yaml("s.yaml", "filter: f.wasm\nconfig: [1, 2]\nrequests: [{}]\n")?;
    /// assert_eq!(as_json.config_bytes(), b"[1,2]");
    /// # Ok::<(), Box<dyn std::error::Error>>(())
    /// ```
    pub fn config_bytes(&self) -> Vec<u8> {
        configuration(&self.config)
    }

    /// The VM configuration as the filter gets it.
    ///
    /// ```
    /// use sdk_host::scenario::Scenario;
    /// let scenario = Scenario::from_yaml("s.yaml", "filter: f.wasm\nvmConfig: {workers: 2}\nrequests: [{}]\n")?;
    /// assert_eq!(scenario.vm_config_bytes(), br#"{"workers":2}"#);
    /// # Ok::<(), Box<dyn std::error::Error>>(())
    /// ```
    pub fn vm_config_bytes(&self) -> Vec<u8> {
        configuration(&self.vm_config)
    }

    /// A host builder with this scenario's plugin and VM, and one cluster,
    /// [`UPSTREAM_CLUSTER`].
    ///
    /// ```
    /// # let wat = r#"(module (memory (export "memory") 1) (func (export "proxy_abi_version_0_2_1"))
    /// #   (func (export "malloc") (param i32) (result i32) (i32.const 1024)))"#;
    /// # let module = sdk_host::WasmModule::from_bytes("pass.wasm", &wat::parse_str(wat)?)?;
    /// use sdk_host::scenario::Scenario;
    /// let scenario = Scenario::from_yaml("pass.yaml", "filter: pass.wasm\nrequests: [{}]\n")?;
    /// // The scenario's plugin, with a setting of the test's own.
    /// let mut host = scenario.host_builder().seed(7).start(&module)?;
    /// assert!(scenario.play(&mut host)?.passed());
    /// # Ok::<(), Box<dyn std::error::Error>>(())
    /// ```
    pub fn host_builder(&self) -> HostBuilder {
        Host::builder()
            .cluster(UPSTREAM_CLUSTER)
            .vm_id(&self.vm_id)
            .vm_config(self.vm_config_bytes())
            .plugin(&self.plugin_name(), &self.root_id, self.config_bytes())
    }

    /// Runs the scenario through `module` in a fresh host.
    ///
    /// # Errors
    ///
    /// The plugin does not start, or the guest traps.
    ///
    /// ```
    /// # let wat = r#"(module (memory (export "memory") 1) (func (export "proxy_abi_version_0_2_1"))
    /// #   (func (export "malloc") (param i32) (result i32) (i32.const 1024)))"#;
    /// # let module = sdk_host::WasmModule::from_bytes("pass.wasm", &wat::parse_str(wat)?)?;
    /// use sdk_host::scenario::Scenario;
    /// let yaml = "filter: pass.wasm\nrequests: [{body: hi, expect: {status: 200, upstreamBody: hi}}]\n";
    /// let report = Scenario::from_yaml("pass.yaml", yaml)?.run(&module)?;
    /// assert!(report.passed(), "{:?}", report.failures);
    /// # Ok::<(), Box<dyn std::error::Error>>(())
    /// ```
    pub fn run(&self, module: &WasmModule) -> Result<Report, Error> {
        let mut host = self.host_builder().start(module)?;
        self.play(&mut host)
    }

    /// Runs the scenario through a filter linked into the test binary.
    ///
    /// # Errors
    ///
    /// As [`run`](Self::run).
    ///
    /// ```ignore
    /// // In a filter crate's tests, with sdk-host's `native` feature:
    /// let scenario = sdk_host::scenario::Scenario::from_file("tests/deny-admin.yaml")?;
    /// let report = scenario.run_native(sdk_host::native_module!(my_filter))?;
    /// assert!(report.passed(), "{:#?}", report.failures);
    /// ```
    #[cfg(feature = "native")]
    pub fn run_native(&self, module: crate::native::NativeModule) -> Result<Report, Error> {
        let mut host = self.host_builder().start_native(module)?;
        self.play(&mut host)
    }

    /// Plays the requests through a started host and judges the outcome;
    /// anything Envoy would refuse ([`Host::violations`]) is a failure too.
    ///
    /// # Errors
    ///
    /// The guest traps.
    ///
    /// ```
    /// # let wat = r#"(module (memory (export "memory") 1) (func (export "proxy_abi_version_0_2_1"))
    /// #   (func (export "malloc") (param i32) (result i32) (i32.const 1024)))"#;
    /// # let module = sdk_host::WasmModule::from_bytes("pass.wasm", &wat::parse_str(wat)?)?;
    /// use sdk_host::scenario::Scenario;
    /// let scenario = Scenario::from_yaml("pass.yaml", "filter: pass.wasm\nrequests: [{}]\n")?;
    /// let mut host = scenario.host_builder().start(&module)?;
    /// // Playing twice on one host: state such as metrics carries over.
    /// assert!(scenario.play(&mut host)?.passed());
    /// assert!(scenario.play(&mut host)?.passed());
    /// # Ok::<(), Box<dyn std::error::Error>>(())
    /// ```
    pub fn play(&self, host: &mut Host) -> Result<Report, Error> {
        let mut observed = Vec::new();
        for exchange in &self.requests {
            observed.push(play_exchange(host, exchange)?);
        }
        let metrics = host.proxy().metrics();
        let logs: Vec<(LogLevel, String)> = host
            .logs()
            .iter()
            .map(|r| (r.level, r.message.clone()))
            .collect();
        let mut report = self.judge(
            observed,
            |name| match metrics.get(name)? {
                MetricValue::Counter(n) => i64::try_from(*n).ok(),
                MetricValue::Gauge(n) => Some(*n),
                MetricValue::Histogram(values) => i64::try_from(values.len()).ok(),
            },
            &logs,
        );
        let recorded: Vec<String> = host.violations().iter().map(ToString::to_string).collect();
        for violation in &recorded {
            if !self
                .violations
                .iter()
                .any(|v| violation.contains(v.as_str()))
            {
                report
                    .failures
                    .push(format!("Envoy would not do this: {violation}"));
            }
        }
        for expected in &self.violations {
            if !recorded.iter().any(|v| v.contains(expected.as_str())) {
                report
                    .failures
                    .push(format!("violations: {expected:?} was not recorded"));
            }
        }
        Ok(report)
    }

    /// Compares what each request got, the metrics (looked up by name) and
    /// the log messages with the expectations.
    ///
    /// ```
    /// use sdk_host::scenario::{Observed, Scenario};
    /// use sdk_host::LogLevel;
    /// let yaml = "filter: f.wasm\nrequests: [{expect: {status: 200}}]\nmetrics: {hits: 1}\nlogs: [ready]\n";
    /// let scenario = Scenario::from_yaml("s.yaml", yaml)?;
    /// // What another host observed, e.g. a real Envoy.
    /// let got = vec![Observed { status: Some(200), ..Observed::default() }];
    /// let report = scenario.judge(got, |name| (name == "hits").then_some(1), &[(LogLevel::Info, "ready".into())]);
    /// assert!(report.passed(), "{:?}", report.failures);
    /// # Ok::<(), Box<dyn std::error::Error>>(())
    /// ```
    pub fn judge(
        &self,
        observed: Vec<Observed>,
        metric: impl Fn(&str) -> Option<i64>,
        logs: &[(LogLevel, String)],
    ) -> Report {
        let mut failures = Vec::new();
        for (i, (exchange, got)) in self.requests.iter().zip(&observed).enumerate() {
            let label = if exchange.name.is_empty() {
                format!("request {}", i + 1)
            } else {
                format!("request {} ({})", i + 1, exchange.name)
            };
            failures.extend(
                exchange
                    .expect
                    .mismatches(got)
                    .into_iter()
                    .map(|m| format!("{label}: {m}")),
            );
        }
        for (name, want) in &self.metrics {
            match metric(name) {
                Some(got) if got == *want => {}
                Some(got) => failures.push(format!("metric {name}: expected {want}, got {got}")),
                None => failures.push(format!("metric {name}: expected {want}, not defined")),
            }
        }
        let mut rest = logs.iter();
        let mut previous: Option<&ExpectedLog> = None;
        for want in &self.logs {
            if !rest.any(|(level, message)| want.matches(*level, message)) {
                let after = previous.map(|p| format!(" after {p}")).unwrap_or_default();
                failures.push(format!("logs: {want} was not logged{after}"));
                break;
            }
            previous = Some(want);
        }
        Report {
            observed,
            failures,
            logs: logs.to_vec(),
        }
    }
}

impl Exchange {
    /// The request headers, with the pseudo-headers' defaults.
    ///
    /// ```
    /// use sdk_host::scenario::Scenario;
    /// let scenario = Scenario::from_yaml("s.yaml", "filter: f.wasm\nrequests: [{headers: {\":path\": /a, X-Tag: t}}]\n")?;
    /// let headers = scenario.requests[0].request_headers();
    /// assert_eq!(headers[0], (":method".to_string(), "GET".to_string()));
    /// assert!(headers.contains(&(":path".to_string(), "/a".to_string())));
    /// assert_eq!(headers.last(), Some(&("x-tag".to_string(), "t".to_string())));
    /// # Ok::<(), Box<dyn std::error::Error>>(())
    /// ```
    pub fn request_headers(&self) -> Vec<(String, String)> {
        let mut headers: Vec<(String, String)> = [
            (":method", "GET"),
            (":path", "/"),
            (":authority", "example.com"),
            (":scheme", "http"),
        ]
        .iter()
        .map(|(k, v)| ((*k).to_string(), (*v).to_string()))
        .collect();
        for (name, values) in &self.headers {
            let name = name.to_ascii_lowercase();
            headers.retain(|(n, _)| *n != name);
            headers.extend(values.values().iter().map(|v| (name.clone(), v.clone())));
        }
        // Pseudo-headers come first, as on the wire.
        headers.sort_by_key(|(n, _)| !n.starts_with(':'));
        headers
    }
}

impl Expect {
    /// Every way `got` differs from this expectation, one line each.
    ///
    /// ```
    /// use sdk_host::scenario::{Expect, Observed};
    /// let expect = Expect { status: Some(200), body: Some("ok".into()), ..Expect::default() };
    /// let got = Observed { status: Some(503), body: b"ok".to_vec(), ..Observed::default() };
    /// assert_eq!(expect.mismatches(&got), ["status: expected 200, got 503"]);
    /// ```
    pub fn mismatches(&self, got: &Observed) -> Vec<String> {
        let mut out = Vec::new();
        if let Some(want) = self.status {
            match got.status {
                Some(status) if status == want => {}
                Some(status) => out.push(format!("status: expected {want}, got {status}")),
                None => out.push(format!("status: expected {want}, no answer came")),
            }
        }
        compare_headers("header", &self.headers, &got.headers, &mut out);
        if let Some(want) = &self.body
            && want.as_bytes() != got.body.as_slice()
        {
            out.push(format!(
                "body: expected {want:?}, got {:?}",
                String::from_utf8_lossy(&got.body)
            ));
        }
        if let Some(want) = self.reaches_upstream
            && want != got.upstream.is_some()
        {
            out.push(if want {
                "expected to reach the upstream, it did not".into()
            } else {
                "reached the upstream, expected not to".into()
            });
        }
        let wants_upstream = !self.upstream_headers.is_empty() || self.upstream_body.is_some();
        match &got.upstream {
            Some(saw) => {
                compare_headers(
                    "upstream header",
                    &self.upstream_headers,
                    &saw.headers,
                    &mut out,
                );
                if let Some(want) = &self.upstream_body
                    && want.as_bytes() != saw.body.as_slice()
                {
                    out.push(format!(
                        "upstream body: expected {want:?}, got {:?}",
                        String::from_utf8_lossy(&saw.body)
                    ));
                }
            }
            None if wants_upstream && self.reaches_upstream.is_none() => {
                out.push("upstream: expected headers or body there, nothing reached it".into());
            }
            None => {}
        }
        if let Some(want) = self.delay
            && (got.elapsed + EARLY_TOLERANCE < want || got.elapsed >= want + DELAY_TOLERANCE)
        {
            out.push(format!(
                "delay: expected {} ms, the answer came after {} ms",
                want.as_millis(),
                got.elapsed.as_millis()
            ));
        }
        out
    }
}

fn compare_headers(
    what: &str,
    want: &BTreeMap<String, Option<String>>,
    got: &HeaderMap,
    out: &mut Vec<String>,
) {
    for (name, value) in want {
        let actual = got.get(name);
        if actual != value.as_deref() {
            out.push(match (value, actual) {
                (Some(v), Some(a)) => format!("{what} {name}: expected {v:?}, got {a:?}"),
                (Some(v), None) => format!("{what} {name}: expected {v:?}, absent"),
                (None, Some(a)) => format!("{what} {name}: expected absent, got {a:?}"),
                (None, None) => continue,
            });
        }
    }
}

/// Plays one exchange: the request, the automatic passing of simulated
/// time while the filter holds it (delays, ticks), the upstream's answer.
fn play_exchange(host: &mut Host, exchange: &Exchange) -> Result<Observed, Error> {
    let started = host.elapsed();
    let stream = host.new_http_stream()?;
    let body = exchange.body.as_ref().map(Body::bytes);
    let mut headers = exchange.request_headers();
    if let Some(body) = &body {
        headers.push(("content-length".into(), body.len().to_string()));
    }
    let end = body.is_none() && exchange.trailers.is_none();
    host.send_request_headers(stream, &headers, end)?;
    if let Some(body) = &body {
        // Envoy's HTTP/1 codec passes a body on as it arrives and the end
        // of the message after it, as an empty last piece.
        host.send_request_body(stream, body, false)?;
        if exchange.trailers.is_none() {
            host.send_request_body(stream, [], true)?;
        }
    }
    if let Some(trailers) = &exchange.trailers {
        let pairs: Vec<(&String, &String)> = trailers.iter().collect();
        host.send_request_trailers(stream, &pairs)?;
    }
    let deadline = started + PATIENCE;
    let response = exchange.response.clone().unwrap_or_default();
    let request_done = |host: &Host| {
        host.http(stream).map_or(true, |view| {
            view.upstream().complete
                || view.local_response().is_some()
                || view.reset().is_some()
                || view.downstream().headers.is_some()
        })
    };
    wait_until(host, deadline, &response, request_done)?;
    let view = host.http(stream)?;
    let upstream = view.upstream().complete.then(|| {
        let headers = view.upstream().headers.clone().unwrap_or_default();
        let body = as_read(&headers, &view.upstream().body);
        UpstreamSaw { headers, body }
    });
    let answered_locally = view.local_response().is_some() || view.downstream().headers.is_some();
    if upstream.is_some() && !answered_locally && view.reset().is_none() {
        let mut pairs = vec![(":status".to_string(), response.status.to_string())];
        pairs.extend(response.headers.clone());
        let body = response.body.as_ref().map(Body::bytes);
        if let Some(body) = &body {
            pairs.push(("content-length".into(), body.len().to_string()));
        }
        host.send_response_headers(stream, &pairs, body.is_none())?;
        if let Some(body) = &body {
            host.send_response_body(stream, body, false)?;
            host.send_response_body(stream, [], true)?;
        }
    }
    wait_until(host, deadline, &response, |host| {
        host.http(stream).map_or(true, |view| {
            view.downstream().complete || view.reset().is_some()
        })
    })?;
    let view = host.http(stream)?;
    let downstream = view.downstream();
    let observed = Observed {
        status: downstream
            .headers
            .as_ref()
            .filter(|_| view.reset().is_none())
            .and_then(|h| h.get(":status"))
            .and_then(|s| s.parse().ok()),
        headers: downstream.headers.clone().unwrap_or_default(),
        body: as_read(
            downstream.headers.as_ref().unwrap_or(&HeaderMap::default()),
            &downstream.body,
        ),
        upstream,
        elapsed: host.elapsed().saturating_sub(started),
    };
    host.finish(stream)?;
    if let Some(advance) = exchange.advance {
        host.advance(advance)?;
    }
    Ok(observed)
}

/// Answers the filter's HTTP callouts with `answer` and lets simulated
/// time pass, one timer at a time, until `done` or the deadline.
fn wait_until(
    host: &mut Host,
    deadline: Duration,
    answer: &UpstreamResponse,
    done: impl Fn(&Host) -> bool,
) -> Result<(), Error> {
    loop {
        answer_callouts(host, answer)?;
        if done(host) {
            return Ok(());
        }
        match host.next_timer() {
            Some(due) if host.elapsed() + due <= deadline => host.advance(due)?,
            _ => return Ok(()),
        }
    }
}

/// Answers every pending callout, as the upstream would.
fn answer_callouts(host: &mut Host, answer: &UpstreamResponse) -> Result<(), Error> {
    while let Some(call) = host.http_calls().into_iter().next() {
        let mut response = CalloutResponse::new(answer.status);
        for (name, value) in &answer.headers {
            response = response.header(name, value);
        }
        if let Some(body) = &answer.body {
            let body = body.bytes();
            response = response
                .header("content-length", &body.len().to_string())
                .body(body);
        }
        host.respond_http_call(call.token, response)?;
    }
    Ok(())
}

/// The body as the peer reads it: no more than `content-length` says.
fn as_read(headers: &HeaderMap, body: &[u8]) -> Vec<u8> {
    let declared = headers
        .get("content-length")
        .and_then(|v| v.trim().parse::<usize>().ok());
    body[..declared.map_or(body.len(), |n| n.min(body.len()))].to_vec()
}

fn configuration(value: &Value) -> Vec<u8> {
    match value {
        Value::Null => Vec::new(),
        Value::String(text) => text.as_bytes().to_vec(),
        other => other.to_string().into_bytes(),
    }
}

/// Deserializes a YAML or JSON document into `T`; errors name the file,
/// the line and column, and the field path.
///
/// # Errors
///
/// The text is not YAML, holds more than one document, or does not fit `T`.
///
/// ```
/// use std::path::Path;
/// #[derive(serde::Deserialize)]
/// struct Limits { max: u32 }
/// let limits: Limits = sdk_host::scenario::load_yaml(Path::new("l.yaml"), "max: 3\n")?;
/// assert_eq!(limits.max, 3);
/// let err = sdk_host::scenario::load_yaml::<Limits>(Path::new("l.yaml"), "max: lots\n").err();
/// let message = err.map(|e| e.to_string()).unwrap_or_default();
/// assert!(message.starts_with("l.yaml: line 1, column 1: max: invalid type"), "{message}");
/// # Ok::<(), Box<dyn std::error::Error>>(())
/// ```
pub fn load_yaml<T: serde::de::DeserializeOwned>(
    path: &Path,
    text: &str,
) -> Result<T, ScenarioError> {
    from_document(path, &yaml_document(path, text)?)
}

/// Parses the one YAML (or JSON) document in `text`, keeping positions.
///
/// # Errors
///
/// The text is not YAML, or holds more than one document.
///
/// ```
/// use std::path::Path;
/// let document = sdk_host::scenario::yaml_document(Path::new("r.yaml"), "requests: []\n")?;
/// assert!(document.value.get("requests").is_some());
/// assert!(sdk_host::scenario::yaml_document(Path::new("r.yaml"), "a: 1\n---\nb: 2\n").is_err());
/// # Ok::<(), Box<dyn std::error::Error>>(())
/// ```
pub fn yaml_document(path: &Path, text: &str) -> Result<Document, ScenarioError> {
    let fail = |message: String| ScenarioError {
        path: path.display().to_string(),
        message,
    };
    let mut documents = envoyfilter::yaml::load(text).map_err(|e| fail(e.to_string()))?;
    match documents.len() {
        1 => Ok(documents.remove(0)),
        n => Err(fail(format!("expected one YAML document, found {n}"))),
    }
}

/// Deserializes a parsed document into `T`; errors name the line and field.
///
/// # Errors
///
/// The document does not fit `T`.
///
/// ```
/// use sdk_host::scenario::{from_document, yaml_document, Exchange};
/// use std::path::Path;
/// let path = Path::new("r.yaml");
/// let document = yaml_document(path, "headers: {\":path\": /x}\n")?;
/// let exchange: Exchange = from_document(path, &document)?;
/// assert_eq!(exchange.headers.len(), 1);
/// # Ok::<(), Box<dyn std::error::Error>>(())
/// ```
pub fn from_document<T: serde::de::DeserializeOwned>(
    path: &Path,
    document: &Document,
) -> Result<T, ScenarioError> {
    serde_path_to_error::deserialize(&document.value).map_err(|e| {
        let field = e.path().to_string();
        let at = document
            .position(&field)
            .map(|p| format!("{p}: "))
            .unwrap_or_default();
        ScenarioError {
            path: path.display().to_string(),
            message: format!("{at}{field}: {}", e.inner()),
        }
    })
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
