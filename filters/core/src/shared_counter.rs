//! A counter shared by every worker thread's VM, kept in Proxy-Wasm shared
//! data and changed only by compare-and-swap, so a limit such as
//! `maxActiveFaults` holds exactly across Envoy's workers.

/// Shared-data access, implemented by the filter over the host calls.
pub trait SharedData {
    /// The value and its CAS token, or `None` if the key does not exist.
    ///
    /// # Errors
    ///
    /// [`SharedDataError::Unavailable`] if the host refuses.
    fn get(&self, key: &str) -> Result<Option<(Vec<u8>, u32)>, SharedDataError>;

    /// Writes the value if the key's CAS token is still `cas` (0 writes unconditionally).
    ///
    /// # Errors
    ///
    /// [`SharedDataError::CasMismatch`] if another writer got there first.
    fn set(&self, key: &str, value: &[u8], cas: u32) -> Result<(), SharedDataError>;
}

/// Why a shared-data operation failed.
#[derive(Debug, Clone, Copy, PartialEq, Eq, thiserror::Error)]
pub enum SharedDataError {
    /// Another writer changed the value since it was read.
    #[error("compare-and-swap lost to another writer")]
    CasMismatch,
    /// The host refused the operation.
    #[error("shared data unavailable")]
    Unavailable,
    /// The stored value is not a counter.
    #[error("shared counter holds {0} bytes, not 8")]
    Corrupt(usize),
    /// Contention did not let up within the retry budget.
    #[error("compare-and-swap kept failing")]
    Contended,
}

/// CAS attempts before giving up; a worker losing this many races in a row
/// skips the fault rather than spin.
const MAX_ATTEMPTS: usize = 32;

/// A named counter in shared data.
///
/// # Examples
///
/// ```
/// use meshwasm_core::shared_counter::{SharedCounter, SharedData, SharedDataError};
/// use std::{cell::RefCell, collections::HashMap};
///
/// #[derive(Default)]
/// struct Map(RefCell<HashMap<String, (Vec<u8>, u32)>>);
/// impl SharedData for Map {
///     fn get(&self, k: &str) -> Result<Option<(Vec<u8>, u32)>, SharedDataError> {
///         Ok(self.0.borrow().get(k).cloned())
///     }
///     fn set(&self, k: &str, v: &[u8], cas: u32) -> Result<(), SharedDataError> {
///         let mut m = self.0.borrow_mut();
///         let next = m.get(k).map_or(1, |(_, c)| c + 1);
///         if cas != 0 && m.get(k).is_some_and(|(_, c)| *c != cas) {
///             return Err(SharedDataError::CasMismatch);
///         }
///         m.insert(k.to_owned(), (v.to_vec(), next));
///         Ok(())
///     }
/// }
///
/// let store = Map::default();
/// let active = SharedCounter::new("active");
/// assert_eq!(active.try_increment_below(&store, 1), Ok(true));
/// assert_eq!(active.try_increment_below(&store, 1), Ok(false));
/// active.decrement(&store).unwrap();
/// assert_eq!(active.value(&store), Ok(0));
/// ```
#[derive(Debug, Clone)]
pub struct SharedCounter {
    key: String,
}

impl SharedCounter {
    /// A counter stored under `key`.
    pub fn new(key: impl Into<String>) -> Self {
        SharedCounter { key: key.into() }
    }

    /// The shared-data key.
    pub fn key(&self) -> &str {
        &self.key
    }

    /// Creates the counter at 0 if it does not exist yet.
    ///
    /// # Errors
    ///
    /// A [`SharedDataError`] from the store.
    pub fn ensure_exists(&self, store: &impl SharedData) -> Result<(), SharedDataError> {
        match store.get(&self.key)? {
            Some(_) => Ok(()),
            None => store.set(&self.key, &0u64.to_le_bytes(), 0),
        }
    }

    /// The current value.
    ///
    /// # Errors
    ///
    /// A [`SharedDataError`] from the store, or [`SharedDataError::Corrupt`].
    pub fn value(&self, store: &impl SharedData) -> Result<u64, SharedDataError> {
        Ok(self.read(store)?.0)
    }

