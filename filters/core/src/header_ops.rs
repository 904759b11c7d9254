//! Istio's header operations (`set`, `add`, `remove`), compiled once and
//! turned into an ordered list of edits a filter carries out.
//!
//! The order is Envoy's: removals first, then `set` (replace every value),
//! then `add` (append a value). Header names compare without ASCII case and
//! are kept lowercase, as Envoy stores them.

use crate::error::{ConfigError, ConfigErrorKind, FieldPath};
use crate::virtual_service::HeaderOperations;
use std::borrow::Cow;

/// One edit of a header map.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum HeaderOp<'a> {
    /// Remove every value of the header.
    Remove(&'a str),
    /// Replace every value of the header with this one (add it if absent).
    Set(&'a str, Cow<'a, str>),
    /// Append a value, keeping the ones present.
    Add(&'a str, Cow<'a, str>),
}

impl HeaderOp<'_> {
    /// The header the edit is about.
    pub fn name(&self) -> &str {
        match self {
            HeaderOp::Remove(name) | HeaderOp::Set(name, _) | HeaderOp::Add(name, _) => name,
        }
    }
}

/// Compiled `HeaderOperations`.
///
/// # Examples
///
/// ```
/// use meshwasm_core::header_ops::{HeaderOp, HeaderOps};
/// use meshwasm_core::virtual_service::HeaderOperations;
///
/// let ops: HeaderOperations = serde_json::from_str(
///     r#"{"set": {"X-Version": "v2"}, "remove": ["x-debug"]}"#).unwrap();
/// let ops = HeaderOps::compile(&ops).unwrap();
/// let edits: Vec<_> = ops.edits().collect();
/// assert_eq!(edits[0], HeaderOp::Remove("x-debug"));
/// assert_eq!(edits[1], HeaderOp::Set("x-version", "v2".into()));
/// ```
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct HeaderOps {
    remove: Vec<String>,
    set: Vec<(String, String)>,
    add: Vec<(String, String)>,
}

/// Headers the filters own or that Envoy derives; a header operation on
/// them would fight the routing decision.
const RESERVED: [(&str, &str); 2] = [
    (
        "host",
        "Envoy keeps the authority in :authority; use rewrite.authority",
    ),
    (
        "content-length",
        "Envoy computes it from the body; it cannot be set",
    ),
];

impl HeaderOps {
    /// Compiles one `request` or `response` block.
    ///
    /// # Errors
    ///
    /// [`ConfigErrorKind::Invalid`] for names that are not HTTP tokens,
    /// pseudo-headers, values with line breaks, and Envoy `%FORMATTER%`
    /// values, which only Envoy's route configuration evaluates.
    pub fn compile(ops: &HeaderOperations) -> Result<Self, ConfigError> {
        Self::compile_at(&FieldPath::ROOT, ops)
    }

    pub(crate) fn compile_at(
        path: &FieldPath<'_>,
        ops: &HeaderOperations,
    ) -> Result<Self, ConfigError> {
        let remove_path = path.field("remove");
        let remove = ops
            .remove
            .iter()
            .enumerate()
            .map(|(i, name)| check_name(&remove_path.index(i), name))
            .collect::<Result<_, _>>()?;
        let pairs = |field: &'static str, map: &std::collections::BTreeMap<String, String>| {
            let at = path.field(field);
            map.iter()
                .map(|(name, value)| {
                    let name_at = at.field(name);
                    let name = check_name(&name_at, name)?;
                    check_value(&name_at, value)?;
                    // Envoy reads `%%` as a literal `%`.
                    Ok((name, value.replace("%%", "%")))
                })
                .collect::<Result<Vec<_>, ConfigError>>()
        };
        Ok(HeaderOps {
            remove,
            set: pairs("set", &ops.set)?,
            add: pairs("add", &ops.add)?,
        })
    }

    /// The edits in the order Envoy applies them.
    pub fn edits(&self) -> impl Iterator<Item = HeaderOp<'_>> {
        let remove = self.remove.iter().map(|n| HeaderOp::Remove(n));
        let set = self
            .set
            .iter()
            .map(|(n, v)| HeaderOp::Set(n, Cow::Borrowed(v.as_str())));
        let add = self
            .add
            .iter()
            .map(|(n, v)| HeaderOp::Add(n, Cow::Borrowed(v.as_str())));
        remove.chain(set).chain(add)
    }

    /// True when there is nothing to do.
    pub fn is_empty(&self) -> bool {
        self.remove.is_empty() && self.set.is_empty() && self.add.is_empty()
    }

    /// True if an edit touches `name` (lowercase).
    pub fn touches(&self, name: &str) -> bool {
        self.edits().any(|op| op.name() == name)
    }
}

