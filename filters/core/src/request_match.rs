//! Istio's `HTTPMatchRequest`, compiled once and evaluated per request.
//!
//! Semantics follow what Istio asks Envoy to do:
//! - `uri`: `exact` and `regex` see the path without its query string,
//!   `prefix` sees the whole `:path`; `ignoreUriCase` applies to exact and prefix.
//! - `scheme`, `method`, `authority` match the `:scheme`, `:method`,
//!   `:authority` pseudo-headers; regexes must match the whole value.
//! - `headers`: `{}` means present; a header sent twice reads `a,b`.
//! - `withoutHeaders`: the request fails to match if the header matches.
//! - `queryParams`: the first occurrence of the key, not percent-decoded;
//!   `?key` has the value `""`.
//! - `port`: the port the request was addressed to.

use crate::error::{ConfigError, ConfigErrorKind, ConfigNote, FieldPath};
use crate::request::RequestAttributes;
use crate::string_match::{Case, StringMatch, StringMatcher};
use crate::virtual_service::HttpMatchRequest;
use std::collections::BTreeMap;

/// A compiled match block: every condition must hold.
///
/// # Examples
///
/// ```
/// use meshwasm_core::request::StaticRequest;
/// use meshwasm_core::request_match::RequestMatcher;
/// use meshwasm_core::virtual_service::HttpMatchRequest;
///
/// let m: HttpMatchRequest = serde_json::from_str(
///     r#"{"headers": {"end-user": {"exact": "jason"}}, "uri": {"prefix": "/reviews"}}"#).unwrap();
/// let m = RequestMatcher::compile(&m, &mut Vec::new()).unwrap();
/// assert!(m.matches(&mut StaticRequest::get("/reviews/1").with_header("end-user", "jason")));
/// assert!(!m.matches(&mut StaticRequest::get("/reviews/1")));
/// ```
#[derive(Debug, Clone, Default)]
pub struct RequestMatcher {
    uri: Option<StringMatcher>,
    scheme: Option<StringMatcher>,
    method: Option<StringMatcher>,
    authority: Option<StringMatcher>,
    headers: Vec<(String, StringMatcher)>,
    without_headers: Vec<(String, StringMatcher)>,
    query_params: Vec<(String, StringMatcher)>,
    port: Option<u32>,
}

/// Header keys Istio documents as ignored in `headers`.
const IGNORED_HEADER_KEYS: [&str; 4] = ["uri", "scheme", "method", "authority"];

impl RequestMatcher {
    /// Compiles a match block; notes about accepted-but-unused fields go to `notes`.
    ///
    /// # Errors
    ///
    /// A [`ConfigError`] naming the field, for bad regexes, ambiguous
    /// StringMatches, and fields meshwasm cannot honour.
    pub fn compile(m: &HttpMatchRequest, notes: &mut Vec<ConfigNote>) -> Result<Self, ConfigError> {
        Self::compile_at(&FieldPath::ROOT, m, notes)
    }

