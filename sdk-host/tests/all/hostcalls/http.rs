//! HTTP streams: header maps, bodies, trailers, pausing, local responses.

use super::{GET, violations};
use crate::{modes, results, start};
use sdk_host::{Action, Host, LogLevel};
use serde_json::json;
use std::time::Duration;

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

// Envoy 1.40 adds content-length, then content-type, after the filter's headers.
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
                "get_pairs(2): ok [:status=403, x-reason=policy, content-length=2, content-type=text/plain]"
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
