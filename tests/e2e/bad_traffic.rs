//! Hostile and broken traffic through every filter chained in Envoy 1.40
//! (telemetry, header-match, rate-limit, fault, router, each its own VM,
//! two workers): header values that are not UTF-8, 8 KB values, 100
//! headers, empty and absolute-form request targets, HTTP/2 with many
//! streams (h2load), and clients that reset mid-body and mid-delay.
//! Nothing may trap (Envoy's log has no panic and no failed Wasm call, and
//! every filter still acts), and nothing is leaked: the fault filter's
//! active faults return to 0 and the rate-limit bucket refills to its
//! capacity.

use meshwasm_artifacts::{
    FAULT_WASM, HEADER_MATCH_WASM, RATE_LIMIT_WASM, ROUTER_WASM, TELEMETRY_WASM,
};
use meshwasm_local::configs;
use meshwasm_local::envoy::{self, Bootstrap, Envoy, WasmFilter};
use meshwasm_local::mesh::CLUSTER_HEADER;
use meshwasm_local::traffic::{send, send_raw_bytes};
use meshwasm_local::upstream::Upstream;
use serde_json::{Value, json};
use std::time::Duration;
use tokio::io::AsyncWriteExt as _;

/// The rate-limit bucket: small enough that the tests draw on it.
const BUCKET: u64 = 200;
const DELAY: Duration = Duration::from_secs(5);

struct Chain {
    envoy: Envoy,
    _upstreams: [Upstream; 3],
}

async fn chain() -> Chain {
    let default = Upstream::start("default").await.unwrap();
    let v1 = Upstream::start("v1").await.unwrap();
    let v2 = Upstream::start("v2").await.unwrap();
    let destination = |subset: &str, weight: u32| json!({"destination": {"host": "web", "port": {"number": 5005}, "subset": subset}, "weight": weight});
    let routes = json!({"hosts": ["*"], "http": [
        {"match": [{"headers": {"end-user": {"exact": "jason"}}}], "route": [destination("v2", 100)]},
        {"route": [destination("v1", 80), destination("v2", 20)]}]});
    let faults = json!({"hosts": ["*"], "http": [
        {"match": [{"headers": {"x-delay": {"exact": "yes"}}}],
         "fault": {"delay": {"fixedDelay": "5s", "percentage": {"value": 100}}},
         "route": [{"destination": {"host": "web"}}]}],
        "meshwasm": {"fault": {"maxActiveFaults": 100}}});
    let allow = json!({"action": "ALLOW", "rules": [{"to": [{"operation": {"paths": ["/productpage*", "/upload"]}}]}]});
    let limit = configs::local_rate_limit("bad_traffic", BUCKET);
    let filter =
        |name: &str, wasm: &str, config: &Value| WasmFilter::own_vm(name, wasm, config.to_string());
    let bootstrap = Bootstrap::new(default.addr())
        .node(configs::sidecar_node("web", "v1"))
        .route_by_header(CLUSTER_HEADER)
        .cluster("outbound|5005|v1|web", v1.addr())
        .cluster("outbound|5005|v2|web", v2.addr())
        .filter(filter("telemetry", TELEMETRY_WASM, &json!({})))
        .filter(filter("header-match", HEADER_MATCH_WASM, &allow))
        .filter(filter("rate-limit", RATE_LIMIT_WASM, &limit))
        .filter(filter("fault", FAULT_WASM, &faults))
        .filter(filter("router", ROUTER_WASM, &routes))
        .concurrency(2);
    Chain {
        envoy: Envoy::start(bootstrap).await.unwrap(),
        _upstreams: [default, v1, v2],
    }
}

fn request(line: &[u8], headers: &[(&[u8], &[u8])]) -> Vec<u8> {
    let mut out = line.to_vec();
    out.extend_from_slice(b"\r\nhost: web\r\nconnection: close\r\n");
    for (name, value) in headers {
        out.extend_from_slice(name);
        out.extend_from_slice(b": ");
        out.extend_from_slice(value);
        out.extend_from_slice(b"\r\n");
    }
    out.extend_from_slice(b"\r\n");
    out
}

/// No filter trapped or failed a call, and each still acts: the rate-limit
/// headers, a route to v2 for jason, a denial of a path outside the rules.
async fn every_filter_still_works(envoy: &Envoy) {
    let log = envoy.log();
    for sign in [
        "panicked",
        "Function: proxy_on",
        "wasm_fail_stream",
        "RuntimeError",
    ] {
        let line = log.lines().find(|l| l.contains(sign));
        assert!(line.is_none(), "Envoy logged {line:?}");
    }
    let http = envoy::client().unwrap();
    let jason = send(
        http.get(envoy.url("/productpage"))
            .header("host", "web")
            .header("end-user", "jason"),
    )
    .await
    .unwrap();
    assert_eq!(
        (jason.status, jason.upstream()),
        (200, Some("v2")),
        "{jason:?}"
    );
    assert!(jason.header("x-ratelimit-limit").is_some(), "{jason:?}");
    let denied = send(http.get(envoy.url("/admin")).header("host", "web"))
        .await
        .unwrap();
    assert_eq!(denied.status, 403);
    let stats = envoy.stats().await.unwrap();
    assert!(
        stats.keys().any(|k| k.contains("istio_requests_total")),
        "the telemetry filter counted nothing"
    );
}

