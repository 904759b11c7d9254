//! Istio's `HTTPFaultInjection` (delay, abort), plus Envoy's
//! header-controlled faults, decided per request.
//!
//! The decision is pure: a filter gathers the request through
//! [`RequestAttributes`], asks [`FaultPlan::decide`], and carries out the
//! answer. Semantics:
//! - The first route that matches is selected; its `fault`, if any, applies.
//! - A delay and an abort are drawn independently, each with its own
//!   percentage; a request can be delayed and then aborted, as in Envoy.
//! - `percentage` unset means no request is faulted, as Istio documents;
//!   the legacy integer `delay.percent` is used when `percentage` is absent.
//! - Header-controlled faults (opt-in under `meshwasm.fault.headerFaults`)
//!   apply when the selected route has no fault of its own, as Envoy's
//!   per-route fault settings replace the filter-wide ones.

use crate::config::Document;
use crate::duration::check_istio_millis;
use crate::error::{ConfigError, ConfigErrorKind, ConfigNote, FieldPath};
use crate::metrics::MetricSpec;
use crate::percent::{PerMillion, Percent, Rng, compile_percent};
use crate::plan::Plan;
use crate::request::RequestAttributes;
use crate::route_table::RouteTable;
use crate::virtual_service::{
    FaultAbort, FaultDelay, HeaderFaults, HttpFaultInjection, VirtualService,
};
use std::time::Duration;

/// Body of an abort's local response, as Envoy's fault filter sends it.
pub const ABORT_BODY: &str = "fault filter abort";
/// Response code details of an abort, as Envoy's fault filter records them.
pub const ABORT_DETAILS: &str = "fault_filter_abort";

/// Envoy's header names for client-requested faults.
pub mod headers {
    /// HTTP status to abort with, 200..=599.
    pub const ABORT_HTTP: &str = "x-envoy-fault-abort-request";
    /// gRPC status code to abort with (any u32); the HTTP status is then 200.
    pub const ABORT_GRPC: &str = "x-envoy-fault-abort-grpc-request";
    /// Whole percentage of requests to abort, capped by the configuration.
    pub const ABORT_PERCENTAGE: &str = "x-envoy-fault-abort-request-percentage";
    /// Delay in milliseconds.
    pub const DELAY: &str = "x-envoy-fault-delay-request";
    /// Whole percentage of requests to delay, capped by the configuration.
    pub const DELAY_PERCENTAGE: &str = "x-envoy-fault-delay-request-percentage";
}

/// How an aborted request is answered.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Abort {
    /// An HTTP status.
    Http(u16),
    /// A gRPC status; Envoy answers HTTP 200 with `grpc-status` set.
    Grpc(u32),
}

impl Abort {
    /// The HTTP status of the local response.
    pub fn http_status(self) -> u16 {
        match self {
            Abort::Http(status) => status,
            Abort::Grpc(_) => 200,
        }
    }

    /// The gRPC status of the local response, if it is a gRPC abort.
    pub fn grpc_status(self) -> Option<u32> {
        match self {
            Abort::Http(_) => None,
            Abort::Grpc(status) => Some(status),
        }
    }
}

/// gRPC status names Istio accepts in `grpcStatus`, with their codes.
pub const GRPC_STATUS_NAMES: [(&str, u32); 17] = [
    ("OK", 0),
    ("CANCELLED", 1),
    ("UNKNOWN", 2),
    ("INVALID_ARGUMENT", 3),
    ("DEADLINE_EXCEEDED", 4),
    ("NOT_FOUND", 5),
    ("ALREADY_EXISTS", 6),
    ("PERMISSION_DENIED", 7),
    ("RESOURCE_EXHAUSTED", 8),
    ("FAILED_PRECONDITION", 9),
    ("ABORTED", 10),
    ("OUT_OF_RANGE", 11),
    ("UNIMPLEMENTED", 12),
    ("INTERNAL", 13),
    ("UNAVAILABLE", 14),
    ("DATA_LOSS", 15),
    ("UNAUTHENTICATED", 16),
];

/// A route's compiled fault.
#[derive(Debug, Clone, PartialEq)]
pub struct FaultPolicy {
    /// Delay and its probability.
    pub delay: Option<(Duration, PerMillion)>,
    /// Abort and its probability.
    pub abort: Option<(Abort, PerMillion)>,
}

