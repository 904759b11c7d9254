//! A DestinationRule's traffic policy as the settings of a plain Envoy
//! cluster, written as istiod writes them for a sidecar's outbound
//! cluster: circuit breakers and HTTP protocol options from the connection
//! pool, outlier detection, the load balancer (and the route's hash policy
//! for a consistent hash), and the upstream TLS context.
//!
//! Where this differs from istiod, it says so at the field.

use crate::translate::destination_rule::{
    ClientTls, ClusterPolicy, ConnectionPool, ConsistentHash, H2UpgradePolicy, LoadBalancer,
    OutlierDetection, SimpleLb, TlsMode,
};
use serde_json::{Map, Value, json};
use std::time::Duration;

/// istiod's circuit-breaker thresholds where a policy sets none: no limit.
const UNLIMITED: u32 = u32::MAX;

/// The HTTP protocol options' key in `typed_extension_protocol_options`.
const HTTP_OPTIONS: &str = "envoy.extensions.upstreams.http.v3.HttpProtocolOptions";

/// Writes `policy` into `cluster` (a rendered cluster of the bootstrap),
/// with istiod's defaults where the policy is silent: no circuit-breaker
/// limit, least-request balancing. (A cluster no traffic policy covers is
/// not given to this function, and keeps Envoy's defaults: round robin,
/// 1,024 connections, pending and active requests, 3 retries.)
///
/// # Examples
///
/// ```
/// use envoyfilter::render::traffic_policy::apply;
/// use envoyfilter::translate::destination_rule::merged;
///
/// let rule = serde_json::from_value(serde_json::json!({
///     "connectionPool": {"tcp": {"maxConnections": 1}, "http": {"http1MaxPendingRequests": 1}},
/// })).unwrap();
/// let mut cluster = serde_json::json!({"name": "outbound|8000||httpbin"});
/// apply(&merged(Some(&rule), None, Some(8000)), &mut cluster);
/// let limits = &cluster["circuit_breakers"]["thresholds"][0];
/// assert_eq!((limits["max_connections"].as_u64(), limits["max_pending_requests"].as_u64()), (Some(1), Some(1)));
/// ```
pub fn apply(policy: &ClusterPolicy, cluster: &mut Value) {
    let Value::Object(cluster) = cluster else {
        return;
    };
    // istiod's thresholds (no limit) stand where the pool sets none.
    connection_pool(&policy.connection_pool.clone().unwrap_or_default(), cluster);
    if let Some(outlier) = &policy.outlier_detection {
        outlier_detection(outlier, cluster);
    }
    load_balancer(policy.load_balancer.as_ref(), cluster);
    if let Some(tls) = &policy.tls {
        let http2 = policy
            .connection_pool
            .as_ref()
            .and_then(|p| p.http.as_ref())
            .is_some_and(|h| h.h2_upgrade_policy == Some(H2UpgradePolicy::Upgrade));
        upstream_tls(tls, http2, cluster);
    }
}

/// The route's `hash_policy` for a consistent hash, `None` for any other
/// load balancer.
///
/// # Examples
///
/// ```
/// use envoyfilter::render::traffic_policy::hash_policy;
/// use envoyfilter::translate::destination_rule::merged;
///
/// let rule = serde_json::from_value(serde_json::json!({
///     "loadBalancer": {"consistentHash": {"httpHeaderName": "x-user"}},
/// })).unwrap();
/// let hash = hash_policy(&merged(Some(&rule), None, None)).unwrap();
/// assert_eq!(hash[0]["header"]["header_name"], "x-user");
/// ```
pub fn hash_policy(policy: &ClusterPolicy) -> Option<Vec<Value>> {
    let hash = policy.load_balancer.as_ref()?.consistent_hash.as_ref()?;
    let mut policies = Vec::new();
    if let Some(header) = &hash.http_header_name {
        policies.push(json!({"header": {"header_name": header}}));
    }
    if let Some(cookie) = &hash.http_cookie {
        let mut rendered = Map::new();
        rendered.insert("name".into(), json!(cookie.name));
        if let Some(path) = &cookie.path {
            rendered.insert("path".into(), json!(path));
        }
        if let Some(ttl) = cookie.ttl {
            rendered.insert("ttl".into(), json!(duration(ttl.0)));
        }
        if !cookie.attributes.is_empty() {
            let attributes: Vec<Value> = cookie
                .attributes
                .iter()
                .map(|a| json!({"name": a.name, "value": a.value}))
                .collect();
            rendered.insert("attributes".into(), json!(attributes));
        }
        policies.push(json!({"cookie": rendered}));
    }
    if hash.use_source_ip == Some(true) {
        policies.push(json!({"connection_properties": {"source_ip": true}}));
    }
    if let Some(name) = &hash.http_query_parameter_name {
        policies.push(json!({"query_parameter": {"name": name}}));
    }
    Some(policies)
}

