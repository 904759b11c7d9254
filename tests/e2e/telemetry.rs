//! The telemetry filter in Envoy, as two sidecars: a client-side Envoy
//! (outbound listener, workload `productpage-v1`) in front of a
//! server-side Envoy (inbound listener, workload `ratings-v1`), each with
//! Istio's node metadata and cluster metadata, each running the filter.
//! Known traffic goes through both at `--concurrency 2`; each Envoy's
//! `/stats/prometheus` is parsed, a real Prometheus scrapes both and
//! answers the queries of Istio's service dashboard, access log lines are
//! parsed from Envoy's log, and an OTLP receiver takes the exported logs.

use meshwasm_artifacts::TELEMETRY_WASM;
use meshwasm_local::envoy::{Bootstrap, Envoy, WasmFilter};
use meshwasm_local::prometheus::{Series, parse as parse_prometheus, total};
use meshwasm_local::traffic::{Outcome, send, send_many};
use meshwasm_local::upstream::{Reply, Upstream};
use serde_json::{Value, json};
use std::collections::BTreeMap;
use std::net::SocketAddr;
use std::process::{Child, Command, Stdio};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};
use tempfile::TempDir;

/// The service the server's clusters carry in Istio's metadata.
const SERVICE: &str = "ratings.shop.svc.cluster.local";

/// Envoy's node, as Istio's injector describes a pod.
fn node(workload: &str, app: &str) -> Value {
    json!({
        "id": format!("sidecar~127.0.0.1~{workload}-7f9c.shop~shop.svc.cluster.local"),
        "cluster": format!("{app}.shop"),
        "metadata": {
            "NAME": format!("{workload}-7f9c"),
            "NAMESPACE": "shop",
            "WORKLOAD_NAME": workload,
            "CLUSTER_ID": "Kubernetes",
            "MESH_ID": "cluster.local",
            "LABELS": {
                "app": app,
                "version": "v1",
                "service.istio.io/canonical-name": app,
                "service.istio.io/canonical-revision": "v1",
            },
        },
    })
}

/// A cluster of `endpoints` with Istio's metadata naming the ratings service.
fn cluster(name: &str, endpoints: &[SocketAddr], http2: bool) -> Value {
    let mut cluster = json!({
        "name": name,
        "connect_timeout": "1s",
        "type": "STATIC",
        "metadata": {"filter_metadata": {"istio": {"services": [
            {"host": SERVICE, "name": "ratings", "namespace": "shop"},
        ]}}},
        "load_assignment": {
            "cluster_name": name,
            "endpoints": [{"lb_endpoints": endpoints.iter().map(|a| json!({"endpoint": {"address": {
                "socket_address": {"address": a.ip().to_string(), "port_value": a.port()},
            }}})).collect::<Vec<_>>()}],
        },
    });
    if http2 {
        cluster["typed_extension_protocol_options"] = json!({
            "envoy.extensions.upstreams.http.v3.HttpProtocolOptions": {
                "@type": "type.googleapis.com/envoy.extensions.upstreams.http.v3.HttpProtocolOptions",
                "explicit_http_config": {"http2_protocol_options": {}},
            },
        });
    }
    cluster
}

fn telemetry_filter(name: &str, config: &Value) -> WasmFilter {
    let mut filter = WasmFilter::new(name, TELEMETRY_WASM, config.to_string());
    filter.vm_id = format!("meshwasm-{name}");
    filter
}

/// A sidecar: one HTTP listener with the filter and `routes`, in
/// `direction` (`INBOUND` or `OUTBOUND`), and the stats config envoyfilter
/// renders for Istio's labels.
fn sidecar(
    workload: &str,
    app: &str,
    direction: &str,
    config: &Value,
    routes: Value,
    clusters: Vec<Value>,
) -> Value {
    let labels: Vec<String> = meshwasm_core::telemetry::labels::STANDARD_LABELS
        .iter()
        .map(|l| (*l).to_owned())
        .collect();
    json!({
        "node": node(workload, app),
        "stats_config": envoyfilter::render::stats::stats_config(&labels),
        // Envoy merges histograms at each flush (5 s by default).
        "stats_flush_interval": "0.5s",
        "admin": {"address": {"socket_address": {"address": "127.0.0.1", "port_value": 0}}},
        "static_resources": {
            "listeners": [{
                "name": "http",
                "traffic_direction": direction,
                "address": {"socket_address": {"address": "127.0.0.1", "port_value": 0}},
                "filter_chains": [{"filters": [{
                    "name": "envoy.filters.network.http_connection_manager",
                    "typed_config": {
                        "@type": "type.googleapis.com/envoy.extensions.filters.network.http_connection_manager.v3.HttpConnectionManager",
                        "stat_prefix": "http",
                        "route_config": {"name": "default", "virtual_hosts": [{
                            "name": "all", "domains": ["*"], "routes": routes,
                        }]},
                        "http_filters": [
                            telemetry_filter("telemetry", config).to_json(),
                            {"name": "envoy.filters.http.router", "typed_config": {
                                "@type": "type.googleapis.com/envoy.extensions.filters.http.router.v3.Router",
                            }},
                        ],
                    },
                }]}],
            }],
            "clusters": clusters,
        },
    })
}

