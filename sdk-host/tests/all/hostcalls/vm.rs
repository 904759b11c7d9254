//! Foreign functions, contexts, TCP, and how a VM fails.

use super::GET;
use crate::{modes, results, start};
use sdk_host::{Action, Error, Host, LogLevel, PeerType, Status};
use serde_json::json;
use std::time::Duration;

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
fn a_trap_report_shows_what_the_guest_logged_then_the_trap_once() {
    let mut host = start(
        crate::Mode::Wasm,
        Host::builder(),
        &json!({"on_request_headers": [["log", 2, "checking the request"], ["stderr", "about to fail"], ["trap"]]}),
    );
    let stream = host.new_http_stream().unwrap();
    let report = host
        .send_request_headers(stream, &GET, true)
        .unwrap_err()
        .to_string();
    let logged = report
        .find("what it logged before the trap:")
        .unwrap_or(usize::MAX);
    let trap = report.find("\nthe trap: ").unwrap_or(0);
    assert!(logged < trap, "{report}");
    // The Rust panic message reaches the report through the guest's stderr.
    for line in [
        "[info] checking the request",
        "  | about to fail",
        "probe asked to trap",
    ] {
        assert!(report[logged..trap].contains(line), "{line}: {report}");
    }
    assert_eq!(report.matches("the guest trapped").count(), 1, "{report}");
    // Later calls say why in one line, without the backtrace again.
    let later = host.new_http_stream().unwrap_err().to_string();
    assert!(!later.contains('\n'), "{later}");
    assert!(
        later.contains("the guest trapped in proxy_on_request_headers"),
        "{later}"
    );
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