fn connection_pool(pool: &ConnectionPool, cluster: &mut Map<String, Value>) {
    let tcp = pool.tcp.clone().unwrap_or_default();
    let http = pool.http.clone().unwrap_or_default();
    // A limit of 0 is no limit, as istiod reads it.
    let limit = |value: Option<u32>| value.filter(|v| *v > 0).unwrap_or(UNLIMITED);
    cluster.insert(
        "circuit_breakers".into(),
        json!({"thresholds": [{
            "max_connections": limit(tcp.max_connections),
            "max_pending_requests": limit(http.http1_max_pending_requests),
            "max_requests": limit(http.http2_max_requests),
            "max_retries": limit(http.max_retries),
            "track_remaining": true,
        }]}),
    );
    if let Some(timeout) = tcp.connect_timeout {
        cluster.insert("connect_timeout".into(), json!(duration(timeout.0)));
    }
    if let Some(keepalive) = &tcp.tcp_keepalive {
        let mut rendered = Map::new();
        if let Some(probes) = keepalive.probes {
            rendered.insert("keepalive_probes".into(), json!(probes));
        }
        if let Some(time) = keepalive.time {
            rendered.insert("keepalive_time".into(), json!(whole_seconds(time.0)));
        }
        if let Some(interval) = keepalive.interval {
            rendered.insert(
                "keepalive_interval".into(),
                json!(whole_seconds(interval.0)),
            );
        }
        cluster.insert(
            "upstream_connection_options".into(),
            json!({"tcp_keepalive": rendered}),
        );
    }
    let mut common = Map::new();
    // TCP's idle timeout stands in for HTTP's when that is not given.
    if let Some(idle) = http.idle_timeout.or(tcp.idle_timeout) {
        common.insert("idle_timeout".into(), json!(duration(idle.0)));
    }
    if let Some(max) = http.max_requests_per_connection.filter(|m| *m > 0) {
        common.insert("max_requests_per_connection".into(), json!(max));
    }
    if let Some(lifetime) = tcp.max_connection_duration {
        common.insert(
            "max_connection_duration".into(),
            json!(duration(lifetime.0)),
        );
    }
    let client_protocol = http.use_client_protocol == Some(true);
    // The client's protocol overrides an upgrade.
    let upgrade = !client_protocol && http.h2_upgrade_policy == Some(H2UpgradePolicy::Upgrade);
    if common.is_empty() && !upgrade && !client_protocol && http.max_concurrent_streams.is_none() {
        return;
    }
    let http2 = match http.max_concurrent_streams {
        Some(streams) => json!({"max_concurrent_streams": streams}),
        None => json!({}),
    };
    let mut options = Map::new();
    if !common.is_empty() {
        options.insert("common_http_protocol_options".into(), Value::Object(common));
    }
    // The protocol toward the upstream: the client's, HTTP/2, or HTTP/1.1
    // (Envoy's default, kept explicit because the options need one).
    let protocol = if client_protocol {
        (
            "use_downstream_protocol_config",
            json!({"http_protocol_options": {}, "http2_protocol_options": http2}),
        )
    } else if upgrade {
        (
            "explicit_http_config",
            json!({"http2_protocol_options": http2}),
        )
    } else {
        ("explicit_http_config", json!({"http_protocol_options": {}}))
    };
    options.insert(protocol.0.into(), protocol.1);
    with_http_options(cluster, |existing| existing.extend(options));
}

/// Changes the cluster's `HttpProtocolOptions`, made when it has none.
fn with_http_options(
    cluster: &mut Map<String, Value>,
    change: impl FnOnce(&mut Map<String, Value>),
) {
    let mut protocols = match cluster.remove("typed_extension_protocol_options") {
        Some(Value::Object(map)) => map,
        _ => Map::new(),
    };
    let mut options = match protocols.remove(HTTP_OPTIONS) {
        Some(Value::Object(map)) => map,
        _ => Map::new(),
    };
    options.insert(
        "@type".into(),
        json!(format!("type.googleapis.com/{HTTP_OPTIONS}")),
    );
    change(&mut options);
    protocols.insert(HTTP_OPTIONS.into(), Value::Object(options));
    cluster.insert(
        "typed_extension_protocol_options".into(),
        Value::Object(protocols),
    );
}

