//! The front ends that run a guest: `wasm` (wasmtime, any `.wasm`) and
//! `native` (a filter linked into the test binary). Each registers the
//! hostcall tables of `crate::hostcalls` its own way; the driver in
//! `crate::host` reaches either through [`Runtime`].

#[cfg(feature = "native")]
pub mod native;
pub(crate) mod wasm;

use crate::error::GuestTrap;
use crate::model::HostState;
use crate::types::Callback;

/// A front end: wasmtime or native.
pub(crate) trait Runtime {
    fn state(&mut self) -> &mut HostState;
    fn state_ref(&self) -> &HostState;
    /// Runs the module's start functions, as Envoy does before any plugin.
    fn initialize(&mut self) -> Result<(), GuestTrap>;
    /// Calls an export with the ABI's arguments; `None` when the guest
    /// does not export it (Envoy then skips the callback).
    fn call(&mut self, callback: Callback, args: &[u32]) -> Result<Option<u32>, GuestTrap>;
}
