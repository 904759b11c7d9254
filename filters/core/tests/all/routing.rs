//! Router decisions: the Istio examples' canaries and header routes,
//! sticky splits, rewrites, redirects, mirrors, CORS, header edits and the
//! router headers for timeouts and retries.

use crate::request;
use meshwasm_core::header_ops::HeaderOp;
use meshwasm_core::percent::Rng;
use meshwasm_core::plan::Plan;
use meshwasm_core::router::{Decision, LocalKind, LocalResponse, Routed, RouterPlan};
use wasm_bindgen_test::wasm_bindgen_test;

fn plan(json: &str) -> RouterPlan {
    RouterPlan::from_json(json.as_bytes()).unwrap()
}

fn forwarded<'p>(d: Decision<'p>) -> Routed<'p> {
    match d {
        Decision::Forward(r) => r,
        other => panic!("expected a forward, got {other:?}"),
    }
}

fn answered<'p>(d: Decision<'p>) -> LocalResponse<'p> {
    match d {
        Decision::Respond(r) => r,
        other => panic!("expected a local response, got {other:?}"),
    }
}

/// The value a forward sets for a header, if it sets one.
fn set_value(r: &Routed<'_>, name: &str) -> Option<String> {
    r.request_edits.iter().rev().find_map(|op| match op {
        HeaderOp::Set(n, v) if *n == name => Some(v.to_string()),
        _ => None,
    })
}

fn header<'a>(r: &'a LocalResponse<'_>, name: &str) -> Option<&'a str> {
    r.headers
        .iter()
        .find(|(n, _)| *n == name)
        .map(|(_, v)| v.as_ref())
}

/// Counts per cluster over `n` requests.
fn tally(plan: &RouterPlan, n: u32, seed: u64) -> std::collections::BTreeMap<String, u32> {
    let mut rng = Rng::with_seed(seed);
    let mut counts = std::collections::BTreeMap::new();
    for _ in 0..n {
        let routed = forwarded(plan.decide(&mut request("web", "/"), &mut rng));
        *counts
            .entry(set_value(&routed, "x-meshwasm-cluster").unwrap())
            .or_insert(0) += 1;
    }
    counts
}

/// Whether `k` successes in `n` draws fit probability `p`, within 4.5
/// standard deviations (a false alarm about once in 150 000 runs).
fn within_bounds(k: u32, n: u32, p: f64) -> bool {
    let mean = f64::from(n) * p;
    let sd = (f64::from(n) * p * (1.0 - p)).sqrt();
    (f64::from(k) - mean).abs() <= 4.5 * sd
}

const CANARY_80_20: &str = r#"{"hosts": ["*"], "gateways": ["web-gateway"], "http": [{"route": [
    {"destination": {"host": "web", "port": {"number": 5005}, "subset": "v1"}, "weight": 80},
    {"destination": {"host": "web", "port": {"number": 5005}, "subset": "v2"}, "weight": 20}]}]}"#;

#[wasm_bindgen_test(unsupported = test)]
fn canary_weights_split_requests_and_name_istio_clusters() {
    let counts = tally(&plan(CANARY_80_20), 20_000, 7);
    let v1 = counts["outbound|5005|v1|web"];
    let v2 = counts["outbound|5005|v2|web"];
    assert_eq!(v1 + v2, 20_000);
    assert!(within_bounds(v2, 20_000, 0.2), "{counts:?}");
}

#[wasm_bindgen_test(unsupported = test)]
fn weights_are_normalised_by_their_sum() {
    // 1:3 is 25/75, although it does not sum to 100.
    let counts = tally(
        &plan(
            r#"{"hosts": ["web"], "http": [{"route": [
            {"destination": {"host": "web", "subset": "v1"}, "weight": 1},
            {"destination": {"host": "web", "subset": "v2"}, "weight": 3},
            {"destination": {"host": "web", "subset": "v3"}, "weight": 0}]}]}"#,
        ),
        20_000,
        8,
    );
    assert!(
        within_bounds(counts["outbound||v1|web"], 20_000, 0.25),
        "{counts:?}"
    );
    assert!(
        !counts.contains_key("outbound||v3|web"),
        "weight 0 never chosen"
    );
}

