//! Istio networking YAML (VirtualService, DestinationRule, Gateway) to the
//! meshwasm filters' configuration.
//!
//! The filters take a VirtualService `spec` as it is, so translation is
//! mostly about what lies around the spec:
//! - each VirtualService is checked by the same code the filters run
//!   (`meshwasm_core`), so a spec that translates is one the filters accept;
//! - `gateways` becomes placement: the mesh's sidecars, or the workloads a
//!   Gateway selects;
//! - a Gateway server's `tls.httpsRedirect` becomes the router's
//!   `httpsRedirect` for the VirtualServices bound to it;
//! - DestinationRule subsets are checked against the destinations that use
//!   them.
//!
//! - an `EnvoyFilter` that inserts Envoy's `local_ratelimit` or `ratelimit`
//!   (global) filter becomes the rate-limit filter's configuration
//!   ([`RateLimitFilter`]), checked by the filter's own compiler, and the
//!   rate limit service's cluster a [`ServiceCluster`] (see
//!   `local_rate_limit.rs`).
//!
//! - an `AuthorizationPolicy` becomes the header-match filter's
//!   configuration ([`AuthzFilter`]), the policies on the same workloads
//!   read together, checked by the filter's own compiler (see
//!   `authorization_policy.rs`); meshConfig's `extensionProviders`, from an
//!   `IstioOperator` or the `istio` ConfigMap, give CUSTOM policies their
//!   authorizers, and the authorizers' clusters an [`AuthzCluster`].
//!
//! - a `Telemetry` becomes the telemetry filter's configuration
//!   ([`TelemetryFilter`]), one per resource, checked by the filter's own
//!   compiler (see `telemetry.rs`).
//!
//! Whatever the filters cannot express is reported as a [`Finding`] with
//! its document, resource, field path and line: a warning, or an error in
//! strict mode. Nothing is dropped in silence.

use crate::yaml::{self, Document};
use meshwasm_core::fault::FaultPlan;
use meshwasm_core::plan::Plan as _;
use meshwasm_core::router::RouterPlan;
use meshwasm_core::virtual_service::{Destination, VirtualService};
use serde_json::{Map, Value, json};
use std::collections::BTreeMap;
use std::fmt;

mod authorization_policy;
pub mod destination_rule;
mod local_rate_limit;
mod telemetry;

use destination_rule::{ClusterPolicy, TrafficPolicy};

pub use authorization_policy::{AuthzCluster, AuthzFilter, ROOT_NAMESPACE};
pub use telemetry::TelemetryFilter;

pub use local_rate_limit::{
    GLOBAL_RATE_LIMIT_FILTER, GLOBAL_RATE_LIMIT_TYPE, LOCAL_RATE_LIMIT_FILTER,
    LOCAL_RATE_LIMIT_TYPE, Mode, RateLimitFilter, ServiceCluster,
};

/// Istio's API groups and versions this module reads.
const NETWORKING_VERSIONS: [&str; 3] = [
    "networking.istio.io/v1",
    "networking.istio.io/v1beta1",
    "networking.istio.io/v1alpha3",
];

/// How to translate.
#[derive(Debug, Clone)]
pub struct Options {
    /// Turn every warning into an error.
    pub strict: bool,
    /// Namespace of resources that name none.
    pub default_namespace: String,
}

impl Default for Options {
    fn default() -> Self {
        Options {
            strict: false,
            default_namespace: "default".into(),
        }
    }
}

/// Which Kubernetes object a finding or output comes from.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Source {
    /// The file, when the input has a name.
    pub file: Option<String>,
    /// Document number in the file, from 1.
    pub document: usize,
    /// Line where the document starts.
    pub line: usize,
    /// `kind`, or `?` when the document has none.
    pub kind: String,
    /// `metadata.name`, or `?`.
    pub name: String,
    /// `metadata.namespace`, if given.
    pub namespace: Option<String>,
}

impl fmt::Display for Source {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        if let Some(file) = &self.file {
            write!(f, "{file}: ")?;
        }
        write!(
            f,
            "document {} ({} {})",
            self.document, self.kind, self.name
        )
    }
}

/// Warning or error.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord)]
pub enum Severity {
    /// Said for the user's information (a deprecated form honoured
    /// exactly); `--strict` does not refuse it.
    Note,
    /// Reported; the output is still produced.
    Warning,
    /// No output is produced.
    Error,
}

/// Something about the input the user must know: where, and what.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Finding {
    /// Warning or error.
    pub severity: Severity,
    /// The resource, when the finding is about one.
    pub source: Option<Source>,
    /// Field path in the resource, e.g. `spec.http[0].timeout`; empty for the whole resource.
    pub path: String,
    /// Line of the field, when known.
    pub line: Option<usize>,
    /// What is wrong or how it is handled.
    pub message: String,
}

impl fmt::Display for Finding {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(match self.severity {
            Severity::Note => "note",
            Severity::Warning => "warning",
            Severity::Error => "error",
        })?;
        if let Some(source) = &self.source {
            write!(f, ": {source}")?;
        }
        match (&self.source, self.path.is_empty()) {
            (_, true) => {}
            // About a whole file: the path is the file's name.
            (None, false) => write!(f, ": {}", self.path)?,
            (Some(_), false) => write!(f, " {}", self.path)?,
        }
        if let Some(line) = self.line {
            write!(f, " (line {line})")?;
        }
        write!(f, ": {}", self.message)
    }
}

