//! The rate-limit plan: Envoy's LocalRateLimit read with paths in every
//! error, and decisions drawn from buckets in (memory) shared data.

use meshwasm_core::percent::Rng;
use meshwasm_core::plan::Plan;
use meshwasm_core::rate_limit::{RateHeaders, RateLimitPlan, Verdict};
use meshwasm_core::request::StaticRequest;
use meshwasm_core::shared_counter::MemorySharedData;
use serde_json::{Value, json};
use wasm_bindgen_test::wasm_bindgen_test;

/// Nanoseconds since the epoch, a realistic "now".
const NOW: u64 = 1_700_000_000_000_000_000;
const SEC: u64 = 1_000_000_000;

fn config(fields: Value) -> Value {
    let mut c = json!({
        "stat_prefix": "rl",
        "token_bucket": {"max_tokens": 2, "tokens_per_fill": 1, "fill_interval": "1s"},
        "filter_enabled": {"default_value": {"numerator": 100}},
        "filter_enforced": {"default_value": {"numerator": 100}},
    });
    for (k, v) in fields.as_object().unwrap() {
        c[k] = v.clone();
    }
    c
}

fn plan(fields: Value) -> RateLimitPlan {
    RateLimitPlan::from_json(config(fields).to_string().as_bytes()).unwrap()
}

fn error(fields: Value) -> String {
    RateLimitPlan::from_json(config(fields).to_string().as_bytes())
        .unwrap_err()
        .to_string()
}

#[wasm_bindgen_test(unsupported = test)]
fn bad_buckets_and_unknown_actions_are_refused_by_path() {
    let cases = [
        (
            json!({"token_bucket": {"max_tokens": 1, "fill_interval": "0s"}}),
            "token_bucket.fill_interval: must be above 0s",
        ),
        (
            json!({"token_bucket": {"max_tokens": 0, "fill_interval": "1s"}}),
            "token_bucket.max_tokens: must be above 0",
        ),
        (
            json!({"token_bucket": {"max_tokens": 1, "fill_interval": "1m"}}),
            "token_bucket.fill_interval: \"1m\" is not a protobuf duration",
        ),
        (
            json!({"descriptors": [{"entries": [{"key": "k", "value": "v"}]}],
                "rate_limits": [{"actions": [{"generic_key": {"descriptor_value": "v"}}]}]}),
            "descriptors[0].token_bucket: is required: every descriptor has its own token bucket",
        ),
        (
            json!({"rate_limits": [{"actions": [{"remote_adress": {}}]}]}),
            "rate_limits[0].actions[0].remote_adress: unknown field `remote_adress`",
        ),
        (
            json!({"rate_limits": [{"actions": [{"source_cluster": {}}]}]}),
            "rate_limits[0].actions[0].source_cluster: is not supported",
        ),
        (
            json!({"rate_limits": [{"actions": [{}]}]}),
            "rate_limits[0].actions[0]: is required: one of requestHeaders",
        ),
        (
            json!({"descriptors": [{"entries": [{"key": "k", "value": ""}],
                "token_bucket": {"max_tokens": 1, "fill_interval": "1s"}}]}),
            "rate_limits: is required: descriptors are matched",
        ),
        (json!({"stat_prefix": ""}), "stat_prefix: is required"),
        (
            json!({"local_cluster_rate_limit": {}}),
            "local_cluster_rate_limit: is not supported",
        ),
        (
            json!({"response_headers_to_add": [{"header": {"key": "x-id", "value": "%REQ(x-id)%"}}]}),
            "response_headers_to_add[0].header.value: is not supported: Envoy's format commands",
        ),
        (
            json!({"status": {"code": "TooManyRequestz"}}),
            "status.code: \"TooManyRequestz\" is not one of Envoy's StatusCode names",
        ),
        (
            json!({"@type": "type.googleapis.com/udpa.type.v1.TypedStruct"}),
            "@type: a TypedStruct wraps the config: pass its `value`",
        ),
    ];
    for (fields, want) in cases {
        let got = error(fields.clone());
        assert!(
            got.starts_with(want),
            "{fields}:\n got  {got}\n want {want}..."
        );
    }
}

