//! Rate limiting as Envoy's `local_ratelimit` filter does it, from the same
//! `LocalRateLimit` document, with its buckets in shared data so that the
//! limit holds across all of Envoy's workers.
//!
//! - [`config`]: the document, in proto-JSON (camelCase or proto names).
//! - [`bucket`]: continuous-refill token buckets, drawn by compare-and-swap;
//!   bounded buckets for descriptor values taken from client input.
//! - [`descriptor`]: Envoy's route `RateLimit` actions, and the configured
//!   descriptors they are matched against.
//!
//! A request is decided as Envoy decides it: sampled by `filterEnabled`;
//! its descriptors built when `descriptors` are configured; the matched
//! descriptors' buckets drawn slowest-filling first, the first empty one
//! limiting the request; then the default bucket, when nothing matched or
//! `alwaysConsumeDefaultTokenBucket` (default true) says so. A limited
//! request is denied when `filterEnforced` samples it, and otherwise goes
//! on with `requestHeadersToAddWhenNotEnforced`.

pub mod bucket;
pub mod config;
pub mod descriptor;
pub mod global;
pub mod rls;

use crate::config::{Document, parse};
use crate::duration::parse_duration;
use crate::error::{ConfigError, ConfigErrorKind, ConfigNote, FieldPath};
use crate::header_ops::HeaderOp;
use crate::metrics::{MetricRef, MetricSpec};
use crate::percent::{MILLION, PerMillion, Rng};
use crate::plan::Plan;
use crate::request::RequestAttributes;
use crate::shared_counter::{SharedData, SharedDataError};
use bucket::{BucketSpec, BucketState, DynamicBuckets, draw_shared};
use descriptor::{DescriptorPattern, Entry, RateLimitActions};
use std::borrow::Cow;
use std::time::Duration;

/// The body of a local denial, as Envoy's.
pub const DENIED_BODY: &str = "local_rate_limited";
/// The response code details of a local denial, as Envoy's.
pub const DENIED_DETAILS: &str = "local_rate_limited";
/// gRPC UNAVAILABLE, Envoy's gRPC status for a local denial.
pub const GRPC_UNAVAILABLE: u32 = 14;
/// gRPC RESOURCE_EXHAUSTED, with `rateLimitedAsResourceExhausted`.
pub const GRPC_RESOURCE_EXHAUSTED: u32 = 8;
/// Buckets kept for a descriptor whose values come from the request, when
/// `maxDynamicDescriptors` is not set.
pub const DEFAULT_MAX_KEYS: u32 = 1024;

const LOCAL_TYPE: &str =
    "type.googleapis.com/envoy.extensions.filters.http.local_ratelimit.v3.LocalRateLimit";

/// The metrics, in the order of [`metric`]'s refs; named
/// `<statPrefix>.http_local_rate_limit.<name>` as Envoy names its own.
const STATS: [&str; 5] = ["enabled", "ok", "rate_limited", "enforced", "shadow_mode"];

/// The refs of the plan's metrics.
pub mod metric {
    use crate::metrics::MetricRef;
    /// Requests the filter looked at.
    pub const ENABLED: MetricRef = MetricRef(0);
    /// Requests a bucket admitted.
    pub const OK: MetricRef = MetricRef(1);
    /// Requests a bucket limited, denied or not.
    pub const RATE_LIMITED: MetricRef = MetricRef(2);
    /// Limited requests that were denied.
    pub const ENFORCED: MetricRef = MetricRef(3);
    /// Requests let through by a descriptor in shadow mode.
    pub const SHADOW_MODE: MetricRef = MetricRef(4);
}

/// The compiled configuration of the rate-limit filter.
///
/// # Examples
///
/// ```
/// use meshwasm_core::plan::Plan;
/// use meshwasm_core::percent::Rng;
/// use meshwasm_core::rate_limit::{RateLimitPlan, Verdict};
/// use meshwasm_core::request::StaticRequest;
/// use meshwasm_core::shared_counter::MemorySharedData;
///
/// let plan = RateLimitPlan::from_json(br#"{
///   "stat_prefix": "http_local_rate_limiter",
///   "token_bucket": {"max_tokens": 2, "tokens_per_fill": 1, "fill_interval": "60s"},
///   "filter_enabled": {"default_value": {"numerator": 100, "denominator": "HUNDRED"}},
///   "filter_enforced": {"default_value": {"numerator": 100, "denominator": "HUNDRED"}}
/// }"#).unwrap();
/// let store = MemorySharedData::default();
/// let mut rng = Rng::with_seed(1);
/// let mut verdicts = (0..3).map(|_| {
///     plan.decide(&mut StaticRequest::get("/"), &store, "rl", 1_700_000_000_000_000_000, &mut rng).verdict
/// });
/// assert_eq!(verdicts.next(), Some(Verdict::Allowed));
/// assert_eq!(verdicts.next(), Some(Verdict::Allowed));
/// assert_eq!(verdicts.next(), Some(Verdict::Denied));
/// ```
#[derive(Debug)]
pub struct RateLimitPlan {
    local: Option<LocalPlan>,
    global: Option<global::GlobalPlan>,
    notes: Vec<ConfigNote>,
}

