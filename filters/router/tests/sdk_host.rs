//! The router filter through sdk-host, each test in both modes (the built
//! `.wasm` on wasmtime, and this crate linked natively): what a user of the
//! filter relies on, read where Envoy would see it, on the upstream request,
//! the client's answer, the callouts and the metrics.
#![allow(clippy::unwrap_used, clippy::expect_used, clippy::panic)]

use sdk_host::{Action, CalloutResponse, Error, Host, HostBuilder, LogLevel, WasmModule};
use serde_json::{Value, json};
use std::collections::BTreeMap;
use std::sync::OnceLock;

#[derive(Debug, Clone, Copy)]
enum Mode {
    Wasm,
    Native,
}

const MODES: [Mode; 2] = [Mode::Wasm, Mode::Native];

fn module() -> &'static WasmModule {
    static MODULE: OnceLock<WasmModule> = OnceLock::new();
    MODULE.get_or_init(|| WasmModule::from_file(meshwasm_artifacts::ROUTER_WASM).unwrap())
}

/// A host builder with the router's plugin and `config`.
fn builder(config: &Value) -> HostBuilder {
    Host::builder().plugin("router", "router", config.to_string())
}

fn launch(mode: Mode, builder: HostBuilder) -> Result<Host, Error> {
    match mode {
        Mode::Wasm => builder.start(module()),
        Mode::Native => builder.start_native(sdk_host::native_module!(meshwasm_router)),
    }
}

fn start(mode: Mode, config: &Value) -> Host {
    launch(mode, builder(config)).unwrap()
}

/// Sends a whole request without a body.
fn request(host: &mut Host, headers: &[(&str, &str)]) -> (u32, Action) {
    let stream = host.new_http_stream().unwrap();
    let action = host.send_request_headers(stream, headers, true).unwrap();
    (stream, action)
}

/// A GET for `authority` and `path`, with `extra` headers after the pseudo-headers.
fn get(host: &mut Host, authority: &str, path: &str, extra: &[(&str, &str)]) -> u32 {
    let mut headers = vec![
        (":method", "GET"),
        (":scheme", "http"),
        (":path", path),
        (":authority", authority),
    ];
    headers.extend_from_slice(extra);
    let (stream, action) = request(host, &headers);
    assert_eq!(action, Action::Continue, "{authority}{path} was held");
    stream
}

/// A header of the request as it reached the upstream.
fn upstream_header(host: &Host, stream: u32, name: &str) -> Option<String> {
    let view = host.http(stream).unwrap();
    let headers = view
        .upstream()
        .headers
        .as_ref()
        .expect("the request never reached the upstream");
    headers.get(name).map(str::to_owned)
}

/// Every value of a header of the request as it reached the upstream.
fn upstream_headers(host: &Host, stream: u32, name: &str) -> Vec<String> {
    let view = host.http(stream).unwrap();
    let headers = view.upstream().headers.as_ref().unwrap();
    headers.get_all(name).map(str::to_owned).collect()
}

/// The subset the router chose for a request to `authority` and `path`.
fn subset_for(
    host: &mut Host,
    authority: &str,
    path: &str,
    extra: &[(&str, &str)],
) -> Option<String> {
    let stream = get(host, authority, path, extra);
    let subset = upstream_header(host, stream, "x-meshwasm-subset");
    host.finish(stream).unwrap();
    subset
}

/// A header of the answer the client received.
fn downstream_header(host: &Host, stream: u32, name: &str) -> Option<String> {
    let view = host.http(stream).unwrap();
    let headers = view
        .downstream()
        .headers
        .as_ref()
        .expect("no answer reached the client");
    headers.get(name).map(str::to_owned)
}

fn assert_no_violations(host: &Host, mode: Mode) {
    assert!(
        host.violations().is_empty(),
        "{mode:?}: {:?}",
        host.violations()
    );
}

/// The last line the filter logged while its configuration was refused.
fn rejection(mode: Mode, config: &str) -> String {
    let err = launch(mode, Host::builder().plugin("router", "router", config)).unwrap_err();
    let Error::Rejected { callback, logs, .. } = &err else {
        panic!("{mode:?}: {err}")
    };
    assert_eq!(*callback, "proxy_on_configure", "{mode:?}");
    let last = logs.last().expect("nothing was logged");
    assert_eq!(last.level, LogLevel::Error, "{mode:?}: {last}");
    last.message.clone()
}

fn reviews(subset: &str) -> Value {
    json!({"destination": {"host": "reviews", "subset": subset}})
}

#[test]
fn exact_prefix_and_regex_uris_pick_their_routes() {
    let config = json!({"hosts": ["reviews"], "http": [
        {"match": [{"uri": {"exact": "/exact"}}], "route": [reviews("exact")]},
        {"match": [{"uri": {"prefix": "/prefix/"}}], "route": [reviews("prefix")]},
        {"match": [{"uri": {"regex": "/regex/[0-9]+"}}], "route": [reviews("regex")]},
        {"match": [{"uri": {"prefix": "/CASE/"}, "ignoreUriCase": true}], "route": [reviews("case")]},
        {"route": [reviews("default")]}
    ]});
    for mode in MODES {
        let mut host = start(mode, &config);
        let cases = [
            ("/exact", "exact"),
            // exact and regex see the path without its query.
            ("/exact?page=2", "exact"),
            ("/exact/more", "default"),
            ("/prefix/a/b", "prefix"),
            ("/prefix", "default"),
            ("/regex/42", "regex"),
            ("/regex/42?x=y", "regex"),
            // A regex matches the whole path, as in Envoy.
            ("/regex/42a", "default"),
            ("/case/items", "case"),
            ("/Case/items", "case"),
            ("/", "default"),
        ];
        for (path, want) in cases {
            assert_eq!(
                subset_for(&mut host, "reviews", path, &[]).as_deref(),
                Some(want),
                "{mode:?}: {path}"
            );
        }
        assert_no_violations(&host, mode);
    }
}

/// A request's path and headers, and the subset it should reach.
type Case<'a> = (&'a str, &'a [(&'a str, &'a str)], &'a str);

