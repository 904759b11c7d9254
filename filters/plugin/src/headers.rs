//! Header maps: read in one host call and parsed in place, edited one
//! host call per edit, and seen by core as a request.
//!
//! The SDK copies every header into a `String` and panics on a value that
//! is not UTF-8; a header map here is one `proxy_get_header_map_pairs` and
//! one parse, whatever the bytes.

use crate::host::{HostProperties, Log};
use meshwasm_core::header_map::HeaderMap;
use meshwasm_core::header_ops::HeaderOp;
use meshwasm_core::properties::attributes;
use meshwasm_core::request::RequestAttributes;
use proxy_wasm::hostcalls;
use proxy_wasm::types::{LogLevel, MapType, Status};
use std::borrow::Cow;
use std::cell::Cell;
use std::ptr::null_mut;

pub use proxy_wasm::types::MapType as HeaderMapKind;

#[link(wasm_import_module = "env")]
unsafe extern "C" {
    fn proxy_get_header_map_pairs(
        map_type: MapType,
        data: *mut *mut u8,
        size: *mut usize,
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

thread_local! {
    /// How many edits of request headers [`apply_edits`] made in this VM:
    /// a [`HostRequest`] that read the map before the last one reads it
    /// again, so a stage sees the edits of the stages before it. One VM is
    /// one thread, and a callback runs one stream at a time.
    static REQUEST_EDITS: Cell<u64> = const { Cell::new(0) };
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
        if kind == MapType::HttpRequestHeaders {
            REQUEST_EDITS.set(REQUEST_EDITS.get().wrapping_add(1));
        }
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

/// The request of the current stream, fetched from the host only as a
/// decision asks: the whole header map at the first header asked for (and
/// again after [`apply_edits`] changed it), each property at its first use.
pub struct HostRequest {
    log: Log,
    /// The map, and the count of request edits when it was read.
    headers: Option<(HeaderMap, u64)>,
    port: Option<Option<u32>>,
    source: Option<Option<String>>,
    cluster: Option<Option<String>>,
}

impl HostRequest {
    /// A request that logs read failures with `log`.
    pub fn new(log: Log) -> Self {
        HostRequest {
            log,
            headers: None,
            port: None,
            source: None,
            cluster: None,
        }
    }

    /// The request headers, read now if no decision has asked yet or
    /// they were edited since.
    pub fn headers(&mut self) -> &HeaderMap {
        let log = self.log;
        let edits = REQUEST_EDITS.get();
        if self
            .headers
            .as_ref()
            .is_some_and(|(_, read_at)| *read_at != edits)
        {
            self.headers = None;
        }
        let (map, _) = self.headers.get_or_insert_with(|| {
            let map = header_map(MapType::HttpRequestHeaders).unwrap_or_else(|e| {
                log.line(
                    LogLevel::Error,
                    &format!("cannot read request headers: {e}"),
                );
                HeaderMap::default()
            });
            (map, edits)
        });
        map
    }
}

impl RequestAttributes for HostRequest {
    fn header(&mut self, name: &str) -> Option<Cow<'_, str>> {
        self.headers().get(name)
    }

    fn destination_port(&mut self) -> Option<u32> {
        *self.port.get_or_insert_with(|| {
            let port = attributes::DESTINATION_PORT.read(&mut HostProperties)?;
            u32::try_from(port).ok()
        })
    }

    fn source_address(&mut self) -> Option<Cow<'_, str>> {
        self.source
            .get_or_insert_with(|| attributes::SOURCE_ADDRESS.read(&mut HostProperties))
            .as_deref()
            .map(Cow::Borrowed)
    }

    fn first_header(&mut self, name: &str) -> Option<Cow<'_, str>> {
        self.headers().first(name).map(String::from_utf8_lossy)
    }

    fn route_cluster(&mut self) -> Option<Cow<'_, str>> {
        self.cluster
            .get_or_insert_with(|| attributes::CLUSTER_NAME.read(&mut HostProperties))
            .as_deref()
            .map(Cow::Borrowed)
    }
}
