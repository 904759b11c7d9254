//! Istio's standard metric labels and how their values are found, as
//! Istio's stats filter (`istio_stats.cc`) writes them.

use crate::telemetry::flags::short_codes;
use crate::telemetry::proto::{MalformedProto, ProtoValue, filter_metadata};
use crate::telemetry::workload::Workload;

/// The value of a label nothing is known about.
pub const UNKNOWN: &str = "unknown";

/// The labels of Istio's HTTP metrics, in Istio's order. The TCP metrics
/// have the first [`TCP_LABEL_COUNT`] of them.
pub const STANDARD_LABELS: [&str; 25] = [
    "reporter",
    "source_workload",
    "source_workload_namespace",
    "source_principal",
    "source_app",
    "source_version",
    "source_canonical_service",
    "source_canonical_revision",
    "source_cluster",
    "destination_workload",
    "destination_workload_namespace",
    "destination_principal",
    "destination_app",
    "destination_version",
    "destination_service",
    "destination_service_name",
    "destination_service_namespace",
    "destination_canonical_service",
    "destination_canonical_revision",
    "destination_cluster",
    "request_protocol",
    "response_flags",
    "connection_security_policy",
    "response_code",
    "grpc_response_status",
];

/// How many of [`STANDARD_LABELS`] the TCP metrics carry (all but
/// `response_code` and `grpc_response_status`).
pub const TCP_LABEL_COUNT: usize = 23;

/// Which side of a request the proxy reports.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Reporter {
    /// The client's proxy (outbound traffic).
    Source,
    /// The server's proxy (inbound traffic).
    Destination,
}

impl Reporter {
    /// The reporter of a listener by Envoy's `xds.listener_direction`
    /// (1 inbound, 2 outbound); an unspecified direction reports as the
    /// destination, as a gateway or plain Envoy in front of a service does.
    pub fn from_direction(direction: Option<i64>) -> Reporter {
        match direction {
            Some(2) => Reporter::Source,
            _ => Reporter::Destination,
        }
    }

    /// The label value.
    pub fn as_str(self) -> &'static str {
        match self {
            Reporter::Source => "source",
            Reporter::Destination => "destination",
        }
    }
}

/// The protocol label.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Protocol {
    /// HTTP of any version.
    Http,
    /// gRPC (an HTTP request whose content type is `application/grpc...`).
    Grpc,
    /// A TCP connection.
    Tcp,
}

impl Protocol {
    /// The protocol of an HTTP request with this content type.
    pub fn of_request(content_type: Option<&str>) -> Protocol {
        match content_type {
            Some(t) if t.starts_with("application/grpc") => Protocol::Grpc,
            _ => Protocol::Http,
        }
    }

    /// The label value.
    pub fn as_str(self) -> &'static str {
        match self {
            Protocol::Http => "http",
            Protocol::Grpc => "grpc",
            Protocol::Tcp => "tcp",
        }
    }
}

/// The service a request was for.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct Service {
    /// `destination_service`: the host, e.g. `reviews.shop.svc.cluster.local`.
    pub host: String,
    /// `destination_service_name`, if known.
    pub name: Option<String>,
    /// `destination_service_namespace`, if known.
    pub namespace: Option<String>,
}

/// Clusters whose name is the service Istio reports.
const NAMED_CLUSTERS: [&str; 5] = [
    "BlackHoleCluster",
    "PassthroughCluster",
    "InboundPassthroughCluster",
    "InboundPassthroughClusterIpv4",
    "InboundPassthroughClusterIpv6",
];

impl Service {
    /// The service of an Istio cluster: `filter_metadata.istio.services[0]`
    /// of its metadata (Envoy's `xds.cluster_metadata`), if it has one.
    ///
    /// # Errors
    ///
    /// What is malformed in the metadata.
    pub fn from_cluster_metadata(bytes: &[u8]) -> Result<Option<Service>, MalformedProto> {
        let Some(istio) = filter_metadata(bytes, "istio")? else {
            return Ok(None);
        };
        let first = match istio.get("services") {
            Some(ProtoValue::List(services)) => services.first(),
            _ => None,
        };
        let field = |name: &str| {
            first
                .and_then(|s| s.get(name))
                .and_then(ProtoValue::as_str)
                .filter(|s| !s.is_empty())
                .map(str::to_owned)
        };
        Ok(field("host").map(|host| Service {
            host,
            name: field("name"),
            namespace: field("namespace"),
        }))
    }

