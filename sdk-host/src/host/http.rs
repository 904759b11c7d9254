//! HTTP streams: headers, bodies and trailers through the filter in
//! Envoy's order and with Envoy's buffering, local responses, the end of a
//! stream.

use super::lifecycle::{ContextId, Host};
use super::observe::HttpView;
use crate::error::Error;
use crate::headers::HeaderMap;
use crate::model::ContextKind;
use crate::model::{Dir, FlowState, HttpStream};
use crate::records::{LocalResponse, Violation};
use crate::types::Callback;
use crate::types::{Action, StreamType};

impl Host {
    /// Opens an HTTP stream on the first plugin: `proxy_on_context_create`.
    ///
    /// # Errors
    ///
    /// [`Error::Trap`] or [`Error::VmFailed`].
    ///
    /// ```
    /// # let module = sdk_host::doc_support::pass_through()?;
    /// let mut host = sdk_host::Host::builder().start(&module)?;
    /// let first = host.new_http_stream()?;
    /// let second = host.new_http_stream()?;
    /// assert_ne!(first, second);
    /// # Ok::<(), Box<dyn std::error::Error>>(())
    /// ```
    pub fn new_http_stream(&mut self) -> Result<ContextId, Error> {
        let root = self
            .runtime
            .state_ref()
            .plugins
            .first()
            .map(|p| p.context_id)
            .ok_or(Error::Usage("the host has no plugin".to_string()))?;
        self.new_http_stream_on(root)
    }

    /// Opens an HTTP stream on the plugin with this root context.
    ///
    /// # Errors
    ///
    /// As [`Host::new_http_stream`], and [`Error::NotFound`] for an unknown root.
    ///
    /// ```
    /// # let module = sdk_host::doc_support::pass_through()?;
    /// let mut host = sdk_host::Host::builder()
    ///     .plugin("a", "a_root", "")
    ///     .plugin("b", "b_root", "")
    ///     .start(&module)?;
    /// let roots = host.root_contexts();
    /// let on_b = host.new_http_stream_on(roots[1])?;
    /// host.send_request_headers(on_b, &[(":path", "/")], true)?;
    /// # Ok::<(), Box<dyn std::error::Error>>(())
    /// ```
    pub fn new_http_stream_on(&mut self, root: ContextId) -> Result<ContextId, Error> {
        if self.runtime.state_ref().plugin_of_root(root).is_none() {
            return Err(Error::NotFound {
                kind: "plugin root context",
                id: root,
            });
        }
        let id = self.next_context_id();
        let state = self.runtime.state();
        let started_nanos = state.monotonic_nanos;
        state.contexts.insert(id, ContextKind::Http);
        state.http.insert(
            id,
            HttpStream {
                root,
                started_nanos,
                ..HttpStream::default()
            },
        );
        self.invoke(Callback::ContextCreate, id, &[id, root])?;
        self.settle()?;
        Ok(id)
    }

    fn stream_mut(&mut self, id: ContextId) -> Result<&mut HttpStream, Error> {
        self.runtime
            .state()
            .http
            .get_mut(&id)
            .ok_or(Error::NotFound {
                kind: "HTTP stream",
                id,
            })
    }

    fn flow_mut(&mut self, id: ContextId, dir: Dir) -> Result<&mut crate::model::Flow, Error> {
        let stream = self.stream_mut(id)?;
        Ok(match dir {
            Dir::Request => &mut stream.request,
            Dir::Response => &mut stream.response,
        })
    }

    /// The client sends request headers: `proxy_on_request_headers`.
    /// Returns the filter's action; what it changed is in [`Host::http`].
    ///
    /// # Errors
    ///
    /// [`Error::Usage`] when the stream already had request headers or was
    /// answered; [`Error::Trap`] when the guest traps.
    ///
    /// ```
    /// # let module = sdk_host::doc_support::pass_through()?;
    /// use sdk_host::Action;
    /// let mut host = sdk_host::Host::builder().start(&module)?;
    /// let stream = host.new_http_stream()?;
    /// let action = host.send_request_headers(stream, &[(":method", "GET"), (":path", "/")], true)?;
    /// assert_eq!(action, Action::Continue);
    /// # Ok::<(), Box<dyn std::error::Error>>(())
    /// ```
    pub fn send_request_headers<K: AsRef<str>, V: AsRef<[u8]>>(
        &mut self,
        id: ContextId,
        headers: &[(K, V)],
        end_of_stream: bool,
    ) -> Result<Action, Error> {
        let headers = HeaderMap::from_pairs(headers.iter().map(|(k, v)| (k, v)));
        let action = self.deliver_headers(id, Dir::Request, headers, end_of_stream)?;
        self.settle()?;
        Ok(action)
    }

