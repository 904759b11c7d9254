//! Istio's `corsPolicy`, with the behaviour of Envoy's CORS filter.
//!
//! - A preflight is an `OPTIONS` request with `Origin` and
//!   `Access-Control-Request-Method`. From an allowed origin it is answered
//!   at once with 200 and the allow headers; from another origin it is
//!   forwarded (`unmatchedPreflights: FORWARD`, the default) or answered
//!   with 200 and no CORS headers (`IGNORE`).
//! - Any other request from an allowed origin is forwarded, and its
//!   response gets `Access-Control-Allow-Origin` (the request's origin),
//!   `Access-Control-Allow-Credentials` and `Access-Control-Expose-Headers`.

use crate::duration::IstioDuration;
use crate::error::{ConfigError, FieldPath};
use crate::request::RequestAttributes;
use crate::string_match::{Case, StringMatcher};
use crate::virtual_service::{CorsPolicy, UnmatchedPreflights};

/// A compiled `corsPolicy`.
#[derive(Debug, Clone)]
pub struct Cors {
    origins: Vec<StringMatcher>,
    allow_methods: Option<String>,
    allow_headers: Option<String>,
    expose_headers: Option<String>,
    max_age: Option<String>,
    allow_credentials: bool,
    ignore_unmatched_preflights: bool,
}

/// What CORS asks of one request.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum CorsVerdict {
    /// Not a cross-origin request, or from an origin that is not allowed: nothing to do.
    None,
    /// Answer this preflight with 200 and these headers.
    Preflight(Vec<(&'static str, String)>),
    /// Forward, then add these headers to the response.
    Simple(Vec<(&'static str, String)>),
}

impl Cors {
    pub(crate) fn compile_at(path: &FieldPath<'_>, c: &CorsPolicy) -> Result<Self, ConfigError> {
        let mut origins: Vec<StringMatcher> = c
            .allow_origin
            .iter()
            .map(|o| match o.as_str() {
                "*" => StringMatcher::Any,
                o => StringMatcher::Exact(o.to_owned(), Case::Sensitive),
            })
            .collect();
        let at = path.field("allowOrigins");
        for (i, m) in c.allow_origins.iter().enumerate() {
            let matcher = StringMatcher::compile_at(&at.index(i), m, Case::Sensitive)?;
            // Istio reads an exact "*" as any origin.
            origins.push(match matcher {
                StringMatcher::Exact(e, _) if e == "*" => StringMatcher::Any,
                other => other,
            });
        }
        let join = |list: &[String]| (!list.is_empty()).then(|| list.join(","));
        Ok(Cors {
            origins,
            allow_methods: join(&c.allow_methods),
            allow_headers: join(&c.allow_headers),
            expose_headers: join(&c.expose_headers),
            max_age: c.max_age.map(|IstioDuration(d)| d.as_secs().to_string()),
            allow_credentials: c.allow_credentials == Some(true),
            ignore_unmatched_preflights: c.unmatched_preflights
                == Some(UnmatchedPreflights::Ignore),
        })
    }

    /// What to do with a request.
    pub fn verdict(&self, req: &mut impl RequestAttributes) -> CorsVerdict {
        let Some(origin) = req.header("origin").map(|o| o.into_owned()) else {
            return CorsVerdict::None;
        };
        let preflight = req.header(":method").is_some_and(|m| m == "OPTIONS")
            && req
                .header("access-control-request-method")
                .is_some_and(|m| !m.is_empty());
        let allowed = self.origins.iter().any(|m| m.matches(&origin));
        let mut headers = Vec::new();
        if allowed {
            headers.push(("access-control-allow-origin", origin));
            if self.allow_credentials {
                headers.push(("access-control-allow-credentials", "true".to_owned()));
            }
        }
        match (preflight, allowed) {
            (true, true) => {
                for (name, value) in [
                    ("access-control-allow-methods", &self.allow_methods),
                    ("access-control-allow-headers", &self.allow_headers),
                    ("access-control-max-age", &self.max_age),
                ] {
                    if let Some(value) = value {
                        headers.push((name, value.clone()));
                    }
                }
                CorsVerdict::Preflight(headers)
            }
            (true, false) if self.ignore_unmatched_preflights => CorsVerdict::Preflight(headers),
            (false, true) => {
                if let Some(expose) = &self.expose_headers {
                    headers.push(("access-control-expose-headers", expose.clone()));
                }
                CorsVerdict::Simple(headers)
            }
            _ => CorsVerdict::None,
        }
    }
}
