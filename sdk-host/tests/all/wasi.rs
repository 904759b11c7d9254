//! The WASI calls, each with the errno Envoy 1.40 answers, from a module
//! that calls them all and logs `name=errno`; and WASI reached through
//! Rust's std in the probe.

use crate::wat_modules::{expected_lines, wasi_module};
use crate::{Mode, results, start};
use sdk_host::{Host, LogLevel, WasmModule};
use serde_json::json;

#[test]
fn every_wasi_function_answers_as_envoy_does_under_both_names() {
    for namespace in ["wasi_snapshot_preview1", "wasi_unstable"] {
        let bytes = wat::parse_str(wasi_module(namespace)).unwrap();
        let module = WasmModule::from_bytes("wasi.wasm", &bytes).unwrap();
        let host = Host::builder()
            .env("GREETING", "hi")
            .start(&module)
            .unwrap();
        let lines: Vec<String> = host.logs().iter().map(|r| r.message.clone()).collect();
        assert_eq!(lines, expected_lines(), "{namespace}");
        let levels: Vec<LogLevel> = host
            .logs()
            .iter()
            .filter(|r| r.message == "hello")
            .map(|r| r.level)
            .collect();
        assert_eq!(levels, [LogLevel::Info, LogLevel::Error, LogLevel::Info]);
        assert_eq!(host.exit_code(), Some(7));
    }
}

#[test]
fn std_reaches_the_host_through_wasi() {
    let script = json!({"on_configure": [
        ["stdout", "to stdout"], ["stderr", "to stderr"], ["env", "GREETING"], ["env", "HOME"],
        ["args"], ["random", 4], ["clock", 0], ["clock", 1]
    ]});
    let run = |seed| {
        let host = start(
            Mode::Wasm,
            Host::builder()
                .env("GREETING", "hi")
                .seed(seed)
                .start_time_nanos(5_000),
            &script,
        );
        (
            results(&host, "on_configure"),
            host.log_lines(LogLevel::Error),
        )
    };
    let (lines, errors) = run(1);
    assert_eq!(lines[0], "stdout(to stdout): ok");
    assert_eq!(lines[2], r#"env(GREETING): ok "hi""#);
    assert_eq!(lines[3], "env(HOME): absent");
    assert_eq!(lines[4], "args(): ok 0");
    assert!(lines[5].starts_with("random(4): errno 0 "), "{}", lines[5]);
    assert_eq!(lines[6], "clock(0): errno 0 5000");
    // The monotonic clock is never 0 (the Go runtime refuses one that is).
    let monotonic = format!("clock(1): errno 0 {}", sdk_host::MONOTONIC_START_NANOS);
    assert_eq!(lines[7], monotonic);
    assert!(errors.contains(&"to stderr".to_string()));
    // The seed makes random_get reproducible, and changing it changes it.
    assert_eq!(run(1).0[5], lines[5]);
    assert_ne!(run(2).0[5], lines[5]);
}