#[derive(Debug)]
struct LocalPlan {
    stat_prefix: String,
    status: u16,
    grpc_status: u32,
    default_bucket: BucketSpec,
    enabled: PerMillion,
    enforced: PerMillion,
    when_not_enforced: Vec<HeaderAddition>,
    on_denial: Vec<(String, String)>,
    descriptors: Vec<Descriptor>,
    rate_limits: Vec<RateLimitActions>,
    always_consume_default: bool,
    x_ratelimit_headers: bool,
    per_connection: bool,
    max_keys: u32,
}

#[derive(Debug)]
struct Descriptor {
    pattern: DescriptorPattern,
    bucket: BucketSpec,
    shadow: bool,
}

#[derive(Debug, Clone)]
struct HeaderAddition {
    name: String,
    value: String,
    action: config::AppendAction,
}

/// What the filter does with a request.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Verdict {
    /// `filterEnabled` did not sample it: nothing is counted or added.
    NotEnabled,
    /// Admitted.
    Allowed,
    /// A descriptor in shadow mode would have limited it; admitted.
    Shadowed,
    /// Limited, but `filterEnforced` did not sample it: forwarded.
    NotEnforced,
    /// Limited and denied.
    Denied,
}

/// The `x-ratelimit-*` values (draft 03) of the bucket that decided.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct RateHeaders {
    /// `x-ratelimit-limit`: the bucket's capacity.
    pub limit: u32,
    /// `x-ratelimit-remaining`: whole tokens left.
    pub remaining: u32,
    /// `x-ratelimit-reset`: seconds until the next token, rounded up.
    pub reset_secs: u64,
}

impl RateHeaders {
    /// The three headers, as Envoy writes them.
    pub fn pairs(&self) -> [(&'static str, String); 3] {
        [
            ("x-ratelimit-limit", self.limit.to_string()),
            ("x-ratelimit-remaining", self.remaining.to_string()),
            ("x-ratelimit-reset", self.reset_secs.to_string()),
        ]
    }
}

/// The decision on one request.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Decision<'p> {
    /// What happens to the request.
    pub verdict: Verdict,
    /// The headers for the response, when draft 03 is on.
    pub rate_headers: Option<RateHeaders>,
    /// Request edits of a limited, unenforced request.
    pub request_edits: Vec<HeaderOp<'p>>,
    /// A bucket that could not be read or written; the request was let
    /// through as if that bucket had a token.
    pub store_error: Option<SharedDataError>,
}

impl Plan for RateLimitPlan {
    const DOCUMENT: Document = Document {
        name: "an Envoy LocalRateLimit config",
        example: r#"{"stat_prefix": "http_local_rate_limiter", "token_bucket": {"max_tokens": 10, "fill_interval": "1s"}, "filter_enabled": {"default_value": {"numerator": 100}}, "filter_enforced": {"default_value": {"numerator": 100}}}"#,
        list_key: None,
    };

    fn from_json(json: &[u8]) -> Result<Self, ConfigError> {
        let shape: serde_json::Value = parse(json, Self::DOCUMENT)?;
        let has = |key: &str| shape.get(key).is_some();
        let form = if has("local") || has("global") {
            Form::Combined
        } else if has("rateLimitService") || has("rate_limit_service") || has("domain") {
            Form::Global
        } else {
            Form::Local
        };
        // Paths in compile errors name fields in the user's spelling: a
        // document written with proto names gets proto names back.
        let top = shape
            .get("local")
            .or_else(|| shape.get("global"))
            .unwrap_or(&shape);
        let proto_names = top
            .as_object()
            .is_some_and(|o| o.keys().any(|k| k.contains('_')));
        let spell = |path: String| {
            if proto_names {
                snake_case_path(&path)
            } else {
                path
            }
        };
        let mut notes = Vec::new();
        let compiled = Self::compile(json, form, &mut notes);
        let (local, global) = compiled.map_err(|e| ConfigError::new(spell(e.path), e.kind))?;
        for note in &mut notes {
            note.path = spell(std::mem::take(&mut note.path));
        }
        Ok(RateLimitPlan {
            local,
            global,
            notes,
        })
    }

