//! HTTP and gRPC callouts, and `proxy_get_status`.

use super::{Guest, code, narrow, return_bytes, write_u32};

/// This domain's hostcalls for [`super::for_each_hostcall`]: import name,
/// parameters as the ABI types them, and the function that answers.
macro_rules! table {
    ($register:ident!($($args:tt)*)) => {
        $register! {
            $($args)*;
            proxy_http_call(upstream: usize, upstream_len: usize, headers: usize, headers_len: usize, body: usize, body_len: usize, trailers: usize, trailers_len: usize, timeout: u32, ret_token: usize) => $crate::hostcalls::callouts::http_call;
            proxy_grpc_call(upstream: usize, upstream_len: usize, service: usize, service_len: usize, method: usize, method_len: usize, metadata: usize, metadata_len: usize, message: usize, message_len: usize, timeout: u32, ret_token: usize) => $crate::hostcalls::callouts::grpc_call;
            proxy_grpc_stream(upstream: usize, upstream_len: usize, service: usize, service_len: usize, method: usize, method_len: usize, metadata: usize, metadata_len: usize, ret_token: usize) => $crate::hostcalls::callouts::grpc_stream;
            proxy_grpc_send(token: u32, ptr: usize, len: usize, end_stream: u32) => $crate::hostcalls::callouts::grpc_send;
            proxy_grpc_cancel(token: u32) => $crate::hostcalls::callouts::grpc_cancel;
            proxy_grpc_close(token: u32) => $crate::hostcalls::callouts::grpc_close;
            proxy_get_status(ret_code: usize, ret_ptr: usize, ret_size: usize) => $crate::hostcalls::callouts::get_status;
        }
    };
}
pub(crate) use table;

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
    let message = Some((message_ptr, message_len));
    let target = [
        (upstream_ptr, upstream_len),
        (service_ptr, service_len),
        (method_ptr, method_len),
        (metadata_ptr, metadata_len),
    ];
    grpc_open(g, target, message, timeout, ret_token)
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
    let target = [
        (upstream_ptr, upstream_len),
        (service_ptr, service_len),
        (method_ptr, method_len),
        (metadata_ptr, metadata_len),
    ];
    grpc_open(g, target, None, 0, ret_token)
}

/// Opens a gRPC call (with its one message) or stream (without): the
/// cluster, service, method and initial metadata, as (pointer, length).
fn grpc_open(
    g: &mut impl Guest,
    target: [(u64, u64); 4],
    message: Option<(u64, u64)>,
    timeout: u64,
    ret_token: u64,
) -> u32 {
    code((|| {
        let [upstream, service, method, metadata] = target;
        let [upstream, service, method, metadata] = [
            g.read(upstream.0, upstream.1)?,
            g.read(service.0, service.1)?,
            g.read(method.0, method.1)?,
            g.read(metadata.0, metadata.1)?,
        ];
        let message = match message {
            Some((ptr, len)) => Some(g.read(ptr, len)?),
            None => None,
        };
        let token = g.state().grpc_open(
            &upstream,
            &service,
            &method,
            &metadata,
            message.as_deref(),
            narrow(timeout),
        )?;
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
