//! sdk-host: a Proxy-Wasm ABI 0.2.1 host for tests.
//!
//! One host model plays Envoy's part: root contexts per plugin, HTTP and
//! TCP streams with Envoy's buffering rules, header maps, properties,
//! shared data and queues, metrics, a manual clock with ticks, HTTP and
//! gRPC callouts, logs, local responses and foreign functions. Two front
//! ends drive it:
//! - [`WasmModule`] runs any Proxy-Wasm `.wasm` (Rust, Go, AssemblyScript,
//!   C++) on wasmtime, with the WASI calls Envoy answers;
//! - with the `native` feature, the `proxy_*` hostcalls exist as
//!   `extern "C"` symbols, so a filter crate links into its own
//!   `cargo test` and runs through the same [`Host`] API
//!   (`native_module!`).
//!
//! Where a guest does something Envoy would refuse or ignore, the hostcall
//! returns what Envoy returns and the host records a [`Violation`].
//!
//! ```no_run
//! use sdk_host::{Host, WasmModule};
//! let module = WasmModule::from_file("target/wasm32-wasip1/wasm/my_filter.wasm")?;
//! let mut host = Host::builder().plugin_config(r#"{"deny": "/admin"}"#).start(&module)?;
//! let stream = host.new_http_stream()?;
//! host.send_request_headers(stream, &[(":method", "GET"), (":path", "/admin")], true)?;
//! assert_eq!(host.http(stream)?.local_response().map(|r| r.status), Some(403));
//! assert!(host.violations().is_empty());
//! # Ok::<(), Box<dyn std::error::Error>>(())
//! ```

#![deny(missing_docs)]
#![doc(test(attr(deny(warnings))))]

mod abi;
mod attributes;
mod error;
mod headers;
mod host;
#[cfg(feature = "native")]
#[doc(hidden)]
pub mod native;
mod properties;
mod proxy;
mod runtime;
pub mod scenario;
mod state;
mod types;
mod wasi;
mod wasm;

pub use error::{Error, LoadError};
pub use headers::{HeaderMap, PairsError};
pub use host::{CalloutResponse, ContextId, Host, HostBuilder, HttpView, TcpView};
pub use properties::PropertyValue;
pub use proxy::{MetricValue, Proxy};
pub use runtime::GuestTrap;
pub use state::{
    Callback, DEFAULT_START_NANOS, Forwarded, GrpcCall, HttpCall, LocalResponse, LogRecord,
    Violation,
};
pub use types::{Action, BufferType, LogLevel, MapType, MetricType, PeerType, Status, StreamType};
pub use wasm::WasmModule;
