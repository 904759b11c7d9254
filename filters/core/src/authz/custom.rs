//! CUSTOM policies: the check by an external HTTP authorizer, as Envoy's
//! ext_authz filter makes it from Istio's `envoyExtAuthzHttp` provider.
//!
//! The check request carries `content-length: 0`, the client's
//! `:method`, `:path` (after `pathPrefix`), `:authority` and
//! `authorization`, the headers `includeRequestHeadersInCheck` names, and
//! `includeAdditionalHeadersInCheck`. A `200` allows, with the answer's
//! `headersToUpstreamOnAllow` set on the request (and the names in its
//! `x-envoy-auth-headers-to-remove` removed) and `headersToDownstreamOnAllow`
//! added to the response. A 5xx, a timeout or no answer is an error:
//! `failOpen` lets the request through, else `statusOnError` (403). Any
//! other status denies with the authorizer's status, body and headers
//! (`headersToDownstreamOnDeny`, or all of them when it names none).

use super::policy::{ExtAuthzHttp, ExtensionProvider};
use crate::error::{ConfigError, ConfigErrorKind, ConfigNote, FieldPath};
use std::time::Duration;

/// Istio's default check timeout.
const DEFAULT_TIMEOUT: Duration = Duration::from_secs(600);

/// The client headers every check carries, as Envoy's ext_authz sends them.
const ALWAYS_SENT: [&str; 4] = [":method", ":path", ":authority", "authorization"];

/// Istio's meshConfig provider kinds other than ext_authz: a list copied
/// from meshConfig may hold them.
const OTHER_KINDS: [&str; 13] = [
    "zipkin",
    "lightstep",
    "datadog",
    "stackdriver",
    "opencensus",
    "skywalking",
    "opentelemetry",
    "prometheus",
    "envoyFileAccessLog",
    "envoyHttpAls",
    "envoyTcpAls",
    "envoyOtelAls",
    "sds",
];

/// Response code details of a denial by the authorizer, as Envoy's.
pub const DENIED_DETAILS: &str = "ext_authz_denied";
/// Response code details when the check failed, as Envoy's.
pub const ERROR_DETAILS: &str = "ext_authz_error";
/// Names the answer lists to remove from the request on allow.
const HEADERS_TO_REMOVE: &str = "x-envoy-auth-headers-to-remove";

/// A compiled `envoyExtAuthzHttp` provider.
///
/// # Examples
///
/// ```
/// use meshwasm_core::authz::{AuthzPlan, Peer};
/// use meshwasm_core::authz::custom::CheckOutcome;
/// use meshwasm_core::plan::Plan;
///
/// let plan = AuthzPlan::from_json(br#"{
///   "extensionProviders": [{"name": "opa", "envoyExtAuthzHttp": {
///     "service": "authz", "headersToUpstreamOnAllow": ["x-user"]}}],
///   "policies": [{"action": "CUSTOM", "provider": {"name": "opa"},
///     "rules": [{"to": [{"operation": {"paths": ["/api/*"]}}]}]}]}"#).unwrap();
/// let headers = [(":method", "GET"), (":path", "/api/a"), (":authority", "shop")];
/// let raw = || headers.iter().map(|(n, v)| (n.as_bytes(), v.as_bytes()));
/// let req = plan.read(raw(), Peer::default()).unwrap();
/// let (provider, check) = plan.check(&req, raw()).unwrap();
/// assert_eq!(check.cluster, "authz");
/// let answer = [(":status", "200"), ("x-user", "alice")];
/// let answer = answer.iter().map(|(n, v)| (n.as_bytes(), v.as_bytes()));
/// match provider.outcome(Some(answer), b"") {
///     CheckOutcome::Allow { set, .. } => assert_eq!(set, [("x-user".to_owned(), "alice".to_owned())]),
///     other => panic!("{other:?}"),
/// }
/// ```
#[derive(Debug, Clone)]
pub struct ExtAuthz {
    name: String,
    cluster: String,
    path_prefix: String,
    timeout: Duration,
    fail_open: bool,
    status_on_error: u16,
    included: Vec<String>,
    additional: Vec<(String, String)>,
    to_upstream_on_allow: Vec<String>,
    to_downstream_on_allow: Vec<String>,
    to_downstream_on_deny: Vec<String>,
}

/// The check request to send.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Check<'p> {
    /// The Envoy cluster of the authorizer.
    pub cluster: &'p str,
    /// The check's headers, pseudo-headers included.
    pub headers: Vec<(String, String)>,
    /// How long to wait for the answer.
    pub timeout: Duration,
}

