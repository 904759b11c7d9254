//! The telemetry filter in sdk-host, each test in both modes: the built
//! `.wasm` on wasmtime, and this crate linked natively.
#![allow(clippy::unwrap_used, clippy::expect_used, clippy::panic)]

use meshwasm_core::header_map::serialize_pairs;
use sdk_host::{Host, HostBuilder, LogLevel, MetricValue, PeerType, PropertyValue, WasmModule};
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
    MODULE.get_or_init(|| WasmModule::from_file(meshwasm_artifacts::TELEMETRY_WASM).unwrap())
}

/// Node metadata as Envoy serves `xds.node.metadata`: a map whose
/// `LABELS` value is a map too.
fn node(workload: &str, namespace: &str, labels: &[(&str, &str)]) -> PropertyValue {
    let labels = serialize_pairs(labels.iter().copied());
    let pairs: Vec<(&[u8], &[u8])> = vec![
        (b"NAME", format!("{workload}-7f9c").leak().as_bytes()),
        (b"NAMESPACE", namespace.as_bytes()),
        (b"WORKLOAD_NAME", workload.as_bytes()),
        (b"CLUSTER_ID", b"Kubernetes"),
        (b"LABELS", &labels),
    ];
    PropertyValue::Bytes(serialize_pairs(pairs))
}

/// A host whose workload is `workload` and whose listener has `direction`
/// (1 inbound, 2 outbound).
fn start(mode: Mode, config: &Value, workload: &str, direction: i64) -> Host {
    start_with(mode, config, workload, direction, Host::builder())
}

fn start_with(
    mode: Mode,
    config: &Value,
    workload: &str,
    direction: i64,
    builder: HostBuilder,
) -> Host {
    let app = workload.split('-').next().unwrap();
    let builder = builder
        .plugin("telemetry", "telemetry", config.to_string())
        .property_path(
            vec!["xds".into(), "node".into(), "metadata".into()],
            node(workload, "shop", &[("app", app), ("version", "v1")]),
        )
        .property(
            "xds.node.id",
            format!("sidecar~10.0.0.1~{workload}.shop~shop.svc.cluster.local"),
        )
        .property("xds.listener_direction", PropertyValue::Int(direction));
    match mode {
        Mode::Wasm => builder.start(module()),
        Mode::Native => builder.start_native(sdk_host::native_module!(meshwasm_telemetry)),
    }
    .unwrap()
}

/// The series of `metric`, by their labels.
fn series(host: &Host, metric: &str) -> Vec<(BTreeMap<String, String>, MetricValue)> {
    host.proxy()
        .metrics()
        .into_iter()
        .filter_map(|(name, value)| {
            let labels = name.strip_suffix(metric)?;
            let labels = labels
                .split(";.;")
                .filter(|l| !l.is_empty())
                .map(|l| {
                    let (k, v) = l.split_once("=.=").unwrap();
                    (k.to_owned(), v.to_owned())
                })
                .collect();
            Some((labels, value))
        })
        .collect()
}

/// Headers as (name, value).
type Headers = Vec<(String, String)>;

/// One request through the filter, answered with `response`: the headers
/// the upstream got and those the client got.
fn exchange(
    host: &mut Host,
    request: &[(&str, &str)],
    response: &[(&str, &str)],
) -> (Headers, Headers) {
    let stream = host.new_http_stream().unwrap();
    let mut headers = vec![
        (":method", "GET"),
        (":path", "/ratings/1"),
        (":authority", "ratings:9080"),
        (":scheme", "http"),
    ];
    headers.extend_from_slice(request);
    host.send_request_headers(stream, &headers, true).unwrap();
    host.send_response_headers(stream, response, true).unwrap();
    let view = host.http(stream).unwrap();
    let forwarded = |map: Option<&sdk_host::HeaderMap>| {
        map.map(|m| {
            m.iter()
                .map(|(k, v)| (k.to_owned(), String::from_utf8_lossy(v).into_owned()))
                .collect()
        })
        .unwrap_or_default()
    };
    let sent = (
        forwarded(view.request_headers()),
        forwarded(view.response_headers()),
    );
    host.finish(stream).unwrap();
    sent
}

