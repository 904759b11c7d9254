//! What one Envoy process shares between its Wasm VMs: shared data and
//! shared queues (both partitioned by `vm_id`) and the metric store.
//!
//! Every [`crate::Host`] gets its own [`Proxy`] unless it is given one, so
//! parallel tests never see each other's state; two hosts given the same
//! `Proxy` behave like two Envoy worker threads.

use crate::types::{MetricType, Status};
use std::collections::{BTreeMap, HashMap, VecDeque};
use std::sync::{Arc, Mutex, MutexGuard};

/// The state Envoy keeps per process rather than per VM.
///
/// Cloning gives another handle to the same state.
///
/// # Examples
///
/// ```
/// use sdk_host::Proxy;
/// let proxy = Proxy::new();
/// proxy.set_shared_data("vm", "key", b"value").unwrap();
/// let (value, cas) = proxy.shared_data("vm", "key").unwrap();
/// assert_eq!(value, b"value");
/// assert!(cas > 0);
/// assert_eq!(proxy.shared_data("other-vm", "key"), None);
/// ```
#[derive(Clone, Default)]
pub struct Proxy {
    inner: Arc<Mutex<ProxyState>>,
}

#[derive(Default)]
pub(crate) struct ProxyState {
    data: HashMap<(String, Vec<u8>), (Vec<u8>, u32)>,
    /// The last CAS value handed out; Envoy keeps one counter for all keys.
    cas: u32,
    queues: Vec<Queue>,
    queue_names: HashMap<(String, Vec<u8>), u32>,
    /// Envoy keeps one stat per name and kind.
    metrics: BTreeMap<(String, u32), MetricValue>,
    /// `proxy_on_queue_ready` owed to other VMs: (vm, root context, token).
    pub(crate) queue_notices: Vec<(u64, u32, u32)>,
}

pub(crate) struct Queue {
    /// The VM and root context that registered it, told by `on_queue_ready`.
    pub(crate) owner: (u64, u32),
    pub(crate) items: VecDeque<Vec<u8>>,
}

/// The value of a metric as Envoy's stats would show it.
///
/// ```no_run
/// # let module = sdk_host::WasmModule::from_file("filter.wasm")?;
/// use sdk_host::MetricValue;
/// let host = sdk_host::Host::builder().start(&module)?;
/// match host.metric("my_filter.latency_ms") {
///     Some(MetricValue::Histogram(values)) => assert!(values.iter().all(|v| *v < 1000)),
///     other => panic!("not a histogram: {other:?}"),
/// }
/// # Ok::<(), Box<dyn std::error::Error>>(())
/// ```
#[derive(Debug, Clone, PartialEq)]
pub enum MetricValue {
    /// A counter's total.
    Counter(u64),
    /// A gauge's current value.
    Gauge(i64),
    /// Every value recorded in a histogram, in order.
    Histogram(Vec<u64>),
}

impl Proxy {
    /// A proxy with nothing shared yet.
    ///
    /// ```
    /// let proxy = sdk_host::Proxy::new();
    /// assert!(proxy.metrics().is_empty());
    /// ```
    pub fn new() -> Proxy {
        Proxy::default()
    }

