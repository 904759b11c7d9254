//! A soak: every meshwasm filter chained in one Envoy 1.40 (telemetry,
//! header-match, rate-limit, fault at 0.5 %, router, each its own module
//! and VM), under full keep-alive load for 10 minutes. Every 30 s it prints
//! the requests served so far, the errors that were not the fault filter's
//! intended aborts (there must be none), Envoy's RSS, each VM's linear
//! memory (the filters' `linear_memory_bytes` gauges) and the fault
//! filter's active faults; at the end, the least-squares slope of RSS and
//! of each VM's memory over the run, after the first sample (warm-up).
//!
//! Run: `cargo bench -p meshwasm-e2e --bench soak [-- SECONDS]` (600 by default).

#![allow(clippy::unwrap_used, clippy::expect_used, clippy::panic)]

use anyhow::{Result, bail};
use meshwasm_artifacts::{
    FAULT_WASM, HEADER_MATCH_WASM, RATE_LIMIT_WASM, ROUTER_WASM, TELEMETRY_WASM,
};
use meshwasm_local::configs;
use meshwasm_local::envoy::{self, Bootstrap, Envoy, WasmFilter};
use meshwasm_local::mesh::CLUSTER_HEADER;
use meshwasm_local::upstream::Upstream;
use serde_json::{Value, json};
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::time::{Duration, Instant};

/// Keep-alive clients sending as fast as Envoy answers.
const CLIENTS: usize = 16;
/// The fault filter's abort: an intended answer, not an error.
const ABORT: u16 = 418;
const SAMPLE_EVERY: Duration = Duration::from_secs(30);
const FILTERS: [&str; 5] = ["telemetry", "header-match", "rate-limit", "fault", "router"];

fn chain() -> Vec<WasmFilter> {
    let canary = json!({"hosts": ["*"], "http": [
        {"match": [{"headers": {"end-user": {"exact": "jason"}}}],
         "route": [{"destination": {"host": "web", "port": {"number": 5005}, "subset": "v2"}}]},
        {"route": [
            {"destination": {"host": "web", "port": {"number": 5005}, "subset": "v1"}, "weight": 80},
            {"destination": {"host": "web", "port": {"number": 5005}, "subset": "v2"}, "weight": 20}]}]});
    let fault = json!({"hosts": ["*"], "http": [{
        "fault": {
            "abort": {"httpStatus": ABORT, "percentage": {"value": 0.5}},
            "delay": {"fixedDelay": "0.01s", "percentage": {"value": 0.5}},
        },
        "route": [{"destination": {"host": "web"}}]}]});
    let allow = json!({"action": "ALLOW", "rules": [{"to": [{"operation": {"methods": ["GET"], "paths": ["/productpage*"]}}]}]});
    let limit = configs::local_rate_limit("soak", 1_000_000);
    // Each its own VM, as five separate modules are.
    let filter =
        |name: &str, wasm: &str, config: &Value| WasmFilter::own_vm(name, wasm, config.to_string());
    vec![
        filter("telemetry", TELEMETRY_WASM, &json!({})),
        filter("header-match", HEADER_MATCH_WASM, &allow),
        filter("rate-limit", RATE_LIMIT_WASM, &limit),
        filter("fault", FAULT_WASM, &fault),
        filter("router", ROUTER_WASM, &canary),
    ]
}

#[derive(Default)]
struct Counts {
    served: AtomicU64,
    aborted: AtomicU64,
    errors: AtomicU64,
}

/// One reading.
struct Sample {
    at: Duration,
    rss: u64,
    memory: Vec<u64>,
    active_faults: u64,
}

fn main() {
    let seconds = std::env::args()
        .skip(1)
        .find(|a| !a.starts_with('-'))
        .map_or(Ok(600), |a| a.parse::<u64>())
        .unwrap_or_else(|e| {
            eprintln!("usage: cargo bench -p meshwasm-e2e --bench soak [-- SECONDS]: {e}");
            std::process::exit(2)
        });
    let runtime = tokio::runtime::Builder::new_multi_thread()
        .worker_threads(2)
        .enable_all()
        .build()
        .unwrap();
    if let Err(e) = runtime.block_on(run(Duration::from_secs(seconds))) {
        eprintln!("error: {e:#}");
        std::process::exit(1);
    }
}

