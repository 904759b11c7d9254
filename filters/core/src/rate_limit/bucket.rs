//! Token buckets as Envoy's local rate limiter keeps them, stored where
//! every worker sees them.
//!
//! Envoy's bucket refills continuously: a bucket with capacity `max`
//! gaining `tokens_per_fill` every `fill_interval` holds
//! `min(max, elapsed × tokens_per_fill / fill_interval)` tokens, where
//! `elapsed` is the time since it was last empty. So its whole state is one
//! number, the instant it was (or would have been) empty, and a draw is a
//! compare-and-swap of that number. Here it is kept in Proxy-Wasm shared
//! data, so all of Envoy's worker threads draw on the same bucket.
//!
//! A bucket that has refilled to its capacity holds nothing a new bucket
//! would not: that is what makes it safe to give its slot to another key
//! (see [`DynamicBuckets`]).

use crate::shared_counter::{SharedData, SharedDataError};
use std::time::Duration;

/// CAS attempts per draw before giving up on a contended bucket.
const MAX_ATTEMPTS: usize = 64;

/// A bucket's shape.
///
/// # Examples
///
/// ```
/// use meshwasm_core::rate_limit::bucket::{BucketSpec, Draw};
/// use std::time::Duration;
///
/// let now = 1_700_000_000_000_000_000; // ns since the epoch
/// let spec = BucketSpec::new(2, 1, Duration::from_secs(1));
/// let Draw::Taken { empty_since, remaining, .. } = spec.draw(None, now) else { panic!() };
/// assert_eq!(remaining, 1);
/// let Draw::Taken { empty_since, remaining, reset } = spec.draw(Some(empty_since), now) else { panic!() };
/// assert_eq!((remaining, reset), (0, Duration::from_secs(1)));
/// assert!(matches!(spec.draw(Some(empty_since), now + 500_000_000), Draw::Refused { .. }));
/// assert!(matches!(spec.draw(Some(empty_since), now + 1_000_000_000), Draw::Taken { .. }));
/// ```
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct BucketSpec {
    max_tokens: u32,
    tokens_per_fill: u32,
    fill_interval_ns: u64,
}

/// The outcome of taking one token.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Draw {
    /// A token was taken; the bucket's new state and what it has left.
    Taken {
        /// The new state to store.
        empty_since: u64,
        /// Whole tokens left.
        remaining: u32,
        /// Time until the next whole token, zero if one is left.
        reset: Duration,
    },
    /// The bucket is empty; its state is unchanged.
    Refused {
        /// Time until the next whole token.
        reset: Duration,
    },
}

impl BucketSpec {
    /// A bucket of `max_tokens` that gains `tokens_per_fill` every
    /// `fill_interval`. Zeros are raised to the least meaningful value; the
    /// configuration refuses them before this.
    pub fn new(max_tokens: u32, tokens_per_fill: u32, fill_interval: Duration) -> Self {
        BucketSpec {
            max_tokens: max_tokens.max(1),
            tokens_per_fill: tokens_per_fill.max(1),
            fill_interval_ns: u64::try_from(fill_interval.as_nanos())
                .unwrap_or(u64::MAX)
                .max(1),
        }
    }

    /// The capacity, as `x-ratelimit-limit` reports it.
    pub fn max_tokens(&self) -> u32 {
        self.max_tokens
    }

    /// Orders buckets by fill rate, slowest first, as Envoy draws them.
    pub fn cmp_fill_rate(&self, other: &BucketSpec) -> std::cmp::Ordering {
        let mine = u128::from(self.tokens_per_fill) * u128::from(other.fill_interval_ns);
        let theirs = u128::from(other.tokens_per_fill) * u128::from(self.fill_interval_ns);
        mine.cmp(&theirs)
    }

    /// Credit in units of token × fill interval (in ns), so that the
    /// arithmetic stays exact in integers.
    fn credit(&self, empty_since: Option<u64>, now: u64) -> u128 {
        let cap = u128::from(self.max_tokens) * u128::from(self.fill_interval_ns);
        match empty_since {
            None => cap,
            Some(t) => {
                (u128::from(now.saturating_sub(t)) * u128::from(self.tokens_per_fill)).min(cap)
            }
        }
    }

    /// Whether a bucket in this state at `now` is as full as a new one.
    pub fn is_full(&self, empty_since: Option<u64>, now: u64) -> bool {
        let cap = u128::from(self.max_tokens) * u128::from(self.fill_interval_ns);
        self.credit(empty_since, now) >= cap
    }

