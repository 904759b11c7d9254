//! Istio AuthorizationPolicies (`security.istio.io/v1` and `v1beta1`) made
//! the header-match filter's configuration.
//!
//! The filter takes AuthorizationPolicy specs as they are, so translation
//! is placement and grouping: Istio evaluates every policy that selects a
//! workload together (any DENY denies; with any ALLOW, one must match), so
//! the policies of one namespace with the same `selector` (or the same
//! `targetRefs`) become one filter, `{"policies": [...]}`, whose WasmPlugin
//! selects what they select. `selector` and `targetRef(s)` leave the specs
//! and become the WasmPlugin's; a policy in the root namespace without
//! either applies to the whole mesh, as Istio applies it, and its
//! WasmPlugin stays there without a selector, which Istio applies to every
//! workload. meshwasm's own options ride in `spec.meshwasm`, as the
//! router's do in a VirtualService: `headerRules`, and the filter's
//! settings (`pathNormalization`, `headersWithUnderscores`, `denyStatus`).
//!
//! Each group is compiled by the filter's own code ([`AuthzPlan`]), so an
//! error names the field by its path in the YAML and its line. CUSTOM
//! policies name their authorizers in meshConfig's `extensionProviders`,
//! read from an `IstioOperator` (`spec.meshConfig`) or the `istio`
//! ConfigMap (`data.mesh`) of the input: a group gets the providers its
//! CUSTOM policies name, and an error inside one is said at the provider's
//! own path and line. A provider that is not in the input is a warning, and
//! the group's rules are then checked as a DENY's.

use super::{Context, Finding, Severity, Source, local_rate_limit::message};
use crate::yaml::{self, Document};
use meshwasm_core::authz::AuthzPlan;
use meshwasm_core::plan::Plan as _;
use serde_json::{Map, Value, json};
use std::collections::BTreeMap;

/// Istio's security API versions this module reads.
pub(crate) const SECURITY_VERSIONS: [&str; 2] =
    ["security.istio.io/v1", "security.istio.io/v1beta1"];

/// Istio's default root namespace: a policy there without a selector
/// applies to every workload of the mesh.
pub const ROOT_NAMESPACE: &str = "istio-system";

/// The kind whose `spec.meshConfig.extensionProviders` this module reads.
pub(crate) const ISTIO_OPERATOR: &str = "IstioOperator";

/// The IstioOperator's API version.
const ISTIO_OPERATOR_VERSION: &str = "install.istio.io/v1alpha1";

/// The ConfigMap istiod reads meshConfig from, as YAML in `data.mesh`
/// (`istio-REVISION` for a revision).
const MESH_CONFIG_MAP: &str = "istio";

/// Whether a document is meshConfig this module reads: an IstioOperator,
/// or the `istio` ConfigMap (or a revision's, `istio-REV`, with
/// `data.mesh`).
pub(crate) fn is_mesh_config(kind: &str, api_version: &str, value: &Value) -> bool {
    let name = value["metadata"]["name"].as_str().unwrap_or_default();
    match kind {
        ISTIO_OPERATOR => api_version == ISTIO_OPERATOR_VERSION,
        "ConfigMap" => {
            api_version == "v1"
                && (name == MESH_CONFIG_MAP
                    || (name.starts_with("istio-") && value["data"]["mesh"].is_string()))
        }
        _ => false,
    }
}

/// One entry of meshConfig's `extensionProviders`, and where it is written.
pub(crate) struct MeshProvider {
    /// Its `name`, which CUSTOM policies give as `provider.name`.
    name: String,
    /// The entry, as written.
    value: Value,
    /// The IstioOperator or ConfigMap that defines it.
    source: Source,
    /// The positions of its fields: its resource's, or for the ConfigMap
    /// those of the YAML text in `data.mesh`.
    positions: Document,
    /// The entry's path in `positions`.
    at: String,
    /// What findings put before `at`: `data.mesh.` in the ConfigMap.
    shown: &'static str,
    /// Lines before the first of `positions`: `data.mesh`'s line in the
    /// ConfigMap, whose text starts on the next line as a block scalar.
    offset: usize,
}

impl MeshProvider {
    /// The path findings give for `rest` (`.envoyExtAuthzHttp.port`) in
    /// this entry, and its line.
    fn locate(&self, rest: &str) -> (String, Option<usize>) {
        let at = format!("{}{rest}", self.at);
        let line = self.positions.position(&at).map(|p| p.line + self.offset);
        (format!("{}{at}", self.shown), line)
    }
}

