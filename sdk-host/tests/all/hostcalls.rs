//! Every hostcall of ABI 0.2.1, driven by the probe's scripts, with the
//! answers Envoy gives; each test runs in every mode this build has.

use crate::{modes, results, start};
use sdk_host::{Action, CalloutResponse, Error, Host, LogLevel, MetricValue, PeerType, Status};
use serde_json::json;
use std::time::Duration;

const GET: [(&str, &str); 3] = [
    (":method", "GET"),
    (":path", "/a/b?x=1"),
    (":authority", "shop"),
];

fn violations(host: &Host) -> Vec<String> {
    host.violations().iter().map(ToString::to_string).collect()
}

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
fn request_headers_are_read_and_changed_in_place() {
    for mode in modes() {
        let mut host = start(
            mode,
            Host::builder(),
            &json!({"on_request_headers": [
                ["get_header", 0, ":PATH"],
                ["get_header", 0, "missing"],
                ["add_header", 0, "X-Added", "1"],
                ["add_header", 0, "x-added", "2"],
                ["get_header", 0, "x-added"],
                ["replace_header", 0, "x-added", "3"],
                ["remove_header", 0, ":authority"],
                ["remove_header", 0, "never-there"],
                ["map_size", 0],
                ["get_pairs", 0],
                ["get_header", 2, ":status"],
                ["get_pairs", 2],
                ["get_header", 9, "x"]
            ]}),
        );
        let stream = host.new_http_stream().unwrap();
        let action = host.send_request_headers(stream, &GET, true).unwrap();
        assert_eq!(action, Action::Continue);
        let lines = results(&host, "on_request_headers");
        assert_eq!(
            lines,
            [
                r#"get_header(0, :PATH): ok "/a/b?x=1""#,
                "get_header(0, missing): Err(NotFound)",
                "add_header(0, X-Added, 1): ok",
                "add_header(0, x-added, 2): ok",
                r#"get_header(0, x-added): ok "1""#,
                "replace_header(0, x-added, 3): ok",
                "remove_header(0, :authority): ok",
                "remove_header(0, never-there): ok",
                "map_size(0): ok 31",
                "get_pairs(0): ok [:method=GET, :path=/a/b?x=1, x-added=3]",
                // Response headers do not exist while the request is decoded.
                "get_header(2, :status): Err(BadArgument)",
                "get_pairs(2): ok []",
                "get_header(9, x): Err(BadArgument)",
            ],
            "{mode:?}"
        );
        let view = host.http(stream).unwrap();
        let upstream = view.upstream().headers.as_ref().unwrap();
        assert_eq!(upstream.get("x-added"), Some("3"));
        assert_eq!(upstream.get(":authority"), None);
        assert!(view.upstream().complete);
    }
}

#[test]
fn headers_read_after_their_callback_continued_are_refused_and_reported() {
    for mode in modes() {
        let mut host = start(
            mode,
            Host::builder(),
            &json!({
                "on_request_body": [["get_header", 0, ":path"], ["get_pairs", 0], ["add_header", 0, "x-late", "1"]],
                "on_response_headers": [["get_header", 0, ":path"]],
                "on_log": [["get_header", 0, ":path"], ["get_header", 2, ":status"], ["get_header", 1, "t"], ["add_header", 2, "x", "y"]]
            }),
        );
        let stream = host.new_http_stream().unwrap();
        host.send_request_headers(stream, &GET, false).unwrap();
        host.send_request_body(stream, "body", true).unwrap();
        host.send_response_headers(stream, &[(":status", "200")], true)
            .unwrap();
        host.finish(stream).unwrap();
        assert_eq!(
            results(&host, "on_request_body"),
            [
                "get_header(0, :path): Err(BadArgument)",
                "get_pairs(0): ok []",
                "add_header(0, x-late, 1): Err(BadArgument)",
            ],
            "{mode:?}"
        );
        assert_eq!(
            results(&host, "on_response_headers"),
            ["get_header(0, :path): Err(BadArgument)"]
        );
        // In the access-log phase Envoy reads its own copies; there are no
        // request trailers there, and nothing can change.
        assert_eq!(
            results(&host, "on_log"),
            [
                r#"get_header(0, :path): ok "/a/b?x=1""#,
                r#"get_header(2, :status): ok "200""#,
                "get_header(1, t): Err(NotFound)",
                "add_header(2, x, y): Err(BadArgument)",
            ]
        );
        let found = violations(&host);
        assert_eq!(found.len(), 5, "{found:#?}");
        assert!(
            found[0]
                .contains("HttpRequestHeaders read after the callback that showed them continued"),
            "{}",
            found[0]
        );
        assert!(
            found[2].contains("proxy_add_header_map_value in proxy_on_request_body"),
            "{}",
            found[2]
        );
        assert!(found[4].contains("changed in proxy_on_log"), "{}", found[4]);
    }
}