    /// The client sends a chunk of request body: `proxy_on_request_body`
    /// with the size of everything buffered so far. `None` when Envoy would
    /// not call the filter: its headers callback paused the stream, so the
    /// data waits until the filter resumes it.
    ///
    /// # Errors
    ///
    /// As [`Host::send_request_headers`].
    ///
    /// ```
    /// # let module = sdk_host::doc_support::pass_through()?;
    /// let mut host = sdk_host::Host::builder().start(&module)?;
    /// let stream = host.new_http_stream()?;
    /// host.send_request_headers(stream, &[(":method", "POST")], false)?;
    /// host.send_request_body(stream, "part 1, ", false)?;
    /// host.send_request_body(stream, "part 2", true)?;
    /// assert_eq!(host.http(stream)?.upstream().body, b"part 1, part 2");
    /// # Ok::<(), Box<dyn std::error::Error>>(())
    /// ```
    pub fn send_request_body(
        &mut self,
        id: ContextId,
        chunk: impl AsRef<[u8]>,
        end_of_stream: bool,
    ) -> Result<Option<Action>, Error> {
        let action = self.deliver_body(id, Dir::Request, chunk.as_ref(), end_of_stream)?;
        self.settle()?;
        Ok(action)
    }

    /// The client sends request trailers: `proxy_on_request_trailers`
    /// (`None` when the stream is paused, as for bodies).
    ///
    /// # Errors
    ///
    /// As [`Host::send_request_headers`].
    ///
    /// ```
    /// # let module = sdk_host::doc_support::pass_through()?;
    /// let mut host = sdk_host::Host::builder().start(&module)?;
    /// let stream = host.new_http_stream()?;
    /// host.send_request_headers(stream, &[(":method", "POST")], false)?;
    /// host.send_request_body(stream, "data", false)?;
    /// host.send_request_trailers(stream, &[("grpc-status", "0")])?;
    /// assert!(host.http(stream)?.upstream().complete);
    /// # Ok::<(), Box<dyn std::error::Error>>(())
    /// ```
    pub fn send_request_trailers<K: AsRef<str>, V: AsRef<[u8]>>(
        &mut self,
        id: ContextId,
        trailers: &[(K, V)],
    ) -> Result<Option<Action>, Error> {
        let trailers = HeaderMap::from_pairs(trailers.iter().map(|(k, v)| (k, v)));
        let action = self.deliver_trailers(id, Dir::Request, trailers)?;
        self.settle()?;
        Ok(action)
    }

    /// The upstream answers with response headers: `proxy_on_response_headers`.
    ///
    /// # Errors
    ///
    /// [`Error::Usage`] when the request never reached the upstream (it is
    /// paused or was answered locally) or response headers came already.
    ///
    /// ```
    /// # let module = sdk_host::doc_support::pass_through()?;
    /// let mut host = sdk_host::Host::builder().start(&module)?;
    /// let stream = host.new_http_stream()?;
    /// host.send_request_headers(stream, &[(":path", "/")], true)?;
    /// host.send_response_headers(stream, &[(":status", "200"), ("x-upstream", "v1")], true)?;
    /// let got = host.http(stream)?.downstream().headers.clone();
    /// assert_eq!(got.and_then(|h| h.get("x-upstream").map(str::to_owned)).as_deref(), Some("v1"));
    /// # Ok::<(), Box<dyn std::error::Error>>(())
    /// ```
    pub fn send_response_headers<K: AsRef<str>, V: AsRef<[u8]>>(
        &mut self,
        id: ContextId,
        headers: &[(K, V)],
        end_of_stream: bool,
    ) -> Result<Action, Error> {
        let stream = self.stream_mut(id)?;
        if stream.request.forwarded.headers.is_none() {
            return Err(Error::Usage(format!(
                "stream {id}: the upstream cannot answer a request whose headers never reached it"
            )));
        }
        if stream.local_response.is_some() {
            return Err(Error::Usage(format!(
                "stream {id} was answered with a local response"
            )));
        }
        let headers = HeaderMap::from_pairs(headers.iter().map(|(k, v)| (k, v)));
        let action = self.deliver_headers(id, Dir::Response, headers, end_of_stream)?;
        self.settle()?;
        Ok(action)
    }