    pub(crate) fn lock(&self) -> MutexGuard<'_, ProxyState> {
        // A test that panicked while holding the lock leaves consistent
        // data behind (every update is a single assignment).
        self.inner
            .lock()
            .unwrap_or_else(std::sync::PoisonError::into_inner)
    }

    /// Queue notifications for VMs other than the one that enqueued: the
    /// owner's host delivers them when its current call settles.
    pub(crate) fn notify_queue(&self, vm: u64, root: u32, token: u32) {
        self.lock().queue_notices.push((vm, root, token));
    }

    /// Takes the queue notifications addressed to `vm`, as (root, token).
    pub(crate) fn take_queue_notices(&self, vm: u64) -> Vec<(u32, u32)> {
        let mut state = self.lock();
        if state.queue_notices.is_empty() {
            return Vec::new();
        }
        let mut mine = Vec::new();
        state.queue_notices.retain(|(owner, root, token)| {
            if *owner == vm {
                mine.push((*root, *token));
                false
            } else {
                true
            }
        });
        mine
    }

    /// The value and CAS of `key` in the shared data of `vm_id`.
    ///
    /// ```
    /// let proxy = sdk_host::Proxy::new();
    /// assert_eq!(proxy.shared_data("vm", "k"), None);
    /// assert!(proxy.set_shared_data("vm", "k", b"v").is_ok());
    /// assert_eq!(proxy.shared_data("vm", "k").map(|(v, _)| v), Some(b"v".to_vec()));
    /// assert_eq!(proxy.shared_data("other-vm", "k"), None); // partitioned by vm_id
    /// ```
    pub fn shared_data(&self, vm_id: &str, key: &str) -> Option<(Vec<u8>, u32)> {
        self.lock().get(vm_id, key.as_bytes()).ok()
    }

    /// How many keys the shared data of `vm_id` holds, and their keys' and
    /// values' bytes: what a filter's shared state costs the proxy.
    ///
    /// ```
    /// let proxy = sdk_host::Proxy::new();
    /// assert!(proxy.set_shared_data("vm", "k", b"value").is_ok());
    /// assert_eq!(proxy.shared_data_size("vm"), (1, 6));
    /// ```
    pub fn shared_data_size(&self, vm_id: &str) -> (usize, usize) {
        let state = self.lock();
        state
            .data
            .iter()
            .filter(|((vm, _), _)| vm == vm_id)
            .fold((0, 0), |(keys, bytes), ((_, k), (v, _))| {
                (keys + 1, bytes + k.len() + v.len())
            })
    }

    /// Writes shared data as a guest would with CAS 0 (unconditionally).
    ///
    /// # Errors
    ///
    /// Never for CAS 0; the `Result` mirrors the hostcall.
    ///
    /// ```
    /// let proxy = sdk_host::Proxy::new();
    /// assert!(proxy.set_shared_data("vm", "limit", b"10").is_ok());
    /// assert!(proxy.set_shared_data("vm", "limit", b"20").is_ok());
    /// assert_eq!(proxy.shared_data("vm", "limit").map(|(v, _)| v), Some(b"20".to_vec()));
    /// ```
    pub fn set_shared_data(&self, vm_id: &str, key: &str, value: &[u8]) -> Result<(), Status> {
        self.lock().set(vm_id, key.as_bytes(), value, 0)
    }

    /// Every metric defined so far, by name (a name defined as two kinds
    /// appears as the counter, else the gauge).
    ///
    /// ```
    /// # let module = sdk_host::doc_support::module("count.wasm", r#"
    /// #   (import "env" "proxy_define_metric" (func $def (param i32 i32 i32 i32) (result i32)))
    /// #   (import "env" "proxy_increment_metric" (func $inc (param i32 i64) (result i32)))
    /// #   (data (i32.const 64) "hits")
    /// #   (func (export "proxy_on_vm_start") (param i32 i32) (result i32)
    /// #     (drop (call $def (i32.const 0) (i32.const 64) (i32.const 4) (i32.const 128)))
    /// #     (drop (call $inc (i32.load (i32.const 128)) (i64.const 3))) (i32.const 1))"#)?;
    /// use sdk_host::MetricValue;
    /// // The guest defines counter "hits" and adds 3 to it in proxy_on_vm_start.
    /// let host = sdk_host::Host::builder().start(&module)?;
    /// let metrics = host.proxy().metrics();
    /// assert_eq!(metrics.get("hits"), Some(&MetricValue::Counter(3)));
    /// # Ok::<(), Box<dyn std::error::Error>>(())
    /// ```
    pub fn metrics(&self) -> BTreeMap<String, MetricValue> {
        let state = self.lock();
        let mut all = BTreeMap::new();
        for ((name, _), value) in state.metrics.iter().rev() {
            all.insert(name.clone(), value.clone());
        }
        all
    }

    /// The items waiting in the queue `name` of `vm_id`.
    ///
    /// ```
    /// let proxy = sdk_host::Proxy::new();
    /// // Queues exist once a guest registers them (proxy_register_shared_queue).
    /// assert_eq!(proxy.queue_items("vm", "events"), None);
    /// ```
    pub fn queue_items(&self, vm_id: &str, name: &str) -> Option<Vec<Vec<u8>>> {
        let state = self.lock();
        let token = state
            .queue_names
            .get(&(vm_id.to_string(), name.as_bytes().to_vec()))?;
        let queue = state.queues.get(*token as usize - 1)?;
        Some(queue.items.iter().cloned().collect())
    }
}

