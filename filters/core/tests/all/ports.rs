//! The ports every filter builds on: configuration documents, metrics with
//! labels, and Envoy's property encodings.

use crate::request;
use meshwasm_core::config::{Document, parse};
use meshwasm_core::header_ops::HeaderOp;
use meshwasm_core::metrics::{MetricHost, MetricKind, MetricRef, MetricSpec, MetricTable};
use meshwasm_core::percent::Rng;
use meshwasm_core::plan::Plan;
use meshwasm_core::properties::{
    Properties, PropertyValue, StaticProperties, attributes, node_metadata,
};
use meshwasm_core::router::{Decision, LocalKind, RouterPlan, metric};
use std::time::{Duration, SystemTime, UNIX_EPOCH};
use wasm_bindgen_test::wasm_bindgen_test;

/// A host that keeps every defined metric by name, as Envoy does (the same
/// name gives the same id).
#[derive(Default)]
struct Stats {
    defined: Vec<(MetricKind, String)>,
    values: Vec<i64>,
    recorded: Vec<Vec<u64>>,
    refuse: bool,
}

impl Stats {
    fn value(&self, name: &str) -> Option<i64> {
        let id = self.defined.iter().position(|(_, n)| n == name)?;
        Some(self.values[id])
    }
}

impl MetricHost for Stats {
    fn define(&mut self, kind: MetricKind, name: &str) -> Option<u32> {
        if self.refuse {
            return None;
        }
        if let Some(id) = self.defined.iter().position(|(_, n)| n == name) {
            return Some(id as u32);
        }
        self.defined.push((kind, name.to_owned()));
        self.values.push(0);
        self.recorded.push(Vec::new());
        Some(self.defined.len() as u32 - 1)
    }
    fn increment(&mut self, id: u32, offset: i64) {
        self.values[id as usize] += offset;
    }
    fn record(&mut self, id: u32, value: u64) {
        self.recorded[id as usize].push(value);
    }
}

#[wasm_bindgen_test(unsupported = test)]
fn label_free_metrics_are_defined_at_once_and_labelled_series_on_first_use() {
    let mut stats = Stats::default();
    let specs = vec![
        MetricSpec::counter("requests"),
        MetricSpec::histogram("duration").with_labels(["reporter", "response_code"]),
        MetricSpec::gauge("active"),
    ];
    let mut table = MetricTable::define(specs, &mut stats);
    assert_eq!(
        stats.defined,
        [
            (MetricKind::Counter, "requests".to_owned()),
            (MetricKind::Gauge, "active".to_owned())
        ]
    );
    table.record_series(&mut stats, MetricRef(1), &["destination", "200"], 12);
    table.record_series(&mut stats, MetricRef(1), &["destination", "200"], 30);
    table.record_series(&mut stats, MetricRef(1), &["destination", "503"], 1);
    table.add(&mut stats, MetricRef(2), 2);
    table.add(&mut stats, MetricRef(2), -1);
    let series = "reporter=.=destination;.;response_code=.=200;.;duration";
    let id = stats.defined.iter().position(|(_, n)| n == series).unwrap();
    assert_eq!(stats.defined[id].0, MetricKind::Histogram);
    assert_eq!(stats.recorded[id], [12, 30]);
    assert_eq!(stats.defined.len(), 4);
    assert_eq!(stats.value("active"), Some(1));
}

#[wasm_bindgen_test(unsupported = test)]
fn a_full_family_sends_new_series_to_other_and_counts_them() {
    let mut stats = Stats::default();
    let spec = MetricSpec::counter("by_tenant")
        .with_labels(["tenant"])
        .with_max_series(3);
    let mut table = MetricTable::define(vec![spec], &mut stats);
    for i in 0..100 {
        table.add_series(&mut stats, MetricRef(0), &[&format!("t{}", i % 10)], 1);
    }
    // t0, t1 and t2 keep their series; the other 70 updates are `other`.
    assert_eq!(stats.value("tenant=.=t0;.;by_tenant"), Some(10));
    assert_eq!(stats.value("tenant=.=t3;.;by_tenant"), None);
    assert_eq!(stats.value("tenant=.=other;.;by_tenant"), Some(70));
    assert_eq!(table.overflowed(MetricRef(0)), 70);
    assert_eq!(stats.defined.len(), 4);
}

