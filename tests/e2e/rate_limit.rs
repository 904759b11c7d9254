//! The rate-limit filter in Envoy, differentially: every case runs the
//! same `LocalRateLimit` typed config through Envoy's own
//! `envoy.filters.http.local_ratelimit` and through the Wasm filter, with
//! the same traffic, and compares what the clients and the upstream saw
//! and what the stats counted.

use meshwasm_artifacts::RATE_LIMIT_WASM;
use meshwasm_local::envoy::{self, Bootstrap, Envoy, WasmFilter};
use meshwasm_local::traffic::{Outcome, send, send_many};
use meshwasm_local::upstream::Upstream;
use serde_json::{Value, json};
use std::collections::BTreeMap;
use std::time::{Duration, Instant};

const LOCAL_TYPE: &str =
    "type.googleapis.com/envoy.extensions.filters.http.local_ratelimit.v3.LocalRateLimit";

/// A `LocalRateLimit` typed config, enabled and enforced at 100 %.
fn limit(fields: Value) -> Value {
    let mut config = json!({
        "@type": LOCAL_TYPE,
        "stat_prefix": "probe",
        "filter_enabled": {"default_value": {"numerator": 100, "denominator": "HUNDRED"}},
        "filter_enforced": {"default_value": {"numerator": 100, "denominator": "HUNDRED"}},
    });
    for (k, v) in fields.as_object().unwrap() {
        config[k] = v.clone();
    }
    config
}

/// Which implementation an Envoy runs.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Side {
    Native,
    Wasm,
}

struct Running {
    side: Side,
    envoy: Envoy,
    upstream: Upstream,
}

impl Running {
    async fn start(side: Side, config: &Value, workers: u32) -> Running {
        let upstream = Upstream::start("backend").await.unwrap();
        let bootstrap = Bootstrap::new(upstream.addr()).concurrency(workers);
        let bootstrap = match side {
            Side::Native => bootstrap.native_filter(json!({
                "name": "envoy.filters.http.local_ratelimit",
                "typed_config": config,
            })),
            Side::Wasm => bootstrap.filter(WasmFilter::new(
                "rate-limit",
                RATE_LIMIT_WASM,
                config.to_string(),
            )),
        };
        let envoy = Envoy::start(bootstrap).await.unwrap();
        Running {
            side,
            envoy,
            upstream,
        }
    }

    /// The filter's stats under `probe.http_local_rate_limit.`, by short name.
    async fn limit_stats(&self) -> BTreeMap<String, u64> {
        let prefix = match self.side {
            Side::Native => "probe.http_local_rate_limit.",
            Side::Wasm => "wasmcustom.probe.http_local_rate_limit.",
        };
        self.envoy
            .defined_stats()
            .await
            .unwrap()
            .into_iter()
            .filter_map(|(k, v)| k.strip_prefix(prefix).map(|s| (s.to_owned(), v)))
            .collect()
    }

    /// Connections each worker accepted, from Envoy's per-worker listener stats.
    async fn connections_per_worker(&self) -> Vec<u64> {
        let stats = self.envoy.stats().await.unwrap();
        let mut per_worker: Vec<(String, u64)> = stats
            .into_iter()
            .filter(|(k, _)| {
                k.starts_with("listener.127.0.0.1_")
                    && k.contains(".worker_")
                    && k.ends_with(".downstream_cx_total")
            })
            .collect();
        per_worker.sort();
        per_worker.into_iter().map(|(_, v)| v).collect()
    }
}

/// A request with no headers of its own.
const NONE: &[(&str, &str)] = &[];

/// Both sides, each in its own Envoy.
async fn both(config: &Value) -> [Running; 2] {
    [
        Running::start(Side::Native, config, 1).await,
        Running::start(Side::Wasm, config, 1).await,
    ]
}

/// What a client and the upstream saw of one request, minus what differs
/// between any two Envoys (dates, request ids, timings).
#[derive(Debug, Clone, PartialEq, Eq)]
struct Seen {
    status: u16,
    body: String,
    headers: Vec<(String, String)>,
}

fn seen(out: &Outcome) -> Seen {
    let mut headers: Vec<(String, String)> = out
        .headers
        .iter()
        .filter(|(n, _)| {
            let n = n.as_str();
            n.starts_with("x-ratelimit")
                || n.starts_with("x-rl")
                || n == "content-type"
                || n == "retry-after"
        })
        .map(|(n, v)| (n.to_string(), v.to_str().unwrap_or("?").to_owned()))
        .collect();
    headers.sort();
    let body = if out.upstream().is_some() {
        "<upstream>".to_owned()
    } else {
        out.body.clone()
    };
    Seen {
        status: out.status,
        body,
        headers,
    }
}

