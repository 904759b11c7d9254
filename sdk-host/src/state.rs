//! The host model: everything one Envoy-like VM keeps, and what every
//! hostcall does to it, in Rust types. `abi` moves the bytes between guest
//! memory and these methods; `host` drives the callbacks.

use crate::headers::HeaderMap;
use crate::properties::{PropertyPath, PropertyStore, PropertyValue};
use crate::proxy::{MetricValue, Proxy};
use crate::types::{BufferType, LogLevel, MapType, MetricType, Status, StreamType};
use std::collections::{BTreeMap, BTreeSet};
use std::fmt;

/// Declares [`Callback`], [`Callback::ALL`] and [`Callback::export_name`]
/// from one list of (variant, export) pairs.
macro_rules! callbacks {
    ($($variant:ident => $export:literal,)*) => {
        /// A callback the host makes into the guest, as Envoy names it.
        ///
        /// ```
        /// use sdk_host::Callback;
        /// assert_eq!(Callback::RequestHeaders.export_name(), "proxy_on_request_headers");
        /// ```
        #[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
        #[allow(missing_docs)]
        pub enum Callback {
            $($variant,)*
        }

        impl Callback {
            /// Every callback, in declaration order (`ALL[c as usize] == c`).
            ///
            /// ```
            /// use sdk_host::Callback;
            /// assert!(Callback::ALL.iter().any(|c| c.export_name() == "proxy_on_tick"));
            /// ```
            pub const ALL: [Callback; [$(stringify!($variant)),*].len()] =
                [$(Callback::$variant),*];

            /// The export's name, e.g. `proxy_on_request_headers`.
            ///
            /// ```
            /// assert_eq!(sdk_host::Callback::Log.export_name(), "proxy_on_log");
            /// ```
            pub fn export_name(self) -> &'static str {
                match self {
                    $(Callback::$variant => $export,)*
                }
            }
        }
    };
}

callbacks! {
    Initialize => "_initialize",
    ContextCreate => "proxy_on_context_create",
    VmStart => "proxy_on_vm_start",
    Configure => "proxy_on_configure",
    Tick => "proxy_on_tick",
    QueueReady => "proxy_on_queue_ready",
    Done => "proxy_on_done",
    Log => "proxy_on_log",
    Delete => "proxy_on_delete",
    NewConnection => "proxy_on_new_connection",
    DownstreamData => "proxy_on_downstream_data",
    UpstreamData => "proxy_on_upstream_data",
    DownstreamConnectionClose => "proxy_on_downstream_connection_close",
    UpstreamConnectionClose => "proxy_on_upstream_connection_close",
    RequestHeaders => "proxy_on_request_headers",
    RequestBody => "proxy_on_request_body",
    RequestTrailers => "proxy_on_request_trailers",
    ResponseHeaders => "proxy_on_response_headers",
    ResponseBody => "proxy_on_response_body",
    ResponseTrailers => "proxy_on_response_trailers",
    HttpCallResponse => "proxy_on_http_call_response",
    GrpcReceiveInitialMetadata => "proxy_on_grpc_receive_initial_metadata",
    GrpcReceive => "proxy_on_grpc_receive",
    GrpcReceiveTrailingMetadata => "proxy_on_grpc_receive_trailing_metadata",
    GrpcClose => "proxy_on_grpc_close",
    ForeignFunction => "proxy_on_foreign_function",
}

/// One line the guest logged, through `proxy_log` or WASI stdout/stderr.
///
/// ```
/// # let wat = r#"(module (import "env" "proxy_log" (func $log (param i32 i32 i32) (result i32)))
/// #   (memory (export "memory") 1) (data (i32.const 64) "ready")
/// #   (func (export "proxy_abi_version_0_2_1")) (func (export "malloc") (param i32) (result i32) (i32.const 1024))
/// #   (func (export "proxy_on_vm_start") (param i32 i32) (result i32)
/// #     (drop (call $log (i32.const 3) (i32.const 64) (i32.const 5))) (i32.const 1)))"#;
/// # let module = sdk_host::WasmModule::from_bytes("log.wasm", &wat::parse_str(wat)?)?;
/// let host = sdk_host::Host::builder().start(&module)?;
/// let record = &host.logs()[0];
/// assert_eq!((record.level, record.message.as_str()), (sdk_host::LogLevel::Warn, "ready"));
/// # Ok::<(), Box<dyn std::error::Error>>(())
/// ```
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct LogRecord {
    /// Its level (stdout is `Info`, stderr `Error`, as in Envoy).
    pub level: LogLevel,
    /// The message, lossily decoded.
    pub message: String,
    /// The context that was effective when it was logged.
    pub context_id: u32,
}

impl fmt::Display for LogRecord {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(
            f,
            "[{}] (context {}) {}",
            self.level, self.context_id, self.message
        )
    }
}

/// Something the guest did that Envoy would reject, ignore or mishandle.
///
/// The hostcall still returns what Envoy returns; the violation is how a
/// test learns that a filter relies on behaviour a real proxy lacks.
///
/// ```
/// # let wat = r#"(module (memory (export "memory") 1) (func (export "proxy_abi_version_0_2_1"))
/// #   (func (export "malloc") (param i32) (result i32) (i32.const 1024)))"#;
/// # let module = sdk_host::WasmModule::from_bytes("pass.wasm", &wat::parse_str(wat)?)?;
/// let mut host = sdk_host::Host::builder().start(&module)?;
/// let stream = host.new_http_stream()?;
/// // A body longer than its content-length: Envoy would forward both as they are.
/// host.send_request_headers(stream, &[(":method", "POST"), ("content-length", "3")], false)?;
/// host.send_request_body(stream, "abcd", true)?;
/// let violation = &host.violations()[0];
/// assert_eq!(violation.call, "content-length");
/// assert!(violation.message.contains("4 bytes but content-length says 3"));
/// # Ok::<(), Box<dyn std::error::Error>>(())
/// ```
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Violation {
    /// The context that was effective.
    pub context_id: u32,
    /// The callback that was running, if any.
    pub callback: Option<Callback>,
    /// The hostcall or action concerned, e.g. `proxy_send_local_response`.
    pub call: &'static str,
    /// What Envoy does about it.
    pub message: String,
}