/// What the authorizer's answer means for the request.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum CheckOutcome {
    /// Go on to the DENY and ALLOW policies, with these edits.
    Allow {
        /// Set on the request (replacing any value).
        set: Vec<(String, String)>,
        /// Removed from the request.
        remove: Vec<String>,
        /// Added to the response.
        response_add: Vec<(String, String)>,
    },
    /// The check failed and `failOpen` lets the request through unchanged.
    FailedOpen,
    /// Answer the client.
    Deny {
        /// The status.
        status: u16,
        /// Headers of the answer (no pseudo-headers).
        headers: Vec<(String, String)>,
        /// The body.
        body: Vec<u8>,
        /// Envoy's response code details.
        details: &'static str,
        /// Whether the check failed (rather than the authorizer denying).
        error: bool,
    },
}

impl ExtAuthz {
    /// Compiles the provider entry at `at` (an `extensionProviders[i]`).
    pub(crate) fn compile(
        entry: &ExtensionProvider,
        at: &FieldPath<'_>,
        notes: &mut Vec<ConfigNote>,
    ) -> Result<ExtAuthz, ConfigError> {
        if entry.envoy_ext_authz_grpc.is_some() {
            return Err(at
                .field("envoyExtAuthzGrpc")
                .error(ConfigErrorKind::Unsupported {
                    reason: "the filter checks over HTTP only; use envoyExtAuthzHttp",
                }));
        }
        let Some(http) = &entry.envoy_ext_authz_http else {
            return Err(at
                .field("envoyExtAuthzHttp")
                .error(ConfigErrorKind::Missing {
                    reason: "a CUSTOM policy's provider must be an envoyExtAuthzHttp authorizer",
                }));
        };
        Self::compile_http(&entry.name, http, &at.field("envoyExtAuthzHttp"), notes)
    }

    fn compile_http(
        name: &str,
        http: &ExtAuthzHttp,
        at: &FieldPath<'_>,
        notes: &mut Vec<ConfigNote>,
    ) -> Result<ExtAuthz, ConfigError> {
        if http.service.is_empty() {
            return Err(at.field("service").error(ConfigErrorKind::Missing {
                reason: "the authorizer's Envoy cluster, or its host with `port` for Istio's cluster",
            }));
        }
        if http.include_request_body_in_check.is_some() {
            return Err(at.field("includeRequestBodyInCheck").error(
                ConfigErrorKind::Unsupported {
                    reason: "the check is made on the request's headers, before its body",
                },
            ));
        }
        // Istio names a service's cluster outbound|PORT||HOST; without a port
        // the service is the cluster's own name (plain Envoy).
        let cluster = match http.port {
            Some(port) if !http.service.contains('|') => {
                format!("outbound|{port}||{}", http.service)
            }
            _ => http.service.clone(),
        };
        let status_on_error = match &http.status_on_error {
            None => 403,
            Some(text) => match text.trim().parse::<u16>() {
                Ok(code) if (200..=599).contains(&code) => code,
                _ => {
                    return Err(at.field("statusOnError").error(ConfigErrorKind::Invalid {
                        reason: format!("{text:?} is not an HTTP status from 200 to 599"),
                    }));
                }
            },
        };
        if http.clear_route_cache.is_some() {
            notes.push(at.field("clearRouteCache").note(
                "Envoy re-resolves the route whenever a Wasm filter edits the request's headers",
            ));
        }
        if !http.include_headers_in_check.is_empty() {
            notes.push(
                at.field("includeHeadersInCheck")
                    .deprecation("Istio's older name for includeRequestHeadersInCheck"),
            );
        }
        let lower = |names: &[String]| -> Vec<String> {
            names.iter().map(|n| n.to_ascii_lowercase()).collect()
        };
        let mut included = lower(&http.include_request_headers_in_check);
        included.extend(lower(&http.include_headers_in_check));
        Ok(ExtAuthz {
            name: name.to_owned(),
            cluster,
            path_prefix: http.path_prefix.clone().unwrap_or_default(),
            timeout: http.timeout.map_or(DEFAULT_TIMEOUT, |t| t.0),
            fail_open: http.fail_open,
            status_on_error,
            included,
            additional: http
                .include_additional_headers_in_check
                .iter()
                .map(|(k, v)| (k.to_ascii_lowercase(), v.clone()))
                .collect(),
            to_upstream_on_allow: lower(&http.headers_to_upstream_on_allow),
            to_downstream_on_allow: lower(&http.headers_to_downstream_on_allow),
            to_downstream_on_deny: lower(&http.headers_to_downstream_on_deny),
        })
    }

