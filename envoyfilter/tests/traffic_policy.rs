//! DestinationRule traffic policies in the plain Envoy output: each field
//! as istiod renders it into the cluster (and the route, for a consistent
//! hash), merged as istiod merges subsets and ports, and what plain Envoy
//! cannot have said at its path and line. Envoy itself runs them in
//! `tests/e2e`.
#![allow(clippy::unwrap_used, clippy::expect_used, clippy::panic)]

use envoyfilter::render::{self, EnvoyOptions, IstioOptions, envoy_bootstrap};
use envoyfilter::translate::{Options, Severity, Translation, translate};
use serde_json::{Value, json};

/// The seeds' httpbin circuit breaker: one connection, one pending
/// request, one request per connection, and the legacy outlier count.
const HTTPBIN: &str = "\
apiVersion: networking.istio.io/v1
kind: DestinationRule
metadata:
  name: httpbin
spec:
  host: httpbin
  trafficPolicy:
    connectionPool:
      tcp:
        maxConnections: 1
      http:
        http1MaxPendingRequests: 1
        maxRequestsPerConnection: 1
    outlierDetection:
      consecutiveErrors: 1
      interval: 1s
      baseEjectionTime: 3m
      maxEjectionPercent: 100
---
apiVersion: networking.istio.io/v1
kind: VirtualService
metadata:
  name: httpbin
spec:
  hosts: [httpbin]
  http:
  - route:
    - destination: {host: httpbin, port: {number: 8000}}
";

fn rendered(input: &str) -> (Translation, Value) {
    let t = translate(input, &Options::default()).unwrap();
    let bootstrap = envoy_bootstrap(&t, &EnvoyOptions::default());
    (t, bootstrap)
}

fn cluster<'a>(bootstrap: &'a Value, name: &str) -> &'a Value {
    bootstrap["static_resources"]["clusters"]
        .as_array()
        .unwrap()
        .iter()
        .find(|c| c["name"] == name)
        .unwrap_or_else(|| panic!("no cluster {name} in {bootstrap:#}"))
}

fn routes(bootstrap: &Value) -> &Vec<Value> {
    bootstrap["static_resources"]["listeners"][0]["filter_chains"][0]["filters"][0]["typed_config"]
        ["route_config"]["virtual_hosts"][0]["routes"]
        .as_array()
        .unwrap()
}

fn http_options(cluster: &Value) -> &Value {
    &cluster["typed_extension_protocol_options"]["envoy.extensions.upstreams.http.v3.HttpProtocolOptions"]
}

#[test]
fn the_httpbin_circuit_breaker_becomes_the_clusters_thresholds() {
    let (t, bootstrap) = rendered(HTTPBIN);
    let c = cluster(&bootstrap, "outbound|8000||httpbin");
    assert_eq!(
        c["circuit_breakers"],
        json!({"thresholds": [{
            "max_connections": 1,
            "max_pending_requests": 1,
            // Not limited by the rule: istiod's "no limit".
            "max_requests": u32::MAX,
            "max_retries": u32::MAX,
            "track_remaining": true,
        }]})
    );
    assert_eq!(
        http_options(c)["common_http_protocol_options"],
        json!({"max_requests_per_connection": 1})
    );
    assert_eq!(
        http_options(c)["explicit_http_config"],
        json!({"http_protocol_options": {}})
    );
    // The legacy consecutiveErrors is left out, as istiod leaves it, and
    // said; the rest of the outlier detection is rendered.
    assert_eq!(
        c["outlier_detection"],
        json!({
            "interval": "1s",
            "base_ejection_time": "180s",
            "max_ejection_percent": 100,
            "enforcing_success_rate": 0,
        })
    );
    assert_eq!(
        c["common_lb_config"]["healthy_panic_threshold"],
        json!({"value": 0})
    );
    assert_eq!(c["lb_policy"], "LEAST_REQUEST", "istiod's default");
    let said: Vec<(&str, Option<usize>)> = t
        .findings
        .iter()
        .map(|f| (f.path.as_str(), f.line))
        .collect();
    assert_eq!(
        said,
        [(
            "spec.trafficPolicy.outlierDetection.consecutiveErrors",
            Some(15)
        )]
    );
    assert!(t.findings[0].message.contains("consecutiveGatewayErrors"));
}