#[test]
fn header_query_and_without_header_conditions_are_anded_and_blocks_ored() {
    let config = json!({"hosts": ["reviews"], "http": [
        {"match": [{"headers": {"end-user": {"exact": "jason"}}, "withoutHeaders": {"x-opt-out": {}}}],
         "route": [reviews("jason")]},
        {"match": [{"headers": {"x-tier": {"prefix": "gold"}, "x-region": {"regex": "eu-[a-z]+"}}}],
         "route": [reviews("gold-eu")]},
        {"match": [{"queryParams": {"beta": {"exact": "1"}}}, {"headers": {"x-beta": {}}}],
         "route": [reviews("beta")]},
        {"route": [reviews("default")]}
    ]});
    for mode in MODES {
        let mut host = start(mode, &config);
        let cases: [Case; 11] = [
            ("/", &[("end-user", "jason")], "jason"),
            (
                "/",
                &[("end-user", "jason"), ("x-opt-out", "yes")],
                "default",
            ),
            ("/", &[("end-user", "Jason")], "default"),
            (
                "/",
                &[("x-tier", "gold-plus"), ("x-region", "eu-west")],
                "gold-eu",
            ),
            // Conditions in a block are ANDed.
            ("/", &[("x-tier", "gold-plus")], "default"),
            (
                "/",
                &[("x-tier", "gold"), ("x-region", "us-east")],
                "default",
            ),
            ("/?beta=1", &[], "beta"),
            ("/items?a=b&beta=1", &[], "beta"),
            ("/?beta=2", &[], "default"),
            // Blocks are ORed: the header alone is enough.
            ("/", &[("x-beta", "")], "beta"),
            ("/?betas=1", &[], "default"),
        ];
        for (path, headers, want) in cases {
            assert_eq!(
                subset_for(&mut host, "reviews", path, headers).as_deref(),
                Some(want),
                "{mode:?}: {path} {headers:?}"
            );
        }
        assert_no_violations(&host, mode);
    }
}

#[test]
fn the_first_matching_route_wins() {
    let config = json!({"hosts": ["reviews"], "http": [
        {"name": "broad", "match": [{"uri": {"prefix": "/api"}}], "route": [reviews("v1")]},
        {"name": "narrow", "match": [{"uri": {"prefix": "/api/v2"}}], "route": [reviews("v2")]},
        {"route": [reviews("v3")]}
    ]});
    for mode in MODES {
        let mut host = start(mode, &config);
        assert_eq!(
            subset_for(&mut host, "reviews", "/api/v2/items", &[]).as_deref(),
            Some("v1"),
            "{mode:?}: the later, narrower route must not win"
        );
        assert_eq!(
            subset_for(&mut host, "reviews", "/other", &[]).as_deref(),
            Some("v3")
        );
        assert_eq!(
            host.counter("meshwasm.router.routed.outbound||v1|reviews"),
            Some(1)
        );
        assert_eq!(
            host.counter("meshwasm.router.routed.outbound||v2|reviews"),
            Some(0)
        );
        assert_no_violations(&host, mode);
    }
}

#[test]
fn hosts_match_without_the_port_and_by_short_name_or_fqdn() {
    let short = json!({"hosts": ["reviews"], "http": [{"route": [reviews("v1")]}]});
    let fqdn = json!({"hosts": ["ratings.prod.svc.cluster.local"],
        "http": [{"route": [{"destination": {"host": "ratings.prod.svc.cluster.local", "subset": "v1"}}]}]});
    for mode in MODES {
        let mut host = start(mode, &short);
        for authority in [
            "reviews",
            "reviews:9080",
            "REVIEWS",
            "reviews.default",
            "reviews.default.svc",
            "reviews.default.svc.cluster.local",
            "reviews.default.svc.cluster.local:9080",
        ] {
            assert_eq!(
                subset_for(&mut host, authority, "/", &[]).as_deref(),
                Some("v1"),
                "{mode:?}: {authority}"
            );
        }
        for authority in [
            "reviewsx",
            "ratings",
            "other.reviews",
            "reviews-shadow:9080",
        ] {
            assert_eq!(
                subset_for(&mut host, authority, "/", &[]),
                None,
                "{mode:?}: {authority} must not match"
            );
        }
        assert_eq!(host.counter("meshwasm.router.unmatched"), Some(4));
        assert_no_violations(&host, mode);

        let mut host = start(mode, &fqdn);
        for authority in [
            "ratings.prod.svc.cluster.local",
            "ratings.prod.svc",
            "ratings.prod",
            "ratings",
            "ratings:9080",
        ] {
            assert_eq!(
                subset_for(&mut host, authority, "/", &[]).as_deref(),
                Some("v1"),
                "{mode:?}: {authority}"
            );
        }
        for authority in ["ratings.test", "ratings.test.svc.cluster.local"] {
            assert_eq!(
                subset_for(&mut host, authority, "/", &[]),
                None,
                "{mode:?}: {authority} must not match"
            );
        }
        assert_no_violations(&host, mode);
    }
}

#[test]
fn a_client_cannot_pick_the_cluster_or_subset() {
    let config = json!({"hosts": ["reviews"], "http": [
        {"match": [{"uri": {"prefix": "/plain"}}], "route": [{"destination": {"host": "reviews"}}]},
        {"match": [{"uri": {"prefix": "/v2"}}], "route": [reviews("v2")]}
    ]});
    let forged = [
        ("x-meshwasm-cluster", "outbound||admin|secrets"),
        ("x-meshwasm-subset", "admin"),
    ];
    for mode in MODES {
        let mut host = start(mode, &config);
        // Another host: nothing is routed, the forged headers are removed.
        let other = get(&mut host, "secrets", "/v2", &forged);
        assert_eq!(
            upstream_header(&host, other, "x-meshwasm-cluster"),
            None,
            "{mode:?}"
        );
        assert_eq!(
            upstream_header(&host, other, "x-meshwasm-subset"),
            None,
            "{mode:?}"
        );
        assert_eq!(
            upstream_header(&host, other, ":path").as_deref(),
            Some("/v2")
        );
        // The host matches but no route does: removed as well.
        let no_route = get(&mut host, "reviews", "/elsewhere", &forged);
        assert_eq!(
            upstream_header(&host, no_route, "x-meshwasm-cluster"),
            None,
            "{mode:?}"
        );
        assert_eq!(
            upstream_header(&host, no_route, "x-meshwasm-subset"),
            None,
            "{mode:?}"
        );
        // A route with no subset: the cluster is the router's, the forged subset is gone.
        let plain = get(&mut host, "reviews", "/plain", &forged);
        assert_eq!(
            upstream_headers(&host, plain, "x-meshwasm-cluster"),
            ["outbound|||reviews"],
            "{mode:?}"
        );
        assert_eq!(
            upstream_header(&host, plain, "x-meshwasm-subset"),
            None,
            "{mode:?}"
        );
        // A route with a subset replaces both, leaving one value each.
        let v2 = get(&mut host, "reviews", "/v2", &forged);
        assert_eq!(
            upstream_headers(&host, v2, "x-meshwasm-cluster"),
            ["outbound||v2|reviews"]
        );
        assert_eq!(upstream_headers(&host, v2, "x-meshwasm-subset"), ["v2"]);
        assert_eq!(host.counter("meshwasm.router.unmatched"), Some(2));
        // Without routing headers, an unmatched request is left as it came.
        let untouched = get(&mut host, "secrets", "/", &[("x-other", "1")]);
        let view = host.http(untouched).unwrap();
        let headers = view.upstream().headers.as_ref().unwrap();
        let names: Vec<&str> = headers.iter().map(|(n, _)| n).collect();
        assert_eq!(
            names,
            [":method", ":scheme", ":path", ":authority", "x-other"]
        );
        assert_no_violations(&host, mode);
    }
}