    fn notes(&self) -> &[ConfigNote] {
        &self.notes
    }

    fn summary(&self) -> String {
        let local = self.local.as_ref().map(|l| {
            format!(
                "local: {} tokens, {} descriptors, {} rate limits; enabled {}%, enforced {}%; buckets {}",
                l.default_bucket.max_tokens(),
                l.descriptors.len(),
                l.rate_limits.len(),
                percent(l.enabled),
                percent(l.enforced),
                if l.per_connection { "per connection" } else { "shared by every worker" },
            )
        });
        let global = self
            .global
            .as_ref()
            .map(|g| format!("global: the rate limit service in cluster {}", g.cluster()));
        local
            .into_iter()
            .chain(global)
            .collect::<Vec<_>>()
            .join("; then ")
    }

    fn metrics(&self) -> Vec<MetricSpec> {
        let Some(local) = &self.local else {
            return Vec::new();
        };
        STATS
            .iter()
            .map(|s| {
                MetricSpec::counter(format!("{}.http_local_rate_limit.{s}", local.stat_prefix))
            })
            .collect()
    }
}

/// `tokenBucket.fillInterval` as `token_bucket.fill_interval`.
fn snake_case_path(path: &str) -> String {
    let mut out = String::with_capacity(path.len() + 8);
    for c in path.chars() {
        if c.is_ascii_uppercase() {
            out.push('_');
            out.push(c.to_ascii_lowercase());
        } else {
            out.push(c);
        }
    }
    out
}

fn percent(p: PerMillion) -> String {
    let whole = f64::from(p.numerator()) / 10_000.0;
    format!("{whole}")
}

/// How the configuration is written.
#[derive(Clone, Copy)]
enum Form {
    /// A `LocalRateLimit`.
    Local,
    /// A (global) `RateLimit`, told apart by its `rateLimitService`.
    Global,
    /// `{"local": ..., "global": ...}`: local first, a cheap pre-filter.
    Combined,
}

type Compiled = (Option<LocalPlan>, Option<global::GlobalPlan>);

impl RateLimitPlan {
    fn compile(
        json: &[u8],
        form: Form,
        notes: &mut Vec<ConfigNote>,
    ) -> Result<Compiled, ConfigError> {
        match form {
            Form::Local => {
                let local: config::LocalRateLimit = parse(json, Self::DOCUMENT)?;
                Ok((
                    Some(LocalPlan::compile(&local, &FieldPath::ROOT, notes)?),
                    None,
                ))
            }
            Form::Global => {
                let global: config::GlobalRateLimit = parse(json, Self::DOCUMENT)?;
                let plan = global::GlobalPlan::compile(&global, &FieldPath::ROOT, notes)?;
                Ok((None, Some(plan)))
            }
            Form::Combined => {
                #[derive(serde::Deserialize)]
                #[serde(deny_unknown_fields)]
                struct Combined {
                    local: Option<config::LocalRateLimit>,
                    global: Option<config::GlobalRateLimit>,
                }
                let both: Combined = parse(json, Self::DOCUMENT)?;
                let (local_at, global_at) = (
                    FieldPath::ROOT.field("local"),
                    FieldPath::ROOT.field("global"),
                );
                let local = both
                    .local
                    .map(|l| LocalPlan::compile(&l, &local_at, notes))
                    .transpose()?;
                let global = both
                    .global
                    .map(|g| global::GlobalPlan::compile(&g, &global_at, notes))
                    .transpose()?;
                Ok((local, global))
            }
        }
    }

    /// The global part: a rate limit service asked once the local buckets
    /// admitted the request.
    pub fn global(&self) -> Option<&global::GlobalPlan> {
        self.global.as_ref()
    }

    /// Whether each downstream connection has its own buckets (Envoy's
    /// `localRateLimitPerDownstreamConnection`), so that they are kept in
    /// the worker rather than shared.
    pub fn per_connection(&self) -> bool {
        self.local.as_ref().is_some_and(|l| l.per_connection)
    }

