//! The router filter in Envoy, wired as the README documents: the filter
//! names a cluster in `x-meshwasm-cluster` and Envoy's `cluster_header`
//! route sends the request there. Upstreams v1, v2, v3, qa and a mirror
//! target answer with their own names.

use meshwasm_artifacts::ROUTER_WASM;
use meshwasm_local::envoy::{self, Bootstrap, WasmFilter};
use meshwasm_local::mesh::Mesh;
use meshwasm_local::traffic::{Outcome, binomial_bounds, send, send_many};
use meshwasm_local::upstream::Upstream;
use std::collections::BTreeMap;
use std::time::{Duration, Instant};

/// z for a two-sided 99.9 % bound.
const Z_999: f64 = 3.29;

async fn mesh(config: &str, clusters: &[(&str, &str)]) -> Mesh {
    Mesh::start(config, clusters).await.unwrap()
}

fn client() -> reqwest::Client {
    envoy::client().unwrap()
}

fn file(name: &str) -> String {
    let path = format!(
        "{}/../examples/local/virtual-services/{name}",
        env!("CARGO_MANIFEST_DIR")
    );
    std::fs::read_to_string(&path).unwrap_or_else(|e| panic!("{path}: {e}"))
}

const WEB: [(&str, &str); 2] = [
    ("outbound|5005|v1|web", "v1"),
    ("outbound|5005|v2|web", "v2"),
];

