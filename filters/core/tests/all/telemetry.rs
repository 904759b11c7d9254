//! The telemetry plan: a Telemetry spec read with paths in every error,
//! and the series each request updates, with Istio's labels and the
//! spec's overrides.

use meshwasm_core::plan::Plan;
use meshwasm_core::telemetry::expr::{self, Attributes};
use meshwasm_core::telemetry::labels::{Facts, Protocol, Reporter};
use meshwasm_core::telemetry::peer::{Exchange, PeerCache};
use meshwasm_core::telemetry::workload::Workload;
use meshwasm_core::telemetry::{HttpMeasures, ISTIO_METRICS, TelemetryPlan};
use wasm_bindgen_test::wasm_bindgen_test;

struct NoAttrs;
impl Attributes for NoAttrs {
    fn request_header(&mut self, name: &str) -> Option<String> {
        (name == "x-tenant").then(|| "t".repeat(500))
    }
    fn response_header(&mut self, _: &str) -> Option<String> {
        None
    }
    fn peer(&mut self, _: expr::PeerSide) -> Option<&Workload> {
        None
    }
    fn property(&mut self, _: &[String]) -> Option<Vec<u8>> {
        None
    }
}

fn facts<'a>(local: &'a Workload, protocol: Protocol) -> Facts<'a> {
    Facts {
        reporter: Reporter::Destination,
        local,
        peer: None,
        local_principal: None,
        peer_principal: None,
        mtls: false,
        protocol,
        response_code: Some(200),
        grpc_status: Some(0),
        flags: 0,
        service: None,
    }
}

#[wasm_bindgen_test(unsupported = test)]
fn defaults_report_the_four_http_metrics_with_one_label_set() {
    let plan = TelemetryPlan::from_json(b"{}").unwrap();
    let local = Workload::default();
    let report = plan.http_report(
        &facts(&local, Protocol::Http),
        &HttpMeasures::default(),
        &mut NoAttrs,
    );
    assert_eq!(report.label_sets.len(), 1);
    assert_eq!(report.label_sets[0].len(), 25);
    let names: Vec<&str> = report
        .updates
        .iter()
        .map(|(m, _, _)| plan.metrics()[m.0].name().to_owned())
        .map(|n| ISTIO_METRICS.iter().find(|m| m.1 == n).map_or("?", |m| m.1))
        .collect();
    assert_eq!(
        names,
        [
            "istio_requests_total",
            "istio_request_duration_milliseconds",
            "istio_request_bytes",
            "istio_response_bytes"
        ]
    );
    let grpc = plan.http_report(
        &facts(&local, Protocol::Grpc),
        &HttpMeasures {
            request_messages: 2,
            response_messages: 3,
            ..HttpMeasures::default()
        },
        &mut NoAttrs,
    );
    assert_eq!(grpc.updates.len(), 6);
}

#[wasm_bindgen_test(unsupported = test)]
fn overrides_disable_and_add_capped_labels() {
    let plan = TelemetryPlan::from_json(
        br#"{"metrics": [{"overrides": [
            {"match": {"metric": "REQUEST_DURATION"}, "disabled": true},
            {"match": {"metric": "REQUEST_COUNT"},
             "tagOverrides": {"tenant": {"value": "request.headers['x-tenant']"}}}
        ]}], "meshwasm": {"maxLabelLength": 8}}"#,
    )
    .unwrap();
    let local = Workload::default();
    let report = plan.http_report(
        &facts(&local, Protocol::Http),
        &HttpMeasures::default(),
        &mut NoAttrs,
    );
    assert_eq!(report.updates.len(), 3, "duration is disabled");
    assert_eq!(
        report.label_sets.len(),
        2,
        "requests_total has its own labels"
    );
    assert_eq!(
        report.label_sets[0].last().map(String::as_str),
        Some("tttttttt")
    );
}

