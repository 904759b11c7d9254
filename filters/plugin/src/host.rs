//! Core's ports over host calls, and the small host services every filter
//! uses: properties, shared data, metrics, bodies, the clock, entropy, the
//! log. None of them traps on a refused call.

use meshwasm_core::metrics::{MetricHost, MetricKind, MetricRef, MetricSpec, MetricTable};
use meshwasm_core::properties::Properties;
use meshwasm_core::shared_counter::{SharedData, SharedDataError};
use proxy_wasm::hostcalls;
use proxy_wasm::types::{BufferType, LogLevel, MetricType, Status};
use std::cell::RefCell;
use std::time::Duration;

/// A logger whose lines start with the filter's name.
#[derive(Debug, Clone, Copy)]
pub struct Log(pub &'static str);

impl Log {
    /// Logs one line; a refused log call has nowhere to go.
    pub fn line(self, level: LogLevel, message: &str) {
        let _ = hostcalls::log(level, &format!("{}: {message}", self.0));
    }
}

/// Envoy's attributes, one host call per read.
pub struct HostProperties;

impl Properties for HostProperties {
    fn property(&mut self, path: &[&str]) -> Option<Vec<u8>> {
        hostcalls::get_property(path.to_vec()).ok().flatten()
    }
}

/// Proxy-Wasm shared data, shared by every worker's VM with the same vm_id.
pub struct HostSharedData;

impl SharedData for HostSharedData {
    fn get(&self, key: &str) -> Result<Option<(Vec<u8>, u32)>, SharedDataError> {
        match hostcalls::get_shared_data(key) {
            Ok((Some(value), Some(cas))) => Ok(Some((value, cas))),
            Ok((Some(value), None)) => Ok(Some((value, 0))),
            // Envoy hands back an empty value as a null pointer, which the
            // SDK reads as no value: the key exists, and its token must
            // guard the next write, or that write is unconditional.
            Ok((None, Some(cas))) => Ok(Some((Vec::new(), cas))),
            Ok((None, None)) => Ok(None),
            Err(_) => Err(SharedDataError::Unavailable),
        }
    }

    fn set(&self, key: &str, value: &[u8], cas: u32) -> Result<(), SharedDataError> {
        match hostcalls::set_shared_data(key, Some(value), Some(cas)) {
            Ok(()) => Ok(()),
            Err(Status::CasMismatch) => Err(SharedDataError::CasMismatch),
            Err(_) => Err(SharedDataError::Unavailable),
        }
    }
}

/// Proxy-Wasm's metric calls, as core's port.
struct HostMetrics;

impl MetricHost for HostMetrics {
    fn define(&mut self, kind: MetricKind, name: &str) -> Option<u32> {
        let kind = match kind {
            MetricKind::Counter => MetricType::Counter,
            MetricKind::Gauge => MetricType::Gauge,
            MetricKind::Histogram => MetricType::Histogram,
        };
        hostcalls::define_metric(kind, name).ok()
    }

    fn increment(&mut self, id: u32, offset: i64) {
        let _ = hostcalls::increment_metric(id, offset);
    }

    fn record(&mut self, id: u32, value: u64) {
        let _ = hostcalls::record_metric(id, value);
    }
}

/// A plan's metrics on the host (Envoy shows them as `wasmcustom.<name>`).
/// Updates the host refuses are dropped.
#[derive(Debug)]
pub struct Metrics(RefCell<MetricTable>);

impl Metrics {
    /// Defines `specs` on the host: label-free metrics now, each series of
    /// a labelled one at its first use.
    pub fn define(specs: Vec<MetricSpec>) -> Metrics {
        Metrics(RefCell::new(MetricTable::define(specs, &mut HostMetrics)))
    }

    /// Adds `offset` to a label-free counter or gauge.
    pub fn add(&self, metric: MetricRef, offset: i64) {
        if let Ok(table) = self.0.try_borrow() {
            table.add(&mut HostMetrics, metric, offset);
        }
    }

    /// Records `value` in a label-free histogram.
    pub fn record(&self, metric: MetricRef, value: u64) {
        if let Ok(table) = self.0.try_borrow() {
            table.record(&mut HostMetrics, metric, value);
        }
    }

    /// Adds `offset` to the series of `metric` with these label values.
    pub fn add_series(&self, metric: MetricRef, labels: &[&str], offset: i64) {
        if let Ok(mut table) = self.0.try_borrow_mut() {
            table.add_series(&mut HostMetrics, metric, labels, offset);
        }
    }

    /// The host id of the series of `metric` with these label values, and
    /// whether it is the overflow series (see `MetricTable::resolve`).
    pub fn resolve(&self, metric: MetricRef, labels: &[&str]) -> (Option<u32>, bool) {
        self.0.try_borrow_mut().map_or((None, false), |mut t| {
            t.resolve(&mut HostMetrics, metric, labels)
        })
    }

    /// Adds `offset` to a counter by its host id.
    pub fn add_id(&self, id: u32, offset: i64) {
        HostMetrics.increment(id, offset);
    }

    /// Records `value` in a histogram by its host id.
    pub fn record_id(&self, id: u32, value: u64) {
        HostMetrics.record(id, value);
    }

    /// How many updates of every metric went to overflow series.
    pub fn total_overflowed(&self) -> u64 {
        self.0.try_borrow().map_or(0, |t| t.total_overflowed())
    }

    /// Records `value` in the series of a histogram with these label values.
    pub fn record_series(&self, metric: MetricRef, labels: &[&str], value: u64) {
        if let Ok(mut table) = self.0.try_borrow_mut() {
            table.record_series(&mut HostMetrics, metric, labels, value);
        }
    }
}

/// Counters whose names are known only at run time (Envoy's
/// `cluster.<cluster>.ratelimit.ok` is named after the request's cluster),
/// each defined on the host at its first use. At most [`Self::MAX`] names
/// are defined; further names are dropped, so traffic cannot grow them.
#[derive(Debug, Default)]
pub struct NamedCounters(RefCell<std::collections::HashMap<String, u32>>);

impl NamedCounters {
    /// The most names defined.
    pub const MAX: usize = 1024;

    /// Adds `offset` to the counter `name`.
    pub fn add(&self, name: &str, offset: i64) {
        let Ok(mut ids) = self.0.try_borrow_mut() else {
            return;
        };
        let id = match ids.get(name) {
            Some(id) => *id,
            None if ids.len() < Self::MAX => {
                let Ok(id) = hostcalls::define_metric(MetricType::Counter, name) else {
                    return;
                };
                ids.insert(name.to_owned(), id);
                id
            }
            None => return,
        };
        let _ = hostcalls::increment_metric(id, offset);
    }
}

/// `size` bytes of the request body from the start of what the host holds,
/// in the body callback.
///
/// # Errors
///
/// The host's status; the SDK's own getter traps on it.
pub fn request_body(size: usize) -> Result<Vec<u8>, Status> {
    hostcalls::get_buffer(BufferType::HttpRequestBody, 0, size).map(Option::unwrap_or_default)
}

/// The `size` bytes of a gRPC call's answer, in `on_grpc_call_response`.
///
/// # Errors
///
/// The host's status; the SDK's own getter traps on it.
pub fn grpc_response_body(size: usize) -> Result<Vec<u8>, Status> {
    hostcalls::get_buffer(BufferType::GrpcReceiveBuffer, 0, size).map(Option::unwrap_or_default)
}

/// The `size` bytes of an HTTP call's answer body, in `on_http_call_response`.
///
/// # Errors
///
/// The host's status; the SDK's own getter traps on it.
pub fn http_call_response_body(size: usize) -> Result<Vec<u8>, Status> {
    hostcalls::get_buffer(BufferType::HttpCallResponseBody, 0, size).map(Option::unwrap_or_default)
}

/// The host clock in nanoseconds since the Unix epoch.
pub fn now_nanos() -> u64 {
    hostcalls::get_current_time()
        .ok()
        .and_then(|t| t.duration_since(std::time::UNIX_EPOCH).ok())
        .map_or(0, |d| u64::try_from(d.as_nanos()).unwrap_or(u64::MAX))
}

thread_local! {
    /// The tick period each filter of the VM wants (the mesh module runs
    /// several in one root, which has one tick).
    static TICK_WANTS: RefCell<Vec<(&'static str, Duration)>> = const { RefCell::new(Vec::new()) };
}

/// Sets the tick period `owner` (a filter's name) wants of the root
/// context; `None` withdraws it. The root ticks at the shortest period
/// wanted, or not at all: a filter's `on_tick` may then run more often than
/// it asked, never less.
pub fn set_tick(owner: &'static str, period: Option<Duration>) {
    let shortest = TICK_WANTS.with_borrow_mut(|wants| {
        wants.retain(|(o, _)| *o != owner);
        if let Some(period) = period.filter(|p| !p.is_zero()) {
            wants.push((owner, period));
        }
        wants.iter().map(|(_, p)| *p).min()
    });
    let _ = hostcalls::set_tick_period(shortest.unwrap_or(Duration::ZERO));
}

/// A seed for core's RNG from the host's entropy (WASI `random_get`), one
/// draw per VM so that requests sample without crossing the VM boundary.
pub fn entropy_seed(log: Log) -> u64 {
    getrandom::u64().unwrap_or_else(|e| {
        log.line(
            LogLevel::Warn,
            &format!("random_get failed ({e}); seeding from the clock"),
        );
        now_nanos()
    })
}
