//! VirtualService `hosts`, matched against the request's `:authority`.
//!
//! In a mesh, Istio turns `hosts` into Envoy virtual-host domains; a filter
//! has to make the same choice itself. Ports in the authority are ignored
//! and names compare without ASCII case. Forms:
//! - `*` matches every authority.
//! - `*.example.com` (or `*example.com`) matches a longer name with that suffix.
//! - A short name such as `reviews` matches `reviews` and the namespaced
//!   forms `reviews.<ns>`, `reviews.<ns>.svc` and `reviews.<ns>.svc.<domain>`.
//! - A Kubernetes FQDN such as `reviews.prod.svc.cluster.local` matches
//!   itself and its shorter forms `reviews.prod.svc`, `reviews.prod` and
//!   `reviews`, as a client in the service's namespace would call it.
//! - Anything else (`uk.bookinfo.com`, an IP) must be equal.

use crate::error::{ConfigError, ConfigErrorKind, FieldPath};

/// Compiled `hosts`.
///
/// # Examples
///
/// ```
/// use meshwasm_core::hosts::HostMatcher;
///
/// let hosts = HostMatcher::compile(&["reviews".into(), "*.bookinfo.com".into()]).unwrap();
/// assert!(hosts.matches("reviews:9080"));
/// assert!(hosts.matches("reviews.default.svc.cluster.local"));
/// assert!(hosts.matches("uk.bookinfo.com"));
/// assert!(!hosts.matches("ratings"));
/// ```
#[derive(Debug, Clone)]
pub struct HostMatcher {
    any: bool,
    patterns: Vec<HostPattern>,
}

#[derive(Debug, Clone)]
enum HostPattern {
    Exact(String),
    Suffix(String),
    ShortName(String),
    ServiceFqdn {
        name: String,
        namespace: String,
        full: String,
    },
}

impl HostMatcher {
    /// Compiles a `hosts` list.
    ///
    /// # Errors
    ///
    /// [`ConfigErrorKind::Unsupported`] for an empty list: a VirtualService
    /// without hosts is an Istio delegate, which only istiod can join,
    /// [`ConfigErrorKind::InvalidHost`] for malformed names.
    pub fn compile(hosts: &[String]) -> Result<Self, ConfigError> {
        Self::compile_at(&FieldPath::ROOT.field("hosts"), hosts)
    }

    pub(crate) fn compile_at(path: &FieldPath<'_>, hosts: &[String]) -> Result<Self, ConfigError> {
        if hosts.is_empty() {
            return Err(path.error(ConfigErrorKind::Unsupported {
                reason: "a VirtualService without hosts is a delegate, which istiod joins into the VirtualService that names it in `delegate`; copy these http routes into that VirtualService in place of its delegating route (or, if this one stands alone, list the hosts it serves)",
            }));
        }
        let mut matcher = HostMatcher {
            any: false,
            patterns: Vec::with_capacity(hosts.len()),
        };
        for (i, host) in hosts.iter().enumerate() {
            let invalid = |reason| {
                path.index(i).error(ConfigErrorKind::InvalidHost {
                    host: host.clone(),
                    reason,
                })
            };
            let h = host.to_ascii_lowercase();
            if h.is_empty() {
                return Err(invalid("empty host"));
            }
            if h.contains(['/', ' ', ':']) {
                return Err(invalid(
                    "a host is a DNS name, wildcard or IP, without scheme, port or path",
                ));
            }
            if h == "*" {
                matcher.any = true;
            } else if let Some(rest) = h.strip_prefix('*') {
                if rest.contains('*') || rest.is_empty() {
                    return Err(invalid(
                        "a wildcard may only be the leading `*` of the name",
                    ));
                }
                matcher.patterns.push(HostPattern::Suffix(rest.to_owned()));
            } else if h.contains('*') {
                return Err(invalid(
                    "a wildcard may only be the leading `*` of the name",
                ));
            } else if !h.contains('.') {
                matcher.patterns.push(HostPattern::ShortName(h));
            } else if let Some((name, namespace)) = service_fqdn(&h) {
                matcher.patterns.push(HostPattern::ServiceFqdn {
                    name: name.to_owned(),
                    namespace: namespace.to_owned(),
                    full: h.clone(),
                });
            } else {
                matcher.patterns.push(HostPattern::Exact(h));
            }
        }
        Ok(matcher)
    }

    /// True if `authority` (with or without a port) is one of the hosts.
    pub fn matches(&self, authority: &str) -> bool {
        if self.any {
            return true;
        }
        let host = strip_port(authority);
        self.patterns.iter().any(|p| p.matches(host))
    }

