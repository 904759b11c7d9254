//! HTTP and TCP streams: what each direction holds, and the stream
//! control hostcalls (`proxy_continue_stream`, `proxy_close_stream`,
//! `proxy_send_local_response`).

use super::state::{Deferred, Flow, FlowState, HostState};
use crate::records::LocalResponse;
use crate::types::{Callback, Status, StreamType};

impl HostState {
    /// `proxy_continue_stream`, deferred until the VM call returns, as in
    /// Envoy. Resuming hides the request's maps at once (an Envoy quirk).
    pub(crate) fn continue_stream(&mut self, kind: u32) -> Result<(), Status> {
        let kind = StreamType::from_u32(kind).ok_or(Status::BadArgument)?;
        let context = self.effective;
        match kind {
            StreamType::Upstream => return Err(Status::Unimplemented),
            StreamType::Downstream => {
                if !self.tcp.contains_key(&context) {
                    return Ok(());
                }
            }
            StreamType::HttpRequest | StreamType::HttpResponse => {
                let Some(stream) = self.http.get_mut(&context) else {
                    return Ok(());
                };
                stream.request.headers_visible = false;
                stream.request.trailers_visible = false;
                let flow = if kind == StreamType::HttpRequest {
                    &stream.request
                } else {
                    &stream.response
                };
                let paused = matches!(
                    flow.state,
                    FlowState::HeadersStopped | FlowState::BodyStopped | FlowState::TrailersStopped
                );
                let already = self.deferred.contains(&Deferred::Continue(context, kind));
                if !paused && !already {
                    let resumed_in_own_callback = matches!(
                        (kind, self.callback),
                        (
                            StreamType::HttpRequest,
                            Some(
                                Callback::RequestHeaders
                                    | Callback::RequestBody
                                    | Callback::RequestTrailers
                            )
                        ) | (
                            StreamType::HttpResponse,
                            Some(
                                Callback::ResponseHeaders
                                    | Callback::ResponseBody
                                    | Callback::ResponseTrailers
                            )
                        )
                    );
                    if !resumed_in_own_callback {
                        self.violation(
                            "proxy_continue_stream",
                            format!("{kind:?} resumed while it was not paused: Envoy's continueDecoding/continueEncoding expects a stopped filter (an assertion in debug builds)"),
                        );
                        return Ok(());
                    }
                }
            }
        }
        self.deferred.push(Deferred::Continue(context, kind));
        Ok(())
    }

    /// `proxy_close_stream`: resets an HTTP stream, or closes a TCP side.
    pub(crate) fn close_stream(&mut self, kind: u32) -> Result<(), Status> {
        let kind = StreamType::from_u32(kind).ok_or(Status::BadArgument)?;
        let context = self.effective;
        match kind {
            StreamType::HttpRequest | StreamType::HttpResponse => {
                if let Some(stream) = self.http.get_mut(&context) {
                    stream
                        .reset
                        .get_or_insert_with(|| "wasm_close_stream".to_string());
                    stream.request.state = FlowState::Done;
                    stream.response.state = FlowState::Done;
                }
            }
            StreamType::Downstream | StreamType::Upstream => {
                if let Some(stream) = self.tcp.get_mut(&context)
                    && !stream.closed.contains(&kind)
                {
                    stream.closed.push(kind);
                }
            }
        }
        Ok(())
    }

    /// `proxy_send_local_response`: Envoy always answers Ok and sends the
    /// response once the VM call returns.
    pub(crate) fn send_local_response(&mut self, response: LocalResponse) -> Result<(), Status> {
        let context = self.effective;
        let Some(stream) = self.http.get(&context) else {
            self.violation(
                "proxy_send_local_response",
                "outside an HTTP stream: Envoy does nothing",
            );
            return Ok(());
        };
        if stream.local_response.is_some() {
            self.violation(
                "proxy_send_local_response",
                "a second local response on one stream: the client gets the first",
            );
            return Ok(());
        }
        if stream.response.forwarded.headers.is_some() {
            self.violation(
                "proxy_send_local_response",
                "local response after the response headers were sent downstream: Envoy cannot send it and resets the stream",
            );
        }
        if let Some(stream) = self.http.get_mut(&context) {
            stream.local_response = Some(response);
        }
        self.deferred.push(Deferred::LocalResponse(context));
        Ok(())
    }

    pub(crate) fn http_flow_mut(
        &mut self,
        context: u32,
        request: bool,
    ) -> Result<&mut Flow, Status> {
        let stream = self.http.get_mut(&context).ok_or(Status::NotFound)?;
        Ok(if request {
            &mut stream.request
        } else {
            &mut stream.response
        })
    }
}
