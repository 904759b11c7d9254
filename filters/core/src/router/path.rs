//! Path rewrites and redirect locations, with the semantics Envoy gives the
//! route Istio generates.
//!
//! - A prefix rewrite (`rewrite.uri`, `redirect.prefixRewrite`) replaces
//!   what the matched block's `uri` matched: the prefix for a prefix match,
//!   the whole path (query kept) for an exact or regex match, and `/` when
//!   the block has no `uri` (Istio's route then matches the prefix `/`).
//! - `uriRegexRewrite` replaces every match in the path, not the query;
//!   `\1` in the replacement is the first capture group, as in RE2.
//! - A redirect keeps the query unless its `uri` carries one.

use crate::error::{ConfigError, ConfigErrorKind, FieldPath};
use crate::regex::compile_re2;
use crate::request_match::path_without_query;
use crate::string_match::StringMatcher;
use crate::virtual_service::{HttpRedirect, RedirectPortSelection, RegexRewrite};

/// How the path is rewritten before forwarding.
#[derive(Debug, Clone)]
pub enum PathRewrite {
    /// Replace the matched prefix (or whole path) with this.
    Prefix(String),
    /// Replace every match of the regex in the path.
    Regex {
        /// The compiled pattern.
        regex: regex_lite::Regex,
        /// The replacement in regex-lite's syntax (`${1}`).
        replacement: String,
    },
}

impl PathRewrite {
    pub(crate) fn compile_regex(
        path: &FieldPath<'_>,
        r: &RegexRewrite,
    ) -> Result<Self, ConfigError> {
        let regex = compile_re2(&r.pattern).map_err(|kind| path.field("match").error(kind))?;
        let replacement = re2_replacement(&r.rewrite, regex.captures_len()).map_err(|reason| {
            path.field("rewrite")
                .error(ConfigErrorKind::Invalid { reason })
        })?;
        Ok(PathRewrite::Regex { regex, replacement })
    }

    /// The new `:path` for a request whose path is `path`, matched by `uri`.
    ///
    /// # Examples
    ///
    /// ```
    /// use meshwasm_core::router::path::PathRewrite;
    /// use meshwasm_core::string_match::{Case, StringMatcher};
    ///
    /// let prefix = StringMatcher::Prefix("/v1/".into(), Case::Sensitive);
    /// let rewrite = PathRewrite::Prefix("/api/".into());
    /// assert_eq!(rewrite.apply("/v1/users?id=7", Some(&prefix)), "/api/users?id=7");
    /// ```
    pub fn apply(&self, path: &str, uri: Option<&StringMatcher>) -> String {
        match self {
            PathRewrite::Prefix(new) => replace_matched(path, uri, new),
            PathRewrite::Regex { regex, replacement } => {
                let (path_part, query) = split_query(path);
                let mut out = regex
                    .replace_all(path_part, replacement.as_str())
                    .into_owned();
                out.push_str(query);
                out
            }
        }
    }
}

/// Replaces what `uri` matched in `path` with `new`.
fn replace_matched(path: &str, uri: Option<&StringMatcher>, new: &str) -> String {
    let matched_len = match uri {
        Some(StringMatcher::Prefix(prefix, _)) => prefix.len(),
        Some(
            StringMatcher::Exact(..)
            | StringMatcher::Suffix(..)
            | StringMatcher::Contains(..)
            | StringMatcher::Regex(_),
        ) => split_query(path).0.len(),
        // Istio matches such a route with the prefix "/".
        None | Some(StringMatcher::Any) => usize::from(path.starts_with('/')),
    };
    let rest = path.get(matched_len..).unwrap_or("");
    let mut out = String::with_capacity(new.len() + rest.len());
    out.push_str(new);
    out.push_str(rest);
    out
}

/// `(path, "?query#fragment")`.
fn split_query(path: &str) -> (&str, &str) {
    path.split_at(path_without_query(path).len())
}

