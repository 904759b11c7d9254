//! A DestinationRule's `trafficPolicy`, read as Istio's API defines it,
//! and merged for one cluster as istiod merges it: a subset's policy over
//! the rule's, then the settings of the cluster's port.
//!
//! Every field of Istio's `TrafficPolicy` is known here, so a misspelt one
//! is an error at its path and line. The settings plain Envoy cannot have
//! (istiod's own certificates, locality from Kubernetes, tunnels) are
//! reported by [`unsupported`]; `render::traffic_policy` writes the rest
//! into the clusters.

use meshwasm_core::duration::IstioDuration;
use serde::Deserialize;
use serde_json::Value;

/// Istio's `TrafficPolicy`.
#[derive(Debug, Clone, Default, PartialEq, Deserialize)]
#[serde(rename_all = "camelCase", deny_unknown_fields)]
pub struct TrafficPolicy {
    /// How requests spread over the endpoints.
    pub load_balancer: Option<LoadBalancer>,
    /// Limits on connections and requests: Envoy's circuit breakers.
    pub connection_pool: Option<ConnectionPool>,
    /// Ejecting endpoints that keep failing.
    pub outlier_detection: Option<OutlierDetection>,
    /// TLS toward the upstream.
    pub tls: Option<ClientTls>,
    /// Settings for one destination port, replacing the four above.
    #[serde(default)]
    pub port_level_settings: Vec<PortTrafficPolicy>,
    /// HTTP CONNECT tunnelling (not rendered).
    pub tunnel: Option<Value>,
    /// PROXY protocol toward the upstream (not rendered).
    pub proxy_protocol: Option<Value>,
    /// A retry budget (not rendered).
    pub retry_budget: Option<Value>,
}

/// Istio's `TrafficPolicy.PortTrafficPolicy`.
#[derive(Debug, Clone, Default, PartialEq, Deserialize)]
#[serde(rename_all = "camelCase", deny_unknown_fields)]
pub struct PortTrafficPolicy {
    /// The destination port these settings are for.
    pub port: Option<PortSelector>,
    /// As [`TrafficPolicy::load_balancer`].
    pub load_balancer: Option<LoadBalancer>,
    /// As [`TrafficPolicy::connection_pool`].
    pub connection_pool: Option<ConnectionPool>,
    /// As [`TrafficPolicy::outlier_detection`].
    pub outlier_detection: Option<OutlierDetection>,
    /// As [`TrafficPolicy::tls`].
    pub tls: Option<ClientTls>,
}

/// Istio's `PortSelector`.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct PortSelector {
    /// The port number.
    pub number: u32,
}

/// Istio's `LoadBalancerSettings`.
#[derive(Debug, Clone, Default, PartialEq, Deserialize)]
#[serde(rename_all = "camelCase", deny_unknown_fields)]
pub struct LoadBalancer {
    /// `ROUND_ROBIN`, `LEAST_REQUEST`, `LEAST_CONN`, `RANDOM`, `PASSTHROUGH`, `UNSPECIFIED`.
    pub simple: Option<SimpleLb>,
    /// Sticky sessions by a hash of the request.
    pub consistent_hash: Option<ConsistentHash>,
    /// Locality-aware routing (not rendered: plain Envoy has no localities).
    pub locality_lb_setting: Option<Value>,
    /// Slow start for new endpoints.
    pub warmup_duration_secs: Option<IstioDuration>,
    /// Slow start, the newer form (its `duration`).
    pub warmup: Option<Warmup>,
}

/// Istio's `WarmupConfiguration`.
#[derive(Debug, Clone, Default, PartialEq, Deserialize)]
#[serde(rename_all = "camelCase", deny_unknown_fields)]
pub struct Warmup {
    /// How long a new endpoint ramps up.
    pub duration: Option<IstioDuration>,
    /// The share of traffic a new endpoint starts with, in percent.
    pub minimum_percent: Option<f64>,
    /// How fast the ramp rises (1 is linear).
    pub aggression: Option<f64>,
}