    /// The upstream sends response body: `proxy_on_response_body`.
    ///
    /// # Errors
    ///
    /// As [`Host::send_response_headers`].
    ///
    /// ```
    /// # let module = sdk_host::doc_support::pass_through()?;
    /// let mut host = sdk_host::Host::builder().start(&module)?;
    /// let stream = host.new_http_stream()?;
    /// host.send_request_headers(stream, &[(":path", "/")], true)?;
    /// host.send_response_headers(stream, &[(":status", "200")], false)?;
    /// host.send_response_body(stream, "hello", true)?;
    /// assert_eq!(host.http(stream)?.downstream().body, b"hello");
    /// # Ok::<(), Box<dyn std::error::Error>>(())
    /// ```
    pub fn send_response_body(
        &mut self,
        id: ContextId,
        chunk: impl AsRef<[u8]>,
        end_of_stream: bool,
    ) -> Result<Option<Action>, Error> {
        let action = self.deliver_body(id, Dir::Response, chunk.as_ref(), end_of_stream)?;
        self.settle()?;
        Ok(action)
    }

    /// The upstream sends response trailers: `proxy_on_response_trailers`.
    ///
    /// # Errors
    ///
    /// As [`Host::send_response_headers`].
    ///
    /// ```
    /// # let module = sdk_host::doc_support::pass_through()?;
    /// let mut host = sdk_host::Host::builder().start(&module)?;
    /// let stream = host.new_http_stream()?;
    /// host.send_request_headers(stream, &[(":path", "/")], true)?;
    /// host.send_response_headers(stream, &[(":status", "200")], false)?;
    /// host.send_response_trailers(stream, &[("grpc-status", "0")])?;
    /// assert!(host.http(stream)?.downstream().complete);
    /// # Ok::<(), Box<dyn std::error::Error>>(())
    /// ```
    pub fn send_response_trailers<K: AsRef<str>, V: AsRef<[u8]>>(
        &mut self,
        id: ContextId,
        trailers: &[(K, V)],
    ) -> Result<Option<Action>, Error> {
        let trailers = HeaderMap::from_pairs(trailers.iter().map(|(k, v)| (k, v)));
        let action = self.deliver_trailers(id, Dir::Response, trailers)?;
        self.settle()?;
        Ok(action)
    }

    fn deliver_headers(
        &mut self,
        id: ContextId,
        dir: Dir,
        headers: HeaderMap,
        end_of_stream: bool,
    ) -> Result<Action, Error> {
        let count = headers.len() as u32;
        let flow = self.flow_mut(id, dir)?;
        if flow.state != FlowState::Idle {
            return Err(Error::Usage(format!(
                "stream {id}: {dir:?} headers were already sent"
            )));
        }
        flow.headers = Some(headers);
        flow.headers_visible = true;
        flow.end_of_stream = end_of_stream;
        flow.state = FlowState::Open;
        let (on_headers, _, _) = dir.callbacks();
        let action = self
            .invoke(on_headers, id, &[id, count, u32::from(end_of_stream)])?
            .map_or(Action::Continue, Action::from_u32);
        if self.answered_locally(id, dir)? {
            return Ok(action);
        }
        // Envoy maps a paused headers callback to StopAllIteration: body
        // and trailers wait too. `2` (ContinueAndEndStream) goes on.
        match action {
            Action::Continue | Action::Other(2) => {
                self.flow_mut(id, dir)?.headers_visible = false;
                self.forward_headers(id, dir)?;
            }
            _ => self.flow_mut(id, dir)?.state = FlowState::HeadersStopped,
        }
        Ok(action)
    }

    /// Whether the request direction ended in a local response, which
    /// stops it from going anywhere.
    fn answered_locally(&mut self, id: ContextId, dir: Dir) -> Result<bool, Error> {
        let stream = self.stream_mut(id)?;
        if dir == Dir::Request && stream.local_response.is_some() {
            stream.request.state = FlowState::Done;
            return Ok(true);
        }
        Ok(stream.reset.is_some())
    }

    fn forward_headers(&mut self, id: ContextId, dir: Dir) -> Result<(), Error> {
        let flow = self.flow_mut(id, dir)?;
        flow.forwarded.headers = flow.headers.clone();
        flow.state = FlowState::Open;
        if flow.end_of_stream && flow.body.is_empty() && flow.trailers.is_none() {
            flow.forwarded.complete = true;
            flow.state = FlowState::Done;
        }
        Ok(())
    }