fn route(prefix: &str, cluster: &str) -> Value {
    json!({"match": {"prefix": prefix}, "route": {"cluster": cluster, "timeout": "10s"}})
}

/// A port nothing listens on.
fn dead_port() -> SocketAddr {
    let listener = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
    listener.local_addr().unwrap()
}

/// The two sidecars and the server's upstreams.
struct Mesh {
    client: Envoy,
    server: Envoy,
    app: Upstream,
    missing: Upstream,
    grpc: Upstream,
}

async fn mesh(config: &Value) -> Mesh {
    // The app answers after 300 ms, so that every duration falls in one bucket.
    let app = Upstream::start_slow("ratings", Duration::from_millis(300))
        .await
        .unwrap();
    let missing = Upstream::start("missing").await.unwrap();
    missing.set_reply(Some(Reply {
        status: 404,
        ..Reply::default()
    }));
    let grpc = Upstream::start("grpc").await.unwrap();
    grpc.set_reply(Some(Reply {
        status: 200,
        headers: vec![
            ("content-type".into(), "application/grpc".into()),
            ("grpc-status".into(), "7".into()),
            ("grpc-message".into(), "denied".into()),
        ],
        body: Vec::new(),
    }));
    let dead = dead_port();
    let server_config = sidecar(
        "ratings-v1",
        "ratings",
        "INBOUND",
        config,
        json!([
            route("/app", "inbound|9080||"),
            route("/missing", "missing"),
            route("/dead", "dead"),
            route("/empty", "empty"),
            route("/grpc.", "grpc"),
        ]),
        vec![
            cluster("inbound|9080||", &[app.addr()], false),
            cluster("missing", &[missing.addr()], false),
            cluster("dead", &[dead], false),
            cluster("empty", &[], false),
            cluster("grpc", &[grpc.addr()], false),
        ],
    );
    let server = Envoy::start(Bootstrap::from_config(server_config).concurrency(2))
        .await
        .unwrap();
    let client_config = sidecar(
        "productpage-v1",
        "productpage",
        "OUTBOUND",
        config,
        json!([route("/", &format!("outbound|9080||{SERVICE}"))]),
        vec![cluster(
            &format!("outbound|9080||{SERVICE}"),
            &[server.listener()],
            false,
        )],
    );
    let client = Envoy::start(Bootstrap::from_config(client_config).concurrency(2))
        .await
        .unwrap();
    Mesh {
        client,
        server,
        app,
        missing,
        grpc,
    }
}

async fn prometheus_text(envoy: &Envoy) -> String {
    envoy.admin_get("/stats/prometheus").await.unwrap()
}

/// The stats once `requests` durations are in the histograms.
async fn flushed(envoy: &Envoy, requests: f64) -> BTreeMap<String, Vec<Series>> {
    let deadline = Instant::now() + Duration::from_secs(20);
    loop {
        let stats = parse_prometheus(&prometheus_text(envoy).await);
        if total(&stats, "istio_request_duration_milliseconds_count", &[]) >= requests {
            return stats;
        }
        assert!(
            Instant::now() < deadline,
            "histograms never flushed: {stats:?}"
        );
        tokio::time::sleep(Duration::from_millis(250)).await;
    }
}

/// The known traffic: path, count, what the server answers, its flags.
const TRAFFIC: [(&str, usize, u16, &str); 5] = [
    ("/app/ok", 24, 200, "-"),
    ("/missing", 6, 404, "-"),
    ("/dead", 5, 503, "UF"),
    ("/empty", 4, 503, "UH"),
    ("/nowhere", 3, 404, "NR"),
];

async fn send_traffic(envoy: &Envoy, host: &str) -> Vec<Outcome> {
    let mut all = Vec::new();
    let http = meshwasm_local::envoy::client().unwrap();
    for (path, count, _, _) in TRAFFIC {
        let url = envoy.url(path);
        let host = host.to_owned();
        let http = http.clone();
        all.extend(
            send_many(count, 8, move |_| {
                http.get(&url).header("host", host.as_str())
            })
            .await
            .unwrap(),
        );
    }
    all
}