#[test]
fn the_cluster_and_subset_headers_name_the_destination() {
    let config = json!({"hosts": ["reviews"], "http": [
        {"match": [{"uri": {"prefix": "/port"}}],
         "route": [{"destination": {"host": "reviews", "subset": "v2", "port": {"number": 9080}}}]},
        {"match": [{"uri": {"prefix": "/fqdn"}}],
         "route": [{"destination": {"host": "reviews.default.svc.cluster.local", "port": {"number": 9080}}}]},
        {"route": [reviews("v2")]}
    ]});
    for mode in MODES {
        let mut host = start(mode, &config);
        let cases = [
            ("/", "outbound||v2|reviews", Some("v2")),
            ("/port", "outbound|9080|v2|reviews", Some("v2")),
            (
                "/fqdn",
                "outbound|9080||reviews.default.svc.cluster.local",
                None,
            ),
        ];
        for (path, cluster, subset) in cases {
            let stream = get(&mut host, "reviews", path, &[]);
            assert_eq!(
                upstream_header(&host, stream, "x-meshwasm-cluster").as_deref(),
                Some(cluster),
                "{mode:?}: {path}"
            );
            assert_eq!(
                upstream_header(&host, stream, "x-meshwasm-subset").as_deref(),
                subset,
                "{mode:?}: {path}"
            );
        }
        assert_no_violations(&host, mode);
    }
}

#[test]
fn the_cluster_header_and_template_are_configurable() {
    let config = json!({"hosts": ["reviews"],
        "meshwasm": {"router": {"clusterHeader": "x-route-to", "subsetHeader": "x-version",
                                "clusterTemplate": "{host}-{subset}"}},
        "http": [{"route": [reviews("v3")]}]});
    for mode in MODES {
        let mut host = start(mode, &config);
        let stream = get(
            &mut host,
            "reviews",
            "/",
            &[
                ("x-meshwasm-cluster", "client"),
                ("x-meshwasm-subset", "client"),
            ],
        );
        assert_eq!(
            upstream_header(&host, stream, "x-route-to").as_deref(),
            Some("reviews-v3")
        );
        assert_eq!(
            upstream_header(&host, stream, "x-version").as_deref(),
            Some("v3")
        );
        // The defaults are then ordinary headers.
        assert_eq!(
            upstream_header(&host, stream, "x-meshwasm-cluster").as_deref(),
            Some("client")
        );
        assert_eq!(host.counter("meshwasm.router.routed.reviews-v3"), Some(1));
        // Unmatched: the configured headers are the ones removed.
        let other = get(
            &mut host,
            "other",
            "/",
            &[("x-route-to", "forged"), ("x-version", "v9")],
        );
        assert_eq!(
            upstream_header(&host, other, "x-route-to"),
            None,
            "{mode:?}"
        );
        assert_eq!(upstream_header(&host, other, "x-version"), None, "{mode:?}");
        assert_no_violations(&host, mode);
    }
}

/// Envoy picks the route before the filters run; the router's headers only
/// steer it if the route cache is cleared after they are written.
#[test]
#[ignore = "route_cache_cleared() stays 0: the router never calls clear_route_cache and relies on Envoy \
            clearing the cache on header edits under ABI 0.2.1, which sdk-host does not count"]
fn the_route_cache_is_cleared_when_the_router_changes_headers() {
    let config = json!({"hosts": ["reviews"], "http": [
        {"match": [{"uri": {"prefix": "/routed"}}], "route": [reviews("v2")]}
    ]});
    for mode in MODES {
        let mut host = start(mode, &config);
        let routed = get(&mut host, "reviews", "/routed", &[]);
        assert_eq!(
            upstream_header(&host, routed, "x-meshwasm-cluster").as_deref(),
            Some("outbound||v2|reviews")
        );
        assert!(
            host.http(routed).unwrap().route_cache_cleared() > 0,
            "{mode:?}: the cluster header was set but the route cache was not cleared"
        );
        let stripped = get(&mut host, "other", "/", &[("x-meshwasm-cluster", "forged")]);
        assert!(
            host.http(stripped).unwrap().route_cache_cleared() > 0,
            "{mode:?}: a forged cluster header was removed but the route cache was not cleared"
        );
        assert_no_violations(&host, mode);
    }
}

/// Counts of each subset over `n` requests.
fn split_counts(host: &mut Host, n: usize, extra: &[(&str, &str)]) -> BTreeMap<String, usize> {
    let mut counts = BTreeMap::new();
    for _ in 0..n {
        let subset = subset_for(host, "reviews", "/", extra).expect("no subset");
        *counts.entry(subset).or_insert(0) += 1;
    }
    counts
}

#[test]
fn a_weighted_split_follows_the_weights() {
    let config = json!({"hosts": ["reviews"], "http": [{"route": [
        {"destination": {"host": "reviews", "subset": "v1"}, "weight": 75},
        {"destination": {"host": "reviews", "subset": "v2"}, "weight": 20},
        {"destination": {"host": "reviews", "subset": "v3"}, "weight": 5}
    ]}]});
    const N: usize = 2000;
    for mode in MODES {
        // The seed fixes the Wasm module's draws; natively the filter draws
        // from the OS. Either way each count stays within 5 standard
        // deviations (sqrt(n p (1 - p)): 19.4, 17.9 and 9.7 here).
        let mut host = launch(mode, builder(&config).seed(20_260_101)).unwrap();
        let counts = split_counts(&mut host, N, &[]);
        for (subset, share, tolerance) in [("v1", 0.75, 97), ("v2", 0.20, 90), ("v3", 0.05, 49)] {
            let expected = (N as f64 * share) as usize;
            let got = counts.get(subset).copied().unwrap_or(0);
            assert!(
                got.abs_diff(expected) <= tolerance,
                "{mode:?}: {subset} got {got} of {N}, expected {expected} ± {tolerance}: {counts:?}"
            );
            assert_eq!(
                host.counter(&format!(
                    "meshwasm.router.routed.outbound||{subset}|reviews"
                )),
                Some(got as u64),
                "{mode:?}: {subset}"
            );
        }
        assert_eq!(counts.values().sum::<usize>(), N);
        assert_no_violations(&host, mode);
    }
}

#[test]
fn weights_100_and_0_send_everything_to_the_first() {
    let config = json!({"hosts": ["reviews"], "http": [{"route": [
        {"destination": {"host": "reviews", "subset": "v1"}, "weight": 100},
        {"destination": {"host": "reviews", "subset": "v2"}, "weight": 0}
    ]}]});
    for mode in MODES {
        let mut host = launch(mode, builder(&config).seed(3)).unwrap();
        let counts = split_counts(&mut host, 500, &[]);
        assert_eq!(counts, BTreeMap::from([("v1".to_owned(), 500)]), "{mode:?}");
        assert_eq!(
            host.counter("meshwasm.router.routed.outbound||v1|reviews"),
            Some(500)
        );
        assert_eq!(
            host.counter("meshwasm.router.routed.outbound||v2|reviews"),
            Some(0)
        );
        assert_no_violations(&host, mode);
    }
}

