//! What every filter's compiled configuration offers its plugin root.
//!
//! A filter's configuration is compiled once, in `on_configure`, into a
//! plan that answers each request without re-reading the document. The
//! plugin root (the `meshwasm-plugin` crate) only needs the few things
//! every plan has in common, which this trait names: how to build it, what
//! to log about it, and the metrics it reports.

use crate::config::Document;
use crate::metrics::MetricSpec;
use crate::{ConfigError, ConfigNote};

/// A filter's configuration, compiled.
///
/// # Examples
///
/// ```
/// use meshwasm_core::fault::FaultPlan;
/// use meshwasm_core::plan::Plan;
///
/// let plan = FaultPlan::from_json(br#"{"hosts": ["ratings"], "gateways": ["mesh"]}"#).unwrap();
/// assert_eq!(plan.notes()[0].path, "gateways");
/// assert_eq!(plan.summary(), "0 http routes, 0 with faults; header faults: off; maxActiveFaults: unlimited");
/// assert!(plan.metrics().iter().any(|m| m.name() == "meshwasm.fault.aborts_injected"));
/// assert_eq!(FaultPlan::DOCUMENT.name, "a VirtualService spec");
/// ```
pub trait Plan: Sized {
    /// The document the plan is compiled from, named in errors.
    const DOCUMENT: Document;

    /// Parses and compiles the plugin configuration.
    ///
    /// # Errors
    ///
    /// The first [`ConfigError`], naming the field.
    fn from_json(json: &[u8]) -> Result<Self, ConfigError>;

    /// What was accepted but is handled in a way the user should know; the
    /// plugin logs each one at configure time.
    fn notes(&self) -> &[ConfigNote];

    /// One line describing the plan, for the configure-time log.
    fn summary(&self) -> String;

    /// The metrics the plan reports, defined once per configuration. Their
    /// order is the order of [`MetricRef`](crate::metrics::MetricRef)s the
    /// plan hands out.
    fn metrics(&self) -> Vec<MetricSpec> {
        Vec::new()
    }
}
