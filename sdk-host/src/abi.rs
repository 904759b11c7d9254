//! The 39 hostcalls of Proxy-Wasm 0.2.1 (and the 0.1.0 names that differ),
//! once for both front ends: arguments come in as guest addresses, are read
//! through [`Guest`], handed to the model in `state`, and results are
//! written back into guest memory the way Envoy writes them.

use crate::headers::HeaderMap;
use crate::properties::split_path;
use crate::state::{HostState, LocalResponse, MapAccess, parse_pairs};
use crate::types::{Status, StreamType};

/// Guest memory and allocator, as one front end reaches them.
pub(crate) trait Guest {
    fn state(&mut self) -> &mut HostState;
    /// Copies `len` bytes at `ptr` out of the guest.
    fn read(&mut self, ptr: u64, len: u64) -> Result<Vec<u8>, Status>;
    /// Copies bytes into the guest at `ptr`.
    fn write(&mut self, ptr: u64, bytes: &[u8]) -> Result<(), Status>;
    /// Bytes in a guest pointer or `size_t`: 4 in wasm32, 8 natively.
    fn word_size(&self) -> usize;
    /// Asks the guest's allocator for `size` bytes.
    fn allocate(&mut self, size: u64) -> Result<u64, Status>;
}

pub(crate) type HostResult = Result<(), Status>;

/// The status code a hostcall returns.
pub(crate) fn code(result: HostResult) -> u32 {
    match result {
        Ok(()) => Status::Ok as u32,
        Err(status) => status as u32,
    }
}

fn write_u32(g: &mut impl Guest, ptr: u64, value: u32) -> HostResult {
    g.write(ptr, &value.to_le_bytes())
}

fn write_u64(g: &mut impl Guest, ptr: u64, value: u64) -> HostResult {
    g.write(ptr, &value.to_le_bytes())
}

fn write_word(g: &mut impl Guest, ptr: u64, value: u64) -> HostResult {
    if g.word_size() == 4 {
        let value = u32::try_from(value).map_err(|_| Status::InvalidMemoryAccess)?;
        write_u32(g, ptr, value)
    } else {
        write_u64(g, ptr, value)
    }
}

/// Hands bytes to the guest as Envoy does: memory from the guest's own
/// allocator (the guest frees it), or a null pointer and size 0 when empty.
fn return_bytes(g: &mut impl Guest, bytes: &[u8], ptr_ptr: u64, size_ptr: u64) -> HostResult {
    let mut pointer = 0;
    if !bytes.is_empty() {
        pointer = g.allocate(bytes.len() as u64)?;
        g.write(pointer, bytes)?;
    }
    write_word(g, ptr_ptr, pointer)?;
    write_word(g, size_ptr, bytes.len() as u64)
}

fn narrow(value: u64) -> u32 {
    u32::try_from(value).unwrap_or(u32::MAX)
}

// --- logging, clock, ticks ---------------------------------------------

pub(crate) fn log(g: &mut impl Guest, level: u64, ptr: u64, len: u64) -> u32 {
    code((|| {
        let message = g.read(ptr, len)?;
        g.state().log(narrow(level), &message)
    })())
}

pub(crate) fn get_log_level(g: &mut impl Guest, ret: u64) -> u32 {
    let level = g.state().settings.log_level as u32;
    code(write_u32(g, ret, level))
}

pub(crate) fn get_current_time_nanoseconds(g: &mut impl Guest, ret: u64) -> u32 {
    let now = g.state().now_nanos();
    code(write_u64(g, ret, now))
}

pub(crate) fn set_tick_period_milliseconds(g: &mut impl Guest, period: u64) -> u32 {
    code(g.state().set_tick_period(narrow(period)))
}

// --- buffers -----------------------------------------------------------

