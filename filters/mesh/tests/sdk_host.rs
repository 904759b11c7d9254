//! The mesh module through sdk-host, each test in both modes (the built
//! `.wasm` on wasmtime, and this crate linked natively): every behaviour in
//! one stream, in Istio's order, with one read of the request's headers,
//! and a part that answers, waits or delays holding the parts after it.
#![allow(clippy::unwrap_used, clippy::expect_used, clippy::panic)]

use sdk_host::{
    Action, CalloutResponse, Error, Host, HostBuilder, LogLevel, MetricValue, WasmModule,
};
use serde_json::{Value, json};
use std::sync::OnceLock;
use std::time::Duration;

#[derive(Debug, Clone, Copy)]
enum Mode {
    Wasm,
    Native,
}

const MODES: [Mode; 2] = [Mode::Wasm, Mode::Native];

fn module() -> &'static WasmModule {
    static MODULE: OnceLock<WasmModule> = OnceLock::new();
    MODULE.get_or_init(|| WasmModule::from_file(meshwasm_artifacts::MESH_WASM).unwrap())
}

fn launch(mode: Mode, config: &str, builder: HostBuilder) -> Result<Host, Error> {
    let builder = builder.plugin("mesh", "mesh", config);
    match mode {
        Mode::Wasm => builder.start(module()),
        Mode::Native => builder.start_native(sdk_host::native_module!(meshwasm_mesh)),
    }
}

fn start_on(mode: Mode, config: &Value, builder: HostBuilder) -> Host {
    launch(mode, &config.to_string(), builder).unwrap()
}

fn start(mode: Mode, config: &Value) -> Host {
    start_on(mode, config, Host::builder())
}

/// Istio's reviews canary: jason to v2, the rest 80/20.
fn canary() -> Value {
    json!([{
        "hosts": ["reviews"],
        "http": [
            {"match": [{"headers": {"end-user": {"exact": "jason"}}}],
             "route": [{"destination": {"host": "reviews", "subset": "v2"}}]},
            {"route": [
                {"destination": {"host": "reviews", "subset": "v1"}, "weight": 80},
                {"destination": {"host": "reviews", "subset": "v2"}, "weight": 20}]}
        ]
    }])
}

fn local_limit(max_tokens: u32) -> Value {
    json!({
        "stat_prefix": "mesh",
        "token_bucket": {"max_tokens": max_tokens, "tokens_per_fill": 1, "fill_interval": "3600s"},
        "filter_enabled": {"default_value": {"numerator": 100}},
        "filter_enforced": {"default_value": {"numerator": 100}},
    })
}

/// All five: the benchmark's common path.
fn all_five() -> Value {
    let mut services = canary();
    services[0]["http"][1]["fault"] =
        json!({"abort": {"httpStatus": 500, "percentage": {"value": 0}}});
    json!({
        "authorization": {"action": "ALLOW", "rules": [{"to": [{"operation": {"methods": ["GET"], "paths": ["/reviews*"]}}]}]},
        "rateLimit": local_limit(1000),
        "virtualServices": services,
        "telemetry": {},
    })
}

fn request(host: &mut Host, method: &str, extra: &[(&str, &str)]) -> (u32, Action) {
    let stream = host.new_http_stream().unwrap();
    let mut headers = vec![
        (":method", method),
        (":scheme", "http"),
        (":path", "/reviews/1"),
        (":authority", "reviews"),
    ];
    headers.extend_from_slice(extra);
    let action = host.send_request_headers(stream, &headers, true).unwrap();
    (stream, action)
}

/// Answers a forwarded request with 200, or reads the local answer, and
/// ends the stream: the client's status.
fn finish(host: &mut Host, stream: u32, action: Action) -> u32 {
    let status = if action == Action::Continue {
        host.send_response_headers(stream, &[(":status", "200")], true)
            .unwrap();
        200
    } else {
        host.http(stream).unwrap().local_response().unwrap().status
    };
    host.finish(stream).unwrap();
    status
}

/// The subset the request carried upstream, if it got there.
fn upstream_subset(host: &Host, stream: u32) -> Option<String> {
    let view = host.http(stream).unwrap();
    let headers = view.upstream().headers.as_ref()?;
    Some(
        headers
            .get("x-meshwasm-subset")
            .unwrap_or("none")
            .to_owned(),
    )
}