#[wasm_bindgen_test(unsupported = test)]
fn jason_goes_to_v2_and_everyone_else_to_v1() {
    let plan = plan(
        r#"{"hosts": ["reviews"], "http": [
        {"match": [{"headers": {"end-user": {"exact": "jason"}}}],
         "route": [{"destination": {"host": "reviews", "subset": "v2"}}]},
        {"route": [{"destination": {"host": "reviews", "subset": "v1"}}]}]}"#,
    );
    let mut rng = Rng::with_seed(1);
    let jason = forwarded(plan.decide(
        &mut request("reviews:9080", "/reviews/0").with_header("end-user", "jason"),
        &mut rng,
    ));
    assert_eq!(
        set_value(&jason, "x-meshwasm-cluster").unwrap(),
        "outbound||v2|reviews"
    );
    assert_eq!(set_value(&jason, "x-meshwasm-subset").unwrap(), "v2");
    for user in ["kim", "Jason", "jason2"] {
        let other = forwarded(plan.decide(
            &mut request("reviews", "/").with_header("end-user", user),
            &mut rng,
        ));
        assert_eq!(
            set_value(&other, "x-meshwasm-subset").unwrap(),
            "v1",
            "{user}"
        );
    }
}

const BOOKINFO_RULE: &str = r#"{"hosts": ["reviews.prod.svc.cluster.local", "uk.bookinfo.com", "eu.bookinfo.com"],
  "gateways": ["some-config-namespace/my-gateway", "mesh"], "http": [
  {"match": [{"headers": {"cookie": {"exact": "user=dev-123"}}}],
   "route": [{"destination": {"port": {"number": 7777}, "host": "reviews.qa.svc.cluster.local"}}]},
  {"match": [{"uri": {"prefix": "/reviews/"}}],
   "route": [{"destination": {"port": {"number": 9080}, "host": "reviews.prod.svc.cluster.local"}, "weight": 80},
             {"destination": {"host": "reviews.qa.svc.cluster.local"}, "weight": 20}]}]}"#;

#[wasm_bindgen_test(unsupported = test)]
fn dev_cookie_goes_to_qa_on_port_7777() {
    let plan = plan(BOOKINFO_RULE);
    let mut rng = Rng::with_seed(3);
    let dev = forwarded(plan.decide(
        &mut request("uk.bookinfo.com", "/anything").with_header("cookie", "user=dev-123"),
        &mut rng,
    ));
    assert_eq!(
        set_value(&dev, "x-meshwasm-cluster").unwrap(),
        "outbound|7777||reviews.qa.svc.cluster.local"
    );
    assert!(
        !dev.request_edits
            .iter()
            .any(|op| op.name() == "x-meshwasm-subset")
    );
    // Neither rule matches: the request is not routed by the filter.
    let none = plan.decide(&mut request("uk.bookinfo.com", "/other"), &mut rng);
    assert_eq!(none, Decision::Pass(Vec::new()));
}

#[wasm_bindgen_test(unsupported = test)]
fn clients_cannot_choose_a_cluster_themselves() {
    let plan = plan(BOOKINFO_RULE);
    let mut rng = Rng::with_seed(4);
    let mut forged = request("uk.bookinfo.com", "/other")
        .with_header("x-meshwasm-cluster", "outbound|9080||admin")
        .with_header("x-meshwasm-subset", "v9");
    assert_eq!(
        plan.decide(&mut forged, &mut rng),
        Decision::Pass(vec![
            HeaderOp::Remove("x-meshwasm-cluster"),
            HeaderOp::Remove("x-meshwasm-subset")
        ])
    );
    // A routed request without a subset also drops a forged subset.
    let mut routed = request("uk.bookinfo.com", "/x")
        .with_header("cookie", "user=dev-123")
        .with_header("x-meshwasm-subset", "v9");
    let routed = forwarded(plan.decide(&mut routed, &mut rng));
    assert!(
        routed
            .request_edits
            .contains(&HeaderOp::Remove("x-meshwasm-subset"))
    );
}

#[wasm_bindgen_test(unsupported = test)]
fn sticky_splits_keep_a_user_on_one_version_and_hold_across_users() {
    let plan = plan(
        r#"{"hosts": ["web"], "meshwasm": {"router": {"sticky": {"httpCookie": {"name": "user"}}}},
        "http": [{"route": [
            {"destination": {"host": "web", "subset": "v1"}, "weight": 95},
            {"destination": {"host": "web", "subset": "v2"}, "weight": 5}]}]}"#,
    );
    let mut rng = Rng::with_seed(5);
    let users = 20_000;
    let mut on_v2 = 0;
    for user in 0..users {
        let cookie = format!("theme=dark; user=u{user}");
        let mut first = None;
        for _ in 0..3 {
            let routed = forwarded(plan.decide(
                &mut request("web", "/").with_header("cookie", &cookie),
                &mut rng,
            ));
            let subset = set_value(&routed, "x-meshwasm-subset");
            assert!(first.is_none() || first == subset, "user {user} moved");
            first = subset;
        }
        on_v2 += u32::from(first.as_deref() == Some("v2"));
    }
    assert!(
        within_bounds(on_v2, users, 0.05),
        "{on_v2} of {users} on v2"
    );
}