impl fmt::Display for Violation {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self.callback {
            Some(cb) => write!(
                f,
                "{} in {} (context {}): {}",
                self.call,
                cb.export_name(),
                self.context_id,
                self.message
            ),
            None => write!(
                f,
                "{} (context {}): {}",
                self.call, self.context_id, self.message
            ),
        }
    }
}

/// A local response a filter sent with `proxy_send_local_response`.
///
/// ```no_run
/// # let module = sdk_host::WasmModule::from_file("deny.wasm")?;
/// let mut host = sdk_host::Host::builder().start(&module)?;
/// let stream = host.new_http_stream()?;
/// host.send_request_headers(stream, &[(":path", "/admin")], true)?;
/// let view = host.http(stream)?;
/// let reply = view.local_response().ok_or("no local response")?;
/// assert_eq!((reply.status, reply.details.as_str()), (403, "denied"));
/// # Ok::<(), Box<dyn std::error::Error>>(())
/// ```
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct LocalResponse {
    /// HTTP status code.
    pub status: u32,
    /// Envoy's response code details, e.g. `fault_filter_abort`.
    pub details: String,
    /// The body.
    pub body: Vec<u8>,
    /// Extra headers the filter asked for.
    pub headers: HeaderMap,
    /// The gRPC status, if one was given (`-1`/`0xffffffff` means none).
    pub grpc_status: Option<u32>,
}

/// Which way data flows through an HTTP stream's filter, and where it stands.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub(crate) enum FlowState {
    /// Headers not seen yet.
    #[default]
    Idle,
    /// Iterating: what arrives goes to the filter and on.
    Open,
    /// The headers callback paused: Envoy stops all iteration and buffers
    /// body and trailers without calling the filter until it resumes.
    HeadersStopped,
    /// A body callback paused: data is buffered, and each new chunk calls
    /// the filter with the whole buffer.
    BodyStopped,
    /// The trailers callback paused.
    TrailersStopped,
    /// The end of stream went past the filter, or a local response ended it.
    Done,
}

/// What went past the filter in one direction: what the upstream server
/// (request) or the downstream client (response) received.
///
/// ```
/// # let wat = r#"(module (memory (export "memory") 1) (func (export "proxy_abi_version_0_2_1"))
/// #   (func (export "malloc") (param i32) (result i32) (i32.const 1024)))"#;
/// # let module = sdk_host::WasmModule::from_bytes("pass.wasm", &wat::parse_str(wat)?)?;
/// let mut host = sdk_host::Host::builder().start(&module)?;
/// let stream = host.new_http_stream()?;
/// host.send_request_headers(stream, &[(":path", "/")], false)?;
/// host.send_request_body(stream, "data", true)?;
/// let view = host.http(stream)?;
/// let sent = view.upstream();
/// assert!(sent.headers.is_some() && sent.complete && sent.trailers.is_none());
/// # Ok::<(), Box<dyn std::error::Error>>(())
/// ```
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct Forwarded {
    /// The headers as they left the filter, once they did.
    pub headers: Option<HeaderMap>,
    /// The body bytes that left the filter.
    pub body: Vec<u8>,
    /// The trailers, once they left the filter.
    pub trailers: Option<HeaderMap>,
    /// Whether the end of stream left the filter.
    pub complete: bool,
}

/// One direction of an HTTP stream.
#[derive(Debug, Clone, Default)]
pub(crate) struct Flow {
    pub(crate) headers: Option<HeaderMap>,
    /// The body the filter sees: buffered, not yet forwarded.
    pub(crate) body: Vec<u8>,
    pub(crate) trailers: Option<HeaderMap>,
    /// Whether the client/server ended this direction.
    pub(crate) end_of_stream: bool,
    pub(crate) state: FlowState,
    /// Body data arrived while the headers were stopped.
    pub(crate) body_waiting: bool,
    /// Trailers arrived while stopped and were not yet shown to the filter.
    pub(crate) trailers_waiting: bool,
    /// Envoy hands the filter its header map from the headers callback
    /// until that callback continues (or the stream is resumed).
    pub(crate) headers_visible: bool,
    /// Likewise for trailers.
    pub(crate) trailers_visible: bool,
    pub(crate) forwarded: Forwarded,
}

/// An HTTP stream: one request and its response, through one filter.
#[derive(Debug, Clone, Default)]
pub(crate) struct HttpStream {
    pub(crate) root: u32,
    pub(crate) request: Flow,
    pub(crate) response: Flow,
    pub(crate) local_response: Option<LocalResponse>,
    /// Set when the stream was reset (closed by the filter, or a local
    /// response that came too late).
    pub(crate) reset: Option<String>,
    pub(crate) properties: PropertyStore,
    pub(crate) route_cache_cleared: u32,
    pub(crate) started_nanos: u64,
    pub(crate) finished: bool,
}

/// A TCP stream through a network filter.
#[derive(Debug, Clone, Default)]
pub(crate) struct TcpStream {
    pub(crate) root: u32,
    pub(crate) downstream: Vec<u8>,
    pub(crate) upstream: Vec<u8>,
    pub(crate) to_upstream: Vec<u8>,
    pub(crate) to_downstream: Vec<u8>,
    pub(crate) closed: Vec<StreamType>,
    pub(crate) properties: PropertyStore,
    pub(crate) finished: bool,
}

/// A plugin: a root context with its configuration.
#[derive(Debug, Clone)]
pub(crate) struct Plugin {
    pub(crate) name: String,
    pub(crate) root_id: String,
    pub(crate) config: Vec<u8>,
    pub(crate) context_id: u32,
    pub(crate) tick_period_ms: u32,
    pub(crate) next_tick_nanos: Option<u64>,
    /// `proxy_on_done` returned false: waiting for `proxy_done`.
    pub(crate) done_pending: bool,
    pub(crate) deleted: bool,
}

