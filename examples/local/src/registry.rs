//! A real OCI registry (Debian's `docker-registry`, the CNCF distribution
//! server) on 127.0.0.1 with temporary storage, optionally behind htpasswd
//! authentication: what wasmhub's tests push to and pull from.

use std::net::{SocketAddr, TcpListener};
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

use anyhow::{Context as _, Result, anyhow, bail};
use tempfile::TempDir;

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