#[wasm_bindgen_test(unsupported = test)]
fn bad_fields_are_refused_by_path() {
    for (json, path) in [
        (
            r#"{"metrics": [{"overrides": [{"tagOverrides": {"bad-name": {"value": "'x'"}}}]}]}"#,
            "metrics[0].overrides[0].tagOverrides.bad-name",
        ),
        (
            r#"{"metrics": [{"overrides": [{"tagOverrides": {"x": {"operation": "REMOVE", "value": "'x'"}}}]}]}"#,
            "metrics[0].overrides[0].tagOverrides.x.value",
        ),
        (
            r#"{"metrics": [{"overrides": [{"tagOverrides": {"x": {"value": "node.id"}}}]}]}"#,
            "metrics[0].overrides[0].tagOverrides.x.value",
        ),
        (
            r#"{"metrics": [{"overrides": [{"match": {"mode": "BOTH"}}]}]}"#,
            "metrics[0].overrides[0].match.mode",
        ),
        (
            r#"{"accessLogging": [{"providers": [{"name": "stackdriver"}]}]}"#,
            "accessLogging[0].providers[0].name",
        ),
        (
            r#"{"accessLogging": [{"filter": {"expression": "response.code >"}}]}"#,
            "accessLogging[0].filter.expression",
        ),
        (
            r#"{"tracing": [{"randomSamplingPercentage": 101}]}"#,
            "tracing[0].randomSamplingPercentage",
        ),
        (
            r#"{"tracing": [{"customTags": {"a": {"literal": {"value": "x"}, "header": {"name": "y"}}}}]}"#,
            "tracing[0].customTags.a",
        ),
        (r#"{"meshwasm": {"filter": "tcp"}}"#, "meshwasm.filter"),
        (
            r#"{"meshwasm": {"otlp": {"cluster": "otel", "flushInterval": "soon"}}}"#,
            "meshwasm.otlp.flushInterval",
        ),
        (r#"{"metrics": [{"overides": []}]}"#, "metrics[0].overides"),
    ] {
        let err = TelemetryPlan::from_json(json.as_bytes()).unwrap_err();
        assert_eq!(err.path, path, "{json}: {err}");
    }
}

#[wasm_bindgen_test(unsupported = test)]
fn a_peer_is_decoded_once_and_read_back_as_sent() {
    let sent = Workload::from_fields(
        [
            ("NAME", "reviews-v2-5d8f"),
            ("NAMESPACE", "bookinfo"),
            ("WORKLOAD_NAME", "reviews-v2"),
            ("CLUSTER_ID", "east"),
        ],
        [
            ("app", "reviews"),
            ("version", "v2"),
            ("service.istio.io/canonical-revision", "2.1"),
        ],
    );
    let exchange = Exchange::new(
        &sent,
        "sidecar~10.1.2.3~reviews-v2-5d8f.bookinfo~bookinfo.svc.cluster.local",
    );
    let mut cache = PeerCache::new(8);
    let first = cache
        .peer(Some(exchange.id()), exchange.metadata())
        .unwrap();
    let again = cache.peer(Some(exchange.id()), "not even base64").unwrap();
    assert_eq!(*first, sent);
    assert!(
        std::rc::Rc::ptr_eq(&first, &again),
        "the second request hits the cache"
    );
    assert_eq!(first.canonical_service(), "reviews");
    assert_eq!(first.canonical_revision(), "2.1");
}

#[wasm_bindgen_test(unsupported = test)]
fn istio_docs_examples_compile() {
    // istio.io, "Customizing Istio Metrics with Telemetry API" and
    // "Telemetry API" access logging, as JSON.
    for spec in [
        r#"{"metrics": [{"providers": [{"name": "prometheus"}], "overrides": [{"match": {"metric": "REQUEST_COUNT", "mode": "CLIENT_AND_SERVER"}, "tagOverrides": {"request_host": {"value": "request.host"}, "destination_port": {"value": "string(destination.port)"}}}]}]}"#,
        r#"{"metrics": [{"overrides": [{"match": {"metric": "REQUEST_COUNT"}, "tagOverrides": {"request_protocol": {"operation": "REMOVE"}}}]}]}"#,
        r#"{"metrics": [{"overrides": [{"match": {"metric": "ALL_METRICS", "mode": "CLIENT"}, "disabled": true}]}]}"#,
        r#"{"accessLogging": [{"providers": [{"name": "envoy"}], "filter": {"expression": "response.code >= 400"}}]}"#,
        r#"{"tracing": [{"randomSamplingPercentage": 10.0, "customTags": {"my_tag_header": {"header": {"name": "host"}}, "my_tag_literal": {"literal": {"value": "foo"}}}}]}"#,
    ] {
        TelemetryPlan::from_json(spec.as_bytes()).unwrap_or_else(|e| panic!("{spec}: {e}"));
    }
}
