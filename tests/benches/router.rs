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
        Case::new(
            "router, end-user match (jason rule), protected",
            router(JASON),
        ),
        Case::new("router, 80/20 sticky by cookie", router(STICKY)),
        // The ways to keep a client from naming the cluster itself
        // (issue: a routing decision no client can forge), on the jason rule.
        Case::new(
            "router, jason rule, no hand-off header removal",
            wired()
                .unprotected()
                .filter(WasmFilter::new("router", ROUTER_WASM, JASON)),
        ),
        Case::new(
            "router, jason rule, removal by exact names only",
            wired()
                .early_mutations(exact_names_only())
                .filter(WasmFilter::new("router", ROUTER_WASM, JASON)),
        ),
        Case::new(
            "router, jason rule + header_mutation filter first",
            wired()
                .unprotected()
                .native_filter(header_mutation_filter())
                .filter(WasmFilter::new("router", ROUTER_WASM, JASON)),
        ),
        Case::new(
            "router, jason rule + Lua filter first",
            wired()
                .unprotected()
                .native_filter(lua_filter())
                .filter(WasmFilter::new("router", ROUTER_WASM, JASON)),
        ),
    ]
}

/// The early removal without its `x-meshwasm-` prefix rule: the router's
/// two headers and Envoy's router headers by name (a new hand-off header
/// would need a new line).
fn exact_names_only() -> serde_json::Value {
    handoff_names()
        .map(|n| serde_json::json!({"remove": n}))
        .collect()
}

/// The router's two hand-off headers and Envoy's router headers.
fn handoff_names() -> impl Iterator<Item = &'static str> {
    ["x-meshwasm-cluster", "x-meshwasm-subset"]
        .into_iter()
        .chain(meshwasm_core::handoff::ENVOY_ROUTER_HEADERS)
}

/// Envoy's `header_mutation` HTTP filter removing the same headers as the
/// early header mutation. It does not protect (Envoy keeps the route it
/// picked before the filters ran); measured for comparison.
fn header_mutation_filter() -> serde_json::Value {
    let removal = envoyfilter::render::header_removal([]);
    serde_json::json!({
        "name": "envoy.filters.http.header_mutation",
        "typed_config": {
            "@type": "type.googleapis.com/envoy.extensions.filters.http.header_mutation.v3.HeaderMutation",
            "mutations": {"request_mutations": removal[0]["typed_config"]["mutations"]},
        },
    })
}

/// A Lua filter that removes the hand-off headers; Lua's header changes
/// clear the route cache, so it protects, at the price of a Lua call.
fn lua_filter() -> serde_json::Value {
    let removals: String = handoff_names()
        .map(|h| format!("h:remove('{h}') "))
        .collect();
    serde_json::json!({
        "name": "envoy.filters.http.lua",
        "typed_config": {
            "@type": "type.googleapis.com/envoy.extensions.filters.http.lua.v3.Lua",
            "default_source_code": {"inline_string": format!(
                "function envoy_on_request(r) local h = r:headers() {removals}end"
            )},
        },
    })
}

/// Keep-alive requests with a cookie and an end-user header, like browser traffic.
fn traffic() -> Traffic {
    Traffic::new("/productpage", |req, i| {
        req.header("host", "web")
            .header("end-user", "kim")
            .header("cookie", format!("theme=dark; user=u{}", i % 100))
    })
}