    /// The service Istio names after a cluster (`BlackHoleCluster`...), if any.
    pub fn from_cluster_name(cluster: &str) -> Option<Service> {
        NAMED_CLUSTERS.contains(&cluster).then(|| Service {
            host: cluster.to_owned(),
            name: Some(cluster.to_owned()),
            namespace: None,
        })
    }

    /// Istio's fallback without cluster metadata: the request's host, as sent.
    pub fn from_authority(authority: &str) -> Service {
        Service {
            host: authority.to_owned(),
            name: Some(authority.to_owned()),
            namespace: None,
        }
    }
}

/// What is known of a request or connection when it is reported.
#[derive(Debug, Clone)]
pub struct Facts<'a> {
    /// Which side reports.
    pub reporter: Reporter,
    /// This proxy's workload.
    pub local: &'a Workload,
    /// The other side's, if it sent its metadata.
    pub peer: Option<&'a Workload>,
    /// This side's certificate identity (a SPIFFE URI), if any.
    pub local_principal: Option<&'a str>,
    /// The peer's certificate identity, if any.
    pub peer_principal: Option<&'a str>,
    /// Whether the downstream connection is mutual TLS.
    pub mtls: bool,
    /// The protocol.
    pub protocol: Protocol,
    /// The HTTP status sent, if any.
    pub response_code: Option<i64>,
    /// The gRPC status, for gRPC requests.
    pub grpc_status: Option<i64>,
    /// Envoy's response flags.
    pub flags: u64,
    /// The destination service, if known.
    pub service: Option<&'a Service>,
}

fn or_unknown(value: &str) -> String {
    if value.is_empty() {
        UNKNOWN.to_owned()
    } else {
        value.to_owned()
    }
}

impl Facts<'_> {
    /// The values of [`STANDARD_LABELS`], in order.
    ///
    /// # Examples
    ///
    /// ```
    /// use meshwasm_core::telemetry::labels::{Facts, Protocol, Reporter, STANDARD_LABELS};
    /// use meshwasm_core::telemetry::workload::Workload;
    ///
    /// let local = Workload::from_fields([("WORKLOAD_NAME", "ratings-v1"), ("NAMESPACE", "shop")], [("app", "ratings")]);
    /// let facts = Facts {
    ///     reporter: Reporter::Destination,
    ///     local: &local,
    ///     peer: None,
    ///     local_principal: None,
    ///     peer_principal: None,
    ///     mtls: false,
    ///     protocol: Protocol::Http,
    ///     response_code: Some(404),
    ///     grpc_status: None,
    ///     flags: 0,
    ///     service: None,
    /// };
    /// let values = facts.values();
    /// let label = |name: &str| &values[STANDARD_LABELS.iter().position(|l| *l == name).unwrap()];
    /// assert_eq!(label("reporter"), "destination");
    /// assert_eq!(label("source_workload"), "unknown");
    /// assert_eq!(label("source_canonical_revision"), "latest");
    /// assert_eq!(label("destination_app"), "ratings");
    /// assert_eq!(label("destination_service_namespace"), "shop");
    /// assert_eq!(label("connection_security_policy"), "none");
    /// assert_eq!(label("response_flags"), "-");
    /// assert_eq!(label("response_code"), "404");
    /// assert_eq!(label("grpc_response_status"), "");
    /// ```
    pub fn values(&self) -> Vec<String> {
        let unknown_peer = Workload::default();
        let peer = self.peer.unwrap_or(&unknown_peer);
        let (source, destination, source_principal, destination_principal) = match self.reporter {
            Reporter::Destination => (peer, self.local, self.peer_principal, self.local_principal),
            Reporter::Source => (self.local, peer, self.local_principal, self.peer_principal),
        };
        let workload = |w: &Workload, principal: Option<&str>| {
            [
                or_unknown(&w.workload),
                or_unknown(&w.namespace),
                or_unknown(principal.unwrap_or_default()),
                or_unknown(w.app().unwrap_or_default()),
                or_unknown(w.version().unwrap_or_default()),
                w.canonical_service().to_owned(),
                w.canonical_revision().to_owned(),
                or_unknown(&w.cluster),
            ]
        };
        let [
            d_workload,
            d_ns,
            d_principal,
            d_app,
            d_version,
            d_canon,
            d_rev,
            d_cluster,
        ] = workload(destination, destination_principal);
        let service = self.service;
        let service_namespace = service
            .and_then(|s| s.namespace.clone())
            .unwrap_or_else(|| d_ns.clone());
        let security = match self.reporter {
            Reporter::Source => UNKNOWN,
            Reporter::Destination if self.mtls => "mutual_tls",
            Reporter::Destination => "none",
        };
        let mut values = Vec::with_capacity(STANDARD_LABELS.len());
        values.push(self.reporter.as_str().to_owned());
        values.extend(workload(source, source_principal));
        values.extend([d_workload, d_ns, d_principal, d_app, d_version]);
        values.push(service.map_or_else(|| UNKNOWN.to_owned(), |s| or_unknown(&s.host)));
        values.push(
            service
                .and_then(|s| s.name.as_deref())
                .map_or_else(|| UNKNOWN.to_owned(), or_unknown),
        );
        values.push(service_namespace);
        values.extend([d_canon, d_rev, d_cluster]);
        values.push(self.protocol.as_str().to_owned());
        values.push(short_codes(self.flags));
        values.push(security.to_owned());
        if self.protocol != Protocol::Tcp {
            values.push(self.response_code.unwrap_or(0).to_string());
            values.push(match (self.protocol, self.grpc_status) {
                (Protocol::Grpc, Some(status)) => status.to_string(),
                _ => String::new(),
            });
        }
        values
    }
}

