//! Fault filter benchmarks in a real Envoy, each figure against a baseline
//! measured in the same run:
//! - delay accuracy: latency of delayed requests minus the configured delay
//!   minus the median latency of undelayed requests;
//! - CPU per request: Envoy's utime+stime (from /proc) over the requests it
//!   served, with Envoy pinned to one core, with and without the filter.
//!
//! Run: `cargo bench -p meshwasm-e2e --bench fault [-- delay|cpu|instructions]`.

#![allow(clippy::unwrap_used, clippy::expect_used, clippy::panic)]

use meshwasm_artifacts::FAULT_WASM;
use meshwasm_local::bench::{self, Case, Traffic};
use meshwasm_local::envoy::{self, Bootstrap, Envoy, WasmFilter};
use meshwasm_local::traffic::{quantile, send_many, send_paced};
use meshwasm_local::upstream::Upstream;
use std::time::Duration;

const DELAYS: &str = r#"{"hosts": ["*"], "http": [
  {"match": [{"uri": {"prefix": "/delay/50"}}], "fault": {"delay": {"percentage": {"value": 100}, "fixedDelay": "50ms"}}},
  {"match": [{"uri": {"prefix": "/delay/200"}}], "fault": {"delay": {"percentage": {"value": 100}, "fixedDelay": "200ms"}}},
  {"route": [{"destination": {"host": "ratings"}}]}]}"#;

/// Istio's jason rule, for every host: each request runs the cookie regex.
const JASON_ANY_HOST: &str = r#"{"hosts": ["*"], "http": [
  {"match": [{"headers": {"cookie": {"regex": "^(.*?;)?(user=jason)(;.*)?$"}}}],
   "fault": {"abort": {"percentage": {"value": 100}, "httpStatus": 500}}},
  {"route": [{"destination": {"host": "ratings", "subset": "v1"}}]}]}"#;

/// The same rule for host ratings only; the requests go to another host.
const JASON_OTHER_HOST: &str = r#"{"hosts": ["ratings"], "http": [
  {"match": [{"headers": {"cookie": {"regex": "^(.*?;)?(user=jason)(;.*)?$"}}}],
   "fault": {"abort": {"percentage": {"value": 100}, "httpStatus": 500}}}]}"#;

fn ms(d: Duration) -> f64 {
    d.as_secs_f64() * 1e3
}

#[tokio::main(flavor = "multi_thread", worker_threads = 2)]
async fn main() {
    println!(
        "meshwasm fault filter benchmarks, Envoy {} (V8), one worker\n",
        envoy::ENVOY_VERSION
    );
    let wanted = bench::wanted_parts();
    if wanted("delay") {
        delay_accuracy().await;
    }
    if wanted("cpu") {
        cpu_per_request().await;
    }
    if wanted("instructions") {
        instructions_per_request().await;
    }
}

const CONFIGS: [(&str, Option<&str>); 3] = [
    ("no filter (baseline)", None),
    ("fault, host not in hosts", Some(JASON_OTHER_HOST)),
    ("fault, cookie regex per request", Some(JASON_ANY_HOST)),
];

fn cases(upstream: &Upstream) -> Vec<Case> {
    let mut cases: Vec<Case> = CONFIGS
        .iter()
        .map(|(name, config)| {
            let bootstrap = Bootstrap::new(upstream.addr());
            let bootstrap = match config {
                Some(config) => bootstrap.filter(WasmFilter::new("fault", FAULT_WASM, *config)),
                None => bootstrap,
            };
            Case::new(name, bootstrap)
        })
        .collect();
    cases.push(Case::new(
        "Envoy native fault filter, same cookie regex",
        Bootstrap::new(upstream.addr()).native_filter(native_jason_fault()),
    ));
    cases
}

