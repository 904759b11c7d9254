//! The fault filter in Envoy: Istio's documented scenarios, Envoy's header
//! faults, maxActiveFaults across workers, and configuration rejection.

use meshwasm_artifacts::FAULT_WASM;
use meshwasm_local::envoy::{self, Bootstrap, Envoy, WasmFilter};
use meshwasm_local::traffic::{binomial_bounds, send, send_many};
use meshwasm_local::upstream::Upstream;
use std::time::{Duration, Instant};

async fn start(config: &str) -> (Envoy, Upstream) {
    start_with(config, 1).await
}

async fn start_with(config: &str, workers: u32) -> (Envoy, Upstream) {
    let upstream = Upstream::start("ratings-v1").await.unwrap();
    let filter = WasmFilter::new("fault", FAULT_WASM, config);
    let envoy = Envoy::start(
        Bootstrap::new(upstream.addr())
            .filter(filter)
            .concurrency(workers),
    )
    .await
    .unwrap();
    (envoy, upstream)
}

fn client() -> reqwest::Client {
    envoy::client().unwrap()
}

/// Istio's "fault-jason-abort": user jason gets HTTP 500, everyone else
/// reaches v1. The demo replays the same file.
const JASON_ABORT: &str =
    include_str!("../../examples/local/virtual-services/ratings-jason-abort.json");

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn jason_cookie_gets_500_and_other_users_reach_the_upstream() {
    let (envoy, upstream) = start(JASON_ABORT).await;
    let http = client();
    let get = |cookie: &str, host: &str| {
        http.get(envoy.url("/ratings/0"))
            .header("host", host)
            .header("cookie", cookie)
    };

    for cookie in [
        "user=jason",
        "user=jason; theme=dark",
        "session=1;user=jason",
    ] {
        let out = send(get(cookie, "ratings")).await.unwrap();
        assert_eq!(
            (out.status, out.body.as_str()),
            (500, "fault filter abort"),
            "cookie {cookie}"
        );
        assert_eq!(out.upstream(), None, "an abort never reaches the upstream");
    }
    assert_eq!(upstream.hits(), 0);
    for cookie in ["user=kim", "user=jasonette", ""] {
        let out = send(get(cookie, "ratings:9080")).await.unwrap();
        assert_eq!(
            (out.status, out.upstream()),
            (200, Some("ratings-v1")),
            "cookie {cookie:?}"
        );
    }
    // The VirtualService is for host "ratings": other hosts are untouched.
    let out = send(get("user=jason", "reviews")).await.unwrap();
    assert_eq!(out.status, 200);
    assert_eq!(upstream.hits(), 4);
    assert_eq!(
        envoy
            .stat("wasmcustom.meshwasm.fault.aborts_injected")
            .await
            .unwrap(),
        3
    );
}