/// What a context is.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum ContextKind {
    Root,
    Http,
    Tcp,
}

/// An HTTP callout the guest made with `proxy_http_call`.
///
/// ```no_run
/// # let module = sdk_host::WasmModule::from_file("authz.wasm")?;
/// let mut host = sdk_host::Host::builder().cluster("authz").start(&module)?;
/// let stream = host.new_http_stream()?;
/// host.send_request_headers(stream, &[(":path", "/")], true)?;
/// let call = &host.http_calls()[0];
/// assert_eq!((call.upstream.as_str(), call.headers.get(":path")), ("authz", Some("/check")));
/// # Ok::<(), Box<dyn std::error::Error>>(())
/// ```
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct HttpCall {
    /// The token the guest got.
    pub token: u32,
    /// The context that made it, and gets the answer.
    pub context_id: u32,
    /// The cluster.
    pub upstream: String,
    /// Request headers.
    pub headers: HeaderMap,
    /// Request body.
    pub body: Vec<u8>,
    /// Request trailers.
    pub trailers: HeaderMap,
    /// The timeout in milliseconds.
    pub timeout_ms: u32,
    /// When it was made, on the host clock.
    pub sent_nanos: u64,
}

/// A gRPC call or stream the guest opened.
///
/// ```no_run
/// # let module = sdk_host::WasmModule::from_file("ratelimit.wasm")?;
/// let mut host = sdk_host::Host::builder().start(&module)?;
/// let stream = host.new_http_stream()?;
/// host.send_request_headers(stream, &[(":path", "/")], true)?;
/// let call = &host.grpc_calls()[0];
/// assert_eq!(call.method, "ShouldRateLimit");
/// # Ok::<(), Box<dyn std::error::Error>>(())
/// ```
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct GrpcCall {
    /// The token the guest got.
    pub token: u32,
    /// The context that made it.
    pub context_id: u32,
    /// The cluster (or the serialized `GrpcService`, as the guest sent it).
    pub upstream: Vec<u8>,
    /// Service name.
    pub service: String,
    /// Method name.
    pub method: String,
    /// Initial metadata.
    pub initial_metadata: HeaderMap,
    /// Messages sent so far (the request message of a unary call first).
    pub messages: Vec<Vec<u8>>,
    /// `true` for `proxy_grpc_stream`.
    pub streaming: bool,
    /// The guest half-closed its side (`end_stream` or `proxy_grpc_close`).
    pub local_closed: bool,
    /// The guest cancelled it.
    pub cancelled: bool,
    /// The timeout in milliseconds (unary calls).
    pub timeout_ms: u32,
    /// When it was made, on the host clock.
    pub sent_nanos: u64,
}

/// A function the host offers through `proxy_call_foreign_function`.
pub(crate) type ForeignFunction = Box<dyn FnMut(&[u8]) -> Result<Vec<u8>, Status>>;

/// Work Envoy defers until the VM call that asked for it returns.
#[derive(Debug, Clone, PartialEq, Eq)]
pub(crate) enum Deferred {
    Continue(u32, StreamType),
    LocalResponse(u32),
    QueueReady { root: u32, token: u32 },
    DeleteRoot(u32),
}

/// Data the current callback can read besides the stream's.
#[derive(Debug, Clone, Default)]
pub(crate) struct CallbackData {
    pub(crate) call_headers: Option<HeaderMap>,
    pub(crate) call_body: Option<Vec<u8>>,
    pub(crate) call_trailers: Option<HeaderMap>,
    pub(crate) grpc_initial: Option<HeaderMap>,
    pub(crate) grpc_trailing: Option<HeaderMap>,
    pub(crate) grpc_message: Option<Vec<u8>>,
    pub(crate) call_data: Option<Vec<u8>>,
}

/// Settings of a VM that tests choose.
#[derive(Debug, Clone)]
pub(crate) struct VmSettings {
    pub(crate) vm_id: String,
    pub(crate) vm_config: Vec<u8>,
    pub(crate) env: Vec<(String, String)>,
    pub(crate) log_level: LogLevel,
    /// Known clusters; `None` accepts any name, as a test usually wants.
    pub(crate) clusters: Option<BTreeSet<String>>,
}

/// All state of one VM and the plugins in it.
pub(crate) struct HostState {
    pub(crate) id: u64,
    pub(crate) settings: VmSettings,
    pub(crate) proxy: Proxy,
    pub(crate) plugins: Vec<Plugin>,
    pub(crate) contexts: BTreeMap<u32, ContextKind>,
    pub(crate) http: BTreeMap<u32, HttpStream>,
    pub(crate) tcp: BTreeMap<u32, TcpStream>,
    pub(crate) properties: PropertyStore,
    /// The context hostcalls address (changed by `proxy_set_effective_context`).
    pub(crate) effective: u32,
    pub(crate) callback: Option<Callback>,
    pub(crate) callback_data: CallbackData,
    pub(crate) realtime_base_nanos: u64,
    pub(crate) monotonic_nanos: u64,
    pub(crate) logs: Vec<LogRecord>,
    pub(crate) violations: Vec<Violation>,
    pub(crate) metric_ids: Vec<(String, MetricType)>,
    pub(crate) http_calls: BTreeMap<u32, HttpCall>,
    pub(crate) grpc_calls: BTreeMap<u32, GrpcCall>,
    /// Callouts made so far, per kind (HTTP, gRPC call, gRPC stream).
    pub(crate) next_tokens: [u32; 3],
    pub(crate) status: (u32, Vec<u8>),
    pub(crate) foreign: BTreeMap<String, ForeignFunction>,
    pub(crate) deferred: Vec<Deferred>,
    pub(crate) random: fastrand::Rng,
    pub(crate) exit_code: Option<u32>,
}

