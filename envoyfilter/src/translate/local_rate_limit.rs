//! EnvoyFilters that insert Envoy's rate limit HTTP filters, `local_ratelimit`
//! and `ratelimit` (global: a rate limit service over gRPC), made the
//! rate-limit filter's configuration.
//!
//! The filter reads Envoy's own `LocalRateLimit` and `RateLimit` documents,
//! so translation is unwrapping (a `TypedStruct`'s `value`), placement (the
//! EnvoyFilter's `workloadSelector`, the patch's context and port) and what
//! a Wasm filter cannot do: read the route's configuration, or open a
//! cluster of its own. Route `rate_limits` move into the filters' inline
//! `rate_limits` when it is clear which filters they belong to; per-route
//! `typed_per_filter_config` overrides are reported. A local and a global
//! limit on the same workloads become one filter, `{"local": ..., "global": ...}`.
//! The rate limit service's cluster is looked for in the input's `CLUSTER`
//! patches, or read as Istio's `outbound|PORT||HOST`; else the user is told
//! it must exist. The config is compiled by the filter's own code, so an
//! error names the field by its path in the YAML and its line.
//!
//! EnvoyFilters are read together when they select the same workloads (one
//! namespace, one `workloadSelector`), as Istio applies them: Istio's global
//! rate limit task inserts the filter in one EnvoyFilter and adds the route
//! `rate_limits` in another.

use super::{Context, Severity, Source};
use crate::yaml::Document;
use meshwasm_core::plan::Plan as _;
use meshwasm_core::rate_limit::RateLimitPlan;
use meshwasm_core::{ConfigError, ConfigErrorKind};
use serde_json::{Value, json};
use std::collections::BTreeMap;

/// Envoy's name of its local rate limit HTTP filter.
pub const LOCAL_RATE_LIMIT_FILTER: &str = "envoy.filters.http.local_ratelimit";
/// The type of its configuration.
pub const LOCAL_RATE_LIMIT_TYPE: &str =
    "type.googleapis.com/envoy.extensions.filters.http.local_ratelimit.v3.LocalRateLimit";
/// Envoy's name of its global rate limit HTTP filter.
pub const GLOBAL_RATE_LIMIT_FILTER: &str = "envoy.filters.http.ratelimit";
/// The type of its configuration.
pub const GLOBAL_RATE_LIMIT_TYPE: &str =
    "type.googleapis.com/envoy.extensions.filters.http.ratelimit.v3.RateLimit";
/// The wrappers Istio's examples put around it.
const TYPED_STRUCT_TYPES: [&str; 2] = [
    "type.googleapis.com/udpa.type.v1.TypedStruct",
    "type.googleapis.com/xds.type.v3.TypedStruct",
];
/// Envoy's router, the filter Istio's examples insert before.
const ROUTER_FILTER: &str = "envoy.filters.http.router";

/// Which of Envoy's rate limit filters a patch is about.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Mode {
    /// `local_ratelimit`: token buckets in the proxy.
    Local,
    /// `ratelimit`: a rate limit service decides.
    Global,
}

impl Mode {
    const BOTH: [Mode; 2] = [Mode::Local, Mode::Global];

    /// Envoy's filter name.
    pub fn filter(self) -> &'static str {
        match self {
            Mode::Local => LOCAL_RATE_LIMIT_FILTER,
            Mode::Global => GLOBAL_RATE_LIMIT_FILTER,
        }
    }

    /// Its config's type URL.
    pub fn type_url(self) -> &'static str {
        match self {
            Mode::Local => LOCAL_RATE_LIMIT_TYPE,
            Mode::Global => GLOBAL_RATE_LIMIT_TYPE,
        }
    }

    fn config_name(self) -> &'static str {
        match self {
            Mode::Local => "LocalRateLimit",
            Mode::Global => "RateLimit",
        }
    }

    fn of_filter(name: &Value) -> Option<Mode> {
        Mode::BOTH.into_iter().find(|m| name == m.filter())
    }

    fn of_type(url: Option<&str>) -> Option<Mode> {
        Mode::BOTH.into_iter().find(|m| url == Some(m.type_url()))
    }
}

