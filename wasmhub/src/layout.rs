//! A local store of built and pulled images in the OCI image-layout format,
//! the directory format that `skopeo`, `oras` and `crane` also read and write.
//!
//! An image is named by its full reference (`ghcr.io/acme/router:1.0`) in the
//! `org.opencontainers.image.ref.name` annotation of `index.json`, so
//! `skopeo copy oci:DIR:ghcr.io/acme/router:1.0 …` finds it too.

use std::collections::BTreeMap;
use std::fs;
use std::io::Write as _;
use std::path::{Path, PathBuf};

use oci_client::manifest::{OciDescriptor, OciImageIndex};
use serde::{Deserialize, Serialize};

use crate::digest;
use crate::image::{Image, ImageError};
use crate::media_types::{OCI_INDEX, REF_NAME_ANNOTATION};

const LAYOUT_FILE: &str = "oci-layout";
const INDEX_FILE: &str = "index.json";
const LAYOUT_VERSION: &str = "1.0.0";

/// Why the layout could not be read or written.
#[derive(thiserror::Error, Debug)]
pub enum LayoutError {
    /// A file operation failed.
    #[error("{path}: {source}")]
    Io {
        /// The file or directory.
        path: PathBuf,
        /// The OS error.
        source: std::io::Error,
    },
    /// The directory holds files but is not an OCI image layout.
    #[error("{path} is not an OCI image layout: {reason}")]
    NotALayout {
        /// The directory.
        path: PathBuf,
        /// What is wrong.
        reason: String,
    },
    /// No image has that name.
    #[error("no image named {name} in {root}{}", list_names(.available))]
    NotFound {
        /// The name asked for.
        name: String,
        /// The layout directory.
        root: PathBuf,
        /// The names the layout does hold.
        available: Vec<String>,
    },
    /// A blob the manifest names is missing or does not match its digest.
    #[error("image {name} in {root} is damaged: {source}")]
    Damaged {
        /// The image's name.
        name: String,
        /// The layout directory.
        root: PathBuf,
        /// What is wrong.
        source: Box<ImageError>,
    },
}

fn list_names(names: &[String]) -> String {
    match names {
        [] => " (it holds no images; run `wasmhub build` first)".to_string(),
        names => format!(" (it holds {})", names.join(", ")),
    }
}

/// One image in the layout's index.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct LayoutEntry {
    /// The reference the image is stored under.
    pub name: String,
    /// The manifest digest.
    pub digest: String,
    /// The manifest size in bytes.
    pub size: i64,
}

#[derive(Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
struct OciLayoutFile {
    image_layout_version: String,
}

/// An OCI image layout directory.
#[derive(Debug, Clone)]
pub struct Layout {
    root: PathBuf,
}

impl Layout {
    /// Where wasmhub keeps images unless told otherwise: `$WASMHUB_LAYOUT`,
    /// else `$XDG_DATA_HOME/wasmhub/oci`, else `~/.local/share/wasmhub/oci`.
    pub fn default_root() -> Option<PathBuf> {
        if let Some(dir) = std::env::var_os("WASMHUB_LAYOUT").filter(|d| !d.is_empty()) {
            return Some(PathBuf::from(dir));
        }
        let data = std::env::var_os("XDG_DATA_HOME")
            .filter(|d| !d.is_empty())
            .map(PathBuf::from)
            .or_else(|| std::env::home_dir().map(|h| h.join(".local/share")))?;
        Some(data.join("wasmhub/oci"))
    }