#[wasm_bindgen_test(unsupported = test)]
fn sticky_by_source_ip_ignores_the_client_port() {
    let plan = plan(
        r#"{"hosts": ["web"], "meshwasm": {"router": {"sticky": {"useSourceIp": true}}},
        "http": [{"route": [
            {"destination": {"host": "web", "subset": "v1"}, "weight": 50},
            {"destination": {"host": "web", "subset": "v2"}, "weight": 50}]}]}"#,
    );
    let mut rng = Rng::with_seed(6);
    let mut seen = std::collections::BTreeSet::new();
    for port in 40_000..40_050 {
        let mut req = request("web", "/").with_source(&format!("10.0.0.7:{port}"));
        seen.insert(set_value(
            &forwarded(plan.decide(&mut req, &mut rng)),
            "x-meshwasm-subset",
        ));
    }
    assert_eq!(seen.len(), 1, "one client address, one version: {seen:?}");
}

#[wasm_bindgen_test(unsupported = test)]
fn prefix_rewrites_replace_the_matched_block_prefix() {
    let plan = plan(
        r#"{"hosts": ["httpbin.example.com"], "http": [
        {"match": [{"uri": {"prefix": "/status"}}, {"uri": {"prefix": "/API/v1/"}, "ignoreUriCase": true}],
         "rewrite": {"uri": "/v2/"},
         "route": [{"destination": {"host": "httpbin", "port": {"number": 8000}}}]},
        {"match": [{"uri": {"exact": "/old"}}], "rewrite": {"uri": "/new", "authority": "new.internal"},
         "route": [{"destination": {"host": "httpbin"}}]},
        {"match": [{"uri": {"regex": "/users/[0-9]+/profile"}}],
         "rewrite": {"uriRegexRewrite": {"match": "^/users/([0-9]+)/profile$", "rewrite": "/profiles/\\1"}},
         "route": [{"destination": {"host": "httpbin"}}]}]}"#,
    );
    let mut rng = Rng::with_seed(9);
    let mut path_for = |path: &str| {
        let routed = forwarded(plan.decide(&mut request("httpbin.example.com", path), &mut rng));
        (
            set_value(&routed, ":path"),
            set_value(&routed, "x-envoy-original-path"),
            set_value(&routed, ":authority"),
        )
    };
    assert_eq!(
        path_for("/status/418?x=1"),
        (
            Some("/v2//418?x=1".into()),
            Some("/status/418?x=1".into()),
            None
        )
    );
    assert_eq!(path_for("/api/V1/users").0.as_deref(), Some("/v2/users"));
    assert_eq!(
        path_for("/old?q=2"),
        (
            Some("/new?q=2".into()),
            Some("/old?q=2".into()),
            Some("new.internal".into())
        )
    );
    assert_eq!(
        path_for("/users/42/profile?full").0.as_deref(),
        Some("/profiles/42?full")
    );
}

#[wasm_bindgen_test(unsupported = test)]
fn redirects_build_the_location_envoy_would() {
    let plan = plan(
        r#"{"hosts": ["*"], "http": [
        {"match": [{"uri": {"exact": "/v1/getProductRatings"}}],
         "redirect": {"uri": "/v1/bookRatings", "authority": "newratings.default.svc.cluster.local"}},
        {"match": [{"uri": {"prefix": "/old/"}}],
         "redirect": {"prefixRewrite": "/new/", "redirectCode": 308, "scheme": "https", "derivePort": "FROM_PROTOCOL_DEFAULT"}},
        {"match": [{"uri": {"prefix": "/port"}}], "redirect": {"port": 8443},
         "headers": {"response": {"set": {"cache-control": "no-store"}}}}]}"#,
    );
    let mut rng = Rng::with_seed(10);
    let r = answered(plan.decide(
        &mut request("ratings:9080", "/v1/getProductRatings?id=1"),
        &mut rng,
    ));
    assert_eq!((r.kind, r.status), (LocalKind::Redirect, 301));
    assert_eq!(
        header(&r, "location"),
        Some("http://newratings.default.svc.cluster.local/v1/bookRatings?id=1")
    );
    let r = answered(plan.decide(&mut request("shop:8080", "/old/cart?x"), &mut rng));
    assert_eq!(r.status, 308);
    assert_eq!(header(&r, "location"), Some("https://shop/new/cart?x"));
    let r = answered(plan.decide(&mut request("shop", "/port/a"), &mut rng));
    assert_eq!(header(&r, "location"), Some("http://shop:8443/port/a"));
    assert_eq!(header(&r, "cache-control"), Some("no-store"));
}

