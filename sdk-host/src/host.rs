//! The test API: a [`Host`] plays Envoy's part for one VM, calling the
//! guest's callbacks in Envoy's order with Envoy's buffering rules, and lets
//! a test read what came out.

use crate::error::Error;
use crate::headers::HeaderMap;
use crate::properties::{PropertyPath, PropertyValue};
use crate::proxy::{MetricValue, Proxy};
use crate::runtime::Runtime;
use crate::state::{
    Callback, ContextKind, Deferred, FlowState, ForeignFunction, Forwarded, GrpcCall, HostState,
    HttpCall, HttpStream, LocalResponse, LogRecord, Plugin, TcpStream, Violation, VmSettings,
};
use crate::types::{Action, LogLevel, PeerType, Status, StreamType};
use crate::wasm::WasmModule;
use std::collections::BTreeSet;
use std::sync::atomic::{AtomicU64, Ordering};
use std::time::Duration;

/// A context id, as the guest sees it.
///
/// ```
/// # let wat = r#"(module (memory (export "memory") 1) (func (export "proxy_abi_version_0_2_1"))
/// #   (func (export "malloc") (param i32) (result i32) (i32.const 1024)))"#;
/// # let module = sdk_host::WasmModule::from_bytes("pass.wasm", &wat::parse_str(wat)?)?;
/// let mut host = sdk_host::Host::builder().start(&module)?;
/// let root: sdk_host::ContextId = host.root_contexts()[0];
/// let stream: sdk_host::ContextId = host.new_http_stream()?;
/// assert_ne!(root, stream);
/// # Ok::<(), Box<dyn std::error::Error>>(())
/// ```
pub type ContextId = u32;

/// Configures and starts a [`Host`].
///
/// # Examples
///
/// ```no_run
/// use sdk_host::{Host, WasmModule};
/// let module = WasmModule::from_file("filter.wasm")?;
/// let _host = Host::builder()
///     .vm_id("my-vm")
///     .plugin_config(r#"{"greeting": "hi"}"#)
///     .property("node.metadata.CLUSTER_ID", "Kubernetes")
///     .start(&module)?;
/// # Ok::<(), Box<dyn std::error::Error>>(())
/// ```
pub struct HostBuilder {
    settings: VmSettings,
    plugins: Vec<PluginSpec>,
    default_config: Vec<u8>,
    properties: Vec<(PropertyPath, PropertyValue)>,
    proxy: Option<Proxy>,
    seed: u64,
    start_nanos: u64,
    foreign: Vec<(String, ForeignFunction)>,
}

struct PluginSpec {
    name: String,
    root_id: String,
    config: Vec<u8>,
}

impl Default for HostBuilder {
    fn default() -> Self {
        HostBuilder {
            settings: VmSettings {
                vm_id: String::new(),
                vm_config: Vec::new(),
                env: Vec::new(),
                log_level: LogLevel::Trace,
                clusters: None,
            },
            plugins: Vec::new(),
            default_config: Vec::new(),
            properties: Vec::new(),
            proxy: None,
            seed: 0,
            start_nanos: crate::state::DEFAULT_START_NANOS,
            foreign: Vec::new(),
        }
    }
}

impl HostBuilder {
    /// The VM id, which partitions shared data and queues (default empty, as in Envoy).
    ///
    /// ```
    /// # let wat = r#"(module (memory (export "memory") 1) (func (export "proxy_abi_version_0_2_1"))
    /// #   (func (export "malloc") (param i32) (result i32) (i32.const 1024)))"#;
    /// # let module = sdk_host::WasmModule::from_bytes("pass.wasm", &wat::parse_str(wat)?)?;
    /// let host = sdk_host::Host::builder().vm_id("shared").start(&module)?;
    /// assert_eq!(host.root_contexts().len(), 1);
    /// # Ok::<(), Box<dyn std::error::Error>>(())
    /// ```
    pub fn vm_id(mut self, vm_id: &str) -> Self {
        self.settings.vm_id = vm_id.to_string();
        self
    }

    /// The VM configuration `proxy_on_vm_start` reads.
    ///
    /// ```
    /// # let wat = r#"(module (memory (export "memory") 1) (func (export "proxy_abi_version_0_2_1"))
    /// #   (func (export "malloc") (param i32) (result i32) (i32.const 1024)))"#;
    /// # let module = sdk_host::WasmModule::from_bytes("pass.wasm", &wat::parse_str(wat)?)?;
    /// let host = sdk_host::Host::builder().vm_config(r#"{"cache": 64}"#).start(&module)?;
    /// assert!(host.violations().is_empty());
    /// # Ok::<(), Box<dyn std::error::Error>>(())
    /// ```
    pub fn vm_config(mut self, config: impl AsRef<[u8]>) -> Self {
        self.settings.vm_config = config.as_ref().to_vec();
        self
    }

    /// The configuration of the default plugin, when no [`plugin`](Self::plugin) is added.
    ///
    /// ```
    /// # let wat = r#"(module (memory (export "memory") 1) (func (export "proxy_abi_version_0_2_1"))
    /// #   (func (export "malloc") (param i32) (result i32) (i32.const 1024)))"#;
    /// # let module = sdk_host::WasmModule::from_bytes("pass.wasm", &wat::parse_str(wat)?)?;
    /// let host = sdk_host::Host::builder().plugin_config(r#"{"deny": "/admin"}"#).start(&module)?;
    /// assert_eq!(host.root_contexts().len(), 1);
    /// # Ok::<(), Box<dyn std::error::Error>>(())
    /// ```
    pub fn plugin_config(mut self, config: impl AsRef<[u8]>) -> Self {
        self.default_config = config.as_ref().to_vec();
        self
    }

    /// Adds a plugin (a root context) with its name, root id and configuration.
    /// Several plugins share the VM, as plugins with one `vm_id` do in Envoy.
    ///
    /// ```
    /// # let wat = r#"(module (memory (export "memory") 1) (func (export "proxy_abi_version_0_2_1"))
    /// #   (func (export "malloc") (param i32) (result i32) (i32.const 1024)))"#;
    /// # let module = sdk_host::WasmModule::from_bytes("pass.wasm", &wat::parse_str(wat)?)?;
    /// // Two plugins of one VM, as two filters sharing a vm_id in Envoy.
    /// let host = sdk_host::Host::builder()
    ///     .plugin("authz", "authz_root", "{}")
    ///     .plugin("stats", "stats_root", "{}")
    ///     .start(&module)?;
    /// assert_eq!(host.root_contexts().len(), 2);
    /// # Ok::<(), Box<dyn std::error::Error>>(())
    /// ```
    pub fn plugin(mut self, name: &str, root_id: &str, config: impl AsRef<[u8]>) -> Self {
        self.plugins.push(PluginSpec {
            name: name.to_string(),
            root_id: root_id.to_string(),
            config: config.as_ref().to_vec(),
        });
        self
    }

    /// An environment variable the guest sees through WASI (`vm_config.environment_variables`).
    ///
    /// ```
    /// # let wat = r#"(module (memory (export "memory") 1) (func (export "proxy_abi_version_0_2_1"))
    /// #   (func (export "malloc") (param i32) (result i32) (i32.const 1024)))"#;
    /// # let module = sdk_host::WasmModule::from_bytes("pass.wasm", &wat::parse_str(wat)?)?;
    /// // Seen by the guest through WASI's environ_get, as Envoy's vm_config.environment_variables.
    /// let host = sdk_host::Host::builder().env("REGION", "eu-west-1").start(&module)?;
    /// assert!(host.failure().is_none());
    /// # Ok::<(), Box<dyn std::error::Error>>(())
    /// ```
    pub fn env(mut self, key: &str, value: &str) -> Self {
        self.settings.env.push((key.to_string(), value.to_string()));
        self
    }

    /// The level `proxy_get_log_level` reports; lines below it are dropped
    /// (default `Trace`: keep everything).
    ///
    /// ```
    /// # let wat = r#"(module (memory (export "memory") 1) (func (export "proxy_abi_version_0_2_1"))
    /// #   (func (export "malloc") (param i32) (result i32) (i32.const 1024)))"#;
    /// # let module = sdk_host::WasmModule::from_bytes("pass.wasm", &wat::parse_str(wat)?)?;
    /// use sdk_host::LogLevel;
    /// let host = sdk_host::Host::builder().log_level(LogLevel::Warn).start(&module)?;
    /// assert!(host.log_lines(LogLevel::Debug).is_empty());
    /// # Ok::<(), Box<dyn std::error::Error>>(())
    /// ```
    pub fn log_level(mut self, level: LogLevel) -> Self {
        self.settings.log_level = level;
        self
    }

    /// Seeds WASI `random_get` (default 0), so tests are reproducible.
    ///
    /// ```
    /// # let wat = r#"(module (memory (export "memory") 1) (func (export "proxy_abi_version_0_2_1"))
    /// #   (func (export "malloc") (param i32) (result i32) (i32.const 1024)))"#;
    /// # let module = sdk_host::WasmModule::from_bytes("pass.wasm", &wat::parse_str(wat)?)?;
    /// // The same seed gives the guest the same random_get bytes on every run.
    /// let host = sdk_host::Host::builder().seed(42).start(&module)?;
    /// assert!(host.failure().is_none());
    /// # Ok::<(), Box<dyn std::error::Error>>(())
    /// ```
    pub fn seed(mut self, seed: u64) -> Self {
        self.seed = seed;
        self
    }

    /// The wall-clock time the host starts at, in nanoseconds since the
    /// Unix epoch (default [`crate::DEFAULT_START_NANOS`]).
    ///
    /// ```
    /// # let wat = r#"(module (memory (export "memory") 1) (func (export "proxy_abi_version_0_2_1"))
    /// #   (func (export "malloc") (param i32) (result i32) (i32.const 1024)))"#;
    /// # let module = sdk_host::WasmModule::from_bytes("pass.wasm", &wat::parse_str(wat)?)?;
    /// let host = sdk_host::Host::builder()
    ///     .start_time_nanos(1_700_000_000_000_000_000)
    ///     .start(&module)?;
    /// assert_eq!(host.elapsed(), std::time::Duration::ZERO);
    /// # Ok::<(), Box<dyn std::error::Error>>(())
    /// ```
    pub fn start_time_nanos(mut self, nanos: u64) -> Self {
        self.start_nanos = nanos;
        self
    }

    /// Sets a property, by dotted path (`"node.metadata.CLUSTER_ID"`).
    /// Overrides the defaults (`source.address`, `node.id`, ...).
    ///
    /// ```
    /// # let wat = r#"(module (memory (export "memory") 1) (func (export "proxy_abi_version_0_2_1"))
    /// #   (func (export "malloc") (param i32) (result i32) (i32.const 1024)))"#;
    /// # let module = sdk_host::WasmModule::from_bytes("pass.wasm", &wat::parse_str(wat)?)?;
    /// let host = sdk_host::Host::builder()
    ///     .property("node.metadata.ISTIO_VERSION", "1.29.0")
    ///     .property("source.port", sdk_host::PropertyValue::Int(40000))
    ///     .start(&module)?;
    /// assert!(host.failure().is_none());
    /// # Ok::<(), Box<dyn std::error::Error>>(())
    /// ```
    pub fn property(self, path: &str, value: impl Into<PropertyValue>) -> Self {
        let segments = path.split('.').map(str::to_string).collect();
        self.property_path(segments, value)
    }

    /// Sets a property by its segments, for names that contain dots.
    ///
    /// ```
    /// # let wat = r#"(module (memory (export "memory") 1) (func (export "proxy_abi_version_0_2_1"))
    /// #   (func (export "malloc") (param i32) (result i32) (i32.const 1024)))"#;
    /// # let module = sdk_host::WasmModule::from_bytes("pass.wasm", &wat::parse_str(wat)?)?;
    /// // A segment holding a dot, which `property` would split.
    /// let path = vec!["filter_state".to_string(), "wasm.my.key".to_string()];
    /// let host = sdk_host::Host::builder().property_path(path, "value").start(&module)?;
    /// assert!(host.failure().is_none());
    /// # Ok::<(), Box<dyn std::error::Error>>(())
    /// ```
    pub fn property_path(mut self, path: Vec<String>, value: impl Into<PropertyValue>) -> Self {
        self.properties.push((path, value.into()));
        self
    }

    /// Declares a cluster. Once any is declared, `proxy_http_call` and
    /// `proxy_grpc_call` to others fail with `BadArgument`, as in Envoy.
    ///
    /// ```
    /// # let wat = r#"(module (memory (export "memory") 1) (func (export "proxy_abi_version_0_2_1"))
    /// #   (func (export "malloc") (param i32) (result i32) (i32.const 1024)))"#;
    /// # let module = sdk_host::WasmModule::from_bytes("pass.wasm", &wat::parse_str(wat)?)?;
    /// // Callouts to any other cluster now get BadArgument, as in Envoy.
    /// let host = sdk_host::Host::builder().cluster("auth").cluster("ratelimit").start(&module)?;
    /// assert!(host.http_calls().is_empty());
    /// # Ok::<(), Box<dyn std::error::Error>>(())
    /// ```
    pub fn cluster(mut self, name: &str) -> Self {
        self.settings
            .clusters
            .get_or_insert_with(BTreeSet::new)
            .insert(name.to_string());
        self
    }

