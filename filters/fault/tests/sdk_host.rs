//! The fault filter's scenarios through sdk-host, each in both modes: the
//! built `.wasm` on wasmtime, and this crate linked natively.
#![allow(clippy::unwrap_used, clippy::expect_used, clippy::panic)]

use sdk_host::{Action, Error, Host, LogLevel, WasmModule};
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
    MODULE.get_or_init(|| WasmModule::from_file(meshwasm_artifacts::FAULT_WASM).unwrap())
}

fn try_start(mode: Mode, config: &Value) -> Result<Host, Error> {
    let builder = Host::builder().plugin("fault", "fault", config.to_string());
    match mode {
        Mode::Wasm => builder.start(module()),
        Mode::Native => builder.start_native(sdk_host::native_module!(meshwasm_fault)),
    }
}

fn start(mode: Mode, config: &Value) -> Host {
    try_start(mode, config).unwrap()
}

fn request(host: &mut Host, headers: &[(&str, &str)], end: bool) -> (u32, Action) {
    let stream = host.new_http_stream().unwrap();
    let action = host.send_request_headers(stream, headers, end).unwrap();
    (stream, action)
}

const RATINGS: [(&str, &str); 3] = [
    (":method", "GET"),
    (":path", "/ratings/1"),
    (":authority", "ratings"),
];

fn fault(fault: Value) -> Value {
    json!({"hosts": ["ratings"], "http": [{"fault": fault, "route": [{"destination": {"host": "ratings"}}]}]})
}

#[test]
fn an_abort_answers_locally_and_never_reaches_the_upstream() {
    for mode in MODES {
        let mut host = start(
            mode,
            &fault(json!({"abort": {"percentage": {"value": 100}, "httpStatus": 503}})),
        );
        let (stream, action) = request(&mut host, &RATINGS, true);
        assert_eq!(action, Action::Pause, "{mode:?}");
        let view = host.http(stream).unwrap();
        let local = view.local_response().unwrap();
        assert_eq!(
            (local.status, local.details.as_str()),
            (503, "fault_filter_abort")
        );
        assert_eq!(view.downstream().body, b"fault filter abort");
        assert!(view.upstream().headers.is_none());
        assert_eq!(host.counter("meshwasm.fault.aborts_injected"), Some(1));
        host.finish(stream).unwrap();
        assert_eq!(host.gauge("meshwasm.fault.active_faults"), Some(0));
        assert!(
            host.violations().is_empty(),
            "{mode:?}: {:?}",
            host.violations()
        );
    }
}

#[test]
fn a_delay_holds_the_request_and_its_body_until_the_delay_is_over() {
    for mode in MODES {
        let mut host = start(
            mode,
            &fault(json!({"delay": {"percentage": {"value": 100}, "fixedDelay": "2s"}})),
        );
        let (stream, action) = request(&mut host, &RATINGS, false);
        assert_eq!(action, Action::Pause, "{mode:?}");
        assert_eq!(
            host.send_request_body(stream, "payload", true).unwrap(),
            None
        );
        assert_eq!(host.gauge("meshwasm.fault.active_faults"), Some(1));

        host.advance(Duration::from_millis(1999)).unwrap();
        assert!(
            host.http(stream).unwrap().request_paused(),
            "{mode:?}: released early"
        );

        host.advance(Duration::from_millis(1)).unwrap();
        let view = host.http(stream).unwrap();
        assert!(!view.request_paused());
        assert_eq!(
            view.upstream().headers.as_ref().unwrap().get(":path"),
            Some("/ratings/1")
        );
        assert_eq!(view.upstream().body, b"payload");
        assert!(view.upstream().complete);
        assert_eq!(host.counter("meshwasm.fault.delays_injected"), Some(1));
        assert_eq!(host.gauge("meshwasm.fault.active_faults"), Some(0));
        // The tick is switched off once nothing waits.
        assert_eq!(host.tick_period(host.root_contexts()[0]), None);
        assert!(
            host.violations().is_empty(),
            "{mode:?}: {:?}",
            host.violations()
        );
    }
}

#[test]
fn a_delay_then_abort_answers_when_the_delay_is_over() {
    for mode in MODES {
        let mut host = start(
            mode,
            &fault(json!({
                "delay": {"percentage": {"value": 100}, "fixedDelay": "500ms"},
                "abort": {"percentage": {"value": 100}, "httpStatus": 429}
            })),
        );
        let (stream, _) = request(&mut host, &RATINGS, true);
        assert!(
            host.http(stream).unwrap().local_response().is_none(),
            "{mode:?}"
        );
        host.advance(Duration::from_millis(500)).unwrap();
        assert_eq!(
            host.http(stream)
                .unwrap()
                .local_response()
                .map(|r| r.status),
            Some(429)
        );
        assert!(host.http(stream).unwrap().upstream().headers.is_none());
    }
}