    /// Opens the layout at `root`, creating it if the directory is missing
    /// or empty.
    ///
    /// # Errors
    ///
    /// [`LayoutError::NotALayout`] for a directory that holds other files,
    /// and [`LayoutError::Io`] when it cannot be created.
    ///
    /// # Examples
    ///
    /// ```
    /// use wasmhub::image::{BuildOptions, Image};
    /// use wasmhub::layout::Layout;
    /// # let module = wasmhub::image::tests_support::minimal_proxy_wasm_module();
    ///
    /// let dir = tempfile::tempdir()?;
    /// let layout = Layout::open(dir.path())?;
    /// let image = Image::build(&module, &BuildOptions::default())?;
    /// layout.put("ghcr.io/acme/router:1.0", &image)?;
    /// assert_eq!(layout.get("ghcr.io/acme/router:1.0")?, image);
    /// # Ok::<(), Box<dyn std::error::Error>>(())
    /// ```
    pub fn open(root: impl Into<PathBuf>) -> Result<Layout, LayoutError> {
        let layout = Layout { root: root.into() };
        let marker = layout.root.join(LAYOUT_FILE);
        match fs::read(&marker) {
            Ok(bytes) => {
                let parsed: OciLayoutFile = serde_json::from_slice(&bytes)
                    .map_err(|e| layout.not_a_layout(format!("{LAYOUT_FILE}: {e}")))?;
                if parsed.image_layout_version != LAYOUT_VERSION {
                    return Err(layout.not_a_layout(format!(
                        "imageLayoutVersion {} is not {LAYOUT_VERSION}",
                        parsed.image_layout_version
                    )));
                }
                Ok(layout)
            }
            Err(e) if e.kind() == std::io::ErrorKind::NotFound => {
                let has_files = fs::read_dir(&layout.root)
                    .map(|mut entries| entries.next().is_some())
                    .unwrap_or(false);
                if has_files {
                    return Err(layout.not_a_layout(format!("it has files but no {LAYOUT_FILE}")));
                }
                fs::create_dir_all(layout.root.join("blobs/sha256"))
                    .map_err(|e| layout.io(&layout.root, e))?;
                let marker_json = serde_json::json!({ "imageLayoutVersion": LAYOUT_VERSION });
                layout.write_atomic(&marker, marker_json.to_string().as_bytes())?;
                layout.write_index(&empty_index())?;
                Ok(layout)
            }
            Err(e) => Err(layout.io(&marker, e)),
        }
    }

    /// The layout directory.
    pub fn root(&self) -> &Path {
        &self.root
    }

    /// Stores `image` under `name`, replacing any image of that name.
    ///
    /// # Errors
    ///
    /// [`LayoutError::Io`] when a blob or the index cannot be written.
    pub fn put(&self, name: &str, image: &Image) -> Result<(), LayoutError> {
        for blob in image.blobs().into_iter().chain([image.manifest_blob()]) {
            let path = self.blob_path(blob.digest());
            if !path.exists() {
                self.write_atomic(&path, blob.data())?;
            }
        }
        let mut index = self.read_index()?;
        index
            .manifests
            .retain(|entry| ref_name(entry) != Some(name));
        let manifest = image.manifest_blob();
        index.manifests.push(oci_client::manifest::ImageIndexEntry {
            media_type: manifest.media_type().to_string(),
            digest: manifest.digest().to_string(),
            size: manifest.data().len() as i64,
            platform: None,
            annotations: Some(BTreeMap::from([(
                REF_NAME_ANNOTATION.to_string(),
                name.to_string(),
            )])),
            artifact_type: None,
        });
        self.write_index(&index)
    }