    /// Shares the process-wide state (shared data, queues, metrics) with
    /// other hosts given the same [`Proxy`], like Envoy worker threads.
    ///
    /// ```
    /// # let wat = r#"(module (memory (export "memory") 1) (func (export "proxy_abi_version_0_2_1"))
    /// #   (func (export "malloc") (param i32) (result i32) (i32.const 1024)))"#;
    /// # let module = sdk_host::WasmModule::from_bytes("pass.wasm", &wat::parse_str(wat)?)?;
    /// // Two worker threads of one Envoy: shared data and metrics are common.
    /// let first = sdk_host::Host::builder().start(&module)?;
    /// let second = sdk_host::Host::builder().proxy(&first.proxy()).start(&module)?;
    /// assert!(first.proxy().set_shared_data("", "k", b"v").is_ok());
    /// assert_eq!(second.shared_data("k").map(|(v, _)| v), Some(b"v".to_vec()));
    /// # Ok::<(), Box<dyn std::error::Error>>(())
    /// ```
    pub fn proxy(mut self, proxy: &Proxy) -> Self {
        self.proxy = Some(proxy.clone());
        self
    }

    /// Offers a foreign function to `proxy_call_foreign_function`, next to
    /// Envoy's `clear_route_cache`.
    ///
    /// ```
    /// # let wat = r#"(module (memory (export "memory") 1) (func (export "proxy_abi_version_0_2_1"))
    /// #   (func (export "malloc") (param i32) (result i32) (i32.const 1024)))"#;
    /// # let module = sdk_host::WasmModule::from_bytes("pass.wasm", &wat::parse_str(wat)?)?;
    /// let host = sdk_host::Host::builder()
    ///     .foreign_function("echo", |args: &[u8]| Ok(args.to_vec()))
    ///     .start(&module)?;
    /// assert!(host.failure().is_none());
    /// # Ok::<(), Box<dyn std::error::Error>>(())
    /// ```
    pub fn foreign_function(
        mut self,
        name: &str,
        function: impl FnMut(&[u8]) -> Result<Vec<u8>, Status> + 'static,
    ) -> Self {
        self.foreign.push((name.to_string(), Box::new(function)));
        self
    }

    fn state(&mut self) -> HostState {
        static NEXT_VM: AtomicU64 = AtomicU64::new(1);
        let id = NEXT_VM.fetch_add(1, Ordering::Relaxed);
        let proxy = self.proxy.clone().unwrap_or_default();
        let mut state = HostState::new(id, self.settings.clone(), proxy, self.seed);
        state.realtime_base_nanos = self.start_nanos;
        for (path, value) in crate::attributes::defaults() {
            state.properties.set(path, value);
        }
        for (path, value) in self.properties.drain(..) {
            state.properties.set(path, value);
        }
        for (name, function) in self.foreign.drain(..) {
            state.foreign.insert(name, function);
        }
        state
    }

    /// Instantiates the module and starts the VM as Envoy does: the
    /// module's `_initialize`, then per plugin `proxy_on_context_create`,
    /// `proxy_on_vm_start` and `proxy_on_configure`.
    ///
    /// # Errors
    ///
    /// [`Error::Rejected`] when the guest refuses its configuration (with
    /// what it logged), [`Error::Trap`] when it traps.
    ///
    /// ```
    /// # let wat = r#"(module (memory (export "memory") 1) (func (export "proxy_abi_version_0_2_1"))
    /// #   (func (export "malloc") (param i32) (result i32) (i32.const 1024)))"#;
    /// # let module = sdk_host::WasmModule::from_bytes("pass.wasm", &wat::parse_str(wat)?)?;
    /// let mut host = sdk_host::Host::builder().start(&module)?;
    /// let stream = host.new_http_stream()?;
    /// host.send_request_headers(stream, &[(":path", "/")], true)?;
    /// assert!(host.http(stream)?.upstream().complete);
    /// # Ok::<(), Box<dyn std::error::Error>>(())
    /// ```
    pub fn start(mut self, module: &WasmModule) -> Result<Host, Error> {
        let state = self.state();
        let runtime = module.instantiate(state)?;
        Host::start(Box::new(runtime), self.plugins, self.default_config, 1)
    }

    /// Starts the VM with a filter linked natively into this test binary.
    ///
    /// # Errors
    ///
    /// As [`HostBuilder::start`]. Several native hosts may live on one
    /// thread; filters of two crates cannot share a test binary (their
    /// exports have the same names).
    ///
    /// ```
    /// // In a filter crate's tests, with sdk-host's `native` feature; here the
    /// // filter is `sdk_host_probe`, the probe sdk-host tests itself with.
    /// let module = sdk_host::native_module!(sdk_host_probe);
    /// let mut host = sdk_host::Host::builder().plugin_config("{}").start_native(module)?;
    /// let stream = host.new_http_stream()?;
    /// host.send_request_headers(stream, &[(":path", "/")], true)?;
    /// assert!(host.http(stream)?.upstream().complete);
    /// # Ok::<(), Box<dyn std::error::Error>>(())
    /// ```
    #[cfg(feature = "native")]
    pub fn start_native(mut self, module: crate::native::NativeModule) -> Result<Host, Error> {
        let state = self.state();
        let (runtime, first_context) = crate::native::NativeRuntime::new(module, state);
        Host::start(
            Box::new(runtime),
            self.plugins,
            self.default_config,
            first_context,
        )
    }
}

/// An HTTP response a test gives to a callout.
///
/// # Examples
///
/// ```
/// use sdk_host::CalloutResponse;
/// let ok = CalloutResponse::new(200).header("content-type", "text/plain").body("ok");
/// assert_eq!(ok.headers.get(":status"), Some("200"));
/// ```
#[derive(Debug, Clone, Default)]
pub struct CalloutResponse {
    /// Headers, `:status` first.
    pub headers: HeaderMap,
    /// Body.
    pub body: Vec<u8>,
    /// Trailers.
    pub trailers: HeaderMap,
}

impl CalloutResponse {
    /// A response with this status and nothing else.
    ///
    /// ```no_run
    /// # let module = sdk_host::WasmModule::from_file("filter.wasm")?;
    /// # let mut host = sdk_host::Host::builder().start(&module)?;
    /// use sdk_host::CalloutResponse;
    /// for call in host.http_calls() {
    ///     host.respond_http_call(call.token, CalloutResponse::new(204))?;
    /// }
    /// # Ok::<(), Box<dyn std::error::Error>>(())
    /// ```
    pub fn new(status: u16) -> CalloutResponse {
        CalloutResponse {
            headers: HeaderMap::from_pairs([(":status", status.to_string())]),
            ..CalloutResponse::default()
        }
    }

    /// Adds a header.
    ///
    /// ```
    /// let answer = sdk_host::CalloutResponse::new(200).header("x-user", "alice");
    /// # let _ = answer;
    /// ```
    pub fn header(mut self, name: &str, value: &str) -> Self {
        self.headers.add(name, value);
        self
    }

    /// Sets the body.
    ///
    /// ```
    /// let answer = sdk_host::CalloutResponse::new(200).body(r#"{"allowed": true}"#);
    /// # let _ = answer;
    /// ```
    pub fn body(mut self, body: impl AsRef<[u8]>) -> Self {
        self.body = body.as_ref().to_vec();
        self
    }

    /// Adds a trailer.
    ///
    /// ```
    /// let answer = sdk_host::CalloutResponse::new(200).body("ok").trailer("x-checksum", "abc");
    /// # let _ = answer;
    /// ```
    pub fn trailer(mut self, name: &str, value: &str) -> Self {
        self.trailers.add(name, value);
        self
    }
}

/// Which direction of an HTTP stream.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Dir {
    Request,
    Response,
}

impl Dir {
    fn callbacks(self) -> (Callback, Callback, Callback) {
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

/// One Envoy-like VM running a guest, with its plugins and streams.
///
/// Every method that reaches the guest returns what the guest decided
/// and leaves the effects in the host for the test to read: the headers
/// after the filter ([`HttpView::request_headers`]), what went upstream
/// ([`HttpView::upstream`]), local responses, logs, metrics, callouts.
///
/// # Examples
///
/// ```no_run
/// use sdk_host::{Action, Host, WasmModule};
/// let module = WasmModule::from_file("filter.wasm")?;
/// let mut host = Host::builder().plugin_config("{}").start(&module)?;
/// let stream = host.new_http_stream()?;
/// let action = host.send_request_headers(stream, &[(":method", "GET"), (":path", "/")], true)?;
/// assert_eq!(action, Action::Continue);
/// assert!(host.http(stream)?.upstream().headers.is_some());
/// host.finish(stream)?;
/// # Ok::<(), Box<dyn std::error::Error>>(())
/// ```
pub struct Host {
    runtime: Box<dyn Runtime>,
    failed: Option<String>,
    next_context: u32,
}

impl std::fmt::Debug for Host {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        let state = self.runtime.state_ref();
        f.debug_struct("Host")
            .field("vm_id", &state.settings.vm_id)
            .field("root_contexts", &self.root_contexts())
            .field("http_streams", &state.http.len())
            .field("failed", &self.failed)
            .finish()
    }
}

impl Host {
    /// A builder with Envoy's defaults.
    ///
    /// ```
    /// # let wat = r#"(module (memory (export "memory") 1) (func (export "proxy_abi_version_0_2_1"))
    /// #   (func (export "malloc") (param i32) (result i32) (i32.const 1024)))"#;
    /// # let module = sdk_host::WasmModule::from_bytes("pass.wasm", &wat::parse_str(wat)?)?;
    /// let host = sdk_host::Host::builder().plugin_config("{}").start(&module)?;
    /// assert!(host.violations().is_empty());
    /// # Ok::<(), Box<dyn std::error::Error>>(())
    /// ```
    pub fn builder() -> HostBuilder {
        HostBuilder::default()
    }

    fn start(
        runtime: Box<dyn Runtime>,
        mut plugins: Vec<PluginSpec>,
        default_config: Vec<u8>,
        first_context: u32,
    ) -> Result<Host, Error> {
        let mut host = Host {
            runtime,
            failed: None,
            next_context: first_context,
        };
        if plugins.is_empty() {
            plugins.push(PluginSpec {
                name: "plugin".to_string(),
                root_id: String::new(),
                config: default_config,
            });
        }
        host.runtime.state().callback = Some(Callback::Initialize);
        let started = host.runtime.initialize();
        host.runtime.state().callback = None;
        started?;
        for spec in plugins {
            host.start_plugin(spec)?;
        }
        host.settle()?;
        Ok(host)
    }

    fn next_context_id(&mut self) -> u32 {
        let id = self.next_context;
        self.next_context += 1;
        id
    }

    fn start_plugin(&mut self, spec: PluginSpec) -> Result<(), Error> {
        let root = self.next_context_id();
        let name = spec.name.clone();
        {
            let state = self.runtime.state();
            state.contexts.insert(root, ContextKind::Root);
            state.plugins.push(Plugin {
                name: spec.name,
                root_id: spec.root_id,
                config: spec.config,
                context_id: root,
                tick_period_ms: 0,
                next_tick_nanos: None,
                done_pending: false,
                deleted: false,
            });
        }
        let logs_before = self.runtime.state_ref().logs.len();
        self.invoke(Callback::ContextCreate, root, &[root, 0])?;
        let vm_config_size = self.runtime.state_ref().settings.vm_config.len() as u32;
        let started = self.invoke(Callback::VmStart, root, &[root, vm_config_size])?;
        if started == Some(0) {
            return Err(self.rejected(Callback::VmStart, name, logs_before));
        }
        let config_size = self
            .runtime
            .state_ref()
            .plugin_of_root(root)
            .map_or(0, |p| p.config.len() as u32);
        let configured = self.invoke(Callback::Configure, root, &[root, config_size])?;
        if configured == Some(0) {
            return Err(self.rejected(Callback::Configure, name, logs_before));
        }
        Ok(())
    }

    fn rejected(&self, callback: Callback, plugin: String, logs_before: usize) -> Error {
        Error::Rejected {
            callback: callback.export_name(),
            plugin,
            logs: self.runtime.state_ref().logs[logs_before..].to_vec(),
        }
    }

    /// Calls one export in `context`, as Envoy does: the effective context
    /// is the callee's until the guest changes it, and is reset after.
    fn invoke(
        &mut self,
        callback: Callback,
        context: u32,
        args: &[u32],
    ) -> Result<Option<u32>, Error> {
        if let Some(reason) = &self.failed {
            return Err(Error::VmFailed(reason.clone()));
        }
        {
            let state = self.runtime.state();
            state.effective = context;
            state.callback = Some(callback);
        }
        let result = self.runtime.call(callback, args);
        let state = self.runtime.state();
        state.callback = None;
        state.callback_data = Default::default();
        state.effective = 0;
        match result {
            Ok(value) => Ok(value),
            Err(trap) => {
                self.failed = Some(trap.to_string());
                Err(Error::Trap(trap))
            }
        }
    }

    /// Runs what the guest's calls deferred until the VM call returned:
    /// resumed streams, local responses, queue notifications.
    fn settle(&mut self) -> Result<(), Error> {
        loop {
            let id = self.runtime.state_ref().id;
            let notices = take_queue_notices(&self.runtime.state_ref().proxy, id);
            let state = self.runtime.state();
            for (root, token) in notices {
                state.deferred.push(Deferred::QueueReady { root, token });
            }
            if state.deferred.is_empty() {
                return Ok(());
            }
            let next = state.deferred.remove(0);
            match next {
                Deferred::Continue(context, kind) => self.resume(context, kind)?,
                Deferred::LocalResponse(context) => self.local_response(context)?,
                Deferred::DeleteRoot(root) => self.delete_root(root)?,
                Deferred::QueueReady { root, token } => {
                    if self.runtime.state_ref().contexts.contains_key(&root) {
                        self.invoke(Callback::QueueReady, root, &[root, token])?;
                    }
                }
            }
        }
    }

    // --- HTTP streams -------------------------------------------------------

