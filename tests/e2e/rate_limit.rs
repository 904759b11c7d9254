//! The rate-limit filter in Envoy, differentially: every case runs the
//! same `LocalRateLimit` typed config through Envoy's own
//! `envoy.filters.http.local_ratelimit` and through the Wasm filter, with
//! the same traffic, and compares what the clients and the upstream saw
//! and what the stats counted.

use crate::rls::{Mode, Rls};
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
                || n.starts_with("grpc-")
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
    same_answers_seen(config, requests, upstream_header)
        .await
        .iter()
        .map(|s| s.status)
        .collect()
}

/// [`same_answers`], returning what the native side's clients saw.
async fn same_answers_seen(
    config: Value,
    requests: &[&[(&str, &str)]],
    upstream_header: Option<&str>,
) -> Vec<Seen> {
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
    native.0.clone()
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

/// A gRPC client is denied with a gRPC status, UNAVAILABLE or, with
/// `rate_limited_as_resource_exhausted`, RESOURCE_EXHAUSTED.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn grpc_clients_are_denied_with_a_grpc_status() {
    let grpc: &[(&str, &str)] = &[("content-type", "application/grpc"), ("te", "trailers")];
    for exhausted in [false, true] {
        let config = limit(json!({
            "token_bucket": {"max_tokens": 1, "tokens_per_fill": 1, "fill_interval": "600s"},
            "rate_limited_as_resource_exhausted": exhausted,
        }));
        let seen = same_answers_seen(config, &[grpc, grpc], None).await;
        let grpc_status = |s: &Seen| {
            s.headers
                .iter()
                .find(|(n, _)| n == "grpc-status")
                .map(|(_, v)| v.clone())
        };
        let want = if exhausted { "8" } else { "14" };
        assert_eq!(
            (seen[1].status, grpc_status(&seen[1]).as_deref()),
            (200, Some(want)),
            "a gRPC denial is HTTP 200 with grpc-status"
        );
    }
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

// Global mode: Envoy's `ratelimit` filter and the Wasm filter, each asking
// its own instance of the tests' rate limit service (same limits).

const GLOBAL_TYPE: &str =
    "type.googleapis.com/envoy.extensions.filters.http.ratelimit.v3.RateLimit";

/// A `RateLimit` (global) typed config asking the `rls` cluster about the
/// client's address.
fn global(fields: Value) -> Value {
    let mut config = json!({
        "@type": GLOBAL_TYPE,
        "domain": "site",
        "rate_limit_service": {
            "grpc_service": {"envoy_grpc": {"cluster_name": "rls"}},
            "transport_api_version": "V3",
        },
        "timeout": "1s",
        "rate_limits": [{"actions": [{"remote_address": {}}]}],
    });
    for (k, v) in fields.as_object().unwrap() {
        config[k] = v.clone();
    }
    config
}

/// One side with its own rate limit service (`rls: None`: a cluster
/// where nothing listens).
struct GlobalSide {
    side: Side,
    envoy: Envoy,
    upstream: Upstream,
    rls: Option<Rls>,
}

async fn global_side(
    side: Side,
    config: &Value,
    rls: Option<Rls>,
    native_chain: &[Value],
) -> GlobalSide {
    let upstream = Upstream::start("backend").await.unwrap();
    let rls_addr = match &rls {
        Some(rls) => rls.addr(),
        // Bound and dropped: a port where nothing listens.
        None => std::net::TcpListener::bind("127.0.0.1:0")
            .unwrap()
            .local_addr()
            .unwrap(),
    };
    let mut bootstrap = Bootstrap::new(upstream.addr()).grpc_cluster("rls", rls_addr);
    bootstrap = match side {
        Side::Native => {
            for entry in native_chain {
                bootstrap = bootstrap.native_filter(entry.clone());
            }
            bootstrap
        }
        Side::Wasm => bootstrap.filter(WasmFilter::new(
            "rate-limit",
            RATE_LIMIT_WASM,
            config.to_string(),
        )),
    };
    let envoy = Envoy::start(bootstrap).await.unwrap();
    GlobalSide {
        side,
        envoy,
        upstream,
        rls,
    }
}

fn native_global(config: &Value) -> Value {
    json!({"name": "envoy.filters.http.ratelimit", "typed_config": config})
}

impl GlobalSide {
    /// The global filter's stats for the `upstream` cluster, by short name.
    async fn global_stats(&self) -> BTreeMap<String, u64> {
        let prefix = match self.side {
            Side::Native => "cluster.upstream.ratelimit.",
            Side::Wasm => "wasmcustom.cluster.upstream.ratelimit.",
        };
        self.envoy
            .stats()
            .await
            .unwrap()
            .into_iter()
            .filter_map(|(k, v)| k.strip_prefix(prefix).map(|s| (s.to_owned(), v)))
            .collect()
    }
}

/// Sends `count` GETs through both sides (each set up by `setup`) and
/// asserts the same answers, upstream views of `upstream_header`, and
/// global stats; returns the native side's statuses and stats.
async fn same_global_answers(
    config: Value,
    native_chain: Vec<Value>,
    rls: impl Fn() -> Option<Vec<(&'static str, u32)>>,
    count: usize,
    upstream_header: Option<&str>,
    prepare: impl Fn(&Rls),
) -> (Vec<u16>, BTreeMap<String, u64>) {
    let http = envoy::client().unwrap();
    let mut seen_by = Vec::new();
    for side in [Side::Native, Side::Wasm] {
        let service = match rls() {
            Some(limits) => Some(Rls::start(&limits).await),
            None => None,
        };
        if let Some(service) = &service {
            prepare(service);
        }
        let running = global_side(side, &config, service, &native_chain).await;
        let mut answers = Vec::new();
        for _ in 0..count {
            answers.push(seen(&send(http.get(running.envoy.url("/"))).await.unwrap()));
        }
        let upstream: Vec<Option<String>> = running
            .upstream
            .seen()
            .iter()
            .map(|s| upstream_header.and_then(|h| s.header(h).map(str::to_owned)))
            .collect();
        let asked = running
            .rls
            .as_ref()
            .map_or_else(Vec::new, |r| r.authorities());
        seen_by.push((answers, upstream, running.global_stats().await, asked));
    }
    let (native, wasm) = (&seen_by[0], &seen_by[1]);
    for (i, (n, w)) in native.0.iter().zip(&wasm.0).enumerate() {
        assert_eq!(n, w, "request {i}: native (left) and Wasm (right) differ");
    }
    assert_eq!(native.1, wasm.1, "what the upstream received");
    assert_eq!(native.2, wasm.2, "stats: native (left), Wasm (right)");
    assert_eq!(
        native.3, wasm.3,
        "the :authority of each call the service got"
    );
    (
        native.0.iter().map(|s| s.status).collect(),
        native.2.clone(),
    )
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn over_the_services_limit_both_answer_429_with_envoys_headers() {
    let config = global(json!({"enable_x_ratelimit_headers": "DRAFT_VERSION_03",
        "response_headers_to_add": [{"header": {"key": "x-rl", "value": "global"}}]}));
    let (statuses, stats) = same_global_answers(
        config.clone(),
        vec![native_global(&config)],
        || Some(vec![("remote_address=127.0.0.1", 3)]),
        5,
        None,
        |_| {},
    )
    .await;
    assert_eq!(statuses, [200, 200, 200, 429, 429]);
    assert_eq!(stats.get("ok"), Some(&3));
    assert_eq!(stats.get("over_limit"), Some(&2));
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_services_headers_reach_the_request_and_the_response() {
    let config = global(json!({}));
    let (statuses, _) = same_global_answers(
        config.clone(),
        vec![native_global(&config)],
        || Some(vec![]),
        2,
        Some("x-tenant-quota"),
        |rls| rls.add_headers(&[("x-rl", "checked")], &[("x-tenant-quota", "gold")]),
    )
    .await;
    assert_eq!(statuses, [200, 200]);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_service_that_is_down_fails_open_or_closed_as_configured() {
    let open = global(json!({}));
    let (statuses, stats) = same_global_answers(
        open.clone(),
        vec![native_global(&open)],
        || None,
        2,
        None,
        |_| {},
    )
    .await;
    assert_eq!(statuses, [200, 200]);
    assert_eq!(
        (stats.get("error"), stats.get("failure_mode_allowed")),
        (Some(&2), Some(&2))
    );

    let closed = global(json!({"failure_mode_deny": true, "status_on_error": {"code": 503}}));
    let (statuses, stats) = same_global_answers(
        closed.clone(),
        vec![native_global(&closed)],
        || None,
        2,
        None,
        |_| {},
    )
    .await;
    assert_eq!(statuses, [503, 503]);
    assert_eq!(stats.get("error"), Some(&2));
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_timeout_cuts_a_slow_service_short() {
    let config = global(json!({"timeout": "0.1s"}));
    let started = Instant::now();
    let (statuses, stats) = same_global_answers(
        config.clone(),
        vec![native_global(&config)],
        || Some(vec![("remote_address=127.0.0.1", 1)]),
        3,
        None,
        |rls| rls.set_mode(Mode::Slow(Duration::from_secs(2))),
    )
    .await;
    assert_eq!(statuses, [200, 200, 200], "a timed-out call fails open");
    assert_eq!(stats.get("error"), Some(&3));
    assert!(
        started.elapsed() < Duration::from_secs(4),
        "{:?}: the 2 s answers were not awaited",
        started.elapsed()
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_failing_service_counts_errors() {
    let config = global(json!({}));
    let (statuses, stats) = same_global_answers(
        config.clone(),
        vec![native_global(&config)],
        || Some(vec![]),
        2,
        None,
        |rls| rls.set_mode(Mode::Failing),
    )
    .await;
    assert_eq!(statuses, [200, 200]);
    assert_eq!(stats.get("failure_mode_allowed"), Some(&2));
}

/// Local first, as a cheap pre-filter in front of a global quota: the
/// service is only asked about requests the local bucket admitted. The
/// native side chains Envoy's two filters.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_local_bucket_screens_requests_before_the_service_is_asked() {
    let local = limit(
        json!({"token_bucket": {"max_tokens": 3, "tokens_per_fill": 1, "fill_interval": "600s"}}),
    );
    let remote = global(json!({}));
    let combined = json!({"local": local, "global": remote});
    let chain = vec![
        json!({"name": "envoy.filters.http.local_ratelimit", "typed_config": local}),
        native_global(&remote),
    ];
    let (statuses, _) = same_global_answers(
        combined,
        chain,
        || Some(vec![("remote_address=127.0.0.1", 2)]),
        5,
        None,
        |_| {},
    )
    .await;
    assert_eq!(
        statuses,
        [200, 200, 429, 429, 429],
        "the third is the service's denial, then the bucket's"
    );
}

/// Istio's global rate limit task names the service's cluster
/// `outbound|8081||ratelimit...` and sets `envoy_grpc.authority`, since a
/// name with `|` is no `:authority` an HTTP/2 server accepts.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_calls_carry_the_configured_authority() {
    let config = global(json!({"rate_limit_service": {
        "grpc_service": {"envoy_grpc": {
            "cluster_name": "rls",
            "authority": "ratelimit.default.svc.cluster.local",
        }},
        "transport_api_version": "V3",
    }}));
    let (statuses, _) = same_global_answers(
        config.clone(),
        vec![native_global(&config)],
        || Some(vec![("remote_address=127.0.0.1", 1)]),
        2,
        None,
        |_| {},
    )
    .await;
    assert_eq!(statuses, [200, 429]);
}
