//! A real OCI registry (Debian's `docker-registry`, the CNCF distribution
//! server) on 127.0.0.1 with temporary storage, optionally behind htpasswd
//! authentication: what wasmhub's tests push to and pull from.

use std::net::{SocketAddr, TcpListener};
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

use std::convert::Infallible;
use std::sync::Arc;
use std::sync::atomic::{AtomicUsize, Ordering};

use anyhow::{Context as _, Result, anyhow, bail};
use bytes::Bytes;
use http_body_util::{BodyExt as _, Full};
use hyper::body::Incoming;
use hyper::service::service_fn;
use hyper::{Request, Response};
use hyper_util::rt::TokioIo;
use tempfile::TempDir;
use tokio::task::JoinHandle;

const DEFAULT_BINARY: &str = "/usr/bin/docker-registry";

/// A running registry; dropping it stops the process and deletes its storage.
pub struct Registry {
    child: Child,
    addr: SocketAddr,
    dir: TempDir,
}

impl Registry {
    /// Starts a registry that anyone may push to and pull from.
    ///
    /// # Errors
    ///
    /// Fails when `docker-registry` is missing (install the Debian package
    /// `docker-registry`, or set `MESHWASM_REGISTRY`) or does not answer
    /// within 15 s.
    pub async fn start() -> Result<Registry> {
        Registry::launch(None).await
    }

    /// Starts a registry that demands HTTP basic authentication as
    /// `user`/`password` (htpasswd, bcrypt) for every request.
    ///
    /// # Errors
    ///
    /// As [`Registry::start`].
    pub async fn start_with_login(user: &str, password: &str) -> Result<Registry> {
        Registry::launch(Some((user, password))).await
    }

    async fn launch(login: Option<(&str, &str)>) -> Result<Registry> {
        let binary = std::env::var_os("MESHWASM_REGISTRY")
            .map(PathBuf::from)
            .unwrap_or_else(|| PathBuf::from(DEFAULT_BINARY));
        if !binary.is_file() {
            bail!(
                "{} not found: install the Debian package docker-registry (scripts/test.sh does), or set MESHWASM_REGISTRY",
                binary.display()
            );
        }
        let dir = tempfile::Builder::new()
            .prefix("meshwasm-registry-")
            .tempdir()?;
        let auth = match login {
            Some((user, password)) => {
                // Cost 4, the minimum: these are throwaway test logins.
                let hash = bcrypt::hash(password, 4)?;
                let htpasswd = dir.path().join("htpasswd");
                std::fs::write(&htpasswd, format!("{user}:{hash}\n"))?;
                format!(
                    "auth:\n  htpasswd:\n    realm: meshwasm-test\n    path: {}\n",
                    htpasswd.display()
                )
            }
            None => String::new(),
        };
        let addr = free_loopback_port()?;
        let config = dir.path().join("config.yml");
        std::fs::write(
            &config,
            format!(
                "version: 0.1\nlog:\n  level: warn\n  accesslog:\n    disabled: true\n\
                 storage:\n  filesystem:\n    rootdirectory: {}\n  delete:\n    enabled: true\n\
                 http:\n  addr: {addr}\n  secret: meshwasm-test-only\n{auth}",
                dir.path().join("storage").display()
            ),
        )?;
        let log = std::fs::File::create(dir.path().join("registry.log"))?;
        let mut command = Command::new(&binary);
        command
            .arg("serve")
            .arg(&config)
            .stdin(Stdio::null())
            .stdout(log.try_clone()?)
            .stderr(log);
        crate::envoy::die_with_parent(&mut command);
        let child = command
            .spawn()
            .with_context(|| format!("cannot start {}", binary.display()))?;
        let mut registry = Registry { child, addr, dir };
        registry.wait_ready().await?;
        Ok(registry)
    }

    async fn wait_ready(&mut self) -> Result<()> {
        let client = reqwest::Client::builder()
            .timeout(Duration::from_secs(2))
            .build()?;
        let deadline = Instant::now() + Duration::from_secs(15);
        while Instant::now() < deadline {
            if let Some(status) = self.child.try_wait()? {
                bail!("docker-registry exited ({status}):\n{}", self.log());
            }
            let answer = client.get(format!("http://{}/v2/", self.addr)).send().await;
            if answer.is_ok_and(|r| matches!(r.status().as_u16(), 200 | 401)) {
                return Ok(());
            }
            tokio::time::sleep(Duration::from_millis(50)).await;
        }
        Err(anyhow!(
            "docker-registry did not answer on {} within 15 s:\n{}",
            self.addr,
            self.log()
        ))
    }

    /// `127.0.0.1:PORT`, the registry part of an image reference.
    pub fn host(&self) -> String {
        self.addr.to_string()
    }

    /// Where the registry keeps the content of a blob, so a test can alter it.
    pub fn blob_file(&self, digest: &str) -> PathBuf {
        let hex = digest.trim_start_matches("sha256:");
        self.dir
            .path()
            .join("storage/docker/registry/v2/blobs/sha256")
            .join(hex.get(..2).unwrap_or(""))
            .join(hex)
            .join("data")
    }

    /// The registry's own log.
    pub fn log(&self) -> String {
        std::fs::read_to_string(self.dir.path().join("registry.log")).unwrap_or_default()
    }

    /// The directory holding the configuration, storage and log.
    pub fn dir(&self) -> &Path {
        self.dir.path()
    }
}

