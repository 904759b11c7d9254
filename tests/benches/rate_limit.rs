//! Rate-limit filter benchmarks in a real Envoy, each beside Envoy's own
//! `local_ratelimit` on the same traffic and against a baseline of the
//! same run:
//! - `instructions`: instructions per request under callgrind: no filter,
//!   native local_ratelimit, the Wasm filter (default bucket; per-client
//!   descriptor);
//! - `workers`: sustained keep-alive load over every worker at
//!   `--concurrency` 2 and 4: admitted against `maxTokens` + refills;
//! - `flood`: distinct client keys through Envoy, its RSS sampled as they
//!   arrive; and 1,000,000 keys through sdk-host, shared data measured.
//!
//! Run: `cargo bench -p meshwasm-e2e --bench rate_limit [-- instructions|workers|flood]`.

#![allow(clippy::unwrap_used, clippy::expect_used, clippy::panic)]

use meshwasm_artifacts::RATE_LIMIT_WASM;
use meshwasm_local::bench::{self, Case, Traffic};
use meshwasm_local::envoy::{self, Bootstrap, Envoy, WasmFilter};
use meshwasm_local::traffic::send_many;
use meshwasm_local::upstream::Upstream;
use serde_json::{Value, json};
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, AtomicUsize, Ordering};
use std::time::{Duration, Instant};

const LOCAL_TYPE: &str =
    "type.googleapis.com/envoy.extensions.filters.http.local_ratelimit.v3.LocalRateLimit";

fn limit(fields: Value) -> Value {
    let mut config = json!({
        "@type": LOCAL_TYPE,
        "stat_prefix": "bench",
        "filter_enabled": {"default_value": {"numerator": 100, "denominator": "HUNDRED"}},
        "filter_enforced": {"default_value": {"numerator": 100, "denominator": "HUNDRED"}},
    });
    for (k, v) in fields.as_object().unwrap() {
        config[k] = v.clone();
    }
    config
}

/// A bucket the benchmark traffic never empties.
fn roomy() -> Value {
    limit(
        json!({"token_bucket": {"max_tokens": 1_000_000, "tokens_per_fill": 1_000_000, "fill_interval": "1s"}}),
    )
}

/// One bucket per `x-client` value, behind the default bucket.
fn per_client() -> Value {
    limit(json!({
        "token_bucket": {"max_tokens": 1_000_000, "tokens_per_fill": 1_000_000, "fill_interval": "1s"},
        "descriptors": [{"entries": [{"key": "client", "value": ""}],
                         "token_bucket": {"max_tokens": 1_000_000, "tokens_per_fill": 1_000_000, "fill_interval": "1s"}}],
        "rate_limits": [{"actions": [{"request_headers": {"header_name": "x-client", "descriptor_key": "client"}}]}],
    }))
}

fn native(bootstrap: Bootstrap, config: &Value) -> Bootstrap {
    bootstrap.native_filter(
        json!({"name": "envoy.filters.http.local_ratelimit", "typed_config": config}),
    )
}

fn wasm(bootstrap: Bootstrap, config: &Value) -> Bootstrap {
    bootstrap.filter(WasmFilter::new(
        "rate-limit",
        RATE_LIMIT_WASM,
        config.to_string(),
    ))
}

#[tokio::main(flavor = "multi_thread", worker_threads = 2)]
async fn main() {
    println!(
        "meshwasm rate-limit filter benchmarks, Envoy {} (V8), beside Envoy's local_ratelimit\n",
        envoy::ENVOY_VERSION
    );
    let wanted = bench::wanted_parts();
    if wanted("instructions") {
        instructions_per_request().await;
    }
    if wanted("workers") {
        across_workers().await;
    }
    if wanted("flood") {
        key_flood_in_envoy().await;
        key_flood_in_sdk_host();
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
            "Envoy native local_ratelimit, default bucket",
            native(base(), &roomy()),
        ),
        Case::new(
            "Wasm rate-limit, default bucket (2 shared-data calls)",
            wasm(base(), &roomy()),
        ),
        Case::new(
            "Envoy native local_ratelimit, per-client descriptor",
            native(base(), &per_client()),
        ),
        Case::new(
            "Wasm rate-limit, per-client descriptor (4 calls)",
            wasm(base(), &per_client()),
        ),
    ];
    let traffic = Traffic::new("/", |req, i| {
        req.header("x-client", format!("client-{}", i % 8))
    });
    bench::instructions_per_request(cases, 500, &traffic)
        .await
        .unwrap();
    println!();
}

/// Keep-alive load from many connections for `run`, counting 200s.
async fn sustained(envoy: &Envoy, connections: usize, run: Duration) -> (usize, usize, Duration) {
    let clients: Arc<Vec<reqwest::Client>> =
        Arc::new((0..connections).map(|_| envoy::client().unwrap()).collect());
    let (ok, total, stop) = (
        Arc::new(AtomicUsize::new(0)),
        Arc::new(AtomicUsize::new(0)),
        Arc::new(AtomicBool::new(false)),
    );
    let started = Instant::now();
    let mut tasks = tokio::task::JoinSet::new();
    for c in 0..connections {
        let (clients, ok, total, stop, url) = (
            Arc::clone(&clients),
            Arc::clone(&ok),
            Arc::clone(&total),
            Arc::clone(&stop),
            envoy.url("/"),
        );
        tasks.spawn(async move {
            while !stop.load(Ordering::Relaxed) {
                let resp = clients[c].get(&url).send().await.unwrap();
                let status = resp.status().as_u16();
                let _ = resp.bytes().await;
                total.fetch_add(1, Ordering::Relaxed);
                if status == 200 {
                    ok.fetch_add(1, Ordering::Relaxed);
                }
            }
        });
    }
    tokio::time::sleep(run).await;
    stop.store(true, Ordering::Relaxed);
    while tasks.join_next().await.is_some() {}
    (
        ok.load(Ordering::Relaxed),
        total.load(Ordering::Relaxed),
        started.elapsed(),
    )
}

