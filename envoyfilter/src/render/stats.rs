//! Envoy's `stats_config` for the telemetry filter: the `stats_tags` that
//! turn the labels encoded in its stat names (`reporter=.=source;.;...;.;
//! istio_requests_total`) into Prometheus labels, and Istio's histogram
//! buckets for its histograms.

use serde_json::{Value, json};

/// Istio's default histogram buckets (Envoy's own defaults), in the
/// metric's unit: milliseconds or bytes.
pub const ISTIO_BUCKETS: [f64; 19] = [
    0.5,
    1.0,
    5.0,
    10.0,
    25.0,
    50.0,
    100.0,
    250.0,
    500.0,
    1000.0,
    2500.0,
    5000.0,
    10000.0,
    30000.0,
    60000.0,
    300000.0,
    600000.0,
    1_800_000.0,
    3_600_000.0,
];

/// The `stats_tags` entry that extracts `label` from a stat name, in the
/// form Istio's bootstrap used for its Wasm stats plugin.
///
/// # Examples
///
/// ```
/// let tag = envoyfilter::render::stats::stats_tag("reporter");
/// assert_eq!(tag["tag_name"], "reporter");
/// assert_eq!(tag["regex"], r"(reporter=\.=(.*?);\.;)");
/// ```
pub fn stats_tag(label: &str) -> Value {
    json!({"tag_name": label, "regex": format!(r"({label}=\.=(.*?);\.;)")})
}

/// The bootstrap's `stats_config` for metrics with these labels: one tag
/// per label, and Istio's buckets for the telemetry filter's histograms.
/// Envoy's default tags stay on, so the rest of Envoy's stats keep their
/// Prometheus labels.
///
/// # Examples
///
/// ```
/// let config = envoyfilter::render::stats::stats_config(&["reporter".to_owned(), "response_code".to_owned()]);
/// assert_eq!(config["stats_tags"].as_array().unwrap().len(), 2);
/// assert_eq!(config["histogram_bucket_settings"][0]["buckets"][0], 0.5);
/// ```
pub fn stats_config(labels: &[String]) -> Value {
    json!({
        "stats_tags": labels.iter().map(|l| stats_tag(l)).collect::<Vec<_>>(),
        "histogram_bucket_settings": [{
            "match": {"safe_regex": {"regex": r"^wasmcustom\..*istio_(request_duration_milliseconds|request_bytes|response_bytes)$"}},
            "buckets": ISTIO_BUCKETS,
        }],
    })
}
