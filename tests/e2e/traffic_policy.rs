//! DestinationRule traffic policies as `envoyfilter envoy` renders them,
//! acting in a real Envoy 1.40 under load: the seeds' httpbin circuit
//! breaker, one request per connection, outlier detection, a consistent
//! hash and TLS origination. Envoy's own counters are read beside what the
//! client saw.

use envoyfilter::render::{EnvoyOptions, envoy_bootstrap};
use envoyfilter::translate::{Options, translate};
use meshwasm_artifacts::ROUTER_WASM;
use meshwasm_local::envoy::{self, Bootstrap, Envoy};
use meshwasm_local::traffic::{send, send_many};
use meshwasm_local::upstream::{Reply, Upstream};
use rcgen::{BasicConstraints, CertificateParams, DnType, IsCa, Issuer, KeyPair, SanType};
use serde_json::json;
use std::collections::{BTreeMap, BTreeSet};
use std::path::Path;
use std::time::Duration;

/// A DestinationRule for httpbin with `policy` as its trafficPolicy (YAML
/// flow), and the VirtualService that routes to it on port 8000.
fn httpbin(policy: &str) -> String {
    format!(
        "apiVersion: networking.istio.io/v1
kind: DestinationRule
metadata: {{name: httpbin}}
spec:
  host: httpbin
  trafficPolicy: {policy}
---
apiVersion: networking.istio.io/v1
kind: VirtualService
metadata: {{name: httpbin}}
spec:
  hosts: [httpbin]
  http:
  - route:
    - destination: {{host: httpbin, port: {{number: 8000}}}}
"
    )
}

const CLUSTER: &str = "outbound|8000||httpbin";

/// Plain Envoy on 127.0.0.1 with this checkout's modules, httpbin's
/// endpoints at `endpoints`.
fn loopback(endpoints: Vec<(String, u16)>) -> EnvoyOptions {
    let wasm_dir = Path::new(ROUTER_WASM).parent().unwrap();
    EnvoyOptions {
        listen: ("127.0.0.1".into(), 0),
        admin: ("127.0.0.1".into(), 0),
        wasm_dir: wasm_dir.display().to_string(),
        upstreams: BTreeMap::from([("httpbin".into(), endpoints)]),
        ..EnvoyOptions::default()
    }
}

/// Envoy running the rendered bootstrap, httpbin's endpoints at `endpoints`.
async fn envoy_for(input: &str, endpoints: &[&Upstream]) -> Envoy {
    let t = translate(input, &Options::default()).unwrap();
    let options = loopback(
        endpoints
            .iter()
            .map(|u| (u.addr().ip().to_string(), u.addr().port()))
            .collect(),
    );
    Envoy::start(Bootstrap::from_config(envoy_bootstrap(&t, &options)))
        .await
        .unwrap()
}

