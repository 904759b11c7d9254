//! Push, pull and credential checks against any OCI registry, over the
//! distribution protocol of the `oci-client` crate, with errors that say
//! what the user can do about them.

use std::pin::Pin;
use std::task::{Context, Poll};
use std::time::Duration;

use oci_client::client::{ClientConfig, ClientProtocol};
use oci_client::errors::{OciDistributionError, OciErrorCode};
use oci_client::manifest::{OciDescriptor, OciImageIndex};
use oci_client::secrets::RegistryAuth;
use oci_client::{Client, Reference, RegistryOperation};
use tokio::io::AsyncWrite;

use crate::digest;
use crate::image::{Image, ImageError};
use crate::istio::{self, NotAccepted};
use crate::media_types::{DOCKER_MANIFEST, DOCKER_MANIFEST_LIST, OCI_INDEX, OCI_MANIFEST};

const CONNECT_TIMEOUT: Duration = Duration::from_secs(10);
const READ_TIMEOUT: Duration = Duration::from_secs(60);
const ACCEPTED_MANIFESTS: &[&str] = &[
    OCI_MANIFEST,
    DOCKER_MANIFEST,
    OCI_INDEX,
    DOCKER_MANIFEST_LIST,
];

/// Whether a request reads or writes the repository.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Operation {
    /// Pull: read access.
    Pull,
    /// Push: write access.
    Push,
}

impl Operation {
    fn verb(self) -> &'static str {
        match self {
            Operation::Pull => "pull from",
            Operation::Push => "push to",
        }
    }
}

/// What went wrong talking to a registry.
#[derive(thiserror::Error, Debug)]
pub enum RegistryError {
    /// The reference does not parse.
    #[error("invalid image reference {input:?}: {reason}")]
    BadReference {
        /// The reference as given.
        input: String,
        /// The parser's reason.
        reason: String,
    },
    /// No connection to the registry.
    #[error("cannot reach registry {registry}: {reason}{hint}")]
    Unreachable {
        /// host[:port].
        registry: String,
        /// The underlying cause, such as "Connection refused".
        reason: String,
        /// A suggestion, such as `--insecure` for a plain-HTTP registry.
        hint: String,
    },
    /// 401: no credentials, or the registry rejected them.
    #[error(
        "{registry} answered 401 Unauthorized: {}",
        if *.anonymous {
            format!("it needs a login to {} {repository}; run `wasmhub login {registry}`", .operation.verb())
        } else {
            format!("it rejected the credentials; check them with `wasmhub login {registry}`")
        }
    )]
    Unauthorized {
        /// host[:port].
        registry: String,
        /// The repository.
        repository: String,
        /// Pull or push.
        operation: Operation,
        /// True when no credentials were sent.
        anonymous: bool,
    },
    /// 403: the credentials are valid but do not grant the operation.
    #[error(
        "{registry} answered 403 Forbidden: the credentials are valid but may not {} {repository}",
        match .operation { Operation::Pull => "pull from", Operation::Push => "push to" }
    )]
    Forbidden {
        /// host[:port].
        registry: String,
        /// The repository.
        repository: String,
        /// Pull or push.
        operation: Operation,
    },
    /// The registry has no such manifest.
    #[error("{reference} not found in the registry")]
    NotFound {
        /// The reference.
        reference: String,
    },
    /// Content does not hash to the digest it was asked for.
    #[error(
        "digest mismatch on {what}: expected {expected}, got {actual}; the registry served altered content"
    )]
    DigestMismatch {
        /// `manifest`, `config` or `layer N`.
        what: String,
        /// The digest asked for.
        expected: String,
        /// The digest of what arrived.
        actual: String,
    },
    /// The manifest and blobs do not form an image.
    #[error("{reference}: {source}")]
    BadImage {
        /// The reference.
        reference: String,
        /// What is wrong.
        source: ImageError,
    },
    /// An image Istio would refuse.
    #[error("{reference}: {source}")]
    NotAccepted {
        /// The reference.
        reference: String,
        /// What was found, and why each format failed.
        source: NotAccepted,
    },
    /// Any other answer from the registry.
    #[error("{registry}: {message}")]
    Protocol {
        /// host[:port].
        registry: String,
        /// The registry's or the client's message.
        message: String,
    },
}