    fn forward_body(&mut self, id: ContextId, dir: Dir) -> Result<(), Error> {
        let flow = self.flow_mut(id, dir)?;
        let body = std::mem::take(&mut flow.body);
        flow.forwarded.body.extend(body);
        flow.state = FlowState::Open;
        if flow.end_of_stream && flow.trailers.is_none() {
            flow.forwarded.complete = true;
            flow.state = FlowState::Done;
            self.check_content_length(id, dir)?;
        }
        Ok(())
    }

    fn forward_trailers(&mut self, id: ContextId, dir: Dir) -> Result<(), Error> {
        self.forward_body(id, dir)?;
        let flow = self.flow_mut(id, dir)?;
        flow.forwarded.trailers = flow.trailers.clone();
        flow.forwarded.complete = true;
        flow.state = FlowState::Done;
        self.check_content_length(id, dir)
    }

    /// Envoy forwards `content-length` as the filter left it, whatever the
    /// body became: a filter that resizes a body must remove the header in
    /// its headers callback, or the peer reads the wrong number of bytes.
    fn check_content_length(&mut self, id: ContextId, dir: Dir) -> Result<(), Error> {
        let flow = self.flow_mut(id, dir)?;
        let sent = flow.forwarded.body.len();
        let Some(declared) = flow
            .forwarded
            .headers
            .as_ref()
            .and_then(|h| h.get("content-length"))
            .and_then(|v| v.trim().parse::<usize>().ok())
        else {
            return Ok(());
        };
        if declared == sent {
            return Ok(());
        }
        let (what, peer) = match dir {
            Dir::Request => ("request", "upstream"),
            Dir::Response => ("response", "client"),
        };
        let outcome = if sent > declared {
            format!("reads the first {declared} and drops the rest")
        } else {
            "waits for the missing bytes until a timeout".to_string()
        };
        let state = self.runtime.state();
        state.violations.push(Violation {
            context_id: id,
            callback: None,
            call: "content-length",
            message: format!(
                "the {what} body left the filter with {sent} bytes but content-length says \
                 {declared}; Envoy forwards the header as it is, so the {peer} {outcome} \
                 (remove content-length in the headers callback when changing the body's size)"
            ),
        });
        Ok(())
    }

    fn check_can_send(&mut self, id: ContextId, dir: Dir, what: &str) -> Result<(), Error> {
        let flow = self.flow_mut(id, dir)?;
        if flow.state == FlowState::Idle {
            return Err(Error::Usage(format!(
                "stream {id}: {dir:?} {what} before {dir:?} headers"
            )));
        }
        if flow.end_of_stream {
            return Err(Error::Usage(format!(
                "stream {id}: {dir:?} {what} after the end of stream"
            )));
        }
        Ok(())
    }

    fn deliver_body(
        &mut self,
        id: ContextId,
        dir: Dir,
        chunk: &[u8],
        end_of_stream: bool,
    ) -> Result<Option<Action>, Error> {
        self.check_can_send(id, dir, "body")?;
        let flow = self.flow_mut(id, dir)?;
        flow.body.extend_from_slice(chunk);
        flow.end_of_stream = end_of_stream;
        match flow.state {
            FlowState::HeadersStopped => {
                flow.body_waiting = true;
                Ok(None)
            }
            FlowState::Done => Ok(None),
            _ => self.call_body(id, dir).map(Some),
        }
    }

    /// `proxy_on_*_body` with everything buffered, then forwards or keeps buffering.
    fn call_body(&mut self, id: ContextId, dir: Dir) -> Result<Action, Error> {
        let flow = self.flow_mut(id, dir)?;
        let size = flow.body.len() as u32;
        let end = flow.end_of_stream && flow.trailers.is_none();
        let (_, on_body, _) = dir.callbacks();
        let action = self
            .invoke(on_body, id, &[id, size, u32::from(end)])?
            .map_or(Action::Continue, Action::from_u32);
        if self.answered_locally(id, dir)? {
            return Ok(action);
        }
        match action {
            // Trailers the filter added in the last body callback go too.
            Action::Continue if end && self.flow_mut(id, dir)?.trailers.is_some() => {
                self.forward_trailers(id, dir)?;
            }
            Action::Continue => self.forward_body(id, dir)?,
            _ => self.flow_mut(id, dir)?.state = FlowState::BodyStopped,
        }
        Ok(action)
    }

