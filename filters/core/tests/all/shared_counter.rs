//! The CAS counter behind maxActiveFaults.

use meshwasm_core::shared_counter::{SharedCounter, SharedData, SharedDataError, fnv1a64};
use std::cell::{Cell, RefCell};
use std::collections::HashMap;
use wasm_bindgen_test::wasm_bindgen_test;

/// Shared data with Envoy's CAS rules; can lose a number of races on demand.
#[derive(Default)]
struct Store {
    map: RefCell<HashMap<String, (Vec<u8>, u32)>>,
    next_cas: Cell<u32>,
    races_to_lose: Cell<u32>,
}

impl SharedData for Store {
    fn get(&self, key: &str) -> Result<Option<(Vec<u8>, u32)>, SharedDataError> {
        Ok(self.map.borrow().get(key).cloned())
    }
    fn set(&self, key: &str, value: &[u8], cas: u32) -> Result<(), SharedDataError> {
        if self.races_to_lose.get() > 0 {
            self.races_to_lose.set(self.races_to_lose.get() - 1);
            return Err(SharedDataError::CasMismatch);
        }
        let mut map = self.map.borrow_mut();
        if cas != 0 && map.get(key).is_some_and(|(_, c)| *c != cas) {
            return Err(SharedDataError::CasMismatch);
        }
        self.next_cas.set(self.next_cas.get() + 1);
        map.insert(key.to_owned(), (value.to_vec(), self.next_cas.get()));
        Ok(())
    }
}

#[wasm_bindgen_test(unsupported = test)]
fn limit_holds_and_decrement_frees_a_slot() {
    let store = Store::default();
    let c = SharedCounter::new("k");
    c.ensure_exists(&store).unwrap();
    assert_eq!(
        (0..5)
            .filter(|_| c.try_increment_below(&store, 3).unwrap())
            .count(),
        3
    );
    c.decrement(&store).unwrap();
    assert!(c.try_increment_below(&store, 3).unwrap());
    assert_eq!(c.value(&store), Ok(3));
    for _ in 0..10 {
        c.decrement(&store).unwrap();
    }
    assert_eq!(c.value(&store), Ok(0), "never below zero");
}

#[wasm_bindgen_test(unsupported = test)]
fn lost_races_are_retried_then_given_up() {
    let store = Store::default();
    let c = SharedCounter::new("k");
    store.races_to_lose.set(5);
    assert_eq!(c.try_increment_below(&store, 10), Ok(true));
    store.races_to_lose.set(1000);
    assert_eq!(
        c.try_increment_below(&store, 10),
        Err(SharedDataError::Contended)
    );
    store.races_to_lose.set(0);
    assert_eq!(c.value(&store), Ok(1));
}

#[wasm_bindgen_test(unsupported = test)]
fn a_foreign_value_is_reported_not_overwritten() {
    let store = Store::default();
    store.set("k", b"abc", 0).unwrap();
    assert_eq!(
        SharedCounter::new("k").try_increment_below(&store, 10),
        Err(SharedDataError::Corrupt(3))
    );
}

#[wasm_bindgen_test(unsupported = test)]
fn key_hash_is_stable() {
    assert_eq!(fnv1a64(b""), 0xcbf2_9ce4_8422_2325);
    assert_eq!(fnv1a64(b"a"), 0xaf63_dc4c_8601_ec8c);
}
