//! CUSTOM policies in Envoy, differentially: the header-match filter with
//! an `envoyExtAuthzHttp` provider beside Envoy's own
//! `envoy.filters.http.ext_authz` configured as Istio configures it from
//! the same provider, on the same traffic, against the same HTTP
//! authorizer (an upstream told what to answer): allow with headers,
//! deny with headers, a 5xx, slow, and down, with `failOpen` both ways.

use meshwasm_artifacts::HEADER_MATCH_WASM;
use meshwasm_local::envoy::{self, Bootstrap, Envoy, WasmFilter};
use meshwasm_local::traffic::{Outcome, send};
use meshwasm_local::upstream::{Reply, Seen, Upstream};
use serde_json::{Value, json};
use std::collections::BTreeMap;
use std::time::{Duration, Instant};

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Side {
    Native,
    Wasm,
}

/// The provider, as Istio's meshConfig writes it (the service here is the
/// Envoy cluster's own name).
fn provider(fail_open: bool) -> Value {
    json!({
        "service": "authz",
        "pathPrefix": "/check",
        "timeout": "0.5s",
        "failOpen": fail_open,
        "statusOnError": "503",
        "includeRequestHeadersInCheck": ["x-tenant"],
        "includeAdditionalHeadersInCheck": {"x-checked-by": "mesh"},
        "headersToUpstreamOnAllow": ["x-user"],
        "headersToDownstreamOnDeny": ["x-reason"],
    })
}

/// The Wasm filter's config: every request is checked.
fn wasm_config(fail_open: bool) -> Value {
    json!({
        "extensionProviders": [{"name": "opa", "envoyExtAuthzHttp": provider(fail_open)}],
        "policies": [{"action": "CUSTOM", "provider": {"name": "opa"}, "rules": [{}]}],
    })
}

/// Envoy's ext_authz as Istio renders the same provider.
fn native_filter(fail_open: bool) -> Value {
    let names = |names: &[&str]| json!({"patterns": names.iter().map(|n| json!({"exact": n, "ignore_case": true})).collect::<Vec<_>>()});
    json!({
        "name": "envoy.filters.http.ext_authz",
        "typed_config": {
            "@type": "type.googleapis.com/envoy.extensions.filters.http.ext_authz.v3.ExtAuthz",
            "transport_api_version": "V3",
            "failure_mode_allow": fail_open,
            "status_on_error": {"code": 503},
            "allowed_headers": names(&["x-tenant"]),
            "http_service": {
                "server_uri": {"uri": "http://authz", "cluster": "authz", "timeout": "0.5s"},
                "path_prefix": "/check",
                "authorization_request": {
                    "headers_to_add": [{"key": "x-checked-by", "value": "mesh"}],
                },
                "authorization_response": {
                    "allowed_upstream_headers": names(&["x-user"]),
                    "allowed_client_headers": names(&["x-reason"]),
                },
            },
        },
    })
}

/// The authorizer: answering at once, after a delay, or not listening.
enum Authorizer {
    Answers(Reply),
    Slow(Duration),
    Down,
}

struct Running {
    envoy: Envoy,
    backend: Upstream,
    authz: Option<Upstream>,
}

async fn start(side: Side, fail_open: bool, authorizer: &Authorizer) -> Running {
    let backend = Upstream::start("backend").await.unwrap();
    let authz = match authorizer {
        Authorizer::Answers(reply) => {
            let server = Upstream::start("authz").await.unwrap();
            server.set_reply(Some(reply.clone()));
            Some(server)
        }
        Authorizer::Slow(by) => Some(Upstream::start_slow("authz", *by).await.unwrap()),
        Authorizer::Down => None,
    };
    let authz_addr = match &authz {
        Some(server) => server.addr(),
        // Bound and dropped: a port where nothing listens.
        None => std::net::TcpListener::bind("127.0.0.1:0")
            .unwrap()
            .local_addr()
            .unwrap(),
    };
    let bootstrap = Bootstrap::new(backend.addr()).cluster("authz", authz_addr);
    let bootstrap = match side {
        Side::Native => bootstrap.native_filter(native_filter(fail_open)),
        Side::Wasm => bootstrap.filter(WasmFilter::new(
            "header-match",
            HEADER_MATCH_WASM,
            wasm_config(fail_open).to_string(),
        )),
    };
    Running {
        envoy: Envoy::start(bootstrap).await.unwrap(),
        backend,
        authz,
    }
}

fn reply(status: u16, headers: &[(&str, &str)], body: &str) -> Reply {
    Reply {
        status,
        headers: headers
            .iter()
            .map(|(n, v)| ((*n).to_owned(), (*v).to_owned()))
            .collect(),
        body: body.as_bytes().to_vec(),
    }
}

/// What one side's client, backend and authorizer saw, for comparing.
#[derive(Debug, PartialEq, Eq)]
struct Observed {
    status: u16,
    body: String,
    /// The client's response headers the test looks at.
    client: BTreeMap<String, Option<String>>,
    /// `x-user` as the backend received it, per request it received.
    backend_user: Vec<Option<String>>,
    /// The checks: method, path, and the headers the test looks at.
    checks: Vec<(String, String, BTreeMap<String, Option<String>>)>,
    /// The ext_authz stats: ok, denied, error, failure_mode_allowed.
    stats: [u64; 4],
}

