//! `envoyfilter`: Istio YAML in, manifests that deploy the meshwasm filters out.

use anyhow::{Context as _, Result, bail};
use clap::{Args, Parser, Subcommand, ValueEnum};
use envoyfilter::render::{
    self, Code, EnvoyFilterForm, EnvoyOptions, FailStrategy, Filter, IstioOptions,
};
use envoyfilter::translate::{self, Options, Rejected, Translation};
use envoyfilter::yaml;
use serde_json::Value;
use std::collections::BTreeMap;
use std::io::Write as _;
use std::path::PathBuf;
use std::process::ExitCode;

/// Translate Istio VirtualService, DestinationRule, Gateway, AuthorizationPolicy and Telemetry YAML into the
/// manifests that deploy the meshwasm filters: Istio WasmPlugins, EnvoyFilters
/// or plain Envoy configuration. Warnings go to stderr; `--strict` makes them errors.
#[derive(Parser)]
#[command(name = "envoyfilter", version)]
struct Cli {
    #[command(subcommand)]
    command: Command,
}

#[derive(Subcommand)]
enum Command {
    /// Check the input and list what would not carry over; prints nothing else.
    Check(Input),
    /// The filters' plugin configurations, as JSON per placement.
    Config(Input),
    /// WasmPlugins, companion VirtualServices, and the DestinationRules and Gateways as given.
    Istio {
        #[command(flatten)]
        input: Input,
        #[command(flatten)]
        istio: IstioArgs,
        /// One WasmPlugin of the mesh module (meshwasm-mesh) for the filters on the same
        /// workloads and traffic, instead of one per filter.
        #[arg(long)]
        mesh: bool,
    },
    /// EnvoyFilters that insert the filters before Envoy's router, plus the companion VirtualServices.
    Envoyfilter {
        #[command(flatten)]
        input: Input,
        #[command(flatten)]
        istio: IstioArgs,
        /// `inline`: the filter in an HTTP_FILTER patch; `ecds`: EXTENSION_CONFIG plus config_discovery.
        #[arg(long, value_enum, default_value = "inline")]
        form: Form,
        /// Module location for the inline form: a path in the proxy (`local`) or an https url (`remote`).
        /// `{file}` is replaced by the module's file name.
        #[arg(long, default_value = "/var/local/lib/wasm-filters/{file}")]
        code: String,
        /// Envoy cluster that serves an https `--code` url.
        #[arg(long, default_value = "")]
        code_cluster: String,
    },
    /// A complete plain Envoy bootstrap (listener, routes, filters, clusters).
    Envoy {
        #[command(flatten)]
        input: Input,
        /// Listener address.
        #[arg(long, default_value = "0.0.0.0:10000")]
        listen: String,
        /// Admin address.
        #[arg(long, default_value = "127.0.0.1:9901")]
        admin: String,
        /// Directory of the built modules, as Envoy sees it.
        #[arg(long, default_value = "target/wasm32-wasip1/wasm")]
        wasm_dir: String,
        /// Address of an upstream: CLUSTER_OR_HOST=ADDRESS:PORT (repeatable;
        /// several addresses, comma-separated or a name repeated, make
        /// several endpoints).
        #[arg(long = "upstream", value_name = "NAME=ADDRESS:PORT[,ADDRESS:PORT...]")]
        upstreams: Vec<String>,
        /// Where requests that no VirtualService routes go (default: a 404).
        #[arg(long, value_name = "ADDRESS:PORT")]
        default_upstream: Option<String>,
        /// Proxies in front of Envoy (a load balancer that terminates TLS)
        /// whose x-forwarded-for and x-forwarded-proto Envoy trusts; with 0
        /// Envoy is the edge and trusts no client's.
        #[arg(long, default_value_t = 0, value_name = "N")]
        trusted_proxies: u32,
        /// The filters as one module, the mesh module (meshwasm_mesh.wasm).
        #[arg(long)]
        mesh: bool,
        /// What a filter whose VM fails does, as Istio's failStrategy names it (written as
        /// each plugin's failure_policy): FAIL_RELOAD answers 503 for a second after a trap and
        /// makes a new VM; FAIL_CLOSE answers 503 for good; FAIL_OPEN skips the filter, its
        /// access rules too.
        #[arg(long, default_value = "FAIL_RELOAD", value_parser = fail_strategy_parser())]
        fail_strategy: FailStrategy,
        /// Envoy discovers each filter's configuration from a file in DIR (ECDS from files,
        /// watched): this writes them there, and running again with new input reconfigures a
        /// running Envoy without a restart (new clusters or routes still need one).
        #[arg(long, value_name = "DIR")]
        ecds_dir: Option<PathBuf>,
    },
}