impl HostState {
    pub(crate) fn new(id: u64, settings: VmSettings, proxy: Proxy, seed: u64) -> HostState {
        HostState {
            id,
            settings,
            proxy,
            plugins: Vec::new(),
            contexts: BTreeMap::new(),
            http: BTreeMap::new(),
            tcp: BTreeMap::new(),
            properties: PropertyStore::default(),
            effective: 0,
            callback: None,
            callback_data: CallbackData::default(),
            realtime_base_nanos: DEFAULT_START_NANOS,
            monotonic_nanos: 0,
            logs: Vec::new(),
            violations: Vec::new(),
            metric_ids: Vec::new(),
            http_calls: BTreeMap::new(),
            grpc_calls: BTreeMap::new(),
            next_tokens: [0; 3],
            status: (0, Vec::new()),
            foreign: BTreeMap::new(),
            deferred: Vec::new(),
            random: fastrand::Rng::with_seed(seed),
            exit_code: None,
        }
    }

    /// Wall-clock time: the start time plus the time the test advanced.
    pub(crate) fn now_nanos(&self) -> u64 {
        self.realtime_base_nanos.wrapping_add(self.monotonic_nanos)
    }

    pub(crate) fn violation(&mut self, call: &'static str, message: impl Into<String>) {
        self.violations.push(Violation {
            context_id: self.effective,
            callback: self.callback,
            call,
            message: message.into(),
        });
    }

    pub(crate) fn plugin_of_root(&self, root: u32) -> Option<&Plugin> {
        self.plugins.iter().find(|p| p.context_id == root)
    }

    pub(crate) fn plugin_of_root_mut(&mut self, root: u32) -> Option<&mut Plugin> {
        self.plugins.iter_mut().find(|p| p.context_id == root)
    }

    /// The root context of a context (itself for a root).
    pub(crate) fn root_of(&self, context: u32) -> Option<u32> {
        match self.contexts.get(&context)? {
            ContextKind::Root => Some(context),
            ContextKind::Http => self.http.get(&context).map(|s| s.root),
            ContextKind::Tcp => self.tcp.get(&context).map(|s| s.root),
        }
    }

    // --- logging -------------------------------------------------------

    pub(crate) fn log(&mut self, level: u32, message: &[u8]) -> Result<(), Status> {
        let level = LogLevel::from_u32(level).ok_or(Status::BadArgument)?;
        self.push_log(level, message);
        Ok(())
    }

    pub(crate) fn push_log(&mut self, level: LogLevel, message: &[u8]) {
        if level < self.settings.log_level {
            return;
        }
        self.logs.push(LogRecord {
            level,
            message: String::from_utf8_lossy(message).into_owned(),
            context_id: self.effective,
        });
    }

    /// WASI stdout/stderr: Envoy logs each write as one line (info for
    /// stdout, error for stderr), without its final newline.
    pub(crate) fn write_stdio(&mut self, fd: u32, data: &[u8]) {
        let level = if fd == 1 {
            LogLevel::Info
        } else {
            LogLevel::Error
        };
        let line = data.strip_suffix(b"\n").unwrap_or(data);
        if !line.is_empty() {
            self.push_log(level, line);
        }
    }

    // --- clock and ticks --------------------------------------------------

    pub(crate) fn set_tick_period(&mut self, period_ms: u32) -> Result<(), Status> {
        let root = self.root_of(self.effective).ok_or(Status::BadArgument)?;
        let now = self.monotonic_nanos;
        let plugin = self.plugin_of_root_mut(root).ok_or(Status::BadArgument)?;
        plugin.tick_period_ms = period_ms;
        plugin.next_tick_nanos =
            (period_ms > 0).then(|| now.saturating_add(u64::from(period_ms) * 1_000_000));
        Ok(())
    }

    // --- buffers ----------------------------------------------------------

    /// The buffer as the current callback may see it.
    pub(crate) fn buffer(&mut self, kind: u32) -> Result<Vec<u8>, Status> {
        let kind = BufferType::from_u32(kind).ok_or(Status::BadArgument)?;
        let context = self.effective;
        // Envoy's body and data buffers always exist: outside the callback
        // that shows them they are empty.
        let callback = self.callback;
        Ok(match kind {
            BufferType::HttpRequestBody => match (callback, self.http.get(&context)) {
                (Some(Callback::RequestBody), Some(stream)) => stream.request.body.clone(),
                _ => Vec::new(),
            },
            BufferType::HttpResponseBody => match (callback, self.http.get(&context)) {
                (Some(Callback::ResponseBody), Some(stream)) => stream.response.body.clone(),
                _ => Vec::new(),
            },
            BufferType::DownstreamData => match (callback, self.tcp.get(&context)) {
                (Some(Callback::DownstreamData), Some(stream)) => stream.downstream.clone(),
                _ => Vec::new(),
            },
            BufferType::UpstreamData => match (callback, self.tcp.get(&context)) {
                (Some(Callback::UpstreamData), Some(stream)) => stream.upstream.clone(),
                _ => Vec::new(),
            },
            BufferType::HttpCallResponseBody => self
                .callback_data
                .call_body
                .clone()
                .ok_or(Status::NotFound)?,
            BufferType::GrpcReceiveBuffer => {
                self.callback_data.grpc_message.clone().unwrap_or_default()
            }
            BufferType::VmConfiguration => self.settings.vm_config.clone(),
            BufferType::PluginConfiguration => {
                // Envoy hands it over only while `proxy_on_configure` runs.
                if callback != Some(Callback::Configure) {
                    return Err(Status::NotFound);
                }
                let root = self.root_of(context).ok_or(Status::NotFound)?;
                self.plugin_of_root(root)
                    .ok_or(Status::NotFound)?
                    .config
                    .clone()
            }
            BufferType::CallData => self
                .callback_data
                .call_data
                .clone()
                .ok_or(Status::NotFound)?,
        })
    }

