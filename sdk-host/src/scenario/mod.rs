//! Scenario files: a plugin's configuration, the requests to play, and what
//! should come back. The same file runs in sdk-host ([`Scenario::run`]) and
//! in a real Envoy (meshwasm-local's `scenario` module), and both runs are
//! judged by the same [`Scenario::judge`], so a difference between the two
//! shows up as a failure on one side.
//!
//! ```yaml
//! description: jason gets a 500, everyone else reaches the upstream
//! filter: fault                  # resolved by the runner (a path by default)
//! rootId: ""                     # optional, as are vmId and vmConfig
//! config: {hosts: ["*"], http: [...]}   # a string is passed as is; anything else as JSON
//! requests:
//!   - name: jason
//!     headers: {":path": /ratings/0, ":authority": ratings, cookie: user=jason}
//!     body: optional text, or {repeat: "x", times: 65536}
//!     response: {status: 200, headers: {x-upstream: v1}, body: "v1"}  # the upstream's answer
//!     expect:
//!       status: 500
//!       headers: {content-type: text/plain, x-removed: null}
//!       body: fault filter abort
//!       reachesUpstream: false
//!       upstreamHeaders: {x-added: "yes"}
//!       delay: 2s                # the answer came after [2 s - 1 ms, 3 s)
//! metrics: {meshwasm.fault.aborts_injected: 1}
//! logs: ["a message", {level: warning, message: "another, later"}]
//! violations: ["read after the callback"]   # sdk-host's Envoy-behaviour reports
//! ```
//!
//! `format` is the file's schema, `load` reads and checks files, `run`
//! plays them and judges what came back.

mod format;
mod load;
mod run;

pub use format::{
    Body, CalloutAnswer, ClusterAnswers, DELAY_TOLERANCE, EARLY_TOLERANCE, Exchange, Expect,
    ExpectedLog, GrpcAnswer, HeaderValues, Observed, PATIENCE, PluginEntry, Report, Scenario,
    ScenarioError, UPSTREAM_CLUSTER, UpstreamResponse, UpstreamSaw, parse_duration,
};
pub use load::{from_document, load_yaml, yaml_document};
pub use run::UNREACHABLE_BODY;
