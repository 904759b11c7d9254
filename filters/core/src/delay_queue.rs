//! Requests held for a delay, and the tick period that wakes the filter in time.
//!
//! Proxy-Wasm gives a root context one periodic tick. To resume each delayed
//! request on time without polling, the filter arms the tick for the nearest
//! deadline, re-arming after each tick; this queue keeps the deadlines and
//! says which period to set. Times are nanoseconds on the host clock.

use std::collections::{BTreeMap, HashMap};
use std::time::Duration;

/// A tick that fires this close before a deadline resumes the request
/// rather than re-arming for less than a millisecond.
pub const EARLY_SLACK_NANOS: u64 = 500_000;

const MILLI: u64 = 1_000_000;

/// What to set the root context's tick period to.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Tick {
    /// Disable the tick (period 0).
    Off,
    /// Tick after this long (whole milliseconds, at least 1).
    After(Duration),
}

/// Pending delays keyed by stream context id.
///
/// # Examples
///
/// ```
/// use meshwasm_core::delay_queue::{DelayQueue, Tick};
/// use std::time::Duration;
///
/// let mut q = DelayQueue::default();
/// let now = 1_000_000_000;
/// // The first delay arms the tick; a later deadline does not re-arm it.
/// assert_eq!(q.schedule(7, now, Duration::from_millis(50), "a"), Some(Tick::After(Duration::from_millis(50))));
/// assert_eq!(q.schedule(8, now, Duration::from_millis(80), "b"), None);
/// let due = q.take_due(now + 50_000_000);
/// assert_eq!(due, vec![(7, "a")]);
/// assert_eq!(q.rearm(now + 50_000_000), Tick::After(Duration::from_millis(30)));
/// ```
#[derive(Debug, Clone)]
pub struct DelayQueue<T> {
    by_deadline: BTreeMap<(u64, u32), T>,
    deadline_of: HashMap<u32, u64>,
    armed_for: Option<u64>,
}

impl<T> Default for DelayQueue<T> {
    fn default() -> Self {
        DelayQueue {
            by_deadline: BTreeMap::new(),
            deadline_of: HashMap::new(),
            armed_for: None,
        }
    }
}

impl<T> DelayQueue<T> {
    /// Holds `context_id` for `delay` from `now`, keeping `payload` for when
    /// it is due. Returns the tick to set if the new deadline is the nearest;
    /// `None` means the armed tick already comes in time.
    pub fn schedule(
        &mut self,
        context_id: u32,
        now: u64,
        delay: Duration,
        payload: T,
    ) -> Option<Tick> {
        let nanos = u64::try_from(delay.as_nanos()).unwrap_or(u64::MAX);
        let deadline = now.saturating_add(nanos);
        self.cancel(context_id);
        self.by_deadline.insert((deadline, context_id), payload);
        self.deadline_of.insert(context_id, deadline);
        match self.armed_for {
            Some(armed) if armed <= deadline => None,
            _ => Some(self.arm(now, deadline)),
        }
    }

    /// Forgets a context (its stream ended early); true if it was held.
    pub fn cancel(&mut self, context_id: u32) -> bool {
        match self.deadline_of.remove(&context_id) {
            Some(deadline) => self.by_deadline.remove(&(deadline, context_id)).is_some(),
            None => false,
        }
    }

    /// Removes and returns every context due at `now`, earliest first.
    pub fn take_due(&mut self, now: u64) -> Vec<(u32, T)> {
        let horizon = now.saturating_add(EARLY_SLACK_NANOS);
        let mut due = Vec::new();
        while let Some(entry) = self.by_deadline.first_entry() {
            if entry.key().0 > horizon {
                break;
            }
            let ((_, id), payload) = entry.remove_entry();
            self.deadline_of.remove(&id);
            due.push((id, payload));
        }
        due
    }

    /// The tick to set after a tick fired: the nearest deadline, or off.
    pub fn rearm(&mut self, now: u64) -> Tick {
        match self.by_deadline.keys().next().map(|(d, _)| *d) {
            Some(deadline) => self.arm(now, deadline),
            None => {
                self.armed_for = None;
                Tick::Off
            }
        }
    }

    /// True if the context is held.
    pub fn contains(&self, context_id: u32) -> bool {
        self.deadline_of.contains_key(&context_id)
    }

    /// Number of held requests.
    pub fn len(&self) -> usize {
        self.deadline_of.len()
    }

    /// True when no request is held.
    pub fn is_empty(&self) -> bool {
        self.deadline_of.is_empty()
    }

    fn arm(&mut self, now: u64, deadline: u64) -> Tick {
        // Round up: a tick must not come before the deadline it is for.
        let millis = deadline.saturating_sub(now).div_ceil(MILLI).max(1);
        self.armed_for = Some(now.saturating_add(millis * MILLI));
        Tick::After(Duration::from_millis(millis))
    }
}