    /// `proxy_set_buffer_bytes` as Envoy does it: at 0 it drops `size`
    /// bytes and prepends; at or past the end it appends; in between it
    /// refuses.
    pub(crate) fn set_buffer(
        &mut self,
        kind: u32,
        start: usize,
        size: usize,
        value: &[u8],
    ) -> Result<(), Status> {
        let kind = BufferType::from_u32(kind).ok_or(Status::BadArgument)?;
        let context = self.effective;
        let expected = match kind {
            BufferType::HttpRequestBody => Callback::RequestBody,
            BufferType::HttpResponseBody => Callback::ResponseBody,
            BufferType::DownstreamData => Callback::DownstreamData,
            BufferType::UpstreamData => Callback::UpstreamData,
            _ => return Err(Status::BadArgument),
        };
        if self.callback != Some(expected) {
            self.violation(
                "proxy_set_buffer_bytes",
                format!("{kind:?} changed outside {}: Envoy's buffer is empty and read-only there (BadArgument)", expected.export_name()),
            );
            return Err(Status::BadArgument);
        }
        let buffer = match kind {
            BufferType::HttpRequestBody => &mut self.http_flow_mut(context, true)?.body,
            BufferType::HttpResponseBody => &mut self.http_flow_mut(context, false)?.body,
            BufferType::DownstreamData => {
                &mut self
                    .tcp
                    .get_mut(&context)
                    .ok_or(Status::NotFound)?
                    .downstream
            }
            _ => &mut self.tcp.get_mut(&context).ok_or(Status::NotFound)?.upstream,
        };
        splice(buffer, start, size, value)
    }

    fn http_flow_mut(&mut self, context: u32, request: bool) -> Result<&mut Flow, Status> {
        let stream = self.http.get_mut(&context).ok_or(Status::NotFound)?;
        Ok(if request {
            &mut stream.request
        } else {
            &mut stream.response
        })
    }

    // --- header maps ------------------------------------------------------

    /// The map a read addresses, as Envoy exposes it now: stream maps only
    /// from their callback until it continues (or while it is paused), and
    /// in `proxy_on_log`; callout and gRPC maps only in their callbacks.
    pub(crate) fn map(&mut self, kind: u32, call: &'static str) -> Result<MapAccess, Status> {
        let kind = MapType::from_u32(kind).ok_or(Status::BadArgument)?;
        let context = self.effective;
        let log_phase = self.callback == Some(Callback::Log);
        let data = &self.callback_data;
        let map = match kind {
            MapType::GrpcReceiveInitialMetadata => data.grpc_initial.clone(),
            MapType::GrpcReceiveTrailingMetadata => data.grpc_trailing.clone(),
            MapType::HttpCallResponseHeaders => data.call_headers.clone(),
            MapType::HttpCallResponseTrailers => data.call_trailers.clone(),
            stream_map => {
                let (request, trailers) = stream_map_of(stream_map);
                let Some(stream) = self.http.get(&context) else {
                    return Ok(MapAccess::Unavailable { log_phase });
                };
                let flow = if request {
                    &stream.request
                } else {
                    &stream.response
                };
                let (map, visible) = if trailers {
                    (&flow.trailers, flow.trailers_visible)
                } else {
                    (&flow.headers, flow.headers_visible)
                };
                // The access-log phase reads Envoy's own copies, which have
                // no request trailers.
                let readable = if log_phase {
                    stream_map != MapType::HttpRequestTrailers
                } else {
                    visible
                };
                if readable {
                    map.clone()
                } else {
                    if !log_phase && map.is_some() {
                        self.violation(
                            call,
                            format!("{stream_map:?} read after the callback that showed them continued: Envoy no longer exposes them (BadArgument, or an empty map from proxy_get_header_map_pairs)"),
                        );
                    }
                    None
                }
            }
        };
        Ok(match map {
            Some(map) => MapAccess::Map(map),
            None => MapAccess::Unavailable { log_phase },
        })
    }

    /// A map the guest changes: a stream map while it is exposed. Trailers
    /// may be added from the last body callback, as Envoy allows.
    pub(crate) fn map_mut(
        &mut self,
        kind: u32,
        call: &'static str,
    ) -> Result<&mut HeaderMap, Status> {
        let map_type = MapType::from_u32(kind).ok_or(Status::BadArgument)?;
        let context = self.effective;
        let callback = self.callback;
        let refuse = |state: &mut HostState, why: String| {
            state.violation(call, why);
            Err(Status::BadArgument)
        };
        if matches!(
            map_type,
            MapType::GrpcReceiveInitialMetadata
                | MapType::GrpcReceiveTrailingMetadata
                | MapType::HttpCallResponseHeaders
                | MapType::HttpCallResponseTrailers
        ) {
            return refuse(
                self,
                format!("{map_type:?} are read-only in Envoy (BadArgument)"),
            );
        }
        if callback == Some(Callback::Log) {
            return refuse(
                self,
                format!("{map_type:?} changed in proxy_on_log: the stream is over (BadArgument)"),
            );
        }
        let (request, trailers) = stream_map_of(map_type);
        let Some(stream) = self.http.get(&context) else {
            return refuse(
                self,
                format!("{map_type:?} changed outside an HTTP stream (BadArgument)"),
            );
        };
        let flow = if request {
            &stream.request
        } else {
            &stream.response
        };
        let body_callback = if request {
            Callback::RequestBody
        } else {
            Callback::ResponseBody
        };
        let adding_trailers = trailers
            && flow.trailers.is_none()
            && flow.end_of_stream
            && callback == Some(body_callback);
        let visible = if trailers {
            flow.trailers_visible
        } else {
            flow.headers_visible
        };
        if !visible && !adding_trailers {
            return refuse(
                self,
                format!(
                    "{map_type:?} changed after the callback that showed them continued: Envoy no longer exposes them (BadArgument)"
                ),
            );
        }
        let flow = self.http_flow_mut(context, request)?;
        let map = if trailers {
            if adding_trailers {
                flow.trailers_visible = true;
            }
            flow.trailers.get_or_insert_with(HeaderMap::default)
        } else {
            flow.headers.get_or_insert_with(HeaderMap::default)
        };
        Ok(map)
    }