    /// Takes one token from a bucket last empty at `empty_since` (`None`:
    /// a new, full bucket), at `now` (ns).
    pub fn draw(&self, empty_since: Option<u64>, now: u64) -> Draw {
        let token = u128::from(self.fill_interval_ns);
        let per_ns = u128::from(self.tokens_per_fill);
        let credit = self.credit(empty_since, now);
        let until_token = |credit: u128| {
            let ns = (token - credit % token).div_ceil(per_ns);
            Duration::from_nanos(u64::try_from(ns).unwrap_or(u64::MAX))
        };
        if credit < token {
            return Draw::Refused {
                reset: until_token(credit),
            };
        }
        let left = credit - token;
        let remaining = u32::try_from(left / token).unwrap_or(u32::MAX);
        let back = u64::try_from(left / per_ns).unwrap_or(u64::MAX);
        Draw::Taken {
            empty_since: now.saturating_sub(back),
            remaining,
            reset: if remaining > 0 {
                Duration::ZERO
            } else {
                until_token(left)
            },
        }
    }
}

/// What a draw on a stored bucket tells the response headers.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct BucketState {
    /// Whether the token was taken.
    pub allowed: bool,
    /// Whole tokens left.
    pub remaining: u32,
    /// Time until the next whole token.
    pub reset: Duration,
}

impl From<Draw> for BucketState {
    fn from(draw: Draw) -> Self {
        match draw {
            Draw::Taken {
                remaining, reset, ..
            } => BucketState {
                allowed: true,
                remaining,
                reset,
            },
            Draw::Refused { reset } => BucketState {
                allowed: false,
                remaining: 0,
                reset,
            },
        }
    }
}

/// Takes a token from the bucket stored under `key`, by compare-and-swap.
/// A missing key is a new, full bucket.
///
/// # Errors
///
/// The store's error, [`SharedDataError::Corrupt`] for a value that is not
/// a bucket, or [`SharedDataError::Contended`] after repeated lost races.
///
/// # Examples
///
/// ```
/// use meshwasm_core::rate_limit::bucket::{BucketSpec, draw_shared};
/// use meshwasm_core::shared_counter::MemorySharedData;
/// use std::time::Duration;
///
/// let store = MemorySharedData::default();
/// let spec = BucketSpec::new(1, 1, Duration::from_secs(60));
/// let now = 1_700_000_000_000_000_000;
/// assert!(draw_shared(&store, "b", &spec, now).unwrap().allowed);
/// assert!(!draw_shared(&store, "b", &spec, now + 1).unwrap().allowed);
/// ```
pub fn draw_shared(
    store: &impl SharedData,
    key: &str,
    spec: &BucketSpec,
    now: u64,
) -> Result<BucketState, SharedDataError> {
    for _ in 0..MAX_ATTEMPTS {
        let (state, cas) = match store.get(key)? {
            None => (None, 0),
            // Created up front and not drawn yet: a new bucket.
            Some((bytes, cas)) if bytes.is_empty() => (None, cas),
            Some((bytes, cas)) => (Some(decode_time(&bytes)?), cas),
        };
        match spec.draw(state, now) {
            taken @ Draw::Taken { empty_since, .. } => {
                match store.set(key, &empty_since.to_le_bytes(), cas) {
                    Ok(()) => return Ok(taken.into()),
                    Err(SharedDataError::CasMismatch) => continue,
                    Err(e) => return Err(e),
                }
            }
            refused => return Ok(refused.into()),
        }
    }
    Err(SharedDataError::Contended)
}

fn decode_time(bytes: &[u8]) -> Result<u64, SharedDataError> {
    let raw: [u8; 8] = bytes
        .get(..8)
        .and_then(|b| b.try_into().ok())
        .ok_or(SharedDataError::Corrupt(bytes.len()))?;
    Ok(u64::from_le_bytes(raw))
}

