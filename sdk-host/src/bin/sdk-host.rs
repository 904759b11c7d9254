//! `sdk-host run FILTER.wasm --config cfg.json --request req.yaml`: plays
//! requests through any Proxy-Wasm module and prints what the filter did.

use anyhow::{Context as _, Result, anyhow, bail};
use clap::{Parser, Subcommand};
use sdk_host::{Action, HeaderMap, Host, WasmModule};
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
    /// Play one request, or a small scenario, through a module.
    Run(RunArgs),
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
    requests: Vec<RequestSpec>,
}

#[derive(Deserialize, Default)]
#[serde(deny_unknown_fields)]
struct RequestSpec {
    #[serde(default)]
    headers: BTreeMap<String, String>,
    body: Option<String>,
    trailers: Option<BTreeMap<String, String>>,
    /// Time to let pass after the request (delays, ticks), e.g. `2s`, `150ms`.
    advance: Option<String>,
    /// The upstream's answer, if the request reaches it.
    response: Option<ResponseSpec>,
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct ResponseSpec {
    #[serde(default = "ok_status")]
    status: u16,
    #[serde(default)]
    headers: BTreeMap<String, String>,
    body: Option<String>,
}

fn ok_status() -> u16 {
    200
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
    let Command::Run(args) = cli.command;
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
        None => vec![RequestSpec::default()],
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

fn load_requests(path: &Path) -> Result<Vec<RequestSpec>> {
    let text = String::from_utf8(read(path, "request file")?)
        .map_err(|_| anyhow!("{}: not UTF-8 text", path.display()))?;
    let documents =
        envoyfilter::yaml::load(&text).map_err(|e| anyhow!("{}: {e}", path.display()))?;
    let [document] = documents.as_slice() else {
        bail!(
            "{}: expected one YAML document, found {}",
            path.display(),
            documents.len()
        );
    };
    let located = |e: serde_path_to_error::Error<serde_json::Error>| {
        let field = e.path().to_string();
        let at = document
            .position(&field)
            .map(|p| format!("{p}: "))
            .unwrap_or_default();
        anyhow!("{}: {at}{field}: {}", path.display(), e.inner())
    };
    if document.value.get("requests").is_some() {
        let file: RequestFile =
            serde_path_to_error::deserialize(&document.value).map_err(located)?;
        Ok(file.requests)
    } else {
        Ok(vec![
            serde_path_to_error::deserialize(&document.value).map_err(located)?,
        ])
    }
}

fn parse_duration(text: &str) -> Result<Duration> {
    let (number, unit) = text
        .find(|c: char| !c.is_ascii_digit() && c != '.')
        .map_or((text, "s"), |at| text.split_at(at));
    let value: f64 = number
        .parse()
        .map_err(|_| anyhow!("advance: {text:?} is not a duration like 2s or 150ms"))?;
    let seconds = match unit {
        "s" => value,
        "ms" => value / 1e3,
        "us" => value / 1e6,
        "m" => value * 60.0,
        _ => bail!("advance: unknown unit in {text:?} (use ms, s or m)"),
    };
    Ok(Duration::from_secs_f64(seconds))
}

fn play(host: &mut Host, spec: &RequestSpec) -> Result<()> {
    let mut headers: Vec<(String, String)> = vec![
        (":method".into(), "GET".into()),
        (":path".into(), "/".into()),
        (":authority".into(), "example.com".into()),
        (":scheme".into(), "http".into()),
    ];
    for (name, value) in &spec.headers {
        match headers
            .iter_mut()
            .find(|(n, _)| n.eq_ignore_ascii_case(name))
        {
            Some(existing) => existing.1 = value.clone(),
            None => headers.push((name.clone(), value.clone())),
        }
    }
    let sent = HeaderMap::from_pairs(headers.iter().map(|(k, v)| (k.as_str(), v.as_str())));
    let stream = host.new_http_stream()?;
    let end = spec.body.is_none() && spec.trailers.is_none();
    let action = host.send_request_headers(stream, &headers, end)?;
    println!("  proxy_on_request_headers -> {}", action_name(action));
    if let Some(body) = &spec.body {
        let action = host.send_request_body(stream, body, spec.trailers.is_none())?;
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
    if let Some(advance) = &spec.advance {
        host.advance(parse_duration(advance)?)?;
        println!("  advanced {advance}");
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
            let action = host.send_response_body(stream, body, true)?;
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
