//! HTTP and gRPC callouts: what the guest asked for, and the answers a
//! test gives.

use super::lifecycle::Host;
use crate::error::Error;
use crate::headers::HeaderMap;
use crate::records::{CalloutResponse, GrpcCall, HttpCall};
use crate::types::Callback;
use crate::types::Status;

impl Host {
    /// HTTP callouts waiting for an answer, oldest first.
    ///
    /// ```no_run
    /// # let module = sdk_host::WasmModule::from_file("filter.wasm")?;
    /// let mut host = sdk_host::Host::builder().cluster("auth").start(&module)?;
    /// let stream = host.new_http_stream()?;
    /// host.send_request_headers(stream, &[(":path", "/")], true)?;
    /// let calls = host.http_calls();
    /// assert_eq!(calls[0].upstream, "auth");
    /// # Ok::<(), Box<dyn std::error::Error>>(())
    /// ```
    pub fn http_calls(&self) -> Vec<HttpCall> {
        self.runtime
            .state_ref()
            .http_calls
            .values()
            .cloned()
            .collect()
    }

    /// Answers a callout: `proxy_on_http_call_response`. Envoy runs callouts
    /// on the root context, so that is the context the guest is called in,
    /// even when a stream made the call.
    ///
    /// # Errors
    ///
    /// [`Error::NotFound`] for an unknown token, [`Error::Trap`].
    ///
    /// ```no_run
    /// # let module = sdk_host::WasmModule::from_file("filter.wasm")?;
    /// use sdk_host::CalloutResponse;
    /// let mut host = sdk_host::Host::builder().cluster("auth").start(&module)?;
    /// let stream = host.new_http_stream()?;
    /// host.send_request_headers(stream, &[(":path", "/")], true)?;
    /// let token = host.http_calls()[0].token;
    /// host.respond_http_call(token, CalloutResponse::new(200).body("allowed"))?;
    /// assert!(host.http(stream)?.upstream().complete);
    /// # Ok::<(), Box<dyn std::error::Error>>(())
    /// ```
    pub fn respond_http_call(
        &mut self,
        token: u32,
        response: CalloutResponse,
    ) -> Result<(), Error> {
        let call = self.take_http_call(token)?;
        let root = self.root_of_call(call.context_id);
        let args = [
            root,
            token,
            response.headers.len() as u32,
            response.body.len() as u32,
            response.trailers.len() as u32,
        ];
        let data = &mut self.runtime.state().callback_data;
        data.call_headers = Some(response.headers);
        data.call_body = Some(response.body);
        data.call_trailers = Some(response.trailers);
        self.invoke(Callback::HttpCallResponse, root, &args)?;
        self.settle()
    }

    /// Fails a callout as a reset does in Envoy: the guest gets a response
    /// with no headers, and `proxy_get_status` says (11, "reset").
    ///
    /// # Errors
    ///
    /// As [`Host::respond_http_call`].
    ///
    /// ```no_run
    /// # let module = sdk_host::WasmModule::from_file("filter.wasm")?;
    /// # let mut host = sdk_host::Host::builder().start(&module)?;
    /// // The connection to the cluster was reset: the guest gets (0, 0, 0).
    /// let token = host.http_calls()[0].token;
    /// host.fail_http_call(token)?;
    /// # Ok::<(), Box<dyn std::error::Error>>(())
    /// ```
    pub fn fail_http_call(&mut self, token: u32) -> Result<(), Error> {
        self.http_call_failed(token)?;
        self.settle()
    }

    /// Removes a pending callout: it is being answered.
    fn take_http_call(&mut self, token: u32) -> Result<HttpCall, Error> {
        let not_found = Error::NotFound {
            kind: "HTTP callout",
            id: token,
        };
        self.runtime
            .state()
            .http_calls
            .remove(&token)
            .ok_or(not_found)
    }