/// Parses an image reference such as `ghcr.io/acme/router:1.0`.
///
/// # Errors
///
/// [`RegistryError::BadReference`] with the parser's reason.
///
/// # Examples
///
/// ```
/// let reference = wasmhub::registry::parse_reference("localhost:5000/meshwasm/router:0.1.0")?;
/// assert_eq!(reference.registry(), "localhost:5000");
/// assert_eq!(reference.repository(), "meshwasm/router");
/// assert!(wasmhub::registry::parse_reference("Router:latest").is_err());
/// # Ok::<(), wasmhub::registry::RegistryError>(())
/// ```
pub fn parse_reference(input: &str) -> Result<Reference, RegistryError> {
    input
        .parse::<Reference>()
        .map_err(|e| RegistryError::BadReference {
            input: input.to_string(),
            reason: e.to_string(),
        })
}

/// Progress reports for push and pull. `()` reports nothing.
pub trait Progress: Send + Sync {
    /// The transfer starts; `total` bytes are expected.
    fn begin(&self, total: u64);
    /// `bytes` more bytes were transferred.
    fn advance(&self, bytes: u64);
}

impl Progress for () {
    fn begin(&self, _total: u64) {}
    fn advance(&self, _bytes: u64) {}
}

/// How a push went.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct PushReport {
    /// The manifest digest the registry now serves for the tag.
    pub digest: String,
    /// Blobs uploaded.
    pub uploaded: usize,
    /// Blobs the registry already had.
    pub existing: usize,
}

/// A client for OCI registries.
#[derive(Debug, Clone, Default)]
pub struct Registry {
    insecure: Vec<String>,
}

impl Registry {
    /// A client that speaks HTTPS, except to loopback registries
    /// (`localhost`, `127.0.0.0/8`, `[::1]`) and those in `insecure`
    /// (host[:port]), which it reaches over plain HTTP.
    ///
    /// # Examples
    ///
    /// ```
    /// let registry = wasmhub::registry::Registry::new(vec!["registry.lab:5000".into()]);
    /// assert!(registry.uses_plain_http("registry.lab:5000"));
    /// assert!(registry.uses_plain_http("127.0.0.1:5000"));
    /// assert!(!registry.uses_plain_http("ghcr.io"));
    /// ```
    pub fn new(insecure: Vec<String>) -> Registry {
        Registry { insecure }
    }

    /// Whether requests to `registry` use plain HTTP.
    pub fn uses_plain_http(&self, registry: &str) -> bool {
        let host = match registry.strip_prefix('[') {
            Some(bracketed) => bracketed.split(']').next().unwrap_or(""),
            None => registry.split(':').next().unwrap_or(""),
        };
        let loopback = host == "localhost"
            || host == "::1"
            || host
                .parse::<std::net::Ipv4Addr>()
                .is_ok_and(|ip| ip.is_loopback());
        loopback || self.insecure.iter().any(|r| r == registry || r == host)
    }

    fn client_for(&self, reference: &Reference) -> Client {
        let registry = reference.resolve_registry().to_string();
        let protocol = if self.uses_plain_http(&registry) {
            ClientProtocol::HttpsExcept(vec![registry])
        } else {
            ClientProtocol::Https
        };
        Client::new(ClientConfig {
            protocol,
            connect_timeout: Some(CONNECT_TIMEOUT),
            read_timeout: Some(READ_TIMEOUT),
            ..ClientConfig::default()
        })
    }

