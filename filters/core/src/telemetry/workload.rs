//! Workloads: the local one, from Envoy's node metadata as Istio's
//! injector writes it, and peers, from the metadata they exchange.
//!
//! Istio names a workload by the node metadata keys `NAME` (the pod),
//! `NAMESPACE`, `WORKLOAD_NAME`, `CLUSTER_ID`, `MESH_ID`, `OWNER` and
//! `LABELS` (the pod's labels), and derives its telemetry labels from the
//! pod labels with fallbacks; [`Workload`] keeps what the labels need.

use crate::header_map::HeaderMap;
use crate::properties::Properties;
use crate::telemetry::proto::ProtoValue;

/// The pod label that names a workload's canonical service.
pub const CANONICAL_NAME_LABEL: &str = "service.istio.io/canonical-name";
/// The pod label that names its canonical revision.
pub const CANONICAL_REVISION_LABEL: &str = "service.istio.io/canonical-revision";

/// A workload, as telemetry labels name it.
///
/// # Examples
///
/// ```
/// use meshwasm_core::telemetry::workload::Workload;
///
/// let w = Workload::from_fields([("NAMESPACE", "shop"), ("WORKLOAD_NAME", "ratings-v1")], [
///     ("app", "ratings"),
///     ("version", "v1"),
/// ]);
/// assert_eq!(w.namespace, "shop");
/// assert_eq!(w.canonical_service(), "ratings");
/// assert_eq!(w.canonical_revision(), "v1");
/// assert_eq!(Workload::default().canonical_revision(), "latest");
/// ```
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct Workload {
    /// `NAME`: the pod's name.
    pub name: String,
    /// `NAMESPACE`.
    pub namespace: String,
    /// `WORKLOAD_NAME`: the Deployment (or other owner) name.
    pub workload: String,
    /// `CLUSTER_ID`.
    pub cluster: String,
    /// `MESH_ID`.
    pub mesh: String,
    /// `OWNER`: the owner's Kubernetes URL.
    pub owner: String,
    /// `LABELS`: the pod's labels, sorted by name.
    pub labels: Vec<(String, String)>,
}

impl Workload {
    /// A workload from metadata keys and pod labels; unknown keys are ignored.
    pub fn from_fields<'a>(
        fields: impl IntoIterator<Item = (&'a str, &'a str)>,
        labels: impl IntoIterator<Item = (&'a str, &'a str)>,
    ) -> Workload {
        let mut w = Workload::default();
        for (key, value) in fields {
            w.set(key, value);
        }
        w.labels = label_map(
            labels
                .into_iter()
                .map(|(k, v)| (k.to_owned(), v.to_owned())),
        );
        w
    }

    fn set(&mut self, key: &str, value: &str) {
        let slot = match key {
            "NAME" => &mut self.name,
            "NAMESPACE" => &mut self.namespace,
            "WORKLOAD_NAME" => &mut self.workload,
            "CLUSTER_ID" => &mut self.cluster,
            "MESH_ID" => &mut self.mesh,
            "OWNER" => &mut self.owner,
            _ => return,
        };
        value.clone_into(slot);
    }

    /// The local workload, from the node metadata Envoy serves as one
    /// property (`xds.node.metadata`, a Proxy-Wasm map whose `LABELS` value
    /// is a map too). An Envoy without metadata is a workload with no name.
    pub fn from_node(props: &mut (impl Properties + ?Sized)) -> Workload {
        let Some(bytes) = props.property(&["xds", "node", "metadata"]) else {
            return Workload::default();
        };
        let Ok(map) = HeaderMap::parse(bytes) else {
            return Workload::default();
        };
        let mut labels = Vec::new();
        let mut w = Workload::default();
        for (key, value) in map.iter() {
            if key == b"LABELS" {
                if let Ok(inner) = HeaderMap::parse(value.to_vec()) {
                    labels = label_map(inner.iter().filter_map(|(k, v)| {
                        Some((
                            std::str::from_utf8(k).ok()?.to_owned(),
                            std::str::from_utf8(v).ok()?.to_owned(),
                        ))
                    }));
                }
            } else if let (Ok(k), Ok(v)) = (std::str::from_utf8(key), std::str::from_utf8(value)) {
                w.set(k, v);
            }
        }
        w.labels = labels;
        w
    }

    /// A peer from the `Struct` it sent; fields that are not strings are ignored.
    pub fn from_struct(fields: &[(String, ProtoValue)]) -> Workload {
        let mut w = Workload::default();
        for (key, value) in fields {
            match (key.as_str(), value) {
                ("LABELS", ProtoValue::Struct(labels)) => {
                    w.labels = label_map(
                        labels
                            .iter()
                            .filter_map(|(k, v)| Some((k.clone(), v.as_str()?.to_owned()))),
                    );
                }
                (key, ProtoValue::String(value)) => w.set(key, value),
                _ => {}
            }
        }
        w
    }

    /// The `Struct` this workload sends its peers: the keys Istio's
    /// exchange carries, the empty ones left out.
    pub fn to_struct(&self) -> Vec<(String, ProtoValue)> {
        let mut fields: Vec<(String, ProtoValue)> = [
            ("NAME", &self.name),
            ("NAMESPACE", &self.namespace),
            ("WORKLOAD_NAME", &self.workload),
            ("CLUSTER_ID", &self.cluster),
            ("MESH_ID", &self.mesh),
            ("OWNER", &self.owner),
        ]
        .into_iter()
        .filter(|(_, v)| !v.is_empty())
        .map(|(k, v)| (k.to_owned(), ProtoValue::String(v.clone())))
        .collect();
        if !self.labels.is_empty() {
            let labels = self
                .labels
                .iter()
                .map(|(k, v)| (k.clone(), ProtoValue::String(v.clone())))
                .collect();
            fields.push(("LABELS".to_owned(), ProtoValue::Struct(labels)));
        }
        fields
    }

    /// A pod label.
    pub fn label(&self, name: &str) -> Option<&str> {
        self.labels
            .binary_search_by(|(k, _)| k.as_str().cmp(name))
            .ok()
            .map(|i| self.labels[i].1.as_str())
            .filter(|v| !v.is_empty())
    }

    /// `app.kubernetes.io/name`, else `app`, as Istio's proxy reads a peer.
    pub fn app(&self) -> Option<&str> {
        self.label("app.kubernetes.io/name")
            .or_else(|| self.label("app"))
    }

    /// `app.kubernetes.io/version`, else `version`.
    pub fn version(&self) -> Option<&str> {
        self.label("app.kubernetes.io/version")
            .or_else(|| self.label("version"))
    }

    /// The canonical service: its label, else the app, else the workload
    /// name, as istiod's injector fills the label in.
    pub fn canonical_service(&self) -> &str {
        self.label(CANONICAL_NAME_LABEL)
            .or_else(|| self.app())
            .or_else(|| Some(self.workload.as_str()).filter(|w| !w.is_empty()))
            .unwrap_or(super::labels::UNKNOWN)
    }

    /// The canonical revision: its label, else the version, else `latest`
    /// (istiod's rule, and Istio's value for a peer without one).
    pub fn canonical_revision(&self) -> &str {
        self.label(CANONICAL_REVISION_LABEL)
            .or_else(|| self.version())
            .unwrap_or("latest")
    }
}

/// Labels as a map: sorted by name, the last value of a repeated name kept.
fn label_map(labels: impl Iterator<Item = (String, String)>) -> Vec<(String, String)> {
    labels
        .collect::<std::collections::BTreeMap<_, _>>()
        .into_iter()
        .collect()
}
