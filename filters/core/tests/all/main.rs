//! meshwasm-core's behaviour, run natively (`cargo test`) and compiled to
//! wasm32 under wasm-bindgen-test, so the filters' logic is checked as it
//! runs inside the proxy.

// A test binary: helpers may fail loudly.
#![allow(clippy::unwrap_used, clippy::expect_used, clippy::panic)]

mod config_errors;
#[cfg(not(target_family = "wasm"))]
mod config_paths;
mod delay_queue;
mod fault_decisions;
mod header_map;
mod matching;
#[cfg(not(target_family = "wasm"))]
mod no_panics;
mod parsing;
mod ports;
mod rate_limit;
mod regex_prefilter;
mod routing;
mod shared_counter;
mod telemetry;

use meshwasm_core::request::StaticRequest;

/// A GET for `path` on `authority`.
pub fn request(authority: &str, path: &str) -> StaticRequest {
    StaticRequest::get(path).set_header(":authority", authority)
}
