//! Each meshwasm behaviour's Proxy-Wasm callbacks, as a
//! [`meshwasm_plugin::Filter`]: its plan wiring, its VM state and its
//! stream context.
//!
//! A filter crate (`meshwasm-router`, ...) runs one of them alone, as its
//! own module. The mesh module (`meshwasm-mesh`) runs them all in one VM
//! and one stream, in Istio's filter order, sharing one read of the
//! request's header map. For that, each stream offers its steps as
//! methods besides its `HttpContext` callbacks:
//! - `request_headers(&mut HostRequest, ...)` decides over a request view
//!   the caller owns, so that the stages of one stream read the header map
//!   once;
//! - the answer to a call the stage made (the external authorizer's, the
//!   rate limit service's) is carried out by a method that says whether
//!   the request may go on, rather than resuming it, so the next stage
//!   runs before the request is resumed.
//!
//! Decisions are `meshwasm-core`'s; the host calls are `meshwasm-plugin`'s.

pub mod fault;
pub mod header_match;
pub mod rate_limit;
pub mod router;
pub mod telemetry;
