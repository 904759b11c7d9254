//! Access rules: Istio's AuthorizationPolicy, checked against the request a
//! backend would serve, with no bypass on a plain Envoy.
//!
//! - [`policy`]: the documents, as written.
//! - [`path`]: the filter's own path normalization.
//! - [`custom`]: CUSTOM policies' checks by an external HTTP authorizer.
//!
//! A request is first read once into an [`AuthzRequest`]: the normalized
//! path, the host without port or trailing dot, header names lowercased
//! (and `_` read as `-`), values trimmed, and every reading of a repeated
//! header. Then, as Istio documents: a request that matches a CUSTOM
//! policy is checked by its authorizer first (see [`AuthzPlan::check`]);
//! then a matching DENY policy denies; if any
//! ALLOW policy exists, a request that matches none is denied; AUDIT only
//! marks. Rules are read strictly both ways: a DENY rule matches when any
//! reading of a header matches, an ALLOW rule holds only when every
//! reading does.

pub mod custom;
pub mod path;
pub mod policy;

use crate::config::{Document, parse};
use crate::error::{ConfigError, ConfigErrorKind, ConfigNote, FieldPath};
use crate::header_ops::{HeaderOp, HeaderOps};
use crate::metrics::{MetricRef, MetricSpec};
use crate::plan::Plan;
use crate::request::RequestAttributes;
use crate::request_match::RequestMatcher;
use custom::ExtAuthz;
use path::{BadPath, Normalization, normalize};
use policy::Underscores;
use std::net::IpAddr;

/// The body of a denial, as Envoy's RBAC filter answers.
pub const DENIED_BODY: &str = "RBAC: access denied";

/// The refs of the plan's metrics.
pub mod metric {
    use crate::metrics::MetricRef;
    /// Requests allowed.
    pub const ALLOWED: MetricRef = MetricRef(0);
    /// Requests denied (403).
    pub const DENIED: MetricRef = MetricRef(1);
    /// Malformed requests rejected (400).
    pub const REJECTED: MetricRef = MetricRef(2);
    /// Requests an AUDIT policy matched.
    pub const AUDITED: MetricRef = MetricRef(3);
    /// Checks the authorizer allowed.
    pub const EXT_AUTHZ_OK: MetricRef = MetricRef(4);
    /// Checks the authorizer denied.
    pub const EXT_AUTHZ_DENIED: MetricRef = MetricRef(5);
    /// Checks that failed (no answer, a timeout, a 5xx).
    pub const EXT_AUTHZ_ERROR: MetricRef = MetricRef(6);
    /// Failed checks that `failOpen` let through.
    pub const EXT_AUTHZ_FAILURE_MODE_ALLOWED: MetricRef = MetricRef(7);
}

/// Named as Envoy's RBAC and ext_authz filters name theirs.
const METRICS: [&str; 8] = [
    "allowed",
    "denied",
    "rejected",
    "audited",
    "ext_authz.ok",
    "ext_authz.denied",
    "ext_authz.error",
    "ext_authz.failure_mode_allowed",
];

/// The compiled configuration of the header-match filter.
///
/// # Examples
///
/// ```
/// use meshwasm_core::authz::{AuthzPlan, Peer, Verdict};
/// use meshwasm_core::plan::Plan;
/// use meshwasm_core::request::StaticRequest;
///
/// let plan = AuthzPlan::from_json(br#"{"action": "DENY",
///     "rules": [{"to": [{"operation": {"paths": ["/admin", "/admin/*"]}}]}]}"#).unwrap();
/// let decide = |path: &str| {
///     let headers = [(":method", "GET"), (":path", path), (":authority", "shop")];
///     let req = plan.read(headers.iter().map(|(n, v)| (n.as_bytes(), v.as_bytes())), Peer::default());
///     plan.decide(&req.unwrap(), &mut StaticRequest::get(path)).verdict
/// };
/// assert!(matches!(decide("/public/..%2Fadmin"), Verdict::Deny { .. }));
/// assert!(matches!(decide("/ADMIN"), Verdict::Allow));
/// ```
#[derive(Debug)]
pub struct AuthzPlan {
    custom: Vec<CompiledPolicy>,
    /// The authorizer of the CUSTOM policies (Istio allows one per workload).
    provider: Option<ExtAuthz>,
    deny: Vec<CompiledPolicy>,
    allow: Vec<CompiledPolicy>,
    audit: Vec<CompiledPolicy>,
    header_rules: Vec<CompiledHeaderRule>,
    /// The header names the policies read, as rules name them.
    headers_read: Vec<String>,
    normalization: Normalization,
    underscores: Underscores,
    deny_status: u16,
    notes: Vec<ConfigNote>,
}

#[derive(Debug)]
struct CompiledPolicy {
    /// The policy's index in the configuration, for response code details.
    index: usize,
    rules: Vec<CompiledRule>,
}

#[derive(Debug, Default)]
struct CompiledRule {
    from: Vec<Vec<Check>>,
    to: Vec<Vec<Check>>,
    when: Vec<Check>,
}

#[derive(Debug)]
struct CompiledHeaderRule {
    matches: Vec<RequestMatcher>,
    request: HeaderOps,
    response: HeaderOps,
}

