//! The local demo: Istio's routing, fault-injection, rate-limit, access-rule and telemetry scenarios on a real Envoy.
//!
//! The scenarios of Istio's examples run the Envoy files that envoyfilter
//! renders from the Istio YAML in `examples/virtual-services/` (the files
//! docker-compose runs too); the rest configure one filter from a spec in
//! `examples/local/virtual-services/`. Each sends real traffic to real
//! upstreams through Envoy and reports what happened.

mod istio;
mod routing;

use anyhow::Result;
use meshwasm_artifacts::{FAULT_WASM, FILTERS};
use meshwasm_local::envoy::{self, Bootstrap, Envoy, WasmFilter};
use meshwasm_local::traffic::send;
use meshwasm_local::upstream::Upstream;
use std::process::ExitCode;
use std::time::{Duration, Instant};

const JASON_ABORT: &str = include_str!("../../../virtual-services/ratings-jason-abort.json");
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
    for filter in FILTERS {
        println!(
            "  filter  {:<8} {} ({} KiB)",
            filter.name,
            filter.wasm,
            std::fs::metadata(filter.wasm)?.len() / 1024
        );
    }
    println!(
        "  configs {} (rendered by envoyfilter from examples/virtual-services/)",
        istio::envoy_file("").display()
    );
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
    all_ok &= filter_scenarios().await?;
    Ok(all_ok)
}

/// Every filter's own scenario files (`filters/NAME/scenarios/`), played in
/// Envoy: a new filter's files join the demo with no edit here.
async fn filter_scenarios() -> Result<bool> {
    let mut all_ok = true;
    let files = meshwasm_local::scenario::scenario_files()?;
    for filter in FILTERS {
        let dir = format!("filters/{}/scenarios/", filter.name);
        let mine: Vec<_> = files
            .iter()
            .filter(|f| f.to_string_lossy().contains(&dir))
            .collect();
        if mine.is_empty() {
            continue;
        }
        println!(
            "{dir}: the {} filter's scenario files, played in Envoy",
            filter.name
        );
        let started = Instant::now();
        for file in mine {
            let scenario = sdk_host::scenario::Scenario::from_file(file)?;
            let wasm = meshwasm_local::scenario::module_path(&scenario);
            let report = meshwasm_local::scenario::run_in_envoy(&scenario, &wasm).await?;
            let name = file.file_name().unwrap_or_default().to_string_lossy();
            let summary = scenario
                .description
                .split_whitespace()
                .collect::<Vec<_>>()
                .join(" ");
            let l = line(
                report.passed(),
                format!(
                    "{name}: {} requests as expected; {summary}",
                    scenario.requests.len()
                ),
            );
            all_ok &= l.ok;
            println!("  {} {}", if l.ok { "ok  " } else { "FAIL" }, l.text);
            for failure in &report.failures {
                println!("       {failure}");
            }
        }
        println!("  ({:.1} s)\n", started.elapsed().as_secs_f64());
    }
    Ok(all_ok)
}

#[derive(Clone, Copy)]
enum Scenario {
    CanarySplit,
    CircuitBreaker,
    HeaderRouting,
    GatewayMirror,
    FaultJasonAbort,
    FaultJasonAbortV1alpha3,
    FaultDelay,
    LocalRateLimit,
    DenyAdmin,
    Telemetry,
    Mesh,
    Sticky,
    Shop,
    HeaderFaults,
    InvalidConfig,
}

impl Scenario {
    const ALL: [Scenario; 15] = [
        Scenario::CanarySplit,
        Scenario::CircuitBreaker,
        Scenario::HeaderRouting,
        Scenario::GatewayMirror,
        Scenario::FaultJasonAbort,
        Scenario::FaultJasonAbortV1alpha3,
        Scenario::FaultDelay,
        Scenario::LocalRateLimit,
        Scenario::DenyAdmin,
        Scenario::Telemetry,
        Scenario::Mesh,
        Scenario::Sticky,
        Scenario::Shop,
        Scenario::HeaderFaults,
        Scenario::InvalidConfig,
    ];

    fn title(self) -> (&'static str, &'static str) {
        match self {
            Scenario::CanarySplit => ("canary-split.yaml", "an 80/20 canary between web v1 and v2"),
            Scenario::CircuitBreaker => (
                "circuit-breaker.yaml",
                "DestinationRule traffic policies as Envoy cluster settings: the seeds' httpbin \
                 circuit breaker under 20 clients at once; a failing ratings endpoint ejected",
            ),
            Scenario::HeaderRouting => (
                "header-routing.yaml",
                "two VirtualServices in one router: end-user jason sees reviews v2; \
                 cookie user=dev-123 goes to qa; /reviews/ is 80/20 prod/qa",
            ),
            Scenario::GatewayMirror => (
                "gateway-prefixes-mirror.yaml",
                "the gateway's HTTPS redirect and its exposed prefixes; all httpbin \
                 traffic mirrored to a slow v2",
            ),
            Scenario::FaultJasonAbort => (
                "fault-jason-abort.yaml",
                "user jason gets HTTP 500, everyone else reaches ratings v1",
            ),
            Scenario::FaultJasonAbortV1alpha3 => (
                "fault-jason-abort-v1alpha3.yaml",
                "the same abort in v1alpha3's form, with the legacy integer percent: 100",
            ),
            Scenario::FaultDelay => (
                "fault-delay.yaml",
                "a fixed 2 s delay for ratings; /flaky on details: 50 % aborts and 0.1 % 5 s delays",
            ),
            Scenario::LocalRateLimit => (
                "local-rate-limit.yaml",
                "Istio's local rate limit task as a WasmPlugin, with a bucket per x-client",
            ),
            Scenario::DenyAdmin => (
                "deny-admin.yaml",
                "an AuthorizationPolicy denies httpbin's /admin however it is spelled; \
                 phones' requests are tagged x-client-class: mobile",
            ),
            Scenario::Telemetry => (
                "telemetry.yaml",
                "Istio's standard metrics and access log from a plain Envoy: \
                 istio_requests_total per response code, a fifth of ratings' requests aborted",
            ),
            Scenario::Mesh => (
                "mesh-bookinfo.yaml",
                "Bookinfo's routing, fault, access rule, rate limit and metrics in one module \
                 (envoyfilter envoy --mesh): one VM, one pass over each request",
            ),
            Scenario::Sticky => (
                "web-sticky.json",
                "router: an 80/20 split that keeps each user (cookie) on one version",
            ),
            Scenario::Shop => (
                "shop-routing.json",
                "router: matches, rewrite, redirect, timeout, retries, CORS",
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
            Scenario::CanarySplit => istio::canary_split().await,
            Scenario::CircuitBreaker => istio::circuit_breaker().await,
            Scenario::HeaderRouting => istio::header_routing().await,
            Scenario::GatewayMirror => istio::gateway_mirror().await,
            Scenario::FaultJasonAbort => istio::fault_jason_abort("fault-jason-abort.yaml").await,
            Scenario::FaultJasonAbortV1alpha3 => {
                istio::fault_jason_abort("fault-jason-abort-v1alpha3.yaml").await
            }
            Scenario::FaultDelay => istio::fault_delay().await,
            Scenario::LocalRateLimit => istio::local_rate_limit().await,
            Scenario::DenyAdmin => istio::deny_admin().await,
            Scenario::Telemetry => istio::telemetry().await,
            Scenario::Mesh => istio::mesh().await,
            Scenario::Sticky => routing::sticky().await,
            Scenario::Shop => routing::shop().await,
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