pub(crate) fn get_buffer_bytes(
    g: &mut impl Guest,
    kind: u64,
    start: u64,
    max_size: u64,
    ret_ptr: u64,
    ret_size: u64,
) -> u32 {
    code((|| {
        let buffer = g.state().buffer(narrow(kind))?;
        let start = usize::try_from(start).map_err(|_| Status::BadArgument)?;
        let max_size = usize::try_from(max_size).map_err(|_| Status::BadArgument)?;
        // Envoy refuses only a range that overflows; it clamps the rest to
        // what is there (a start past the end reads nothing).
        let end = start.checked_add(max_size).ok_or(Status::BadArgument)?;
        let start = start.min(buffer.len());
        let end = end.min(buffer.len());
        return_bytes(g, &buffer[start..end], ret_ptr, ret_size)
    })())
}

pub(crate) fn set_buffer_bytes(
    g: &mut impl Guest,
    kind: u64,
    start: u64,
    size: u64,
    ptr: u64,
    len: u64,
) -> u32 {
    code((|| {
        let value = g.read(ptr, len)?;
        let start = usize::try_from(start).unwrap_or(usize::MAX);
        let size = usize::try_from(size).unwrap_or(usize::MAX);
        g.state().set_buffer(narrow(kind), start, size, &value)
    })())
}

pub(crate) fn get_buffer_status(
    g: &mut impl Guest,
    kind: u64,
    ret_size: u64,
    ret_flags: u64,
) -> u32 {
    code((|| {
        let size = g.state().buffer(narrow(kind))?.len();
        write_word(g, ret_size, size as u64)?;
        write_u32(g, ret_flags, 0)
    })())
}

// --- header maps -------------------------------------------------------

/// `proxy_get_header_map_size`: Envoy answers the map's `byteSize()`, the
/// sum of name and value lengths (not the serialized size the spec names).
pub(crate) fn get_header_map_size(g: &mut impl Guest, kind: u64, ret_size: u64) -> u32 {
    code((|| {
        let size = match g.state().map(narrow(kind), "proxy_get_header_map_size")? {
            MapAccess::Map(map) => map.byte_size(),
            MapAccess::Unavailable { .. } => return Err(Status::BadArgument),
        };
        write_word(g, ret_size, size as u64)
    })())
}

/// `proxy_get_header_map_pairs`: a map Envoy does not expose here reads as empty.
pub(crate) fn get_header_map_pairs(
    g: &mut impl Guest,
    kind: u64,
    ret_ptr: u64,
    ret_size: u64,
) -> u32 {
    code((|| {
        let bytes = match g.state().map(narrow(kind), "proxy_get_header_map_pairs")? {
            MapAccess::Map(map) => map.serialize(),
            MapAccess::Unavailable { .. } => Vec::new(),
        };
        return_bytes(g, &bytes, ret_ptr, ret_size)
    })())
}

pub(crate) fn set_header_map_pairs(g: &mut impl Guest, kind: u64, ptr: u64, len: u64) -> u32 {
    code((|| {
        let bytes = g.read(ptr, len)?;
        g.state().set_map_pairs(narrow(kind), &bytes)
    })())
}

fn read_name(g: &mut impl Guest, ptr: u64, len: u64) -> Result<String, Status> {
    let bytes = g.read(ptr, len)?;
    String::from_utf8(bytes).map_err(|_| Status::BadArgument)
}

pub(crate) fn get_header_map_value(
    g: &mut impl Guest,
    kind: u64,
    key_ptr: u64,
    key_len: u64,
    ret_ptr: u64,
    ret_size: u64,
) -> u32 {
    code((|| {
        let key = read_name(g, key_ptr, key_len)?;
        let value = match g.state().map(narrow(kind), "proxy_get_header_map_value")? {
            MapAccess::Map(map) => map.get_bytes(&key).ok_or(Status::NotFound)?.to_vec(),
            MapAccess::Unavailable { log_phase: true } => return Err(Status::NotFound),
            MapAccess::Unavailable { log_phase: false } => return Err(Status::BadArgument),
        };
        return_bytes(g, &value, ret_ptr, ret_size)
    })())
}