#[derive(Args)]
struct Input {
    /// Multi-document Istio YAML files; `-` reads standard input.
    #[arg(required = true)]
    files: Vec<PathBuf>,
    /// Treat every warning as an error.
    #[arg(long)]
    strict: bool,
    /// Namespace of resources that name none.
    #[arg(long, default_value = "default")]
    default_namespace: String,
    /// Write the output to this file instead of standard output.
    #[arg(long, short)]
    output: Option<PathBuf>,
}

#[derive(Args)]
struct IstioArgs {
    /// Image repository prefix (`oci://REGISTRY/PATH`), or a `file://` or `https://` directory.
    #[arg(long, default_value = "oci://ghcr.io/meshwasm")]
    image_prefix: String,
    /// Image tag.
    #[arg(long, default_value = "latest")]
    tag: String,
    /// Manifest digest per filter, as `wasmhub inspect` prints it: `router=sha256:...` (repeatable).
    #[arg(long, value_name = "FILTER=DIGEST")]
    sha256: Vec<String>,
    /// Namespace of mesh-wide resources (Istio's root namespace applies them to every namespace).
    #[arg(long, default_value = "istio-system")]
    namespace: String,
    /// Namespace of the gateway pods (Istio's ingress gateway runs in istio-system): a plugin
    /// selects pods of its own namespace only, so gateway plugins go there.
    #[arg(long, default_value = "istio-system")]
    gateway_namespace: String,
    /// What a plugin whose VM fails does: FAIL_RELOAD answers 503 for a second after a trap and
    /// makes a new VM; FAIL_CLOSE answers 503 for good; FAIL_OPEN skips the filter, its access
    /// rules too.
    #[arg(long, default_value = "FAIL_RELOAD", value_parser = fail_strategy_parser())]
    fail_strategy: FailStrategy,
    /// `imagePullSecret` for a private registry.
    #[arg(long)]
    pull_secret: Option<String>,
    /// `vmConfig.env` entries: NAME=VALUE (repeatable).
    #[arg(long = "env", value_name = "NAME=VALUE")]
    vm_env: Vec<String>,
    /// Select by Gateway API `targetRefs` instead of labels: KIND/NAME (repeatable).
    #[arg(long = "target-ref", value_name = "KIND/NAME")]
    target_refs: Vec<String>,
    /// The mesh's DNS domain, for short service names made FQDNs.
    #[arg(long, default_value = "cluster.local")]
    cluster_domain: String,
}

/// Istio's names, listed in `--help` and checked by clap.
fn fail_strategy_parser() -> impl clap::builder::TypedValueParser<Value = FailStrategy> {
    use clap::builder::TypedValueParser as _;
    clap::builder::PossibleValuesParser::new(FailStrategy::ALL.map(FailStrategy::name))
        .try_map(|name| name.parse::<FailStrategy>())
}

#[derive(Clone, Copy, ValueEnum)]
enum Form {
    Inline,
    Ecds,
}

fn main() -> ExitCode {
    let cli = Cli::parse();
    match run(cli) {
        Ok(()) => ExitCode::SUCCESS,
        Err(e) => {
            if let Some(rejected) = e.downcast_ref::<Rejected>() {
                let errors = rejected
                    .findings
                    .iter()
                    .filter(|f| f.severity == translate::Severity::Error)
                    .count();
                eprintln!("{rejected}\nenvoyfilter: {errors} error(s); nothing written");
            } else {
                eprintln!("envoyfilter: {e:#}");
            }
            ExitCode::FAILURE
        }
    }
}