/// Istio's `LoadBalancerSettings.SimpleLB`.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Deserialize)]
#[serde(rename_all = "SCREAMING_SNAKE_CASE")]
pub enum SimpleLb {
    /// Envoy's default, round robin.
    Unspecified,
    /// Round robin.
    RoundRobin,
    /// The fewest active requests of two picked at random (Istio's default).
    LeastRequest,
    /// The deprecated name of `LEAST_REQUEST`.
    LeastConn,
    /// Random.
    Random,
    /// Straight to the address the caller asked for (not rendered).
    Passthrough,
}

/// Istio's `LoadBalancerSettings.ConsistentHashLB`.
#[derive(Debug, Clone, Default, PartialEq, Deserialize)]
#[serde(rename_all = "camelCase", deny_unknown_fields)]
pub struct ConsistentHash {
    /// Hash this request header.
    pub http_header_name: Option<String>,
    /// Hash this cookie, which Envoy sets when `ttl` is given.
    pub http_cookie: Option<HttpCookie>,
    /// Hash the client's address.
    pub use_source_ip: Option<bool>,
    /// Hash this query parameter.
    pub http_query_parameter_name: Option<String>,
    /// Ring hash, with its ring size.
    pub ring_hash: Option<RingHash>,
    /// Maglev, with its table size.
    pub maglev: Option<Maglev>,
    /// The ring size of a ring hash, the deprecated form.
    pub minimum_ring_size: Option<u64>,
}

/// Istio's `ConsistentHashLB.HTTPCookie`.
#[derive(Debug, Clone, Default, PartialEq, Deserialize)]
#[serde(rename_all = "camelCase", deny_unknown_fields)]
pub struct HttpCookie {
    /// The cookie's name.
    pub name: String,
    /// The cookie's path, when Envoy sets it.
    pub path: Option<String>,
    /// The cookie's lifetime; given, Envoy sets the cookie when absent.
    pub ttl: Option<IstioDuration>,
    /// The cookie's attributes, when Envoy sets it.
    #[serde(default)]
    pub attributes: Vec<CookieAttribute>,
}

/// Istio's `HTTPCookie.Attribute`.
#[derive(Debug, Clone, Default, PartialEq, Eq, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct CookieAttribute {
    /// The attribute's name.
    pub name: String,
    /// Its value.
    #[serde(default)]
    pub value: String,
}

/// Istio's `ConsistentHashLB.RingHash`.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, Deserialize)]
#[serde(rename_all = "camelCase", deny_unknown_fields)]
pub struct RingHash {
    /// The ring's least size.
    pub minimum_ring_size: Option<u64>,
}

/// Istio's `ConsistentHashLB.MagLev`.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, Deserialize)]
#[serde(rename_all = "camelCase", deny_unknown_fields)]
pub struct Maglev {
    /// The lookup table's size, a prime.
    pub table_size: Option<u64>,
}

/// Istio's `ConnectionPoolSettings`.
#[derive(Debug, Clone, Default, PartialEq, Deserialize)]
#[serde(rename_all = "camelCase", deny_unknown_fields)]
pub struct ConnectionPool {
    /// TCP settings, for HTTP too.
    pub tcp: Option<TcpPool>,
    /// HTTP settings.
    pub http: Option<HttpPool>,
}

/// Istio's `ConnectionPoolSettings.TCPSettings`.
#[derive(Debug, Clone, Default, PartialEq, Deserialize)]
#[serde(rename_all = "camelCase", deny_unknown_fields)]
pub struct TcpPool {
    /// Most connections to the destination.
    pub max_connections: Option<u32>,
    /// How long a connection may take to open.
    pub connect_timeout: Option<IstioDuration>,
    /// TCP keep-alive probes.
    pub tcp_keepalive: Option<TcpKeepalive>,
    /// The longest a connection lives.
    pub max_connection_duration: Option<IstioDuration>,
    /// How long an idle TCP connection stays open (TCP proxying only).
    pub idle_timeout: Option<IstioDuration>,
}

/// Istio's `TCPSettings.TcpKeepalive`.
#[derive(Debug, Clone, Default, PartialEq, Deserialize)]
#[serde(rename_all = "camelCase", deny_unknown_fields)]
pub struct TcpKeepalive {
    /// Unanswered probes before the connection is dropped.
    pub probes: Option<u32>,
    /// Idle time before the first probe.
    pub time: Option<IstioDuration>,
    /// Time between probes.
    pub interval: Option<IstioDuration>,
}

