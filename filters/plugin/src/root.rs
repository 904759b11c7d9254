//! The plugin root: one Proxy-Wasm root context lifecycle for every filter.

use crate::host::{Log, Metrics, entropy_seed};
use meshwasm_core::percent::Rng;
use meshwasm_core::plan::Plan;
use proxy_wasm::hostcalls;
use proxy_wasm::traits::{Context, HttpContext, RootContext, StreamContext};
use proxy_wasm::types::{Action, BufferType, ContextType, LogLevel, MetricType, PeerType};
use std::cell::{Cell, RefCell, RefMut};
use std::ops::Deref;
use std::rc::Rc;

/// A meshwasm filter: its plan, what it keeps per configuration, and its
/// stream context. [`main!`](crate::main) gives it the rest.
/// The filter type itself is its state for the whole VM (timers, queues),
/// made once with the root context by `Default`.
pub trait Filter: Default + 'static {
    /// The filter's name at the start of its log lines (`meshwasm fault`).
    const NAME: &'static str;
    /// What the configuration compiles into.
    type Plan: Plan;
    /// The configuration in force, built from a plan; a stream keeps the
    /// one it started with, so a new configuration never changes a
    /// request half-way.
    type Config: 'static;
    /// The filter's HTTP stream context.
    type Stream: HttpContext + 'static;

    /// Builds the configuration in force from a freshly compiled plan,
    /// whose metrics are defined already.
    fn configure(plugin: &Plugin<Self>, plan: Self::Plan, setup: Setup<'_>) -> Self::Config;

    /// The stream context for a new request.
    fn stream(plugin: &Rc<Plugin<Self>>, config: Rc<Self::Config>, context_id: u32)
    -> Self::Stream;

    /// The root context's tick, if the filter sets a tick period.
    fn on_tick(_plugin: &Plugin<Self>) {}

    /// Whether `config` makes the module Envoy's network (TCP) filter
    /// rather than an HTTP one: Envoy's streams are then connections,
    /// given to [`connection`](Self::connection).
    fn is_network(_config: &Self::Config) -> bool {
        false
    }

    /// The stream context for a new TCP connection, when
    /// [`is_network`](Self::is_network) says so; `None` passes it through.
    fn connection(
        _plugin: &Rc<Plugin<Self>>,
        _config: Rc<Self::Config>,
        _context_id: u32,
    ) -> Option<Box<dyn StreamContext>> {
        None
    }

    /// The answer to an HTTP call the root context made (from
    /// [`on_tick`](Self::on_tick)), with its header, body and trailer counts.
    fn on_root_http_call_response(
        _plugin: &Plugin<Self>,
        _token: u32,
        _headers: usize,
        _body_size: usize,
    ) {
    }
}

/// What [`Filter::configure`] gets besides the plan.
pub struct Setup<'a> {
    /// The plugin configuration as the host gave it.
    pub raw: &'a [u8],
    /// The plan's metrics, defined on the host.
    pub metrics: Metrics,
}

/// A filter's state shared by its root context and its streams: the
/// filter's own, the configuration in force and the RNG. One VM runs on
/// one thread, so nothing here is `Sync`.
pub struct Plugin<F: Filter> {
    filter: F,
    root_context_id: u32,
    config: RefCell<Option<Rc<F::Config>>>,
    rng: RefCell<Rng>,
}

impl<F: Filter> Plugin<F> {
    /// A filter run as a part of another one's root (the mesh module runs
    /// every behaviour's filter in one root): its state for the whole VM,
    /// an RNG seeded with `seed`, and no configuration until one is
    /// [installed](Self::install).
    ///
    /// # Examples
    ///
    /// ```ignore
    /// let router = Plugin::<Router>::part(root.root_context_id(), root.rng().bits());
    /// ```
    pub fn part(root_context_id: u32, seed: u64) -> Rc<Self> {
        Rc::new(Plugin {
            filter: F::default(),
            root_context_id,
            config: RefCell::new(None),
            rng: RefCell::new(Rng::with_seed(seed)),
        })
    }