    /// Checks that an entry holds only Istio's provider kinds.
    pub(crate) fn check_kinds(
        entry: &ExtensionProvider,
        at: &FieldPath<'_>,
    ) -> Result<(), ConfigError> {
        match entry
            .other
            .keys()
            .find(|k| !OTHER_KINDS.contains(&k.as_str()))
        {
            Some(unknown) => Err(at.field(unknown).error(ConfigErrorKind::Invalid {
                reason: "is not a field of Istio's extensionProviders".into(),
            })),
            None => Ok(()),
        }
    }

    /// The provider's name.
    pub fn name(&self) -> &str {
        &self.name
    }

    /// The Envoy cluster the checks go to.
    pub fn cluster(&self) -> &str {
        &self.cluster
    }

    /// The check request for a client request with these headers, as it
    /// arrived.
    pub fn check<'a>(&self, headers: impl Iterator<Item = (&'a [u8], &'a [u8])>) -> Check<'_> {
        let mut out = vec![("content-length".to_owned(), "0".to_owned())];
        for (name, value) in headers {
            let name = String::from_utf8_lossy(name).to_ascii_lowercase();
            if name == "content-length"
                || !(ALWAYS_SENT.contains(&name.as_str()) || self.included.contains(&name))
            {
                continue;
            }
            let value = String::from_utf8_lossy(value);
            let value = if name == ":path" {
                format!("{}{value}", self.path_prefix)
            } else {
                value.into_owned()
            };
            out.push((name, value));
        }
        for (name, value) in &self.additional {
            out.retain(|(n, _)| n != name);
            out.push((name.clone(), value.clone()));
        }
        Check {
            cluster: &self.cluster,
            headers: out,
            timeout: self.timeout,
        }
    }

    /// What the answer means: `None` when no answer came (a timeout, a
    /// reset, no such cluster); else its headers as the host gives them,
    /// `:status` among them.
    pub fn outcome<'a>(
        &self,
        answer: Option<impl Iterator<Item = (&'a [u8], &'a [u8])>>,
        body: &[u8],
    ) -> CheckOutcome {
        let answer: Option<Vec<(String, String)>> = answer.map(|headers| {
            headers
                .map(|(n, v)| {
                    (
                        String::from_utf8_lossy(n).into_owned(),
                        String::from_utf8_lossy(v).into_owned(),
                    )
                })
                .collect()
        });
        let answer = answer.as_deref();
        let status = answer.and_then(|headers| {
            headers
                .iter()
                .find(|(n, _)| n == ":status")
                .and_then(|(_, v)| v.parse::<u16>().ok())
        });
        let (Some(answer), Some(status)) = (answer, status) else {
            return self.failed();
        };
        if (500..=599).contains(&status) {
            return self.failed();
        }
        let picked = |names: &[String]| -> Vec<(String, String)> {
            answer
                .iter()
                .filter(|(n, _)| names.iter().any(|w| w.eq_ignore_ascii_case(n)))
                .map(|(n, v)| (n.to_ascii_lowercase(), v.clone()))
                .collect()
        };
        if status == 200 {
            let remove = answer
                .iter()
                .filter(|(n, _)| n.eq_ignore_ascii_case(HEADERS_TO_REMOVE))
                .flat_map(|(_, v)| v.split(','))
                .map(|n| n.trim().to_ascii_lowercase())
                .filter(|n| !n.is_empty() && !n.starts_with(':'))
                .collect();
            return CheckOutcome::Allow {
                set: picked(&self.to_upstream_on_allow),
                remove,
                response_add: picked(&self.to_downstream_on_allow),
            };
        }
        // Envoy sends every answer header but the host when the list is
        // empty; the local reply sets its own length.
        let headers = if self.to_downstream_on_deny.is_empty() {
            answer
                .iter()
                .filter(|(n, _)| !n.starts_with(':') && !n.eq_ignore_ascii_case("host"))
                .map(|(n, v)| (n.to_ascii_lowercase(), v.clone()))
                .collect()
        } else {
            picked(&self.to_downstream_on_deny)
        };
        CheckOutcome::Deny {
            status,
            headers: headers
                .into_iter()
                .filter(|(n, _)| n != "content-length")
                .collect(),
            body: body.to_vec(),
            details: DENIED_DETAILS,
            error: false,
        }
    }

    /// The outcome of a check that got no usable answer (no answer, or a
    /// 5xx): through with `failOpen`, else `statusOnError`.
    pub fn failed(&self) -> CheckOutcome {
        if self.fail_open {
            return CheckOutcome::FailedOpen;
        }
        CheckOutcome::Deny {
            status: self.status_on_error,
            headers: Vec::new(),
            body: Vec::new(),
            details: ERROR_DETAILS,
            error: true,
        }
    }
}