/// Istio's "fault-delay": 2 s for everyone (legacy integer percent) on /ratings, nothing elsewhere.
const DELAY_2S: &str = r#"{"hosts": ["*"], "http": [
  {"match": [{"uri": {"prefix": "/ratings"}}], "fault": {"delay": {"percent": 100, "fixedDelay": "2s"}},
   "route": [{"destination": {"host": "ratings", "subset": "v1"}}]},
  {"route": [{"destination": {"host": "ratings", "subset": "v1"}}]}]}"#;

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn two_second_delay_is_applied_without_blocking_the_worker() {
    let (envoy, upstream) = start(DELAY_2S).await;
    let http = client();
    // Ten delayed requests at once on Envoy's single worker, plus one that
    // is not delayed: if a delay blocked the worker, they would queue up.
    let started = Instant::now();
    let delayed: Vec<_> = (0..10)
        .map(|i| tokio::spawn(send(http.get(envoy.url(&format!("/ratings/{i}"))))))
        .collect();
    tokio::time::sleep(Duration::from_millis(300)).await;
    let fast = send(http.get(envoy.url("/details"))).await.unwrap();
    assert_eq!(fast.status, 200);
    // Bounds are loose (CI shares two cores); what they prove is that
    // nothing waits behind a delay: serialized delays would take 20 s.
    assert!(
        fast.latency < Duration::from_secs(1),
        "an undelayed request took {:?}",
        fast.latency
    );
    for handle in delayed {
        let out = handle.await.unwrap().unwrap();
        assert_eq!(out.status, 200);
        assert!(
            out.latency >= Duration::from_secs(2),
            "delayed only {:?}",
            out.latency
        );
        assert!(
            out.latency < Duration::from_millis(3500),
            "delayed {:?}",
            out.latency
        );
    }
    assert!(
        started.elapsed() < Duration::from_secs(4),
        "the delays ran one after another"
    );
    assert_eq!(upstream.hits(), 11);
    assert_eq!(
        envoy
            .stat("wasmcustom.meshwasm.fault.delays_injected")
            .await
            .unwrap(),
        10
    );
    assert_eq!(
        envoy
            .stat("wasmcustom.meshwasm.fault.active_faults")
            .await
            .unwrap(),
        0
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_delayed_request_body_is_held_and_then_forwarded_whole() {
    let config = r#"{"hosts": ["*"], "http": [{"fault": {"delay": {"percentage": {"value": 100}, "fixedDelay": "400ms"}}}]}"#;
    let (envoy, upstream) = start(config).await;
    let body = "x".repeat(200_000);
    let sent = Instant::now();
    let out = send(client().post(envoy.url("/upload")).body(body.clone()))
        .await
        .unwrap();
    assert_eq!(out.status, 200);
    let seen = upstream.seen();
    assert_eq!(seen.len(), 1);
    assert_eq!(seen[0].body.len(), body.len(), "the body arrives whole");
    assert!(
        seen[0].at - sent >= Duration::from_millis(400),
        "the body went ahead of the delay"
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn half_of_requests_abort_within_a_binomial_bound() {
    let config = r#"{"hosts": ["*"], "http": [{"match": [{"uri": {"prefix": "/flaky"}}],
        "fault": {"abort": {"httpStatus": 503, "percentage": {"value": 50.0}}}}]}"#;
    let (envoy, upstream) = start(config).await;
    let http = client();
    let n = 2000;
    let url = envoy.url("/flaky");
    let outcomes = send_many(n, 16, move |_| http.get(&url)).await.unwrap();
    let aborted = outcomes
        .iter()
        .filter(|o| o.status == 503 && o.body == "fault filter abort")
        .count();
    let passed = outcomes.iter().filter(|o| o.status == 200).count();
    assert_eq!(aborted + passed, n);
    // 5 standard deviations: a correct filter fails this about once in 1.7 million runs.
    let (low, high) = binomial_bounds(n, 0.5, 5.0);
    assert!(
        (low..=high).contains(&aborted),
        "{aborted} of {n} aborted, expected {low}..={high}"
    );
    assert_eq!(upstream.hits(), passed);
    assert_eq!(
        envoy
            .stat("wasmcustom.meshwasm.fault.aborts_injected")
            .await
            .unwrap(),
        aborted as u64
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_tenth_of_a_percent_of_requests_are_delayed() {
    let config = r#"{"hosts": ["*"], "http": [{"fault": {"delay": {"percentage": {"value": 0.1}, "fixedDelay": "300ms"}}}]}"#;
    let (envoy, _upstream) = start(config).await;
    let http = client();
    let n = 10_000;
    let url = envoy.url("/");
    let outcomes = send_many(n, 32, move |_| http.get(&url)).await.unwrap();
    assert!(outcomes.iter().all(|o| o.status == 200));
    let injected = envoy
        .stat("wasmcustom.meshwasm.fault.delays_injected")
        .await
        .unwrap() as usize;
    // Binomial(10000, 0.001): mean 10. P(0) = 4.5e-5 and P(> 26) < 2e-5, so
    // 0 % (no delays) and 1 % (about 100) both fail.
    assert!(
        (1..=26).contains(&injected),
        "{injected} of {n} delayed at 0.1 %"
    );
    let slow = outcomes
        .iter()
        .filter(|o| o.latency >= Duration::from_millis(300))
        .count();
    assert!(
        slow >= injected,
        "{slow} requests took 300 ms, but {injected} delays were injected"
    );
}

/// Opt-in header faults, with a route of its own that keeps its fault.
const HEADER_FAULTS: &str = r#"{"hosts": ["*"], "http": [
  {"match": [{"uri": {"prefix": "/configured"}}], "fault": {"abort": {"httpStatus": 502, "percentage": {"value": 100}}}},
  {"route": [{"destination": {"host": "ratings"}}]}],
  "meshwasm": {"fault": {"headerFaults": {"abort": {}, "delay": {}}}}}"#;

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn header_controlled_faults_follow_envoy() {
    let (envoy, _upstream) = start(HEADER_FAULTS).await;
    let http = client();
    let out = send(
        http.get(envoy.url("/"))
            .header("x-envoy-fault-abort-request", "418"),
    )
    .await
    .unwrap();
    assert_eq!((out.status, out.body.as_str()), (418, "fault filter abort"));
    let out = send(
        http.get(envoy.url("/"))
            .header("x-envoy-fault-abort-request", "418")
            .header("x-envoy-fault-abort-request-percentage", "0"),
    )
    .await
    .unwrap();
    assert_eq!(out.status, 200, "a 0 % header disables the abort");
    let out = send(
        http.get(envoy.url("/"))
            .header("x-envoy-fault-abort-request", "700"),
    )
    .await
    .unwrap();
    assert_eq!(
        out.status, 200,
        "statuses outside 200..600 are ignored, as in Envoy"
    );
    let grpc_abort = || {
        http.post(envoy.url("/svc/Method"))
            .header("x-envoy-fault-abort-grpc-request", "9")
    };
    let out = send(grpc_abort().header("content-type", "application/grpc"))
        .await
        .unwrap();
    assert_eq!((out.status, out.grpc_status()), (200, Some("9")));
    // A non-gRPC client gets what Envoy's sendLocalReply gives it: 200 and the abort body.
    let out = send(grpc_abort()).await.unwrap();
    assert_eq!(
        (out.status, out.body.as_str(), out.upstream()),
        (200, "fault filter abort", None)
    );
    let out = send(
        http.get(envoy.url("/"))
            .header("x-envoy-fault-delay-request", "300"),
    )
    .await
    .unwrap();
    assert_eq!(out.status, 200);
    assert!(
        out.latency >= Duration::from_millis(300),
        "header delay took only {:?}",
        out.latency
    );
    // The route's own fault replaces header faults.
    let out = send(
        http.get(envoy.url("/configured"))
            .header("x-envoy-fault-abort-request", "418"),
    )
    .await
    .unwrap();
    assert_eq!(out.status, 502);

    // Without the opt-in, the headers do nothing.
    let (plain, _up) = start(JASON_ABORT.replace("[\"ratings\"]", "[\"*\"]").as_str()).await;
    let out = send(
        http.get(plain.url("/"))
            .header("x-envoy-fault-abort-request", "418"),
    )
    .await
    .unwrap();
    assert_eq!(out.status, 200);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn grpc_abort_is_a_trailers_only_grpc_response() {
    let config = r#"{"hosts": ["*"], "http": [{"fault": {"abort": {"grpcStatus": "UNAVAILABLE", "percentage": {"value": 100}}}}]}"#;
    let (envoy, upstream) = start(config).await;
    let out = send(
        client()
            .post(envoy.url("/ratings.Ratings/Get"))
            .header("content-type", "application/grpc"),
    )
    .await
    .unwrap();
    assert_eq!((out.status, out.grpc_status()), (200, Some("14")));
    assert_eq!(
        out.body, "",
        "gRPC aborts carry the message in grpc-message, not the body"
    );
    assert_eq!(upstream.hits(), 0);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn max_active_faults_holds_across_worker_threads() {
    let config = r#"{"hosts": ["*"], "http": [{"fault": {"delay": {"percentage": {"value": 100}, "fixedDelay": "1500ms"}}}],
        "meshwasm": {"fault": {"maxActiveFaults": 2}}}"#;
    let (envoy, _upstream) = start_with(config, 2).await;
    // One client per request, so each request has its own connection and
    // the kernel spreads them across Envoy's two workers (all 16 on one
    // worker would happen once in 30 000 runs).
    let requests: Vec<_> = (0..16)
        .map(|_| {
            let http = client();
            let url = envoy.url("/");
            tokio::spawn(async move { send(http.get(url)).await })
        })
        .collect();
    let mut delayed = 0;
    for r in requests {
        let out = r.await.unwrap().unwrap();
        assert_eq!(out.status, 200);
        delayed += usize::from(out.latency >= Duration::from_millis(1500));
    }
    assert_eq!(delayed, 2, "maxActiveFaults: 2 across both workers");
    let stats = envoy.stats().await.unwrap();
    let per_worker = |w: usize| {
        stats
            .iter()
            .filter(|(k, _)| {
                k.ends_with(&format!(".worker_{w}.downstream_cx_total"))
                    && k.starts_with("listener.127.0.0.1_")
            })
            .map(|(_, v)| *v)
            .sum::<u64>()
    };
    assert!(
        per_worker(0) > 0 && per_worker(1) > 0,
        "connections did not reach both workers: {stats:?}"
    );
    assert_eq!(
        stats
            .get("wasmcustom.meshwasm.fault.faults_overflow")
            .copied(),
        Some(14)
    );
    assert_eq!(
        stats
            .get("wasmcustom.meshwasm.fault.active_faults")
            .copied()
            .unwrap_or(0),
        0
    );
    // The slots are free again.
    let out = send(client().get(envoy.url("/"))).await.unwrap();
    assert!(out.latency >= Duration::from_millis(1500));
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_client_that_gives_up_during_a_delay_frees_its_slot() {
    let config = r#"{"hosts": ["*"], "http": [{"fault": {"delay": {"percentage": {"value": 100}, "fixedDelay": "800ms"}}}],
        "meshwasm": {"fault": {"maxActiveFaults": 1}}}"#;
    let (envoy, upstream) = start(config).await;
    let gave_up = client()
        .get(envoy.url("/"))
        .timeout(Duration::from_millis(150))
        .send()
        .await;
    assert!(gave_up.is_err(), "the client should have timed out");
    tokio::time::sleep(Duration::from_millis(1000)).await;
    assert_eq!(upstream.hits(), 0, "a reset stream must not be resumed");
    assert_eq!(
        envoy
            .stat("wasmcustom.meshwasm.fault.active_faults")
            .await
            .unwrap(),
        0
    );
    let out = send(client().get(envoy.url("/"))).await.unwrap();
    assert!(
        out.latency >= Duration::from_millis(800),
        "the slot was not freed"
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn invalid_configuration_is_refused_and_envoy_logs_the_field() {
    let upstream = Upstream::start("unused").await.unwrap();
    let cases = [
        (
            "{\"hosts\": [\"*\"], \"http\": [",
            "invalid configuration: http: EOF while parsing a list",
        ),
        (
            r#"{"hosts": ["*"], "http": [{"fault": {"abort": {"httpStatus": 500, "percentag": {"value": 1}}}}]}"#,
            "invalid configuration: http[0].fault.abort.percentag: unknown field `percentag`",
        ),
        (
            r#"{"hosts": ["*"], "http": [{"match": [{"headers": {"cookie": {"regex": "user=(jason"}}}]}]}"#,
            "invalid configuration: http[0].match[0].headers.cookie.regex: regex \"user=(jason\" is not supported",
        ),
        (
            r#"{"hosts": ["*"], "http": [{"fault": {"abort": {"httpStatus": 500, "percentage": {"value": 150}}}}]}"#,
            "invalid configuration: http[0].fault.abort.percentage.value: 150 is outside 0..=100",
        ),
        (
            r#"{"hosts": ["*"], "http": [{"fault": {"abort": {"httpStatus": 700, "percentage": {"value": 1}}}}]}"#,
            "invalid configuration: http[0].fault.abort.httpStatus: 700 is not an HTTP status in 200..=599",
        ),
        (
            r#"{"hosts": ["*"], "http": [{"fault": {"delay": {"fixedDelay": "-2s", "percentage": {"value": 1}}}}]}"#,
            "invalid configuration: http[0].fault.delay.fixedDelay: negative duration \"-2s\" is not allowed",
        ),
        (
            r#"{"hosts": ["*"], "http": [{"fault": {"delay": {"fixedDelay": "soon", "percentage": {"value": 1}}}}]}"#,
            "invalid configuration: http[0].fault.delay.fixedDelay: invalid duration \"soon\"",
        ),
    ];
    let runs = cases.iter().map(|(config, _)| {
        let bootstrap =
            Bootstrap::new(upstream.addr()).filter(WasmFilter::new("fault", FAULT_WASM, *config));
        envoy::expect_rejected(bootstrap)
    });
    let logs = futures_join_all(runs).await;
    for ((config, expected), log) in cases.iter().zip(logs) {
        let log = log.unwrap_or_else(|e| panic!("{config}: {e}"));
        let ours: Vec<&str> = log
            .lines()
            .filter(|l| l.contains("meshwasm fault:"))
            .collect();
        assert_eq!(
            ours.len(),
            1,
            "exactly one line from the filter for {config}: {ours:?}"
        );
        assert!(ours[0].contains("[error]"), "{}", ours[0]);
        assert!(
            ours[0].contains(expected),
            "for {config}\nexpected {expected:?} in\n{}",
            ours[0]
        );
        assert!(
            log.contains("Unable to create Wasm plugin meshwasm.fault"),
            "Envoy must refuse the plugin:\n{log}"
        );
    }
}

async fn futures_join_all<F: std::future::Future>(
    futures: impl Iterator<Item = F>,
) -> Vec<F::Output> {
    let mut out = Vec::new();
    for f in futures {
        out.push(f.await);
    }
    out
}

#[test]
fn the_documented_envoy_yaml_is_valid() {
    let example = concat!(env!("CARGO_MANIFEST_DIR"), "/../filters/fault/envoy.yaml");
    let relative = "target/wasm32-wasip1/wasm/meshwasm_fault.wasm";
    envoy::validate_example(std::path::Path::new(example), relative, FAULT_WASM).unwrap();
}