#[wasm_bindgen_test(unsupported = test)]
fn https_redirect_sends_plain_http_to_https_only() {
    let plan = plan(
        r#"{"hosts": ["httpbin.example.com"], "meshwasm": {"router": {"httpsRedirect": true}},
        "http": [{"route": [{"destination": {"host": "httpbin", "port": {"number": 8000}}}]}]}"#,
    );
    let mut rng = Rng::with_seed(11);
    let r = answered(plan.decide(
        &mut request("httpbin.example.com:80", "/status/200"),
        &mut rng,
    ));
    assert_eq!((r.kind, r.status), (LocalKind::HttpsRedirect, 301));
    assert_eq!(
        header(&r, "location"),
        Some("https://httpbin.example.com/status/200")
    );
    // A client's own x-forwarded-proto does not skip it: a gateway Envoy
    // that trusts the client would have set :scheme from it too.
    let mut forged = request("httpbin.example.com", "/").with_header("x-forwarded-proto", "https");
    let r = answered(plan.decide(&mut forged, &mut rng));
    assert_eq!((r.kind, r.status), (LocalKind::HttpsRedirect, 301));
    // Over TLS, or behind a proxy Envoy trusts, :scheme is https.
    let mut tls = request("httpbin.example.com", "/").set_header(":scheme", "https");
    forwarded(plan.decide(&mut tls, &mut rng));
    // Other hosts are not this server's.
    assert_eq!(
        plan.decide(&mut request("other", "/"), &mut rng),
        Decision::Pass(Vec::new())
    );
}

#[wasm_bindgen_test(unsupported = test)]
fn direct_responses_carry_text_or_base64_bodies() {
    let plan = plan(
        r#"{"hosts": ["*"], "http": [
        {"match": [{"uri": {"exact": "/teapot"}}], "directResponse": {"status": 418, "body": {"string": "short and stout"}}},
        {"directResponse": {"status": 503, "body": {"bytes": "bWFpbnRlbmFuY2U="}}}]}"#,
    );
    let mut rng = Rng::with_seed(12);
    let r = answered(plan.decide(&mut request("a", "/teapot"), &mut rng));
    assert_eq!(
        (r.kind, r.status, r.body),
        (LocalKind::DirectResponse, 418, &b"short and stout"[..])
    );
    let r = answered(plan.decide(&mut request("a", "/"), &mut rng));
    assert_eq!((r.status, r.body), (503, &b"maintenance"[..]));
}

#[wasm_bindgen_test(unsupported = test)]
fn header_operations_apply_route_then_destination_and_on_responses() {
    let plan = plan(
        r#"{"hosts": ["*"], "http": [{"headers": {
            "request": {"set": {"X-Tier": "route"}, "add": {"x-trace": "a"}, "remove": ["x-debug"]},
            "response": {"set": {"x-served-by": "route"}, "remove": ["server"]}},
          "route": [{"destination": {"host": "web", "subset": "v1"},
                     "headers": {"request": {"set": {"x-tier": "v1"}}, "response": {"add": {"x-version": "v1"}}}}]}]}"#,
    );
    let mut rng = Rng::with_seed(13);
    let routed = forwarded(plan.decide(&mut request("a", "/"), &mut rng));
    let ops: Vec<_> = routed.request_edits.iter().skip(2).cloned().collect();
    assert_eq!(
        ops,
        [
            HeaderOp::Remove("x-debug"),
            HeaderOp::Set("x-tier", "route".into()),
            HeaderOp::Add("x-trace", "a".into()),
            HeaderOp::Set("x-tier", "v1".into()),
        ]
    );
    assert!(plan.edits_responses());
    assert_eq!(
        plan.response_edits(&routed.response),
        [
            HeaderOp::Remove("server"),
            HeaderOp::Set("x-served-by", "route".into()),
            HeaderOp::Add("x-version", "v1".into()),
        ]
    );
}

