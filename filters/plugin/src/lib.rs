//! The Proxy-Wasm side of every meshwasm filter, written once.
//!
//! A filter crate implements [`Filter`]: which plan its configuration
//! compiles into (a [`Plan`](meshwasm_core::plan::Plan) in
//! `meshwasm-core`), what it keeps per configuration, and its stream
//! context. [`main!`] then gives it the whole plugin lifecycle:
//! - `on_vm_start` seeds the filter's RNG from the host's entropy, once, so
//!   that sampling a request never crosses the VM boundary;
//! - `on_configure` reads the configuration with a host call that cannot
//!   trap, compiles it, logs the plan's notes and a summary (or one error
//!   line naming the field, and refuses it), defines the plan's metrics,
//!   and swaps the new configuration in: streams already running keep the
//!   one they started with;
//! - every stream gets the configuration in force when it began;
//! - the `meshwasm.<filter>.linear_memory_bytes` gauge holds the VM's
//!   linear memory, read at configuration and every 1024 streams, so a
//!   leak shows in Envoy's stats.
//!
//! The `trap-on-marked-request` feature, for tests only, makes a request
//! with the `x-test-trap` header trap the VM, as a filter bug would.
//!
//! The rest are the host calls every filter makes, in the shape the filters
//! need and without the SDK's panics on host statuses:
//! - [`headers`]: a header map in one call, parsed in place; header edits;
//!   core's [`RequestAttributes`](meshwasm_core::request::RequestAttributes)
//!   port over them;
//! - [`reply`]: local responses with details and a gRPC status;
//! - [`host`]: core's properties, shared data and metrics ports, bodies,
//!   the clock, entropy and the log.
//!
//! Nothing here panics: a refused host call is logged or reported.
//!
//! # Examples
//!
//! A whole filter that answers 403 to paths its configuration lists (the
//! doc's own plan stands in for one of `meshwasm-core`):
//!
//! ```
//! use meshwasm_core::config::{self, Document};
//! use meshwasm_core::metrics::{MetricRef, MetricSpec};
//! use meshwasm_core::plan::Plan;
//! use meshwasm_core::request::RequestAttributes;
//! use meshwasm_core::{ConfigError, ConfigNote};
//! use meshwasm_plugin::headers::HostRequest;
//! use meshwasm_plugin::reply::{LocalReply, send_local_reply};
//! use meshwasm_plugin::{Filter, Metrics, Plugin, Setup};
//! use proxy_wasm::traits::{Context, HttpContext};
//! use proxy_wasm::types::Action;
//! use std::rc::Rc;
//!
//! #[derive(serde::Deserialize)]
//! #[serde(rename_all = "camelCase", deny_unknown_fields)]
//! struct DenyPaths {
//!     deny: Vec<String>,
//! }
//!
//! const DENIED: MetricRef = MetricRef(0);
//!
//! impl Plan for DenyPaths {
//!     const DOCUMENT: Document = Document { name: "a deny list", example: r#"{"deny": ["/admin"]}"#, list_key: None };
//!     fn from_json(json: &[u8]) -> Result<Self, ConfigError> {
//!         config::parse(json, Self::DOCUMENT)
//!     }
//!     fn notes(&self) -> &[ConfigNote] {
//!         &[]
//!     }
//!     fn summary(&self) -> String {
//!         format!("{} paths denied", self.deny.len())
//!     }
//!     fn metrics(&self) -> Vec<MetricSpec> {
//!         vec![MetricSpec::counter("deny.denied")]
//!     }
//! }
//!
//! #[derive(Default)]
//! struct Deny;
//!
//! struct Configured {
//!     plan: DenyPaths,
//!     metrics: Metrics,
//! }
//!
//! struct DenyStream(Rc<Configured>);
//!
//! impl Filter for Deny {
//!     const NAME: &'static str = "deny";
//!     type Plan = DenyPaths;
//!     type Config = Configured;
//!     type Stream = DenyStream;
//!     fn configure(_: &Plugin<Self>, plan: DenyPaths, setup: Setup<'_>) -> Configured {
//!         Configured { plan, metrics: setup.metrics }
//!     }
//!     fn stream(_: &Rc<Plugin<Self>>, config: Rc<Configured>, _: u32) -> DenyStream {
//!         DenyStream(config)
//!     }
//! }
//!
//! impl Context for DenyStream {}
//! impl HttpContext for DenyStream {
//!     fn on_http_request_headers(&mut self, _: usize, _: bool) -> Action {
//!         let mut request = HostRequest::new(meshwasm_plugin::Log(Deny::NAME));
//!         let path = request.header(":path").unwrap_or_default().into_owned();
//!         if !self.0.plan.deny.contains(&path) {
//!             return Action::Continue;
//!         }
//!         self.0.metrics.add(DENIED, 1);
//!         let reply = LocalReply { status: 403, details: "denied", body: b"denied", grpc_status: None };
//!         match send_local_reply(reply, []) {
//!             Ok(()) => Action::Pause,
//!             Err(_) => Action::Continue,
//!         }
//!     }
//! }
//!
//! meshwasm_plugin::main!(Deny);
//!
//! // Played natively in sdk-host, as Envoy would call it (the doctest
//! // itself is the module):
//! let mut host = sdk_host::Host::builder()
//!     .plugin_config(r#"{"deny": ["/admin"]}"#)
//!     .start_native(sdk_host::native_module!(meshwasm_plugin))
//!     .unwrap();
//! assert_eq!(host.log_lines(sdk_host::LogLevel::Info), ["deny: configured: 1 paths denied"]);
//! let stream = host.new_http_stream().unwrap();
//! host.send_request_headers(stream, &[(":path", "/admin")], true).unwrap();
//! assert_eq!(host.http(stream).unwrap().local_response().map(|r| r.status), Some(403));
//! assert_eq!(host.counter("deny.denied"), Some(1));
//!
//! // A bad configuration is refused with one line naming the field.
//! let Err(sdk_host::Error::Rejected { logs, .. }) = sdk_host::Host::builder()
//!     .plugin_config(r#"{"deny": "/admin"}"#)
//!     .start_native(sdk_host::native_module!(meshwasm_plugin))
//! else {
//!     panic!("a bad configuration was accepted")
//! };
//! assert_eq!(
//!     logs.last().map(|l| l.message.as_str()),
//!     Some("deny: invalid configuration: deny: invalid type: string \"/admin\", \
//!           expected a sequence (line 1, column 17)")
//! );
//! ```

pub mod headers;
pub mod host;
pub mod reply;
mod root;

pub use host::{Log, Metrics};
pub use root::{Filter, Plugin, PluginRoot, Setup};

/// The SDK, for the traits a filter's stream implements and for [`main!`].
pub use proxy_wasm;

/// Makes `$filter` the module's plugin: every root context Envoy creates
/// is a [`PluginRoot`] of it.
///
/// # Examples
///
/// ```ignore
/// meshwasm_plugin::main!(FaultFilter);
/// ```
#[macro_export]
macro_rules! main {
    ($filter:ty) => {
        $crate::proxy_wasm::main! {{
            $crate::proxy_wasm::set_root_context(|context_id| {
                ::std::boxed::Box::new($crate::PluginRoot::<$filter>::new(context_id))
            });
        }}
    };
}