/// Sends the same sequence through both sides and asserts equal answers,
/// equal upstream views of `upstream_header` and equal stats; returns the
/// statuses, for the test to say what Envoy answered.
async fn same_answers(
    config: Value,
    requests: &[&[(&str, &str)]],
    upstream_header: Option<&str>,
) -> Vec<u16> {
    let sides = both(&config).await;
    let http = envoy::client().unwrap();
    let mut seen_by = Vec::new();
    for side in &sides {
        let mut answers = Vec::new();
        for headers in requests {
            let mut request = http.get(side.envoy.url("/"));
            for (n, v) in *headers {
                request = request.header(*n, *v);
            }
            answers.push(seen(&send(request).await.unwrap()));
        }
        let upstream: Vec<Option<String>> = side
            .upstream
            .seen()
            .iter()
            .map(|s| upstream_header.and_then(|h| s.header(h).map(str::to_owned)))
            .collect();
        seen_by.push((answers, upstream, side.limit_stats().await));
    }
    let (native, wasm) = (&seen_by[0], &seen_by[1]);
    for (i, (n, w)) in native.0.iter().zip(&wasm.0).enumerate() {
        assert_eq!(n, w, "request {i}: native (left) and Wasm (right) differ");
    }
    assert_eq!(native.1, wasm.1, "what the upstream received");
    assert_eq!(native.2, wasm.2, "stats: native (left), Wasm (right)");
    println!(
        "statuses {:?}, stats {:?}",
        native.0.iter().map(|s| s.status).collect::<Vec<_>>(),
        native.2
    );
    native.0.iter().map(|s| s.status).collect()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_burst_on_the_default_bucket_gets_the_same_answers_and_headers() {
    let config = limit(json!({
        "token_bucket": {"max_tokens": 3, "tokens_per_fill": 1, "fill_interval": "600s"},
        "enable_x_ratelimit_headers": "DRAFT_VERSION_03",
        "response_headers_to_add": [{"header": {"key": "x-rl", "value": "denied"}}],
    }));
    let statuses = same_answers(config, &[NONE; 6], None).await;
    assert_eq!(statuses, [200, 200, 200, 429, 429, 429]);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn descriptors_draw_per_client_and_on_the_default_bucket_in_envoys_order() {
    let config = limit(json!({
        "token_bucket": {"max_tokens": 4, "tokens_per_fill": 1, "fill_interval": "600s"},
        "enable_x_ratelimit_headers": "DRAFT_VERSION_03",
        "status": {"code": "ServiceUnavailable"},
        "descriptors": [
            {"entries": [{"key": "client", "value": ""}],
             "token_bucket": {"max_tokens": 2, "tokens_per_fill": 1, "fill_interval": "600s"}},
            {"entries": [{"key": "client", "value": "vip"}],
             "token_bucket": {"max_tokens": 3, "tokens_per_fill": 1, "fill_interval": "300s"}},
            {"entries": [{"key": "path", "value": "/"}, {"key": "ua", "value": "crawler"}],
             "token_bucket": {"max_tokens": 1, "tokens_per_fill": 1, "fill_interval": "600s"}},
        ],
        "rate_limits": [
            {"actions": [{"request_headers": {"header_name": "x-client", "descriptor_key": "client"}}]},
            {"actions": [
                {"generic_key": {"descriptor_key": "path", "descriptor_value": "/"}},
                {"header_value_match": {"descriptor_key": "ua", "descriptor_value": "crawler",
                  "headers": [{"name": "user-agent", "string_match": {"contains": "bot", "ignore_case": true}}]}}
            ]},
        ],
    }));
    let a: &[(&str, &str)] = &[("x-client", "a")];
    let b: &[(&str, &str)] = &[("x-client", "b")];
    let vip: &[(&str, &str)] = &[("x-client", "vip")];
    let bot: &[(&str, &str)] = &[("x-client", "c"), ("user-agent", "GoogleBot/2.1")];
    let anon: &[(&str, &str)] = &[];
    let statuses = same_answers(
        config,
        &[a, a, a, b, vip, vip, bot, bot, anon, b, vip, anon],
        None,
    )
    .await;
    // a: two from its bucket, then its own limit; vip: its exact descriptor;
    // after four, the default bucket is empty for everyone.
    assert_eq!(
        statuses,
        [200, 200, 503, 200, 200, 503, 503, 503, 503, 503, 503, 503]
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn without_always_consume_matched_requests_leave_the_default_bucket_alone() {
    let config = limit(json!({
        "token_bucket": {"max_tokens": 1, "tokens_per_fill": 1, "fill_interval": "600s"},
        "always_consume_default_token_bucket": false,
        "enable_x_ratelimit_headers": "DRAFT_VERSION_03",
        "descriptors": [{"entries": [{"key": "remote_address", "value": ""}],
             "token_bucket": {"max_tokens": 3, "tokens_per_fill": 1, "fill_interval": "600s"}}],
        "rate_limits": [{"actions": [{"remote_address": {}}]}],
    }));
    let statuses = same_answers(config, &[NONE; 5], None).await;
    assert_eq!(
        statuses,
        [200, 200, 200, 429, 429],
        "three from the address's bucket"
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn shadow_mode_counts_limits_and_adds_request_headers_without_denying() {
    let config = limit(json!({
        "token_bucket": {"max_tokens": 2, "tokens_per_fill": 1, "fill_interval": "600s"},
        "filter_enforced": {"default_value": {"numerator": 0, "denominator": "HUNDRED"}},
        "enable_x_ratelimit_headers": "DRAFT_VERSION_03",
        "request_headers_to_add_when_not_enforced": [
            {"header": {"key": "x-limited", "value": "true"}, "append_action": "OVERWRITE_IF_EXISTS_OR_ADD"}
        ],
    }));
    let statuses = same_answers(config, &[NONE; 5], Some("x-limited")).await;
    assert_eq!(statuses, [200; 5]);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_descriptor_in_shadow_mode_lets_its_requests_through() {
    let config = limit(json!({
        "token_bucket": {"max_tokens": 100, "tokens_per_fill": 1, "fill_interval": "600s"},
        "descriptors": [{"entries": [{"key": "k", "value": "v"}], "shadow_mode": true,
             "token_bucket": {"max_tokens": 1, "tokens_per_fill": 1, "fill_interval": "600s"}}],
        "rate_limits": [{"actions": [{"generic_key": {"descriptor_key": "k", "descriptor_value": "v"}}]}],
    }));
    let statuses = same_answers(config, &[NONE; 4], None).await;
    assert_eq!(statuses, [200; 4]);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn unset_filter_enabled_looks_at_nothing() {
    let mut config = limit(json!({
        "token_bucket": {"max_tokens": 1, "tokens_per_fill": 1, "fill_interval": "600s"},
        "enable_x_ratelimit_headers": "DRAFT_VERSION_03",
    }));
    config.as_object_mut().unwrap().remove("filter_enabled");
    let statuses = same_answers(config, &[NONE; 3], None).await;
    assert_eq!(statuses, [200; 3]);
}

/// Refill is continuous: paced requests get tokens as they accrue. The
/// counts may differ by a token at a boundary, since two Envoys cannot
/// receive requests at the same instants.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn refill_admits_the_same_number_over_time() {
    let config = limit(json!({
        "token_bucket": {"max_tokens": 2, "tokens_per_fill": 1, "fill_interval": "0.25s"},
    }));
    let sides = both(&config).await;
    let http = envoy::client().unwrap();
    let mut admitted = Vec::new();
    for side in &sides {
        let start = Instant::now();
        let mut ok = 0;
        for i in 0..40u32 {
            tokio::time::sleep_until((start + Duration::from_millis(50) * i).into()).await;
            let out = send(http.get(side.envoy.url("/"))).await.unwrap();
            ok += usize::from(out.status == 200);
        }
        admitted.push(ok);
    }
    // 2 at the start, then one per 250 ms over the 1.95 s of sending.
    let expected = 2 + 1950 / 250;
    for (side, ok) in sides.iter().map(|s| s.side).zip(&admitted) {
        assert!(
            ok.abs_diff(expected) <= 1,
            "{side:?} admitted {ok}, expected {expected} ± 1"
        );
    }
    assert!(admitted[0].abs_diff(admitted[1]) <= 1, "{admitted:?}");
}

/// Sends `count` requests over `connections` connections of their own.
async fn burst(side: &Running, count: usize, connections: usize) -> usize {
    let url = side.envoy.url("/");
    let clients: Vec<reqwest::Client> =
        (0..connections).map(|_| envoy::client().unwrap()).collect();
    let outcomes = send_many(count, connections, move |i| {
        clients[i % clients.len()].get(&url)
    })
    .await
    .unwrap();
    outcomes.iter().filter(|o| o.status == 200).count()
}

/// The limit holds across Envoy's workers: one bucket, however the
/// connections spread.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_burst_over_every_worker_admits_exactly_the_bucket() {
    let config = limit(json!({
        "token_bucket": {"max_tokens": 100, "tokens_per_fill": 1, "fill_interval": "3600s"},
    }));
    for workers in [2, 4] {
        for side in [Side::Native, Side::Wasm] {
            let running = Running::start(side, &config, workers).await;
            let admitted = burst(&running, 1000, 32).await;
            let spread = running.connections_per_worker().await;
            assert_eq!(spread.len(), workers as usize, "{spread:?}");
            assert!(
                spread.iter().all(|c| *c > 0),
                "every worker took connections: {spread:?}"
            );
            println!(
                "burst of 1000, bucket 100, {workers} workers, connections per worker {spread:?}: {side:?} admitted {admitted}"
            );
            assert_eq!(admitted, 100, "{side:?} at {workers} workers");
        }
    }
}