    /// Opens an HTTP stream on the first plugin: `proxy_on_context_create`.
    ///
    /// # Errors
    ///
    /// [`Error::Trap`] or [`Error::VmFailed`].
    ///
    /// ```
    /// # let wat = r#"(module (memory (export "memory") 1) (func (export "proxy_abi_version_0_2_1"))
    /// #   (func (export "malloc") (param i32) (result i32) (i32.const 1024)))"#;
    /// # let module = sdk_host::WasmModule::from_bytes("pass.wasm", &wat::parse_str(wat)?)?;
    /// let mut host = sdk_host::Host::builder().start(&module)?;
    /// let first = host.new_http_stream()?;
    /// let second = host.new_http_stream()?;
    /// assert_ne!(first, second);
    /// # Ok::<(), Box<dyn std::error::Error>>(())
    /// ```
    pub fn new_http_stream(&mut self) -> Result<ContextId, Error> {
        let root = self
            .runtime
            .state_ref()
            .plugins
            .first()
            .map(|p| p.context_id)
            .ok_or(Error::Usage("the host has no plugin".to_string()))?;
        self.new_http_stream_on(root)
    }

    /// Opens an HTTP stream on the plugin with this root context.
    ///
    /// # Errors
    ///
    /// As [`Host::new_http_stream`], and [`Error::NotFound`] for an unknown root.
    ///
    /// ```
    /// # let wat = r#"(module (memory (export "memory") 1) (func (export "proxy_abi_version_0_2_1"))
    /// #   (func (export "malloc") (param i32) (result i32) (i32.const 1024)))"#;
    /// # let module = sdk_host::WasmModule::from_bytes("pass.wasm", &wat::parse_str(wat)?)?;
    /// let mut host = sdk_host::Host::builder()
    ///     .plugin("a", "a_root", "")
    ///     .plugin("b", "b_root", "")
    ///     .start(&module)?;
    /// let roots = host.root_contexts();
    /// let on_b = host.new_http_stream_on(roots[1])?;
    /// host.send_request_headers(on_b, &[(":path", "/")], true)?;
    /// # Ok::<(), Box<dyn std::error::Error>>(())
    /// ```
    pub fn new_http_stream_on(&mut self, root: ContextId) -> Result<ContextId, Error> {
        if self.runtime.state_ref().plugin_of_root(root).is_none() {
            return Err(Error::NotFound {
                kind: "plugin root context",
                id: root,
            });
        }
        let id = self.next_context_id();
        let state = self.runtime.state();
        let started_nanos = state.monotonic_nanos;
        state.contexts.insert(id, ContextKind::Http);
        state.http.insert(
            id,
            HttpStream {
                root,
                started_nanos,
                ..HttpStream::default()
            },
        );
        self.invoke(Callback::ContextCreate, id, &[id, root])?;
        self.settle()?;
        Ok(id)
    }

    fn stream_mut(&mut self, id: ContextId) -> Result<&mut HttpStream, Error> {
        self.runtime
            .state()
            .http
            .get_mut(&id)
            .ok_or(Error::NotFound {
                kind: "HTTP stream",
                id,
            })
    }

    fn flow_mut(&mut self, id: ContextId, dir: Dir) -> Result<&mut crate::state::Flow, Error> {
        let stream = self.stream_mut(id)?;
        Ok(match dir {
            Dir::Request => &mut stream.request,
            Dir::Response => &mut stream.response,
        })
    }

    /// The client sends request headers: `proxy_on_request_headers`.
    /// Returns the filter's action; what it changed is in [`Host::http`].
    ///
    /// # Errors
    ///
    /// [`Error::Usage`] when the stream already had request headers or was
    /// answered; [`Error::Trap`] when the guest traps.
    ///
    /// ```
    /// # let wat = r#"(module (memory (export "memory") 1) (func (export "proxy_abi_version_0_2_1"))
    /// #   (func (export "malloc") (param i32) (result i32) (i32.const 1024)))"#;
    /// # let module = sdk_host::WasmModule::from_bytes("pass.wasm", &wat::parse_str(wat)?)?;
    /// use sdk_host::Action;
    /// let mut host = sdk_host::Host::builder().start(&module)?;
    /// let stream = host.new_http_stream()?;
    /// let action = host.send_request_headers(stream, &[(":method", "GET"), (":path", "/")], true)?;
    /// assert_eq!(action, Action::Continue);
    /// # Ok::<(), Box<dyn std::error::Error>>(())
    /// ```
    pub fn send_request_headers<K: AsRef<str>, V: AsRef<[u8]>>(
        &mut self,
        id: ContextId,
        headers: &[(K, V)],
        end_of_stream: bool,
    ) -> Result<Action, Error> {
        let headers = HeaderMap::from_pairs(headers.iter().map(|(k, v)| (k, v)));
        let action = self.deliver_headers(id, Dir::Request, headers, end_of_stream)?;
        self.settle()?;
        Ok(action)
    }

    /// The client sends a chunk of request body: `proxy_on_request_body`
    /// with the size of everything buffered so far. `None` when Envoy would
    /// not call the filter: its headers callback paused the stream, so the
    /// data waits until the filter resumes it.
    ///
    /// # Errors
    ///
    /// As [`Host::send_request_headers`].
    ///
    /// ```
    /// # let wat = r#"(module (memory (export "memory") 1) (func (export "proxy_abi_version_0_2_1"))
    /// #   (func (export "malloc") (param i32) (result i32) (i32.const 1024)))"#;
    /// # let module = sdk_host::WasmModule::from_bytes("pass.wasm", &wat::parse_str(wat)?)?;
    /// let mut host = sdk_host::Host::builder().start(&module)?;
    /// let stream = host.new_http_stream()?;
    /// host.send_request_headers(stream, &[(":method", "POST")], false)?;
    /// host.send_request_body(stream, "part 1, ", false)?;
    /// host.send_request_body(stream, "part 2", true)?;
    /// assert_eq!(host.http(stream)?.upstream().body, b"part 1, part 2");
    /// # Ok::<(), Box<dyn std::error::Error>>(())
    /// ```
    pub fn send_request_body(
        &mut self,
        id: ContextId,
        chunk: impl AsRef<[u8]>,
        end_of_stream: bool,
    ) -> Result<Option<Action>, Error> {
        let action = self.deliver_body(id, Dir::Request, chunk.as_ref(), end_of_stream)?;
        self.settle()?;
        Ok(action)
    }

    /// The client sends request trailers: `proxy_on_request_trailers`
    /// (`None` when the stream is paused, as for bodies).
    ///
    /// # Errors
    ///
    /// As [`Host::send_request_headers`].
    ///
    /// ```
    /// # let wat = r#"(module (memory (export "memory") 1) (func (export "proxy_abi_version_0_2_1"))
    /// #   (func (export "malloc") (param i32) (result i32) (i32.const 1024)))"#;
    /// # let module = sdk_host::WasmModule::from_bytes("pass.wasm", &wat::parse_str(wat)?)?;
    /// let mut host = sdk_host::Host::builder().start(&module)?;
    /// let stream = host.new_http_stream()?;
    /// host.send_request_headers(stream, &[(":method", "POST")], false)?;
    /// host.send_request_body(stream, "data", false)?;
    /// host.send_request_trailers(stream, &[("grpc-status", "0")])?;
    /// assert!(host.http(stream)?.upstream().complete);
    /// # Ok::<(), Box<dyn std::error::Error>>(())
    /// ```
    pub fn send_request_trailers<K: AsRef<str>, V: AsRef<[u8]>>(
        &mut self,
        id: ContextId,
        trailers: &[(K, V)],
    ) -> Result<Option<Action>, Error> {
        let trailers = HeaderMap::from_pairs(trailers.iter().map(|(k, v)| (k, v)));
        let action = self.deliver_trailers(id, Dir::Request, trailers)?;
        self.settle()?;
        Ok(action)
    }

    /// The upstream answers with response headers: `proxy_on_response_headers`.
    ///
    /// # Errors
    ///
    /// [`Error::Usage`] when the request never reached the upstream (it is
    /// paused or was answered locally) or response headers came already.
    ///
    /// ```
    /// # let wat = r#"(module (memory (export "memory") 1) (func (export "proxy_abi_version_0_2_1"))
    /// #   (func (export "malloc") (param i32) (result i32) (i32.const 1024)))"#;
    /// # let module = sdk_host::WasmModule::from_bytes("pass.wasm", &wat::parse_str(wat)?)?;
    /// let mut host = sdk_host::Host::builder().start(&module)?;
    /// let stream = host.new_http_stream()?;
    /// host.send_request_headers(stream, &[(":path", "/")], true)?;
    /// host.send_response_headers(stream, &[(":status", "200"), ("x-upstream", "v1")], true)?;
    /// let got = host.http(stream)?.downstream().headers.clone();
    /// assert_eq!(got.and_then(|h| h.get("x-upstream").map(str::to_owned)).as_deref(), Some("v1"));
    /// # Ok::<(), Box<dyn std::error::Error>>(())
    /// ```
    pub fn send_response_headers<K: AsRef<str>, V: AsRef<[u8]>>(
        &mut self,
        id: ContextId,
        headers: &[(K, V)],
        end_of_stream: bool,
    ) -> Result<Action, Error> {
        let stream = self.stream_mut(id)?;
        if stream.request.forwarded.headers.is_none() {
            return Err(Error::Usage(format!(
                "stream {id}: the upstream cannot answer a request whose headers never reached it"
            )));
        }
        if stream.local_response.is_some() {
            return Err(Error::Usage(format!(
                "stream {id} was answered with a local response"
            )));
        }
        let headers = HeaderMap::from_pairs(headers.iter().map(|(k, v)| (k, v)));
        let action = self.deliver_headers(id, Dir::Response, headers, end_of_stream)?;
        self.settle()?;
        Ok(action)
    }

    /// The upstream sends response body: `proxy_on_response_body`.
    ///
    /// # Errors
    ///
    /// As [`Host::send_response_headers`].
    ///
    /// ```
    /// # let wat = r#"(module (memory (export "memory") 1) (func (export "proxy_abi_version_0_2_1"))
    /// #   (func (export "malloc") (param i32) (result i32) (i32.const 1024)))"#;
    /// # let module = sdk_host::WasmModule::from_bytes("pass.wasm", &wat::parse_str(wat)?)?;
    /// let mut host = sdk_host::Host::builder().start(&module)?;
    /// let stream = host.new_http_stream()?;
    /// host.send_request_headers(stream, &[(":path", "/")], true)?;
    /// host.send_response_headers(stream, &[(":status", "200")], false)?;
    /// host.send_response_body(stream, "hello", true)?;
    /// assert_eq!(host.http(stream)?.downstream().body, b"hello");
    /// # Ok::<(), Box<dyn std::error::Error>>(())
    /// ```
    pub fn send_response_body(
        &mut self,
        id: ContextId,
        chunk: impl AsRef<[u8]>,
        end_of_stream: bool,
    ) -> Result<Option<Action>, Error> {
        let action = self.deliver_body(id, Dir::Response, chunk.as_ref(), end_of_stream)?;
        self.settle()?;
        Ok(action)
    }

    /// The upstream sends response trailers: `proxy_on_response_trailers`.
    ///
    /// # Errors
    ///
    /// As [`Host::send_response_headers`].
    ///
    /// ```
    /// # let wat = r#"(module (memory (export "memory") 1) (func (export "proxy_abi_version_0_2_1"))
    /// #   (func (export "malloc") (param i32) (result i32) (i32.const 1024)))"#;
    /// # let module = sdk_host::WasmModule::from_bytes("pass.wasm", &wat::parse_str(wat)?)?;
    /// let mut host = sdk_host::Host::builder().start(&module)?;
    /// let stream = host.new_http_stream()?;
    /// host.send_request_headers(stream, &[(":path", "/")], true)?;
    /// host.send_response_headers(stream, &[(":status", "200")], false)?;
    /// host.send_response_trailers(stream, &[("grpc-status", "0")])?;
    /// assert!(host.http(stream)?.downstream().complete);
    /// # Ok::<(), Box<dyn std::error::Error>>(())
    /// ```
    pub fn send_response_trailers<K: AsRef<str>, V: AsRef<[u8]>>(
        &mut self,
        id: ContextId,
        trailers: &[(K, V)],
    ) -> Result<Option<Action>, Error> {
        let trailers = HeaderMap::from_pairs(trailers.iter().map(|(k, v)| (k, v)));
        let action = self.deliver_trailers(id, Dir::Response, trailers)?;
        self.settle()?;
        Ok(action)
    }

    fn deliver_headers(
        &mut self,
        id: ContextId,
        dir: Dir,
        headers: HeaderMap,
        end_of_stream: bool,
    ) -> Result<Action, Error> {
        let count = headers.len() as u32;
        let flow = self.flow_mut(id, dir)?;
        if flow.state != FlowState::Idle {
            return Err(Error::Usage(format!(
                "stream {id}: {dir:?} headers were already sent"
            )));
        }
        flow.headers = Some(headers);
        flow.headers_visible = true;
        flow.end_of_stream = end_of_stream;
        flow.state = FlowState::Open;
        let (on_headers, _, _) = dir.callbacks();
        let action = self
            .invoke(on_headers, id, &[id, count, u32::from(end_of_stream)])?
            .map_or(Action::Continue, Action::from_u32);
        if self.answered_locally(id, dir)? {
            return Ok(action);
        }
        // Envoy maps a paused headers callback to StopAllIteration: body
        // and trailers wait too. `2` (ContinueAndEndStream) goes on.
        match action {
            Action::Continue | Action::Other(2) => {
                self.flow_mut(id, dir)?.headers_visible = false;
                self.forward_headers(id, dir)?;
            }
            _ => self.flow_mut(id, dir)?.state = FlowState::HeadersStopped,
        }
        Ok(action)
    }

