//! `sdk-host run FILTER.wasm --config cfg.json --request req.yaml`: plays
//! requests through any Proxy-Wasm module, answers its callouts from
//! `--clusters`, and prints what reached the upstream and what came back.
//! `sdk-host test SCENARIO.yaml...`: runs scenario files and reports every
//! mismatch with their expectations.

use anyhow::{Context as _, Result, anyhow};
use clap::{Parser, Subcommand};
use sdk_host::scenario::{
    ClusterAnswers, Exchange, Observed, Scenario, from_document, load_yaml, parse_duration,
    yaml_document,
};
use sdk_host::{HeaderMap, Host, WasmModule};
use serde::Deserialize;
use std::collections::BTreeMap;
use std::path::{Path, PathBuf};
use std::process::ExitCode;
use std::time::Duration;

#[derive(Parser)]
#[command(
    name = "sdk-host",
    version,
    about = "Run Proxy-Wasm modules in an Envoy-like test host"
)]
struct Cli {
    #[command(subcommand)]
    command: Command,
}

#[derive(Subcommand)]
enum Command {
    /// Play requests through a module and print what the filter did (a
    /// request file; scenario files go to `test`).
    Run(RunArgs),
    /// Run scenario files and check what comes back against their `expect`.
    Test(TestArgs),
}

#[derive(clap::Args)]
struct RunArgs {
    /// The Proxy-Wasm module.
    filter: PathBuf,
    /// Plugin configuration file (given to the module as is).
    #[arg(long)]
    config: Option<PathBuf>,
    /// VM configuration file.
    #[arg(long)]
    vm_config: Option<PathBuf>,
    /// Request file (YAML or JSON): one request (headers, body, response,
    /// advance), or `requests:` with several, with optional `clusters:`,
    /// `properties:` and `advance:`. Not a scenario file: give those to
    /// `sdk-host test`. Default: GET / to example.com.
    #[arg(long)]
    request: Option<PathBuf>,
    /// What the callout clusters answer (YAML or JSON): a map of cluster
    /// name to an answer or a list of answers, as a scenario's `clusters:`.
    #[arg(long)]
    clusters: Option<PathBuf>,
    /// A property the filter reads, `PATH=VALUE` (e.g. `node.metadata.REGION=eu`);
    /// the value is read as YAML (`8080` is a number). Repeatable.
    #[arg(long = "property", value_name = "PATH=VALUE")]
    properties: Vec<String>,
    /// Root id of the plugin.
    #[arg(long, default_value = "")]
    root_id: String,
    /// VM id of the plugin.
    #[arg(long, default_value = "")]
    vm_id: String,
}

/// A request file with several requests; a file without `requests:` is one.
#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct RequestFile {
    #[serde(default)]
    requests: Vec<Exchange>,
    #[serde(default)]
    clusters: BTreeMap<String, ClusterAnswers>,
    #[serde(default)]
    properties: BTreeMap<String, serde_json::Value>,
    #[serde(default, deserialize_with = "duration")]
    advance: Option<Duration>,
}

fn duration<'de, D: serde::Deserializer<'de>>(d: D) -> Result<Option<Duration>, D::Error> {
    let text = String::deserialize(d)?;
    parse_duration(&text)
        .map(Some)
        .map_err(serde::de::Error::custom)
}

#[derive(clap::Args)]
struct TestArgs {
    /// Scenario files (YAML or JSON).
    #[arg(required = true)]
    scenarios: Vec<PathBuf>,
    /// The module to run, instead of each scenario's `filter`.
    #[arg(long)]
    filter: Option<PathBuf>,
}

fn main() -> ExitCode {
    match run(Cli::parse()) {
        Ok(code) => code,
        Err(e) => {
            eprintln!("error: {e:#}");
            ExitCode::from(2)
        }
    }
}

fn read(path: &Path, what: &str) -> Result<Vec<u8>> {
    std::fs::read(path).with_context(|| format!("{what} {}", path.display()))
}

fn run(cli: Cli) -> Result<ExitCode> {
    match cli.command {
        Command::Run(args) => run_requests(&args),
        Command::Test(args) => run_scenarios(&args),
    }
}