#[test]
fn every_connection_pool_and_outlier_field_lands_where_istiod_puts_it() {
    let input = HTTPBIN.replace(
        "    connectionPool:\n      tcp:\n        maxConnections: 1\n      http:\n        http1MaxPendingRequests: 1\n        maxRequestsPerConnection: 1\n    outlierDetection:\n      consecutiveErrors: 1\n",
        "    connectionPool:
      tcp:
        maxConnections: 10
        connectTimeout: 250ms
        tcpKeepalive: {probes: 3, time: 1m, interval: 1500ms}
        maxConnectionDuration: 1h
      http:
        http1MaxPendingRequests: 0
        http2MaxRequests: 20
        maxRetries: 2
        idleTimeout: 30s
        h2UpgradePolicy: UPGRADE
        maxConcurrentStreams: 50
    outlierDetection:
      consecutive5xxErrors: 0
      consecutiveGatewayErrors: 2
      splitExternalLocalOriginErrors: true
      consecutiveLocalOriginFailures: 4
      minHealthPercent: 30
",
    );
    let (t, bootstrap) = rendered(&input);
    assert!(t.findings.is_empty(), "{:?}", t.findings);
    let c = cluster(&bootstrap, "outbound|8000||httpbin");
    let limits = &c["circuit_breakers"]["thresholds"][0];
    assert_eq!(limits["max_connections"], 10);
    assert_eq!(limits["max_pending_requests"], u32::MAX, "0 is no limit");
    assert_eq!(limits["max_requests"], 20);
    assert_eq!(limits["max_retries"], 2);
    assert_eq!(c["connect_timeout"], "0.25s");
    assert_eq!(
        c["upstream_connection_options"]["tcp_keepalive"],
        json!({"keepalive_probes": 3, "keepalive_time": 60, "keepalive_interval": 2})
    );
    let options = http_options(c);
    assert_eq!(
        options["common_http_protocol_options"],
        json!({"idle_timeout": "30s", "max_connection_duration": "3600s"})
    );
    assert_eq!(
        options["explicit_http_config"],
        json!({"http2_protocol_options": {"max_concurrent_streams": 50}})
    );
    let outlier = &c["outlier_detection"];
    assert_eq!(outlier["consecutive_5xx"], 0);
    assert_eq!(
        outlier["enforcing_consecutive_5xx"], 0,
        "a zero turns it off"
    );
    assert_eq!(outlier["consecutive_gateway_failure"], 2);
    assert_eq!(outlier["enforcing_consecutive_gateway_failure"], 100);
    assert_eq!(outlier["split_external_local_origin_errors"], true);
    assert_eq!(outlier["consecutive_local_origin_failure"], 4);
    assert_eq!(outlier["enforcing_consecutive_local_origin_failure"], 100);
    assert_eq!(
        c["common_lb_config"]["healthy_panic_threshold"],
        json!({"value": 30})
    );
}

/// reviews as the seeds write it: a rule-wide limit, subset v1 with its
/// own, and port-level settings.
const REVIEWS: &str = "\
apiVersion: networking.istio.io/v1
kind: DestinationRule
metadata:
  name: reviews
spec:
  host: reviews
  trafficPolicy:
    connectionPool:
      tcp: {maxConnections: 10}
    loadBalancer: {simple: RANDOM}
    portLevelSettings:
    - port: {number: 9443}
      connectionPool:
        tcp: {maxConnections: 5}
  subsets:
  - name: v1
    labels: {version: v1}
    trafficPolicy:
      connectionPool:
        tcp: {maxConnections: 100}
  - name: v2
    labels: {version: v2}
  - name: v3
    labels: {version: v3}
    trafficPolicy:
      portLevelSettings:
      - port: {number: 9080}
        outlierDetection: {consecutive5xxErrors: 7}
---
apiVersion: networking.istio.io/v1
kind: VirtualService
metadata:
  name: reviews
spec:
  hosts: [reviews]
  http:
  - route:
    - destination: {host: reviews, subset: v1, port: {number: 9080}}
      weight: 40
    - destination: {host: reviews, subset: v2, port: {number: 9080}}
      weight: 30
    - destination: {host: reviews, subset: v3, port: {number: 9080}}
      weight: 20
    - destination: {host: reviews, subset: v2, port: {number: 9443}}
      weight: 10
";