    pub(crate) fn set_map_pairs(&mut self, kind: u32, serialized: &[u8]) -> Result<(), Status> {
        let map = parse_pairs(serialized);
        *self.map_mut(kind, "proxy_set_header_map_pairs")? = map;
        Ok(())
    }

    // --- properties -------------------------------------------------------

    pub(crate) fn get_property(&self, path: &PropertyPath) -> Result<Vec<u8>, Status> {
        let context = self.effective;
        let stream_store = self
            .http
            .get(&context)
            .map(|s| &s.properties)
            .or_else(|| self.tcp.get(&context).map(|s| &s.properties));
        if let Some(value) = stream_store.and_then(|store| store.get(path)) {
            return Ok(value.encode());
        }
        if let Some(value) = crate::attributes::derived(self, context, path) {
            return Ok(value.encode());
        }
        self.properties
            .get(path)
            .map(|v| v.encode())
            .ok_or(Status::NotFound)
    }

    pub(crate) fn set_property(&mut self, path: PropertyPath, value: &[u8]) -> Result<(), Status> {
        let context = self.effective;
        let value = PropertyValue::Bytes(value.to_vec());
        if let Some(stream) = self.http.get_mut(&context) {
            stream.properties.set(path, value);
        } else if let Some(stream) = self.tcp.get_mut(&context) {
            stream.properties.set(path, value);
        } else {
            // Envoy keeps these in the stream's filter state; a root
            // context has none.
            return Err(Status::NotFound);
        }
        Ok(())
    }

    // --- shared data and queues -------------------------------------------

    pub(crate) fn get_shared_data(&self, key: &[u8]) -> Result<(Vec<u8>, u32), Status> {
        self.proxy.lock().get(&self.settings.vm_id, key)
    }

    pub(crate) fn set_shared_data(
        &mut self,
        key: &[u8],
        value: &[u8],
        cas: u32,
    ) -> Result<(), Status> {
        self.proxy.lock().set(&self.settings.vm_id, key, value, cas)
    }

    pub(crate) fn register_queue(&mut self, name: &[u8]) -> Result<u32, Status> {
        let root = self.root_of(self.effective).ok_or(Status::BadArgument)?;
        Ok(self
            .proxy
            .lock()
            .register_queue(&self.settings.vm_id, name, (self.id, root)))
    }

    pub(crate) fn resolve_queue(&self, vm_id: &[u8], name: &[u8]) -> Result<u32, Status> {
        let vm_id = String::from_utf8_lossy(vm_id);
        // An empty vm_id means this VM's, as in Envoy.
        let vm_id = if vm_id.is_empty() {
            self.settings.vm_id.as_str()
        } else {
            &vm_id
        };
        self.proxy.lock().resolve_queue(vm_id, name)
    }

    pub(crate) fn enqueue(&mut self, token: u32, value: &[u8]) -> Result<(), Status> {
        let (owner_vm, owner_root) = {
            let mut proxy = self.proxy.lock();
            let queue = proxy.queue(token)?;
            queue.items.push_back(value.to_vec());
            queue.owner
        };
        if owner_vm == self.id {
            self.deferred.push(Deferred::QueueReady {
                root: owner_root,
                token,
            });
        } else {
            crate::host::notify_queue(&self.proxy, owner_vm, owner_root, token);
        }
        Ok(())
    }

    pub(crate) fn dequeue(&mut self, token: u32) -> Result<Vec<u8>, Status> {
        let mut proxy = self.proxy.lock();
        let queue = proxy.queue(token)?;
        queue.items.pop_front().ok_or(Status::Empty)
    }

    // --- metrics ----------------------------------------------------------

    /// Envoy numbers metrics by kind: counters 4, 8, ...; gauges 5, 9, ...;
    /// histograms 6, 10, ... Defining a name again gives a new id for the
    /// same stat.
    pub(crate) fn define_metric(&mut self, kind: u32, name: &[u8]) -> Result<u32, Status> {
        let kind = MetricType::from_u32(kind).ok_or(Status::BadArgument)?;
        let name = String::from_utf8_lossy(name).into_owned();
        self.proxy.lock().define_metric(&name, kind);
        let id = (self.metric_ids.len() as u32 + 1) * 4 + kind as u32;
        self.metric_ids.push((name, kind));
        Ok(id)
    }

    fn metric_of(&self, id: u32) -> Result<(String, MetricType), Status> {
        let kind = MetricType::from_u32(id & 3).ok_or(Status::NotFound)?;
        let index = (id / 4).checked_sub(1).ok_or(Status::NotFound)? as usize;
        match self.metric_ids.get(index) {
            Some((name, defined)) if *defined == kind => Ok((name.clone(), kind)),
            _ => Err(Status::NotFound),
        }
    }

    pub(crate) fn increment_metric(&mut self, id: u32, offset: i64) -> Result<(), Status> {
        let (name, kind) = self.metric_of(id)?;
        let mut proxy = self.proxy.lock();
        match proxy.metric(&name, kind).ok_or(Status::NotFound)? {
            // Envoy refuses to "increment" a counter by zero or less.
            MetricValue::Counter(_) if offset <= 0 => return Err(Status::BadArgument),
            MetricValue::Counter(value) => *value = value.saturating_add(offset as u64),
            MetricValue::Gauge(value) => *value = value.saturating_add(offset),
            MetricValue::Histogram(_) => return Err(Status::BadArgument),
        }
        Ok(())
    }

    /// Recording adds to a counter (Envoy's behaviour), sets a gauge and
    /// records a histogram value.
    pub(crate) fn record_metric(&mut self, id: u32, value: u64) -> Result<(), Status> {
        let (name, kind) = self.metric_of(id)?;
        let mut proxy = self.proxy.lock();
        match proxy.metric(&name, kind).ok_or(Status::NotFound)? {
            MetricValue::Counter(total) => *total = total.saturating_add(value),
            MetricValue::Gauge(current) => *current = value as i64,
            MetricValue::Histogram(values) => values.push(value),
        }
        Ok(())
    }