/// One condition on one attribute, `values` or `notValues`.
#[derive(Debug)]
struct Check {
    attribute: Attribute,
    values: Vec<Pattern>,
    negated: bool,
}

#[derive(Debug, Clone, PartialEq, Eq)]
enum Attribute {
    Principal,
    Namespace,
    SourceIp,
    DestinationIp,
    Host,
    Port,
    Method,
    Path,
    Header(String),
    Sni,
}

#[derive(Debug)]
enum Pattern {
    Exact(String),
    Prefix(String),
    Suffix(String),
    Any,
    Cidr(IpAddr, u8),
    Template(Vec<Segment>),
    /// A host with its port, compared as `host:port`.
    HostPort(String, u16),
    /// A host pattern without a port, compared with the portless host.
    Host(Box<Pattern>),
}

#[derive(Debug, Clone, PartialEq, Eq)]
enum Segment {
    Literal(String),
    One,
    Rest,
}

/// What Envoy tells the filter about the connection (properties).
#[derive(Debug, Clone, Default)]
pub struct Peer {
    /// `source.address`: the client as Envoy derived it (the direct peer
    /// unless the connection manager trusts `x-forwarded-for` hops).
    pub source_address: Option<String>,
    /// `destination.address`.
    pub destination_address: Option<String>,
    /// `destination.port`.
    pub destination_port: Option<u32>,
    /// `connection.uri_san_peer_certificate`: the peer's SPIFFE id.
    pub peer_uri_san: Option<String>,
    /// `connection.requested_server_name`.
    pub sni: Option<String>,
}

/// The connection properties a plan reads.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct Needs {
    /// `source.address`.
    pub source_address: bool,
    /// `destination.address`.
    pub destination_address: bool,
    /// `destination.port`.
    pub destination_port: bool,
    /// `connection.uri_san_peer_certificate`.
    pub peer_identity: bool,
    /// `connection.requested_server_name`.
    pub sni: bool,
}

/// A request read once for matching.
#[derive(Debug, Clone)]
pub struct AuthzRequest {
    path: String,
    method: String,
    host: String,
    /// `host:port` when the authority has a port, for policy hosts with one.
    host_port: Option<String>,
    port: Option<u32>,
    headers: Vec<(String, String)>,
    source_ip: Option<IpAddr>,
    destination_ip: Option<IpAddr>,
    principal: Option<String>,
    namespace: Option<String>,
    sni: Option<String>,
}

/// Why a request is rejected with 400.
#[derive(Debug, Clone, Copy, PartialEq, Eq, thiserror::Error)]
pub enum Malformed {
    /// The path cannot be read one way only.
    #[error("{0}")]
    Path(BadPath),
    /// Several `Host`/`:authority` values.
    #[error("more than one host")]
    SeveralHosts,
    /// No `:path`.
    #[error("no path")]
    NoPath,
    /// `_` in a header name, with `headersWithUnderscores: REJECT`.
    #[error("underscore in a header name")]
    Underscore,
}

/// What happens to a request.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Verdict {
    /// Forward it.
    Allow,
    /// Deny with 403; Envoy's RBAC response code details.
    Deny {
        /// `rbac_access_denied_matched_policy[...]`.
        details: String,
    },
}

/// The decision on one request.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Decision<'p> {
    /// Allow or deny.
    pub verdict: Verdict,
    /// Whether an AUDIT policy matched.
    pub audited: bool,
    /// Header rule edits of the request (allowed requests only).
    pub request_edits: Vec<HeaderOp<'p>>,
    /// What to edit in the response (allowed requests only): keep it for
    /// the response and ask [`AuthzPlan::response_edits`].
    pub response: ResponseEdits,
}

/// The response edits owed to one request, owned so that a stream can keep
/// them until its response: the header rules that matched, and the
/// headers an allowing check adds (`headersToDownstreamOnAllow`).
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct ResponseEdits {
    added: Vec<(String, String)>,
    rules: Vec<usize>,
}

impl ResponseEdits {
    /// Adds an allowing check's headers for the client.
    pub fn add(&mut self, headers: Vec<(String, String)>) {
        self.added.extend(headers);
    }

    /// Adds the edits of a later decision.
    pub fn extend(&mut self, other: ResponseEdits) {
        self.added.extend(other.added);
        self.rules.extend(other.rules);
    }
}

/// How rules read repeated headers.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Reading {
    /// DENY: a match by any reading counts.
    Any,
    /// ALLOW: every reading must match.
    Every,
}

impl Plan for AuthzPlan {
    const DOCUMENT: Document = Document {
        name: "an AuthorizationPolicy spec",
        example: r#"{"action": "DENY", "rules": [{"to": [{"operation": {"paths": ["/admin", "/admin/*"]}}]}]}"#,
        list_key: Some("policies"),
    };

