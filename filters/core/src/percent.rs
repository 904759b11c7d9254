//! Percentages and sampling: Istio's `percentage.value` (a double, 0–100)
//! and the legacy integer `percent`, decided with a fast seeded RNG.
//!
//! Istio hands Envoy a fraction per million, truncating `value * 10000`;
//! the same conversion here means 0.1 % is 1000 in a million, exactly as
//! in an Istio mesh.

use crate::error::{ConfigErrorKind, FieldPath};
use serde::Deserialize;

/// Istio's `Percent` message: `{"value": 12.5}`.
#[derive(Debug, Clone, Copy, PartialEq, Default, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Percent {
    /// Percentage in 0..=100; fractions are allowed.
    #[serde(default)]
    pub value: f64,
}

/// Denominator of [`PerMillion`].
pub const MILLION: u32 = 1_000_000;

/// A probability as a fraction of one million, as Envoy's `FractionalPercent`
/// with the `MILLION` denominator.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord)]
pub struct PerMillion(u32);

impl PerMillion {
    /// Never.
    pub const ZERO: PerMillion = PerMillion(0);
    /// Always.
    pub const ALWAYS: PerMillion = PerMillion(MILLION);

    /// Converts a percentage as Istio does: `uint32(value * 10000)`.
    ///
    /// # Errors
    ///
    /// [`ConfigErrorKind::PercentOutOfRange`] for values outside 0..=100 and NaN.
    ///
    /// # Examples
    ///
    /// ```
    /// use meshwasm_core::percent::PerMillion;
    /// assert_eq!(PerMillion::from_percent(0.1).unwrap().numerator(), 1_000);
    /// assert!(PerMillion::from_percent(150.0).is_err());
    /// ```
    pub fn from_percent(value: f64) -> Result<Self, ConfigErrorKind> {
        if !(0.0..=100.0).contains(&value) {
            return Err(ConfigErrorKind::PercentOutOfRange { value });
        }
        // In range, so the product is within 0..=1e6 and the cast is exact truncation.
        Ok(PerMillion((value * 10_000.0) as u32))
    }

    /// A fraction given in millionths, capped at one million.
    pub fn from_millionths(value: u32) -> Self {
        PerMillion(value.min(MILLION))
    }

    /// A whole percentage, 0..=100, e.g. from a header.
    pub fn from_whole_percent(value: u32) -> Self {
        PerMillion(value.min(100) * 10_000)
    }

    /// The numerator over one million.
    pub fn numerator(self) -> u32 {
        self.0
    }

    /// Draws once: true with this probability.
    pub fn sample(self, rng: &mut Rng) -> bool {
        match self.0 {
            0 => false,
            MILLION => true,
            n => rng.below_million() < n,
        }
    }
}

pub(crate) fn compile_percent(
    path: &FieldPath<'_>,
    p: &Percent,
) -> Result<PerMillion, crate::ConfigError> {
    PerMillion::from_percent(p.value).map_err(|kind| path.field("value").error(kind))
}

/// A fast seeded random number generator (wyrand).
///
/// Filters seed it once per VM from the host's entropy (WASI `random_get`),
/// so no request pays for a host call; tests seed it with a constant.
#[derive(Debug, Clone)]
pub struct Rng(fastrand::Rng);

impl Rng {
    /// A generator with the given seed; the same seed gives the same draws.
    ///
    /// # Examples
    ///
    /// ```
    /// use meshwasm_core::percent::Rng;
    /// let (mut a, mut b) = (Rng::with_seed(7), Rng::with_seed(7));
    /// assert_eq!(a.below_million(), b.below_million());
    /// ```
    pub fn with_seed(seed: u64) -> Self {
        Rng(fastrand::Rng::with_seed(seed))
    }

    /// A uniform draw from 0..1_000_000.
    pub fn below_million(&mut self) -> u32 {
        self.0.u32(0..MILLION)
    }

    /// 64 uniform random bits (request ids, trace and span ids).
    pub fn bits(&mut self) -> u64 {
        self.0.u64(..)
    }
}