/// The `istio_requests_total` counts by response code.
fn requests_by_code(host: &Host) -> Vec<(String, u64)> {
    let mut found: Vec<(String, u64)> = host
        .proxy()
        .metrics()
        .into_iter()
        .filter(|(name, _)| name.ends_with("istio_requests_total"))
        .filter_map(|(name, value)| {
            let code = name
                .split(";.;")
                .find_map(|l| l.strip_prefix("response_code=.="))?
                .to_owned();
            match value {
                MetricValue::Counter(n) => Some((code, n)),
                _ => None,
            }
        })
        .collect();
    found.sort();
    found
}

#[test]
fn every_part_runs_in_one_pass_that_reads_the_request_headers_once() {
    for mode in MODES {
        let mut host = start(mode, &all_five());
        // The first request defines the series; the second is the steady state.
        let (first, action) = request(&mut host, "GET", &[("end-user", "jason")]);
        assert_eq!(finish(&mut host, first, action), 200, "{mode:?}");
        let before = host.hostcall_counts();
        let (stream, action) = request(&mut host, "GET", &[("end-user", "jason")]);
        assert_eq!(action, Action::Continue, "{mode:?}");
        assert_eq!(
            upstream_subset(&host, stream).as_deref(),
            Some("v2"),
            "{mode:?}"
        );
        assert_eq!(finish(&mut host, stream, action), 200, "{mode:?}");
        let after = host.hostcall_counts();
        let reads = |counts: &std::collections::BTreeMap<&str, u64>| {
            counts
                .get("proxy_get_header_map_pairs")
                .copied()
                .unwrap_or(0)
        };
        assert_eq!(
            reads(&after) - reads(&before),
            2,
            "{mode:?}: one read of the request headers for the five parts, one of the response's"
        );
        assert_eq!(
            host.counter("meshwasm.header_match.allowed"),
            Some(2),
            "{mode:?}"
        );
        assert_eq!(
            host.counter("mesh.http_local_rate_limit.ok"),
            Some(2),
            "{mode:?}"
        );
        assert_eq!(
            host.counter("meshwasm.router.routed.outbound||v2|reviews"),
            Some(2),
            "{mode:?}"
        );
        assert_eq!(requests_by_code(&host), [("200".to_owned(), 2)], "{mode:?}");
        assert!(host.violations().is_empty(), "{:?}", host.violations());
    }
}

#[test]
fn a_part_that_answers_ends_the_request_and_telemetry_still_reports_it() {
    for mode in MODES {
        let mut config = all_five();
        config["rateLimit"] = local_limit(1);
        let mut host = start(mode, &config);
        // Denied by the access rules: neither drawn from the bucket nor routed.
        let (stream, action) = request(&mut host, "POST", &[]);
        assert_eq!(action, Action::Pause, "{mode:?}");
        assert_eq!(upstream_subset(&host, stream), None, "{mode:?}");
        assert_eq!(finish(&mut host, stream, action), 403, "{mode:?}");
        assert_eq!(
            host.counter("mesh.http_local_rate_limit.enabled"),
            Some(0),
            "{mode:?}"
        );

        let (stream, action) = request(&mut host, "GET", &[]);
        assert_eq!(finish(&mut host, stream, action), 200, "{mode:?}");
        // The bucket held one token: limited, and not routed.
        let (stream, action) = request(&mut host, "GET", &[("end-user", "jason")]);
        assert_eq!(upstream_subset(&host, stream), None, "{mode:?}");
        assert_eq!(finish(&mut host, stream, action), 429, "{mode:?}");
        assert_eq!(
            host.counter("meshwasm.router.routed.outbound||v2|reviews")
                .unwrap_or(0)
                + host
                    .counter("meshwasm.router.routed.outbound||v1|reviews")
                    .unwrap_or(0),
            1,
            "{mode:?}: only the request that passed was routed"
        );
        assert_eq!(
            requests_by_code(&host),
            [
                ("200".to_owned(), 1),
                ("403".to_owned(), 1),
                ("429".to_owned(), 1)
            ],
            "{mode:?}"
        );
    }
}

