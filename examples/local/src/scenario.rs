//! Scenario files (sdk-host's format) played through a real Envoy: the
//! plugin in a Wasm filter, an upstream that answers each request as the
//! file says, and a client on 127.0.0.1. The end-to-end suite compares
//! these answers with sdk-host's; the demo plays every filter's files.

use crate::envoy::{Bootstrap, Envoy, WasmFilter};
use crate::grpc_upstream::{GrpcReply, GrpcUpstream};
use crate::upstream::{Reply, Upstream};
use anyhow::{Result, bail};
use sdk_host::scenario::{
    Body, CalloutAnswer, Observed, Report, Scenario, UpstreamResponse, UpstreamSaw,
};
use sdk_host::{HeaderMap, LogLevel};
use std::net::SocketAddr;
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

/// Plays a scenario through a real Envoy: the plugin in a Wasm filter (and
/// `plugins:` as more filters of the same VM), an upstream that answers
/// each request as the scenario says, one upstream per cluster of
/// `clusters:` (HTTP, or gRPC over HTTP/2), and a client on 127.0.0.1.
/// Metrics come from the admin stats and logs from Envoy's `wasm` logger
/// at trace level.
///
/// # Errors
///
/// Envoy or an upstream cannot start, or the file asks for what only
/// sdk-host can play (trailers, properties other than `node.*`, a cluster
/// unreachable for some calls only).
pub async fn run_in_envoy(scenario: &Scenario, wasm: &Path) -> Result<Report> {
    let upstream = Upstream::start("scenario").await?;
    let mut filter = WasmFilter::new("scenario", wasm, "");
    filter.name = scenario.plugin_name();
    filter.root_id.clone_from(&scenario.root_id);
    filter.vm_id.clone_from(&scenario.vm_id);
    filter.configuration = String::from_utf8(scenario.config_bytes())?;
    filter.vm_configuration = String::from_utf8(scenario.vm_config_bytes())?;
    let mut bootstrap = Bootstrap::new(upstream.addr())
        .node(node(scenario)?)
        .wasm_log_level("trace");
    let mut more_plugins = Vec::new();
    for plugin in &scenario.plugins {
        let mut more = filter.clone();
        more.name = scenario.extra_plugin_name(plugin);
        more.root_id.clone_from(&plugin.root_id);
        more.configuration = String::from_utf8(configuration_text(&plugin.config))?;
        more_plugins.push(more);
    }
    bootstrap = bootstrap.filter(filter);
    for more in more_plugins {
        bootstrap = bootstrap.filter(more);
    }
    let clusters = ClusterUpstreams::start(scenario).await?;
    for (name, addr, grpc) in &clusters.addrs {
        bootstrap = if *grpc {
            bootstrap.grpc_cluster(name, *addr)
        } else {
            bootstrap.cluster(name, *addr)
        };
    }
    let envoy = Envoy::start(bootstrap).await?;
    let mut observed = Vec::new();
    for (i, exchange) in scenario.requests.iter().enumerate() {
        if exchange.trailers.is_some() {
            bail!("request {}: trailers can only be played in sdk-host", i + 1);
        }
        let response = exchange.response.clone().unwrap_or_default();
        upstream.set_reply(Some(reply(&response)));
        let seen_before = upstream.hits();
        let started = Instant::now();
        let mut got = Observed::default();
        let body = exchange.body.as_ref().map(Body::bytes);
        if let Ok((status, headers, body)) =
            send_exactly(envoy.listener(), &exchange.client_headers(), body).await
        {
            got.status = Some(status);
            got.headers = headers;
            got.body = body;
        }
        got.elapsed = started.elapsed();
        // The request is the last to arrive: callouts the filter made for
        // it to the same upstream came first.
        let seen = upstream.seen();
        got.upstream = seen.get(seen_before..).and_then(<[_]>::last).map(|seen| {
            // As the filter's map names them: HTTP/1's `host` is `:authority`.
            let mut headers = HeaderMap::from_pairs([
                (":authority", seen.header("host").unwrap_or_default()),
                (":method", seen.method.as_str()),
                (":path", seen.path.as_str()),
            ]);
            for (name, value) in seen.headers.iter().filter(|(n, _)| n != "host") {
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
    if let Some(advance) = scenario.advance {
        tokio::time::sleep(advance).await;
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

/// Sends a request with exactly these headers, in this order (`host` from
/// `:authority`, then `content-length` for a body), as sdk-host's scenario
/// runner models the client: HTTP clients such as reqwest add `accept`.
async fn send_exactly(
    listener: SocketAddr,
    headers: &[(String, String)],
    body: Option<Vec<u8>>,
) -> Result<(u16, HeaderMap, Vec<u8>)> {
    let pseudo = |name: &str| {
        headers
            .iter()
            .find(|(n, _)| n == name)
            .map_or("", |(_, v)| v.as_str())
    };
    let stream = tokio::net::TcpStream::connect(listener).await?;
    let (mut sender, connection) =
        hyper::client::conn::http1::handshake(hyper_util::rt::TokioIo::new(stream)).await?;
    let driver = tokio::spawn(connection);
    let mut request = hyper::Request::builder()
        .method(pseudo(":method"))
        .uri(pseudo(":path"))
        .header("host", pseudo(":authority"));
    for (name, value) in headers.iter().filter(|(n, _)| !n.starts_with(':')) {
        request = request.header(name, value);
    }
    let request = request.body(http_body_util::Full::new(bytes::Bytes::from(
        body.unwrap_or_default(),
    )))?;
    let exchange = async {
        let response = sender.send_request(request).await?;
        let status = response.status().as_u16();
        let headers = HeaderMap::from_pairs(
            response
                .headers()
                .iter()
                .map(|(k, v)| (k.as_str(), v.as_bytes())),
        );
        let body = http_body_util::BodyExt::collect(response.into_body())
            .await?
            .to_bytes()
            .to_vec();
        anyhow::Ok((status, headers, body))
    };
    let answer = tokio::time::timeout(CLIENT_TIMEOUT, exchange).await;
    driver.abort();
    answer?
}

fn reply(response: &UpstreamResponse) -> Reply {
    Reply {
        status: response.status,
        headers: response.headers.clone().into_iter().collect(),
        body: response.body.as_ref().map(Body::bytes).unwrap_or_default(),
    }
}

fn configuration_text(value: &serde_json::Value) -> Vec<u8> {
    match value {
        serde_json::Value::Null => Vec::new(),
        serde_json::Value::String(text) => text.as_bytes().to_vec(),
        other => other.to_string().into_bytes(),
    }
}

/// Envoy's `node` from the scenario's `xds.node.*` properties, over the
/// ids sdk-host gives by default; Envoy has no way to set other properties.
fn node(scenario: &Scenario) -> Result<serde_json::Value> {
    let mut node = serde_json::json!({"id": "sdk-host", "cluster": "sdk-host", "metadata": {}});
    let properties = scenario.property_values().map_err(anyhow::Error::msg)?;
    for (path, value) in properties {
        let sdk_host::PropertyValue::String(value) = value else {
            bail!("properties.{}: Envoy's node takes strings", path.join("."));
        };
        let value = serde_json::Value::String(value);
        match path
            .iter()
            .map(String::as_str)
            .collect::<Vec<_>>()
            .as_slice()
        {
            ["xds", "node", field @ ("id" | "cluster")] => node[*field] = value,
            ["xds", "node", "metadata", key] => node["metadata"][*key] = value,
            _ => bail!(
                "properties.{}: only xds.node.id, xds.node.cluster and xds.node.metadata.KEY (strings) can be set in Envoy",
                path.join(".")
            ),
        }
    }
    Ok(node)
}

/// One upstream per cluster of `clusters:`: HTTP answers from an
/// [`Upstream`], gRPC answers from a [`GrpcUpstream`], `unreachable` as a
/// port nobody listens on.
struct ClusterUpstreams {
    addrs: Vec<(String, SocketAddr, bool)>,
    _http: Vec<Upstream>,
    _grpc: Vec<GrpcUpstream>,
}

impl ClusterUpstreams {
    async fn start(scenario: &Scenario) -> Result<ClusterUpstreams> {
        let mut started = ClusterUpstreams {
            addrs: Vec::new(),
            _http: Vec::new(),
            _grpc: Vec::new(),
        };
        for (name, answers) in &scenario.clusters {
            let answers = &answers.0;
            let unreachable = answers
                .iter()
                .filter(|a| matches!(a, CalloutAnswer::Unreachable))
                .count();
            if unreachable == answers.len() {
                // Bound then closed: connections to it are refused.
                let addr = std::net::TcpListener::bind("127.0.0.1:0")?.local_addr()?;
                started.addrs.push((name.clone(), addr, false));
                continue;
            }
            if unreachable > 0 {
                bail!(
                    "clusters.{name}: unreachable for some calls only can be played in sdk-host alone"
                );
            }
            if answers.iter().any(|a| matches!(a, CalloutAnswer::Grpc(_))) {
                let replies = answers
                    .iter()
                    .map(|answer| match answer {
                        CalloutAnswer::Grpc(grpc) => Ok(Some(GrpcReply {
                            status: grpc.status,
                            message: grpc.message.clone(),
                            initial_metadata: grpc.initial_metadata.clone().into_iter().collect(),
                            messages: grpc
                                .body
                                .iter()
                                .chain(&grpc.messages)
                                .map(Body::bytes)
                                .collect(),
                            trailers: grpc.trailers.clone().into_iter().collect(),
                        })),
                        CalloutAnswer::Timeout => Ok(None),
                        _ => bail!("clusters.{name}: mixes gRPC and HTTP answers"),
                    })
                    .collect::<Result<Vec<_>>>()?;
                let server = GrpcUpstream::start(replies).await?;
                started.addrs.push((name.clone(), server.addr(), true));
                started._grpc.push(server);
            } else {
                let server = Upstream::start(name).await?;
                server.set_replies(
                    answers
                        .iter()
                        .map(|answer| match answer {
                            CalloutAnswer::Http(response) => Some(reply(response)),
                            _ => None,
                        })
                        .collect(),
                );
                started.addrs.push((name.clone(), server.addr(), false));
                started._http.push(server);
            }
        }
        Ok(started)
    }
}

/// The filters' log messages from Envoy's log, with their levels. A line
/// reads `[time][thread][level][wasm] [source] wasm log <plugin> <root> <vm>: message`;
/// the lines after it that do not start with `[` continue a message that
/// holds newlines (one that ends with a newline leaves an empty line).
pub fn wasm_logs(log: &str) -> Vec<(LogLevel, String)> {
    let mut messages: Vec<(LogLevel, String)> = Vec::new();
    let mut continuing = false;
    for line in log.lines() {
        if !line.starts_with('[') {
            if continuing && let Some((_, message)) = messages.last_mut() {
                message.push('\n');
                message.push_str(line);
            }
            continue;
        }
        continuing = false;
        let Some((level, message)) = wasm_log_line(line) else {
            continue;
        };
        messages.push((level, message));
        continuing = true;
    }
    messages
}

fn wasm_log_line(line: &str) -> Option<(LogLevel, String)> {
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
}
