//! The rate-limit filter in sdk-host, each test in both modes: the built
//! `.wasm` on wasmtime, and this crate linked natively.
#![allow(clippy::unwrap_used, clippy::expect_used, clippy::panic)]

use sdk_host::{Action, Host, WasmModule};
use serde_json::{Value, json};
use std::sync::OnceLock;
use std::time::Duration;

#[derive(Debug, Clone, Copy)]
enum Mode {
    Wasm,
    Native,
}

const MODES: [Mode; 2] = [Mode::Wasm, Mode::Native];

fn module() -> &'static WasmModule {
    static MODULE: OnceLock<WasmModule> = OnceLock::new();
    MODULE.get_or_init(|| WasmModule::from_file(meshwasm_artifacts::RATE_LIMIT_WASM).unwrap())
}

fn start_on(mode: Mode, config: &Value, builder: sdk_host::HostBuilder) -> Host {
    let builder = builder.plugin("rate-limit", "rate-limit", config.to_string());
    match mode {
        Mode::Wasm => builder.start(module()),
        Mode::Native => builder.start_native(sdk_host::native_module!(meshwasm_rate_limit)),
    }
    .unwrap()
}

fn start(mode: Mode, config: &Value) -> Host {
    start_on(mode, config, Host::builder())
}

fn limit(max_tokens: u32, fill_interval: &str) -> Value {
    json!({
        "stat_prefix": "rl",
        "token_bucket": {"max_tokens": max_tokens, "tokens_per_fill": 1, "fill_interval": fill_interval},
        "filter_enabled": {"default_value": {"numerator": 100}},
        "filter_enforced": {"default_value": {"numerator": 100}},
        "enable_x_ratelimit_headers": "DRAFT_VERSION_03",
    })
}

/// Sends a GET and answers it 200 if it reaches the upstream; the status the client sees.
fn get(host: &mut Host, headers: &[(&str, &str)]) -> u32 {
    let stream = host.new_http_stream().unwrap();
    let mut all = vec![(":method", "GET"), (":path", "/"), (":authority", "site")];
    all.extend_from_slice(headers);
    let action = host.send_request_headers(stream, &all, true).unwrap();
    let status = if action == Action::Continue {
        host.send_response_headers(stream, &[(":status", "200")], true)
            .unwrap();
        200
    } else {
        host.http(stream).unwrap().local_response().unwrap().status
    };
    host.finish(stream).unwrap();
    status
}

#[test]
fn two_workers_draw_on_one_bucket() {
    for mode in MODES {
        let config = limit(4, "3600s");
        let mut first = start(mode, &config);
        let mut second = start_on(mode, &config, Host::builder().proxy(&first.proxy()));
        let statuses: Vec<u32> = (0..8)
            .map(|i| get(if i % 2 == 0 { &mut first } else { &mut second }, &[]))
            .collect();
        assert_eq!(
            statuses,
            [200, 200, 200, 200, 429, 429, 429, 429],
            "{mode:?}"
        );
        assert!(first.violations().is_empty(), "{:?}", first.violations());
    }
}

#[test]
fn tokens_come_back_one_at_a_time_as_time_passes() {
    for mode in MODES {
        let mut host = start(mode, &limit(2, "1s"));
        assert_eq!(
            [
                get(&mut host, &[]),
                get(&mut host, &[]),
                get(&mut host, &[])
            ],
            [200, 200, 429]
        );
        host.advance(Duration::from_millis(999)).unwrap();
        assert_eq!(get(&mut host, &[]), 429, "{mode:?}: not a whole token yet");
        host.advance(Duration::from_millis(1)).unwrap();
        assert_eq!(get(&mut host, &[]), 200, "{mode:?}");
        host.advance(Duration::from_secs(10)).unwrap();
        assert_eq!(
            [
                get(&mut host, &[]),
                get(&mut host, &[]),
                get(&mut host, &[])
            ],
            [200, 200, 429],
            "{mode:?}: capped at 2"
        );
    }
}

#[test]
fn each_connection_has_its_own_bucket_when_configured() {
    for mode in MODES {
        let mut config = limit(1, "3600s");
        config["local_rate_limit_per_downstream_connection"] = json!(true);
        let mut on_one = start_on(
            mode,
            &config,
            Host::builder().property("connection.id", 1i64),
        );
        let mut on_two = start_on(
            mode,
            &config,
            Host::builder().property("connection.id", 2i64),
        );
        assert_eq!(
            [get(&mut on_one, &[]), get(&mut on_one, &[])],
            [200, 429],
            "{mode:?}"
        );
        assert_eq!(get(&mut on_two, &[]), 200, "{mode:?}");
    }
}

#[test]
fn a_bad_configuration_is_refused_with_its_path() {
    for mode in MODES {
        let mut config = limit(1, "1s");
        config["token_bucket"]["fill_interval"] = json!("0s");
        let builder = Host::builder().plugin("rate-limit", "rate-limit", config.to_string());
        let result = match mode {
            Mode::Wasm => builder.start(module()),
            Mode::Native => builder.start_native(sdk_host::native_module!(meshwasm_rate_limit)),
        };
        let Err(err) = result else {
            panic!("{mode:?}: a zero fill interval was accepted")
        };
        let err = err.to_string();
        assert!(
            err.contains("token_bucket.fill_interval: must be above 0s"),
            "{mode:?}: {err}"
        );
    }
}

/// This filter's scenario files (`scenarios/`), which the end-to-end
/// suite and the demo also play in Envoy, here in both modes.
#[test]
fn the_rate_limit_scenario_files_pass_in_both_modes() {
    let dir = std::path::Path::new(env!("CARGO_MANIFEST_DIR")).join("scenarios");
    let mut played = 0;
    for entry in std::fs::read_dir(&dir).unwrap() {
        let path = entry.unwrap().path();
        let name = path.file_name().unwrap().to_string_lossy().into_owned();
        let scenario = sdk_host::scenario::Scenario::from_file(&path).unwrap();
        assert_eq!(scenario.filter, "rate-limit", "{name}");
        let in_wasm = scenario.run(module()).unwrap();
        let native = scenario
            .run_native(sdk_host::native_module!(meshwasm_rate_limit))
            .unwrap();
        assert!(in_wasm.passed(), "{name} in wasm: {:#?}", in_wasm.failures);
        assert!(native.passed(), "{name} native: {:#?}", native.failures);
        played += 1;
    }
    assert!(played >= 1, "rate-limit scenarios in {}", dir.display());
}