/// Istio's `ConnectionPoolSettings.HTTPSettings`.
#[derive(Debug, Clone, Default, PartialEq, Deserialize)]
#[serde(rename_all = "camelCase", deny_unknown_fields)]
pub struct HttpPool {
    /// Most requests waiting for a connection.
    pub http1_max_pending_requests: Option<u32>,
    /// Most requests in flight (any protocol, despite the name).
    pub http2_max_requests: Option<u32>,
    /// Requests per connection before it is closed (0: no limit).
    pub max_requests_per_connection: Option<u32>,
    /// Most retries in flight.
    pub max_retries: Option<u32>,
    /// How long an idle connection stays open.
    pub idle_timeout: Option<IstioDuration>,
    /// Whether HTTP/1.1 connections are upgraded to HTTP/2.
    pub h2_upgrade_policy: Option<H2UpgradePolicy>,
    /// Speak the client's protocol upstream.
    pub use_client_protocol: Option<bool>,
    /// Most concurrent streams per HTTP/2 connection.
    pub max_concurrent_streams: Option<u32>,
}

/// Istio's `HTTPSettings.H2UpgradePolicy`.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Deserialize)]
#[serde(rename_all = "SCREAMING_SNAKE_CASE")]
pub enum H2UpgradePolicy {
    /// The mesh's default (no upgrade).
    Default,
    /// Keep HTTP/1.1.
    DoNotUpgrade,
    /// Speak HTTP/2 to the upstream.
    Upgrade,
}

/// Istio's `OutlierDetection`.
#[derive(Debug, Clone, Default, PartialEq, Deserialize)]
#[serde(rename_all = "camelCase", deny_unknown_fields)]
pub struct OutlierDetection {
    /// Count local-origin failures (resets, timeouts) apart from responses.
    pub split_external_local_origin_errors: Option<bool>,
    /// Consecutive local-origin failures that eject (with the split on).
    pub consecutive_local_origin_failures: Option<u32>,
    /// Consecutive 502, 503 or 504 that eject.
    pub consecutive_gateway_errors: Option<u32>,
    /// Consecutive 5xx that eject.
    #[serde(rename = "consecutive5xxErrors")]
    pub consecutive_5xx_errors: Option<u32>,
    /// The deprecated form of `consecutiveGatewayErrors`.
    pub consecutive_errors: Option<i64>,
    /// Time between ejection sweeps.
    pub interval: Option<IstioDuration>,
    /// Least time an ejected endpoint stays out, times its ejections.
    pub base_ejection_time: Option<IstioDuration>,
    /// Most endpoints ejected, in percent.
    pub max_ejection_percent: Option<i64>,
    /// Below this share of healthy endpoints, ejection stops counting.
    pub min_health_percent: Option<i64>,
}

/// Istio's `ClientTLSSettings`.
#[derive(Debug, Clone, Default, PartialEq, Deserialize)]
#[serde(rename_all = "camelCase", deny_unknown_fields)]
pub struct ClientTls {
    /// How the upstream connection is secured.
    pub mode: Option<TlsMode>,
    /// The client certificate (MUTUAL), a file.
    pub client_certificate: Option<String>,
    /// The client certificate's key (MUTUAL), a file.
    pub private_key: Option<String>,
    /// The authorities that sign the upstream's certificate, a file.
    pub ca_certificates: Option<String>,
    /// A Kubernetes secret holding the above (not rendered).
    pub credential_name: Option<String>,
    /// Names the upstream's certificate must carry.
    #[serde(default)]
    pub subject_alt_names: Vec<String>,
    /// The name sent in the TLS handshake.
    pub sni: Option<String>,
    /// Skip checking the upstream's certificate.
    pub insecure_skip_verify: Option<bool>,
    /// Revoked certificates, a file.
    pub ca_crl: Option<String>,
}

/// Istio's `ClientTLSSettings.TLSmode`.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Deserialize)]
#[serde(rename_all = "SCREAMING_SNAKE_CASE")]
pub enum TlsMode {
    /// Plain text.
    Disable,
    /// TLS, the upstream's certificate checked.
    Simple,
    /// TLS with a client certificate.
    Mutual,
    /// Istio's mutual TLS, with istiod's certificates (not rendered).
    IstioMutual,
}