/// Where a filter configuration runs.
#[derive(Debug, Clone, PartialEq, Eq, PartialOrd, Ord)]
pub enum Placement {
    /// The sidecars of the mesh, on outbound (client) traffic, where Istio
    /// applies a VirtualService without `gateways` or with `mesh`.
    Mesh,
    /// The gateway pods a Gateway's `spec.selector` picks. Gateways with
    /// the same selector share one placement: their pods run one filter
    /// chain, so one router must hold all their VirtualServices.
    Gateway {
        /// The gateway pods' labels.
        selector: BTreeMap<String, String>,
    },
}

impl Placement {
    /// A name part for generated resources: `mesh`, or the gateway pods'
    /// label values (`ingressgateway` for `istio: ingressgateway`).
    pub fn slug(&self) -> String {
        match self {
            Placement::Mesh => "mesh".into(),
            Placement::Gateway { selector } => {
                let joined = selector.values().cloned().collect::<Vec<_>>().join("-");
                let label: String = joined
                    .to_ascii_lowercase()
                    .chars()
                    .map(|c| if c.is_ascii_alphanumeric() { c } else { '-' })
                    .collect();
                match label.trim_matches('-') {
                    "" => "gateway".into(),
                    label => label.to_owned(),
                }
            }
        }
    }
}

/// A destination the router may choose, as Istio names it.
#[derive(Debug, Clone, PartialEq, Eq, PartialOrd, Ord)]
pub struct Upstream {
    /// Service host as written.
    pub host: String,
    /// Subset, if any.
    pub subset: Option<String>,
    /// Port, if any.
    pub port: Option<u32>,
    /// True for a mirror target: the filter calls it itself.
    pub mirror: bool,
}

impl Upstream {
    /// The core's destination type, for cluster naming.
    pub fn destination(&self) -> Destination {
        Destination {
            host: self.host.clone(),
            subset: self.subset.clone(),
            port: self
                .port
                .map(|number| meshwasm_core::virtual_service::PortSelector { number }),
        }
    }
}

/// One VirtualService, ready for the filters.
#[derive(Debug, Clone)]
pub struct Service {
    /// The resource it comes from.
    pub source: Source,
    /// Its namespace: `metadata.namespace`, else the default namespace.
    pub namespace: String,
    /// The spec the filters get: the user's, plus meshwasm options the
    /// translation derived (such as `httpsRedirect` from a Gateway).
    pub spec: Value,
    /// The spec's `hosts`.
    pub hosts: Vec<String>,
    /// The spec's `gateways`, as written.
    pub gateways: Vec<String>,
    /// Whether some route has a `fault`, so the fault filter is needed.
    pub has_faults: bool,
    /// Where it applies.
    pub placements: Vec<Placement>,
    /// The destinations and mirror targets its routes name, in order, without repeats.
    pub upstreams: Vec<Upstream>,
}

/// A DestinationRule, as far as translation needs it.
#[derive(Debug, Clone)]
pub struct SubsetRule {
    /// The resource.
    pub source: Source,
    /// `spec.host`.
    pub host: String,
    /// Its namespace: `metadata.namespace`, else the default namespace.
    pub namespace: String,
    /// Subset name to its labels.
    pub subsets: BTreeMap<String, BTreeMap<String, String>>,
    /// `spec.trafficPolicy`.
    pub traffic_policy: Option<TrafficPolicy>,
    /// Each subset's `trafficPolicy`, by subset name.
    pub subset_policies: BTreeMap<String, TrafficPolicy>,
}

impl SubsetRule {
    /// Whether the rule is for `host` as a resource in `namespace` names
    /// it: hosts compared as Istio resolves them, a short name in the
    /// namespace of the resource that writes it.
    pub fn covers(&self, host: &str, namespace: &str) -> bool {
        fqdn(&self.host, &self.namespace, CLUSTER_DOMAIN).eq_ignore_ascii_case(&fqdn(
            host,
            namespace,
            CLUSTER_DOMAIN,
        ))
    }

    /// The traffic policy of the cluster for `upstream`, as istiod merges
    /// it; `None` when neither the rule nor the subset has one.
    pub fn policy_for(&self, upstream: &Upstream) -> Option<ClusterPolicy> {
        let subset = upstream
            .subset
            .as_ref()
            .and_then(|s| self.subset_policies.get(s));
        if self.traffic_policy.is_none() && subset.is_none() {
            return None;
        }
        Some(destination_rule::merged(
            self.traffic_policy.as_ref(),
            subset,
            upstream.port,
        ))
    }
}

/// One cluster of a ServiceEntry: a host and port, and where it is.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ExternalCluster {
    /// The host, as the ServiceEntry writes it.
    pub host: String,
    /// The service port.
    pub port: u16,
    /// The endpoints: the entry's `endpoints`, else the host itself (DNS).
    pub endpoints: Vec<(String, u16)>,
    /// Resolved by DNS (`resolution: DNS`), else static addresses.
    pub dns: bool,
}