/// Which edit `edit_header_map_value` makes.
pub(crate) enum Edit {
    Add,
    Replace,
    Remove,
}

pub(crate) fn edit_header_map_value(
    g: &mut impl Guest,
    edit: Edit,
    kind: u64,
    key_ptr: u64,
    key_len: u64,
    value_ptr: u64,
    value_len: u64,
) -> u32 {
    code((|| {
        let key = read_name(g, key_ptr, key_len)?;
        let value = match edit {
            Edit::Remove => Vec::new(),
            _ => g.read(value_ptr, value_len)?,
        };
        let call = match edit {
            Edit::Add => "proxy_add_header_map_value",
            Edit::Replace => "proxy_replace_header_map_value",
            Edit::Remove => "proxy_remove_header_map_value",
        };
        let map: &mut HeaderMap = g.state().map_mut(narrow(kind), call)?;
        match edit {
            Edit::Add => map.add(&key, value),
            Edit::Replace => map.replace(&key, value),
            Edit::Remove => {
                map.remove(&key);
            }
        }
        Ok(())
    })())
}

// --- properties ----------------------------------------------------------

pub(crate) fn get_property(
    g: &mut impl Guest,
    path_ptr: u64,
    path_len: u64,
    ret_ptr: u64,
    ret_size: u64,
) -> u32 {
    code((|| {
        let path = split_path(&g.read(path_ptr, path_len)?);
        let value = g.state().get_property(&path)?;
        return_bytes(g, &value, ret_ptr, ret_size)
    })())
}

pub(crate) fn set_property(
    g: &mut impl Guest,
    path_ptr: u64,
    path_len: u64,
    ptr: u64,
    len: u64,
) -> u32 {
    code((|| {
        let path = split_path(&g.read(path_ptr, path_len)?);
        let value = g.read(ptr, len)?;
        g.state().set_property(path, &value)
    })())
}

// --- shared data and queues ----------------------------------------------

pub(crate) fn get_shared_data(
    g: &mut impl Guest,
    key_ptr: u64,
    key_len: u64,
    ret_ptr: u64,
    ret_size: u64,
    ret_cas: u64,
) -> u32 {
    code((|| {
        let key = g.read(key_ptr, key_len)?;
        let (value, cas) = g.state().get_shared_data(&key)?;
        return_bytes(g, &value, ret_ptr, ret_size)?;
        write_u32(g, ret_cas, cas)
    })())
}

pub(crate) fn set_shared_data(
    g: &mut impl Guest,
    key_ptr: u64,
    key_len: u64,
    ptr: u64,
    len: u64,
    cas: u64,
) -> u32 {
    code((|| {
        let key = g.read(key_ptr, key_len)?;
        let value = g.read(ptr, len)?;
        g.state().set_shared_data(&key, &value, narrow(cas))
    })())
}

pub(crate) fn register_shared_queue(
    g: &mut impl Guest,
    name_ptr: u64,
    name_len: u64,
    ret_token: u64,
) -> u32 {
    code((|| {
        let name = g.read(name_ptr, name_len)?;
        let token = g.state().register_queue(&name)?;
        write_u32(g, ret_token, token)
    })())
}

pub(crate) fn resolve_shared_queue(
    g: &mut impl Guest,
    vm_ptr: u64,
    vm_len: u64,
    name_ptr: u64,
    name_len: u64,
    ret_token: u64,
) -> u32 {
    code((|| {
        let vm_id = g.read(vm_ptr, vm_len)?;
        let name = g.read(name_ptr, name_len)?;
        let token = g.state().resolve_queue(&vm_id, &name)?;
        write_u32(g, ret_token, token)
    })())
}

pub(crate) fn dequeue_shared_queue(
    g: &mut impl Guest,
    token: u64,
    ret_ptr: u64,
    ret_size: u64,
) -> u32 {
    code((|| {
        let item = g.state().dequeue(narrow(token))?;
        return_bytes(g, &item, ret_ptr, ret_size)
    })())
}