fn run_scenarios(args: &TestArgs) -> Result<ExitCode> {
    let mut scenarios = Vec::new();
    for path in &args.scenarios {
        scenarios.push(Scenario::from_file(path)?);
    }
    let mut failed = 0;
    for scenario in &scenarios {
        let filter = args
            .filter
            .clone()
            .unwrap_or_else(|| scenario.filter_path());
        let module = WasmModule::from_file(&filter)?;
        let report = scenario
            .run(&module)
            .map_err(|e| anyhow!("{}: {e}", scenario.source.display()))?;
        if report.passed() {
            println!("ok    {}", scenario.source.display());
        } else {
            failed += 1;
            println!("FAIL  {}", scenario.source.display());
            for failure in &report.failures {
                println!("  {failure}");
            }
        }
    }
    println!("{} passed, {failed} failed", scenarios.len() - failed);
    Ok(if failed == 0 {
        ExitCode::SUCCESS
    } else {
        ExitCode::from(1)
    })
}

fn run_requests(args: &RunArgs) -> Result<ExitCode> {
    let module = WasmModule::from_file(&args.filter)?;
    let config = args
        .config
        .as_deref()
        .map(|p| read(p, "config"))
        .transpose()?
        .unwrap_or_default();
    if let Some(path) = &args.config
        && path.extension().is_some_and(|e| e == "json")
    {
        serde_json::from_slice::<serde_json::Value>(&config)
            .map_err(|e| anyhow!("{}: {e}", path.display()))?;
    }
    let vm_config = args
        .vm_config
        .as_deref()
        .map(|p| read(p, "VM config"))
        .transpose()?
        .unwrap_or_default();
    let mut file = match &args.request {
        Some(path) => load_requests(path)?,
        None => RequestFile {
            requests: vec![Exchange::default()],
            clusters: BTreeMap::new(),
            properties: BTreeMap::new(),
            advance: None,
        },
    };
    if let Some(path) = &args.clusters {
        let text = String::from_utf8(read(path, "clusters file")?)
            .map_err(|_| anyhow!("{}: not UTF-8 text", path.display()))?;
        file.clusters
            .extend(load_yaml::<BTreeMap<String, ClusterAnswers>>(path, &text)?);
    }
    for property in &args.properties {
        let (path, value) = property
            .split_once('=')
            .ok_or_else(|| anyhow!("--property {property:?}: give PATH=VALUE"))?;
        let value: serde_json::Value = load_yaml(Path::new("--property"), value)
            .map_err(|e| anyhow!("--property {property:?}: {}", e.message))?;
        file.properties.insert(path.to_string(), value);
    }
    let text =
        |bytes: Vec<u8>| serde_json::Value::String(String::from_utf8_lossy(&bytes).into_owned());
    let scenario = Scenario {
        filter: args.filter.display().to_string(),
        root_id: args.root_id.clone(),
        vm_id: args.vm_id.clone(),
        config: text(config),
        vm_config: text(vm_config),
        properties: file.properties,
        clusters: file.clusters,
        requests: file.requests,
        advance: file.advance,
        source: PathBuf::from("plugin"),
        ..Scenario::default()
    };
    scenario.property_values().map_err(|e| anyhow!(e))?;
    let mut host = scenario
        .host_builder()
        .start(&module)
        .map_err(|e| anyhow!("{}: {e}", args.filter.display()))?;
    println!("{} ({})", module.name(), module.abi_version());
    let report = scenario
        .play(&mut host)
        .map_err(|e| anyhow!("{}: {e}", args.filter.display()))?;
    let mut held = 0;
    for (i, (spec, got)) in scenario.requests.iter().zip(&report.observed).enumerate() {
        held += usize::from(print_exchange(i, spec, got));
    }
    print_logs_and_metrics(&host);
    for failure in report
        .failures
        .iter()
        .filter(|f| f.starts_with("clusters."))
    {
        println!("{failure}");
    }
    Ok(if host.violations().is_empty() && held == 0 {
        ExitCode::SUCCESS
    } else {
        ExitCode::from(1)
    })
}