    fn from_json(json: &[u8]) -> Result<Self, ConfigError> {
        let shape: serde_json::Value = parse(json, Self::DOCUMENT)?;
        let list = ["policies", "headerRules", "extensionProviders"]
            .iter()
            .any(|k| shape.get(k).is_some())
            || (shape.get("meshwasm").is_some() && shape.as_object().is_some_and(|o| o.len() == 1));
        let (specs, header_rules, providers, settings, at_list) = if list {
            let p: policy::Policies = parse(json, Self::DOCUMENT)?;
            (
                p.policies,
                p.header_rules,
                p.extension_providers,
                p.meshwasm,
                true,
            )
        } else {
            let mut spec: policy::AuthorizationPolicy = parse(json, Self::DOCUMENT)?;
            let settings = spec.meshwasm.take();
            (vec![spec], Vec::new(), Vec::new(), settings, false)
        };
        let mut notes = Vec::new();
        let mut plan = AuthzPlan {
            custom: Vec::new(),
            provider: None,
            deny: Vec::new(),
            allow: Vec::new(),
            audit: Vec::new(),
            header_rules: Vec::new(),
            headers_read: Vec::new(),
            normalization: Normalization::default(),
            underscores: Underscores::default(),
            deny_status: 403,
            notes: Vec::new(),
        };
        let providers_at = FieldPath::ROOT.field("extensionProviders");
        for (i, entry) in providers.iter().enumerate() {
            ExtAuthz::check_kinds(entry, &providers_at.index(i))?;
        }
        let list_at = FieldPath::ROOT.field("policies");
        for (i, spec) in specs.iter().enumerate() {
            let item = list_at.index(i);
            let at = if at_list { item } else { FieldPath::ROOT };
            if spec.meshwasm.is_some() {
                return Err(at.field("meshwasm").error(ConfigErrorKind::Unsupported {
                    reason: "in the list form, meshwasm settings go next to `policies`",
                }));
            }
            let (kind, compiled) = compile_policy(spec, i, &at, &mut notes)?;
            match kind {
                Action::Custom(name) => {
                    let name_at = at.field("provider");
                    let name_at = name_at.field("name");
                    if let Some(p) = &plan.provider {
                        if p.name() != name {
                            return Err(name_at.error(ConfigErrorKind::Invalid {
                                reason: format!(
                                    "{name:?}: the CUSTOM policies of one workload must name one provider, as Istio requires, and another names {:?}",
                                    p.name()
                                ),
                            }));
                        }
                    } else {
                        let Some(j) = providers.iter().position(|p| p.name == name) else {
                            return Err(name_at.error(ConfigErrorKind::Invalid {
                                reason: format!(
                                    "{name:?} names no entry of extensionProviders (give them next to `policies`)"
                                ),
                            }));
                        };
                        plan.provider = Some(ExtAuthz::compile(
                            &providers[j],
                            &providers_at.index(j),
                            &mut notes,
                        )?);
                    }
                    plan.custom.push(compiled);
                }
                Action::Allow => plan.allow.push(compiled),
                Action::Deny => plan.deny.push(compiled),
                Action::Audit => plan.audit.push(compiled),
            }
        }
        let rules_at = FieldPath::ROOT.field("headerRules");
        for (i, rule) in header_rules.iter().enumerate() {
            let at = rules_at.index(i);
            let match_at = at.field("match");
            let matches = rule
                .matches
                .iter()
                .enumerate()
                .map(|(j, m)| RequestMatcher::compile_at(&match_at.index(j), m, &mut notes))
                .collect::<Result<_, _>>()?;
            let ops = |o: &Option<crate::virtual_service::HeaderOperations>, name: &str| match o {
                Some(o) => HeaderOps::compile_at(&at.field(name), o),
                None => Ok(HeaderOps::default()),
            };
            plan.header_rules.push(CompiledHeaderRule {
                matches,
                request: ops(&rule.request, "request")?,
                response: ops(&rule.response, "response")?,
            });
        }
        if let Some(s) = settings {
            let at = FieldPath::ROOT.field("meshwasm");
            plan.normalization = s.path_normalization.unwrap_or_default();
            plan.underscores = s.headers_with_underscores.unwrap_or_default();
            if let Some(status) = s.deny_status {
                if !(400..=599).contains(&status) {
                    return Err(at.field("denyStatus").error(
                        ConfigErrorKind::HttpStatusOutOfRange {
                            status: i64::from(status),
                            min: 400,
                            max: 599,
                        },
                    ));
                }
                plan.deny_status = status;
            }
            if plan.normalization != Normalization::DecodeAndMergeSlashes {
                notes.push(at.field("pathNormalization").note(
                    "weaker than DECODE_AND_MERGE_SLASHES: paths a backend decodes may slip past a DENY",
                ));
            }
        }
        plan.headers_read = plan
            .checks()
            .filter_map(|c| match &c.attribute {
                Attribute::Header(name) => Some(name.clone()),
                _ => None,
            })
            .collect();
        plan.headers_read.sort();
        plan.headers_read.dedup();
        plan.notes = notes;
        Ok(plan)
    }

    fn notes(&self) -> &[ConfigNote] {
        &self.notes
    }

    fn summary(&self) -> String {
        format!(
            "{} CUSTOM{}, {} DENY, {} ALLOW, {} AUDIT policies; {} header rules; paths {:?}",
            self.custom.len(),
            self.provider
                .as_ref()
                .map(|p| format!(" (checked by {} in cluster {})", p.name(), p.cluster()))
                .unwrap_or_default(),
            self.deny.len(),
            self.allow.len(),
            self.audit.len(),
            self.header_rules.len(),
            self.normalization
        )
    }

