//! A small mesh on 127.0.0.1: Envoy with the router filter wired as the
//! README documents, and one upstream server per version.
//!
//! ```no_run
//! use meshwasm_local::mesh::Mesh;
//!
//! # async fn demo() -> anyhow::Result<()> {
//! let config = r#"{"hosts": ["reviews"], "http": [{"route": [
//!     {"destination": {"host": "reviews", "subset": "v1"}, "weight": 75},
//!     {"destination": {"host": "reviews", "subset": "v2"}, "weight": 25}]}]}"#;
//! let mesh = Mesh::start(config, &[("outbound||v1|reviews", "v1"), ("outbound||v2|reviews", "v2")]).await?;
//! let answer = mesh.get("reviews", "/", &[]).await?;
//! assert!(matches!(answer.upstream(), Some("v1" | "v2")));
//! # Ok(()) }
//! ```

use crate::artifacts::ROUTER_WASM;
use crate::envoy::{self, Bootstrap, Envoy, WasmFilter};
use crate::traffic::{Outcome, send};
use crate::upstream::Upstream;
use anyhow::{Result, anyhow};
use std::collections::BTreeMap;
use std::time::Duration;

/// The header the router writes and Envoy's `cluster_header` route reads.
pub const CLUSTER_HEADER: &str = "x-meshwasm-cluster";

/// Envoy with the router filter, a `default` upstream for requests no
/// route matches, and one upstream per name.
pub struct Mesh {
    /// The Envoy.
    pub envoy: Envoy,
    upstreams: BTreeMap<String, Upstream>,
}

impl Mesh {
    /// Starts upstreams and Envoy. `clusters` maps each cluster name the
    /// VirtualService renders to the upstream (by name) that serves it.
    ///
    /// # Errors
    ///
    /// Fails if an upstream cannot bind or Envoy does not start.
    pub async fn start(config: &str, clusters: &[(&str, &str)]) -> Result<Mesh> {
        Self::start_with(config, clusters, &[]).await
    }

    /// As [`start`](Self::start); the upstreams named in `slow` answer after their delay.
    ///
    /// # Errors
    ///
    /// Fails if an upstream cannot bind or Envoy does not start.
    pub async fn start_with(
        config: &str,
        clusters: &[(&str, &str)],
        slow: &[(&str, Duration)],
    ) -> Result<Mesh> {
        let mut upstreams = BTreeMap::new();
        for name in std::iter::once("default").chain(clusters.iter().map(|(_, n)| *n)) {
            if !upstreams.contains_key(name) {
                let delay = slow
                    .iter()
                    .find(|(n, _)| *n == name)
                    .map_or(Duration::ZERO, |(_, d)| *d);
                upstreams.insert(name.to_owned(), Upstream::start_slow(name, delay).await?);
            }
        }
        let addr = |name: &str| {
            upstreams
                .get(name)
                .map(Upstream::addr)
                .ok_or_else(|| anyhow!("no upstream {name}"))
        };
        let mut bootstrap = Bootstrap::new(addr("default")?)
            .route_by_header(CLUSTER_HEADER)
            .filter(WasmFilter::new("router", ROUTER_WASM, config));
        for (cluster, name) in clusters {
            bootstrap = bootstrap.cluster(cluster, addr(name)?);
        }
        let envoy = Envoy::start(bootstrap).await?;
        Ok(Mesh { envoy, upstreams })
    }

    /// The upstream of that name.
    ///
    /// # Panics
    ///
    /// If there is none: a mistake in the caller's scenario.
    #[allow(clippy::panic)]
    pub fn upstream(&self, name: &str) -> &Upstream {
        self.upstreams
            .get(name)
            .unwrap_or_else(|| panic!("no upstream named {name}"))
    }

    /// A request through Envoy for `host`, to finish and [`send`] yourself.
    ///
    /// # Errors
    ///
    /// Fails if the client cannot be built.
    pub fn request(
        &self,
        method: reqwest::Method,
        host: &str,
        path: &str,
    ) -> Result<reqwest::RequestBuilder> {
        Ok(envoy::client()?
            .request(method, self.envoy.url(path))
            .header("host", host))
    }

    /// A GET through Envoy with the given host and headers.
    ///
    /// # Errors
    ///
    /// Connection errors.
    pub async fn get(&self, host: &str, path: &str, headers: &[(&str, &str)]) -> Result<Outcome> {
        let mut req = self.request(reqwest::Method::GET, host, path)?;
        for (name, value) in headers {
            req = req.header(*name, *value);
        }
        send(req).await
    }
}
