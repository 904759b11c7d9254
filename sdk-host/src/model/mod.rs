//! The host model: everything one Envoy-like VM keeps, in Rust types, with
//! one `impl HostState` block per ABI domain. `hostcalls` moves bytes
//! between guest memory and these methods; `host` drives the callbacks.

mod attributes;
mod buffers;
mod callouts;
mod contexts;
mod logs;
mod maps;
mod metrics;
mod shared;
mod state;
mod streams;

pub(crate) use attributes::defaults as default_properties;
pub(crate) use maps::{MapAccess, parse_pairs};
pub use state::DEFAULT_START_NANOS;
pub(crate) use state::{
    ContextKind, Deferred, Dir, Flow, FlowState, ForeignFunction, HostState, HttpStream, Plugin,
    TcpStream, VmSettings,
};
