//! Istio's request matching rules.

use crate::request;
use meshwasm_core::hosts::HostMatcher;
use meshwasm_core::request_match::RequestMatcher;
use meshwasm_core::route_table::RouteTable;
use meshwasm_core::virtual_service::{HttpMatchRequest, VirtualService};
use wasm_bindgen_test::wasm_bindgen_test;

fn matcher(json: &str) -> RequestMatcher {
    let m: HttpMatchRequest = serde_json::from_str(json).unwrap();
    RequestMatcher::compile(&m, &mut Vec::new()).unwrap()
}

#[wasm_bindgen_test(unsupported = test)]
fn uri_exact_prefix_regex_and_query_strings() {
    let exact = matcher(r#"{"uri": {"exact": "/status"}}"#);
    assert!(
        exact.matches(&mut request("a", "/status?x=1")),
        "exact ignores the query"
    );
    assert!(!exact.matches(&mut request("a", "/status/200")));
    let prefix = matcher(r#"{"uri": {"prefix": "/delay"}}"#);
    assert!(prefix.matches(&mut request("a", "/delay/1")));
    assert!(!prefix.matches(&mut request("a", "/Delay/1")));
    let regex = matcher(r#"{"uri": {"regex": "/status/[0-9]{3}"}}"#);
    assert!(regex.matches(&mut request("a", "/status/418?q")));
    assert!(
        !regex.matches(&mut request("a", "/status/4180")),
        "regex must match the whole path"
    );
}

#[wasm_bindgen_test(unsupported = test)]
fn ignore_uri_case_applies_to_exact_and_prefix_only() {
    let prefix = matcher(r#"{"uri": {"prefix": "/Reviews"}, "ignoreUriCase": true}"#);
    assert!(prefix.matches(&mut request("a", "/REVIEWS/2")));
    let exact = matcher(r#"{"uri": {"exact": "/a"}, "ignoreUriCase": true}"#);
    assert!(exact.matches(&mut request("a", "/A")));
    let regex = matcher(r#"{"uri": {"regex": "/a"}, "ignoreUriCase": true}"#);
    assert!(
        !regex.matches(&mut request("a", "/A")),
        "Istio ignores case for exact and prefix only"
    );
}

#[wasm_bindgen_test(unsupported = test)]
fn headers_presence_values_and_repeats() {
    let present = matcher(r#"{"headers": {"x-canary": {}}}"#);
    assert!(present.matches(&mut request("a", "/").with_header("x-canary", "")));
    assert!(!present.matches(&mut request("a", "/")));
    let upper = matcher(r#"{"headers": {"End-User": {"exact": "jason"}}}"#);
    assert!(upper.matches(&mut request("a", "/").with_header("end-user", "jason")));
    let joined = matcher(r#"{"headers": {"x-v": {"exact": "1,2"}}}"#);
    assert!(
        joined.matches(
            &mut request("a", "/")
                .with_header("x-v", "1")
                .with_header("x-v", "2")
        )
    );
    let cookie = matcher(r#"{"headers": {"cookie": {"exact": "user=dev-123"}}}"#);
    assert!(cookie.matches(&mut request("a", "/").with_header("cookie", "user=dev-123")));
    assert!(!cookie.matches(&mut request("a", "/").with_header("cookie", "user=dev-1234")));
}

#[wasm_bindgen_test(unsupported = test)]
fn without_headers_inverts_and_absent_headers_pass() {
    let m = matcher(r#"{"withoutHeaders": {"x-debug": {"exact": "1"}}}"#);
    assert!(!m.matches(&mut request("a", "/").with_header("x-debug", "1")));
    assert!(m.matches(&mut request("a", "/").with_header("x-debug", "2")));
    assert!(m.matches(&mut request("a", "/")));
    let absent = matcher(r#"{"withoutHeaders": {"x-debug": {}}}"#);
    assert!(!absent.matches(&mut request("a", "/").with_header("x-debug", "")));
}

#[wasm_bindgen_test(unsupported = test)]
fn query_params_method_scheme_authority_port_all_and() {
    let m = matcher(
        r#"{"queryParams": {"v": {"exact": "2"}, "debug": {"exact": ""}}, "method": {"exact": "GET"},
            "scheme": {"exact": "http"}, "authority": {"prefix": "web"}, "port": 8080}"#,
    );
    let good = || request("web.example", "/x?debug&v=2").with_port(8080);
    assert!(m.matches(&mut good()));
    assert!(!m.matches(&mut good().with_port(9090)));
    assert!(!m.matches(&mut request("web.example", "/x?debug&v=3").with_port(8080)));
    assert!(!m.matches(&mut request("web.example", "/x?v=2").with_port(8080)));
    assert!(!m.matches(&mut good().set_header(":method", "POST")));
    assert!(!m.matches(&mut good().set_header(":authority", "api.example")));
    let prefix = matcher(r#"{"queryParams": {"key": {"prefix": "ab"}}}"#);
    assert!(prefix.matches(&mut request("a", "/?key=abx")));
}

#[wasm_bindgen_test(unsupported = test)]
fn hosts_follow_istio_naming() {
    let hosts = HostMatcher::compile(&[
        "reviews".into(),
        "reviews.prod.svc.cluster.local".into(),
        "*.bookinfo.com".into(),
        "httpbin.example.com".into(),
    ])
    .unwrap();
    for yes in [
        "reviews",
        "reviews:9080",
        "Reviews.default",
        "reviews.default.svc.cluster.local",
        "reviews.prod.svc",
        "uk.bookinfo.com:443",
        "httpbin.example.com",
    ] {
        assert!(hosts.matches(yes), "{yes}");
    }
    for no in [
        "ratings",
        "reviewsx",
        "bookinfo.com",
        "httpbin.example.com.evil",
        "reviews.a.b.c",
    ] {
        assert!(!hosts.matches(no), "{no}");
    }
    let ip = HostMatcher::compile(&["10.0.0.1".into()]).unwrap();
    assert!(ip.matches("10.0.0.1:80"));
}

#[wasm_bindgen_test(unsupported = test)]
fn first_matching_route_wins_and_match_blocks_are_ored() {
    let vs = VirtualService::from_json(
        br#"{"hosts": ["httpbin.example.com"], "http": [
            {"name": "exposed", "match": [{"uri": {"prefix": "/status"}}, {"uri": {"prefix": "/delay"}}]},
            {"name": "later", "match": [{"uri": {"prefix": "/status/5"}}]},
            {"name": "rest"}]}"#,
    )
    .unwrap();
    let table = RouteTable::compile(&vs, &mut Vec::new(), |_, r, _| Ok(r.name.clone())).unwrap();
    let pick = |path: &str| {
        table
            .select(&mut request("httpbin.example.com", path))
            .map(|r| r.index)
    };
    assert_eq!(pick("/status/500"), Some(0));
    assert_eq!(pick("/delay/1"), Some(0));
    assert_eq!(pick("/headers"), Some(2));
    assert!(
        table
            .select(&mut request("other.example.com", "/status/1"))
            .is_none(),
        "hosts gate the table"
    );
}