    /// Puts `config` in force for the streams created from now on, or
    /// none: streams created then pass through.
    pub fn install(&self, config: Option<Rc<F::Config>>) {
        *self.config.borrow_mut() = config;
    }

    /// The root context's id, for host calls made on its behalf (callouts
    /// that must outlive the stream, timers).
    pub fn root_context_id(&self) -> u32 {
        self.root_context_id
    }

    /// The configuration in force, if one was accepted.
    pub fn config(&self) -> Option<Rc<F::Config>> {
        self.config.borrow().clone()
    }

    /// The filter's RNG, seeded from the host's entropy at VM start.
    pub fn rng(&self) -> RefMut<'_, Rng> {
        self.rng.borrow_mut()
    }

    /// The filter's logger.
    pub fn log(&self) -> Log {
        Log(F::NAME)
    }
}

impl<F: Filter> Deref for Plugin<F> {
    type Target = F;

    fn deref(&self) -> &F {
        &self.filter
    }
}

/// The root context of a filter, as [`main!`](crate::main) registers it.
pub struct PluginRoot<F: Filter> {
    plugin: Rc<Plugin<F>>,
    memory: MemoryGauge,
}

/// Streams between two readings of the VM's linear memory: one host call
/// per 1024 requests shows a leak without costing the traffic anything.
const MEMORY_SAMPLE_STREAMS: u32 = 1024;

/// The `meshwasm.<filter>.linear_memory_bytes` gauge (Envoy shows it under
/// `wasmcustom.`): the size of the VM's linear memory, which only grows,
/// read when the configuration is accepted and every
/// [`MEMORY_SAMPLE_STREAMS`] streams after. Each worker has its own VM;
/// the gauge holds the last one's reading.
#[derive(Default)]
struct MemoryGauge {
    id: Cell<Option<u32>>,
    streams: Cell<u32>,
}

impl MemoryGauge {
    fn define(&self, filter: &str) {
        if self.id.get().is_none() {
            let name = format!("{}.linear_memory_bytes", filter.replace(' ', "."));
            self.id
                .set(hostcalls::define_metric(MetricType::Gauge, &name).ok());
        }
        self.record();
    }

    fn on_stream(&self) {
        let n = self.streams.get().wrapping_add(1);
        self.streams.set(n);
        if n.is_multiple_of(MEMORY_SAMPLE_STREAMS) {
            self.record();
        }
    }

    fn record(&self) {
        if let Some(id) = self.id.get() {
            let _ = hostcalls::record_metric(id, linear_memory_bytes());
        }
    }
}

/// The size of this module's linear memory (memory 0), in bytes.
fn linear_memory_bytes() -> u64 {
    #[cfg(target_arch = "wasm32")]
    let pages = core::arch::wasm32::memory_size(0);
    #[cfg(not(target_arch = "wasm32"))]
    let pages = 0_usize;
    u64::try_from(pages).map_or(u64::MAX, |p| p.saturating_mul(65536))
}

impl<F: Filter> PluginRoot<F> {
    /// The root context with id `root_context_id`.
    pub fn new(root_context_id: u32) -> Self {
        PluginRoot {
            plugin: Rc::new(Plugin {
                filter: F::default(),
                root_context_id,
                config: RefCell::new(None),
                rng: RefCell::new(Rng::with_seed(0)),
            }),
            memory: MemoryGauge::default(),
        }
    }

    /// Compiles and installs a configuration; the error is the log line.
    fn configure(&self, raw: &[u8]) -> Result<(), String> {
        let log = self.plugin.log();
        let plan = F::Plan::from_json(raw).map_err(|e| format!("invalid configuration: {e}"))?;
        for note in plan.notes() {
            log.line(LogLevel::Warn, &note.to_string());
        }
        let summary = plan.summary();
        let metrics = Metrics::define(plan.metrics());
        let config = F::configure(&self.plugin, plan, Setup { raw, metrics });
        log.line(LogLevel::Info, &format!("configured: {summary}"));
        self.plugin.install(Some(Rc::new(config)));
        Ok(())
    }
}

