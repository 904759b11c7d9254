//! Stream control: continue, close, local responses.

use super::{Guest, code, narrow};
use crate::model::parse_pairs;
use crate::records::LocalResponse;
use crate::types::StreamType;

/// This domain's hostcalls for [`super::for_each_hostcall`]: import name,
/// parameters as the ABI types them, and the function that answers.
/// `proxy_continue_request` and `proxy_continue_response` are ABI 0.1.0's.
macro_rules! table {
    ($register:ident!($($args:tt)*)) => {
        $register! {
            $($args)*;
            proxy_continue_stream(kind: u32) => $crate::hostcalls::streams::continue_stream;
            proxy_close_stream(kind: u32) => $crate::hostcalls::streams::close_stream;
            proxy_send_local_response(status: u32, details: usize, details_len: usize, body: usize, body_len: usize, headers: usize, headers_len: usize, grpc_status: u32) => $crate::hostcalls::streams::send_local_response;
            proxy_continue_request() => $crate::hostcalls::streams::continue_request;
            proxy_continue_response() => $crate::hostcalls::streams::continue_response;
        }
    };
}
pub(crate) use table;

pub(crate) fn continue_stream(g: &mut impl Guest, kind: u64) -> u32 {
    code(g.state().continue_stream(narrow(kind)))
}

pub(crate) fn close_stream(g: &mut impl Guest, kind: u64) -> u32 {
    code(g.state().close_stream(narrow(kind)))
}

/// ABI 0.1.0's `proxy_continue_request`.
pub(crate) fn continue_request(g: &mut impl Guest) -> u32 {
    code(g.state().continue_stream(StreamType::HttpRequest as u32))
}

/// ABI 0.1.0's `proxy_continue_response`.
pub(crate) fn continue_response(g: &mut impl Guest) -> u32 {
    code(g.state().continue_stream(StreamType::HttpResponse as u32))
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
