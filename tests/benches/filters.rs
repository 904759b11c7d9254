//! Every filter's cost in a real Envoy, beside Envoy's native filters, in
//! one table measured against one baseline in the same run.
//!
//! The configurations are data: `tests/benches/filters.yaml`. For each:
//! - `cpu`: Envoy's CPU time per request (the scheduler's nanoseconds),
//!   Envoy pinned to CPU 1 and the load generator to CPU 0, the cases
//!   taking turns over several rounds (median, min–max); Envoy's RSS after
//!   warm-up; the time from starting Envoy to its `/ready`, on an idle
//!   core (median of 3 starts);
//! - `instructions`: instructions per request under callgrind, counted
//!   over a fixed number of requests with counting off during start-up and
//!   warm-up, so V8's compilation is not in the count;
//! - `size`: each module raw, after `wasm-opt -Oz` and gzipped;
//! - `hostcalls`: the hostcalls one request makes, each a VM crossing that
//!   costs thousands of instructions in Envoy, counted in sdk-host (for the
//!   cases with one Wasm filter; the second request of the run is counted);
//! - `breakdown`: where each module's bytes go, by crate or kind of code
//!   and by function, from a build that keeps the function names
//!   (`target/size-breakdown/`).
//!
//! Run: `cargo bench -p meshwasm-e2e --bench filters [-- cpu|instructions|size|hostcalls|breakdown]`.
//! `MESHWASM_BENCH_MODULES=DIR` measures the modules saved in DIR (from
//! another commit) instead of the workspace's build.
//! `MESHWASM_BENCH_CASES=router,fault` keeps the cases whose names contain
//! one of those words (and the baseline). `MESHWASM_BENCH_WORKERS=2` runs
//! Envoy with `--concurrency 2` (a VM per worker) instead of one worker, for
//! what a sidecar's RSS and start-up are with more workers. Stats are not flushed on a timer,
//! since each flush walks every stat.

#![allow(clippy::unwrap_used, clippy::expect_used, clippy::panic)]

#[path = "../e2e/rls.rs"]
#[allow(dead_code, unreachable_pub)]
mod rls;

use anyhow::{Context, Result, anyhow};
use meshwasm_local::bench::{self, ModuleSize, SizeBreakdown, Traffic};
use meshwasm_local::envoy::{self, Bootstrap, Envoy, WasmFilter};
use meshwasm_local::upstream::Upstream;
use serde::Deserialize;
use serde_json::Value;
use std::collections::BTreeMap;
use std::path::{Path, PathBuf};
use std::time::{Duration, Instant};

const V1: &str = "outbound|5005|v1|web";
const V2: &str = "outbound|5005|v2|web";
/// The header the router names its cluster in.
const HANDOFF_HEADER: &str = "x-meshwasm-cluster";

const STARTS: usize = 3;
const ROUNDS: usize = 5;
const CPU_REQUESTS: usize = 4_000;
const CPU_WARM_UP: usize = 2_000;
const CPU_CONCURRENCY: usize = 4;
const COUNTED_REQUESTS: usize = 500;
const COUNT_WARM_UP: usize = 200;

/// `filters.yaml`.
#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
struct Plan {
    traffic: TrafficSpec,
    cases: Vec<CaseSpec>,
}

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
struct TrafficSpec {
    path: String,
    headers: BTreeMap<String, String>,
}

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
struct CaseSpec {
    name: String,
    #[serde(default)]
    native: Vec<Value>,
    #[serde(default)]
    wasm: Vec<WasmSpec>,
    #[serde(default)]
    route: Route,
    #[serde(default)]
    headers: BTreeMap<String, String>,
    node: Option<Value>,
}

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
struct WasmSpec {
    filter: String,
    config: Value,
}

#[derive(Debug, Default, Deserialize)]
#[serde(rename_all = "lowercase")]
enum Route {
    #[default]
    Upstream,
    Handoff,
    Weighted(BTreeMap<String, u32>),
}