#[test]
fn a_delayed_request_is_routed_and_held_until_the_delay_is_over() {
    for mode in MODES {
        let mut services = canary();
        services[0]["http"][0]["fault"] =
            json!({"delay": {"fixedDelay": "2s", "percentage": {"value": 100}}});
        let mut host = start(mode, &json!({"virtualServices": services}));
        let (stream, action) = request(&mut host, "GET", &[("end-user", "jason")]);
        assert_eq!(action, Action::Pause, "{mode:?}");
        assert_eq!(upstream_subset(&host, stream), None, "{mode:?}: held");
        host.advance(Duration::from_millis(1999)).unwrap();
        assert_eq!(upstream_subset(&host, stream), None, "{mode:?}: still held");
        host.advance(Duration::from_millis(1)).unwrap();
        assert_eq!(
            upstream_subset(&host, stream).as_deref(),
            Some("v2"),
            "{mode:?}: resumed with the route chosen"
        );
        assert_eq!(
            host.counter("meshwasm.fault.delays_injected"),
            Some(1),
            "{mode:?}"
        );
        // Another user is not delayed and is routed at once.
        let (other, action) = request(&mut host, "GET", &[("end-user", "kim")]);
        assert_eq!(action, Action::Continue, "{mode:?}");
        assert!(upstream_subset(&host, other).is_some(), "{mode:?}");
    }
}

#[test]
fn the_parts_after_an_authorizer_run_on_its_answer_and_route_by_its_headers() {
    for mode in MODES {
        let mut services = canary();
        // Routed by the user the authorizer names, not by a client's header.
        services[0]["http"][0]["match"] = json!([{"headers": {"x-user": {"exact": "jason"}}}]);
        let config = json!({
            "authorization": {
                "extensionProviders": [{"name": "opa", "envoyExtAuthzHttp": {
                    "service": "authz", "timeout": "0.5s", "headersToUpstreamOnAllow": ["x-user"]}}],
                "policies": [{"action": "CUSTOM", "provider": {"name": "opa"}, "rules": [{}]}],
            },
            "rateLimit": local_limit(10),
            "virtualServices": services,
        });
        let mut host = start_on(mode, &config, Host::builder().cluster("authz"));
        let (stream, action) = request(&mut host, "GET", &[]);
        assert_eq!(action, Action::Pause, "{mode:?}: waits for the check");
        assert_eq!(
            host.counter("mesh.http_local_rate_limit.enabled"),
            Some(0),
            "{mode:?}: the rate limit waits too"
        );
        let token = host.http_calls()[0].token;
        host.respond_http_call(token, CalloutResponse::new(200).header("x-user", "jason"))
            .unwrap();
        assert_eq!(
            host.counter("mesh.http_local_rate_limit.ok"),
            Some(1),
            "{mode:?}"
        );
        assert_eq!(
            upstream_subset(&host, stream).as_deref(),
            Some("v2"),
            "{mode:?}: resumed, routed by the authorizer's header"
        );
        assert!(host.violations().is_empty(), "{:?}", host.violations());
    }
}

#[test]
fn a_request_waits_for_the_rate_limit_service_and_is_routed_on_its_answer() {
    for mode in MODES {
        let config = json!({
            "rateLimit": {
                "domain": "mesh",
                "rate_limit_service": {"grpc_service": {"envoy_grpc": {"cluster_name": "rls"}}, "transport_api_version": "V3"},
                "rate_limits": [{"actions": [{"request_headers": {"header_name": "end-user", "descriptor_key": "user"}}]}],
            },
            "virtualServices": canary(),
        });
        let mut host = start_on(mode, &config, Host::builder().cluster("rls"));
        let (stream, action) = request(&mut host, "GET", &[("end-user", "jason")]);
        assert_eq!(action, Action::Pause, "{mode:?}");
        assert_eq!(upstream_subset(&host, stream), None, "{mode:?}");
        let calls = host.grpc_calls();
        assert_eq!(calls.len(), 1, "{mode:?}");
        // RateLimitResponse { overall_code: OK }.
        host.grpc_respond(calls[0].token, [0x08, 0x01]).unwrap();
        assert_eq!(
            upstream_subset(&host, stream).as_deref(),
            Some("v2"),
            "{mode:?}"
        );

        // OVER_LIMIT: answered 429, never routed.
        let (stream, _) = request(&mut host, "GET", &[("end-user", "jason")]);
        let token = host.grpc_calls()[0].token;
        host.grpc_respond(token, [0x08, 0x02]).unwrap();
        assert_eq!(upstream_subset(&host, stream), None, "{mode:?}");
        let local = host.http(stream).unwrap().local_response().unwrap().status;
        assert_eq!(local, 429, "{mode:?}");
    }
}

/// The last log line of a refused configuration.
fn refusal(mode: Mode, config: &str) -> String {
    match launch(mode, config, Host::builder()) {
        Err(Error::Rejected { logs, .. }) => logs.last().unwrap().message.clone(),
        Err(e) => panic!("{mode:?}: {e}"),
        Ok(_) => panic!("{mode:?}: {config} was accepted"),
    }
}