/// Envoy's own fault filter with the jason rule: abort 500 for every
/// request whose cookie matches the regex (the traffic's does not).
fn native_jason_fault() -> serde_json::Value {
    serde_json::json!({
        "name": "envoy.filters.http.fault",
        "typed_config": {
            "@type": "type.googleapis.com/envoy.extensions.filters.http.fault.v3.HTTPFault",
            "abort": {"http_status": 500, "percentage": {"numerator": 100, "denominator": "HUNDRED"}},
            "headers": [{"name": "cookie", "string_match": {"safe_regex": {"regex": "^(.*?;)?(user=jason)(;.*)?$"}}}],
        },
    })
}

/// Instructions Envoy executes per request, counted by callgrind: the same
/// on every run, where CPU time on two shared cores varies by 10 %.
async fn instructions_per_request() {
    if !bench::have_valgrind() {
        return;
    }
    let upstream = Upstream::start("ratings-v1").await.unwrap();
    println!();
    bench::instructions_per_request(cases(&upstream), 500, &traffic())
        .await
        .unwrap();
}

async fn delay_accuracy() {
    let upstream = Upstream::start("ratings-v1").await.unwrap();
    let envoy = Envoy::start(
        Bootstrap::new(upstream.addr()).filter(WasmFilter::new("fault", FAULT_WASM, DELAYS)),
    )
    .await
    .unwrap();
    let http = envoy::client().unwrap();
    // Requests arrive one every 2 ms (open loop), like independent clients,
    // so resumed requests do not queue behind each other on 2 cores.
    let interval = Duration::from_millis(2);
    let latencies = |path: &'static str, n: usize| {
        let (http, url) = (http.clone(), envoy.url(path));
        async move {
            let out = send_paced(n, interval, move |_| http.get(&url))
                .await
                .unwrap();
            assert!(out.iter().all(|o| o.status == 200));
            out.into_iter().map(|o| o.latency).collect::<Vec<_>>()
        }
    };
    send_many(500, 8, {
        let (http, url) = (http.clone(), envoy.url("/warm-up"));
        move |_| http.get(&url)
    })
    .await
    .unwrap();
    let baseline = latencies("/plain", 1000).await;
    let base = quantile(&baseline, 0.5);
    println!(
        "delay accuracy: one request every {} ms; error = latency - delay - median undelayed latency ({:.2} ms)",
        interval.as_millis(),
        ms(base)
    );
    println!(
        "  {:<22} {:>9} {:>9} {:>9} {:>9}",
        "", "p50", "p99", "max", "min"
    );
    println!(
        "  {:<22} {:>6.2} ms {:>6.2} ms {:>6.2} ms {:>6.2} ms",
        "undelayed (baseline)",
        ms(base),
        ms(quantile(&baseline, 0.99)),
        ms(quantile(&baseline, 1.0)),
        ms(quantile(&baseline, 0.0))
    );
    for (path, delay, n) in [("/delay/50", 50, 1000), ("/delay/200", 200, 1000)] {
        let observed = latencies(path, n).await;
        let errors: Vec<f64> = observed
            .iter()
            .map(|l| ms(*l) - delay as f64 - ms(base))
            .collect();
        let mut sorted = errors.clone();
        sorted.sort_by(f64::total_cmp);
        let q =
            |q: f64| sorted[((q * sorted.len() as f64).ceil() as usize).clamp(1, sorted.len()) - 1];
        println!(
            "  {:<22} {:>6.2} ms {:>6.2} ms {:>6.2} ms {:>6.2} ms",
            format!("{delay} ms delay, error"),
            q(0.5),
            q(0.99),
            q(1.0),
            q(0.0)
        );
    }
    println!();
}

async fn cpu_per_request() {
    let upstream = Upstream::start("ratings-v1").await.unwrap();
    bench::cpu_per_request(cases(&upstream), 30_000, &traffic())
        .await
        .unwrap();
}

/// Requests as the benchmarks send them: keep-alive, a cookie, another host.
fn traffic() -> Traffic {
    Traffic::new("/ratings/0", |req, _| {
        req.header("host", "web")
            .header("cookie", "theme=dark; user=kim")
    })
}