fn load_requests(path: &Path) -> Result<RequestFile> {
    let text = String::from_utf8(read(path, "request file")?)
        .map_err(|_| anyhow!("{}: not UTF-8 text", path.display()))?;
    let document = yaml_document(path, &text)?;
    let is_file = ["requests", "clusters", "properties", "advance"]
        .iter()
        .any(|key| document.value.get(key).is_some());
    if document.value.get("filter").is_some() {
        return Err(anyhow!(
            "{}: this is a scenario file (it names a filter): run it with `sdk-host test`",
            path.display()
        ));
    }
    if is_file {
        Ok(from_document(path, &document)?)
    } else {
        Ok(RequestFile {
            requests: vec![from_document(path, &document)?],
            clusters: BTreeMap::new(),
            properties: BTreeMap::new(),
            advance: None,
        })
    }
}

/// Prints what one request became; true if it was still held at the end.
fn print_exchange(index: usize, spec: &Exchange, got: &Observed) -> bool {
    let sent = spec.client_headers();
    let find = |name: &str| {
        sent.iter()
            .find(|(n, _)| n == name)
            .map_or("", |(_, v)| v.as_str())
    };
    println!(
        "request {}: {} {}{}",
        index + 1,
        find(":method"),
        find(":authority"),
        find(":path")
    );
    match &got.upstream {
        Some(saw) => {
            println!("  reached the upstream");
            let before = HeaderMap::from_pairs(
                spec.request_headers("")
                    .iter()
                    .map(|(k, v)| (k.as_str(), v.as_str())),
            );
            print_changes("request headers", &before, &saw.headers);
            if spec.body.as_ref().map(sdk_host::scenario::Body::bytes) != Some(saw.body.clone())
                && !(spec.body.is_none() && saw.body.is_empty())
            {
                println!(
                    "  request body now: {:?}",
                    String::from_utf8_lossy(&saw.body)
                );
            }
        }
        None if got.status.is_some() => match &got.local_reply {
            Some(details) => println!("  local reply from the filter ({details})"),
            None => println!("  answered by the filter, not the upstream"),
        },
        None => {}
    }
    let Some(status) = got.status else {
        println!("  still held by the filter: no answer came");
        for call in &got.pending {
            println!("  pending: {call}");
        }
        return true;
    };
    println!("  response: {status}");
    for (name, value) in got.headers.iter().filter(|(n, _)| *n != ":status") {
        println!("    {name}: {}", String::from_utf8_lossy(value));
    }
    if !got.body.is_empty() {
        println!("  body: {:?}", String::from_utf8_lossy(&got.body));
    }
    false
}

/// Pairs added and removed, counting repeated names: a header sent twice
/// and left alone is no change.
fn print_changes(what: &str, before: &HeaderMap, after: &HeaderMap) {
    let count = |map: &HeaderMap, name: &str, value: &[u8]| {
        map.iter()
            .filter(|(n, v)| *n == name && *v == value)
            .count()
    };
    // x-request-id is Envoy's, not the filter's.
    let ours = |name: &str| name != "x-request-id";
    let mut shown = Vec::new();
    for (name, value) in after.iter().filter(|(n, _)| ours(n)) {
        if count(after, name, value) > count(before, name, value) && !shown.contains(&(name, value))
        {
            shown.push((name, value));
            println!("  {what}: + {name}: {}", String::from_utf8_lossy(value));
        }
    }
    for (name, _) in before.iter().filter(|(n, _)| ours(n)) {
        if after.get_bytes(name).is_none() && !shown.iter().any(|(n, _)| *n == name) {
            shown.push((name, b""));
            println!("  {what}: - {name}");
        }
    }
}

fn print_logs_and_metrics(host: &Host) {
    if !host.logs().is_empty() {
        println!("logs:");
        for record in host.logs() {
            println!("  [{}] {}", record.level, record.message);
        }
    }
    let metrics = host.proxy().metrics();
    if !metrics.is_empty() {
        println!("metrics:");
        for (name, value) in metrics {
            println!("  {name} = {value:?}");
        }
    }
    if !host.violations().is_empty() {
        println!("Envoy would not do this:");
        for violation in host.violations() {
            println!("  {violation}");
        }
    }
}