/// The result of a translation that succeeded.
#[derive(Debug, Clone)]
pub struct Translation {
    /// Every VirtualService, in input order.
    pub services: Vec<Service>,
    /// Every DestinationRule.
    pub destination_rules: Vec<SubsetRule>,
    /// The clusters of every ServiceEntry plain Envoy can render.
    pub external: Vec<ExternalCluster>,
    /// The rate limits of the EnvoyFilters that insert Envoy's
    /// `local_ratelimit` or `ratelimit`, in input order, for the rate-limit
    /// filter.
    pub rate_limits: Vec<RateLimitFilter>,
    /// The clusters of the rate limit services the global rate limits call,
    /// each once.
    pub service_clusters: Vec<ServiceCluster>,
    /// The header-match filters of the AuthorizationPolicies, one per set
    /// of workloads, in input order.
    pub authz: Vec<AuthzFilter>,
    /// The clusters of the HTTP authorizers the CUSTOM policies call, each
    /// once.
    pub authz_clusters: Vec<AuthzCluster>,
    /// The telemetry filters of the Telemetry resources, one per resource,
    /// in input order.
    pub telemetry: Vec<TelemetryFilter>,
    /// Every Istio resource passed through untouched (Gateways, DestinationRules), for Istio output.
    pub passthrough: Vec<Value>,
    /// Warnings (never errors: with errors there is no translation).
    pub findings: Vec<Finding>,
}

/// A translation refused: every finding, errors first.
#[derive(Debug, Clone, thiserror::Error)]
#[error("{}", render_findings(.findings))]
pub struct Rejected {
    /// All findings, errors and warnings.
    pub findings: Vec<Finding>,
}

fn render_findings(findings: &[Finding]) -> String {
    findings
        .iter()
        .map(ToString::to_string)
        .collect::<Vec<_>>()
        .join("\n")
}

impl Translation {
    /// The one header-match configuration plain Envoy gets: the policies
    /// of every [`AuthzFilter`], since it has one listener for all
    /// workloads. `None` without AuthorizationPolicies.
    pub fn authz_config_everywhere(&self) -> Option<Value> {
        authorization_policy::merged_config(&self.authz)
    }

    /// Every placement any service has, each once, mesh first.
    pub fn placements(&self) -> Vec<Placement> {
        let mut all: Vec<Placement> = self
            .services
            .iter()
            .flat_map(|s| s.placements.iter().cloned())
            .collect();
        all.sort();
        all.dedup();
        all
    }

    /// The router's plugin configuration at `placement`: the spec of the
    /// service placed there, or `{"virtualServices": [...]}` for several.
    /// `None` when no service is placed there.
    pub fn router_config(&self, placement: &Placement) -> Option<Value> {
        specs_value(
            self.services
                .iter()
                .filter(|s| s.placements.contains(placement))
                .map(|s| s.spec.clone())
                .collect(),
        )
    }

    /// The fault filter's plugin configuration at `placement`: only the
    /// services with faults. `None` when none has faults.
    pub fn fault_config(&self, placement: &Placement) -> Option<Value> {
        specs_value(
            self.services
                .iter()
                .filter(|s| s.has_faults && s.placements.contains(placement))
                .map(|s| s.spec.clone())
                .collect(),
        )
    }
}

/// The resource with its namespace written out, so that the output applies
/// as a whole (`kubectl apply -f`) whatever namespace kubectl defaults to.
fn in_namespace(resource: &Value, default_namespace: &str) -> Value {
    let mut resource = resource.clone();
    if let Some(Value::Object(metadata)) = resource.get_mut("metadata") {
        metadata
            .entry("namespace")
            .or_insert_with(|| Value::String(default_namespace.to_owned()));
    }
    resource
}

fn specs_value(mut specs: Vec<Value>) -> Option<Value> {
    match specs.len() {
        0 => None,
        1 => specs.pop(),
        _ => Some(json!({ meshwasm_core::virtual_service::LIST_KEY: specs })),
    }
}

/// Translates a multi-document YAML stream.
///
/// # Errors
///
/// [`Rejected`] with every finding when the YAML does not parse, a
/// document is not a translatable Istio resource, a spec is invalid, or
/// (in strict mode) anything would be lost.
///
/// # Examples
///
/// ```
/// use envoyfilter::translate::{translate, Options, Placement};
///
/// let yaml = "apiVersion: networking.istio.io/v1\nkind: VirtualService\nmetadata: {name: reviews}\nspec:\n  hosts: [reviews]\n  http:\n  - route:\n    - destination: {host: reviews, subset: v1}\n";
/// let t = translate(yaml, &Options::default()).unwrap();
/// assert_eq!(t.router_config(&Placement::Mesh).unwrap()["hosts"][0], "reviews");
/// assert!(t.fault_config(&Placement::Mesh).is_none());
///
/// let err = translate(&yaml.replace("subset: v1}", "subset: v1}\n      weight: -1"), &Options::default()).unwrap_err();
/// assert!(err.to_string().contains("spec.http[0].route (line 7): weight -1 is negative"), "{err}");
/// ```
pub fn translate(text: &str, options: &Options) -> Result<Translation, Rejected> {
    translate_files(&[(String::new(), text.to_owned())], options)
}

