//! `sdk-host run FILTER.wasm --config cfg.json --request req.yaml`: plays
//! requests through any Proxy-Wasm module and prints what the filter did.
//! `sdk-host test SCENARIO.yaml...`: runs scenario files and reports every
//! mismatch with their expectations.

use anyhow::{Context as _, Result, anyhow};
use clap::{Parser, Subcommand};
use sdk_host::scenario::{Exchange, Scenario, from_document, yaml_document};
use sdk_host::{Action, HeaderMap, Host, WasmModule};
use serde::Deserialize;
use std::path::{Path, PathBuf};
use std::process::ExitCode;

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
    /// Play one request, or a small scenario, through a module.
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
    /// Request or scenario file (YAML or JSON). Default: GET / to example.com.
    #[arg(long)]
    request: Option<PathBuf>,
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
    requests: Vec<Exchange>,
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
    let requests = match &args.request {
        Some(path) => load_requests(path)?,
        None => vec![Exchange::default()],
    };
    let mut host = Host::builder()
        .vm_id(&args.vm_id)
        .vm_config(vm_config)
        .plugin("plugin", &args.root_id, config)
        .start(&module)
        .map_err(|e| anyhow!("{}: {e}", args.filter.display()))?;
    println!("{} ({})", module.name(), module.abi_version());
    for (i, spec) in requests.iter().enumerate() {
        println!("request {}", i + 1);
        play(&mut host, spec)?;
    }
    print_logs_and_metrics(&host);
    Ok(if host.violations().is_empty() {
        ExitCode::SUCCESS
    } else {
        ExitCode::from(1)
    })
}

fn load_requests(path: &Path) -> Result<Vec<Exchange>> {
    let text = String::from_utf8(read(path, "request file")?)
        .map_err(|_| anyhow!("{}: not UTF-8 text", path.display()))?;
    let document = yaml_document(path, &text)?;
    if document.value.get("requests").is_some() {
        let file: RequestFile = from_document(path, &document)?;
        Ok(file.requests)
    } else {
        Ok(vec![from_document(path, &document)?])
    }
}

fn play(host: &mut Host, spec: &Exchange) -> Result<()> {
    let headers = spec.request_headers();
    let sent = HeaderMap::from_pairs(headers.iter().map(|(k, v)| (k.as_str(), v.as_str())));
    let stream = host.new_http_stream()?;
    let end = spec.body.is_none() && spec.trailers.is_none();
    let action = host.send_request_headers(stream, &headers, end)?;
    println!("  proxy_on_request_headers -> {}", action_name(action));
    if let Some(body) = &spec.body {
        let action = host.send_request_body(stream, body.bytes(), spec.trailers.is_none())?;
        println!(
            "  proxy_on_request_body -> {}",
            action.map_or("held (stream paused)".into(), action_name)
        );
    }
    if let Some(trailers) = &spec.trailers {
        let pairs: Vec<(&String, &String)> = trailers.iter().collect();
        let action = host.send_request_trailers(stream, &pairs)?;
        println!(
            "  proxy_on_request_trailers -> {}",
            action.map_or("held (stream paused)".into(), action_name)
        );
    }
    if let Some(advance) = spec.advance {
        host.advance(advance)?;
        println!("  advanced {} ms", advance.as_millis());
    }
    if let Some(after) = host.http(stream)?.request_headers() {
        print_changes("request headers", &sent, after);
    }
    let reached = host.http(stream)?.upstream().headers.is_some();
    if let Some(local) = host.http(stream)?.local_response() {
        println!(
            "  local response: {} {} {:?}",
            local.status,
            local.details,
            String::from_utf8_lossy(&local.body)
        );
    } else if !reached {
        println!("  the request is still held by the filter");
    } else if let Some(response) = &spec.response {
        let mut pairs = vec![(":status".to_string(), response.status.to_string())];
        pairs.extend(response.headers.iter().map(|(k, v)| (k.clone(), v.clone())));
        let upstream = HeaderMap::from_pairs(pairs.iter().map(|(k, v)| (k.as_str(), v.as_str())));
        let action = host.send_response_headers(stream, &pairs, response.body.is_none())?;
        println!("  proxy_on_response_headers -> {}", action_name(action));
        if let Some(body) = &response.body {
            let action = host.send_response_body(stream, body.bytes(), true)?;
            println!(
                "  proxy_on_response_body -> {}",
                action.map_or("held (stream paused)".into(), action_name)
            );
        }
        if let Some(after) = host.http(stream)?.response_headers() {
            print_changes("response headers", &upstream, after);
        }
    } else {
        println!("  upstream received the request");
    }
    host.finish(stream)?;
    Ok(())
}

fn action_name(action: Action) -> String {
    match action {
        Action::Continue => "Continue".into(),
        Action::Pause => "Pause".into(),
        Action::Other(n) => format!("status {n}"),
    }
}

fn print_changes(what: &str, before: &HeaderMap, after: &HeaderMap) {
    for (name, value) in after.iter() {
        if before.get_bytes(name) != Some(value) {
            println!("  {what}: + {name}: {}", String::from_utf8_lossy(value));
        }
    }
    for (name, _) in before.iter() {
        if after.get_bytes(name).is_none() {
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