/// Applies edits to an owned list of header pairs, as a host would; for
/// building requests the filter sends itself (mirrors).
///
/// # Examples
///
/// ```
/// use meshwasm_core::header_ops::{HeaderOp, apply};
///
/// let mut headers = vec![("a".to_string(), "1".to_string()), ("a".to_string(), "2".to_string())];
/// apply(&mut headers, [HeaderOp::Set("a", "3".into()), HeaderOp::Add("b", "4".into())]);
/// assert_eq!(headers, [("a".to_string(), "3".to_string()), ("b".to_string(), "4".to_string())]);
/// ```
pub fn apply<'a>(
    headers: &mut Vec<(String, String)>,
    edits: impl IntoIterator<Item = HeaderOp<'a>>,
) {
    for edit in edits {
        match edit {
            HeaderOp::Remove(name) => headers.retain(|(n, _)| !n.eq_ignore_ascii_case(name)),
            HeaderOp::Set(name, value) => {
                match headers
                    .iter()
                    .position(|(n, _)| n.eq_ignore_ascii_case(name))
                {
                    Some(first) => {
                        headers[first].1 = value.into_owned();
                        let mut index = 0;
                        headers.retain(|(n, _)| {
                            let keep = index <= first || !n.eq_ignore_ascii_case(name);
                            index += 1;
                            keep
                        });
                    }
                    None => headers.push((name.to_owned(), value.into_owned())),
                }
            }
            HeaderOp::Add(name, value) => headers.push((name.to_owned(), value.into_owned())),
        }
    }
}

/// A header name meshwasm may write: an HTTP token, not a pseudo-header,
/// not one Envoy derives; lowercased.
pub(crate) fn check_name(path: &FieldPath<'_>, name: &str) -> Result<String, ConfigError> {
    let invalid = |reason: String| Err(path.error(ConfigErrorKind::Invalid { reason }));
    if name.starts_with(':') {
        return invalid(format!(
            "{name:?} is a pseudo-header; use rewrite.uri or rewrite.authority"
        ));
    }
    if name.is_empty() || !name.bytes().all(is_token_byte) {
        return invalid(format!("{name:?} is not a valid HTTP header name"));
    }
    let lower = name.to_ascii_lowercase();
    if let Some((_, why)) = RESERVED.iter().find(|(n, _)| *n == lower) {
        return invalid(format!("{name:?} cannot be changed here: {why}"));
    }
    Ok(lower)
}

fn check_value(path: &FieldPath<'_>, value: &str) -> Result<(), ConfigError> {
    if value.bytes().any(|b| matches!(b, b'\r' | b'\n' | 0)) {
        return Err(path.error(ConfigErrorKind::Invalid {
            reason: "a header value cannot hold CR, LF or NUL".into(),
        }));
    }
    if value.replace("%%", "").contains('%') {
        return Err(path.error(ConfigErrorKind::Invalid {
            reason: format!(
                "{value:?} uses an Envoy %FORMATTER%, which only Envoy's route configuration evaluates; write a literal value (%% for a literal %)"
            ),
        }));
    }
    Ok(())
}

/// RFC 9110 `tchar`.
fn is_token_byte(b: u8) -> bool {
    b.is_ascii_alphanumeric() || b"!#$%&'*+-.^_`|~".contains(&b)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn percent_escapes_are_literal_and_formatters_are_refused() {
        let path = FieldPath::ROOT;
        assert!(check_value(&path, "100%% sure").is_ok());
        assert!(check_value(&path, "%DOWNSTREAM_REMOTE_ADDRESS%").is_err());
    }
}