#[test]
fn subsets_and_ports_override_the_rule_as_istiod_merges_them() {
    let (t, bootstrap) = rendered(REVIEWS);
    assert!(t.findings.is_empty(), "{:?}", t.findings);
    let max_connections = |name: &str| {
        cluster(&bootstrap, name)["circuit_breakers"]["thresholds"][0]["max_connections"].clone()
    };
    let lb = |name: &str| cluster(&bootstrap, name)["lb_policy"].clone();
    // v1's pool replaces the rule's; the rule's load balancer stays.
    assert_eq!(max_connections("outbound|9080|v1|reviews"), 100);
    assert_eq!(lb("outbound|9080|v1|reviews"), "RANDOM");
    // v2 has no policy of its own: the rule's.
    assert_eq!(max_connections("outbound|9080|v2|reviews"), 10);
    // The rule's settings for port 9443 replace its own, whole: the load
    // balancer falls back to the default.
    assert_eq!(max_connections("outbound|9443|v2|reviews"), 5);
    assert_eq!(lb("outbound|9443|v2|reviews"), "LEAST_REQUEST");
    // v3's settings for 9080 replace all four: no rule-wide limit is left.
    assert_eq!(max_connections("outbound|9080|v3|reviews"), u32::MAX);
    assert_eq!(lb("outbound|9080|v3|reviews"), "LEAST_REQUEST");
    assert_eq!(
        cluster(&bootstrap, "outbound|9080|v3|reviews")["outlier_detection"]["consecutive_5xx"],
        7
    );
}

#[test]
fn a_consistent_hash_gets_a_route_with_its_hash_policy() {
    let input = HTTPBIN.replace(
        "    connectionPool:\n",
        "    loadBalancer:
      consistentHash:
        httpHeaderName: x-user
        httpCookie: {name: session, path: /, ttl: 60s}
        useSourceIp: true
        httpQueryParameterName: team
        maglev: {tableSize: 1009}
    connectionPool:\n",
    );
    let (_, bootstrap) = rendered(&input);
    let c = cluster(&bootstrap, "outbound|8000||httpbin");
    assert_eq!(c["lb_policy"], "MAGLEV");
    assert_eq!(c["maglev_lb_config"], json!({"table_size": 1009}));
    let routes = routes(&bootstrap);
    // Ahead of the route that follows the router's header.
    assert_eq!(
        routes[0]["match"]["headers"][0]["string_match"]["exact"],
        "outbound|8000||httpbin"
    );
    assert_eq!(routes[0]["route"]["cluster"], "outbound|8000||httpbin");
    assert_eq!(
        routes[0]["route"]["hash_policy"],
        json!([
            {"header": {"header_name": "x-user"}},
            {"cookie": {"name": "session", "path": "/", "ttl": "60s"}},
            {"connection_properties": {"source_ip": true}},
            {"query_parameter": {"name": "team"}},
        ])
    );
    assert!(routes[1]["route"]["cluster_header"].is_string());
    // The deprecated ring size, with istiod's default when absent.
    let ring = rendered(&HTTPBIN.replace(
        "    connectionPool:\n",
        "    loadBalancer: {consistentHash: {httpHeaderName: x-user}}\n    connectionPool:\n",
    ))
    .1;
    let c = cluster(&ring, "outbound|8000||httpbin");
    assert_eq!(c["lb_policy"], "RING_HASH");
    assert_eq!(c["ring_hash_lb_config"], json!({"minimum_ring_size": 1024}));
}