/// The Envoy cluster of an HTTP authorizer a CUSTOM policy calls.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct AuthzCluster {
    /// The name the filter calls: Istio's `outbound|PORT||SERVICE` for a
    /// provider with `port`, else `service` itself.
    pub name: String,
    /// The provider's `service`.
    pub service: String,
    /// `service` and `port`, where plain Envoy finds it by DNS; `None`
    /// without a port (the cluster must be given with `--upstream`).
    pub address: Option<(String, u16)>,
}

/// The fields of a policy spec that say where it applies: the WasmPlugin's
/// business, not the filter's.
const PLACEMENT_FIELDS: [&str; 3] = ["selector", "targetRef", "targetRefs"];

/// The header-match filter of one set of workloads: the AuthorizationPolicies
/// that select them, read together as Istio reads them.
#[derive(Debug, Clone)]
pub struct AuthzFilter {
    /// The AuthorizationPolicies it holds, in input order.
    pub sources: Vec<Source>,
    /// Their namespace: `metadata.namespace`, else the default namespace.
    pub namespace: String,
    /// The base of the generated resources' names: the policy's name, or
    /// for several the selected labels' values (`all` for none).
    pub name: String,
    /// `spec.selector.matchLabels`; empty for every workload of the
    /// namespace (or of the mesh, see [`mesh_wide`](Self::mesh_wide)).
    pub selector: BTreeMap<String, String>,
    /// `spec.targetRefs` (or `targetRef`), as written.
    pub target_refs: Vec<Value>,
    /// In the root namespace without selector or targets: every workload
    /// of the mesh.
    pub mesh_wide: bool,
    /// Whether it is enforced on a gateway (the selector is a Gateway's of
    /// the input, or it names targets): all the gateway's listeners, not
    /// only a sidecar's inbound ones.
    pub gateway: bool,
    /// The config the filter gets: `{"policies": [...]}` with the specs
    /// (without `selector`, `targetRef(s)` and `meshwasm`), the policies'
    /// `headerRules` and their `meshwasm` settings.
    pub config: Value,
}

/// One policy as read, before grouping.
struct Member<'d> {
    doc: &'d Document,
    source: Source,
    selector: BTreeMap<String, String>,
    target_refs: Vec<Value>,
}

/// What a group of policies selects: namespace, labels, and targets (as
/// JSON text, to compare).
type Workloads = (String, BTreeMap<String, String>, String);

/// Where a part of a group's config comes from: the member and the path
/// in its document.
type Origin = (usize, String);

/// A group's config and where each of its parts is written.
struct Assembled {
    config: Value,
    /// `policies[i]` → member `i`, `spec`.
    policies: Vec<Origin>,
    /// `headerRules[k]`.
    header_rules: Vec<Origin>,
    /// `meshwasm.KEY`.
    settings: BTreeMap<String, Origin>,
    /// `extensionProviders[k]` → the mesh provider of that index.
    providers: Vec<usize>,
}

/// The policy spec the filter gets: without placement and meshwasm fields.
fn filter_spec(spec: &Value) -> Value {
    let mut spec = spec.clone();
    if let Value::Object(map) = &mut spec {
        for key in PLACEMENT_FIELDS.iter().chain(&["meshwasm"]) {
            map.remove(*key);
        }
    }
    spec
}

/// For validation when a CUSTOM policy's authorizer is not in the input:
/// each CUSTOM policy as a DENY with the same rules, so that everything
/// else about it is still checked.
fn custom_as_deny(config: &Value) -> Value {
    let mut config = config.clone();
    for policy in config["policies"].as_array_mut().into_iter().flatten() {
        if policy["action"] == "CUSTOM"
            && let Value::Object(map) = policy
        {
            map.insert("action".into(), json!("DENY"));
            map.remove("provider");
        }
    }
    config
}

/// `policies[2].rules[0]` → (`policies`, 2, `.rules[0]`).
fn split_indexed(path: &str) -> Option<(&str, usize, &str)> {
    let (key, rest) = path.split_once('[')?;
    let (index, rest) = rest.split_once(']')?;
    Some((key, index.parse().ok()?, rest))
}

