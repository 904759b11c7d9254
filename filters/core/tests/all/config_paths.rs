//! `config::parse` finds an error's field path from where serde_json
//! stopped, instead of tracking it while deserializing (which cost a third
//! of a filter's module). serde_path_to_error, the tracking deserializer
//! the filters used before, is the reference: on every mutation of real
//! documents (each value replaced by each wrong type, each object given an
//! unknown field, each field removed), compact and pretty-printed, the
//! two report the same path.

use meshwasm_core::authz::policy::AuthorizationPolicy;
use meshwasm_core::config::{self, Document};
use meshwasm_core::rate_limit::config::{GlobalRateLimit, LocalRateLimit};
use meshwasm_core::telemetry::config::TelemetrySpec;
use meshwasm_core::virtual_service::VirtualService;
use serde::de::DeserializeOwned;
use serde_json::{Value, json};

const DOC: Document = Document {
    name: "a test document",
    example: "{}",
    list_key: None,
};

fn virtual_service() -> Value {
    json!({
        "hosts": ["reviews", "reviews.shop.svc.cluster.local"],
        "http": [
            {"name": "jason",
             "match": [{"headers": {"end-user": {"exact": "jason"}}, "uri": {"prefix": "/api"}, "ignoreUriCase": true}],
             "fault": {"delay": {"percentage": {"value": 10.5}, "fixedDelay": "7s"},
                       "abort": {"httpStatus": 500, "percentage": {"value": 1}}},
             "route": [{"destination": {"host": "reviews", "subset": "v2", "port": {"number": 9080}}, "weight": 100,
                        "headers": {"request": {"set": {"x-a": "b"}, "remove": ["x-c"]}}}],
             "retries": {"attempts": 3, "perTryTimeout": "2s", "retryOn": "5xx"},
             "timeout": "10s"},
            {"route": [{"destination": {"host": "reviews", "subset": "v1"}, "weight": 80},
                       {"destination": {"host": "reviews", "subset": "v3"}, "weight": 20}]}
        ]
    })
}

fn authorization_policy() -> Value {
    json!({
        "action": "ALLOW",
        "rules": [
            {"from": [{"source": {"principals": ["cluster.local/ns/default/sa/sleep"], "notIpBlocks": ["10.0.0.0/8"]}}],
             "to": [{"operation": {"methods": ["GET"], "paths": ["/info*"], "ports": ["8000"]}}],
             "when": [{"key": "request.headers[version]", "values": ["v1", "v2"]}]}
        ]
    })
}

fn local_rate_limit() -> Value {
    json!({
        "stat_prefix": "http_local_rate_limiter",
        "token_bucket": {"max_tokens": 10, "tokens_per_fill": 10, "fill_interval": "60s"},
        "filter_enabled": {"runtime_key": "local_rate_limit_enabled", "default_value": {"numerator": 100, "denominator": "HUNDRED"}},
        "filter_enforced": {"default_value": {"numerator": 100, "denominator": "HUNDRED"}},
        "response_headers_to_add": [{"append_action": "OVERWRITE_IF_EXISTS_OR_ADD", "header": {"key": "x-rate-limited", "value": "TOO_MANY_REQUESTS"}}],
        "descriptors": [{"entries": [{"key": "client", "value": "a"}], "token_bucket": {"max_tokens": 1, "tokens_per_fill": 1, "fill_interval": "1s"}}],
        "rate_limits": [{"actions": [{"request_headers": {"header_name": "x-client", "descriptor_key": "client"}}]}]
    })
}

fn global_rate_limit() -> Value {
    json!({
        "domain": "bench",
        "rate_limit_service": {"grpc_service": {"envoy_grpc": {"cluster_name": "rls"}}, "transport_api_version": "V3"},
        "timeout": "1s",
        "failure_mode_deny": true,
        "rate_limits": [{"actions": [{"remote_address": {}}, {"generic_key": {"descriptor_value": "x"}}]}]
    })
}

fn telemetry() -> Value {
    json!({
        "metrics": [{"providers": [{"name": "prometheus"}],
                     "overrides": [{"match": {"metric": "REQUEST_COUNT", "mode": "CLIENT_AND_SERVER"},
                                    "tagOverrides": {"request_host": {"operation": "UPSERT", "value": "request.host"}}}]}],
        "accessLogging": [{"providers": [{"name": "envoy"}], "filter": {"expression": "response.code >= 400"}}]
    })
}

