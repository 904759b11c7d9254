//! EnvoyFilters that insert Envoy's `local_ratelimit` HTTP filter, made the
//! rate-limit filter's configuration.
//!
//! The filter reads Envoy's own `LocalRateLimit` document, so translation
//! is unwrapping (a `TypedStruct`'s `value`), placement (the EnvoyFilter's
//! `workloadSelector`, the patch's context and port) and what a Wasm filter
//! cannot do: read the route's configuration. Route `rate_limits` move into
//! the filter's inline `rate_limits` when it is clear which filter they
//! belong to; per-route `typed_per_filter_config` overrides are reported.
//! The config is compiled by the filter's own code, so an error names the
//! field by its path in the YAML and its line.

use super::{Context, Severity, Source};
use crate::yaml::Document;
use meshwasm_core::plan::Plan as _;
use meshwasm_core::rate_limit::RateLimitPlan;
use meshwasm_core::{ConfigError, ConfigErrorKind};
use serde_json::Value;
use std::collections::BTreeMap;

/// Envoy's name of its local rate limit HTTP filter.
pub const LOCAL_RATE_LIMIT_FILTER: &str = "envoy.filters.http.local_ratelimit";
/// The type of its configuration.
pub const LOCAL_RATE_LIMIT_TYPE: &str =
    "type.googleapis.com/envoy.extensions.filters.http.local_ratelimit.v3.LocalRateLimit";
/// The wrappers Istio's examples put around it.
const TYPED_STRUCT_TYPES: [&str; 2] = [
    "type.googleapis.com/udpa.type.v1.TypedStruct",
    "type.googleapis.com/xds.type.v3.TypedStruct",
];
/// Envoy's router, the filter Istio's examples insert before.
const ROUTER_FILTER: &str = "envoy.filters.http.router";

/// One local rate limit, from one `HTTP_FILTER` patch of an EnvoyFilter.
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
    /// The `LocalRateLimit` config the filter gets (a `TypedStruct`'s
    /// `value`, without `@type`), with route `rate_limits` moved in.
    pub config: Value,
}

/// What one `configPatches` entry is, for the local rate limit.
enum Patch {
    /// Inserts the native filter.
    Insert,
    /// Merges into, replaces or removes the native filter.
    Edit(String),
    /// A route or virtual host patch: the path (under `patch.value`) of
    /// its `rate_limits` and of its per-filter local rate limit override.
    Route {
        rate_limits: Option<String>,
        per_filter: Option<String>,
    },
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
            let named = value["name"] == LOCAL_RATE_LIMIT_FILTER
                || typed.and_then(type_of) == Some(LOCAL_RATE_LIMIT_TYPE);
            let targets = patch["match"]["listener"]["filterChain"]["filter"]["subFilter"]["name"]
                == LOCAL_RATE_LIMIT_FILTER;
            match operation {
                "INSERT_BEFORE" | "INSERT_AFTER" | "INSERT_FIRST" | "ADD" if named => Patch::Insert,
                "MERGE" | "REPLACE" | "REMOVE" if named || targets => {
                    Patch::Edit(operation.to_owned())
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
            let per_filter = field(value, "typed_per_filter_config", "typedPerFilterConfig")
                .and_then(|(name, map)| {
                    map.get(LOCAL_RATE_LIMIT_FILTER)
                        .map(|_| format!("{name}.{LOCAL_RATE_LIMIT_FILTER}"))
                });
            if rate_limits.is_none() && per_filter.is_none() {
                Patch::Other
            } else {
                Patch::Route {
                    rate_limits,
                    per_filter,
                }
            }
        }
        _ => Patch::Other,
    }
}

