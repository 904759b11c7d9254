//! Every Proxy-Wasm module of the workspace, built for `wasm32-wasip1` with
//! the `wasm` profile by this crate's build script, from the current sources.
//!
//! The list comes from the workspace: every `cdylib` crate. Those under
//! `filters/` are in [`FILTERS`]; each module also has a constant named
//! after its package (`meshwasm-fault` is [`FAULT_WASM`], `sdk-host-probe`
//! is [`SDK_HOST_PROBE_WASM`]).
//!
//! ```
//! let fault = meshwasm_artifacts::filter("fault").unwrap();
//! assert_eq!(fault.package, "meshwasm-fault");
//! assert!(fault.wasm.ends_with("wasm32-wasip1/wasm/meshwasm_fault.wasm"));
//! assert_eq!(std::fs::read(fault.wasm).unwrap()[..4], *b"\0asm");
//! assert!(fault.trapping.ends_with("trapping/wasm32-wasip1/wasm/meshwasm_fault.wasm"));
//! ```
#![deny(missing_docs)]

/// A filter module.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Artifact {
    /// The filter's name: its package without `meshwasm-` (`header-match`).
    pub name: &'static str,
    /// Its package (`meshwasm-header-match`).
    pub package: &'static str,
    /// The path of its `.wasm`.
    pub wasm: &'static str,
    /// The same filter built with the test-only `trap-on-marked-request`
    /// feature of `meshwasm-plugin`: a request with the `x-test-trap`
    /// header makes the VM trap, as a filter bug would.
    pub trapping: &'static str,
}

include!(concat!(env!("OUT_DIR"), "/artifacts.rs"));

/// The filter named `name` (`fault`, `router`, ...).
pub fn filter(name: &str) -> Option<&'static Artifact> {
    FILTERS.iter().find(|a| a.name == name)
}