async fn run(length: Duration) -> Result<()> {
    let default = Upstream::start("default").await?;
    let v1 = Upstream::start("v1").await?;
    let v2 = Upstream::start("v2").await?;
    let node = configs::sidecar_node("productpage", "v1");
    let mut bootstrap = Bootstrap::new(default.addr())
        .node(node)
        .route_by_header(CLUSTER_HEADER)
        .cluster("outbound|5005|v1|web", v1.addr())
        .cluster("outbound|5005|v2|web", v2.addr())
        .concurrency(2);
    for filter in chain() {
        bootstrap = bootstrap.filter(filter);
    }
    let envoy = Envoy::start(bootstrap).await?;
    println!(
        "soak: Envoy {} (V8, 2 workers), {} filters each its own VM, {CLIENTS} keep-alive clients, {} s",
        envoy::ENVOY_VERSION,
        FILTERS.len(),
        length.as_secs()
    );

    let counts = Arc::new(Counts::default());
    let stop = Arc::new(AtomicBool::new(false));
    let mut clients = Vec::new();
    for i in 0..CLIENTS {
        let http = envoy::client()?;
        let url = envoy.url("/productpage");
        let counts = Arc::clone(&counts);
        let stop = Arc::clone(&stop);
        clients.push(tokio::spawn(async move {
            let mut n = 0_u64;
            while !stop.load(Ordering::Relaxed) {
                n += 1;
                // Some users are jason, each with a cookie of their own.
                let user = if n.is_multiple_of(10) {
                    "jason".to_owned()
                } else {
                    format!("u{i}-{}", n % 1000)
                };
                let sent = http
                    .get(&url)
                    .header("host", "web")
                    .header("end-user", &user)
                    .header("cookie", format!("theme=dark; user={user}"))
                    .send()
                    .await;
                let status = match sent {
                    Ok(resp) => {
                        let status = resp.status().as_u16();
                        match resp.bytes().await {
                            Ok(_) => status,
                            Err(_) => 0,
                        }
                    }
                    Err(_) => 0,
                };
                let counter = match status {
                    200 => &counts.served,
                    ABORT => &counts.aborted,
                    _ => &counts.errors,
                };
                counter.fetch_add(1, Ordering::Relaxed);
            }
        }));
    }

    let started = Instant::now();
    let mut samples = Vec::new();
    println!(
        "{:>6} {:>10} {:>8} {:>6} {:>9}  linear memory (KiB): {}  active faults",
        "t (s)",
        "served",
        "aborted",
        "errors",
        "RSS MiB",
        FILTERS.join(" / ")
    );
    loop {
        let sample = sample(&envoy, started.elapsed()).await?;
        println!(
            "{:>6} {:>10} {:>8} {:>6} {:>9.1}  {}  {}",
            sample.at.as_secs(),
            counts.served.load(Ordering::Relaxed),
            counts.aborted.load(Ordering::Relaxed),
            counts.errors.load(Ordering::Relaxed),
            mib(sample.rss),
            sample
                .memory
                .iter()
                .map(|m| (m / 1024).to_string())
                .collect::<Vec<_>>()
                .join(" / "),
            sample.active_faults
        );
        samples.push(sample);
        if started.elapsed() >= length {
            break;
        }
        tokio::time::sleep(SAMPLE_EVERY.min(length.saturating_sub(started.elapsed()))).await;
    }
    stop.store(true, Ordering::Relaxed);
    for client in clients {
        client.await?;
    }
    tokio::time::sleep(Duration::from_millis(200)).await;
    let last = sample(&envoy, started.elapsed()).await?;

    let served = counts.served.load(Ordering::Relaxed);
    let aborted = counts.aborted.load(Ordering::Relaxed);
    let errors = counts.errors.load(Ordering::Relaxed);
    let seconds = started.elapsed().as_secs_f64();
    println!(
        "\n{} requests in {seconds:.0} s ({:.0}/s): {served} served, {aborted} intended aborts ({:.3} %), {errors} errors",
        served + aborted + errors,
        (served + aborted + errors) as f64 / seconds,
        100.0 * aborted as f64 / (served + aborted + errors).max(1) as f64
    );
    let steady = if samples.len() > 2 {
        &samples[1..]
    } else {
        &samples[..]
    };
    let first = &steady[0];
    println!(
        "RSS: {:.1} MiB at {} s, {:.1} MiB at the end; slope {:+.3} MiB/min",
        mib(first.rss),
        first.at.as_secs(),
        mib(last.rss),
        slope(steady, |s| s.rss as f64) * 60.0 / 1_048_576.0
    );
    for (i, name) in FILTERS.iter().enumerate() {
        println!(
            "{name} VM linear memory: {} KiB at {} s, {} KiB at the end; slope {:+.1} KiB/min",
            first.memory[i] / 1024,
            first.at.as_secs(),
            last.memory[i] / 1024,
            slope(steady, |s| s.memory[i] as f64) * 60.0 / 1024.0
        );
    }
    println!(
        "fault filter's active faults at rest: {}",
        last.active_faults
    );
    if errors > 0 {
        bail!("{errors} requests failed");
    }
    if last.active_faults != 0 {
        bail!("{} fault slots still taken at rest", last.active_faults);
    }
    Ok(())
}

async fn sample(envoy: &Envoy, at: Duration) -> Result<Sample> {
    let stats = envoy.stats().await?;
    let gauge = |name: &str| stats.get(name).copied().unwrap_or(0);
    Ok(Sample {
        at,
        rss: envoy.rss_bytes()?,
        memory: FILTERS
            .iter()
            .map(|f| gauge(&format!("wasmcustom.meshwasm.{f}.linear_memory_bytes")))
            .collect(),
        active_faults: gauge("wasmcustom.meshwasm.fault.active_faults"),
    })
}

fn mib(bytes: u64) -> f64 {
    bytes as f64 / 1_048_576.0
}

/// Least-squares slope of `value` over time, per second.
fn slope(samples: &[Sample], value: impl Fn(&Sample) -> f64) -> f64 {
    let n = samples.len() as f64;
    if n < 2.0 {
        return 0.0;
    }
    let xs: Vec<f64> = samples.iter().map(|s| s.at.as_secs_f64()).collect();
    let ys: Vec<f64> = samples.iter().map(value).collect();
    let mean_x = xs.iter().sum::<f64>() / n;
    let mean_y = ys.iter().sum::<f64>() / n;
    let covariance: f64 = xs
        .iter()
        .zip(&ys)
        .map(|(x, y)| (x - mean_x) * (y - mean_y))
        .sum();
    let variance: f64 = xs.iter().map(|x| (x - mean_x).powi(2)).sum();
    if variance == 0.0 {
        0.0
    } else {
        covariance / variance
    }
}
