//! Workload identities over a real mTLS hop, as in a mesh: a client-side
//! Envoy, with one cluster per caller standing for that caller's sidecar,
//! presents the caller's certificate, with its SPIFFE URI SAN, to a
//! server-side Envoy that requires one and runs the header-match filter. `principals`, `namespaces` and the `source.*` keys
//! of `when` are checked against what the filter reads from Envoy's
//! `connection.uri_san_peer_certificate`. The CA and certificates are made
//! here, for every test.

use meshwasm_artifacts::{HEADER_MATCH_WASM, TELEMETRY_WASM};
use meshwasm_core::telemetry::labels::STANDARD_LABELS;
use meshwasm_local::envoy::{self, Bootstrap, Envoy, WasmFilter};
use meshwasm_local::prometheus;
use meshwasm_local::traffic::{Outcome, send};
use meshwasm_local::upstream::Upstream;
use rcgen::{
    BasicConstraints, CertificateParams, DnType, IsCa, Issuer, KeyPair, KeyUsagePurpose, SanType,
};
use serde_json::{Value, json};
use std::path::{Path, PathBuf};
use tempfile::TempDir;

/// The callers: the name of their client-side cluster, and the SPIFFE id
/// in their certificate (none for `anonymous`).
const CALLERS: [(&str, Option<&str>); 3] = [
    (
        "frontend",
        Some("spiffe://cluster.local/ns/shop/sa/frontend"),
    ),
    (
        "crawler",
        Some("spiffe://cluster.local/ns/batch/sa/crawler"),
    ),
    ("anonymous", None),
];

/// The request header that picks the caller (the client-side cluster).
const CALLER: &str = "x-caller";

/// A PEM certificate and key on disk.
struct Pair {
    cert: PathBuf,
    key: PathBuf,
}

/// The mesh's CA and the certificates it signed, in a directory removed
/// on drop.
struct Certs {
    dir: TempDir,
    ca: PathBuf,
    server: Pair,
}

impl Certs {
    fn generate() -> Certs {
        let dir = tempfile::Builder::new()
            .prefix("meshwasm-mtls-")
            .tempdir()
            .unwrap();
        let mut ca_params = CertificateParams::new(Vec::new()).unwrap();
        ca_params
            .distinguished_name
            .push(DnType::CommonName, "meshwasm test CA");
        ca_params.is_ca = IsCa::Ca(BasicConstraints::Unconstrained);
        ca_params.key_usages = vec![KeyUsagePurpose::KeyCertSign, KeyUsagePurpose::CrlSign];
        let ca_key = KeyPair::generate().unwrap();
        let ca_cert = ca_params.self_signed(&ca_key).unwrap();
        let ca = dir.path().join("ca.pem");
        std::fs::write(&ca, ca_cert.pem()).unwrap();
        let issuer = Issuer::new(ca_params, ca_key);

        let write = |name: &str, sans: Vec<SanType>| {
            let mut params = CertificateParams::new(Vec::new()).unwrap();
            params.distinguished_name.push(DnType::CommonName, name);
            params.subject_alt_names = sans;
            let key = KeyPair::generate().unwrap();
            let cert = params.signed_by(&key, &issuer).unwrap();
            let pair = Pair {
                cert: dir.path().join(format!("{name}.pem")),
                key: dir.path().join(format!("{name}-key.pem")),
            };
            std::fs::write(&pair.cert, cert.pem()).unwrap();
            std::fs::write(&pair.key, key.serialize_pem()).unwrap();
            pair
        };
        let server = write(
            "server",
            vec![
                SanType::DnsName("localhost".try_into().unwrap()),
                SanType::IpAddress([127, 0, 0, 1].into()),
            ],
        );
        for (name, spiffe) in CALLERS {
            if let Some(uri) = spiffe {
                write(name, vec![SanType::URI(uri.try_into().unwrap())]);
            }
        }
        Certs { ca, server, dir }
    }

    fn client(&self, name: &str) -> Pair {
        Pair {
            cert: self.dir.path().join(format!("{name}.pem")),
            key: self.dir.path().join(format!("{name}-key.pem")),
        }
    }
}

fn file(path: &Path) -> Value {
    json!({"filename": path.display().to_string()})
}

/// The two Envoys of one hop, and the service behind them.
struct Hop {
    server: Envoy,
    client: Envoy,
    backend: Upstream,
    http: reqwest::Client,
    _certs: Certs,
}