/// RE2 substitutions (`\1`, `\\`) in regex-lite's syntax (`${1}`, `$$`).
fn re2_replacement(rewrite: &str, groups: usize) -> Result<String, String> {
    let mut out = String::with_capacity(rewrite.len() + 8);
    let mut chars = rewrite.chars();
    while let Some(c) = chars.next() {
        match c {
            '$' => out.push_str("$$"),
            '\\' => match chars.next() {
                Some('\\') => out.push('\\'),
                Some(d @ '0'..='9') => {
                    let n = d as usize - '0' as usize;
                    if n >= groups {
                        return Err(format!(
                            "\\{n} refers to a capture group the pattern does not have ({} groups)",
                            groups.saturating_sub(1)
                        ));
                    }
                    out.push_str(&format!("${{{n}}}"));
                }
                _ => {
                    return Err(
                        "a backslash must be followed by a digit or another backslash, as in RE2"
                            .into(),
                    );
                }
            },
            c => out.push(c),
        }
    }
    Ok(out)
}

/// Where a redirect's port comes from.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum RedirectPort {
    /// The request's port, dropped when the scheme changes and it was the old scheme's default.
    Keep,
    /// This port.
    Fixed(u16),
    /// None in the Location: the new scheme's default.
    ProtocolDefault,
    /// The port the request was addressed to.
    RequestPort,
}

/// A compiled `HTTPRedirect`.
#[derive(Debug, Clone)]
pub struct Redirect {
    path: Option<PathRedirect>,
    authority: Option<String>,
    scheme: Option<String>,
    port: RedirectPort,
    /// 301, 302, 303, 307 or 308.
    pub code: u16,
}

#[derive(Debug, Clone)]
enum PathRedirect {
    Whole(String),
    Prefix(String),
}

/// The parts of the request a Location is built from.
#[derive(Debug, Clone, Copy)]
pub struct RequestUrl<'a> {
    /// `http` or `https`: Envoy's `:scheme`.
    pub scheme: &'a str,
    /// `:authority`.
    pub authority: &'a str,
    /// `:path`, with its query.
    pub path: &'a str,
    /// The port the request was addressed to, for `FROM_REQUEST_PORT`.
    pub destination_port: Option<u32>,
}

impl Redirect {
    pub(crate) fn compile_at(path: &FieldPath<'_>, r: &HttpRedirect) -> Result<Self, ConfigError> {
        let code = match r.redirect_code {
            None => 301,
            Some(c @ (301 | 302 | 303 | 307 | 308)) => c as u16,
            Some(c) => {
                return Err(path.field("redirectCode").error(ConfigErrorKind::Invalid {
                    reason: format!("{c} is not a redirect status; use 301, 302, 303, 307 or 308"),
                }));
            }
        };
        let path_redirect = match (&r.uri, &r.prefix_rewrite) {
            (Some(_), Some(_)) => {
                return Err(path.error(ConfigErrorKind::Conflict {
                    reason: "set only one of uri and prefixRewrite",
                }));
            }
            (Some(uri), None) => Some(PathRedirect::Whole(uri.clone())),
            (None, Some(prefix)) => Some(PathRedirect::Prefix(prefix.clone())),
            (None, None) => None,
        };
        let port = match (r.port, r.derive_port) {
            (Some(_), Some(_)) => {
                return Err(path.error(ConfigErrorKind::Conflict {
                    reason: "set only one of port and derivePort",
                }));
            }
            (Some(p), None) => match u16::try_from(p) {
                Ok(p) if p > 0 => RedirectPort::Fixed(p),
                _ => {
                    return Err(path.field("port").error(ConfigErrorKind::Invalid {
                        reason: format!("{p} is not a port in 1..=65535"),
                    }));
                }
            },
            (None, Some(RedirectPortSelection::FromProtocolDefault)) => {
                RedirectPort::ProtocolDefault
            }
            (None, Some(RedirectPortSelection::FromRequestPort)) => RedirectPort::RequestPort,
            (None, None) => RedirectPort::Keep,
        };
        if let Some(scheme) = &r.scheme
            && !matches!(scheme.as_str(), "http" | "https")
        {
            return Err(path.field("scheme").error(ConfigErrorKind::Invalid {
                reason: format!("{scheme:?} is not http or https"),
            }));
        }
        Ok(Redirect {
            path: path_redirect,
            authority: r.authority.clone(),
            scheme: r.scheme.clone(),
            port,
            code,
        })
    }