impl<F: Filter> Context for PluginRoot<F> {
    fn on_http_call_response(&mut self, token: u32, headers: usize, body_size: usize, _: usize) {
        F::on_root_http_call_response(&self.plugin, token, headers, body_size);
    }
}

impl<F: Filter> RootContext for PluginRoot<F> {
    fn on_vm_start(&mut self, _vm_configuration_size: usize) -> bool {
        *self.plugin.rng() = Rng::with_seed(entropy_seed(self.plugin.log()));
        true
    }

    fn on_configure(&mut self, plugin_configuration_size: usize) -> bool {
        // The SDK's get_plugin_configuration traps on a refused call; a
        // configuration that cannot be read is refused like a bad one.
        let raw = match hostcalls::get_buffer(
            BufferType::PluginConfiguration,
            0,
            plugin_configuration_size,
        ) {
            Ok(raw) => raw.unwrap_or_default(),
            Err(status) => {
                self.plugin.log().line(
                    LogLevel::Error,
                    &format!("cannot read the plugin configuration: the host answered {status:?}"),
                );
                return false;
            }
        };
        match self.configure(&raw) {
            Ok(()) => {
                self.memory.define(F::NAME);
                true
            }
            Err(line) => {
                self.plugin.log().line(LogLevel::Error, &line);
                false
            }
        }
    }

    fn on_tick(&mut self) {
        F::on_tick(&self.plugin);
    }

    fn create_http_context(&self, context_id: u32) -> Option<Box<dyn HttpContext>> {
        self.memory.on_stream();
        let stream = self
            .plugin
            .config()
            .map(|config| F::stream(&self.plugin, config, context_id));
        Some(Box::new(Stream(stream)))
    }

    fn create_stream_context(&self, context_id: u32) -> Option<Box<dyn StreamContext>> {
        self.memory.on_stream();
        let connection = self
            .plugin
            .config()
            .and_then(|config| F::connection(&self.plugin, config, context_id));
        Some(Box::new(Connection(connection)))
    }

    fn get_type(&self) -> Option<ContextType> {
        let network = self.plugin.config().is_some_and(|c| F::is_network(&c));
        Some(if network {
            ContextType::StreamContext
        } else {
            ContextType::HttpContext
        })
    }
}

/// The request header that makes a test build trap.
#[cfg(feature = "trap-on-marked-request")]
const TRAP_HEADER: &str = "x-test-trap";

/// Panics, which `panic = "abort"` makes a Wasm trap, when the request
/// carries [`TRAP_HEADER`]: a test build's stand-in for a filter bug.
#[cfg(feature = "trap-on-marked-request")]
#[allow(clippy::panic, reason = "the test build's purpose is to trap")]
fn trap_if_marked() {
    use proxy_wasm::types::MapType;
    if let Ok(Some(_)) = hostcalls::get_map_value(MapType::HttpRequestHeaders, TRAP_HEADER) {
        panic!("{TRAP_HEADER}: trapping as asked (a test build)");
    }
}

/// A filter's TCP connection, or a pass-through.
struct Connection(Option<Box<dyn StreamContext>>);

impl Context for Connection {
    fn on_http_call_response(&mut self, token: u32, headers: usize, body: usize, trailers: usize) {
        if let Some(c) = &mut self.0 {
            c.on_http_call_response(token, headers, body, trailers);
        }
    }

    fn on_done(&mut self) -> bool {
        self.0.as_mut().is_none_or(|c| c.on_done())
    }
}

impl StreamContext for Connection {
    fn on_new_connection(&mut self) -> Action {
        self.0
            .as_mut()
            .map_or(Action::Continue, |c| c.on_new_connection())
    }

    fn on_downstream_data(&mut self, size: usize, end_of_stream: bool) -> Action {
        self.0.as_mut().map_or(Action::Continue, |c| {
            c.on_downstream_data(size, end_of_stream)
        })
    }