    fn metrics(&self) -> Vec<MetricSpec> {
        METRICS
            .iter()
            .map(|m| MetricSpec::counter(format!("meshwasm.header_match.{m}")))
            .collect()
    }
}

enum Action {
    /// Checked by the named provider.
    Custom(String),
    Allow,
    Deny,
    Audit,
}

fn compile_policy(
    spec: &policy::AuthorizationPolicy,
    index: usize,
    at: &FieldPath<'_>,
    notes: &mut Vec<ConfigNote>,
) -> Result<(Action, CompiledPolicy), ConfigError> {
    let action = match spec.action.as_deref() {
        None | Some("ALLOW") => Action::Allow,
        Some("DENY") => Action::Deny,
        Some("AUDIT") => Action::Audit,
        Some("CUSTOM") => match &spec.provider {
            Some(p) if !p.name.is_empty() => Action::Custom(p.name.clone()),
            _ => {
                return Err(at.field("provider").error(ConfigErrorKind::Missing {
                    reason: "a CUSTOM policy names its authorizer: provider.name",
                }));
            }
        },
        Some(other) => {
            return Err(at.field("action").error(ConfigErrorKind::Invalid {
                reason: format!("{other:?} is not ALLOW, DENY, AUDIT or CUSTOM"),
            }));
        }
    };
    if spec.provider.is_some() && !matches!(action, Action::Custom(_)) {
        return Err(at.field("provider").error(ConfigErrorKind::Conflict {
            reason: "only CUSTOM policies have a provider",
        }));
    }
    for (name, set) in [
        ("selector", spec.selector.is_some()),
        ("targetRef", spec.target_ref.is_some()),
        ("targetRefs", spec.target_refs.is_some()),
    ] {
        if set {
            notes.push(at.field(name).note(
                "the filter applies where it is placed; which workloads run it is the WasmPlugin's selector",
            ));
        }
    }
    let rules_at = at.field("rules");
    let rules = match &spec.rules {
        None => Vec::new(),
        Some(rules) => rules
            .iter()
            .enumerate()
            .map(|(i, r)| compile_rule(r, &rules_at.index(i)))
            .collect::<Result<_, _>>()?,
    };
    Ok((action, CompiledPolicy { index, rules }))
}

fn compile_rule(rule: &policy::Rule, at: &FieldPath<'_>) -> Result<CompiledRule, ConfigError> {
    let from_at = at.field("from");
    let from = rule
        .from
        .iter()
        .enumerate()
        .map(|(i, f)| compile_source(&f.source, &from_at.index(i).field("source")))
        .collect::<Result<_, _>>()?;
    let to_at = at.field("to");
    let to = rule
        .to
        .iter()
        .enumerate()
        .map(|(i, t)| compile_operation(&t.operation, &to_at.index(i).field("operation")))
        .collect::<Result<_, _>>()?;
    let when_at = at.field("when");
    let mut when = Vec::new();
    for (i, c) in rule.when.iter().enumerate() {
        when.extend(compile_condition(c, &when_at.index(i))?);
    }
    Ok(CompiledRule { from, to, when })
}

fn compile_source(s: &policy::Source, at: &FieldPath<'_>) -> Result<Vec<Check>, ConfigError> {
    for (name, set) in [
        ("requestPrincipals", s.request_principals.is_some()),
        ("notRequestPrincipals", s.not_request_principals.is_some()),
        ("serviceAccounts", s.service_accounts.is_some()),
        ("notServiceAccounts", s.not_service_accounts.is_some()),
    ] {
        if set {
            return Err(at.field(name).error(ConfigErrorKind::Unsupported {
                reason: "JWT identities and service-account shorthands are not checked; use principals",
            }));
        }
    }
    let mut checks = Vec::new();
    let fields: [(&str, &Option<Vec<String>>, Attribute, bool); 8] = [
        ("principals", &s.principals, Attribute::Principal, false),
        (
            "notPrincipals",
            &s.not_principals,
            Attribute::Principal,
            true,
        ),
        ("namespaces", &s.namespaces, Attribute::Namespace, false),
        (
            "notNamespaces",
            &s.not_namespaces,
            Attribute::Namespace,
            true,
        ),
        ("ipBlocks", &s.ip_blocks, Attribute::SourceIp, false),
        ("notIpBlocks", &s.not_ip_blocks, Attribute::SourceIp, true),
        (
            "remoteIpBlocks",
            &s.remote_ip_blocks,
            Attribute::SourceIp,
            false,
        ),
        (
            "notRemoteIpBlocks",
            &s.not_remote_ip_blocks,
            Attribute::SourceIp,
            true,
        ),
    ];
    for (name, values, attribute, negated) in fields {
        if let Some(values) = values {
            checks.push(check(&at.field(name), attribute, values, negated)?);
        }
    }
    Ok(checks)
}