/// `count` requests at once, each on a connection of its own; the
/// statuses, and how many were refused as overloaded.
async fn burst(envoy: &Envoy, count: usize) -> (usize, usize) {
    let url = envoy.url("/get");
    let clients: Vec<reqwest::Client> = (0..count).map(|_| envoy::client().unwrap()).collect();
    let outcomes = send_many(count, count, move |i| {
        clients[i].get(&url).header("host", "httpbin")
    })
    .await
    .unwrap();
    let passed = outcomes.iter().filter(|o| o.status == 200).count();
    let overloaded = outcomes
        .iter()
        .filter(|o| o.status == 503 && o.header("x-envoy-overloaded") == Some("true"))
        .count();
    assert_eq!(
        passed + overloaded,
        count,
        "only 200s and overflows: {outcomes:?}"
    );
    (passed, overloaded)
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_httpbin_circuit_breaker_refuses_what_overflows_and_a_raised_limit_does_not() {
    // Slow enough that the burst's requests are all in flight at once.
    let upstream = Upstream::start_slow("httpbin", Duration::from_millis(300))
        .await
        .unwrap();
    let seeds = httpbin(
        "{connectionPool: {tcp: {maxConnections: 1}, http: {http1MaxPendingRequests: 1, maxRequestsPerConnection: 1}}}",
    );
    let envoy = envoy_for(&seeds, &[&upstream]).await;
    let (passed, overloaded) = burst(&envoy, 20).await;
    println!("maxConnections 1, 1 pending: {passed} passed, {overloaded} refused 503 UO");
    assert!(
        passed >= 1,
        "the connection and the pending slot serve some"
    );
    assert!(
        overloaded >= 10,
        "most of a burst of 20 overflows: {overloaded}"
    );
    let pending = envoy
        .stat(&format!("cluster.{CLUSTER}.upstream_rq_pending_overflow"))
        .await
        .unwrap();
    assert_eq!(
        pending as usize, overloaded,
        "Envoy counts what the client saw"
    );
    drop(envoy);

    let raised = httpbin(
        "{connectionPool: {tcp: {maxConnections: 100}, http: {http1MaxPendingRequests: 100}}}",
    );
    let envoy = envoy_for(&raised, &[&upstream]).await;
    assert_eq!(burst(&envoy, 20).await, (20, 0));
    let pending = envoy
        .stat(&format!("cluster.{CLUSTER}.upstream_rq_pending_overflow"))
        .await
        .unwrap();
    assert_eq!(pending, 0);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn one_request_per_connection_opens_a_connection_for_each_request() {
    for (policy, expected) in [
        (
            "{connectionPool: {http: {maxRequestsPerConnection: 1}}}",
            10,
        ),
        // The same requests without the limit: one kept-alive connection.
        ("{connectionPool: {http: {maxRequestsPerConnection: 0}}}", 1),
    ] {
        let upstream = Upstream::start("httpbin").await.unwrap();
        let envoy = envoy_for(&httpbin(policy), &[&upstream]).await;
        let http = envoy::client().unwrap();
        for _ in 0..10 {
            let out = send(http.get(envoy.url("/get")).header("host", "httpbin"))
                .await
                .unwrap();
            assert_eq!(out.status, 200);
        }
        assert_eq!(upstream.connections(), expected, "{policy}");
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_endpoint_answering_503_is_ejected_and_traffic_moves_to_its_peer() {
    let good = Upstream::start("good").await.unwrap();
    let bad = Upstream::start("bad").await.unwrap();
    bad.set_reply(Some(Reply {
        status: 503,
        headers: vec![("x-upstream".into(), "bad".into())],
        body: b"down\n".to_vec(),
    }));
    let policy = "{loadBalancer: {simple: ROUND_ROBIN}, outlierDetection: {consecutive5xxErrors: 2, interval: 1s, baseEjectionTime: 3m, maxEjectionPercent: 100}}";
    let envoy = envoy_for(&httpbin(policy), &[&good, &bad]).await;
    let http = envoy::client().unwrap();
    let mut seen = Vec::new();
    for _ in 0..30 {
        let out = send(http.get(envoy.url("/get")).header("host", "httpbin"))
            .await
            .unwrap();
        seen.push(out.upstream().unwrap_or("?").to_owned());
    }
    let bad_answers = seen.iter().filter(|u| *u == "bad").count();
    println!("answers: {seen:?}");
    // Round robin reaches bad every other request until its second
    // consecutive 503 ejects it; then only good answers.
    assert_eq!(bad_answers, 2, "{seen:?}");
    assert!(
        seen[seen.len() - 20..].iter().all(|u| u == "good"),
        "{seen:?}"
    );
    let ejected = envoy
        .stat(&format!(
            "cluster.{CLUSTER}.outlier_detection.ejections_enforced_consecutive_5xx"
        ))
        .await
        .unwrap();
    assert_eq!(ejected, 1);
    assert_eq!(bad.hits(), 2);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_consistent_hash_sends_each_user_to_one_endpoint_and_spreads_users() {
    let endpoints = [
        Upstream::start("a").await.unwrap(),
        Upstream::start("b").await.unwrap(),
        Upstream::start("c").await.unwrap(),
    ];
    let policy = "{loadBalancer: {consistentHash: {httpHeaderName: x-user}}}";
    let envoy = envoy_for(&httpbin(policy), &endpoints.iter().collect::<Vec<_>>()).await;
    let http = envoy::client().unwrap();
    let mut by_user: BTreeMap<String, BTreeSet<String>> = BTreeMap::new();
    for round in 0..5 {
        for user in 0..20 {
            let out = send(
                http.get(envoy.url(&format!("/get?round={round}")))
                    .header("host", "httpbin")
                    .header("x-user", format!("user-{user}")),
            )
            .await
            .unwrap();
            by_user
                .entry(format!("user-{user}"))
                .or_default()
                .insert(out.upstream().unwrap_or("?").to_owned());
        }
    }
    assert!(
        by_user.values().all(|reached| reached.len() == 1),
        "each user always reaches the same endpoint: {by_user:?}"
    );
    let used: BTreeSet<&String> = by_user.values().flatten().collect();
    assert!(
        used.len() >= 2,
        "users spread over the endpoints: {by_user:?}"
    );
}

/// A CA and a server certificate for `httpbin.example`, in a temporary
/// directory.
struct Tls {
    dir: tempfile::TempDir,
}

impl Tls {
    fn generate() -> Tls {
        let dir = tempfile::tempdir().unwrap();
        let authority = |name: &str| {
            let mut params = CertificateParams::new(Vec::new()).unwrap();
            params.distinguished_name.push(DnType::CommonName, name);
            params.is_ca = IsCa::Ca(BasicConstraints::Unconstrained);
            let key = KeyPair::generate().unwrap();
            let cert = params.self_signed(&key).unwrap();
            (params, key, cert)
        };
        let (params, key, ca) = authority("meshwasm test CA");
        std::fs::write(dir.path().join("ca.pem"), ca.pem()).unwrap();
        let (_, _, other) = authority("another CA");
        std::fs::write(dir.path().join("other-ca.pem"), other.pem()).unwrap();
        let issuer = Issuer::new(params, key);
        for name in ["server", "client"] {
            let mut params = CertificateParams::new(Vec::new()).unwrap();
            params.distinguished_name.push(DnType::CommonName, name);
            params.subject_alt_names =
                vec![SanType::DnsName("httpbin.example".try_into().unwrap())];
            let key = KeyPair::generate().unwrap();
            let cert = params.signed_by(&key, &issuer).unwrap();
            std::fs::write(dir.path().join(format!("{name}.pem")), cert.pem()).unwrap();
            std::fs::write(
                dir.path().join(format!("{name}-key.pem")),
                key.serialize_pem(),
            )
            .unwrap();
        }
        Tls { dir }
    }

    fn path(&self, file: &str) -> String {
        self.dir.path().join(file).display().to_string()
    }
}

/// An Envoy that terminates TLS with the server certificate in front of
/// `backend`, requiring a client certificate from the CA when `mutual`.
async fn tls_front(tls: &Tls, backend: &Upstream, mutual: bool) -> Envoy {
    let mut config = Bootstrap::new(backend.addr()).to_json();
    let mut context = json!({
        "@type": "type.googleapis.com/envoy.extensions.transport_sockets.tls.v3.DownstreamTlsContext",
        "common_tls_context": {
            "tls_certificates": [{
                "certificate_chain": {"filename": tls.path("server.pem")},
                "private_key": {"filename": tls.path("server-key.pem")},
            }],
        },
    });
    if mutual {
        context["require_client_certificate"] = json!(true);
        context["common_tls_context"]["validation_context"] =
            json!({"trusted_ca": {"filename": tls.path("ca.pem")}});
    }
    config["static_resources"]["listeners"][0]["filter_chains"][0]["transport_socket"] =
        json!({"name": "envoy.transport_sockets.tls", "typed_config": context});
    Envoy::start(Bootstrap::from_config(config)).await.unwrap()
}

/// The status of a request to httpbin through an Envoy rendered from
/// `policy`, toward the TLS front at `front`.
async fn through(policy: &str, front: &Envoy) -> u16 {
    let front = front.listener();
    let t = translate(&httpbin(policy), &Options::default()).unwrap();
    let options = loopback(vec![(front.ip().to_string(), front.port())]);
    let envoy = Envoy::start(Bootstrap::from_config(envoy_bootstrap(&t, &options)))
        .await
        .unwrap();
    let out = send(
        envoy::client()
            .unwrap()
            .get(envoy.url("/get"))
            .header("host", "httpbin"),
    )
    .await
    .unwrap();
    out.status
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn tls_origination_checks_the_upstreams_certificate_and_presents_the_clients() {
    let tls = Tls::generate();
    let backend = Upstream::start("httpbin").await.unwrap();
    let simple = tls_front(&tls, &backend, false).await;
    let ca = tls.path("ca.pem");
    let other = tls.path("other-ca.pem");
    let simple_policy = |ca: &str, san: &str| {
        format!(
            "{{tls: {{mode: SIMPLE, caCertificates: {ca}, sni: httpbin.example, subjectAltNames: [{san}]}}}}"
        )
    };
    assert_eq!(
        through(&simple_policy(&ca, "httpbin.example"), &simple).await,
        200
    );
    // A certificate from an authority the rule does not name, or for
    // another name: Envoy refuses the connection.
    assert_eq!(
        through(&simple_policy(&other, "httpbin.example"), &simple).await,
        503
    );
    assert_eq!(
        through(&simple_policy(&ca, "other.example"), &simple).await,
        503
    );
    // Plain text to a TLS listener fails too: the TLS is what connects.
    assert_eq!(through("{tls: {mode: DISABLE}}", &simple).await, 503);

    let mutual = tls_front(&tls, &backend, true).await;
    let with_client = format!(
        "{{tls: {{mode: MUTUAL, caCertificates: {ca}, sni: httpbin.example, clientCertificate: {}, privateKey: {}}}}}",
        tls.path("client.pem"),
        tls.path("client-key.pem"),
    );
    assert_eq!(through(&with_client, &mutual).await, 200);
    assert_eq!(
        through(&simple_policy(&ca, "httpbin.example"), &mutual).await,
        503,
        "no client certificate"
    );
    assert_eq!(backend.hits(), 2);
}

/// Every field rendered at once, subsets and ports included, is a
/// configuration Envoy 1.40 accepts (`envoy --mode validate`).
#[test]
fn every_traffic_policy_field_renders_a_bootstrap_envoy_accepts() {
    let tls = Tls::generate();
    let input = format!(
        "apiVersion: networking.istio.io/v1
kind: DestinationRule
metadata: {{name: httpbin}}
spec:
  host: httpbin
  trafficPolicy:
    loadBalancer:
      consistentHash:
        httpHeaderName: x-user
        httpCookie: {{name: session, path: /, ttl: 60s, attributes: [{{name: SameSite, value: Strict}}]}}
        useSourceIp: true
        httpQueryParameterName: team
        maglev: {{tableSize: 1009}}
    connectionPool:
      tcp: {{maxConnections: 10, connectTimeout: 250ms, tcpKeepalive: {{probes: 3, time: 1m, interval: 1500ms}}, maxConnectionDuration: 1h}}
      http: {{http1MaxPendingRequests: 1, http2MaxRequests: 20, maxRetries: 2, idleTimeout: 30s, h2UpgradePolicy: UPGRADE, maxConcurrentStreams: 50, maxRequestsPerConnection: 3}}
    outlierDetection: {{consecutive5xxErrors: 1, consecutiveGatewayErrors: 2, splitExternalLocalOriginErrors: true, consecutiveLocalOriginFailures: 4, minHealthPercent: 30, interval: 1s, baseEjectionTime: 3m, maxEjectionPercent: 100}}
    tls: {{mode: MUTUAL, clientCertificate: {client}, privateKey: {key}, caCertificates: {ca}, subjectAltNames: [httpbin.example]}}
    portLevelSettings:
    - port: {{number: 9000}}
      loadBalancer: {{simple: RANDOM}}
      tls: {{mode: SIMPLE, caCertificates: {ca}}}
  subsets:
  - name: v1
    labels: {{version: v1}}
    trafficPolicy:
      loadBalancer: {{simple: ROUND_ROBIN, warmup: {{duration: 30s, minimumPercent: 20, aggression: 2}}}}
      tls: {{mode: SIMPLE, insecureSkipVerify: true}}
  - name: v2
    labels: {{version: v2}}
    trafficPolicy:
      loadBalancer: {{simple: LEAST_REQUEST, warmupDurationSecs: 10s}}
      connectionPool: {{http: {{useClientProtocol: true}}}}
---
apiVersion: networking.istio.io/v1
kind: VirtualService
metadata: {{name: httpbin}}
spec:
  hosts: [httpbin]
  http:
  - route:
    - destination: {{host: httpbin, port: {{number: 8000}}}}
      weight: 40
    - destination: {{host: httpbin, port: {{number: 9000}}}}
      weight: 10
    - destination: {{host: httpbin, subset: v1, port: {{number: 8000}}}}
      weight: 25
    - destination: {{host: httpbin, subset: v2, port: {{number: 8000}}}}
      weight: 25
",
        client = tls.path("client.pem"),
        key = tls.path("client-key.pem"),
        ca = tls.path("ca.pem"),
    );
    let t = translate(&input, &Options::default()).unwrap();
    assert!(t.findings.is_empty(), "{:?}", t.findings);
    let options = loopback(vec![("127.0.0.1".into(), 9)]);
    let bootstrap = envoy_bootstrap(&t, &options);
    let clusters = bootstrap["static_resources"]["clusters"]
        .as_array()
        .unwrap();
    assert_eq!(clusters.len(), 4, "{clusters:#?}");
    let file = tls.dir.path().join("bootstrap.yaml");
    std::fs::write(&file, envoyfilter::yaml::dump(&[bootstrap])).unwrap();
    envoy::validate(&file).unwrap();
}