    /// Reads the image stored under `name`, checking every digest.
    ///
    /// # Errors
    ///
    /// [`LayoutError::NotFound`] lists the names the layout holds;
    /// [`LayoutError::Damaged`] when a blob is missing or altered.
    pub fn get(&self, name: &str) -> Result<Image, LayoutError> {
        let index = self.read_index()?;
        let Some(entry) = index.manifests.iter().find(|e| ref_name(e) == Some(name)) else {
            return Err(LayoutError::NotFound {
                name: name.to_string(),
                root: self.root.clone(),
                available: index
                    .manifests
                    .iter()
                    .filter_map(ref_name)
                    .map(str::to_string)
                    .collect(),
            });
        };
        let damaged = |source| LayoutError::Damaged {
            name: name.to_string(),
            root: self.root.clone(),
            source: Box::new(source),
        };
        let manifest = self
            .read_blob(
                &OciDescriptor {
                    media_type: entry.media_type.clone(),
                    digest: entry.digest.clone(),
                    size: entry.size,
                    ..OciDescriptor::default()
                },
                "manifest",
            )
            .map_err(damaged)?;
        let parsed: oci_client::manifest::OciImageManifest = serde_json::from_slice(&manifest)
            .map_err(|e| {
                damaged(ImageError::BadManifest {
                    reason: e.to_string(),
                })
            })?;
        let config = self.read_blob(&parsed.config, "config").map_err(damaged)?;
        let layers = parsed
            .layers
            .iter()
            .enumerate()
            .map(|(i, layer)| self.read_blob(layer, &format!("layer {i}")))
            .collect::<Result<Vec<_>, _>>()
            .map_err(damaged)?;
        Image::from_parts(&entry.media_type, manifest, config, layers).map_err(damaged)
    }

    /// The images in the layout, in the order they were stored.
    ///
    /// # Errors
    ///
    /// [`LayoutError`] when `index.json` cannot be read.
    pub fn list(&self) -> Result<Vec<LayoutEntry>, LayoutError> {
        Ok(self
            .read_index()?
            .manifests
            .iter()
            .filter_map(|entry| {
                Some(LayoutEntry {
                    name: ref_name(entry)?.to_string(),
                    digest: entry.digest.clone(),
                    size: entry.size,
                })
            })
            .collect())
    }

    fn blob_path(&self, digest: &str) -> PathBuf {
        // Digests are checked to be sha256:<64 hex> before they reach here,
        // so they cannot walk out of blobs/.
        let hex = digest::sha256_hex(digest).unwrap_or("invalid");
        self.root.join("blobs/sha256").join(hex)
    }

    fn read_blob(&self, descriptor: &OciDescriptor, what: &str) -> Result<Vec<u8>, ImageError> {
        if digest::sha256_hex(&descriptor.digest).is_none() {
            return Err(ImageError::UnsupportedDigest {
                what: what.to_string(),
                digest: descriptor.digest.clone(),
            });
        }
        let data =
            fs::read(self.blob_path(&descriptor.digest)).map_err(|e| ImageError::MissingBlob {
                what: what.to_string(),
                digest: descriptor.digest.clone(),
                reason: e.to_string(),
            })?;
        let actual = digest::sha256(&data);
        if actual != descriptor.digest {
            return Err(ImageError::DigestMismatch {
                what: what.to_string(),
                expected: descriptor.digest.clone(),
                actual,
            });
        }
        Ok(data)
    }

    fn read_index(&self) -> Result<OciImageIndex, LayoutError> {
        let path = self.root.join(INDEX_FILE);
        let bytes = fs::read(&path).map_err(|e| self.io(&path, e))?;
        serde_json::from_slice(&bytes).map_err(|e| self.not_a_layout(format!("{INDEX_FILE}: {e}")))
    }

    fn write_index(&self, index: &OciImageIndex) -> Result<(), LayoutError> {
        let json = serde_json::to_vec_pretty(index).unwrap_or_default();
        self.write_atomic(&self.root.join(INDEX_FILE), &json)
    }

    /// Writes through a temporary file and a rename, so a crash never leaves
    /// a half-written blob or index behind.
    fn write_atomic(&self, path: &Path, data: &[u8]) -> Result<(), LayoutError> {
        let dir = path.parent().unwrap_or(&self.root);
        let mut file = tempfile::NamedTempFile::new_in(dir).map_err(|e| self.io(dir, e))?;
        file.write_all(data).map_err(|e| self.io(path, e))?;
        file.persist(path).map_err(|e| self.io(path, e.error))?;
        Ok(())
    }

    fn io(&self, path: &Path, source: std::io::Error) -> LayoutError {
        LayoutError::Io {
            path: path.to_path_buf(),
            source,
        }
    }