    /// Pushes `image` and tags it as `reference`. Blobs the registry already
    /// holds are not sent again. The manifest goes up byte for byte, so the
    /// registry serves the digest [`Image::digest`] reports.
    ///
    /// # Errors
    ///
    /// [`RegistryError`]: unreachable, 401 (with or without credentials),
    /// 403, or any other refusal, with the registry's message.
    pub async fn push(
        &self,
        reference: &Reference,
        image: &Image,
        auth: &RegistryAuth,
        progress: &dyn Progress,
    ) -> Result<PushReport, RegistryError> {
        let client = self.client_for(reference);
        let plain_http = self.uses_plain_http(reference.resolve_registry());
        let fail = |e| classify(e, reference, Operation::Push, auth, plain_http);
        client
            .auth(reference, auth, RegistryOperation::Push)
            .await
            .map_err(fail)?;
        let blobs = image.blobs();
        progress.begin(blobs.iter().map(|b| b.data().len() as u64).sum());
        let mut report = PushReport {
            digest: image.digest().to_string(),
            uploaded: 0,
            existing: 0,
        };
        for blob in blobs {
            if client
                .blob_exists(reference, blob.digest())
                .await
                .map_err(fail)?
            {
                report.existing += 1;
            } else {
                client
                    .push_blob(reference, blob.data().to_vec(), blob.digest())
                    .await
                    .map_err(fail)?;
                report.uploaded += 1;
            }
            progress.advance(blob.data().len() as u64);
        }
        let manifest = image.manifest_blob();
        let content_type = manifest
            .media_type()
            .parse()
            .map_err(|_| RegistryError::Protocol {
                registry: reference.resolve_registry().to_string(),
                message: format!("invalid manifest media type {:?}", manifest.media_type()),
            })?;
        client
            .push_manifest_raw(reference, manifest.data().to_vec(), content_type)
            .await
            .map_err(fail)?;
        Ok(report)
    }

    /// Pulls the image `reference` names, byte for byte, checking every
    /// digest. An image index resolves to its linux/amd64 image, as Istio's
    /// fetcher does.
    ///
    /// # Errors
    ///
    /// [`RegistryError`]: unreachable, 401, 403, not found, a digest
    /// mismatch, or a manifest that is not an image.
    pub async fn pull(
        &self,
        reference: &Reference,
        auth: &RegistryAuth,
        progress: &dyn Progress,
    ) -> Result<Image, RegistryError> {
        let client = self.client_for(reference);
        let plain_http = self.uses_plain_http(reference.resolve_registry());
        let fail = |e| classify(e, reference, Operation::Pull, auth, plain_http);
        client
            .auth(reference, auth, RegistryOperation::Pull)
            .await
            .map_err(fail)?;
        let mut target = reference.clone();
        let (manifest, media_type) = loop {
            let (bytes, served_digest) = client
                .pull_manifest_raw(&target, auth, ACCEPTED_MANIFESTS)
                .await
                .map_err(fail)?;
            let actual = digest::sha256(&bytes);
            let expected = target.digest().map(str::to_string).unwrap_or(served_digest);
            if actual != expected {
                return Err(RegistryError::DigestMismatch {
                    what: "manifest".into(),
                    expected,
                    actual,
                });
            }
            let media_type = manifest_media_type(&bytes);
            if media_type == OCI_INDEX || media_type == DOCKER_MANIFEST_LIST {
                let index: OciImageIndex =
                    serde_json::from_slice(&bytes).map_err(|e| RegistryError::BadImage {
                        reference: target.whole(),
                        source: ImageError::BadManifest {
                            reason: e.to_string(),
                        },
                    })?;
                let entry =
                    istio::platform_entry(&index).map_err(|source| RegistryError::NotAccepted {
                        reference: target.whole(),
                        source,
                    })?;
                target = reference.clone_with_digest(entry.digest.clone());
                continue;
            }
            break (bytes.to_vec(), media_type);
        };
        let parsed: oci_client::manifest::OciImageManifest = serde_json::from_slice(&manifest)
            .map_err(|e| RegistryError::BadImage {
                reference: target.whole(),
                source: ImageError::BadManifest {
                    reason: e.to_string(),
                },
            })?;
        let descriptors: Vec<(&OciDescriptor, String)> =
            std::iter::once((&parsed.config, "config".to_string()))
                .chain(
                    parsed
                        .layers
                        .iter()
                        .enumerate()
                        .map(|(i, l)| (l, format!("layer {i}"))),
                )
                .collect();
        progress.begin(descriptors.iter().map(|(d, _)| d.size.max(0) as u64).sum());
        let mut contents = Vec::with_capacity(descriptors.len());
        for (descriptor, what) in descriptors {
            if digest::sha256_hex(&descriptor.digest).is_none() {
                return Err(RegistryError::BadImage {
                    reference: target.whole(),
                    source: ImageError::UnsupportedDigest {
                        what,
                        digest: descriptor.digest.clone(),
                    },
                });
            }
            let mut sink = ProgressSink {
                data: Vec::with_capacity(descriptor.size.max(0) as usize),
                progress,
            };
            client
                .pull_blob(&target, descriptor, &mut sink)
                .await
                .map_err(|e| match e {
                    OciDistributionError::DigestError(
                        oci_client::errors::DigestError::VerificationError { expected, actual },
                    ) => RegistryError::DigestMismatch {
                        what: what.clone(),
                        expected,
                        actual,
                    },
                    e => fail(e),
                })?;
            contents.push(sink.data);
        }
        let config = contents.remove(0);
        Image::from_parts(&media_type, manifest, config, contents).map_err(|source| match source {
            ImageError::DigestMismatch {
                what,
                expected,
                actual,
            } => RegistryError::DigestMismatch {
                what,
                expected,
                actual,
            },
            source => RegistryError::BadImage {
                reference: target.whole(),
                source,
            },
        })
    }