#[wasm_bindgen_test(unsupported = test)]
fn camel_case_and_proto_names_read_the_same_and_errors_use_the_users_spelling() {
    let camel = json!({
        "statPrefix": "rl",
        "tokenBucket": {"maxTokens": 1, "tokensPerFill": 1, "fillInterval": "0.5s"},
        "filterEnabled": {"defaultValue": {"numerator": 100}},
        "filterEnforced": {"defaultValue": {"numerator": 100}},
        "enableXRatelimitHeaders": "DRAFT_VERSION_03",
    });
    let plan = RateLimitPlan::from_json(camel.to_string().as_bytes()).unwrap();
    assert!(plan.x_ratelimit_headers());
    assert_eq!(plan.metrics()[1].name(), "rl.http_local_rate_limit.ok");
    let mut bad = camel;
    bad["tokenBucket"]["fillInterval"] = json!("0s");
    let err = RateLimitPlan::from_json(bad.to_string().as_bytes()).unwrap_err();
    assert_eq!(err.path, "tokenBucket.fillInterval");
}

fn global(fields: Value) -> Value {
    let mut c = json!({
        "domain": "site",
        "rate_limit_service": {
            "grpc_service": {"envoy_grpc": {"cluster_name": "rls"}},
            "transport_api_version": "V3",
        },
        "rate_limits": [{"actions": [{"remote_address": {}}]}],
    });
    for (k, v) in fields.as_object().unwrap() {
        c[k] = v.clone();
    }
    c
}

#[wasm_bindgen_test(unsupported = test)]
fn a_global_config_is_told_apart_by_its_service_and_checked_by_path() {
    let plan = RateLimitPlan::from_json(global(json!({})).to_string().as_bytes()).unwrap();
    assert_eq!(plan.global().unwrap().cluster(), "rls");
    assert!(
        plan.metrics().is_empty(),
        "the global stats are named per cluster at run time"
    );
    let cases = [
        (
            json!({"rate_limit_service": {"grpc_service": {"envoy_grpc": {"cluster_name": "rls"}}}}),
            "rate_limit_service.transport_api_version: must be V3",
        ),
        (
            json!({"rate_limit_service": {"grpc_service": {"envoy_grpc": {}}, "transport_api_version": "V3"}}),
            "rate_limit_service.grpc_service.envoy_grpc.cluster_name: is required",
        ),
        (
            json!({"rate_limit_service": {"grpc_service": {"google_grpc": {}}, "transport_api_version": "V3"}}),
            "rate_limit_service.grpc_service.google_grpc: is not supported",
        ),
        (json!({"rate_limits": []}), "rate_limits: is required"),
        (
            json!({"timeout": "20ms"}),
            "timeout: \"20ms\" is not a protobuf duration",
        ),
        (
            json!({"request_type": "outside"}),
            "request_type: \"outside\" is not internal, external or both",
        ),
    ];
    for (fields, want) in cases {
        let got = RateLimitPlan::from_json(global(fields.clone()).to_string().as_bytes())
            .unwrap_err()
            .to_string();
        assert!(
            got.starts_with(want),
            "{fields}:\n got  {got}\n want {want}..."
        );
    }
    let combined = json!({"local": config(json!({})), "global": global(json!({}))});
    let plan = RateLimitPlan::from_json(combined.to_string().as_bytes()).unwrap();
    assert!(plan.global().is_some());
    assert!(
        plan.summary().contains("; then global"),
        "{}",
        plan.summary()
    );
}

/// Envoy reads `proxy_grpc_call`'s service as a serialized `GrpcService`
/// when it parses as one, which is how a call gets its own `:authority`.
#[wasm_bindgen_test(unsupported = test)]
fn an_authority_is_sent_as_a_serialized_grpc_service() {
    let plan = RateLimitPlan::from_json(
        global(json!({"rate_limit_service": {
            "grpc_service": {"envoy_grpc": {"cluster_name": "rls", "authority": "rl.example"}},
            "transport_api_version": "V3",
        }}))
        .to_string()
        .as_bytes(),
    )
    .unwrap();
    let service = plan.global().unwrap();
    assert_eq!(service.cluster(), "rls");
    let call = service
        .call(
            &mut StaticRequest::get("/").with_source("10.0.0.9:1234"),
            &mut Rng::with_seed(1),
        )
        .unwrap();
    // GrpcService { envoy_grpc (1) { cluster_name (1): "rls", authority (2): "rl.example" } }
    let want = b"\x0a\x11\x0a\x03rls\x12\x0arl.example";
    assert_eq!(call.service.as_bytes(), want);
}