/// One rate limit filter, from one `HTTP_FILTER` patch of an EnvoyFilter
/// (or a local and a global one on the same workloads, combined).
#[derive(Debug, Clone)]
pub struct RateLimitFilter {
    /// The EnvoyFilter it comes from.
    pub source: Source,
    /// Its namespace: `metadata.namespace`, else the default namespace.
    pub namespace: String,
    /// The base of the generated resources' names: the EnvoyFilter's name,
    /// with `-N` when it inserts several.
    pub name: String,
    /// `spec.workloadSelector.labels`; empty for every workload of the namespace.
    pub selector: BTreeMap<String, String>,
    /// The patch's `match.context`: `ANY`, `SIDECAR_INBOUND`,
    /// `SIDECAR_OUTBOUND` or `GATEWAY`.
    pub context: String,
    /// `match.listener.portNumber`, when given.
    pub port: Option<u64>,
    /// `INSERT_FIRST`: the user wants it at the head of the chain.
    pub first: bool,
    /// The patch's `match` as written, for an EnvoyFilter that inserts the
    /// Wasm filter where the native one was.
    pub patch_match: Value,
    /// The patch's `operation`.
    pub operation: String,
    /// The config the filter gets: a `LocalRateLimit`, a (global)
    /// `RateLimit`, or `{"local": ..., "global": ...}` (a `TypedStruct`'s
    /// `value`, without `@type`), with route `rate_limits` moved in.
    pub config: Value,
    /// The global part's rate limit service cluster, when there is one.
    pub service_cluster: Option<String>,
    /// The `:authority` the config gives the call (`envoy_grpc.authority`).
    pub service_authority: Option<String>,
    /// The `CLUSTER` patches (`ADD`) of the EnvoyFilters it replaces, as
    /// written: the Wasm filter cannot add a cluster, so Istio still needs
    /// them in an EnvoyFilter.
    pub cluster_patches: Vec<Value>,
}

/// The cluster of a rate limit service, for plain Envoy.
#[derive(Debug, Clone, PartialEq)]
pub struct ServiceCluster {
    /// The name the config gives it (`envoy_grpc.cluster_name`).
    pub name: String,
    /// The Envoy `Cluster` an EnvoyFilter `CLUSTER` patch of the input adds
    /// under that name, as written.
    pub defined: Option<Value>,
    /// The host and port of Istio's `outbound|PORT|SUBSET|HOST` name.
    pub address: Option<(String, u16)>,
    /// The name plain Envoy gives it: without an `authority` in the config
    /// the call's `:authority` is the cluster's name, so a name that is no
    /// valid authority (Istio's, with `|`) becomes `HOST:PORT`.
    pub envoy_name: String,
}

/// What one `configPatches` entry is, for the rate limits.
enum Patch {
    /// Inserts a native filter.
    Insert(Mode),
    /// Merges into, replaces or removes a native filter.
    Edit(Mode, String),
    /// A route or virtual host patch: the path (under `patch.value`) of
    /// its `rate_limits` and of its per-filter rate limit overrides.
    Route {
        rate_limits: Option<String>,
        per_filter: Vec<String>,
    },
    /// Adds a cluster (`CLUSTER`, `ADD`): a rate limit service's, maybe.
    Cluster,
    /// Anything else.
    Other,
}

/// A field by either of proto-JSON's spellings: `(name, value)`.
fn field<'a>(value: &'a Value, snake: &'a str, camel: &'a str) -> Option<(&'a str, &'a Value)> {
    value
        .get(snake)
        .map(|v| (snake, v))
        .or_else(|| value.get(camel).map(|v| (camel, v)))
}

/// The config type a `typed_config` carries, through a TypedStruct.
fn type_of(typed: &Value) -> Option<&str> {
    let outer = typed.get("@type")?.as_str()?;
    if TYPED_STRUCT_TYPES.contains(&outer) {
        field(typed, "type_url", "typeUrl")?.1.as_str()
    } else {
        Some(outer)
    }
}

fn classify(patch: &Value) -> Patch {
    let value = &patch["patch"]["value"];
    let operation = patch["patch"]["operation"].as_str().unwrap_or_default();
    match patch["applyTo"].as_str().unwrap_or_default() {
        "HTTP_FILTER" => {
            let typed = field(value, "typed_config", "typedConfig").map(|(_, t)| t);
            let named =
                Mode::of_filter(&value["name"]).or_else(|| Mode::of_type(typed.and_then(type_of)));
            let targets = Mode::of_filter(
                &patch["match"]["listener"]["filterChain"]["filter"]["subFilter"]["name"],
            );
            match (operation, named.or(targets)) {
                ("INSERT_BEFORE" | "INSERT_AFTER" | "INSERT_FIRST" | "ADD", Some(mode))
                    if named.is_some() =>
                {
                    Patch::Insert(mode)
                }
                ("MERGE" | "REPLACE" | "REMOVE", Some(mode)) => {
                    Patch::Edit(mode, operation.to_owned())
                }
                _ => Patch::Other,
            }
        }
        apply @ ("HTTP_ROUTE" | "VIRTUAL_HOST") => {
            let holder = if apply == "HTTP_ROUTE" {
                field(value, "route", "route")
            } else {
                Some(("", value))
            };
            let under = |prefix: &str, name: &str| {
                if prefix.is_empty() {
                    name.to_owned()
                } else {
                    format!("{prefix}.{name}")
                }
            };
            let rate_limits = holder.and_then(|(prefix, route)| {
                field(route, "rate_limits", "rateLimits").map(|(name, _)| under(prefix, name))
            });
            let per_filter: Vec<String> =
                field(value, "typed_per_filter_config", "typedPerFilterConfig")
                    .into_iter()
                    .flat_map(|(name, map)| {
                        Mode::BOTH
                            .into_iter()
                            .filter(|m| map.get(m.filter()).is_some())
                            .map(move |m| format!("{name}.{}", m.filter()))
                    })
                    .collect();
            if rate_limits.is_none() && per_filter.is_empty() {
                Patch::Other
            } else {
                Patch::Route {
                    rate_limits,
                    per_filter,
                }
            }
        }
        "CLUSTER" if operation == "ADD" => Patch::Cluster,
        _ => Patch::Other,
    }
}