    /// Whether the request direction ended in a local response, which
    /// stops it from going anywhere.
    fn answered_locally(&mut self, id: ContextId, dir: Dir) -> Result<bool, Error> {
        let stream = self.stream_mut(id)?;
        if dir == Dir::Request && stream.local_response.is_some() {
            stream.request.state = FlowState::Done;
            return Ok(true);
        }
        Ok(stream.reset.is_some())
    }

    fn forward_headers(&mut self, id: ContextId, dir: Dir) -> Result<(), Error> {
        let flow = self.flow_mut(id, dir)?;
        flow.forwarded.headers = flow.headers.clone();
        flow.state = FlowState::Open;
        if flow.end_of_stream && flow.body.is_empty() && flow.trailers.is_none() {
            flow.forwarded.complete = true;
            flow.state = FlowState::Done;
        }
        Ok(())
    }

    fn forward_body(&mut self, id: ContextId, dir: Dir) -> Result<(), Error> {
        let flow = self.flow_mut(id, dir)?;
        let body = std::mem::take(&mut flow.body);
        flow.forwarded.body.extend(body);
        flow.state = FlowState::Open;
        if flow.end_of_stream && flow.trailers.is_none() {
            flow.forwarded.complete = true;
            flow.state = FlowState::Done;
            self.check_content_length(id, dir)?;
        }
        Ok(())
    }

    fn forward_trailers(&mut self, id: ContextId, dir: Dir) -> Result<(), Error> {
        self.forward_body(id, dir)?;
        let flow = self.flow_mut(id, dir)?;
        flow.forwarded.trailers = flow.trailers.clone();
        flow.forwarded.complete = true;
        flow.state = FlowState::Done;
        self.check_content_length(id, dir)
    }

    /// Envoy forwards `content-length` as the filter left it, whatever the
    /// body became: a filter that resizes a body must remove the header in
    /// its headers callback, or the peer reads the wrong number of bytes.
    fn check_content_length(&mut self, id: ContextId, dir: Dir) -> Result<(), Error> {
        let flow = self.flow_mut(id, dir)?;
        let sent = flow.forwarded.body.len();
        let Some(declared) = flow
            .forwarded
            .headers
            .as_ref()
            .and_then(|h| h.get("content-length"))
            .and_then(|v| v.trim().parse::<usize>().ok())
        else {
            return Ok(());
        };
        if declared == sent {
            return Ok(());
        }
        let (what, peer) = match dir {
            Dir::Request => ("request", "upstream"),
            Dir::Response => ("response", "client"),
        };
        let outcome = if sent > declared {
            format!("reads the first {declared} and drops the rest")
        } else {
            "waits for the missing bytes until a timeout".to_string()
        };
        let state = self.runtime.state();
        state.violations.push(Violation {
            context_id: id,
            callback: None,
            call: "content-length",
            message: format!(
                "the {what} body left the filter with {sent} bytes but content-length says \
                 {declared}; Envoy forwards the header as it is, so the {peer} {outcome} \
                 (remove content-length in the headers callback when changing the body's size)"
            ),
        });
        Ok(())
    }

    fn check_can_send(&mut self, id: ContextId, dir: Dir, what: &str) -> Result<(), Error> {
        let flow = self.flow_mut(id, dir)?;
        if flow.state == FlowState::Idle {
            return Err(Error::Usage(format!(
                "stream {id}: {dir:?} {what} before {dir:?} headers"
            )));
        }
        if flow.end_of_stream {
            return Err(Error::Usage(format!(
                "stream {id}: {dir:?} {what} after the end of stream"
            )));
        }
        Ok(())
    }

    fn deliver_body(
        &mut self,
        id: ContextId,
        dir: Dir,
        chunk: &[u8],
        end_of_stream: bool,
    ) -> Result<Option<Action>, Error> {
        self.check_can_send(id, dir, "body")?;
        let flow = self.flow_mut(id, dir)?;
        flow.body.extend_from_slice(chunk);
        flow.end_of_stream = end_of_stream;
        match flow.state {
            FlowState::HeadersStopped => {
                flow.body_waiting = true;
                Ok(None)
            }
            FlowState::Done => Ok(None),
            _ => self.call_body(id, dir).map(Some),
        }
    }

    /// `proxy_on_*_body` with everything buffered, then forwards or keeps buffering.
    fn call_body(&mut self, id: ContextId, dir: Dir) -> Result<Action, Error> {
        let flow = self.flow_mut(id, dir)?;
        let size = flow.body.len() as u32;
        let end = flow.end_of_stream && flow.trailers.is_none();
        let (_, on_body, _) = dir.callbacks();
        let action = self
            .invoke(on_body, id, &[id, size, u32::from(end)])?
            .map_or(Action::Continue, Action::from_u32);
        if self.answered_locally(id, dir)? {
            return Ok(action);
        }
        match action {
            // Trailers the filter added in the last body callback go too.
            Action::Continue if end && self.flow_mut(id, dir)?.trailers.is_some() => {
                self.forward_trailers(id, dir)?;
            }
            Action::Continue => self.forward_body(id, dir)?,
            _ => self.flow_mut(id, dir)?.state = FlowState::BodyStopped,
        }
        Ok(action)
    }

    fn deliver_trailers(
        &mut self,
        id: ContextId,
        dir: Dir,
        trailers: HeaderMap,
    ) -> Result<Option<Action>, Error> {
        self.check_can_send(id, dir, "trailers")?;
        let flow = self.flow_mut(id, dir)?;
        flow.trailers = Some(trailers);
        flow.end_of_stream = true;
        match flow.state {
            FlowState::HeadersStopped => {
                flow.trailers_waiting = true;
                Ok(None)
            }
            FlowState::Done => Ok(None),
            _ => self.call_trailers(id, dir).map(Some),
        }
    }

    fn call_trailers(&mut self, id: ContextId, dir: Dir) -> Result<Action, Error> {
        let count = self
            .flow_mut(id, dir)?
            .trailers
            .as_ref()
            .map_or(0, HeaderMap::len) as u32;
        self.flow_mut(id, dir)?.trailers_visible = true;
        let (_, _, on_trailers) = dir.callbacks();
        let action = self
            .invoke(on_trailers, id, &[id, count])?
            .map_or(Action::Continue, Action::from_u32);
        if self.answered_locally(id, dir)? {
            return Ok(action);
        }
        match action {
            Action::Continue => {
                self.flow_mut(id, dir)?.trailers_visible = false;
                self.forward_trailers(id, dir)?;
            }
            _ => self.flow_mut(id, dir)?.state = FlowState::TrailersStopped,
        }
        Ok(action)
    }

    /// `proxy_continue_stream`, run once the VM call that asked returned.
    fn resume(&mut self, id: ContextId, kind: StreamType) -> Result<(), Error> {
        let dir = match kind {
            StreamType::HttpRequest => Dir::Request,
            StreamType::HttpResponse => Dir::Response,
            StreamType::Downstream | StreamType::Upstream => {
                return self.resume_tcp(id, kind);
            }
        };
        let Ok(flow) = self.flow_mut(id, dir) else {
            return Ok(());
        };
        match flow.state {
            FlowState::HeadersStopped => {
                let (body_waiting, trailers_waiting) = (flow.body_waiting, flow.trailers_waiting);
                flow.body_waiting = false;
                flow.trailers_waiting = false;
                flow.forwarded.headers = flow.headers.clone();
                flow.state = FlowState::Open;
                if body_waiting {
                    // Envoy hands the filter everything that waited, at once.
                    self.call_body(id, dir)?;
                }
                let state = self.flow_mut(id, dir)?.state;
                if trailers_waiting && state == FlowState::Open {
                    self.call_trailers(id, dir)?;
                } else if !body_waiting && !trailers_waiting {
                    self.forward_headers(id, dir)?;
                }
            }
            FlowState::BodyStopped => self.forward_body(id, dir)?,
            FlowState::TrailersStopped => self.forward_trailers(id, dir)?,
            _ => {}
        }
        Ok(())
    }

    /// Sends a local response the way Envoy's `sendLocalReply` does: the
    /// request goes no further, and the response runs through the
    /// filter's own response callbacks.
    fn local_response(&mut self, id: ContextId) -> Result<(), Error> {
        let stream = self.stream_mut(id)?;
        let Some(response) = stream.local_response.clone() else {
            return Ok(());
        };
        stream.request.state = FlowState::Done;
        if stream.response.forwarded.headers.is_some() {
            stream.reset = Some("local response after the response started".to_string());
            stream.response.state = FlowState::Done;
            return Ok(());
        }
        stream.response = Default::default();
        let headers = local_response_headers(&response);
        let has_body = !response.body.is_empty();
        self.deliver_headers(id, Dir::Response, headers, !has_body)?;
        if has_body && self.flow_mut(id, Dir::Response)?.state != FlowState::Done {
            self.deliver_body(id, Dir::Response, &response.body, true)?;
        }
        Ok(())
    }

    /// Ends the stream as Envoy does when it completes or is reset. For
    /// HTTP that is `proxy_on_log` (the access log runs first), then
    /// `proxy_on_done` and `proxy_on_delete`; for TCP `proxy_on_done`,
    /// `proxy_on_log`, `proxy_on_delete`.
    ///
    /// # Errors
    ///
    /// [`Error::Trap`], or [`Error::NotFound`] for an unknown stream.
    ///
    /// ```
    /// # let wat = r#"(module (memory (export "memory") 1) (func (export "proxy_abi_version_0_2_1"))
    /// #   (func (export "malloc") (param i32) (result i32) (i32.const 1024)))"#;
    /// # let module = sdk_host::WasmModule::from_bytes("pass.wasm", &wat::parse_str(wat)?)?;
    /// let mut host = sdk_host::Host::builder().start(&module)?;
    /// let stream = host.new_http_stream()?;
    /// host.send_request_headers(stream, &[(":path", "/")], true)?;
    /// host.finish(stream)?; // on_log, on_done, on_delete
    /// assert!(host.http(stream)?.finished());
    /// # Ok::<(), Box<dyn std::error::Error>>(())
    /// ```
    pub fn finish(&mut self, id: ContextId) -> Result<(), Error> {
        let kind = self.runtime.state_ref().contexts.get(&id).copied();
        match kind {
            Some(ContextKind::Http) => {
                let stream = self.stream_mut(id)?;
                if stream.finished {
                    return Ok(());
                }
            }
            Some(ContextKind::Tcp) => {
                if self
                    .runtime
                    .state_ref()
                    .tcp
                    .get(&id)
                    .is_some_and(|s| s.finished)
                {
                    return Ok(());
                }
            }
            _ => return Err(Error::NotFound { kind: "stream", id }),
        }
        let order = if kind == Some(ContextKind::Http) {
            [Callback::Log, Callback::Done, Callback::Delete]
        } else {
            [Callback::Done, Callback::Log, Callback::Delete]
        };
        for callback in order {
            self.invoke(callback, id, &[id])?;
        }
        let state = self.runtime.state();
        if let Some(stream) = state.http.get_mut(&id) {
            stream.finished = true;
        }
        if let Some(stream) = state.tcp.get_mut(&id) {
            stream.finished = true;
        }
        self.settle()
    }

    /// What a test can read about an HTTP stream.
    ///
    /// # Errors
    ///
    /// [`Error::NotFound`] for an unknown stream.
    ///
    /// ```
    /// # let wat = r#"(module (memory (export "memory") 1) (func (export "proxy_abi_version_0_2_1"))
    /// #   (func (export "malloc") (param i32) (result i32) (i32.const 1024)))"#;
    /// # let module = sdk_host::WasmModule::from_bytes("pass.wasm", &wat::parse_str(wat)?)?;
    /// let mut host = sdk_host::Host::builder().start(&module)?;
    /// let stream = host.new_http_stream()?;
    /// host.send_request_headers(stream, &[(":path", "/a")], true)?;
    /// let view = host.http(stream)?;
    /// assert_eq!(view.request_headers().and_then(|h| h.get(":path")), Some("/a"));
    /// # Ok::<(), Box<dyn std::error::Error>>(())
    /// ```
    pub fn http(&self, id: ContextId) -> Result<HttpView<'_>, Error> {
        self.runtime
            .state_ref()
            .http
            .get(&id)
            .map(|stream| HttpView { stream })
            .ok_or(Error::NotFound {
                kind: "HTTP stream",
                id,
            })
    }

    // --- TCP streams ----------------------------------------------------------

    /// Opens a TCP connection on the first plugin: `proxy_on_context_create`
    /// and `proxy_on_new_connection`.
    ///
    /// # Errors
    ///
    /// [`Error::Trap`] or [`Error::VmFailed`].
    ///
    /// ```
    /// # let wat = r#"(module (memory (export "memory") 1) (func (export "proxy_abi_version_0_2_1"))
    /// #   (func (export "malloc") (param i32) (result i32) (i32.const 1024)))"#;
    /// # let module = sdk_host::WasmModule::from_bytes("pass.wasm", &wat::parse_str(wat)?)?;
    /// let mut host = sdk_host::Host::builder().start(&module)?;
    /// let (connection, action) = host.new_tcp_stream()?;
    /// assert_eq!(action, sdk_host::Action::Continue);
    /// host.send_downstream_data(connection, "PING\r\n", false)?;
    /// # Ok::<(), Box<dyn std::error::Error>>(())
    /// ```
    pub fn new_tcp_stream(&mut self) -> Result<(ContextId, Action), Error> {
        let root = self
            .runtime
            .state_ref()
            .plugins
            .first()
            .map(|p| p.context_id)
            .ok_or(Error::Usage("the host has no plugin".to_string()))?;
        let id = self.next_context_id();
        let state = self.runtime.state();
        state.contexts.insert(id, ContextKind::Tcp);
        state.tcp.insert(
            id,
            TcpStream {
                root,
                ..TcpStream::default()
            },
        );
        self.invoke(Callback::ContextCreate, id, &[id, root])?;
        let action = self
            .invoke(Callback::NewConnection, id, &[id])?
            .map_or(Action::Continue, Action::from_u32);
        self.settle()?;
        Ok((id, action))
    }

