//! Router filter cost in a real Envoy, against two baselines measured in
//! the same run: Envoy routing to one cluster with no filter, and Envoy's
//! own `weighted_clusters` route doing the same 80/20 canary split.
//!
//! Run: `cargo bench -p meshwasm-e2e --bench router [-- instructions|cpu]`.

#![allow(clippy::unwrap_used, clippy::expect_used, clippy::panic)]

use meshwasm_artifacts::ROUTER_WASM;
use meshwasm_local::bench::{self, Case, Traffic};
use meshwasm_local::envoy::{self, Bootstrap, WasmFilter};
use meshwasm_local::upstream::Upstream;

/// The Istio example's 80/20 canary.
const CANARY: &str = r#"{"hosts": ["*"], "http": [{"route": [
  {"destination": {"host": "web", "port": {"number": 5005}, "subset": "v1"}, "weight": 80},
  {"destination": {"host": "web", "port": {"number": 5005}, "subset": "v2"}, "weight": 20}]}]}"#;

/// Istio's "jason sees v2" rule; the traffic is not jason's.
const JASON: &str = r#"{"hosts": ["*"], "http": [
  {"match": [{"headers": {"end-user": {"exact": "jason"}}}],
   "route": [{"destination": {"host": "web", "port": {"number": 5005}, "subset": "v2"}}]},
  {"route": [{"destination": {"host": "web", "port": {"number": 5005}, "subset": "v1"}}]}]}"#;

/// The canary, sticky by the `user` cookie.
const STICKY: &str = r#"{"hosts": ["*"], "meshwasm": {"router": {"sticky": {"httpCookie": {"name": "user"}}}},
  "http": [{"route": [
  {"destination": {"host": "web", "port": {"number": 5005}, "subset": "v1"}, "weight": 80},
  {"destination": {"host": "web", "port": {"number": 5005}, "subset": "v2"}, "weight": 20}]}]}"#;

const V1: &str = "outbound|5005|v1|web";
const V2: &str = "outbound|5005|v2|web";

#[tokio::main(flavor = "multi_thread", worker_threads = 2)]
async fn main() {
    println!(
        "meshwasm router filter benchmarks, Envoy {} (V8), one worker\n",
        envoy::ENVOY_VERSION
    );
    let wanted = bench::wanted_parts();
    let (v1, v2) = (
        Upstream::start("v1").await.unwrap(),
        Upstream::start("v2").await.unwrap(),
    );
    if wanted("instructions") && bench::have_valgrind() {
        bench::instructions_per_request(cases(&v1, &v2), 500, &traffic())
            .await
            .unwrap();
        println!();
    }
    if wanted("cpu") {
        bench::cpu_per_request(cases(&v1, &v2), 30_000, &traffic())
            .await
            .unwrap();
    }
}

fn cases(v1: &Upstream, v2: &Upstream) -> Vec<Case> {
    let wired = || {
        Bootstrap::new(v1.addr())
            .cluster(V1, v1.addr())
            .cluster(V2, v2.addr())
            .route_by_header("x-meshwasm-cluster")
    };
    let router = |config: &str| wired().filter(WasmFilter::new("router", ROUTER_WASM, config));
    vec![
        Case::new(
            "no filter, one cluster (baseline)",
            Bootstrap::new(v1.addr()),
        ),
        Case::new(
            "no filter, Envoy weighted_clusters 80/20",
            Bootstrap::new(v1.addr())
                .cluster(V1, v1.addr())
                .cluster(V2, v2.addr())
                .weighted_route(&[(V1, 80), (V2, 20)]),
        ),
        Case::new("router, 80/20 canary", router(CANARY)),
        Case::new("router, end-user match (jason rule)", router(JASON)),
        Case::new("router, 80/20 sticky by cookie", router(STICKY)),
    ]
}

/// Keep-alive requests with a cookie and an end-user header, like browser traffic.
fn traffic() -> Traffic {
    Traffic::new("/productpage", |req, i| {
        req.header("host", "web")
            .header("end-user", "kim")
            .header("cookie", format!("theme=dark; user=u{}", i % 100))
    })
}