    /// Whether responses carry `x-ratelimit-*` headers from the local buckets.
    pub fn x_ratelimit_headers(&self) -> bool {
        self.local.as_ref().is_some_and(|l| l.x_ratelimit_headers)
    }

    /// The shared-data keys that must exist before traffic, so that every
    /// write to them is a compare-and-swap; `scope` as in [`Self::decide`].
    ///
    /// # Errors
    ///
    /// The store's error.
    pub fn prepare(&self, store: &impl SharedData, scope: &str) -> Result<(), SharedDataError> {
        let Some(l) = &self.local else {
            return Ok(());
        };
        for key in std::iter::once(format!("{scope}.default")).chain(
            (0..l.descriptors.len())
                .filter(|i| !l.descriptors[*i].pattern.is_dynamic())
                .map(|i| format!("{scope}.d{i}")),
        ) {
            if store.get(&key)?.is_none() {
                store.set(&key, &[], 0)?;
            }
        }
        for (i, d) in l.descriptors.iter().enumerate() {
            if d.pattern.is_dynamic() {
                DynamicBuckets::new(format!("{scope}.d{i}"), l.max_keys).create(store)?;
            }
        }
        Ok(())
    }

    /// The status, body, details, gRPC status and headers of a denial.
    pub fn denial(&self) -> Denial<'_> {
        match &self.local {
            Some(l) => Denial {
                status: l.status,
                grpc_status: l.grpc_status,
                headers: &l.on_denial,
            },
            None => Denial {
                status: 429,
                grpc_status: GRPC_UNAVAILABLE,
                headers: &[],
            },
        }
    }

    /// Decides a request at `now` (ns since the epoch), drawing on the
    /// buckets stored under `scope` (a prefix unique to this configuration).
    pub fn decide(
        &self,
        req: &mut impl RequestAttributes,
        store: &impl SharedData,
        scope: &str,
        now: u64,
        rng: &mut Rng,
    ) -> Decision<'_> {
        let mut decision = Decision {
            verdict: Verdict::NotEnabled,
            rate_headers: None,
            request_edits: Vec::new(),
            store_error: None,
        };
        let Some(l) = &self.local else {
            return decision;
        };
        if !l.enabled.sample(rng) {
            return decision;
        }
        let matched = Self::matched(l, req);
        let mut reported: Option<(BucketSpec, BucketState)> = None;
        let mut limited_by: Option<(BucketSpec, BucketState, bool)> = None;
        for (i, descriptor, owner) in &matched {
            let d: &Descriptor = descriptor;
            let key = format!("{scope}.d{i}");
            let drawn = match owner {
                Some(value) => DynamicBuckets::new(key, l.max_keys).draw(
                    store,
                    value.as_bytes(),
                    &d.bucket,
                    now,
                ),
                None => draw_shared(store, &key, &d.bucket, now),
            };
            let state = settle(drawn, &mut decision.store_error);
            if !state.allowed {
                limited_by = Some((d.bucket, state, d.shadow));
                break;
            }
            reported.get_or_insert((d.bucket, state));
        }
        if limited_by.is_none() && (matched.is_empty() || l.always_consume_default) {
            let state = settle(
                draw_shared(store, &format!("{scope}.default"), &l.default_bucket, now),
                &mut decision.store_error,
            );
            if state.allowed {
                reported.get_or_insert((l.default_bucket, state));
            } else {
                limited_by = Some((l.default_bucket, state, false));
            }
        }
        let (spec, state) = match limited_by {
            None => {
                decision.verdict = Verdict::Allowed;
                reported.unwrap_or((
                    l.default_bucket,
                    BucketState {
                        allowed: true,
                        remaining: 0,
                        reset: Duration::ZERO,
                    },
                ))
            }
            Some((spec, state, shadow)) => {
                decision.verdict = if shadow {
                    Verdict::Shadowed
                } else if l.enforced.sample(rng) {
                    Verdict::Denied
                } else {
                    decision.request_edits = l.when_not_enforced_edits(req);
                    Verdict::NotEnforced
                };
                (spec, state)
            }
        };
        if l.x_ratelimit_headers {
            decision.rate_headers = Some(RateHeaders {
                limit: spec.max_tokens(),
                remaining: state.remaining,
                reset_secs: state.reset.as_nanos().div_ceil(1_000_000_000) as u64,
            });
        }
        decision
    }

    /// The metrics a verdict counts, as Envoy's stats count it.
    pub fn counted(verdict: Verdict) -> &'static [MetricRef] {
        match verdict {
            Verdict::NotEnabled => &[],
            Verdict::Allowed => &[metric::ENABLED, metric::OK],
            Verdict::Shadowed => &[metric::ENABLED, metric::RATE_LIMITED, metric::SHADOW_MODE],
            Verdict::NotEnforced => &[metric::ENABLED, metric::RATE_LIMITED],
            Verdict::Denied => &[metric::ENABLED, metric::RATE_LIMITED, metric::ENFORCED],
        }
    }

    /// The configured descriptors the request's descriptors match, with the
    /// value that names a dynamic bucket, slowest-filling first.
    fn matched<'p>(
        l: &'p LocalPlan,
        req: &mut impl RequestAttributes,
    ) -> Vec<(usize, &'p Descriptor, Option<String>)> {
        if l.descriptors.is_empty() {
            return Vec::new();
        }
        let mut matched: Vec<(usize, &Descriptor, Option<String>)> = l
            .rate_limits
            .iter()
            .filter_map(|actions| actions.descriptor(req))
            .filter_map(|entries| {
                let found = l
                    .descriptors
                    .iter()
                    .enumerate()
                    .find(|(_, d)| d.pattern.matches_exactly(&entries))
                    .or_else(|| {
                        l.descriptors
                            .iter()
                            .enumerate()
                            .find(|(_, d)| d.pattern.matches(&entries))
                    })?;
                let owner = found.1.pattern.is_dynamic().then(|| owner_text(&entries));
                Some((found.0, found.1, owner))
            })
            .collect();
        matched.sort_by(|a, b| a.1.bucket.cmp_fill_rate(&b.1.bucket));
        matched
    }
}

