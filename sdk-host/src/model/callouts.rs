//! HTTP and gRPC callouts: `proxy_http_call`, `proxy_grpc_*`.

use super::maps::parse_pairs;
use super::state::HostState;
use crate::records::{GrpcCall, HttpCall};
use crate::types::Status;

impl HostState {
    /// Envoy refuses a callout to a cluster it does not have with
    /// BadArgument; a test almost never means that, so it is reported.
    fn check_cluster(&mut self, call: &'static str, upstream: &str) -> Result<(), Status> {
        match &self.settings.clusters {
            Some(clusters) if !clusters.contains(upstream) => {
                let known: Vec<&str> = clusters.iter().map(String::as_str).collect();
                self.violation(
                    call,
                    format!(
                        "no cluster {upstream:?}: Envoy answers BadArgument (the host knows {})",
                        known.join(", ")
                    ),
                );
                Err(Status::BadArgument)
            }
            _ => Ok(()),
        }
    }

    /// Envoy's callout tokens: HTTP calls 4, 8, ...; gRPC calls 5, 9, ...;
    /// gRPC streams 6, 10, ...
    fn take_token(&mut self, kind: u32) -> u32 {
        let next = &mut self.next_tokens[kind as usize % 3];
        *next = next.wrapping_add(1);
        next.wrapping_mul(4).wrapping_add(kind)
    }

    pub(crate) fn http_call(
        &mut self,
        upstream: &[u8],
        headers: &[u8],
        body: &[u8],
        trailers: &[u8],
        timeout_ms: u32,
    ) -> Result<u32, Status> {
        if (timeout_ms as i32) < 0 {
            return Err(Status::BadArgument);
        }
        let upstream = String::from_utf8_lossy(upstream).into_owned();
        self.check_cluster("proxy_http_call", &upstream)?;
        let headers = parse_pairs(headers);
        let trailers = parse_pairs(trailers);
        // Envoy wants the three present; an empty :authority goes out as
        // an empty host (seen with the Go SDK's multiple_dispatches).
        for required in [":authority", ":method", ":path"] {
            if headers.get_bytes(required).is_none() {
                return Err(Status::BadArgument);
            }
        }
        let token = self.take_token(0);
        let call = HttpCall {
            token,
            context_id: self.effective,
            upstream,
            headers,
            body: body.to_vec(),
            trailers,
            timeout_ms,
            sent_nanos: self.monotonic_nanos,
        };
        self.http_calls.insert(token, call);
        Ok(token)
    }

    #[allow(clippy::too_many_arguments)]
    pub(crate) fn grpc_open(
        &mut self,
        upstream: &[u8],
        service: &[u8],
        method: &[u8],
        metadata: &[u8],
        message: Option<&[u8]>,
        timeout_ms: u32,
    ) -> Result<u32, Status> {
        // The upstream is a cluster name or a serialized GrpcService; only
        // a plain name can be checked against the clusters.
        if let Ok(name) = std::str::from_utf8(upstream)
            && !name.contains(|c: char| c.is_control())
        {
            let call = if message.is_some() {
                "proxy_grpc_call"
            } else {
                "proxy_grpc_stream"
            };
            self.check_cluster(call, name)?;
        }
        let initial_metadata = parse_pairs(metadata);
        let token = self.take_token(if message.is_some() { 1 } else { 2 });
        let call = GrpcCall {
            token,
            context_id: self.effective,
            upstream: upstream.to_vec(),
            service: String::from_utf8_lossy(service).into_owned(),
            method: String::from_utf8_lossy(method).into_owned(),
            initial_metadata,
            messages: message.map(|m| vec![m.to_vec()]).unwrap_or_default(),
            streaming: message.is_none(),
            local_closed: message.is_some(),
            cancelled: false,
            timeout_ms,
            sent_nanos: self.monotonic_nanos,
        };
        self.grpc_calls.insert(token, call);
        Ok(token)
    }

    pub(crate) fn grpc_send(
        &mut self,
        token: u32,
        message: &[u8],
        end_stream: bool,
    ) -> Result<(), Status> {
        let call = self.grpc_calls.get_mut(&token).ok_or(Status::NotFound)?;
        if !call.streaming {
            return Err(Status::BadArgument);
        }
        if call.local_closed {
            return Err(Status::BadArgument);
        }
        call.messages.push(message.to_vec());
        call.local_closed = end_stream;
        Ok(())
    }

    pub(crate) fn grpc_cancel(&mut self, token: u32) -> Result<(), Status> {
        self.grpc_calls.remove(&token).ok_or(Status::NotFound)?;
        Ok(())
    }

    pub(crate) fn grpc_close(&mut self, token: u32) -> Result<(), Status> {
        let call = self.grpc_calls.get_mut(&token).ok_or(Status::NotFound)?;
        call.local_closed = true;
        Ok(())
    }
}