#[tokio::test]
async fn both_sidecars_report_istio_metrics_with_istio_labels() {
    let mesh = mesh(&json!({})).await;
    let outcomes = send_traffic(&mesh.client, "ratings:9080").await;
    let mut got: BTreeMap<u16, usize> = BTreeMap::new();
    for o in &outcomes {
        *got.entry(o.status).or_default() += 1;
    }
    assert_eq!(got, BTreeMap::from([(200, 24), (404, 9), (503, 9)]));
    // Bodies of known sizes.
    let body = vec![b'x'; 1000];
    for _ in 0..3 {
        let o = send(
            meshwasm_local::envoy::client()
                .unwrap()
                .post(mesh.client.url("/app/upload"))
                .header("host", "ratings:9080")
                .body(body.clone()),
        )
        .await
        .unwrap();
        assert_eq!(o.status, 200);
    }
    // gRPC with a non-zero status.
    for _ in 0..2 {
        let o = send(
            meshwasm_local::envoy::client()
                .unwrap()
                .post(mesh.client.url("/grpc.health.v1.Health/Check"))
                .header("host", "ratings:9080")
                .header("content-type", "application/grpc")
                .body(vec![0, 0, 0, 0, 2, 8, 1]),
        )
        .await
        .unwrap();
        assert_eq!(o.status, 200);
    }
    // A trace the client did not start, the client's sidecar starts; one
    // it started goes through both sidecars unchanged.
    let given = "00-0af7651916cd43dd8448eb211c80319c-b7ad6b7169203331-01";
    let o = send(
        meshwasm_local::envoy::client()
            .unwrap()
            .get(mesh.client.url("/app/traced"))
            .header("host", "ratings:9080")
            .header("traceparent", given)
            .header("tracestate", "congo=t61rcWkgMzE"),
    )
    .await
    .unwrap();
    assert_eq!(o.status, 200);
    // The application never sees the exchange headers.
    for seen in mesh.app.seen() {
        assert!(
            seen.header("x-envoy-peer-metadata").is_none(),
            "{:?}",
            seen.headers
        );
        assert!(seen.header("x-envoy-peer-metadata-id").is_none());
        assert!(seen.header("x-request-id").is_some());
        let traceparent = seen.header("traceparent").unwrap_or_default();
        if seen.path == "/app/traced" {
            assert_eq!(traceparent, given);
            assert_eq!(seen.header("tracestate"), Some("congo=t61rcWkgMzE"));
        } else {
            let parts: Vec<&str> = traceparent.split('-').collect();
            assert_eq!(parts.len(), 4, "{traceparent:?}");
            assert_eq!((parts[0], parts[1].len(), parts[2].len()), ("00", 32, 16));
        }
    }
    let _ = (&mesh.missing, &mesh.grpc);
    // Envoy merges histograms at its next stats flush.
    let server = flushed(&mesh.server, 48.0).await;
    let client = flushed(&mesh.client, 48.0).await;
    for (side, stats, reporter) in [
        ("server", &server, "destination"),
        ("client", &client, "source"),
    ] {
        let requests = stats.get("istio_requests_total").unwrap_or_else(|| {
            panic!(
                "{side}: no istio_requests_total in {:?}",
                stats.keys().collect::<Vec<_>>()
            )
        });
        for (labels, _) in requests {
            let names: Vec<&str> = labels.keys().map(String::as_str).collect();
            let mut want: Vec<&str> = meshwasm_core::telemetry::labels::STANDARD_LABELS.to_vec();
            want.sort_unstable();
            assert_eq!(names, want, "{side}: every label is Istio's");
            assert_eq!(labels["reporter"], reporter);
        }
        // The server's Envoy flags what it answered itself; the client's
        // sees those answers come from its upstream, unflagged.
        let mut expected: BTreeMap<(String, &str), f64> = BTreeMap::new();
        for (path, count, code, flags) in TRAFFIC {
            let flags = if side == "server" { flags } else { "-" };
            // The uploads and the traced request are 200s too.
            let uploads = if path == "/app/ok" { 4.0 } else { 0.0 };
            *expected.entry((code.to_string(), flags)).or_default() += count as f64 + uploads;
        }
        for ((code, flags), count) in expected {
            let counted = total(
                stats,
                "istio_requests_total",
                &[
                    ("response_code", code.as_str()),
                    ("response_flags", flags),
                    ("request_protocol", "http"),
                ],
            );
            assert_eq!(counted, count, "{side}: {code} {flags}");
        }
        let grpc = total(
            stats,
            "istio_requests_total",
            &[
                ("request_protocol", "grpc"),
                ("grpc_response_status", "7"),
                ("response_code", "200"),
            ],
        );
        assert_eq!(grpc, 2.0, "{side}: gRPC with status 7");
        let all = total(stats, "istio_requests_total", &[]);
        assert_eq!(all, 48.0, "{side}");
        assert_eq!(
            total(stats, "istio_request_duration_milliseconds_count", &[]),
            all,
            "{side}: one duration per request"
        );
        assert_eq!(total(stats, "istio_request_bytes_count", &[]), all);
        let uploaded = total(
            stats,
            "istio_request_bytes_sum",
            &[("response_code", "200"), ("request_protocol", "http")],
        );
        // Headers and 3 bodies of 1000 bytes (Envoy's sums keep ~2 significant digits).
        assert!(uploaded >= 2900.0, "{side}: request bytes {uploaded}");
    }
    // The server knows its client from the exchanged metadata...
    let ok = [("response_code", "200"), ("request_protocol", "http")];
    let series = &server["istio_requests_total"];
    let (labels, _) = series
        .iter()
        .find(|(l, _)| ok.iter().all(|(k, v)| l[*k] == *v))
        .unwrap();
    for (label, want) in [
        ("source_workload", "productpage-v1"),
        ("source_workload_namespace", "shop"),
        ("source_app", "productpage"),
        ("source_version", "v1"),
        ("source_canonical_service", "productpage"),
        ("source_canonical_revision", "v1"),
        ("source_cluster", "Kubernetes"),
        ("destination_workload", "ratings-v1"),
        ("destination_app", "ratings"),
        ("destination_service", SERVICE),
        ("destination_service_name", "ratings"),
        ("destination_service_namespace", "shop"),
        ("connection_security_policy", "none"),
        ("source_principal", "unknown"),
        ("grpc_response_status", ""),
    ] {
        assert_eq!(labels[label], want, "server: {label}");
    }
    // ...and the client its server, from the answer.
    let series = &client["istio_requests_total"];
    let (labels, _) = series
        .iter()
        .find(|(l, _)| ok.iter().all(|(k, v)| l[*k] == *v))
        .unwrap();
    for (label, want) in [
        ("source_workload", "productpage-v1"),
        ("destination_workload", "ratings-v1"),
        ("destination_version", "v1"),
        ("destination_service", SERVICE),
        ("connection_security_policy", "unknown"),
    ] {
        assert_eq!(labels[label], want, "client: {label}");
    }
    // One series as the test saw it, for the record.
    let text = prometheus_text(&mesh.server).await;
    let line = text
        .lines()
        .find(|l| {
            l.starts_with("istio_requests_total{")
                && l.contains("response_code=\"200\"")
                && l.contains("request_protocol=\"http\"")
        })
        .unwrap();
    println!("server: {line}");
}