/// Buckets made on demand, one per descriptor value (a client address, a
/// header value), in a fixed number of shared-data slots so that no flood
/// of new values can grow memory.
///
/// A value's bucket lives in one of [`PROBES`] slots chosen by its hash.
/// Each slot stores its owner's value beside the bucket, so two values
/// never share a bucket by accident. A slot changes owner only when its
/// bucket has refilled to capacity, which is exactly the state a new
/// bucket starts in: taking it over resets nothing. When every candidate
/// slot holds a bucket still in use, the newcomer draws on one overflow
/// bucket shared by all newcomers, so a flood of new keys is limited as one
/// client and cannot evict anyone's bucket.
///
/// # Examples
///
/// ```
/// use meshwasm_core::rate_limit::bucket::{BucketSpec, DynamicBuckets};
/// use meshwasm_core::shared_counter::MemorySharedData;
/// use std::time::Duration;
///
/// let store = MemorySharedData::default();
/// let spec = BucketSpec::new(1, 1, Duration::from_secs(60));
/// let buckets = DynamicBuckets::new("rl.d0", 8);
/// let now = 1_700_000_000_000_000_000;
/// assert!(buckets.draw(&store, b"10.0.0.1", &spec, now).unwrap().allowed);
/// assert!(!buckets.draw(&store, b"10.0.0.1", &spec, now).unwrap().allowed);
/// assert!(buckets.draw(&store, b"10.0.0.2", &spec, now).unwrap().allowed);
/// ```
#[derive(Debug, Clone)]
pub struct DynamicBuckets {
    prefix: String,
    slots: u32,
}

/// Slots a value may live in.
pub const PROBES: u32 = 4;

/// Values longer than this are stored as their head and a hash of the whole.
const OWNER_MAX: usize = 256;

impl DynamicBuckets {
    /// `slots` buckets under keys `<prefix>.<n>`, plus `<prefix>.overflow`.
    pub fn new(prefix: impl Into<String>, slots: u32) -> Self {
        DynamicBuckets {
            prefix: prefix.into(),
            slots: slots.max(1),
        }
    }

    /// The shared-data keys of every slot, for creating them up front: a
    /// key that exists is only ever written by compare-and-swap.
    pub fn keys(&self) -> impl Iterator<Item = String> + '_ {
        (0..self.slots)
            .map(|n| self.slot_key(n))
            .chain(std::iter::once(self.overflow_key()))
    }

    /// Creates every slot that does not exist yet, empty.
    ///
    /// # Errors
    ///
    /// The store's error.
    pub fn create(&self, store: &impl SharedData) -> Result<(), SharedDataError> {
        for key in self.keys() {
            if store.get(&key)?.is_none() {
                store.set(&key, &[], 0)?;
            }
        }
        Ok(())
    }

    fn slot_key(&self, n: u32) -> String {
        format!("{}.{n}", self.prefix)
    }

    fn overflow_key(&self) -> String {
        format!("{}.overflow", self.prefix)
    }

    /// Takes a token from the bucket of `value`.
    ///
    /// # Errors
    ///
    /// As [`draw_shared`].
    pub fn draw(
        &self,
        store: &impl SharedData,
        value: &[u8],
        spec: &BucketSpec,
        now: u64,
    ) -> Result<BucketState, SharedDataError> {
        let owner = owner_bytes(value);
        let start = (crate::shared_counter::fnv1a64(&owner) % u64::from(self.slots)) as u32;
        for probe in 0..PROBES.min(self.slots) {
            let key = self.slot_key((start + probe) % self.slots);
            if let Some(state) = self.draw_slot(store, &key, &owner, spec, now)? {
                return Ok(state);
            }
        }
        draw_shared(store, &self.overflow_key(), spec, now)
    }

    /// Draws from the slot if `owner` holds it or may take it; `None` if
    /// another value's bucket is still in use there.
    fn draw_slot(
        &self,
        store: &impl SharedData,
        key: &str,
        owner: &[u8],
        spec: &BucketSpec,
        now: u64,
    ) -> Result<Option<BucketState>, SharedDataError> {
        for _ in 0..MAX_ATTEMPTS {
            let (bytes, cas) = store.get(key)?.unwrap_or_default();
            let state = match bytes.get(8..) {
                Some(held_by) if held_by == owner => Some(decode_time(&bytes)?),
                Some(_) if !spec.is_full(Some(decode_time(&bytes)?), now) => return Ok(None),
                // Empty, or another value's bucket back at capacity.
                _ => None,
            };
            let draw = spec.draw(state, now);
            let Draw::Taken { empty_since, .. } = draw else {
                return Ok(Some(draw.into()));
            };
            let mut value = Vec::with_capacity(8 + owner.len());
            value.extend_from_slice(&empty_since.to_le_bytes());
            value.extend_from_slice(owner);
            match store.set(key, &value, cas) {
                Ok(()) => return Ok(Some(draw.into())),
                Err(SharedDataError::CasMismatch) => continue,
                Err(e) => return Err(e),
            }
        }
        Err(SharedDataError::Contended)
    }
}