    /// Data from the client: `proxy_on_downstream_data` with all data
    /// buffered so far. On `Continue` it goes upstream.
    ///
    /// # Errors
    ///
    /// [`Error::NotFound`], [`Error::Trap`].
    ///
    /// ```
    /// # let wat = r#"(module (memory (export "memory") 1) (func (export "proxy_abi_version_0_2_1"))
    /// #   (func (export "malloc") (param i32) (result i32) (i32.const 1024)))"#;
    /// # let module = sdk_host::WasmModule::from_bytes("pass.wasm", &wat::parse_str(wat)?)?;
    /// let mut host = sdk_host::Host::builder().start(&module)?;
    /// let (connection, _) = host.new_tcp_stream()?;
    /// host.send_downstream_data(connection, "PING\r\n", false)?;
    /// assert_eq!(host.tcp(connection)?.to_upstream(), b"PING\r\n");
    /// # Ok::<(), Box<dyn std::error::Error>>(())
    /// ```
    pub fn send_downstream_data(
        &mut self,
        id: ContextId,
        data: impl AsRef<[u8]>,
        end_of_stream: bool,
    ) -> Result<Action, Error> {
        self.tcp_data(id, true, data.as_ref(), end_of_stream)
    }

    /// Data from the server: `proxy_on_upstream_data`. On `Continue` it goes downstream.
    ///
    /// # Errors
    ///
    /// [`Error::NotFound`], [`Error::Trap`].
    ///
    /// ```
    /// # let wat = r#"(module (memory (export "memory") 1) (func (export "proxy_abi_version_0_2_1"))
    /// #   (func (export "malloc") (param i32) (result i32) (i32.const 1024)))"#;
    /// # let module = sdk_host::WasmModule::from_bytes("pass.wasm", &wat::parse_str(wat)?)?;
    /// let mut host = sdk_host::Host::builder().start(&module)?;
    /// let (connection, _) = host.new_tcp_stream()?;
    /// host.send_upstream_data(connection, "PONG\r\n", false)?;
    /// assert_eq!(host.tcp(connection)?.to_downstream(), b"PONG\r\n");
    /// # Ok::<(), Box<dyn std::error::Error>>(())
    /// ```
    pub fn send_upstream_data(
        &mut self,
        id: ContextId,
        data: impl AsRef<[u8]>,
        end_of_stream: bool,
    ) -> Result<Action, Error> {
        self.tcp_data(id, false, data.as_ref(), end_of_stream)
    }

    fn tcp_data(
        &mut self,
        id: ContextId,
        downstream: bool,
        data: &[u8],
        end_of_stream: bool,
    ) -> Result<Action, Error> {
        let stream = self
            .runtime
            .state()
            .tcp
            .get_mut(&id)
            .ok_or(Error::NotFound {
                kind: "TCP stream",
                id,
            })?;
        let buffer = if downstream {
            &mut stream.downstream
        } else {
            &mut stream.upstream
        };
        buffer.extend_from_slice(data);
        let size = buffer.len() as u32;
        let callback = if downstream {
            Callback::DownstreamData
        } else {
            Callback::UpstreamData
        };
        let action = self
            .invoke(callback, id, &[id, size, u32::from(end_of_stream)])?
            .map_or(Action::Continue, Action::from_u32);
        if action == Action::Continue
            && let Some(stream) = self.runtime.state().tcp.get_mut(&id)
        {
            stream.flush(downstream);
        }
        self.settle()?;
        Ok(action)
    }

    fn resume_tcp(&mut self, id: ContextId, kind: StreamType) -> Result<(), Error> {
        if let Some(stream) = self.runtime.state().tcp.get_mut(&id) {
            stream.flush(kind == StreamType::Downstream);
        }
        Ok(())
    }

    /// A peer closes the connection: `proxy_on_downstream_connection_close`
    /// or `proxy_on_upstream_connection_close`.
    ///
    /// # Errors
    ///
    /// [`Error::NotFound`], [`Error::Trap`].
    ///
    /// ```
    /// # let wat = r#"(module (memory (export "memory") 1) (func (export "proxy_abi_version_0_2_1"))
    /// #   (func (export "malloc") (param i32) (result i32) (i32.const 1024)))"#;
    /// # let module = sdk_host::WasmModule::from_bytes("pass.wasm", &wat::parse_str(wat)?)?;
    /// use sdk_host::PeerType;
    /// let mut host = sdk_host::Host::builder().start(&module)?;
    /// let (connection, _) = host.new_tcp_stream()?;
    /// host.close_tcp(connection, true, PeerType::Remote)?;
    /// # Ok::<(), Box<dyn std::error::Error>>(())
    /// ```
    pub fn close_tcp(
        &mut self,
        id: ContextId,
        downstream: bool,
        peer: PeerType,
    ) -> Result<(), Error> {
        if !self.runtime.state_ref().tcp.contains_key(&id) {
            return Err(Error::NotFound {
                kind: "TCP stream",
                id,
            });
        }
        let callback = if downstream {
            Callback::DownstreamConnectionClose
        } else {
            Callback::UpstreamConnectionClose
        };
        self.invoke(callback, id, &[id, peer as u32])?;
        self.settle()
    }