#[test]
fn a_sticky_split_keeps_each_cookie_on_one_destination() {
    let config = json!({"hosts": ["reviews"],
    "meshwasm": {"router": {"sticky": {"httpCookie": {"name": "user"}}}},
    "http": [{"route": [
        {"destination": {"host": "reviews", "subset": "v1"}, "weight": 50},
        {"destination": {"host": "reviews", "subset": "v2"}, "weight": 50}
    ]}]});
    for mode in MODES {
        let mut host = start(mode, &config);
        let mut per_user = BTreeMap::new();
        for user in 0..40 {
            let first = format!("theme=dark; user=u-{user}");
            let chosen =
                subset_for(&mut host, "reviews", "/", &[("cookie", first.as_str())]).unwrap();
            // The same cookie, alone or among others, on any path.
            for (i, cookie) in [format!("user=u-{user}"), format!("user=u-{user}; lang=fr")]
                .iter()
                .cycle()
                .take(10)
                .enumerate()
            {
                let path = format!("/page/{i}");
                assert_eq!(
                    subset_for(&mut host, "reviews", &path, &[("cookie", cookie.as_str())])
                        .as_deref(),
                    Some(chosen.as_str()),
                    "{mode:?}: user u-{user} moved"
                );
            }
            per_user.insert(user, chosen);
        }
        // The split holds across clients.
        let on_v1 = per_user.values().filter(|s| *s == "v1").count();
        assert!(
            (8..=32).contains(&on_v1),
            "{mode:?}: {on_v1} of 40 users on v1: {per_user:?}"
        );
        // The hash alone decides, so both modes agree user by user.
        static FIRST: OnceLock<BTreeMap<i32, String>> = OnceLock::new();
        assert_eq!(
            FIRST.get_or_init(|| per_user.clone()),
            &per_user,
            "{mode:?}"
        );
        assert_no_violations(&host, mode);
    }
}

#[test]
fn a_redirect_answers_with_its_status_and_location_and_keeps_the_query() {
    let config = json!({"hosts": ["shop.example.com"], "http": [
        {"match": [{"uri": {"exact": "/old"}}], "redirect": {"uri": "/new", "redirectCode": 302}},
        {"match": [{"uri": {"prefix": "/legacy/"}}],
         "redirect": {"prefixRewrite": "/v2/", "authority": "api.example.com"}},
        {"route": [{"destination": {"host": "shop"}}]}
    ]});
    for mode in MODES {
        let mut host = start(mode, &config);
        let (stream, action) = request(
            &mut host,
            &[
                (":method", "GET"),
                (":scheme", "https"),
                (":path", "/old?id=3&x=y"),
                (":authority", "shop.example.com"),
            ],
        );
        assert_eq!(action, Action::Pause, "{mode:?}");
        let view = host.http(stream).unwrap();
        let local = view.local_response().unwrap();
        assert_eq!(
            (local.status, local.details.as_str()),
            (302, "meshwasm_router_redirect")
        );
        assert_eq!(
            local.headers.get("location"),
            Some("https://shop.example.com/new?id=3&x=y"),
            "{mode:?}"
        );
        assert!(
            view.upstream().headers.is_none(),
            "{mode:?}: a redirect reached the upstream"
        );
        assert_eq!(
            downstream_header(&host, stream, ":status").as_deref(),
            Some("302")
        );

        let (stream, _) = request(
            &mut host,
            &[
                (":method", "GET"),
                (":scheme", "http"),
                (":path", "/legacy/cart/42?ref=mail"),
                (":authority", "shop.example.com:8080"),
            ],
        );
        let local = host.http(stream).unwrap().local_response().unwrap().clone();
        assert_eq!(local.status, 301, "{mode:?}: 301 is the default");
        assert_eq!(
            local.headers.get("location"),
            Some("http://api.example.com/v2/cart/42?ref=mail"),
            "{mode:?}"
        );
        assert_eq!(host.counter("meshwasm.router.redirects"), Some(2));
        assert_no_violations(&host, mode);
    }
}

#[test]
fn https_redirect_sends_plain_http_to_https() {
    let config = json!({"hosts": ["shop.example.com"],
        "meshwasm": {"router": {"httpsRedirect": true}},
        "http": [{"route": [{"destination": {"host": "shop"}}]}]});
    for mode in MODES {
        let mut host = start(mode, &config);
        let (stream, action) = request(
            &mut host,
            &[
                (":method", "GET"),
                (":scheme", "http"),
                (":path", "/cart?id=3"),
                (":authority", "shop.example.com"),
            ],
        );
        assert_eq!(action, Action::Pause, "{mode:?}");
        let local = host.http(stream).unwrap().local_response().unwrap().clone();
        assert_eq!(
            (
                local.status,
                local.details.as_str(),
                local.headers.get("location")
            ),
            (
                301,
                "meshwasm_router_https_redirect",
                Some("https://shop.example.com/cart?id=3")
            )
        );
        // A client's own x-forwarded-proto does not skip the redirect: the
        // scheme is what Envoy established (`:scheme`).
        let (forged, action) = request(
            &mut host,
            &[
                (":method", "GET"),
                (":scheme", "http"),
                (":path", "/cart"),
                (":authority", "shop.example.com"),
                ("x-forwarded-proto", "https"),
            ],
        );
        assert_eq!(action, Action::Pause, "{mode:?}");
        assert_eq!(
            host.http(forged)
                .unwrap()
                .local_response()
                .map(|r| r.status),
            Some(301)
        );
        // Over TLS (or behind a proxy Envoy trusts), Envoy's :scheme is https.
        let (passed, _) = request(
            &mut host,
            &[
                (":method", "GET"),
                (":scheme", "https"),
                (":path", "/cart"),
                (":authority", "shop.example.com"),
            ],
        );
        assert_eq!(
            upstream_header(&host, passed, "x-meshwasm-cluster").as_deref(),
            Some("outbound|||shop")
        );
        assert_eq!(host.counter("meshwasm.router.redirects"), Some(2));
        assert_no_violations(&host, mode);
    }
}