impl Hop {
    /// The server-side Envoy requires a client certificate signed by the
    /// CA and runs the filter with `policies`; the client-side Envoy has
    /// one cluster per caller to it, each with that caller's certificate.
    async fn start(policies: Value) -> Hop {
        Self::start_with(policies, None).await
    }

    /// As [`start`](Self::start), with the telemetry filter first on the
    /// server-side Envoy when `telemetry` gives its Telemetry spec.
    async fn start_with(policies: Value, telemetry: Option<Value>) -> Hop {
        let certs = Certs::generate();
        let backend = Upstream::start("backend").await.unwrap();

        let mut server = Bootstrap::new(backend.addr());
        if let Some(spec) = telemetry {
            let labels: Vec<String> = STANDARD_LABELS.iter().map(|l| (*l).to_owned()).collect();
            server = server
                .filter(WasmFilter::new(
                    "telemetry",
                    TELEMETRY_WASM,
                    spec.to_string(),
                ))
                .direction("INBOUND")
                .stats_config(envoyfilter::render::stats::stats_config(&labels));
        }
        let mut server = server
            .filter(WasmFilter::new(
                "header-match",
                HEADER_MATCH_WASM,
                json!({"policies": policies}).to_string(),
            ))
            .to_json();
        server["static_resources"]["listeners"][0]["filter_chains"][0]["transport_socket"] = json!({
            "name": "envoy.transport_sockets.tls",
            "typed_config": {
                "@type": "type.googleapis.com/envoy.extensions.transport_sockets.tls.v3.DownstreamTlsContext",
                "require_client_certificate": true,
                "common_tls_context": {
                    "tls_certificates": [{
                        "certificate_chain": file(&certs.server.cert),
                        "private_key": file(&certs.server.key),
                    }],
                    "validation_context": {"trusted_ca": file(&certs.ca)},
                },
            },
        });
        let server = Envoy::start(Bootstrap::from_config(server)).await.unwrap();

        let mut client = Bootstrap::new(server.listener());
        for (name, _) in CALLERS {
            client = client.cluster(name, server.listener());
        }
        let mut client = client.route_by_header(CALLER).unprotected().to_json();
        for cluster in client["static_resources"]["clusters"]
            .as_array_mut()
            .unwrap()
        {
            let name = cluster["name"].as_str().unwrap().to_owned();
            let mut tls = json!({
                "sni": "localhost",
                "common_tls_context": {
                    "validation_context": {
                        "trusted_ca": file(&certs.ca),
                        "match_typed_subject_alt_names": [
                            {"san_type": "DNS", "matcher": {"exact": "localhost"}},
                        ],
                    },
                },
            });
            if CALLERS.iter().any(|(n, id)| *n == name && id.is_some()) {
                let pair = certs.client(&name);
                tls["common_tls_context"]["tls_certificates"] = json!([{
                    "certificate_chain": file(&pair.cert),
                    "private_key": file(&pair.key),
                }]);
            }
            tls["@type"] = json!(
                "type.googleapis.com/envoy.extensions.transport_sockets.tls.v3.UpstreamTlsContext"
            );
            cluster["transport_socket"] =
                json!({"name": "envoy.transport_sockets.tls", "typed_config": tls});
        }
        let client = Envoy::start(Bootstrap::from_config(client)).await.unwrap();
        Hop {
            server,
            client,
            backend,
            http: envoy::client().unwrap(),
            _certs: certs,
        }
    }

    /// `caller` GETs `path` through its sidecar.
    async fn get(&self, caller: &str, path: &str) -> Outcome {
        send(self.http.get(self.client.url(path)).header(CALLER, caller))
            .await
            .unwrap()
    }

    /// Whether the backend has seen `caller`'s request for `path`.
    fn backend_saw(&self, caller: &str, path: &str) -> bool {
        self.backend
            .seen()
            .iter()
            .any(|s| s.path == path && s.header(CALLER) == Some(caller))
    }

    /// `caller`'s request for `path` reached the backend.
    async fn assert_allowed(&self, caller: &str, path: &str) {
        let outcome = self.get(caller, path).await;
        assert_eq!(
            (outcome.status, outcome.upstream()),
            (200, Some("backend")),
            "{caller} {path}: {outcome:?}\n{}",
            self.server.log()
        );
        assert!(self.backend_saw(caller, path), "{caller} {path}");
    }