    fn deliver_trailers(
        &mut self,
        id: ContextId,
        dir: Dir,
        trailers: HeaderMap,
    ) -> Result<Option<Action>, Error> {
        self.check_can_send(id, dir, "trailers")?;
        let flow = self.flow_mut(id, dir)?;
        flow.trailers = Some(trailers);
        flow.end_of_stream = true;
        match flow.state {
            FlowState::HeadersStopped => {
                flow.trailers_waiting = true;
                Ok(None)
            }
            FlowState::Done => Ok(None),
            _ => self.call_trailers(id, dir).map(Some),
        }
    }

    fn call_trailers(&mut self, id: ContextId, dir: Dir) -> Result<Action, Error> {
        let count = self
            .flow_mut(id, dir)?
            .trailers
            .as_ref()
            .map_or(0, HeaderMap::len) as u32;
        self.flow_mut(id, dir)?.trailers_visible = true;
        let (_, _, on_trailers) = dir.callbacks();
        let action = self
            .invoke(on_trailers, id, &[id, count])?
            .map_or(Action::Continue, Action::from_u32);
        if self.answered_locally(id, dir)? {
            return Ok(action);
        }
        match action {
            Action::Continue => {
                self.flow_mut(id, dir)?.trailers_visible = false;
                self.forward_trailers(id, dir)?;
            }
            _ => self.flow_mut(id, dir)?.state = FlowState::TrailersStopped,
        }
        Ok(action)
    }

    /// `proxy_continue_stream`, run once the VM call that asked returned.
    pub(super) fn resume(&mut self, id: ContextId, kind: StreamType) -> Result<(), Error> {
        let dir = match kind {
            StreamType::HttpRequest => Dir::Request,
            StreamType::HttpResponse => Dir::Response,
            StreamType::Downstream | StreamType::Upstream => {
                return self.resume_tcp(id, kind);
            }
        };
        let Ok(flow) = self.flow_mut(id, dir) else {
            return Ok(());
        };
        match flow.state {
            FlowState::HeadersStopped => {
                let (body_waiting, trailers_waiting) = (flow.body_waiting, flow.trailers_waiting);
                flow.body_waiting = false;
                flow.trailers_waiting = false;
                flow.forwarded.headers = flow.headers.clone();
                flow.state = FlowState::Open;
                if body_waiting {
                    // Envoy hands the filter everything that waited, at once.
                    self.call_body(id, dir)?;
                }
                let state = self.flow_mut(id, dir)?.state;
                if trailers_waiting && state == FlowState::Open {
                    self.call_trailers(id, dir)?;
                } else if !body_waiting && !trailers_waiting {
                    self.forward_headers(id, dir)?;
                }
            }
            FlowState::BodyStopped => self.forward_body(id, dir)?,
            FlowState::TrailersStopped => self.forward_trailers(id, dir)?,
            _ => {}
        }
        Ok(())
    }

    /// Sends a local response the way Envoy's `sendLocalReply` does: the
    /// request goes no further, and the response runs through the
    /// filter's own response callbacks.
    pub(super) fn local_response(&mut self, id: ContextId) -> Result<(), Error> {
        let stream = self.stream_mut(id)?;
        let Some(response) = stream.local_response.clone() else {
            return Ok(());
        };
        stream.request.state = FlowState::Done;
        if stream.response.forwarded.headers.is_some() {
            stream.reset = Some("local response after the response started".to_string());
            stream.response.state = FlowState::Done;
            return Ok(());
        }
        let grpc_request = stream
            .request
            .headers
            .as_ref()
            .and_then(|h| h.get("content-type"))
            .is_some_and(|t| t.starts_with("application/grpc"));
        stream.response = Default::default();
        let headers = local_response_headers(&response, grpc_request);
        // A trailers-only gRPC reply carries its body as grpc-message.
        let trailers_only = grpc_request && response.grpc_status.is_some();
        let has_body = !response.body.is_empty() && !trailers_only;
        self.deliver_headers(id, Dir::Response, headers, !has_body)?;
        if has_body && self.flow_mut(id, Dir::Response)?.state != FlowState::Done {
            self.deliver_body(id, Dir::Response, &response.body, true)?;
        }
        Ok(())
    }

