//! Istio's acceptance rules for Wasm images, applied to a pulled image, so
//! that wasmhub extracts exactly the module Istio's agent would load.
//!
//! The rules, in the order Istio's image fetcher applies them:
//!
//! 1. A Docker schema 2 manifest: the last layer must be
//!    `application/vnd.docker.image.rootfs.diff.tar.gzip`, a tar.gz holding a
//!    file whose base name is `plugin.wasm`.
//! 2. Otherwise, the compat variant: the last layer is
//!    `application/vnd.oci.image.layer.v1.tar+gzip` holding `plugin.wasm`.
//! 3. Otherwise, the WebAssembly Hub variant: exactly two layers, one of them
//!    `application/vnd.module.wasm.content.layer.v1+wasm`, the raw module.
//!
//! The module must then start with `\0asm`. An image index resolves to its
//! linux/amd64 image first, as go-containerregistry does for Istio.

use std::fmt;
use std::io::Read as _;

use flate2::read::GzDecoder;
use oci_client::manifest::{ImageIndexEntry, OciImageIndex};

use crate::image::{Image, RuntimeConfig};
use crate::media_types::{
    CNCF_WASM_CONFIG, COMPAT_MODULE_FILE, COMPAT_RUNTIME_CONFIG_FILE, DOCKER_LAYER_TAR_GZIP,
    DOCKER_MANIFEST, OCI_LAYER_TAR_GZIP, WASMHUB_LAYER,
};
use crate::module::WASM_MAGIC;

/// No Proxy-Wasm module comes near this; it bounds what a hostile layer can
/// make wasmhub decompress.
const MAX_MODULE_BYTES: u64 = 256 * 1024 * 1024;

/// Which of Istio's formats an image matched.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Format {
    /// A Docker schema 2 image whose last layer holds `plugin.wasm`.
    Docker,
    /// An OCI image whose last `tar+gzip` layer holds `plugin.wasm`.
    Compat,
    /// The two-layer WebAssembly Hub artifact.
    WasmHub,
}

impl fmt::Display for Format {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(match self {
            Format::Docker => "docker (compat)",
            Format::Compat => "compat",
            Format::WasmHub => "wasmhub",
        })
    }
}

/// The module Istio would load from an image.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Extracted {
    /// The format the image matched.
    pub format: Format,
    /// The module bytes.
    pub module: Vec<u8>,
    /// The runtime configuration, when the image carries one.
    pub runtime_config: Option<RuntimeConfig>,
}

/// An image Istio would refuse, with what was found and why each format did
/// not match.
#[derive(thiserror::Error, Debug, PartialEq, Eq)]
#[error("not an image Istio accepts: found {found}{hint}; {reasons}")]
pub struct NotAccepted {
    found: String,
    hint: &'static str,
    reasons: String,
}

/// Extracts the module from `image` by Istio's rules.
///
/// # Errors
///
/// [`NotAccepted`] names the manifest, config and layer media types found and
/// why each format failed.
///
/// # Examples
///
/// ```
/// use wasmhub::image::{BuildOptions, Image, Variant};
/// use wasmhub::istio::{Format, extract};
/// # let module = wasmhub::image::tests_support::minimal_proxy_wasm_module();
///
/// let image = Image::build(&module, &BuildOptions { variant: Variant::Compat, root_ids: vec![] })?;
/// let extracted = extract(&image)?;
/// assert_eq!(extracted.format, Format::Compat);
/// assert_eq!(extracted.module, module);
/// # Ok::<(), Box<dyn std::error::Error>>(())
/// ```
pub fn extract(image: &Image) -> Result<Extracted, NotAccepted> {
    let manifest = image.manifest();
    let layers = image.layers();
    let mut reasons = Vec::new();
    let is_docker = manifest.media_type.as_deref() == Some(DOCKER_MANIFEST)
        || image.manifest_blob().media_type() == DOCKER_MANIFEST;
    let attempts: &[Format] = if is_docker {
        &[Format::Docker]
    } else {
        &[Format::Compat, Format::WasmHub]
    };
    for &format in attempts {
        let attempt = match format {
            Format::Docker => last_layer_tar_gz(image, DOCKER_LAYER_TAR_GZIP),
            Format::Compat => last_layer_tar_gz(image, OCI_LAYER_TAR_GZIP),
            Format::WasmHub => wasmhub_layer(image),
        };
        match attempt.and_then(|(module, runtime_config)| {
            if module.starts_with(WASM_MAGIC) {
                Ok((module, runtime_config))
            } else {
                Err("the module does not start with \\0asm".to_string())
            }
        }) {
            Ok((module, runtime_config)) => {
                return Ok(Extracted {
                    format,
                    module,
                    runtime_config,
                });
            }
            Err(reason) => reasons.push(format!("as {format}: {reason}")),
        }
    }
    let layer_types: Vec<&str> = layers.iter().map(|l| l.media_type()).collect();
    let config_type = image.config().media_type();
    Err(NotAccepted {
        found: format!(
            "manifest {}, config {config_type}, layers [{}]",
            image.manifest_blob().media_type(),
            layer_types.join(", ")
        ),
        hint: if config_type.starts_with(CNCF_WASM_CONFIG.trim_end_matches("v0+json")) {
            " (a CNCF Wasm artifact, which Istio does not pull: istio/istio#39990)"
        } else {
            ""
        },
        reasons: reasons.join("; "),
    })
}

