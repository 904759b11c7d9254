//! Global rate limiting as Envoy's `ratelimit` filter does it: the
//! request's descriptors go to a rate limit service, whose answer decides.
//!
//! The plan says what to send ([`GlobalPlan::call`]) and what the answer
//! means ([`GlobalPlan::answer`]); the filter makes the gRPC call.

use super::descriptor::{Entry, RateLimitActions};
use super::rls::{self, Code};
use super::{
    HeaderAddition, RateHeaders, config, header_options, proto_duration, runtime_percent,
    status_code,
};
use crate::error::{ConfigError, ConfigErrorKind, ConfigNote, FieldPath};
use crate::percent::{PerMillion, Rng};
use crate::request::RequestAttributes;
use std::time::Duration;

/// The response code details of a denial, as Envoy's.
pub const LIMITED_DETAILS: &str = "request_rate_limited";
/// The response code details when the service failed, as Envoy's.
pub const ERROR_DETAILS: &str = "rate_limiter_error";
/// Envoy's default timeout of the call.
pub const DEFAULT_TIMEOUT: Duration = Duration::from_millis(20);
/// What a `0s` timeout (none) becomes: a day.
const NO_TIMEOUT: Duration = Duration::from_secs(86_400);

/// The compiled `RateLimit` (global) config.
#[derive(Debug)]
pub struct GlobalPlan {
    domain: String,
    cluster: String,
    /// The calls' `:authority`, when it is not the cluster's name.
    authority: Option<String>,
    /// What `proxy_grpc_call` is given: the cluster's name, or with an
    /// `authority` a serialized `GrpcService`, which Envoy reads first.
    service: String,
    timeout: Duration,
    metadata: Vec<(String, String)>,
    request_type: RequestType,
    failure_mode_deny: bool,
    failure_deny_share: PerMillion,
    enabled: PerMillion,
    enforced: PerMillion,
    status: u16,
    status_on_error: u16,
    grpc_status: u32,
    x_envoy_ratelimited: bool,
    x_ratelimit_headers: bool,
    on_denial: Vec<HeaderAddition>,
    rate_limits: Vec<RateLimitActions>,
    stat_prefix: Option<String>,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum RequestType {
    Internal,
    External,
    Both,
}

/// A call to make to the rate limit service.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Call<'p> {
    /// The service for `proxy_grpc_call`: a cluster name or a serialized
    /// `envoy.config.core.v3.GrpcService`.
    pub service: &'p str,
    /// `initial_metadata` of the gRPC service.
    pub metadata: &'p [(String, String)],
    /// The encoded `RateLimitRequest`.
    pub message: Vec<u8>,
    /// How long to wait for the answer.
    pub timeout: Duration,
}

/// A Envoy stat of the global filter, named after the request's cluster.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Stat {
    /// Under every limit.
    Ok,
    /// Over a limit.
    OverLimit,
    /// The service failed or timed out.
    Error,
    /// The service failed and the request went on.
    FailureModeAllowed,
}

impl Stat {
    fn name(self) -> &'static str {
        match self {
            Stat::Ok => "ok",
            Stat::OverLimit => "over_limit",
            Stat::Error => "error",
            Stat::FailureModeAllowed => "failure_mode_allowed",
        }
    }
}

/// What the answer means for the request.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Answer {
    /// Forward, adding these request headers; add these to the response.
    Allow {
        /// The service's `request_headers_to_add`.
        request_headers: Vec<(String, String)>,
        /// The service's `response_headers_to_add` and the rate headers.
        response_headers: Vec<(String, String)>,
    },
    /// Answer locally.
    Deny {
        /// HTTP status.
        status: u16,
        /// Response code details.
        details: &'static str,
        /// The body: the service's `raw_body`, or empty.
        body: Vec<u8>,
        /// Headers of the answer.
        headers: Vec<(String, String)>,
        /// gRPC status for gRPC clients.
        grpc_status: u32,
    },
}

