//! The scenario files in `tests/scenarios/`, each played through sdk-host
//! and through a real Envoy and judged by the same expectations: where the
//! two disagree, one side fails. Also the WASI cross-check: one module
//! calls every WASI function in both hosts, and the two logs must be equal.

use anyhow::{Context as _, Result, bail};
use meshwasm_local::artifacts::{FAULT_WASM, PROBE_WASM, ROUTER_WASM};
use meshwasm_local::envoy::{Bootstrap, Envoy, WasmFilter};
use meshwasm_local::upstream::{Reply, Upstream};
use sdk_host::scenario::{Body, Observed, Report, Scenario, UpstreamSaw};
use sdk_host::{HeaderMap, Host, LogLevel, WasmModule};
use std::path::{Path, PathBuf};
use std::time::{Duration, Instant};

#[path = "../../sdk-host/tests/all/wat_modules.rs"]
mod wat_modules;

/// How long the Envoy runner waits for an answer the filter holds.
const CLIENT_TIMEOUT: Duration = Duration::from_secs(20);

fn scenario_files() -> Vec<PathBuf> {
    let dir = Path::new(env!("CARGO_MANIFEST_DIR")).join("scenarios");
    let mut files: Vec<PathBuf> = std::fs::read_dir(&dir)
        .unwrap()
        .map(|e| e.unwrap().path())
        .filter(|p| p.extension().is_some_and(|e| e == "yaml"))
        .collect();
    files.sort();
    files
}

