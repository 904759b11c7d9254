//! `wasmhub`: build Proxy-Wasm filters into OCI images Istio pulls, and push,
//! pull, inspect and log in to any OCI registry.

mod output;

use std::io::Read as _;
use std::path::{Path, PathBuf};
use std::process::ExitCode;

use anyhow::{Context as _, Result, bail};
use clap::{Parser, Subcommand};
use oci_client::Reference;
use oci_client::secrets::RegistryAuth;
use wasmhub::credentials::{self, DockerConfig};
use wasmhub::image::{BuildOptions, Image, Variant};
use wasmhub::layout::Layout;
use wasmhub::registry::{self, Registry};
use wasmhub::{digest, istio};

use output::{Output, TransferBar};

#[derive(Parser)]
#[command(version, about, long_about = None)]
struct Cli {
    /// The local OCI image layout that `build` writes and `push` reads
    /// [default: $WASMHUB_LAYOUT, else ~/.local/share/wasmhub/oci].
    #[arg(long, global = true, value_name = "DIR")]
    layout: Option<PathBuf>,
    /// Reach this registry (host[:port]) over plain HTTP. Loopback
    /// registries always are. Also read, comma-separated, from
    /// $WASMHUB_INSECURE_REGISTRIES.
    #[arg(long, global = true, value_name = "REGISTRY")]
    insecure: Vec<String>,
    /// The docker config.json holding logins [default: $DOCKER_CONFIG/config.json,
    /// else ~/.docker/config.json].
    #[arg(long, global = true, value_name = "FILE")]
    docker_config: Option<PathBuf>,
    /// Print one JSON object on stdout instead of text, and no progress.
    #[arg(long, global = true)]
    json: bool,
    #[command(subcommand)]
    command: Command,
}

#[derive(Subcommand)]
enum Command {
    /// Pack a Proxy-Wasm module as an image in the local layout.
    Build {
        /// The .wasm file.
        module: PathBuf,
        /// The image reference, e.g. ghcr.io/acme/router:1.0.
        #[arg(short, long = "tag", value_name = "REF")]
        tag: String,
        /// compat (a tar.gz layer with plugin.wasm) or wasmhub (the WebAssembly Hub artifact).
        #[arg(long, default_value = "compat")]
        variant: Variant,
        /// A root context id the module registers; repeatable.
        #[arg(long = "root-id", value_name = "ID")]
        root_ids: Vec<String>,
    },
    /// Push an image from the local layout to its registry.
    Push {
        /// The reference given to `build`.
        reference: String,
    },
    /// Pull an image in any format Istio accepts and extract the module.
    Pull {
        /// The image reference; a @sha256: digest pins it.
        reference: String,
        /// Where to write the module [default: <repository name>.wasm].
        #[arg(short, long, value_name = "FILE")]
        output: Option<PathBuf>,
        /// Refuse the image unless its manifest digest is this (WasmPlugin.spec.sha256).
        #[arg(long, value_name = "HEX")]
        sha256: Option<String>,
    },
    /// Show an image's media types, sizes, root ids, ABI versions and digest.
    Inspect {
        /// The image reference.
        reference: String,
        /// Ask the registry even when the local layout has the image.
        #[arg(long)]
        remote: bool,
    },
    /// List the images in the local layout.
    List,
    /// Check credentials against a registry and store them like `docker login`.
    Login {
        /// The registry, host[:port].
        registry: String,
        /// The user name.
        #[arg(short, long)]
        username: String,
        /// Read the password or token from stdin.
        #[arg(long)]
        password_stdin: bool,
        /// The password or token (visible to other users in `ps`; prefer --password-stdin).
        #[arg(short, long, conflicts_with = "password_stdin")]
        password: Option<String>,
    },
    /// Remove stored credentials for a registry.
    Logout {
        /// The registry, host[:port].
        registry: String,
    },
}

fn main() -> ExitCode {
    let cli = Cli::parse();
    let out = Output::new(cli.json);
    let runtime = match tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()
    {
        Ok(runtime) => runtime,
        Err(e) => {
            out.error(&anyhow::Error::new(e).context("cannot start the async runtime"));
            return ExitCode::FAILURE;
        }
    };
    match runtime.block_on(run(cli, &out)) {
        Ok(()) => ExitCode::SUCCESS,
        Err(e) => {
            out.error(&e);
            ExitCode::FAILURE
        }
    }
}