fn has(headers: &[(String, String)], name: &str) -> bool {
    headers.iter().any(|(k, _)| k == name)
}

fn value<'a>(headers: &'a [(String, String)], name: &str) -> &'a str {
    headers
        .iter()
        .find(|(k, _)| k == name)
        .map_or("", |(_, v)| v)
}

#[test]
fn two_sidecars_exchange_metadata_and_each_reports_the_other() {
    for mode in MODES {
        let mut client = start(mode, &json!({}), "productpage-v1", 2);
        let mut server = start(mode, &json!({}), "ratings-v1", 1);
        // The client's request leaves with the client's metadata...
        let (to_server, _) = exchange(&mut client, &[], &[(":status", "200")]);
        assert!(has(&to_server, "x-envoy-peer-metadata"), "{mode:?}");
        let metadata = value(&to_server, "x-envoy-peer-metadata").to_owned();
        let id = value(&to_server, "x-envoy-peer-metadata-id").to_owned();
        assert!(id.contains("productpage-v1"), "{id}");
        // ...which the server takes out before the application sees it,
        // answering with its own.
        let peer = [
            ("x-envoy-peer-metadata", metadata.as_str()),
            ("x-envoy-peer-metadata-id", id.as_str()),
        ];
        let (to_app, to_client) = exchange(&mut server, &peer, &[(":status", "200")]);
        assert!(
            !has(&to_app, "x-envoy-peer-metadata"),
            "{mode:?}: {to_app:?}"
        );
        assert!(!has(&to_app, "x-envoy-peer-metadata-id"));
        assert!(has(&to_client, "x-envoy-peer-metadata"));
        let requests = series(&server, "istio_requests_total");
        assert_eq!(requests.len(), 1, "{mode:?}: {requests:?}");
        let (labels, count) = &requests[0];
        assert_eq!(*count, MetricValue::Counter(1));
        assert_eq!(labels.len(), 25);
        for (label, want) in [
            ("reporter", "destination"),
            ("source_workload", "productpage-v1"),
            ("source_workload_namespace", "shop"),
            ("source_app", "productpage"),
            ("source_version", "v1"),
            ("source_canonical_service", "productpage"),
            ("source_canonical_revision", "v1"),
            ("source_cluster", "Kubernetes"),
            ("destination_workload", "ratings-v1"),
            ("destination_app", "ratings"),
            ("destination_service", "ratings:9080"),
            ("destination_service_namespace", "shop"),
            ("source_principal", "unknown"),
            ("request_protocol", "http"),
            ("response_code", "200"),
            ("response_flags", "-"),
            ("connection_security_policy", "none"),
            ("grpc_response_status", ""),
        ] {
            assert_eq!(labels[label], want, "{mode:?} {label}");
        }
        // The client reads the server's answer and reports it as the destination.
        let (_, to_client_app) = exchange(&mut client, &[], &to_client_pairs(&to_client));
        assert!(!has(&to_client_app, "x-envoy-peer-metadata"));
        let outbound = series(&client, "istio_requests_total");
        let known = outbound
            .iter()
            .find(|(l, _)| l["destination_workload"] == "ratings-v1")
            .unwrap_or_else(|| panic!("{mode:?}: {outbound:?}"));
        assert_eq!(known.0["reporter"], "source");
        assert_eq!(known.0["source_workload"], "productpage-v1");
        assert_eq!(known.0["connection_security_policy"], "unknown");
        assert_eq!(known.0["destination_canonical_revision"], "v1");
        let unknown = outbound
            .iter()
            .find(|(l, _)| l["destination_workload"] == "unknown")
            .unwrap();
        assert_eq!(unknown.0["destination_canonical_revision"], "latest");
    }
}

fn to_client_pairs(headers: &[(String, String)]) -> Vec<(&str, &str)> {
    headers
        .iter()
        .map(|(k, v)| (k.as_str(), v.as_str()))
        .collect()
}

