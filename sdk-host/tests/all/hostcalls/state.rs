//! Configuration, the clock, properties, shared data, queues, metrics.

use super::GET;
use crate::{modes, results, start};
use sdk_host::{Host, LogLevel, MetricValue};
use serde_json::json;
use std::time::Duration;

#[test]
fn configuration_buffers_log_level_and_clock() {
    for mode in modes() {
        let host = start(
            mode,
            Host::builder()
                .vm_config(r#"{"on_vm_start": [["get_buffer", 6, 0, 100]]}"#)
                .log_level(LogLevel::Debug)
                .start_time_nanos(1_000_000_000),
            &json!({"on_configure": [
                ["get_buffer", 7, 2, 14],
                ["get_buffer", 7, 10000, 5],
                ["buffer_status", 7],
                ["log_level"],
                ["time"],
                ["log", 1, "debug line"],
                ["log", 0, "trace line, dropped at debug"],
                ["log", 9, "no such level"]
            ]}),
        );
        assert_eq!(
            results(&host, "on_vm_start")[0],
            r#"get_buffer(6, 0, 100): ok "{\"on_vm_start\": [[\"get_buffer\", 6, 0, 100]]}""#,
            "{mode:?}"
        );
        let configured = results(&host, "on_configure");
        let config_len = host.logs().len();
        assert!(config_len > 0);
        assert_eq!(
            configured[0], r#"get_buffer(7, 2, 14): ok "on_configure\":""#,
            "{mode:?}"
        );
        // A start past the end reads nothing, as Envoy clamps it.
        assert_eq!(configured[1], r#"get_buffer(7, 10000, 5): ok """#);
        assert!(
            configured[2].starts_with("buffer_status(7): ok "),
            "{}",
            configured[2]
        );
        assert!(configured[2].ends_with(" flags 0"));
        assert_eq!(configured[3], "log_level(): ok 1");
        assert_eq!(configured[4], "time(): ok 1000000000");
        assert_eq!(configured[5], "log(1, debug line): ok");
        assert_eq!(configured[6], "log(0, trace line, dropped at debug): ok");
        assert_eq!(configured[7], "log(9, no such level): Err(BadArgument)");
        assert!(
            host.log_lines(LogLevel::Debug)
                .contains(&"debug line".to_string())
        );
        assert!(
            !host
                .log_lines(LogLevel::Trace)
                .iter()
                .any(|l| l.starts_with("trace line"))
        );
    }
}

#[test]
fn plugin_configuration_is_only_readable_in_on_configure() {
    for mode in modes() {
        let mut host = start(
            mode,
            Host::builder(),
            &json!({"on_tick": [["get_buffer", 7, 0, 10]], "on_configure": [["tick", 5]]}),
        );
        host.advance(Duration::from_millis(5)).unwrap();
        assert_eq!(
            results(&host, "on_tick"),
            ["get_buffer(7, 0, 10): Err(NotFound)"],
            "{mode:?}"
        );
    }
}

#[test]
fn properties_follow_envoys_attributes() {
    for mode in modes() {
        let script = json!({
            "on_configure": [["get_property", "plugin_name"], ["get_property", "plugin_root_id"], ["get_property", "plugin_vm_id"], ["get_property", "request.path"], ["set_property", "x", "1"]],
            "on_request_headers": [
                ["get_property", "request.url_path"], ["get_property", "request.query"], ["get_property", "request.method"],
                ["get_property", "request.host"], ["get_property_map", "request.headers"], ["get_property", "request.headers.:method"],
                ["get_property", "source.address"], ["get_property_int", "source.port"], ["get_property", "xds.node.metadata.CLUSTER_ID"],
                ["get_property", "no.such.thing"], ["set_property", "my.value", "42"], ["get_property", "my.value"]
            ],
            "on_response_headers": [["get_property_int", "response.code"], ["get_property", "response.code_details"]]
        });
        let builder = Host::builder().vm_id("vm-1").property(
            "xds.node.metadata",
            sdk_host::PropertyValue::Map(sdk_host::HeaderMap::from_pairs([(
                "CLUSTER_ID",
                "Kubernetes",
            )])),
        );
        let mut host = match mode {
            crate::Mode::Wasm => builder
                .plugin("authz", "authz-root", script.to_string())
                .start(crate::probe_module())
                .unwrap(),
            #[cfg(feature = "native")]
            crate::Mode::Native => builder
                .plugin("authz", "authz-root", script.to_string())
                .start_native(sdk_host::native_module!(sdk_host_probe))
                .unwrap(),
        };
        let stream = host.new_http_stream().unwrap();
        host.send_request_headers(stream, &GET, true).unwrap();
        host.send_response_headers(stream, &[(":status", "404")], true)
            .unwrap();
        assert_eq!(
            results(&host, "on_configure"),
            [
                r#"get_property(plugin_name): ok "authz""#,
                r#"get_property(plugin_root_id): ok "authz-root""#,
                r#"get_property(plugin_vm_id): ok "vm-1""#,
                "get_property(request.path): Err(NotFound)",
                "set_property(x, 1): Err(NotFound)",
            ],
            "{mode:?}"
        );
        assert_eq!(
            results(&host, "on_request_headers"),
            [
                r#"get_property(request.url_path): ok "/a/b""#,
                r#"get_property(request.query): ok "x=1""#,
                r#"get_property(request.method): ok "GET""#,
                r#"get_property(request.host): ok "shop""#,
                "get_property_map(request.headers): ok [:method=GET, :path=/a/b?x=1, :authority=shop]",
                r#"get_property(request.headers.:method): ok "GET""#,
                r#"get_property(source.address): ok "127.0.0.1:54321""#,
                "get_property_int(source.port): ok 54321",
                r#"get_property(xds.node.metadata.CLUSTER_ID): ok "Kubernetes""#,
                "get_property(no.such.thing): Err(NotFound)",
                "set_property(my.value, 42): ok",
                r#"get_property(my.value): ok "42""#,
            ]
        );
        assert_eq!(
            results(&host, "on_response_headers"),
            [
                "get_property_int(response.code): ok 404",
                r#"get_property(response.code_details): ok "via_upstream""#
            ]
        );
    }
}

#[test]
fn shared_data_uses_one_cas_counter_and_is_partitioned_by_vm_id() {
    for mode in modes() {
        let host = start(
            mode,
            Host::builder().vm_id("vm-a"),
            &json!({"on_configure": [
                ["get_shared", "k"],
                ["set_shared", "k", "v1", 0],
                ["get_shared", "k"],
                ["set_shared", "k", "v2", 99],
                ["set_shared", "k", "v2", 1],
                ["get_shared", "k"],
                ["set_shared", "fresh", "x", 77]
            ]}),
        );
        assert_eq!(
            results(&host, "on_configure"),
            [
                "get_shared(k): Err(NotFound)",
                "set_shared(k, v1, 0): ok",
                r#"get_shared(k): ok "v1" cas 1"#,
                "set_shared(k, v2, 99): Err(CasMismatch)",
                "set_shared(k, v2, 1): ok",
                r#"get_shared(k): ok "v2" cas 2"#,
                // Envoy creates a missing key whatever the CAS.
                "set_shared(fresh, x, 77): ok",
            ],
            "{mode:?}"
        );
        assert_eq!(host.shared_data("k"), Some((b"v2".to_vec(), 2)));
        assert_eq!(host.proxy().shared_data("other-vm", "k"), None);
    }
}

#[test]
fn two_hosts_on_one_proxy_share_data_and_queues_like_workers() {
    let proxy = sdk_host::Proxy::new();
    let script = json!({
        "on_configure": [["register_queue", "jobs"]],
        "on_queue_ready": [["dequeue", "$1"], ["dequeue", "$1"]],
        "on_request_headers": [["resolve_queue", "", "jobs"], ["enqueue", 1, "job-1"], ["set_shared", "seen", "yes", 0]]
    });
    let worker_a = start(crate::Mode::Wasm, Host::builder().proxy(&proxy), &script);
    let mut worker_b = start(
        crate::Mode::Wasm,
        Host::builder().proxy(&proxy),
        &json!({"on_request_headers": script["on_request_headers"]}),
    );
    let stream = worker_b.new_http_stream().unwrap();
    worker_b.send_request_headers(stream, &GET, true).unwrap();
    assert_eq!(
        results(&worker_b, "on_request_headers")[0],
        "resolve_queue(, jobs): ok 1"
    );
    assert_eq!(
        worker_a.shared_data("seen").map(|(v, _)| v),
        Some(b"yes".to_vec())
    );
    // The owner is told on its next turn, like a post to its dispatcher.
    let mut worker_a = worker_a;
    worker_a.new_http_stream().unwrap();
    assert_eq!(
        results(&worker_a, "on_queue_ready"),
        [r#"dequeue($1): ok "job-1""#, "dequeue($1): Err(Empty)"]
    );
}

#[test]
fn queues_notify_their_owner_after_the_call() {
    for mode in modes() {
        let host = start(
            mode,
            Host::builder(),
            &json!({
                "on_configure": [["register_queue", "q"], ["register_queue", "q"], ["enqueue", 1, "a"], ["enqueue", 2, "b"], ["resolve_queue", "", "nope"], ["dequeue", 7]],
                "on_queue_ready": [["dequeue", "$1"]]
            }),
        );
        assert_eq!(
            results(&host, "on_configure"),
            [
                "register_queue(q): ok 1",
                "register_queue(q): ok 1",
                "enqueue(1, a): ok",
                "enqueue(2, b): Err(NotFound)",
                "resolve_queue(, nope): Err(NotFound)",
                "dequeue(7): Err(NotFound)",
            ],
            "{mode:?}"
        );
        assert_eq!(results(&host, "on_queue_ready"), [r#"dequeue($1): ok "a""#]);
    }
}

#[test]
fn metrics_have_envoys_ids_and_rules() {
    for mode in modes() {
        let host = start(
            mode,
            Host::builder(),
            &json!({"on_configure": [
                ["define_metric", 0, "requests"],
                ["define_metric", 1, "active"],
                ["define_metric", 2, "latency"],
                ["define_metric", 3, "bad"],
                ["increment", 4, 0],
                ["increment", 4, 5],
                ["record", 4, 2],
                ["get_metric", 4],
                ["increment", 9, -3],
                ["record", 14, 250],
                ["get_metric", 14],
                ["increment", 14, 1],
                ["get_metric", 99]
            ]}),
        );
        assert_eq!(
            results(&host, "on_configure"),
            [
                "define_metric(0, requests): ok 4",
                "define_metric(1, active): ok 9",
                "define_metric(2, latency): ok 14",
                "define_metric(3, bad): Err(BadArgument)",
                "increment(4, 0): Err(BadArgument)",
                "increment(4, 5): ok",
                "record(4, 2): ok",
                "get_metric(4): ok 7",
                "increment(9, -3): ok",
                "record(14, 250): ok",
                "get_metric(14): Err(BadArgument)",
                "increment(14, 1): Err(BadArgument)",
                "get_metric(99): Err(NotFound)",
            ],
            "{mode:?}"
        );
        assert_eq!(host.counter("requests"), Some(7));
        assert_eq!(host.gauge("active"), Some(-3));
        assert_eq!(
            host.metric("latency"),
            Some(MetricValue::Histogram(vec![250]))
        );
    }
}