    fn http_call_failed(&mut self, token: u32) -> Result<(), Error> {
        let call = self.take_http_call(token)?;
        let data = &mut self.runtime.state().callback_data;
        data.call_headers = Some(HeaderMap::default());
        data.call_body = Some(Vec::new());
        data.call_trailers = Some(HeaderMap::default());
        self.runtime.state().status = (Status::BrokenConnection as u32, b"reset".to_vec());
        let root = self.root_of_call(call.context_id);
        self.invoke(Callback::HttpCallResponse, root, &[root, token, 0, 0, 0])?;
        Ok(())
    }

    /// Envoy's async client answers a callout that times out with its own
    /// 504 response.
    pub(super) fn http_call_timed_out(&mut self, token: u32) -> Result<(), Error> {
        let body = "upstream request timeout";
        let response = CalloutResponse::new(504)
            .header("content-length", &body.len().to_string())
            .header("content-type", "text/plain")
            .body(body);
        self.respond_http_call(token, response)
    }

    fn root_of_call(&self, context: u32) -> u32 {
        self.runtime.state_ref().root_of(context).unwrap_or(context)
    }

    /// gRPC calls and streams that are open, oldest first.
    ///
    /// ```no_run
    /// # let module = sdk_host::WasmModule::from_file("filter.wasm")?;
    /// # let host = sdk_host::Host::builder().start(&module)?;
    /// for call in host.grpc_calls() {
    ///     println!("{}/{} on {}", call.service, call.method, String::from_utf8_lossy(&call.upstream));
    /// }
    /// # Ok::<(), Box<dyn std::error::Error>>(())
    /// ```
    pub fn grpc_calls(&self) -> Vec<GrpcCall> {
        self.runtime
            .state_ref()
            .grpc_calls
            .values()
            .cloned()
            .collect()
    }

    /// Answers a unary gRPC call successfully. Envoy calls only
    /// `proxy_on_grpc_receive` for that (no metadata, no close).
    ///
    /// # Errors
    ///
    /// [`Error::NotFound`] for an unknown token, [`Error::Trap`].
    ///
    /// ```no_run
    /// # let module = sdk_host::WasmModule::from_file("filter.wasm")?;
    /// # let mut host = sdk_host::Host::builder().start(&module)?;
    /// let token = host.grpc_calls()[0].token;
    /// host.grpc_respond(token, b"\x08\x01")?; // the serialized response message
    /// # Ok::<(), Box<dyn std::error::Error>>(())
    /// ```
    pub fn grpc_respond(&mut self, token: u32, message: impl AsRef<[u8]>) -> Result<(), Error> {
        self.grpc_receive(token, message)?;
        let state = self.runtime.state();
        if state.grpc_calls.get(&token).is_some_and(|c| !c.streaming) {
            state.grpc_calls.remove(&token);
        }
        Ok(())
    }

    /// The gRPC server sends initial metadata: `proxy_on_grpc_receive_initial_metadata`.
    ///
    /// # Errors
    ///
    /// As [`Host::grpc_respond`].
    ///
    /// ```no_run
    /// # let module = sdk_host::WasmModule::from_file("filter.wasm")?;
    /// # let mut host = sdk_host::Host::builder().start(&module)?;
    /// let token = host.grpc_calls()[0].token;
    /// let metadata = sdk_host::HeaderMap::from_pairs([("x-server", "a")]);
    /// host.grpc_receive_initial_metadata(token, metadata)?;
    /// # Ok::<(), Box<dyn std::error::Error>>(())
    /// ```
    pub fn grpc_receive_initial_metadata(
        &mut self,
        token: u32,
        metadata: HeaderMap,
    ) -> Result<(), Error> {
        self.grpc_metadata(token, metadata, Callback::GrpcReceiveInitialMetadata)
    }

