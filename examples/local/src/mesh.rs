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

use crate::envoy::{self, Bootstrap, Envoy, WasmFilter};
use crate::traffic::{Outcome, send};
use crate::upstream::Upstream;
use anyhow::{Context as _, Result, anyhow, bail};
use meshwasm_artifacts::ROUTER_WASM;
use serde_json::{Value, json};
use std::collections::{BTreeMap, BTreeSet};
use std::path::Path;
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

    /// Runs an Envoy configuration file as it is, but for where things are:
    /// the one `examples/envoy/*.yaml` file serves docker-compose and this
    /// machine alike. Its listener and admin move to 127.0.0.1 (free ports),
    /// its `.wasm` files become the ones built from this checkout (matched
    /// by file name), and each cluster endpoint's host (a compose service
    /// such as `web-v1`) becomes a local upstream of that name, started
    /// here. Upstreams named in `slow` answer after their delay.
    ///
    /// # Errors
    ///
    /// Fails if the file does not read or parse as one YAML document, names
    /// a module that is not a meshwasm filter, or Envoy does not start.
    pub async fn from_envoy_file(path: &Path, slow: &[(&str, Duration)]) -> Result<Mesh> {
        let config = read_envoy_file(path)?;
        Self::from_envoy_config(config, slow)
            .await
            .with_context(|| format!("{}", path.display()))
    }

    /// [`from_envoy_file`](Self::from_envoy_file) for a configuration
    /// already read (and perhaps changed by a test).
    ///
    /// # Errors
    ///
    /// As `from_envoy_file`.
    pub async fn from_envoy_config(mut config: Value, slow: &[(&str, Duration)]) -> Result<Mesh> {
        let mut upstreams = BTreeMap::new();
        let hosts: BTreeSet<String> = socket_addresses_of_endpoints(&mut config)
            .filter_map(|a| a["address"].as_str().map(str::to_owned))
            .collect();
        for host in hosts {
            let delay = slow
                .iter()
                .find(|(n, _)| *n == host)
                .map_or(Duration::ZERO, |(_, d)| *d);
            upstreams.insert(host.clone(), Upstream::start_slow(&host, delay).await?);
        }
        localize(&mut config, &upstreams)?;
        let envoy = Envoy::start(Bootstrap::from_config(config)).await?;
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

/// The HTTP connection manager of an Envoy configuration's first listener,
/// as envoyfilter renders it, for a caller that changes what it trusts or
/// strips.
pub fn connection_manager(config: &mut Value) -> &mut Value {
    &mut config["static_resources"]["listeners"][0]["filter_chains"][0]["filters"][0]["typed_config"]
}

/// An Envoy configuration file of one YAML document, as JSON.
///
/// # Errors
///
/// Fails if the file does not read or parse as one YAML document.
pub fn read_envoy_file(path: &Path) -> Result<Value> {
    let text =
        std::fs::read_to_string(path).with_context(|| format!("reading {}", path.display()))?;
    let mut documents =
        envoyfilter::yaml::load(&text).with_context(|| format!("{}", path.display()))?;
    if documents.len() != 1 {
        bail!(
            "{}: expected one YAML document, found {}",
            path.display(),
            documents.len()
        );
    }
    Ok(documents.remove(0).value)
}

fn socket_addresses_of_endpoints(config: &mut Value) -> impl Iterator<Item = &mut Value> {
    endpoints_mut(config).filter_map(|e| e.pointer_mut("/endpoint/address/socket_address"))
}

fn endpoints_mut(config: &mut Value) -> impl Iterator<Item = &mut Value> {
    config["static_resources"]["clusters"]
        .as_array_mut()
        .into_iter()
        .flatten()
        .flat_map(|c| {
            c["load_assignment"]["endpoints"]
                .as_array_mut()
                .into_iter()
                .flatten()
        })
        .flat_map(|e| e["lb_endpoints"].as_array_mut().into_iter().flatten())
}

/// Points the configuration at this machine; see [`Mesh::from_envoy_file`].
fn localize(config: &mut Value, upstreams: &BTreeMap<String, Upstream>) -> Result<()> {
    let loopback = json!({"address": "127.0.0.1", "port_value": 0});
    config["admin"]["address"]["socket_address"] = loopback.clone();
    for listener in config["static_resources"]["listeners"]
        .as_array_mut()
        .into_iter()
        .flatten()
    {
        listener["address"]["socket_address"] = loopback.clone();
    }
    for address in socket_addresses_of_endpoints(config) {
        let host = address["address"].as_str().unwrap_or_default().to_owned();
        let local = upstreams
            .get(&host)
            .ok_or_else(|| anyhow!("no upstream for endpoint {host}"))?
            .addr();
        *address = json!({"address": local.ip().to_string(), "port_value": local.port()});
    }
    for cluster in config["static_resources"]["clusters"]
        .as_array_mut()
        .into_iter()
        .flatten()
    {
        cluster["type"] = json!("STATIC");
    }
    replace_modules(config)
}

/// Every Wasm `vm_config.code.local.filename` becomes the module of the
/// same file name built from this checkout, unless it is the absolute path
/// of a file that exists.
fn replace_modules(value: &mut Value) -> Result<()> {
    match value {
        Value::Object(map) => {
            if let Some(Value::String(filename)) = map
                .get_mut("vm_config")
                .and_then(|vm| vm.pointer_mut("/code/local/filename"))
            {
                // A module a test put there itself is kept.
                if Path::new(filename.as_str()).is_absolute()
                    && Path::new(filename.as_str()).is_file()
                {
                    return map.values_mut().try_for_each(replace_modules);
                }
                let name = Path::new(filename.as_str()).file_name().unwrap_or_default();
                let built = meshwasm_artifacts::FILTERS
                    .iter()
                    .map(|f| f.wasm)
                    .find(|m| Path::new(m).file_name() == Some(name))
                    .ok_or_else(|| anyhow!("{filename} is not a meshwasm filter module"))?;
                *filename = built.to_owned();
            }
            map.values_mut().try_for_each(replace_modules)
        }
        Value::Array(items) => items.iter_mut().try_for_each(replace_modules),
        _ => Ok(()),
    }
}