#[test]
fn a_direct_response_answers_with_its_status_body_and_headers() {
    let config = json!({"hosts": ["shop.example.com"], "http": [
        {"match": [{"uri": {"exact": "/healthz"}}], "directResponse": {"status": 200, "body": {"string": "ok\n"}}},
        {"match": [{"uri": {"prefix": "/maintenance"}}],
         "directResponse": {"status": 503, "body": {"bytes": "ZG93biBmb3IgbWFpbnRlbmFuY2U="}},
         "headers": {"response": {"set": {"retry-after": "120"}, "add": {"x-reason": "maintenance"}}}},
        {"route": [{"destination": {"host": "shop"}}]}
    ]});
    for mode in MODES {
        let mut host = start(mode, &config);
        let (health, action) = request(
            &mut host,
            &[
                (":method", "GET"),
                (":path", "/healthz"),
                (":authority", "shop.example.com"),
            ],
        );
        assert_eq!(action, Action::Pause, "{mode:?}");
        let view = host.http(health).unwrap();
        let local = view.local_response().unwrap();
        assert_eq!(
            (local.status, local.details.as_str(), local.body.as_slice()),
            (200, "meshwasm_router_direct_response", &b"ok\n"[..])
        );
        assert_eq!(view.downstream().body, b"ok\n");
        assert!(view.upstream().headers.is_none());

        let (down, _) = request(
            &mut host,
            &[
                (":method", "POST"),
                (":path", "/maintenance/x"),
                (":authority", "shop.example.com"),
            ],
        );
        let view = host.http(down).unwrap();
        assert_eq!(view.downstream().body, b"down for maintenance", "{mode:?}");
        assert_eq!(
            downstream_header(&host, down, ":status").as_deref(),
            Some("503")
        );
        assert_eq!(
            downstream_header(&host, down, "retry-after").as_deref(),
            Some("120")
        );
        assert_eq!(
            downstream_header(&host, down, "x-reason").as_deref(),
            Some("maintenance")
        );
        assert_eq!(
            downstream_header(&host, down, "content-length").as_deref(),
            Some("20")
        );
        assert_eq!(host.counter("meshwasm.router.direct_responses"), Some(2));
        assert_no_violations(&host, mode);
    }
}

#[test]
fn a_rewrite_replaces_the_matched_prefix_and_the_authority() {
    let config = json!({"hosts": ["shop.example.com"], "http": [
        {"match": [{"uri": {"prefix": "/v1/"}}],
         "rewrite": {"uri": "/api/", "authority": "backend.internal"},
         "route": [{"destination": {"host": "backend"}}]},
        {"match": [{"uri": {"exact": "/login"}}], "rewrite": {"uri": "/auth/signin"},
         "route": [{"destination": {"host": "auth"}}]},
        {"match": [{"uri": {"prefix": "/users/"}}],
         "rewrite": {"uriRegexRewrite": {"match": "^/users/([0-9]+)/profile$", "rewrite": "/profiles/\\1"}},
         "route": [{"destination": {"host": "profiles"}}]},
        {"route": [{"destination": {"host": "shop"}}]}
    ]});
    for mode in MODES {
        let mut host = start(mode, &config);
        let stream = get(&mut host, "shop.example.com", "/v1/users?id=7", &[]);
        assert_eq!(
            upstream_header(&host, stream, ":path").as_deref(),
            Some("/api/users?id=7"),
            "{mode:?}"
        );
        assert_eq!(
            upstream_header(&host, stream, "x-envoy-original-path").as_deref(),
            Some("/v1/users?id=7")
        );
        assert_eq!(
            upstream_header(&host, stream, ":authority").as_deref(),
            Some("backend.internal")
        );

        // An exact match is replaced whole; the query stays.
        let stream = get(&mut host, "shop.example.com", "/login?next=/cart", &[]);
        assert_eq!(
            upstream_header(&host, stream, ":path").as_deref(),
            Some("/auth/signin?next=/cart"),
            "{mode:?}"
        );
        assert_eq!(
            upstream_header(&host, stream, ":authority").as_deref(),
            Some("shop.example.com")
        );

        let stream = get(
            &mut host,
            "shop.example.com",
            "/users/42/profile?full=1",
            &[],
        );
        assert_eq!(
            upstream_header(&host, stream, ":path").as_deref(),
            Some("/profiles/42?full=1"),
            "{mode:?}"
        );
        // A regex that does not match leaves the path, and no original path is recorded.
        let stream = get(&mut host, "shop.example.com", "/users/42/orders", &[]);
        assert_eq!(
            upstream_header(&host, stream, ":path").as_deref(),
            Some("/users/42/orders")
        );
        assert_eq!(
            upstream_header(&host, stream, "x-envoy-original-path"),
            None
        );
        // A route without a rewrite leaves the request's own header alone.
        let stream = get(&mut host, "shop.example.com", "/plain", &[]);
        assert_eq!(
            upstream_header(&host, stream, ":path").as_deref(),
            Some("/plain")
        );
        assert_eq!(
            upstream_header(&host, stream, "x-envoy-original-path"),
            None
        );
        assert_no_violations(&host, mode);
    }
}

#[test]
fn request_and_response_headers_are_edited_at_route_and_destination_level() {
    let config = json!({"hosts": ["reviews"], "http": [{
        "headers": {
            "request": {"set": {"x-route": "route", "x-shared": "route"}, "add": {"x-tag": "route"}, "remove": ["x-debug"]},
            "response": {"set": {"cache-control": "no-store"}, "add": {"x-served-by": "route"}, "remove": ["x-powered-by"]}
        },
        "route": [{
            "destination": {"host": "reviews", "subset": "v2"},
            "headers": {
                "request": {"set": {"x-shared": "destination"}, "add": {"x-tag": "destination"}},
                "response": {"set": {"x-version": "v2"}, "remove": ["server"]}
            }
        }]
    }]});
    for mode in MODES {
        let mut host = start(mode, &config);
        let stream = get(
            &mut host,
            "reviews",
            "/",
            &[("x-debug", "1"), ("x-tag", "client"), ("x-route", "client")],
        );
        assert_eq!(
            upstream_header(&host, stream, "x-route").as_deref(),
            Some("route"),
            "{mode:?}"
        );
        // The destination's edits come after the route's: they win.
        assert_eq!(
            upstream_headers(&host, stream, "x-shared"),
            ["destination"],
            "{mode:?}"
        );
        assert_eq!(
            upstream_headers(&host, stream, "x-tag"),
            ["client", "route", "destination"],
            "{mode:?}"
        );
        assert_eq!(upstream_header(&host, stream, "x-debug"), None, "{mode:?}");

        host.send_response_headers(
            stream,
            &[
                (":status", "200"),
                ("cache-control", "max-age=60"),
                ("x-powered-by", "php"),
                ("server", "apache"),
                ("x-served-by", "upstream"),
            ],
            true,
        )
        .unwrap();
        assert_eq!(
            downstream_header(&host, stream, "cache-control").as_deref(),
            Some("no-store")
        );
        assert_eq!(
            downstream_header(&host, stream, "x-powered-by"),
            None,
            "{mode:?}"
        );
        assert_eq!(downstream_header(&host, stream, "server"), None, "{mode:?}");
        assert_eq!(
            downstream_header(&host, stream, "x-version").as_deref(),
            Some("v2")
        );
        let view = host.http(stream).unwrap();
        let served_by: Vec<&str> = view
            .downstream()
            .headers
            .as_ref()
            .unwrap()
            .get_all("x-served-by")
            .collect();
        assert_eq!(served_by, ["upstream", "route"], "{mode:?}");
        assert!(view.downstream().complete);
        assert_no_violations(&host, mode);
    }
}