pub(crate) fn enqueue_shared_queue(g: &mut impl Guest, token: u64, ptr: u64, len: u64) -> u32 {
    code((|| {
        let item = g.read(ptr, len)?;
        g.state().enqueue(narrow(token), &item)
    })())
}

// --- stream control --------------------------------------------------------

pub(crate) fn continue_stream(g: &mut impl Guest, kind: u64) -> u32 {
    code(g.state().continue_stream(narrow(kind)))
}

pub(crate) fn close_stream(g: &mut impl Guest, kind: u64) -> u32 {
    code(g.state().close_stream(narrow(kind)))
}

/// ABI 0.1.0's `proxy_continue_request` / `proxy_continue_response`.
pub(crate) fn continue_direction(g: &mut impl Guest, kind: StreamType) -> u32 {
    code(g.state().continue_stream(kind as u32))
}

#[allow(clippy::too_many_arguments)]
pub(crate) fn send_local_response(
    g: &mut impl Guest,
    status: u64,
    details_ptr: u64,
    details_len: u64,
    body_ptr: u64,
    body_len: u64,
    headers_ptr: u64,
    headers_len: u64,
    grpc_status: u64,
) -> u32 {
    code((|| {
        let details = g.read(details_ptr, details_len)?;
        let body = g.read(body_ptr, body_len)?;
        let headers = parse_pairs(&g.read(headers_ptr, headers_len)?);
        // -1 (as u32) means "no gRPC status", as in the SDKs.
        let grpc_status = narrow(grpc_status);
        let response = LocalResponse {
            status: narrow(status),
            // Envoy turns whitespace in details into `_`.
            details: String::from_utf8_lossy(&details)
                .chars()
                .map(|c| if c.is_whitespace() { '_' } else { c })
                .collect(),
            body,
            headers,
            grpc_status: (grpc_status <= 16).then_some(grpc_status),
        };
        g.state().send_local_response(response)
    })())
}

// --- callouts ----------------------------------------------------------------

#[allow(clippy::too_many_arguments)]
pub(crate) fn http_call(
    g: &mut impl Guest,
    upstream_ptr: u64,
    upstream_len: u64,
    headers_ptr: u64,
    headers_len: u64,
    body_ptr: u64,
    body_len: u64,
    trailers_ptr: u64,
    trailers_len: u64,
    timeout: u64,
    ret_token: u64,
) -> u32 {
    code((|| {
        let upstream = g.read(upstream_ptr, upstream_len)?;
        let headers = g.read(headers_ptr, headers_len)?;
        let body = g.read(body_ptr, body_len)?;
        let trailers = g.read(trailers_ptr, trailers_len)?;
        let token = g
            .state()
            .http_call(&upstream, &headers, &body, &trailers, narrow(timeout))?;
        write_u32(g, ret_token, token)
    })())
}

#[allow(clippy::too_many_arguments)]
pub(crate) fn grpc_call(
    g: &mut impl Guest,
    upstream_ptr: u64,
    upstream_len: u64,
    service_ptr: u64,
    service_len: u64,
    method_ptr: u64,
    method_len: u64,
    metadata_ptr: u64,
    metadata_len: u64,
    message_ptr: u64,
    message_len: u64,
    timeout: u64,
    ret_token: u64,
) -> u32 {
    code((|| {
        let upstream = g.read(upstream_ptr, upstream_len)?;
        let service = g.read(service_ptr, service_len)?;
        let method = g.read(method_ptr, method_len)?;
        let metadata = g.read(metadata_ptr, metadata_len)?;
        let message = g.read(message_ptr, message_len)?;
        let token = g.state().grpc_open(
            &upstream,
            &service,
            &method,
            &metadata,
            Some(&message),
            narrow(timeout),
        )?;
        write_u32(g, ret_token, token)
    })())
}