#[test]
fn max_active_faults_lets_the_extra_request_through() {
    let config = json!({
        "hosts": ["ratings"],
        "http": [{"fault": {"delay": {"percentage": {"value": 100}, "fixedDelay": "1s"}}, "route": [{"destination": {"host": "ratings"}}]}],
        "meshwasm": {"fault": {"maxActiveFaults": 1}}
    });
    for mode in MODES {
        let mut host = start(mode, &config);
        let (first, action) = request(&mut host, &RATINGS, true);
        assert_eq!(action, Action::Pause, "{mode:?}");
        let (second, action) = request(&mut host, &RATINGS, true);
        assert_eq!(action, Action::Continue, "{mode:?}: the limit must hold");
        assert!(host.http(second).unwrap().upstream().complete);
        assert_eq!(host.counter("meshwasm.fault.faults_overflow"), Some(1));
        host.advance(Duration::from_secs(1)).unwrap();
        host.finish(first).unwrap();
        // The slot is free again.
        let (_, action) = request(&mut host, &RATINGS, true);
        assert_eq!(action, Action::Pause);
    }
}

#[test]
fn a_reset_stream_gives_its_slot_back() {
    for mode in MODES {
        let mut host = start(
            mode,
            &fault(json!({"delay": {"percentage": {"value": 100}, "fixedDelay": "10s"}})),
        );
        let (stream, _) = request(&mut host, &RATINGS, true);
        host.finish(stream).unwrap();
        assert_eq!(
            host.gauge("meshwasm.fault.active_faults"),
            Some(0),
            "{mode:?}"
        );
        // Its delay no longer fires.
        host.advance(Duration::from_secs(11)).unwrap();
        assert!(
            host.violations().is_empty(),
            "{mode:?}: {:?}",
            host.violations()
        );
    }
}

#[test]
fn only_matching_requests_are_faulted() {
    let config = json!({
        "hosts": ["ratings"],
        "http": [
            {"match": [{"headers": {"end-user": {"exact": "jason"}}}],
             "fault": {"abort": {"percentage": {"value": 100}, "httpStatus": 500}},
             "route": [{"destination": {"host": "ratings"}}]},
            {"route": [{"destination": {"host": "ratings"}}]}
        ]
    });
    for mode in MODES {
        let mut host = start(mode, &config);
        let mut jason = RATINGS.to_vec();
        jason.push(("end-user", "jason"));
        let (faulted, _) = request(&mut host, &jason, true);
        let (plain, action) = request(&mut host, &RATINGS, true);
        assert_eq!(
            host.http(faulted)
                .unwrap()
                .local_response()
                .map(|r| r.status),
            Some(500),
            "{mode:?}"
        );
        assert_eq!(action, Action::Continue);
        assert!(host.http(plain).unwrap().upstream().complete);
    }
}

#[test]
fn an_invalid_configuration_is_rejected_with_the_field() {
    for mode in MODES {
        let err = try_start(
            mode,
            &fault(json!({"abort": {"percentage": {"value": 150}, "httpStatus": 503}})),
        )
        .unwrap_err();
        let Error::Rejected { callback, logs, .. } = &err else {
            panic!("{mode:?}: {err}")
        };
        assert_eq!(*callback, "proxy_on_configure");
        let errors: Vec<&str> = logs
            .iter()
            .filter(|r| r.level == LogLevel::Error)
            .map(|r| r.message.as_str())
            .collect();
        assert_eq!(errors.len(), 1, "{mode:?}: {errors:?}");
        assert!(
            errors[0].contains("http[0].fault.abort.percentage"),
            "{}",
            errors[0]
        );
    }
}

/// This filter's scenario files (`scenarios/`), which the end-to-end
/// suite and the demo also play in Envoy, here in both modes.
#[test]
fn the_fault_scenario_files_pass_in_both_modes() {
    let dir = std::path::Path::new(env!("CARGO_MANIFEST_DIR")).join("scenarios");
    let mut played = 0;
    for entry in std::fs::read_dir(&dir).unwrap() {
        let path = entry.unwrap().path();
        let name = path.file_name().unwrap().to_string_lossy().into_owned();
        let scenario = sdk_host::scenario::Scenario::from_file(&path).unwrap();
        assert_eq!(scenario.filter, "fault", "{name}");
        let in_wasm = scenario.run(module()).unwrap();
        let native = scenario
            .run_native(sdk_host::native_module!(meshwasm_fault))
            .unwrap();
        assert!(in_wasm.passed(), "{name} in wasm: {:#?}", in_wasm.failures);
        assert!(native.passed(), "{name} native: {:#?}", native.failures);
        played += 1;
    }
    assert!(played >= 2, "fault scenarios in {}", dir.display());
}
