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
            "provider.name: \"ext\" names no entry of extensionProviders",
        ),
        (
            json!({"policies": [{"action": "CUSTOM"}]}),
            "policies[0].provider: is required",
        ),
        (
            json!({"extensionProviders": [{"name": "ext", "envoyExtAuthzGrpc": {"service": "a"}}],
                   "policies": [{"action": "CUSTOM", "provider": {"name": "ext"}}]}),
            "extensionProviders[0].envoyExtAuthzGrpc: is not supported",
        ),
        (
            json!({"extensionProviders": [{"name": "ext", "envoyExtAuthzHttp": {"service": "a", "statusOnError": "teapot"}}],
                   "policies": [{"action": "CUSTOM", "provider": {"name": "ext"}}]}),
            "extensionProviders[0].envoyExtAuthzHttp.statusOnError: \"teapot\"",
        ),
        (
            json!({"extensionProviders": [{"name": "ext", "envoyExtAuthzHTTP": {}}]}),
            "extensionProviders[0].envoyExtAuthzHTTP: is not a field",
        ),
        (
            json!({"action": "DENY", "provider": {"name": "ext"}}),
            "provider: only CUSTOM policies have a provider",
        ),
    ] {
        let builder = Host::builder().plugin("header-match", "header-match", config.to_string());
        let Err(err) = builder.start(module()) else {
            panic!("{config} was accepted")
        };
        assert!(err.to_string().contains(want), "{config}: {err}");
    }
}

/// A CUSTOM policy on `/api/*` checked by an authorizer in cluster
/// `authz`, whose `x-user` the ALLOW policy then requires, as Envoy's RBAC
/// sees the headers ext_authz set.
fn custom(fail_open: bool) -> Value {
    json!({
        "extensionProviders": [{"name": "opa", "envoyExtAuthzHttp": {
            "service": "authz",
            "pathPrefix": "/check",
            "timeout": "0.5s",
            "failOpen": fail_open,
            "statusOnError": "503",
            "includeRequestHeadersInCheck": ["x-tenant"],
            "includeAdditionalHeadersInCheck": {"x-checked-by": "meshwasm"},
            "headersToUpstreamOnAllow": ["x-user"],
            "headersToDownstreamOnDeny": ["x-reason"],
        }}],
        "policies": [
            {"action": "CUSTOM", "provider": {"name": "opa"},
             "rules": [{"to": [{"operation": {"paths": ["/api/*"]}}]}]},
            {"action": "ALLOW", "rules": [
                {"to": [{"operation": {"paths": ["/public/*"]}}]},
                {"when": [{"key": "request.headers[x-user]", "values": ["alice"]}]},
            ]},
        ],
    })
}