#[allow(clippy::too_many_arguments)]
pub(crate) fn grpc_stream(
    g: &mut impl Guest,
    upstream_ptr: u64,
    upstream_len: u64,
    service_ptr: u64,
    service_len: u64,
    method_ptr: u64,
    method_len: u64,
    metadata_ptr: u64,
    metadata_len: u64,
    ret_token: u64,
) -> u32 {
    code((|| {
        let upstream = g.read(upstream_ptr, upstream_len)?;
        let service = g.read(service_ptr, service_len)?;
        let method = g.read(method_ptr, method_len)?;
        let metadata = g.read(metadata_ptr, metadata_len)?;
        let token = g
            .state()
            .grpc_open(&upstream, &service, &method, &metadata, None, 0)?;
        write_u32(g, ret_token, token)
    })())
}

pub(crate) fn grpc_send(
    g: &mut impl Guest,
    token: u64,
    ptr: u64,
    len: u64,
    end_stream: u64,
) -> u32 {
    code((|| {
        let message = g.read(ptr, len)?;
        g.state()
            .grpc_send(narrow(token), &message, end_stream != 0)
    })())
}

pub(crate) fn grpc_cancel(g: &mut impl Guest, token: u64) -> u32 {
    code(g.state().grpc_cancel(narrow(token)))
}

pub(crate) fn grpc_close(g: &mut impl Guest, token: u64) -> u32 {
    code(g.state().grpc_close(narrow(token)))
}

pub(crate) fn get_status(g: &mut impl Guest, ret_code: u64, ret_ptr: u64, ret_size: u64) -> u32 {
    code((|| {
        let (status, message) = g.state().status.clone();
        write_u32(g, ret_code, status)?;
        return_bytes(g, &message, ret_ptr, ret_size)
    })())
}

// --- contexts, foreign functions, metrics ----------------------------------

pub(crate) fn set_effective_context(g: &mut impl Guest, context: u64) -> u32 {
    code(g.state().set_effective_context(narrow(context)))
}

pub(crate) fn done(g: &mut impl Guest) -> u32 {
    code(g.state().done())
}

pub(crate) fn call_foreign_function(
    g: &mut impl Guest,
    name_ptr: u64,
    name_len: u64,
    args_ptr: u64,
    args_len: u64,
    ret_ptr: u64,
    ret_size: u64,
) -> u32 {
    code((|| {
        let name = g.read(name_ptr, name_len)?;
        let args = g.read(args_ptr, args_len)?;
        let result = g.state().call_foreign(&name, &args)?;
        return_bytes(g, &result, ret_ptr, ret_size)
    })())
}

pub(crate) fn define_metric(
    g: &mut impl Guest,
    kind: u64,
    name_ptr: u64,
    name_len: u64,
    ret_id: u64,
) -> u32 {
    code((|| {
        let name = g.read(name_ptr, name_len)?;
        let id = g.state().define_metric(narrow(kind), &name)?;
        write_u32(g, ret_id, id)
    })())
}

pub(crate) fn increment_metric(g: &mut impl Guest, id: u64, offset: u64) -> u32 {
    code(g.state().increment_metric(narrow(id), offset as i64))
}

pub(crate) fn record_metric(g: &mut impl Guest, id: u64, value: u64) -> u32 {
    code(g.state().record_metric(narrow(id), value))
}

pub(crate) fn get_metric(g: &mut impl Guest, id: u64, ret_value: u64) -> u32 {
    code((|| {
        let value = g.state().get_metric(narrow(id))?;
        write_u64(g, ret_value, value)
    })())
}

/// ABI 0.1.0's `proxy_clear_route_cache`.
pub(crate) fn clear_route_cache(g: &mut impl Guest) -> u32 {
    code(
        g.state()
            .call_foreign(b"clear_route_cache", &[])
            .map(|_| ()),
    )
}