    fn not_a_layout(&self, reason: String) -> LayoutError {
        LayoutError::NotALayout {
            path: self.root.clone(),
            reason,
        }
    }
}

fn ref_name(entry: &oci_client::manifest::ImageIndexEntry) -> Option<&str> {
    entry
        .annotations
        .as_ref()?
        .get(REF_NAME_ANNOTATION)
        .map(String::as_str)
}

fn empty_index() -> OciImageIndex {
    OciImageIndex {
        schema_version: 2,
        media_type: Some(OCI_INDEX.to_string()),
        manifests: Vec::new(),
        artifact_type: None,
        annotations: None,
    }
}

#[cfg(test)]
mod tests {
    use serde_json::Value;

    use super::*;
    use crate::image::Variant;
    use crate::image::tests::build;
    use crate::media_types::OCI_MANIFEST;

    fn blob_count(layout: &Layout) -> usize {
        fs::read_dir(layout.root().join("blobs/sha256"))
            .unwrap()
            .count()
    }

    fn index_json(layout: &Layout) -> Value {
        serde_json::from_slice(&fs::read(layout.root().join("index.json")).unwrap()).unwrap()
    }

    fn names(layout: &Layout) -> Vec<String> {
        layout.list().unwrap().into_iter().map(|e| e.name).collect()
    }

    #[test]
    fn open_creates_the_layout_files() {
        let dir = tempfile::tempdir().unwrap();
        let root = dir.path().join("store/oci");
        let layout = Layout::open(&root).unwrap();
        assert_eq!(layout.root(), root);
        assert_eq!(
            fs::read_to_string(root.join("oci-layout")).unwrap(),
            r#"{"imageLayoutVersion":"1.0.0"}"#
        );
        assert_eq!(
            index_json(&layout),
            serde_json::json!({
                "schemaVersion": 2,
                "mediaType": "application/vnd.oci.image.index.v1+json",
                "manifests": [],
            })
        );
        assert!(root.join("blobs/sha256").is_dir());
        assert_eq!(blob_count(&layout), 0);
        assert_eq!(layout.list().unwrap(), []);
    }

    #[test]
    fn open_takes_an_existing_empty_directory() {
        let dir = tempfile::tempdir().unwrap();
        let layout = Layout::open(dir.path()).unwrap();
        assert!(dir.path().join("oci-layout").is_file());
        assert!(dir.path().join("index.json").is_file());
        assert_eq!(layout.list().unwrap(), []);
    }

    #[test]
    fn reopening_keeps_the_images() {
        let dir = tempfile::tempdir().unwrap();
        let image = build(Variant::Compat, &["router"]);
        Layout::open(dir.path())
            .unwrap()
            .put("ghcr.io/acme/router:1.0", &image)
            .unwrap();
        let reopened = Layout::open(dir.path()).unwrap();
        assert_eq!(reopened.get("ghcr.io/acme/router:1.0").unwrap(), image);
        assert_eq!(names(&reopened), ["ghcr.io/acme/router:1.0"]);
    }

    #[test]
    fn open_refuses_a_directory_of_other_files() {
        let dir = tempfile::tempdir().unwrap();
        fs::write(dir.path().join("notes.txt"), "mine").unwrap();
        let err = Layout::open(dir.path()).unwrap_err();
        assert!(
            matches!(
                &err,
                LayoutError::NotALayout { path, reason }
                    if path == dir.path() && reason == "it has files but no oci-layout"
            ),
            "{err:?}"
        );
        // Nothing was written next to the user's files.
        assert!(!dir.path().join("index.json").exists());
        assert!(!dir.path().join("blobs").exists());
    }

