//! Scenario files (sdk-host's format) played through a real Envoy: the
//! plugin in a Wasm filter, an upstream that answers each request as the
//! file says, and a client on 127.0.0.1. The end-to-end suite compares
//! these answers with sdk-host's; the demo plays every filter's files.

use crate::envoy::{Bootstrap, Envoy, WasmFilter};
use crate::upstream::{Reply, Upstream};
use anyhow::{Result, bail};
use sdk_host::scenario::{Body, Observed, Report, Scenario, UpstreamSaw};
use sdk_host::{HeaderMap, LogLevel};
use std::path::{Path, PathBuf};
use std::time::{Duration, Instant};

/// How long the Envoy runner waits for an answer the filter holds.
const CLIENT_TIMEOUT: Duration = Duration::from_secs(20);

/// The repository's scenario files: every filter's (`filters/*/scenarios/`),
/// then the host's own (`tests/scenarios/`), each folder in name order.
///
/// # Errors
///
/// A folder that cannot be read.
pub fn scenario_files() -> Result<Vec<PathBuf>> {
    let root = Path::new(env!("CARGO_MANIFEST_DIR")).join("../..");
    let mut dirs: Vec<PathBuf> = std::fs::read_dir(root.join("filters"))?
        .filter_map(|e| Some(e.ok()?.path().join("scenarios")))
        .filter(|dir| dir.is_dir())
        .collect();
    dirs.sort();
    dirs.push(root.join("tests/scenarios"));
    let mut files = Vec::new();
    for dir in dirs {
        let mut in_dir: Vec<PathBuf> = std::fs::read_dir(&dir)?
            .filter_map(|e| Some(e.ok()?.path()))
            .filter(|p| p.extension().is_some_and(|e| e == "yaml"))
            .collect();
        in_dir.sort();
        files.extend(in_dir);
    }
    Ok(files)
}

/// The module a scenario names: a filter of `filters/` by name (`fault`),
/// sdk-host's probe (`probe`), or a path relative to the file.
pub fn module_path(scenario: &Scenario) -> PathBuf {
    match scenario.filter.as_str() {
        "probe" => meshwasm_artifacts::SDK_HOST_PROBE_WASM.into(),
        name => meshwasm_artifacts::filter(name)
            .map_or_else(|| scenario.filter_path(), |a| PathBuf::from(a.wasm)),
    }
}

/// Plays a scenario through a real Envoy: the plugin in a Wasm filter,
/// an upstream that answers each request as the scenario says, and a
/// client on 127.0.0.1. Metrics come from the admin stats and logs from
/// Envoy's `wasm` logger at trace level.
///
/// # Errors
///
/// Envoy or the upstream cannot start, or the file asks for what only
/// sdk-host can play (trailers).
pub async fn run_in_envoy(scenario: &Scenario, wasm: &Path) -> Result<Report> {
    let upstream = Upstream::start("scenario").await?;
    let mut filter = WasmFilter::new("scenario", wasm, "");
    filter.name = scenario.plugin_name();
    filter.root_id.clone_from(&scenario.root_id);
    filter.vm_id.clone_from(&scenario.vm_id);
    filter.configuration = String::from_utf8(scenario.config_bytes())?;
    filter.vm_configuration = String::from_utf8(scenario.vm_config_bytes())?;
    let envoy = Envoy::start(
        Bootstrap::new(upstream.addr())
            .filter(filter)
            .wasm_log_level("trace"),
    )
    .await?;
    let http = crate::envoy::client()?;
    let mut observed = Vec::new();
    for (i, exchange) in scenario.requests.iter().enumerate() {
        if exchange.trailers.is_some() {
            bail!("request {}: trailers can only be played in sdk-host", i + 1);
        }
        let response = exchange.response.clone().unwrap_or_default();
        upstream.set_reply(Some(Reply {
            status: response.status,
            headers: response.headers.into_iter().collect(),
            body: response.body.as_ref().map(Body::bytes).unwrap_or_default(),
        }));
        let headers = exchange.request_headers();
        let pseudo = |name: &str| {
            headers
                .iter()
                .find(|(n, _)| n == name)
                .map_or("", |(_, v)| v.as_str())
        };
        let mut request = http
            .request(pseudo(":method").parse()?, envoy.url(pseudo(":path")))
            .header("host", pseudo(":authority"))
            .timeout(CLIENT_TIMEOUT);
        for (name, value) in headers.iter().filter(|(n, _)| !n.starts_with(':')) {
            request = request.header(name, value);
        }
        if let Some(body) = &exchange.body {
            request = request.body(body.bytes());
        }
        let seen_before = upstream.hits();
        let started = Instant::now();
        let mut got = Observed::default();
        if let Ok(answer) = request.send().await {
            got.status = Some(answer.status().as_u16());
            got.headers = HeaderMap::from_pairs(
                answer
                    .headers()
                    .iter()
                    .map(|(k, v)| (k.as_str(), v.as_bytes())),
            );
            got.body = answer.bytes().await.map(|b| b.to_vec()).unwrap_or_default();
        }
        got.elapsed = started.elapsed();
        // The request is the last to arrive: callouts the filter made for
        // it came first.
        let seen = upstream.seen();
        got.upstream = seen.get(seen_before..).and_then(<[_]>::last).map(|seen| {
            let mut headers = HeaderMap::from_pairs([
                (":method", seen.method.as_str()),
                (":path", seen.path.as_str()),
            ]);
            for (name, value) in &seen.headers {
                headers.add(name, value);
            }
            UpstreamSaw {
                headers,
                body: seen.body.to_vec(),
            }
        });
        observed.push(got);
        if let Some(advance) = exchange.advance {
            tokio::time::sleep(advance).await;
        }
    }
    let stats = envoy.defined_stats().await?;
    let logs = wasm_logs(&envoy.log());
    Ok(scenario.judge(
        observed,
        |name| {
            stats
                .get(name)
                .or_else(|| stats.get(&format!("wasmcustom.{name}")))
                .and_then(|v| i64::try_from(*v).ok())
        },
        &logs,
    ))
}

/// The filters' log messages from Envoy's log, with their levels. A line
/// reads `[time][thread][level][wasm] [source] wasm log <plugin> <root> <vm>: message`.
pub fn wasm_logs(log: &str) -> Vec<(LogLevel, String)> {
    log.lines()
        .filter_map(|line| {
            let (head, rest) = line.split_once("][wasm] ")?;
            let level = match head.rsplit('[').next()? {
                "trace" => LogLevel::Trace,
                "debug" => LogLevel::Debug,
                "info" => LogLevel::Info,
                "warning" => LogLevel::Warn,
                "error" => LogLevel::Error,
                "critical" => LogLevel::Critical,
                _ => return None,
            };
            let (_, logged) = rest.split_once(" wasm log")?;
            let (_, message) = logged.split_once(": ")?;
            Some((level, message.to_string()))
        })
        .collect()
}