impl ProxyState {
    pub(crate) fn get(&self, vm_id: &str, key: &[u8]) -> Result<(Vec<u8>, u32), Status> {
        self.data
            .get(&(vm_id.to_string(), key.to_vec()))
            .cloned()
            .ok_or(Status::NotFound)
    }

    /// Envoy's rule: CAS 0 always writes; any other CAS must match the
    /// current one, except that a missing key is created whatever the CAS.
    pub(crate) fn set(
        &mut self,
        vm_id: &str,
        key: &[u8],
        value: &[u8],
        cas: u32,
    ) -> Result<(), Status> {
        let slot = (vm_id.to_string(), key.to_vec());
        if cas != 0
            && let Some((_, current)) = self.data.get(&slot)
            && *current != cas
        {
            return Err(Status::CasMismatch);
        }
        self.cas = self.cas.wrapping_add(1);
        if self.cas == 0 {
            self.cas = 1;
        }
        self.data.insert(slot, (value.to_vec(), self.cas));
        Ok(())
    }

    /// Registers (or re-registers) a queue; its token never changes.
    pub(crate) fn register_queue(&mut self, vm_id: &str, name: &[u8], owner: (u64, u32)) -> u32 {
        let slot = (vm_id.to_string(), name.to_vec());
        if let Some(token) = self.queue_names.get(&slot) {
            if let Some(queue) = self.queues.get_mut(*token as usize - 1) {
                queue.owner = owner;
            }
            return *token;
        }
        self.queues.push(Queue {
            owner,
            items: VecDeque::new(),
        });
        let token = self.queues.len() as u32;
        self.queue_names.insert(slot, token);
        token
    }

    pub(crate) fn resolve_queue(&self, vm_id: &str, name: &[u8]) -> Result<u32, Status> {
        self.queue_names
            .get(&(vm_id.to_string(), name.to_vec()))
            .copied()
            .ok_or(Status::NotFound)
    }

    pub(crate) fn queue(&mut self, token: u32) -> Result<&mut Queue, Status> {
        let index = (token as usize).checked_sub(1).ok_or(Status::NotFound)?;
        self.queues.get_mut(index).ok_or(Status::NotFound)
    }

    pub(crate) fn metric(&mut self, name: &str, kind: MetricType) -> Option<&mut MetricValue> {
        self.metrics.get_mut(&(name.to_string(), kind as u32))
    }

    /// The metric called `name`: the counter, else the gauge, else the histogram.
    pub(crate) fn metrics_get(&self, name: &str) -> Option<MetricValue> {
        (0..3).find_map(|kind| self.metrics.get(&(name.to_string(), kind)).cloned())
    }

    pub(crate) fn define_metric(&mut self, name: &str, kind: MetricType) {
        self.metrics
            .entry((name.to_string(), kind as u32))
            .or_insert_with(|| match kind {
                MetricType::Counter => MetricValue::Counter(0),
                MetricType::Gauge => MetricValue::Gauge(0),
                MetricType::Histogram => MetricValue::Histogram(Vec::new()),
            });
    }
}
