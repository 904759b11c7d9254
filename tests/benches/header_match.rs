//! Header-match filter benchmarks in a real Envoy, beside Envoy's own RBAC
//! filter with the same policy and against a baseline of the same run:
//! - `instructions`: instructions per request under callgrind: no filter,
//!   native RBAC, the Wasm filter, on a DENY policy of 5 rules that the
//!   benchmark's (allowed) traffic must check in full;
//! - `size`: the module raw, after `wasm-opt -Oz` (when binaryen is
//!   installed) and gzipped, as a registry serves it.
//!
//! Run: `cargo bench -p meshwasm-e2e --bench header_match [-- instructions|size]`.

#![allow(clippy::unwrap_used, clippy::expect_used, clippy::panic)]

use meshwasm_artifacts::HEADER_MATCH_WASM;
use meshwasm_local::bench::{self, Case, Traffic};
use meshwasm_local::envoy::{self, Bootstrap, WasmFilter};
use meshwasm_local::upstream::Upstream;
use serde_json::{Value, json};

/// The AuthorizationPolicy: 5 DENY rules, none of which the traffic hits.
fn deny_admin() -> Value {
    json!({"action": "DENY", "rules": [
        {"to": [{"operation": {"paths": ["/admin", "/admin/*"]}}]},
        {"to": [{"operation": {"hosts": ["admin.shop.example"]}}]},
        {"to": [{"operation": {"methods": ["TRACE", "CONNECT"]}}]},
        {"when": [{"key": "request.headers[x-debug]", "values": ["1", "true"]}]},
        {"to": [{"operation": {"paths": ["/internal/*"]}}]},
    ]})
}

/// The same policy as Istio hands it to Envoy's RBAC: one policy per rule.
fn rbac() -> Value {
    let path = |m: Value| json!({"url_path": {"path": m}});
    let header = |name: &str, m: Value| json!({"header": {"name": name, "string_match": m}});
    let any_of = |rules: Vec<Value>| json!({"or_rules": {"rules": rules}});
    let rule =
        |permission: Value| json!({"permissions": [permission], "principals": [{"any": true}]});
    json!({
        "name": "envoy.filters.http.rbac",
        "typed_config": {
            "@type": "type.googleapis.com/envoy.extensions.filters.http.rbac.v3.RBAC",
            "rules": {"action": "DENY", "policies": {
                "rule[0]": rule(any_of(vec![path(json!({"exact": "/admin"})), path(json!({"prefix": "/admin/"}))])),
                "rule[1]": rule(header(":authority", json!({"exact": "admin.shop.example", "ignore_case": true}))),
                "rule[2]": rule(any_of(vec![header(":method", json!({"exact": "TRACE"})), header(":method", json!({"exact": "CONNECT"}))])),
                "rule[3]": rule(any_of(vec![header("x-debug", json!({"exact": "1"})), header("x-debug", json!({"exact": "true"}))])),
                "rule[4]": rule(path(json!({"prefix": "/internal/"}))),
            }},
        },
    })
}

#[tokio::main(flavor = "multi_thread", worker_threads = 2)]
async fn main() {
    println!(
        "meshwasm header-match filter benchmarks, Envoy {} (V8), beside Envoy's RBAC\n",
        envoy::ENVOY_VERSION
    );
    let wanted = bench::wanted_parts();
    if wanted("instructions") {
        instructions_per_request().await;
    }
    if wanted("size") {
        size();
    }
}

async fn instructions_per_request() {
    if !bench::have_valgrind() {
        return;
    }
    let upstream = Upstream::start("backend").await.unwrap();
    let base = || Bootstrap::new(upstream.addr());
    let cases = vec![
        Case::new("no filter (baseline)", base()),
        Case::new(
            "Envoy native RBAC, DENY of 5 rules",
            base().native_filter(rbac()),
        ),
        Case::new(
            "Wasm header-match, the same AuthorizationPolicy",
            base().filter(WasmFilter::new(
                "header-match",
                HEADER_MATCH_WASM,
                deny_admin().to_string(),
            )),
        ),
    ];
    let traffic = Traffic::new("/products/42?view=full", |req, i| {
        req.header("x-client", format!("client-{}", i % 8))
            .header("user-agent", "bench/1.0")
    });
    bench::instructions_per_request(cases, 500, &traffic)
        .await
        .unwrap();
    println!();
}

fn size() {
    bench::module_size(HEADER_MATCH_WASM);
}