#[test]
fn tls_toward_the_upstream_simple_mutual_and_what_plain_envoy_cannot_do() {
    let with_tls = |tls: &str| {
        HTTPBIN.replace(
            "    connectionPool:\n",
            &format!("    tls: {tls}\n    connectionPool:\n"),
        )
    };
    let (_, bootstrap) = rendered(&with_tls(
        "{mode: SIMPLE, caCertificates: /etc/certs/ca.pem, sni: httpbin.example.com, subjectAltNames: [httpbin.example.com]}",
    ));
    let socket = &cluster(&bootstrap, "outbound|8000||httpbin")["transport_socket"];
    assert_eq!(socket["name"], "envoy.transport_sockets.tls");
    let context = &socket["typed_config"];
    assert_eq!(context["sni"], "httpbin.example.com");
    assert_eq!(
        context["common_tls_context"]["validation_context"],
        json!({
            "trusted_ca": {"filename": "/etc/certs/ca.pem"},
            "match_typed_subject_alt_names": [{"san_type": "DNS", "matcher": {"exact": "httpbin.example.com"}}],
        })
    );
    // MUTUAL adds the client certificate; no sni: each request's host,
    // checked against the certificate.
    let (_, bootstrap) = rendered(&with_tls(
        "{mode: MUTUAL, clientCertificate: /etc/certs/client.pem, privateKey: /etc/certs/client.key}",
    ));
    let c = cluster(&bootstrap, "outbound|8000||httpbin");
    let common = &c["transport_socket"]["typed_config"]["common_tls_context"];
    assert_eq!(
        common["tls_certificates"],
        json!([{"certificate_chain": {"filename": "/etc/certs/client.pem"}, "private_key": {"filename": "/etc/certs/client.key"}}])
    );
    assert_eq!(
        common["validation_context"]["trusted_ca"]["filename"],
        "/etc/ssl/certs/ca-certificates.crt",
        "the system's authorities, as istiod trusts without caCertificates"
    );
    assert_eq!(
        http_options(c)["upstream_http_protocol_options"],
        json!({"auto_sni": true, "auto_san_validation": true})
    );
    // ISTIO_MUTUAL needs istiod's certificates: said, and no TLS rendered.
    let (t, bootstrap) = rendered(&with_tls("{mode: ISTIO_MUTUAL}"));
    assert!(cluster(&bootstrap, "outbound|8000||httpbin")["transport_socket"].is_null());
    let found: Vec<&str> = t.findings.iter().map(|f| f.path.as_str()).collect();
    assert!(found.contains(&"spec.trafficPolicy.tls.mode"), "{found:?}");
}

#[test]
fn what_plain_envoy_cannot_render_is_said_and_unknown_fields_are_errors() {
    let input = HTTPBIN.replace(
        "    connectionPool:\n",
        "    loadBalancer:
      simple: PASSTHROUGH
      localityLbSetting: {enabled: true}
    tunnel: {protocol: CONNECT, targetHost: example.com, targetPort: 443}
    connectionPool:\n",
    );
    let t = translate(&input, &Options::default()).unwrap();
    let warned: Vec<&str> = t
        .findings
        .iter()
        .filter(|f| f.severity == Severity::Warning)
        .map(|f| f.path.as_str())
        .collect();
    assert_eq!(
        warned,
        [
            "spec.trafficPolicy.loadBalancer.simple",
            "spec.trafficPolicy.loadBalancer.localityLbSetting",
            "spec.trafficPolicy.outlierDetection.consecutiveErrors",
            "spec.trafficPolicy.tunnel",
        ]
    );
    // A misspelt field, at its path and line.
    let rejected = translate(
        &HTTPBIN.replace("maxConnections: 1", "maxConections: 1"),
        &Options::default(),
    )
    .unwrap_err();
    let e = &rejected.findings[0];
    assert_eq!(
        e.path,
        "spec.trafficPolicy.connectionPool.tcp.maxConections"
    );
    assert_eq!(e.line, Some(10));
    assert!(e.message.contains("unknown field `maxConections`"), "{e}");
    // A subset's policy is read as strictly.
    let rejected = translate(
        &REVIEWS.replace(
            "outlierDetection: {consecutive5xxErrors: 7}",
            "outlierDetection: {interval: soon}",
        ),
        &Options::default(),
    )
    .unwrap_err();
    let e = &rejected.findings[0];
    assert_eq!(
        e.path,
        "spec.subsets[2].trafficPolicy.portLevelSettings[0].outlierDetection.interval"
    );
    assert_eq!(e.line, Some(28));
}

#[test]
fn istio_gets_the_destination_rules_as_they_are() {
    let t = translate(REVIEWS, &Options::default()).unwrap();
    let manifests = render::istio_manifests(&t, &IstioOptions::default());
    let rules: Vec<&Value> = manifests
        .iter()
        .filter(|m| m["kind"] == "DestinationRule")
        .collect();
    let written = &envoyfilter::yaml::load(REVIEWS).unwrap()[0].value;
    assert_eq!(rules.len(), 1);
    assert_eq!(rules[0]["spec"], written["spec"], "the spec unchanged");
    assert_eq!(rules[0]["metadata"]["name"], "reviews");
}