impl GlobalPlan {
    pub(super) fn compile(
        c: &config::GlobalRateLimit,
        at: &FieldPath<'_>,
        notes: &mut Vec<ConfigNote>,
    ) -> Result<Self, ConfigError> {
        const GLOBAL_TYPE: &str =
            "type.googleapis.com/envoy.extensions.filters.http.ratelimit.v3.RateLimit";
        if let Some(t) = &c.type_url
            && t != GLOBAL_TYPE
        {
            return Err(at.field("@type").error(ConfigErrorKind::Invalid {
                reason: format!("expected {GLOBAL_TYPE}, not {t}"),
            }));
        }
        if c.domain.is_empty() {
            return Err(at.field("domain").error(ConfigErrorKind::Missing {
                reason: "the rate limit service's domain",
            }));
        }
        let service_at = at.field("rateLimitService");
        let Some(service) = &c.rate_limit_service else {
            return Err(service_at.error(ConfigErrorKind::Missing {
                reason: "the rate limit service",
            }));
        };
        if service.transport_api_version.as_deref() != Some("V3") {
            return Err(service_at
                .field("transportApiVersion")
                .error(ConfigErrorKind::Invalid {
                    reason: "must be V3, as Envoy requires".into(),
                }));
        }
        let grpc_at = service_at.field("grpcService");
        let Some(grpc) = &service.grpc_service else {
            return Err(grpc_at.error(ConfigErrorKind::Missing {
                reason: "envoyGrpc {clusterName}",
            }));
        };
        for (name, set) in [
            ("googleGrpc", grpc.google_grpc.is_some()),
            ("retryPolicy", grpc.retry_policy.is_some()),
        ] {
            if set {
                return Err(grpc_at.field(name).error(ConfigErrorKind::Unsupported {
                    reason: "a Wasm filter calls through Envoy's own gRPC client: use envoyGrpc",
                }));
            }
        }
        let envoy_at = grpc_at.field("envoyGrpc");
        let Some(envoy) = &grpc.envoy_grpc else {
            return Err(envoy_at.error(ConfigErrorKind::Missing {
                reason: "the cluster of the rate limit service",
            }));
        };
        for (name, set) in [
            ("retryPolicy", envoy.retry_policy.is_some()),
            (
                "maxReceiveMessageLength",
                envoy.max_receive_message_length.is_some(),
            ),
            ("skipEnvoyHeaders", envoy.skip_envoy_headers.is_some()),
        ] {
            if set {
                return Err(envoy_at.field(name).error(ConfigErrorKind::Unsupported {
                    reason: "the Proxy-Wasm gRPC call takes a cluster name only",
                }));
            }
        }
        if envoy.cluster_name.is_empty() {
            return Err(envoy_at
                .field("clusterName")
                .error(ConfigErrorKind::Missing {
                    reason: "the cluster of the rate limit service",
                }));
        }
        let authority = envoy.authority.clone().filter(|a| !a.is_empty());
        let service = match authority.as_deref() {
            None => envoy.cluster_name.clone(),
            Some(authority) => {
                let mut inner = Vec::new();
                rls::put_string(&mut inner, 1, &envoy.cluster_name);
                rls::put_string(&mut inner, 2, authority);
                let mut proto = Vec::new();
                rls::put_bytes_field(&mut proto, 1, &inner);
                // Short names encode to ASCII; the SDK takes the service as text.
                String::from_utf8(proto).map_err(|_| {
                    envoy_at.field("authority").error(ConfigErrorKind::Invalid {
                        reason: "clusterName and authority are too long together (over 120 bytes)"
                            .into(),
                    })
                })?
            }
        };
        if grpc.timeout.is_some() {
            notes.push(
                grpc_at
                    .field("timeout")
                    .note("Envoy's rate limit filter uses its own timeout, not the gRPC service's"),
            );
        }
        let metadata_at = grpc_at.field("initialMetadata");
        let metadata = grpc
            .initial_metadata
            .iter()
            .enumerate()
            .map(|(i, h)| {
                if h.raw_value.is_some() {
                    return Err(metadata_at.index(i).field("rawValue").error(
                        ConfigErrorKind::Unsupported {
                            reason: "write the value as `value`",
                        },
                    ));
                }
                Ok((h.key.to_ascii_lowercase(), h.value.clone()))
            })
            .collect::<Result<_, _>>()?;
        let timeout = match c.timeout.as_deref() {
            None => DEFAULT_TIMEOUT,
            Some(t) => match proto_duration(t).map_err(|reason| {
                at.field("timeout")
                    .error(ConfigErrorKind::InvalidDuration { reason })
            })? {
                d if d.is_zero() => NO_TIMEOUT,
                d => d,
            },
        };
        let request_type = match c.request_type.as_deref() {
            None | Some("" | "both") => RequestType::Both,
            Some("internal") => RequestType::Internal,
            Some("external") => RequestType::External,
            Some(other) => {
                return Err(at.field("requestType").error(ConfigErrorKind::Invalid {
                    reason: format!("{other:?} is not internal, external or both"),
                }));
            }
        };
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
        let limits_at = at.field("rateLimits");
        if c.rate_limits.is_empty() {
            return Err(limits_at.error(ConfigErrorKind::Missing {
                reason: "the descriptors' actions: a Wasm filter cannot read the route's rate_limits, so give them here",
            }));
        }
        let rate_limits = c
            .rate_limits
            .iter()
            .enumerate()
            .map(|(i, r)| RateLimitActions::compile(r, &limits_at.index(i)))
            .collect::<Result<Vec<_>, _>>()?;
        let all = PerMillion::ALWAYS;
        let share = |p: &Option<config::RuntimeFractionalPercent>,
                     name: &str,
                     notes: &mut Vec<ConfigNote>| match p {
            None => Ok(all),
            Some(_) => runtime_percent(p.as_ref(), &at.field(name), notes),
        };
        Ok(GlobalPlan {
            domain: c.domain.clone(),
            cluster: envoy.cluster_name.clone(),
            authority,
            service,
            timeout,
            metadata,
            request_type,
            failure_mode_deny: c.failure_mode_deny,
            failure_deny_share: share(
                &c.failure_mode_deny_percent,
                "failureModeDenyPercent",
                notes,
            )?,
            enabled: share(&c.filter_enabled, "filterEnabled", notes)?,
            enforced: share(&c.filter_enforced, "filterEnforced", notes)?,
            status: match &c.rate_limited_status {
                None => 429,
                Some(s) => {
                    status_code(&s.code, &at.field("rateLimitedStatus").field("code"), notes)?
                }
            },
            status_on_error: match &c.status_on_error {
                None => 500,
                Some(s) => status_code(&s.code, &at.field("statusOnError").field("code"), notes)?,
            },
            grpc_status: if c.rate_limited_as_resource_exhausted {
                super::GRPC_RESOURCE_EXHAUSTED
            } else {
                super::GRPC_UNAVAILABLE
            },
            x_envoy_ratelimited: !c.disable_x_envoy_ratelimited_header,
            x_ratelimit_headers: c.enable_x_ratelimit_headers
                == Some(config::XRateLimitHeaders::DraftVersion03),
            on_denial: header_options(
                &c.response_headers_to_add,
                &at.field("responseHeadersToAdd"),
            )?,
            rate_limits,
            stat_prefix: c.stat_prefix.clone().filter(|p| !p.is_empty()),
        })
    }

