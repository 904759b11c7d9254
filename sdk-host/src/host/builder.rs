//! Configuring and starting a [`Host`].

use super::lifecycle::{Host, HostBuilder, PluginSpec};
use crate::error::Error;
use crate::model::{HostState, VmSettings};
use crate::properties::PropertyValue;
use crate::proxy::Proxy;
use crate::runtime::wasm::WasmModule;
use crate::types::LogLevel;
use crate::types::Status;
use std::collections::BTreeSet;
use std::sync::atomic::{AtomicU64, Ordering};

impl Default for HostBuilder {
    fn default() -> Self {
        HostBuilder {
            settings: VmSettings::default(),
            plugins: Vec::new(),
            default_config: Vec::new(),
            properties: Vec::new(),
            proxy: None,
            seed: 0,
            start_nanos: crate::model::DEFAULT_START_NANOS,
            foreign: Vec::new(),
        }
    }
}

impl HostBuilder {
    /// The VM id, which partitions shared data and queues (default empty, as in Envoy).
    ///
    /// ```
    /// # let module = sdk_host::doc_support::pass_through()?;
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
    /// # let module = sdk_host::doc_support::pass_through()?;
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
    /// # let module = sdk_host::doc_support::pass_through()?;
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
    /// # let module = sdk_host::doc_support::pass_through()?;
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
    /// # let module = sdk_host::doc_support::pass_through()?;
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
    /// # let module = sdk_host::doc_support::pass_through()?;
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
    /// # let module = sdk_host::doc_support::pass_through()?;
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
    /// # let module = sdk_host::doc_support::pass_through()?;
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

    /// Sets a property, by dotted path (`"xds.node.metadata.CLUSTER_ID"`).
    /// Overrides the defaults (`source.address`, `xds.node.id`, ...). As in
    /// Envoy 1.40, the node is under `xds.`: `node.id` is not found there.
    ///
    /// ```
    /// # let module = sdk_host::doc_support::pass_through()?;
    /// let host = sdk_host::Host::builder()
    ///     .property("xds.node.metadata.ISTIO_VERSION", "1.29.0")
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
    /// # let module = sdk_host::doc_support::pass_through()?;
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
    /// # let module = sdk_host::doc_support::pass_through()?;
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
    /// # let module = sdk_host::doc_support::pass_through()?;
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
    /// # let module = sdk_host::doc_support::pass_through()?;
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
        for (path, value) in crate::model::default_properties() {
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
    /// # let module = sdk_host::doc_support::pass_through()?;
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

impl Host {
    /// A builder with Envoy's defaults.
    ///
    /// ```
    /// # let module = sdk_host::doc_support::pass_through()?;
    /// let host = sdk_host::Host::builder().plugin_config("{}").start(&module)?;
    /// assert!(host.violations().is_empty());
    /// # Ok::<(), Box<dyn std::error::Error>>(())
    /// ```
    pub fn builder() -> HostBuilder {
        HostBuilder::default()
    }
}
