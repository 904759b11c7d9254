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
    /// A blob the manifest names cannot be read.
    #[error("{what} ({digest}) cannot be read: {reason}")]
    MissingBlob {
        /// Which blob.
        what: String,
        /// Its digest.
        digest: String,
        /// Why, such as "No such file or directory".
        reason: String,
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

    /// The manifest digest, as `sha256:<hex>`; its hex part is what
    /// `WasmPlugin.spec.sha256` pins.
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
        module_exporting(&["proxy_abi_version_0_2_1"])
    }

    /// A module with one empty function exported under each of `names`
    /// (fewer than 128 names, each shorter than 128 bytes).
    pub fn module_exporting(names: &[&str]) -> Vec<u8> {
        let mut exports = vec![names.len() as u8];
        for name in names {
            exports.push(name.len() as u8);
            exports.extend_from_slice(name.as_bytes());
            exports.extend_from_slice(&[0x00, 0x00]); // a function, index 0
        }
        let mut module = b"\0asm\x01\0\0\0".to_vec();
        module.extend_from_slice(&[0x01, 0x04, 0x01, 0x60, 0x00, 0x00]); // type: () -> ()
        module.extend_from_slice(&[0x03, 0x02, 0x01, 0x00]); // one function of type 0
        module.push(0x07);
        module.push(exports.len() as u8);
        module.extend_from_slice(&exports);
        module.extend_from_slice(&[0x0a, 0x04, 0x01, 0x02, 0x00, 0x0b]); // an empty body
        module
    }
}

#[cfg(test)]
pub(crate) mod tests {
    use std::io::Read as _;

    use flate2::read::GzDecoder;
    use serde_json::Value;

    use super::tests_support::minimal_proxy_wasm_module;
    use super::*;

    /// The minimal module built in `variant` with `root_ids`.
    pub(crate) fn build(variant: Variant, root_ids: &[&str]) -> Image {
        let options = BuildOptions {
            variant,
            root_ids: root_ids.iter().map(|id| id.to_string()).collect(),
        };
        Image::build(&minimal_proxy_wasm_module(), &options).unwrap()
    }

    fn json(bytes: &[u8]) -> Value {
        serde_json::from_slice(bytes).unwrap()
    }

    fn layer_data(image: &Image) -> Vec<Vec<u8>> {
        image.layers().iter().map(|l| l.data().to_vec()).collect()
    }

    fn gunzip(data: &[u8]) -> Vec<u8> {
        let mut tar = Vec::new();
        GzDecoder::new(data).read_to_end(&mut tar).unwrap();
        tar
    }

    /// The compat image's manifest with one field of its only layer replaced.
    fn with_layer_field(image: &Image, field: &str, value: Value) -> Vec<u8> {
        let mut manifest = json(image.manifest_blob().data());
        manifest["layers"][0][field] = value;
        serde_json::to_vec(&manifest).unwrap()
    }

    #[test]
    fn build_is_reproducible_for_both_variants() {
        for variant in [Variant::Compat, Variant::WasmHub] {
            let first = build(variant, &["router"]);
            let second = build(variant, &["router"]);
            assert_eq!(
                first.manifest_blob().data(),
                second.manifest_blob().data(),
                "{variant}"
            );
            assert_eq!(first.digest(), second.digest(), "{variant}");
            assert_eq!(first, second, "{variant}");
            // The digest is the manifest's, as `sha256:<hex>`.
            assert_eq!(
                first.digest(),
                digest::sha256(first.manifest_blob().data()),
                "{variant}"
            );
        }
    }

    #[test]
    fn digest_depends_on_variant_and_root_ids() {
        let compat = build(Variant::Compat, &["router"]);
        let wasmhub = build(Variant::WasmHub, &["router"]);
        assert_ne!(compat.digest(), wasmhub.digest());
        for variant in [Variant::Compat, Variant::WasmHub] {
            assert_ne!(
                build(variant, &["router"]).digest(),
                build(variant, &["fault"]).digest(),
                "{variant}"
            );
            assert_ne!(
                build(variant, &["router"]).digest(),
                build(variant, &[]).digest(),
                "{variant}"
            );
        }
    }

    #[test]
    fn compat_manifest_is_an_annotated_single_layer_oci_image() {
        let image = build(Variant::Compat, &["router"]);
        assert_eq!(image.manifest_blob().media_type(), OCI_MANIFEST);
        let manifest = json(image.manifest_blob().data());
        assert_eq!(manifest["schemaVersion"], 2);
        assert_eq!(manifest["mediaType"], OCI_MANIFEST);
        assert_eq!(
            manifest["annotations"],
            serde_json::json!({ "module.wasm.image/variant": "compat" })
        );
        assert_eq!(manifest["config"]["mediaType"], OCI_CONFIG);
        assert_eq!(manifest["config"]["digest"], image.config().digest());
        let layers = manifest["layers"].as_array().unwrap();
        assert_eq!(layers.len(), 1);
        assert_eq!(
            layers[0]["mediaType"],
            "application/vnd.oci.image.layer.v1.tar+gzip"
        );
        assert_eq!(layers[0]["digest"], image.layers()[0].digest());
        assert_eq!(layers[0]["size"], image.layers()[0].data().len());
        assert_eq!(image.layers().len(), 1);
        assert_eq!(image.layers()[0].media_type(), OCI_LAYER_TAR_GZIP);
    }