/// As [`translate`], over several named files read as one input (a
/// Gateway in one file serves VirtualServices in another); findings name
/// the file. An empty name stands for unnamed input.
///
/// # Errors
///
/// As [`translate`].
pub fn translate_files(
    files: &[(String, String)],
    options: &Options,
) -> Result<Translation, Rejected> {
    let mut cx = Context {
        options,
        findings: Vec::new(),
        file: None,
    };
    let mut loaded = Vec::with_capacity(files.len());
    for (name, text) in files {
        let file = (!name.is_empty()).then(|| name.clone());
        match yaml::load(text) {
            Ok(documents) => {
                let documents: Vec<Document> = documents
                    .into_iter()
                    .flat_map(Document::list_items)
                    .collect();
                if documents.is_empty() {
                    cx.file = file.clone();
                    cx.error(None, None, "", "no documents: expected Istio VirtualService, DestinationRule or Gateway resources".into());
                }
                loaded.push((file, documents));
            }
            Err(e) => cx.findings.push(Finding {
                severity: Severity::Error,
                source: None,
                path: file.clone().unwrap_or_default(),
                line: Some(e.position.line),
                message: format!(
                    "not valid YAML at column {}: {}",
                    e.position.column, e.message
                ),
            }),
        }
    }
    let mut services = Vec::new();
    let mut gateways = Vec::new();
    let mut destination_rules = Vec::new();
    let mut external = Vec::new();
    let mut passthrough = Vec::new();
    let mut envoy_filters = Vec::new();
    let mut authorization_policies = Vec::new();
    let mut mesh_configs = Vec::new();
    let mut telemetries = Vec::new();
    for (file, documents) in &loaded {
        cx.file = file.clone();
        for doc in documents {
            let Some(source) = cx.identify(doc) else {
                continue;
            };
            match source.kind.as_str() {
                "VirtualService" => {
                    if let Some(service) = cx.virtual_service(doc, source) {
                        services.push((doc, service));
                    }
                }
                "DestinationRule" => {
                    if let Some(rule) = cx.destination_rule(doc, source) {
                        destination_rules.push(rule);
                    }
                    passthrough.push(in_namespace(&doc.value, &options.default_namespace));
                }
                "Gateway" => {
                    gateways.push(cx.gateway(doc, source));
                    passthrough.push(in_namespace(&doc.value, &options.default_namespace));
                }
                "ServiceEntry" => {
                    external.extend(cx.service_entry(doc, &source));
                    passthrough.push(in_namespace(&doc.value, &options.default_namespace));
                }
                "EnvoyFilter" => envoy_filters.push((doc, source)),
                "AuthorizationPolicy" => authorization_policies.push((doc, source)),
                "Telemetry" => telemetries.push((doc, source)),
                authorization_policy::ISTIO_OPERATOR | "ConfigMap" => {
                    mesh_configs.push((doc, source));
                }
                _ => {}
            }
        }
    }
    // Read together: EnvoyFilters on the same workloads make one chain.
    let (rate_limits, service_clusters) = cx.rate_limit_envoy_filters(&envoy_filters);
    // Read together: Istio evaluates every policy on a workload at once.
    let gateway_selectors: Vec<BTreeMap<String, String>> =
        gateways.iter().map(|g| g.selector.clone()).collect();
    // meshConfig's extensionProviders: the authorizers CUSTOM policies name.
    let providers = cx.extension_providers(&mesh_configs);
    let (authz, authz_clusters) =
        cx.authorization_policies(&authorization_policies, &gateway_selectors, &providers);
    let telemetry = cx.telemetries(&telemetries);
    let mut out = Vec::with_capacity(services.len());
    for (doc, mut service) in services {
        cx.file = service.source.file.clone();
        cx.place(doc, &mut service, &gateways);
        cx.check_subsets(doc, &service, &destination_rules);
        out.push(service);
    }
    let mut findings = cx.findings;
    if options.strict {
        for f in findings
            .iter_mut()
            .filter(|f| f.severity == Severity::Warning)
        {
            f.severity = Severity::Error;
        }
    }
    if findings.iter().any(|f| f.severity == Severity::Error) {
        findings.sort_by_key(|f| std::cmp::Reverse(f.severity));
        return Err(Rejected { findings });
    }
    Ok(Translation {
        services: out,
        destination_rules,
        external,
        rate_limits,
        service_clusters,
        authz,
        authz_clusters,
        telemetry,
        passthrough,
        findings,
    })
}

/// A Gateway as placement needs it.
struct GatewayInfo {
    name: String,
    namespace: String,
    selector: BTreeMap<String, String>,
    /// Hosts of servers with `tls.httpsRedirect`.
    https_redirect_hosts: Vec<String>,
}

struct Context<'o> {
    options: &'o Options,
    findings: Vec<Finding>,
    /// The file being read, for findings about it as a whole.
    file: Option<String>,
}