fn compile_operation(o: &policy::Operation, at: &FieldPath<'_>) -> Result<Vec<Check>, ConfigError> {
    let mut checks = Vec::new();
    let fields: [(&str, &Option<Vec<String>>, Attribute, bool); 8] = [
        ("hosts", &o.hosts, Attribute::Host, false),
        ("notHosts", &o.not_hosts, Attribute::Host, true),
        ("ports", &o.ports, Attribute::Port, false),
        ("notPorts", &o.not_ports, Attribute::Port, true),
        ("methods", &o.methods, Attribute::Method, false),
        ("notMethods", &o.not_methods, Attribute::Method, true),
        ("paths", &o.paths, Attribute::Path, false),
        ("notPaths", &o.not_paths, Attribute::Path, true),
    ];
    for (name, values, attribute, negated) in fields {
        if let Some(values) = values {
            checks.push(check(&at.field(name), attribute, values, negated)?);
        }
    }
    Ok(checks)
}

fn compile_condition(c: &policy::Condition, at: &FieldPath<'_>) -> Result<Vec<Check>, ConfigError> {
    let key_at = at.field("key");
    let attribute = if let Some(name) = c
        .key
        .strip_prefix("request.headers[")
        .and_then(|k| k.strip_suffix(']'))
    {
        if name.is_empty() {
            return Err(key_at.error(ConfigErrorKind::Invalid {
                reason: "an empty header name".into(),
            }));
        }
        Attribute::Header(header_name(name))
    } else {
        match c.key.as_str() {
            "source.ip" | "remote.ip" => Attribute::SourceIp,
            "source.namespace" => Attribute::Namespace,
            "source.principal" => Attribute::Principal,
            "destination.ip" => Attribute::DestinationIp,
            "destination.port" => Attribute::Port,
            "connection.sni" => Attribute::Sni,
            "" => {
                return Err(key_at.error(ConfigErrorKind::Missing {
                    reason: "a condition key",
                }));
            }
            other => {
                return Err(key_at.error(ConfigErrorKind::Invalid {
                    reason: format!(
                        "{other:?} is not checked; use request.headers[NAME], source.ip, remote.ip, \
                         source.namespace, source.principal, destination.ip, destination.port or connection.sni"
                    ),
                }));
            }
        }
    };
    let mut checks = Vec::new();
    if let Some(values) = &c.values {
        checks.push(check(
            &at.field("values"),
            attribute.clone(),
            values,
            false,
        )?);
    }
    if let Some(values) = &c.not_values {
        checks.push(check(&at.field("notValues"), attribute, values, true)?);
    }
    if checks.is_empty() {
        return Err(at.error(ConfigErrorKind::Missing {
            reason: "values or notValues",
        }));
    }
    Ok(checks)
}

/// Header names as matched: lowercase, `_` read as `-`.
/// Whether a header's name, as sent, is `wanted` (lowercase, `-` for `_`).
fn same_header(name: &[u8], wanted: &str) -> bool {
    name.len() == wanted.len()
        && name.iter().zip(wanted.bytes()).all(|(n, w)| {
            let n = n.to_ascii_lowercase();
            n == w || (n == b'_' && w == b'-')
        })
}

fn header_name(name: &str) -> String {
    name.to_ascii_lowercase().replace('_', "-")
}

fn check(
    at: &FieldPath<'_>,
    attribute: Attribute,
    values: &[String],
    negated: bool,
) -> Result<Check, ConfigError> {
    let values = values
        .iter()
        .enumerate()
        .map(|(i, v)| pattern(&at.index(i), &attribute, v))
        .collect::<Result<_, _>>()?;
    Ok(Check {
        attribute,
        values,
        negated,
    })
}

fn pattern(at: &FieldPath<'_>, attribute: &Attribute, value: &str) -> Result<Pattern, ConfigError> {
    let invalid = |reason: String| at.error(ConfigErrorKind::Invalid { reason });
    match attribute {
        Attribute::SourceIp | Attribute::DestinationIp => cidr(value)
            .ok_or_else(|| invalid(format!("{value:?} is not an IP address or CIDR block"))),
        Attribute::Port => value
            .parse::<u16>()
            .map(|p| Pattern::Exact(p.to_string()))
            .map_err(|_| invalid(format!("{value:?} is not a port"))),
        Attribute::Path if value.contains('{') => template(value).ok_or_else(|| {
            invalid(format!(
                "{value:?}: a template segment is exactly {{*}} or {{**}}, and {{**}} comes last"
            ))
        }),
        Attribute::Host => {
            let lower = value.to_ascii_lowercase();
            let lower = lower.trim_end_matches('.').to_owned();
            // `host:port` (not an IPv6 literal without brackets).
            if let Some((host, port)) = lower.rsplit_once(':')
                && !host.contains(':')
                && let Ok(port) = port.parse::<u16>()
            {
                return Ok(Pattern::HostPort(
                    host.trim_end_matches('.').to_owned(),
                    port,
                ));
            }
            Ok(Pattern::Host(Box::new(wildcard(&lower))))
        }
        _ => Ok(wildcard(value)),
    }
}

/// Istio's string forms: `*`, `prefix*`, `*suffix`, exact.
fn wildcard(value: &str) -> Pattern {
    if value == "*" {
        Pattern::Any
    } else if let Some(prefix) = value.strip_suffix('*') {
        Pattern::Prefix(prefix.to_owned())
    } else if let Some(suffix) = value.strip_prefix('*') {
        Pattern::Suffix(suffix.to_owned())
    } else {
        Pattern::Exact(value.to_owned())
    }
}