fn labels_of(value: &Value) -> BTreeMap<String, String> {
    value
        .as_object()
        .into_iter()
        .flatten()
        .map(|(k, v)| (k.clone(), v.as_str().unwrap_or_default().to_owned()))
        .collect()
}

impl Context<'_> {
    /// A finding at `rest` inside a mesh provider, with its line.
    fn at_provider(
        &mut self,
        severity: Severity,
        provider: &MeshProvider,
        rest: &str,
        message: String,
    ) {
        let (path, line) = provider.locate(rest);
        self.findings.push(Finding {
            severity,
            source: Some(provider.source.clone()),
            path,
            line: line.or(Some(provider.source.line)),
            message,
        });
    }

    /// meshConfig's `extensionProviders` in the input's IstioOperators and
    /// `istio` ConfigMaps, in input order; a resource without them is not
    /// translated, as other kinds.
    pub(super) fn extension_providers(
        &mut self,
        documents: &[(&Document, Source)],
    ) -> Vec<MeshProvider> {
        let mut out: Vec<MeshProvider> = Vec::new();
        for (doc, source) in documents {
            self.file = source.file.clone();
            let (positions, at, shown, offset) = if source.kind == ISTIO_OPERATOR {
                let at = "spec.meshConfig.extensionProviders";
                if doc.value["spec"]["meshConfig"]
                    .get("extensionProviders")
                    .is_none()
                {
                    self.not_translated(doc, source);
                    continue;
                }
                ((*doc).clone(), at, "", 0)
            } else {
                let mesh = &doc.value["data"]["mesh"];
                let Some(text) = mesh.as_str() else {
                    if mesh.is_null() {
                        self.not_translated(doc, source);
                    } else {
                        self.error(
                            Some(source),
                            Some(doc),
                            "data.mesh",
                            "must be meshConfig as a YAML string".into(),
                        );
                    }
                    continue;
                };
                let offset = doc.position("data.mesh").map_or(doc.line, |p| p.line);
                let inner = match yaml::load(text) {
                    Ok(mut docs) if !docs.is_empty() => docs.remove(0),
                    Ok(_) => {
                        self.not_translated(doc, source);
                        continue;
                    }
                    Err(e) => {
                        self.findings.push(Finding {
                            severity: Severity::Error,
                            source: Some(source.clone()),
                            path: "data.mesh".into(),
                            line: Some(offset + e.position.line),
                            message: format!(
                                "meshConfig is not valid YAML at column {}: {}",
                                e.position.column, e.message
                            ),
                        });
                        continue;
                    }
                };
                if inner.value.get("extensionProviders").is_none() {
                    self.not_translated(doc, source);
                    continue;
                }
                (inner, "extensionProviders", "data.mesh.", offset)
            };
            let shown_at = format!("{shown}{at}");
            let list = if source.kind == ISTIO_OPERATOR {
                &positions.value["spec"]["meshConfig"]["extensionProviders"]
            } else {
                &positions.value["extensionProviders"]
            };
            let Some(list) = list.as_array().cloned() else {
                let line = positions.position(at).map(|p| p.line + offset);
                self.findings.push(Finding {
                    severity: Severity::Error,
                    source: Some(source.clone()),
                    path: shown_at,
                    line,
                    message: "must be a list of providers, each with a name".into(),
                });
                continue;
            };
            let mut names = Vec::new();
            for (i, entry) in list.into_iter().enumerate() {
                let provider = MeshProvider {
                    name: entry["name"].as_str().unwrap_or_default().to_owned(),
                    value: entry,
                    source: source.clone(),
                    positions: positions.clone(),
                    at: format!("{at}[{i}]"),
                    shown,
                    offset,
                };
                if provider.name.is_empty() {
                    self.at_provider(
                        Severity::Error,
                        &provider,
                        ".name",
                        "is required: the name CUSTOM policies give as provider.name".into(),
                    );
                    continue;
                }
                if let Some(first) = out.iter().find(|p| p.name == provider.name) {
                    let message = format!(
                        "{:?} is defined again; the first, in {}, is used",
                        provider.name, first.source
                    );
                    self.at_provider(Severity::Warning, &provider, ".name", message);
                    continue;
                }
                names.push(provider.name.clone());
                out.push(provider);
            }
            let kind = &source.kind;
            let line = positions.position(at).map(|p| p.line + offset);
            self.findings.push(Finding {
                severity: Severity::Note,
                source: Some(source.clone()),
                path: shown_at,
                line,
                message: format!("meshConfig's extensionProviders ({}) are read for the CUSTOM AuthorizationPolicies that name them; the rest of this {kind} is Istio's, so keep applying it as it is", names.join(", ")),
            });
        }
        out
    }

    /// The header-match filters of the input's AuthorizationPolicies, one
    /// per set of workloads, and the clusters of the authorizers their
    /// CUSTOM policies call; `gateway_selectors` are the labels of the
    /// input's Gateways' pods, `providers` meshConfig's.
    pub(super) fn authorization_policies(
        &mut self,
        policies: &[(&Document, Source)],
        gateway_selectors: &[BTreeMap<String, String>],
        providers: &[MeshProvider],
    ) -> (Vec<AuthzFilter>, Vec<AuthzCluster>) {
        let mut members: Vec<Member<'_>> = Vec::new();
        for (doc, source) in policies {
            self.file = source.file.clone();
            if let Some(member) = self.authorization_policy(doc, source) {
                members.push(member);
            }
        }
        let mut groups: Vec<(Workloads, Vec<usize>)> = Vec::new();
        for (i, m) in members.iter().enumerate() {
            let key = (
                self.namespace_of(&m.source),
                m.selector.clone(),
                Value::Array(m.target_refs.clone()).to_string(),
            );
            match groups.iter_mut().find(|(k, _)| *k == key) {
                Some((_, list)) => list.push(i),
                None => groups.push((key, vec![i])),
            }
        }
        let mut out = Vec::new();
        let mut allows: Vec<(bool, usize)> = Vec::new();
        let mut used: Vec<usize> = Vec::new();
        for ((namespace, selector, _), list) in groups {
            let group: Vec<&Member<'_>> = list.iter().map(|&i| &members[i]).collect();
            let Some((filter, named)) =
                self.authz_group(&group, &namespace, &selector, gateway_selectors, providers)
            else {
                continue;
            };
            for j in named {
                if !used.contains(&j) {
                    used.push(j);
                }
            }
            let has_allow = group
                .iter()
                .any(|m| matches!(m.doc.value["spec"]["action"].as_str(), None | Some("ALLOW")));
            allows.push((has_allow, list[0]));
            out.push(filter);
        }
        self.check_overlapping_allows(&out, &allows, &members);
        self.check_plain_envoy_merge(&out, &members);
        let clusters = used
            .into_iter()
            .filter_map(|j| self.authz_cluster(&providers[j]))
            .collect();
        (out, clusters)
    }

    /// The cluster an HTTP authorizer is called at, as the filter names it;
    /// without a `port`, a warning that it must be given.
    fn authz_cluster(&mut self, provider: &MeshProvider) -> Option<AuthzCluster> {
        let http = &provider.value["envoyExtAuthzHttp"];
        let service = http["service"].as_str()?.to_owned();
        let port = http["port"].as_u64();
        let cluster = match port {
            Some(port) if !service.contains('|') => AuthzCluster {
                name: format!("outbound|{port}||{service}"),
                address: u16::try_from(port).ok().map(|p| (service.clone(), p)),
                service,
            },
            _ => AuthzCluster {
                name: service.clone(),
                service,
                address: None,
            },
        };
        if cluster.address.is_none() {
            let name = &cluster.name;
            self.at_provider(Severity::Warning, provider, ".envoyExtAuthzHttp", format!("has no port, so the header-match filter calls the Envoy cluster {name:?} as named (Istio names a Service's cluster outbound|PORT||SERVICE): it must exist; plain Envoy output has it only from --upstream '{name}=HOST:PORT'"));
        }
        Some(cluster)
    }

    /// Plain Envoy has one listener, so it gets one header-match filter
    /// with every group's policies: said when groups for different
    /// workloads meet there, and when their settings differ.
    fn check_plain_envoy_merge(&mut self, filters: &[AuthzFilter], members: &[Member<'_>]) {
        let Some((first, rest)) = filters.split_first() else {
            return;
        };
        for later in rest {
            let Some(m) = members.iter().find(|m| m.source == later.sources[0]) else {
                continue;
            };
            self.file = m.source.file.clone();
            self.push(Severity::Note, Some(&m.source), Some(m.doc), "spec", format!("selects other workloads than AuthorizationPolicy {}/{}: plain Envoy has one listener, so its output has one header-match filter with the policies of all of them", first.namespace, first.sources[0].name));
            for (key, value) in later.config["meshwasm"].as_object().into_iter().flatten() {
                let earlier = &first.config["meshwasm"][key];
                if !earlier.is_null() && earlier != value {
                    self.warn(&m.source, m.doc, &format!("spec.meshwasm.{key}"), format!("is {value}, but plain Envoy's one header-match filter takes {earlier} from AuthorizationPolicy {}", first.sources[0].name));
                }
            }
        }
    }

    fn namespace_of(&self, source: &Source) -> String {
        source
            .namespace
            .clone()
            .unwrap_or_else(|| self.options.default_namespace.clone())
    }

    /// One policy's placement, with what Istio itself would refuse.
    fn authorization_policy<'d>(
        &mut self,
        doc: &'d Document,
        source: &Source,
    ) -> Option<Member<'d>> {
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
            self.error(Some(source), Some(doc), "spec.selector", "and targetRef(s) are both set, which Istio refuses; a policy selects workloads by labels or by targets".into());
            return None;
        }
        Some(Member {
            doc,
            source: source.clone(),
            selector,
            target_refs,
        })
    }

    fn authz_group(
        &mut self,
        group: &[&Member<'_>],
        namespace: &str,
        selector: &BTreeMap<String, String>,
        gateway_selectors: &[BTreeMap<String, String>],
        providers: &[MeshProvider],
    ) -> Option<(AuthzFilter, Vec<usize>)> {
        let mut assembled = self.assemble(group)?;
        let target_refs = group[0].target_refs.clone();
        let mesh_wide =
            namespace == ROOT_NAMESPACE && selector.is_empty() && target_refs.is_empty();
        // The providers the CUSTOM policies name, each once.
        let mut missing = false;
        for m in group {
            let spec = &m.doc.value["spec"];
            if spec["action"] != "CUSTOM" {
                continue;
            }
            // Without a name, the filter's own error says so.
            let Some(name) = spec["provider"]["name"].as_str() else {
                continue;
            };
            match providers.iter().position(|p| p.name == name) {
                Some(j) if assembled.providers.contains(&j) => {}
                Some(j) => assembled.providers.push(j),
                None => {
                    missing = true;
                    self.file = m.source.file.clone();
                    self.warn(&m.source, m.doc, "spec.provider.name", format!("CUSTOM names the authorizer {name:?}, which no extensionProviders entry of meshConfig in the input defines: the header-match filter refuses a CUSTOM policy without its provider, so put the IstioOperator (spec.meshConfig.extensionProviders) or the istio ConfigMap (data.mesh) that defines it in the input; the rules are checked as a DENY's"));
                }
            }
        }
        if !assembled.providers.is_empty()
            && let Value::Object(config) = &mut assembled.config
        {
            let entries = assembled
                .providers
                .iter()
                .map(|&j| providers[j].value.clone());
            config.insert("extensionProviders".into(), entries.collect());
        }
        let check = if missing {
            custom_as_deny(&assembled.config)
        } else {
            assembled.config.clone()
        };
        match AuthzPlan::from_json(check.to_string().as_bytes()) {
            Err(e) => {
                if let Some(provider) = provider_of(&assembled, providers, &e.path) {
                    let (rest, provider) = provider;
                    let message = format!(
                        "{} (the provider {:?}, which AuthorizationPolicy {} names)",
                        message(&e),
                        provider.name,
                        group[0].source.name
                    );
                    self.at_provider(Severity::Error, provider, rest, message);
                    return None;
                }
                let (member, path) = locate(&assembled, &e.path);
                let m = group[member];
                self.file = m.source.file.clone();
                self.error(Some(&m.source), Some(m.doc), &path, message(&e));
                return None;
            }
            Ok(plan) => {
                for note in plan.notes() {
                    let severity = if note.deprecated {
                        Severity::Note
                    } else {
                        Severity::Warning
                    };
                    if let Some((rest, provider)) = provider_of(&assembled, providers, &note.path) {
                        self.at_provider(severity, provider, rest, note.message.to_owned());
                        continue;
                    }
                    let (member, path) = locate(&assembled, &note.path);
                    let m = group[member];
                    self.file = m.source.file.clone();
                    self.push(
                        severity,
                        Some(&m.source),
                        Some(m.doc),
                        &path,
                        note.message.to_owned(),
                    );
                }
            }
        }
        for (i, m) in group.iter().enumerate() {
            self.file = m.source.file.clone();
            if mesh_wide && i == 0 {
                self.push(Severity::Note, Some(&m.source), Some(m.doc), "metadata.namespace", format!("in the root namespace {ROOT_NAMESPACE} without selector: applies to every workload of the mesh, so its WasmPlugin stays in {ROOT_NAMESPACE} without selector, which Istio applies mesh-wide"));
            }
        }
        let gateway = !target_refs.is_empty()
            || (!selector.is_empty() && gateway_selectors.iter().any(|g| g == selector));
        let name = match group {
            [one] => one.source.name.clone(),
            _ => {
                let joined: String = selector
                    .values()
                    .cloned()
                    .collect::<Vec<_>>()
                    .join("-")
                    .to_ascii_lowercase()
                    .chars()
                    .map(|c| if c.is_ascii_alphanumeric() { c } else { '-' })
                    .collect();
                match joined.trim_matches('-') {
                    "" => "all".into(),
                    label => label.to_owned(),
                }
            }
        };
        let filter = AuthzFilter {
            sources: group.iter().map(|m| m.source.clone()).collect(),
            namespace: namespace.to_owned(),
            name,
            selector: selector.clone(),
            target_refs,
            mesh_wide,
            gateway,
            config: assembled.config,
        };
        Some((filter, assembled.providers))
    }

    /// The group's config: the specs, their header rules and settings; an
    /// error for settings the policies set differently.
    fn assemble(&mut self, group: &[&Member<'_>]) -> Option<Assembled> {
        let mut policies = Vec::new();
        let mut header_rules = Vec::new();
        let mut settings: Map<String, Value> = Map::new();
        let mut out = Assembled {
            config: Value::Null,
            policies: Vec::new(),
            header_rules: Vec::new(),
            settings: BTreeMap::new(),
            providers: Vec::new(),
        };
        for (i, m) in group.iter().enumerate() {
            let spec = &m.doc.value["spec"];
            policies.push(filter_spec(spec));
            out.policies.push((i, "spec".into()));
            let Some(options) = spec.get("meshwasm") else {
                continue;
            };
            let Some(options) = options.as_object() else {
                self.file = m.source.file.clone();
                self.error(Some(&m.source), Some(m.doc), "spec.meshwasm", "must be a mapping of meshwasm options (headerRules, pathNormalization, headersWithUnderscores, denyStatus)".into());
                return None;
            };
            for (key, value) in options {
                let at = format!("spec.meshwasm.{key}");
                if key == "headerRules" {
                    for (j, rule) in value.as_array().into_iter().flatten().enumerate() {
                        header_rules.push(rule.clone());
                        out.header_rules.push((i, format!("{at}[{j}]")));
                    }
                    if !value.is_array() {
                        // Left for the filter to name: it expects a list.
                        header_rules.push(value.clone());
                        out.header_rules.push((i, at));
                    }
                    continue;
                }
                match settings.get(key) {
                    Some(earlier) if earlier != value => {
                        let (first, _) = &out.settings[key];
                        self.file = m.source.file.clone();
                        self.error(Some(&m.source), Some(m.doc), &at, format!("is {value}, but AuthorizationPolicy {} on the same workloads sets {earlier}: they share one header-match filter, which has one setting", group[*first].source.name));
                        return None;
                    }
                    Some(_) => {}
                    None => {
                        settings.insert(key.clone(), value.clone());
                        out.settings.insert(key.clone(), (i, at));
                    }
                }
            }
        }
        let mut config = Map::new();
        config.insert("policies".into(), Value::Array(policies));
        if !header_rules.is_empty() {
            config.insert("headerRules".into(), Value::Array(header_rules));
        }
        if !settings.is_empty() {
            config.insert("meshwasm".into(), Value::Object(settings));
        }
        out.config = Value::Object(config);
        Some(out)
    }

    /// Istio allows a request that any ALLOW policy of its workload
    /// matches; a narrower filter and a broader one (namespace or mesh)
    /// run one after the other, so a request must match an ALLOW policy of
    /// each. Said where it happens.
    fn check_overlapping_allows(
        &mut self,
        filters: &[AuthzFilter],
        allows: &[(bool, usize)],
        members: &[Member<'_>],
    ) {
        for (n, narrow) in filters.iter().enumerate() {
            let (narrow_allows, first) = allows[n];
            let selects_all = narrow.selector.is_empty() && narrow.target_refs.is_empty();
            if !narrow_allows || narrow.mesh_wide {
                continue;
            }
            let broader = filters.iter().enumerate().find(|(b, wide)| {
                *b != n
                    && allows[*b].0
                    && wide.selector.is_empty()
                    && wide.target_refs.is_empty()
                    && (wide.mesh_wide || (!selects_all && wide.namespace == narrow.namespace))
            });
            let Some((_, wide)) = broader else {
                continue;
            };
            let m = &members[first];
            self.file = m.source.file.clone();
            let scope = if wide.mesh_wide {
                "mesh-wide"
            } else {
                "namespace-wide"
            };
            self.warn(&m.source, m.doc, "spec.action", format!("ALLOW policies here and {scope} ({}/{}) become two header-match filters that run one after the other, so a request must match an ALLOW policy of each, where Istio allows one that matches any; put the ALLOW rules the workloads share in one place", wide.namespace, wide.sources[0].name));
        }
    }
}

/// The mesh provider a path in a group's config is in
/// (`extensionProviders[0].envoyExtAuthzHttp.port`), with the rest of the
/// path (`.envoyExtAuthzHttp.port`).
fn provider_of<'p, 'a>(
    assembled: &Assembled,
    providers: &'p [MeshProvider],
    path: &'a str,
) -> Option<(&'a str, &'p MeshProvider)> {
    let (key, index, rest) = split_indexed(path)?;
    if key != "extensionProviders" {
        return None;
    }
    let j = *assembled.providers.get(index)?;
    Some((rest, providers.get(j)?))
}

/// The member and document path of a path in a group's config.
fn locate(assembled: &Assembled, path: &str) -> Origin {
    let fallback = (0, "spec".to_owned());
    if let Some((key, index, rest)) = split_indexed(path) {
        let list = match key {
            "policies" => &assembled.policies,
            "headerRules" => &assembled.header_rules,
            _ => return fallback,
        };
        return match list.get(index) {
            Some((member, at)) => (*member, format!("{at}{rest}")),
            None => fallback,
        };
    }
    if let Some(rest) = path.strip_prefix("meshwasm.") {
        let key = rest.split(['.', '[']).next().unwrap_or_default();
        if let Some((member, at)) = assembled.settings.get(key) {
            return (*member, format!("{at}{}", &rest[key.len()..]));
        }
    }
    fallback
}

/// The one header-match config plain Envoy gets: every filter's policies,
/// header rules and settings (the first filter's, where they differ),
/// since plain Envoy has one listener for all of them.
pub(super) fn merged_config(filters: &[AuthzFilter]) -> Option<Value> {
    let (first, rest) = filters.split_first()?;
    if rest.is_empty() {
        return Some(first.config.clone());
    }
    let mut policies = Vec::new();
    let mut header_rules = Vec::new();
    let mut settings = Map::new();
    let mut extension_providers: Vec<Value> = Vec::new();
    for f in filters {
        for p in f.config["extensionProviders"]
            .as_array()
            .into_iter()
            .flatten()
        {
            if !extension_providers.iter().any(|e| e["name"] == p["name"]) {
                extension_providers.push(p.clone());
            }
        }
        policies.extend(f.config["policies"].as_array().cloned().unwrap_or_default());
        header_rules.extend(
            f.config["headerRules"]
                .as_array()
                .cloned()
                .unwrap_or_default(),
        );
        for (k, v) in f.config["meshwasm"].as_object().into_iter().flatten() {
            settings.entry(k.clone()).or_insert_with(|| v.clone());
        }
    }
    let mut config = Map::new();
    config.insert("policies".into(), Value::Array(policies));
    if !header_rules.is_empty() {
        config.insert("headerRules".into(), Value::Array(header_rules));
    }
    if !settings.is_empty() {
        config.insert("meshwasm".into(), Value::Object(settings));
    }
    if !extension_providers.is_empty() {
        config.insert(
            "extensionProviders".into(),
            Value::Array(extension_providers),
        );
    }
    Some(Value::Object(config))
}