    #[test]
    fn compat_gzip_header_has_no_time_no_name_and_a_fixed_os() {
        let image = build(Variant::Compat, &[]);
        let gz = image.layers()[0].data();
        assert_eq!(gz[..3], [0x1f, 0x8b, 0x08], "gzip magic and deflate");
        assert_eq!(gz[3] & 0x08, 0, "FNAME flag set");
        assert_eq!(gz[4..8], [0, 0, 0, 0], "MTIME not zero");
        assert_eq!(gz[9], 255, "OS byte depends on the build host");
    }

    #[test]
    fn compat_tar_holds_plugin_wasm_then_runtime_config_with_fixed_metadata() {
        let module = minimal_proxy_wasm_module();
        let image = build(Variant::Compat, &["router"]);
        let tar = gunzip(image.layers()[0].data());
        let mut archive = tar::Archive::new(tar.as_slice());
        let mut entries = Vec::new();
        for entry in archive.entries().unwrap() {
            let mut entry = entry.unwrap();
            let header = entry.header();
            assert_eq!(header.entry_type(), tar::EntryType::Regular);
            assert_eq!(header.mtime().unwrap(), 0);
            assert_eq!(header.uid().unwrap(), 0);
            assert_eq!(header.gid().unwrap(), 0);
            assert_eq!(header.mode().unwrap(), 0o644);
            let path = entry.path().unwrap().to_string_lossy().into_owned();
            let mut data = Vec::new();
            entry.read_to_end(&mut data).unwrap();
            entries.push((path, data));
        }
        let names: Vec<&str> = entries.iter().map(|(name, _)| name.as_str()).collect();
        assert_eq!(names, ["plugin.wasm", "runtime-config.json"]);
        assert_eq!(entries[0].1, module);
        assert_eq!(
            String::from_utf8(entries[1].1.clone()).unwrap(),
            r#"{"type":"envoy_proxy","abiVersions":["0.2.1"],"config":{"rootIds":["router"]}}"#
        );
    }

    #[test]
    fn compat_config_diff_id_is_the_uncompressed_tar_digest() {
        let image = build(Variant::Compat, &["router"]);
        let tar = gunzip(image.layers()[0].data());
        let config = json(image.config().data());
        assert_eq!(image.config().media_type(), OCI_CONFIG);
        assert_eq!(config["rootfs"]["type"], "layers");
        assert_eq!(
            config["rootfs"]["diff_ids"],
            serde_json::json!([digest::sha256(&tar)])
        );
        assert_ne!(digest::sha256(&tar), image.layers()[0].digest());
    }

    #[test]
    fn wasmhub_config_is_the_camel_case_runtime_config() {
        let image = build(Variant::WasmHub, &["router", "fault"]);
        assert_eq!(
            image.config().media_type(),
            "application/vnd.module.wasm.config.v1+json"
        );
        // The raw text: wasme and Istio read camelCase keys.
        assert_eq!(
            std::str::from_utf8(image.config().data()).unwrap(),
            r#"{"type":"envoy_proxy","abiVersions":["0.2.1"],"config":{"rootIds":["router","fault"]}}"#
        );
        let manifest = json(image.manifest_blob().data());
        assert_eq!(manifest["config"]["mediaType"], WASMHUB_CONFIG);
        assert_eq!(manifest["mediaType"], OCI_MANIFEST);
    }

    #[test]
    fn wasmhub_has_the_config_layer_and_the_raw_module_layer() {
        let module = minimal_proxy_wasm_module();
        let image = build(Variant::WasmHub, &["router"]);
        let layers = image.layers();
        assert_eq!(layers.len(), 2);
        assert_eq!(layers[0].media_type(), WASMHUB_CONFIG);
        assert_eq!(layers[0].data(), image.config().data());
        assert_eq!(layers[1].media_type(), WASMHUB_LAYER);
        assert_eq!(
            layers[1].media_type(),
            "application/vnd.module.wasm.content.layer.v1+wasm"
        );
        assert_eq!(layers[1].data(), module);

        let manifest = json(image.manifest_blob().data());
        let descriptors = manifest["layers"].as_array().unwrap();
        assert_eq!(descriptors.len(), 2);
        assert_eq!(
            descriptors[0]["annotations"],
            serde_json::json!({ "org.opencontainers.image.title": "runtime-config.json" })
        );
        assert_eq!(descriptors[0]["digest"], image.config().digest());
        assert_eq!(
            descriptors[1]["annotations"],
            serde_json::json!({ "org.opencontainers.image.title": "plugin.wasm" })
        );
        assert_eq!(descriptors[1]["digest"], digest::sha256(&module));
        assert_eq!(descriptors[1]["size"], module.len());
    }