/// The servers every case's Envoy talks to.
struct Servers {
    v1: Upstream,
    v2: Upstream,
    rls: rls::Rls,
}

/// What was measured of one case.
#[derive(Default)]
struct Row {
    instructions: Option<f64>,
    cpu_us: Vec<f64>,
    rss: Option<u64>,
    ready: Option<Duration>,
}

fn main() {
    // Two cores: Envoy gets CPU 1, this process (the client) CPU 0.
    if let Err(e) = bench::pin_this_process_to_cpu(0) {
        eprintln!("load generator not pinned: {e:#}");
    }
    let runtime = tokio::runtime::Builder::new_multi_thread()
        .worker_threads(2)
        .enable_all()
        .build()
        .unwrap();
    if let Err(e) = runtime.block_on(run()) {
        eprintln!("error: {e:#}");
        std::process::exit(1);
    }
}

async fn run() -> Result<()> {
    let file = Path::new(env!("CARGO_MANIFEST_DIR")).join("benches/filters.yaml");
    let plan = load(&file)?;
    let cases = selected(plan.cases);
    let workers = workers()?;
    println!(
        "meshwasm filters beside Envoy's own, Envoy {} (V8), {workers} worker{}; cases from {}\n",
        envoy::ENVOY_VERSION,
        if workers == 1 { "" } else { "s" },
        file.display()
    );
    let servers = Servers {
        v1: Upstream::start("v1").await?,
        v2: Upstream::start("v2").await?,
        rls: rls::Rls::start(&[]).await,
    };
    let wanted = bench::wanted_parts();
    let mut rows: Vec<Row> = cases.iter().map(|_| Row::default()).collect();
    if wanted("cpu") {
        measure_cpu(&cases, &plan.traffic, &servers, &mut rows).await?;
    }
    if wanted("instructions") && bench::have_valgrind() {
        count_instructions(&cases, &plan.traffic, &servers, &mut rows).await?;
    }
    if rows
        .iter()
        .any(|r| r.ready.is_some() || r.instructions.is_some())
    {
        print_table(&cases, &rows);
    }
    if wanted("size") {
        print_sizes(&cases)?;
    }
    if wanted("hostcalls") {
        print_hostcalls(&cases, &plan.traffic)?;
    }
    if wanted("breakdown") {
        print_breakdowns(&cases)?;
    }
    Ok(())
}

/// Reads the cases; an error names the field and its line (with the
/// YAML reading of sdk-host's scenario files).
fn load(file: &Path) -> Result<Plan> {
    use sdk_host::scenario::{from_document, yaml_document};
    let text =
        std::fs::read_to_string(file).with_context(|| format!("reading {}", file.display()))?;
    let document = yaml_document(file, &text).map_err(|e| anyhow!("{e}"))?;
    from_document(file, &document).map_err(|e| anyhow!("{e}"))
}

/// The cases `MESHWASM_BENCH_CASES` names, and always the first (the baseline).
fn selected(cases: Vec<CaseSpec>) -> Vec<CaseSpec> {
    let Ok(words) = std::env::var("MESHWASM_BENCH_CASES") else {
        return cases;
    };
    let words: Vec<&str> = words.split(',').map(str::trim).collect();
    cases
        .into_iter()
        .enumerate()
        .filter(|(i, case)| *i == 0 || words.iter().any(|w| case.name.contains(w)))
        .map(|(_, case)| case)
        .collect()
}