/// The 1-based line of the first line of `text` holding `needle`.
fn line_of(text: &str, needle: &str) -> usize {
    text.lines().position(|l| l.contains(needle)).unwrap() + 1
}

#[test]
fn errors_name_the_field_from_the_top_of_the_document_with_its_line() {
    for mode in MODES {
        let mut config = all_five();
        config["virtualServices"][0]["http"][1]["route"][0]["weight"] = json!("eighty");
        let text = serde_json::to_string_pretty(&config).unwrap();
        let line = line_of(&text, "\"eighty\"");
        let message = refusal(mode, &text);
        assert!(
            message.starts_with(
                "meshwasm mesh: invalid configuration: virtualServices[0].http[1].route[0].weight: invalid type: string \"eighty\""
            ) && message.contains(&format!("(line {line}, column ")),
            "{mode:?}: {message}"
        );

        let mut config = all_five();
        config["rateLimit"]["token_bucket"]["fill_interval"] = json!("soon");
        let text = serde_json::to_string_pretty(&config).unwrap();
        let message = refusal(mode, &text);
        assert!(
            message.starts_with(
                "meshwasm mesh: invalid configuration: rateLimit.token_bucket.fill_interval: "
            ),
            "{mode:?}: {message}"
        );

        // A value the plan refuses after parsing, in the second of two specs.
        let mut config = all_five();
        let mut second = canary()[0].clone();
        second["hosts"] = json!(["ratings"]);
        second["http"][0]["match"][0]["headers"]["end-user"] = json!({"regex": "(jason"});
        config["virtualServices"]
            .as_array_mut()
            .unwrap()
            .push(second);
        let message = refusal(mode, &config.to_string());
        assert!(
            message.starts_with(
                "meshwasm mesh: invalid configuration: virtualServices[1].http[0].match[0].headers.end-user.regex: regex \"(jason\" is not supported"
            ),
            "{mode:?}: {message}"
        );

        let message = refusal(mode, r#"{"virtualService": []}"#);
        assert!(
            message.contains(
                "virtualService: unknown field `virtualService`, expected one of `virtualServices`"
            ),
            "{mode:?}: {message}"
        );
        let message = refusal(mode, "{}");
        assert!(
            message.ends_with("is required: give at least one of virtualServices, authorization, rateLimit and telemetry"),
            "{mode:?}: {message}"
        );
    }
}

#[test]
fn notes_and_the_summary_name_each_part() {
    for mode in MODES {
        let mut config = all_five();
        config["virtualServices"][0]["gateways"] = json!(["mesh"]);
        let host = start(mode, &config);
        let warnings = host.log_lines(LogLevel::Warn);
        assert_eq!(
            warnings,
            [
                "meshwasm mesh: virtualServices[0].gateways: not evaluated: the filter applies where it is deployed"
            ],
            "{mode:?}: each note once, and none saying the fault is left to another filter"
        );
        let info = host.log_lines(LogLevel::Info);
        let summary = info
            .iter()
            .find(|l| l.starts_with("meshwasm mesh: configured: "))
            .unwrap();
        for part in [
            "access: ",
            "rate limit: ",
            "fault: ",
            "routing: ",
            "telemetry: ",
        ] {
            assert!(summary.contains(part), "{mode:?}: {summary}");
        }
    }
}

#[test]
fn the_buckets_are_keyed_by_the_rate_limit_part_alone() {
    for mode in MODES {
        let config = json!({"rateLimit": local_limit(1), "telemetry": {}});
        let mut first = start(mode, &config);
        let (stream, action) = request(&mut first, "GET", &[]);
        assert_eq!(finish(&mut first, stream, action), 200, "{mode:?}");
        // Another worker, or a new configuration, whose other parts differ:
        // it draws on the same bucket, which is empty.
        let changed = json!({"rateLimit": local_limit(1), "telemetry": {"metrics": []}});
        let mut second = start_on(mode, &changed, Host::builder().proxy(&first.proxy()));
        let (stream, action) = request(&mut second, "GET", &[]);
        assert_eq!(finish(&mut second, stream, action), 429, "{mode:?}");
        // A different rate limit starts full.
        let other = json!({"rateLimit": local_limit(2), "telemetry": {}});
        let mut third = start_on(mode, &other, Host::builder().proxy(&first.proxy()));
        let (stream, action) = request(&mut third, "GET", &[]);
        assert_eq!(finish(&mut third, stream, action), 200, "{mode:?}");
    }
}