    /// `caller`'s request for `path` got the filter's 403 and never
    /// reached the backend.
    async fn assert_denied(&self, caller: &str, path: &str) {
        let outcome = self.get(caller, path).await;
        assert_eq!(
            (outcome.status, outcome.body.as_str()),
            (403, "RBAC: access denied"),
            "{caller} {path}: {outcome:?}"
        );
        assert!(!self.backend_saw(caller, path), "{caller} {path}");
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn principals_allow_one_service_account_and_not_the_other() {
    let hop = Hop::start(json!([
        {"action": "ALLOW", "rules": [{"from": [{"source": {"principals": ["cluster.local/ns/shop/sa/frontend"]}}]}]},
        {"action": "DENY", "rules": [{
            "from": [{"source": {"namespaces": ["batch"]}}],
            "to": [{"operation": {"paths": ["/admin/*"]}}],
        }]},
    ]))
    .await;
    hop.assert_allowed("frontend", "/products").await;
    hop.assert_allowed("frontend", "/admin/users").await;
    hop.assert_denied("crawler", "/products").await;
    hop.assert_denied("crawler", "/admin/users").await;

    // Without a certificate the server-side Envoy ends the handshake: the
    // filter never sees the request, nor does the backend.
    let outcome = hop.get("anonymous", "/products").await;
    assert_eq!(outcome.status, 503, "{outcome:?}");
    assert!(!hop.backend_saw("anonymous", "/products"));
    let stats = hop.server.stats().await.unwrap();
    let no_cert: u64 = stats
        .iter()
        .filter(|(name, _)| name.ends_with(".ssl.fail_verify_no_cert"))
        .map(|(_, n)| n)
        .sum();
    assert!(no_cert >= 1, "{stats:#?}");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn namespaces_allow_both_and_deny_admin_to_batch() {
    let hop = Hop::start(json!([
        {"action": "ALLOW", "rules": [{"from": [{"source": {"namespaces": ["shop", "batch"]}}]}]},
        {"action": "DENY", "rules": [{
            "from": [{"source": {"namespaces": ["batch"]}}],
            "to": [{"operation": {"paths": ["/admin/*"]}}],
        }]},
    ]))
    .await;
    hop.assert_allowed("frontend", "/products").await;
    hop.assert_allowed("crawler", "/catalog").await;
    hop.assert_allowed("frontend", "/admin/users").await;
    hop.assert_denied("crawler", "/admin/reindex").await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn when_source_principal_and_namespace_read_the_peer_certificate() {
    let hop = Hop::start(json!([
        {"action": "ALLOW", "rules": [
            {"when": [{"key": "source.principal", "values": ["cluster.local/ns/batch/sa/crawler"]}]},
            {
                "to": [{"operation": {"paths": ["/public/*"]}}],
                "when": [{"key": "source.namespace", "values": ["shop"]}],
            },
        ]},
    ]))
    .await;
    hop.assert_allowed("crawler", "/jobs").await;
    hop.assert_allowed("frontend", "/public/logo.png").await;
    hop.assert_denied("frontend", "/jobs").await;
}

/// The telemetry filter, as the server's sidecar, reports the mTLS hop as
/// Istio does: `connection_security_policy` `mutual_tls`, and each
/// caller's SPIFFE id from its certificate as `source_principal`.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn telemetry_reports_mutual_tls_and_each_callers_spiffe_id() {
    let allow_all = json!([{"action": "ALLOW", "rules": [{}]}]);
    let hop = Hop::start_with(allow_all, Some(json!({}))).await;
    for _ in 0..3 {
        hop.assert_allowed("frontend", "/products").await;
    }
    hop.assert_allowed("crawler", "/jobs").await;
    let text = hop.server.admin_get("/stats/prometheus").await.unwrap();
    let stats = prometheus::parse(&text);
    for (caller, requests) in [("frontend", 3.0), ("crawler", 1.0)] {
        let id = CALLERS
            .iter()
            .find(|(n, _)| *n == caller)
            .unwrap()
            .1
            .unwrap();
        let counted = prometheus::total(
            &stats,
            "istio_requests_total",
            &[
                ("source_principal", id),
                ("connection_security_policy", "mutual_tls"),
                ("response_code", "200"),
            ],
        );
        assert_eq!(counted, requests, "{caller}: {text}");
    }
}
