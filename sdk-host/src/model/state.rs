//! Everything one Envoy-like VM keeps: its plugins and contexts, its
//! streams, the callout and gRPC calls in flight, and what it recorded.

use crate::headers::HeaderMap;
use crate::properties::PropertyStore;
use crate::proxy::Proxy;
use crate::records::{Forwarded, GrpcCall, HttpCall, LocalResponse, LogRecord, Violation};
use crate::types::{Callback, LogLevel, MetricType, Status, StreamType};
use std::collections::{BTreeMap, BTreeSet};

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

/// Which direction of an HTTP stream.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum Dir {
    Request,
    Response,
}

impl Dir {
    /// The headers, body and trailers callbacks of this direction.
    pub(crate) fn callbacks(self) -> (Callback, Callback, Callback) {
        match self {
            Dir::Request => (
                Callback::RequestHeaders,
                Callback::RequestBody,
                Callback::RequestTrailers,
            ),
            Dir::Response => (
                Callback::ResponseHeaders,
                Callback::ResponseBody,
                Callback::ResponseTrailers,
            ),
        }
    }
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

impl Default for VmSettings {
    /// Envoy's defaults: no ids or configuration, every log level, any cluster.
    fn default() -> VmSettings {
        VmSettings {
            vm_id: String::new(),
            vm_config: Vec::new(),
            env: Vec::new(),
            log_level: LogLevel::Trace,
            clusters: None,
        }
    }
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
    /// What the guest wrote to stdout and stderr in the current call, as
    /// written, and which of `logs` those writes became: a trap report
    /// shows the text whole.
    pub(crate) call_output: Vec<u8>,
    pub(crate) call_output_logs: Vec<usize>,
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
    /// Hostcalls the guest made, by import name: what a request costs in
    /// VM crossings, each of which costs thousands of instructions in Envoy.
    pub(crate) hostcall_counts: BTreeMap<&'static str, u64>,
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
            call_output: Vec::new(),
            call_output_logs: Vec::new(),
            hostcall_counts: BTreeMap::new(),
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

    /// A VM with default settings that never runs a guest: what a store
    /// needs to exist before there is a host (listing a linker's imports).
    pub(crate) fn unstarted() -> HostState {
        HostState::new(0, VmSettings::default(), Proxy::default(), 0)
    }

    /// The guest's monotonic clock: its start plus the time the test advanced.
    pub(crate) fn monotonic_now_nanos(&self) -> u64 {
        MONOTONIC_START_NANOS.wrapping_add(self.monotonic_nanos)
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
}

/// The monotonic clock a guest reads when a host starts (WASI
/// `clock_time_get` on clock 1): an hour, as on a proxy that has been up a
/// while. Envoy's steady clock is never 0, and the Go runtime refuses to
/// start on a clock that reads 0.
///
/// ```
/// assert_eq!(sdk_host::MONOTONIC_START_NANOS, 3_600 * 1_000_000_000);
/// ```
pub const MONOTONIC_START_NANOS: u64 = 3_600 * 1_000_000_000;

/// The wall clock a host starts at: 2026-01-01T00:00:00Z, so that logs and
/// timestamps are the same on every run.
///
/// ```
/// // 2026-01-01T00:00:00Z in nanoseconds since the Unix epoch.
/// assert_eq!(sdk_host::DEFAULT_START_NANOS / 1_000_000_000, 1_767_225_600);
/// ```
pub const DEFAULT_START_NANOS: u64 = 1_767_225_600 * 1_000_000_000;