    pub(crate) fn get_metric(&self, id: u32) -> Result<u64, Status> {
        let (name, kind) = self.metric_of(id)?;
        let mut proxy = self.proxy.lock();
        match proxy.metric(&name, kind).ok_or(Status::NotFound)? {
            MetricValue::Counter(total) => Ok(*total),
            MetricValue::Gauge(current) => Ok(*current as u64),
            MetricValue::Histogram(_) => Err(Status::BadArgument),
        }
    }

    // --- stream control ---------------------------------------------------

    /// `proxy_continue_stream`, deferred until the VM call returns, as in
    /// Envoy. Resuming hides the request's maps at once (an Envoy quirk).
    pub(crate) fn continue_stream(&mut self, kind: u32) -> Result<(), Status> {
        let kind = StreamType::from_u32(kind).ok_or(Status::BadArgument)?;
        let context = self.effective;
        match kind {
            StreamType::Upstream => return Err(Status::Unimplemented),
            StreamType::Downstream => {
                if !self.tcp.contains_key(&context) {
                    return Ok(());
                }
            }
            StreamType::HttpRequest | StreamType::HttpResponse => {
                let Some(stream) = self.http.get_mut(&context) else {
                    return Ok(());
                };
                stream.request.headers_visible = false;
                stream.request.trailers_visible = false;
                let flow = if kind == StreamType::HttpRequest {
                    &stream.request
                } else {
                    &stream.response
                };
                let paused = matches!(
                    flow.state,
                    FlowState::HeadersStopped | FlowState::BodyStopped | FlowState::TrailersStopped
                );
                let already = self.deferred.contains(&Deferred::Continue(context, kind));
                if !paused && !already {
                    let resumed_in_own_callback = matches!(
                        (kind, self.callback),
                        (
                            StreamType::HttpRequest,
                            Some(
                                Callback::RequestHeaders
                                    | Callback::RequestBody
                                    | Callback::RequestTrailers
                            )
                        ) | (
                            StreamType::HttpResponse,
                            Some(
                                Callback::ResponseHeaders
                                    | Callback::ResponseBody
                                    | Callback::ResponseTrailers
                            )
                        )
                    );
                    if !resumed_in_own_callback {
                        self.violation(
                            "proxy_continue_stream",
                            format!("{kind:?} resumed while it was not paused: Envoy's continueDecoding/continueEncoding expects a stopped filter (an assertion in debug builds)"),
                        );
                        return Ok(());
                    }
                }
            }
        }
        self.deferred.push(Deferred::Continue(context, kind));
        Ok(())
    }

    /// `proxy_close_stream`: resets an HTTP stream, or closes a TCP side.
    pub(crate) fn close_stream(&mut self, kind: u32) -> Result<(), Status> {
        let kind = StreamType::from_u32(kind).ok_or(Status::BadArgument)?;
        let context = self.effective;
        match kind {
            StreamType::HttpRequest | StreamType::HttpResponse => {
                if let Some(stream) = self.http.get_mut(&context) {
                    stream
                        .reset
                        .get_or_insert_with(|| "wasm_close_stream".to_string());
                    stream.request.state = FlowState::Done;
                    stream.response.state = FlowState::Done;
                }
            }
            StreamType::Downstream | StreamType::Upstream => {
                if let Some(stream) = self.tcp.get_mut(&context)
                    && !stream.closed.contains(&kind)
                {
                    stream.closed.push(kind);
                }
            }
        }
        Ok(())
    }

    /// `proxy_send_local_response`: Envoy always answers Ok and sends the
    /// response once the VM call returns.
    pub(crate) fn send_local_response(&mut self, response: LocalResponse) -> Result<(), Status> {
        let context = self.effective;
        let Some(stream) = self.http.get(&context) else {
            self.violation(
                "proxy_send_local_response",
                "outside an HTTP stream: Envoy does nothing",
            );
            return Ok(());
        };
        if stream.local_response.is_some() {
            self.violation(
                "proxy_send_local_response",
                "a second local response on one stream: the client gets the first",
            );
            return Ok(());
        }
        if stream.response.forwarded.headers.is_some() {
            self.violation(
                "proxy_send_local_response",
                "local response after the response headers were sent downstream: Envoy cannot send it and resets the stream",
            );
        }
        if let Some(stream) = self.http.get_mut(&context) {
            stream.local_response = Some(response);
        }
        self.deferred.push(Deferred::LocalResponse(context));
        Ok(())
    }

    // --- callouts ---------------------------------------------------------

    fn check_cluster(&self, upstream: &str) -> Result<(), Status> {
        match &self.settings.clusters {
            Some(clusters) if !clusters.contains(upstream) => Err(Status::BadArgument),
            _ => Ok(()),
        }
    }

    /// Envoy's callout tokens: HTTP calls 4, 8, ...; gRPC calls 5, 9, ...;
    /// gRPC streams 6, 10, ...
    fn take_token(&mut self, kind: u32) -> u32 {
        let next = &mut self.next_tokens[kind as usize % 3];
        *next = next.wrapping_add(1);
        next.wrapping_mul(4).wrapping_add(kind)
    }

    pub(crate) fn http_call(
        &mut self,
        upstream: &[u8],
        headers: &[u8],
        body: &[u8],
        trailers: &[u8],
        timeout_ms: u32,
    ) -> Result<u32, Status> {
        if (timeout_ms as i32) < 0 {
            return Err(Status::BadArgument);
        }
        let upstream = String::from_utf8_lossy(upstream).into_owned();
        self.check_cluster(&upstream)?;
        let headers = parse_pairs(headers);
        let trailers = parse_pairs(trailers);
        for required in [":authority", ":method", ":path"] {
            if headers.get_bytes(required).is_none_or(|v| v.is_empty()) {
                return Err(Status::BadArgument);
            }
        }
        let token = self.take_token(0);
        let call = HttpCall {
            token,
            context_id: self.effective,
            upstream,
            headers,
            body: body.to_vec(),
            trailers,
            timeout_ms,
            sent_nanos: self.monotonic_nanos,
        };
        self.http_calls.insert(token, call);
        Ok(token)
    }