#[wasm_bindgen_test(unsupported = test)]
fn label_values_cannot_end_their_label_early_nor_collide() {
    let spec = MetricSpec::counter("m").with_labels(["a", "b"]);
    assert_eq!(
        spec.series_name(&["x;.;b=.=y", ""]),
        "a=.=x_._b=.=y;.;b=.=;.;m"
    );
    let mut stats = Stats::default();
    let mut table = MetricTable::define(vec![spec], &mut stats);
    table.add_series(&mut stats, MetricRef(0), &["ab", ""], 1);
    table.add_series(&mut stats, MetricRef(0), &["a", "b"], 1);
    assert_eq!(stats.value("a=.=ab;.;b=.=;.;m"), Some(1));
    assert_eq!(stats.value("a=.=a;.;b=.=b;.;m"), Some(1));
}

#[wasm_bindgen_test(unsupported = test)]
fn a_host_that_refuses_metrics_loses_the_updates_and_nothing_else() {
    let mut stats = Stats {
        refuse: true,
        ..Stats::default()
    };
    let specs = vec![
        MetricSpec::counter("requests"),
        MetricSpec::counter("l").with_labels(["x"]),
    ];
    let mut table = MetricTable::define(specs, &mut stats);
    table.add(&mut stats, MetricRef(0), 1);
    table.add_series(&mut stats, MetricRef(1), &["v"], 1);
    table.add(&mut stats, MetricRef(7), 1);
    // A labelled metric is not updated without its labels.
    table.add(&mut stats, MetricRef(1), 1);
    assert!(stats.defined.is_empty());
}

#[wasm_bindgen_test(unsupported = test)]
fn the_router_counts_each_destination_under_its_own_name() {
    let plan = RouterPlan::from_json(
        br#"{"virtualServices": [
        {"hosts": ["web"], "http": [
          {"match": [{"uri": {"prefix": "/old"}}], "redirect": {"uri": "/new"}},
          {"route": [{"destination": {"host": "web", "subset": "v1"}, "weight": 50},
                     {"destination": {"host": "web", "subset": "v2"}, "weight": 50}]}]},
        {"hosts": ["ratings"], "http": [
          {"route": [{"destination": {"host": "ratings", "subset": "v1"}}]}]}]}"#,
    )
    .unwrap();
    let specs = plan.metrics();
    let names: Vec<&str> = specs.iter().map(MetricSpec::name).collect();
    assert_eq!(names[metric::UNMATCHED.0], "meshwasm.router.unmatched");
    assert_eq!(
        names[metric::MIRRORS_SKIPPED.0],
        "meshwasm.router.mirrors_skipped"
    );
    let mut rng = Rng::with_seed(7);
    for (authority, cluster) in [
        ("ratings", "outbound||v1|ratings"),
        ("web", "outbound||v1|web"),
        ("web", "outbound||v2|web"),
    ] {
        let routed = (0..64)
            .find_map(
                |_| match plan.decide(&mut request(authority, "/"), &mut rng) {
                    Decision::Forward(r)
                        if r.request_edits[0]
                            == HeaderOp::Set("x-meshwasm-cluster", cluster.into()) =>
                    {
                        Some(r)
                    }
                    _ => None,
                },
            )
            .unwrap();
        let counter = plan.routed_metric(&routed).unwrap();
        assert_eq!(
            names[counter.0],
            format!("meshwasm.router.routed.{cluster}")
        );
    }
    let Decision::Respond(redirect) = plan.decide(&mut request("web", "/old"), &mut rng) else {
        panic!("no redirect");
    };
    assert_eq!(redirect.kind, LocalKind::Redirect);
    assert_eq!(names[redirect.kind.metric().0], "meshwasm.router.redirects");
}