async fn across_workers() {
    // 50 to start with, 10 more per second.
    let config = limit(
        json!({"token_bucket": {"max_tokens": 50, "tokens_per_fill": 10, "fill_interval": "1s"}}),
    );
    let upstream = Upstream::start("backend").await.unwrap();
    println!("sustained keep-alive load, 32 connections for 10 s; bucket 50 + 10/s");
    println!(
        "  {:<8} {:<7} {:>9} {:>9} {:>9} {:>8}   connections per worker",
        "workers", "filter", "requests", "admitted", "expected", "error"
    );
    for workers in [2u32, 4] {
        for (name, make) in [
            ("native", native as fn(Bootstrap, &Value) -> Bootstrap),
            ("wasm", wasm),
        ] {
            let envoy = Envoy::start(make(
                Bootstrap::new(upstream.addr()).concurrency(workers),
                &config,
            ))
            .await
            .unwrap();
            let (ok, total, elapsed) = sustained(&envoy, 32, Duration::from_secs(10)).await;
            let expected = 50.0 + 10.0 * elapsed.as_secs_f64();
            let stats = envoy.stats().await.unwrap();
            let spread: Vec<u64> = stats
                .iter()
                .filter(|(k, _)| {
                    k.starts_with("listener.127.0.0.1_")
                        && k.contains(".worker_")
                        && k.ends_with(".downstream_cx_total")
                })
                .map(|(_, v)| *v)
                .collect();
            println!(
                "  {workers:<8} {name:<7} {total:>9} {ok:>9} {expected:>9.0} {:>+7.1}%   {spread:?}",
                (ok as f64 - expected) / expected * 100.0
            );
        }
    }
    println!();
}

/// Distinct `x-client` values, each a new descriptor value, while Envoy's RSS is sampled.
async fn key_flood_in_envoy() {
    const KEYS: usize = 200_000;
    let upstream = Upstream::start("backend").await.unwrap();
    println!(
        "key flood through Envoy: {KEYS} distinct x-client values, 16 connections; RSS every {} keys",
        KEYS / 5
    );
    for (name, make) in [
        ("native", native as fn(Bootstrap, &Value) -> Bootstrap),
        ("wasm", wasm),
    ] {
        let envoy = Envoy::start(make(Bootstrap::new(upstream.addr()), &per_client()))
            .await
            .unwrap();
        let mut samples = vec![envoy.rss_bytes().unwrap()];
        let started = Instant::now();
        for round in 0..5 {
            let (http, url) = (envoy::client().unwrap(), envoy.url("/"));
            let base = round * KEYS / 5;
            let out = send_many(KEYS / 5, 16, move |i| {
                http.get(&url)
                    .header("x-client", format!("flood-{}", base + i))
            })
            .await
            .unwrap();
            assert!(out.iter().all(|o| o.status == 200));
            samples.push(envoy.rss_bytes().unwrap());
        }
        let mib: Vec<String> = samples
            .iter()
            .map(|b| format!("{:.1}", *b as f64 / 1048576.0))
            .collect();
        let slope = (samples[5] as f64 - samples[1] as f64) / 1024.0 / (KEYS as f64 * 0.8 / 1000.0);
        println!(
            "  {name:<7} RSS MiB {} ({:.0} s); after the first {} keys: {slope:+.2} KiB per 1000 keys",
            mib.join(" → "),
            started.elapsed().as_secs_f64(),
            KEYS / 5
        );
    }
}

/// A million distinct keys through the module in sdk-host, whose shared
/// data can be measured exactly.
fn key_flood_in_sdk_host() {
    const KEYS: usize = 1_000_000;
    let module = sdk_host::WasmModule::from_file(RATE_LIMIT_WASM).unwrap();
    let mut host = sdk_host::Host::builder()
        .vm_id("meshwasm")
        .plugin("rate-limit", "rate-limit", per_client().to_string())
        .start(&module)
        .unwrap();
    let proxy = host.proxy();
    let size = |proxy: &sdk_host::Proxy| proxy.shared_data_size("meshwasm");
    let before = size(&proxy);
    let started = Instant::now();
    let mut samples = Vec::new();
    for i in 0..KEYS {
        let stream = host.new_http_stream().unwrap();
        let client = format!("flood-{i}");
        host.send_request_headers(
            stream,
            &[
                (":method", "GET"),
                (":path", "/"),
                (":authority", "site"),
                ("x-client", client.as_str()),
            ],
            true,
        )
        .unwrap();
        host.finish(stream).unwrap();
        if (i + 1) % (KEYS / 4) == 0 {
            samples.push(size(&proxy));
        }
    }
    println!(
        "key flood through sdk-host: {KEYS} distinct keys in {:.0} s; shared data (keys, bytes): before {before:?}, then {}",
        started.elapsed().as_secs_f64(),
        samples
            .iter()
            .map(|s| format!("{s:?}"))
            .collect::<Vec<_>>()
            .join(" → ")
    );
}
