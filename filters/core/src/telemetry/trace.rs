//! Trace context: every request gets an `x-request-id`, and a request that
//! arrives without a trace (no W3C `traceparent`, no B3 headers) starts
//! one, sampled by the configured percentage. Context that arrived is
//! forwarded unchanged.

use crate::percent::{PerMillion, Rng};

/// The trace headers a request arrived with.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct Arrived {
    /// `x-request-id` is present.
    pub request_id: bool,
    /// `traceparent` is present.
    pub traceparent: bool,
    /// `x-b3-traceid` or `b3` is present.
    pub b3: bool,
}

/// A random UUID version 4, as Envoy generates request ids.
///
/// # Examples
///
/// ```
/// use meshwasm_core::percent::Rng;
/// use meshwasm_core::telemetry::trace::uuid_v4;
///
/// let id = uuid_v4(&mut Rng::with_seed(1));
/// assert_eq!(id.len(), 36);
/// assert_eq!(&id[14..15], "4");
/// assert!(matches!(&id[19..20], "8" | "9" | "a" | "b"));
/// ```
pub fn uuid_v4(rng: &mut Rng) -> String {
    let high = (rng.bits() & !0xf000) | 0x4000;
    let low = (rng.bits() & !(0xc << 60)) | (0x8 << 60);
    let hex = format!("{high:016x}{low:016x}");
    format!(
        "{}-{}-{}-{}-{}",
        &hex[0..8],
        &hex[8..12],
        &hex[12..16],
        &hex[16..20],
        &hex[20..32]
    )
}

/// A new W3C `traceparent`: version 00, a random trace and span id, and
/// the sampled flag drawn with `sampling`.
///
/// # Examples
///
/// ```
/// use meshwasm_core::percent::{PerMillion, Rng};
/// use meshwasm_core::telemetry::trace::new_traceparent;
///
/// let header = new_traceparent(&mut Rng::with_seed(1), PerMillion::from_whole_percent(100));
/// let parts: Vec<&str> = header.split('-').collect();
/// assert_eq!((parts[0], parts[1].len(), parts[2].len(), parts[3]), ("00", 32, 16, "01"));
/// let unsampled = new_traceparent(&mut Rng::with_seed(1), PerMillion::from_whole_percent(0));
/// assert!(unsampled.ends_with("-00"));
/// ```
pub fn new_traceparent(rng: &mut Rng, sampling: PerMillion) -> String {
    // All-zero ids are invalid: the low bits are forced on.
    let trace = (rng.bits(), rng.bits() | 1);
    let span = rng.bits() | 1;
    let sampled = if sampling.sample(rng) { "01" } else { "00" };
    format!("00-{:016x}{:016x}-{span:016x}-{sampled}", trace.0, trace.1)
}

/// The headers to add to a request that arrived with `arrived`.
///
/// # Examples
///
/// ```
/// use meshwasm_core::percent::{PerMillion, Rng};
/// use meshwasm_core::telemetry::trace::{Arrived, headers_to_add};
///
/// let mut rng = Rng::with_seed(3);
/// let sampling = PerMillion::from_whole_percent(1);
/// let added = headers_to_add(Arrived::default(), &mut rng, sampling);
/// assert_eq!(added.iter().map(|(n, _)| *n).collect::<Vec<_>>(), ["x-request-id", "traceparent"]);
/// let b3 = Arrived { request_id: true, b3: true, ..Arrived::default() };
/// assert!(headers_to_add(b3, &mut rng, sampling).is_empty());
/// ```
pub fn headers_to_add(
    arrived: Arrived,
    rng: &mut Rng,
    sampling: PerMillion,
) -> Vec<(&'static str, String)> {
    let mut add = Vec::new();
    if !arrived.request_id {
        add.push(("x-request-id", uuid_v4(rng)));
    }
    if !arrived.traceparent && !arrived.b3 {
        add.push(("traceparent", new_traceparent(rng, sampling)));
    }
    add
}
