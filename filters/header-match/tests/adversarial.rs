//! The adversarial authorization suite (`tests/authz/cases.yaml`) in
//! sdk-host, in both modes: the built `.wasm` on wasmtime, and this crate
//! linked natively. Each raw request becomes the header map Envoy's HTTP/1
//! codec would hand the filter; no case may reach the upstream when it
//! should not (a bypass), nor be stopped when it should pass (a false deny).
#![allow(clippy::unwrap_used, clippy::expect_used, clippy::panic)]

#[path = "../../../tests/authz/suite.rs"]
mod suite;

use sdk_host::{Action, Host, WasmModule};
use std::path::Path;
use std::sync::OnceLock;
use suite::{Case, Outcome};

#[derive(Debug, Clone, Copy)]
enum Mode {
    Wasm,
    Native,
}

/// Compiled once: compiling the module is most of the test's time.
fn module() -> &'static WasmModule {
    static MODULE: OnceLock<WasmModule> = OnceLock::new();
    MODULE.get_or_init(|| WasmModule::from_file(meshwasm_artifacts::HEADER_MATCH_WASM).unwrap())
}

fn start(mode: Mode, config: &serde_json::Value) -> Host {
    let builder = Host::builder().plugin("header-match", "header-match", config.to_string());
    match mode {
        Mode::Wasm => builder.start(module()),
        Mode::Native => builder.start_native(sdk_host::native_module!(meshwasm_header_match)),
    }
    .unwrap()
}

/// The status the client gets: 200 when the request reached the upstream.
fn play(host: &mut Host, case: &Case) -> u16 {
    let headers = case.envoy_headers();
    let pairs: Vec<(&str, &str)> = headers
        .iter()
        .map(|(n, v)| (n.as_str(), v.as_str()))
        .collect();
    let stream = host.new_http_stream().unwrap();
    let action = host.send_request_headers(stream, &pairs, true).unwrap();
    let status = if action == Action::Continue {
        200
    } else {
        let view = host.http(stream).unwrap();
        view.local_response()
            .map_or(0, |l| u16::try_from(l.status).unwrap_or(0))
    };
    host.finish(stream).unwrap();
    status
}

#[test]
fn no_denied_request_reaches_the_upstream_and_no_allowed_one_is_stopped() {
    let workspace = Path::new(env!("CARGO_MANIFEST_DIR")).join("../..");
    let sets = suite::load(&workspace);
    let total: usize = sets.iter().map(|s| s.cases.len()).sum();
    assert!(total >= 100, "the suite has {total} cases");
    let mut failures = Vec::new();
    for mode in [Mode::Wasm, Mode::Native] {
        let (mut bypasses, mut false_denies, mut wrong_status) = (0, 0, 0);
        for set in &sets {
            let mut host = start(mode, &set.policy);
            for case in &set.cases {
                let status = play(&mut host, case);
                let reached = status == 200;
                let kind = match (case.expect.reaches(), reached) {
                    (false, true) => Some("bypass"),
                    (true, false) => Some("false deny"),
                    _ if status != case.expect.status() => Some("wrong status"),
                    _ => None,
                };
                if let Some(kind) = kind {
                    match kind {
                        "bypass" => bypasses += 1,
                        "false deny" => false_denies += 1,
                        _ => wrong_status += 1,
                    }
                    failures.push(format!(
                        "{mode:?} {kind}: {} ({} {:?}) got {status}, want {:?}: {}",
                        case.name, case.method, case.target, case.expect, case.why
                    ));
                }
            }
            let violations = host.violations();
            assert!(
                violations.is_empty(),
                "{mode:?} {}: {violations:?}",
                set.name
            );
        }
        eprintln!(
            "{mode:?}: {total} cases, {bypasses} bypasses, {false_denies} false denies, \
             {wrong_status} wrong statuses"
        );
    }
    assert!(failures.is_empty(), "\n{}", failures.join("\n"));
    // The suite covers every outcome.
    for outcome in [Outcome::Reach, Outcome::Deny, Outcome::Reject] {
        assert!(
            sets.iter()
                .flat_map(|s| &s.cases)
                .any(|c| c.expect == outcome)
        );
    }
}