/// The four settings one cluster gets: a subset's over the rule's, then
/// its port's.
#[derive(Debug, Clone, Default, PartialEq)]
pub struct ClusterPolicy {
    /// See [`TrafficPolicy::load_balancer`].
    pub load_balancer: Option<LoadBalancer>,
    /// See [`TrafficPolicy::connection_pool`].
    pub connection_pool: Option<ConnectionPool>,
    /// See [`TrafficPolicy::outlier_detection`].
    pub outlier_detection: Option<OutlierDetection>,
    /// See [`TrafficPolicy::tls`].
    pub tls: Option<ClientTls>,
}

impl From<&PortTrafficPolicy> for ClusterPolicy {
    /// A port's settings, whole: what it leaves out is not set.
    fn from(settings: &PortTrafficPolicy) -> Self {
        ClusterPolicy {
            load_balancer: settings.load_balancer.clone(),
            connection_pool: settings.connection_pool.clone(),
            outlier_detection: settings.outlier_detection.clone(),
            tls: settings.tls.clone(),
        }
    }
}

/// The policy for the cluster of `port` (when known), as istiod merges it:
/// the rule's settings for that port replace its own; a subset's settings
/// replace the rule's one by one; the subset's settings for that port
/// replace all four, unset ones falling back to Envoy's defaults, not to
/// the rule's.
///
/// # Examples
///
/// ```
/// use envoyfilter::translate::destination_rule::{merged, TrafficPolicy};
///
/// let rule: TrafficPolicy = serde_json::from_value(serde_json::json!({
///     "connectionPool": {"tcp": {"maxConnections": 1}},
///     "outlierDetection": {"consecutive5xxErrors": 3},
/// })).unwrap();
/// let subset: TrafficPolicy = serde_json::from_value(serde_json::json!({
///     "connectionPool": {"tcp": {"maxConnections": 100}},
/// })).unwrap();
/// let policy = merged(Some(&rule), Some(&subset), Some(9080));
/// let tcp = policy.connection_pool.unwrap().tcp.unwrap();
/// assert_eq!(tcp.max_connections, Some(100));
/// assert_eq!(policy.outlier_detection.unwrap().consecutive_5xx_errors, Some(3));
/// ```
pub fn merged(
    rule: Option<&TrafficPolicy>,
    subset: Option<&TrafficPolicy>,
    port: Option<u32>,
) -> ClusterPolicy {
    let mut policy = rule.map(|r| at_port(r, port)).unwrap_or_default();
    if let Some(subset) = subset {
        let own = own_settings(subset);
        policy.load_balancer = own.load_balancer.or(policy.load_balancer);
        policy.connection_pool = own.connection_pool.or(policy.connection_pool);
        policy.outlier_detection = own.outlier_detection.or(policy.outlier_detection);
        policy.tls = own.tls.or(policy.tls);
        if let Some(settings) = port_settings(subset, port) {
            policy = settings;
        }
    }
    policy
}

/// A policy's settings for `port`: its `portLevelSettings` entry for that
/// port, whole, else its own.
fn at_port(policy: &TrafficPolicy, port: Option<u32>) -> ClusterPolicy {
    port_settings(policy, port).unwrap_or_else(|| own_settings(policy))
}

fn own_settings(policy: &TrafficPolicy) -> ClusterPolicy {
    ClusterPolicy {
        load_balancer: policy.load_balancer.clone(),
        connection_pool: policy.connection_pool.clone(),
        outlier_detection: policy.outlier_detection.clone(),
        tls: policy.tls.clone(),
    }
}

fn port_settings(policy: &TrafficPolicy, port: Option<u32>) -> Option<ClusterPolicy> {
    let port = port?;
    policy
        .port_level_settings
        .iter()
        .find(|p| p.port.is_some_and(|p| p.number == port))
        .map(ClusterPolicy::from)
}