impl Context<'_> {
    fn push(
        &mut self,
        severity: Severity,
        source: Option<&Source>,
        doc: Option<&Document>,
        path: &str,
        message: String,
    ) {
        let line = doc.and_then(|d| d.position(path)).map(|p| p.line);
        let path = match (source, &self.file) {
            (None, Some(file)) if path.is_empty() => file.clone(),
            _ => path.to_owned(),
        };
        self.findings.push(Finding {
            severity,
            source: source.cloned(),
            path,
            line: line.or(doc.map(|d| d.line)),
            message,
        });
    }

    fn error(
        &mut self,
        source: Option<&Source>,
        doc: Option<&Document>,
        path: &str,
        message: String,
    ) {
        self.push(Severity::Error, source, doc, path, message);
    }

    fn warn(&mut self, source: &Source, doc: &Document, path: &str, message: String) {
        self.push(Severity::Warning, Some(source), Some(doc), path, message);
    }

    /// The warning for an Istio resource the filters do not need.
    fn not_translated(&mut self, doc: &Document, source: &Source) {
        let kind = &source.kind;
        self.push(Severity::Warning, Some(source), Some(doc), "kind", format!("{kind} is not translated; the filters only need VirtualService, DestinationRule, Gateway, ServiceEntry, AuthorizationPolicy and Telemetry, so keep applying it to Istio as it is"));
    }

    /// Kind, name and namespace; `None` (with an error) for a document this
    /// module does not translate.
    fn identify(&mut self, doc: &Document) -> Option<Source> {
        let text = |v: &Value| v.as_str().map(str::to_owned);
        let kind = text(&doc.value["kind"]);
        let api_version = text(&doc.value["apiVersion"]);
        let source = Source {
            file: self.file.clone(),
            document: doc.number,
            line: doc.line,
            kind: kind.clone().unwrap_or_else(|| "?".into()),
            name: text(&doc.value["metadata"]["name"]).unwrap_or_else(|| "?".into()),
            namespace: text(&doc.value["metadata"]["namespace"]),
        };
        if !doc.value.is_object() {
            self.error(Some(&source), Some(doc), "", "a document must be a Kubernetes resource (a mapping with apiVersion, kind and metadata)".into());
            return None;
        }
        let Some(kind) = kind else {
            self.error(
                Some(&source),
                Some(doc),
                "kind",
                "is required: VirtualService, DestinationRule or Gateway".into(),
            );
            return None;
        };
        let Some(api_version) = api_version else {
            self.error(
                Some(&source),
                Some(doc),
                "apiVersion",
                format!("is required, e.g. networking.istio.io/v1 for a {kind}"),
            );
            return None;
        };
        let security = authorization_policy::SECURITY_VERSIONS.contains(&api_version.as_str());
        let istio = NETWORKING_VERSIONS.contains(&api_version.as_str());
        let telemetry = telemetry::TELEMETRY_VERSIONS.contains(&api_version.as_str());
        // meshConfig, for its extensionProviders: read with the policies.
        if authorization_policy::is_mesh_config(&kind, &api_version, &doc.value) {
            return Some(source);
        }
        match kind.as_str() {
            "AuthorizationPolicy" if security => {}
            "Telemetry" if telemetry => {}
            "Telemetry" => {
                self.error(
                    Some(&source),
                    Some(doc),
                    "apiVersion",
                    format!(
                        "{api_version:?} is not an Istio telemetry version; use one of {}",
                        telemetry::TELEMETRY_VERSIONS.join(", ")
                    ),
                );
                return None;
            }
            "AuthorizationPolicy" => {
                self.error(
                    Some(&source),
                    Some(doc),
                    "apiVersion",
                    format!(
                        "{api_version:?} is not an Istio security version; use one of {}",
                        authorization_policy::SECURITY_VERSIONS.join(", ")
                    ),
                );
                return None;
            }
            // PeerAuthentication, RequestAuthentication: Istio's.
            _ if security => {
                self.not_translated(doc, &source);
                return None;
            }
            // An EnvoyFilter is translated when it is about Envoy's rate
            // limits; any other is kept for Istio, as other kinds are.
            "EnvoyFilter" if istio && !local_rate_limit::mentions_rate_limit(&doc.value) => {
                self.not_translated(doc, &source);
                return None;
            }
            "VirtualService" | "DestinationRule" | "Gateway" | "ServiceEntry" | "EnvoyFilter"
                if istio => {}
            "VirtualService" | "DestinationRule" | "Gateway" | "ServiceEntry" => {
                self.error(
                    Some(&source),
                    Some(doc),
                    "apiVersion",
                    format!(
                        "{api_version:?} is not an Istio networking version; use one of {}",
                        NETWORKING_VERSIONS.join(", ")
                    ),
                );
                return None;
            }
            _ if istio => {
                self.not_translated(doc, &source);
                return None;
            }
            _ => {
                self.error(Some(&source), Some(doc), "kind", format!("unknown kind {kind:?} ({api_version}): envoyfilter translates Istio's VirtualService, DestinationRule and Gateway"));
                return None;
            }
        }
        if source.name == "?" {
            self.error(
                Some(&source),
                Some(doc),
                "metadata.name",
                "is required".into(),
            );
            return None;
        }
        if !doc.value["spec"].is_object() {
            self.error(
                Some(&source),
                Some(doc),
                "spec",
                "is required and must be a mapping".into(),
            );
            return None;
        }
        Some(source)
    }

    fn virtual_service(&mut self, doc: &Document, source: Source) -> Option<Service> {
        let spec = &doc.value["spec"];
        let parsed: Result<VirtualService, _> = serde_path_to_error::deserialize(spec);
        let vs = match parsed {
            Ok(vs) => vs,
            Err(e) => {
                let path = format!("spec.{}", e.path());
                let path = path.trim_end_matches('.').to_owned();
                self.error(Some(&source), Some(doc), &path, e.into_inner().to_string());
                return None;
            }
        };
        // The filters' own compilers: whatever they refuse, Envoy would refuse.
        let router = RouterPlan::compile(&vs);
        let fault = FaultPlan::compile(&vs);
        let (router, fault) = match (router, fault) {
            (Ok(r), Ok(f)) => (r, f),
            (Err(e), _) | (_, Err(e)) => {
                let path = spec_path(&e.path);
                self.error(Some(&source), Some(doc), &path, e.kind.to_string());
                return None;
            }
        };
        let mut seen = Vec::new();
        for note in router.notes().iter().chain(fault.notes()) {
            // Handled here: the fault filter is deployed next to the router,
            // and `gateways` decides placement.
            let handled = note.path == "gateways" || note.path.ends_with(".fault");
            if handled || seen.contains(note) {
                continue;
            }
            seen.push(note.clone());
            let severity = if note.deprecated {
                Severity::Note
            } else {
                Severity::Warning
            };
            let path = spec_path(&note.path);
            self.push(
                severity,
                Some(&source),
                Some(doc),
                &path,
                note.message.to_owned(),
            );
        }
        if !vs.export_to.is_empty() {
            self.warn(
                &source,
                doc,
                "spec.exportTo",
                "visibility is Istio's; the filters apply wherever they are deployed".into(),
            );
        }
        let has_faults = vs.http.iter().any(|r| r.fault.is_some());
        let mut upstreams: Vec<Upstream> = Vec::new();
        let mut add = |d: &Destination, mirror: bool| {
            let u = Upstream {
                host: d.host.clone(),
                subset: d.subset.clone(),
                port: d.port.as_ref().map(|p| p.number),
                mirror,
            };
            if !upstreams.contains(&u) {
                upstreams.push(u);
            }
        };
        for (i, route) in vs.http.iter().enumerate() {
            let mirrors = route
                .mirror
                .iter()
                .map(|m| (format!("spec.http[{i}].mirror"), m));
            let listed = route.mirrors.iter().enumerate().map(|(j, m)| {
                (
                    format!("spec.http[{i}].mirrors[{j}].destination"),
                    &m.destination,
                )
            });
            for (path, m) in mirrors.chain(listed) {
                if m.port.is_none() {
                    self.warn(&source, doc, &path, "has no port.number: in Istio the filter sends the copy to the Envoy cluster outbound|PORT|SUBSET|FQDN, which needs the service port, so the copy would fail".into());
                }
            }
        }
        for route in &vs.http {
            for d in &route.route {
                add(&d.destination, false);
            }
            if let Some(m) = &route.mirror {
                add(m, true);
            }
            for m in &route.mirrors {
                add(&m.destination, true);
            }
        }
        Some(Service {
            namespace: source
                .namespace
                .clone()
                .unwrap_or_else(|| self.options.default_namespace.clone()),
            source,
            spec: spec.clone(),
            hosts: vs.hosts.clone(),
            gateways: vs.gateways.clone(),
            has_faults,
            placements: Vec::new(),
            upstreams,
        })
    }

    fn destination_rule(&mut self, doc: &Document, source: Source) -> Option<SubsetRule> {
        let spec = &doc.value["spec"];
        let Some(host) = spec["host"].as_str() else {
            self.error(Some(&source), Some(doc), "spec.host", "is required".into());
            return None;
        };
        let mut subsets = BTreeMap::new();
        let mut subset_policies = BTreeMap::new();
        for (i, subset) in spec["subsets"].as_array().into_iter().flatten().enumerate() {
            let Some(name) = subset["name"].as_str() else {
                self.error(
                    Some(&source),
                    Some(doc),
                    &format!("spec.subsets[{i}].name"),
                    "is required".into(),
                );
                continue;
            };
            let labels = subset["labels"]
                .as_object()
                .into_iter()
                .flatten()
                .map(|(k, v)| (k.clone(), v.as_str().unwrap_or_default().to_owned()))
                .collect();
            subsets.insert(name.to_owned(), labels);
            let path = format!("spec.subsets[{i}].trafficPolicy");
            if let Some(policy) = self.traffic_policy(doc, &source, &subset["trafficPolicy"], &path)
            {
                subset_policies.insert(name.to_owned(), policy);
            }
        }
        let traffic_policy =
            self.traffic_policy(doc, &source, &spec["trafficPolicy"], "spec.trafficPolicy");
        let namespace = source
            .namespace
            .clone()
            .unwrap_or_else(|| self.options.default_namespace.clone());
        Some(SubsetRule {
            source,
            host: host.to_owned(),
            namespace,
            subsets,
            traffic_policy,
            subset_policies,
        })
    }

    /// A `trafficPolicy` at `path` (`Null`: none), read by Istio's schema;
    /// what plain Envoy cannot render is said, and a field Istio does not
    /// have is an error at its path.
    fn traffic_policy(
        &mut self,
        doc: &Document,
        source: &Source,
        value: &Value,
        path: &str,
    ) -> Option<TrafficPolicy> {
        if value.is_null() {
            return None;
        }
        let policy: TrafficPolicy = match serde_path_to_error::deserialize(value) {
            Ok(policy) => policy,
            Err(e) => {
                let at = format!("{path}.{}", e.path());
                let at = at.trim_end_matches('.').to_owned();
                self.error(Some(source), Some(doc), &at, e.into_inner().to_string());
                return None;
            }
        };
        for (at, why) in destination_rule::unsupported(&policy, path) {
            self.warn(source, doc, &at, why);
        }
        Some(policy)
    }

    /// The clusters of a ServiceEntry: one per host and port, for DNS and
    /// STATIC resolution; what plain Envoy cannot render is said.
    fn service_entry(&mut self, doc: &Document, source: &Source) -> Vec<ExternalCluster> {
        let spec = &doc.value["spec"];
        let text = |v: &Value| v.as_str().map(str::to_owned);
        let hosts: Vec<String> = spec["hosts"]
            .as_array()
            .into_iter()
            .flatten()
            .filter_map(text)
            .collect();
        if hosts.is_empty() {
            self.error(Some(source), Some(doc), "spec.hosts", "is required".into());
            return Vec::new();
        }
        let resolution = spec["resolution"].as_str().unwrap_or("NONE");
        let dns = match resolution {
            "DNS" | "DNS_ROUND_ROBIN" => true,
            "STATIC" => false,
            _ => {
                self.warn(source, doc, "spec.resolution", format!("resolution {resolution} (Envoy's original destination) is not rendered in the plain Envoy output; Istio gets the ServiceEntry as it is"));
                return Vec::new();
            }
        };
        if spec.get("workloadSelector").is_some() {
            self.warn(source, doc, "spec.workloadSelector", "selects Kubernetes workloads, which plain Envoy cannot list; write the addresses as endpoints".into());
            return Vec::new();
        }
        let endpoints = spec["endpoints"].as_array().cloned().unwrap_or_default();
        if !dns && endpoints.is_empty() {
            self.warn(
                source,
                doc,
                "spec.endpoints",
                "resolution STATIC needs endpoints; no cluster is rendered".into(),
            );
            return Vec::new();
        }
        let mut out = Vec::new();
        for (i, port) in spec["ports"].as_array().into_iter().flatten().enumerate() {
            let Some(number) = port["number"].as_u64().and_then(|n| u16::try_from(n).ok()) else {
                self.error(
                    Some(source),
                    Some(doc),
                    &format!("spec.ports[{i}].number"),
                    "is required: a port in 1..=65535".into(),
                );
                continue;
            };
            let target = port["targetPort"]
                .as_u64()
                .and_then(|n| u16::try_from(n).ok())
                .unwrap_or(number);
            let name = port["name"].as_str().unwrap_or_default();
            for host in hosts.iter().filter(|h| !h.contains('*')) {
                let endpoints = if endpoints.is_empty() {
                    vec![(host.clone(), target)]
                } else {
                    endpoints
                        .iter()
                        .filter_map(|e| {
                            let port = e["ports"][name]
                                .as_u64()
                                .and_then(|n| u16::try_from(n).ok())
                                .unwrap_or(target);
                            Some((text(&e["address"])?, port))
                        })
                        .collect()
                };
                out.push(ExternalCluster {
                    host: host.clone(),
                    port: number,
                    endpoints,
                    dns,
                });
            }
        }
        if hosts.iter().any(|h| h.contains('*')) {
            self.warn(source, doc, "spec.hosts", "a wildcard host names no one address; plain Envoy gets clusters for the other hosts only".into());
        }
        out
    }

    fn gateway(&mut self, doc: &Document, source: Source) -> GatewayInfo {
        let spec = &doc.value["spec"];
        let selector: BTreeMap<String, String> = spec["selector"]
            .as_object()
            .into_iter()
            .flatten()
            .map(|(k, v)| (k.clone(), v.as_str().unwrap_or_default().to_owned()))
            .collect();
        if selector.is_empty() {
            self.warn(&source, doc, "spec.selector", "is empty, so its WasmPlugins would select every workload in the namespace; name the gateway pods' labels".into());
        }
        let mut https_redirect_hosts = Vec::new();
        for (i, server) in spec["servers"].as_array().into_iter().flatten().enumerate() {
            let Some(tls) = server["tls"].as_object() else {
                continue;
            };
            for (field, value) in tls {
                let path = format!("spec.servers[{i}].tls.{field}");
                if field == "httpsRedirect" {
                    if value.as_bool() == Some(true) {
                        https_redirect_hosts.extend(
                            server["hosts"]
                                .as_array()
                                .into_iter()
                                .flatten()
                                .filter_map(|h| h.as_str())
                                .map(|h| h.rsplit_once('/').map_or(h, |(_, host)| host).to_owned()),
                        );
                    }
                } else {
                    self.warn(&source, doc, &path, "TLS is the Gateway's listener setting; keep applying the Gateway to Istio (plain Envoy output has no TLS listener)".into());
                }
            }
        }
        GatewayInfo {
            namespace: source
                .namespace
                .clone()
                .unwrap_or_else(|| self.options.default_namespace.clone()),
            name: source.name.clone(),
            selector,
            https_redirect_hosts,
        }
    }

    /// Placement from `gateways`, and the Gateways' HTTPS redirects.
    fn place(&mut self, doc: &Document, service: &mut Service, gateways: &[GatewayInfo]) {
        let own_namespace = service.namespace.clone();
        if service.gateways.is_empty() {
            service.placements.push(Placement::Mesh);
        }
        let mut redirect = false;
        for (i, reference) in service.gateways.clone().iter().enumerate() {
            if reference == "mesh" {
                service.placements.push(Placement::Mesh);
                continue;
            }
            let (namespace, name) = match reference.split_once('/') {
                Some((ns, name)) => (ns.to_owned(), name.to_owned()),
                None => (own_namespace.clone(), reference.clone()),
            };
            let found = gateways
                .iter()
                .find(|g| g.name == name && g.namespace == namespace);
            let selector = match found {
                Some(g) => {
                    redirect |= g.https_redirect_hosts.iter().any(|h| {
                        h == "*"
                            || service
                                .hosts
                                .iter()
                                .any(|s| s == "*" || s.eq_ignore_ascii_case(h))
                    });
                    g.selector.clone()
                }
                None => {
                    self.warn(&service.source, doc, &format!("spec.gateways[{i}]"), format!("Gateway {namespace}/{name} is not in the input, so its pods' labels are unknown; its WasmPlugins select istio: ingressgateway"));
                    BTreeMap::from([("istio".to_owned(), "ingressgateway".to_owned())])
                }
            };
            let placement = Placement::Gateway { selector };
            if !service.placements.contains(&placement) {
                service.placements.push(placement);
            }
        }
        if redirect {
            let options = service
                .spec
                .as_object_mut()
                .map(|spec| spec.entry("meshwasm").or_insert_with(|| json!({})));
            if let Some(Value::Object(meshwasm)) = options {
                let router = meshwasm
                    .entry("router")
                    .or_insert_with(|| Value::Object(Map::new()));
                if let Value::Object(router) = router {
                    router.insert("httpsRedirect".into(), Value::Bool(true));
                }
            }
        }
    }

    fn check_subsets(&mut self, doc: &Document, service: &Service, rules: &[SubsetRule]) {
        for upstream in &service.upstreams {
            let Some(subset) = &upstream.subset else {
                continue;
            };
            let rule = rules
                .iter()
                .find(|r| r.covers(&upstream.host, &service.namespace));
            if let Some(rule) = rule
                && !rule.subsets.contains_key(subset)
            {
                let path = find_destination_path(&service.spec, upstream)
                    .unwrap_or_else(|| "spec.http".into());
                self.warn(&service.source, doc, &path, format!("subset {subset:?} of {} is not defined by DestinationRule {} (it defines {}); Istio answers 503 for it", upstream.host, rule.source.name, rule.subsets.keys().cloned().collect::<Vec<_>>().join(", ")));
            }
        }
    }
}