/// Client-requested faults that are enabled, with their caps.
#[derive(Debug, Clone, Copy, PartialEq, Default)]
pub struct HeaderFaultPolicy {
    /// Cap for header aborts, if enabled.
    pub abort: Option<PerMillion>,
    /// Cap for header delays, if enabled.
    pub delay: Option<PerMillion>,
}

/// What to do to one request.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub struct FaultDecision {
    /// Hold the request this long before going on.
    pub delay: Option<Duration>,
    /// Then (or at once) answer with this instead of forwarding.
    pub abort: Option<Abort>,
}

impl FaultDecision {
    /// True when the request goes through untouched.
    pub fn is_none(&self) -> bool {
        self.delay.is_none() && self.abort.is_none()
    }
}

/// The fault filter's compiled configuration.
///
/// # Examples
///
/// The Istio docs' "jason gets a 500" rule:
///
/// ```
/// use meshwasm_core::fault::{Abort, FaultPlan};
/// use meshwasm_core::percent::Rng;
/// use meshwasm_core::plan::Plan;
/// use meshwasm_core::request::StaticRequest;
///
/// let plan = FaultPlan::from_json(br#"{"hosts": ["ratings"], "http": [
///   {"match": [{"headers": {"cookie": {"regex": "^(.*?;)?(user=jason)(;.*)?$"}}}],
///    "fault": {"abort": {"percentage": {"value": 100}, "httpStatus": 500}},
///    "route": [{"destination": {"host": "ratings", "subset": "v1"}}]},
///   {"route": [{"destination": {"host": "ratings", "subset": "v1"}}]}]}"#).unwrap();
/// let mut rng = Rng::with_seed(1);
/// let jason = StaticRequest::get("/").set_header(":authority", "ratings").with_header("cookie", "user=jason");
/// assert_eq!(plan.decide(&mut jason.clone(), &mut rng).abort, Some(Abort::Http(500)));
/// let other = StaticRequest::get("/").set_header(":authority", "ratings").with_header("cookie", "user=kim");
/// assert!(plan.decide(&mut other.clone(), &mut rng).is_none());
/// ```
#[derive(Debug, Clone)]
pub struct FaultPlan {
    /// One table per VirtualService.
    services: Vec<RouteTable<Option<FaultPolicy>>>,
    header_faults: HeaderFaultPolicy,
    max_active_faults: Option<u64>,
    notes: Vec<ConfigNote>,
}

/// The fault filter's metrics, in the order of [`FaultPlan`]'s
/// [`Plan::metrics`].
pub mod metric {
    use crate::metrics::MetricRef;

    /// Counter: requests delayed.
    pub const DELAYS_INJECTED: MetricRef = MetricRef(0);
    /// Counter: requests aborted.
    pub const ABORTS_INJECTED: MetricRef = MetricRef(1);
    /// Counter: faults skipped because `maxActiveFaults` was reached.
    pub const FAULTS_OVERFLOW: MetricRef = MetricRef(2);
    /// Gauge: faults in progress on this worker.
    pub const ACTIVE_FAULTS: MetricRef = MetricRef(3);
}

impl FaultPlan {
    /// Whether any request can draw a fault: a route with one, or the
    /// header-controlled faults.
    ///
    /// # Examples
    ///
    /// ```
    /// use meshwasm_core::fault::FaultPlan;
    /// use meshwasm_core::plan::Plan;
    ///
    /// let none = FaultPlan::from_json(br#"{"hosts": ["*"], "http": [{"route": [{"destination": {"host": "web"}}]}]}"#).unwrap();
    /// assert!(!none.injects_faults());
    /// let zero = FaultPlan::from_json(br#"{"hosts": ["*"], "http": [{"fault": {"abort": {"httpStatus": 500, "percentage": {"value": 0}}}}]}"#).unwrap();
    /// assert!(zero.injects_faults());
    /// ```
    pub fn injects_faults(&self) -> bool {
        let hf = self.header_faults;
        hf.abort.is_some()
            || hf.delay.is_some()
            || self
                .services
                .iter()
                .flat_map(|t| t.routes())
                .any(|r| r.value.is_some())
    }
}

