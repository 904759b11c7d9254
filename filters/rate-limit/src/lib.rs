//! The meshwasm rate-limit filter as its own Proxy-Wasm module: Envoy's local rate limiting from a LocalRateLimit config, one bucket across every worker.
//!
//! Its callbacks are [`meshwasm_stages::rate_limit`], which the mesh module
//! also runs, chained with the other behaviours in one stream.

meshwasm_plugin::main!(meshwasm_stages::rate_limit::RateLimit);
