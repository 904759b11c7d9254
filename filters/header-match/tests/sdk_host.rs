//! The header-match filter in sdk-host, each test in both modes: the built
//! `.wasm` on wasmtime, and this crate linked natively.
#![allow(clippy::unwrap_used, clippy::expect_used, clippy::panic)]

use sdk_host::{Action, Host, WasmModule};
use serde_json::{Value, json};
use std::sync::OnceLock;

#[derive(Debug, Clone, Copy)]
enum Mode {
    Wasm,
    Native,
}

const MODES: [Mode; 2] = [Mode::Wasm, Mode::Native];

fn module() -> &'static WasmModule {
    static MODULE: OnceLock<WasmModule> = OnceLock::new();
    MODULE.get_or_init(|| WasmModule::from_file(meshwasm_artifacts::HEADER_MATCH_WASM).unwrap())
}

fn start_with(mode: Mode, config: &Value, builder: sdk_host::HostBuilder) -> Host {
    let builder = builder.plugin("header-match", "header-match", config.to_string());
    match mode {
        Mode::Wasm => builder.start(module()),
        Mode::Native => builder.start_native(sdk_host::native_module!(meshwasm_header_match)),
    }
    .unwrap()
}

fn start(mode: Mode, config: &Value) -> Host {
    start_with(mode, config, Host::builder())
}

/// Sends a request; the status the client gets (200 if it reached the upstream).
fn send(host: &mut Host, method: &str, path: &str, headers: &[(&str, &str)]) -> u32 {
    let stream = host.new_http_stream().unwrap();
    let mut all = vec![
        (":method", method),
        (":path", path),
        (":authority", "shop.example.com"),
    ];
    all.extend_from_slice(headers);
    let action = host.send_request_headers(stream, &all, true).unwrap();
    let status = if action == Action::Continue {
        200
    } else {
        host.http(stream).unwrap().local_response().unwrap().status
    };
    host.finish(stream).unwrap();
    status
}

fn deny_admin() -> Value {
    json!({"action": "DENY", "rules": [{"to": [{"operation": {"paths": ["/admin", "/admin/*"]}}]}]})
}

#[test]
fn a_deny_on_admin_holds_however_the_path_is_spelled() {
    for mode in MODES {
        let mut host = start(mode, &deny_admin());
        for path in [
            "/admin",
            "/admin/users",
            "/public/../admin",
            "/public/..%2Fadmin",
            "//admin",
            "/admin;x=1",
            "/%61dmin",
            "/public/%2e%2e/admin/",
            "/public\\..\\admin",
            "/admin?x=1",
            "/admin#frag",
        ] {
            assert_eq!(send(&mut host, "GET", path, &[]), 403, "{mode:?} {path}");
        }
        for path in ["/ADMIN", "/administrator", "/public/admin", "/admin-panel"] {
            assert_eq!(send(&mut host, "GET", path, &[]), 200, "{mode:?} {path}");
        }
        assert_eq!(
            send(&mut host, "GET", "/../admin", &[]),
            400,
            "{mode:?}: above the root"
        );
        assert_eq!(
            send(&mut host, "GET", "/admin%00.css", &[]),
            400,
            "{mode:?}: a NUL"
        );
        let view_logs = host.violations();
        assert!(view_logs.is_empty(), "{view_logs:?}");
        assert_eq!(
            host.counter("meshwasm.header_match.denied"),
            Some(11),
            "{mode:?}"
        );
    }
}

#[test]
fn a_denial_is_envoys_rbac_answer() {
    for mode in MODES {
        let mut host = start(mode, &deny_admin());
        let stream = host.new_http_stream().unwrap();
        let headers = [
            (":method", "GET"),
            (":path", "/admin"),
            (":authority", "shop"),
        ];
        host.send_request_headers(stream, &headers, true).unwrap();
        let view = host.http(stream).unwrap();
        let local = view.local_response().unwrap();
        assert_eq!(
            (local.status, local.details.as_str()),
            (403, "rbac_access_denied_matched_policy[policy-0]"),
            "{mode:?}"
        );
        assert_eq!(view.downstream().body, b"RBAC: access denied");
    }
}

