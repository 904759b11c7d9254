//! Buffers: bodies, TCP data, callout and gRPC messages, configurations,
//! as the current callback may see them.

use super::state::HostState;
use crate::types::{BufferType, Callback, Status};

impl HostState {
    /// The buffer as the current callback may see it.
    pub(crate) fn buffer(&mut self, kind: u32) -> Result<Vec<u8>, Status> {
        let kind = BufferType::from_u32(kind).ok_or(Status::BadArgument)?;
        let context = self.effective;
        // Envoy's body and data buffers always exist: outside the callback
        // that shows them they are empty.
        let callback = self.callback;
        Ok(match kind {
            BufferType::HttpRequestBody => match (callback, self.http.get(&context)) {
                (Some(Callback::RequestBody), Some(stream)) => stream.request.body.clone(),
                _ => Vec::new(),
            },
            BufferType::HttpResponseBody => match (callback, self.http.get(&context)) {
                (Some(Callback::ResponseBody), Some(stream)) => stream.response.body.clone(),
                _ => Vec::new(),
            },
            BufferType::DownstreamData => match (callback, self.tcp.get(&context)) {
                (Some(Callback::DownstreamData), Some(stream)) => stream.downstream.clone(),
                _ => Vec::new(),
            },
            BufferType::UpstreamData => match (callback, self.tcp.get(&context)) {
                (Some(Callback::UpstreamData), Some(stream)) => stream.upstream.clone(),
                _ => Vec::new(),
            },
            BufferType::HttpCallResponseBody => self
                .callback_data
                .call_body
                .clone()
                .ok_or(Status::NotFound)?,
            BufferType::GrpcReceiveBuffer => {
                self.callback_data.grpc_message.clone().unwrap_or_default()
            }
            BufferType::VmConfiguration => self.settings.vm_config.clone(),
            BufferType::PluginConfiguration => {
                // Envoy hands it over only while `proxy_on_configure` runs.
                if callback != Some(Callback::Configure) {
                    return Err(Status::NotFound);
                }
                let root = self.root_of(context).ok_or(Status::NotFound)?;
                self.plugin_of_root(root)
                    .ok_or(Status::NotFound)?
                    .config
                    .clone()
            }
            BufferType::CallData => self
                .callback_data
                .call_data
                .clone()
                .ok_or(Status::NotFound)?,
        })
    }

    /// `proxy_set_buffer_bytes` as Envoy does it: at 0 it drops `size`
    /// bytes and prepends; at or past the end it appends; in between it
    /// refuses.
    pub(crate) fn set_buffer(
        &mut self,
        kind: u32,
        start: usize,
        size: usize,
        value: &[u8],
    ) -> Result<(), Status> {
        let kind = BufferType::from_u32(kind).ok_or(Status::BadArgument)?;
        let context = self.effective;
        let expected = match kind {
            BufferType::HttpRequestBody => Callback::RequestBody,
            BufferType::HttpResponseBody => Callback::ResponseBody,
            BufferType::DownstreamData => Callback::DownstreamData,
            BufferType::UpstreamData => Callback::UpstreamData,
            _ => return Err(Status::BadArgument),
        };
        if self.callback != Some(expected) {
            self.violation(
                "proxy_set_buffer_bytes",
                format!("{kind:?} changed outside {}: Envoy's buffer is empty and read-only there (BadArgument)", expected.export_name()),
            );
            return Err(Status::BadArgument);
        }
        let buffer = match kind {
            BufferType::HttpRequestBody => &mut self.http_flow_mut(context, true)?.body,
            BufferType::HttpResponseBody => &mut self.http_flow_mut(context, false)?.body,
            BufferType::DownstreamData => {
                &mut self
                    .tcp
                    .get_mut(&context)
                    .ok_or(Status::NotFound)?
                    .downstream
            }
            _ => &mut self.tcp.get_mut(&context).ok_or(Status::NotFound)?.upstream,
        };
        splice(buffer, start, size, value)
    }
}

/// `proxy_set_buffer_bytes` on a byte buffer, with Envoy's three cases.
fn splice(buffer: &mut Vec<u8>, start: usize, size: usize, value: &[u8]) -> Result<(), Status> {
    if start >= buffer.len() {
        buffer.extend_from_slice(value);
    } else if start == 0 {
        let end = size.min(buffer.len());
        buffer.splice(..end, value.iter().copied());
    } else {
        return Err(Status::BadArgument);
    }
    Ok(())
}
