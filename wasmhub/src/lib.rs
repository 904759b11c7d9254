//! Package Proxy-Wasm filters as OCI images that Istio's agent pulls, and move
//! them between a local OCI image layout and any OCI registry.
//!
//! The flow is `build` → [`layout::Layout`] → `push` → registry → `pull`:
//!
//! - [`module::ProxyWasmModule`] checks that a file is a Proxy-Wasm module.
//! - [`image::Image::build`] packs it, reproducibly, in one of the two
//!   [`image::Variant`]s Istio accepts.
//! - [`layout::Layout`] stores images on disk in the OCI image-layout format,
//!   which `skopeo`, `oras` and `crane` also read.
//! - [`registry::Registry`] pushes, pulls and inspects, over the distribution
//!   protocol of the `oci-client` crate.
//! - [`istio::extract`] applies Istio's acceptance rules to what was pulled,
//!   so wasmhub reads exactly what Istio reads.
//! - [`credentials`] finds and stores logins the way the docker CLI does.
#![deny(missing_docs)]
#![doc(test(attr(deny(warnings))))]

pub mod credentials;
pub mod digest;
pub mod image;
pub mod istio;
pub mod layout;
pub mod media_types;
pub mod module;
pub mod registry;
