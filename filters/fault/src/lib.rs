//! The meshwasm fault filter as its own Proxy-Wasm module: Istio HTTPFaultInjection (delay, abort) from a VirtualService spec.
//!
//! Its callbacks are [`meshwasm_stages::fault`], which the mesh module
//! also runs, chained with the other behaviours in one stream.

meshwasm_plugin::main!(meshwasm_stages::fault::Fault);