/// A dynamic bucket's name: the descriptor's entries, unambiguously joined.
fn owner_text(entries: &[Entry]) -> String {
    let mut text = String::new();
    for (k, v) in entries {
        text.push_str(&k.len().to_string());
        text.push(':');
        text.push_str(k);
        text.push_str(&v.len().to_string());
        text.push(':');
        text.push_str(v);
    }
    text
}

/// A draw the store refused counts as admitted: a broken store must not
/// take the service down with it.
fn settle(
    drawn: Result<BucketState, SharedDataError>,
    error: &mut Option<SharedDataError>,
) -> BucketState {
    drawn.unwrap_or_else(|e| {
        error.get_or_insert(e);
        BucketState {
            allowed: true,
            remaining: 0,
            reset: Duration::ZERO,
        }
    })
}

/// What a denial answers.
#[derive(Debug, Clone, Copy)]
pub struct Denial<'p> {
    /// HTTP status.
    pub status: u16,
    /// gRPC status for gRPC clients.
    pub grpc_status: u32,
    /// `responseHeadersToAdd`.
    pub headers: &'p [(String, String)],
}

impl LocalPlan {
    fn compile(
        c: &config::LocalRateLimit,
        at: &FieldPath<'_>,
        notes: &mut Vec<ConfigNote>,
    ) -> Result<Self, ConfigError> {
        if let Some(t) = &c.type_url
            && t != LOCAL_TYPE
        {
            let reason = if t.ends_with("TypedStruct") {
                "a TypedStruct wraps the config: pass its `value`".to_owned()
            } else {
                format!("expected {LOCAL_TYPE}, not {t}")
            };
            return Err(at.field("@type").error(ConfigErrorKind::Invalid { reason }));
        }
        if c.local_cluster_rate_limit.is_some() {
            return Err(at
                .field("localClusterRateLimit")
                .error(ConfigErrorKind::Unsupported {
                    reason: "a filter does not see the local cluster's membership",
                }));
        }
        let stat_prefix = match c.stat_prefix.as_deref() {
            Some(p) if !p.is_empty() => p.to_owned(),
            _ => {
                return Err(at.field("statPrefix").error(ConfigErrorKind::Missing {
                    reason: "Envoy requires a stat prefix, e.g. \"http_local_rate_limiter\"",
                }));
            }
        };
        let status = match &c.status {
            None => 429,
            Some(s) => status_code(&s.code, &at.field("status").field("code"), notes)?,
        };
        let default_bucket = match &c.token_bucket {
            Some(b) => token_bucket(b, &at.field("tokenBucket"))?,
            None => {
                return Err(at.field("tokenBucket").error(ConfigErrorKind::Missing {
                    reason: "the filter's default token bucket",
                }));
            }
        };
        let enabled =
            runtime_percent(c.filter_enabled.as_ref(), &at.field("filterEnabled"), notes)?;
        let enforced = runtime_percent(
            c.filter_enforced.as_ref(),
            &at.field("filterEnforced"),
            notes,
        )?;
        if c.filter_enabled.is_none() {
            notes.push(at.field("filterEnabled").note(
                "unset, so the filter looks at no request (Envoy's default); set it to 100% to limit",
            ));
        }
        let when_not_enforced = header_options(
            &c.request_headers_to_add_when_not_enforced,
            &at.field("requestHeadersToAddWhenNotEnforced"),
        )?;
        let on_denial = header_options(
            &c.response_headers_to_add,
            &at.field("responseHeadersToAdd"),
        )?
        .into_iter()
        .map(|h| (h.name, h.value))
        .collect();
        let descriptors_at = at.field("descriptors");
        let descriptors = c
            .descriptors
            .iter()
            .enumerate()
            .map(|(i, d)| {
                let here = descriptors_at.index(i);
                if d.entries.is_empty() {
                    return Err(here.field("entries").error(ConfigErrorKind::Missing {
                        reason: "at least one entry",
                    }));
                }
                let entries_at = here.field("entries");
                for (j, e) in d.entries.iter().enumerate() {
                    if e.key.is_empty() {
                        return Err(entries_at.index(j).field("key").error(
                            ConfigErrorKind::Missing {
                                reason: "a non-empty key",
                            },
                        ));
                    }
                }
                let bucket = match &d.token_bucket {
                    Some(b) => token_bucket(b, &here.field("tokenBucket"))?,
                    None => {
                        return Err(here.field("tokenBucket").error(ConfigErrorKind::Missing {
                            reason: "every descriptor has its own token bucket",
                        }));
                    }
                };
                Ok(Descriptor {
                    pattern: DescriptorPattern::new(&d.entries),
                    bucket,
                    shadow: d.shadow_mode,
                })
            })
            .collect::<Result<Vec<_>, _>>()?;
        let limits_at = at.field("rateLimits");
        let rate_limits = c
            .rate_limits
            .iter()
            .enumerate()
            .map(|(i, r)| RateLimitActions::compile(r, &limits_at.index(i)))
            .collect::<Result<Vec<_>, _>>()?;
        if !descriptors.is_empty() && rate_limits.is_empty() {
            return Err(limits_at.error(ConfigErrorKind::Missing {
                reason: "descriptors are matched against the descriptors rateLimits builds; a Wasm filter cannot read the route's rate_limits, so give them here",
            }));
        }
        if let Some(stage) = c.stage {
            if stage > 10 {
                return Err(at.field("stage").error(ConfigErrorKind::Invalid {
                    reason: format!("{stage} is above 10"),
                }));
            }
            notes.push(
                at.field("stage").note(
                    "selects route rate limits by stage; the inline rateLimits are always used",
                ),
            );
        }
        if let Some(v) = &c.vh_rate_limits {
            if !["OVERRIDE", "INCLUDE", "IGNORE"].contains(&v.as_str()) {
                return Err(at.field("vhRateLimits").error(ConfigErrorKind::Invalid {
                    reason: format!("{v:?} is not OVERRIDE, INCLUDE or IGNORE"),
                }));
            }
            notes.push(
                at.field("vhRateLimits")
                    .note("only concerns route rate limits, which the inline rateLimits replace"),
            );
        }
        let max_keys = match c.max_dynamic_descriptors {
            Some(0) => {
                return Err(at
                    .field("maxDynamicDescriptors")
                    .error(ConfigErrorKind::Invalid {
                        reason: "must be at least 1".into(),
                    }));
            }
            Some(n) => n,
            None => DEFAULT_MAX_KEYS,
        };
        Ok(LocalPlan {
            stat_prefix,
            status,
            grpc_status: if c.rate_limited_as_resource_exhausted {
                GRPC_RESOURCE_EXHAUSTED
            } else {
                GRPC_UNAVAILABLE
            },
            default_bucket,
            enabled,
            enforced,
            when_not_enforced,
            on_denial,
            descriptors,
            rate_limits,
            always_consume_default: c.always_consume_default_token_bucket.unwrap_or(true),
            x_ratelimit_headers: c.enable_x_ratelimit_headers
                == Some(config::XRateLimitHeaders::DraftVersion03),
            per_connection: c.local_rate_limit_per_downstream_connection,
            max_keys,
        })
    }