impl Facts<'_> {
    /// Writes what the label values depend on, compactly, so that equal
    /// keys mean equal [`values`](Self::values) for the same local
    /// workload: a cache key that costs far less than the 25 values.
    ///
    /// # Examples
    ///
    /// ```
    /// use meshwasm_core::telemetry::labels::{Facts, Protocol, Reporter};
    /// use meshwasm_core::telemetry::workload::Workload;
    ///
    /// let local = Workload::default();
    /// let facts = |code| Facts {
    ///     reporter: Reporter::Destination, local: &local, peer: None, local_principal: None,
    ///     peer_principal: None, mtls: false, protocol: Protocol::Http, response_code: Some(code),
    ///     grpc_status: None, flags: 0, service: None,
    /// };
    /// let key = |f: &Facts| { let mut k = Vec::new(); f.write_key(&mut k); k };
    /// assert_eq!(key(&facts(200)), key(&facts(200)));
    /// assert_ne!(key(&facts(200)), key(&facts(404)));
    /// ```
    pub fn write_key(&self, key: &mut Vec<u8>) {
        let text = |key: &mut Vec<u8>, s: &str| {
            key.extend_from_slice(s.as_bytes());
            key.push(0xff);
        };
        key.push(match self.reporter {
            Reporter::Source => 0,
            Reporter::Destination => 1,
        });
        key.push(self.protocol as u8);
        key.push(u8::from(self.mtls));
        key.extend_from_slice(&self.response_code.unwrap_or(0).to_le_bytes());
        key.extend_from_slice(&self.grpc_status.unwrap_or(-1).to_le_bytes());
        key.extend_from_slice(&self.flags.to_le_bytes());
        for principal in [self.local_principal, self.peer_principal] {
            text(key, principal.unwrap_or("\u{0}"));
        }
        match self.service {
            Some(s) => {
                text(key, &s.host);
                text(key, s.name.as_deref().unwrap_or("\u{0}"));
                text(key, s.namespace.as_deref().unwrap_or("\u{0}"));
            }
            None => key.push(0),
        }
        match self.peer {
            Some(p) => {
                for field in [&p.workload, &p.namespace, &p.cluster] {
                    text(key, field);
                }
                for field in [p.app(), p.version()] {
                    text(key, field.unwrap_or("\u{0}"));
                }
                text(key, p.canonical_service());
                text(key, p.canonical_revision());
            }
            None => key.push(0),
        }
    }
}