    #[allow(clippy::too_many_arguments)]
    pub(crate) fn grpc_open(
        &mut self,
        upstream: &[u8],
        service: &[u8],
        method: &[u8],
        metadata: &[u8],
        message: Option<&[u8]>,
        timeout_ms: u32,
    ) -> Result<u32, Status> {
        // The upstream is a cluster name or a serialized GrpcService; only
        // a plain name can be checked against the clusters.
        if let Ok(name) = std::str::from_utf8(upstream)
            && !name.contains(|c: char| c.is_control())
        {
            self.check_cluster(name)?;
        }
        let initial_metadata = parse_pairs(metadata);
        let token = self.take_token(if message.is_some() { 1 } else { 2 });
        let call = GrpcCall {
            token,
            context_id: self.effective,
            upstream: upstream.to_vec(),
            service: String::from_utf8_lossy(service).into_owned(),
            method: String::from_utf8_lossy(method).into_owned(),
            initial_metadata,
            messages: message.map(|m| vec![m.to_vec()]).unwrap_or_default(),
            streaming: message.is_none(),
            local_closed: message.is_some(),
            cancelled: false,
            timeout_ms,
            sent_nanos: self.monotonic_nanos,
        };
        self.grpc_calls.insert(token, call);
        Ok(token)
    }

    pub(crate) fn grpc_send(
        &mut self,
        token: u32,
        message: &[u8],
        end_stream: bool,
    ) -> Result<(), Status> {
        let call = self.grpc_calls.get_mut(&token).ok_or(Status::NotFound)?;
        if !call.streaming {
            return Err(Status::BadArgument);
        }
        if call.local_closed {
            return Err(Status::BadArgument);
        }
        call.messages.push(message.to_vec());
        call.local_closed = end_stream;
        Ok(())
    }

    pub(crate) fn grpc_cancel(&mut self, token: u32) -> Result<(), Status> {
        self.grpc_calls.remove(&token).ok_or(Status::NotFound)?;
        Ok(())
    }

    pub(crate) fn grpc_close(&mut self, token: u32) -> Result<(), Status> {
        let call = self.grpc_calls.get_mut(&token).ok_or(Status::NotFound)?;
        call.local_closed = true;
        Ok(())
    }

    // --- contexts and foreign functions -----------------------------------

    pub(crate) fn set_effective_context(&mut self, context: u32) -> Result<(), Status> {
        let live = match self.contexts.get(&context) {
            Some(ContextKind::Root) => true,
            Some(ContextKind::Http) => self.http.get(&context).is_some_and(|s| !s.finished),
            Some(ContextKind::Tcp) => self.tcp.get(&context).is_some_and(|s| !s.finished),
            None => false,
        };
        if !live {
            return Err(Status::BadArgument);
        }
        self.effective = context;
        Ok(())
    }

    pub(crate) fn done(&mut self) -> Result<(), Status> {
        let context = self.effective;
        let plugin = self.plugin_of_root_mut(context).ok_or(Status::NotFound)?;
        if !plugin.done_pending {
            return Err(Status::NotFound);
        }
        plugin.done_pending = false;
        self.deferred.push(Deferred::DeleteRoot(context));
        Ok(())
    }

    pub(crate) fn call_foreign(&mut self, name: &[u8], args: &[u8]) -> Result<Vec<u8>, Status> {
        let name = String::from_utf8_lossy(name).into_owned();
        if name == "clear_route_cache" {
            let context = self.effective;
            let stream = self.http.get_mut(&context).ok_or(Status::NotFound)?;
            stream.route_cache_cleared += 1;
            return Ok(Vec::new());
        }
        let function = self.foreign.get_mut(&name).ok_or(Status::NotFound)?;
        function(args)
    }
}

/// The wall clock a host starts at: 2026-01-01T00:00:00Z, so that logs and
/// timestamps are the same on every run.
///
/// ```
/// // 2026-01-01T00:00:00Z in nanoseconds since the Unix epoch.
/// assert_eq!(sdk_host::DEFAULT_START_NANOS / 1_000_000_000, 1_767_225_600);
/// ```
pub const DEFAULT_START_NANOS: u64 = 1_767_225_600 * 1_000_000_000;

/// `proxy_set_buffer_bytes` on a byte buffer, with Envoy's three cases.
fn splice(buffer: &mut Vec<u8>, start: usize, size: usize, value: &[u8]) -> Result<(), Status> {
    if start >= buffer.len() {
        buffer.extend_from_slice(value);
    } else if start == 0 {
        let end = size.min(buffer.len());
        buffer.splice(..end, value.iter().copied());
    } else {
        return Err(Status::BadArgument);
    }
    Ok(())
}

/// (request?, trailers?) of a stream map type.
fn stream_map_of(kind: MapType) -> (bool, bool) {
    match kind {
        MapType::HttpRequestHeaders => (true, false),
        MapType::HttpRequestTrailers => (true, true),
        MapType::HttpResponseHeaders => (false, false),
        _ => (false, true),
    }
}

/// What a map read finds.
pub(crate) enum MapAccess {
    /// The map, as it is now.
    Map(HeaderMap),
    /// Not exposed here; in `proxy_on_log` Envoy says NotFound, elsewhere BadArgument.
    Unavailable { log_phase: bool },
}

/// Reads a serialized map as Envoy does: anything malformed is an empty map.
pub(crate) fn parse_pairs(bytes: &[u8]) -> HeaderMap {
    HeaderMap::deserialize(bytes).unwrap_or_default()
}