fn bootstrap(case: &CaseSpec, servers: &Servers) -> Result<Bootstrap> {
    let mut bootstrap = Bootstrap::new(servers.v1.addr())
        .cluster(V1, servers.v1.addr())
        .cluster(V2, servers.v2.addr())
        .grpc_cluster("rls", servers.rls.addr())
        .stats_flush_on_admin()
        .concurrency(workers()?);
    bootstrap = match &case.route {
        Route::Upstream => bootstrap,
        Route::Handoff => bootstrap.route_by_header(HANDOFF_HEADER),
        Route::Weighted(weights) => {
            let weights: Vec<(&str, u32)> = weights.iter().map(|(c, w)| (c.as_str(), *w)).collect();
            bootstrap.weighted_route(&weights)
        }
    };
    for native in &case.native {
        bootstrap = bootstrap.native_filter(native.clone());
    }
    for wasm in &case.wasm {
        bootstrap = bootstrap.filter(WasmFilter::new(
            &wasm.filter,
            module_path(&wasm.filter)?,
            wasm.config.to_string(),
        ));
    }
    if let Some(node) = &case.node {
        bootstrap = bootstrap.node(node.clone());
    }
    Ok(bootstrap)
}

/// Envoy's worker threads: `$MESHWASM_BENCH_WORKERS`, else one.
fn workers() -> Result<u32> {
    match std::env::var("MESHWASM_BENCH_WORKERS") {
        Err(_) => Ok(1),
        Ok(n) => n.parse().ok().filter(|n| *n > 0).ok_or_else(|| {
            anyhow!("MESHWASM_BENCH_WORKERS={n}: expected a number of workers, 1 or more")
        }),
    }
}

/// The module of filter `name`: the workspace's build, or the same file
/// name in `$MESHWASM_BENCH_MODULES` (modules saved from another commit).
fn module_path(name: &str) -> Result<PathBuf> {
    let built = meshwasm_artifacts::filter(name)
        .ok_or_else(|| anyhow!("no filter named {name:?}"))?
        .wasm;
    let Some(dir) = std::env::var_os("MESHWASM_BENCH_MODULES") else {
        return Ok(PathBuf::from(built));
    };
    let file = Path::new(built)
        .file_name()
        .ok_or_else(|| anyhow!("{built}: no file name"))?;
    Ok(Path::new(&dir).join(file))
}

/// The traffic's headers, with the case's own added or replacing them.
fn request_headers(spec: &TrafficSpec, case: &CaseSpec) -> BTreeMap<String, String> {
    let mut headers = spec.headers.clone();
    headers.extend(case.headers.clone());
    headers
}

fn traffic(spec: &TrafficSpec, case: &CaseSpec) -> Traffic {
    let headers = request_headers(spec, case);
    let path: &'static str = Box::leak(spec.path.clone().into_boxed_str());
    Traffic::new(path, move |mut request, _| {
        for (name, value) in &headers {
            request = request.header(name, value);
        }
        request
    })
}

/// CPU per request, RSS and time to ready; every case's Envoy runs at once,
/// idle but for its turn.
async fn measure_cpu(
    cases: &[CaseSpec],
    spec: &TrafficSpec,
    servers: &Servers,
    rows: &mut [Row],
) -> Result<()> {
    eprintln!(
        "starting {} Envoys, {STARTS} times each, on CPU 1",
        cases.len()
    );
    let mut envoys = Vec::new();
    for (case, row) in cases.iter().zip(rows.iter_mut()) {
        let mut times = Vec::new();
        let mut last = None;
        for _ in 0..STARTS {
            drop(last.take());
            let started = Instant::now();
            let envoy = Envoy::start(bootstrap(case, servers)?.pin_to_cpu(1))
                .await
                .with_context(|| case.name.clone())?;
            times.push(started.elapsed());
            last = Some(envoy);
        }
        times.sort();
        row.ready = Some(times[times.len() / 2]);
        let envoy = last.ok_or_else(|| anyhow!("no start"))?;
        let traffic = traffic(spec, case);
        traffic
            .send(&envoy, CPU_WARM_UP, CPU_CONCURRENCY)
            .await
            .with_context(|| case.name.clone())?;
        row.rss = Some(envoy.rss_bytes()?);
        envoys.push((envoy, traffic));
    }
    for round in 1..=ROUNDS {
        eprintln!("CPU round {round} of {ROUNDS}");
        for ((envoy, traffic), row) in envoys.iter().zip(rows.iter_mut()) {
            let per_request =
                bench::cpu_us_per_request(envoy, traffic, CPU_REQUESTS, CPU_CONCURRENCY).await?;
            row.cpu_us.push(per_request);
        }
    }
    Ok(())
}