#[test]
fn paths_match_serde_path_to_error_on_every_mutation() {
    let mut compared = 0;
    let mut mismatches = Vec::new();
    compared += compare::<VirtualService>(&virtual_service(), &mut mismatches);
    compared += compare::<AuthorizationPolicy>(&authorization_policy(), &mut mismatches);
    compared += compare::<LocalRateLimit>(&local_rate_limit(), &mut mismatches);
    compared += compare::<GlobalRateLimit>(&global_rate_limit(), &mut mismatches);
    compared += compare::<TelemetrySpec>(&telemetry(), &mut mismatches);
    assert!(compared > 1_000, "only {compared} errors compared");
    assert!(
        mismatches.is_empty(),
        "{} of {compared} paths differ, first ones:\n{}",
        mismatches.len(),
        mismatches[..mismatches.len().min(40)].join("\n")
    );
}

/// Compares every mutation of `valid`; returns how many errors were compared.
fn compare<T: DeserializeOwned>(valid: &Value, mismatches: &mut Vec<String>) -> usize {
    let text = valid.to_string();
    assert!(
        config::parse::<T>(text.as_bytes(), DOC).is_ok(),
        "the sample does not parse: {:?}",
        config::parse::<T>(text.as_bytes(), DOC).err()
    );
    let mut compared = 0;
    for mutated in mutations(valid) {
        for text in [
            mutated.to_string(),
            serde_json::to_string_pretty(&mutated).unwrap(),
        ] {
            let ours = config::parse::<T>(text.as_bytes(), DOC).err();
            let mut de = serde_json::Deserializer::from_slice(text.as_bytes());
            let reference = serde_path_to_error::deserialize::<_, T>(&mut de).err();
            match (ours, reference) {
                (None, None) => {}
                (Some(ours), Some(reference)) => {
                    compared += 1;
                    let expected = match reference.path().to_string() {
                        root if root == "." => String::new(),
                        path => path,
                    };
                    if ours.path != expected
                        && !deeper_into_enum(&ours.path, &expected, &reference.inner().to_string())
                    {
                        mismatches.push(format!(
                            "  ours {:?}, serde_path_to_error {expected:?}: {} in {text}",
                            ours.path,
                            reference.inner()
                        ));
                    }
                }
                (ours, reference) => panic!("disagree on {text}: {ours:?} vs {reference:?}"),
            }
        }
    }
    compared
}

/// An enum of names given an object or a list: serde_path_to_error stops
/// at the field, the path here goes on to the key or element refused.
fn deeper_into_enum(ours: &str, expected: &str, message: &str) -> bool {
    let one_more = ours.strip_prefix(expected).is_some_and(|rest| {
        (rest.starts_with('.') && !rest[1..].contains(['.', '['])) || rest == "[0]"
    });
    let enum_like = message.starts_with("unknown variant")
        || message.starts_with("expected value")
        || message.starts_with("trailing characters");
    one_more && enum_like
}

/// Each value replaced by each wrong kind, each object with an unknown
/// field, each field removed.
fn mutations(valid: &Value) -> Vec<Value> {
    let mut out = Vec::new();
    let mut pointers = Vec::new();
    pointers_of(valid, String::new(), &mut pointers);
    let replacements = [
        json!("zz"),
        json!(7),
        json!(-1.5),
        json!(true),
        json!(null),
        json!([1]),
        json!({"zz": 1}),
    ];
    for pointer in &pointers {
        for replacement in &replacements {
            let mut doc = valid.clone();
            *doc.pointer_mut(pointer).unwrap() = replacement.clone();
            out.push(doc);
        }
        if let Some(Value::Object(map)) = valid.pointer(pointer) {
            let mut doc = valid.clone();
            if let Some(Value::Object(map)) = doc.pointer_mut(pointer) {
                map.insert("zzUnknown".into(), json!(1));
            }
            out.push(doc);
            for key in map.keys() {
                let mut doc = valid.clone();
                if let Some(Value::Object(map)) = doc.pointer_mut(pointer) {
                    map.remove(key);
                }
                out.push(doc);
            }
        }
    }
    out
}

fn pointers_of(value: &Value, at: String, out: &mut Vec<String>) {
    out.push(at.clone());
    match value {
        Value::Object(map) => {
            for (k, v) in map {
                pointers_of(
                    v,
                    format!("{at}/{}", k.replace('~', "~0").replace('/', "~1")),
                    out,
                );
            }
        }
        Value::Array(items) => {
            for (i, v) in items.iter().enumerate() {
                pointers_of(v, format!("{at}/{i}"), out);
            }
        }
        _ => {}
    }
}