/// What a policy at `path` asks for that plain Envoy cannot have, each
/// with its field path (under `path`) and why.
///
/// # Examples
///
/// ```
/// use envoyfilter::translate::destination_rule::{unsupported, TrafficPolicy};
///
/// let policy: TrafficPolicy = serde_json::from_value(serde_json::json!({
///     "tls": {"mode": "ISTIO_MUTUAL"},
/// })).unwrap();
/// let found = unsupported(&policy, "spec.trafficPolicy");
/// assert_eq!(found[0].0, "spec.trafficPolicy.tls.mode");
/// ```
pub fn unsupported(policy: &TrafficPolicy, path: &str) -> Vec<(String, String)> {
    let mut found = Vec::new();
    let mut say = |field: String, why: &str| found.push((field, why.to_owned()));
    let settings = std::iter::once((path.to_owned(), own_settings(policy))).chain(
        policy.port_level_settings.iter().enumerate().map(|(i, p)| {
            (
                format!("{path}.portLevelSettings[{i}]"),
                ClusterPolicy::from(p),
            )
        }),
    );
    for (i, p) in policy.port_level_settings.iter().enumerate() {
        if p.port.is_none() {
            say(
                format!("{path}.portLevelSettings[{i}].port"),
                "is required: the settings are for one destination port",
            );
        }
    }
    for (at, settings) in settings {
        if let Some(lb) = &settings.load_balancer {
            if lb.simple == Some(SimpleLb::Passthrough) {
                say(
                    format!("{at}.loadBalancer.simple"),
                    "PASSTHROUGH sends requests to the address the caller dialled (Envoy's original destination), which a plain Envoy listener does not capture; the cluster gets istiod's default, least request",
                );
            }
            if lb.simple.is_some() && lb.consistent_hash.is_some() {
                say(
                    format!("{at}.loadBalancer"),
                    "sets both simple and consistentHash; Istio takes one of them, so the cluster gets the consistent hash",
                );
            }
            if lb.locality_lb_setting.is_some() {
                say(
                    format!("{at}.loadBalancer.localityLbSetting"),
                    "locality load balancing needs the endpoints' regions and zones, which istiod takes from Kubernetes; plain Envoy has one locality, so it is not rendered",
                );
            }
        }
        if let Some(outlier) = &settings.outlier_detection {
            if outlier.consecutive_errors.is_some() {
                say(
                    format!("{at}.outlierDetection.consecutiveErrors"),
                    "is deprecated, and istiod leaves it out of the cluster; so does this output (use consecutiveGatewayErrors for 502, 503 and 504, or consecutive5xxErrors)",
                );
            }
            if outlier.consecutive_local_origin_failures.is_some()
                && outlier.split_external_local_origin_errors != Some(true)
            {
                say(
                    format!("{at}.outlierDetection.consecutiveLocalOriginFailures"),
                    "counts only with splitExternalLocalOriginErrors: true, which Istio requires; it is not rendered",
                );
            }
        }
        if let Some(tls) = &settings.tls {
            let files = tls.client_certificate.is_some() && tls.private_key.is_some();
            if tls.mode == Some(TlsMode::Mutual) && !files && tls.credential_name.is_none() {
                say(
                    format!("{at}.tls"),
                    "MUTUAL needs clientCertificate and privateKey; without them istiod gives the cluster no TLS, where this output keeps TLS without a client certificate",
                );
            }
            if tls.mode == Some(TlsMode::IstioMutual) {
                say(
                    format!("{at}.tls.mode"),
                    "ISTIO_MUTUAL uses the workload certificates istiod issues over SDS, which a plain Envoy does not have; the cluster is rendered without TLS (use MUTUAL with certificate files)",
                );
            }
            if tls.credential_name.is_some() {
                say(
                    format!("{at}.tls.credentialName"),
                    "names a Kubernetes secret, which plain Envoy cannot read; give the files as caCertificates, clientCertificate and privateKey",
                );
            }
        }
    }
    for (field, value) in [
        ("tunnel", &policy.tunnel),
        ("proxyProtocol", &policy.proxy_protocol),
        ("retryBudget", &policy.retry_budget),
    ] {
        if value.is_some() {
            say(
                format!("{path}.{field}"),
                "is not rendered in the plain Envoy output; Istio gets the DestinationRule as it is",
            );
        }
    }
    found
}
