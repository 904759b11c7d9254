//! What `wasmhub` prints: text for people, one JSON object for scripts, and
//! a progress bar only when stderr is a terminal.

use std::io::IsTerminal as _;
use std::path::Path;

use indicatif::{ProgressBar, ProgressStyle};
use oci_client::Reference;
use serde_json::{Value, json};
use wasmhub::credentials::StoredIn;
use wasmhub::image::{Blob, Image, Variant};
use wasmhub::istio::{Extracted, NotAccepted};
use wasmhub::layout::LayoutEntry;
use wasmhub::module::ProxyWasmModule;
use wasmhub::registry::{Progress, PushReport};

pub(crate) struct Output {
    json: bool,
}

impl Output {
    pub(crate) fn new(json: bool) -> Output {
        Output { json }
    }

    /// Progress goes to a terminal only, and never with `--json`.
    fn shows_progress(&self) -> bool {
        !self.json && std::io::stderr().is_terminal()
    }

    pub(crate) fn error(&self, error: &anyhow::Error) {
        if self.json {
            println!("{}", json!({ "error": format!("{error:#}") }));
        }
        eprintln!("error: {error:#}");
    }

    fn emit(&self, value: Value, text: &[String]) {
        if self.json {
            println!("{value}");
        } else {
            for line in text {
                println!("{line}");
            }
        }
    }

    pub(crate) fn built(
        &self,
        reference: &Reference,
        image: &Image,
        variant: Variant,
        layout: &Path,
    ) {
        self.emit(
            json!({
                "reference": reference.whole(),
                "variant": variant.as_str(),
                "digest": image.digest(),
                "sha256": sha256_field(image),
                "layout": layout,
            }),
            &[
                format!(
                    "built {} ({variant} variant) in {}",
                    reference.whole(),
                    layout.display()
                ),
                format!("digest {}", image.digest()),
            ],
        );
    }

    pub(crate) fn pushed(&self, reference: &Reference, report: &PushReport) {
        self.emit(
            json!({
                "reference": reference.whole(),
                "digest": report.digest,
                "sha256": report.digest.trim_start_matches("sha256:"),
                "blobsUploaded": report.uploaded,
                "blobsExisting": report.existing,
            }),
            &[
                format!(
                    "pushed {} ({} blobs uploaded, {} already there)",
                    reference.whole(),
                    report.uploaded,
                    report.existing
                ),
                format!("digest {}", report.digest),
            ],
        );
    }

    pub(crate) fn pulled(
        &self,
        reference: &Reference,
        image: &Image,
        extracted: &Extracted,
        path: &Path,
    ) {
        self.emit(
            json!({
                "reference": reference.whole(),
                "digest": image.digest(),
                "sha256": sha256_field(image),
                "format": extracted.format.to_string(),
                "module": path,
                "moduleSize": extracted.module.len(),
            }),
            &[
                format!(
                    "pulled {} ({} format) → {} ({} bytes)",
                    reference.whole(),
                    extracted.format,
                    path.display(),
                    extracted.module.len()
                ),
                format!("digest {}", image.digest()),
            ],
        );
    }