    /// Ends the stream as Envoy does when it completes or is reset. For
    /// HTTP that is `proxy_on_log` (the access log runs first), then
    /// `proxy_on_done` and `proxy_on_delete`; for TCP `proxy_on_done`,
    /// `proxy_on_log`, `proxy_on_delete`.
    ///
    /// # Errors
    ///
    /// [`Error::Trap`], or [`Error::NotFound`] for an unknown stream.
    ///
    /// ```
    /// # let module = sdk_host::doc_support::pass_through()?;
    /// let mut host = sdk_host::Host::builder().start(&module)?;
    /// let stream = host.new_http_stream()?;
    /// host.send_request_headers(stream, &[(":path", "/")], true)?;
    /// host.finish(stream)?; // on_log, on_done, on_delete
    /// assert!(host.http(stream)?.finished());
    /// # Ok::<(), Box<dyn std::error::Error>>(())
    /// ```
    pub fn finish(&mut self, id: ContextId) -> Result<(), Error> {
        let kind = self.runtime.state_ref().contexts.get(&id).copied();
        match kind {
            Some(ContextKind::Http) => {
                let stream = self.stream_mut(id)?;
                if stream.finished {
                    return Ok(());
                }
            }
            Some(ContextKind::Tcp) => {
                if self
                    .runtime
                    .state_ref()
                    .tcp
                    .get(&id)
                    .is_some_and(|s| s.finished)
                {
                    return Ok(());
                }
            }
            _ => return Err(Error::NotFound { kind: "stream", id }),
        }
        let order = if kind == Some(ContextKind::Http) {
            [Callback::Log, Callback::Done, Callback::Delete]
        } else {
            [Callback::Done, Callback::Log, Callback::Delete]
        };
        for callback in order {
            self.invoke(callback, id, &[id])?;
        }
        let state = self.runtime.state();
        if let Some(stream) = state.http.get_mut(&id) {
            stream.finished = true;
        }
        if let Some(stream) = state.tcp.get_mut(&id) {
            stream.finished = true;
        }
        self.settle()
    }

    /// What a test can read about an HTTP stream.
    ///
    /// # Errors
    ///
    /// [`Error::NotFound`] for an unknown stream.
    ///
    /// ```
    /// # let module = sdk_host::doc_support::pass_through()?;
    /// let mut host = sdk_host::Host::builder().start(&module)?;
    /// let stream = host.new_http_stream()?;
    /// host.send_request_headers(stream, &[(":path", "/a")], true)?;
    /// let view = host.http(stream)?;
    /// assert_eq!(view.request_headers().and_then(|h| h.get(":path")), Some("/a"));
    /// # Ok::<(), Box<dyn std::error::Error>>(())
    /// ```
    pub fn http(&self, id: ContextId) -> Result<HttpView<'_>, Error> {
        let stream = self.runtime.state_ref().http.get(&id);
        let not_found = Error::NotFound {
            kind: "HTTP stream",
            id,
        };
        stream.map(|stream| HttpView { stream }).ok_or(not_found)
    }
}

/// The headers of a local response as Envoy sends them: the status, the
/// filter's headers, and for a body its length, then `text/plain`. To a
/// gRPC request, a gRPC status makes it trailers-only: `:status` 200, the
/// filter's headers, `application/grpc`, `grpc-status`, the body as
/// `grpc-message`, and no body (checked: `probe-grpc-local-reply.yaml`).
fn local_response_headers(response: &LocalResponse, grpc_request: bool) -> HeaderMap {
    if let (true, Some(grpc_status)) = (grpc_request, response.grpc_status) {
        let mut headers = HeaderMap::from_pairs([(":status", "200")]);
        for (name, value) in response.headers.iter() {
            headers.add(name, value);
        }
        headers.add("content-type", "application/grpc");
        headers.add("grpc-status", grpc_status.to_string());
        if !response.body.is_empty() {
            headers.add("grpc-message", &response.body);
        }
        return headers;
    }
    let mut headers = HeaderMap::from_pairs([(":status", response.status.to_string())]);
    for (name, value) in response.headers.iter() {
        headers.add(name, value);
    }
    if !response.body.is_empty() {
        headers.replace("content-length", response.body.len().to_string());
        if headers.get_bytes("content-type").is_none() {
            headers.add("content-type", "text/plain");
        }
    }
    if let Some(grpc_status) = response.grpc_status {
        headers.replace("grpc-status", grpc_status.to_string());
    }
    headers
}
