//! The Proxy-Wasm host calls every meshwasm filter makes, in one place.
//!
//! The filters are thin: they ask `meshwasm-core` for a decision and carry
//! it out here. This crate holds what the Rust SDK does not offer in the
//! shape needed:
//! - header maps read in one call and parsed in place (the SDK copies
//!   every header into a `String` and panics on values that are not UTF-8);
//! - local responses with details and a gRPC status;
//! - core's ports ([`RequestAttributes`], [`SharedData`]) over host calls;
//! - header edits from core's [`HeaderOp`]s, one host call each.
//!
//! Nothing here panics: a refused host call is logged or reported to the caller.

use meshwasm_core::header_map::{HeaderMap, serialize_pairs};
use meshwasm_core::header_ops::HeaderOp;
use meshwasm_core::request::RequestAttributes;
use meshwasm_core::shared_counter::{SharedData, SharedDataError};
use proxy_wasm::hostcalls;
use proxy_wasm::types::{LogLevel, MapType, Status};
use std::borrow::Cow;
use std::ptr::null_mut;

pub use proxy_wasm::types::MapType as HeaderMapKind;

#[link(wasm_import_module = "env")]
unsafe extern "C" {
    fn proxy_get_header_map_pairs(
        map_type: MapType,
        data: *mut *mut u8,
        size: *mut usize,
    ) -> Status;
    fn proxy_send_local_response(
        status_code: u32,
        details_data: *const u8,
        details_size: usize,
        body_data: *const u8,
        body_size: usize,
        headers_data: *const u8,
        headers_size: usize,
        grpc_status: i32,
    ) -> Status;
}

/// A whole header map in one host call, read in place.
///
/// # Errors
///
/// The host's status, or a description of a malformed map.
pub fn header_map(kind: MapType) -> Result<HeaderMap, String> {
    let mut data: *mut u8 = null_mut();
    let mut size: usize = 0;
    // SAFETY: the host writes a buffer it allocated through the SDK's
    // proxy_on_memory_allocate (a Vec with capacity == size) and its size.
    let status = unsafe { proxy_get_header_map_pairs(kind, &mut data, &mut size) };
    match status {
        Status::Ok if data.is_null() => Ok(HeaderMap::default()),
        Status::Ok => {
            // SAFETY: see above; ownership of the buffer passes to us.
            let buf = unsafe { Vec::from_raw_parts(data, size, size) };
            HeaderMap::parse(buf).map_err(|e| e.to_string())
        }
        other => Err(format!("proxy_get_header_map_pairs returned {other:?}")),
    }
}

/// A local response for the current stream.
#[derive(Debug, Clone, Copy, Default)]
pub struct LocalReply<'a> {
    /// HTTP status.
    pub status: u16,
    /// Envoy's response code details (`%RESPONSE_CODE_DETAILS%`).
    pub details: &'a str,
    /// Body.
    pub body: &'a [u8],
    /// gRPC status for gRPC clients, if any.
    pub grpc_status: Option<u32>,
}

/// Answers the current stream instead of forwarding it. Envoy sends the
/// answer when the current callback returns.
///
/// # Errors
///
/// The host's status when it refuses.
pub fn send_local_reply<'h>(
    reply: LocalReply<'_>,
    headers: impl IntoIterator<Item = (&'h str, &'h str)>,
) -> Result<(), Status> {
    let headers = serialize_pairs(headers);
    let grpc_status = reply
        .grpc_status
        .and_then(|s| i32::try_from(s).ok())
        .unwrap_or(-1);
    // SAFETY: every pointer/length pair describes a live slice.
    let status = unsafe {
        proxy_send_local_response(
            u32::from(reply.status),
            reply.details.as_ptr(),
            reply.details.len(),
            reply.body.as_ptr(),
            reply.body.len(),
            headers.as_ptr(),
            headers.len(),
            grpc_status,
        )
    };
    match status {
        Status::Ok => Ok(()),
        other => Err(other),
    }
}