    /// Checks `username` and `password` against `registry` the way
    /// `docker login` does: the registry's `/v2/` challenge, answered with
    /// HTTP basic auth directly or at the bearer-token service it names.
    ///
    /// # Errors
    ///
    /// [`RegistryError::Unauthorized`] when the credentials are rejected,
    /// [`RegistryError::Unreachable`] when the registry cannot be reached.
    pub async fn check_login(
        &self,
        registry: &str,
        username: &str,
        password: &str,
    ) -> Result<(), RegistryError> {
        let scheme = if self.uses_plain_http(registry) {
            "http"
        } else {
            "https"
        };
        let http = reqwest13::Client::builder()
            .connect_timeout(CONNECT_TIMEOUT)
            .timeout(READ_TIMEOUT)
            .build()
            .map_err(|e| protocol(registry, &e))?;
        let unreachable =
            |e: reqwest13::Error| unreachable(registry, &e, self.uses_plain_http(registry));
        let rejected = || RegistryError::Unauthorized {
            registry: registry.to_string(),
            repository: String::new(),
            operation: Operation::Pull,
            anonymous: false,
        };
        let ping = format!("{scheme}://{registry}/v2/");
        let response = http.get(&ping).send().await.map_err(unreachable)?;
        if response.status().is_success() {
            return Ok(());
        }
        let challenge = response
            .headers()
            .get(reqwest13::header::WWW_AUTHENTICATE)
            .and_then(|v| v.to_str().ok())
            .unwrap_or_default()
            .to_string();
        let challenges = http_auth::parse_challenges(&challenge).unwrap_or_default();
        let bearer = challenges
            .iter()
            .find(|c| c.scheme.eq_ignore_ascii_case("bearer"));
        let request = match bearer {
            Some(bearer) => {
                let param = |name: &str| {
                    bearer
                        .params
                        .iter()
                        .find(|(k, _)| k.eq_ignore_ascii_case(name))
                        .map(|(_, v)| v.to_unescaped())
                };
                let realm = param("realm").ok_or_else(|| RegistryError::Protocol {
                    registry: registry.to_string(),
                    message: format!("a bearer challenge without a realm: {challenge}"),
                })?;
                let mut query = vec![("account", username.to_string())];
                query.extend(param("service").map(|s| ("service", s)));
                http.get(realm).query(&query)
            }
            None => http.get(&ping),
        };
        let answer = request
            .basic_auth(username, Some(password))
            .send()
            .await
            .map_err(unreachable)?;
        match answer.status().as_u16() {
            200..=299 => Ok(()),
            401 | 403 => Err(rejected()),
            code => Err(RegistryError::Protocol {
                registry: registry.to_string(),
                message: format!("the login check answered HTTP {code}"),
            }),
        }
    }
}

/// The manifest's own `mediaType`, else its shape: `manifests` means an index.
fn manifest_media_type(bytes: &[u8]) -> String {
    #[derive(serde::Deserialize)]
    #[serde(rename_all = "camelCase")]
    struct Probe {
        media_type: Option<String>,
        manifests: Option<serde_json::Value>,
    }
    match serde_json::from_slice::<Probe>(bytes) {
        Ok(Probe {
            media_type: Some(t),
            ..
        }) => t,
        Ok(Probe {
            manifests: Some(_), ..
        }) => OCI_INDEX.to_string(),
        _ => OCI_MANIFEST.to_string(),
    }
}

