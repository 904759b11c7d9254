//! The `--mesh` outputs: the filters a translation renders, run as one
//! module (`meshwasm-mesh`) wherever they apply to the same traffic.
//!
//! Each output is first rendered filter by filter, as without `--mesh`;
//! then the filters that would run on the same traffic are put into one
//! mesh filter whose configuration holds each one's document under its
//! key (`meshwasm_core::mesh`): the router's VirtualServices (which hold
//! the fault filter's) as `virtualServices`, the header-match filter's as
//! `authorization`, the rate-limit filter's as `rateLimit`, the telemetry
//! filter's as `telemetry`. The documents are not rewritten, so the mesh
//! reads each exactly as its filter would.
//!
//! - Plain Envoy has one listener: every filter goes into one mesh filter,
//!   where the first of them was.
//! - Istio: WasmPlugins with the same namespace, selector (or targetRefs)
//!   and `match` (so the same workloads and traffic direction) become one,
//!   in the phase and priority of the earliest of them. VirtualServices
//!   route outbound (`mode: CLIENT`) and AuthorizationPolicies inbound, so
//!   a sidecar may run the mesh module twice, each with its parts.
//!
//! A filter that a mesh filter cannot take, because the mesh holds one of
//! its kind already (a second rate limit or Telemetry on the same
//! workloads), stays its own filter; the mesh runs the one it holds in its
//! own order (access rules, rate limit, fault, routing), so a rate limit
//! inserted first (`INSERT_FIRST`) runs after the access rules there.

use super::{Code, Filter, IstioOptions, http_filter};
use serde_json::{Map, Value, json};

/// The mesh document's key for a filter's configuration.
fn part_key(filter: Filter) -> Option<&'static str> {
    match filter {
        Filter::Router | Filter::Fault => Some(meshwasm_core::virtual_service::LIST_KEY),
        Filter::HeaderMatch => Some("authorization"),
        Filter::RateLimit => Some("rateLimit"),
        Filter::Telemetry => Some("telemetry"),
        Filter::Mesh => None,
    }
}

/// The filter whose Envoy name (and root id) is `name`.
fn filter_named(name: &str) -> Option<Filter> {
    Filter::ALL.into_iter().find(|f| f.plugin_name() == name)
}

/// A mesh document being put together.
#[derive(Default)]
struct Parts {
    doc: Map<String, Value>,
    /// The router's VirtualServices are in: they hold the fault filter's.
    has_router: bool,
}

impl Parts {
    /// Takes a filter's configuration; `false` when the mesh holds a part
    /// of that kind already (the filter then stays its own).
    fn take(&mut self, filter: Filter, config: Value) -> bool {
        let Some(key) = part_key(filter) else {
            return false;
        };
        if key == meshwasm_core::virtual_service::LIST_KEY {
            // At one placement, the router's services are all of them and
            // the fault filter's are those with faults.
            match (self.doc.contains_key(key), filter, self.has_router) {
                (_, Filter::Fault, true) => return true,
                (true, Filter::Fault, false) => return false,
                (_, Filter::Router, true) => return false,
                _ => {}
            }
            self.has_router |= filter == Filter::Router;
            self.doc.insert(key.to_owned(), specs(config));
            return true;
        }
        if self.doc.contains_key(key) {
            return false;
        }
        self.doc.insert(key.to_owned(), config);
        true
    }
}

/// A router or fault configuration (one spec, or the list form) as the
/// mesh's list of specs.
fn specs(config: Value) -> Value {
    let key = meshwasm_core::virtual_service::LIST_KEY;
    match config {
        Value::Object(mut o) if o.len() == 1 && o.contains_key(key) => {
            o.remove(key).unwrap_or_default()
        }
        one => Value::Array(vec![one]),
    }
}

/// A plain Envoy `http_filters` list with meshwasm's filters as one mesh
/// filter, loaded with `code`, where the first of them was.
///
/// # Examples
///
/// ```
/// use envoyfilter::render::{Code, Filter, http_filter, mesh};
/// use serde_json::json;
///
/// let code = |f: Filter| Code::Local { filename: f.wasm_file().into() };
/// let filters = vec![
///     http_filter(Filter::HeaderMatch, &json!({"action": "ALLOW", "rules": [{}]}), &code(Filter::HeaderMatch)),
///     http_filter(Filter::Fault, &json!({"hosts": ["a"], "http": [{"fault": {}}]}), &code(Filter::Fault)),
///     http_filter(Filter::Router, &json!({"hosts": ["a"], "http": [{"fault": {}}, {}]}), &code(Filter::Router)),
///     json!({"name": "envoy.filters.http.router"}),
/// ];
/// let out = mesh::envoy_http_filters(filters, &code(Filter::Mesh));
/// assert_eq!(out.len(), 2);
/// assert_eq!(out[0]["name"], "meshwasm.mesh");
/// let config = out[0]["typed_config"]["config"]["configuration"]["value"].as_str().unwrap();
/// let config: serde_json::Value = serde_json::from_str(config).unwrap();
/// assert_eq!(config["authorization"]["action"], "ALLOW");
/// assert_eq!(config["virtualServices"][0]["http"].as_array().unwrap().len(), 2, "the router's");
/// ```
pub fn envoy_http_filters(filters: Vec<Value>, code: &Code) -> Vec<Value> {
    let mut parts = Parts::default();
    let mut out = Vec::with_capacity(filters.len());
    let mut at = None;
    for entry in filters {
        let filter = entry["name"].as_str().and_then(filter_named);
        let config = entry["typed_config"]["config"]["configuration"]["value"]
            .as_str()
            .and_then(|text| serde_json::from_str::<Value>(text).ok());
        let taken = match (filter, config) {
            (Some(filter), Some(config)) => parts.take(filter, config),
            _ => false,
        };
        if taken {
            at.get_or_insert(out.len());
        } else {
            out.push(entry);
        }
    }
    if let Some(at) = at {
        out.insert(
            at,
            http_filter(Filter::Mesh, &Value::Object(parts.doc), code),
        );
    }
    out
}

