//! Bad configuration is refused with the field's path and the reason.

use meshwasm_core::fault::FaultPlan;
use meshwasm_core::plan::Plan;
use meshwasm_core::{ConfigError, ConfigErrorKind};
use wasm_bindgen_test::wasm_bindgen_test;

fn refuse(json: &str) -> ConfigError {
    match FaultPlan::from_json(json.as_bytes()) {
        Ok(_) => panic!("accepted: {json}"),
        Err(e) => e,
    }
}

fn with_fault(fault: &str) -> String {
    format!(
        r#"{{"hosts": ["ratings"], "http": [{{"fault": {fault}, "route": [{{"destination": {{"host": "ratings"}}}}]}}]}}"#
    )
}

#[wasm_bindgen_test(unsupported = test)]
fn invalid_json_names_line_and_column() {
    let err = refuse("{\"hosts\": [\"a\"],\n \"http\": [}");
    assert!(
        matches!(err.kind, ConfigErrorKind::Json { line: 2, .. }),
        "{err}"
    );
    assert_eq!(err.path, "http[0]");
}

#[wasm_bindgen_test(unsupported = test)]
fn empty_configuration_says_what_is_expected() {
    let err = refuse("  ");
    assert!(matches!(err.kind, ConfigErrorKind::Empty { .. }));
    assert_eq!(
        err.to_string(),
        r#"configuration: is empty; expected a VirtualService spec such as {"hosts": ["*"], "http": [...]}"#
    );
}

#[wasm_bindgen_test(unsupported = test)]
fn unknown_field_is_named_with_its_path() {
    let err = refuse(&with_fault(
        r#"{"abort": {"httpStatus": 500, "percentage": {"value": 5}, "percnt": 1}}"#,
    ));
    assert_eq!(err.path, "http[0].fault.abort.percnt");
    assert!(
        err.to_string()
            .contains("unknown field `percnt`, expected one of"),
        "{err}"
    );
}

