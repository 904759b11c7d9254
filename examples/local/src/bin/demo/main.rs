//! The local demo: Istio's routing and fault-injection scenarios on a real Envoy.
//!
//! Each scenario starts Envoy (V8) with a filter configured from a
//! VirtualService spec in `examples/local/virtual-services/`, sends real
//! traffic to real upstreams through it, and reports what happened.

mod routing;

use anyhow::Result;
use meshwasm_local::artifacts::{FAULT_WASM, ROUTER_WASM};
use meshwasm_local::envoy::{self, Bootstrap, Envoy, WasmFilter};
use meshwasm_local::traffic::{Outcome, binomial_bounds, quantile, send, send_many};
use meshwasm_local::upstream::Upstream;
use std::process::ExitCode;
use std::time::{Duration, Instant};

const JASON_ABORT: &str = include_str!("../../../virtual-services/ratings-jason-abort.json");
const DELAY: &str = include_str!("../../../virtual-services/ratings-delay.json");
const FLAKY: &str = include_str!("../../../virtual-services/details-flaky.json");
const HEADER_FAULTS: &str = include_str!("../../../virtual-services/header-faults.json");

#[tokio::main(flavor = "multi_thread", worker_threads = 2)]
async fn main() -> ExitCode {
    match run().await {
        Ok(true) => ExitCode::SUCCESS,
        Ok(false) => {
            eprintln!("\nSome scenario did not behave as expected (marked FAIL above).");
            ExitCode::FAILURE
        }
        Err(e) => {
            eprintln!("error: {e:#}");
            ExitCode::FAILURE
        }
    }
}

/// One line of the report; `ok` is whether the filter did what the scenario expects.
pub(crate) struct Line {
    ok: bool,
    text: String,
}

pub(crate) fn line(ok: bool, text: impl Into<String>) -> Line {
    Line {
        ok,
        text: text.into(),
    }
}

async fn run() -> Result<bool> {
    let envoy_bin = envoy::find_envoy()?;
    println!(
        "meshwasm local demo: Istio routing and fault injection in Envoy {} (V8), on 127.0.0.1",
        envoy::ENVOY_VERSION
    );
    println!("  envoy   {}", envoy_bin.display());
    for wasm in [ROUTER_WASM, FAULT_WASM] {
        println!(
            "  filter  {wasm} ({} KiB)",
            std::fs::metadata(wasm)?.len() / 1024
        );
    }
    println!();

    let mut all_ok = true;
    for scenario in Scenario::ALL {
        let (file, what) = scenario.title();
        println!("{file}: {what}");
        let started = Instant::now();
        let lines = scenario.run().await?;
        for l in &lines {
            all_ok &= l.ok;
            println!("  {} {}", if l.ok { "ok  " } else { "FAIL" }, l.text);
        }
        println!("  ({:.1} s)\n", started.elapsed().as_secs_f64());
    }
    Ok(all_ok)
}

#[derive(Clone, Copy)]
enum Scenario {
    Canaries,
    Sticky,
    JasonV2,
    DevCookie,
    Mirror,
    Gateway,
    Shop,
    JasonAbort,
    FixedDelay,
    Flaky,
    HeaderFaults,
    InvalidConfig,
}

impl Scenario {
    const ALL: [Scenario; 12] = [
        Scenario::Canaries,
        Scenario::Sticky,
        Scenario::JasonV2,
        Scenario::DevCookie,
        Scenario::Mirror,
        Scenario::Gateway,
        Scenario::Shop,
        Scenario::JasonAbort,
        Scenario::FixedDelay,
        Scenario::Flaky,
        Scenario::HeaderFaults,
        Scenario::InvalidConfig,
    ];