/// The phase order of Istio's WasmPlugins.
fn phase_rank(phase: &Value) -> u8 {
    match phase.as_str() {
        Some("AUTHN") => 0,
        Some("AUTHZ") => 1,
        Some("STATS") => 2,
        _ => 3,
    }
}

/// Istio manifests with each set of meshwasm WasmPlugins on the same
/// workloads and traffic as one mesh WasmPlugin; every other document as
/// it was.
///
/// # Examples
///
/// ```
/// use envoyfilter::render::{IstioOptions, istio_manifests, mesh};
/// use envoyfilter::translate::{translate, Options};
///
/// let t = translate(include_str!("../../../examples/virtual-services/fault-jason-abort.yaml"), &Options::default()).unwrap();
/// let options = IstioOptions::default();
/// let docs = mesh::istio_manifests(istio_manifests(&t, &options), &options);
/// let plugins: Vec<&serde_json::Value> = docs.iter().filter(|d| d["kind"] == "WasmPlugin").collect();
/// assert_eq!(plugins.len(), 1, "the fault filter and the router, as one");
/// assert_eq!(plugins[0]["spec"]["pluginName"], "meshwasm.mesh");
/// assert_eq!(plugins[0]["spec"]["url"], "oci://ghcr.io/meshwasm/meshwasm-mesh:latest");
/// assert!(plugins[0]["spec"]["pluginConfig"]["virtualServices"].is_array());
/// ```
pub fn istio_manifests(docs: Vec<Value>, options: &IstioOptions) -> Vec<Value> {
    // (where it applies, the members' indexes, in output order)
    let mut groups: Vec<(Value, Vec<usize>)> = Vec::new();
    for (i, doc) in docs.iter().enumerate() {
        let spec = &doc["spec"];
        let meshwasm = spec["pluginName"].as_str().and_then(filter_named).is_some();
        if doc["kind"] != "WasmPlugin" || !meshwasm || spec["type"] == "NETWORK" {
            continue;
        }
        let key = json!([
            doc["metadata"]["namespace"],
            spec["selector"],
            spec["targetRefs"],
            spec["match"],
        ]);
        match groups.iter_mut().find(|(k, _)| *k == key) {
            Some((_, members)) => members.push(i),
            None => groups.push((key, vec![i])),
        }
    }
    let mut merged: Vec<Option<Value>> = docs.into_iter().map(Some).collect();
    for (_, mut members) in groups {
        // The earliest in the chain first: its phase and priority are the mesh's.
        members.sort_by_key(|&i| {
            let spec = &merged[i]
                .as_ref()
                .map(|d| d["spec"].clone())
                .unwrap_or_default();
            (
                phase_rank(&spec["phase"]),
                -spec["priority"].as_i64().unwrap_or(0),
            )
        });
        let mut parts = Parts::default();
        let mut base: Option<Value> = None;
        for &i in &members {
            let Some(doc) = merged[i].as_ref() else {
                continue;
            };
            let spec = &doc["spec"];
            let Some(filter) = spec["pluginName"].as_str().and_then(filter_named) else {
                continue;
            };
            if parts.take(filter, spec["pluginConfig"].clone()) {
                let doc = merged[i].take();
                base = base.or(doc);
            }
        }
        let Some(mut plugin) = base else {
            continue;
        };
        let name = plugin["metadata"]["name"].as_str().unwrap_or_default();
        let first = plugin["spec"]["pluginName"].as_str().and_then(filter_named);
        let suffix = first
            .and_then(|f| name.strip_prefix(f.crate_name()))
            .unwrap_or("")
            .to_owned();
        plugin["metadata"]["name"] = json!(format!("{}{suffix}", Filter::Mesh.crate_name()));
        let spec = &mut plugin["spec"];
        spec["url"] = json!(options.url(Filter::Mesh));
        match options.sha256(Filter::Mesh) {
            Some(sha) => spec["sha256"] = json!(sha),
            None => {
                if let Some(o) = spec.as_object_mut() {
                    o.remove("sha256");
                }
            }
        }
        spec["pluginName"] = json!(Filter::Mesh.plugin_name());
        spec["pluginConfig"] = Value::Object(parts.doc);
        if let Some(slot) = members.first().copied() {
            merged[slot] = Some(plugin);
        }
    }
    merged.into_iter().flatten().collect()
}