    #[test]
    fn open_refuses_another_layout_version() {
        let dir = tempfile::tempdir().unwrap();
        fs::write(
            dir.path().join("oci-layout"),
            r#"{"imageLayoutVersion":"2.0.0"}"#,
        )
        .unwrap();
        let err = Layout::open(dir.path()).unwrap_err();
        assert!(
            matches!(
                &err,
                LayoutError::NotALayout { reason, .. }
                    if reason == "imageLayoutVersion 2.0.0 is not 1.0.0"
            ),
            "{err:?}"
        );
    }

    #[test]
    fn put_and_get_round_trip_both_variants() {
        let dir = tempfile::tempdir().unwrap();
        let layout = Layout::open(dir.path()).unwrap();
        for (name, variant) in [
            ("ghcr.io/acme/router:compat", Variant::Compat),
            ("ghcr.io/acme/router:wasmhub", Variant::WasmHub),
        ] {
            let image = build(variant, &["router"]);
            layout.put(name, &image).unwrap();
            let got = layout.get(name).unwrap();
            assert_eq!(got, image, "{variant}");
            assert_eq!(got.digest(), image.digest(), "{variant}");
            // Every blob sits under blobs/sha256/<hex> with its exact bytes.
            for blob in image.blobs().into_iter().chain([image.manifest_blob()]) {
                let hex = digest::sha256_hex(blob.digest()).unwrap();
                let path = dir.path().join("blobs/sha256").join(hex);
                assert_eq!(fs::read(path).unwrap(), blob.data(), "{variant}");
            }
        }
    }

    #[test]
    fn index_entries_name_the_image_for_other_tools() {
        let dir = tempfile::tempdir().unwrap();
        let layout = Layout::open(dir.path()).unwrap();
        let image = build(Variant::Compat, &[]);
        layout.put("ghcr.io/acme/router:1.0", &image).unwrap();
        assert_eq!(
            index_json(&layout)["manifests"],
            serde_json::json!([{
                "mediaType": OCI_MANIFEST,
                "digest": image.digest(),
                "size": image.manifest_blob().data().len(),
                "annotations": { "org.opencontainers.image.ref.name": "ghcr.io/acme/router:1.0" },
            }])
        );
    }

    #[test]
    fn putting_a_name_again_replaces_its_entry() {
        let dir = tempfile::tempdir().unwrap();
        let layout = Layout::open(dir.path()).unwrap();
        let old = build(Variant::Compat, &["router"]);
        let new = build(Variant::Compat, &["fault"]);
        layout.put("acme/filter:latest", &old).unwrap();
        layout.put("acme/filter:latest", &new).unwrap();
        let entries = layout.list().unwrap();
        assert_eq!(
            entries,
            [LayoutEntry {
                name: "acme/filter:latest".into(),
                digest: new.digest().into(),
                size: new.manifest_blob().data().len() as i64,
            }]
        );
        assert_eq!(
            index_json(&layout)["manifests"].as_array().unwrap().len(),
            1
        );
        assert_eq!(layout.get("acme/filter:latest").unwrap(), new);
    }

    #[test]
    fn names_share_blobs() {
        let dir = tempfile::tempdir().unwrap();
        let layout = Layout::open(dir.path()).unwrap();
        let compat = build(Variant::Compat, &["router"]);
        layout.put("a:1", &compat).unwrap();
        // manifest, config, layer
        assert_eq!(blob_count(&layout), 3);
        layout.put("b:1", &compat).unwrap();
        assert_eq!(blob_count(&layout), 3);

        // The wasmhub config is both config and layer 0: stored once.
        let wasmhub = build(Variant::WasmHub, &["router"]);
        layout.put("c:1", &wasmhub).unwrap();
        assert_eq!(blob_count(&layout), 6);
        assert_eq!(names(&layout), ["a:1", "b:1", "c:1"]);
        assert_eq!(layout.get("a:1").unwrap(), layout.get("b:1").unwrap());
    }