/// Counts per answering upstream.
fn tally(outcomes: &[Outcome]) -> BTreeMap<String, usize> {
    let mut counts = BTreeMap::new();
    for o in outcomes {
        assert_eq!(o.status, 200, "{o:?}");
        *counts
            .entry(o.upstream().map(str::to_owned).unwrap_or_default())
            .or_insert(0) += 1;
    }
    counts
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn canary_splits_hold_within_a_binomial_bound() {
    let mesh = mesh(&file("web-canaries.json"), &WEB).await;
    let n = 2000;
    for (path, v2_share) in [("/split-75", 0.25), ("/", 0.20), ("/split-95", 0.05)] {
        let url = mesh.envoy.url(path);
        let http = client();
        let outcomes = send_many(n, 16, move |_| http.get(&url).header("host", "web"))
            .await
            .unwrap();
        let counts = tally(&outcomes);
        let v2 = counts.get("v2").copied().unwrap_or(0);
        let (low, high) = binomial_bounds(n, v2_share, Z_999);
        assert!(
            (low..=high).contains(&v2),
            "{path}: v2 got {v2} of {n}, 99.9 % bound {low}..={high}: {counts:?}"
        );
        assert_eq!(counts.get("v1").copied().unwrap_or(0) + v2, n, "{counts:?}");
    }
    assert_eq!(
        mesh.upstream("default").hits(),
        0,
        "every request was routed"
    );
    let stats = mesh.envoy.stats().await.unwrap();
    let routed_v1 = stats["wasmcustom.meshwasm.router.routed.outbound|5005|v1|web"];
    let routed_v2 = stats["wasmcustom.meshwasm.router.routed.outbound|5005|v2|web"];
    assert_eq!(routed_v1 + routed_v2, 3 * n as u64);
    assert_eq!(routed_v1 as usize, mesh.upstream("v1").hits());
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn sticky_users_stay_on_one_version_while_the_split_holds() {
    let mesh = mesh(&file("web-sticky.json"), &WEB).await;
    let users = 2000;
    let url = mesh.envoy.url("/");
    let http = client();
    // Each user three times, interleaved with everyone else.
    let outcomes = send_many(3 * users, 16, move |i| {
        http.get(&url)
            .header("host", "web")
            .header("cookie", format!("theme=dark; user=u{}", i % users))
    })
    .await
    .unwrap();
    tally(&outcomes);
    // Which versions each user reached, from what the upstreams saw.
    let mut per_user: BTreeMap<String, std::collections::BTreeSet<&str>> = BTreeMap::new();
    for version in ["v1", "v2"] {
        for seen in mesh.upstream(version).seen() {
            let cookie = seen.header("cookie").unwrap_or_default().to_owned();
            per_user.entry(cookie).or_default().insert(version);
        }
    }
    assert_eq!(per_user.len(), users);
    let moved: Vec<_> = per_user.iter().filter(|(_, v)| v.len() > 1).collect();
    assert!(moved.is_empty(), "users that changed version: {moved:?}");
    // Users, not requests, are the independent draws.
    let v2_users = per_user.values().filter(|v| v.contains("v2")).count();
    let (low, high) = binomial_bounds(users, 0.20, Z_999);
    assert!(
        (low..=high).contains(&v2_users),
        "{v2_users} of {users} users on v2, 99.9 % bound {low}..={high}"
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn jason_reaches_v2_and_everyone_else_v1() {
    let mesh = mesh(
        &file("reviews-jason-v2.json"),
        &[
            ("outbound||v1|reviews", "v1"),
            ("outbound||v2|reviews", "v2"),
        ],
    )
    .await;
    let jason = mesh
        .get("reviews:9080", "/reviews/0", &[("end-user", "jason")])
        .await
        .unwrap();
    assert_eq!((jason.status, jason.upstream()), (200, Some("v2")));
    for user in ["kim", "JASON", ""] {
        let out = mesh
            .get("reviews", "/reviews/0", &[("end-user", user)])
            .await
            .unwrap();
        assert_eq!(out.upstream(), Some("v1"), "end-user {user:?}");
    }
    // The subset reaches the upstream too, for Istio's companion VirtualService.
    let seen = mesh.upstream("v2").seen();
    assert_eq!(seen[0].header("x-meshwasm-subset"), Some("v2"));
    // Other hosts are not this VirtualService's: Envoy's default route.
    let other = mesh
        .get("ratings", "/", &[("end-user", "jason")])
        .await
        .unwrap();
    assert_eq!(other.upstream(), Some("default"));
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn dev_cookie_reaches_qa_and_clients_cannot_pick_a_cluster() {
    let mesh = mesh(
        &file("bookinfo-dev-cookie.json"),
        &[
            ("outbound|7777||reviews.qa.svc.cluster.local", "qa"),
            ("outbound|9080||reviews.prod.svc.cluster.local", "v1"),
            ("outbound|||reviews.qa.svc.cluster.local", "qa"),
        ],
    )
    .await;
    let dev = mesh
        .get(
            "uk.bookinfo.com",
            "/anything",
            &[("cookie", "user=dev-123")],
        )
        .await
        .unwrap();
    assert_eq!(dev.upstream(), Some("qa"));
    let prod = mesh
        .get("eu.bookinfo.com", "/reviews/1", &[("cookie", "user=kim")])
        .await
        .unwrap();
    assert!(matches!(prod.upstream(), Some("v1" | "qa")), "{prod:?}");
    // No rule matches: a forged cluster header is removed, so Envoy's
    // default route applies instead of the client's choice.
    let forged = mesh
        .get(
            "uk.bookinfo.com",
            "/admin",
            &[(
                "x-meshwasm-cluster",
                "outbound|7777||reviews.qa.svc.cluster.local",
            )],
        )
        .await
        .unwrap();
    assert_eq!(forged.upstream(), Some("default"));
    assert_eq!(
        mesh.upstream("default").seen()[0].header("x-meshwasm-cluster"),
        None
    );
    assert_eq!(
        mesh.envoy
            .stat("wasmcustom.meshwasm.router.unmatched")
            .await
            .unwrap(),
        1
    );
}

const SHOP: [(&str, &str); 3] = [
    ("outbound||v1|shop", "v1"),
    ("outbound||v2|shop", "v2"),
    ("outbound||v3|shop", "v3"),
];

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn matches_on_prefix_case_regex_without_headers_and_query() {
    let mesh = mesh(&file("shop-routing.json"), &SHOP).await;
    let host = "shop.example.com";
    type Headers<'a> = &'a [(&'a str, &'a str)];
    let cases: [(&str, Headers, &str); 9] = [
        ("/api/items", &[], "v2"),
        ("/ApI/items", &[], "v2"),
        ("/Catalog/1", &[], "v2"),
        ("/catalog/1", &[], "v1"),
        ("/", &[("x-beta", "yes")], "v3"),
        ("/", &[("x-beta", "42")], "v3"),
        ("/", &[("x-beta", "yess")], "v1"),
        ("/", &[("x-beta", "on"), ("x-opt-out", "1")], "v1"),
        ("/list?sort=asc&preview=true", &[], "v3"),
    ];
    for (path, headers, expected) in cases {
        let out = mesh.get(host, path, headers).await.unwrap();
        assert_eq!(out.upstream(), Some(expected), "{path} {headers:?}");
    }
    let out = mesh.get(host, "/list?preview=truly", &[]).await.unwrap();
    assert_eq!(out.upstream(), Some("v1"));
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn rewrites_and_header_operations_reach_upstream_and_client() {
    let mesh = mesh(&file("shop-routing.json"), &SHOP).await;
    let out = mesh
        .get("shop.example.com", "/API/items?page=2", &[("x-debug", "1")])
        .await
        .unwrap();
    assert_eq!(out.status, 200);
    assert_eq!(out.header("cache-control"), Some("no-store"));
    assert_eq!(out.header("x-shop-version"), Some("v2"));
    let seen = &mesh.upstream("v2").seen()[0];
    assert_eq!(seen.path, "/v2/api/items?page=2");
    assert_eq!(
        seen.header("x-envoy-original-path"),
        Some("/API/items?page=2")
    );
    assert_eq!(seen.header("x-shop-route"), Some("api"));
    assert_eq!(seen.header("x-debug"), None);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn redirects_direct_responses_and_cors_are_answered_by_the_filter() {
    let mesh = mesh(&file("shop-routing.json"), &SHOP).await;
    let host = "shop.example.com";
    let moved = mesh.get(host, "/old-cart/items?id=3", &[]).await.unwrap();
    assert_eq!(moved.status, 301);
    assert_eq!(
        moved.header("location"),
        Some("http://shop.example.com/cart/items?id=3")
    );
    let health = mesh.get(host, "/healthz", &[]).await.unwrap();
    assert_eq!((health.status, health.body.as_str()), (200, "ok\n"));

    let preflight = send(
        mesh.request(reqwest::Method::OPTIONS, host, "/cart")
            .unwrap()
            .header("origin", "https://app.example.com")
            .header("access-control-request-method", "POST"),
    )
    .await
    .unwrap();
    assert_eq!(preflight.status, 200);
    assert_eq!(preflight.upstream(), None, "answered by the filter");
    assert_eq!(
        preflight.header("access-control-allow-origin"),
        Some("https://app.example.com")
    );
    assert_eq!(
        preflight.header("access-control-allow-methods"),
        Some("GET,POST")
    );
    assert_eq!(preflight.header("access-control-max-age"), Some("3600"));
    let simple = mesh
        .get(host, "/cart", &[("origin", "https://app.example.com")])
        .await
        .unwrap();
    assert_eq!(simple.upstream(), Some("v1"));
    assert_eq!(
        simple.header("access-control-allow-origin"),
        Some("https://app.example.com")
    );
    assert_eq!(
        simple.header("access-control-expose-headers"),
        Some("x-upstream")
    );
    let foreign = mesh
        .get(host, "/cart", &[("origin", "https://evil.example.net")])
        .await
        .unwrap();
    assert_eq!(foreign.header("access-control-allow-origin"), None);
    assert_eq!(
        mesh.upstream("v1").hits(),
        2,
        "only the two simple requests were forwarded"
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn https_redirect_and_gateway_prefixes() {
    let mesh = mesh(
        &file("httpbin-gateway.json"),
        &[("outbound|8000||httpbin", "v1")],
    )
    .await;
    let plain = mesh
        .get("httpbin.example.com", "/status/418", &[])
        .await
        .unwrap();
    assert_eq!(plain.status, 301);
    assert_eq!(
        plain.header("location"),
        Some("https://httpbin.example.com/status/418")
    );
    // Behind a TLS-terminating load balancer the scheme arrives in x-forwarded-proto.
    let tls = [("x-forwarded-proto", "https")];
    for path in ["/status/200", "/delay/1"] {
        let out = mesh.get("httpbin.example.com", path, &tls).await.unwrap();
        assert_eq!(out.upstream(), Some("v1"), "{path}");
    }
    let hidden = mesh
        .get("httpbin.example.com", "/headers", &tls)
        .await
        .unwrap();
    assert_eq!(
        hidden.upstream(),
        Some("default"),
        "not exposed by the gateway"
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn mirrored_requests_reach_the_mirror_without_slowing_the_client() {
    let mirror_delay = Duration::from_millis(1500);
    let mesh = Mesh::start_with(
        &file("httpbin-mirror.json"),
        &[
            ("outbound||v1|httpbin", "v1"),
            ("outbound||v2|httpbin", "mirror"),
        ],
        &[("mirror", mirror_delay)],
    )
    .await
    .unwrap();
    let started = Instant::now();
    let get = mesh
        .get("httpbin:8000", "/get?x=1", &[("x-trace", "t1")])
        .await
        .unwrap();
    let post = send(
        mesh.request(reqwest::Method::POST, "httpbin:8000", "/post")
            .unwrap()
            .body("hello mirror"),
    )
    .await
    .unwrap();
    let client_time = started.elapsed();
    assert_eq!((get.status, get.upstream()), (200, Some("v1")));
    assert_eq!((post.status, post.body.as_str()), (200, "v1\n"));
    assert!(
        client_time < mirror_delay,
        "the client waited {client_time:?} for a mirror that takes {mirror_delay:?}"
    );
    // The copies arrive although their requests ended long before.
    let deadline = Instant::now() + Duration::from_secs(10);
    while mesh.upstream("mirror").hits() < 2 && Instant::now() < deadline {
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
    let seen = mesh.upstream("mirror").seen();
    assert_eq!(seen.len(), 2, "{seen:?}");
    let get_copy = seen.iter().find(|s| s.method == "GET").unwrap();
    assert_eq!(get_copy.path, "/get?x=1");
    assert_eq!(get_copy.header("host"), Some("httpbin-shadow:8000"));
    assert_eq!(get_copy.header("x-trace"), Some("t1"));
    let post_copy = seen.iter().find(|s| s.method == "POST").unwrap();
    assert_eq!(&post_copy.body[..], b"hello mirror");
    assert_eq!(mesh.upstream("v1").hits(), 2);
    // A mirror to a cluster Envoy does not have never touches the request.
    let broken = file("httpbin-mirror.json").replace(r#""subset": "v2""#, r#""subset": "v9""#);
    let unmirrored = Mesh::start(&broken, &[("outbound||v1|httpbin", "v1")])
        .await
        .unwrap();
    let out = unmirrored.get("httpbin", "/get", &[]).await.unwrap();
    assert_eq!((out.status, out.upstream()), (200, Some("v1")));
    assert_eq!(
        unmirrored
            .envoy
            .stat("wasmcustom.meshwasm.router.mirrors_failed")
            .await
            .unwrap(),
        1
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn timeouts_give_504_and_failures_are_retried() {
    let mesh = mesh(&file("shop-routing.json"), &SHOP).await;
    let host = "shop.example.com";
    let started = Instant::now();
    let slow = mesh
        .get(host, "/checkout", &[("x-upstream-delay-ms", "2000")])
        .await
        .unwrap();
    let waited = started.elapsed();
    assert_eq!(slow.status, 504, "{slow:?}");
    assert!(
        waited >= Duration::from_millis(300) && waited < Duration::from_millis(1500),
        "timed out after {waited:?}, route timeout is 0.3 s"
    );
    // The first attempt gets a 503; Envoy retries and the second succeeds.
    let flaky = mesh
        .get(host, "/inventory", &[("x-upstream-fail-first", "1")])
        .await
        .unwrap();
    assert_eq!((flaky.status, flaky.upstream()), (200, Some("v1")));
    let attempts: Vec<_> = mesh
        .upstream("v1")
        .seen()
        .into_iter()
        .filter(|s| s.path == "/inventory")
        .collect();
    assert_eq!(attempts.len(), 2);
    assert_eq!(
        attempts[0].header("x-request-id"),
        attempts[1].header("x-request-id")
    );
    // Two retries at most: a request that keeps failing is tried three times.
    let broken = mesh
        .get(host, "/inventory/x", &[("x-upstream-fail-first", "9")])
        .await
        .unwrap();
    assert_eq!(broken.status, 503);
    let tries = mesh
        .upstream("v1")
        .seen()
        .iter()
        .filter(|s| s.path == "/inventory/x")
        .count();
    assert_eq!(tries, 3);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn envoy_refuses_a_bad_configuration_and_logs_the_field() {
    let upstream = Upstream::start("v1").await.unwrap();
    let bad = r#"{"hosts": ["web"], "http": [{"route": [
        {"destination": {"host": "web", "subset": "v1"}, "weight": 0},
        {"destination": {"host": "web", "subset": "v2"}, "weight": 0}]}]}"#;
    let log = envoy::expect_rejected(Bootstrap::new(upstream.addr()).filter(WasmFilter::new(
        "router",
        ROUTER_WASM,
        bad,
    )))
    .await
    .unwrap();
    assert!(
        log.contains("meshwasm router: invalid configuration: http[0].route: the weights of a route's destinations sum to 0"),
        "{log}"
    );
}

#[test]
fn the_documented_envoy_yaml_is_valid() {
    let example = concat!(env!("CARGO_MANIFEST_DIR"), "/../filters/router/envoy.yaml");
    let yaml = std::fs::read_to_string(example).unwrap();
    assert!(
        yaml.contains("cluster_header: x-meshwasm-cluster"),
        "the documented wiring"
    );
    let relative = "target/wasm32-wasip1/wasm/meshwasm_router.wasm";
    envoy::validate_example(std::path::Path::new(example), relative, ROUTER_WASM).unwrap();
}
