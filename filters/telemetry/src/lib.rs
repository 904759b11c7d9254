//! The meshwasm telemetry filter as its own Proxy-Wasm module: Istio's standard metrics with Istio's labels, peer metadata exchange, access logs and trace context, from a Telemetry spec.
//!
//! Its callbacks are [`meshwasm_stages::telemetry`], which the mesh module
//! also runs, chained with the other behaviours in one stream.

meshwasm_plugin::main!(meshwasm_stages::telemetry::Telemetry);