    /// What a test can read about a TCP stream.
    ///
    /// # Errors
    ///
    /// [`Error::NotFound`] for an unknown stream.
    ///
    /// ```
    /// # let wat = r#"(module (memory (export "memory") 1) (func (export "proxy_abi_version_0_2_1"))
    /// #   (func (export "malloc") (param i32) (result i32) (i32.const 1024)))"#;
    /// # let module = sdk_host::WasmModule::from_bytes("pass.wasm", &wat::parse_str(wat)?)?;
    /// let mut host = sdk_host::Host::builder().start(&module)?;
    /// let (connection, _) = host.new_tcp_stream()?;
    /// assert!(host.tcp(connection)?.to_upstream().is_empty());
    /// # Ok::<(), Box<dyn std::error::Error>>(())
    /// ```
    pub fn tcp(&self, id: ContextId) -> Result<TcpView<'_>, Error> {
        self.runtime
            .state_ref()
            .tcp
            .get(&id)
            .map(|stream| TcpView { stream })
            .ok_or(Error::NotFound {
                kind: "TCP stream",
                id,
            })
    }

    // --- time ------------------------------------------------------------------

    /// Moves the clock forward, firing every tick, callout timeout and gRPC
    /// timeout that falls due, each at its own time and in time order.
    ///
    /// # Errors
    ///
    /// [`Error::Trap`] from a callback.
    ///
    /// ```
    /// # let wat = r#"(module (memory (export "memory") 1) (func (export "proxy_abi_version_0_2_1"))
    /// #   (func (export "malloc") (param i32) (result i32) (i32.const 1024)))"#;
    /// # let module = sdk_host::WasmModule::from_bytes("pass.wasm", &wat::parse_str(wat)?)?;
    /// use std::time::Duration;
    /// let mut host = sdk_host::Host::builder().start(&module)?;
    /// host.advance(Duration::from_secs(2))?; // fires ticks and timeouts due meanwhile
    /// assert_eq!(host.elapsed(), Duration::from_secs(2));
    /// # Ok::<(), Box<dyn std::error::Error>>(())
    /// ```
    pub fn advance(&mut self, by: Duration) -> Result<(), Error> {
        let target = self
            .runtime
            .state_ref()
            .monotonic_nanos
            .saturating_add(by.as_nanos().min(u128::from(u64::MAX)) as u64);
        while let Some((due, event)) = self.next_event(target) {
            self.runtime.state().monotonic_nanos = due;
            match event {
                Timer::Tick(root) => {
                    let state = self.runtime.state();
                    if let Some(plugin) = state.plugin_of_root_mut(root) {
                        plugin.next_tick_nanos =
                            Some(due.saturating_add(u64::from(plugin.tick_period_ms) * 1_000_000));
                    }
                    self.invoke(Callback::Tick, root, &[root])?;
                }
                Timer::HttpTimeout(token) => self.http_call_timed_out(token)?,
                Timer::GrpcTimeout(token) => {
                    self.grpc_close(token, 4, "deadline exceeded")?;
                }
            }
            self.settle()?;
        }
        self.runtime.state().monotonic_nanos = target;
        Ok(())
    }

    fn next_event(&self, limit: u64) -> Option<(u64, Timer)> {
        let state = self.runtime.state_ref();
        let ticks = state.plugins.iter().filter(|p| !p.deleted).filter_map(|p| {
            p.next_tick_nanos
                .map(|due| (due, Timer::Tick(p.context_id)))
        });
        let http = state
            .http_calls
            .values()
            .filter(|c| c.timeout_ms > 0)
            .map(|c| {
                (
                    c.sent_nanos + u64::from(c.timeout_ms) * 1_000_000,
                    Timer::HttpTimeout(c.token),
                )
            });
        let grpc = state
            .grpc_calls
            .values()
            .filter(|c| !c.streaming && c.timeout_ms > 0)
            .map(|c| {
                (
                    c.sent_nanos + u64::from(c.timeout_ms) * 1_000_000,
                    Timer::GrpcTimeout(c.token),
                )
            });
        ticks
            .chain(http)
            .chain(grpc)
            .filter(|(due, _)| *due <= limit)
            .min_by_key(|(due, _)| *due)
    }

    /// How long until the next tick, callout timeout or gRPC timeout falls
    /// due, if any is set: advancing by it fires exactly that event.
    ///
    /// ```no_run
    /// # use sdk_host::{Host, WasmModule};
    /// # let module = WasmModule::from_file("filter.wasm")?;
    /// let mut host = Host::builder().start(&module)?;
    /// // Let the filter's timers run until none is left within a minute.
    /// while let Some(due) = host.next_timer().filter(|d| d.as_secs() < 60) {
    ///     host.advance(due)?;
    /// }
    /// # Ok::<(), Box<dyn std::error::Error>>(())
    /// ```
    pub fn next_timer(&self) -> Option<Duration> {
        let now = self.runtime.state_ref().monotonic_nanos;
        self.next_event(u64::MAX)
            .map(|(due, _)| Duration::from_nanos(due.saturating_sub(now)))
    }

    /// Time since the host started, on its monotonic clock.
    ///
    /// ```
    /// # let wat = r#"(module (memory (export "memory") 1) (func (export "proxy_abi_version_0_2_1"))
    /// #   (func (export "malloc") (param i32) (result i32) (i32.const 1024)))"#;
    /// # let module = sdk_host::WasmModule::from_bytes("pass.wasm", &wat::parse_str(wat)?)?;
    /// use std::time::Duration;
    /// let mut host = sdk_host::Host::builder().start(&module)?;
    /// host.advance(Duration::from_millis(150))?;
    /// assert_eq!(host.elapsed(), Duration::from_millis(150));
    /// # Ok::<(), Box<dyn std::error::Error>>(())
    /// ```
    pub fn elapsed(&self) -> Duration {
        Duration::from_nanos(self.runtime.state_ref().monotonic_nanos)
    }

    /// The tick period a plugin set, if any.
    ///
    /// ```
    /// # let wat = r#"(module (memory (export "memory") 1) (func (export "proxy_abi_version_0_2_1"))
    /// #   (func (export "malloc") (param i32) (result i32) (i32.const 1024)))"#;
    /// # let module = sdk_host::WasmModule::from_bytes("pass.wasm", &wat::parse_str(wat)?)?;
    /// let host = sdk_host::Host::builder().start(&module)?;
    /// // This module never calls proxy_set_tick_period_milliseconds.
    /// assert_eq!(host.tick_period(host.root_contexts()[0]), None);
    /// # Ok::<(), Box<dyn std::error::Error>>(())
    /// ```
    pub fn tick_period(&self, root: ContextId) -> Option<Duration> {
        self.runtime
            .state_ref()
            .plugin_of_root(root)
            .filter(|p| p.tick_period_ms > 0)
            .map(|p| Duration::from_millis(u64::from(p.tick_period_ms)))
    }

    // --- callouts -----------------------------------------------------------

    /// HTTP callouts waiting for an answer, oldest first.
    ///
    /// ```no_run
    /// # let module = sdk_host::WasmModule::from_file("filter.wasm")?;
    /// let mut host = sdk_host::Host::builder().cluster("auth").start(&module)?;
    /// let stream = host.new_http_stream()?;
    /// host.send_request_headers(stream, &[(":path", "/")], true)?;
    /// let calls = host.http_calls();
    /// assert_eq!(calls[0].upstream, "auth");
    /// # Ok::<(), Box<dyn std::error::Error>>(())
    /// ```
    pub fn http_calls(&self) -> Vec<HttpCall> {
        self.runtime
            .state_ref()
            .http_calls
            .values()
            .cloned()
            .collect()
    }

    /// Answers a callout: `proxy_on_http_call_response`. Envoy runs callouts
    /// on the root context, so that is the context the guest is called in,
    /// even when a stream made the call.
    ///
    /// # Errors
    ///
    /// [`Error::NotFound`] for an unknown token, [`Error::Trap`].
    ///
    /// ```no_run
    /// # let module = sdk_host::WasmModule::from_file("filter.wasm")?;
    /// use sdk_host::CalloutResponse;
    /// let mut host = sdk_host::Host::builder().cluster("auth").start(&module)?;
    /// let stream = host.new_http_stream()?;
    /// host.send_request_headers(stream, &[(":path", "/")], true)?;
    /// let token = host.http_calls()[0].token;
    /// host.respond_http_call(token, CalloutResponse::new(200).body("allowed"))?;
    /// assert!(host.http(stream)?.upstream().complete);
    /// # Ok::<(), Box<dyn std::error::Error>>(())
    /// ```
    pub fn respond_http_call(
        &mut self,
        token: u32,
        response: CalloutResponse,
    ) -> Result<(), Error> {
        let call = self
            .runtime
            .state()
            .http_calls
            .remove(&token)
            .ok_or(Error::NotFound {
                kind: "HTTP callout",
                id: token,
            })?;
        let root = self.root_of_call(call.context_id);
        let args = [
            root,
            token,
            response.headers.len() as u32,
            response.body.len() as u32,
            response.trailers.len() as u32,
        ];
        let data = &mut self.runtime.state().callback_data;
        data.call_headers = Some(response.headers);
        data.call_body = Some(response.body);
        data.call_trailers = Some(response.trailers);
        self.invoke(Callback::HttpCallResponse, root, &args)?;
        self.settle()
    }

    /// Fails a callout as a reset does in Envoy: the guest gets a response
    /// with no headers, and `proxy_get_status` says (11, "reset").
    ///
    /// # Errors
    ///
    /// As [`Host::respond_http_call`].
    ///
    /// ```no_run
    /// # let module = sdk_host::WasmModule::from_file("filter.wasm")?;
    /// # let mut host = sdk_host::Host::builder().start(&module)?;
    /// // The connection to the cluster was reset: the guest gets (0, 0, 0).
    /// let token = host.http_calls()[0].token;
    /// host.fail_http_call(token)?;
    /// # Ok::<(), Box<dyn std::error::Error>>(())
    /// ```
    pub fn fail_http_call(&mut self, token: u32) -> Result<(), Error> {
        self.http_call_failed(token)?;
        self.settle()
    }

    fn http_call_failed(&mut self, token: u32) -> Result<(), Error> {
        let call = self
            .runtime
            .state()
            .http_calls
            .remove(&token)
            .ok_or(Error::NotFound {
                kind: "HTTP callout",
                id: token,
            })?;
        let data = &mut self.runtime.state().callback_data;
        data.call_headers = Some(HeaderMap::default());
        data.call_body = Some(Vec::new());
        data.call_trailers = Some(HeaderMap::default());
        self.runtime.state().status = (Status::BrokenConnection as u32, b"reset".to_vec());
        let root = self.root_of_call(call.context_id);
        self.invoke(Callback::HttpCallResponse, root, &[root, token, 0, 0, 0])?;
        Ok(())
    }

    /// Envoy's async client answers a callout that times out with its own
    /// 504 response.
    fn http_call_timed_out(&mut self, token: u32) -> Result<(), Error> {
        let body = "upstream request timeout";
        let response = CalloutResponse::new(504)
            .header("content-length", &body.len().to_string())
            .header("content-type", "text/plain")
            .body(body);
        self.respond_http_call(token, response)
    }

    fn root_of_call(&self, context: u32) -> u32 {
        self.runtime.state_ref().root_of(context).unwrap_or(context)
    }

    /// gRPC calls and streams that are open, oldest first.
    ///
    /// ```no_run
    /// # let module = sdk_host::WasmModule::from_file("filter.wasm")?;
    /// # let host = sdk_host::Host::builder().start(&module)?;
    /// for call in host.grpc_calls() {
    ///     println!("{}/{} on {}", call.service, call.method, String::from_utf8_lossy(&call.upstream));
    /// }
    /// # Ok::<(), Box<dyn std::error::Error>>(())
    /// ```
    pub fn grpc_calls(&self) -> Vec<GrpcCall> {
        self.runtime
            .state_ref()
            .grpc_calls
            .values()
            .cloned()
            .collect()
    }

    /// Answers a unary gRPC call successfully. Envoy calls only
    /// `proxy_on_grpc_receive` for that (no metadata, no close).
    ///
    /// # Errors
    ///
    /// [`Error::NotFound`] for an unknown token, [`Error::Trap`].
    ///
    /// ```no_run
    /// # let module = sdk_host::WasmModule::from_file("filter.wasm")?;
    /// # let mut host = sdk_host::Host::builder().start(&module)?;
    /// let token = host.grpc_calls()[0].token;
    /// host.grpc_respond(token, b"\x08\x01")?; // the serialized response message
    /// # Ok::<(), Box<dyn std::error::Error>>(())
    /// ```
    pub fn grpc_respond(&mut self, token: u32, message: impl AsRef<[u8]>) -> Result<(), Error> {
        self.grpc_receive(token, message)?;
        let state = self.runtime.state();
        if state.grpc_calls.get(&token).is_some_and(|c| !c.streaming) {
            state.grpc_calls.remove(&token);
        }
        Ok(())
    }

    /// The gRPC server sends initial metadata: `proxy_on_grpc_receive_initial_metadata`.
    ///
    /// # Errors
    ///
    /// As [`Host::grpc_respond`].
    ///
    /// ```no_run
    /// # let module = sdk_host::WasmModule::from_file("filter.wasm")?;
    /// # let mut host = sdk_host::Host::builder().start(&module)?;
    /// let token = host.grpc_calls()[0].token;
    /// let metadata = sdk_host::HeaderMap::from_pairs([("x-server", "a")]);
    /// host.grpc_receive_initial_metadata(token, metadata)?;
    /// # Ok::<(), Box<dyn std::error::Error>>(())
    /// ```
    pub fn grpc_receive_initial_metadata(
        &mut self,
        token: u32,
        metadata: HeaderMap,
    ) -> Result<(), Error> {
        let context = self.grpc_context(token)?;
        let count = metadata.len() as u32;
        self.runtime.state().callback_data.grpc_initial = Some(metadata);
        self.invoke(
            Callback::GrpcReceiveInitialMetadata,
            context,
            &[context, token, count],
        )?;
        self.settle()
    }

    /// The gRPC server sends a message: `proxy_on_grpc_receive`.
    ///
    /// # Errors
    ///
    /// As [`Host::grpc_respond`].
    ///
    /// ```no_run
    /// # let module = sdk_host::WasmModule::from_file("filter.wasm")?;
    /// # let mut host = sdk_host::Host::builder().start(&module)?;
    /// let token = host.grpc_calls()[0].token;
    /// host.grpc_receive(token, b"first message")?;
    /// host.grpc_receive(token, b"second message")?;
    /// # Ok::<(), Box<dyn std::error::Error>>(())
    /// ```
    pub fn grpc_receive(&mut self, token: u32, message: impl AsRef<[u8]>) -> Result<(), Error> {
        let context = self.grpc_context(token)?;
        let message = message.as_ref().to_vec();
        let size = message.len() as u32;
        self.runtime.state().callback_data.grpc_message = Some(message);
        self.invoke(Callback::GrpcReceive, context, &[context, token, size])?;
        self.settle()
    }

    /// The gRPC server sends trailing metadata: `proxy_on_grpc_receive_trailing_metadata`.
    ///
    /// # Errors
    ///
    /// As [`Host::grpc_respond`].
    ///
    /// ```no_run
    /// # let module = sdk_host::WasmModule::from_file("filter.wasm")?;
    /// # let mut host = sdk_host::Host::builder().start(&module)?;
    /// let token = host.grpc_calls()[0].token;
    /// let trailers = sdk_host::HeaderMap::from_pairs([("grpc-status", "0")]);
    /// host.grpc_receive_trailing_metadata(token, trailers)?;
    /// # Ok::<(), Box<dyn std::error::Error>>(())
    /// ```
    pub fn grpc_receive_trailing_metadata(
        &mut self,
        token: u32,
        metadata: HeaderMap,
    ) -> Result<(), Error> {
        let context = self.grpc_context(token)?;
        let count = metadata.len() as u32;
        self.runtime.state().callback_data.grpc_trailing = Some(metadata);
        self.invoke(
            Callback::GrpcReceiveTrailingMetadata,
            context,
            &[context, token, count],
        )?;
        self.settle()
    }

    /// The call ends with a gRPC status: `proxy_on_grpc_close`; the guest
    /// reads the status and message with `proxy_get_status`.
    ///
    /// # Errors
    ///
    /// As [`Host::grpc_respond`].
    ///
    /// ```no_run
    /// # let module = sdk_host::WasmModule::from_file("filter.wasm")?;
    /// # let mut host = sdk_host::Host::builder().start(&module)?;
    /// let token = host.grpc_calls()[0].token;
    /// host.grpc_close(token, 14, "unavailable")?; // gRPC status UNAVAILABLE
    /// # Ok::<(), Box<dyn std::error::Error>>(())
    /// ```
    pub fn grpc_close(&mut self, token: u32, status: u32, message: &str) -> Result<(), Error> {
        let context = self.grpc_context(token)?;
        self.runtime.state().grpc_calls.remove(&token);
        self.runtime.state().status = (status, message.as_bytes().to_vec());
        self.invoke(Callback::GrpcClose, context, &[context, token, status])?;
        self.settle()
    }

    /// The root context gRPC callbacks go to (Envoy runs gRPC on the root).
    fn grpc_context(&self, token: u32) -> Result<u32, Error> {
        self.runtime
            .state_ref()
            .grpc_calls
            .get(&token)
            .map(|c| self.root_of_call(c.context_id))
            .ok_or(Error::NotFound {
                kind: "gRPC call",
                id: token,
            })
    }

    // --- root contexts ----------------------------------------------------------

    /// The root context ids, one per plugin, in the order they were added.
    ///
    /// ```
    /// # let wat = r#"(module (memory (export "memory") 1) (func (export "proxy_abi_version_0_2_1"))
    /// #   (func (export "malloc") (param i32) (result i32) (i32.const 1024)))"#;
    /// # let module = sdk_host::WasmModule::from_bytes("pass.wasm", &wat::parse_str(wat)?)?;
    /// let host = sdk_host::Host::builder().plugin("a", "", "").plugin("b", "", "").start(&module)?;
    /// assert_eq!(host.root_contexts().len(), 2);
    /// # Ok::<(), Box<dyn std::error::Error>>(())
    /// ```
    pub fn root_contexts(&self) -> Vec<ContextId> {
        self.runtime
            .state_ref()
            .plugins
            .iter()
            .map(|p| p.context_id)
            .collect()
    }

    /// Calls the guest's `proxy_on_foreign_function` in a root context; the
    /// guest reads `data` as the `CallData` buffer.
    ///
    /// # Errors
    ///
    /// [`Error::NotFound`] for an unknown root, [`Error::Trap`].
    ///
    /// ```no_run
    /// # let module = sdk_host::WasmModule::from_file("filter.wasm")?;
    /// let mut host = sdk_host::Host::builder().start(&module)?;
    /// let root = host.root_contexts()[0];
    /// host.call_guest_foreign_function(root, 1, b"reload")?;
    /// # Ok::<(), Box<dyn std::error::Error>>(())
    /// ```
    pub fn call_guest_foreign_function(
        &mut self,
        root: ContextId,
        function_id: u32,
        data: impl AsRef<[u8]>,
    ) -> Result<(), Error> {
        if self.runtime.state_ref().plugin_of_root(root).is_none() {
            return Err(Error::NotFound {
                kind: "plugin root context",
                id: root,
            });
        }
        let data = data.as_ref().to_vec();
        let size = data.len() as u32;
        self.runtime.state().callback_data.call_data = Some(data);
        self.invoke(Callback::ForeignFunction, root, &[root, function_id, size])?;
        self.settle()
    }

    /// Shuts the plugins down as Envoy does when a configuration is removed:
    /// `proxy_on_done` on each root context, and `proxy_on_delete` once it
    /// is done (at once, or when it calls `proxy_done`). Returns the roots
    /// still waiting for `proxy_done`.
    ///
    /// # Errors
    ///
    /// [`Error::Trap`].
    ///
    /// ```
    /// # let wat = r#"(module (memory (export "memory") 1) (func (export "proxy_abi_version_0_2_1"))
    /// #   (func (export "malloc") (param i32) (result i32) (i32.const 1024)))"#;
    /// # let module = sdk_host::WasmModule::from_bytes("pass.wasm", &wat::parse_str(wat)?)?;
    /// let mut host = sdk_host::Host::builder().start(&module)?;
    /// // Roots whose proxy_on_done returned false are still finishing work.
    /// let waiting = host.shutdown()?;
    /// assert_eq!(waiting, host.pending_done());
    /// # Ok::<(), Box<dyn std::error::Error>>(())
    /// ```
    pub fn shutdown(&mut self) -> Result<Vec<ContextId>, Error> {
        let roots = self.root_contexts();
        let mut waiting = Vec::new();
        for root in roots {
            let plugin_deleted = self
                .runtime
                .state_ref()
                .plugin_of_root(root)
                .is_some_and(|p| p.deleted);
            if plugin_deleted {
                continue;
            }
            let done = self.invoke(Callback::Done, root, &[root])?;
            if done == Some(0) {
                if let Some(plugin) = self.runtime.state().plugin_of_root_mut(root) {
                    plugin.done_pending = true;
                }
                waiting.push(root);
            } else {
                self.delete_root(root)?;
            }
        }
        self.settle()?;
        Ok(waiting)
    }

    /// Root contexts that answered `proxy_on_done` with false and have not
    /// called `proxy_done` yet (the others are deleted).
    ///
    /// ```
    /// # let wat = r#"(module (memory (export "memory") 1) (func (export "proxy_abi_version_0_2_1"))
    /// #   (func (export "malloc") (param i32) (result i32) (i32.const 1024)))"#;
    /// # let module = sdk_host::WasmModule::from_bytes("pass.wasm", &wat::parse_str(wat)?)?;
    /// let mut host = sdk_host::Host::builder().start(&module)?;
    /// host.shutdown()?;
    /// assert!(host.pending_done().len() <= 1);
    /// # Ok::<(), Box<dyn std::error::Error>>(())
    /// ```
    pub fn pending_done(&self) -> Vec<ContextId> {
        self.runtime
            .state_ref()
            .plugins
            .iter()
            .filter(|p| p.done_pending && !p.deleted)
            .map(|p| p.context_id)
            .collect()
    }

    fn delete_root(&mut self, root: ContextId) -> Result<(), Error> {
        self.invoke(Callback::Delete, root, &[root])?;
        if let Some(plugin) = self.runtime.state().plugin_of_root_mut(root) {
            plugin.deleted = true;
            plugin.next_tick_nanos = None;
        }
        Ok(())
    }

    // --- what a test reads -------------------------------------------------------

    /// Everything the guest logged, in order.
    ///
    /// ```
    /// # let wat = r#"(module (import "env" "proxy_log" (func $log (param i32 i32 i32) (result i32)))
    /// #   (memory (export "memory") 1) (data (i32.const 64) "ready")
    /// #   (func (export "proxy_abi_version_0_2_1")) (func (export "malloc") (param i32) (result i32) (i32.const 1024))
    /// #   (func (export "proxy_on_vm_start") (param i32 i32) (result i32)
    /// #     (drop (call $log (i32.const 2) (i32.const 64) (i32.const 5))) (i32.const 1)))"#;
    /// # let module = sdk_host::WasmModule::from_bytes("log.wasm", &wat::parse_str(wat)?)?;
    /// let host = sdk_host::Host::builder().start(&module)?;
    /// assert_eq!(host.logs()[0].message, "ready");
    /// assert_eq!(host.logs()[0].level, sdk_host::LogLevel::Info);
    /// # Ok::<(), Box<dyn std::error::Error>>(())
    /// ```
    pub fn logs(&self) -> &[LogRecord] {
        &self.runtime.state_ref().logs
    }

    /// Logged lines at `level` or above, as text.
    ///
    /// ```
    /// # let wat = r#"(module (import "env" "proxy_log" (func $log (param i32 i32 i32) (result i32)))
    /// #   (memory (export "memory") 1) (data (i32.const 64) "ready")
    /// #   (func (export "proxy_abi_version_0_2_1")) (func (export "malloc") (param i32) (result i32) (i32.const 1024))
    /// #   (func (export "proxy_on_vm_start") (param i32 i32) (result i32)
    /// #     (drop (call $log (i32.const 2) (i32.const 64) (i32.const 5))) (i32.const 1)))"#;
    /// # let module = sdk_host::WasmModule::from_bytes("log.wasm", &wat::parse_str(wat)?)?;
    /// use sdk_host::LogLevel;
    /// let host = sdk_host::Host::builder().start(&module)?;
    /// assert_eq!(host.log_lines(LogLevel::Info), ["ready"]);
    /// assert!(host.log_lines(LogLevel::Error).is_empty());
    /// # Ok::<(), Box<dyn std::error::Error>>(())
    /// ```
    pub fn log_lines(&self, level: LogLevel) -> Vec<String> {
        self.logs()
            .iter()
            .filter(|r| r.level >= level)
            .map(|r| r.message.clone())
            .collect()
    }

    /// Forgets the logs so far (between phases of a test).
    ///
    /// ```
    /// # let wat = r#"(module (memory (export "memory") 1) (func (export "proxy_abi_version_0_2_1"))
    /// #   (func (export "malloc") (param i32) (result i32) (i32.const 1024)))"#;
    /// # let module = sdk_host::WasmModule::from_bytes("pass.wasm", &wat::parse_str(wat)?)?;
    /// let mut host = sdk_host::Host::builder().start(&module)?;
    /// host.clear_logs(); // forget start-up, look at one request's logs only
    /// assert!(host.logs().is_empty());
    /// # Ok::<(), Box<dyn std::error::Error>>(())
    /// ```
    pub fn clear_logs(&mut self) {
        self.runtime.state().logs.clear();
    }

    /// What Envoy would have rejected or ignored so far.
    ///
    /// ```
    /// # let wat = r#"(module (memory (export "memory") 1) (func (export "proxy_abi_version_0_2_1"))
    /// #   (func (export "malloc") (param i32) (result i32) (i32.const 1024)))"#;
    /// # let module = sdk_host::WasmModule::from_bytes("pass.wasm", &wat::parse_str(wat)?)?;
    /// let mut host = sdk_host::Host::builder().start(&module)?;
    /// let stream = host.new_http_stream()?;
    /// host.send_request_headers(stream, &[(":path", "/")], true)?;
    /// assert!(host.violations().is_empty(), "{:#?}", host.violations());
    /// # Ok::<(), Box<dyn std::error::Error>>(())
    /// ```
    pub fn violations(&self) -> &[Violation] {
        &self.runtime.state_ref().violations
    }

    /// A metric's value by the name the guest defined it with.
    ///
    /// ```
    /// # let wat = r#"(module (memory (export "memory") 1) (func (export "proxy_abi_version_0_2_1"))
    /// #   (func (export "malloc") (param i32) (result i32) (i32.const 1024)))"#;
    /// # let module = sdk_host::WasmModule::from_bytes("pass.wasm", &wat::parse_str(wat)?)?;
    /// let host = sdk_host::Host::builder().start(&module)?;
    /// // Defined by the guest with proxy_define_metric; this module defines none.
    /// assert_eq!(host.metric("my_filter.requests"), None);
    /// # Ok::<(), Box<dyn std::error::Error>>(())
    /// ```
    pub fn metric(&self, name: &str) -> Option<MetricValue> {
        self.runtime.state_ref().proxy.lock().metrics_get(name)
    }

    /// A counter's total (`None` if undefined or not a counter).
    ///
    /// ```no_run
    /// # let module = sdk_host::WasmModule::from_file("filter.wasm")?;
    /// let mut host = sdk_host::Host::builder().start(&module)?;
    /// let stream = host.new_http_stream()?;
    /// host.send_request_headers(stream, &[(":path", "/")], true)?;
    /// assert_eq!(host.counter("my_filter.requests"), Some(1));
    /// # Ok::<(), Box<dyn std::error::Error>>(())
    /// ```
    pub fn counter(&self, name: &str) -> Option<u64> {
        match self.metric(name)? {
            MetricValue::Counter(v) => Some(v),
            _ => None,
        }
    }

    /// A gauge's value (`None` if undefined or not a gauge).
    ///
    /// ```no_run
    /// # let module = sdk_host::WasmModule::from_file("filter.wasm")?;
    /// let host = sdk_host::Host::builder().start(&module)?;
    /// assert_eq!(host.gauge("my_filter.active_streams"), Some(0));
    /// # Ok::<(), Box<dyn std::error::Error>>(())
    /// ```
    pub fn gauge(&self, name: &str) -> Option<i64> {
        match self.metric(name)? {
            MetricValue::Gauge(v) => Some(v),
            _ => None,
        }
    }

    /// Shared data of this VM's `vm_id`: value and CAS.
    ///
    /// ```
    /// # let wat = r#"(module (memory (export "memory") 1) (func (export "proxy_abi_version_0_2_1"))
    /// #   (func (export "malloc") (param i32) (result i32) (i32.const 1024)))"#;
    /// # let module = sdk_host::WasmModule::from_bytes("pass.wasm", &wat::parse_str(wat)?)?;
    /// let host = sdk_host::Host::builder().vm_id("vm").start(&module)?;
    /// assert!(host.proxy().set_shared_data("vm", "limit", b"10").is_ok());
    /// let (value, cas) = host.shared_data("limit").ok_or("missing")?;
    /// assert_eq!((value.as_slice(), cas > 0), (&b"10"[..], true));
    /// # Ok::<(), Box<dyn std::error::Error>>(())
    /// ```
    pub fn shared_data(&self, key: &str) -> Option<(Vec<u8>, u32)> {
        let state = self.runtime.state_ref();
        state.proxy.shared_data(&state.settings.vm_id, key)
    }

    /// The process-wide state this host uses.
    ///
    /// ```
    /// # let wat = r#"(module (memory (export "memory") 1) (func (export "proxy_abi_version_0_2_1"))
    /// #   (func (export "malloc") (param i32) (result i32) (i32.const 1024)))"#;
    /// # let module = sdk_host::WasmModule::from_bytes("pass.wasm", &wat::parse_str(wat)?)?;
    /// let host = sdk_host::Host::builder().start(&module)?;
    /// // A handle on the process-wide state, to share with another host.
    /// let proxy = host.proxy();
    /// let _worker = sdk_host::Host::builder().proxy(&proxy).start(&module)?;
    /// # Ok::<(), Box<dyn std::error::Error>>(())
    /// ```
    pub fn proxy(&self) -> Proxy {
        self.runtime.state_ref().proxy.clone()
    }

    /// The VM failed (a trap): Envoy no longer calls it.
    ///
    /// ```
    /// # let wat = r#"(module (memory (export "memory") 1) (func (export "proxy_abi_version_0_2_1"))
    /// #   (func (export "malloc") (param i32) (result i32) (i32.const 1024)))"#;
    /// # let module = sdk_host::WasmModule::from_bytes("pass.wasm", &wat::parse_str(wat)?)?;
    /// let host = sdk_host::Host::builder().start(&module)?;
    /// assert_eq!(host.failure(), None); // set once the guest traps
    /// # Ok::<(), Box<dyn std::error::Error>>(())
    /// ```
    pub fn failure(&self) -> Option<&str> {
        self.failed.as_deref()
    }

    /// The exit code the guest passed to WASI `proc_exit`, if it did.
    ///
    /// ```
    /// # let wat = r#"(module (memory (export "memory") 1) (func (export "proxy_abi_version_0_2_1"))
    /// #   (func (export "malloc") (param i32) (result i32) (i32.const 1024)))"#;
    /// # let module = sdk_host::WasmModule::from_bytes("pass.wasm", &wat::parse_str(wat)?)?;
    /// let host = sdk_host::Host::builder().start(&module)?;
    /// assert_eq!(host.exit_code(), None); // set by WASI proc_exit
    /// # Ok::<(), Box<dyn std::error::Error>>(())
    /// ```
    pub fn exit_code(&self) -> Option<u32> {
        self.runtime.state_ref().exit_code
    }
}