#[wasm_bindgen_test(unsupported = test)]
fn a_whole_resource_gets_a_hint_to_pass_its_spec() {
    let err =
        refuse(r#"{"apiVersion": "networking.istio.io/v1", "kind": "VirtualService", "spec": {}}"#);
    assert!(err.to_string().contains("pass only its `spec`"), "{err}");
}

#[wasm_bindgen_test(unsupported = test)]
fn regex_that_does_not_compile() {
    let err = refuse(
        r#"{"hosts": ["*"], "http": [{"match": [{"headers": {"cookie": {"regex": "user=(jason"}}}]}]}"#,
    );
    assert_eq!(err.path, "http[0].match[0].headers.cookie.regex");
    assert!(
        matches!(&err.kind, ConfigErrorKind::InvalidRegex { pattern, .. } if pattern == "user=(jason")
    );
}

#[wasm_bindgen_test(unsupported = test)]
fn re2_syntax_this_engine_would_read_differently() {
    let err =
        refuse(r#"{"hosts": ["*"], "http": [{"match": [{"uri": {"regex": "(?i)/straße"}}]}]}"#);
    assert_eq!(err.path, "http[0].match[0].uri.regex");
    assert!(err.to_string().contains("folds ASCII only"), "{err}");
}

#[wasm_bindgen_test(unsupported = test)]
fn percentage_outside_0_to_100() {
    let err = refuse(&with_fault(
        r#"{"abort": {"httpStatus": 500, "percentage": {"value": 150}}}"#,
    ));
    assert_eq!(err.path, "http[0].fault.abort.percentage.value");
    assert_eq!(
        err.kind,
        ConfigErrorKind::PercentOutOfRange { value: 150.0 }
    );
    assert_eq!(
        err.to_string(),
        "http[0].fault.abort.percentage.value: 150 is outside 0..=100"
    );
    let err = refuse(&with_fault(
        r#"{"delay": {"fixedDelay": "1s", "percentage": {"value": -0.5}}}"#,
    ));
    assert_eq!(err.path, "http[0].fault.delay.percentage.value");
    let err = refuse(&with_fault(
        r#"{"delay": {"fixedDelay": "1s", "percent": 101}}"#,
    ));
    assert_eq!(err.path, "http[0].fault.delay.percent");
    let err = refuse(&with_fault(
        r#"{"abort": {"httpStatus": 500, "percent": -1}}"#,
    ));
    assert_eq!(
        err.to_string(),
        "http[0].fault.abort.percent: -1 is outside 0..=100"
    );
}

#[wasm_bindgen_test(unsupported = test)]
fn http_status_outside_200_to_599() {
    for status in [199, 600, -1, 70000] {
        let err = refuse(&with_fault(&format!(
            r#"{{"abort": {{"httpStatus": {status}, "percentage": {{"value": 1}}}}}}"#
        )));
        assert_eq!(err.path, "http[0].fault.abort.httpStatus");
        assert_eq!(
            err.kind,
            ConfigErrorKind::HttpStatusOutOfRange {
                status,
                min: 200,
                max: 599
            }
        );
    }
}

#[wasm_bindgen_test(unsupported = test)]
fn negative_or_unparsable_duration() {
    let err = refuse(&with_fault(
        r#"{"delay": {"fixedDelay": "-2s", "percentage": {"value": 1}}}"#,
    ));
    assert_eq!(err.path, "http[0].fault.delay.fixedDelay");
    assert!(
        err.to_string()
            .contains("negative duration \"-2s\" is not allowed"),
        "{err}"
    );
    let err = refuse(&with_fault(
        r#"{"delay": {"fixedDelay": "2", "percentage": {"value": 1}}}"#,
    ));
    assert!(err.to_string().contains("missing unit"), "{err}");
    let err = refuse(&with_fault(
        r#"{"delay": {"fixedDelay": "2 weeks", "percentage": {"value": 1}}}"#,
    ));
    assert!(err.to_string().contains("unknown unit"), "{err}");
    let err = refuse(&with_fault(
        r#"{"delay": {"fixedDelay": "500us", "percentage": {"value": 1}}}"#,
    ));
    assert!(
        matches!(err.kind, ConfigErrorKind::InvalidDuration { .. }),
        "{err}"
    );
    assert!(err.to_string().contains("1ms minimum"), "{err}");
}

#[wasm_bindgen_test(unsupported = test)]
fn grpc_status_by_istio_name_only() {
    let err = refuse(&with_fault(
        r#"{"abort": {"grpcStatus": "14", "percentage": {"value": 1}}}"#,
    ));
    assert_eq!(err.path, "http[0].fault.abort.grpcStatus");
    assert_eq!(
        err.kind,
        ConfigErrorKind::UnknownGrpcStatus { name: "14".into() }
    );
}

#[wasm_bindgen_test(unsupported = test)]
fn fault_kinds_istio_does_not_implement_are_refused_by_name() {
    let err = refuse(&with_fault(
        r#"{"abort": {"http2Error": "REFUSED_STREAM", "percentage": {"value": 1}}}"#,
    ));
    assert_eq!(err.path, "http[0].fault.abort.http2Error");
    assert!(matches!(err.kind, ConfigErrorKind::Unsupported { .. }));
    let err = refuse(&with_fault(
        r#"{"delay": {"exponentialDelay": "1s", "percentage": {"value": 1}}}"#,
    ));
    assert_eq!(err.path, "http[0].fault.delay.exponentialDelay");
    let err = refuse(&with_fault("{}"));
    assert_eq!(err.path, "http[0].fault");
    assert!(matches!(err.kind, ConfigErrorKind::Missing { .. }));
    let err = refuse(&with_fault(
        r#"{"abort": {"httpStatus": 500, "grpcStatus": "INTERNAL"}}"#,
    ));
    assert!(matches!(err.kind, ConfigErrorKind::Conflict { .. }));
}

#[wasm_bindgen_test(unsupported = test)]
fn workload_selectors_in_a_match_are_refused_not_ignored() {
    let err =
        refuse(r#"{"hosts": ["*"], "http": [{"match": [{"sourceLabels": {"app": "reviews"}}]}]}"#);
    assert_eq!(err.path, "http[0].match[0].sourceLabels");
    let err = refuse(r#"{"hosts": ["*"], "http": [{"match": [{}, {"gateways": ["mesh"]}]}]}"#);
    assert_eq!(err.path, "http[0].match[1].gateways");
}

#[wasm_bindgen_test(unsupported = test)]
fn hosts_are_required_and_checked() {
    // Without hosts, Istio takes a VirtualService for a delegate.
    let err = refuse(r#"{"http": []}"#);
    assert_eq!(err.path, "hosts");
    assert!(matches!(err.kind, ConfigErrorKind::Unsupported { .. }));
    assert!(
        err.to_string()
            .starts_with("hosts: is not supported: a VirtualService without hosts is a delegate"),
        "{err}"
    );
    let err = refuse(r#"{"hosts": ["ratings", "web*.com"]}"#);
    assert_eq!(err.path, "hosts[1]");
    let err = refuse(r#"{"hosts": ["http://ratings"]}"#);
    assert!(matches!(err.kind, ConfigErrorKind::InvalidHost { .. }));
}

#[wasm_bindgen_test(unsupported = test)]
fn extension_options_are_checked_too() {
    let err = refuse(
        r#"{"hosts": ["*"], "meshwasm": {"fault": {"headerFaults": {"abort": {"percentage": {"value": 101}}}}}}"#,
    );
    assert_eq!(
        err.path,
        "meshwasm.fault.headerFaults.abort.percentage.value"
    );
    let err = refuse(r#"{"hosts": ["*"], "meshwasm": {"fault": {"maxActiveFault": 3}}}"#);
    assert_eq!(err.path, "meshwasm.fault.maxActiveFault");
}

#[wasm_bindgen_test(unsupported = test)]
fn accepted_but_unusual_fields_leave_a_note() {
    let plan = FaultPlan::from_json(
        br#"{"hosts": ["*"], "gateways": ["gw"], "http": [
            {"match": [{"headers": {"uri": {"exact": "/x"}}}], "fault": {"abort": {"httpStatus": 503}}}]}"#,
    )
    .unwrap();
    let notes: Vec<String> = plan.notes().iter().map(ToString::to_string).collect();
    assert!(
        notes
            .iter()
            .any(|n| n.starts_with("gateways: not evaluated")),
        "{notes:?}"
    );
    assert!(
        notes
            .iter()
            .any(|n| n.starts_with("http[0].match[0].headers.uri: Istio ignores")),
        "{notes:?}"
    );
    assert!(
        notes
            .iter()
            .any(|n| n == "http[0].fault.abort: no percentage: as in Istio, no request is aborted"),
        "{notes:?}"
    );
}

fn refuse_route(json: &str) -> ConfigError {
    match meshwasm_core::router::RouterPlan::from_json(json.as_bytes()) {
        Ok(_) => panic!("accepted: {json}"),
        Err(e) => e,
    }
}

/// A one-route VirtualService for `web` with `route` spliced into the route.
fn web_route(route: &str) -> String {
    format!(r#"{{"hosts": ["web"], "http": [{{{route}}}]}}"#)
}

#[wasm_bindgen_test(unsupported = test)]
fn router_refuses_what_it_cannot_honour_by_path() {
    let dest = r#""route": [{"destination": {"host": "web"}}]"#;
    let cases = [
        (
            web_route(r#""delegate": {"name": "reviews"}"#),
            "http[0].delegate",
            "not supported: delegation",
        ),
        (
            web_route(&format!(r#""redirect": {{"uri": "/x"}}, {dest}"#)),
            "http[0]",
            "only one of route, redirect and directResponse",
        ),
        (
            web_route(r#""match": [{"uri": {"prefix": "/"}}]"#),
            "http[0]",
            "needs route, redirect or directResponse",
        ),
        (
            web_route(
                r#""route": [{"destination": {"host": "web", "subset": "v1"}, "weight": 0},
                             {"destination": {"host": "web", "subset": "v2"}, "weight": 0}]"#,
            ),
            "http[0].route",
            "sum to 0",
        ),
        (
            web_route(
                r#""route": [{"destination": {"host": "web"}, "weight": -5}, {"destination": {"host": "x"}, "weight": 5}]"#,
            ),
            "http[0].route",
            "weight -5 is negative",
        ),
        (
            web_route(r#""route": [{"destination": {"host": ""}}]"#),
            "http[0].route[0].destination.host",
            "needs a host",
        ),
        (
            web_route(r#""redirect": {"uri": "/x", "redirectCode": 305}"#),
            "http[0].redirect.redirectCode",
            "305 is not a redirect status",
        ),
        (
            web_route(&format!(
                r#""retries": {{"attempts": 2, "retryOn": "5xx,gateway-eror"}}, {dest}"#
            )),
            "http[0].retries.retryOn",
            "unknown retry condition \"gateway-eror\"",
        ),
        (
            web_route(&format!(
                r#""retries": {{"attempts": 2, "backoff": "1s"}}, {dest}"#
            )),
            "http[0].retries.backoff",
            "not supported",
        ),
        (
            web_route(&format!(
                r#""headers": {{"request": {{"set": {{"x-client": "%DOWNSTREAM_REMOTE_ADDRESS%"}}}}}}, {dest}"#
            )),
            "http[0].headers.request.set.x-client",
            "%FORMATTER%",
        ),
        (
            web_route(&format!(
                r#""headers": {{"request": {{"remove": ["x-meshwasm-cluster"]}}}}, {dest}"#
            )),
            "http[0].headers.request",
            "carries the router's decision",
        ),
        (
            web_route(&format!(
                r#""rewrite": {{"uriRegexRewrite": {{"match": "^/a/(.*)$", "rewrite": "/b/\\2"}}}}, {dest}"#
            )),
            "http[0].rewrite.uriRegexRewrite.rewrite",
            "capture group",
        ),
        (
            web_route(&format!(r#""mirrorPercentage": {{"value": 10}}, {dest}"#)),
            "http[0].mirrorPercentage",
            "needs a mirror",
        ),
        (
            web_route(r#""directResponse": {"status": 200, "body": {"bytes": "not base64!"}}"#),
            "http[0].directResponse.body.bytes",
            "not base64",
        ),
        (
            format!(
                r#"{{"hosts": ["web"], "meshwasm": {{"router": {{"sticky": {{"useSourceIp": true, "httpHeaderName": "x-user"}}}}}}, "http": [{{{dest}}}]}}"#
            ),
            "meshwasm.router.sticky",
            "only one of",
        ),
        (
            format!(
                r#"{{"hosts": ["web"], "meshwasm": {{"router": {{"clusterTemplate": "static"}}}}, "http": [{{{dest}}}]}}"#
            ),
            "meshwasm.router.clusterTemplate",
            "has no {host}",
        ),
    ];
    for (json, path, words) in cases {
        let err = refuse_route(&json);
        assert_eq!(err.path, path, "{err}");
        assert!(err.to_string().contains(words), "{err} lacks {words:?}");
    }
}

#[wasm_bindgen_test(unsupported = test)]
fn router_notes_the_fault_it_leaves_to_the_fault_filter() {
    let plan = meshwasm_core::router::RouterPlan::from_json(
        br#"{"hosts": ["ratings"], "http": [{"fault": {"abort": {"httpStatus": 500, "percentage": {"value": 100}}},
            "route": [{"destination": {"host": "ratings", "subset": "v1"}}]}]}"#,
    )
    .unwrap();
    let notes: Vec<String> = plan.notes().iter().map(ToString::to_string).collect();
    assert_eq!(
        notes,
        ["http[0].fault: applied by the meshwasm fault filter, not the router"]
    );
}