    /// Adds one if the value is below `limit`; returns whether it did.
    ///
    /// # Errors
    ///
    /// A [`SharedDataError`]; the counter is then unchanged.
    pub fn try_increment_below(
        &self,
        store: &impl SharedData,
        limit: u64,
    ) -> Result<bool, SharedDataError> {
        self.update(store, |v| (v < limit).then(|| v + 1))
            .map(|changed| changed.is_some())
    }

    /// Subtracts one, stopping at zero.
    ///
    /// # Errors
    ///
    /// A [`SharedDataError`]; the counter is then unchanged.
    pub fn decrement(&self, store: &impl SharedData) -> Result<(), SharedDataError> {
        self.update(store, |v| Some(v.saturating_sub(1))).map(drop)
    }

    fn read(&self, store: &impl SharedData) -> Result<(u64, u32), SharedDataError> {
        match store.get(&self.key)? {
            None => Ok((0, 0)),
            Some((bytes, cas)) => {
                let raw: [u8; 8] = bytes
                    .as_slice()
                    .try_into()
                    .map_err(|_| SharedDataError::Corrupt(bytes.len()))?;
                Ok((u64::from_le_bytes(raw), cas))
            }
        }
    }

    fn update(
        &self,
        store: &impl SharedData,
        change: impl Fn(u64) -> Option<u64>,
    ) -> Result<Option<u64>, SharedDataError> {
        for _ in 0..MAX_ATTEMPTS {
            let (value, cas) = self.read(store)?;
            let Some(next) = change(value) else {
                return Ok(None);
            };
            match store.set(&self.key, &next.to_le_bytes(), cas) {
                Ok(()) => return Ok(Some(next)),
                Err(SharedDataError::CasMismatch) => continue,
                Err(e) => return Err(e),
            }
        }
        Err(SharedDataError::Contended)
    }
}

/// Shared data in memory, with the compare-and-swap rules of Envoy's: a
/// write with `cas` 0 is unconditional, any other must carry the key's
/// current token. For tests, and for state that only one VM reads.
///
/// # Examples
///
/// ```
/// use meshwasm_core::shared_counter::{MemorySharedData, SharedData, SharedDataError};
///
/// let store = MemorySharedData::default();
/// store.set("k", b"1", 0).unwrap();
/// let (_, cas) = store.get("k").unwrap().unwrap();
/// store.set("k", b"2", cas).unwrap();
/// assert_eq!(store.set("k", b"3", cas), Err(SharedDataError::CasMismatch));
/// ```
#[derive(Debug, Default)]
pub struct MemorySharedData {
    map: std::cell::RefCell<std::collections::HashMap<String, (Vec<u8>, u32)>>,
    next_cas: std::cell::Cell<u32>,
}

impl MemorySharedData {
    /// The number of keys.
    pub fn len(&self) -> usize {
        self.map.borrow().len()
    }

    /// Whether no key is stored.
    pub fn is_empty(&self) -> bool {
        self.len() == 0
    }

    /// Drops every key.
    pub fn clear(&self) {
        self.map.borrow_mut().clear();
    }
}

impl SharedData for MemorySharedData {
    fn get(&self, key: &str) -> Result<Option<(Vec<u8>, u32)>, SharedDataError> {
        Ok(self.map.borrow().get(key).cloned())
    }

    fn set(&self, key: &str, value: &[u8], cas: u32) -> Result<(), SharedDataError> {
        let mut map = self.map.borrow_mut();
        if cas != 0 && map.get(key).is_some_and(|(_, current)| *current != cas) {
            return Err(SharedDataError::CasMismatch);
        }
        let next = self.next_cas.get().wrapping_add(1).max(1);
        self.next_cas.set(next);
        map.insert(key.to_owned(), (value.to_vec(), next));
        Ok(())
    }
}

/// FNV-1a, 64 bits: a stable hash for naming shared-data keys after a configuration.
pub fn fnv1a64(bytes: &[u8]) -> u64 {
    bytes.iter().fold(0xcbf2_9ce4_8422_2325, |h, b| {
        (h ^ u64::from(*b)).wrapping_mul(0x0000_0100_0000_01b3)
    })
}