    /// How specifically these hosts match `authority`, or `None` when they
    /// do not: a named host beats a longer wildcard suffix, which beats a
    /// shorter one, which beats `*`. Envoy picks a virtual host by the same
    /// order, so a filter given several VirtualServices chooses the one
    /// Istio would.
    ///
    /// # Examples
    ///
    /// ```
    /// use meshwasm_core::hosts::HostMatcher;
    ///
    /// let any = HostMatcher::compile(&["*".into()]).unwrap();
    /// let wildcard = HostMatcher::compile(&["*.example.com".into()]).unwrap();
    /// let named = HostMatcher::compile(&["api.example.com".into()]).unwrap();
    /// assert!(any.rank("api.example.com") < wildcard.rank("api.example.com"));
    /// assert!(wildcard.rank("api.example.com") < named.rank("api.example.com"));
    /// assert_eq!(named.rank("web.example.com"), None);
    ///
    /// let fqdn = HostMatcher::compile(&["reviews.prod.svc.cluster.local".into()]).unwrap();
    /// let short = HostMatcher::compile(&["reviews".into()]).unwrap();
    /// assert!(fqdn.rank("reviews") < short.rank("reviews"));
    /// ```
    pub fn rank(&self, authority: &str) -> Option<usize> {
        let host = strip_port(authority);
        let best = self
            .patterns
            .iter()
            .filter(|p| p.matches(host))
            .map(|p| match p {
                HostPattern::Suffix(suffix) => suffix.len() + 1,
                // The name as written beats a form derived from it: a
                // client calling `reviews` means the `reviews` service of
                // its own namespace before `reviews.prod.svc.cluster.local`.
                HostPattern::Exact(name)
                | HostPattern::ShortName(name)
                | HostPattern::ServiceFqdn { full: name, .. }
                    if name.eq_ignore_ascii_case(host) =>
                {
                    usize::MAX
                }
                _ => usize::MAX - 1,
            })
            .max();
        best.or(self.any.then_some(0))
    }

    /// True if every authority matches (`*` is among the hosts).
    pub fn matches_everything(&self) -> bool {
        self.any
    }
}

impl HostPattern {
    fn matches(&self, host: &str) -> bool {
        match self {
            HostPattern::Exact(e) => host.eq_ignore_ascii_case(e),
            HostPattern::Suffix(s) => host.len() > s.len() && ends_with_ignore_case(host, s),
            HostPattern::ShortName(name) => {
                let Some(rest) = strip_prefix_ignore_case(host, name) else {
                    return false;
                };
                match rest.strip_prefix('.') {
                    None => rest.is_empty(),
                    Some(qualified) => {
                        let mut labels = qualified.split('.');
                        let namespace_ok = labels.next().is_some_and(|ns| !ns.is_empty());
                        let svc_ok = labels.next().is_none_or(|l| l.eq_ignore_ascii_case("svc"));
                        namespace_ok && svc_ok
                    }
                }
            }
            HostPattern::ServiceFqdn {
                name,
                namespace,
                full,
            } => {
                if host.eq_ignore_ascii_case(full) || host.eq_ignore_ascii_case(name) {
                    return true;
                }
                let Some(rest) =
                    strip_prefix_ignore_case(host, name).and_then(|r| r.strip_prefix('.'))
                else {
                    return false;
                };
                let Some(after_ns) = strip_prefix_ignore_case(rest, namespace) else {
                    return false;
                };
                after_ns.is_empty() || after_ns.eq_ignore_ascii_case(".svc")
            }
        }
    }
}

/// `name.namespace.svc.domain...` → (name, namespace).
fn service_fqdn(host: &str) -> Option<(&str, &str)> {
    let mut labels = host.splitn(4, '.');
    let name = labels.next()?;
    let namespace = labels.next()?;
    let svc = labels.next()?;
    let domain = labels.next()?;
    (svc == "svc" && !domain.is_empty() && !name.is_empty() && !namespace.is_empty())
        .then_some((name, namespace))
}

/// Drops a `:port` suffix; keeps IPv6 literals in brackets intact.
pub fn strip_port(authority: &str) -> &str {
    if authority.starts_with('[') {
        return authority
            .find(']')
            .map_or(authority, |end| &authority[..=end]);
    }
    match authority.rsplit_once(':') {
        Some((host, port)) if !port.is_empty() && port.bytes().all(|b| b.is_ascii_digit()) => host,
        _ => authority,
    }
}

fn strip_prefix_ignore_case<'a>(s: &'a str, prefix: &str) -> Option<&'a str> {
    let head = s.get(..prefix.len())?;
    head.eq_ignore_ascii_case(prefix)
        .then(|| &s[prefix.len()..])
}

fn ends_with_ignore_case(s: &str, suffix: &str) -> bool {
    s.len() >= suffix.len()
        && s.get(s.len() - suffix.len()..)
            .is_some_and(|tail| tail.eq_ignore_ascii_case(suffix))
}
