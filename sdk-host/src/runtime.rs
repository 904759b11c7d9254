//! What the driver needs from a front end: the host state, and a way to
//! call the guest's exports.

use crate::state::{Callback, HostState};
use std::fmt;

/// The guest trapped (a panic under `panic = "abort"`, `unreachable`, an
/// out-of-bounds access, `proc_exit`): Envoy marks such a VM failed.
///
/// ```
/// # let wat = r#"(module (memory (export "memory") 1) (func (export "proxy_abi_version_0_2_1"))
/// #   (func (export "malloc") (param i32) (result i32) (i32.const 1024))
/// #   (func (export "proxy_on_vm_start") (param i32 i32) (result i32) unreachable))"#;
/// # let module = sdk_host::WasmModule::from_bytes("crash.wasm", &wat::parse_str(wat)?)?;
/// let err = sdk_host::Host::builder().start(&module).unwrap_err();
/// let sdk_host::Error::Trap(trap) = err else { panic!("not a trap: {err}") };
/// assert_eq!(trap.export, "proxy_on_vm_start");
/// # Ok::<(), Box<dyn std::error::Error>>(())
/// ```
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct GuestTrap {
    /// The export that was running.
    pub export: &'static str,
    /// The runtime's description, with the guest backtrace when there is one.
    pub message: String,
}

impl GuestTrap {
    pub(crate) fn new(export: &'static str, error: &dyn fmt::Display) -> GuestTrap {
        GuestTrap {
            export,
            message: format!("{error:#}"),
        }
    }
}

impl std::error::Error for GuestTrap {}

impl fmt::Display for GuestTrap {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "the guest trapped in {}: {}", self.export, self.message)
    }
}

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
