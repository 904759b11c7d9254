//! Istio duration strings: "2s", "500ms", "1.5s", "1m", "1h30m".
//!
//! Istio's YAML is decoded with Go's `time.ParseDuration`, so that is the
//! grammar accepted here: a sequence of decimal numbers, each with a unit
//! (`ns`, `us`/`µs`, `ms`, `s`, `m`, `h`). A bare `0` is zero. Negative
//! durations are refused: no Istio field takes one.

use serde::{Deserialize, Deserializer};
use std::time::Duration;

/// Why a duration string was refused.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum DurationError {
    /// Empty string.
    #[error("empty duration")]
    Empty,
    /// A leading `-`.
    #[error("negative duration {0:?} is not allowed")]
    Negative(String),
    /// A number without a unit, e.g. `"2"`.
    #[error("missing unit in duration {0:?}; write e.g. \"2s\" or \"500ms\"")]
    MissingUnit(String),
    /// A unit Go does not know.
    #[error("unknown unit {unit:?} in duration {input:?}; use ns, us, ms, s, m or h")]
    UnknownUnit {
        /// The whole input.
        input: String,
        /// The unit found.
        unit: String,
    },
    /// Not a number where one is expected.
    #[error("invalid duration {0:?}")]
    Invalid(String),
    /// Larger than about 292 years, as Go refuses.
    #[error("duration {0:?} is too large")]
    Overflow(String),
}

const NANOS_MAX: u128 = i64::MAX as u128;

/// Parses a Go/Istio duration string.
///
/// # Errors
///
/// Returns a [`DurationError`] for empty, negative, unit-less, unknown-unit
/// or overflowing input.
///
/// # Examples
///
/// ```
/// use meshwasm_core::duration::parse_duration;
/// use std::time::Duration;
///
/// assert_eq!(parse_duration("1.5s"), Ok(Duration::from_millis(1500)));
/// assert_eq!(parse_duration("1m30s"), Ok(Duration::from_secs(90)));
/// assert!(parse_duration("-2s").is_err());
/// ```
pub fn parse_duration(input: &str) -> Result<Duration, DurationError> {
    let owned = || input.to_owned();
    let mut rest = input;
    if let Some(r) = rest.strip_prefix('+') {
        rest = r;
    } else if rest.starts_with('-') {
        return Err(DurationError::Negative(owned()));
    }
    if rest.is_empty() {
        return Err(if input.is_empty() {
            DurationError::Empty
        } else {
            DurationError::Invalid(owned())
        });
    }
    if rest == "0" {
        return Ok(Duration::ZERO);
    }
    let mut total: u128 = 0;
    while !rest.is_empty() {
        let int_len = rest.bytes().take_while(u8::is_ascii_digit).count();
        let (int_part, after_int) = rest.split_at(int_len);
        let (frac_part, after_num) = match after_int.strip_prefix('.') {
            Some(f) => {
                let n = f.bytes().take_while(u8::is_ascii_digit).count();
                f.split_at(n)
            }
            None => ("", after_int),
        };
        if int_part.is_empty() && frac_part.is_empty() {
            return Err(DurationError::Invalid(owned()));
        }
        let unit_len = after_num
            .char_indices()
            .find(|(_, c)| *c == '.' || c.is_ascii_digit())
            .map_or(after_num.len(), |(i, _)| i);
        let (unit, after_unit) = after_num.split_at(unit_len);
        if unit.is_empty() {
            return Err(DurationError::MissingUnit(owned()));
        }
        let scale: u128 = match unit {
            "ns" => 1,
            "us" | "\u{b5}s" | "\u{3bc}s" => 1_000,
            "ms" => 1_000_000,
            "s" => 1_000_000_000,
            "m" => 60_000_000_000,
            "h" => 3_600_000_000_000,
            _ => {
                return Err(DurationError::UnknownUnit {
                    input: owned(),
                    unit: unit.to_owned(),
                });
            }
        };
        let whole = digits_value(int_part).ok_or_else(|| DurationError::Overflow(owned()))?;
        let mut nanos = whole
            .checked_mul(scale)
            .ok_or_else(|| DurationError::Overflow(owned()))?;
        // Fraction, truncated to whole nanoseconds as Go does.
        let mut frac_scale = scale;
        for d in frac_part.bytes().take(40) {
            frac_scale /= 10;
            nanos += u128::from(d - b'0') * frac_scale;
            if frac_scale == 0 {
                break;
            }
        }
        total = total
            .checked_add(nanos)
            .filter(|t| *t <= NANOS_MAX)
            .ok_or_else(|| DurationError::Overflow(owned()))?;
        rest = after_unit;
    }
    let secs =
        u64::try_from(total / 1_000_000_000).map_err(|_| DurationError::Overflow(owned()))?;
    // The remainder is below 1e9 and always fits.
    let sub = u32::try_from(total % 1_000_000_000).unwrap_or(0);
    Ok(Duration::new(secs, sub))
}

fn digits_value(digits: &str) -> Option<u128> {
    digits.bytes().try_fold(0u128, |acc, d| {
        acc.checked_mul(10)?
            .checked_add(u128::from(d - b'0'))
            .filter(|v| *v <= NANOS_MAX)
    })
}

/// A duration field of an Istio resource, decoded from its string form.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord)]
pub struct IstioDuration(pub Duration);

impl<'de> Deserialize<'de> for IstioDuration {
    fn deserialize<D: Deserializer<'de>>(deserializer: D) -> Result<Self, D::Error> {
        // Refused inside the visitor, the deserializer places the error at
        // the string, so `config::parse` finds the field's path.
        struct Text;
        impl serde::de::Visitor<'_> for Text {
            type Value = IstioDuration;
            fn expecting(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
                f.write_str("a string")
            }
            fn visit_str<E: serde::de::Error>(self, text: &str) -> Result<IstioDuration, E> {
                parse_duration(text).map(IstioDuration).map_err(E::custom)
            }
        }
        deserializer.deserialize_str(Text)
    }
}

/// Checks the rule Istio applies to every duration it validates: at least
/// 1 ms, in whole milliseconds.
pub(crate) fn check_istio_millis(d: Duration) -> Result<Duration, String> {
    if d < Duration::from_millis(1) {
        return Err(format!("{d:?} is below the 1ms minimum"));
    }
    if !d.subsec_nanos().is_multiple_of(1_000_000) {
        return Err(format!(
            "{d:?} is finer than whole milliseconds, which Istio refuses"
        ));
    }
    Ok(d)
}
