//! Builds the two image variants Istio accepts, reproducibly, and holds any
//! image (built, stored or pulled) as its manifest and blobs.

use std::collections::BTreeMap;
use std::fmt;
use std::io::Write as _;
use std::str::FromStr;

use flate2::{Compression, GzBuilder};
use oci_client::manifest::{OciDescriptor, OciImageManifest};
use serde::{Deserialize, Serialize};

use crate::digest;
use crate::media_types::{
    COMPAT_MODULE_FILE, COMPAT_RUNTIME_CONFIG_FILE, OCI_CONFIG, OCI_LAYER_TAR_GZIP, OCI_MANIFEST,
    TITLE_ANNOTATION, VARIANT_ANNOTATION, WASMHUB_CONFIG, WASMHUB_LAYER,
};
use crate::module::{ModuleError, ProxyWasmModule};

/// The runtime type the WebAssembly Hub spec defines for Envoy filters.
pub const ENVOY_RUNTIME: &str = "envoy_proxy";

/// The two image formats Istio's agent pulls, besides plain Docker images.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub enum Variant {
    /// One `tar+gzip` layer holding `plugin.wasm` (and `runtime-config.json`),
    /// annotated `module.wasm.image/variant=compat`. Every registry and every
    /// image tool handles it, so it is the default.
    #[default]
    Compat,
    /// The WebAssembly Hub (wasme) artifact: the runtime config and the raw
    /// module as two layers with their own media types.
    WasmHub,
}

impl Variant {
    /// The name used on the command line: `compat` or `wasmhub`.
    pub fn as_str(self) -> &'static str {
        match self {
            Variant::Compat => "compat",
            Variant::WasmHub => "wasmhub",
        }
    }
}

impl fmt::Display for Variant {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.as_str())
    }
}

impl FromStr for Variant {
    type Err = String;

    fn from_str(s: &str) -> Result<Self, Self::Err> {
        match s {
            "compat" => Ok(Variant::Compat),
            "wasmhub" | "oci" => Ok(Variant::WasmHub),
            other => Err(format!("unknown variant {other:?}: use compat or wasmhub")),
        }
    }
}

/// The runtime configuration of the WebAssembly Hub spec, stored as the
/// wasmhub variant's config and as `runtime-config.json` in a compat layer.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct RuntimeConfig {
    /// The target runtime, `envoy_proxy` for Envoy filters.
    #[serde(rename = "type")]
    pub runtime: String,
    /// The Proxy-Wasm ABI versions the module exports, such as `0.2.1`.
    #[serde(default)]
    pub abi_versions: Vec<String>,
    /// Runtime-specific settings.
    #[serde(default)]
    pub config: EnvoyRuntimeConfig,
}

/// The Envoy part of [`RuntimeConfig`].
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct EnvoyRuntimeConfig {
    /// The root context ids the module registers; Istio's `pluginName`
    /// becomes Envoy's `root_id`.
    #[serde(default)]
    pub root_ids: Vec<String>,
}

/// What `build` packs besides the module.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct BuildOptions {
    /// The image format.
    pub variant: Variant,
    /// Root ids to record in the runtime configuration.
    pub root_ids: Vec<String>,
}

/// A piece of content with its media type and digest.
#[derive(Clone, PartialEq, Eq)]
pub struct Blob {
    media_type: String,
    digest: String,
    data: Vec<u8>,
}

impl Blob {
    /// Wraps `data`, computing its sha256 digest.
    pub fn new(media_type: impl Into<String>, data: Vec<u8>) -> Blob {
        Blob {
            media_type: media_type.into(),
            digest: digest::sha256(&data),
            data,
        }
    }

    /// The media type.
    pub fn media_type(&self) -> &str {
        &self.media_type
    }

    /// The `sha256:<hex>` digest.
    pub fn digest(&self) -> &str {
        &self.digest
    }

    /// The content.
    pub fn data(&self) -> &[u8] {
        &self.data
    }