    /// The gRPC server sends a message: `proxy_on_grpc_receive`.
    ///
    /// # Errors
    ///
    /// As [`Host::grpc_respond`].
    ///
    /// ```no_run
    /// # let module = sdk_host::WasmModule::from_file("filter.wasm")?;
    /// # let mut host = sdk_host::Host::builder().start(&module)?;
    /// let token = host.grpc_calls()[0].token;
    /// host.grpc_receive(token, b"first message")?;
    /// host.grpc_receive(token, b"second message")?;
    /// # Ok::<(), Box<dyn std::error::Error>>(())
    /// ```
    pub fn grpc_receive(&mut self, token: u32, message: impl AsRef<[u8]>) -> Result<(), Error> {
        let context = self.grpc_context(token)?;
        let message = message.as_ref().to_vec();
        let size = message.len() as u32;
        self.runtime.state().callback_data.grpc_message = Some(message);
        self.invoke(Callback::GrpcReceive, context, &[context, token, size])?;
        self.settle()
    }

    /// The gRPC server sends trailing metadata: `proxy_on_grpc_receive_trailing_metadata`.
    ///
    /// # Errors
    ///
    /// As [`Host::grpc_respond`].
    ///
    /// ```no_run
    /// # let module = sdk_host::WasmModule::from_file("filter.wasm")?;
    /// # let mut host = sdk_host::Host::builder().start(&module)?;
    /// let token = host.grpc_calls()[0].token;
    /// let trailers = sdk_host::HeaderMap::from_pairs([("grpc-status", "0")]);
    /// host.grpc_receive_trailing_metadata(token, trailers)?;
    /// # Ok::<(), Box<dyn std::error::Error>>(())
    /// ```
    pub fn grpc_receive_trailing_metadata(
        &mut self,
        token: u32,
        metadata: HeaderMap,
    ) -> Result<(), Error> {
        self.grpc_metadata(token, metadata, Callback::GrpcReceiveTrailingMetadata)
    }

    /// Hands the guest initial or trailing metadata in its callback.
    fn grpc_metadata(
        &mut self,
        token: u32,
        metadata: HeaderMap,
        callback: Callback,
    ) -> Result<(), Error> {
        let context = self.grpc_context(token)?;
        let count = metadata.len() as u32;
        let data = &mut self.runtime.state().callback_data;
        if callback == Callback::GrpcReceiveInitialMetadata {
            data.grpc_initial = Some(metadata);
        } else {
            data.grpc_trailing = Some(metadata);
        }
        self.invoke(callback, context, &[context, token, count])?;
        self.settle()
    }

    /// The call ends with a gRPC status: `proxy_on_grpc_close`; the guest
    /// reads the status and message with `proxy_get_status`.
    ///
    /// # Errors
    ///
    /// As [`Host::grpc_respond`].
    ///
    /// ```no_run
    /// # let module = sdk_host::WasmModule::from_file("filter.wasm")?;
    /// # let mut host = sdk_host::Host::builder().start(&module)?;
    /// let token = host.grpc_calls()[0].token;
    /// host.grpc_close(token, 14, "unavailable")?; // gRPC status UNAVAILABLE
    /// # Ok::<(), Box<dyn std::error::Error>>(())
    /// ```
    pub fn grpc_close(&mut self, token: u32, status: u32, message: &str) -> Result<(), Error> {
        let context = self.grpc_context(token)?;
        self.runtime.state().grpc_calls.remove(&token);
        self.runtime.state().status = (status, message.as_bytes().to_vec());
        self.invoke(Callback::GrpcClose, context, &[context, token, status])?;
        self.settle()
    }

    /// The root context gRPC callbacks go to (Envoy runs gRPC on the root).
    fn grpc_context(&self, token: u32) -> Result<u32, Error> {
        self.runtime
            .state_ref()
            .grpc_calls
            .get(&token)
            .map(|c| self.root_of_call(c.context_id))
            .ok_or(Error::NotFound {
                kind: "gRPC call",
                id: token,
            })
    }
}
