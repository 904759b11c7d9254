//! Run meshwasm filters in a real Envoy on 127.0.0.1, with real upstream
//! HTTP servers, and drive traffic through them.
//!
//! The local demo (`meshwasm-demo`) and the end-to-end tests in `tests/`
//! use this same code, so what the demo shows is what the tests check.
//!
//! ```no_run
//! use meshwasm_local::{envoy::{Bootstrap, Envoy, WasmFilter}, upstream::Upstream};
//!
//! # async fn demo() -> anyhow::Result<()> {
//! let upstream = Upstream::start("ratings-v1").await?;
//! let config = r#"{"hosts": ["*"], "http": [{"fault": {"abort": {"httpStatus": 503, "percentage": {"value": 100}}}}]}"#;
//! let envoy = Envoy::start(
//!     Bootstrap::new(upstream.addr()).filter(WasmFilter::new("fault", meshwasm_artifacts::FAULT_WASM, config)),
//! )
//! .await?;
//! let status = reqwest::get(envoy.url("/")).await?.status();
//! assert_eq!(status, 503);
//! # Ok(()) }
//! ```
#![deny(missing_docs)]

pub mod bench;
pub mod configs;
pub mod envoy;
pub mod grpc_upstream;
pub mod mesh;
pub mod prometheus;
pub mod registry;
pub mod scenario;
pub mod traffic;
pub mod upstream;