#[test]
fn histograms_record_duration_and_sizes_and_the_server_only_answers_a_peer() {
    for mode in MODES {
        let mut server = start(mode, &json!({}), "ratings-v1", 1);
        let (_, to_client) = exchange(&mut server, &[], &[(":status", "404")]);
        assert!(!has(&to_client, "x-envoy-peer-metadata"), "{mode:?}");
        for metric in [
            "istio_request_duration_milliseconds",
            "istio_request_bytes",
            "istio_response_bytes",
        ] {
            let found = series(&server, metric);
            assert_eq!(found.len(), 1, "{mode:?} {metric}");
            assert_eq!(found[0].0["response_code"], "404");
            assert!(matches!(&found[0].1, MetricValue::Histogram(v) if v.len() == 1));
        }
    }
}

#[test]
fn trace_context_is_started_once_and_forwarded_unchanged() {
    for mode in MODES {
        let config = json!({"tracing": [{"randomSamplingPercentage": 100}]});
        let mut host = start(mode, &config, "ratings-v1", 1);
        let (sent, _) = exchange(&mut host, &[], &[(":status", "200")]);
        let id = value(&sent, "x-request-id");
        assert_eq!(id.len(), 36, "{mode:?}: {sent:?}");
        assert_eq!(&id[14..15], "4");
        let traceparent = value(&sent, "traceparent");
        assert!(
            traceparent.starts_with("00-") && traceparent.ends_with("-01"),
            "{traceparent}"
        );
        let arrived = [
            ("x-request-id", "given"),
            (
                "traceparent",
                "00-0af7651916cd43dd8448eb211c80319c-b7ad6b7169203331-01",
            ),
            ("tracestate", "congo=t61rcWkgMzE"),
        ];
        let (sent, _) = exchange(&mut host, &arrived, &[(":status", "200")]);
        for (name, want) in arrived {
            assert_eq!(value(&sent, name), want, "{mode:?} {name}");
        }
        let b3 = [("x-b3-traceid", "80f198ee56343ba864fe8b2a57d3eff7")];
        let (sent, _) = exchange(&mut host, &b3, &[(":status", "200")]);
        assert!(!has(&sent, "traceparent"), "B3 context is left as it came");
    }
}

#[test]
fn access_log_lines_are_istio_json_and_the_filter_picks_them() {
    for mode in MODES {
        let config = json!({"accessLogging": [{
            "providers": [{"name": "envoy"}],
            "filter": {"expression": "response.code >= 400"}
        }], "tracing": [{"customTags": {"team": {"literal": {"value": "ratings"}}}}]});
        let mut host = start(mode, &config, "ratings-v1", 1);
        exchange(
            &mut host,
            &[("user-agent", "curl/8")],
            &[(":status", "200")],
        );
        exchange(
            &mut host,
            &[("user-agent", "curl/8")],
            &[(":status", "503")],
        );
        let entries: Vec<Value> = host
            .log_lines(LogLevel::Info)
            .iter()
            .filter_map(|l| serde_json::from_str(l).ok())
            .collect();
        assert_eq!(
            entries.len(),
            1,
            "{mode:?}: {:?}",
            host.log_lines(LogLevel::Info)
        );
        let entry = &entries[0];
        assert_eq!(entry["response_code"], 503);
        assert_eq!(entry["method"], "GET");
        assert_eq!(entry["path"], "/ratings/1");
        assert_eq!(entry["authority"], "ratings:9080");
        assert_eq!(entry["user_agent"], "curl/8");
        assert_eq!(entry["response_flags"], "-");
        assert_eq!(entry["team"], "ratings");
        assert_eq!(entry["request_id"].as_str().map(str::len), Some(36));
        for key in [
            "start_time",
            "bytes_received",
            "bytes_sent",
            "duration",
            "upstream_cluster",
        ] {
            assert!(entry.get(key).is_some(), "{mode:?} {key}");
        }
    }
}