#[wasm_bindgen_test(unsupported = test)]
fn the_service_is_asked_with_the_request_descriptors_and_its_answer_carried_out() {
    use meshwasm_core::rate_limit::global::{Answer, Stat};
    use meshwasm_core::rate_limit::rls::{self, Code, DescriptorStatus, Limit};
    let plan = RateLimitPlan::from_json(
        global(json!({"enable_x_ratelimit_headers": "DRAFT_VERSION_03"}))
            .to_string()
            .as_bytes(),
    )
    .unwrap();
    let service = plan.global().unwrap();
    let mut rng = Rng::with_seed(1);
    let call = service
        .call(
            &mut StaticRequest::get("/").with_source("10.0.0.9:1234"),
            &mut rng,
        )
        .unwrap();
    assert_eq!(
        call.message,
        rls::encode_request(
            "site",
            &[vec![("remote_address".into(), "10.0.0.9".into())]]
        )
    );
    assert_eq!(call.timeout, std::time::Duration::from_millis(20));
    assert_eq!(
        call.service, "rls",
        "without an authority, the cluster's name"
    );
    assert_eq!(
        service.call(&mut StaticRequest::get("/"), &mut rng),
        None,
        "no address, no descriptor, no call"
    );

    let over = rls::Response {
        overall_code: Code::OverLimit,
        statuses: vec![DescriptorStatus {
            code: Code::OverLimit,
            limit: Some(Limit {
                requests_per_unit: 10,
                window_secs: Some(60),
                name: String::new(),
            }),
            remaining: 0,
            until_reset: Some(std::time::Duration::from_secs(42)),
        }],
        ..Default::default()
    };
    let (answer, stats) = service.answer(Some(over), &mut rng);
    assert_eq!(stats, [Stat::OverLimit]);
    let Answer::Deny {
        status,
        headers,
        body,
        details,
        ..
    } = answer
    else {
        panic!("{answer:?}")
    };
    assert_eq!(
        (status, details, body.len()),
        (429, "request_rate_limited", 0)
    );
    assert!(
        headers.contains(&("x-envoy-ratelimited".into(), "true".into())),
        "{headers:?}"
    );
    assert!(
        headers.contains(&("x-ratelimit-limit".into(), "10, 10;w=60".into())),
        "{headers:?}"
    );
    assert!(
        headers.contains(&("x-ratelimit-reset".into(), "42".into())),
        "{headers:?}"
    );

    let (answer, stats) = service.answer(None, &mut rng);
    assert_eq!(stats, [Stat::Error, Stat::FailureModeAllowed]);
    assert!(matches!(answer, Answer::Allow { .. }));
    let deny_on_failure = RateLimitPlan::from_json(
        global(json!({"failure_mode_deny": true}))
            .to_string()
            .as_bytes(),
    )
    .unwrap();
    let (answer, stats) = deny_on_failure.global().unwrap().answer(None, &mut rng);
    assert_eq!(stats, [Stat::Error]);
    assert!(
        matches!(
            answer,
            Answer::Deny {
                status: 500,
                details: "rate_limiter_error",
                ..
            }
        ),
        "{answer:?}"
    );
}

fn decide(
    plan: &RateLimitPlan,
    store: &MemorySharedData,
    req: &mut StaticRequest,
    at: u64,
) -> (Verdict, Option<RateHeaders>) {
    let d = plan.decide(req, store, "t", at, &mut Rng::with_seed(7));
    (d.verdict, d.rate_headers)
}

#[wasm_bindgen_test(unsupported = test)]
fn draft_03_headers_report_the_bucket_that_decided() {
    let plan = plan(json!({"enable_x_ratelimit_headers": "DRAFT_VERSION_03"}));
    let store = MemorySharedData::default();
    let mut req = StaticRequest::get("/");
    let h = |limit, remaining, reset_secs| {
        Some(RateHeaders {
            limit,
            remaining,
            reset_secs,
        })
    };
    assert_eq!(
        decide(&plan, &store, &mut req, NOW),
        (Verdict::Allowed, h(2, 1, 0))
    );
    assert_eq!(
        decide(&plan, &store, &mut req, NOW),
        (Verdict::Allowed, h(2, 0, 1))
    );
    assert_eq!(
        decide(&plan, &store, &mut req, NOW + SEC / 2),
        (Verdict::Denied, h(2, 0, 1))
    );
    assert_eq!(
        decide(&plan, &store, &mut req, NOW + SEC),
        (Verdict::Allowed, h(2, 0, 1))
    );
}

