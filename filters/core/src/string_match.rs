//! Istio's `StringMatch` (exact / prefix / regex) and its compiled form.

use crate::error::{ConfigError, ConfigErrorKind, FieldPath};
use crate::regex::FullRegex;
use serde::Deserialize;

/// Istio's `StringMatch`, as written: at most one of the three is set, and
/// `{}` (none set) means "present, any value".
#[derive(Debug, Clone, Default, PartialEq, Eq, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct StringMatch {
    /// The value must equal this.
    pub exact: Option<String>,
    /// The value must start with this.
    pub prefix: Option<String>,
    /// The whole value must match this RE2 pattern.
    pub regex: Option<String>,
}

/// How letter case is compared by exact and prefix matches.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Case {
    /// Byte for byte.
    Sensitive,
    /// ASCII letters compare equal in either case, as Envoy's `ignore_case`.
    IgnoreAscii,
}

/// A compiled [`StringMatch`].
///
/// # Examples
///
/// ```
/// use meshwasm_core::string_match::{Case, StringMatch, StringMatcher};
///
/// let m = StringMatch { prefix: Some("/Status".into()), ..Default::default() };
/// let m = StringMatcher::compile(&m, Case::IgnoreAscii).unwrap();
/// assert!(m.matches("/status/200"));
/// ```
#[derive(Debug, Clone)]
pub enum StringMatcher {
    /// Any value; for headers, the header must be present.
    Any,
    /// Equal to the string.
    Exact(String, Case),
    /// Starts with the string.
    Prefix(String, Case),
    /// Ends with the string (Envoy's `suffix`).
    Suffix(String, Case),
    /// Contains the string (Envoy's `contains`).
    Contains(String, Case),
    /// The whole value matches.
    Regex(FullRegex),
}

impl StringMatcher {
    /// Compiles a `StringMatch`. `case` applies to exact and prefix only, as in Istio.
    ///
    /// # Errors
    ///
    /// [`ConfigErrorKind::AmbiguousStringMatch`] when more than one kind is set,
    /// [`ConfigErrorKind::InvalidRegex`] for a pattern that cannot be honoured.
    pub fn compile(m: &StringMatch, case: Case) -> Result<Self, ConfigErrorKind> {
        match (&m.exact, &m.prefix, &m.regex) {
            (None, None, None) => Ok(StringMatcher::Any),
            (Some(e), None, None) => Ok(StringMatcher::Exact(e.clone(), case)),
            (None, Some(p), None) => Ok(StringMatcher::Prefix(p.clone(), case)),
            (None, None, Some(r)) => FullRegex::new(r).map(StringMatcher::Regex),
            _ => Err(ConfigErrorKind::AmbiguousStringMatch),
        }
    }

    pub(crate) fn compile_at(
        path: &FieldPath<'_>,
        m: &StringMatch,
        case: Case,
    ) -> Result<Self, ConfigError> {
        Self::compile(m, case).map_err(|kind| {
            let field = match kind {
                ConfigErrorKind::InvalidRegex { .. } => path.field("regex"),
                _ => *path,
            };
            field.error(kind)
        })
    }

    /// True if `value` satisfies the match.
    pub fn matches(&self, value: &str) -> bool {
        match self {
            StringMatcher::Any => true,
            StringMatcher::Exact(e, Case::Sensitive) => value == e,
            StringMatcher::Exact(e, Case::IgnoreAscii) => value.eq_ignore_ascii_case(e),
            StringMatcher::Prefix(p, Case::Sensitive) => value.starts_with(p.as_str()),
            StringMatcher::Prefix(p, Case::IgnoreAscii) => value
                .as_bytes()
                .get(..p.len())
                .is_some_and(|head| head.eq_ignore_ascii_case(p.as_bytes())),
            StringMatcher::Suffix(x, Case::Sensitive) => value.ends_with(x.as_str()),
            StringMatcher::Suffix(x, Case::IgnoreAscii) => value
                .len()
                .checked_sub(x.len())
                .and_then(|start| value.as_bytes().get(start..))
                .is_some_and(|tail| tail.eq_ignore_ascii_case(x.as_bytes())),
            StringMatcher::Contains(x, Case::Sensitive) => value.contains(x.as_str()),
            StringMatcher::Contains(x, Case::IgnoreAscii) => {
                x.is_empty()
                    || value
                        .as_bytes()
                        .windows(x.len().max(1))
                        .any(|w| w.eq_ignore_ascii_case(x.as_bytes()))
            }
            StringMatcher::Regex(r) => r.is_match(value),
        }
    }
}