    fn when_not_enforced_edits(&self, req: &mut impl RequestAttributes) -> Vec<HeaderOp<'_>> {
        use config::AppendAction::*;
        self.when_not_enforced
            .iter()
            .filter_map(|h| {
                let present = req.header(&h.name).is_some();
                let value = Cow::Borrowed(h.value.as_str());
                match h.action {
                    AppendIfExistsOrAdd => Some(HeaderOp::Add(&h.name, value)),
                    AddIfAbsent => (!present).then_some(HeaderOp::Add(&h.name, value)),
                    OverwriteIfExistsOrAdd => Some(HeaderOp::Set(&h.name, value)),
                    OverwriteIfExists => present.then_some(HeaderOp::Set(&h.name, value)),
                }
            })
            .collect()
    }
}

fn token_bucket(b: &config::TokenBucket, at: &FieldPath<'_>) -> Result<BucketSpec, ConfigError> {
    let max_tokens = match b.max_tokens {
        Some(n) if n > 0 => n,
        _ => {
            return Err(at.field("maxTokens").error(ConfigErrorKind::Invalid {
                reason: "must be above 0 (Envoy refuses a bucket that can hold no token)".into(),
            }));
        }
    };
    let tokens_per_fill = match b.tokens_per_fill {
        Some(0) => {
            return Err(at.field("tokensPerFill").error(ConfigErrorKind::Invalid {
                reason: "must be above 0".into(),
            }));
        }
        Some(n) => n,
        None => 1,
    };
    let interval_at = at.field("fillInterval");
    let Some(text) = b.fill_interval.as_deref() else {
        return Err(interval_at.error(ConfigErrorKind::Missing {
            reason: "a duration such as \"1s\"",
        }));
    };
    let fill_interval = proto_duration(text)
        .map_err(|reason| interval_at.error(ConfigErrorKind::InvalidDuration { reason }))?;
    if fill_interval.is_zero() {
        return Err(interval_at.error(ConfigErrorKind::InvalidDuration {
            reason: "must be above 0s".into(),
        }));
    }
    Ok(BucketSpec::new(max_tokens, tokens_per_fill, fill_interval))
}