/// Instructions per request, one Envoy at a time under callgrind.
async fn count_instructions(
    cases: &[CaseSpec],
    spec: &TrafficSpec,
    servers: &Servers,
    rows: &mut [Row],
) -> Result<()> {
    for (case, row) in cases.iter().zip(rows.iter_mut()) {
        eprintln!("callgrind: {}", case.name);
        // `MESHWASM_BENCH_WARM_UP=0` shows what counting from the first
        // request adds: V8 compiling and tiering up the module.
        let warm_up = std::env::var("MESHWASM_BENCH_WARM_UP")
            .ok()
            .and_then(|n| n.parse().ok())
            .unwrap_or(COUNT_WARM_UP);
        let per_request = bench::counted_instructions(
            bootstrap(case, servers)?,
            &traffic(spec, case),
            warm_up,
            COUNTED_REQUESTS,
        )
        .await
        .with_context(|| case.name.clone())?;
        row.instructions = Some(per_request);
    }
    Ok(())
}

fn print_table(cases: &[CaseSpec], rows: &[Row]) {
    let base = &rows[0];
    let median = |v: &[f64]| {
        let mut v = v.to_vec();
        v.sort_by(f64::total_cmp);
        v.get(v.len() / 2).copied()
    };
    let base_cpu = median(&base.cpu_us);
    println!(
        "{:<46} {:>9} {:>8} {:>6}  {:>21} {:>7} {:>6} {:>9}",
        "configuration",
        "instr/req",
        "added",
        "ratio",
        "CPU us/req (min-max)",
        "ratio",
        "RSS MiB",
        "ready ms"
    );
    for (case, row) in cases.iter().zip(rows) {
        let (instr, added, ratio) = match (row.instructions, base.instructions) {
            (Some(i), Some(b)) => (
                format!("{:.1}k", i / 1e3),
                format!("{:+.1}k", (i - b) / 1e3),
                format!("{:.2}x", i / b),
            ),
            _ => ("-".into(), "-".into(), "-".into()),
        };
        let (cpu, cpu_ratio) = match (median(&row.cpu_us), base_cpu) {
            (Some(m), Some(b)) => {
                let lo = row.cpu_us.iter().copied().fold(f64::INFINITY, f64::min);
                let hi = row.cpu_us.iter().copied().fold(0.0, f64::max);
                (
                    format!("{m:.1} ({lo:.1}-{hi:.1})"),
                    format!("{:.2}x", m / b),
                )
            }
            _ => ("-".into(), "-".into()),
        };
        let rss = row
            .rss
            .map_or("-".into(), |r| format!("{:.1}", r as f64 / 1048576.0));
        let ready = row
            .ready
            .map_or("-".into(), |d| format!("{}", d.as_millis()));
        println!(
            "{:<46} {instr:>9} {added:>8} {ratio:>6}  {cpu:>21} {cpu_ratio:>7} {rss:>7} {ready:>9}",
            case.name
        );
    }
}

fn print_sizes(cases: &[CaseSpec]) -> Result<()> {
    let filters = filter_names(cases);
    println!(
        "\n{:<16} {:>10} {:>14} {:>10}",
        "module", "raw", "wasm-opt -Oz", "gzip -9"
    );
    for name in filters {
        let size = ModuleSize::of(&module_path(name)?)?;
        let optimized = size
            .optimized
            .map_or("(no binaryen)".into(), |b| b.to_string());
        println!(
            "{name:<16} {:>10} {optimized:>14} {:>10}",
            size.raw, size.gzipped
        );
    }
    Ok(())
}

