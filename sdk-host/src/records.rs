//! What a host records for a test to read (log lines, Envoy-rule
//! violations, local responses, callouts, what left the filter), and the
//! callout answers a test hands it.

use crate::headers::HeaderMap;
use crate::types::{Callback, LogLevel};
use std::fmt;

/// One line the guest logged, through `proxy_log` or WASI stdout/stderr.
///
/// ```
/// # let module = sdk_host::doc_support::logs_on_start(3, "ready")?;
/// let host = sdk_host::Host::builder().start(&module)?;
/// let record = &host.logs()[0];
/// assert_eq!((record.level, record.message.as_str()), (sdk_host::LogLevel::Warn, "ready"));
/// # Ok::<(), Box<dyn std::error::Error>>(())
/// ```
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct LogRecord {
    /// Its level (stdout is `Info`, stderr `Error`, as in Envoy).
    pub level: LogLevel,
    /// The message, lossily decoded.
    pub message: String,
    /// The context that was effective when it was logged.
    pub context_id: u32,
}

impl fmt::Display for LogRecord {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(
            f,
            "[{}] (context {}) {}",
            self.level, self.context_id, self.message
        )
    }
}

/// Something the guest did that Envoy would reject, ignore or mishandle.
///
/// The hostcall still returns what Envoy returns; the violation is how a
/// test learns that a filter relies on behaviour a real proxy lacks.
///
/// ```
/// # let module = sdk_host::doc_support::pass_through()?;
/// let mut host = sdk_host::Host::builder().start(&module)?;
/// let stream = host.new_http_stream()?;
/// // A body longer than its content-length: Envoy would forward both as they are.
/// host.send_request_headers(stream, &[(":method", "POST"), ("content-length", "3")], false)?;
/// host.send_request_body(stream, "abcd", true)?;
/// let violation = &host.violations()[0];
/// assert_eq!(violation.call, "content-length");
/// assert!(violation.message.contains("4 bytes but content-length says 3"));
/// # Ok::<(), Box<dyn std::error::Error>>(())
/// ```
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Violation {
    /// The context that was effective.
    pub context_id: u32,
    /// The callback that was running, if any.
    pub callback: Option<Callback>,
    /// The hostcall or action concerned, e.g. `proxy_send_local_response`.
    pub call: &'static str,
    /// What Envoy does about it.
    pub message: String,
}

impl fmt::Display for Violation {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self.callback {
            Some(cb) => write!(
                f,
                "{} in {} (context {}): {}",
                self.call,
                cb.export_name(),
                self.context_id,
                self.message
            ),
            None => write!(
                f,
                "{} (context {}): {}",
                self.call, self.context_id, self.message
            ),
        }
    }
}

/// A local response a filter sent with `proxy_send_local_response`.
///
/// ```no_run
/// # let module = sdk_host::WasmModule::from_file("deny.wasm")?;
/// let mut host = sdk_host::Host::builder().start(&module)?;
/// let stream = host.new_http_stream()?;
/// host.send_request_headers(stream, &[(":path", "/admin")], true)?;
/// let view = host.http(stream)?;
/// let reply = view.local_response().ok_or("no local response")?;
/// assert_eq!((reply.status, reply.details.as_str()), (403, "denied"));
/// # Ok::<(), Box<dyn std::error::Error>>(())
/// ```
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct LocalResponse {
    /// HTTP status code.
    pub status: u32,
    /// Envoy's response code details, e.g. `fault_filter_abort`.
    pub details: String,
    /// The body.
    pub body: Vec<u8>,
    /// Extra headers the filter asked for.
    pub headers: HeaderMap,
    /// The gRPC status, if one was given (`-1`/`0xffffffff` means none).
    pub grpc_status: Option<u32>,
}

/// What went past the filter in one direction: what the upstream server
/// (request) or the downstream client (response) received.
///
/// ```
/// # let module = sdk_host::doc_support::pass_through()?;
/// let mut host = sdk_host::Host::builder().start(&module)?;
/// let stream = host.new_http_stream()?;
/// host.send_request_headers(stream, &[(":path", "/")], false)?;
/// host.send_request_body(stream, "data", true)?;
/// let view = host.http(stream)?;
/// let sent = view.upstream();
/// assert!(sent.headers.is_some() && sent.complete && sent.trailers.is_none());
/// # Ok::<(), Box<dyn std::error::Error>>(())
/// ```
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct Forwarded {
    /// The headers as they left the filter, once they did.
    pub headers: Option<HeaderMap>,
    /// The body bytes that left the filter.
    pub body: Vec<u8>,
    /// The trailers, once they left the filter.
    pub trailers: Option<HeaderMap>,
    /// Whether the end of stream left the filter.
    pub complete: bool,
}