/// Whether an EnvoyFilter may be about Envoy's rate limits: it inserts,
/// edits or overrides per route a rate limit filter, or adds route
/// `rate_limits` or a cluster, which go with such a filter when one selects
/// the same workloads. Those without one are kept for Istio.
pub(crate) fn mentions_rate_limit(resource: &Value) -> bool {
    resource["spec"]["configPatches"]
        .as_array()
        .into_iter()
        .flatten()
        .any(|p| !matches!(classify(p), Patch::Other))
}

/// Istio's cluster name `outbound|PORT|SUBSET|HOST` as its host and port.
fn istio_cluster_address(name: &str) -> Option<(String, u16)> {
    let mut parts = name.split('|');
    let (Some("outbound"), Some(port), Some(_), Some(host), None) = (
        parts.next(),
        parts.next(),
        parts.next(),
        parts.next(),
        parts.next(),
    ) else {
        return None;
    };
    let port = port.parse().ok()?;
    (!host.is_empty()).then(|| (host.to_owned(), port))
}

/// Whether a cluster speaks HTTP/2 upstream, as gRPC needs.
fn speaks_http2(cluster: &Value) -> bool {
    let text = cluster.to_string();
    ["http2_protocol_options", "http2ProtocolOptions"]
        .iter()
        .any(|k| text.contains(k))
}

/// `snake_case` of a lowerCamelCase name.
fn snake(name: &str) -> String {
    let mut out = String::with_capacity(name.len() + 4);
    for c in name.chars() {
        if c.is_ascii_uppercase() {
            out.push('_');
            out.push(c.to_ascii_lowercase());
        } else {
            out.push(c);
        }
    }
    out
}

/// lowerCamelCase of a `snake_case` name.
fn camel(name: &str) -> String {
    let mut out = String::with_capacity(name.len());
    let mut upper = false;
    for c in name.chars() {
        if c == '_' {
            upper = true;
        } else if upper {
            out.push(c.to_ascii_uppercase());
            upper = false;
        } else {
            out.push(c);
        }
    }
    out
}

/// A path into `config` (`tokenBucket.fillInterval`, `descriptors[0].entries`)
/// with each field spelled as the document spells it, so the YAML's
/// positions find it.
fn as_written(config: &Value, path: &str) -> String {
    let mut out = String::new();
    let mut at = Some(config);
    for (i, part) in path.split('.').enumerate() {
        let cut = part.find('[').unwrap_or(part.len());
        let (key, indices) = part.split_at(cut);
        let spelled = [key.to_owned(), snake(key), camel(key)]
            .into_iter()
            .find(|k| at.is_some_and(|v| v.get(k).is_some()))
            .unwrap_or_else(|| key.to_owned());
        if i > 0 {
            out.push('.');
        }
        out.push_str(&spelled);
        at = at.and_then(|v| v.get(&spelled));
        for index in indices.split('[').skip(1) {
            let index = index.trim_end_matches(']');
            out.push_str(&format!("[{index}]"));
            at = at.and_then(|v| v.get(index.parse::<usize>().ok()?));
        }
    }
    out
}

fn join(prefix: &str, path: &str) -> String {
    if path.is_empty() {
        prefix.to_owned()
    } else {
        format!("{prefix}.{path}")
    }
}

/// The message of a filter error, without serde's JSON position (the
/// finding gives the YAML line instead).
pub(super) fn message(error: &ConfigError) -> String {
    match &error.kind {
        ConfigErrorKind::Json { message, .. } => message.clone(),
        kind => kind.to_string(),
    }
}