fn run(cli: Cli) -> Result<()> {
    let (input, documents) = match cli.command {
        Command::Check(input) => {
            let t = load(&input)?;
            let warnings = t
                .findings
                .iter()
                .filter(|f| f.severity == translate::Severity::Warning)
                .count();
            let limits = match t.rate_limits.len() {
                0 => String::new(),
                n => format!(", {n} rate limits"),
            };
            let authz = match t.authz.len() {
                0 => String::new(),
                n => format!(", {n} header-match filters for AuthorizationPolicies"),
            };
            let telemetry = match t.telemetry.len() {
                0 => String::new(),
                n => format!(", {n} telemetry filters for Telemetries"),
            };
            eprintln!(
                "{} VirtualServices, {} placements{limits}{authz}{telemetry}, {warnings} warnings",
                t.services.len(),
                t.placements().len(),
            );
            return Ok(());
        }
        Command::Config(input) => {
            let t = load(&input)?;
            let mut out = serde_json::Map::new();
            for placement in t.placements() {
                let mut filters = serde_json::Map::new();
                for filter in Filter::ALL {
                    if let Some(config) = filter.config(&t, &placement) {
                        filters.insert(filter.plugin_name().into(), config);
                    }
                }
                out.insert(placement.slug(), Value::Object(filters));
            }
            // Each rate limit has its own workloads: keyed by the
            // EnvoyFilter it comes from.
            for limit in &t.rate_limits {
                let mut filters = serde_json::Map::new();
                filters.insert(Filter::RateLimit.plugin_name().into(), limit.config.clone());
                out.insert(
                    format!("{}/{}", limit.namespace, limit.name),
                    Value::Object(filters),
                );
            }
            // And each set of AuthorizationPolicies: keyed by its namespace and name.
            for authz in &t.authz {
                let mut filters = serde_json::Map::new();
                filters.insert(
                    Filter::HeaderMatch.plugin_name().into(),
                    authz.config.clone(),
                );
                out.insert(
                    format!("{}/{}", authz.namespace, authz.name),
                    Value::Object(filters),
                );
            }
            // And each Telemetry: keyed by its namespace and name (beside
            // the header-match filter of a policy of the same name).
            for telemetry in &t.telemetry {
                let key = format!("{}/{}", telemetry.namespace, telemetry.name);
                let entry = out
                    .entry(key)
                    .or_insert_with(|| Value::Object(serde_json::Map::new()));
                if let Value::Object(filters) = entry {
                    filters.insert(
                        Filter::Telemetry.plugin_name().into(),
                        telemetry.config.clone(),
                    );
                }
            }
            let text = serde_json::to_string_pretty(&Value::Object(out))? + "\n";
            return write_output(&input, &text);
        }
        Command::Istio { input, istio, mesh } => {
            let t = load(&input)?;
            let options = istio_options(&istio)?;
            warn_fail_open(&t, options.fail_strategy, input.strict)?;
            let mut docs = render::istio_manifests(&t, &options);
            if mesh {
                docs = render::mesh::istio_manifests(docs, &options);
            }
            (input, docs)
        }
        Command::Envoyfilter {
            input,
            istio,
            form,
            code,
            code_cluster,
        } => {
            let t = load(&input)?;
            let options = istio_options(&istio)?;
            warn_fail_open(&t, options.fail_strategy, input.strict)?;
            let form = match form {
                Form::Inline if code.starts_with("https://") || code.starts_with("http://") => {
                    if code_cluster.is_empty() {
                        bail!(
                            "--code {code} is a url, so Envoy needs --code-cluster naming the cluster that serves it"
                        );
                    }
                    EnvoyFilterForm::Inline(Code::Remote {
                        uri: code,
                        cluster: code_cluster,
                        sha256: None,
                    })
                }
                Form::Inline => EnvoyFilterForm::Inline(Code::Local { filename: code }),
                Form::Ecds => EnvoyFilterForm::Ecds {
                    uri: format!(
                        "{}/{{image}}:{}",
                        options.image_prefix.trim_end_matches('/'),
                        options.tag
                    ),
                    sha256: None,
                },
            };
            let mut docs = render::envoy_filters(&t, &form, &options);
            docs.extend(render::istio_routing(&t, &options));
            (input, docs)
        }
        Command::Envoy {
            input,
            listen,
            admin,
            wasm_dir,
            upstreams,
            default_upstream,
            trusted_proxies,
            mesh,
            fail_strategy,
            ecds_dir,
        } => {
            let t = load(&input)?;
            let mut options = EnvoyOptions {
                listen: address(&listen, "--listen")?,
                admin: address(&admin, "--admin")?,
                wasm_dir,
                trusted_proxies,
                mesh,
                fail_strategy,
                ecds_dir: ecds_dir.as_ref().map(|d| d.display().to_string()),
                ..EnvoyOptions::default()
            };
            // A name given again, or several addresses after one `=`, is a
            // cluster of several endpoints.
            for entry in &upstreams {
                let (name, addrs) = entry.split_once('=').with_context(|| {
                    format!("--upstream {entry:?}: expected NAME=ADDRESS:PORT[,ADDRESS:PORT...]")
                })?;
                for addr in addrs.split(',') {
                    let endpoint = address(addr, "--upstream")?;
                    options
                        .upstreams
                        .entry(name.to_owned())
                        .or_default()
                        .push(endpoint);
                }
            }
            if let Some(addr) = default_upstream {
                options.default_cluster = Some(address(&addr, "--default-upstream")?);
            }
            render::check_upstreams(&t, &options)?;
            warn_fail_open(&t, options.fail_strategy, input.strict)?;
            if let Some(dir) = &ecds_dir {
                let files = render::envoy_discovered_configs(&t, &options);
                for path in render::write_discovered_configs(dir, &files)? {
                    eprintln!("envoyfilter: wrote {}", path.display());
                }
            }
            (input, vec![render::envoy_bootstrap(&t, &options)])
        }
    };
    write_output(&input, &yaml::dump(&documents))
}

