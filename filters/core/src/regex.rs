//! RE2 patterns, as Istio and Envoy read them, compiled with `regex-lite`.
//!
//! Istio's `regex` fields are RE2, and Envoy's `safe_regex` must match the
//! *whole* input. regex-lite implements most of RE2's syntax at a fraction of
//! the size. Where the two would disagree, the pattern is refused at
//! configure time instead of matching differently at runtime:
//!
//! | RE2 feature                          | here                                         |
//! |--------------------------------------|----------------------------------------------|
//! | `\pL`, `\p{Greek}` Unicode classes   | refused                                      |
//! | `(?i)` with non-ASCII letters        | refused (regex-lite folds ASCII case only)   |
//! | octal escapes `\123`                 | refused; write `\x{53}`                      |
//! | `\Q...\E` quoting, `\C` any byte     | refused                                      |
//! | `{` as a literal, e.g. `a{,2}`       | refused; escape it as `\{`                   |
//! | `\s`                                 | RE2 omits `\v` (0x0B), which HTTP forbids in headers and paths anyway |
//!
//! Everything else (`\d \w \s \b` are ASCII in both, `.` is one Unicode
//! scalar value in both, flags `i m s U`, non-greedy repetition, named
//! groups) behaves the same. regex-lite also accepts a few things RE2 refuses
//! (`a**`, counts above 1000, the `x` flag); those are documented, not refused.

use crate::error::ConfigErrorKind;

mod literal;

/// A compiled RE2-compatible pattern that must match the whole input,
/// as Envoy's `safe_regex` does.
///
/// # Examples
///
/// ```
/// use meshwasm_core::regex::FullRegex;
///
/// let jason = FullRegex::new("^(.*?;)?(user=jason)(;.*)?$").unwrap();
/// assert!(jason.is_match("user=jason; theme=dark"));
/// // The space after `;` is not in the pattern, in RE2 as here.
/// assert!(!jason.is_match("theme=dark; user=jason"));
/// assert!(!jason.is_match("user=jasonx"));
/// // Full-match semantics: no anchors needed, and a partial hit is no match.
/// assert!(!FullRegex::new("v[0-9]").unwrap().is_match("xv1"));
/// ```
#[derive(Debug, Clone)]
pub struct FullRegex {
    pattern: String,
    regex: regex_lite::Regex,
    /// Text every match contains: without it, the regex is not run.
    required: Option<Box<str>>,
}

impl FullRegex {
    /// Compiles `pattern` for whole-input matching.
    ///
    /// # Errors
    ///
    /// [`ConfigErrorKind::InvalidRegex`] when the pattern does not compile or
    /// uses RE2 syntax that regex-lite would read differently.
    pub fn new(pattern: &str) -> Result<Self, ConfigErrorKind> {
        check_re2(pattern)?;
        let regex = regex_lite::Regex::new(&format!("^(?:{pattern})$"))
            .map_err(|e| invalid(pattern, last_line(&e.to_string())))?;
        Ok(FullRegex {
            pattern: pattern.to_owned(),
            regex,
            required: literal::required_literal(pattern).map(String::into_boxed_str),
        })
    }

    /// True if the whole of `haystack` matches. A haystack without the
    /// text every match needs (`user=jason` for Istio's jason cookie
    /// pattern) is refused by a substring search, without the regex.
    pub fn is_match(&self, haystack: &str) -> bool {
        if let Some(required) = &self.required
            && !haystack.contains(&**required)
        {
            return false;
        }
        self.regex.is_match(haystack)
    }

    /// The text every match contains, found when the pattern was compiled.
    ///
    /// ```
    /// use meshwasm_core::regex::FullRegex;
    ///
    /// let jason = FullRegex::new("^(.*?;)?(user=jason)(;.*)?$").unwrap();
    /// assert_eq!(jason.required_text(), Some("user=jason"));
    /// assert_eq!(FullRegex::new("a|b").unwrap().required_text(), None);
    /// ```
    pub fn required_text(&self) -> Option<&str> {
        self.required.as_deref()
    }

    /// The pattern as the user wrote it.
    pub fn as_str(&self) -> &str {
        &self.pattern
    }
}