#[test]
fn timeout_and_retries_become_envoy_router_headers() {
    let config = json!({"hosts": ["reviews"], "http": [
        {"match": [{"uri": {"prefix": "/tuned"}}], "timeout": "2.5s",
         "retries": {"attempts": 3, "retryOn": "5xx,429,reset", "perTryTimeout": "800ms"},
         "route": [reviews("v1")]},
        {"match": [{"uri": {"prefix": "/default-retries"}}], "retries": {"attempts": 2},
         "route": [reviews("v1")]},
        {"match": [{"uri": {"prefix": "/no-retries"}}], "timeout": "0s", "retries": {"attempts": 0},
         "route": [reviews("v1")]},
        {"route": [reviews("v1")]}
    ]});
    const HEADERS: [&str; 5] = [
        "x-envoy-upstream-rq-timeout-ms",
        "x-envoy-max-retries",
        "x-envoy-retry-on",
        "x-envoy-retriable-status-codes",
        "x-envoy-upstream-rq-per-try-timeout-ms",
    ];
    for mode in MODES {
        let mut host = start(mode, &config);
        let cases: [(&str, [Option<&str>; 5]); 4] = [
            (
                "/tuned",
                [
                    Some("2500"),
                    Some("3"),
                    Some("5xx,reset,retriable-status-codes"),
                    Some("429"),
                    Some("800"),
                ],
            ),
            (
                "/default-retries",
                [
                    None,
                    Some("2"),
                    Some(
                        "connect-failure,refused-stream,unavailable,cancelled,retriable-status-codes",
                    ),
                    Some("503"),
                    None,
                ],
            ),
            ("/no-retries", [Some("0"), Some("0"), None, None, None]),
            ("/", [None; 5]),
        ];
        for (path, want) in cases {
            let stream = get(&mut host, "reviews", path, &[]);
            for (name, want) in HEADERS.iter().zip(want) {
                assert_eq!(
                    upstream_header(&host, stream, name).as_deref(),
                    want,
                    "{mode:?}: {path} {name}"
                );
            }
        }
        assert_no_violations(&host, mode);
    }
}

fn cors_config() -> Value {
    json!({"hosts": ["api.example.com"], "http": [{
        "corsPolicy": {
            "allowOrigins": [{"exact": "https://app.example.com"}, {"regex": "https://.*\\.partner\\.com"}],
            "allowMethods": ["GET", "POST"],
            "allowHeaders": ["authorization", "content-type"],
            "exposeHeaders": ["x-request-id"],
            "maxAge": "24h",
            "allowCredentials": true
        },
        "route": [{"destination": {"host": "api", "subset": "v1"}}]
    }]})
}

fn preflight(origin: &str) -> [(&str, &str); 5] {
    [
        (":method", "OPTIONS"),
        (":path", "/orders"),
        (":authority", "api.example.com"),
        ("origin", origin),
        ("access-control-request-method", "POST"),
    ]
}

#[test]
fn a_cors_preflight_from_an_allowed_origin_is_answered_at_once() {
    for mode in MODES {
        let mut host = start(mode, &cors_config());
        for origin in ["https://app.example.com", "https://shop.partner.com"] {
            let (stream, action) = request(&mut host, &preflight(origin));
            assert_eq!(action, Action::Pause, "{mode:?}: {origin}");
            let view = host.http(stream).unwrap();
            let local = view.local_response().unwrap();
            assert_eq!(
                (local.status, local.details.as_str()),
                (200, "meshwasm_router_cors_preflight")
            );
            assert!(
                view.upstream().headers.is_none(),
                "{mode:?}: a preflight reached the upstream"
            );
            for (name, value) in [
                ("access-control-allow-origin", origin),
                ("access-control-allow-credentials", "true"),
                ("access-control-allow-methods", "GET,POST"),
                ("access-control-allow-headers", "authorization,content-type"),
                ("access-control-max-age", "86400"),
            ] {
                assert_eq!(
                    downstream_header(&host, stream, name).as_deref(),
                    Some(value),
                    "{mode:?}: {origin} {name}"
                );
            }
        }
        // From an origin not allowed, the preflight goes on to the upstream
        // (unmatchedPreflights: FORWARD, the default) with no CORS answer.
        let (stream, action) = request(&mut host, &preflight("https://evil.example.org"));
        assert_eq!(action, Action::Continue, "{mode:?}");
        assert_eq!(
            upstream_header(&host, stream, ":method").as_deref(),
            Some("OPTIONS")
        );
        host.send_response_headers(stream, &[(":status", "204")], true)
            .unwrap();
        assert_eq!(
            downstream_header(&host, stream, "access-control-allow-origin"),
            None
        );
        assert_eq!(host.counter("meshwasm.router.cors_preflights"), Some(2));
        assert_no_violations(&host, mode);
    }
}

#[test]
fn the_response_to_an_allowed_origin_carries_access_control_allow_origin() {
    for mode in MODES {
        let mut host = start(mode, &cors_config());
        let allowed = get(
            &mut host,
            "api.example.com",
            "/orders",
            &[("origin", "https://app.example.com")],
        );
        assert_eq!(
            upstream_header(&host, allowed, "x-meshwasm-subset").as_deref(),
            Some("v1"),
            "{mode:?}"
        );
        host.send_response_headers(
            allowed,
            &[(":status", "200"), ("x-request-id", "r-1")],
            true,
        )
        .unwrap();
        for (name, value) in [
            ("access-control-allow-origin", "https://app.example.com"),
            ("access-control-allow-credentials", "true"),
            ("access-control-expose-headers", "x-request-id"),
        ] {
            assert_eq!(
                downstream_header(&host, allowed, name).as_deref(),
                Some(value),
                "{mode:?}: {name}"
            );
        }
        // Preflight-only headers are not on a simple response.
        assert_eq!(
            downstream_header(&host, allowed, "access-control-allow-methods"),
            None
        );

        for extra in [&[("origin", "https://evil.example.org")][..], &[]] {
            let other = get(&mut host, "api.example.com", "/orders", extra);
            host.send_response_headers(other, &[(":status", "200")], true)
                .unwrap();
            assert_eq!(
                downstream_header(&host, other, "access-control-allow-origin"),
                None,
                "{mode:?}: {extra:?}"
            );
            assert_eq!(
                downstream_header(&host, other, "access-control-allow-credentials"),
                None
            );
        }
        assert_eq!(host.counter("meshwasm.router.cors_preflights"), Some(0));
        assert_no_violations(&host, mode);
    }
}

const MIRROR_CLUSTER: &str = "outbound|9080|v2|reviews";

fn mirror_config(extra: Value) -> Value {
    let mut config = json!({"hosts": ["reviews"], "http": [{
        "mirror": {"host": "reviews", "subset": "v2", "port": {"number": 9080}},
        "route": [reviews("v1")]
    }]});
    if let (Some(config), Some(extra)) = (config.as_object_mut(), extra.as_object()) {
        config.extend(extra.clone());
    }
    config
}