    /// A redirect to HTTPS on the same host and path, as a Gateway's
    /// `tls.httpsRedirect` sends.
    pub fn to_https() -> Self {
        Redirect {
            path: None,
            authority: None,
            scheme: Some("https".into()),
            port: RedirectPort::Keep,
            code: 301,
        }
    }

    /// The `Location` for a request, matched by `uri`.
    ///
    /// # Examples
    ///
    /// ```
    /// use meshwasm_core::router::path::{Redirect, RequestUrl};
    ///
    /// let url = RequestUrl { scheme: "http", authority: "shop.example.com:80", path: "/cart?id=3", destination_port: Some(80) };
    /// assert_eq!(Redirect::to_https().location(url, None), "https://shop.example.com/cart?id=3");
    /// ```
    pub fn location(&self, url: RequestUrl<'_>, uri: Option<&StringMatcher>) -> String {
        let scheme = self.scheme.as_deref().unwrap_or(url.scheme);
        let (request_host, request_port) = split_authority(url.authority);
        let (host, port) = match &self.authority {
            Some(authority) => split_authority(authority),
            None => (request_host, request_port),
        };
        let port = match self.port {
            RedirectPort::Fixed(p) => Some(p.to_string()),
            RedirectPort::ProtocolDefault => None,
            RedirectPort::RequestPort => url
                .destination_port
                .map(|p| p.to_string())
                .or_else(|| request_port.map(str::to_owned)),
            RedirectPort::Keep => {
                let default_of_old = match url.scheme {
                    "https" => "443",
                    _ => "80",
                };
                port.filter(|p| scheme == url.scheme || *p != default_of_old)
                    .map(str::to_owned)
            }
        };
        let path = match &self.path {
            None => url.path.to_owned(),
            Some(PathRedirect::Prefix(prefix)) => replace_matched(url.path, uri, prefix),
            Some(PathRedirect::Whole(new)) if new.contains('?') => new.clone(),
            Some(PathRedirect::Whole(new)) => {
                let (_, query) = split_query(url.path);
                format!("{new}{query}")
            }
        };
        match port {
            Some(port) => format!("{scheme}://{host}:{port}{path}"),
            None => format!("{scheme}://{host}{path}"),
        }
    }
}

/// `host[:port]` or `[v6]:port` into host (brackets kept) and port.
pub fn split_authority(authority: &str) -> (&str, Option<&str>) {
    let colon = if authority.starts_with('[') {
        authority.find("]:").map(|i| i + 1)
    } else {
        authority.rfind(':')
    };
    match colon {
        Some(i)
            if authority[i + 1..].bytes().all(|b| b.is_ascii_digit())
                && i + 1 < authority.len() =>
        {
            (&authority[..i], Some(&authority[i + 1..]))
        }
        _ => (authority, None),
    }
}

/// The authority a mirrored request carries: `-shadow` after the host, as
/// Envoy's request mirroring does (`reviews:9080` → `reviews-shadow:9080`).
pub fn shadow_authority(authority: &str) -> String {
    match split_authority(authority) {
        (host, Some(port)) => format!("{host}-shadow:{port}"),
        (host, None) => format!("{host}-shadow"),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn re2_substitutions_translate_and_dollars_stay_literal() {
        assert_eq!(re2_replacement(r"/\1/$x\\", 2).unwrap(), "/${1}/$$x\\");
        assert!(re2_replacement(r"\2", 2).is_err());
        assert!(re2_replacement(r"\q", 2).is_err());
    }

    #[test]
    fn authorities_split_on_their_port_only() {
        assert_eq!(split_authority("a.b:8080"), ("a.b", Some("8080")));
        assert_eq!(split_authority("[::1]:80"), ("[::1]", Some("80")));
        assert_eq!(split_authority("[::1]"), ("[::1]", None));
        assert_eq!(split_authority("host:"), ("host:", None));
        assert_eq!(shadow_authority("reviews:9080"), "reviews-shadow:9080");
    }
}