/// Events the clock fires.
enum Timer {
    Tick(u32),
    HttpTimeout(u32),
    GrpcTimeout(u32),
}

/// The headers of a local response as Envoy sends them: the status, the
/// filter's headers, and for a body its length and `text/plain`.
fn local_response_headers(response: &LocalResponse) -> HeaderMap {
    let mut headers = HeaderMap::from_pairs([(":status", response.status.to_string())]);
    for (name, value) in response.headers.iter() {
        headers.add(name, value);
    }
    if !response.body.is_empty() {
        if headers.get_bytes("content-type").is_none() {
            headers.add("content-type", "text/plain");
        }
        headers.replace("content-length", response.body.len().to_string());
    }
    if let Some(grpc_status) = response.grpc_status {
        headers.replace("grpc-status", grpc_status.to_string());
    }
    headers
}

/// A read-only view of an HTTP stream.
///
/// ```
/// # let wat = r#"(module (memory (export "memory") 1) (func (export "proxy_abi_version_0_2_1"))
/// #   (func (export "malloc") (param i32) (result i32) (i32.const 1024)))"#;
/// # let module = sdk_host::WasmModule::from_bytes("pass.wasm", &wat::parse_str(wat)?)?;
/// let mut host = sdk_host::Host::builder().start(&module)?;
/// let stream = host.new_http_stream()?;
/// host.send_request_headers(stream, &[(":path", "/")], true)?;
/// let view = host.http(stream)?;
/// assert!(view.upstream().complete && view.local_response().is_none() && !view.request_paused());
/// # Ok::<(), Box<dyn std::error::Error>>(())
/// ```
pub struct HttpView<'a> {
    stream: &'a HttpStream,
}

