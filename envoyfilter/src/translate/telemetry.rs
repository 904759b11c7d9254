//! Istio Telemetry resources (`telemetry.istio.io/v1` and `v1alpha1`) made
//! the telemetry filter's configuration.
//!
//! The filter takes a Telemetry `spec` as it is (plus its own `meshwasm`
//! block), so translation is placement: `selector` and `targetRef(s)`
//! leave the spec and become the WasmPlugin's, as for AuthorizationPolicies;
//! a Telemetry in the root namespace without either applies to the whole
//! mesh, and its WasmPlugin stays there without a selector. Each spec is
//! compiled by the filter's own code ([`TelemetryPlan`]), so an error names
//! the field by its path in the YAML and its line.
//!
//! Istio merges the Telemetries that apply to a workload (the workload's
//! over the namespace's over the root namespace's). Filters cannot be
//! merged that way: each Telemetry is one filter, and two that reach the
//! same workload both report its traffic, so it would be counted twice.
//! That is said (a warning), as is a second Telemetry on exactly the same
//! workloads, which is not translated (Istio, too, uses one of them).

use super::{Context, Severity, Source, local_rate_limit::message};
use crate::yaml::Document;
use meshwasm_core::plan::Plan as _;
use meshwasm_core::telemetry::TelemetryPlan;
use serde_json::Value;
use std::collections::BTreeMap;

use super::authorization_policy::ROOT_NAMESPACE;

/// Istio's telemetry API versions this module reads.
pub(crate) const TELEMETRY_VERSIONS: [&str; 2] =
    ["telemetry.istio.io/v1", "telemetry.istio.io/v1alpha1"];

/// The fields of a Telemetry spec that say where it applies: the
/// WasmPlugin's business, not the filter's.
const PLACEMENT_FIELDS: [&str; 3] = ["selector", "targetRef", "targetRefs"];

/// The telemetry filter of one Telemetry resource.
#[derive(Debug, Clone)]
pub struct TelemetryFilter {
    /// The Telemetry it comes from.
    pub source: Source,
    /// Its namespace: `metadata.namespace`, else the default namespace.
    pub namespace: String,
    /// The Telemetry's name, the base of the generated resources' names.
    pub name: String,
    /// `spec.selector.matchLabels`; empty for every workload of the
    /// namespace (or of the mesh, see [`mesh_wide`](Self::mesh_wide)).
    pub selector: BTreeMap<String, String>,
    /// `spec.targetRefs` (or `targetRef`), as written.
    pub target_refs: Vec<Value>,
    /// In the root namespace without selector or targets: every workload
    /// of the mesh.
    pub mesh_wide: bool,
    /// `spec.meshwasm.filter: network`: Envoy's network Wasm filter, which
    /// reports Istio's TCP metrics, in place of the HTTP one.
    pub network: bool,
    /// The config the filter gets: the spec without `selector` and
    /// `targetRef(s)`.
    pub config: Value,
    /// Every label the filter's metrics carry (the standard ones, then the
    /// `tagOverrides` it adds): the stats tags Envoy needs to make them
    /// Prometheus labels.
    pub labels: Vec<String>,
    /// The `tracing` of the spec, as written: Istio's tracer reports the
    /// spans, so it stays Istio's.
    pub tracing: Option<Value>,
}

impl TelemetryFilter {
    /// Whether the filter reaches every workload `other` reaches, and more:
    /// namespace-wide over a workload's of the namespace, mesh-wide over
    /// any other.
    fn covers(&self, other: &TelemetryFilter) -> bool {
        let selects_all = self.selector.is_empty() && self.target_refs.is_empty();
        let other_all = other.selector.is_empty() && other.target_refs.is_empty();
        selects_all
            && (self.mesh_wide && !other.mesh_wide
                || (!self.mesh_wide && !other_all && self.namespace == other.namespace))
    }
}

/// The spec the filter gets: without the placement fields.
fn filter_spec(spec: &Value) -> Value {
    let mut spec = spec.clone();
    if let Value::Object(map) = &mut spec {
        for key in PLACEMENT_FIELDS {
            map.remove(key);
        }
    }
    spec
}

