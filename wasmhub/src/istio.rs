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
    let layers = image.layers();
    let mut reasons = Vec::new();
    // Istio looks at the manifest's own mediaType, which OCI manifests may omit.
    let docker = image.manifest().media_type.as_deref() == Some(DOCKER_MANIFEST);
    let attempts: &[Format] = if docker {
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
        match attempt {
            Ok((module, runtime_config)) if module.starts_with(WASM_MAGIC) => {
                return Ok(Extracted {
                    format,
                    module,
                    runtime_config,
                });
            }
            // Istio takes the first format that yields a module and checks
            // the magic only then: a bad module ends the search.
            Ok(_) => {
                reasons.push(format!(
                    "as {format}: the module does not start with \\0asm"
                ));
                break;
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
        let entry = match entry {
            Ok(entry) => entry,
            // Istio stops at the first plugin.wasm and never reads on.
            Err(_) if module.is_some() => break,
            Err(e) => return Err(format!("the last layer is not a tar.gz: {e}")),
        };
        let base_name = entry
            .path()
            .ok()
            .and_then(|p| p.file_name().map(|n| n.to_string_lossy().into_owned()));
        match base_name.as_deref() {
            Some(COMPAT_MODULE_FILE) if module.is_none() => {
                module = Some(read_bounded(entry, COMPAT_MODULE_FILE)?);
            }
            Some(COMPAT_RUNTIME_CONFIG_FILE) if runtime_config.is_none() => {
                // Optional, as Istio does not read it: unreadable is absent.
                runtime_config = read_bounded(entry, COMPAT_RUNTIME_CONFIG_FILE)
                    .ok()
                    .and_then(|bytes| serde_json::from_slice(&bytes).ok());
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

#[cfg(test)]
mod tests {
    use flate2::Compression;
    use flate2::write::GzEncoder;
    use serde_json::json;

    use super::*;
    use crate::digest::sha256;
    use crate::image::tests_support::minimal_proxy_wasm_module;
    use crate::image::{BuildOptions, EnvoyRuntimeConfig, Variant};
    use crate::media_types::{CNCF_WASM_CONFIG, OCI_CONFIG, OCI_MANIFEST, WASMHUB_CONFIG};

    const DOCKER_CONFIG: &str = "application/vnd.docker.container.image.v1+json";
    const OCI_LAYER_TAR: &str = "application/vnd.oci.image.layer.v1.tar";
    const CNCF_WASM_LAYER: &str = "application/vnd.wasm.content.layer.v1+wasm";

    /// An image as a registry would serve it: the manifest names each blob by
    /// its real digest and size.
    fn served(manifest_media_type: &str, config: (&str, &[u8]), layers: &[(&str, &[u8])]) -> Image {
        let descriptor = |media_type: &str, data: &[u8]| json!({ "mediaType": media_type, "digest": sha256(data), "size": data.len() });
        let manifest = json!({
            "schemaVersion": 2,
            "mediaType": manifest_media_type,
            "config": descriptor(config.0, config.1),
            "layers": layers
                .iter()
                .map(|(media_type, data)| descriptor(media_type, data))
                .collect::<Vec<_>>(),
        });
        Image::from_parts(
            manifest_media_type,
            serde_json::to_vec(&manifest).unwrap(),
            config.1.to_vec(),
            layers.iter().map(|(_, data)| data.to_vec()).collect(),
        )
        .unwrap()
    }

    /// A tar of `files`, a name ending in `/` being a directory.
    fn tar(files: &[(&str, &[u8])]) -> Vec<u8> {
        let mut builder = tar::Builder::new(Vec::new());
        for (name, data) in files {
            let mut header = tar::Header::new_gnu();
            if name.ends_with('/') {
                header.set_entry_type(tar::EntryType::Directory);
                header.set_mode(0o755);
            } else {
                header.set_mode(0o644);
            }
            header.set_size(data.len() as u64);
            builder.append_data(&mut header, name, *data).unwrap();
        }
        builder.into_inner().unwrap()
    }

    fn tar_gz(files: &[(&str, &[u8])]) -> Vec<u8> {
        let mut encoder = GzEncoder::new(Vec::new(), Compression::default());
        std::io::Write::write_all(&mut encoder, &tar(files)).unwrap();
        encoder.finish().unwrap()
    }

    fn refusal(image: &Image) -> NotAccepted {
        extract(image).unwrap_err()
    }

    #[test]
    fn docker_image_whose_last_layer_holds_plugin_wasm_in_a_subdirectory() {
        let module = minimal_proxy_wasm_module();
        let base = tar_gz(&[("etc/", b""), ("etc/os-release", b"ID=scratch\n")]);
        let last = tar_gz(&[
            ("dist/", b""),
            ("dist/README", b"a filter"),
            ("dist/plugin.wasm", &module),
        ]);
        let image = served(
            DOCKER_MANIFEST,
            (DOCKER_CONFIG, b"{}"),
            &[
                (DOCKER_LAYER_TAR_GZIP, &base),
                (DOCKER_LAYER_TAR_GZIP, &last),
            ],
        );
        assert_eq!(
            extract(&image),
            Ok(Extracted {
                format: Format::Docker,
                module,
                runtime_config: None,
            })
        );
    }

    #[test]
    fn docker_image_takes_only_the_docker_layer_type() {
        let layer = tar_gz(&[("plugin.wasm", &minimal_proxy_wasm_module())]);
        let image = served(
            DOCKER_MANIFEST,
            (DOCKER_CONFIG, b"{}"),
            &[(OCI_LAYER_TAR_GZIP, &layer)],
        );
        // Istio tries no other format for a Docker manifest.
        assert_eq!(
            refusal(&image).to_string(),
            "not an image Istio accepts: found manifest \
             application/vnd.docker.distribution.manifest.v2+json, config \
             application/vnd.docker.container.image.v1+json, layers \
             [application/vnd.oci.image.layer.v1.tar+gzip]; as docker (compat): the last layer \
             is application/vnd.oci.image.layer.v1.tar+gzip, not \
             application/vnd.docker.image.rootfs.diff.tar.gzip"
        );
    }

    #[test]
    fn docker_layer_type_in_an_oci_manifest_is_refused() {
        let layer = tar_gz(&[("plugin.wasm", &minimal_proxy_wasm_module())]);
        let image = served(
            OCI_MANIFEST,
            (OCI_CONFIG, b"{}"),
            &[(DOCKER_LAYER_TAR_GZIP, &layer)],
        );
        let err = refusal(&image);
        assert_eq!(
            err.reasons,
            "as compat: the last layer is application/vnd.docker.image.rootfs.diff.tar.gzip, \
             not application/vnd.oci.image.layer.v1.tar+gzip; \
             as wasmhub: it needs exactly 2 layers, found 1"
        );
    }

    #[test]
    fn built_compat_image_is_accepted_with_its_runtime_config() {
        let module = minimal_proxy_wasm_module();
        let options = BuildOptions {
            variant: Variant::Compat,
            root_ids: vec!["router".into()],
        };
        let extracted = extract(&Image::build(&module, &options).unwrap()).unwrap();
        assert_eq!(extracted.format, Format::Compat);
        assert_eq!(extracted.module, module);
        assert_eq!(
            extracted.runtime_config,
            Some(RuntimeConfig {
                runtime: "envoy_proxy".into(),
                abi_versions: vec!["0.2.1".into()],
                config: EnvoyRuntimeConfig {
                    root_ids: vec!["router".into()],
                },
            })
        );
    }

    #[test]
    fn compat_reads_the_last_layer_and_its_first_plugin_wasm() {
        let module = minimal_proxy_wasm_module();
        let first = tar_gz(&[("plugin.wasm", b"an older module")]);
        let last = tar_gz(&[
            ("runtime-config.json", br#"{"type":"envoy_proxy"}"#),
            ("build/plugin.wasm", &module),
            ("plugin.wasm", b"a second plugin.wasm, ignored"),
        ]);
        let image = served(
            OCI_MANIFEST,
            (OCI_CONFIG, b"{}"),
            &[(OCI_LAYER_TAR_GZIP, &first), (OCI_LAYER_TAR_GZIP, &last)],
        );
        let extracted = extract(&image).unwrap();
        assert_eq!(extracted.format, Format::Compat);
        assert_eq!(extracted.module, module);
        assert_eq!(
            extracted.runtime_config,
            Some(RuntimeConfig {
                runtime: "envoy_proxy".into(),
                abi_versions: vec![],
                config: EnvoyRuntimeConfig::default(),
            })
        );
    }

    #[test]
    fn compat_without_plugin_wasm_in_the_last_layer_is_refused() {
        let with_module = tar_gz(&[("plugin.wasm", &minimal_proxy_wasm_module())]);
        let without = tar_gz(&[("filter.wasm", &minimal_proxy_wasm_module())]);
        let image = served(
            OCI_MANIFEST,
            (OCI_CONFIG, b"{}"),
            &[
                (OCI_LAYER_TAR_GZIP, &with_module),
                (OCI_LAYER_TAR_GZIP, &without),
            ],
        );
        let err = refusal(&image);
        assert_eq!(
            err.reasons,
            "as compat: plugin.wasm is not in the last layer; \
             as wasmhub: no layer is application/vnd.module.wasm.content.layer.v1+wasm"
        );
        assert!(
            err.to_string()
                .contains("plugin.wasm is not in the last layer")
        );
    }

    #[test]
    fn compat_layer_that_is_not_gzip_is_refused() {
        let image = served(
            OCI_MANIFEST,
            (OCI_CONFIG, b"{}"),
            &[(OCI_LAYER_TAR_GZIP, b"plain text, not gzip")],
        );
        let err = refusal(&image);
        assert!(
            err.reasons
                .starts_with("as compat: the last layer is not a tar.gz: "),
            "{err}"
        );
    }

    #[test]
    fn uncompressed_tar_layer_is_refused_by_name() {
        let layer = tar(&[("plugin.wasm", &minimal_proxy_wasm_module())]);
        let image = served(
            OCI_MANIFEST,
            (OCI_CONFIG, b"{}"),
            &[(OCI_LAYER_TAR, &layer)],
        );
        let err = refusal(&image);
        assert_eq!(
            err.found,
            "manifest application/vnd.oci.image.manifest.v1+json, \
             config application/vnd.oci.image.config.v1+json, \
             layers [application/vnd.oci.image.layer.v1.tar]"
        );
        assert!(
            err.to_string().contains(
                "the last layer is application/vnd.oci.image.layer.v1.tar, \
                 not application/vnd.oci.image.layer.v1.tar+gzip"
            ),
            "{err}"
        );
    }

    #[test]
    fn built_wasmhub_image_is_accepted_with_its_runtime_config() {
        let module = minimal_proxy_wasm_module();
        let options = BuildOptions {
            variant: Variant::WasmHub,
            root_ids: vec!["fault".into()],
        };
        let extracted = extract(&Image::build(&module, &options).unwrap()).unwrap();
        assert_eq!(extracted.format, Format::WasmHub);
        assert_eq!(extracted.module, module);
        assert_eq!(
            extracted.runtime_config.map(|c| c.config.root_ids),
            Some(vec!["fault".to_string()])
        );
    }

    #[test]
    fn wasmhub_module_layer_may_come_first() {
        let module = minimal_proxy_wasm_module();
        let config = br#"{"type":"envoy_proxy","abiVersions":["0.2.1"]}"#;
        let image = served(
            OCI_MANIFEST,
            (WASMHUB_CONFIG, config),
            &[(WASMHUB_LAYER, &module), (WASMHUB_CONFIG, config)],
        );
        let extracted = extract(&image).unwrap();
        assert_eq!(extracted.format, Format::WasmHub);
        assert_eq!(extracted.module, module);
    }

    #[test]
    fn wasmhub_with_three_layers_is_refused() {
        let module = minimal_proxy_wasm_module();
        let image = served(
            OCI_MANIFEST,
            (WASMHUB_CONFIG, b"{}"),
            &[
                (WASMHUB_CONFIG, b"{}"),
                (WASMHUB_LAYER, &module),
                ("application/octet-stream", b"readme"),
            ],
        );
        let err = refusal(&image);
        assert_eq!(
            err.reasons,
            "as compat: the last layer is application/octet-stream, \
             not application/vnd.oci.image.layer.v1.tar+gzip; \
             as wasmhub: it needs exactly 2 layers, found 3"
        );
    }

    #[test]
    fn cncf_wasm_artifact_is_refused_with_a_pointer_to_the_istio_issue() {
        let image = served(
            OCI_MANIFEST,
            (CNCF_WASM_CONFIG, b"{}"),
            &[(CNCF_WASM_LAYER, &minimal_proxy_wasm_module())],
        );
        let message = refusal(&image).to_string();
        assert!(
            message.contains("config application/vnd.wasm.config.v0+json"),
            "{message}"
        );
        assert!(message.contains("istio/istio#39990"), "{message}");
        assert!(
            message.contains("as wasmhub: it needs exactly 2 layers, found 1"),
            "{message}"
        );
    }

    #[test]
    fn other_refusals_carry_no_cncf_hint() {
        let image = served(OCI_MANIFEST, (OCI_CONFIG, b"{}"), &[]);
        let err = refusal(&image);
        assert_eq!(err.hint, "");
        assert_eq!(
            err.reasons,
            "as compat: the image has no layers; as wasmhub: it needs exactly 2 layers, found 0"
        );
    }

    #[test]
    fn module_that_does_not_start_with_wasm_magic_is_refused() {
        let script = b"#!/bin/sh\necho not wasm\n";
        let cases = [
            (
                served(
                    DOCKER_MANIFEST,
                    (DOCKER_CONFIG, b"{}"),
                    &[(DOCKER_LAYER_TAR_GZIP, &tar_gz(&[("plugin.wasm", script)]))],
                ),
                "as docker (compat): the module does not start with \\0asm",
            ),
            (
                served(
                    OCI_MANIFEST,
                    (OCI_CONFIG, b"{}"),
                    &[(OCI_LAYER_TAR_GZIP, &tar_gz(&[("plugin.wasm", script)]))],
                ),
                "as compat: the module does not start with \\0asm",
            ),
            (
                served(
                    OCI_MANIFEST,
                    (WASMHUB_CONFIG, b"{}"),
                    &[(WASMHUB_CONFIG, b"{}"), (WASMHUB_LAYER, script)],
                ),
                "as compat: the last layer is application/vnd.module.wasm.content.layer.v1+wasm, \
                 not application/vnd.oci.image.layer.v1.tar+gzip; \
                 as wasmhub: the module does not start with \\0asm",
            ),
        ];
        for (image, reasons) in cases {
            assert_eq!(refusal(&image).reasons, reasons);
        }
    }

    #[test]
    fn a_bad_compat_module_is_final_as_in_istio() {
        // Istio's fetcher returns the first format that yields a module and
        // only then checks the magic: a valid wasmhub layer does not rescue
        // a compat layer whose plugin.wasm is not Wasm.
        let image = served(
            OCI_MANIFEST,
            (WASMHUB_CONFIG, b"{}"),
            &[
                (WASMHUB_LAYER, &minimal_proxy_wasm_module()),
                (
                    OCI_LAYER_TAR_GZIP,
                    &tar_gz(&[("plugin.wasm", b"#!/bin/sh\n")]),
                ),
            ],
        );
        assert_eq!(
            refusal(&image).reasons,
            "as compat: the module does not start with \\0asm"
        );
    }

    #[test]
    fn compat_stops_reading_at_the_first_plugin_wasm_as_in_istio() {
        // Istio returns at the first plugin.wasm and never reads on, so a
        // damaged entry after it does not matter.
        let module = minimal_proxy_wasm_module();
        let mut archive = tar(&[("plugin.wasm", &module)]);
        archive.truncate(archive.len() - 1024); // the end-of-archive blocks
        archive.extend_from_slice(&[b'x'; 512]); // a header with a bad checksum
        let mut encoder = GzEncoder::new(Vec::new(), Compression::default());
        std::io::Write::write_all(&mut encoder, &archive).unwrap();
        let layer = encoder.finish().unwrap();
        let image = served(
            OCI_MANIFEST,
            (OCI_CONFIG, b"{}"),
            &[(OCI_LAYER_TAR_GZIP, &layer)],
        );
        let extracted = extract(&image).unwrap();
        assert_eq!(extracted.format, Format::Compat);
        assert_eq!(extracted.module, module);

        // A gzip stream cut inside the runtime config that follows plugin.wasm.
        let config = vec![b' '; 64 * 1024];
        let layer = tar_gz(&[("plugin.wasm", &module), ("runtime-config.json", &config)]);
        let truncated = &layer[..layer.len() - 64];
        let cut = served(
            OCI_MANIFEST,
            (OCI_CONFIG, b"{}"),
            &[(OCI_LAYER_TAR_GZIP, truncated)],
        );
        let extracted = extract(&cut).unwrap();
        assert_eq!(extracted.format, Format::Compat);
        assert_eq!(extracted.module, module);
        assert_eq!(extracted.runtime_config, None);
    }

    fn index(platforms: &[Option<(&str, &str)>]) -> OciImageIndex {
        let manifests: Vec<_> = platforms
            .iter()
            .enumerate()
            .map(|(i, platform)| {
                let mut entry = json!({
                    "mediaType": OCI_MANIFEST,
                    "digest": sha256(&[i as u8]),
                    "size": 100 + i,
                });
                if let Some((os, architecture)) = platform {
                    entry["platform"] = json!({ "os": os, "architecture": architecture });
                }
                entry
            })
            .collect();
        serde_json::from_value(json!({
            "schemaVersion": 2,
            "mediaType": "application/vnd.oci.image.index.v1+json",
            "manifests": manifests,
        }))
        .unwrap()
    }

    #[test]
    fn platform_entry_picks_linux_amd64() {
        let index = index(&[
            None,
            Some(("linux", "arm64")),
            Some(("windows", "amd64")),
            Some(("linux", "amd64")),
            Some(("linux", "amd64")),
        ]);
        let entry = platform_entry(&index).unwrap();
        assert_eq!(entry.digest, sha256(&[3]));
    }

    #[test]
    fn platform_entry_refuses_an_index_without_linux_amd64() {
        let index = index(&[None, Some(("linux", "arm64")), Some(("wasip1", "wasm"))]);
        assert_eq!(
            platform_entry(&index).unwrap_err().to_string(),
            "not an image Istio accepts: found an image index of 3 manifests; \
             Istio resolves an index to its linux/amd64 image, and there is none"
        );
    }
}