impl HttpView<'_> {
    /// The request headers as the filter left them.
    ///
    /// ```
    /// # let wat = r#"(module (memory (export "memory") 1) (func (export "proxy_abi_version_0_2_1"))
    /// #   (func (export "malloc") (param i32) (result i32) (i32.const 1024)))"#;
    /// # let module = sdk_host::WasmModule::from_bytes("pass.wasm", &wat::parse_str(wat)?)?;
    /// let mut host = sdk_host::Host::builder().start(&module)?;
    /// let stream = host.new_http_stream()?;
    /// host.send_request_headers(stream, &[(":path", "/"), ("x-user", "a")], true)?;
    /// assert_eq!(host.http(stream)?.request_headers().and_then(|h| h.get("x-user")), Some("a"));
    /// # Ok::<(), Box<dyn std::error::Error>>(())
    /// ```
    pub fn request_headers(&self) -> Option<&HeaderMap> {
        self.stream.request.headers.as_ref()
    }

    /// The request trailers as the filter left them.
    ///
    /// ```
    /// # let wat = r#"(module (memory (export "memory") 1) (func (export "proxy_abi_version_0_2_1"))
    /// #   (func (export "malloc") (param i32) (result i32) (i32.const 1024)))"#;
    /// # let module = sdk_host::WasmModule::from_bytes("pass.wasm", &wat::parse_str(wat)?)?;
    /// let mut host = sdk_host::Host::builder().start(&module)?;
    /// let stream = host.new_http_stream()?;
    /// host.send_request_headers(stream, &[(":method", "POST")], false)?;
    /// host.send_request_trailers(stream, &[("x-sum", "9")])?;
    /// assert_eq!(host.http(stream)?.request_trailers().and_then(|t| t.get("x-sum")), Some("9"));
    /// # Ok::<(), Box<dyn std::error::Error>>(())
    /// ```
    pub fn request_trailers(&self) -> Option<&HeaderMap> {
        self.stream.request.trailers.as_ref()
    }

    /// The response headers as the filter left them.
    ///
    /// ```
    /// # let wat = r#"(module (memory (export "memory") 1) (func (export "proxy_abi_version_0_2_1"))
    /// #   (func (export "malloc") (param i32) (result i32) (i32.const 1024)))"#;
    /// # let module = sdk_host::WasmModule::from_bytes("pass.wasm", &wat::parse_str(wat)?)?;
    /// let mut host = sdk_host::Host::builder().start(&module)?;
    /// let stream = host.new_http_stream()?;
    /// host.send_request_headers(stream, &[(":path", "/")], true)?;
    /// host.send_response_headers(stream, &[(":status", "404")], true)?;
    /// assert_eq!(host.http(stream)?.response_headers().and_then(|h| h.get(":status")), Some("404"));
    /// # Ok::<(), Box<dyn std::error::Error>>(())
    /// ```
    pub fn response_headers(&self) -> Option<&HeaderMap> {
        self.stream.response.headers.as_ref()
    }

    /// The response trailers as the filter left them.
    ///
    /// ```
    /// # let wat = r#"(module (memory (export "memory") 1) (func (export "proxy_abi_version_0_2_1"))
    /// #   (func (export "malloc") (param i32) (result i32) (i32.const 1024)))"#;
    /// # let module = sdk_host::WasmModule::from_bytes("pass.wasm", &wat::parse_str(wat)?)?;
    /// let mut host = sdk_host::Host::builder().start(&module)?;
    /// let stream = host.new_http_stream()?;
    /// host.send_request_headers(stream, &[(":path", "/")], true)?;
    /// host.send_response_headers(stream, &[(":status", "200")], false)?;
    /// host.send_response_trailers(stream, &[("grpc-status", "0")])?;
    /// assert!(host.http(stream)?.response_trailers().is_some());
    /// # Ok::<(), Box<dyn std::error::Error>>(())
    /// ```
    pub fn response_trailers(&self) -> Option<&HeaderMap> {
        self.stream.response.trailers.as_ref()
    }

    /// What the upstream server received.
    ///
    /// ```
    /// # let wat = r#"(module (memory (export "memory") 1) (func (export "proxy_abi_version_0_2_1"))
    /// #   (func (export "malloc") (param i32) (result i32) (i32.const 1024)))"#;
    /// # let module = sdk_host::WasmModule::from_bytes("pass.wasm", &wat::parse_str(wat)?)?;
    /// let mut host = sdk_host::Host::builder().start(&module)?;
    /// let stream = host.new_http_stream()?;
    /// host.send_request_headers(stream, &[(":path", "/")], false)?;
    /// host.send_request_body(stream, "data", true)?;
    /// let upstream = host.http(stream)?.upstream().clone();
    /// assert_eq!((upstream.body.as_slice(), upstream.complete), (&b"data"[..], true));
    /// # Ok::<(), Box<dyn std::error::Error>>(())
    /// ```
    pub fn upstream(&self) -> &Forwarded {
        &self.stream.request.forwarded
    }

    /// What the downstream client received.
    ///
    /// ```
    /// # let wat = r#"(module (memory (export "memory") 1) (func (export "proxy_abi_version_0_2_1"))
    /// #   (func (export "malloc") (param i32) (result i32) (i32.const 1024)))"#;
    /// # let module = sdk_host::WasmModule::from_bytes("pass.wasm", &wat::parse_str(wat)?)?;
    /// let mut host = sdk_host::Host::builder().start(&module)?;
    /// let stream = host.new_http_stream()?;
    /// host.send_request_headers(stream, &[(":path", "/")], true)?;
    /// host.send_response_headers(stream, &[(":status", "200")], false)?;
    /// host.send_response_body(stream, "ok", true)?;
    /// assert_eq!(host.http(stream)?.downstream().body, b"ok");
    /// # Ok::<(), Box<dyn std::error::Error>>(())
    /// ```
    pub fn downstream(&self) -> &Forwarded {
        &self.stream.response.forwarded
    }

    /// The local response the filter sent, if it did.
    ///
    /// ```
    /// # let wat = r#"(module (memory (export "memory") 1) (func (export "proxy_abi_version_0_2_1"))
    /// #   (func (export "malloc") (param i32) (result i32) (i32.const 1024)))"#;
    /// # let module = sdk_host::WasmModule::from_bytes("pass.wasm", &wat::parse_str(wat)?)?;
    /// let mut host = sdk_host::Host::builder().start(&module)?;
    /// let stream = host.new_http_stream()?;
    /// host.send_request_headers(stream, &[(":path", "/")], true)?;
    /// // This module never calls proxy_send_local_response.
    /// assert!(host.http(stream)?.local_response().is_none());
    /// # Ok::<(), Box<dyn std::error::Error>>(())
    /// ```
    pub fn local_response(&self) -> Option<&LocalResponse> {
        self.stream.local_response.as_ref()
    }

    /// Whether the request is held by the filter (paused and not resumed).
    ///
    /// ```
    /// # let wat = r#"(module (memory (export "memory") 1) (func (export "proxy_abi_version_0_2_1"))
    /// #   (func (export "malloc") (param i32) (result i32) (i32.const 1024)))"#;
    /// # let module = sdk_host::WasmModule::from_bytes("pass.wasm", &wat::parse_str(wat)?)?;
    /// let mut host = sdk_host::Host::builder().start(&module)?;
    /// let stream = host.new_http_stream()?;
    /// host.send_request_headers(stream, &[(":path", "/")], true)?;
    /// assert!(!host.http(stream)?.request_paused());
    /// # Ok::<(), Box<dyn std::error::Error>>(())
    /// ```
    pub fn request_paused(&self) -> bool {
        matches!(
            self.stream.request.state,
            FlowState::HeadersStopped | FlowState::BodyStopped | FlowState::TrailersStopped
        )
    }

    /// Whether the response is held by the filter.
    ///
    /// ```
    /// # let wat = r#"(module (memory (export "memory") 1) (func (export "proxy_abi_version_0_2_1"))
    /// #   (func (export "malloc") (param i32) (result i32) (i32.const 1024)))"#;
    /// # let module = sdk_host::WasmModule::from_bytes("pass.wasm", &wat::parse_str(wat)?)?;
    /// let mut host = sdk_host::Host::builder().start(&module)?;
    /// let stream = host.new_http_stream()?;
    /// host.send_request_headers(stream, &[(":path", "/")], true)?;
    /// host.send_response_headers(stream, &[(":status", "200")], true)?;
    /// assert!(!host.http(stream)?.response_paused());
    /// # Ok::<(), Box<dyn std::error::Error>>(())
    /// ```
    pub fn response_paused(&self) -> bool {
        matches!(
            self.stream.response.state,
            FlowState::HeadersStopped | FlowState::BodyStopped | FlowState::TrailersStopped
        )
    }

    /// Why the stream was reset, if it was.
    ///
    /// ```
    /// # let wat = r#"(module (memory (export "memory") 1) (func (export "proxy_abi_version_0_2_1"))
    /// #   (func (export "malloc") (param i32) (result i32) (i32.const 1024)))"#;
    /// # let module = sdk_host::WasmModule::from_bytes("pass.wasm", &wat::parse_str(wat)?)?;
    /// let mut host = sdk_host::Host::builder().start(&module)?;
    /// let stream = host.new_http_stream()?;
    /// host.send_request_headers(stream, &[(":path", "/")], true)?;
    /// assert_eq!(host.http(stream)?.reset(), None);
    /// # Ok::<(), Box<dyn std::error::Error>>(())
    /// ```
    pub fn reset(&self) -> Option<&str> {
        self.stream.reset.as_deref()
    }

    /// How often the filter called `clear_route_cache`.
    ///
    /// ```
    /// # let wat = r#"(module (memory (export "memory") 1) (func (export "proxy_abi_version_0_2_1"))
    /// #   (func (export "malloc") (param i32) (result i32) (i32.const 1024)))"#;
    /// # let module = sdk_host::WasmModule::from_bytes("pass.wasm", &wat::parse_str(wat)?)?;
    /// let mut host = sdk_host::Host::builder().start(&module)?;
    /// let stream = host.new_http_stream()?;
    /// host.send_request_headers(stream, &[(":path", "/")], true)?;
    /// assert_eq!(host.http(stream)?.route_cache_cleared(), 0);
    /// # Ok::<(), Box<dyn std::error::Error>>(())
    /// ```
    pub fn route_cache_cleared(&self) -> u32 {
        self.stream.route_cache_cleared
    }

    /// Whether `proxy_on_done`/`proxy_on_log`/`proxy_on_delete` ran.
    ///
    /// ```
    /// # let wat = r#"(module (memory (export "memory") 1) (func (export "proxy_abi_version_0_2_1"))
    /// #   (func (export "malloc") (param i32) (result i32) (i32.const 1024)))"#;
    /// # let module = sdk_host::WasmModule::from_bytes("pass.wasm", &wat::parse_str(wat)?)?;
    /// let mut host = sdk_host::Host::builder().start(&module)?;
    /// let stream = host.new_http_stream()?;
    /// host.send_request_headers(stream, &[(":path", "/")], true)?;
    /// assert!(!host.http(stream)?.finished());
    /// # Ok::<(), Box<dyn std::error::Error>>(())
    /// ```
    pub fn finished(&self) -> bool {
        self.stream.finished
    }
}

/// A read-only view of a TCP stream.
///
/// ```
/// # let wat = r#"(module (memory (export "memory") 1) (func (export "proxy_abi_version_0_2_1"))
/// #   (func (export "malloc") (param i32) (result i32) (i32.const 1024)))"#;
/// # let module = sdk_host::WasmModule::from_bytes("pass.wasm", &wat::parse_str(wat)?)?;
/// let mut host = sdk_host::Host::builder().start(&module)?;
/// let (connection, _) = host.new_tcp_stream()?;
/// host.send_downstream_data(connection, "ping", false)?;
/// let view = host.tcp(connection)?;
/// assert_eq!((view.to_upstream(), view.to_downstream()), (&b"ping"[..], &b""[..]));
/// # Ok::<(), Box<dyn std::error::Error>>(())
/// ```
pub struct TcpView<'a> {
    stream: &'a TcpStream,
}

impl TcpView<'_> {
    /// Bytes that went to the upstream server.
    ///
    /// ```
    /// # let wat = r#"(module (memory (export "memory") 1) (func (export "proxy_abi_version_0_2_1"))
    /// #   (func (export "malloc") (param i32) (result i32) (i32.const 1024)))"#;
    /// # let module = sdk_host::WasmModule::from_bytes("pass.wasm", &wat::parse_str(wat)?)?;
    /// let mut host = sdk_host::Host::builder().start(&module)?;
    /// let (connection, _) = host.new_tcp_stream()?;
    /// host.send_downstream_data(connection, "GET", false)?;
    /// assert_eq!(host.tcp(connection)?.to_upstream(), b"GET");
    /// # Ok::<(), Box<dyn std::error::Error>>(())
    /// ```
    pub fn to_upstream(&self) -> &[u8] {
        &self.stream.to_upstream
    }

    /// Bytes that went to the downstream client.
    ///
    /// ```
    /// # let wat = r#"(module (memory (export "memory") 1) (func (export "proxy_abi_version_0_2_1"))
    /// #   (func (export "malloc") (param i32) (result i32) (i32.const 1024)))"#;
    /// # let module = sdk_host::WasmModule::from_bytes("pass.wasm", &wat::parse_str(wat)?)?;
    /// let mut host = sdk_host::Host::builder().start(&module)?;
    /// let (connection, _) = host.new_tcp_stream()?;
    /// host.send_upstream_data(connection, "200", false)?;
    /// assert_eq!(host.tcp(connection)?.to_downstream(), b"200");
    /// # Ok::<(), Box<dyn std::error::Error>>(())
    /// ```
    pub fn to_downstream(&self) -> &[u8] {
        &self.stream.to_downstream
    }

    /// Sides the filter closed with `proxy_close_stream`.
    ///
    /// ```
    /// # let wat = r#"(module (memory (export "memory") 1) (func (export "proxy_abi_version_0_2_1"))
    /// #   (func (export "malloc") (param i32) (result i32) (i32.const 1024)))"#;
    /// # let module = sdk_host::WasmModule::from_bytes("pass.wasm", &wat::parse_str(wat)?)?;
    /// let mut host = sdk_host::Host::builder().start(&module)?;
    /// let (connection, _) = host.new_tcp_stream()?;
    /// // Sides the guest closed with proxy_close_stream; this one closes none.
    /// assert!(host.tcp(connection)?.closed().is_empty());
    /// # Ok::<(), Box<dyn std::error::Error>>(())
    /// ```
    pub fn closed(&self) -> &[StreamType] {
        &self.stream.closed
    }
}

impl TcpStream {
    fn flush(&mut self, downstream: bool) {
        if downstream {
            let data = std::mem::take(&mut self.downstream);
            self.to_upstream.extend(data);
        } else {
            let data = std::mem::take(&mut self.upstream);
            self.to_downstream.extend(data);
        }
    }
}

/// Queue notifications for VMs other than the one that enqueued.
pub(crate) fn notify_queue(proxy: &Proxy, vm: u64, root: u32, token: u32) {
    proxy.lock().queue_notices.push((vm, root, token));
}

fn take_queue_notices(proxy: &Proxy, vm: u64) -> Vec<(u32, u32)> {
    let mut state = proxy.lock();
    if state.queue_notices.is_empty() {
        return Vec::new();
    }
    let mut mine = Vec::new();
    state.queue_notices.retain(|(owner, root, token)| {
        if *owner == vm {
            mine.push((*root, *token));
            false
        } else {
            true
        }
    });
    mine
}
