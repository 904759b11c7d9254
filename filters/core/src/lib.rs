//! Pure logic shared by the meshwasm Proxy-Wasm filters.
//!
//! Nothing here calls a host: filters gather inputs through small ports
//! ([`request::RequestAttributes`], [`properties::Properties`],
//! [`shared_counter::SharedData`], [`metrics::MetricHost`]), ask for a
//! decision, and carry it out with host calls. So the logic is tested
//! natively and on `wasm32`, and the filters stay thin.
//!
//! - [`config`], [`plan`]: reading any configuration document with the
//!   path and line of every error, and what every compiled plan offers.
//! - [`virtual_service`]: Istio's VirtualService spec, every field typed.
//! - [`string_match`], [`regex`], [`request_match`], [`hosts`],
//!   [`route_table`]: Istio's matching rules.
//! - [`percent`], [`duration`]: Istio's percentages and durations, and a seeded RNG.
//! - [`fault`]: fault injection decisions.
//! - [`router`], [`header_ops`]: routing decisions: weighted and sticky
//!   splits, rewrites, redirects, mirrors, CORS, header edits.
//! - [`authz`]: Istio's AuthorizationPolicy, checked against the path a
//!   backend would serve, with header rules.
//! - [`rate_limit`]: Envoy's local rate limiting: token buckets shared by
//!   every worker, descriptors from route rate-limit actions.
//! - [`telemetry`]: Istio's standard metrics and labels, peer metadata
//!   exchange, access logs and trace context, from a Telemetry spec.
//! - [`handoff`]: the request headers filters hand on to Envoy, which no
//!   client may send.
//! - [`properties`], [`metrics`]: Envoy's attributes, typed; counters,
//!   gauges and histograms with labels.
//! - [`header_map`], [`shared_counter`], [`delay_queue`]: helpers for the
//!   Proxy-Wasm side of a filter that are still pure functions.
#![deny(missing_docs)]
#![doc(test(attr(deny(warnings))))]

pub mod authz;
pub mod config;
pub mod delay_queue;
pub mod duration;
mod error;
pub mod fault;
pub mod handoff;
pub mod header_map;
pub mod header_ops;
pub mod hosts;
pub mod mesh;
pub mod metrics;
pub mod percent;
pub mod plan;
pub mod properties;
pub mod rate_limit;
pub mod regex;
pub mod request;
pub mod request_match;
pub mod route_table;
pub mod router;
pub mod shared_counter;
pub mod string_match;
pub mod telemetry;
pub mod virtual_service;

pub use error::{ConfigError, ConfigErrorKind, ConfigNote, FieldPath};
