//! The mesh module's configuration: every behaviour's document in one, as
//! each filter takes it alone.
//!
//! ```json
//! {
//!   "virtualServices": [{"hosts": ["reviews"], "http": [...]}],
//!   "authorization": {"action": "ALLOW", "rules": [...]},
//!   "rateLimit": {"stat_prefix": "local", "token_bucket": {...}},
//!   "telemetry": {}
//! }
//! ```
//!
//! - `virtualServices`: VirtualService specs, for routing and for their
//!   faults (as the router and fault filters read them);
//! - `authorization`: the header-match filter's document (an
//!   AuthorizationPolicy spec, or `{"policies": [...], "headerRules": [...],
//!   "extensionProviders": [...]}`);
//! - `rateLimit`: the rate-limit filter's document (Envoy's
//!   `LocalRateLimit`, `RateLimit`, or `{"local": ..., "global": ...}`);
//! - `telemetry`: the telemetry filter's Istio Telemetry spec.
//!
//! A part that is absent is not run. Each part is compiled by its own
//! plan, so it is read exactly as the filter alone reads it; errors and
//! notes name the field from the top of the whole document, with the line
//! and column in it (`rateLimit.token_bucket.max_tokens: ... (line 4,
//! column 33)`).

use crate::authz::AuthzPlan;
use crate::config::{self, Document};
use crate::error::{ConfigError, ConfigErrorKind, ConfigNote};
use crate::fault::FaultPlan;
use crate::plan::Plan;
use crate::rate_limit::RateLimitPlan;
use crate::router::RouterPlan;
use crate::telemetry::TelemetryPlan;
use crate::virtual_service::VirtualService;
use serde::Deserialize;
use serde_json::value::RawValue;

/// The mesh module's compiled configuration: the plan of each part given,
/// in the order the module runs them.
///
/// # Examples
///
/// ```
/// use meshwasm_core::mesh::MeshPlan;
/// use meshwasm_core::plan::Plan;
///
/// let plan = MeshPlan::from_json(br#"{
///   "virtualServices": [{"hosts": ["*"], "http": [{"route": [{"destination": {"host": "web"}}]}]}],
///   "authorization": {"action": "ALLOW", "rules": [{"to": [{"operation": {"methods": ["GET"]}}]}]}
/// }"#).unwrap();
/// assert!(plan.access.is_some() && plan.routing.is_some());
/// // No route injects a fault, so the fault part does not run.
/// assert!(plan.fault.is_none() && plan.rate_limit.is_none() && plan.telemetry.is_none());
///
/// let err = MeshPlan::from_json(br#"{"rateLimit": {"stat_prefix": "x", "token_bucket": {"max_tokens": -1}}}"#).err().unwrap();
/// assert_eq!(err.path, "rateLimit.token_bucket.max_tokens");
/// // Where serde_json stops in the whole document: the end of `-1`.
/// assert!(err.to_string().ends_with("(line 1, column 68)"), "{err}");
/// ```
pub struct MeshPlan {
    /// Access rules (`authorization`).
    pub access: Option<AuthzPlan>,
    /// Rate limits (`rateLimit`).
    pub rate_limit: Option<RateLimitPlan>,
    /// The faults of `virtualServices`, when any route injects one.
    pub fault: Option<FaultPlan>,
    /// The routing of `virtualServices`.
    pub routing: Option<RouterPlan>,
    /// Istio's telemetry (`telemetry`).
    pub telemetry: Option<TelemetryPlan>,
    /// Where `rateLimit` and `virtualServices` are in the document: the
    /// state a part keeps across workers (buckets, the active faults) is
    /// keyed by its own text, so that changing another part keeps it.
    pub spans: Spans,
    notes: Vec<ConfigNote>,
}

/// Byte ranges of parts in the mesh document.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct Spans {
    /// The `rateLimit` value.
    pub rate_limit: Option<std::ops::Range<usize>>,
    /// The `virtualServices` value.
    pub virtual_services: Option<std::ops::Range<usize>>,
}

/// The mesh document, each part kept as its text for its own plan.
#[derive(Deserialize)]
#[serde(rename_all = "camelCase", deny_unknown_fields)]
struct MeshDocument<'a> {
    #[serde(borrow, default)]
    virtual_services: Option<&'a RawValue>,
    #[serde(borrow, default)]
    authorization: Option<&'a RawValue>,
    #[serde(borrow, default)]
    rate_limit: Option<&'a RawValue>,
    #[serde(borrow, default)]
    telemetry: Option<&'a RawValue>,
}

/// One part of the document: where its text is, for errors and notes.
struct Part<'a> {
    key: &'static str,
    whole: &'a [u8],
    text: &'a RawValue,
}

impl Part<'_> {
    fn bytes(&self) -> &[u8] {
        self.text.get().as_bytes()
    }

    /// Where the part's text is in the whole document.
    fn span(&self) -> std::ops::Range<usize> {
        let start = (self.text.get().as_ptr() as usize)
            .saturating_sub(self.whole.as_ptr() as usize)
            .min(self.whole.len());
        start
            ..start
                .saturating_add(self.text.get().len())
                .min(self.whole.len())
    }

    /// `path` inside the part, from the top of the whole document.
    fn path(&self, path: &str) -> String {
        under(self.key, path)
    }

    /// An error of the part's own plan, placed in the whole document.
    fn error(&self, mut error: ConfigError) -> ConfigError {
        error.path = self.path(&error.path);
        if let ConfigErrorKind::Json { line, column, .. } = &mut error.kind {
            let offset = self.span().start;
            let before = &self.whole[..offset];
            let lines_before = before.iter().filter(|b| **b == b'\n').count();
            if *line == 1 {
                let line_start = before
                    .iter()
                    .rposition(|b| *b == b'\n')
                    .map_or(0, |i| i + 1);
                *column += offset - line_start;
            }
            *line += lines_before;
        }
        error
    }

    fn notes(&self, notes: &[ConfigNote]) -> Vec<ConfigNote> {
        notes
            .iter()
            .map(|n| ConfigNote {
                path: self.path(&n.path),
                ..n.clone()
            })
            .collect()
    }
}