/// Maps `oci-client`'s errors to the ones a user can act on.
fn classify(
    error: OciDistributionError,
    reference: &Reference,
    operation: Operation,
    auth: &RegistryAuth,
    plain_http: bool,
) -> RegistryError {
    let registry = reference.resolve_registry().to_string();
    let repository = reference.repository().to_string();
    let anonymous = matches!(auth, RegistryAuth::Anonymous);
    let by_status = |code: u16| match code {
        401 => Some(RegistryError::Unauthorized {
            registry: registry.clone(),
            repository: repository.clone(),
            operation,
            anonymous,
        }),
        403 => Some(RegistryError::Forbidden {
            registry: registry.clone(),
            repository: repository.clone(),
            operation,
        }),
        404 => Some(RegistryError::NotFound {
            reference: reference.whole(),
        }),
        _ => None,
    };
    let mapped = match &error {
        OciDistributionError::UnauthorizedError { .. }
        | OciDistributionError::AuthenticationFailure(_) => by_status(401),
        OciDistributionError::ServerError { code, .. } => by_status(*code),
        OciDistributionError::ImageManifestNotFoundError(_) => by_status(404),
        OciDistributionError::RegistryError { envelope, .. } => {
            envelope.errors.iter().find_map(|e| match e.code {
                OciErrorCode::Unauthorized => by_status(401),
                OciErrorCode::Denied => by_status(403),
                OciErrorCode::ManifestUnknown
                | OciErrorCode::NameUnknown
                | OciErrorCode::NotFound => by_status(404),
                _ => None,
            })
        }
        OciDistributionError::RequestError(e) => match e.status() {
            Some(status) => by_status(status.as_u16()),
            None if e.is_connect() || e.is_timeout() => Some(unreachable(&registry, e, plain_http)),
            None => None,
        },
        OciDistributionError::DigestError(oci_client::errors::DigestError::VerificationError {
            expected,
            actual,
        }) => Some(RegistryError::DigestMismatch {
            what: "manifest".into(),
            expected: expected.clone(),
            actual: actual.clone(),
        }),
        _ => None,
    };
    mapped.unwrap_or_else(|| protocol(&registry, &error))
}

fn protocol(registry: &str, error: &dyn std::error::Error) -> RegistryError {
    RegistryError::Protocol {
        registry: registry.to_string(),
        message: root_cause(error),
    }
}

fn unreachable(registry: &str, error: &dyn std::error::Error, plain_http: bool) -> RegistryError {
    let reason = root_cause(error);
    let tls_trouble = ["certificate", "tls", "ssl", "handshake", "corrupt message"]
        .iter()
        .any(|needle| reason.to_ascii_lowercase().contains(needle));
    RegistryError::Unreachable {
        registry: registry.to_string(),
        reason,
        hint: if tls_trouble && !plain_http {
            format!(" (if {registry} serves plain HTTP, pass --insecure {registry})")
        } else {
            String::new()
        },
    }
}

/// The innermost cause, which names the actual problem ("Connection refused").
fn root_cause(error: &dyn std::error::Error) -> String {
    let mut cause = error;
    while let Some(source) = cause.source() {
        cause = source;
    }
    cause.to_string()
}

/// Collects a blob while reporting the bytes as they arrive.
struct ProgressSink<'a> {
    data: Vec<u8>,
    progress: &'a dyn Progress,
}

impl AsyncWrite for ProgressSink<'_> {
    fn poll_write(
        self: Pin<&mut Self>,
        _: &mut Context<'_>,
        buf: &[u8],
    ) -> Poll<std::io::Result<usize>> {
        let this = self.get_mut();
        this.data.extend_from_slice(buf);
        this.progress.advance(buf.len() as u64);
        Poll::Ready(Ok(buf.len()))
    }

    fn poll_flush(self: Pin<&mut Self>, _: &mut Context<'_>) -> Poll<std::io::Result<()>> {
        Poll::Ready(Ok(()))
    }

    fn poll_shutdown(self: Pin<&mut Self>, _: &mut Context<'_>) -> Poll<std::io::Result<()>> {
        Poll::Ready(Ok(()))
    }
}