/// Whether a route patch's match picks some routes or virtual hosts
/// rather than every route of the route configuration.
fn narrows_routes(patch: &Value) -> bool {
    let rc = &patch["match"]["routeConfiguration"];
    let vhost = &rc["vhost"];
    rc.get("name").is_some()
        || rc.get("gateway").is_some()
        || vhost.get("name").is_some()
        || vhost.get("domainName").is_some()
        || vhost["route"].get("name").is_some()
        || vhost["route"]
            .get("action")
            .is_some_and(|a| a.as_str() != Some("ANY"))
}

/// Whether a name may be an HTTP/2 `:authority` (RFC 3986's host and
/// port characters), as the cluster name is when the call sets none.
fn valid_authority(name: &str) -> bool {
    !name.is_empty()
        && name
            .chars()
            .all(|c| c.is_ascii_alphanumeric() || "-._~!$&'()*+,;=:@[]%".contains(c))
}

/// A patch that inserts a native filter: which EnvoyFilter of the group,
/// which patch, which filter.
struct Insert {
    member: usize,
    patch: usize,
    mode: Mode,
}

/// An EnvoyFilter of a group, read.
struct Member<'d> {
    doc: &'d Document,
    source: &'d Source,
    patches: Vec<Value>,
    kinds: Vec<Patch>,
}

/// The workloads an EnvoyFilter selects: its namespace and labels.
type Workloads = (String, BTreeMap<String, String>);

fn selector_of(resource: &Value) -> BTreeMap<String, String> {
    resource["spec"]["workloadSelector"]["labels"]
        .as_object()
        .into_iter()
        .flatten()
        .map(|(k, v)| (k.clone(), v.as_str().unwrap_or_default().to_owned()))
        .collect()
}

fn at(i: usize) -> String {
    format!("spec.configPatches[{i}]")
}