/// A proto-JSON `Duration`: decimal seconds with an `s`, such as `"1.5s"`.
fn proto_duration(text: &str) -> Result<Duration, String> {
    let digits = text.strip_suffix('s').unwrap_or("");
    let well_formed = !digits.is_empty()
        && digits
            .split_once('.')
            .map_or(digits.bytes().all(|b| b.is_ascii_digit()), |(w, f)| {
                !w.is_empty()
                    && w.bytes().all(|b| b.is_ascii_digit())
                    && f.len() <= 9
                    && f.bytes().all(|b| b.is_ascii_digit())
            });
    if !well_formed {
        return Err(format!(
            "{text:?} is not a protobuf duration; write seconds with an s, such as \"1s\" or \"0.25s\""
        ));
    }
    parse_duration(text).map_err(|e| e.to_string())
}

fn runtime_percent(
    p: Option<&config::RuntimeFractionalPercent>,
    at: &FieldPath<'_>,
    notes: &mut Vec<ConfigNote>,
) -> Result<PerMillion, ConfigError> {
    let Some(p) = p else {
        return Ok(PerMillion::ZERO);
    };
    if p.runtime_key.is_some() {
        notes.push(
            at.field("runtimeKey")
                .note("Envoy's runtime is not visible to a Wasm filter; defaultValue applies"),
        );
    }
    let Some(fraction) = &p.default_value else {
        return Err(at.field("defaultValue").error(ConfigErrorKind::Missing {
            reason: "the share, e.g. {\"numerator\": 100}",
        }));
    };
    let per = match fraction.denominator {
        config::Denominator::Hundred => 100u64,
        config::Denominator::TenThousand => 10_000,
        config::Denominator::Million => 1_000_000,
    };
    // Envoy treats a numerator above the denominator as 100 %.
    let millionths = (u64::from(fraction.numerator).min(per) * u64::from(MILLION) / per) as u32;
    Ok(PerMillion::from_millionths(millionths))
}