#[wasm_bindgen_test(unsupported = test)]
fn matched_descriptors_draw_slowest_first_and_a_denial_stops_the_drawing() {
    let plan = plan(json!({
        "token_bucket": {"max_tokens": 100, "fill_interval": "1s"},
        "descriptors": [
            {"entries": [{"key": "fast", "value": "x"}], "token_bucket": {"max_tokens": 5, "tokens_per_fill": 5, "fill_interval": "1s"}},
            {"entries": [{"key": "slow", "value": "x"}], "token_bucket": {"max_tokens": 1, "tokens_per_fill": 1, "fill_interval": "60s"}},
        ],
        "rate_limits": [
            {"actions": [{"generic_key": {"descriptor_key": "fast", "descriptor_value": "x"}}]},
            {"actions": [{"generic_key": {"descriptor_key": "slow", "descriptor_value": "x"}}]},
        ],
    }));
    let store = MemorySharedData::default();
    let mut req = StaticRequest::get("/");
    assert_eq!(decide(&plan, &store, &mut req, NOW).0, Verdict::Allowed);
    // The slow bucket is drawn first and is empty: neither the fast one
    // nor the default bucket lose a token.
    assert_eq!(decide(&plan, &store, &mut req, NOW).0, Verdict::Denied);
    let fast = meshwasm_core::shared_counter::SharedData::get(&store, "t.d0")
        .unwrap()
        .unwrap();
    assert_eq!(decide(&plan, &store, &mut req, NOW).0, Verdict::Denied);
    assert_eq!(
        meshwasm_core::shared_counter::SharedData::get(&store, "t.d0")
            .unwrap()
            .unwrap(),
        fast
    );
}

#[wasm_bindgen_test(unsupported = test)]
fn per_client_buckets_are_separate_and_unmatched_requests_use_the_default() {
    let plan = plan(json!({
        "token_bucket": {"max_tokens": 3, "fill_interval": "60s"},
        "descriptors": [{"entries": [{"key": "client", "value": ""}],
                         "token_bucket": {"max_tokens": 1, "fill_interval": "60s"}}],
        "rate_limits": [{"actions": [{"request_headers": {"header_name": "x-client", "descriptor_key": "client"}}]}],
    }));
    let store = MemorySharedData::default();
    plan.prepare(&store, "t").unwrap();
    let mut a = StaticRequest::get("/").with_header("x-client", "a");
    let mut b = StaticRequest::get("/").with_header("x-client", "b");
    let mut anon = StaticRequest::get("/");
    assert_eq!(decide(&plan, &store, &mut a, NOW).0, Verdict::Allowed);
    assert_eq!(decide(&plan, &store, &mut a, NOW).0, Verdict::Denied);
    assert_eq!(decide(&plan, &store, &mut b, NOW).0, Verdict::Allowed);
    assert_eq!(decide(&plan, &store, &mut anon, NOW).0, Verdict::Allowed);
    // a, b and anon each took one of the default bucket's three tokens.
    assert_eq!(decide(&plan, &store, &mut anon, NOW).0, Verdict::Denied);
    let keys_before = store.len();
    for i in 0..5_000 {
        let mut flood = StaticRequest::get("/").with_header("x-client", &format!("bot-{i}"));
        let _ = decide(&plan, &store, &mut flood, NOW);
    }
    assert_eq!(
        store.len(),
        keys_before,
        "a flood of client values adds no key"
    );
}

#[wasm_bindgen_test(unsupported = test)]
fn unenforced_limits_edit_the_request_as_append_action_says() {
    let plan = plan(json!({
        "token_bucket": {"max_tokens": 1, "fill_interval": "60s"},
        "filter_enforced": {"default_value": {"numerator": 0}},
        "request_headers_to_add_when_not_enforced": [
            {"header": {"key": "x-limited", "value": "1"}, "append_action": "ADD_IF_ABSENT"},
            {"header": {"key": "x-seen", "value": "1"}, "append_action": "OVERWRITE_IF_EXISTS"},
        ],
    }));
    let store = MemorySharedData::default();
    let mut req = StaticRequest::get("/");
    assert_eq!(decide(&plan, &store, &mut req, NOW).0, Verdict::Allowed);
    let d = plan.decide(&mut req, &store, "t", NOW, &mut Rng::with_seed(1));
    assert_eq!(d.verdict, Verdict::NotEnforced);
    let names: Vec<&str> = d.request_edits.iter().map(|e| e.name()).collect();
    assert_eq!(
        names,
        ["x-limited"],
        "x-seen is only overwritten when present"
    );
}

#[wasm_bindgen_test(unsupported = test)]
fn partial_enforcement_denies_about_that_share() {
    let plan = plan(json!({
        "token_bucket": {"max_tokens": 1, "fill_interval": "3600s"},
        "filter_enforced": {"default_value": {"numerator": 25}},
    }));
    let store = MemorySharedData::default();
    let mut rng = Rng::with_seed(3);
    let denied = (0..4_000)
        .filter(|_| {
            plan.decide(&mut StaticRequest::get("/"), &store, "t", NOW, &mut rng)
                .verdict
                == Verdict::Denied
        })
        .count();
    assert!(
        (900..1100).contains(&denied),
        "{denied} of 4000 denied at 25 %"
    );
}