#[test]
fn an_allow_policy_denies_what_it_does_not_match_and_reads_every_header_value() {
    let config = json!({"policies": [{"action": "ALLOW", "rules": [{
        "to": [{"operation": {"methods": ["GET"], "paths": ["/public/*"]}}],
        "when": [{"key": "request.headers[x-user]", "values": ["alice", "bob"]}]}]}]});
    for mode in MODES {
        let mut host = start(mode, &config);
        assert_eq!(
            send(&mut host, "GET", "/public/a", &[("x-user", "alice")]),
            200,
            "{mode:?}"
        );
        assert_eq!(
            send(&mut host, "HEAD", "/public/a", &[("x-user", "alice")]),
            403,
            "{mode:?}"
        );
        assert_eq!(
            send(&mut host, "GET", "/private", &[("x-user", "alice")]),
            403,
            "{mode:?}"
        );
        assert_eq!(send(&mut host, "GET", "/public/a", &[]), 403, "{mode:?}");
        assert_eq!(
            send(&mut host, "GET", "/public/a", &[("x_user", "alice")]),
            200,
            "{mode:?}: _ read as -"
        );
        assert_eq!(
            send(
                &mut host,
                "GET",
                "/public/a",
                &[("x-user", "alice"), ("x-user", "mallory")]
            ),
            403,
            "{mode:?}: the last value is not allowed"
        );
    }
}

#[test]
fn hosts_are_matched_without_case_port_or_trailing_dot_and_two_hosts_are_rejected() {
    let config = json!({"action": "DENY", "rules": [{"to": [{"operation": {"hosts": ["admin.example.com"]}}]}]});
    for mode in MODES {
        let mut host = start(mode, &config);
        let mut authority = |a: &str| {
            let stream = host.new_http_stream().unwrap();
            let action = host
                .send_request_headers(
                    stream,
                    &[(":method", "GET"), (":path", "/"), (":authority", a)],
                    true,
                )
                .unwrap();
            let status = if action == Action::Continue {
                200
            } else {
                host.http(stream).unwrap().local_response().unwrap().status
            };
            host.finish(stream).unwrap();
            status
        };
        for a in [
            "admin.example.com",
            "ADMIN.example.com",
            "admin.example.com:8080",
            "admin.example.com.",
        ] {
            assert_eq!(authority(a), 403, "{mode:?} {a}");
        }
        assert_eq!(authority("shop.example.com"), 200, "{mode:?}");
    }
}

#[test]
fn header_rules_tag_allowed_requests() {
    let config = json!({"policies": [], "headerRules": [{
        "match": [{"headers": {"user-agent": {"regex": ".*(Android|iPhone).*"}}}],
        "request": {"set": {"x-device": "mobile"}}}]});
    for mode in MODES {
        let mut host = start(mode, &config);
        let stream = host.new_http_stream().unwrap();
        let headers = [
            (":method", "GET"),
            (":path", "/"),
            (":authority", "shop"),
            ("user-agent", "Mozilla/5.0 (iPhone)"),
        ];
        assert_eq!(
            host.send_request_headers(stream, &headers, true).unwrap(),
            Action::Continue
        );
        let view = host.http(stream).unwrap();
        let upstream = view.upstream().headers.clone().unwrap();
        assert!(
            upstream
                .iter()
                .any(|(n, v)| n == "x-device" && v == b"mobile"),
            "{mode:?}: {upstream:?}"
        );
    }
}

#[test]
fn unsupported_fields_are_refused_with_their_path() {
    for (config, want) in [
        (
            json!({"rules": [{"from": [{"source": {"requestPrincipals": ["*"]}}]}]}),
            "rules[0].from[0].source.requestPrincipals: is not supported",
        ),
        (
            json!({"rules": [{"when": [{"key": "request.auth.claims[iss]", "values": ["x"]}]}]}),
            "rules[0].when[0].key: \"request.auth.claims[iss]\" is not checked",
        ),
        (
            json!({"rules": [{"to": [{"operation": {"paths": ["/a/{**}/b"]}}]}]}),
            "rules[0].to[0].operation.paths[0]",
        ),
        (
            json!({"action": "CUSTOM", "provider": {"name": "ext"}}),
            "action: is not supported: CUSTOM",
        ),
    ] {
        let builder = Host::builder().plugin("header-match", "header-match", config.to_string());
        let Err(err) = builder.start(module()) else {
            panic!("{config} was accepted")
        };
        assert!(err.to_string().contains(want), "{config}: {err}");
    }
}
