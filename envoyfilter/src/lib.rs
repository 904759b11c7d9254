//! Istio and Envoy manifests for the meshwasm filters, from the Istio YAML
//! you already have.
//!
//! - [`yaml`]: multi-document YAML in (with the line of every field) and out.
//! - [`translate`]: VirtualService, DestinationRule and Gateway resources to
//!   the filters' configuration, with every field the filters cannot
//!   express reported by path and line.
//! - [`render`]: WasmPlugin, EnvoyFilter (inline and ECDS), the companion
//!   VirtualService Istio needs, and plain Envoy `http_filters` and bootstrap.
//!
//! ```
//! use envoyfilter::render::{istio_manifests, IstioOptions};
//! use envoyfilter::translate::{translate, Options};
//!
//! let input = include_str!("../../examples/virtual-services/fault-delay.yaml");
//! let translation = translate(input, &Options::default()).unwrap();
//! let yaml = envoyfilter::yaml::dump(&istio_manifests(&translation, &IstioOptions::default()));
//! assert!(yaml.contains("kind: WasmPlugin"));
//! ```
#![deny(missing_docs)]
#![doc(test(attr(deny(warnings))))]

pub mod render;
pub mod translate;
/// YAML in and out, from the `yaml-doc` crate that sdk-host shares.
pub use yaml_doc as yaml;
