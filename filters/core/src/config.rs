//! Reading a filter's configuration document: any serde type from JSON,
//! with the field path, line and column of every error.
//!
//! Every meshwasm filter is configured with an Istio or Envoy document as
//! users write it (a VirtualService spec, an AuthorizationPolicy spec, a
//! local rate limit config). They all go through [`parse`], so a typo in any
//! of them is reported the same way: `http[0].fault.abort.httpStauts:
//! unknown field ... (line 3, column 14)`.

mod locate;

use crate::error::{ConfigError, ConfigErrorKind};
use serde::Deserialize;

/// The document a filter expects, named in the errors about it.
///
/// # Examples
///
/// ```
/// use meshwasm_core::config::Document;
///
/// const POLICY: Document = Document {
///     name: "an AuthorizationPolicy spec",
///     example: r#"{"action": "DENY", "rules": [...]}"#,
///     list_key: None,
/// };
/// assert_eq!(POLICY.name, "an AuthorizationPolicy spec");
/// ```
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Document {
    /// What it is, with its article: `a VirtualService spec`.
    pub name: &'static str,
    /// A minimal example of it, shown when the configuration is empty.
    pub example: &'static str,
    /// The key of the configuration's list form, if it has one
    /// (`{"virtualServices": [spec, ...]}`), whose items are documents too.
    pub list_key: Option<&'static str>,
}

/// Parses `json` into `T`, refusing trailing characters.
///
/// Unknown fields are refused where `T` says `deny_unknown_fields`, as
/// every meshwasm configuration type does.
///
/// # Errors
///
/// A [`ConfigError`] with the path of the offending field (empty for the
/// whole document) and, for JSON errors, the line and column. An empty
/// document is [`ConfigErrorKind::Empty`], naming `document`. When the
/// offending field is `apiVersion`, `kind`, `metadata` or `spec` at the
/// top, the message adds that only the resource's `spec` is wanted.
///
/// # Examples
///
/// ```
/// use meshwasm_core::config::{Document, parse};
///
/// #[derive(Debug, serde::Deserialize)]
/// #[serde(rename_all = "camelCase", deny_unknown_fields)]
/// struct Limit {
///     max_tokens: u32,
/// }
///
/// const LIMIT: Document = Document { name: "a limit", example: r#"{"maxTokens": 10}"#, list_key: None };
/// assert_eq!(parse::<Limit>(br#"{"maxTokens": 10}"#, LIMIT).unwrap().max_tokens, 10);
///
/// let err = parse::<Limit>(b"{\n  \"maxTokens\": -1\n}", LIMIT).unwrap_err();
/// assert_eq!(err.path, "maxTokens");
/// assert_eq!(
///     err.to_string(),
///     "maxTokens: invalid value: integer `-1`, expected u32 (line 2, column 17)"
/// );
///
/// let err = parse::<Limit>(br#"{"kind": "Limit", "spec": {}}"#, LIMIT).unwrap_err();
/// assert_eq!(
///     err.to_string(),
///     "kind: unknown field `kind`, expected `maxTokens`; this looks like a whole \
///      Kubernetes resource: pass only its `spec` (line 1, column 7)"
/// );
///
/// let err = parse::<Limit>(b"  ", LIMIT).unwrap_err();
/// assert_eq!(err.to_string(), r#"configuration: is empty; expected a limit such as {"maxTokens": 10}"#);
/// ```
pub fn parse<'a, T: Deserialize<'a>>(json: &'a [u8], document: Document) -> Result<T, ConfigError> {
    if json.iter().all(u8::is_ascii_whitespace) {
        return Err(ConfigError::new("", ConfigErrorKind::empty(document)));
    }
    let mut de = serde_json::Deserializer::from_slice(json);
    let value = T::deserialize(&mut de).map_err(|e| {
        // The path is found only now, from where serde_json stopped (see
        // `locate`): tracking it while deserializing costs a third of a
        // filter's module.
        let path = locate::path_at(json, e.line(), e.column());
        let mut message = e.to_string();
        // serde_json appends " at line L column C"; it is reported separately.
        if let Some(cut) = message.rfind(" at line ") {
            message.truncate(cut);
        }
        if names_a_resource_field(&path, document.list_key) {
            message.push_str("; this looks like a whole Kubernetes resource: pass only its `spec`");
        }
        ConfigError::new(
            path,
            ConfigErrorKind::Json {
                message,
                line: e.line(),
                column: e.column(),
            },
        )
    })?;
    de.end().map_err(|e| {
        ConfigError::new(
            "",
            ConfigErrorKind::Json {
                message: "trailing characters after the JSON document".into(),
                line: e.line(),
                column: e.column(),
            },
        )
    })?;
    Ok(value)
}

/// True if `path` is a Kubernetes resource's own field at the top of the
/// document, or at the top of one document in its list form
/// (`virtualServices[2].kind`).
fn names_a_resource_field(path: &str, list_key: Option<&str>) -> bool {
    let top = match (path.split_once("]."), list_key) {
        (Some((list, field)), Some(key))
            if list.strip_prefix(key).is_some_and(|i| i.starts_with('[')) =>
        {
            field
        }
        _ => path,
    };
    RESOURCE_FIELDS.contains(&top)
}

/// The fields of a whole resource that a `spec` never has.
const RESOURCE_FIELDS: [&str; 4] = ["apiVersion", "kind", "metadata", "spec"];

/// True if `json` is an object whose first key is `key`: how a filter tells
/// a list form of its configuration (`{"virtualServices": [...]}`) from a
/// single document, without parsing it twice.
///
/// # Examples
///
/// ```
/// use meshwasm_core::config::first_key_is;
///
/// assert!(first_key_is(br#" { "virtualServices": [] }"#, "virtualServices"));
/// assert!(!first_key_is(br#"{"hosts": [], "virtualServices": []}"#, "virtualServices"));
/// ```
pub fn first_key_is(json: &[u8], key: &str) -> bool {
    let mut rest = json.trim_ascii_start();
    let Some(after_brace) = rest.strip_prefix(b"{") else {
        return false;
    };
    rest = after_brace.trim_ascii_start();
    rest.strip_prefix(b"\"")
        .and_then(|r| r.strip_prefix(key.as_bytes()))
        .is_some_and(|r| r.starts_with(b"\""))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn resource_fields_are_recognised_at_the_top_and_in_a_list() {
        let list = Some("virtualServices");
        assert!(names_a_resource_field("kind", None));
        assert!(names_a_resource_field("virtualServices[1].metadata", list));
        assert!(!names_a_resource_field("virtualServices[1].metadata", None));
        assert!(!names_a_resource_field("http[0].kind", list));
        assert!(!names_a_resource_field("http[0].match[0].kind", list));
    }
}