fn template(value: &str) -> Option<Pattern> {
    let parts: Vec<&str> = value.strip_prefix('/')?.split('/').collect();
    let mut segments = Vec::new();
    for (i, part) in parts.iter().enumerate() {
        segments.push(match *part {
            "{*}" => Segment::One,
            "{**}" if i == parts.len() - 1 => Segment::Rest,
            p if p.contains(['{', '}', '*']) => return None,
            p => Segment::Literal(p.to_owned()),
        });
    }
    Some(Pattern::Template(segments))
}

fn cidr(value: &str) -> Option<Pattern> {
    let (ip, len) = match value.split_once('/') {
        Some((ip, len)) => (ip.parse::<IpAddr>().ok()?, len.parse::<u8>().ok()?),
        None => {
            let ip = value.parse::<IpAddr>().ok()?;
            (ip, if ip.is_ipv4() { 32 } else { 128 })
        }
    };
    let max = if ip.is_ipv4() { 32 } else { 128 };
    (len <= max).then_some(Pattern::Cidr(ip, len))
}

impl Pattern {
    fn matches(&self, value: &str, host_port: Option<&str>) -> bool {
        match self {
            Pattern::Exact(e) => value == e,
            Pattern::Prefix(p) => value.starts_with(p.as_str()),
            Pattern::Suffix(s) => value.ends_with(s.as_str()),
            Pattern::Any => true,
            Pattern::Cidr(net, len) => value
                .parse::<IpAddr>()
                .is_ok_and(|ip| in_block(ip, *net, *len)),
            Pattern::Template(segments) => template_matches(segments, value),
            Pattern::HostPort(host, port) => host_port == Some(&format!("{host}:{port}")),
            Pattern::Host(inner) => inner.matches(value, None),
        }
    }
}

fn in_block(ip: IpAddr, net: IpAddr, len: u8) -> bool {
    match (ip, net) {
        (IpAddr::V4(a), IpAddr::V4(n)) => {
            let mask = u32::MAX.checked_shl(32 - u32::from(len)).unwrap_or(0);
            u32::from(a) & mask == u32::from(n) & mask
        }
        (IpAddr::V6(a), IpAddr::V6(n)) => {
            let mask = u128::MAX.checked_shl(128 - u32::from(len)).unwrap_or(0);
            u128::from(a) & mask == u128::from(n) & mask
        }
        _ => false,
    }
}

/// `{*}` is one non-empty segment; `{**}` is the rest of the path, which
/// must exist (`/debug/{**}` matches `/debug/` and `/debug/a/b`, not `/debug`).
fn template_matches(template: &[Segment], path: &str) -> bool {
    let Some(rest) = path.strip_prefix('/') else {
        return false;
    };
    let parts: Vec<&str> = rest.split('/').collect();
    let mut i = 0;
    for segment in template {
        match segment {
            Segment::Rest => return i < parts.len(),
            Segment::One => {
                if parts.get(i).is_none_or(|p| p.is_empty()) {
                    return false;
                }
            }
            Segment::Literal(l) => {
                if parts.get(i) != Some(&l.as_str()) {
                    return false;
                }
            }
        }
        i += 1;
    }
    i == parts.len()
}

