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
    let local_reply = "  local reply from the filter (fault_filter_abort)\n  response: 418\n    content-length: 18\n    content-type: text/plain\n  body: \"fault filter abort\"\n";
    assert_eq!(stdout.matches(local_reply).count(), 2, "{stdout}");
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

/// A probe script that holds each request for a callout to `auth` and
/// resumes it when the answer comes.
const HOLD_FOR_AUTH: &str = r#"{
    "on_request_headers": [["http_call", "auth", [[":method", "GET"], [":path", "/check"], [":authority", "auth"]], "", [], 5000]],
    "return": {"on_request_headers": 1},
    "on_http_call_response": [["get_buffer", 4, 0, 100], ["set_effective", "$stream"], ["continue", 0]]
}"#;

#[test]
fn run_answers_callouts_from_clusters_and_fails_on_a_held_request() {
    let dir = tempfile::tempdir().unwrap();
    std::fs::write(dir.path().join("probe.json"), HOLD_FOR_AUTH).unwrap();
    std::fs::write(
        dir.path().join("clusters.yaml"),
        "auth: {status: 200, body: yes}\n",
    )
    .unwrap();
    std::fs::write(
        dir.path().join("req.yaml"),
        "headers: {x-dup: [a, b]}\nresponse: {status: 201, headers: {x-up: u}, body: made}\n",
    )
    .unwrap();
    let probe = meshwasm_artifacts::SDK_HOST_PROBE_WASM;
    let answered = sdk_host(
        &[
            "run",
            probe,
            "--config",
            "probe.json",
            "--request",
            "req.yaml",
            "--clusters",
            "clusters.yaml",
        ],
        dir.path(),
    );
    let stdout = text(&answered.stdout);
    assert!(
        answered.status.success(),
        "{stdout}{}",
        text(&answered.stderr)
    );
    assert!(
        stdout.contains("get_buffer(4, 0, 100): ok \"yes\""),
        "{stdout}"
    );
    // The final response of a request that reached the upstream.
    assert!(
        stdout.contains("  reached the upstream\n  response: 201\n    x-up: u\n"),
        "{stdout}"
    );
    assert!(stdout.contains("  body: \"made\""), "{stdout}");
    // A header sent twice and left alone is no change.
    assert!(!stdout.contains("x-dup"), "{stdout}");

    // Without an answer for auth the call is refused (no such cluster)
    // and the request stays held: exit 1, with what it waits for.
    let held = sdk_host(&["run", probe, "--config", "probe.json"], dir.path());
    let stdout = text(&held.stdout);
    assert_eq!(held.status.code(), Some(1), "{stdout}");
    assert!(
        stdout.contains("  still held by the filter: no answer came"),
        "{stdout}"
    );
    assert!(
        stdout.contains("no cluster \"auth\": Envoy answers BadArgument"),
        "{stdout}"
    );

    std::fs::write(dir.path().join("slow.yaml"), "auth: timeout\n").unwrap();
    std::fs::write(
        dir.path().join("forever.json"),
        HOLD_FOR_AUTH.replace(r#"["continue", 0]"#, r#"["show", 0]"#),
    )
    .unwrap();
    let pending = sdk_host(
        &[
            "run",
            probe,
            "--config",
            "forever.json",
            "--clusters",
            "slow.yaml",
        ],
        dir.path(),
    );
    let stdout = text(&pending.stdout);
    assert_eq!(pending.status.code(), Some(1), "{stdout}");
    assert!(stdout.contains("still held by the filter"), "{stdout}");
}

#[test]
fn run_sends_scenario_files_to_test() {
    let dir = tempfile::tempdir().unwrap();
    std::fs::write(
        dir.path().join("s.yaml"),
        "filter: f.wasm\nrequests: [{}]\n",
    )
    .unwrap();
    let out = sdk_host(
        &[
            "run",
            meshwasm_artifacts::SDK_HOST_PROBE_WASM,
            "--request",
            "s.yaml",
        ],
        dir.path(),
    );
    assert_eq!(
        text(&out.stderr),
        "error: s.yaml: this is a scenario file (it names a filter): run it with `sdk-host test`\n"
    );
    let help = sdk_host(&["run", "--help"], dir.path());
    assert!(
        text(&help.stdout).contains("Not a scenario file"),
        "{}",
        text(&help.stdout)
    );
}