fn header_options(
    options: &[config::HeaderValueOption],
    at: &FieldPath<'_>,
) -> Result<Vec<HeaderAddition>, ConfigError> {
    if options.len() > 10 {
        return Err(at.error(ConfigErrorKind::Invalid {
            reason: format!("{} headers; Envoy takes at most 10", options.len()),
        }));
    }
    let mut out = Vec::new();
    for (i, o) in options.iter().enumerate() {
        let here = at.index(i);
        let Some(h) = &o.header else {
            return Err(here.field("header").error(ConfigErrorKind::Missing {
                reason: "the header's key and value",
            }));
        };
        let header_at = here.field("header");
        if h.raw_value.is_some() {
            return Err(header_at
                .field("rawValue")
                .error(ConfigErrorKind::Unsupported {
                    reason: "write the value as `value`",
                }));
        }
        let name = h.key.to_ascii_lowercase();
        if name.is_empty() || !name.bytes().all(|b| b.is_ascii_graphic() && b != b':') {
            return Err(header_at.field("key").error(ConfigErrorKind::Invalid {
                reason: format!("{:?} is not a header name", h.key),
            }));
        }
        if h.value.contains('%') {
            return Err(header_at
                .field("value")
                .error(ConfigErrorKind::Unsupported {
                    reason: "Envoy's format commands (%...%) are not evaluated by the Wasm filter",
                }));
        }
        if h.value.is_empty() && !o.keep_empty_value {
            continue;
        }
        let action = match (o.append_action, o.append) {
            (Some(_), Some(_)) => {
                return Err(here.error(ConfigErrorKind::Conflict {
                    reason: "set appendAction or the deprecated append, not both",
                }));
            }
            (Some(a), None) => a,
            (None, Some(false)) => config::AppendAction::OverwriteIfExistsOrAdd,
            (None, _) => config::AppendAction::AppendIfExistsOrAdd,
        };
        out.push(HeaderAddition {
            name,
            value: h.value.clone(),
            action,
        });
    }
    Ok(out)
}

/// Envoy's `StatusCode` names of the statuses a denial may use.
const STATUS_NAMES: [(&str, u16); 41] = [
    ("BadRequest", 400),
    ("Unauthorized", 401),
    ("PaymentRequired", 402),
    ("Forbidden", 403),
    ("NotFound", 404),
    ("MethodNotAllowed", 405),
    ("NotAcceptable", 406),
    ("ProxyAuthenticationRequired", 407),
    ("RequestTimeout", 408),
    ("Conflict", 409),
    ("Gone", 410),
    ("LengthRequired", 411),
    ("PreconditionFailed", 412),
    ("PayloadTooLarge", 413),
    ("URITooLong", 414),
    ("UnsupportedMediaType", 415),
    ("RangeNotSatisfiable", 416),
    ("ExpectationFailed", 417),
    ("MisdirectedRequest", 421),
    ("UnprocessableEntity", 422),
    ("Locked", 423),
    ("FailedDependency", 424),
    ("UpgradeRequired", 426),
    ("PreconditionRequired", 428),
    ("TooManyRequests", 429),
    ("RequestHeaderFieldsTooLarge", 431),
    ("InternalServerError", 500),
    ("NotImplemented", 501),
    ("BadGateway", 502),
    ("ServiceUnavailable", 503),
    ("GatewayTimeout", 504),
    ("HTTPVersionNotSupported", 505),
    ("VariantAlsoNegotiates", 506),
    ("InsufficientStorage", 507),
    ("LoopDetected", 508),
    ("NotExtended", 510),
    ("NetworkAuthenticationRequired", 511),
    ("Continue", 100),
    ("OK", 200),
    ("MovedPermanently", 301),
    ("Found", 302),
];

fn status_code(
    code: &config::StatusCode,
    at: &FieldPath<'_>,
    notes: &mut Vec<ConfigNote>,
) -> Result<u16, ConfigError> {
    let number = match code {
        config::StatusCode::Number(n) => *n,
        config::StatusCode::Name(name) => match STATUS_NAMES.iter().find(|(n, _)| n == name) {
            Some((_, n)) => i64::from(*n),
            None => {
                return Err(at.error(ConfigErrorKind::Invalid {
                    reason: format!("{name:?} is not one of Envoy's StatusCode names (e.g. TooManyRequests); a number also works"),
                }));
            }
        },
    };
    match number {
        400..=599 => Ok(number as u16),
        100..=399 => {
            notes.push(at.note("below 400, so Envoy answers 429 instead"));
            Ok(429)
        }
        _ => Err(at.error(ConfigErrorKind::HttpStatusOutOfRange {
            status: number,
            min: 100,
            max: 599,
        })),
    }
}