/// A real Prometheus on 127.0.0.1, scraping the given admin endpoints.
struct Prometheus {
    child: Child,
    _dir: TempDir,
    addr: SocketAddr,
}

impl Drop for Prometheus {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

impl Prometheus {
    fn start(targets: &[SocketAddr], interval: Duration) -> Prometheus {
        let dir = tempfile::tempdir().unwrap();
        let targets: Vec<String> = targets.iter().map(|t| format!("'{t}'")).collect();
        let config = format!(
            "global:\n  scrape_interval: {}ms\nscrape_configs:\n  - job_name: envoy\n    metrics_path: /stats/prometheus\n    static_configs:\n      - targets: [{}]\n",
            interval.as_millis(),
            targets.join(", ")
        );
        std::fs::write(dir.path().join("prometheus.yml"), config).unwrap();
        let addr = dead_port();
        let log = std::fs::File::create(dir.path().join("prometheus.log")).unwrap();
        let child = Command::new("prometheus")
            .arg(format!(
                "--config.file={}",
                dir.path().join("prometheus.yml").display()
            ))
            .arg(format!(
                "--storage.tsdb.path={}",
                dir.path().join("data").display()
            ))
            .arg(format!("--web.listen-address={addr}"))
            .stdout(log.try_clone().unwrap())
            .stderr(log)
            .stdin(Stdio::null())
            .spawn()
            .expect("prometheus (Debian's `prometheus` package) must be installed");
        Prometheus {
            child,
            _dir: dir,
            addr,
        }
    }

    /// Evaluates `query` at `time` (seconds since the epoch).
    async fn query(&self, query: &str, time: f64) -> Vec<Value> {
        let client = meshwasm_local::envoy::client().unwrap();
        let deadline = Instant::now() + Duration::from_secs(30);
        loop {
            let answer = client
                .get(format!("http://{}/api/v1/query", self.addr))
                .query(&[("query", query), ("time", &time.to_string())])
                .send()
                .await;
            if let Ok(answer) = answer {
                let body: Value = serde_json::from_str(&answer.text().await.unwrap()).unwrap();
                if body["status"] == "success" {
                    return body["data"]["result"]
                        .as_array()
                        .cloned()
                        .unwrap_or_default();
                }
                panic!("{query}: {body}");
            }
            assert!(Instant::now() < deadline, "prometheus did not answer");
            tokio::time::sleep(Duration::from_millis(200)).await;
        }
    }