fn post(host: &mut Host, chunks: &[&str]) -> u32 {
    let stream = host.new_http_stream().unwrap();
    let headers = [
        (":method", "POST"),
        (":scheme", "http"),
        (":path", "/reviews/1"),
        (":authority", "reviews:9080"),
        ("content-type", "text/plain"),
    ];
    let action = host.send_request_headers(stream, &headers, false).unwrap();
    assert_eq!(action, Action::Continue);
    for (i, chunk) in chunks.iter().enumerate() {
        let last = i + 1 == chunks.len();
        assert_eq!(
            host.send_request_body(stream, chunk, last).unwrap(),
            Some(Action::Continue)
        );
    }
    stream
}

#[test]
fn a_mirror_gets_a_copy_with_the_shadow_authority_and_the_body() {
    for mode in MODES {
        let mut host = launch(
            mode,
            builder(&mirror_config(json!({}))).cluster(MIRROR_CLUSTER),
        )
        .unwrap();
        let stream = post(&mut host, &["first half, ", "second half"]);
        let view = host.http(stream).unwrap();
        // The request itself is not held.
        assert!(view.upstream().complete, "{mode:?}");
        assert_eq!(view.upstream().body, b"first half, second half");
        assert_eq!(
            upstream_header(&host, stream, "x-meshwasm-cluster").as_deref(),
            Some("outbound||v1|reviews")
        );

        let calls = host.http_calls();
        assert_eq!(calls.len(), 1, "{mode:?}: {calls:?}");
        let call = &calls[0];
        assert_eq!(call.upstream, MIRROR_CLUSTER);
        assert_eq!(
            call.headers.get(":authority"),
            Some("reviews-shadow:9080"),
            "{mode:?}"
        );
        assert_eq!(call.headers.get(":method"), Some("POST"));
        assert_eq!(call.headers.get(":path"), Some("/reviews/1"));
        assert_eq!(call.headers.get("content-type"), Some("text/plain"));
        assert_eq!(call.body, b"first half, second half", "{mode:?}");
        // Owned by the root context: it outlives the request.
        assert_eq!(call.context_id, host.root_contexts()[0], "{mode:?}");
        host.finish(stream).unwrap();
        assert_eq!(
            host.http_calls().len(),
            1,
            "{mode:?}: the copy was cancelled with its request"
        );
        host.respond_http_call(call.token, CalloutResponse::new(500).body("mirror broke"))
            .unwrap();
        assert_eq!(host.counter("meshwasm.router.mirrors_sent"), Some(1));
        assert_eq!(host.counter("meshwasm.router.mirrors_failed"), Some(0));

        // A request without a body is copied as soon as its headers end it.
        let stream = get(&mut host, "reviews", "/reviews/2", &[]);
        let calls = host.http_calls();
        assert_eq!(calls.len(), 1, "{mode:?}");
        assert_eq!(calls[0].headers.get(":path"), Some("/reviews/2"));
        assert_eq!(calls[0].headers.get(":authority"), Some("reviews-shadow"));
        assert!(calls[0].body.is_empty());
        assert!(host.http(stream).unwrap().upstream().complete);
        assert_eq!(host.counter("meshwasm.router.mirrors_sent"), Some(2));
        assert_no_violations(&host, mode);
    }
}

#[test]
fn a_mirror_percentage_of_zero_sends_no_copy() {
    let config = json!({"hosts": ["reviews"], "http": [{
        "mirror": {"host": "reviews", "subset": "v2", "port": {"number": 9080}},
        "mirrorPercentage": {"value": 0},
        "route": [reviews("v1")]
    }]});
    for mode in MODES {
        let mut host = launch(mode, builder(&config).cluster(MIRROR_CLUSTER)).unwrap();
        for _ in 0..50 {
            post(&mut host, &["body"]);
        }
        assert!(host.http_calls().is_empty(), "{mode:?}");
        assert_eq!(host.counter("meshwasm.router.mirrors_sent"), Some(0));
        assert_no_violations(&host, mode);
    }
}

#[test]
fn a_body_over_max_mirror_body_bytes_is_not_mirrored() {
    let config = mirror_config(json!({"meshwasm": {"router": {"maxMirrorBodyBytes": 16}}}));
    for mode in MODES {
        let mut host = launch(mode, builder(&config).cluster(MIRROR_CLUSTER)).unwrap();
        // 17 bytes over two chunks: past the limit.
        let over = post(&mut host, &["0123456789", "abcdefg"]);
        assert!(
            host.http_calls().is_empty(),
            "{mode:?}: {:?}",
            host.http_calls()
        );
        assert_eq!(host.counter("meshwasm.router.mirrors_skipped"), Some(1));
        assert_eq!(host.counter("meshwasm.router.mirrors_sent"), Some(0));
        // The request itself goes on whole.
        let view = host.http(over).unwrap();
        assert_eq!(view.upstream().body, b"0123456789abcdefg", "{mode:?}");
        assert!(view.upstream().complete);

        // Exactly at the limit: copied.
        post(&mut host, &["0123456789", "abcdef"]);
        let calls = host.http_calls();
        assert_eq!(calls.len(), 1, "{mode:?}");
        assert_eq!(calls[0].body, b"0123456789abcdef");
        assert_eq!(host.counter("meshwasm.router.mirrors_sent"), Some(1));
        assert_eq!(host.counter("meshwasm.router.mirrors_skipped"), Some(1));
        assert_no_violations(&host, mode);
    }
}