#[test]
fn set_header_map_pairs_replaces_the_map_and_garbage_empties_it() {
    for mode in modes() {
        let mut host = start(
            mode,
            Host::builder(),
            &json!({"on_request_headers": [
                ["set_pairs", 0, [["A", "1"], ["b", "2"]]],
                ["get_pairs", 0],
                ["set_pairs_garbage", 0],
                ["get_pairs", 0]
            ]}),
        );
        let stream = host.new_http_stream().unwrap();
        host.send_request_headers(stream, &GET, true).unwrap();
        assert_eq!(
            results(&host, "on_request_headers"),
            [
                r#"set_pairs(0, [["A","1"],["b","2"]]): ok"#,
                "get_pairs(0): ok [a=1, b=2]",
                "set_pairs_garbage(0): ok",
                "get_pairs(0): ok []",
            ],
            "{mode:?}"
        );
    }
}

#[test]
fn a_paused_headers_callback_holds_the_body_until_the_filter_resumes() {
    for mode in modes() {
        let mut host = start(
            mode,
            Host::builder(),
            &json!({
                "on_configure": [["tick", 10]],
                "on_request_body": [["get_buffer", 0, 0, 100]],
                "on_tick": [["set_effective", "$stream"], ["get_header", 0, ":path"], ["continue", 0], ["tick", 0]],
                "return": {"on_request_headers": 1}
            }),
        );
        let stream = host.new_http_stream().unwrap();
        assert_eq!(
            host.send_request_headers(stream, &GET, false).unwrap(),
            Action::Pause
        );
        // Envoy's StopAllIteration: the filter does not see these yet.
        assert_eq!(host.send_request_body(stream, "ab", false).unwrap(), None);
        assert_eq!(host.send_request_body(stream, "cd", true).unwrap(), None);
        assert!(results(&host, "on_request_body").is_empty(), "{mode:?}");
        assert!(host.http(stream).unwrap().request_paused());
        assert!(host.http(stream).unwrap().upstream().headers.is_none());

        host.advance(Duration::from_millis(10)).unwrap();
        // Paused headers stay readable; on resume the body arrives whole.
        assert_eq!(
            results(&host, "on_tick"),
            [
                "set_effective($stream): ok",
                r#"get_header(0, :path): ok "/a/b?x=1""#,
                "continue(0): ok",
                "tick(0): ok"
            ]
        );
        assert_eq!(
            results(&host, "on_request_body"),
            [r#"get_buffer(0, 0, 100): ok "abcd""#]
        );
        let view = host.http(stream).unwrap();
        assert!(!view.request_paused());
        assert_eq!(view.upstream().body, b"abcd");
        assert!(view.upstream().complete);
        assert!(host.violations().is_empty(), "{:?}", violations(&host));
    }
}

#[test]
fn a_buffering_body_callback_sees_the_total_and_edits_the_buffer() {
    for mode in modes() {
        let mut host = start(
            mode,
            Host::builder(),
            &json!({
                "on_request_body": [
                    ["buffer_status", 0],
                    ["set_buffer", 0, 0, 0, "<"],
                    ["set_buffer", 0, 1000, 0, ">"],
                    ["set_buffer", 0, 2, 1, "?"],
                    ["get_buffer", 0, 1, 3]
                ],
                "return": {"on_request_body": 1}
            }),
        );
        let stream = host.new_http_stream().unwrap();
        host.send_request_headers(stream, &GET, false).unwrap();
        assert_eq!(
            host.send_request_body(stream, "12", false).unwrap(),
            Some(Action::Pause)
        );
        assert_eq!(
            host.send_request_body(stream, "34", true).unwrap(),
            Some(Action::Pause)
        );
        let lines = results(&host, "on_request_body");
        assert_eq!(lines[0], "buffer_status(0): ok 2 flags 0", "{mode:?}");
        assert_eq!(lines[4], r#"get_buffer(0, 1, 3): ok "12>""#);
        // The second call reports everything buffered: "<12>" plus "34".
        assert_eq!(lines[5], "buffer_status(0): ok 6 flags 0");
        assert_eq!(lines[3], "set_buffer(0, 2, 1, ?): Err(BadArgument)");
        assert!(host.http(stream).unwrap().upstream().body.is_empty());
    }
}

#[test]
fn trailers_can_be_added_from_the_last_body_callback() {
    for mode in modes() {
        let mut host = start(
            mode,
            Host::builder(),
            &json!({"on_request_body": [["add_header", 1, "x-checksum", "abc"]]}),
        );
        let stream = host.new_http_stream().unwrap();
        host.send_request_headers(stream, &GET, false).unwrap();
        host.send_request_body(stream, "data", true).unwrap();
        let upstream = host.http(stream).unwrap().upstream().clone();
        assert_eq!(
            upstream.trailers.unwrap().get("x-checksum"),
            Some("abc"),
            "{mode:?}"
        );
        assert!(upstream.complete);
    }
}

#[test]
fn a_local_response_runs_through_the_filters_response_callbacks() {
    for mode in modes() {
        let mut host = start(
            mode,
            Host::builder(),
            &json!({
                "on_request_headers": [["local_response", 403, "denied by policy", "no", [["x-reason", "policy"]], -1]],
                "on_response_headers": [["get_pairs", 2]],
                "on_response_body": [["get_buffer", 1, 0, 10]]
            }),
        );
        let stream = host.new_http_stream().unwrap();
        host.send_request_headers(stream, &GET, true).unwrap();
        assert_eq!(
            results(&host, "on_response_headers"),
            [
                "get_pairs(2): ok [:status=403, x-reason=policy, content-type=text/plain, content-length=2]"
            ],
            "{mode:?}"
        );
        assert_eq!(
            results(&host, "on_response_body"),
            [r#"get_buffer(1, 0, 10): ok "no""#]
        );
        let view = host.http(stream).unwrap();
        let local = view.local_response().unwrap();
        assert_eq!(local.details, "denied_by_policy");
        assert_eq!(local.grpc_status, None);
        assert!(
            view.upstream().headers.is_none(),
            "the request must not reach the upstream"
        );
        assert_eq!(
            view.downstream().headers.as_ref().unwrap().get(":status"),
            Some("403")
        );
        assert_eq!(view.downstream().body, b"no");
        assert!(view.downstream().complete);
        let err = host
            .send_response_headers(stream, &[(":status", "200")], true)
            .unwrap_err();
        assert!(err.to_string().contains("never reached it"), "{err}");
    }
}

#[test]
fn a_local_response_after_the_response_started_resets_the_stream() {
    for mode in modes() {
        let mut host = start(
            mode,
            Host::builder(),
            &json!({"on_response_body": [["local_response", 500, "late", "", [], -1], ["local_response", 501, "twice", "", [], -1]]}),
        );
        let stream = host.new_http_stream().unwrap();
        host.send_request_headers(stream, &GET, true).unwrap();
        host.send_response_headers(stream, &[(":status", "200")], false)
            .unwrap();
        host.send_response_body(stream, "partial", true).unwrap();
        let view = host.http(stream).unwrap();
        assert_eq!(
            view.reset(),
            Some("local response after the response started"),
            "{mode:?}"
        );
        let found = violations(&host);
        assert_eq!(found.len(), 2, "{found:#?}");
        assert!(found[0].contains("after the response headers were sent downstream"));
        assert!(found[1].contains("a second local response"));
    }
}

#[test]
fn a_body_resized_under_a_stale_content_length_is_reported() {
    for mode in modes() {
        let mut host = start(
            mode,
            Host::builder(),
            &json!({"on_request_body": [["set_buffer", 0, 1000, 0, "+more"]],
                    "on_response_headers": [["remove_header", 2, "content-length"]],
                    "on_response_body": [["set_buffer", 1, 1000, 0, "+more"]]}),
        );
        let stream = host.new_http_stream().unwrap();
        let mut headers = GET.to_vec();
        headers.push(("content-length", "3"));
        host.send_request_headers(stream, &headers, false).unwrap();
        host.send_request_body(stream, "abc", true).unwrap();
        // The response's content-length was removed first: no report.
        host.send_response_headers(
            stream,
            &[(":status", "200"), ("content-length", "2")],
            false,
        )
        .unwrap();
        host.send_response_body(stream, "ok", true).unwrap();
        assert_eq!(host.http(stream).unwrap().upstream().body, b"abc+more");
        assert_eq!(
            violations(&host),
            [
                "content-length (context 2): the request body left the filter with 8 bytes but \
              content-length says 3; Envoy forwards the header as it is, so the upstream reads \
              the first 3 and drops the rest (remove content-length in the headers callback \
              when changing the body's size)"
            ],
            "{mode:?}"
        );
    }
}

#[test]
fn resuming_a_stream_that_is_not_paused_is_reported() {
    for mode in modes() {
        let mut host = start(
            mode,
            Host::builder(),
            &json!({"on_response_headers": [["continue", 0], ["continue", 3], ["continue", 7]]}),
        );
        let stream = host.new_http_stream().unwrap();
        host.send_request_headers(stream, &GET, true).unwrap();
        host.send_response_headers(stream, &[(":status", "200")], true)
            .unwrap();
        assert_eq!(
            results(&host, "on_response_headers"),
            [
                "continue(0): ok",
                "continue(3): Err(Unimplemented)",
                "continue(7): Err(BadArgument)"
            ],
            "{mode:?}"
        );
        let found = violations(&host);
        assert_eq!(found.len(), 1, "{found:#?}");
        assert!(
            found[0].contains("HttpRequest resumed while it was not paused"),
            "{}",
            found[0]
        );
    }
}

#[test]
fn close_stream_resets_the_stream() {
    for mode in modes() {
        let mut host = start(
            mode,
            Host::builder(),
            &json!({"on_request_headers": [["close", 0]], "return": {"on_request_headers": 1}}),
        );
        let stream = host.new_http_stream().unwrap();
        host.send_request_headers(stream, &GET, true).unwrap();
        assert_eq!(
            host.http(stream).unwrap().reset(),
            Some("wasm_close_stream"),
            "{mode:?}"
        );
    }
}

#[test]
fn http_streams_end_with_log_then_done_then_delete() {
    for mode in modes() {
        let mut host = start(
            mode,
            Host::builder(),
            &json!({"on_log": [["log", 2, "log"]], "on_done": [["log", 2, "done"]], "on_delete": [["log", 2, "delete"]]}),
        );
        let stream = host.new_http_stream().unwrap();
        host.send_request_headers(stream, &GET, true).unwrap();
        host.finish(stream).unwrap();
        let order: Vec<String> = host
            .log_lines(LogLevel::Info)
            .into_iter()
            .filter(|l| ["log", "done", "delete"].contains(&l.as_str()))
            .collect();
        assert_eq!(order, ["log", "done", "delete"], "{mode:?}");
        assert!(host.http(stream).unwrap().finished());
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
                ["get_property", "source.address"], ["get_property_int", "source.port"], ["get_property", "node.metadata.CLUSTER_ID"],
                ["get_property", "no.such.thing"], ["set_property", "my.value", "42"], ["get_property", "my.value"]
            ],
            "on_response_headers": [["get_property_int", "response.code"], ["get_property", "response.code_details"]]
        });
        let builder = Host::builder().vm_id("vm-1").property(
            "node.metadata",
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
                r#"get_property(node.metadata.CLUSTER_ID): ok "Kubernetes""#,
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

#[test]
fn http_callouts_are_answered_on_the_root_context() {
    for mode in modes() {
        let mut host = start(
            mode,
            Host::builder().cluster("auth"),
            &json!({
                "on_request_headers": [
                    ["http_call", "auth", [[":method", "GET"], [":authority", "auth"]], "", [], 100],
                    ["http_call", "nowhere", [[":method", "GET"], [":path", "/"], [":authority", "a"]], "", [], 100],
                    ["http_call", "auth", [[":method", "POST"], [":path", "/check"], [":authority", "auth"]], "payload", [["t", "1"]], 100],
                    ["http_call", "auth", [[":method", "GET"], [":path", "/slow"], [":authority", "auth"]], "", [], 50]
                ],
                "on_http_call_response": [
                    ["get_header", 6, ":status"], ["get_buffer", 4, 0, 100], ["get_pairs", 7], ["get_status"], ["set_effective", "$stream"], ["continue", 0]
                ],
                "return": {"on_request_headers": 1}
            }),
        );
        let root = host.root_contexts()[0];
        let stream = host.new_http_stream().unwrap();
        host.send_request_headers(stream, &GET, true).unwrap();
        assert_eq!(
            results(&host, "on_request_headers"),
            [
                r#"http_call(auth, [[":method","GET"],[":authority","auth"]], , [], 100): Err(BadArgument)"#,
                r#"http_call(nowhere, [[":method","GET"],[":path","/"],[":authority","a"]], , [], 100): Err(BadArgument)"#,
                r#"http_call(auth, [[":method","POST"],[":path","/check"],[":authority","auth"]], payload, [["t","1"]], 100): ok 4"#,
                r#"http_call(auth, [[":method","GET"],[":path","/slow"],[":authority","auth"]], , [], 50): ok 8"#,
            ],
            "{mode:?}"
        );
        let calls = host.http_calls();
        assert_eq!(calls.len(), 2);
        assert_eq!(calls[0].context_id, stream);
        assert_eq!(calls[0].headers.get(":path"), Some("/check"));
        assert_eq!(calls[0].body, b"payload");
        assert_eq!(calls[0].trailers.get("t"), Some("1"));

        // The timeout is Envoy's async client answering 504 itself.
        host.advance(Duration::from_millis(50)).unwrap();
        let first = results(&host, "on_http_call_response");
        assert_eq!(first[0], r#"get_header(6, :status): ok "504""#);
        assert_eq!(
            first[1],
            r#"get_buffer(4, 0, 100): ok "upstream request timeout""#
        );

        host.clear_logs();
        host.respond_http_call(
            4,
            CalloutResponse::new(200)
                .body("allowed")
                .trailer("x-t", "v"),
        )
        .unwrap();
        assert_eq!(
            results(&host, "on_http_call_response"),
            [
                r#"get_header(6, :status): ok "200""#,
                r#"get_buffer(4, 0, 100): ok "allowed""#,
                "get_pairs(7): ok [x-t=v]",
                r#"get_status(): ok 0 """#,
                "set_effective($stream): ok",
                "continue(0): ok",
            ]
        );
        assert!(
            host.logs()
                .iter()
                .filter(|r| r.message.starts_with("on_http_call_response get_header"))
                .all(|r| r.context_id == root)
        );
        assert!(host.http(stream).unwrap().upstream().complete);
        assert!(matches!(
            host.respond_http_call(4, CalloutResponse::new(200)),
            Err(Error::NotFound { .. })
        ));
    }
}

#[test]
fn a_failed_callout_has_no_headers_and_status_broken_connection() {
    for mode in modes() {
        let mut host = start(
            mode,
            Host::builder(),
            &json!({
                "on_configure": [["http_call", "c", [[":method", "GET"], [":path", "/"], [":authority", "a"]], "", [], 0]],
                "on_http_call_response": [["get_status"], ["get_pairs", 6]]
            }),
        );
        host.fail_http_call(4).unwrap();
        assert_eq!(
            results(&host, "on_http_call_response"),
            [r#"get_status(): ok 11 "reset""#, "get_pairs(6): ok []"],
            "{mode:?}"
        );
    }
}

#[test]
fn grpc_calls_and_streams() {
    for mode in modes() {
        let mut host = start(
            mode,
            Host::builder(),
            &json!({
                "on_configure": [
                    ["grpc_call", "grpc-cluster", "pkg.Svc", "Check", [["x-md", "1"]], "req", 1000],
                    ["grpc_stream", "grpc-cluster", "pkg.Svc", "Watch", []],
                    ["grpc_send", 6, "m1", 0],
                    ["grpc_send", 5, "no", 0],
                    ["grpc_send", 99, "no", 0],
                    ["grpc_close", 6]
                ],
                "on_grpc_receive": [["get_buffer", 5, 0, 100]],
                "on_grpc_receive_initial_metadata": [["get_pairs", 4]],
                "on_grpc_receive_trailing_metadata": [["get_pairs", 5]],
                "on_grpc_close": [["get_status"]]
            }),
        );
        assert_eq!(
            results(&host, "on_configure"),
            [
                r#"grpc_call(grpc-cluster, pkg.Svc, Check, [["x-md","1"]], req, 1000): ok 5"#,
                "grpc_stream(grpc-cluster, pkg.Svc, Watch, []): ok 6",
                "grpc_send(6, m1, 0): ok",
                "grpc_send(5, no, 0): Err(BadArgument)",
                "grpc_send(99, no, 0): Err(NotFound)",
                "grpc_close(6): ok",
            ],
            "{mode:?}"
        );
        let calls = host.grpc_calls();
        assert_eq!(calls[0].messages, [b"req".to_vec()]);
        assert_eq!(calls[0].initial_metadata.get("x-md"), Some("1"));
        assert_eq!(calls[1].messages, [b"m1".to_vec()]);
        assert!(calls[1].local_closed);
        host.grpc_respond(5, "resp").unwrap();
        host.grpc_receive_initial_metadata(6, sdk_host::HeaderMap::from_pairs([("a", "b")]))
            .unwrap();
        host.grpc_receive(6, "event").unwrap();
        host.grpc_receive_trailing_metadata(
            6,
            sdk_host::HeaderMap::from_pairs([("grpc-status", "0")]),
        )
        .unwrap();
        host.grpc_close(6, 14, "unavailable").unwrap();
        assert_eq!(
            results(&host, "on_grpc_receive"),
            [
                r#"get_buffer(5, 0, 100): ok "resp""#,
                r#"get_buffer(5, 0, 100): ok "event""#
            ]
        );
        assert_eq!(
            results(&host, "on_grpc_receive_initial_metadata"),
            ["get_pairs(4): ok [a=b]"]
        );
        assert_eq!(
            results(&host, "on_grpc_receive_trailing_metadata"),
            ["get_pairs(5): ok [grpc-status=0]"]
        );
        assert_eq!(
            results(&host, "on_grpc_close"),
            [r#"get_status(): ok 14 "unavailable""#]
        );
        assert!(host.grpc_calls().is_empty());
    }
}

#[test]
fn a_unary_grpc_call_that_times_out_closes_with_deadline_exceeded() {
    for mode in modes() {
        let mut host = start(
            mode,
            Host::builder(),
            &json!({
                "on_configure": [["grpc_call", "c", "S", "M", [], "", 200], ["grpc_call", "c", "S", "M", [], "", 0], ["grpc_cancel", 9]],
                "on_grpc_close": [["get_status"]]
            }),
        );
        host.advance(Duration::from_secs(1)).unwrap();
        assert_eq!(
            results(&host, "on_grpc_close"),
            [r#"get_status(): ok 4 "deadline exceeded""#],
            "{mode:?}"
        );
        assert!(host.grpc_calls().is_empty());
    }
}

#[test]
fn foreign_functions_both_ways() {
    for mode in modes() {
        let builder = Host::builder()
            .foreign_function("reverse", |args| Ok(args.iter().rev().copied().collect()));
        let mut host = start(
            mode,
            builder,
            &json!({
                "on_configure": [["foreign", "reverse", "abc"], ["foreign", "nope", ""], ["foreign", "clear_route_cache", ""]],
                "on_request_headers": [["foreign", "clear_route_cache", ""]],
                "on_foreign_function": [["get_buffer", 8, 0, 10]]
            }),
        );
        assert_eq!(
            results(&host, "on_configure"),
            [
                r#"foreign(reverse, abc): ok "cba""#,
                "foreign(nope, ): Err(NotFound)",
                "foreign(clear_route_cache, ): Err(NotFound)"
            ],
            "{mode:?}"
        );
        let stream = host.new_http_stream().unwrap();
        host.send_request_headers(stream, &GET, true).unwrap();
        assert_eq!(host.http(stream).unwrap().route_cache_cleared(), 1);
        let root = host.root_contexts()[0];
        host.call_guest_foreign_function(root, 3, "args").unwrap();
        assert_eq!(
            results(&host, "on_foreign_function"),
            [r#"get_buffer(8, 0, 10): ok "args""#]
        );
    }
}

#[test]
fn effective_context_and_root_shutdown_with_proxy_done() {
    for mode in modes() {
        let mut host = start(
            mode,
            Host::builder(),
            &json!({
                "on_configure": [["set_effective", 99999], ["done"], ["tick", 5]],
                "on_tick": [["done"]],
                "on_delete": [["log", 2, "deleted"]],
                "return": {"on_done": 0}
            }),
        );
        assert_eq!(
            results(&host, "on_configure"),
            [
                "set_effective(99999): Err(BadArgument)",
                "done(): Err(NotFound)",
                "tick(5): ok"
            ],
            "{mode:?}"
        );
        let root = host.root_contexts()[0];
        assert_eq!(host.shutdown().unwrap(), [root]);
        assert_eq!(host.pending_done(), [root]);
        host.advance(Duration::from_millis(5)).unwrap();
        assert_eq!(results(&host, "on_tick"), ["done(): ok"]);
        assert!(host.pending_done().is_empty());
        assert!(
            host.log_lines(LogLevel::Info)
                .contains(&"deleted".to_string())
        );
        // Deleted roots get no more ticks.
        host.advance(Duration::from_millis(50)).unwrap();
        assert_eq!(results(&host, "on_tick").len(), 1);
    }
}

#[test]
fn tcp_streams_buffer_until_continue() {
    for mode in modes() {
        let mut host = start(
            mode,
            Host::builder(),
            &json!({
                "on_downstream_data": [["get_buffer", 2, 0, 100], ["set_buffer", 2, 0, 0, ">"]],
                "on_upstream_data": [["close", 2], ["continue", 3]],
                "on_downstream_connection_close": [["log", 2, "closed"]],
                "return": {"on_downstream_data": 1}
            }),
        );
        let (stream, action) = host.new_tcp_stream().unwrap();
        assert_eq!(action, Action::Continue);
        assert_eq!(
            host.send_downstream_data(stream, "hel", false).unwrap(),
            Action::Pause
        );
        assert_eq!(
            host.send_downstream_data(stream, "lo", false).unwrap(),
            Action::Pause
        );
        assert_eq!(
            results(&host, "on_downstream_data"),
            [
                r#"get_buffer(2, 0, 100): ok "hel""#,
                "set_buffer(2, 0, 0, >): ok",
                r#"get_buffer(2, 0, 100): ok ">hello""#,
                "set_buffer(2, 0, 0, >): ok"
            ],
            "{mode:?}"
        );
        assert!(host.tcp(stream).unwrap().to_upstream().is_empty());
        host.send_upstream_data(stream, "reply", true).unwrap();
        assert_eq!(
            results(&host, "on_upstream_data"),
            ["close(2): ok", "continue(3): Err(Unimplemented)"]
        );
        assert_eq!(host.tcp(stream).unwrap().to_downstream(), b"reply");
        assert_eq!(
            host.tcp(stream).unwrap().closed(),
            [sdk_host::StreamType::Downstream]
        );
        host.close_tcp(stream, true, PeerType::Remote).unwrap();
        host.finish(stream).unwrap();
        assert!(
            host.log_lines(LogLevel::Info)
                .contains(&"closed".to_string())
        );
    }
}

#[test]
fn a_rejected_configuration_names_the_plugin_and_what_it_logged() {
    for mode in modes() {
        let builder = Host::builder().plugin_config("{not json");
        let result = match mode {
            crate::Mode::Wasm => builder.start(crate::probe_module()),
            #[cfg(feature = "native")]
            crate::Mode::Native => builder.start_native(sdk_host::native_module!(sdk_host_probe)),
        };
        let Err(err) = result else {
            panic!("{mode:?}: a bad script must be rejected")
        };
        let text = err.to_string();
        assert!(text.starts_with("proxy_on_configure returned false for plugin plugin: Envoy rejects the configuration"), "{text}");
        assert!(
            text.contains("guest logged: script: key must be a string"),
            "{text}"
        );
    }
}

#[test]
fn a_trap_fails_the_vm_for_good() {
    let mut host = start(
        crate::Mode::Wasm,
        Host::builder(),
        &json!({"on_request_headers": [["trap"]]}),
    );
    let stream = host.new_http_stream().unwrap();
    let err = host.send_request_headers(stream, &GET, true).unwrap_err();
    assert!(
        matches!(&err, Error::Trap(trap) if trap.export == "proxy_on_request_headers"),
        "{err}"
    );
    assert!(host.failure().is_some());
    assert!(matches!(host.new_http_stream(), Err(Error::VmFailed(_))));
}

#[test]
fn guest_pointers_outside_memory_are_invalid_memory_access() {
    let host = start(
        crate::Mode::Wasm,
        Host::builder(),
        &json!({"on_configure": [["log_bad_pointer"]]}),
    );
    assert_eq!(
        results(&host, "on_configure"),
        ["log_bad_pointer(): Err(InvalidMemoryAccess)"]
    );
}

#[test]
fn status_numbers_match_the_abi() {
    assert_eq!(Status::from_u32(11), Some(Status::BrokenConnection));
    assert_eq!(Status::from_u32(13), None);
}