    #[test]
    fn get_of_an_unknown_name_lists_the_stored_ones() {
        let dir = tempfile::tempdir().unwrap();
        let layout = Layout::open(dir.path()).unwrap();
        let err = layout.get("acme/router:2.0").unwrap_err();
        assert_eq!(
            err.to_string(),
            format!(
                "no image named acme/router:2.0 in {} (it holds no images; run `wasmhub build` first)",
                dir.path().display()
            )
        );

        let image = build(Variant::Compat, &[]);
        layout.put("acme/router:1.0", &image).unwrap();
        layout.put("acme/fault:1.0", &image).unwrap();
        let err = layout.get("acme/router:2.0").unwrap_err();
        assert!(
            matches!(
                &err,
                LayoutError::NotFound { name, root, available }
                    if name == "acme/router:2.0"
                        && root == dir.path()
                        && available == &["acme/router:1.0", "acme/fault:1.0"]
            ),
            "{err:?}"
        );
        assert_eq!(
            err.to_string(),
            format!(
                "no image named acme/router:2.0 in {} (it holds acme/router:1.0, acme/fault:1.0)",
                dir.path().display()
            )
        );
    }

    #[test]
    fn a_blob_altered_on_disk_is_damage() {
        let dir = tempfile::tempdir().unwrap();
        let layout = Layout::open(dir.path()).unwrap();
        let image = build(Variant::Compat, &[]);
        layout.put("acme/router:1.0", &image).unwrap();
        let layer = &image.layers()[0];
        let path = dir
            .path()
            .join("blobs/sha256")
            .join(digest::sha256_hex(layer.digest()).unwrap());
        fs::write(&path, b"altered").unwrap();
        let err = layout.get("acme/router:1.0").unwrap_err();
        assert!(
            matches!(
                &err,
                LayoutError::Damaged { name, source, .. } if name == "acme/router:1.0"
                    && matches!(source.as_ref(), ImageError::DigestMismatch { what, expected, actual }
                        if what == "layer 0"
                            && expected == layer.digest()
                            && *actual == digest::sha256(b"altered"))
            ),
            "{err:?}"
        );
        assert!(err.to_string().starts_with("image acme/router:1.0 in "));
    }

    #[test]
    fn a_missing_blob_is_damage() {
        for (what, variant) in [
            ("config", Variant::Compat),
            ("manifest", Variant::Compat),
            ("layer 1", Variant::WasmHub),
        ] {
            let dir = tempfile::tempdir().unwrap();
            let layout = Layout::open(dir.path()).unwrap();
            let image = build(variant, &[]);
            layout.put("acme/router:1.0", &image).unwrap();
            let digest = match what {
                "config" => image.config().digest(),
                "manifest" => image.digest(),
                _ => image.layers()[1].digest(),
            };
            fs::remove_file(
                dir.path()
                    .join("blobs/sha256")
                    .join(digest::sha256_hex(digest).unwrap()),
            )
            .unwrap();
            let err = layout.get("acme/router:1.0").unwrap_err();
            assert!(
                matches!(
                    &err,
                    LayoutError::Damaged { source, .. }
                        if matches!(source.as_ref(), ImageError::MissingBlob { what: found, digest: named, reason }
                            if found == what && named == digest && reason.contains("No such file"))
                ),
                "{what}: {err:?}"
            );
        }
    }

    #[test]
    fn list_returns_names_and_digests_in_insertion_order() {
        let dir = tempfile::tempdir().unwrap();
        let layout = Layout::open(dir.path()).unwrap();
        let images = [
            ("zeta:1", build(Variant::Compat, &["zeta"])),
            ("alpha:1", build(Variant::WasmHub, &["alpha"])),
            ("mid:1", build(Variant::Compat, &["mid"])),
        ];
        for (name, image) in &images {
            layout.put(name, image).unwrap();
        }
        let listed: Vec<(String, String)> = layout
            .list()
            .unwrap()
            .into_iter()
            .map(|e| (e.name, e.digest))
            .collect();
        let expected: Vec<(String, String)> = images
            .iter()
            .map(|(name, image)| (name.to_string(), image.digest().to_string()))
            .collect();
        assert_eq!(listed, expected);
    }
}