/// The entry of an image index that Istio's fetcher resolves to: linux/amd64.
///
/// # Errors
///
/// [`NotAccepted`] when the index has no linux/amd64 entry.
pub fn platform_entry(index: &OciImageIndex) -> Result<&ImageIndexEntry, NotAccepted> {
    index
        .manifests
        .iter()
        .find(|entry| {
            entry.platform.as_ref().is_some_and(|p| {
                p.os.to_string() == "linux" && p.architecture.to_string() == "amd64"
            })
        })
        .ok_or_else(|| NotAccepted {
            found: format!("an image index of {} manifests", index.manifests.len()),
            hint: "",
            reasons: "Istio resolves an index to its linux/amd64 image, and there is none".into(),
        })
}

type Found = Result<(Vec<u8>, Option<RuntimeConfig>), String>;

fn last_layer_tar_gz(image: &Image, media_type: &str) -> Found {
    let Some(layer) = image.layers().last() else {
        return Err("the image has no layers".into());
    };
    if layer.media_type() != media_type {
        return Err(format!(
            "the last layer is {}, not {media_type}",
            layer.media_type()
        ));
    }
    let mut archive = tar::Archive::new(GzDecoder::new(layer.data()));
    let entries = archive
        .entries()
        .map_err(|e| format!("the last layer is not a tar.gz: {e}"))?;
    let mut module = None;
    let mut runtime_config = None;
    for entry in entries {
        let entry = entry.map_err(|e| format!("the last layer is not a tar.gz: {e}"))?;
        let base_name = entry
            .path()
            .ok()
            .and_then(|p| p.file_name().map(|n| n.to_string_lossy().into_owned()));
        match base_name.as_deref() {
            Some(COMPAT_MODULE_FILE) if module.is_none() => {
                module = Some(read_bounded(entry, COMPAT_MODULE_FILE)?);
            }
            Some(COMPAT_RUNTIME_CONFIG_FILE) if runtime_config.is_none() => {
                let bytes = read_bounded(entry, COMPAT_RUNTIME_CONFIG_FILE)?;
                runtime_config = serde_json::from_slice(&bytes).ok();
            }
            _ => {}
        }
        // Istio stops at the first plugin.wasm; a runtime config after it is
        // still read, since wasmhub puts it second.
    }
    match module {
        Some(module) => Ok((module, runtime_config)),
        None => Err(format!("{COMPAT_MODULE_FILE} is not in the last layer")),
    }
}

fn read_bounded(entry: impl std::io::Read, name: &str) -> Result<Vec<u8>, String> {
    let mut bytes = Vec::new();
    entry
        .take(MAX_MODULE_BYTES + 1)
        .read_to_end(&mut bytes)
        .map_err(|e| format!("cannot read {name} from the layer: {e}"))?;
    if bytes.len() as u64 > MAX_MODULE_BYTES {
        return Err(format!("{name} is larger than {MAX_MODULE_BYTES} bytes"));
    }
    Ok(bytes)
}

fn wasmhub_layer(image: &Image) -> Found {
    let layers = image.layers();
    if layers.len() != 2 {
        return Err(format!("it needs exactly 2 layers, found {}", layers.len()));
    }
    let Some(layer) = layers.iter().find(|l| l.media_type() == WASMHUB_LAYER) else {
        return Err(format!("no layer is {WASMHUB_LAYER}"));
    };
    let runtime_config = serde_json::from_slice(image.config().data()).ok();
    Ok((layer.data().to_vec(), runtime_config))
}