    /// The OCI descriptor that points at this blob.
    pub fn descriptor(&self, title: Option<&str>) -> OciDescriptor {
        OciDescriptor {
            media_type: self.media_type.clone(),
            digest: self.digest.clone(),
            size: self.data.len() as i64,
            annotations: title.map(|t| BTreeMap::from([(TITLE_ANNOTATION.to_string(), t.into())])),
            ..OciDescriptor::default()
        }
    }
}

impl fmt::Debug for Blob {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("Blob")
            .field("media_type", &self.media_type)
            .field("digest", &self.digest)
            .field("size", &self.data.len())
            .finish()
    }
}

/// Why a manifest and its blobs do not form an image.
#[derive(thiserror::Error, Debug, PartialEq, Eq)]
pub enum ImageError {
    /// The manifest is not an image manifest.
    #[error("the manifest is not a valid image manifest: {reason}")]
    BadManifest {
        /// serde's message, with line and column.
        reason: String,
    },
    /// A blob's content does not hash to the digest its descriptor names.
    #[error("{what} does not match its digest: expected {expected}, got {actual}")]
    DigestMismatch {
        /// Which blob: `config` or `layer 0`.
        what: String,
        /// The digest in the manifest.
        expected: String,
        /// The digest of the content received.
        actual: String,
    },
    /// The manifest names a digest that is not sha256.
    #[error("{what} has digest {digest:?}: only sha256 digests are supported")]
    UnsupportedDigest {
        /// Which blob.
        what: String,
        /// The digest as written.
        digest: String,
    },
    /// The number of layers given differs from the manifest's.
    #[error("the manifest lists {expected} layers but {actual} were given")]
    LayerCount {
        /// Layers in the manifest.
        expected: usize,
        /// Layers given.
        actual: usize,
    },
}

/// An image: its manifest, exactly as it is served and hashed, and its blobs.
#[derive(Debug, Clone)]
pub struct Image {
    manifest: Blob,
    parsed: OciImageManifest,
    config: Blob,
    layers: Vec<Blob>,
}

impl Image {
    /// Packs a Proxy-Wasm module as an image in the chosen variant.
    ///
    /// The same module and options always give the same manifest digest: the
    /// tar entries have a zero mtime, owner and mode 0644, the gzip header has
    /// no name and no time, and the JSON has a fixed field order.
    ///
    /// # Errors
    ///
    /// [`ModuleError`] when `module` is not a Proxy-Wasm module.
    ///
    /// # Examples
    ///
    /// ```
    /// use wasmhub::image::{BuildOptions, Image, Variant};
    /// # let module = wasmhub::image::tests_support::minimal_proxy_wasm_module();
    ///
    /// let options = BuildOptions { variant: Variant::WasmHub, root_ids: vec!["router".into()] };
    /// let image = Image::build(&module, &options)?;
    /// assert_eq!(image.layers().len(), 2);
    /// assert_eq!(image.digest(), Image::build(&module, &options)?.digest());
    /// # Ok::<(), wasmhub::module::ModuleError>(())
    /// ```
    pub fn build(module: &[u8], options: &BuildOptions) -> Result<Image, ModuleError> {
        let checked = ProxyWasmModule::parse(module)?;
        let runtime_config = RuntimeConfig {
            runtime: ENVOY_RUNTIME.to_string(),
            abi_versions: checked
                .abi_versions()
                .iter()
                .map(|v| v.to_string())
                .collect(),
            config: EnvoyRuntimeConfig {
                root_ids: options.root_ids.clone(),
            },
        };
        let runtime_json = to_json(&runtime_config);
        let (parsed, config, layers) = match options.variant {
            Variant::Compat => {
                let tar = reproducible_tar(&[
                    (COMPAT_MODULE_FILE, module),
                    (COMPAT_RUNTIME_CONFIG_FILE, &runtime_json),
                ]);
                let image_config = serde_json::json!({
                    "architecture": "wasm",
                    "os": "wasip1",
                    "rootfs": { "type": "layers", "diff_ids": [digest::sha256(&tar)] },
                });
                let config = Blob::new(OCI_CONFIG, to_json(&image_config));
                let layer = Blob::new(OCI_LAYER_TAR_GZIP, reproducible_gzip(&tar));
                let manifest = OciImageManifest {
                    schema_version: 2,
                    media_type: Some(OCI_MANIFEST.to_string()),
                    config: config.descriptor(None),
                    layers: vec![layer.descriptor(None)],
                    annotations: Some(BTreeMap::from([(
                        VARIANT_ANNOTATION.to_string(),
                        "compat".to_string(),
                    )])),
                    ..OciImageManifest::default()
                };
                (manifest, config, vec![layer])
            }
            Variant::WasmHub => {
                let config = Blob::new(WASMHUB_CONFIG, runtime_json);
                let layer = Blob::new(WASMHUB_LAYER, module.to_vec());
                // Istio wants exactly two layers, one of them the module; the
                // wasme tool made the other the runtime config.
                let manifest = OciImageManifest {
                    schema_version: 2,
                    media_type: Some(OCI_MANIFEST.to_string()),
                    config: config.descriptor(None),
                    layers: vec![
                        config.descriptor(Some(COMPAT_RUNTIME_CONFIG_FILE)),
                        layer.descriptor(Some(COMPAT_MODULE_FILE)),
                    ],
                    ..OciImageManifest::default()
                };
                (manifest, config.clone(), vec![config, layer])
            }
        };
        let manifest = Blob::new(OCI_MANIFEST, to_json(&parsed));
        Ok(Image {
            manifest,
            parsed,
            config,
            layers,
        })
    }