#[test]
fn a_custom_policy_asks_the_authorizer_and_the_allow_policy_sees_its_headers() {
    use sdk_host::CalloutResponse;
    for mode in MODES {
        let mut host = start_with(mode, &custom(false), Host::builder().cluster("authz"));
        // Not under /api: no check.
        assert_eq!(send(&mut host, "GET", "/public/a", &[]), 200, "{mode:?}");
        assert!(host.http_calls().is_empty(), "{mode:?}");

        let request = |host: &mut Host, path: &str| {
            let stream = host.new_http_stream().unwrap();
            let headers = [
                (":method", "GET"),
                (":path", path),
                (":authority", "shop.example.com"),
                ("authorization", "Bearer t"),
                ("x-tenant", "blue"),
                ("x-secret", "kept"),
            ];
            host.send_request_headers(stream, &headers, true).unwrap();
            stream
        };
        let stream = request(&mut host, "/api/a?x=1");
        let calls = host.http_calls();
        assert_eq!(calls.len(), 1, "{mode:?}");
        let call = &calls[0];
        assert_eq!(call.upstream, "authz");
        assert_eq!(call.timeout_ms, 500);
        let sent: Vec<(&str, &str)> = call
            .headers
            .iter()
            .map(|(n, v)| (n, std::str::from_utf8(v).unwrap()))
            .collect();
        assert_eq!(
            sent,
            // As Envoy's header map holds them: pseudo-headers first.
            [
                (":method", "GET"),
                (":path", "/check/api/a?x=1"),
                (":authority", "shop.example.com"),
                ("content-length", "0"),
                ("authorization", "Bearer t"),
                ("x-tenant", "blue"),
                ("x-checked-by", "meshwasm"),
            ],
            "{mode:?}: the check carries what Envoy's ext_authz sends, not x-secret"
        );
        host.respond_http_call(
            call.token,
            CalloutResponse::new(200)
                .header("x-user", "alice")
                .header("x-other", "dropped"),
        )
        .unwrap();
        let view = host.http(stream).unwrap();
        let upstream = view.upstream().headers.as_ref().expect("forwarded");
        assert_eq!(upstream.get("x-user"), Some("alice"), "{mode:?}");
        assert_eq!(upstream.get("x-other"), None, "{mode:?}");
        host.finish(stream).unwrap();

        // Allowed by the authorizer as bob: the ALLOW policy denies.
        let stream = request(&mut host, "/api/b");
        let token = host.http_calls()[0].token;
        host.respond_http_call(token, CalloutResponse::new(200).header("x-user", "bob"))
            .unwrap();
        let local = host.http(stream).unwrap().local_response().unwrap().clone();
        assert_eq!(
            (local.status, local.details.as_str()),
            (403, "rbac_access_denied_matched_policy[none]"),
            "{mode:?}"
        );
        host.finish(stream).unwrap();

        // Denied by the authorizer: its status, body and listed headers.
        let stream = request(&mut host, "/api/c");
        let token = host.http_calls()[0].token;
        host.respond_http_call(
            token,
            CalloutResponse::new(401)
                .header("x-reason", "expired")
                .header("x-internal", "hidden")
                .body("log in again"),
        )
        .unwrap();
        let local = host.http(stream).unwrap().local_response().unwrap().clone();
        assert_eq!(
            (local.status, local.details.as_str(), local.body.as_slice()),
            (401, "ext_authz_denied", b"log in again".as_slice()),
            "{mode:?}"
        );
        assert_eq!(local.headers.get("x-reason"), Some("expired"), "{mode:?}");
        assert_eq!(local.headers.get("x-internal"), None, "{mode:?}");
        host.finish(stream).unwrap();

        // No answer, or a 5xx: statusOnError.
        for fail in [true, false] {
            let stream = request(&mut host, "/api/d");
            let token = host.http_calls()[0].token;
            if fail {
                host.fail_http_call(token).unwrap();
            } else {
                host.respond_http_call(token, CalloutResponse::new(500))
                    .unwrap();
            }
            let local = host.http(stream).unwrap().local_response().unwrap().clone();
            assert_eq!(
                (local.status, local.details.as_str()),
                (503, "ext_authz_error"),
                "{mode:?} failed call: {fail}"
            );
            host.finish(stream).unwrap();
        }
        assert_eq!(host.counter("meshwasm.header_match.ext_authz.ok"), Some(2));
        assert_eq!(
            host.counter("meshwasm.header_match.ext_authz.denied"),
            Some(1)
        );
        assert_eq!(
            host.counter("meshwasm.header_match.ext_authz.error"),
            Some(2)
        );
    }
}

#[test]
fn fail_open_lets_a_failed_check_through_to_the_other_policies() {
    for mode in MODES {
        let mut host = start_with(mode, &custom(true), Host::builder().cluster("authz"));
        let stream = host.new_http_stream().unwrap();
        let headers = [
            (":method", "GET"),
            (":path", "/api/a"),
            (":authority", "shop"),
            ("x-user", "alice"),
        ];
        host.send_request_headers(stream, &headers, true).unwrap();
        let token = host.http_calls()[0].token;
        host.fail_http_call(token).unwrap();
        assert!(
            host.http(stream).unwrap().upstream().complete,
            "{mode:?}: forwarded"
        );
        assert_eq!(
            host.counter("meshwasm.header_match.ext_authz.failure_mode_allowed"),
            Some(1)
        );
    }
}
