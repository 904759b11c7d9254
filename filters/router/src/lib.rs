//! The meshwasm router filter as its own Proxy-Wasm module: Istio VirtualService HTTP routing (weighted and sticky splits, rewrites, redirects, mirrors, CORS, header edits, timeouts and retries).
//!
//! Its callbacks are [`meshwasm_stages::router`], which the mesh module
//! also runs, chained with the other behaviours in one stream.

meshwasm_plugin::main!(meshwasm_stages::router::Router);