/// Compiles an RE2 pattern for searching (not anchored), refusing what
/// regex-lite would read differently from RE2.
///
/// # Errors
///
/// [`ConfigErrorKind::InvalidRegex`], as for [`FullRegex::new`].
pub fn compile_re2(pattern: &str) -> Result<regex_lite::Regex, ConfigErrorKind> {
    check_re2(pattern)?;
    regex_lite::Regex::new(pattern).map_err(|e| invalid(pattern, last_line(&e.to_string())))
}

fn check_re2(pattern: &str) -> Result<(), ConfigErrorKind> {
    // Compile the bare pattern first: wrapping it could make an unbalanced
    // pattern such as `a)(b` valid.
    if let Err(e) = regex_lite::Regex::new(pattern) {
        let message = e.to_string();
        return Err(invalid(
            pattern,
            &with_re2_hint(pattern, last_line(&message)),
        ));
    }
    if !pattern.is_ascii() && case_insensitive_flag(pattern) {
        return Err(invalid(
            pattern,
            "(?i) with non-ASCII text: RE2 folds Unicode case but this engine folds ASCII only; \
             spell out the cases, e.g. [ßẞ]",
        ));
    }
    Ok(())
}

fn invalid(pattern: &str, reason: &str) -> ConfigErrorKind {
    ConfigErrorKind::InvalidRegex {
        pattern: pattern.to_owned(),
        reason: reason.to_owned(),
    }
}

fn last_line(message: &str) -> &str {
    message
        .lines()
        .rev()
        .map(str::trim)
        .find(|l| !l.is_empty())
        .map_or(message, |l| l.strip_prefix("error: ").unwrap_or(l))
}

fn with_re2_hint(pattern: &str, message: &str) -> String {
    let hint = if pattern.contains("\\Q") {
        Some("RE2's \\Q...\\E quoting is not supported; escape each metacharacter instead")
    } else if pattern.contains("\\C") {
        Some("RE2's \\C (any byte) is not supported")
    } else if message.contains("backreferences") {
        Some(
            "RE2 reads \\1-\\7 as octal escapes; write \\x{..} instead (backreferences do not exist in RE2)",
        )
    } else if message.contains("Unicode character classes") {
        Some("Unicode classes like \\pL are not supported; use explicit ranges")
    } else if message.contains("repetition") || message.contains("decimal number") {
        Some("RE2 reads a `{` that does not start a valid count as literal text; escape it as \\{")
    } else {
        None
    };
    match hint {
        Some(hint) => format!("{message}; {hint}"),
        None => message.to_owned(),
    }
}

/// True if any inline flag group turns case-insensitivity on.
fn case_insensitive_flag(pattern: &str) -> bool {
    let bytes = pattern.as_bytes();
    let mut i = 0;
    while i + 1 < bytes.len() {
        match bytes[i] {
            b'\\' => i += 2,
            b'(' if bytes[i + 1] == b'?' => {
                let flags = &bytes[i + 2..];
                for &b in flags {
                    match b {
                        b'i' => return true,
                        b'-' | b':' | b')' => break,
                        b if b.is_ascii_alphabetic() => {}
                        _ => break,
                    }
                }
                i += 2;
            }
            _ => i += 1,
        }
    }
    false
}

#[cfg(test)]
mod tests {
    use super::*;

    fn reason(pattern: &str) -> String {
        match FullRegex::new(pattern) {
            Err(ConfigErrorKind::InvalidRegex { reason, .. }) => reason,
            other => panic!("{pattern:?} was accepted: {other:?}"),
        }
    }

    #[test]
    fn refuses_unicode_case_folding_that_regex_lite_cannot_do() {
        assert!(reason("(?i)straße").contains("folds ASCII only"));
        assert!(reason("x(?mi:é)").contains("folds ASCII only"));
        // Turning the flag off, or ASCII-only text, is fine.
        assert!(FullRegex::new("(?-i)é").is_ok());
        assert!(FullRegex::new("(?i)abc").is_ok());
        assert!(FullRegex::new(r"\(?i\)é").is_ok());
    }

    #[test]
    fn explains_re2_only_syntax() {
        assert!(reason(r"\123").contains("octal"));
        assert!(reason(r"\Qa.b\E").contains("\\Q"));
        assert!(reason(r"\pL+").contains("Unicode classes"));
        assert!(reason("a{,2}").contains("escape it as \\{"));
        // Checked bare: wrapping it in (?:...) would have balanced the parentheses.
        assert!(reason("a)(b").contains("without matching"));
    }
}