    /// The raw samples of the one series `selector` picks over the last
    /// minute, as (time, value).
    async fn samples(&self, selector: &str) -> Vec<(f64, f64)> {
        let now = std::time::SystemTime::now()
            .duration_since(std::time::UNIX_EPOCH)
            .unwrap()
            .as_secs_f64();
        let result = self.query(&format!("{selector}[1m]"), now).await;
        assert!(
            result.len() <= 1,
            "{selector} picks several series: {result:?}"
        );
        result
            .first()
            .and_then(|r| r["values"].as_array())
            .map(|values| {
                values
                    .iter()
                    .map(|v| {
                        (
                            v[0].as_f64().unwrap(),
                            v[1].as_str().unwrap().parse().unwrap(),
                        )
                    })
                    .collect()
            })
            .unwrap_or_default()
    }

    /// Waits until `series` has a sample of `value`; its time.
    async fn sample_of(&self, series: &str, value: f64) -> f64 {
        let deadline = Instant::now() + Duration::from_secs(60);
        loop {
            if let Some((t, _)) = self
                .samples(series)
                .await
                .into_iter()
                .find(|(_, v)| *v == value)
            {
                return t;
            }
            assert!(Instant::now() < deadline, "{series} never reached {value}");
            tokio::time::sleep(Duration::from_millis(250)).await;
        }
    }
}

/// The value of a one-element query result.
fn scalar(result: &[Value]) -> f64 {
    assert_eq!(result.len(), 1, "{result:?}");
    result[0]["value"][1].as_str().unwrap().parse().unwrap()
}

#[tokio::test]
async fn istios_service_dashboard_queries_give_the_traffic_sent() {
    let mesh = mesh(&json!({})).await;
    let interval = Duration::from_secs(2);
    let prometheus = Prometheus::start(&[mesh.server.admin(), mesh.client.admin()], interval);
    let url = mesh.client.url("/app/ok");
    let dead = mesh.client.url("/dead");
    let ok_series = format!(
        "istio_requests_total{{reporter=\"destination\",destination_service=\"{SERVICE}\",response_code=\"200\"}}"
    );
    // One request of each kind first, so that both series exist before the burst.
    let http = meshwasm_local::envoy::client().unwrap();
    let get = |u: String| {
        let http = http.clone();
        move |_: usize| http.get(&u)
    };
    send_many(1, 1, get(url.clone())).await.unwrap();
    send_many(1, 1, get(dead.clone())).await.unwrap();
    let (mut ok_before, mut dead_before) = (1.0, 1.0);
    let failed_series = format!(
        "istio_requests_total{{reporter=\"destination\",destination_service=\"{SERVICE}\",response_code=\"503\"}}"
    );
    let mut attempts = 0;
    let (t0, t1, ok_sent, dead_sent) = loop {
        attempts += 1;
        assert!(attempts <= 6, "a scrape split every burst");
        let t0 = prometheus.sample_of(&ok_series, ok_before).await;
        prometheus.sample_of(&failed_series, dead_before).await;
        // A burst well inside one scrape interval: 40 slow successes and 10 failures.
        let (oks, deads) = tokio::join!(
            send_many(40, 40, get(url.clone())),
            send_many(10, 10, get(dead.clone()))
        );
        assert!(oks.unwrap().iter().all(|o| o.status == 200));
        assert!(deads.unwrap().iter().all(|o| o.status == 503));
        let (ok_after, dead_after) = (ok_before + 40.0, dead_before + 10.0);
        let t1 = prometheus.sample_of(&ok_series, ok_after).await;
        let dead_t1 = prometheus.sample_of(&failed_series, dead_after).await;
        let ok_samples = prometheus.samples(&ok_series).await;
        let split = ok_samples.iter().any(|(t, _)| *t > t0 && *t < t1);
        (ok_before, dead_before) = (ok_after, dead_after);
        if !split && dead_t1 == t1 {
            break (t0, t1, 40.0, 10.0);
        }
    };
    let window = "1m";
    let dashboard = |expr: &str| {
        expr.replace("$qrep", "destination")
            .replace("$service", SERVICE)
            .replace("$__rate_interval", window)
    };
    // Istio's istio-service-dashboard.json, "Client Request Volume".
    let volume = dashboard(
        r#"round(sum(irate(istio_requests_total{reporter=~"$qrep",destination_service="$service"}[$__rate_interval])), 0.001)"#,
    );
    let expected = ((ok_sent + dead_sent) / (t1 - t0) * 1000.0).round() / 1000.0;
    assert_eq!(
        scalar(&prometheus.query(&volume, t1).await),
        expected,
        "{volume}"
    );
    // "Client Success Rate (non-5xx responses)".
    let success = dashboard(
        r#"sum(irate(istio_requests_total{reporter=~"$qrep",destination_service="$service",response_code!~"5.*"}[$__rate_interval])) / (sum(irate(istio_requests_total{reporter=~"$qrep",destination_service="$service"}[$__rate_interval])) or on () vector(1))"#,
    );
    let rate = scalar(&prometheus.query(&success, t1).await);
    assert!((rate - 0.8).abs() < 1e-9, "{success}: {rate}");
    // "Client Request Duration", P50: 40 answers in (250, 500] ms, 10 failures under 250 ms.
    let p50 = dashboard(
        r#"(histogram_quantile(0.50, sum(irate(istio_request_duration_milliseconds_bucket{reporter=~"$qrep",destination_service="$service"}[$__rate_interval])) by (le)) / 1000) or histogram_quantile(0.50, sum(irate(istio_request_duration_seconds_bucket{reporter=~"$qrep",destination_service="$service"}[$__rate_interval])) by (le))"#,
    );
    let seconds = scalar(&prometheus.query(&p50, t1).await);
    let want = (250.0 + 250.0 * (25.0 - 10.0) / 40.0) / 1000.0;
    assert!(
        (seconds - want).abs() < 1e-9,
        "{p50}: {seconds}, want {want}"
    );
    println!(
        "dashboard: volume {expected} req/s, success {rate}, p50 {seconds} s, over {} s",
        t1 - t0
    );
}

/// An OTLP/HTTP receiver: records the bodies posted to `/v1/logs`, or
/// answers 503 while `down`.
struct Collector {
    addr: SocketAddr,
    bodies: Arc<Mutex<Vec<Value>>>,
    down: Arc<Mutex<bool>>,
    task: tokio::task::JoinHandle<()>,
}

impl Drop for Collector {
    fn drop(&mut self) {
        self.task.abort();
    }
}

impl Collector {
    async fn start() -> Collector {
        use tokio::io::{AsyncReadExt, AsyncWriteExt};
        let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
        let addr = listener.local_addr().unwrap();
        let bodies = Arc::new(Mutex::new(Vec::new()));
        let down = Arc::new(Mutex::new(false));
        let (b, d) = (Arc::clone(&bodies), Arc::clone(&down));
        let task = tokio::spawn(async move {
            loop {
                let Ok((mut socket, _)) = listener.accept().await else {
                    return;
                };
                let (b, d) = (Arc::clone(&b), Arc::clone(&d));
                tokio::spawn(async move {
                    let mut buf = Vec::new();
                    let mut chunk = [0u8; 8192];
                    loop {
                        // One request per read loop: headers, then Content-Length bytes.
                        let Some(end) = buf.windows(4).position(|w| w == b"\r\n\r\n") else {
                            match socket.read(&mut chunk).await {
                                Ok(0) | Err(_) => return,
                                Ok(n) => buf.extend_from_slice(&chunk[..n]),
                            }
                            continue;
                        };
                        let head = String::from_utf8_lossy(&buf[..end]).to_lowercase();
                        let length: usize = head
                            .lines()
                            .find_map(|l| l.strip_prefix("content-length:"))
                            .and_then(|v| v.trim().parse().ok())
                            .unwrap_or(0);
                        while buf.len() < end + 4 + length {
                            match socket.read(&mut chunk).await {
                                Ok(0) | Err(_) => return,
                                Ok(n) => buf.extend_from_slice(&chunk[..n]),
                            }
                        }
                        let body = buf[end + 4..end + 4 + length].to_vec();
                        buf.drain(..end + 4 + length);
                        let is_down = *d.lock().unwrap();
                        let status = if is_down {
                            "503 Service Unavailable"
                        } else {
                            if head.starts_with("post /v1/logs")
                                && head.contains("content-type: application/json")
                            {
                                b.lock()
                                    .unwrap()
                                    .push(serde_json::from_slice(&body).unwrap_or(Value::Null));
                            }
                            "200 OK"
                        };
                        let answer = format!(
                            "HTTP/1.1 {status}\r\ncontent-type: application/json\r\ncontent-length: 2\r\n\r\n{{}}"
                        );
                        if socket.write_all(answer.as_bytes()).await.is_err() {
                            return;
                        }
                    }
                });
            }
        });
        Collector {
            addr,
            bodies,
            down,
            task,
        }
    }