#[wasm_bindgen_test(unsupported = test)]
fn timeouts_and_retries_become_envoy_router_headers() {
    let plan = plan(
        r#"{"hosts": ["*"], "http": [
        {"match": [{"uri": {"prefix": "/slow"}}], "timeout": "0.5s",
         "route": [{"destination": {"host": "web"}}]},
        {"match": [{"uri": {"prefix": "/flaky"}}], "retries": {"attempts": 3, "perTryTimeout": "2s"},
         "route": [{"destination": {"host": "web"}}]},
        {"retries": {"attempts": 0}, "route": [{"destination": {"host": "web"}}]}]}"#,
    );
    let mut rng = Rng::with_seed(14);
    let slow = forwarded(plan.decide(&mut request("a", "/slow"), &mut rng));
    assert_eq!(
        set_value(&slow, "x-envoy-upstream-rq-timeout-ms").as_deref(),
        Some("500")
    );
    let flaky = forwarded(plan.decide(&mut request("a", "/flaky"), &mut rng));
    assert_eq!(
        set_value(&flaky, "x-envoy-max-retries").as_deref(),
        Some("3")
    );
    assert_eq!(
        set_value(&flaky, "x-envoy-retry-on").as_deref(),
        Some("connect-failure,refused-stream,unavailable,cancelled,retriable-status-codes")
    );
    assert_eq!(
        set_value(&flaky, "x-envoy-retriable-status-codes").as_deref(),
        Some("503")
    );
    assert_eq!(
        set_value(&flaky, "x-envoy-upstream-rq-per-try-timeout-ms").as_deref(),
        Some("2000")
    );
    let off = forwarded(plan.decide(&mut request("a", "/"), &mut rng));
    assert_eq!(set_value(&off, "x-envoy-max-retries").as_deref(), Some("0"));
    assert_eq!(set_value(&off, "x-envoy-retry-on"), None);
}

#[wasm_bindgen_test(unsupported = test)]
fn mirrors_follow_their_percentages() {
    let plan = plan(
        r#"{"hosts": ["httpbin"], "http": [
        {"match": [{"uri": {"prefix": "/half"}}],
         "mirrors": [{"destination": {"host": "httpbin", "subset": "v2"}, "percentage": {"value": 50}},
                     {"destination": {"host": "audit"}}],
         "route": [{"destination": {"host": "httpbin", "subset": "v1"}}]},
        {"route": [{"destination": {"host": "httpbin", "subset": "v1"}, "weight": 100}],
         "mirror": {"host": "httpbin", "subset": "v2"}, "mirrorPercentage": {"value": 100.0}}]}"#,
    );
    let mut rng = Rng::with_seed(15);
    let all = forwarded(plan.decide(&mut request("httpbin", "/get"), &mut rng));
    assert_eq!(all.mirrors, ["outbound||v2|httpbin"]);
    let mut halves = 0;
    for _ in 0..10_000 {
        let routed = forwarded(plan.decide(&mut request("httpbin", "/half"), &mut rng));
        assert!(routed.mirrors.contains(&"outbound|||audit"));
        halves += u32::from(routed.mirrors.contains(&"outbound||v2|httpbin"));
    }
    assert!(within_bounds(halves, 10_000, 0.5), "{halves}");
}

#[wasm_bindgen_test(unsupported = test)]
fn cors_answers_preflights_and_marks_allowed_responses() {
    let plan = plan(
        r#"{"hosts": ["*"], "http": [{"corsPolicy": {
            "allowOrigins": [{"exact": "https://shop.example.com"}, {"regex": "https://.*\\.dev\\.example\\.com"}],
            "allowMethods": ["GET", "POST"], "allowHeaders": ["x-token"], "exposeHeaders": ["x-version"],
            "maxAge": "24h", "allowCredentials": true},
          "route": [{"destination": {"host": "web"}}]}]}"#,
    );
    let mut rng = Rng::with_seed(16);
    let preflight = |origin: &str| {
        request("a", "/cart")
            .set_header(":method", "OPTIONS")
            .with_header("origin", origin)
            .with_header("access-control-request-method", "POST")
    };
    let r = answered(plan.decide(&mut preflight("https://shop.example.com"), &mut rng));
    assert_eq!((r.kind, r.status), (LocalKind::CorsPreflight, 200));
    assert_eq!(
        header(&r, "access-control-allow-origin"),
        Some("https://shop.example.com")
    );
    assert_eq!(header(&r, "access-control-allow-methods"), Some("GET,POST"));
    assert_eq!(header(&r, "access-control-max-age"), Some("86400"));
    assert_eq!(header(&r, "access-control-allow-credentials"), Some("true"));
    // Unmatched origins' preflights are forwarded (Istio's default).
    forwarded(plan.decide(&mut preflight("https://evil.example.net"), &mut rng));
    let simple = forwarded(plan.decide(
        &mut request("a", "/").with_header("origin", "https://a.dev.example.com"),
        &mut rng,
    ));
    let edits = plan.response_edits(&simple.response);
    assert!(edits.contains(&HeaderOp::Set(
        "access-control-allow-origin",
        "https://a.dev.example.com".into()
    )));
    assert!(edits.contains(&HeaderOp::Set(
        "access-control-expose-headers",
        "x-version".into()
    )));
    let plain = forwarded(plan.decide(&mut request("a", "/"), &mut rng));
    assert!(plan.response_edits(&plain.response).is_empty());
}

