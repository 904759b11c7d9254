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

// The layers, bottom first: a module uses only the layers above it
// (`tests/all/layout.rs` checks it).
// 1. The ABI's vocabulary and header maps.
mod headers;
mod types;
// 2. What a host records for a test, and the errors it returns.
mod records;
// (errors carry records)
mod error;
// 3. State outside one VM's model: properties, and what VMs share.
mod properties;
mod proxy;
// 4. The host model, one `impl HostState` per ABI domain.
mod model;
// 5. The hostcalls, on guest memory, once for both front ends.
mod hostcalls;
// 6. The front ends: wasmtime and native.
mod runtime;
// 7. The test API, and scenario files on top of it.
mod host;
pub mod scenario;

#[doc(hidden)]
pub mod doc_support;

pub use error::{Error, GuestTrap, LoadError};
pub use headers::{HeaderMap, PairsError};
pub use host::{ContextId, Host, HostBuilder, HttpView, TcpView};
pub use model::{DEFAULT_START_NANOS, MONOTONIC_START_NANOS};
pub use properties::PropertyValue;
pub use proxy::{MetricValue, Proxy};
pub use records::{
    CalloutResponse, Forwarded, GrpcCall, HttpCall, LocalResponse, LogRecord, Violation,
};
#[cfg(feature = "native")]
#[doc(hidden)]
pub use runtime::native;
pub use runtime::wasm::WasmModule;
pub use types::{
    Action, BufferType, Callback, LogLevel, MapType, MetricType, PeerType, Status, StreamType,
};
