//! Pieces of configuration the tests and benchmarks share: a sidecar's
//! node, and the filter configurations several of them chain.

use serde_json::{Value, json};

/// Envoy's node as Istio's injector describes a pod of `app` version
/// `version` in namespace `shop`: the telemetry filter's labels come from it.
///
/// ```
/// let node = meshwasm_local::configs::sidecar_node("web", "v1");
/// assert_eq!(node["metadata"]["WORKLOAD_NAME"], "web-v1");
/// ```
pub fn sidecar_node(app: &str, version: &str) -> Value {
    let workload = format!("{app}-{version}");
    json!({
        "id": format!("sidecar~127.0.0.1~{workload}-7f9c.shop~shop.svc.cluster.local"),
        "metadata": {
            "NAME": format!("{workload}-7f9c"),
            "NAMESPACE": "shop",
            "WORKLOAD_NAME": workload,
            "LABELS": {"app": app, "version": version},
        },
    })
}

/// Envoy's `LocalRateLimit`, enforced on every request, with one bucket
/// of `tokens` refilled each second and the draft-03 `x-ratelimit-*`
/// headers on every answer (which show the bucket's state).
///
/// ```
/// let limit = meshwasm_local::configs::local_rate_limit("soak", 100);
/// assert_eq!(limit["token_bucket"]["max_tokens"], 100);
/// ```
pub fn local_rate_limit(stat_prefix: &str, tokens: u64) -> Value {
    json!({
        "stat_prefix": stat_prefix,
        "token_bucket": {"max_tokens": tokens, "tokens_per_fill": tokens, "fill_interval": "1s"},
        "filter_enabled": {"default_value": {"numerator": 100, "denominator": "HUNDRED"}},
        "filter_enforced": {"default_value": {"numerator": 100, "denominator": "HUNDRED"}},
        "enable_x_ratelimit_headers": "DRAFT_VERSION_03",
    })
}