#[test]
fn tag_overrides_add_remove_and_cap_labels() {
    for mode in MODES {
        let config = json!({
            "metrics": [{"overrides": [{
                "match": {"metric": "REQUEST_COUNT", "mode": "SERVER"},
                "tagOverrides": {
                    "tenant": {"value": "request.headers['x-tenant']"},
                    "request_protocol": {"operation": "REMOVE"},
                }
            }]}],
            "meshwasm": {"maxLabelLength": 10, "maxSeries": 2}
        });
        let mut host = start(mode, &config, "ratings-v1", 1);
        for tenant in [
            "acme",
            "globex-corporation-international",
            "initech",
            "umbrella",
        ] {
            exchange(&mut host, &[("x-tenant", tenant)], &[(":status", "200")]);
        }
        let requests = series(&host, "istio_requests_total");
        let tenants: BTreeMap<&str, &MetricValue> = requests
            .iter()
            .map(|(l, v)| (l["tenant"].as_str(), v))
            .collect();
        assert_eq!(
            tenants,
            BTreeMap::from([
                ("acme", &MetricValue::Counter(1)),
                ("globex-cor", &MetricValue::Counter(1)),
                ("other", &MetricValue::Counter(2)),
            ]),
            "{mode:?}"
        );
        assert!(
            requests
                .iter()
                .all(|(l, _)| !l.contains_key("request_protocol"))
        );
        assert_eq!(host.counter("meshwasm.telemetry.series_overflow"), Some(2));
        // The other metrics keep Istio's labels.
        assert!(
            series(&host, "istio_request_bytes")[0]
                .0
                .contains_key("request_protocol")
        );
    }
}

#[test]
fn the_network_filter_reports_tcp_metrics() {
    for mode in MODES {
        let config = json!({"meshwasm": {"filter": "network"}});
        let mut host = start(mode, &config, "mongodb-v1", 1);
        let (conn, _) = host.new_tcp_stream().unwrap();
        host.send_downstream_data(conn, b"hello", false).unwrap();
        host.send_upstream_data(conn, b"world!!", false).unwrap();
        host.send_downstream_data(conn, b"bye", false).unwrap();
        host.close_tcp(conn, true, PeerType::Remote).unwrap();
        let total = |metric: &str| -> Vec<(BTreeMap<String, String>, MetricValue)> {
            series(&host, metric)
        };
        let received = total("istio_tcp_received_bytes_total");
        assert_eq!(received.len(), 1, "{mode:?}: {:?}", host.proxy().metrics());
        assert_eq!(received[0].1, MetricValue::Counter(8));
        assert_eq!(received[0].0.len(), 23);
        assert_eq!(received[0].0["request_protocol"], "tcp");
        assert_eq!(received[0].0["destination_workload"], "mongodb-v1");
        assert_eq!(
            total("istio_tcp_sent_bytes_total")[0].1,
            MetricValue::Counter(7)
        );
        assert_eq!(
            total("istio_tcp_connections_opened_total")[0].1,
            MetricValue::Counter(1)
        );
        assert_eq!(
            total("istio_tcp_connections_closed_total")[0].1,
            MetricValue::Counter(1)
        );
    }
}

#[test]
fn a_bad_telemetry_spec_is_refused_with_its_path() {
    for mode in MODES {
        let config = json!({"metrics": [{"overrides": [{"match": {"metric": "REQUEST_BYTES"}}]}]});
        let builder = Host::builder().plugin("telemetry", "telemetry", config.to_string());
        let result = match mode {
            Mode::Wasm => builder.start(module()),
            Mode::Native => builder.start_native(sdk_host::native_module!(meshwasm_telemetry)),
        };
        let Err(sdk_host::Error::Rejected { logs, .. }) = result else {
            panic!("{mode:?}: accepted");
        };
        let line = &logs.last().unwrap().message;
        assert!(
            line.starts_with(
                "meshwasm telemetry: invalid configuration: metrics[0].overrides[0].match.metric: unknown metric \"REQUEST_BYTES\""
            ),
            "{line}"
        );
    }
}