fn warn_fail_open(t: &Translation, strategy: FailStrategy, strict: bool) -> Result<()> {
    if let Some(warning) = render::fail_open_warning(t, strategy) {
        if strict {
            bail!("{warning} (an error under --strict)");
        }
        eprintln!("{warning}");
    }
    Ok(())
}

/// Reads and translates every input file, printing warnings to stderr.
fn load(input: &Input) -> Result<Translation> {
    let options = Options {
        strict: input.strict,
        default_namespace: input.default_namespace.clone(),
    };
    let mut inputs = Vec::with_capacity(input.files.len());
    for file in &input.files {
        let (name, content) = if file.as_os_str() == "-" {
            let text =
                std::io::read_to_string(std::io::stdin()).context("reading standard input")?;
            ("<stdin>".to_owned(), text)
        } else {
            let text = std::fs::read_to_string(file)
                .with_context(|| format!("cannot read {}", file.display()))?;
            (file.display().to_string(), text)
        };
        inputs.push((name, content));
    }
    match translate::translate_files(&inputs, &options) {
        Ok(t) => {
            for finding in &t.findings {
                eprintln!("{finding}");
            }
            Ok(t)
        }
        Err(rejected) => Err(rejected.into()),
    }
}

fn istio_options(args: &IstioArgs) -> Result<IstioOptions> {
    let mut sha256 = BTreeMap::new();
    for entry in &args.sha256 {
        let (name, digest) = entry.split_once('=').with_context(|| {
            format!("--sha256 {entry:?}: expected FILTER=DIGEST, e.g. router=sha256:...")
        })?;
        let filter = match name {
            "router" | "meshwasm-router" | "meshwasm.router" => Filter::Router,
            "fault" | "meshwasm-fault" | "meshwasm.fault" => Filter::Fault,
            "rate-limit" | "meshwasm-rate-limit" | "meshwasm.rate-limit" => Filter::RateLimit,
            "header-match" | "meshwasm-header-match" | "meshwasm.header-match" => {
                Filter::HeaderMatch
            }
            "telemetry" | "meshwasm-telemetry" | "meshwasm.telemetry" => Filter::Telemetry,
            "mesh" | "meshwasm-mesh" | "meshwasm.mesh" => Filter::Mesh,
            other => bail!(
                "--sha256: unknown filter {other:?}; use router, fault, rate-limit, header-match, telemetry or mesh"
            ),
        };
        let hex = digest.strip_prefix("sha256:").unwrap_or(digest);
        if hex.len() != 64 || !hex.bytes().all(|b| b.is_ascii_hexdigit()) {
            bail!("--sha256 {entry:?}: a digest is 64 hex digits, optionally after sha256:");
        }
        sha256.insert(filter, hex.to_ascii_lowercase());
    }
    let pairs = |entries: &[String], flag: &str, sep: char| -> Result<Vec<(String, String)>> {
        entries
            .iter()
            .map(|e| {
                e.split_once(sep)
                    .map(|(a, b)| (a.to_owned(), b.to_owned()))
                    .with_context(|| format!("{flag} {e:?}: expected A{sep}B"))
            })
            .collect()
    };
    Ok(IstioOptions {
        image_prefix: args.image_prefix.clone(),
        tag: args.tag.clone(),
        sha256,
        namespace: args.namespace.clone(),
        gateway_namespace: args.gateway_namespace.clone(),
        fail_strategy: args.fail_strategy,
        pull_policy: Some("IfNotPresent".into()),
        pull_secret: args.pull_secret.clone(),
        vm_env: pairs(&args.vm_env, "--env", '=')?,
        target_refs: pairs(&args.target_refs, "--target-ref", '/')?,
        cluster_domain: args.cluster_domain.clone(),
    })
}

fn address(text: &str, flag: &str) -> Result<(String, u16)> {
    let (host, port) = text
        .rsplit_once(':')
        .with_context(|| format!("{flag} {text:?}: expected ADDRESS:PORT"))?;
    let port = port
        .parse()
        .with_context(|| format!("{flag} {text:?}: {port:?} is not a port"))?;
    Ok((host.trim_matches(['[', ']']).to_owned(), port))
}

fn write_output(input: &Input, text: &str) -> Result<()> {
    match &input.output {
        Some(path) => {
            std::fs::write(path, text).with_context(|| format!("cannot write {}", path.display()))
        }
        None => {
            let mut out = std::io::stdout().lock();
            out.write_all(text.as_bytes())?;
            Ok(())
        }
    }
}