/// Builds each module as shipped but with its function names, and prints
/// where its bytes go.
fn print_breakdowns(cases: &[CaseSpec]) -> Result<()> {
    let workspace = Path::new(env!("CARGO_MANIFEST_DIR")).join("..");
    let target = workspace.join("target/size-breakdown");
    for name in filter_names(cases) {
        let module =
            meshwasm_artifacts::filter(name).ok_or_else(|| anyhow!("no filter named {name:?}"))?;
        eprintln!("building {} with its function names", module.package);
        let cargo = std::env::var_os("CARGO").unwrap_or_else(|| "cargo".into());
        let status = std::process::Command::new(cargo)
            .current_dir(&workspace)
            .args(["build-filter", "--quiet", "-p", module.package])
            .env("CARGO_PROFILE_WASM_STRIP", "false")
            .env("CARGO_TARGET_DIR", &target)
            .status()?;
        anyhow::ensure!(status.success(), "building {} failed", module.package);
        let file = Path::new(module.wasm)
            .file_name()
            .ok_or_else(|| anyhow!("no file name"))?;
        let breakdown = SizeBreakdown::of(&target.join("wasm32-wasip1/wasm").join(file))?;
        println!("\n{name}: {} bytes of code and data", breakdown.total);
        for (group, bytes, functions) in &breakdown.groups {
            println!(
                "  {group:<46} {bytes:>8} {:>5.1} %  {functions:>5} functions",
                100.0 * *bytes as f64 / breakdown.total as f64
            );
        }
        println!("  largest functions:");
        for (function, bytes) in &breakdown.largest {
            let function: String = function.chars().take(110).collect();
            println!("  {bytes:>8}  {function}");
        }
    }
    Ok(())
}

fn filter_names(cases: &[CaseSpec]) -> Vec<&str> {
    let mut filters: Vec<&str> = cases
        .iter()
        .flat_map(|c| c.wasm.iter().map(|w| w.filter.as_str()))
        .collect();
    filters.sort_unstable();
    filters.dedup();
    filters
}

/// Counts the hostcalls of one request through each single-filter case in
/// sdk-host: request headers, a 200 from the upstream, the stream's end.
fn print_hostcalls(cases: &[CaseSpec], spec: &TrafficSpec) -> Result<()> {
    println!("\nhostcalls per request (sdk-host, the second request of each case)");
    for case in cases.iter().filter(|c| c.wasm.len() == 1) {
        let wasm = &case.wasm[0];
        let module = sdk_host::WasmModule::from_file(module_path(&wasm.filter)?)?;
        let mut host = sdk_host::Host::builder()
            .plugin_config(wasm.config.to_string())
            .start(&module)
            .map_err(|e| anyhow!("{}: {e}", case.name))?;
        let mut headers: Vec<(String, String)> = vec![
            (":method".into(), "GET".into()),
            (":path".into(), spec.path.clone()),
            (":scheme".into(), "http".into()),
        ];
        for (name, value) in request_headers(spec, case) {
            let name = if name == "host" {
                ":authority".into()
            } else {
                name
            };
            headers.push((name, value));
        }
        let mut counts = Default::default();
        for _ in 0..2 {
            let before = host.hostcall_counts();
            let stream = host.new_http_stream()?;
            host.send_request_headers(stream, &headers, true)?;
            // A rate limit service's answer: `overall_code: OK`.
            for call in host.grpc_calls() {
                host.grpc_respond(call.token, [0x08, 0x01])?;
            }
            host.send_response_headers(stream, &[(":status", "200")], true)?;
            host.finish(stream)?;
            counts = difference(&host.hostcall_counts(), &before);
        }
        let total: u64 = counts.values().sum();
        let calls: Vec<String> = counts.iter().map(|(n, c)| format!("{n} {c}")).collect();
        println!("  {:<46} {total:>3}: {}", case.name, calls.join(", "));
    }
    Ok(())
}

fn difference(
    after: &BTreeMap<&'static str, u64>,
    before: &BTreeMap<&'static str, u64>,
) -> BTreeMap<&'static str, u64> {
    after
        .iter()
        .map(|(name, n)| (*name, n - before.get(name).copied().unwrap_or(0)))
        .filter(|(_, n)| *n > 0)
        .collect()
}