const CLIENT_HEADERS: [&str; 3] = ["x-reason", "x-internal", "content-type"];
const CHECK_HEADERS: [&str; 6] = [
    "authorization",
    "x-tenant",
    "x-secret",
    "x-checked-by",
    "content-length",
    "host",
];

fn pick(headers: &[(String, String)], names: &[&str]) -> BTreeMap<String, Option<String>> {
    names
        .iter()
        .map(|n| {
            let value = headers.iter().find(|(k, _)| k == n).map(|(_, v)| v.clone());
            ((*n).to_owned(), value)
        })
        .collect()
}

async fn observe(side: Side, fail_open: bool, authorizer: Authorizer) -> (Observed, Duration) {
    let running = start(side, fail_open, &authorizer).await;
    let http = envoy::client().unwrap();
    let started = Instant::now();
    let got: Outcome = send(
        http.get(running.envoy.url("/api/items?page=2"))
            .header("host", "shop.example.com")
            .header("authorization", "Bearer t0k")
            .header("x-tenant", "blue")
            .header("x-secret", "not for the authorizer")
            .header("x-user", "forged"),
    )
    .await
    .unwrap();
    let took = started.elapsed();
    let checks = running.authz.as_ref().map_or_else(Vec::new, |a| {
        a.seen()
            .iter()
            .map(|s: &Seen| {
                (
                    s.method.clone(),
                    s.path.clone(),
                    pick(&s.headers, &CHECK_HEADERS),
                )
            })
            .collect()
    });
    let stats = running.envoy.stats().await.unwrap();
    let stat = |short: &str| {
        let names = [
            format!("cluster.upstream.ext_authz.{short}"),
            format!("wasmcustom.meshwasm.header_match.ext_authz.{short}"),
        ];
        names.iter().filter_map(|n| stats.get(n)).sum::<u64>()
    };
    let observed = Observed {
        status: got.status,
        body: got.body.clone(),
        client: CLIENT_HEADERS
            .iter()
            .map(|n| ((*n).to_owned(), got.header(n).map(str::to_owned)))
            .collect(),
        backend_user: running
            .backend
            .seen()
            .iter()
            .map(|s| s.header("x-user").map(str::to_owned))
            .collect(),
        checks,
        stats: [
            stat("ok"),
            stat("denied"),
            stat("error"),
            stat("failure_mode_allowed"),
        ],
    };
    (observed, took)
}

/// Runs `authorizer` on both sides and asserts they saw the same; returns
/// the native side's observation.
async fn same(fail_open: bool, authorizer: impl Fn() -> Authorizer) -> Observed {
    let (native, _) = observe(Side::Native, fail_open, authorizer()).await;
    let (wasm, _) = observe(Side::Wasm, fail_open, authorizer()).await;
    assert_eq!(native, wasm, "native ext_authz (left) and Wasm (right)");
    native
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn an_allowing_answer_sets_its_listed_headers_on_the_request() {
    let seen = same(false, || {
        Authorizer::Answers(reply(200, &[("x-user", "alice"), ("x-internal", "no")], ""))
    })
    .await;
    assert_eq!(seen.status, 200);
    assert_eq!(
        seen.backend_user,
        [Some("alice".to_owned())],
        "replacing the client's"
    );
    let (method, path, headers) = &seen.checks[0];
    assert_eq!(
        (method.as_str(), path.as_str()),
        ("GET", "/check/api/items?page=2")
    );
    assert_eq!(headers["x-tenant"].as_deref(), Some("blue"));
    assert_eq!(headers["x-secret"], None, "not included in the check");
    assert_eq!(headers["x-checked-by"].as_deref(), Some("mesh"));
    assert_eq!(seen.stats, [1, 0, 0, 0]);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_denying_answer_reaches_the_client_with_its_listed_headers() {
    let seen = same(false, || {
        Authorizer::Answers(reply(
            403,
            &[("x-reason", "tenant blocked"), ("x-internal", "hidden")],
            "denied by policy",
        ))
    })
    .await;
    assert_eq!((seen.status, seen.body.as_str()), (403, "denied by policy"));
    assert_eq!(seen.client["x-reason"].as_deref(), Some("tenant blocked"));
    assert_eq!(seen.client["x-internal"], None);
    assert!(seen.backend_user.is_empty());
    assert_eq!(seen.stats, [0, 1, 0, 0]);

    let seen = same(false, || Authorizer::Answers(reply(401, &[], ""))).await;
    assert_eq!(seen.status, 401);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_failing_authorizer_answers_status_on_error_or_fails_open() {
    for fail_open in [false, true] {
        let seen = same(fail_open, || {
            Authorizer::Answers(reply(500, &[("x-reason", "bug")], "oops"))
        })
        .await;
        let want = if fail_open { 200 } else { 503 };
        assert_eq!(seen.status, want, "a 5xx, failOpen {fail_open}");
        let seen = same(fail_open, || Authorizer::Down).await;
        assert_eq!(seen.status, want, "down, failOpen {fail_open}");
        assert_eq!(seen.stats[2], 1);
        assert_eq!(seen.stats[3], u64::from(fail_open));
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_timeout_cuts_a_slow_authorizer_short() {
    for side in [Side::Native, Side::Wasm] {
        let (seen, took) = observe(side, false, Authorizer::Slow(Duration::from_secs(3))).await;
        assert_eq!(seen.status, 503, "{side:?}");
        assert!(
            took < Duration::from_secs(2),
            "{side:?}: {took:?}, the 0.5 s timeout was not honoured"
        );
    }
}