/// Carries out header edits on a map of the current stream, one host call
/// each; stops at the first the host refuses.
///
/// # Errors
///
/// The refused edit's header name and the host's status.
pub fn apply_edits<'a>(
    kind: MapType,
    edits: impl IntoIterator<Item = HeaderOp<'a>>,
) -> Result<(), String> {
    for edit in edits {
        let result = match &edit {
            HeaderOp::Remove(name) => hostcalls::set_map_value_bytes(kind, name, None),
            HeaderOp::Set(name, value) => {
                hostcalls::set_map_value_bytes(kind, name, Some(value.as_bytes()))
            }
            HeaderOp::Add(name, value) => {
                hostcalls::add_map_value_bytes(kind, name, value.as_bytes())
            }
        };
        result.map_err(|status| format!("editing {} failed: {status:?}", edit.name()))?;
    }
    Ok(())
}

/// A logger whose lines start with the filter's name.
#[derive(Debug, Clone, Copy)]
pub struct Log(pub &'static str);

impl Log {
    /// Logs one line; a refused log call has nowhere to go.
    pub fn line(self, level: LogLevel, message: &str) {
        let _ = hostcalls::log(level, &format!("{}: {message}", self.0));
    }
}

/// The request of the current stream, fetched from the host only as a
/// decision asks: the whole header map at the first header asked for.
pub struct HostRequest {
    log: Log,
    headers: Option<HeaderMap>,
    port: Option<Option<u32>>,
    source: Option<Option<String>>,
}

impl HostRequest {
    /// A request that logs read failures with `log`.
    pub fn new(log: Log) -> Self {
        HostRequest {
            log,
            headers: None,
            port: None,
            source: None,
        }
    }

    /// The request headers, read now if no decision has asked yet.
    pub fn headers(&mut self) -> &HeaderMap {
        let log = self.log;
        self.headers.get_or_insert_with(|| {
            header_map(MapType::HttpRequestHeaders).unwrap_or_else(|e| {
                log.line(
                    LogLevel::Error,
                    &format!("cannot read request headers: {e}"),
                );
                HeaderMap::default()
            })
        })
    }
}

impl RequestAttributes for HostRequest {
    fn header(&mut self, name: &str) -> Option<Cow<'_, str>> {
        self.headers().get(name)
    }

    fn destination_port(&mut self) -> Option<u32> {
        *self.port.get_or_insert_with(|| {
            // Envoy encodes integer attributes as 8 little-endian bytes.
            let bytes = hostcalls::get_property(vec!["destination", "port"]).ok()??;
            let raw: [u8; 8] = bytes.as_slice().try_into().ok()?;
            u32::try_from(i64::from_le_bytes(raw)).ok()
        })
    }

    fn source_address(&mut self) -> Option<Cow<'_, str>> {
        self.source
            .get_or_insert_with(|| {
                let bytes = hostcalls::get_property(vec!["source", "address"]).ok()??;
                String::from_utf8(bytes).ok()
            })
            .as_deref()
            .map(Cow::Borrowed)
    }
}

/// Proxy-Wasm shared data, shared by every worker's VM with the same vm_id.
pub struct HostSharedData;

impl SharedData for HostSharedData {
    fn get(&self, key: &str) -> Result<Option<(Vec<u8>, u32)>, SharedDataError> {
        match hostcalls::get_shared_data(key) {
            Ok((Some(value), Some(cas))) => Ok(Some((value, cas))),
            Ok((Some(value), None)) => Ok(Some((value, 0))),
            Ok((None, _)) => Ok(None),
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

/// The host clock in nanoseconds since the Unix epoch.
pub fn now_nanos() -> u64 {
    hostcalls::get_current_time()
        .ok()
        .and_then(|t| t.duration_since(std::time::UNIX_EPOCH).ok())
        .map_or(0, |d| u64::try_from(d.as_nanos()).unwrap_or(u64::MAX))
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

/// A counter or gauge, defined once; updates that the host refuses are dropped.
#[derive(Debug, Clone, Copy)]
pub struct Metric(Option<u32>);

impl Metric {
    /// Defines a counter (Envoy shows it as `wasmcustom.<name>`).
    pub fn counter(name: &str) -> Metric {
        Metric(hostcalls::define_metric(proxy_wasm::types::MetricType::Counter, name).ok())
    }

    /// Defines a gauge.
    pub fn gauge(name: &str) -> Metric {
        Metric(hostcalls::define_metric(proxy_wasm::types::MetricType::Gauge, name).ok())
    }

    /// Adds `offset` (negative for gauges going down).
    pub fn add(self, offset: i64) {
        if let Some(id) = self.0 {
            let _ = hostcalls::increment_metric(id, offset);
        }
    }
}