impl Plan for FaultPlan {
    const DOCUMENT: Document = crate::virtual_service::DOCUMENT;

    /// Parses and compiles a plugin configuration: one VirtualService spec,
    /// or `{"virtualServices": [...]}` (see [`VirtualService::list_from_json`]).
    fn from_json(json: &[u8]) -> Result<Self, ConfigError> {
        Self::compile_all(&VirtualService::list_from_json(json)?)
    }

    fn notes(&self) -> &[ConfigNote] {
        &self.notes
    }

    fn summary(&self) -> String {
        let routes: Vec<_> = self.services.iter().flat_map(|t| t.routes()).collect();
        let faulted = routes.iter().filter(|r| r.value.is_some()).count();
        let hf = self.header_faults;
        let header = match (hf.abort.is_some(), hf.delay.is_some()) {
            (false, false) => "off",
            (true, false) => "abort",
            (false, true) => "delay",
            (true, true) => "abort+delay",
        };
        let limit = self
            .max_active_faults
            .map_or_else(|| "unlimited".to_owned(), |m| m.to_string());
        let services = match self.services.len() {
            1 => String::new(),
            n => format!(" in {n} VirtualServices"),
        };
        format!(
            "{} http routes{services}, {faulted} with faults; header faults: {header}; maxActiveFaults: {limit}",
            routes.len()
        )
    }

    fn metrics(&self) -> Vec<MetricSpec> {
        vec![
            MetricSpec::counter("meshwasm.fault.delays_injected"),
            MetricSpec::counter("meshwasm.fault.aborts_injected"),
            MetricSpec::counter("meshwasm.fault.faults_overflow"),
            MetricSpec::gauge("meshwasm.fault.active_faults"),
        ]
    }
}

impl FaultPlan {
    /// Compiles a parsed VirtualService spec.
    ///
    /// # Errors
    ///
    /// The first [`ConfigError`], naming the field.
    pub fn compile(vs: &VirtualService) -> Result<Self, ConfigError> {
        Self::compile_all(std::slice::from_ref(vs))
    }

    /// Compiles several VirtualService specs; a request gets the faults of
    /// the one whose `hosts` match it most specifically, as in
    /// [`RouterPlan::compile_all`](crate::router::RouterPlan::compile_all).
    /// `meshwasm.fault` applies to the whole filter, so at most one spec
    /// may set it.
    ///
    /// # Errors
    ///
    /// The first [`ConfigError`], naming the field.
    pub fn compile_all(specs: &[VirtualService]) -> Result<Self, ConfigError> {
        let mut notes = Vec::new();
        let mut options = None;
        let services = crate::route_table::compile_each(specs, |root, vs| {
            let table = RouteTable::compile_at(root, vs, &mut notes, |at, route, notes| {
                route
                    .fault
                    .as_ref()
                    .map(|f| compile_fault(&at.field("fault"), f, notes))
                    .transpose()
            })?;
            let ext_path = root.field("meshwasm");
            let ext_path = ext_path.field("fault");
            if let Some(ext) = vs.meshwasm.as_ref().and_then(|m| m.fault.as_ref()) {
                if options.is_some() {
                    return Err(ext_path.error(ConfigErrorKind::Conflict {
                        reason: "meshwasm.fault applies to the whole filter; set it in one VirtualService only",
                    }));
                }
                let header_faults = match &ext.header_faults {
                    Some(h) => compile_header_faults(&ext_path.field("headerFaults"), h)?,
                    None => HeaderFaultPolicy::default(),
                };
                options = Some((header_faults, ext.max_active_faults));
            }
            Ok(table)
        })?;
        let (header_faults, max_active_faults) = options.unwrap_or_default();
        Ok(FaultPlan {
            services,
            header_faults,
            max_active_faults,
            notes,
        })
    }

