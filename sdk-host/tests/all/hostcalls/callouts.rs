//! HTTP and gRPC callouts.

use super::GET;
use crate::{modes, results, start};
use sdk_host::{CalloutResponse, Error, Host};
use serde_json::json;
use std::time::Duration;

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