/// An HTTP callout the guest made with `proxy_http_call`.
///
/// ```no_run
/// # let module = sdk_host::WasmModule::from_file("authz.wasm")?;
/// let mut host = sdk_host::Host::builder().cluster("authz").start(&module)?;
/// let stream = host.new_http_stream()?;
/// host.send_request_headers(stream, &[(":path", "/")], true)?;
/// let call = &host.http_calls()[0];
/// assert_eq!((call.upstream.as_str(), call.headers.get(":path")), ("authz", Some("/check")));
/// # Ok::<(), Box<dyn std::error::Error>>(())
/// ```
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct HttpCall {
    /// The token the guest got.
    pub token: u32,
    /// The context that made it, and gets the answer.
    pub context_id: u32,
    /// The cluster.
    pub upstream: String,
    /// Request headers.
    pub headers: HeaderMap,
    /// Request body.
    pub body: Vec<u8>,
    /// Request trailers.
    pub trailers: HeaderMap,
    /// The timeout in milliseconds.
    pub timeout_ms: u32,
    /// When it was made, on the host clock.
    pub sent_nanos: u64,
}

/// A gRPC call or stream the guest opened.
///
/// ```no_run
/// # let module = sdk_host::WasmModule::from_file("ratelimit.wasm")?;
/// let mut host = sdk_host::Host::builder().start(&module)?;
/// let stream = host.new_http_stream()?;
/// host.send_request_headers(stream, &[(":path", "/")], true)?;
/// let call = &host.grpc_calls()[0];
/// assert_eq!(call.method, "ShouldRateLimit");
/// # Ok::<(), Box<dyn std::error::Error>>(())
/// ```
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct GrpcCall {
    /// The token the guest got.
    pub token: u32,
    /// The context that made it.
    pub context_id: u32,
    /// The cluster (or the serialized `GrpcService`, as the guest sent it).
    pub upstream: Vec<u8>,
    /// Service name.
    pub service: String,
    /// Method name.
    pub method: String,
    /// Initial metadata.
    pub initial_metadata: HeaderMap,
    /// Messages sent so far (the request message of a unary call first).
    pub messages: Vec<Vec<u8>>,
    /// `true` for `proxy_grpc_stream`.
    pub streaming: bool,
    /// The guest half-closed its side (`end_stream` or `proxy_grpc_close`).
    pub local_closed: bool,
    /// The guest cancelled it.
    pub cancelled: bool,
    /// The timeout in milliseconds (unary calls).
    pub timeout_ms: u32,
    /// When it was made, on the host clock.
    pub sent_nanos: u64,
}

/// An HTTP response a test gives to a callout.
///
/// # Examples
///
/// ```
/// use sdk_host::CalloutResponse;
/// let ok = CalloutResponse::new(200).header("content-type", "text/plain").body("ok");
/// assert_eq!(ok.headers.get(":status"), Some("200"));
/// ```
#[derive(Debug, Clone, Default)]
pub struct CalloutResponse {
    /// Headers, `:status` first.
    pub headers: HeaderMap,
    /// Body.
    pub body: Vec<u8>,
    /// Trailers.
    pub trailers: HeaderMap,
}

impl CalloutResponse {
    /// A response with this status and nothing else.
    ///
    /// ```no_run
    /// # let module = sdk_host::WasmModule::from_file("filter.wasm")?;
    /// # let mut host = sdk_host::Host::builder().start(&module)?;
    /// use sdk_host::CalloutResponse;
    /// for call in host.http_calls() {
    ///     host.respond_http_call(call.token, CalloutResponse::new(204))?;
    /// }
    /// # Ok::<(), Box<dyn std::error::Error>>(())
    /// ```
    pub fn new(status: u16) -> CalloutResponse {
        CalloutResponse {
            headers: HeaderMap::from_pairs([(":status", status.to_string())]),
            ..CalloutResponse::default()
        }
    }

    /// Adds a header.
    ///
    /// ```
    /// let answer = sdk_host::CalloutResponse::new(200).header("x-user", "alice");
    /// # let _ = answer;
    /// ```
    pub fn header(mut self, name: &str, value: &str) -> Self {
        self.headers.add(name, value);
        self
    }

    /// Sets the body.
    ///
    /// ```
    /// let answer = sdk_host::CalloutResponse::new(200).body(r#"{"allowed": true}"#);
    /// # let _ = answer;
    /// ```
    pub fn body(mut self, body: impl AsRef<[u8]>) -> Self {
        self.body = body.as_ref().to_vec();
        self
    }

    /// Adds a trailer.
    ///
    /// ```
    /// let answer = sdk_host::CalloutResponse::new(200).body("ok").trailer("x-checksum", "abc");
    /// # let _ = answer;
    /// ```
    pub fn trailer(mut self, name: &str, value: &str) -> Self {
        self.trailers.add(name, value);
        self
    }
}