    /// Decides what happens to one request.
    pub fn decide(&self, req: &mut impl RequestAttributes, rng: &mut Rng) -> FaultDecision {
        let service = crate::route_table::most_specific(&self.services, req);
        let policy = service
            .and_then(|i| self.services.get(i))
            .and_then(|table| table.select(req))
            .and_then(|r| r.value.as_ref());
        match policy {
            Some(p) => FaultDecision {
                delay: p.delay.and_then(|(d, pct)| pct.sample(rng).then_some(d)),
                abort: p.abort.and_then(|(a, pct)| pct.sample(rng).then_some(a)),
            },
            None => self.decide_from_headers(req, rng),
        }
    }

    fn decide_from_headers(
        &self,
        req: &mut impl RequestAttributes,
        rng: &mut Rng,
    ) -> FaultDecision {
        let mut decision = FaultDecision::default();
        if let Some(cap) = self.header_faults.delay {
            let millis = first_number::<u64>(req, headers::DELAY).filter(|ms| *ms > 0);
            if let Some(ms) = millis
                && header_percent(req, headers::DELAY_PERCENTAGE, cap).sample(rng)
            {
                decision.delay = Some(Duration::from_millis(ms));
            }
        }
        if let Some(cap) = self.header_faults.abort {
            let abort = first_number::<u64>(req, headers::ABORT_HTTP)
                .filter(|s| (200..600).contains(s))
                .and_then(|s| u16::try_from(s).ok())
                .map(Abort::Http)
                .or_else(|| first_number::<u32>(req, headers::ABORT_GRPC).map(Abort::Grpc));
            if let Some(abort) = abort
                && header_percent(req, headers::ABORT_PERCENTAGE, cap).sample(rng)
            {
                decision.abort = Some(abort);
            }
        }
        decision
    }

    /// The limit on concurrent faults across worker threads, if configured.
    pub fn max_active_faults(&self) -> Option<u64> {
        self.max_active_faults
    }
}

fn compile_fault(
    at: &FieldPath<'_>,
    fault: &HttpFaultInjection,
    notes: &mut Vec<ConfigNote>,
) -> Result<FaultPolicy, ConfigError> {
    if fault.delay.is_none() && fault.abort.is_none() {
        return Err(at.error(ConfigErrorKind::Missing {
            reason: "a fault needs a delay or an abort",
        }));
    }
    Ok(FaultPolicy {
        delay: fault
            .delay
            .as_ref()
            .map(|d| compile_delay(&at.field("delay"), d, notes))
            .transpose()?,
        abort: fault
            .abort
            .as_ref()
            .map(|a| compile_abort(&at.field("abort"), a, notes))
            .transpose()?,
    })
}

fn compile_delay(
    at: &FieldPath<'_>,
    d: &FaultDelay,
    notes: &mut Vec<ConfigNote>,
) -> Result<(Duration, PerMillion), ConfigError> {
    let duration = match (&d.fixed_delay, &d.exponential_delay) {
        (Some(_), Some(_)) => {
            return Err(at.error(ConfigErrorKind::Conflict {
                reason: "set only one of fixedDelay and exponentialDelay",
            }));
        }
        (None, Some(_)) => {
            return Err(at
                .field("exponentialDelay")
                .error(ConfigErrorKind::Unsupported {
                    reason: "Istio does not implement exponentialDelay either; use fixedDelay",
                }));
        }
        (None, None) => {
            return Err(at.field("fixedDelay").error(ConfigErrorKind::Missing {
                reason: "a delay needs fixedDelay, e.g. \"2s\"",
            }));
        }
        (Some(fixed), None) => check_istio_millis(fixed.0).map_err(|reason| {
            at.field("fixedDelay")
                .error(ConfigErrorKind::InvalidDuration { reason })
        })?,
    };
    let chance = chance(at, d.percent, d.percentage.as_ref(), notes, NO_DELAY)?;
    Ok((duration, chance))
}