fn outlier_detection(outlier: &OutlierDetection, cluster: &mut Map<String, Value>) {
    let mut rendered = Map::new();
    let mut set = |key: &str, value: Value| {
        rendered.insert(key.into(), value);
    };
    // A count given turns its ejection on (100 %), a zero turns it off.
    let enforcing = |count: u32| if count > 0 { 100 } else { 0 };
    if let Some(count) = outlier.consecutive_5xx_errors {
        set("consecutive_5xx", json!(count));
        set("enforcing_consecutive_5xx", json!(enforcing(count)));
    }
    if let Some(count) = outlier.consecutive_gateway_errors {
        set("consecutive_gateway_failure", json!(count));
        set(
            "enforcing_consecutive_gateway_failure",
            json!(enforcing(count)),
        );
    }
    // The deprecated `consecutiveErrors` is left out, as istiod leaves it
    // (said at translation).
    if let Some(interval) = outlier.interval {
        set("interval", json!(duration(interval.0)));
    }
    if let Some(time) = outlier.base_ejection_time {
        set("base_ejection_time", json!(duration(time.0)));
    }
    if let Some(percent) = outlier.max_ejection_percent.filter(|p| *p > 0) {
        set("max_ejection_percent", json!(percent.min(100)));
    }
    if outlier.split_external_local_origin_errors == Some(true) {
        set("split_external_local_origin_errors", json!(true));
        set("enforcing_local_origin_success_rate", json!(0));
        if let Some(count) = outlier.consecutive_local_origin_failures {
            set("consecutive_local_origin_failure", json!(count));
            set(
                "enforcing_consecutive_local_origin_failure",
                json!(enforcing(count)),
            );
        }
    }
    // Istio has no success-rate ejection.
    set("enforcing_success_rate", json!(0));
    cluster.insert("outlier_detection".into(), Value::Object(rendered));
    // Envoy's panic threshold (routing to every endpoint when too few are
    // healthy) is Istio's minHealthPercent, 0 (off) when not given.
    let percent = outlier.min_health_percent.unwrap_or(0).clamp(0, 100);
    let common = cluster
        .entry("common_lb_config")
        .or_insert_with(|| json!({}));
    common["healthy_panic_threshold"] = json!({"value": percent});
}

/// The load balancer, `None` being istiod's default (least request).
fn load_balancer(lb: Option<&LoadBalancer>, cluster: &mut Map<String, Value>) {
    if let Some(hash) = lb.and_then(|lb| lb.consistent_hash.as_ref()) {
        consistent_hash(hash, cluster);
        return;
    }
    let policy = match lb.and_then(|lb| lb.simple) {
        Some(SimpleLb::RoundRobin) => "ROUND_ROBIN",
        Some(SimpleLb::Random) => "RANDOM",
        // PASSTHROUGH is refused at translation.
        Some(
            SimpleLb::LeastRequest
            | SimpleLb::LeastConn
            | SimpleLb::Unspecified
            | SimpleLb::Passthrough,
        )
        | None => "LEAST_REQUEST",
    };
    cluster.insert("lb_policy".into(), json!(policy));
    let Some(lb) = lb else {
        return;
    };
    let warmup = lb.warmup.as_ref();
    let Some(window) = warmup.and_then(|w| w.duration).or(lb.warmup_duration_secs) else {
        return;
    };
    // Slow start is for the two balancers that weigh endpoints.
    let key = match policy {
        "ROUND_ROBIN" => "round_robin_lb_config",
        "LEAST_REQUEST" => "least_request_lb_config",
        _ => return,
    };
    let mut slow_start = Map::new();
    slow_start.insert("slow_start_window".into(), json!(duration(window.0)));
    // The newer `warmup` form, with istiod's defaults for its two knobs.
    if let Some(warmup) = warmup {
        slow_start.insert(
            "aggression".into(),
            json!({"default_value": warmup.aggression.unwrap_or(1.0), "runtime_key": "meshwasm.slow_start.aggression"}),
        );
        slow_start.insert(
            "min_weight_percent".into(),
            json!({"value": warmup.minimum_percent.unwrap_or(10.0)}),
        );
    }
    cluster.insert(key.into(), json!({"slow_start_config": slow_start}));
}

