//! Modules Envoy would refuse are refused with an error naming the module
//! and the problem.

use sdk_host::{LoadError, WasmModule};

fn wat(text: &str) -> Vec<u8> {
    wat::parse_str(text).unwrap()
}

#[test]
fn a_missing_file_is_named() {
    let err = WasmModule::from_file("/nonexistent/filter.wasm").unwrap_err();
    assert!(matches!(err, LoadError::Read { ref path, .. } if path == "/nonexistent/filter.wasm"));
    assert!(
        err.to_string()
            .starts_with("/nonexistent/filter.wasm: No such file"),
        "{err}"
    );
}

#[test]
fn bytes_that_are_not_wasm_are_refused() {
    let err = WasmModule::from_bytes("config.json", b"{}").unwrap_err();
    assert_eq!(
        err.to_string(),
        "config.json: not a WebAssembly module (no \\0asm header)"
    );
}

#[test]
fn a_module_without_the_abi_version_export_is_not_proxy_wasm() {
    let bytes = wat(r#"(module (memory (export "memory") 1))"#);
    let err = WasmModule::from_bytes("plain.wasm", &bytes).unwrap_err();
    assert_eq!(
        err.to_string(),
        "plain.wasm: not a Proxy-Wasm module: it does not export proxy_abi_version_0_2_1 (or 0_2_0, 0_1_0)"
    );
}

#[test]
fn an_import_envoy_lacks_is_refused_as_envoy_refuses_it() {
    let bytes = wat(r#"(module
            (import "env" "proxy_teleport" (func (param i32) (result i32)))
            (memory (export "memory") 1)
            (func (export "proxy_abi_version_0_2_1")))"#);
    let err = WasmModule::from_bytes("odd.wasm", &bytes).unwrap_err();
    assert_eq!(
        err.to_string(),
        "odd.wasm: imports env.proxy_teleport, which Envoy does not provide (Envoy refuses to load it)"
    );
}

#[test]
fn an_abi_0_2_0_module_loads() {
    let bytes = wat(r#"(module
            (memory (export "memory") 1)
            (func (export "malloc") (param i32) (result i32) (i32.const 64))
            (func (export "proxy_abi_version_0_2_0")))"#);
    let module = WasmModule::from_bytes("old.wasm", &bytes).unwrap();
    assert_eq!(module.abi_version(), "proxy_abi_version_0_2_0");
    sdk_host::Host::builder().start(&module).unwrap();
}

/// A module logging from the start section or from `_initialize`: Envoy
/// 1.40 crashes on the first and runs the second.
fn logging_from(start: &str) -> Vec<u8> {
    wat(&crate::wat_modules::logging_from(start))
}

#[test]
fn a_hostcall_from_the_start_function_is_refused_as_it_crashes_envoy() {
    let module = WasmModule::from_bytes("start.wasm", &logging_from("(start $say)")).unwrap();
    let err = sdk_host::Host::builder().start(&module).unwrap_err();
    assert!(
        err.to_string().contains(
            "the module's start function called a host function, which crashes Envoy 1.40"
        ),
        "{err}"
    );

    let module = WasmModule::from_bytes(
        "init.wasm",
        &logging_from(r#"(export "_initialize" (func $say))"#),
    )
    .unwrap();
    let host = sdk_host::Host::builder().start(&module).unwrap();
    assert_eq!(host.log_lines(sdk_host::LogLevel::Info), ["starting"]);
}