impl Context<'_> {
    /// The rate limits of the EnvoyFilters that may be about Envoy's rate
    /// limit filters, read together by the workloads they select; and the
    /// rate limit services' clusters. Everything else in them is reported;
    /// a group that inserts no rate limit filter is kept for Istio.
    pub(super) fn rate_limit_envoy_filters(
        &mut self,
        filters: &[(&Document, Source)],
    ) -> (Vec<RateLimitFilter>, Vec<ServiceCluster>) {
        let members: Vec<Member<'_>> = filters
            .iter()
            .map(|(doc, source)| {
                let patches: Vec<Value> = doc.value["spec"]["configPatches"]
                    .as_array()
                    .cloned()
                    .unwrap_or_default();
                let kinds = patches.iter().map(classify).collect();
                Member {
                    doc,
                    source,
                    patches,
                    kinds,
                }
            })
            .collect();
        // Every cluster the input's EnvoyFilters add, by name.
        let defined: Vec<(String, Value)> = members
            .iter()
            .flat_map(|m| m.patches.iter().zip(&m.kinds))
            .filter(|(_, k)| matches!(k, Patch::Cluster))
            .filter_map(|(p, _)| {
                let value = &p["patch"]["value"];
                Some((value["name"].as_str()?.to_owned(), value.clone()))
            })
            .collect();
        let mut groups: Vec<(Workloads, Vec<usize>)> = Vec::new();
        for (i, m) in members.iter().enumerate() {
            let namespace = m
                .source
                .namespace
                .clone()
                .unwrap_or_else(|| self.options.default_namespace.clone());
            let key = (namespace, selector_of(&m.doc.value));
            match groups.iter_mut().find(|(k, _)| *k == key) {
                Some((_, list)) => list.push(i),
                None => groups.push((key, vec![i])),
            }
        }
        let mut out = Vec::new();
        let mut clusters: Vec<ServiceCluster> = Vec::new();
        for ((namespace, selector), list) in groups {
            let group: Vec<&Member<'_>> = list.iter().map(|&i| &members[i]).collect();
            let filters = self.rate_limit_group(&group, &namespace, &selector, &defined);
            for f in &filters {
                let Some(name) = &f.service_cluster else {
                    continue;
                };
                if clusters.iter().any(|c| c.name == *name) {
                    continue;
                }
                let address = istio_cluster_address(name);
                let envoy_name = if f.service_authority.is_some() {
                    name.clone()
                } else {
                    [
                        Some(name.clone()),
                        address.as_ref().map(|(h, p)| format!("{h}:{p}")),
                    ]
                    .into_iter()
                    .flatten()
                    .find(|n| valid_authority(n))
                    .unwrap_or_else(|| name.clone())
                };
                clusters.push(ServiceCluster {
                    name: name.clone(),
                    defined: defined
                        .iter()
                        .find(|(n, _)| n == name)
                        .map(|(_, c)| c.clone()),
                    address,
                    envoy_name,
                });
            }
            out.extend(filters);
        }
        (out, clusters)
    }

    fn rate_limit_group(
        &mut self,
        group: &[&Member<'_>],
        namespace: &str,
        selector: &BTreeMap<String, String>,
        defined: &[(String, Value)],
    ) -> Vec<RateLimitFilter> {
        let inserts: Vec<Insert> = group
            .iter()
            .enumerate()
            .flat_map(|(member, m)| {
                m.kinds
                    .iter()
                    .enumerate()
                    .filter_map(move |(patch, k)| match k {
                        Patch::Insert(mode) => Some(Insert {
                            member,
                            patch,
                            mode: *mode,
                        }),
                        _ => None,
                    })
            })
            .collect();
        if inserts.is_empty() {
            // Route limits or clusters without a filter of the input to go
            // with: kept for Istio as they are.
            for m in group {
                self.file = m.source.file.clone();
                self.not_translated(m.doc, m.source);
            }
            return Vec::new();
        }
        let mut route_limits: Vec<(usize, usize, String)> = Vec::new();
        let mut cluster_patches = Vec::new();
        for (member, m) in group.iter().enumerate() {
            let (source, doc) = (m.source, m.doc);
            self.file = source.file.clone();
            for (i, kind) in m.kinds.iter().enumerate() {
                match kind {
                    Patch::Insert(_) => {}
                    Patch::Edit(mode, operation) => self.warn(source, doc, &format!("{}.patch.operation", at(i)), format!("{operation} of Envoy's {} filter is not translated: the rate-limit filter takes its whole config from the patch that inserts it; write the change there", mode.filter())),
                    Patch::Route { rate_limits, per_filter } => {
                        for path in per_filter {
                            let message = if path.ends_with(LOCAL_RATE_LIMIT_FILTER) {
                                "a per-route LocalRateLimit is not carried over: a Wasm filter cannot read the route's configuration, so the filter's own config applies on these routes too; to limit them apart, give the filter descriptors keyed on what tells them apart (header_value_match on :path, request_headers on :authority) and inline rate_limits"
                            } else {
                                "a per-route RateLimitPerRoute is not carried over: a Wasm filter cannot read the route's configuration, so the filter's own config applies on these routes too; to tell them apart, add actions that do (header_value_match on :path, request_headers on :authority) to the inline rate_limits and limits on them to the rate limit service"
                            };
                            self.warn(source, doc, &format!("{}.patch.value.{path}", at(i)), message.into());
                        }
                        if let Some(path) = rate_limits {
                            route_limits.push((member, i, format!("{}.patch.value.{path}", at(i))));
                        }
                    }
                    Patch::Cluster => {
                        self.push(Severity::Note, Some(source), Some(doc), &at(i), "carried over as it is: a Wasm filter cannot add a cluster, so Istio gets this patch in an EnvoyFilter beside the rate-limit filter, and plain Envoy gets the cluster when a rate limit service names it".into());
                        cluster_patches.push(m.patches[i].clone());
                    }
                    Patch::Other => self.warn(source, doc, &at(i), "is not about Envoy's rate limits and is not translated; this EnvoyFilter is replaced by the rate-limit filter, so keep this patch in an EnvoyFilter of its own".into()),
                }
            }
            if doc.value["spec"].get("targetRefs").is_some() {
                self.warn(source, doc, "spec.targetRefs", "is not carried over: the rate-limit filter's placement is taken from workloadSelector; select the workloads by label".into());
            }
        }
        let unwrapped: Vec<Option<(Value, String)>> = inserts
            .iter()
            .map(|ins| {
                let m = group[ins.member];
                self.file = m.source.file.clone();
                self.unwrap_config(m, ins)
            })
            .collect();
        let inline = |k: usize| {
            unwrapped[k]
                .as_ref()
                .is_some_and(|(c, _)| field(c, "rate_limits", "rateLimits").is_some())
        };
        let count = |mode: Mode| inserts.iter().filter(|i| i.mode == mode).count();
        let targets: Vec<usize> = (0..inserts.len()).filter(|&k| !inline(k)).collect();
        // Route rate limits move into the filters' inline rate_limits (both
        // of Envoy's filters read the route's); with more filters of a kind
        // or more routes, or limits inline already, which belong where is
        // the user's call.
        let moved: Option<(usize, String, Value)> = match route_limits.as_slice() {
            [] => None,
            [(member, route, path)]
                if count(Mode::Local) <= 1 && count(Mode::Global) <= 1 && !targets.is_empty() =>
            {
                let m = group[*member];
                let to = targets
                    .iter()
                    .map(|&k| {
                        let ins = &inserts[k];
                        let elsewhere = if ins.member == *member {
                            String::new()
                        } else {
                            format!(" of EnvoyFilter {}", group[ins.member].source.name)
                        };
                        format!("{}.patch.value.typed_config{elsewhere}", at(ins.patch))
                    })
                    .collect::<Vec<_>>()
                    .join(" and ");
                let filters = if targets.len() > 1 {
                    "the rate-limit filter's local and global inline rate_limits"
                } else {
                    "the rate-limit filter's inline rate_limits"
                };
                self.file = m.source.file.clone();
                if narrows_routes(&m.patches[*route]) {
                    self.warn(m.source, m.doc, path, format!("moved into {filters} ({to}), since a Wasm filter cannot read the route's; but this patch picks some routes, and the filter sees every route of its listener, so the limits now apply to all of them"));
                } else {
                    self.push(Severity::Note, Some(m.source), Some(m.doc), path, format!("moved into {filters} ({to}), since a Wasm filter cannot read the route's"));
                }
                let relative = path.split_once(".patch.value.").map_or("", |(_, p)| p);
                let value = relative
                    .split('.')
                    .fold(&m.patches[*route]["patch"]["value"], |v, key| &v[key]);
                Some((*member, path.clone(), value.clone()))
            }
            _ => {
                for (member, _, path) in &route_limits {
                    let m = group[*member];
                    self.file = m.source.file.clone();
                    self.warn(m.source, m.doc, path, format!("route rate limits are not carried over: a Wasm filter cannot read the route's rate_limits, and with {} local and {} global rate limit filters and {} route patches with rate_limits on these workloads (or rate_limits inline already) it is not clear which filter they belong to; put them in the filter config's inline rate_limits", count(Mode::Local), count(Mode::Global), route_limits.len()));
                }
                None
            }
        };
        let mut built: Vec<(RateLimitFilter, usize)> = Vec::new();
        for (k, ins) in inserts.iter().enumerate() {
            let Some((mut config, config_at)) = unwrapped[k].clone() else {
                continue;
            };
            let m = group[ins.member];
            let (source, doc) = (m.source, m.doc);
            self.file = source.file.clone();
            let moved_here = moved.as_ref().filter(|_| targets.contains(&k));
            if let Value::Object(map) = &mut config
                && let Some((_, _, limits)) = moved_here
            {
                map.insert("rate_limits".into(), limits.clone());
            }
            let plan = match RateLimitPlan::from_json(config.to_string().as_bytes()) {
                Err(e) => {
                    let written = as_written(&config, &e.path);
                    // A moved route rate limit is named where the user wrote it.
                    let moved_rest = written
                        .strip_prefix("rate_limits")
                        .filter(|rest| rest.is_empty() || rest.starts_with(['.', '[']));
                    match (moved_here, moved_rest) {
                        (Some((member, route_at, _)), Some(rest)) => {
                            let r = group[*member];
                            self.file = r.source.file.clone();
                            self.error(
                                Some(r.source),
                                Some(r.doc),
                                &format!("{route_at}{rest}"),
                                message(&e),
                            );
                        }
                        _ => self.error(
                            Some(source),
                            Some(doc),
                            &join(&config_at, &written),
                            message(&e),
                        ),
                    }
                    continue;
                }
                Ok(plan) => plan,
            };
            for note in plan.notes() {
                let runtime =
                    note.path.ends_with("runtime_key") || note.path.ends_with("runtimeKey");
                // A runtime key's default is what Envoy does when the
                // runtime has no value: exact unless overridden.
                let severity = if note.deprecated || runtime {
                    Severity::Note
                } else {
                    Severity::Warning
                };
                let path = join(&config_at, &as_written(&config, &note.path));
                self.push(
                    severity,
                    Some(source),
                    Some(doc),
                    &path,
                    note.message.to_owned(),
                );
            }
            let service_cluster = plan.global().map(|g| g.cluster().to_owned());
            let service_authority = plan.global().and_then(|g| g.authority()).map(str::to_owned);
            if let Some(cluster) = &service_cluster {
                let path = join(
                    &config_at,
                    &as_written(
                        &config,
                        "rateLimitService.grpcService.envoyGrpc.clusterName",
                    ),
                );
                let authority = service_authority.as_deref();
                self.check_service_cluster(source, doc, &path, cluster, authority, defined);
            }
            let patch = &m.patches[ins.patch];
            let matched = &patch["match"];
            self.check_match(doc, source, &at(ins.patch), matched);
            let operation = patch["patch"]["operation"]
                .as_str()
                .unwrap_or_default()
                .to_owned();
            built.push((
                RateLimitFilter {
                    source: source.clone(),
                    namespace: namespace.to_owned(),
                    name: source.name.clone(),
                    selector: selector.clone(),
                    context: matched["context"].as_str().unwrap_or("ANY").to_owned(),
                    port: matched["listener"]["portNumber"].as_u64(),
                    first: operation == "INSERT_FIRST",
                    patch_match: matched.clone(),
                    operation,
                    config,
                    service_cluster,
                    service_authority,
                    cluster_patches: Vec::new(),
                },
                k,
            ));
        }
        let built = self.combine(built, &inserts, group);
        // Names: the EnvoyFilter's, with -N when it gives several.
        let mut out: Vec<RateLimitFilter> = Vec::new();
        let total = |source: &Source| built.iter().filter(|(f, _)| f.source == *source).count();
        for (filter, _) in &built {
            let mut filter = filter.clone();
            if total(&filter.source) > 1 {
                let n = out.iter().filter(|f| f.source == filter.source).count();
                filter.name = format!("{}-{}", filter.source.name, n + 1);
            }
            out.push(filter);
        }
        if let Some(first) = out.first_mut() {
            first.cluster_patches = cluster_patches;
        }
        out
    }

    /// A local and a global limit on the same traffic become one filter,
    /// `{"local": ..., "global": ...}`: the local buckets first, the service
    /// asked for what they admit.
    fn combine(
        &mut self,
        built: Vec<(RateLimitFilter, usize)>,
        inserts: &[Insert],
        group: &[&Member<'_>],
    ) -> Vec<(RateLimitFilter, usize)> {
        let of = |mode: Mode| -> Vec<usize> {
            (0..built.len())
                .filter(|&b| inserts[built[b].1].mode == mode)
                .collect()
        };
        let (locals, globals) = (of(Mode::Local), of(Mode::Global));
        let ([l], [g]) = (locals.as_slice(), globals.as_slice()) else {
            return built;
        };
        let (local, global) = (&built[*l].0, &built[*g].0);
        if (&local.context, local.port) != (&global.context, global.port) {
            return built;
        }
        let config = json!({"local": local.config, "global": global.config});
        let (gi, li) = (&inserts[built[*g].1], &inserts[built[*l].1]);
        let m = group[gi.member];
        self.file = m.source.file.clone();
        if let Err(e) = RateLimitPlan::from_json(config.to_string().as_bytes()) {
            self.error(Some(m.source), Some(m.doc), &at(gi.patch), format!("the local and global rate limits together are refused by the rate-limit filter: {}", message(&e)));
            return built;
        }
        if (gi.member, gi.patch) < (li.member, li.patch) {
            self.push(Severity::Note, Some(m.source), Some(m.doc), &format!("{}.patch.value", at(gi.patch)), "runs after the local rate limit in the rate-limit filter: the local buckets are drawn first and the service is asked only about what they admit, so a request the local limit refuses is not counted by the service (in the chain as written, it was)".into());
        }
        let mut merged = local.clone();
        merged.config = config;
        merged.service_cluster = global.service_cluster.clone();
        merged.service_authority = global.service_authority.clone();
        let k = built[*l].1.min(built[*g].1);
        let mut out: Vec<(RateLimitFilter, usize)> = Vec::new();
        for (b, item) in built.into_iter().enumerate() {
            if b == *l {
                out.push((merged.clone(), k));
            } else if b != *g {
                out.push(item);
            }
        }
        out
    }

    /// The config of an inserting patch, unwrapped from its `TypedStruct`
    /// and without `@type`, with the path it is at; `None` (with an error)
    /// when it is not the filter's.
    fn unwrap_config(&mut self, m: &Member<'_>, ins: &Insert) -> Option<(Value, String)> {
        let (source, doc) = (m.source, m.doc);
        let patch = &m.patches[ins.patch];
        let (expected, name) = (ins.mode.type_url(), ins.mode.config_name());
        let value_at = format!("{}.patch.value", at(ins.patch));
        let Some((typed_name, typed)) =
            field(&patch["patch"]["value"], "typed_config", "typedConfig")
        else {
            self.error(
                Some(source),
                Some(doc),
                &value_at,
                format!("has no typed_config: the {name} config is required"),
            );
            return None;
        };
        let typed_at = format!("{value_at}.{typed_name}");
        let outer = typed["@type"].as_str().unwrap_or_default();
        let (mut config, config_at) = if TYPED_STRUCT_TYPES.contains(&outer) {
            if type_of(typed) != Some(expected) {
                let url = field(typed, "type_url", "typeUrl").map_or("type_url", |(k, _)| k);
                self.error(
                    Some(source),
                    Some(doc),
                    &format!("{typed_at}.{url}"),
                    format!(
                        "is {:?}; expected {expected}",
                        type_of(typed).unwrap_or_default()
                    ),
                );
                return None;
            }
            let inner = typed
                .get("value")
                .cloned()
                .unwrap_or(Value::Object(Default::default()));
            (inner, format!("{typed_at}.value"))
        } else if outer == expected {
            (typed.clone(), typed_at.clone())
        } else {
            self.error(Some(source), Some(doc), &format!("{typed_at}.@type"), format!("is {outer:?}; expected {expected}, or a TypedStruct (udpa.type.v1 or xds.type.v3) of it"));
            return None;
        };
        if let Value::Object(map) = &mut config {
            map.remove("@type");
        }
        Some((config, config_at))
    }

    /// Says where the rate limit service's cluster comes from, or that it
    /// must exist.
    fn check_service_cluster(
        &mut self,
        source: &Source,
        doc: &Document,
        path: &str,
        cluster: &str,
        authority: Option<&str>,
        defined: &[(String, Value)],
    ) {
        let authority = if authority.is_some() || valid_authority(cluster) {
            String::new()
        } else {
            format!(
                " Without envoy_grpc.authority the call's :authority is the cluster name, and {cluster:?} is no valid authority: an HTTP/2 server that checks it (h2, under tonic, does) resets the call, so in Istio such calls fail and failure_mode_deny decides; set envoy_grpc.authority to the service's host name, as Istio's task does. Plain Envoy's output names the cluster with a valid authority instead."
            )
        };
        if let Some((_, c)) = defined.iter().find(|(n, _)| n == cluster) {
            if !authority.is_empty() {
                self.warn(source, doc, path, authority.trim_start().to_owned());
            }
            if !speaks_http2(c) {
                self.warn(source, doc, path, format!("names the cluster {cluster} that a CLUSTER patch adds, which has no http2_protocol_options: the call is gRPC, which needs HTTP/2, so it would fail; give the cluster typed_extension_protocol_options with explicit_http_config.http2_protocol_options"));
            }
            return;
        }
        match istio_cluster_address(cluster) {
            Some((host, port)) => self.push(if authority.is_empty() { Severity::Note } else { Severity::Warning }, Some(source), Some(doc), path, format!("is Istio's cluster of {host} port {port}: it exists when that Service (or a ServiceEntry) does, so the rate limit service must run there; plain Envoy gets an HTTP/2 cluster for it at {host}:{port} by DNS, or at the address --upstream gives it.{authority}")),
            None => self.warn(source, doc, path, format!("names the cluster {cluster}, which no CLUSTER patch of the input adds: it must exist in Envoy (in Istio, add it with an EnvoyFilter CLUSTER patch, or name a Service's cluster outbound|PORT||HOST); plain Envoy gets it only from --upstream '{cluster}=HOST:PORT', and without it every call fails and failure_mode_deny decides")),
        }
    }

    /// Reports what of a filter patch's `match` a WasmPlugin cannot say:
    /// it selects by labels, traffic direction and port only, and places
    /// by phase, not next to a named filter.
    fn check_match(&mut self, doc: &Document, source: &Source, at: &str, matched: &Value) {
        let unknown = |value: &Value, known: &[&str]| -> Vec<String> {
            value
                .as_object()
                .into_iter()
                .flatten()
                .map(|(k, _)| k.clone())
                .filter(|k| !known.contains(&k.as_str()))
                .collect()
        };
        let listener = &matched["listener"];
        let chain = &listener["filterChain"];
        let filter = &chain["filter"];
        let levels = [
            ("match", matched, &["context", "listener"][..]),
            (
                "match.listener",
                listener,
                &["portNumber", "filterChain"][..],
            ),
            ("match.listener.filterChain", chain, &["filter"][..]),
            (
                "match.listener.filterChain.filter",
                filter,
                &["name", "subFilter"][..],
            ),
        ];
        for (path, value, known) in levels {
            for key in unknown(value, known) {
                self.warn(source, doc, &format!("{at}.{path}.{key}"), "is not carried over: the rate-limit WasmPlugin selects by workload labels, traffic direction (context) and port only".into());
            }
        }
        if let Some(name) = filter["subFilter"]["name"].as_str()
            && name != ROUTER_FILTER
        {
            self.push(Severity::Note, Some(source), Some(doc), &format!("{at}.match.listener.filterChain.filter.subFilter.name"), format!("a WasmPlugin is placed by phase, not next to {name}: the rate-limit filter runs in phase STATS (AUTHN for INSERT_FIRST), before meshwasm's fault and router filters"));
        }
    }
}
