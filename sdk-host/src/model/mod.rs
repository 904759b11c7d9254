//! The host model: `state` holds everything one Envoy-like VM keeps, in
//! Rust types; each other file is the `impl HostState` block of one ABI
//! domain, where Envoy's rules for it are modelled. `hostcalls` moves bytes
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
pub(crate) use state::{
    ContextKind, Deferred, Dir, Flow, FlowState, ForeignFunction, HostState, HttpStream, Plugin,
    TcpStream, VmSettings,
};
pub use state::{DEFAULT_START_NANOS, MONOTONIC_START_NANOS};