/// The module a scenario names: one of the built artifacts, or a path
/// relative to the file.
fn module_path(scenario: &Scenario) -> PathBuf {
    match scenario.filter.as_str() {
        "fault" => FAULT_WASM.into(),
        "router" => ROUTER_WASM.into(),
        "probe" => PROBE_WASM.into(),
        _ => scenario.filter_path(),
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn every_scenario_gets_the_same_answers_in_sdk_host_and_in_envoy() {
    let mut failures = Vec::new();
    let files = scenario_files();
    assert!(files.len() >= 5, "scenario files: {files:?}");
    for file in &files {
        let scenario = Scenario::from_file(file).unwrap();
        let wasm = module_path(&scenario);
        let module = WasmModule::from_file(&wasm).unwrap();
        let name = file.file_name().unwrap().to_string_lossy().into_owned();
        let in_sdk_host = scenario.run(&module).unwrap();
        let in_envoy = run_in_envoy(&scenario, &wasm)
            .await
            .with_context(|| name.clone())
            .unwrap();
        // The probe logs every hostcall's result: both hosts must log the
        // same lines, not only the ones the file expects.
        if scenario.filter == "probe" && in_sdk_host.logs != in_envoy.logs {
            failures.push(format!(
                "{name}: the probe's log differs between sdk-host and Envoy:\n{}",
                log_diff(&in_sdk_host.logs, &in_envoy.logs)
            ));
        }
        for (side, report) in [("sdk-host", &in_sdk_host), ("Envoy", &in_envoy)] {
            if report.passed() {
                continue;
            }
            failures.extend(
                report
                    .failures
                    .iter()
                    .map(|f| format!("{name} in {side}: {f}")),
            );
            failures.push(format!("{name}: what the filter logged in {side}:"));
            failures.extend(
                report
                    .logs
                    .iter()
                    .map(|(level, message)| format!("  [{level}] {message}")),
            );
        }
    }
    assert!(failures.is_empty(), "\n{}", failures.join("\n"));
}

/// The two logs side by side from the first line that differs.
fn log_diff(sdk_host: &[(LogLevel, String)], envoy: &[(LogLevel, String)]) -> String {
    let same = sdk_host
        .iter()
        .zip(envoy)
        .take_while(|(a, b)| a == b)
        .count();
    let show = |lines: &[(LogLevel, String)]| {
        lines
            .iter()
            .skip(same)
            .take(8)
            .map(|(level, message)| format!("    [{level}] {message}"))
            .collect::<Vec<_>>()
            .join("\n")
    };
    format!(
        "  the first {same} lines agree; then sdk-host:\n{}\n  and Envoy:\n{}",
        show(sdk_host),
        show(envoy)
    )
}

/// Plays a scenario through a real Envoy: the plugin in a Wasm filter,
/// an upstream that answers each request as the scenario says, and a
/// client on 127.0.0.1. Metrics come from the admin stats and logs from
/// Envoy's `wasm` logger at trace level.
async fn run_in_envoy(scenario: &Scenario, wasm: &Path) -> Result<Report> {
    let upstream = Upstream::start("scenario").await?;
    let mut filter = WasmFilter::new("scenario", wasm, "");
    filter.name = scenario.plugin_name();
    filter.root_id.clone_from(&scenario.root_id);
    filter.vm_id.clone_from(&scenario.vm_id);
    filter.configuration = String::from_utf8(scenario.config_bytes())?;
    filter.vm_configuration = String::from_utf8(scenario.vm_config_bytes())?;
    let envoy = Envoy::start(
        Bootstrap::new(upstream.addr())
            .filter(filter)
            .wasm_log_level("trace"),
    )
    .await?;
    let http = meshwasm_local::envoy::client()?;
    let mut observed = Vec::new();
    for (i, exchange) in scenario.requests.iter().enumerate() {
        if exchange.trailers.is_some() {
            bail!("request {}: trailers can only be played in sdk-host", i + 1);
        }
        let response = exchange.response.clone().unwrap_or_default();
        upstream.set_reply(Some(Reply {
            status: response.status,
            headers: response.headers.into_iter().collect(),
            body: response.body.as_ref().map(Body::bytes).unwrap_or_default(),
        }));
        let headers = exchange.request_headers();
        let pseudo = |name: &str| {
            headers
                .iter()
                .find(|(n, _)| n == name)
                .map_or("", |(_, v)| v.as_str())
        };
        let mut request = http
            .request(pseudo(":method").parse()?, envoy.url(pseudo(":path")))
            .header("host", pseudo(":authority"))
            .timeout(CLIENT_TIMEOUT);
        for (name, value) in headers.iter().filter(|(n, _)| !n.starts_with(':')) {
            request = request.header(name, value);
        }
        if let Some(body) = &exchange.body {
            request = request.body(body.bytes());
        }
        let seen_before = upstream.hits();
        let started = Instant::now();
        let mut got = Observed::default();
        if let Ok(answer) = request.send().await {
            got.status = Some(answer.status().as_u16());
            got.headers = HeaderMap::from_pairs(
                answer
                    .headers()
                    .iter()
                    .map(|(k, v)| (k.as_str(), v.as_bytes())),
            );
            got.body = answer.bytes().await.map(|b| b.to_vec()).unwrap_or_default();
        }
        got.elapsed = started.elapsed();
        // The request is the last to arrive: callouts the filter made for
        // it came first.
        let seen = upstream.seen();
        got.upstream = seen.get(seen_before..).and_then(<[_]>::last).map(|seen| {
            let mut headers = HeaderMap::from_pairs([
                (":method", seen.method.as_str()),
                (":path", seen.path.as_str()),
            ]);
            for (name, value) in &seen.headers {
                headers.add(name, value);
            }
            UpstreamSaw {
                headers,
                body: seen.body.to_vec(),
            }
        });
        observed.push(got);
        if let Some(advance) = exchange.advance {
            tokio::time::sleep(advance).await;
        }
    }
    let stats = envoy.stats().await?;
    let logs = wasm_logs(&envoy.log());
    Ok(scenario.judge(
        observed,
        |name| {
            stats
                .get(name)
                .or_else(|| stats.get(&format!("wasmcustom.{name}")))
                .and_then(|v| i64::try_from(*v).ok())
        },
        &logs,
    ))
}

/// The filters' log messages from Envoy's log, with their levels. A line
/// reads `[time][thread][level][wasm] [source] wasm log <plugin> <root> <vm>: message`.
fn wasm_logs(log: &str) -> Vec<(LogLevel, String)> {
    log.lines()
        .filter_map(|line| {
            let (head, rest) = line.split_once("][wasm] ")?;
            let level = match head.rsplit('[').next()? {
                "trace" => LogLevel::Trace,
                "debug" => LogLevel::Debug,
                "info" => LogLevel::Info,
                "warning" => LogLevel::Warn,
                "error" => LogLevel::Error,
                "critical" => LogLevel::Critical,
                _ => return None,
            };
            let (_, logged) = rest.split_once(" wasm log")?;
            let (_, message) = logged.split_once(": ")?;
            Some((level, message.to_string()))
        })
        .collect()
}

/// Every WASI function Envoy registers, called from one module's
/// `proxy_on_vm_start` in sdk-host and in Envoy: the `name=errno` lines
/// (and what the writes print) must be the same, in the same order.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn wasi_answers_are_the_same_in_sdk_host_and_in_envoy() {
    let dir = tempfile::tempdir().unwrap();
    for namespace in ["wasi_snapshot_preview1", "wasi_unstable"] {
        let bytes = wat::parse_str(wat_modules::wasi_module(namespace)).unwrap();
        let wasm = dir.path().join(format!("{namespace}.wasm"));
        std::fs::write(&wasm, &bytes).unwrap();

        let module = WasmModule::from_bytes("wasi.wasm", &bytes).unwrap();
        let host = Host::builder().start(&module).unwrap();
        let in_sdk_host: Vec<(LogLevel, String)> = host
            .logs()
            .iter()
            .map(|r| (r.level, r.message.clone()))
            .collect();

        let upstream = Upstream::start("unused").await.unwrap();
        let envoy = Envoy::start(
            Bootstrap::new(upstream.addr()).filter(WasmFilter::new("wasi", &wasm, "")),
        )
        .await
        .unwrap();
        // Every VM (the main thread's and the worker's) starts once and
        // logs the whole list: compare the first start.
        let all = wasm_logs(&envoy.log());
        let in_envoy = all.get(..in_sdk_host.len()).unwrap_or(&all).to_vec();
        assert_eq!(in_envoy, in_sdk_host, "{namespace}");
        // And both are the errnos sdk-host's own tests expect.
        let messages: Vec<String> = in_envoy.into_iter().map(|(_, m)| m).collect();
        assert_eq!(messages, wat_modules::expected_lines(), "{namespace}");
    }
}

/// A hostcall from a module's start function crashes Envoy 1.40 (V8
/// segfaults), so sdk-host refuses to start such a module; the same call
/// from `_initialize` works in both.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_hostcall_from_the_start_function_crashes_envoy_and_sdk_host_refuses_it() {
    let module = |start: &str| wat::parse_str(wat_modules::logging_from(start)).unwrap();
    let dir = tempfile::tempdir().unwrap();
    let upstream = Upstream::start("unused").await.unwrap();

    let start = dir.path().join("start.wasm");
    std::fs::write(&start, module("(start $say)")).unwrap();
    let log = meshwasm_local::envoy::expect_rejected(
        Bootstrap::new(upstream.addr()).filter(WasmFilter::new("start", &start, "")),
    )
    .await
    .unwrap();
    assert!(log.contains("Caught Segmentation fault"), "{log}");
    let refused = Host::builder()
        .start(&WasmModule::from_file(&start).unwrap())
        .map(|_| ())
        .unwrap_err()
        .to_string();
    assert!(
        refused.contains("start function called a host function"),
        "{refused}"
    );

    let init = dir.path().join("init.wasm");
    std::fs::write(&init, module(r#"(export "_initialize" (func $say))"#)).unwrap();
    let envoy =
        Envoy::start(Bootstrap::new(upstream.addr()).filter(WasmFilter::new("init", &init, "")))
            .await
            .unwrap();
    assert!(wasm_logs(&envoy.log()).contains(&(LogLevel::Info, "starting".to_string())));
    let host = Host::builder()
        .start(&WasmModule::from_file(&init).unwrap())
        .unwrap();
    assert_eq!(host.log_lines(LogLevel::Info), ["starting"]);
}