#[wasm_bindgen_test(unsupported = test)]
fn envoy_encodings_round_trip_and_refuse_other_lengths() {
    assert_eq!(i64::decode(&(-5i64).encode()), Some(-5));
    assert_eq!(u64::decode(&[0xff; 8]), Some(u64::MAX));
    assert_eq!(i64::decode(&[1, 0, 0, 0]), None);
    assert_eq!(bool::decode(&[2]), None);
    assert_eq!(String::decode(&[0xff, 0xfe]), None);
    let took = Duration::from_millis(1234);
    assert_eq!(Duration::decode(&took.encode()), Some(took));
    assert_eq!(Duration::decode(&(-1i64).encode()), None);
    let at = UNIX_EPOCH + Duration::from_secs(1_764_000_000);
    assert_eq!(SystemTime::decode(&at.encode()), Some(at));
}

#[wasm_bindgen_test(unsupported = test)]
fn attributes_read_their_type_or_nothing() {
    let mut props = StaticProperties::default()
        .with(attributes::RESPONSE_CODE, 503)
        .with(attributes::CONNECTION_MTLS, true)
        .with(attributes::REQUEST_DURATION, Duration::from_micros(2500))
        .with_path(&node_metadata("NAMESPACE"), b"shop")
        // A string where Envoy would put 8 bytes: read as absent, not as garbage.
        .with_path(attributes::DESTINATION_PORT.path(), b"9080");
    assert_eq!(attributes::RESPONSE_CODE.read(&mut props), Some(503));
    assert_eq!(attributes::CONNECTION_MTLS.read(&mut props), Some(true));
    assert_eq!(
        attributes::REQUEST_DURATION.read(&mut props),
        Some(Duration::from_micros(2500))
    );
    assert_eq!(attributes::DESTINATION_PORT.read(&mut props), None);
    assert_eq!(attributes::SOURCE_ADDRESS.read(&mut props), None);
    assert_eq!(
        props.property(&node_metadata("NAMESPACE")),
        Some(b"shop".to_vec())
    );
    assert_eq!(
        attributes::URI_SAN_PEER_CERTIFICATE.name(),
        "connection.uri_san_peer_certificate"
    );
}

#[derive(Debug, serde::Deserialize)]
#[serde(rename_all = "camelCase", deny_unknown_fields)]
#[allow(dead_code)]
struct Policy {
    action: String,
    rules: Vec<Rule>,
}

#[derive(Debug, serde::Deserialize)]
#[serde(rename_all = "camelCase", deny_unknown_fields)]
#[allow(dead_code)]
struct Rule {
    to: Vec<String>,
}

const POLICY: Document = Document {
    name: "an AuthorizationPolicy spec",
    example: r#"{"action": "DENY", "rules": [...]}"#,
    list_key: None,
};

#[wasm_bindgen_test(unsupported = test)]
fn any_document_gets_errors_with_the_field_path_and_line() {
    let err = parse::<Policy>(
        b"{\n  \"action\": \"DENY\",\n  \"rules\": [{\"to\": []}, {\"too\": []}]\n}",
        POLICY,
    )
    .unwrap_err();
    assert_eq!(err.path, "rules[1].too");
    assert_eq!(
        err.to_string(),
        "rules[1].too: unknown field `too`, expected `to` (line 3, column 30)"
    );
    let err = parse::<Policy>(br#"{"action": "DENY", "rules": []} x"#, POLICY).unwrap_err();
    assert_eq!(
        err.to_string(),
        "configuration: trailing characters after the JSON document (line 1, column 33)"
    );
    let err = parse::<Policy>(b"", POLICY).unwrap_err();
    assert_eq!(
        err.to_string(),
        r#"configuration: is empty; expected an AuthorizationPolicy spec such as {"action": "DENY", "rules": [...]}"#
    );
}