/// Whether an EnvoyFilter is about Envoy's local rate limit: it inserts,
/// edits or overrides per route the `local_ratelimit` filter. Route
/// `rate_limits` alone do not count: global rate limiting reads them too.
pub(crate) fn mentions_local_rate_limit(resource: &Value) -> bool {
    resource["spec"]["configPatches"]
        .as_array()
        .into_iter()
        .flatten()
        .any(|p| match classify(p) {
            Patch::Insert | Patch::Edit(_) => true,
            Patch::Route { per_filter, .. } => per_filter.is_some(),
            Patch::Other => false,
        })
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
fn message(error: &ConfigError) -> String {
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

impl Context<'_> {
    /// The local rate limits of an EnvoyFilter that is about Envoy's
    /// `local_ratelimit`; everything else in it is reported.
    pub(super) fn envoy_filter(&mut self, doc: &Document, source: &Source) -> Vec<RateLimitFilter> {
        let spec = &doc.value["spec"];
        let patches: Vec<Value> = spec["configPatches"]
            .as_array()
            .cloned()
            .unwrap_or_default();
        let kinds: Vec<Patch> = patches.iter().map(classify).collect();
        let at = |i: usize| format!("spec.configPatches[{i}]");
        let inserts: Vec<usize> = (0..patches.len())
            .filter(|i| matches!(kinds[*i], Patch::Insert))
            .collect();
        let mut route_limits: Vec<(usize, String)> = Vec::new();
        for (i, kind) in kinds.iter().enumerate() {
            match kind {
                Patch::Insert => {}
                Patch::Edit(operation) => self.warn(source, doc, &format!("{}.patch.operation", at(i)), format!("{operation} of Envoy's local_ratelimit filter is not translated: the rate-limit filter takes its whole config from the patch that inserts it; write the change there")),
                Patch::Route { rate_limits, per_filter } => {
                    if let Some(path) = per_filter {
                        self.warn(source, doc, &format!("{}.patch.value.{path}", at(i)), "a per-route LocalRateLimit is not carried over: a Wasm filter cannot read the route's configuration, so the filter's own config applies on these routes too; to limit them apart, give the filter descriptors keyed on what tells them apart (header_value_match on :path, request_headers on :authority) and inline rate_limits".into());
                    }
                    if let Some(path) = rate_limits {
                        route_limits.push((i, format!("{}.patch.value.{path}", at(i))));
                    }
                }
                Patch::Other => self.warn(source, doc, &at(i), "is not about Envoy's local rate limit and is not translated; this EnvoyFilter is replaced by the rate-limit filter, so keep this patch in an EnvoyFilter of its own".into()),
            }
        }
        if spec.get("targetRefs").is_some() {
            self.warn(source, doc, "spec.targetRefs", "is not carried over: the rate-limit filter's placement is taken from workloadSelector; select the workloads by label".into());
        }
        let inline = |i: usize| {
            let typed =
                field(&patches[i]["patch"]["value"], "typed_config", "typedConfig").map(|(_, t)| t);
            let config = match typed {
                Some(t) if type_of(t) != t["@type"].as_str() => &t["value"],
                Some(t) => t,
                None => &Value::Null,
            };
            field(config, "rate_limits", "rateLimits").is_some()
        };
        // Route rate limits move into the one filter's inline rate_limits;
        // with more filters or routes, or limits inline already, which
        // belong where is the user's call.
        let moved = match (inserts.as_slice(), route_limits.as_slice()) {
            ([filter], [(route, path)]) if !inline(*filter) => {
                let to = format!("{}.patch.value.typed_config", at(*filter));
                if narrows_routes(&patches[*route]) {
                    self.warn(source, doc, path, format!("moved into the rate-limit filter's inline rate_limits ({to}), since a Wasm filter cannot read the route's; but this patch picks some routes, and the filter sees every route of its listener, so the limits now apply to all of them"));
                } else {
                    self.push(Severity::Note, Some(source), Some(doc), path, format!("moved into the rate-limit filter's inline rate_limits ({to}), since a Wasm filter cannot read the route's"));
                }
                let relative = path.split_once(".patch.value.").map_or("", |(_, p)| p);
                let value = relative
                    .split('.')
                    .fold(&patches[*route]["patch"]["value"], |v, key| &v[key]);
                Some((path.clone(), value.clone()))
            }
            _ => {
                for (_, path) in &route_limits {
                    self.warn(source, doc, path, format!("route rate limits are not carried over: a Wasm filter cannot read the route's rate_limits, and with {} local rate limit filters and {} route patches with rate_limits in this EnvoyFilter (or rate_limits inline already) it is not clear which filter they belong to; put them in the filter config's inline rate_limits", inserts.len(), route_limits.len()));
                }
                None
            }
        };
        let selector: BTreeMap<String, String> = spec["workloadSelector"]["labels"]
            .as_object()
            .into_iter()
            .flatten()
            .map(|(k, v)| (k.clone(), v.as_str().unwrap_or_default().to_owned()))
            .collect();
        let namespace = source
            .namespace
            .clone()
            .unwrap_or_else(|| self.options.default_namespace.clone());
        let mut out = Vec::new();
        for (n, &i) in inserts.iter().enumerate() {
            let patch = &patches[i];
            let value_at = format!("{}.patch.value", at(i));
            let Some((typed_name, typed)) =
                field(&patch["patch"]["value"], "typed_config", "typedConfig")
            else {
                self.error(
                    Some(source),
                    Some(doc),
                    &value_at,
                    "has no typed_config: the LocalRateLimit config is required".into(),
                );
                continue;
            };
            let typed_at = format!("{value_at}.{typed_name}");
            let outer = typed["@type"].as_str().unwrap_or_default();
            let (mut config, config_at) = if TYPED_STRUCT_TYPES.contains(&outer) {
                if type_of(typed) != Some(LOCAL_RATE_LIMIT_TYPE) {
                    let url = field(typed, "type_url", "typeUrl").map_or("type_url", |(k, _)| k);
                    self.error(
                        Some(source),
                        Some(doc),
                        &format!("{typed_at}.{url}"),
                        format!(
                            "is {:?}; expected {LOCAL_RATE_LIMIT_TYPE}",
                            type_of(typed).unwrap_or_default()
                        ),
                    );
                    continue;
                }
                let inner = typed
                    .get("value")
                    .cloned()
                    .unwrap_or(Value::Object(Default::default()));
                (inner, format!("{typed_at}.value"))
            } else if outer == LOCAL_RATE_LIMIT_TYPE {
                (typed.clone(), typed_at.clone())
            } else {
                self.error(Some(source), Some(doc), &format!("{typed_at}.@type"), format!("is {outer:?}; expected {LOCAL_RATE_LIMIT_TYPE}, or a TypedStruct (udpa.type.v1 or xds.type.v3) of it"));
                continue;
            };
            if let Value::Object(map) = &mut config {
                map.remove("@type");
                if let Some((_, limits)) = &moved {
                    map.insert("rate_limits".into(), limits.clone());
                }
            }
            match RateLimitPlan::from_json(config.to_string().as_bytes()) {
                Err(e) => {
                    let written = as_written(&config, &e.path);
                    // A moved route rate limit is named where the user wrote it.
                    let moved_rest = written
                        .strip_prefix("rate_limits")
                        .filter(|rest| rest.is_empty() || rest.starts_with(['.', '[']));
                    let path = match (&moved, moved_rest) {
                        (Some((route_at, _)), Some(rest)) => format!("{route_at}{rest}"),
                        _ => join(&config_at, &written),
                    };
                    self.error(Some(source), Some(doc), &path, message(&e));
                    continue;
                }
                Ok(plan) => {
                    for note in plan.notes() {
                        let runtime =
                            note.path.ends_with("runtime_key") || note.path.ends_with("runtimeKey");
                        // A runtime key's default is what Envoy does when
                        // the runtime has no value: exact unless overridden.
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
                }
            }
            let matched = &patch["match"];
            self.check_match(doc, source, &at(i), matched);
            let operation = patch["patch"]["operation"]
                .as_str()
                .unwrap_or_default()
                .to_owned();
            out.push(RateLimitFilter {
                source: source.clone(),
                namespace: namespace.clone(),
                name: if inserts.len() > 1 {
                    format!("{}-{}", source.name, n + 1)
                } else {
                    source.name.clone()
                },
                selector: selector.clone(),
                context: matched["context"].as_str().unwrap_or("ANY").to_owned(),
                port: matched["listener"]["portNumber"].as_u64(),
                first: operation == "INSERT_FIRST",
                patch_match: matched.clone(),
                operation,
                config,
            });
        }
        out
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