    /// Reassembles an image from a manifest as served and the blobs it
    /// names, checking every digest.
    ///
    /// # Errors
    ///
    /// [`ImageError`] when the manifest does not parse, a blob does not match
    /// its digest, or the layer count differs.
    ///
    /// # Examples
    ///
    /// ```
    /// use wasmhub::image::{BuildOptions, Image};
    /// # let module = wasmhub::image::tests_support::minimal_proxy_wasm_module();
    ///
    /// let built = Image::build(&module, &BuildOptions::default())?;
    /// let layers = built.layers().iter().map(|l| l.data().to_vec()).collect();
    /// let again = Image::from_parts(
    ///     built.manifest_blob().media_type(),
    ///     built.manifest_blob().data().to_vec(),
    ///     built.config().data().to_vec(),
    ///     layers,
    /// )?;
    /// assert_eq!(again, built);
    /// # Ok::<(), Box<dyn std::error::Error>>(())
    /// ```
    pub fn from_parts(
        manifest_media_type: &str,
        manifest: Vec<u8>,
        config: Vec<u8>,
        layers: Vec<Vec<u8>>,
    ) -> Result<Image, ImageError> {
        let parsed: OciImageManifest =
            serde_json::from_slice(&manifest).map_err(|e| ImageError::BadManifest {
                reason: e.to_string(),
            })?;
        if parsed.layers.len() != layers.len() {
            return Err(ImageError::LayerCount {
                expected: parsed.layers.len(),
                actual: layers.len(),
            });
        }
        let config = checked_blob("config", &parsed.config, config)?;
        let layers = parsed
            .layers
            .iter()
            .zip(layers)
            .enumerate()
            .map(|(i, (descriptor, data))| checked_blob(&format!("layer {i}"), descriptor, data))
            .collect::<Result<Vec<_>, _>>()?;
        let media_type = parsed.media_type.as_deref().unwrap_or(manifest_media_type);
        Ok(Image {
            manifest: Blob::new(media_type, manifest),
            parsed,
            config,
            layers,
        })
    }

    /// The manifest digest: what `WasmPlugin.spec.sha256` pins, without the
    /// `sha256:` prefix.
    pub fn digest(&self) -> &str {
        self.manifest.digest()
    }

    /// The manifest bytes with their media type.
    pub fn manifest_blob(&self) -> &Blob {
        &self.manifest
    }