fn compile_abort(
    at: &FieldPath<'_>,
    a: &FaultAbort,
    notes: &mut Vec<ConfigNote>,
) -> Result<(Abort, PerMillion), ConfigError> {
    let set = [
        a.http_status.is_some(),
        a.grpc_status.is_some(),
        a.http2_error.is_some(),
    ];
    if set.iter().filter(|s| **s).count() > 1 {
        return Err(at.error(ConfigErrorKind::Conflict {
            reason: "set only one of httpStatus, grpcStatus and http2Error",
        }));
    }
    let abort = if let Some(status) = a.http_status {
        let ok = u16::try_from(status)
            .ok()
            .filter(|s| (200..=599).contains(s));
        Abort::Http(ok.ok_or_else(|| {
            at.field("httpStatus")
                .error(ConfigErrorKind::HttpStatusOutOfRange {
                    status,
                    min: 200,
                    max: 599,
                })
        })?)
    } else if let Some(name) = &a.grpc_status {
        let code = GRPC_STATUS_NAMES
            .iter()
            .find(|(n, _)| n == name)
            .map(|(_, c)| *c);
        Abort::Grpc(code.ok_or_else(|| {
            at.field("grpcStatus")
                .error(ConfigErrorKind::UnknownGrpcStatus { name: name.clone() })
        })?)
    } else if a.http2_error.is_some() {
        return Err(at.field("http2Error").error(ConfigErrorKind::Unsupported {
            reason: "Istio does not implement http2Error either; use httpStatus or grpcStatus",
        }));
    } else {
        return Err(at.error(ConfigErrorKind::Missing {
            reason: "an abort needs httpStatus or grpcStatus",
        }));
    };
    let chance = chance(at, a.percent, a.percentage.as_ref(), notes, NO_ABORT)?;
    Ok((abort, chance))
}

const NO_DELAY: &str = "no percentage: as in Istio, no request is delayed";
const NO_ABORT: &str = "no percentage: as in Istio, no request is aborted";

/// The share of requests a delay or abort applies to: `percentage`, else
/// the deprecated integer `percent` of v1alpha3 (with a note), else none,
/// as in Istio (noted with `unset`).
fn chance(
    at: &FieldPath<'_>,
    percent: Option<i32>,
    percentage: Option<&Percent>,
    notes: &mut Vec<ConfigNote>,
    unset: &'static str,
) -> Result<PerMillion, ConfigError> {
    let legacy = percent
        .map(|p| {
            u32::try_from(p)
                .ok()
                .filter(|p| *p <= 100)
                .map(PerMillion::from_whole_percent)
                .ok_or_else(|| {
                    at.field("percent")
                        .error(ConfigErrorKind::PercentOutOfRange {
                            value: f64::from(p),
                        })
                })
        })
        .transpose()?;
    match (percentage, legacy) {
        (Some(p), legacy) => {
            if legacy.is_some() {
                notes.push(
                    at.field("percent")
                        .note("percentage is also set and wins, as in Istio"),
                );
            }
            compile_percent(&at.field("percentage"), p)
        }
        (None, Some(legacy)) => {
            notes.push(at.field("percent").deprecation(
                "the integer percent is deprecated (v1alpha3); write percentage: {value: N}",
            ));
            Ok(legacy)
        }
        (None, None) => {
            notes.push(at.note(unset));
            Ok(PerMillion::ZERO)
        }
    }
}

fn compile_header_faults(
    at: &FieldPath<'_>,
    h: &HeaderFaults,
) -> Result<HeaderFaultPolicy, ConfigError> {
    let cap = |name: &'static str, fault: &Option<crate::virtual_service::HeaderFault>| {
        fault
            .as_ref()
            .map(|f| match &f.percentage {
                Some(p) => compile_percent(&at.field(name).field("percentage"), p),
                None => Ok(PerMillion::ALWAYS),
            })
            .transpose()
    };
    Ok(HeaderFaultPolicy {
        abort: cap("abort", &h.abort)?,
        delay: cap("delay", &h.delay)?,
    })
}

/// Parses the first value of a header as Envoy does (`absl::SimpleAtoi`):
/// surrounding white space allowed, anything else makes it absent.
fn first_number<N: std::str::FromStr>(req: &mut impl RequestAttributes, name: &str) -> Option<N> {
    let value = req.header(name)?;
    let first = value.split(',').next().unwrap_or_default();
    first.trim().parse().ok()
}

/// A `-percentage` header lowers the configured chance, never raises it;
/// an unparsable one leaves it as configured.
fn header_percent(req: &mut impl RequestAttributes, name: &str, cap: PerMillion) -> PerMillion {
    match first_number::<u32>(req, name) {
        Some(pct) => PerMillion::from_whole_percent(pct).min(cap),
        None => cap,
    }
}