    fn title(self) -> (&'static str, &'static str) {
        match self {
            Scenario::Canaries => (
                "web-canaries.json",
                "router: canary splits 75/25, 80/20 and 95/5",
            ),
            Scenario::Sticky => (
                "web-sticky.json",
                "router: an 80/20 split that keeps each user (cookie) on one version",
            ),
            Scenario::JasonV2 => (
                "reviews-jason-v2.json",
                "router: end-user jason sees reviews v2, everyone else v1",
            ),
            Scenario::DevCookie => (
                "bookinfo-dev-cookie.json",
                "router: cookie user=dev-123 goes to qa:7777; /reviews/ is 80/20 prod/qa",
            ),
            Scenario::Mirror => (
                "httpbin-mirror.json",
                "router: all httpbin traffic to v1, mirrored to a slow v2",
            ),
            Scenario::Gateway => (
                "httpbin-gateway.json",
                "router: the gateway's HTTPS redirect; only /status and /delay exposed",
            ),
            Scenario::Shop => (
                "shop-routing.json",
                "router: matches, rewrite, redirect, timeout, retries, CORS",
            ),
            Scenario::JasonAbort => (
                "ratings-jason-abort.json",
                "user jason gets HTTP 500, everyone else reaches v1",
            ),
            Scenario::FixedDelay => (
                "ratings-delay.json",
                "a fixed 2 s delay for every request to ratings",
            ),
            Scenario::Flaky => (
                "details-flaky.json",
                "/flaky: 50 % aborts and 0.1 % 5 s delays",
            ),
            Scenario::HeaderFaults => (
                "header-faults.json",
                "clients request faults with x-envoy-fault-* headers",
            ),
            Scenario::InvalidConfig => (
                "(invalid)",
                "a bad configuration is refused, naming the field",
            ),
        }
    }

    async fn run(self) -> Result<Vec<Line>> {
        match self {
            Scenario::Canaries => routing::canaries().await,
            Scenario::Sticky => routing::sticky().await,
            Scenario::JasonV2 => routing::jason().await,
            Scenario::DevCookie => routing::dev_cookie().await,
            Scenario::Mirror => routing::mirror().await,
            Scenario::Gateway => routing::gateway().await,
            Scenario::Shop => routing::shop().await,
            Scenario::JasonAbort => jason_abort().await,
            Scenario::FixedDelay => fixed_delay().await,
            Scenario::Flaky => flaky().await,
            Scenario::HeaderFaults => header_faults().await,
            Scenario::InvalidConfig => invalid_config().await,
        }
    }
}

async fn start(config: &str, upstream_name: &str) -> Result<(Envoy, Upstream)> {
    let upstream = Upstream::start(upstream_name).await?;
    let envoy = Envoy::start(
        Bootstrap::new(upstream.addr()).filter(WasmFilter::new("fault", FAULT_WASM, config)),
    )
    .await?;
    Ok((envoy, upstream))
}

fn summarize(outcomes: &[Outcome]) -> String {
    let mut counts: Vec<(String, usize)> = Vec::new();
    for o in outcomes {
        let key = match o.upstream() {
            Some(up) => format!("{} from {up}", o.status),
            None => format!("{} {:?}", o.status, o.body),
        };
        match counts.iter_mut().find(|(k, _)| *k == key) {
            Some((_, n)) => *n += 1,
            None => counts.push((key, 1)),
        }
    }
    counts
        .iter()
        .map(|(k, n)| format!("{n}x {k}"))
        .collect::<Vec<_>>()
        .join(", ")
}

async fn jason_abort() -> Result<Vec<Line>> {
    let (envoy, _upstream) = start(JASON_ABORT, "ratings-v1").await?;
    let http = envoy::client()?;
    let mut lines = Vec::new();
    for (cookie, want) in [("user=jason", 500), ("user=kim", 200)] {
        let (http, url) = (http.clone(), envoy.url("/ratings/0"));
        let outcomes = send_many(20, 4, move |_| {
            http.get(&url)
                .header("host", "ratings")
                .header("cookie", cookie)
        })
        .await?;
        let ok = outcomes.iter().all(|o| o.status == want);
        lines.push(line(
            ok,
            format!("cookie {cookie:<11} -> {}", summarize(&outcomes)),
        ));
    }
    let other = send(
        http.get(envoy.url("/"))
            .header("host", "reviews")
            .header("cookie", "user=jason"),
    )
    .await?;
    lines.push(line(
        other.status == 200,
        format!(
            "host reviews, jason  -> {} (the rule is for host ratings only)",
            other.status
        ),
    ));
    Ok(lines)
}