    #[test]
    fn build_refuses_bytes_that_are_not_wasm() {
        for variant in [Variant::Compat, Variant::WasmHub] {
            let options = BuildOptions {
                variant,
                root_ids: vec![],
            };
            assert_eq!(
                Image::build(b"GIF89a", &options).unwrap_err(),
                ModuleError::NotWasm {
                    found: "47 49 46 38".into()
                }
            );
        }
    }

    #[test]
    fn from_parts_reassembles_both_variants() {
        for variant in [Variant::Compat, Variant::WasmHub] {
            let built = build(variant, &["router"]);
            let again = Image::from_parts(
                built.manifest_blob().media_type(),
                built.manifest_blob().data().to_vec(),
                built.config().data().to_vec(),
                layer_data(&built),
            )
            .unwrap();
            assert_eq!(again, built, "{variant}");
            assert_eq!(again.digest(), built.digest(), "{variant}");
            assert_eq!(
                again.manifest().layers.len(),
                built.layers().len(),
                "{variant}"
            );
        }
    }

    #[test]
    fn from_parts_refuses_a_tampered_blob() {
        let built = build(Variant::Compat, &[]);
        let manifest = built.manifest_blob().data().to_vec();
        let mut layers = layer_data(&built);
        layers[0].push(0);
        let tampered = digest::sha256(&layers[0]);
        assert_eq!(
            Image::from_parts(
                OCI_MANIFEST,
                manifest.clone(),
                built.config().data().to_vec(),
                layers,
            ),
            Err(ImageError::DigestMismatch {
                what: "layer 0".into(),
                expected: built.layers()[0].digest().into(),
                actual: tampered,
            })
        );
        let result = Image::from_parts(OCI_MANIFEST, manifest, b"{}".to_vec(), layer_data(&built));
        assert!(
            matches!(result, Err(ImageError::DigestMismatch { ref what, .. }) if what == "config"),
            "{result:?}"
        );
    }

    #[test]
    fn from_parts_refuses_a_wrong_layer_count() {
        let built = build(Variant::Compat, &[]);
        let mut layers = layer_data(&built);
        layers.push(b"extra".to_vec());
        assert_eq!(
            Image::from_parts(
                OCI_MANIFEST,
                built.manifest_blob().data().to_vec(),
                built.config().data().to_vec(),
                layers,
            ),
            Err(ImageError::LayerCount {
                expected: 1,
                actual: 2
            })
        );
    }

    #[test]
    fn from_parts_refuses_digests_that_are_not_sha256() {
        let built = build(Variant::Compat, &[]);
        for bad in [
            "sha512:00",
            "sha256:../../etc/passwd",
            "sha256:ABCDEF0123456789ABCDEF0123456789ABCDEF0123456789ABCDEF0123456789",
        ] {
            let manifest = with_layer_field(&built, "digest", Value::from(bad));
            assert_eq!(
                Image::from_parts(
                    OCI_MANIFEST,
                    manifest,
                    built.config().data().to_vec(),
                    layer_data(&built),
                ),
                Err(ImageError::UnsupportedDigest {
                    what: "layer 0".into(),
                    digest: bad.into(),
                })
            );
        }
    }

    #[test]
    fn from_parts_refuses_a_manifest_that_is_not_one() {
        for garbage in [&b"<html>not found</html>"[..], b"{}", b"[]", b""] {
            let result = Image::from_parts(OCI_MANIFEST, garbage.to_vec(), vec![], vec![]);
            assert!(
                matches!(result, Err(ImageError::BadManifest { .. })),
                "{garbage:?}: {result:?}"
            );
        }
    }

    #[test]
    fn from_parts_takes_the_media_type_from_the_manifest_first() {
        let built = build(Variant::Compat, &[]);
        let image = Image::from_parts(
            "application/octet-stream",
            built.manifest_blob().data().to_vec(),
            built.config().data().to_vec(),
            layer_data(&built),
        )
        .unwrap();
        assert_eq!(image.manifest_blob().media_type(), OCI_MANIFEST);
    }

    #[test]
    fn blobs_lists_each_digest_once() {
        let wasmhub = build(Variant::WasmHub, &["router"]);
        let digests: Vec<&str> = wasmhub.blobs().iter().map(|b| b.digest()).collect();
        assert_eq!(
            digests,
            [wasmhub.config().digest(), wasmhub.layers()[1].digest()]
        );

        let compat = build(Variant::Compat, &["router"]);
        let digests: Vec<&str> = compat.blobs().iter().map(|b| b.digest()).collect();
        assert_eq!(
            digests,
            [compat.layers()[0].digest(), compat.config().digest()]
        );
    }

    #[test]
    fn variant_names_round_trip() {
        assert_eq!(Variant::default(), Variant::Compat);
        for variant in [Variant::Compat, Variant::WasmHub] {
            assert_eq!(variant.to_string().parse::<Variant>(), Ok(variant));
        }
        assert_eq!("oci".parse::<Variant>(), Ok(Variant::WasmHub));
        assert_eq!(
            "docker".parse::<Variant>(),
            Err(r#"unknown variant "docker": use compat or wasmhub"#.to_string())
        );
    }
}
