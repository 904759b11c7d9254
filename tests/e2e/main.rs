//! The built filters loaded into a real Envoy (V8 runtime), with real HTTP
//! traffic to real upstream servers. Every test starts its own Envoy and
//! upstreams on free ports and stops them when it ends, pass or fail.

// A test binary: helpers may fail loudly.
#![allow(clippy::unwrap_used, clippy::expect_used, clippy::panic)]

mod authz;
mod bad_traffic;
mod compose;
mod crd;
mod envoyfilter;
mod ext_authz;
mod failure_policy;
mod fault;
mod handoff;
mod mesh;
mod mtls;
mod rate_limit;
mod reconfigure;
mod rls;
mod router;
mod scenarios;
mod telemetry;
mod traffic_policy;
mod wasmhub;