/// Two VirtualServices in one configuration, as a sidecar holds them: each
/// request is routed by the spec whose hosts name it most specifically.
#[wasm_bindgen_test(unsupported = test)]
fn a_list_of_virtual_services_routes_each_host_by_its_own_spec() {
    let plan = plan(
        r#"{"virtualServices": [
      {"hosts": ["*"], "http": [{"route": [{"destination": {"host": "web", "subset": "v1"}}]}]},
      {"hosts": ["reviews"], "http": [
        {"match": [{"headers": {"end-user": {"exact": "jason"}}}],
         "route": [{"destination": {"host": "reviews", "subset": "v2"}}]},
        {"route": [{"destination": {"host": "reviews", "subset": "v1"}}]}]},
      {"hosts": ["*.example.com"], "http": [{"route": [{"destination": {"host": "shop", "subset": "v3"}}]}]}
    ]}"#,
    );
    let mut rng = Rng::with_seed(1);
    let cluster = |req: &mut meshwasm_core::request::StaticRequest, rng: &mut Rng| {
        let routed = forwarded(plan.decide(req, rng));
        (
            routed.service,
            set_value(&routed, "x-meshwasm-cluster").unwrap(),
        )
    };
    let mut jason = request("reviews", "/").with_header("end-user", "jason");
    assert_eq!(
        cluster(&mut jason, &mut rng),
        (1, "outbound||v2|reviews".into())
    );
    assert_eq!(
        cluster(&mut request("reviews:9080", "/"), &mut rng),
        (1, "outbound||v1|reviews".into())
    );
    assert_eq!(
        cluster(&mut request("shop.example.com", "/"), &mut rng),
        (2, "outbound||v3|shop".into())
    );
    // `*` is the least specific: only authorities no other spec names use it.
    assert_eq!(
        cluster(&mut request("ratings", "/"), &mut rng),
        (0, "outbound||v1|web".into())
    );
}

#[wasm_bindgen_test(unsupported = test)]
fn a_list_strips_client_routing_headers_when_no_spec_names_the_host() {
    let plan = plan(
        r#"{"virtualServices": [{"hosts": ["ratings"], "http": [{"route": [{"destination": {"host": "ratings"}}]}]},
            {"hosts": ["details"], "meshwasm": {"router": {"clusterHeader": "x-pick"}},
             "http": [{"route": [{"destination": {"host": "details"}}]}]}]}"#,
    );
    let mut req = request("reviews", "/")
        .with_header("x-meshwasm-cluster", "admin")
        .with_header("x-pick", "admin");
    let Decision::Pass(edits) = plan.decide(&mut req, &mut Rng::with_seed(1)) else {
        panic!("no spec names reviews");
    };
    assert_eq!(
        edits,
        [
            HeaderOp::Remove("x-meshwasm-cluster"),
            HeaderOp::Remove("x-pick")
        ]
    );
}

#[wasm_bindgen_test(unsupported = test)]
fn errors_in_a_list_name_the_spec_by_index() {
    let err = RouterPlan::from_json(
        br#"{"virtualServices": [{"hosts": ["a"], "http": [{"route": [{"destination": {"host": "a"}}]}]},
             {"hosts": ["b"], "http": [{"route": [{"destination": {"host": "b", "subset": "v1"}, "weight": 0},
                                                   {"destination": {"host": "b", "subset": "v2"}, "weight": 0}]}]}]}"#,
    )
    .unwrap_err();
    assert!(
        err.path.starts_with("virtualServices[1].http[0].route"),
        "{err}"
    );
    let err = RouterPlan::from_json(br#"{"virtualServices": []}"#).unwrap_err();
    assert!(err.to_string().contains("is empty"), "{err}");
}
