//! `sdk-host run` on real modules, and its one-line errors.
#![allow(clippy::unwrap_used, clippy::expect_used, clippy::panic)]

use std::process::{Command, Output};

fn sdk_host(args: &[&str], dir: &std::path::Path) -> Output {
    Command::new(env!("CARGO_BIN_EXE_sdk-host"))
        .args(args)
        .current_dir(dir)
        .output()
        .unwrap()
}

fn text(bytes: &[u8]) -> String {
    String::from_utf8_lossy(bytes).into_owned()
}

#[test]
fn run_plays_a_scenario_through_the_fault_filter() {
    let dir = tempfile::tempdir().unwrap();
    std::fs::write(
        dir.path().join("fault.json"),
        r#"{"hosts": ["*"], "http": [{"fault": {"abort": {"percentage": {"value": 100}, "httpStatus": 418}}, "route": [{"destination": {"host": "web"}}]}]}"#,
    )
    .unwrap();
    std::fs::write(
        dir.path().join("req.yaml"),
        "requests:\n  - headers: {\":path\": /a}\n  - headers: {\":path\": /b}\n",
    )
    .unwrap();
    let out = sdk_host(
        &[
            "run",
            meshwasm_artifacts::FAULT_WASM,
            "--config",
            "fault.json",
            "--request",
            "req.yaml",
        ],
        dir.path(),
    );
    let stdout = text(&out.stdout);
    assert!(out.status.success(), "{stdout}{}", text(&out.stderr));
    assert_eq!(
        stdout
            .matches("  local response: 418 fault_filter_abort \"fault filter abort\"")
            .count(),
        2,
        "{stdout}"
    );
    assert!(
        stdout.contains("  meshwasm.fault.aborts_injected = Counter(2)"),
        "{stdout}"
    );
}

#[test]
fn run_reports_bad_input_in_one_line() {
    let dir = tempfile::tempdir().unwrap();
    std::fs::write(dir.path().join("req.yaml"), "requests:\n  - headerz: {}\n").unwrap();
    std::fs::write(dir.path().join("bad.json"), "{oops").unwrap();
    std::fs::write(
        dir.path().join("plain.wasm"),
        wat::parse_str(r#"(module (memory (export "memory") 1))"#).unwrap(),
    )
    .unwrap();
    let probe = meshwasm_artifacts::SDK_HOST_PROBE_WASM;
    let cases: [(&[&str], &str); 5] = [
        (
            &["run", "missing.wasm"],
            "error: missing.wasm: No such file or directory (os error 2)\n",
        ),
        (
            &["run", "req.yaml"],
            "error: req.yaml: not a WebAssembly module (no \\0asm header)\n",
        ),
        (
            &["run", "plain.wasm"],
            "error: plain.wasm: not a Proxy-Wasm module: it does not export proxy_abi_version_0_2_1 (or 0_2_0, 0_1_0)\n",
        ),
        (
            &["run", probe, "--config", "bad.json"],
            "error: bad.json: key must be a string at line 1 column 2\n",
        ),
        (
            &["run", probe, "--request", "req.yaml"],
            "error: req.yaml: line 2, column 5: requests[0].headerz: unknown field `headerz`, expected one of `name`, `headers`, `body`, `trailers`, `response`, `advance`, `expect`\n",
        ),
    ];
    for (args, expected) in cases {
        let out = sdk_host(args, dir.path());
        assert_eq!(out.status.code(), Some(2), "{args:?}");
        assert_eq!(text(&out.stderr), expected, "{args:?}");
    }
}

#[test]
fn test_runs_scenarios_and_names_every_mismatch() {
    let dir = tempfile::tempdir().unwrap();
    let scenario = |expect: &str| {
        format!(
            "filter: {}\nconfig:\n  on_request_headers: [[local_response, 403, denied, no]]\nrequests:\n  - name: admin\n    headers: {{\":path\": /admin}}\n    expect: {expect}\n",
            meshwasm_artifacts::SDK_HOST_PROBE_WASM
        )
    };
    std::fs::write(
        dir.path().join("pass.yaml"),
        scenario("{status: 403, body: \"no\", reachesUpstream: false}"),
    )
    .unwrap();
    std::fs::write(
        dir.path().join("fail.yaml"),
        scenario("{status: 200, headers: {x-missing: \"1\"}}"),
    )
    .unwrap();
    std::fs::write(
        dir.path().join("bad.yaml"),
        "filter: x.wasm\nrequests:\n  - expect: {staus: 1}\n",
    )
    .unwrap();

    let out = sdk_host(&["test", "pass.yaml"], dir.path());
    assert_eq!(out.status.code(), Some(0), "{}", text(&out.stdout));
    assert_eq!(text(&out.stdout), "ok    pass.yaml\n1 passed, 0 failed\n");

    let out = sdk_host(&["test", "pass.yaml", "fail.yaml"], dir.path());
    assert_eq!(out.status.code(), Some(1));
    assert_eq!(
        text(&out.stdout),
        "ok    pass.yaml\nFAIL  fail.yaml\n  request 1 (admin): status: expected 200, got 403\n  request 1 (admin): header x-missing: expected \"1\", absent\n1 passed, 1 failed\n"
    );

    let out = sdk_host(&["test", "bad.yaml"], dir.path());
    assert_eq!(out.status.code(), Some(2));
    assert_eq!(
        text(&out.stderr),
        "error: bad.yaml: line 3, column 14: requests[0].expect.staus: unknown field `staus`, expected one of `status`, `headers`, `body`, `reachesUpstream`, `upstreamHeaders`, `upstreamBody`, `delay`\n"
    );
}