    fn records(&self) -> Vec<Value> {
        self.bodies
            .lock()
            .unwrap()
            .iter()
            .flat_map(|b| {
                b["resourceLogs"][0]["scopeLogs"][0]["logRecords"]
                    .as_array()
                    .cloned()
                    .unwrap_or_default()
            })
            .collect()
    }
}

#[tokio::test]
async fn access_logs_go_to_envoys_log_and_an_otlp_collector_which_may_be_down() {
    let collector = Collector::start().await;
    let app = Upstream::start("ratings").await.unwrap();
    let config = json!({
        "accessLogging": [
            {"providers": [{"name": "envoy"}]},
            {"providers": [{"name": "otel"}], "filter": {"expression": "response.code >= 400"}},
        ],
        "meshwasm": {"otlp": {"cluster": "otel", "flushInterval": "200ms", "bufferSize": 5, "batchSize": 2}},
    });
    let server = sidecar(
        "ratings-v1",
        "ratings",
        "INBOUND",
        &config,
        json!([route("/app", "inbound|9080||"), route("/dead", "dead")]),
        vec![
            cluster("inbound|9080||", &[app.addr()], false),
            cluster("dead", &[dead_port()], false),
            cluster("otel", &[collector.addr], false),
        ],
    );
    let envoy = Envoy::start(Bootstrap::from_config(server)).await.unwrap();
    let http = meshwasm_local::envoy::client().unwrap();
    let get = |path: &str| {
        let url = envoy.url(path);
        let http = http.clone();
        move |_: usize| http.get(&url).header("user-agent", "meshwasm-test")
    };
    send_many(4, 2, get("/app/ok")).await.unwrap();
    send_many(3, 1, get("/dead")).await.unwrap();
    let deadline = Instant::now() + Duration::from_secs(20);
    while collector.records().len() < 3 {
        assert!(
            Instant::now() < deadline,
            "the collector got {:?}",
            collector.records()
        );
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
    let records = collector.records();
    assert_eq!(records.len(), 3, "only the failures are exported");
    for record in &records {
        let attributes: BTreeMap<&str, &str> = record["attributes"]
            .as_array()
            .unwrap()
            .iter()
            .map(|a| {
                (
                    a["key"].as_str().unwrap(),
                    a["value"]["stringValue"].as_str().unwrap(),
                )
            })
            .collect();
        assert_eq!(attributes["response_code"], "503");
        assert_eq!(attributes["response_flags"], "UF");
        assert!(record["timeUnixNano"].as_str().unwrap().len() >= 19);
        assert!(
            record["traceId"].as_str().is_some_and(|t| t.len() == 32),
            "{record}"
        );
    }
    let body = collector.bodies.lock().unwrap()[0].clone();
    assert_eq!(
        body["resourceLogs"][0]["resource"]["attributes"][0]["value"]["stringValue"],
        "ratings"
    );
    // Every request is in Envoy's log, as one JSON object with Istio's keys.
    let log = envoy.log();
    let entries: Vec<Value> = log
        .lines()
        .filter_map(|l| l.find("{\"").map(|i| &l[i..]))
        .filter_map(|l| serde_json::from_str(l).ok())
        .filter(|v: &Value| v.get("response_code").is_some())
        .collect();
    assert_eq!(entries.len(), 7, "{log}");
    let keys = [
        "start_time",
        "method",
        "path",
        "protocol",
        "response_code",
        "response_flags",
        "response_code_details",
        "connection_termination_details",
        "upstream_transport_failure_reason",
        "bytes_received",
        "bytes_sent",
        "duration",
        "upstream_service_time",
        "x_forwarded_for",
        "user_agent",
        "request_id",
        "authority",
        "upstream_host",
        "upstream_cluster",
        "upstream_local_address",
        "downstream_local_address",
        "downstream_remote_address",
        "requested_server_name",
        "route_name",
    ];
    for entry in &entries {
        for key in keys {
            assert!(entry.get(key).is_some(), "{key} missing in {entry}");
        }
        assert_eq!(entry["user_agent"], "meshwasm-test");
        assert_eq!(entry["protocol"], "HTTP/1.1");
        assert!(
            entry["request_id"]
                .as_str()
                .is_some_and(|id| id.len() == 36)
        );
    }
    let ok = entries.iter().find(|e| e["response_code"] == 200).unwrap();
    assert_eq!(ok["path"], "/app/ok");
    assert_eq!(ok["upstream_cluster"], "inbound|9080||");
    assert_eq!(ok["upstream_host"], app.addr().to_string());
    assert_eq!(ok["response_code_details"], "via_upstream");
    let failed = entries.iter().find(|e| e["response_code"] == 503).unwrap();
    assert_eq!(failed["response_flags"], "UF");
    // With the collector down, the buffer holds 5 per worker and drops the rest, counted.
    *collector.down.lock().unwrap() = true;
    send_many(20, 1, get("/dead")).await.unwrap();
    let deadline = Instant::now() + Duration::from_secs(20);
    loop {
        let stats = envoy.stats().await.unwrap();
        let dropped = stats
            .get("wasmcustom.meshwasm.telemetry.access_log.dropped")
            .copied()
            .unwrap_or(0);
        let failed = stats
            .get("wasmcustom.meshwasm.telemetry.access_log.export_failed")
            .copied()
            .unwrap_or(0);
        let exported = stats
            .get("wasmcustom.meshwasm.telemetry.access_log.exported")
            .copied()
            .unwrap_or(0);
        if dropped + failed + exported == 23 && dropped > 0 {
            assert_eq!(exported, 3, "{stats:?}");
            break;
        }
        assert!(
            Instant::now() < deadline,
            "dropped {dropped}, failed {failed}, exported {exported}"
        );
        tokio::time::sleep(Duration::from_millis(200)).await;
    }
}

#[tokio::test]
async fn the_network_filter_counts_tcp_bytes_and_connections() {
    use tokio::io::{AsyncReadExt, AsyncWriteExt};
    // An echo server behind Envoy's tcp_proxy.
    let echo = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let echo_addr = echo.local_addr().unwrap();
    tokio::spawn(async move {
        while let Ok((mut socket, _)) = echo.accept().await {
            tokio::spawn(async move {
                let mut buf = [0u8; 4096];
                while let Ok(n @ 1..) = socket.read(&mut buf).await {
                    if socket.write_all(&buf[..n]).await.is_err() {
                        return;
                    }
                }
            });
        }
    });
    let mut tcp = WasmFilter::new(
        "telemetry-tcp",
        TELEMETRY_WASM,
        json!({"meshwasm": {"filter": "network"}}).to_string(),
    );
    tcp.vm_id = "meshwasm-telemetry-tcp".into();
    let mut entry = tcp.to_json();
    entry["name"] = json!("envoy.filters.network.wasm");
    entry["typed_config"]["@type"] =
        json!("type.googleapis.com/envoy.extensions.filters.network.wasm.v3.Wasm");
    let labels: Vec<String> = meshwasm_core::telemetry::labels::STANDARD_LABELS[..23]
        .iter()
        .map(|l| (*l).to_owned())
        .collect();
    let config = json!({
        "node": node("mongodb-v1", "mongodb"),
        "stats_config": envoyfilter::render::stats::stats_config(&labels),
        // Envoy merges histograms at each flush (5 s by default).
        "stats_flush_interval": "0.5s",
        "admin": {"address": {"socket_address": {"address": "127.0.0.1", "port_value": 0}}},
        "static_resources": {
            "listeners": [{
                "name": "tcp",
                "traffic_direction": "INBOUND",
                "address": {"socket_address": {"address": "127.0.0.1", "port_value": 0}},
                "filter_chains": [{"filters": [entry, {
                    "name": "envoy.filters.network.tcp_proxy",
                    "typed_config": {
                        "@type": "type.googleapis.com/envoy.extensions.filters.network.tcp_proxy.v3.TcpProxy",
                        "stat_prefix": "tcp",
                        "cluster": "inbound|27017||",
                    },
                }]}],
            }],
            "clusters": [cluster("inbound|27017||", &[echo_addr], false)],
        },
    });
    let envoy = Envoy::start(Bootstrap::from_config(config).concurrency(2))
        .await
        .unwrap();
    let mut sent = 0u64;
    for i in 0..3u64 {
        let mut socket = tokio::net::TcpStream::connect(envoy.listener())
            .await
            .unwrap();
        let message = vec![b'a' + i as u8; 100 * (i as usize + 1)];
        socket.write_all(&message).await.unwrap();
        let mut back = vec![0u8; message.len()];
        socket.read_exact(&mut back).await.unwrap();
        assert_eq!(back, message);
        sent += message.len() as u64;
    }
    let deadline = Instant::now() + Duration::from_secs(10);
    loop {
        let stats = parse_prometheus(&prometheus_text(&envoy).await);
        let closed = total(&stats, "istio_tcp_connections_closed_total", &[]);
        if closed == 3.0 {
            assert_eq!(
                total(&stats, "istio_tcp_connections_opened_total", &[]),
                3.0
            );
            assert_eq!(
                total(&stats, "istio_tcp_received_bytes_total", &[]),
                sent as f64
            );
            assert_eq!(
                total(&stats, "istio_tcp_sent_bytes_total", &[]),
                sent as f64
            );
            let (labels, _) = &stats["istio_tcp_received_bytes_total"][0];
            assert_eq!(labels.len(), 23, "{labels:?}");
            assert_eq!(labels["request_protocol"], "tcp");
            assert_eq!(labels["destination_workload"], "mongodb-v1");
            assert_eq!(labels["destination_service"], SERVICE);
            assert_eq!(labels["reporter"], "destination");
            break;
        }
        assert!(Instant::now() < deadline, "closed {closed}: {stats:?}");
        tokio::time::sleep(Duration::from_millis(200)).await;
    }
}