fn consistent_hash(hash: &ConsistentHash, cluster: &mut Map<String, Value>) {
    if let Some(maglev) = &hash.maglev {
        cluster.insert("lb_policy".into(), json!("MAGLEV"));
        if let Some(size) = maglev.table_size.filter(|s| *s > 0) {
            cluster.insert("maglev_lb_config".into(), json!({"table_size": size}));
        }
        return;
    }
    cluster.insert("lb_policy".into(), json!("RING_HASH"));
    let size = match &hash.ring_hash {
        Some(ring) => ring.minimum_ring_size.filter(|s| *s > 0),
        // The deprecated form, with istiod's default.
        None => Some(hash.minimum_ring_size.filter(|s| *s > 0).unwrap_or(1024)),
    };
    if let Some(size) = size {
        cluster.insert(
            "ring_hash_lb_config".into(),
            json!({"minimum_ring_size": size}),
        );
    }
}

/// Where Debian, Ubuntu (Envoy's images) and Alpine keep the system's
/// certificate authorities, which istiod trusts when `caCertificates` is
/// not given.
const SYSTEM_CA_BUNDLE: &str = "/etc/ssl/certs/ca-certificates.crt";

fn upstream_tls(tls: &ClientTls, http2: bool, cluster: &mut Map<String, Value>) {
    match tls.mode {
        Some(TlsMode::Simple | TlsMode::Mutual) => {}
        // DISABLE, and ISTIO_MUTUAL (said at translation): plain text.
        _ => return,
    }
    let mut common = Map::new();
    common.insert(
        "tls_params".into(),
        json!({"tls_minimum_protocol_version": "TLSv1_2", "tls_maximum_protocol_version": "TLSv1_3"}),
    );
    let verify = tls.insecure_skip_verify != Some(true);
    let mut validation = Map::new();
    if verify {
        let ca = tls.ca_certificates.as_deref().unwrap_or(SYSTEM_CA_BUNDLE);
        validation.insert("trusted_ca".into(), json!({"filename": ca}));
        if let Some(crl) = &tls.ca_crl {
            validation.insert("crl".into(), json!({"filename": crl}));
        }
        if !tls.subject_alt_names.is_empty() {
            let names: Vec<Value> = tls
                .subject_alt_names
                .iter()
                .map(|name| json!({"san_type": "DNS", "matcher": {"exact": name}}))
                .collect();
            validation.insert("match_typed_subject_alt_names".into(), json!(names));
        }
    }
    common.insert("validation_context".into(), Value::Object(validation));
    if tls.mode == Some(TlsMode::Mutual)
        && let (Some(chain), Some(key)) = (&tls.client_certificate, &tls.private_key)
    {
        common.insert(
            "tls_certificates".into(),
            json!([{"certificate_chain": {"filename": chain}, "private_key": {"filename": key}}]),
        );
    }
    if http2 {
        common.insert("alpn_protocols".into(), json!(["h2"]));
    }
    let mut context = Map::new();
    context.insert(
        "@type".into(),
        json!("type.googleapis.com/envoy.extensions.transport_sockets.tls.v3.UpstreamTlsContext"),
    );
    context.insert("common_tls_context".into(), Value::Object(common));
    match &tls.sni {
        Some(sni) => {
            context.insert("sni".into(), json!(sni));
        }
        // No name given: each request's host is the name, and the
        // certificate is checked against it unless names were given.
        None => with_http_options(cluster, |options| {
            options.insert(
                "upstream_http_protocol_options".into(),
                json!({"auto_sni": true, "auto_san_validation": verify && tls.subject_alt_names.is_empty()}),
            );
            if !options.contains_key("explicit_http_config")
                && !options.contains_key("use_downstream_protocol_config")
            {
                options.insert(
                    "explicit_http_config".into(),
                    json!({"http_protocol_options": {}}),
                );
            }
        }),
    }
    cluster.insert(
        "transport_socket".into(),
        json!({"name": "envoy.transport_sockets.tls", "typed_config": context}),
    );
}

/// An Envoy (proto-JSON) duration: seconds with up to nine decimals.
fn duration(d: Duration) -> String {
    match d.subsec_nanos() {
        0 => format!("{}s", d.as_secs()),
        nanos => {
            let decimals = format!("{nanos:09}");
            format!("{}.{}s", d.as_secs(), decimals.trim_end_matches('0'))
        }
    }
}

/// Seconds for Envoy's keep-alive settings, which take whole seconds (a
/// part of one rounds up, so a probe is never sooner than asked).
fn whole_seconds(d: Duration) -> u64 {
    d.as_secs() + u64::from(d.subsec_nanos() > 0)
}