    /// The parsed manifest.
    pub fn manifest(&self) -> &OciImageManifest {
        &self.parsed
    }

    /// The config blob.
    pub fn config(&self) -> &Blob {
        &self.config
    }

    /// The layer blobs, in manifest order.
    pub fn layers(&self) -> &[Blob] {
        &self.layers
    }

    /// The config and layer blobs, each distinct digest once.
    pub fn blobs(&self) -> Vec<&Blob> {
        let mut blobs: Vec<&Blob> = Vec::with_capacity(self.layers.len() + 1);
        for blob in self.layers.iter().chain(std::iter::once(&self.config)) {
            if blobs.iter().all(|b| b.digest != blob.digest) {
                blobs.push(blob);
            }
        }
        blobs
    }
}

/// Two images are equal when their manifest bytes and blobs are.
impl PartialEq for Image {
    fn eq(&self, other: &Image) -> bool {
        self.manifest == other.manifest
            && self.config == other.config
            && self.layers == other.layers
    }
}

impl Eq for Image {}

fn checked_blob(what: &str, descriptor: &OciDescriptor, data: Vec<u8>) -> Result<Blob, ImageError> {
    if digest::sha256_hex(&descriptor.digest).is_none() {
        return Err(ImageError::UnsupportedDigest {
            what: what.to_string(),
            digest: descriptor.digest.clone(),
        });
    }
    let blob = Blob::new(descriptor.media_type.clone(), data);
    if blob.digest != descriptor.digest {
        return Err(ImageError::DigestMismatch {
            what: what.to_string(),
            expected: descriptor.digest.clone(),
            actual: blob.digest,
        });
    }
    Ok(blob)
}

fn to_json<T: Serialize>(value: &T) -> Vec<u8> {
    // Serializing these plain structs and maps cannot fail.
    serde_json::to_vec(value).unwrap_or_default()
}

/// A ustar archive whose bytes depend only on the files' names and contents.
fn reproducible_tar(files: &[(&str, &[u8])]) -> Vec<u8> {
    let mut builder = tar::Builder::new(Vec::new());
    for (name, data) in files {
        let mut header = tar::Header::new_ustar();
        header.set_entry_type(tar::EntryType::Regular);
        header.set_mode(0o644);
        header.set_uid(0);
        header.set_gid(0);
        header.set_mtime(0);
        header.set_size(data.len() as u64);
        // Writing to a Vec cannot fail; a name longer than ustar allows is
        // impossible for the two fixed names used here.
        let _ = builder.append_data(&mut header, name, *data);
    }
    builder.into_inner().unwrap_or_default()
}

/// Gzip with no file name, a zero mtime and a fixed level.
fn reproducible_gzip(data: &[u8]) -> Vec<u8> {
    let mut encoder = GzBuilder::new()
        .mtime(0)
        .operating_system(255)
        .write(Vec::new(), Compression::best());
    let _ = encoder.write_all(data);
    encoder.finish().unwrap_or_default()
}

#[doc(hidden)]
pub mod tests_support {
    //! A tiny valid Proxy-Wasm module for examples and tests.

    /// `(module (func (export "proxy_abi_version_0_2_1")))`.
    pub fn minimal_proxy_wasm_module() -> Vec<u8> {
        let name = b"proxy_abi_version_0_2_1";
        let mut module = b"\0asm\x01\0\0\0".to_vec();
        module.extend_from_slice(&[0x01, 0x04, 0x01, 0x60, 0x00, 0x00]);
        module.extend_from_slice(&[0x03, 0x02, 0x01, 0x00]);
        module.extend_from_slice(&[0x07, name.len() as u8 + 4, 0x01, name.len() as u8]);
        module.extend_from_slice(name);
        module.extend_from_slice(&[0x00, 0x00]);
        module.extend_from_slice(&[0x0a, 0x04, 0x01, 0x02, 0x00, 0x0b]);
        module
    }
}