/// A slot's owner: the value itself, or for a long value its head and the
/// hash of the whole, so a slot's size stays bounded.
fn owner_bytes(value: &[u8]) -> Vec<u8> {
    if value.len() <= OWNER_MAX {
        return value.to_vec();
    }
    let mut owner = value[..OWNER_MAX - 17].to_vec();
    owner.push(0);
    owner.extend_from_slice(&crate::shared_counter::fnv1a64(value).to_le_bytes());
    owner.extend_from_slice(&(value.len() as u64).to_le_bytes());
    owner
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::shared_counter::MemorySharedData;

    const SEC: u64 = 1_000_000_000;
    /// A realistic clock: nanoseconds since the epoch.
    const T0: u64 = 1_700_000_000 * SEC;

    #[test]
    fn refill_is_continuous_and_capped() {
        let spec = BucketSpec::new(10, 5, Duration::from_secs(1));
        // Empty at t=0: after 0.2 s one token (5 per second), after 10 s capped at 10.
        assert!(matches!(spec.draw(Some(0), SEC / 10), Draw::Refused { .. }));
        let Draw::Taken { remaining, .. } = spec.draw(Some(0), SEC / 5) else {
            panic!("one token after 200 ms")
        };
        assert_eq!(remaining, 0);
        let Draw::Taken { remaining, .. } = spec.draw(Some(0), 10 * SEC) else {
            panic!("full")
        };
        assert_eq!(remaining, 9);
    }

    #[test]
    fn reset_counts_up_to_the_next_whole_token() {
        let spec = BucketSpec::new(3, 1, Duration::from_secs(3));
        // Empty since 0, asked at 1.3 s: the next token is 1.7 s away.
        assert_eq!(
            spec.draw(Some(0), 1_300_000_000),
            Draw::Refused {
                reset: Duration::from_millis(1700)
            }
        );
    }

    #[test]
    fn a_refused_draw_leaves_the_bucket_alone() {
        let store = MemorySharedData::default();
        let spec = BucketSpec::new(1, 1, Duration::from_secs(1));
        assert!(draw_shared(&store, "k", &spec, T0).unwrap().allowed);
        let before = store.get("k").unwrap();
        assert!(
            !draw_shared(&store, "k", &spec, T0 + SEC / 2)
                .unwrap()
                .allowed
        );
        assert_eq!(store.get("k").unwrap(), before);
        assert!(draw_shared(&store, "k", &spec, T0 + SEC).unwrap().allowed);
    }

    #[test]
    fn a_flood_of_new_values_neither_grows_the_store_nor_evicts_a_live_bucket() {
        let store = MemorySharedData::default();
        let spec = BucketSpec::new(2, 1, Duration::from_secs(60));
        let buckets = DynamicBuckets::new("d", 16);
        buckets.create(&store).unwrap();
        let victim = b"victim";
        assert!(buckets.draw(&store, victim, &spec, T0).unwrap().allowed);
        for i in 0..10_000u32 {
            let _ = buckets.draw(&store, format!("flood-{i}").as_bytes(), &spec, T0 + 1);
        }
        assert_eq!(store.len(), 17);
        // The victim's bucket kept its state: one token left, then none.
        assert!(buckets.draw(&store, victim, &spec, T0 + 2).unwrap().allowed);
        assert!(!buckets.draw(&store, victim, &spec, T0 + 3).unwrap().allowed);
    }

    #[test]
    fn a_slot_back_at_capacity_changes_owner() {
        let store = MemorySharedData::default();
        let spec = BucketSpec::new(1, 1, Duration::from_secs(1));
        let buckets = DynamicBuckets::new("d", 1);
        assert!(buckets.draw(&store, b"a", &spec, T0).unwrap().allowed);
        // Slot busy: "b" draws on the overflow bucket.
        assert!(buckets.draw(&store, b"b", &spec, T0).unwrap().allowed);
        assert!(!buckets.draw(&store, b"c", &spec, T0).unwrap().allowed);
        // A second later "a" is full again, so "c" may take the slot.
        assert!(
            buckets
                .draw(&store, b"c", &spec, T0 + 2 * SEC)
                .unwrap()
                .allowed
        );
        assert_eq!(&store.get("d.0").unwrap().unwrap().0[8..], b"c");
    }

    #[test]
    fn long_values_are_bounded_but_still_told_apart() {
        let a = vec![b'a'; 10_000];
        let mut b = a.clone();
        b[9_999] = b'b';
        assert_eq!(owner_bytes(&a).len(), OWNER_MAX);
        assert_ne!(owner_bytes(&a), owner_bytes(&b));
    }
}