    pub(crate) fn compile_at(
        path: &FieldPath<'_>,
        m: &HttpMatchRequest,
        notes: &mut Vec<ConfigNote>,
    ) -> Result<Self, ConfigError> {
        if !m.source_labels.is_empty() {
            return Err(path.field("sourceLabels").error(ConfigErrorKind::Unsupported {
                reason: "it selects client workloads; deploy the filter to them with the WasmPlugin selector instead",
            }));
        }
        if m.source_namespace.is_some() {
            return Err(path.field("sourceNamespace").error(ConfigErrorKind::Unsupported {
                reason: "it selects client workloads; deploy the filter to them with the WasmPlugin selector instead",
            }));
        }
        if !m.gateways.is_empty() {
            return Err(path.field("gateways").error(ConfigErrorKind::Unsupported {
                reason: "it selects where the rule applies; deploy the filter only on those gateways instead",
            }));
        }
        if m.stat_prefix.is_some() {
            notes.push(
                path.field("statPrefix")
                    .note("Envoy route statistics are not produced by a filter; ignored"),
            );
        }
        let uri_case = if m.ignore_uri_case {
            Case::IgnoreAscii
        } else {
            Case::Sensitive
        };
        let one = |name: &'static str, sm: &Option<StringMatch>, case: Case| {
            sm.as_ref()
                .map(|sm| StringMatcher::compile_at(&path.field(name), sm, case))
                .transpose()
        };
        Ok(RequestMatcher {
            uri: one("uri", &m.uri, uri_case)?,
            scheme: one("scheme", &m.scheme, Case::Sensitive)?,
            method: one("method", &m.method, Case::Sensitive)?,
            authority: one("authority", &m.authority, Case::Sensitive)?,
            headers: compile_headers(&path.field("headers"), &m.headers, notes)?,
            without_headers: compile_headers(
                &path.field("withoutHeaders"),
                &m.without_headers,
                notes,
            )?,
            query_params: compile_map(&path.field("queryParams"), &m.query_params, |k| {
                k.to_owned()
            })?,
            port: m.port,
        })
    }

    /// The `uri` condition, if the block has one; a prefix rewrite replaces
    /// what it matched.
    pub fn uri(&self) -> Option<&StringMatcher> {
        self.uri.as_ref()
    }

    /// True if the request satisfies every condition.
    pub fn matches(&self, req: &mut impl RequestAttributes) -> bool {
        if let Some(port) = self.port
            && req.destination_port() != Some(port)
        {
            return false;
        }
        if let Some(uri) = &self.uri {
            let Some(path) = req.header(":path") else {
                return false;
            };
            let subject = match uri {
                StringMatcher::Prefix(..) | StringMatcher::Any => &path[..],
                _ => path_without_query(&path),
            };
            if !uri.matches(subject) {
                return false;
            }
        }
        for (name, m) in [
            (":scheme", &self.scheme),
            (":method", &self.method),
            (":authority", &self.authority),
        ] {
            if let Some(m) = m
                && !req.header(name).is_some_and(|v| m.matches(&v))
            {
                return false;
            }
        }
        if !self
            .headers
            .iter()
            .all(|(name, m)| req.header(name).is_some_and(|v| m.matches(&v)))
        {
            return false;
        }
        if self
            .without_headers
            .iter()
            .any(|(name, m)| req.header(name).is_some_and(|v| m.matches(&v)))
        {
            return false;
        }
        if !self.query_params.is_empty() {
            let Some(path) = req.header(":path") else {
                return false;
            };
            let query = query_string(&path);
            return self
                .query_params
                .iter()
                .all(|(key, m)| query_param(query, key).is_some_and(|v| m.matches(v)));
        }
        true
    }
}

fn compile_headers(
    path: &FieldPath<'_>,
    headers: &BTreeMap<String, StringMatch>,
    notes: &mut Vec<ConfigNote>,
) -> Result<Vec<(String, StringMatcher)>, ConfigError> {
    for key in headers.keys() {
        if IGNORED_HEADER_KEYS.contains(&key.to_ascii_lowercase().as_str()) {
            notes.push(path.field(key).note(
                "Istio ignores the keys uri, scheme, method and authority in headers; use the match field of that name",
            ));
        }
        if key.starts_with("@request.auth.claims") {
            return Err(path.field(key).error(ConfigErrorKind::Unsupported {
                reason: "JWT claim matching needs Istio's RequestAuthentication; match a header the authenticator sets instead",
            }));
        }
    }
    let kept: BTreeMap<String, StringMatch> = headers
        .iter()
        .filter(|(k, _)| !IGNORED_HEADER_KEYS.contains(&k.to_ascii_lowercase().as_str()))
        .map(|(k, v)| (k.clone(), v.clone()))
        .collect();
    // Envoy matches header names without case; its maps hold them lowercase.
    compile_map(path, &kept, str::to_ascii_lowercase)
}

fn compile_map(
    path: &FieldPath<'_>,
    map: &BTreeMap<String, StringMatch>,
    key: impl Fn(&str) -> String,
) -> Result<Vec<(String, StringMatcher)>, ConfigError> {
    map.iter()
        .map(|(k, sm)| {
            Ok((
                key(k),
                StringMatcher::compile_at(&path.field(k), sm, Case::Sensitive)?,
            ))
        })
        .collect()
}

/// The path up to `?` (and `#`), as Envoy's exact and regex path matches see it.
pub fn path_without_query(path: &str) -> &str {
    let end = path.find(['?', '#']).unwrap_or(path.len());
    &path[..end]
}

pub(crate) fn query_string(path: &str) -> &str {
    match path.split_once('?') {
        Some((_, q)) => q.split_once('#').map_or(q, |(q, _)| q),
        None => "",
    }
}

/// The first value of `key` in a query string; `?key` gives `""`.
pub(crate) fn query_param<'q>(query: &'q str, key: &str) -> Option<&'q str> {
    query
        .split('&')
        .find_map(|pair| match pair.split_once('=') {
            Some((k, v)) if k == key => Some(v),
            None if pair == key => Some(""),
            _ => None,
        })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn query_params_take_the_first_occurrence_and_bare_keys_are_empty() {
        assert_eq!(query_param("a=1&b=2&a=3", "a"), Some("1"));
        assert_eq!(query_param("debug&x=1", "debug"), Some(""));
        assert_eq!(query_param("debugger=1", "debug"), None);
        assert_eq!(query_string("/p?x=1#frag"), "x=1");
        assert_eq!(path_without_query("/p?x=1"), "/p");
    }
}
