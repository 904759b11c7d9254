//! `timeout` and `retries`, carried to Envoy's router as the request
//! headers it honours. A filter cannot reach the route's own policy, but
//! Envoy's router reads these headers on every request it forwards.

use crate::duration::IstioDuration;
use crate::error::{ConfigError, ConfigErrorKind, FieldPath};
use crate::virtual_service::HttpRetry;
use std::time::Duration;

/// Envoy router header: whole-request timeout in ms (0 disables it).
pub const TIMEOUT_MS: &str = "x-envoy-upstream-rq-timeout-ms";
/// Envoy router header: timeout of each attempt in ms.
pub const PER_TRY_TIMEOUT_MS: &str = "x-envoy-upstream-rq-per-try-timeout-ms";
/// Envoy router header: number of retries.
pub const MAX_RETRIES: &str = "x-envoy-max-retries";
/// Envoy router header: retry conditions.
pub const RETRY_ON: &str = "x-envoy-retry-on";
/// Envoy router header: status codes for `retriable-status-codes`.
pub const RETRIABLE_STATUS_CODES: &str = "x-envoy-retriable-status-codes";

/// What Istio retries on when `retryOn` is not given.
const ISTIO_DEFAULT_RETRY_ON: &str =
    "connect-failure,refused-stream,unavailable,cancelled,retriable-status-codes";
/// The status codes Istio's default policy retries.
const ISTIO_DEFAULT_RETRIABLE_CODES: &str = "503";

/// Retry conditions Envoy's router knows, HTTP and gRPC.
const RETRY_CONDITIONS: [&str; 17] = [
    "5xx",
    "gateway-error",
    "reset",
    "reset-before-request",
    "connect-failure",
    "envoy-ratelimited",
    "retriable-4xx",
    "refused-stream",
    "retriable-status-codes",
    "retriable-headers",
    "http3-post-connect-failure",
    "cancelled",
    "deadline-exceeded",
    "internal",
    "resource-exhausted",
    "unavailable",
    "unknown",
];

/// Router headers for a route's `timeout` and `retries`.
///
/// # Examples
///
/// ```
/// use meshwasm_core::router::upstream::UpstreamHeaders;
/// use meshwasm_core::virtual_service::HttpRetry;
///
/// let retries: HttpRetry = serde_json::from_str(r#"{"attempts": 3, "retryOn": "5xx,429"}"#).unwrap();
/// let headers = UpstreamHeaders::compile(None, Some(&retries)).unwrap();
/// assert_eq!(headers.pairs(), [
///     ("x-envoy-max-retries", "3".to_string()),
///     ("x-envoy-retry-on", "5xx,retriable-status-codes".to_string()),
///     ("x-envoy-retriable-status-codes", "429".to_string()),
/// ]);
/// ```
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct UpstreamHeaders {
    pairs: Vec<(&'static str, String)>,
}

impl UpstreamHeaders {
    /// Compiles `timeout` and `retries`.
    ///
    /// # Errors
    ///
    /// A [`ConfigError`] for unknown retry conditions and for retry options
    /// no router header can carry.
    pub fn compile(
        timeout: Option<&IstioDuration>,
        retries: Option<&HttpRetry>,
    ) -> Result<Self, ConfigError> {
        Self::compile_at(&FieldPath::ROOT, timeout, retries)
    }

    pub(crate) fn compile_at(
        path: &FieldPath<'_>,
        timeout: Option<&IstioDuration>,
        retries: Option<&HttpRetry>,
    ) -> Result<Self, ConfigError> {
        let mut pairs = Vec::new();
        if let Some(IstioDuration(t)) = timeout {
            pairs.push((TIMEOUT_MS, millis(*t)));
        }
        if let Some(r) = retries {
            compile_retries(&path.field("retries"), r, &mut pairs)?;
        }
        Ok(UpstreamHeaders { pairs })
    }

    /// The headers to set, in order.
    pub fn pairs(&self) -> &[(&'static str, String)] {
        &self.pairs
    }
}

fn compile_retries(
    path: &FieldPath<'_>,
    r: &HttpRetry,
    pairs: &mut Vec<(&'static str, String)>,
) -> Result<(), ConfigError> {
    let unsupported = |field: &'static str, reason: &'static str| {
        Err(path
            .field(field)
            .error(ConfigErrorKind::Unsupported { reason }))
    };
    if r.backoff.is_some() {
        return unsupported(
            "backoff",
            "Envoy has no request header for the retry back-off; it uses its default of 25 ms",
        );
    }
    if r.retry_remote_localities == Some(true) {
        return unsupported(
            "retryRemoteLocalities",
            "locality-aware retries need a route retry policy, which no request header sets",
        );
    }
    if r.retry_ignore_previous_hosts == Some(true) {
        return unsupported(
            "retryIgnorePreviousHosts",
            "host predicates need a route retry policy, which no request header sets",
        );
    }
    if r.attempts < 0 {
        return Err(path.field("attempts").error(ConfigErrorKind::Invalid {
            reason: format!("{} retries is negative", r.attempts),
        }));
    }
    pairs.push((MAX_RETRIES, r.attempts.to_string()));
    if r.attempts == 0 {
        // Istio: zero attempts turns retries off.
        return Ok(());
    }
    let (retry_on, codes) = match r.retry_on.as_deref() {
        None | Some("") => (
            ISTIO_DEFAULT_RETRY_ON.to_owned(),
            ISTIO_DEFAULT_RETRIABLE_CODES.to_owned(),
        ),
        Some(given) => split_retry_on(&path.field("retryOn"), given)?,
    };
    pairs.push((RETRY_ON, retry_on));
    if !codes.is_empty() {
        pairs.push((RETRIABLE_STATUS_CODES, codes));
    }
    if let Some(IstioDuration(t)) = r.per_try_timeout {
        pairs.push((PER_TRY_TIMEOUT_MS, millis(t)));
    }
    Ok(())
}

/// Istio's `retryOn`: Envoy conditions and HTTP status codes, mixed. The
/// codes become `retriable-status-codes`.
fn split_retry_on(path: &FieldPath<'_>, given: &str) -> Result<(String, String), ConfigError> {
    let mut conditions: Vec<&str> = Vec::new();
    let mut codes: Vec<&str> = Vec::new();
    for item in given.split(',').map(str::trim).filter(|s| !s.is_empty()) {
        if item.bytes().all(|b| b.is_ascii_digit()) {
            match item.parse::<u16>() {
                Ok(100..=599) => codes.push(item),
                _ => {
                    return Err(path.error(ConfigErrorKind::Invalid {
                        reason: format!("{item} is not an HTTP status code"),
                    }));
                }
            }
        } else if RETRY_CONDITIONS.contains(&item) {
            conditions.push(item);
        } else {
            return Err(path.error(ConfigErrorKind::Invalid {
                reason: format!(
                    "unknown retry condition {item:?}; use status codes or one of {}",
                    RETRY_CONDITIONS.join(", ")
                ),
            }));
        }
    }
    if !codes.is_empty() && !conditions.contains(&"retriable-status-codes") {
        conditions.push("retriable-status-codes");
    }
    Ok((conditions.join(","), codes.join(",")))
}

/// Milliseconds, rounded up so that a sub-millisecond timeout is not 0 (off).
fn millis(d: Duration) -> String {
    d.as_nanos().div_ceil(1_000_000).to_string()
}