/// A path of the VirtualService plans, which name `virtualServices[i]`
/// only when there are several, from the top of the mesh document.
fn list_path(specs: usize, path: &str) -> String {
    if specs > 1 {
        return path.to_owned();
    }
    under(&format!("{}[0]", crate::virtual_service::LIST_KEY), path)
}

/// `path` (dotted, with `[i]` for list items) below the field `prefix`.
fn under(prefix: &str, path: &str) -> String {
    match path {
        "" => prefix.to_owned(),
        p if p.starts_with('[') => format!("{prefix}{p}"),
        p => format!("{prefix}.{p}"),
    }
}

/// An error of the VirtualService plans, from the top of the mesh document.
fn in_list(specs: &[VirtualService], mut error: ConfigError) -> ConfigError {
    error.path = list_path(specs.len(), &error.path);
    error
}

/// The plan of a part, if given, with its notes added to `notes`.
fn compile<P: Plan>(
    part: Option<Part<'_>>,
    notes: &mut Vec<ConfigNote>,
) -> Result<Option<P>, ConfigError> {
    let Some(part) = part else {
        return Ok(None);
    };
    let plan = P::from_json(part.bytes()).map_err(|e| part.error(e))?;
    notes.extend(part.notes(plan.notes()));
    Ok(Some(plan))
}

impl MeshPlan {
    fn parts(&self) -> impl Iterator<Item = (&'static str, Option<String>)> + '_ {
        [
            ("access", self.access.as_ref().map(Plan::summary)),
            ("rate limit", self.rate_limit.as_ref().map(Plan::summary)),
            ("fault", self.fault.as_ref().map(Plan::summary)),
            ("routing", self.routing.as_ref().map(Plan::summary)),
            ("telemetry", self.telemetry.as_ref().map(Plan::summary)),
        ]
        .into_iter()
    }
}

impl Plan for MeshPlan {
    const DOCUMENT: Document = Document {
        name: "a mesh configuration",
        example: r#"{"virtualServices": [...], "authorization": {...}, "rateLimit": {...}, "telemetry": {}}"#,
        list_key: None,
    };

    fn from_json(json: &[u8]) -> Result<Self, ConfigError> {
        let doc: MeshDocument<'_> = config::parse(json, Self::DOCUMENT)?;
        let part = |key, text: Option<_>| {
            text.map(|text| Part {
                key,
                whole: json,
                text,
            })
        };
        let spans = Spans {
            rate_limit: part("rateLimit", doc.rate_limit).map(|p| p.span()),
            virtual_services: part("virtualServices", doc.virtual_services).map(|p| p.span()),
        };
        let mut notes = Vec::new();
        let access = compile(part("authorization", doc.authorization), &mut notes)?;
        let rate_limit = compile(part("rateLimit", doc.rate_limit), &mut notes)?;
        let (fault, routing) = match part("virtualServices", doc.virtual_services) {
            None => (None, None),
            Some(p) => {
                let specs: Vec<VirtualService> =
                    config::parse(p.bytes(), crate::virtual_service::DOCUMENT)
                        .map_err(|e| p.error(e))?;
                if specs.is_empty() {
                    let empty = ConfigErrorKind::empty(crate::virtual_service::DOCUMENT);
                    return Err(p.error(ConfigError::new("", empty)));
                }
                let routing = RouterPlan::compile_all(&specs).map_err(|e| in_list(&specs, e))?;
                let fault = FaultPlan::compile_all(&specs).map_err(|e| in_list(&specs, e))?;
                // The two plans read the same specs, so each note is given
                // once, and here the fault is applied where the router
                // says it is left to another filter.
                let both = routing.notes().iter().chain(fault.notes());
                for note in both.filter(|n| n.message != crate::router::FAULT_NOTE) {
                    let note = ConfigNote {
                        path: list_path(specs.len(), &note.path),
                        ..note.clone()
                    };
                    if !notes.contains(&note) {
                        notes.push(note);
                    }
                }
                (fault.injects_faults().then_some(fault), Some(routing))
            }
        };
        let telemetry: Option<TelemetryPlan> =
            compile(part("telemetry", doc.telemetry), &mut notes)?;
        if telemetry.as_ref().is_some_and(TelemetryPlan::network) {
            return Err(ConfigError::new(
                "telemetry.meshwasm.filter",
                ConfigErrorKind::Invalid {
                    reason: "the mesh module is an HTTP filter; for Istio's TCP metrics, run the telemetry filter alone as a network filter".into(),
                },
            ));
        }
        let plan = MeshPlan {
            access,
            rate_limit,
            fault,
            routing,
            telemetry,
            spans,
            notes,
        };
        if plan.parts().all(|(_, s)| s.is_none()) {
            return Err(ConfigError::new(
                "",
                ConfigErrorKind::Missing {
                    reason: "give at least one of virtualServices, authorization, rateLimit and telemetry",
                },
            ));
        }
        Ok(plan)
    }

    fn notes(&self) -> &[ConfigNote] {
        &self.notes
    }

    fn summary(&self) -> String {
        let parts: Vec<String> = self
            .parts()
            .filter_map(|(name, summary)| summary.map(|s| format!("{name}: {s}")))
            .collect();
        parts.join(" | ")
    }
}
