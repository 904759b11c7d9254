//! Deadlines of delayed requests and the tick that resumes them.

use meshwasm_core::delay_queue::{DelayQueue, Tick};
use std::time::Duration;
use wasm_bindgen_test::wasm_bindgen_test;

const MS: u64 = 1_000_000;

#[wasm_bindgen_test(unsupported = test)]
fn an_earlier_deadline_rearms_a_later_one_does_not() {
    let mut q = DelayQueue::default();
    assert_eq!(
        q.schedule(1, 0, Duration::from_millis(100), ()),
        Some(Tick::After(Duration::from_millis(100)))
    );
    assert_eq!(q.schedule(2, 10 * MS, Duration::from_millis(200), ()), None);
    assert_eq!(
        q.schedule(3, 20 * MS, Duration::from_millis(30), ()),
        Some(Tick::After(Duration::from_millis(30)))
    );
    assert_eq!(q.len(), 3);
}

#[wasm_bindgen_test(unsupported = test)]
fn ticks_round_up_and_never_resume_early_beyond_the_slack() {
    let mut q = DelayQueue::default();
    // 2.3 ms away: tick after 3 ms, not 2.
    assert_eq!(
        q.schedule(1, 0, Duration::from_micros(2_300), ()),
        Some(Tick::After(Duration::from_millis(3)))
    );
    assert!(q.take_due(MS).is_empty());
    assert_eq!(q.rearm(MS), Tick::After(Duration::from_millis(2)));
    assert_eq!(
        q.take_due(2_000_000).len(),
        1,
        "within the half-millisecond slack"
    );
    assert_eq!(q.rearm(3 * MS), Tick::Off);
}

#[wasm_bindgen_test(unsupported = test)]
fn due_entries_come_out_in_deadline_order_with_their_payload() {
    let mut q = DelayQueue::default();
    q.schedule(10, 0, Duration::from_millis(30), "c");
    q.schedule(11, 0, Duration::from_millis(10), "a");
    q.schedule(12, 0, Duration::from_millis(20), "b");
    assert_eq!(q.take_due(25 * MS), vec![(11, "a"), (12, "b")]);
    assert_eq!(q.rearm(25 * MS), Tick::After(Duration::from_millis(5)));
}

#[wasm_bindgen_test(unsupported = test)]
fn a_cancelled_stream_is_never_resumed() {
    let mut q = DelayQueue::default();
    q.schedule(1, 0, Duration::from_millis(5), ());
    assert!(q.cancel(1));
    assert!(!q.cancel(1));
    assert!(q.take_due(u64::MAX).is_empty());
    assert_eq!(q.rearm(10 * MS), Tick::Off);
    // Rescheduling the same context replaces its deadline.
    q.schedule(2, 0, Duration::from_millis(5), ());
    q.schedule(2, 0, Duration::from_millis(50), ());
    assert!(q.take_due(10 * MS).is_empty());
    assert_eq!(q.len(), 1);
}