impl AuthzPlan {
    /// Reads the request once for matching, from its header map and the
    /// connection's properties.
    ///
    /// # Errors
    ///
    /// [`Malformed`]: the request is answered 400.
    pub fn read<'a>(
        &self,
        headers: impl Iterator<Item = (&'a [u8], &'a [u8])>,
        peer: Peer,
    ) -> Result<AuthzRequest, Malformed> {
        let mut path = None;
        let mut method = String::new();
        let mut authorities: Vec<String> = Vec::new();
        let mut others = Vec::new();
        let text = |value: &[u8]| String::from_utf8_lossy(value).trim().to_owned();
        for (name, value) in headers {
            if name.first() == Some(&b':') {
                match name {
                    b":path" => path = Some(text(value)),
                    b":method" => method = text(value),
                    b":authority" => authorities.push(text(value)),
                    _ => {}
                }
                continue;
            }
            if name.eq_ignore_ascii_case(b"host") {
                authorities.push(text(value));
                continue;
            }
            if self.underscores == Underscores::Reject && name.contains(&b'_') {
                return Err(Malformed::Underscore);
            }
            // Only the headers a policy reads are kept: each costs a copy.
            if let Some(wanted) = self.headers_read.iter().find(|w| same_header(name, w)) {
                others.push((wanted.clone(), text(value)));
            }
        }
        let mut target = path.ok_or(Malformed::NoPath)?;
        // Absolute-form: the authority in the target is the host.
        for scheme in ["http://", "https://"] {
            if let Some(rest) = target.strip_prefix(scheme) {
                let (authority, path) = rest.split_at(rest.find('/').unwrap_or(rest.len()));
                authorities.push(authority.to_owned());
                target = if path.is_empty() {
                    "/".to_owned()
                } else {
                    path.to_owned()
                };
                break;
            }
        }
        authorities.sort();
        authorities.dedup_by(|a, b| a.eq_ignore_ascii_case(b));
        // Envoy joins repeated `Host` headers into one `:authority` with
        // `,`, and no host name has one: that is several hosts too.
        if authorities.len() > 1 || authorities.iter().any(|a| a.contains(',')) {
            return Err(Malformed::SeveralHosts);
        }
        let authority = authorities.pop().unwrap_or_default().to_ascii_lowercase();
        let (host, authority_port) = split_host(&authority);
        let spiffe = peer
            .peer_uri_san
            .as_deref()
            .and_then(|s| s.strip_prefix("spiffe://"))
            .map(str::to_owned);
        let namespace = spiffe.as_deref().and_then(|id| {
            let mut parts = id.split('/');
            parts
                .find(|p| *p == "ns")
                .and_then(|_| parts.next())
                .map(str::to_owned)
        });
        Ok(AuthzRequest {
            path: normalize(&target, self.normalization).map_err(Malformed::Path)?,
            method,
            host_port: authority_port.map(|p| format!("{host}:{p}")),
            host,
            port: peer.destination_port,
            headers: others,
            source_ip: peer.source_address.as_deref().and_then(ip_of),
            destination_ip: peer.destination_address.as_deref().and_then(ip_of),
            principal: spiffe,
            namespace,
            sni: peer.sni,
        })
    }

    /// Every condition of every policy.
    fn checks(&self) -> impl Iterator<Item = &Check> {
        self.custom
            .iter()
            .chain(&self.deny)
            .chain(&self.allow)
            .chain(&self.audit)
            .flat_map(|p| &p.rules)
            .flat_map(|r| {
                r.from
                    .iter()
                    .flatten()
                    .chain(r.to.iter().flatten())
                    .chain(&r.when)
            })
    }

    /// Which connection properties the policies read, so that the filter
    /// asks the host for those only.
    pub fn needs(&self) -> Needs {
        let mut needs = Needs::default();
        for check in self.checks() {
            match check.attribute {
                Attribute::SourceIp => needs.source_address = true,
                Attribute::DestinationIp => needs.destination_address = true,
                Attribute::Port => needs.destination_port = true,
                Attribute::Principal | Attribute::Namespace => needs.peer_identity = true,
                Attribute::Sni => needs.sni = true,
                _ => {}
            }
        }
        needs
    }

    /// The check to make first, when the request matches a CUSTOM policy
    /// (by any reading, as a DENY rule); `headers` are the request's as
    /// it arrived, which Envoy's ext_authz forwards. Apply an allowing
    /// answer with [`AuthzRequest::apply_check`] before [`Self::decide`].
    pub fn check<'a>(
        &self,
        req: &AuthzRequest,
        headers: impl Iterator<Item = (&'a [u8], &'a [u8])>,
    ) -> Option<(&ExtAuthz, custom::Check<'_>)> {
        let provider = self.provider.as_ref()?;
        self.custom
            .iter()
            .any(|p| p.matches(req, Reading::Any))
            .then(|| (provider, provider.check(headers)))
    }

    /// The authorizer of the CUSTOM policies, if any.
    pub fn provider(&self) -> Option<&ExtAuthz> {
        self.provider.as_ref()
    }

    /// The status of a denial.
    pub fn deny_status(&self) -> u16 {
        self.deny_status
    }

    /// Decides a request read by [`Self::read`]; `raw` is the same request
    /// for the header rules' VirtualService matches.
    pub fn decide(&self, req: &AuthzRequest, raw: &mut impl RequestAttributes) -> Decision<'_> {
        let audited = self.audit.iter().any(|p| p.matches(req, Reading::Any));
        let mut decision = Decision {
            verdict: Verdict::Allow,
            audited,
            request_edits: Vec::new(),
            response: ResponseEdits::default(),
        };
        if let Some(p) = self.deny.iter().find(|p| p.matches(req, Reading::Any)) {
            decision.verdict = Verdict::Deny {
                details: format!("rbac_access_denied_matched_policy[policy-{}]", p.index),
            };
            return decision;
        }
        if !self.allow.is_empty() && !self.allow.iter().any(|p| p.matches(req, Reading::Every)) {
            decision.verdict = Verdict::Deny {
                details: "rbac_access_denied_matched_policy[none]".into(),
            };
            return decision;
        }
        for (i, rule) in self.header_rules.iter().enumerate() {
            if rule.matches.is_empty() || rule.matches.iter().any(|m| m.matches(raw)) {
                decision.request_edits.extend(rule.request.edits());
                if !rule.response.is_empty() {
                    decision.response.rules.push(i);
                }
            }
        }
        decision
    }

    /// The response's header edits a request's decisions left: the
    /// check's added headers, then the matched header rules' edits.
    pub fn response_edits<'p>(&'p self, owed: &'p ResponseEdits) -> Vec<HeaderOp<'p>> {
        let added = owed
            .added
            .iter()
            .map(|(n, v)| HeaderOp::Add(n, v.as_str().into()));
        let rules = owed
            .rules
            .iter()
            .filter_map(|&i| self.header_rules.get(i))
            .flat_map(|r| r.response.edits());
        added.chain(rules).collect()
    }

    /// The metric a decision counts.
    pub fn counted(decision: &Decision<'_>) -> [Option<MetricRef>; 2] {
        let verdict = match decision.verdict {
            Verdict::Allow => metric::ALLOWED,
            Verdict::Deny { .. } => metric::DENIED,
        };
        [Some(verdict), decision.audited.then_some(metric::AUDITED)]
    }
}