    fn on_downstream_close(&mut self, peer: PeerType) {
        if let Some(c) = &mut self.0 {
            c.on_downstream_close(peer);
        }
    }

    fn on_upstream_data(&mut self, size: usize, end_of_stream: bool) -> Action {
        self.0.as_mut().map_or(Action::Continue, |c| {
            c.on_upstream_data(size, end_of_stream)
        })
    }

    fn on_upstream_close(&mut self, peer: PeerType) {
        if let Some(c) = &mut self.0 {
            c.on_upstream_close(peer);
        }
    }

    fn on_log(&mut self) {
        if let Some(c) = &mut self.0 {
            c.on_log();
        }
    }
}

/// A filter's stream, or a pass-through when no configuration was ever
/// accepted (the SDK traps if a root creates no stream).
struct Stream<S>(Option<S>);

impl<S: HttpContext> Context for Stream<S> {
    fn on_http_call_response(&mut self, token: u32, headers: usize, body: usize, trailers: usize) {
        if let Some(s) = &mut self.0 {
            s.on_http_call_response(token, headers, body, trailers);
        }
    }

    fn on_grpc_stream_initial_metadata(&mut self, token: u32, headers: u32) {
        if let Some(s) = &mut self.0 {
            s.on_grpc_stream_initial_metadata(token, headers);
        }
    }

    fn on_grpc_stream_message(&mut self, token: u32, size: usize) {
        if let Some(s) = &mut self.0 {
            s.on_grpc_stream_message(token, size);
        }
    }

    fn on_grpc_stream_trailing_metadata(&mut self, token: u32, trailers: u32) {
        if let Some(s) = &mut self.0 {
            s.on_grpc_stream_trailing_metadata(token, trailers);
        }
    }

    fn on_grpc_call_response(&mut self, token: u32, status: u32, size: usize) {
        if let Some(s) = &mut self.0 {
            s.on_grpc_call_response(token, status, size);
        }
    }

    fn on_grpc_stream_close(&mut self, token: u32, status: u32) {
        if let Some(s) = &mut self.0 {
            s.on_grpc_stream_close(token, status);
        }
    }

    fn on_foreign_function(&mut self, function_id: u32, arguments_size: usize) {
        if let Some(s) = &mut self.0 {
            s.on_foreign_function(function_id, arguments_size);
        }
    }

    fn on_done(&mut self) -> bool {
        self.0.as_mut().is_none_or(Context::on_done)
    }
}

impl<S: HttpContext> HttpContext for Stream<S> {
    fn on_http_request_headers(&mut self, headers: usize, end_of_stream: bool) -> Action {
        #[cfg(feature = "trap-on-marked-request")]
        trap_if_marked();
        self.0.as_mut().map_or(Action::Continue, |s| {
            s.on_http_request_headers(headers, end_of_stream)
        })
    }

    fn on_http_request_body(&mut self, size: usize, end_of_stream: bool) -> Action {
        self.0.as_mut().map_or(Action::Continue, |s| {
            s.on_http_request_body(size, end_of_stream)
        })
    }

    fn on_http_request_trailers(&mut self, trailers: usize) -> Action {
        self.0
            .as_mut()
            .map_or(Action::Continue, |s| s.on_http_request_trailers(trailers))
    }

    fn on_http_response_headers(&mut self, headers: usize, end_of_stream: bool) -> Action {
        self.0.as_mut().map_or(Action::Continue, |s| {
            s.on_http_response_headers(headers, end_of_stream)
        })
    }

    fn on_http_response_body(&mut self, size: usize, end_of_stream: bool) -> Action {
        self.0.as_mut().map_or(Action::Continue, |s| {
            s.on_http_response_body(size, end_of_stream)
        })
    }

    fn on_http_response_trailers(&mut self, trailers: usize) -> Action {
        self.0
            .as_mut()
            .map_or(Action::Continue, |s| s.on_http_response_trailers(trailers))
    }

    fn on_log(&mut self) {
        if let Some(s) = &mut self.0 {
            s.on_log();
        }
    }
}
