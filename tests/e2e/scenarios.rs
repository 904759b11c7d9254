//! The scenario files (every filter's `filters/*/scenarios/`, and
//! `tests/scenarios/`), each played through sdk-host and through a real
//! Envoy and judged by the same expectations: where the two disagree, one
//! side fails. Also the WASI cross-check: one module
//! calls every WASI function in both hosts, and the two logs must be equal.

use meshwasm_local::envoy::{Bootstrap, Envoy, WasmFilter};
use meshwasm_local::scenario::{module_path, run_in_envoy, scenario_files, wasm_logs};
use meshwasm_local::upstream::Upstream;
use sdk_host::scenario::Scenario;
use sdk_host::{Host, LogLevel, WasmModule};

#[path = "../../sdk-host/tests/all/wat_modules.rs"]
mod wat_modules;

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn every_scenario_gets_the_same_answers_in_sdk_host_and_in_envoy() {
    let mut failures = Vec::new();
    let mut files = scenario_files().unwrap();
    assert!(files.len() >= 8, "scenario files: {files:?}");
    // MESHWASM_EXTRA_SCENARIOS=DIR plays that folder's files too (e.g.
    // scenarios written for other people's filters); MESHWASM_SCENARIO=NAME
    // plays only the files whose path holds NAME.
    if let Ok(dir) = std::env::var("MESHWASM_EXTRA_SCENARIOS") {
        let mut extra: Vec<_> = std::fs::read_dir(&dir)
            .unwrap()
            .filter_map(|e| Some(e.ok()?.path()))
            .filter(|p| p.extension().is_some_and(|e| e == "yaml"))
            .collect();
        extra.sort();
        files.extend(extra);
    }
    let only = std::env::var("MESHWASM_SCENARIO").unwrap_or_default();
    for file in files.iter().filter(|f| f.to_string_lossy().contains(&only)) {
        let scenario = Scenario::from_file(file).unwrap();
        let wasm = module_path(&scenario);
        let module = WasmModule::from_file(&wasm).unwrap();
        let name = file.file_name().unwrap().to_string_lossy().into_owned();
        let in_sdk_host = match scenario.run(&module) {
            Ok(report) => report,
            Err(e) => {
                failures.push(format!("{name} cannot start in sdk-host: {e}"));
                continue;
            }
        };
        let in_envoy = match run_in_envoy(&scenario, &wasm).await {
            Ok(report) => report,
            Err(e) => {
                failures.push(format!("{name} cannot be played in Envoy: {e:#}"));
                continue;
            }
        };
        // The probe logs every hostcall's result: both hosts must log the
        // same lines, not only the ones the file expects. Not for root-only
        // plays: Envoy runs root contexts on its main thread and on each
        // worker, so their lines come more than once there.
        let per_request = !scenario.requests.is_empty() && scenario.advance.is_none();
        if scenario.filter == "probe" && per_request && in_sdk_host.logs != in_envoy.logs {
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
