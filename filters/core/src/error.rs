//! Configuration errors that say where the problem is.
//!
//! Every error carries the path of the offending field in the user's
//! document (`http[0].fault.abort.percentage.value`), so the one log line a
//! filter writes on rejection is enough to fix the input.

use std::fmt;

/// A configuration problem, located by the path of the field in the document.
///
/// # Examples
///
/// ```
/// use meshwasm_core::fault::FaultPlan;
/// use meshwasm_core::plan::Plan;
///
/// let err = FaultPlan::from_json(br#"{"hosts":["*"],"http":[{"fault":{"abort":
///     {"httpStatus":700,"percentage":{"value":100}}}}]}"#).unwrap_err();
/// assert_eq!(err.path, "http[0].fault.abort.httpStatus");
/// assert_eq!(err.to_string(), "http[0].fault.abort.httpStatus: 700 is not an HTTP status in 200..=599");
/// ```
#[derive(Debug, Clone, PartialEq, thiserror::Error)]
#[error("{}: {kind}", if path.is_empty() { "configuration" } else { path.as_str() })]
pub struct ConfigError {
    /// Path of the field, e.g. `http[0].match[1].headers.cookie.regex`; empty for the whole document.
    pub path: String,
    /// What is wrong with it.
    pub kind: ConfigErrorKind,
}

impl ConfigErrorKind {
    /// The configuration is empty where `document` was expected.
    pub fn empty(document: crate::config::Document) -> Self {
        ConfigErrorKind::Empty {
            expected: document.name,
            example: document.example,
        }
    }
}

impl ConfigError {
    /// An error at `path` (dotted, with `[i]` for list items).
    pub fn new(path: impl Into<String>, kind: ConfigErrorKind) -> Self {
        Self {
            path: path.into(),
            kind,
        }
    }
}

/// What is wrong with a configuration field.
#[derive(Debug, Clone, PartialEq, thiserror::Error)]
pub enum ConfigErrorKind {
    /// The document is not valid JSON, has an unknown field or a value of the wrong type.
    #[error("{message} (line {line}, column {column})")]
    Json {
        /// serde's description of the problem.
        message: String,
        /// 1-based line in the document.
        line: usize,
        /// 1-based column in the document.
        column: usize,
    },
    /// The plugin configuration is empty.
    #[error("is empty; expected {expected} such as {example}")]
    Empty {
        /// The document the filter reads, with its article.
        expected: &'static str,
        /// A minimal one.
        example: &'static str,
    },
    /// A percentage outside 0..=100 or not a number.
    #[error("{value} is outside 0..=100")]
    PercentOutOfRange {
        /// The value given.
        value: f64,
    },
    /// An HTTP status outside 200..=599.
    #[error("{status} is not an HTTP status in {min}..={max}")]
    HttpStatusOutOfRange {
        /// The status given.
        status: i64,
        /// Lowest accepted status.
        min: u16,
        /// Highest accepted status.
        max: u16,
    },
    /// A gRPC status name that gRPC does not define.
    #[error(
        "unknown gRPC status {name:?}; use one of the upper-case names such as UNAVAILABLE (see grpc/doc/statuscodes.md)"
    )]
    UnknownGrpcStatus {
        /// The name given.
        name: String,
    },
    /// A duration that is negative, unparsable or out of range.
    #[error("{reason}")]
    InvalidDuration {
        /// Why it was refused.
        reason: String,
    },
    /// A regular expression that does not compile, or that would not match as RE2 does.
    #[error("regex {pattern:?} is not supported: {reason}")]
    InvalidRegex {
        /// The pattern as written.
        pattern: String,
        /// Why it was refused.
        reason: String,
    },
    /// A StringMatch with more than one of exact, prefix and regex.
    #[error("set only one of exact, prefix and regex")]
    AmbiguousStringMatch,
    /// A host name that Istio would refuse.
    #[error("invalid host {host:?}: {reason}")]
    InvalidHost {
        /// The host as written.
        host: String,
        /// Why it was refused.
        reason: &'static str,
    },
    /// A field is required here.
    #[error("is required: {reason}")]
    Missing {
        /// What must be given.
        reason: &'static str,
    },
    /// Two fields that exclude each other are both set.
    #[error("{reason}")]
    Conflict {
        /// Which fields conflict.
        reason: &'static str,
    },
    /// A value that cannot be used, with the reason.
    #[error("{reason}")]
    Invalid {
        /// Why it was refused.
        reason: String,
    },
    /// A valid Istio field that meshwasm does not implement; refused rather than ignored.
    #[error("is not supported: {reason}")]
    Unsupported {
        /// Why, and what to use instead.
        reason: &'static str,
    },
}

