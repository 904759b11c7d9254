//! Modules for the doc examples, so that each example shows what it is
//! about rather than the same WAT prelude. Not part of the API.

use crate::WasmModule;
use std::error::Error;

/// What every example module has: memory, the ABI version export, and an
/// allocator that always answers the same 64 KiB page.
const PRELUDE: &str = r#"(memory (export "memory") 1)
    (func (export "proxy_abi_version_0_2_1"))
    (func (export "malloc") (param i32) (result i32) (i32.const 1024))"#;

/// A module of `fields` (WAT module fields, imports first) and the prelude.
///
/// ```
/// let module = sdk_host::doc_support::module("hold.wasm", r#"
///     (func (export "proxy_on_request_headers") (param i32 i32 i32) (result i32) (i32.const 1))"#)?;
/// assert_eq!(module.name(), "hold.wasm");
/// # Ok::<(), Box<dyn std::error::Error>>(())
/// ```
///
/// # Errors
///
/// The text is not WAT, or the module is not one sdk-host loads.
pub fn module(name: &str, fields: &str) -> Result<WasmModule, Box<dyn Error>> {
    let text = format!("(module {fields}\n    {PRELUDE})");
    Ok(WasmModule::from_bytes(name, &wat::parse_str(text)?)?)
}

/// A module that exports no callback: Envoy lets everything through.
///
/// ```
/// let module = sdk_host::doc_support::pass_through()?;
/// let host = sdk_host::Host::builder().start(&module)?;
/// assert!(host.violations().is_empty());
/// # Ok::<(), Box<dyn std::error::Error>>(())
/// ```
///
/// # Errors
///
/// None in practice; the signature matches [`module`].
pub fn pass_through() -> Result<WasmModule, Box<dyn Error>> {
    module("pass.wasm", "")
}

/// A module that logs `message` at `level` (0 trace .. 5 critical) from
/// `proxy_on_vm_start`.
///
/// ```
/// let module = sdk_host::doc_support::logs_on_start(3, "ready")?;
/// let host = sdk_host::Host::builder().start(&module)?;
/// assert_eq!(host.logs()[0].message, "ready");
/// # Ok::<(), Box<dyn std::error::Error>>(())
/// ```
///
/// # Errors
///
/// As [`module`].
pub fn logs_on_start(level: u32, message: &str) -> Result<WasmModule, Box<dyn Error>> {
    let fields = format!(
        r#"(import "env" "proxy_log" (func $log (param i32 i32 i32) (result i32)))
        (data (i32.const 64) "{message}")
        (func (export "proxy_on_vm_start") (param i32 i32) (result i32)
            (drop (call $log (i32.const {level}) (i32.const 64) (i32.const {len})))
            (i32.const 1))"#,
        len = message.len()
    );
    module("log.wasm", &fields)
}
