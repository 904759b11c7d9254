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
        source: ImageError,
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
            source,
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
        let data = fs::read(self.blob_path(&descriptor.digest)).unwrap_or_default();
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