/// The bucket refills to its capacity: a request after a rest leaves it
/// one short of full.
async fn bucket_is_back_to_full(envoy: &Envoy) {
    tokio::time::sleep(Duration::from_millis(1200)).await;
    let http = envoy::client().unwrap();
    let out = send(http.get(envoy.url("/productpage")).header("host", "web"))
        .await
        .unwrap();
    assert_eq!(
        out.header("x-ratelimit-remaining"),
        Some((BUCKET - 1).to_string().as_str()),
        "{out:?}"
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn hostile_http1_requests_are_answered_and_no_filter_traps() {
    let chain = chain().await;
    let addr = chain.envoy.listener();
    let big = vec![b'a'; 8192];
    let big_cookie = [b"user=".as_slice(), &big].concat();
    let many: Vec<(Vec<u8>, Vec<u8>)> = (0..97)
        .map(|i| (format!("x-h{i}").into_bytes(), b"v".to_vec()))
        .collect();
    let too_many: Vec<(Vec<u8>, Vec<u8>)> = (0..120)
        .map(|i| (format!("x-h{i}").into_bytes(), b"v".to_vec()))
        .collect();
    let pairs = |v: &[(Vec<u8>, Vec<u8>)]| -> Vec<(Vec<u8>, Vec<u8>)> { v.to_vec() };
    // (what, request, the status Envoy and the filters give it)
    let cases: Vec<(&str, Vec<u8>, u16)> = vec![
        (
            "header values that are not UTF-8",
            request(
                b"GET /productpage HTTP/1.1",
                &[
                    (b"end-user", b"\xff\xfejason"),
                    (b"cookie", b"theme=\xc3\x28; user=\x80"),
                    (b"x-delay", b"\xa0yes"),
                ],
            ),
            200,
        ),
        (
            "8 KB header values (one in the cookie the router reads)",
            request(
                b"GET /productpage HTTP/1.1",
                &[
                    (b"x-big", &big),
                    (b"cookie", &big_cookie),
                    (b"end-user", &big),
                ],
            ),
            200,
        ),
        (
            "100 headers (Envoy's default limit)",
            {
                let h = pairs(&many);
                let refs: Vec<(&[u8], &[u8])> = h
                    .iter()
                    .map(|(n, v)| (n.as_slice(), v.as_slice()))
                    .collect();
                request(b"GET /productpage HTTP/1.1", &refs)
            },
            200,
        ),
        (
            "more headers than Envoy takes",
            {
                let h = pairs(&too_many);
                let refs: Vec<(&[u8], &[u8])> = h
                    .iter()
                    .map(|(n, v)| (n.as_slice(), v.as_slice()))
                    .collect();
                request(b"GET /productpage HTTP/1.1", &refs)
            },
            431,
        ),
        (
            "an absolute-form target",
            request(b"GET http://web/productpage?x=1 HTTP/1.1", &[]),
            200,
        ),
        (
            "an absolute-form target with no path (\"/\", outside the rules)",
            request(b"GET http://web HTTP/1.1", &[]),
            403,
        ),
        ("an empty target", request(b"GET  HTTP/1.1", &[]), 400),
        (
            "a target that is not UTF-8",
            request(b"GET /productpage/\xff\xfe HTTP/1.1", &[]),
            400,
        ),
        // Envoy answers `*` itself, before any filter (no route takes it).
        (
            "an asterisk-form target",
            request(b"OPTIONS * HTTP/1.1", &[]),
            404,
        ),
        (
            "a percent-encoded NUL and dot segments",
            request(b"GET /%2e%2e/productpage%00 HTTP/1.1", &[]),
            400,
        ),
    ];
    let mut seen = Vec::new();
    for (what, bytes, _) in &cases {
        seen.push(send_raw_bytes(addr, bytes).await.unwrap().status);
        println!("{what}: {}", seen.last().unwrap());
    }
    let want: Vec<u16> = cases.iter().map(|c| c.2).collect();
    assert_eq!(
        seen,
        want,
        "{:?}",
        cases.iter().map(|c| c.0).collect::<Vec<_>>()
    );
    every_filter_still_works(&chain.envoy).await;
    bucket_is_back_to_full(&chain.envoy).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn http2_with_many_streams_is_answered_whole() {
    let chain = chain().await;
    let requests = 20_000;
    // 4 connections, 100 streams at a time on each, over cleartext HTTP/2.
    let output = tokio::process::Command::new("h2load")
        .args([
            "-n",
            &requests.to_string(),
            "-c",
            "4",
            "-m",
            "100",
            "-H",
            "end-user: kim",
        ])
        .arg(chain.envoy.url("/productpage"))
        .kill_on_drop(true)
        .output();
    let output = tokio::time::timeout(Duration::from_secs(120), output)
        .await
        .expect("h2load did not finish within 120 s")
        .expect("h2load (nghttp2-client) is needed: ./scripts/test.sh installs it");
    let text = String::from_utf8_lossy(&output.stdout);
    println!("{text}");
    let line = |start: &str| {
        text.lines()
            .find(|l| l.starts_with(start))
            .unwrap_or_else(|| panic!("no {start:?} line in:\n{text}"))
            .to_owned()
    };
    // `status codes: 1598 2xx, 0 3xx, ...`: the number before a word.
    let number = |line: &str, after: &str| -> u64 {
        line.split(',')
            .find_map(|part| {
                let words: Vec<&str> = part.split_whitespace().collect();
                match words.as_slice() {
                    [.., n, word] if *word == after => n.parse().ok(),
                    _ => None,
                }
            })
            .unwrap_or_else(|| panic!("no {after:?} in {line:?}"))
    };
    // h2load counts only 2xx and 3xx as succeeded.
    let totals = line("requests:");
    assert_eq!(number(&totals, "done"), requests, "{totals}");
    assert_eq!(number(&totals, "errored"), 0, "{totals}");
    assert_eq!(number(&totals, "timeout"), 0, "{totals}");
    let codes = line("status codes:");
    let ok = number(&codes, "2xx");
    let refused = number(&codes, "4xx");
    assert_eq!(ok + refused, requests, "{codes}");
    assert_eq!(number(&codes, "5xx"), 0, "{codes}");
    // Every 4xx is the bucket's 429 (200 a second pass): the filter's
    // own count of refusals says so.
    let limited = chain
        .envoy
        .stat("wasmcustom.bad_traffic.http_local_rate_limit.rate_limited")
        .await
        .unwrap();
    assert_eq!(limited, refused, "{codes}");
    assert!(ok >= BUCKET, "{codes}");
    every_filter_still_works(&chain.envoy).await;
    bucket_is_back_to_full(&chain.envoy).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn clients_that_reset_mid_body_and_mid_delay_leave_no_fault_slot_taken() {
    let chain = chain().await;
    let addr = chain.envoy.listener();
    let envoy = &chain.envoy;
    let active = || async {
        envoy
            .stats()
            .await
            .unwrap()
            .get("wasmcustom.meshwasm.fault.active_faults")
            .copied()
            .unwrap_or(0)
    };
    // Mid-delay: 40 delayed GETs, and mid-body: 40 delayed uploads sent
    // in part; every connection is closed once the faults are active,
    // long before the 5 s delay ends.
    let mut connections = Vec::new();
    for i in 0..80 {
        let mut stream = tokio::net::TcpStream::connect(addr).await.unwrap();
        let head: Vec<u8> = if i % 2 == 0 {
            request(b"GET /productpage HTTP/1.1", &[(b"x-delay", b"yes")])
        } else {
            let mut r = b"POST /upload HTTP/1.1\r\nhost: web\r\nx-delay: yes\r\ncontent-length: 100000\r\n\r\n".to_vec();
            r.extend(std::iter::repeat_n(b'x', 1000));
            r
        };
        stream.write_all(&head).await.unwrap();
        connections.push(stream);
    }
    let mut during = 0;
    for _ in 0..60 {
        tokio::time::sleep(Duration::from_millis(50)).await;
        during = active().await;
        if during >= 80 {
            break;
        }
    }
    assert!(
        during >= 60,
        "only {during} faults active during the delays"
    );
    drop(connections);
    // Envoy ends the streams when their connections close; the filter frees
    // each slot then, not when the 5 s would have ended.
    let left = std::time::Instant::now();
    let mut after = during;
    for _ in 0..40 {
        after = active().await;
        if after == 0 {
            break;
        }
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
    let freed = left.elapsed();
    assert_eq!(
        after, 0,
        "fault slots still taken 2 s after the clients left"
    );
    // A delayed request is still delayed: the limit of 100 was not eaten.
    let http = envoy::client().unwrap();
    let delayed = send(
        http.get(envoy.url("/productpage"))
            .header("host", "web")
            .header("x-delay", "yes"),
    )
    .await
    .unwrap();
    assert!(delayed.latency >= DELAY, "{delayed:?}");
    println!(
        "{during} faults active during the delays, 0 {} ms after the resets",
        freed.as_millis()
    );
    every_filter_still_works(envoy).await;
    bucket_is_back_to_full(envoy).await;
}
