//! Local responses: the filter answers instead of the upstream.

use meshwasm_core::header_map::serialize_pairs;
use proxy_wasm::types::Status;

#[link(wasm_import_module = "env")]
unsafe extern "C" {
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
/// answer when the current callback returns. The SDK's own call takes no
/// response code details, which Envoy's access logs show.
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