#[test]
fn a_mirror_to_an_undefined_cluster_counts_as_failed() {
    for mode in MODES {
        // Declaring another cluster makes Envoy refuse callouts to the mirror's.
        let mut host = launch(
            mode,
            builder(&mirror_config(json!({}))).cluster("unrelated"),
        )
        .unwrap();
        let stream = post(&mut host, &["payload"]);
        assert!(host.http(stream).unwrap().upstream().complete, "{mode:?}");
        assert!(host.http_calls().is_empty());
        assert_eq!(
            host.counter("meshwasm.router.mirrors_failed"),
            Some(1),
            "{mode:?}"
        );
        assert_eq!(host.counter("meshwasm.router.mirrors_sent"), Some(0));
        assert_eq!(
            host.log_lines(LogLevel::Warn),
            [format!(
                "meshwasm router: mirror to {MIRROR_CLUSTER} refused: BadArgument (is the cluster defined?)"
            )],
            "{mode:?}"
        );
        // The refusal is reported, naming the cluster Envoy does not have.
        let refused: Vec<String> = host.violations().iter().map(ToString::to_string).collect();
        assert_eq!(refused.len(), 1, "{mode:?}: {refused:?}");
        assert!(
            refused[0].contains(r#"no cluster "outbound|9080|v2|reviews""#),
            "{mode:?}: {refused:?}"
        );
    }
}

#[test]
fn the_metrics_count_each_outcome() {
    let config = json!({"hosts": ["shop"], "http": [
        {"match": [{"uri": {"prefix": "/old"}}], "redirect": {"uri": "/new"}},
        {"match": [{"uri": {"exact": "/healthz"}}], "directResponse": {"status": 200}},
        {"match": [{"uri": {"prefix": "/v2"}}], "route": [{"destination": {"host": "shop", "subset": "v2"}}]},
        {"match": [{"uri": {"prefix": "/"}}], "route": [{"destination": {"host": "shop", "subset": "v1"}}]}
    ]});
    for mode in MODES {
        let mut host = start(mode, &config);
        for (authority, path, times) in [
            ("shop", "/old/a", 2),
            ("shop", "/healthz", 3),
            ("shop", "/v2/items", 4),
            ("shop", "/cart", 5),
            ("elsewhere", "/cart", 6),
        ] {
            for _ in 0..times {
                let (stream, _) = request(
                    &mut host,
                    &[
                        (":method", "GET"),
                        (":path", path),
                        (":authority", authority),
                    ],
                );
                host.finish(stream).unwrap();
            }
        }
        for (name, want) in [
            ("meshwasm.router.redirects", 2),
            ("meshwasm.router.direct_responses", 3),
            ("meshwasm.router.routed.outbound||v2|shop", 4),
            ("meshwasm.router.routed.outbound||v1|shop", 5),
            ("meshwasm.router.unmatched", 6),
            ("meshwasm.router.cors_preflights", 0),
            ("meshwasm.router.mirrors_sent", 0),
            ("meshwasm.router.mirrors_failed", 0),
            ("meshwasm.router.mirrors_skipped", 0),
        ] {
            assert_eq!(host.counter(name), Some(want), "{mode:?}: {name}");
        }
        assert_no_violations(&host, mode);
    }
}

#[test]
fn the_configure_log_summarises_the_routes() {
    let config = json!({"hosts": ["reviews"], "http": [
        {"match": [{"uri": {"prefix": "/old"}}], "redirect": {"uri": "/new"}},
        {"fault": {"abort": {"percentage": {"value": 10}, "httpStatus": 503}},
         "route": [
            {"destination": {"host": "reviews", "subset": "v1"}, "weight": 90},
            {"destination": {"host": "reviews", "subset": "v2"}, "weight": 10}
         ]}
    ]});
    for mode in MODES {
        let host = start(mode, &config);
        let logs: Vec<(LogLevel, &str)> = host
            .logs()
            .iter()
            .map(|r| (r.level, r.message.as_str()))
            .collect();
        // The fault is the fault filter's: noted, not refused.
        assert_eq!(
            logs,
            [
                (
                    LogLevel::Warn,
                    "meshwasm router: http[1].fault: applied by the meshwasm fault filter, not the router"
                ),
                (
                    LogLevel::Info,
                    "meshwasm router: configured: 2 routes (1 forwarding, 1 weighted, 0 mirrored, 1 answered locally); cluster header x-meshwasm-cluster, subset header x-meshwasm-subset"
                ),
            ],
            "{mode:?}"
        );
        assert_no_violations(&host, mode);
    }
}

#[test]
fn weights_that_sum_to_zero_are_refused() {
    let config = json!({"hosts": ["reviews"], "http": [{"route": [
        {"destination": {"host": "reviews", "subset": "v1"}, "weight": 0},
        {"destination": {"host": "reviews", "subset": "v2"}, "weight": 0}
    ]}]});
    for mode in MODES {
        assert_eq!(
            rejection(mode, &config.to_string()),
            "meshwasm router: invalid configuration: http[0].route: the weights of a route's destinations sum to 0; give at least one a positive weight",
            "{mode:?}"
        );
    }
}

#[test]
fn an_unknown_field_is_refused_by_name() {
    let config = r#"{"hosts": ["reviews"], "http": [{"route": [{"destination": {"host": "reviews", "subst": "v1"}}]}]}"#;
    for mode in MODES {
        assert_eq!(
            rejection(mode, config),
            "meshwasm router: invalid configuration: http[0].route[0].destination.subst: unknown field `subst`, expected one of `host`, `subset`, `port` (line 1, column 86)",
            "{mode:?}"
        );
    }
}

#[test]
fn an_empty_configuration_is_refused() {
    for mode in MODES {
        for config in ["", "  \n"] {
            assert_eq!(
                rejection(mode, config),
                r#"meshwasm router: invalid configuration: configuration: is empty; expected a VirtualService spec such as {"hosts": ["*"], "http": [...]}"#,
                "{mode:?}: {config:?}"
            );
        }
    }
}

#[test]
fn other_bad_routes_are_refused_with_the_field_and_the_reason() {
    let cases = [
        (
            json!({"hosts": ["r"], "http": [{"retries": {"attempts": 2, "retryOn": "5xx,teapot"}, "route": [reviews("v1")]}]}),
            "http[0].retries.retryOn: unknown retry condition \"teapot\"; use status codes or one of 5xx, \
             gateway-error, reset, reset-before-request, connect-failure, envoy-ratelimited, retriable-4xx, \
             refused-stream, retriable-status-codes, retriable-headers, http3-post-connect-failure, cancelled, \
             deadline-exceeded, internal, resource-exhausted, unavailable, unknown",
        ),
        (
            json!({"hosts": ["r"], "http": [{"redirect": {"uri": "/x"}, "timeout": "1s"}]}),
            "http[0].timeout: this route answers by itself (redirect or directResponse), so it forwards \
             nothing this could apply to",
        ),
        (
            json!({"hosts": ["r"], "http": [{"route": [reviews("v1")],
                "headers": {"request": {"set": {"x-meshwasm-cluster": "mine"}}}}]}),
            "http[0].headers.request: x-meshwasm-cluster carries the router's decision and cannot be edited",
        ),
        (
            json!({"hosts": ["r"], "http": [{"route": [{"destination": {"host": "r", "port": {"number": 70000}}}]}]}),
            "http[0].route[0].destination.port.number: 70000 is not a port in 1..=65535",
        ),
    ];
    for mode in MODES {
        for (config, reason) in &cases {
            assert_eq!(
                rejection(mode, &config.to_string()),
                format!("meshwasm router: invalid configuration: {reason}"),
                "{mode:?}"
            );
        }
    }
}

/// This filter's scenario files (`scenarios/`), which the end-to-end suite
/// and the demo also play in Envoy, here in both modes.
#[test]
fn the_router_scenario_files_pass_in_both_modes() {
    let dir = std::path::Path::new(env!("CARGO_MANIFEST_DIR")).join("scenarios");
    let mut played = 0;
    for entry in std::fs::read_dir(&dir).unwrap() {
        let path = entry.unwrap().path();
        if path.extension().is_none_or(|e| e != "yaml") {
            continue;
        }
        let name = path.file_name().unwrap().to_string_lossy().into_owned();
        let scenario = sdk_host::scenario::Scenario::from_file(&path).unwrap();
        assert_eq!(scenario.filter, "router", "{name}");
        let in_wasm = scenario.run(module()).unwrap();
        let native = scenario
            .run_native(sdk_host::native_module!(meshwasm_router))
            .unwrap();
        assert!(in_wasm.passed(), "{name} in wasm: {:#?}", in_wasm.failures);
        assert!(native.passed(), "{name} native: {:#?}", native.failures);
        played += 1;
    }
    assert!(played >= 2, "router scenarios in {}", dir.display());
}