    /// The service's cluster.
    pub fn cluster(&self) -> &str {
        &self.cluster
    }

    /// The `:authority` the calls carry when the config sets one
    /// (`envoy_grpc.authority`); without it, Envoy sends the cluster name.
    pub fn authority(&self) -> Option<&str> {
        self.authority.as_deref()
    }

    /// The call to make for this request, or `None` when the request is
    /// not checked: not sampled by `filterEnabled`, of the wrong
    /// `requestType`, or without any descriptor.
    pub fn call(&self, req: &mut impl RequestAttributes, rng: &mut Rng) -> Option<Call<'_>> {
        if self.request_type != RequestType::Both {
            let internal = req.header("x-envoy-internal").is_some_and(|v| v == "true");
            if internal != (self.request_type == RequestType::Internal) {
                return None;
            }
        }
        if !self.enabled.sample(rng) {
            return None;
        }
        let descriptors: Vec<Vec<Entry>> = self
            .rate_limits
            .iter()
            .filter_map(|a| a.descriptor(req))
            .collect();
        if descriptors.is_empty() {
            return None;
        }
        Some(Call {
            service: &self.service,
            metadata: &self.metadata,
            message: rls::encode_request(&self.domain, &descriptors),
            timeout: self.timeout,
        })
    }

    /// The name of a stat for requests routed to `cluster`, as Envoy names it:
    /// `cluster.<cluster>.ratelimit[.<statPrefix>].<stat>`.
    pub fn stat_name(&self, cluster: &str, stat: Stat) -> String {
        match &self.stat_prefix {
            Some(p) => format!("cluster.{cluster}.ratelimit.{p}.{}", stat.name()),
            None => format!("cluster.{cluster}.ratelimit.{}", stat.name()),
        }
    }

    /// What the service's answer (or its failure, `None`) means, and the
    /// stats it counts.
    pub fn answer(
        &self,
        response: Option<rls::Response>,
        rng: &mut Rng,
    ) -> (Answer, &'static [Stat]) {
        let Some(response) = response else {
            if self.failure_mode_deny && self.failure_deny_share.sample(rng) {
                let deny = Answer::Deny {
                    status: self.status_on_error,
                    details: ERROR_DETAILS,
                    body: Vec::new(),
                    headers: Vec::new(),
                    grpc_status: self.grpc_status,
                };
                return (deny, &[Stat::Error]);
            }
            let allow = Answer::Allow {
                request_headers: Vec::new(),
                response_headers: Vec::new(),
            };
            return (allow, &[Stat::Error, Stat::FailureModeAllowed]);
        };
        let mut response_headers = response.response_headers;
        if self.x_ratelimit_headers
            && let Some(h) = rate_headers(&response.statuses)
        {
            response_headers.extend(h);
        }
        if response.overall_code == Code::OverLimit {
            if self.enforced.sample(rng) {
                let mut headers = response_headers;
                headers.extend(
                    self.on_denial
                        .iter()
                        .map(|h| (h.name.clone(), h.value.clone())),
                );
                if self.x_envoy_ratelimited {
                    headers.push(("x-envoy-ratelimited".into(), "true".into()));
                }
                let deny = Answer::Deny {
                    status: self.status,
                    details: LIMITED_DETAILS,
                    body: response.raw_body,
                    headers,
                    grpc_status: self.grpc_status,
                };
                return (deny, &[Stat::OverLimit]);
            }
            let allow = Answer::Allow {
                request_headers: response.request_headers,
                response_headers,
            };
            return (allow, &[Stat::OverLimit]);
        }
        (
            Answer::Allow {
                request_headers: response.request_headers,
                response_headers,
            },
            &[Stat::Ok],
        )
    }
}

/// Envoy's draft-03 headers from the service's statuses: the limit with
/// the fewest requests remaining, then every limit's quota policy.
fn rate_headers(statuses: &[rls::DescriptorStatus]) -> Option<[(String, String); 3]> {
    let windowed = || {
        statuses
            .iter()
            .filter_map(|s| Some((s, s.limit.as_ref()?, s.limit.as_ref()?.window_secs?)))
    };
    let (min, min_limit, _) = windowed().min_by_key(|(s, _, _)| s.remaining)?;
    let mut limit = min_limit.requests_per_unit.to_string();
    for (_, l, window) in windowed() {
        limit.push_str(&format!(", {};w={window}", l.requests_per_unit));
        if !l.name.is_empty() {
            limit.push_str(&format!(";name=\"{}\"", l.name));
        }
    }
    let reset = min.until_reset.map_or(0, |d| d.as_secs());
    let values = RateHeaders {
        limit: 0,
        remaining: min.remaining,
        reset_secs: reset,
    };
    Some([
        ("x-ratelimit-limit".into(), limit),
        ("x-ratelimit-remaining".into(), values.remaining.to_string()),
        ("x-ratelimit-reset".into(), values.reset_secs.to_string()),
    ])
}