async fn fixed_delay() -> Result<Vec<Line>> {
    let (envoy, _upstream) = start(DELAY, "ratings-v1").await?;
    let http = envoy::client()?;
    let (h, url) = (http.clone(), envoy.url("/ratings/0"));
    let delayed = send_many(10, 10, move |_| h.get(&url).header("host", "ratings")).await?;
    let (h, url) = (http.clone(), envoy.url("/"));
    let other = send_many(10, 1, move |_| h.get(&url).header("host", "details")).await?;
    let lat = |o: &[Outcome], q| quantile(&o.iter().map(|o| o.latency).collect::<Vec<_>>(), q);
    let (min, max) = (lat(&delayed, 0.0), lat(&delayed, 1.0));
    Ok(vec![
        line(
            min >= Duration::from_secs(2) && max < Duration::from_millis(2500),
            format!(
                "10 concurrent requests to ratings: {} ms .. {} ms",
                min.as_millis(),
                max.as_millis()
            ),
        ),
        line(
            lat(&other, 1.0) < Duration::from_millis(500),
            format!(
                "10 requests to details: at most {:.1} ms (not delayed)",
                lat(&other, 1.0).as_secs_f64() * 1e3
            ),
        ),
    ])
}

async fn flaky() -> Result<Vec<Line>> {
    let (envoy, _upstream) = start(FLAKY, "details-v1").await?;
    let http = envoy::client()?;
    let n = 2000;
    let (h, url) = (http.clone(), envoy.url("/flaky"));
    let outcomes = send_many(n, 32, move |_| h.get(&url).header("host", "details")).await?;
    let aborted = outcomes.iter().filter(|o| o.status == 500).count();
    let (low, high) = binomial_bounds(n, 0.5, 5.0);
    let delays = envoy
        .stat("wasmcustom.meshwasm.fault.delays_injected")
        .await?;
    let slowest = quantile(&outcomes.iter().map(|o| o.latency).collect::<Vec<_>>(), 1.0);
    Ok(vec![
        line(
            (low..=high).contains(&aborted),
            format!("{aborted} of {n} aborted with 500 (50 %: expected {low}..={high})"),
        ),
        line(
            delays <= 12,
            format!(
                "{delays} delayed by 5 s (0.1 %: about 2 expected); slowest request {:.1} s",
                slowest.as_secs_f64()
            ),
        ),
    ])
}

async fn header_faults() -> Result<Vec<Line>> {
    let (envoy, _upstream) = start(HEADER_FAULTS, "web-v1").await?;
    let http = envoy::client()?;
    let abort = send(
        http.get(envoy.url("/"))
            .header("x-envoy-fault-abort-request", "503"),
    )
    .await?;
    let grpc = send(
        http.post(envoy.url("/web.Web/Get"))
            .header("content-type", "application/grpc")
            .header("x-envoy-fault-abort-grpc-request", "14"),
    )
    .await?;
    let delay = send(
        http.get(envoy.url("/"))
            .header("x-envoy-fault-delay-request", "250"),
    )
    .await?;
    let plain = send(http.get(envoy.url("/"))).await?;
    Ok(vec![
        line(
            abort.status == 503,
            format!(
                "x-envoy-fault-abort-request: 503      -> {} {:?}",
                abort.status, abort.body
            ),
        ),
        line(
            grpc.grpc_status() == Some("14"),
            format!(
                "x-envoy-fault-abort-grpc-request: 14  -> {} grpc-status {}",
                grpc.status,
                grpc.grpc_status().unwrap_or_default()
            ),
        ),
        line(
            delay.latency >= Duration::from_millis(250),
            format!(
                "x-envoy-fault-delay-request: 250      -> {} after {} ms",
                delay.status,
                delay.latency.as_millis()
            ),
        ),
        line(
            plain.status == 200,
            format!(
                "no fault headers                      -> {} from {}",
                plain.status,
                plain.upstream().unwrap_or_default()
            ),
        ),
    ])
}

async fn invalid_config() -> Result<Vec<Line>> {
    let upstream = Upstream::start("unused").await?;
    let bad = JASON_ABORT.replace("\"httpStatus\": 500", "\"httpStatus\": 700");
    let log = envoy::expect_rejected(
        Bootstrap::new(upstream.addr()).filter(WasmFilter::new("fault", FAULT_WASM, bad)),
    )
    .await?;
    let ours = log
        .lines()
        .find(|l| l.contains("meshwasm fault:"))
        .unwrap_or("(no line from the filter)");
    let message = ours.split("meshwasm fault: ").nth(1).unwrap_or(ours);
    Ok(vec![
        line(
            ours.contains("http[0].fault.abort.httpStatus"),
            format!("filter: {message}"),
        ),
        line(
            log.contains("Unable to create Wasm plugin"),
            "envoy: refused the configuration and exited (Unable to create Wasm plugin meshwasm.fault)",
        ),
    ])
}
