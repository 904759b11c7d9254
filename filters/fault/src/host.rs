//! The host side of the filter: the few host calls the SDK does not offer
//! in the shape needed, and core's ports implemented over host calls.

use meshwasm_core::fault::{ABORT_BODY, ABORT_DETAILS, Abort};
use meshwasm_core::header_map::HeaderMap;
use meshwasm_core::request::RequestAttributes;
use meshwasm_core::shared_counter::{SharedData, SharedDataError};
use proxy_wasm::hostcalls;
use proxy_wasm::types::{LogLevel, MapType, Status};
use std::borrow::Cow;
use std::ptr::null_mut;

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

/// The request headers in one host call, read in place. The SDK's
/// variants copy every header and panic on values that are not UTF-8.
fn request_headers() -> Result<HeaderMap, String> {
    let mut data: *mut u8 = null_mut();
    let mut size: usize = 0;
    // SAFETY: the host writes a buffer it allocated through the SDK's
    // proxy_on_memory_allocate (a Vec with capacity == size) and its size.
    let status =
        unsafe { proxy_get_header_map_pairs(MapType::HttpRequestHeaders, &mut data, &mut size) };
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

/// Answers the current stream as Envoy's fault filter does: the status, the
/// body "fault filter abort", and for gRPC aborts the gRPC status, which
/// Envoy turns into a trailers-only `grpc-status` response for gRPC clients.
pub(crate) fn send_abort(abort: Abort) {
    let grpc_status = abort
        .grpc_status()
        .and_then(|s| i32::try_from(s).ok())
        .unwrap_or(-1);
    let no_headers = meshwasm_core::header_map::serialize_pairs::<&str, &str>([]);
    // SAFETY: every pointer/length pair describes a live slice.
    let status = unsafe {
        proxy_send_local_response(
            u32::from(abort.http_status()),
            ABORT_DETAILS.as_ptr(),
            ABORT_DETAILS.len(),
            ABORT_BODY.as_ptr(),
            ABORT_BODY.len(),
            no_headers.as_ptr(),
            no_headers.len(),
            grpc_status,
        )
    };
    if status != Status::Ok {
        log(
            LogLevel::Error,
            &format!("local response for an abort failed: {status:?}"),
        );
    }
}

/// Logs with the filter's prefix; a refused log call has nowhere to go.
pub(crate) fn log(level: LogLevel, message: &str) {
    let _ = hostcalls::log(level, &format!("meshwasm fault: {message}"));
}

/// The request being decided on, fetched from the host only as rules ask.
#[derive(Default)]
pub(crate) struct HostRequest {
    headers: Option<HeaderMap>,
    port: Option<Option<u32>>,
}

impl RequestAttributes for HostRequest {
    fn header(&mut self, name: &str) -> Option<Cow<'_, str>> {
        let headers = self.headers.get_or_insert_with(|| {
            request_headers().unwrap_or_else(|e| {
                log(
                    LogLevel::Error,
                    &format!("cannot read request headers: {e}"),
                );
                HeaderMap::default()
            })
        });
        headers.get(name)
    }

    fn destination_port(&mut self) -> Option<u32> {
        *self.port.get_or_insert_with(|| {
            // Envoy encodes integer attributes as 8 little-endian bytes.
            let bytes = hostcalls::get_property(vec!["destination", "port"]).ok()??;
            let raw: [u8; 8] = bytes.as_slice().try_into().ok()?;
            u32::try_from(i64::from_le_bytes(raw)).ok()
        })
    }
}

/// Proxy-Wasm shared data, shared by every worker's VM with the same vm_id.
pub(crate) struct HostSharedData;

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
pub(crate) fn now_nanos() -> u64 {
    hostcalls::get_current_time()
        .ok()
        .and_then(|t| t.duration_since(std::time::UNIX_EPOCH).ok())
        .map_or(0, |d| u64::try_from(d.as_nanos()).unwrap_or(u64::MAX))
}