fn labels_of(value: &Value) -> BTreeMap<String, String> {
    value
        .as_object()
        .into_iter()
        .flatten()
        .map(|(k, v)| (k.clone(), v.as_str().unwrap_or_default().to_owned()))
        .collect()
}

/// `metrics[0].overrides[1]` → `spec.metrics[0].overrides[1]`.
fn spec_path(path: &str) -> String {
    if path.is_empty() {
        "spec".into()
    } else {
        format!("spec.{path}")
    }
}

impl Context<'_> {
    /// The telemetry filters of the input's Telemetry resources, one per
    /// resource, in input order.
    pub(super) fn telemetries(
        &mut self,
        documents: &[(&Document, Source)],
    ) -> Vec<TelemetryFilter> {
        let mut out: Vec<TelemetryFilter> = Vec::new();
        let mut docs: Vec<&Document> = Vec::new();
        for (doc, source) in documents {
            self.file = source.file.clone();
            let Some(filter) = self.telemetry(doc, source) else {
                continue;
            };
            let same = out.iter().find(|f| {
                f.namespace == filter.namespace
                    && f.selector == filter.selector
                    && f.target_refs == filter.target_refs
                    && f.network == filter.network
            });
            if let Some(first) = same {
                let message = format!(
                    "selects the same workloads as Telemetry {}/{}, which Istio does not merge with it (it uses one of them); only the first is translated, so put the settings in one Telemetry",
                    first.namespace, first.name
                );
                self.warn(source, doc, "spec", message);
                continue;
            }
            out.push(filter);
            docs.push(doc);
        }
        self.check_overlapping_telemetry(&out, &docs);
        self.check_plain_envoy_telemetry(&out, &docs);
        out
    }

    /// One Telemetry: its placement, with what Istio itself would refuse,
    /// and its spec compiled by the filter's code.
    fn telemetry(&mut self, doc: &Document, source: &Source) -> Option<TelemetryFilter> {
        let spec = &doc.value["spec"];
        let selector = labels_of(&spec["selector"]["matchLabels"]);
        let mut target_refs: Vec<Value> =
            spec["targetRefs"].as_array().cloned().unwrap_or_default();
        if let Some(one) = spec.get("targetRef") {
            if spec.get("targetRefs").is_some() {
                self.error(Some(source), Some(doc), "spec.targetRef", "and spec.targetRefs are both set, which Istio refuses; list the target in targetRefs".into());
                return None;
            }
            target_refs.push(one.clone());
        }
        if spec.get("selector").is_some() && !target_refs.is_empty() {
            self.error(Some(source), Some(doc), "spec.selector", "and targetRef(s) are both set, which Istio refuses; a Telemetry selects workloads by labels or by targets".into());
            return None;
        }
        let config = filter_spec(spec);
        let plan = match TelemetryPlan::from_json(config.to_string().as_bytes()) {
            Ok(plan) => plan,
            Err(e) => {
                self.error(Some(source), Some(doc), &spec_path(&e.path), message(&e));
                return None;
            }
        };
        for note in plan.notes() {
            let severity = if note.deprecated {
                Severity::Note
            } else {
                Severity::Warning
            };
            self.push(
                severity,
                Some(source),
                Some(doc),
                &spec_path(&note.path),
                note.message.to_owned(),
            );
        }
        let labels = plan.all_label_names();
        self.check_label_names(doc, source, &labels);
        let namespace = source
            .namespace
            .clone()
            .unwrap_or_else(|| self.options.default_namespace.clone());
        let mesh_wide =
            namespace == ROOT_NAMESPACE && selector.is_empty() && target_refs.is_empty();
        if mesh_wide {
            self.push(Severity::Note, Some(source), Some(doc), "metadata.namespace", format!("in the root namespace {ROOT_NAMESPACE} without selector: applies to every workload of the mesh, so its WasmPlugin stays in {ROOT_NAMESPACE} without selector, which Istio applies mesh-wide"));
        }
        Some(TelemetryFilter {
            source: source.clone(),
            namespace,
            name: source.name.clone(),
            selector,
            target_refs,
            mesh_wide,
            network: plan.network(),
            config,
            labels,
            tracing: spec.get("tracing").cloned(),
        })
    }

    /// A label is extracted from a stat name by `(NAME=\.=(.*?);\.;)`
    /// (Istio's form, see [`crate::render::stats`]): a name that ends
    /// another label's (`app` in `source_app`) would also match inside it.
    fn check_label_names(&mut self, doc: &Document, source: &Source, labels: &[String]) {
        let standard = meshwasm_core::telemetry::labels::STANDARD_LABELS.len();
        for name in labels.iter().skip(standard) {
            let Some(longer) = labels
                .iter()
                .find(|l| *l != name && l.ends_with(name.as_str()))
            else {
                continue;
            };
            let path = tag_override_path(&doc.value["spec"], name)
                .unwrap_or_else(|| "spec.metrics".to_owned());
            self.warn(source, doc, &path, format!("the label {name:?} ends the label {longer:?}, so the stats tag that extracts {name:?} from a stat name (`{name}=.=VALUE;.;`) also matches inside {longer:?}'s and takes its value; give it a name no other label ends with"));
        }
    }

    /// Two filters on one workload each report its traffic: Istio merges
    /// the Telemetries instead, so the metrics would count it twice.
    fn check_overlapping_telemetry(&mut self, filters: &[TelemetryFilter], docs: &[&Document]) {
        for (n, narrow) in filters.iter().enumerate() {
            let broader = filters
                .iter()
                .find(|wide| wide.network == narrow.network && wide.covers(narrow));
            let Some(wide) = broader else {
                continue;
            };
            self.file = narrow.source.file.clone();
            let scope = if wide.mesh_wide {
                "mesh-wide"
            } else {
                "namespace-wide"
            };
            self.warn(&narrow.source, docs[n], "spec", format!("Telemetry {}/{} applies {scope} too: Istio merges the two (this one's settings over the other's), but they become two telemetry filters on these workloads, each reporting every request, so the metrics count it twice; put these workloads' settings in one Telemetry, or select the others by labels", wide.namespace, wide.name));
        }
    }

    /// Plain Envoy has one HTTP listener: its bootstrap gets the first
    /// HTTP telemetry filter only, and no network one (it has no TCP
    /// proxy chain to report on).
    fn check_plain_envoy_telemetry(&mut self, filters: &[TelemetryFilter], docs: &[&Document]) {
        let first_http = filters.iter().position(|f| !f.network);
        for (n, filter) in filters.iter().enumerate() {
            self.file = filter.source.file.clone();
            let message = match first_http {
                _ if filter.network => "meshwasm.filter is network: the plain Envoy output has an HTTP listener only, so its bootstrap does not carry this filter (the Istio and EnvoyFilter outputs do, before tcp_proxy)".to_owned(),
                Some(first) if first != n => format!("plain Envoy has one listener, so its bootstrap has one telemetry filter, Telemetry {}/{}'s; this one is in the Istio and EnvoyFilter outputs only", filters[first].namespace, filters[first].name),
                _ => continue,
            };
            self.push(
                Severity::Note,
                Some(&filter.source),
                Some(docs[n]),
                "spec",
                message,
            );
        }
    }
}

/// The path of the first `tagOverrides` entry that names `label`.
fn tag_override_path(spec: &Value, label: &str) -> Option<String> {
    for (i, metrics) in spec["metrics"].as_array()?.iter().enumerate() {
        for (j, entry) in metrics["overrides"]
            .as_array()
            .into_iter()
            .flatten()
            .enumerate()
        {
            if entry["tagOverrides"].get(label).is_some() {
                return Some(format!(
                    "spec.metrics[{i}].overrides[{j}].tagOverrides.{label}"
                ));
            }
        }
    }
    None
}