fn split_host(authority: &str) -> (String, Option<u16>) {
    let (host, port) = if let Some(rest) = authority.strip_prefix('[') {
        match rest.split_once(']') {
            Some((h, p)) => (h, p.strip_prefix(':').and_then(|p| p.parse().ok())),
            None => (rest, None),
        }
    } else {
        match authority.rsplit_once(':') {
            Some((h, p)) if !h.contains(':') => (h, p.parse().ok()),
            _ => (authority, None),
        }
    };
    (host.trim_end_matches('.').to_owned(), port)
}

fn ip_of(address: &str) -> Option<IpAddr> {
    address
        .parse::<std::net::SocketAddr>()
        .map(|s| s.ip())
        .or_else(|_| address.parse())
        .ok()
}

impl CompiledPolicy {
    fn matches(&self, req: &AuthzRequest, reading: Reading) -> bool {
        self.rules.iter().any(|r| r.matches(req, reading))
    }
}

impl CompiledRule {
    fn matches(&self, req: &AuthzRequest, reading: Reading) -> bool {
        let all = |checks: &[Check]| checks.iter().all(|c| c.holds(req, reading));
        (self.from.is_empty() || self.from.iter().any(|c| all(c)))
            && (self.to.is_empty() || self.to.iter().any(|c| all(c)))
            && all(&self.when)
    }
}

impl Check {
    /// Whether the condition holds: for a header, by any reading (DENY)
    /// or by every reading (ALLOW); an absent value satisfies only a
    /// negated check.
    fn holds(&self, req: &AuthzRequest, reading: Reading) -> bool {
        let one = |value: &str| {
            let matched = self
                .values
                .iter()
                .any(|p| p.matches(value, req.host_port.as_deref()));
            matched != self.negated
        };
        let single = |value: Option<&str>| value.map_or(self.negated, one);
        match &self.attribute {
            Attribute::Path => one(&req.path),
            Attribute::Method => one(&req.method),
            Attribute::Host => one(&req.host),
            Attribute::Port => single(req.port.map(|p| p.to_string()).as_deref()),
            Attribute::Principal => single(req.principal.as_deref()),
            Attribute::Namespace => single(req.namespace.as_deref()),
            Attribute::SourceIp => single(req.source_ip.map(|i| i.to_string()).as_deref()),
            Attribute::DestinationIp => {
                single(req.destination_ip.map(|i| i.to_string()).as_deref())
            }
            Attribute::Sni => single(req.sni.as_deref()),
            Attribute::Header(name) => {
                let readings = req.readings(name);
                if readings.is_empty() {
                    return self.negated;
                }
                match reading {
                    Reading::Any => readings.iter().any(|r| one(r)),
                    Reading::Every => readings.iter().all(|r| one(r)),
                }
            }
        }
    }
}

impl AuthzRequest {
    /// Every way a backend may read a header: each of its values (the
    /// first, the last, and those between, which a backend iterating over
    /// them sees too), and all of them joined with `,`.
    fn readings(&self, name: &str) -> Vec<String> {
        let values: Vec<&str> = self
            .headers
            .iter()
            .filter(|(n, _)| n == name)
            .map(|(_, v)| v.as_str())
            .collect();
        let mut readings: Vec<String> = values.iter().map(|v| (*v).to_owned()).collect();
        if values.len() > 1 {
            readings.push(values.join(","));
        }
        readings
    }

    /// Carries an allowing check's header edits into what the DENY and
    /// ALLOW policies see, as Envoy's RBAC sees ext_authz's edits.
    pub fn apply_check(&mut self, set: &[(String, String)], remove: &[String]) {
        for name in remove.iter().map(|n| header_name(n)) {
            self.headers.retain(|(n, _)| *n != name);
        }
        for (name, value) in set {
            let name = header_name(&name.to_ascii_lowercase());
            self.headers.retain(|(n, _)| *n != name);
            self.headers.push((name, value.trim().to_owned()));
        }
    }

    /// The normalized path the rules see.
    pub fn path(&self) -> &str {
        &self.path
    }

    /// The method.
    pub fn method(&self) -> &str {
        &self.method
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn templates_match_segments() {
        let t = |p: &str| template(p).unwrap();
        assert!(t("/debug/{**}").matches("/debug/", None));
        assert!(t("/debug/{**}").matches("/debug/a/b", None));
        assert!(!t("/debug/{**}").matches("/debug", None));
        assert!(t("/users/{*}/profile").matches("/users/42/profile", None));
        assert!(!t("/users/{*}/profile").matches("/users//profile", None));
        assert!(!t("/users/{*}/profile").matches("/users/4/2/profile", None));
        assert!(template("/a/{**}/b").is_none());
        assert!(template("/a/x{*}").is_none());
    }

    #[test]
    fn hosts_drop_ports_and_trailing_dots() {
        assert_eq!(
            split_host("admin.example.com.:8080"),
            ("admin.example.com".into(), Some(8080))
        );
        assert_eq!(split_host("[::1]:80"), ("::1".into(), Some(80)));
        assert_eq!(split_host("::1"), ("::1".into(), None));
    }
}