/// A configuration note: accepted, but the user should know how it is handled.
///
/// Filters log each note once at configure time, so nothing in a
/// configuration is dropped in silence.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ConfigNote {
    /// Path of the field the note is about.
    pub path: String,
    /// What happens to it.
    pub message: &'static str,
    /// The field is a deprecated form that is honoured exactly; nothing of
    /// the user's intent is lost, so tools need not warn about it.
    pub deprecated: bool,
}

impl fmt::Display for ConfigNote {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{}: {}", self.path, self.message)
    }
}

/// The path of a field in a configuration document, built while compiling
/// it: `http[0].match[1].uri`. Errors and notes are created from it.
///
/// # Examples
///
/// ```
/// use meshwasm_core::FieldPath;
///
/// let http = FieldPath::ROOT.field("http");
/// let route = http.index(0);
/// assert_eq!(route.field("fault").to_string(), "http[0].fault");
/// ```
#[derive(Debug, Clone, Copy)]
pub struct FieldPath<'a> {
    parent: Option<&'a FieldPath<'a>>,
    segment: Segment<'a>,
}

#[derive(Debug, Clone, Copy)]
enum Segment<'a> {
    Root,
    Field(&'a str),
    Index(usize),
}

impl<'a> FieldPath<'a> {
    /// The document itself.
    pub const ROOT: FieldPath<'static> = FieldPath {
        parent: None,
        segment: Segment::Root,
    };

    /// A named field below this one.
    pub fn field(&'a self, name: &'a str) -> FieldPath<'a> {
        FieldPath {
            parent: Some(self),
            segment: Segment::Field(name),
        }
    }

    /// An element of the list at this path.
    pub fn index(&'a self, index: usize) -> FieldPath<'a> {
        FieldPath {
            parent: Some(self),
            segment: Segment::Index(index),
        }
    }

    /// An error at this path.
    pub fn error(&self, kind: ConfigErrorKind) -> ConfigError {
        ConfigError::new(self.to_string(), kind)
    }

    /// A note at this path.
    pub fn note(&self, message: &'static str) -> ConfigNote {
        ConfigNote {
            path: self.to_string(),
            message,
            deprecated: false,
        }
    }

    /// A note that the field at this path is a deprecated form, honoured.
    pub fn deprecation(&self, message: &'static str) -> ConfigNote {
        ConfigNote {
            deprecated: true,
            ..self.note(message)
        }
    }
}

impl fmt::Display for FieldPath<'_> {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        if let Some(parent) = self.parent {
            parent.fmt(f)?;
        }
        match self.segment {
            Segment::Root => Ok(()),
            Segment::Field(name)
                if self
                    .parent
                    .is_some_and(|p| !matches!(p.segment, Segment::Root)) =>
            {
                write!(f, ".{name}")
            }
            Segment::Field(name) => f.write_str(name),
            Segment::Index(i) => write!(f, "[{i}]"),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn paths_render_like_serde_path_to_error() {
        let root = FieldPath::ROOT;
        let http = root.field("http");
        let first = http.index(0);
        let m = first.field("match");
        let m1 = m.index(1);
        let uri = m1.field("uri");
        assert_eq!(uri.to_string(), "http[0].match[1].uri");
        assert_eq!(root.to_string(), "");
    }
}