    pub(crate) fn inspected(
        &self,
        reference: &Reference,
        image: &Image,
        source: &str,
        extracted: Result<&Extracted, &NotAccepted>,
    ) {
        let blob_json = |blob: &Blob| json!({ "mediaType": blob.media_type(), "digest": blob.digest(), "size": blob.data().len() });
        let runtime = extracted.ok().and_then(|e| e.runtime_config.as_ref());
        let root_ids = runtime
            .map(|r| r.config.root_ids.clone())
            .unwrap_or_default();
        // The module itself is the authority on its ABI versions.
        let abi_versions: Vec<String> = extracted
            .ok()
            .and_then(|e| ProxyWasmModule::parse(&e.module).ok())
            .map(|m| m.abi_versions().iter().map(ToString::to_string).collect())
            .unwrap_or_default();
        let value = json!({
            "reference": reference.whole(),
            "source": source,
            "digest": image.digest(),
            "sha256": sha256_field(image),
            "manifest": blob_json(image.manifest_blob()),
            "config": blob_json(image.config()),
            "layers": image.layers().iter().map(blob_json).collect::<Vec<_>>(),
            "istioFormat": extracted.ok().map(|e| e.format.to_string()),
            "module": extracted.ok().map(|e| json!({ "size": e.module.len(), "abiVersions": abi_versions })),
            "rootIds": root_ids,
            "runtimeConfig": runtime,
        });
        let mut text = vec![
            format!("reference    {}", reference.whole()),
            format!("source       {source}"),
            format!("digest       {}", image.digest()),
            format!(
                "sha256       {}   (WasmPlugin.spec.sha256)",
                sha256_field(image)
            ),
            format!(
                "manifest     {}  {} bytes",
                image.manifest_blob().media_type(),
                image.manifest_blob().data().len()
            ),
            format!(
                "config       {}  {} bytes",
                image.config().media_type(),
                image.config().data().len()
            ),
        ];
        for (i, layer) in image.layers().iter().enumerate() {
            text.push(format!(
                "layer {i:<6} {}  {} bytes",
                layer.media_type(),
                layer.data().len()
            ));
        }
        match extracted {
            Ok(e) => {
                text.push(format!("istio format {} (accepted)", e.format));
                text.push(format!(
                    "module       {} bytes, ABI {}",
                    e.module.len(),
                    abi_versions.join(", ")
                ));
                text.push(format!(
                    "root ids     {}",
                    if root_ids.is_empty() {
                        "(none declared)".to_string()
                    } else {
                        root_ids.join(", ")
                    }
                ));
            }
            Err(_) => text.push("istio format none (refused; see the error below)".to_string()),
        }
        self.emit(value, &text);
    }

    pub(crate) fn listed(&self, layout: &Path, entries: &[LayoutEntry]) {
        let text = if entries.is_empty() {
            vec![format!("no images in {}", layout.display())]
        } else {
            entries
                .iter()
                .map(|e| format!("{}  {}", e.digest, e.name))
                .collect()
        };
        let images: Vec<Value> = entries
            .iter()
            .map(|e| json!({ "reference": e.name, "digest": e.digest }))
            .collect();
        self.emit(json!({ "layout": layout, "images": images }), &text);
    }

    pub(crate) fn logged_in(&self, registry: &str, username: &str, stored: &StoredIn) {
        let place = match stored {
            StoredIn::File(path) => format!("{}", path.display()),
            StoredIn::Helper(name) => format!("docker-credential-{name}"),
        };
        self.emit(
            json!({ "registry": registry, "username": username, "storedIn": place }),
            &[format!(
                "login succeeded for {username} at {registry}; credentials stored in {place}"
            )],
        );
    }

    pub(crate) fn logged_out(&self, registry: &str, removed: bool) {
        let text = if removed {
            format!("removed the credentials for {registry}")
        } else {
            format!("no credentials were stored for {registry}")
        };
        self.emit(json!({ "registry": registry, "removed": removed }), &[text]);
    }
}

fn sha256_field(image: &Image) -> &str {
    image.digest().trim_start_matches("sha256:")
}

/// A byte-count bar on stderr when it is a terminal; silent otherwise.
pub(crate) struct TransferBar {
    bar: Option<ProgressBar>,
}

impl TransferBar {
    pub(crate) fn new(out: &Output, verb: &str) -> TransferBar {
        let bar = out.shows_progress().then(|| {
            let bar = ProgressBar::new(0);
            let style = ProgressStyle::with_template(&format!(
                "{verb} {{bar:30}} {{bytes}}/{{total_bytes}} {{bytes_per_sec}}"
            ))
            .unwrap_or_else(|_| ProgressStyle::default_bar());
            bar.set_style(style);
            bar
        });
        TransferBar { bar }
    }

    pub(crate) fn finish(&self) {
        if let Some(bar) = &self.bar {
            bar.finish_and_clear();
        }
    }
}

impl Progress for TransferBar {
    fn begin(&self, total: u64) {
        if let Some(bar) = &self.bar {
            bar.set_length(total);
        }
    }

    fn advance(&self, bytes: u64) {
        if let Some(bar) = &self.bar {
            bar.inc(bytes);
        }
    }
}