async fn run(cli: Cli, out: &Output) -> Result<()> {
    let mut insecure = cli.insecure.clone();
    if let Ok(list) = std::env::var("WASMHUB_INSECURE_REGISTRIES") {
        insecure.extend(
            list.split(',')
                .map(str::trim)
                .filter(|s| !s.is_empty())
                .map(String::from),
        );
    }
    let registry = Registry::new(insecure);
    let layout_root = match &cli.layout {
        Some(dir) => dir.clone(),
        None => Layout::default_root()
            .context("cannot find a home directory for the layout; pass --layout DIR")?,
    };
    let docker_config = match &cli.docker_config {
        Some(file) => file.clone(),
        None => credentials::default_config_path().context(
            "cannot find a home directory for the docker config; pass --docker-config FILE",
        )?,
    };
    match cli.command {
        Command::Build {
            module,
            tag,
            variant,
            root_ids,
        } => {
            let reference = registry::parse_reference(&tag)?;
            let bytes = std::fs::read(&module)
                .with_context(|| format!("cannot read {}", module.display()))?;
            let image = Image::build(&bytes, &BuildOptions { variant, root_ids })
                .with_context(|| format!("{}", module.display()))?;
            let layout = Layout::open(&layout_root)?;
            layout.put(&reference.whole(), &image)?;
            out.built(&reference, &image, variant, layout.root());
        }
        Command::Push { reference } => {
            let reference = registry::parse_reference(&reference)?;
            let layout = Layout::open(&layout_root)?;
            let image = layout.get(&reference.whole())?;
            let auth = auth_for(&docker_config, &reference)?;
            let bar = TransferBar::new(out, "pushing");
            let report = registry.push(&reference, &image, &auth, &bar).await?;
            bar.finish();
            out.pushed(&reference, &report);
        }
        Command::Pull {
            reference,
            output,
            sha256,
        } => {
            let reference = registry::parse_reference(&reference)?;
            let auth = auth_for(&docker_config, &reference)?;
            let bar = TransferBar::new(out, "pulling");
            let image = registry.pull(&reference, &auth, &bar).await?;
            bar.finish();
            if let Some(expected) = sha256 {
                let expected = expected.trim_start_matches("sha256:");
                if digest::sha256_hex(image.digest()) != Some(expected) {
                    bail!(
                        "digest mismatch: {} has manifest digest {}, not sha256:{expected}",
                        reference.whole(),
                        image.digest()
                    );
                }
            }
            let extracted = istio::extract(&image).with_context(|| reference.whole())?;
            let path = output.unwrap_or_else(|| default_module_path(&reference));
            write_file(&path, &extracted.module)?;
            Layout::open(&layout_root)?.put(&reference.whole(), &image)?;
            out.pulled(&reference, &image, &extracted, &path);
        }
        Command::Inspect { reference, remote } => {
            let reference = registry::parse_reference(&reference)?;
            let layout = Layout::open(&layout_root)?;
            let local = if remote {
                None
            } else {
                layout.get(&reference.whole()).ok()
            };
            let (image, source) = match local {
                Some(image) => (image, format!("local layout {}", layout.root().display())),
                None => {
                    if !remote {
                        // Said before the registry is asked, so that a
                        // registry error reads in its right context.
                        eprintln!(
                            "{} is not in the local layout {}; asking registry {}",
                            reference.whole(),
                            layout.root().display(),
                            reference.resolve_registry()
                        );
                    }
                    let auth = auth_for(&docker_config, &reference)?;
                    let image = registry.pull(&reference, &auth, &()).await?;
                    (image, format!("registry {}", reference.resolve_registry()))
                }
            };
            let extracted = istio::extract(&image);
            out.inspected(&reference, &image, &source, extracted.as_ref());
            if let Err(e) = extracted {
                return Err(anyhow::Error::new(e).context(reference.whole()));
            }
        }
        Command::List => {
            let layout = Layout::open(&layout_root)?;
            out.listed(layout.root(), &layout.list()?);
        }
        Command::Login {
            registry: host,
            username,
            password_stdin,
            password,
        } => {
            let password = match (password, password_stdin) {
                (Some(password), _) => password,
                (None, true) => {
                    let mut password = String::new();
                    std::io::stdin()
                        .read_to_string(&mut password)
                        .context("cannot read the password from stdin")?;
                    password.trim_end_matches(['\r', '\n']).to_string()
                }
                (None, false) => bail!("give the password with --password-stdin (or --password)"),
            };
            if password.is_empty() {
                bail!("the password is empty");
            }
            registry.check_login(&host, &username, &password).await?;
            let mut config = DockerConfig::load(&docker_config)?;
            let stored = config.store(&host, &username, &password)?;
            out.logged_in(&host, &username, &stored);
        }
        Command::Logout { registry: host } => {
            let mut config = DockerConfig::load(&docker_config)?;
            let removed = config.erase(&host)?;
            out.logged_out(&host, removed);
        }
    }
    Ok(())
}

fn auth_for(docker_config: &Path, reference: &Reference) -> Result<RegistryAuth> {
    Ok(DockerConfig::load(docker_config)?.credentials_for(reference.resolve_registry())?)
}

/// `ghcr.io/acme/router:1.0` → `router.wasm`.
fn default_module_path(reference: &Reference) -> PathBuf {
    let name = reference
        .repository()
        .rsplit('/')
        .next()
        .unwrap_or("plugin");
    PathBuf::from(format!("{name}.wasm"))
}

fn write_file(path: &Path, data: &[u8]) -> Result<()> {
    std::fs::write(path, data).with_context(|| format!("cannot write {}", path.display()))
}