impl Drop for Registry {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

/// A loopback port nothing listens on right now.
///
/// # Errors
///
/// Fails when no port can be bound.
pub fn free_loopback_port() -> Result<SocketAddr> {
    Ok(TcpListener::bind("127.0.0.1:0")?.local_addr()?)
}

/// A bearer-token front for a [`Registry`], as ghcr.io, Docker Hub and
/// Harbor work: `/v2/` answers 401 with a `Bearer realm=…` challenge, the
/// realm trades HTTP basic credentials for a token, and requests that carry
/// the token are passed to the registry behind it.
pub struct TokenGateway {
    addr: SocketAddr,
    tokens_issued: Arc<AtomicUsize>,
    task: JoinHandle<()>,
}

struct Gateway {
    backend: String,
    host: String,
    basic: String,
    token: String,
    tokens_issued: Arc<AtomicUsize>,
    client: reqwest::Client,
}

impl TokenGateway {
    /// Starts a gateway in front of `backend` that issues tokens to
    /// `user`/`password` only.
    ///
    /// # Errors
    ///
    /// Fails when no loopback port can be bound.
    pub async fn start(backend: &Registry, user: &str, password: &str) -> Result<TokenGateway> {
        use base64::Engine as _;
        let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await?;
        let addr = listener.local_addr()?;
        let tokens_issued = Arc::new(AtomicUsize::new(0));
        let gateway = Arc::new(Gateway {
            backend: backend.host(),
            host: addr.to_string(),
            basic: format!(
                "Basic {}",
                base64::engine::general_purpose::STANDARD.encode(format!("{user}:{password}"))
            ),
            token: format!("meshwasm-token-{}", std::process::id()),
            tokens_issued: Arc::clone(&tokens_issued),
            client: reqwest::Client::builder()
                .redirect(reqwest::redirect::Policy::none())
                .build()?,
        });
        let task = tokio::spawn(async move {
            while let Ok((stream, _)) = listener.accept().await {
                let gateway = Arc::clone(&gateway);
                tokio::spawn(async move {
                    let service = service_fn(move |req| {
                        let gateway = Arc::clone(&gateway);
                        async move { Ok::<_, Infallible>(gateway.answer(req).await) }
                    });
                    let _ = hyper::server::conn::http1::Builder::new()
                        .serve_connection(TokioIo::new(stream), service)
                        .await;
                });
            }
        });
        Ok(TokenGateway {
            addr,
            tokens_issued,
            task,
        })
    }

    /// `127.0.0.1:PORT`, the registry part of an image reference.
    pub fn host(&self) -> String {
        self.addr.to_string()
    }

    /// Tokens handed out so far.
    pub fn tokens_issued(&self) -> usize {
        self.tokens_issued.load(Ordering::SeqCst)
    }
}

impl Drop for TokenGateway {
    fn drop(&mut self) {
        self.task.abort();
    }
}

impl Gateway {
    async fn answer(&self, req: Request<Incoming>) -> Response<Full<Bytes>> {
        let authorization = req
            .headers()
            .get("authorization")
            .and_then(|v| v.to_str().ok())
            .unwrap_or_default()
            .to_string();
        if req.uri().path() == "/token" {
            if authorization != self.basic {
                return reply(401, "{\"details\":\"invalid username or password\"}");
            }
            self.tokens_issued.fetch_add(1, Ordering::SeqCst);
            return reply(
                200,
                &format!("{{\"token\":\"{0}\",\"access_token\":\"{0}\"}}", self.token),
            );
        }
        if authorization != format!("Bearer {}", self.token) {
            let mut response = reply(
                401,
                r#"{"errors":[{"code":"UNAUTHORIZED","message":"authentication required"}]}"#,
            );
            let challenge = format!(
                "Bearer realm=\"http://{}/token\",service=\"meshwasm-test\"",
                self.host
            );
            if let Ok(value) = challenge.parse() {
                response.headers_mut().insert("www-authenticate", value);
            }
            return response;
        }
        self.forward(req)
            .await
            .unwrap_or_else(|e| reply(502, &e.to_string()))
    }

    async fn forward(&self, req: Request<Incoming>) -> Result<Response<Full<Bytes>>> {
        let (parts, body) = req.into_parts();
        let path = parts
            .uri
            .path_and_query()
            .map(|p| p.as_str())
            .unwrap_or("/");
        let mut request = self
            .client
            .request(
                parts.method.clone(),
                format!("http://{}{path}", self.backend),
            )
            // The registry builds upload locations from this.
            .header("x-forwarded-host", &self.host)
            .header("x-forwarded-proto", "http");
        for (name, value) in &parts.headers {
            if !matches!(name.as_str(), "host" | "authorization" | "content-length") {
                request = request.header(name, value);
            }
        }
        let body = body.collect().await?.to_bytes();
        let answer = request.body(body).send().await?;
        let mut response = Response::builder().status(answer.status());
        for (name, value) in answer.headers() {
            if !matches!(
                name.as_str(),
                "transfer-encoding" | "connection" | "content-length"
            ) {
                response = response.header(name, value);
            }
        }
        Ok(response.body(Full::new(answer.bytes().await?))?)
    }
}

fn reply(status: u16, body: &str) -> Response<Full<Bytes>> {
    let mut response = Response::new(Full::new(Bytes::from(body.to_string())));
    *response.status_mut() =
        hyper::StatusCode::from_u16(status).unwrap_or(hyper::StatusCode::BAD_GATEWAY);
    if let Ok(value) = "application/json".parse() {
        response.headers_mut().insert("content-type", value);
    }
    response
}
