//! The meshwasm header-match filter as its own Proxy-Wasm module: Istio AuthorizationPolicy access rules and header rules, checked against the path a backend would serve.
//!
//! Its callbacks are [`meshwasm_stages::header_match`], which the mesh module
//! also runs, chained with the other behaviours in one stream.

meshwasm_plugin::main!(meshwasm_stages::header_match::HeaderMatch);
