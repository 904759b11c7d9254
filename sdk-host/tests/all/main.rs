//! sdk-host against real guests: the scripted probe (every hostcall, in
//! wasm and natively), hand-written WAT modules (WASI, load errors).
#![allow(clippy::unwrap_used, clippy::expect_used, clippy::panic)]

mod assemblyscript;
mod go;
mod hostcalls;
mod layout;
mod load;
mod wasi;
mod wat_modules;

use sdk_host::{Host, HostBuilder, WasmModule};
use std::sync::OnceLock;

/// The probe's .wasm, compiled once for all tests.
pub fn probe_module() -> &'static WasmModule {
    static MODULE: OnceLock<WasmModule> = OnceLock::new();
    MODULE.get_or_init(|| WasmModule::from_file(meshwasm_artifacts::SDK_HOST_PROBE_WASM).unwrap())
}

/// Which front end a host runs on.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Mode {
    Wasm,
    #[cfg(feature = "native")]
    Native,
}

/// The modes this build can run.
pub fn modes() -> Vec<Mode> {
    #[cfg(feature = "native")]
    return vec![Mode::Wasm, Mode::Native];
    #[cfg(not(feature = "native"))]
    vec![Mode::Wasm]
}

/// Starts the probe with this script as its plugin configuration.
pub fn start(mode: Mode, builder: HostBuilder, script: &serde_json::Value) -> Host {
    let builder = builder.plugin_config(script.to_string());
    match mode {
        Mode::Wasm => builder.start(probe_module()).unwrap(),
        #[cfg(feature = "native")]
        Mode::Native => builder
            .start_native(sdk_host::native_module!(sdk_host_probe))
            .unwrap(),
    }
}

/// The probe's result lines for one callback, without the callback name.
pub fn results(host: &Host, callback: &str) -> Vec<String> {
    let prefix = format!("{callback} ");
    host.logs()
        .iter()
        .filter_map(|r| r.message.strip_prefix(&prefix).map(str::to_string))
        .collect()
}
