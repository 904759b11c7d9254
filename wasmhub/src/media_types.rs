//! The media types and annotations Istio's image fetcher looks for.
//!
//! They are defined here rather than taken from `oci-client`, whose
//! `WASM_*_MEDIA_TYPE` constants are the CNCF Wasm artifact types that Istio
//! rejects (istio/istio#39990).

/// An OCI image manifest.
pub const OCI_MANIFEST: &str = "application/vnd.oci.image.manifest.v1+json";
/// An OCI image index (a multi-platform image).
pub const OCI_INDEX: &str = "application/vnd.oci.image.index.v1+json";
/// A Docker image manifest, schema 2.
pub const DOCKER_MANIFEST: &str = "application/vnd.docker.distribution.manifest.v2+json";
/// A Docker manifest list (a multi-platform image).
pub const DOCKER_MANIFEST_LIST: &str = "application/vnd.docker.distribution.manifest.list.v2+json";

/// The OCI image configuration of a compat image.
pub const OCI_CONFIG: &str = "application/vnd.oci.image.config.v1+json";
/// The compat layer: a gzipped tar holding `plugin.wasm`.
pub const OCI_LAYER_TAR_GZIP: &str = "application/vnd.oci.image.layer.v1.tar+gzip";
/// The Docker spelling of the compat layer; Istio takes it only in a Docker manifest.
pub const DOCKER_LAYER_TAR_GZIP: &str = "application/vnd.docker.image.rootfs.diff.tar.gzip";

/// The WebAssembly Hub (wasme) runtime configuration, as the manifest's config
/// and as one of its two layers.
pub const WASMHUB_CONFIG: &str = "application/vnd.module.wasm.config.v1+json";
/// The WebAssembly Hub (wasme) module layer: the raw `.wasm` bytes.
pub const WASMHUB_LAYER: &str = "application/vnd.module.wasm.content.layer.v1+wasm";

/// The CNCF Wasm artifact configuration. Istio does not accept it; wasmhub
/// names it when it explains why an image was refused.
pub const CNCF_WASM_CONFIG: &str = "application/vnd.wasm.config.v0+json";

/// The manifest annotation the compat spec asks for.
pub const VARIANT_ANNOTATION: &str = "module.wasm.image/variant";
/// The standard annotation naming a file inside an artifact.
pub const TITLE_ANNOTATION: &str = "org.opencontainers.image.title";
/// The annotation that names an image inside an OCI image layout.
pub const REF_NAME_ANNOTATION: &str = "org.opencontainers.image.ref.name";

/// The module's name inside a compat layer; Istio looks for this base name.
pub const COMPAT_MODULE_FILE: &str = "plugin.wasm";
/// The runtime configuration's name inside a compat layer.
pub const COMPAT_RUNTIME_CONFIG_FILE: &str = "runtime-config.json";