/// The mesh's DNS domain the subset check resolves short names in.
const CLUSTER_DOMAIN: &str = "cluster.local";

/// A host as Istio resolves it in `namespace`: a name without a dot is a
/// Kubernetes service there (`reviews.NAMESPACE.svc.DOMAIN`); any other
/// name is taken as written.
pub(crate) fn fqdn(host: &str, namespace: &str, domain: &str) -> String {
    if host.contains('.') {
        host.to_owned()
    } else {
        format!("{host}.{namespace}.svc.{domain}")
    }
}

/// `http[0].route` in a spec → `spec.http[0].route` in the resource.
fn spec_path(path: &str) -> String {
    if path.is_empty() {
        "spec".into()
    } else {
        format!("spec.{path}")
    }
}

/// The path of the first `destination` in the spec naming `upstream`.
fn find_destination_path(spec: &Value, upstream: &Upstream) -> Option<String> {
    let same = |d: &Value| {
        d["host"].as_str() == Some(upstream.host.as_str())
            && d["subset"].as_str() == upstream.subset.as_deref()
    };
    for (i, route) in spec["http"].as_array()?.iter().enumerate() {
        for (j, d) in route["route"].as_array().into_iter().flatten().enumerate() {
            if same(&d["destination"]) {
                return Some(format!("spec.http[{i}].route[{j}].destination.subset"));
            }
        }
        if same(&route["mirror"]) {
            return Some(format!("spec.http[{i}].mirror.subset"));
        }
    }
    None
}
