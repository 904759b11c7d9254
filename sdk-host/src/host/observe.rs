//! What a test reads: logs, violations, metrics, shared data, and views of
//! the streams.

use super::lifecycle::Host;
use crate::headers::HeaderMap;
use crate::model::{FlowState, HttpStream, TcpStream};
use crate::proxy::{MetricValue, Proxy};
use crate::records::{Forwarded, LocalResponse, LogRecord, Violation};
use crate::types::{LogLevel, StreamType};

impl Host {
    /// Everything the guest logged, in order.
    ///
    /// ```
    /// # let module = sdk_host::doc_support::logs_on_start(2, "ready")?;
    /// let host = sdk_host::Host::builder().start(&module)?;
    /// assert_eq!(host.logs()[0].message, "ready");
    /// assert_eq!(host.logs()[0].level, sdk_host::LogLevel::Info);
    /// # Ok::<(), Box<dyn std::error::Error>>(())
    /// ```
    pub fn logs(&self) -> &[LogRecord] {
        &self.runtime.state_ref().logs
    }

    /// Logged lines at `level` or above, as text.
    ///
    /// ```
    /// # let module = sdk_host::doc_support::logs_on_start(2, "ready")?;
    /// use sdk_host::LogLevel;
    /// let host = sdk_host::Host::builder().start(&module)?;
    /// assert_eq!(host.log_lines(LogLevel::Info), ["ready"]);
    /// assert!(host.log_lines(LogLevel::Error).is_empty());
    /// # Ok::<(), Box<dyn std::error::Error>>(())
    /// ```
    pub fn log_lines(&self, level: LogLevel) -> Vec<String> {
        self.logs()
            .iter()
            .filter(|r| r.level >= level)
            .map(|r| r.message.clone())
            .collect()
    }

    /// Forgets the logs so far (between phases of a test).
    ///
    /// ```
    /// # let module = sdk_host::doc_support::pass_through()?;
    /// let mut host = sdk_host::Host::builder().start(&module)?;
    /// host.clear_logs(); // forget start-up, look at one request's logs only
    /// assert!(host.logs().is_empty());
    /// # Ok::<(), Box<dyn std::error::Error>>(())
    /// ```
    pub fn clear_logs(&mut self) {
        self.runtime.state().logs.clear();
    }

    /// What Envoy would have rejected or ignored so far.
    ///
    /// ```
    /// # let module = sdk_host::doc_support::pass_through()?;
    /// let mut host = sdk_host::Host::builder().start(&module)?;
    /// let stream = host.new_http_stream()?;
    /// host.send_request_headers(stream, &[(":path", "/")], true)?;
    /// assert!(host.violations().is_empty(), "{:#?}", host.violations());
    /// # Ok::<(), Box<dyn std::error::Error>>(())
    /// ```
    pub fn violations(&self) -> &[Violation] {
        &self.runtime.state_ref().violations
    }

    /// How many times the guest called each hostcall so far, by import
    /// name. In Envoy each call crosses the VM boundary, at a cost of
    /// thousands of instructions, so the difference over one request is
    /// a filter's per-request cost model.
    ///
    /// ```
    /// let module = sdk_host::doc_support::logs_on_start(3, "ready")?;
    /// let mut host = sdk_host::Host::builder().start(&module)?;
    /// // The module logged once, from proxy_on_vm_start.
    /// assert_eq!(host.hostcall_counts().get("proxy_log"), Some(&1));
    /// let before = host.hostcall_counts();
    /// let stream = host.new_http_stream()?;
    /// host.send_request_headers(stream, &[(":path", "/")], true)?;
    /// // It answers the request's callbacks without a hostcall.
    /// assert_eq!(host.hostcall_counts(), before);
    /// # Ok::<(), Box<dyn std::error::Error>>(())
    /// ```
    pub fn hostcall_counts(&self) -> std::collections::BTreeMap<&'static str, u64> {
        self.runtime.state_ref().hostcall_counts.clone()
    }

    /// A metric's value by the name the guest defined it with.
    ///
    /// ```
    /// # let module = sdk_host::doc_support::pass_through()?;
    /// let host = sdk_host::Host::builder().start(&module)?;
    /// // Defined by the guest with proxy_define_metric; this module defines none.
    /// assert_eq!(host.metric("my_filter.requests"), None);
    /// # Ok::<(), Box<dyn std::error::Error>>(())
    /// ```
    pub fn metric(&self, name: &str) -> Option<MetricValue> {
        self.runtime.state_ref().proxy.lock().metrics_get(name)
    }

    /// A counter's total (`None` if undefined or not a counter).
    ///
    /// ```no_run
    /// # let module = sdk_host::WasmModule::from_file("filter.wasm")?;
    /// let mut host = sdk_host::Host::builder().start(&module)?;
    /// let stream = host.new_http_stream()?;
    /// host.send_request_headers(stream, &[(":path", "/")], true)?;
    /// assert_eq!(host.counter("my_filter.requests"), Some(1));
    /// # Ok::<(), Box<dyn std::error::Error>>(())
    /// ```
    pub fn counter(&self, name: &str) -> Option<u64> {
        match self.metric(name)? {
            MetricValue::Counter(v) => Some(v),
            _ => None,
        }
    }

    /// A gauge's value (`None` if undefined or not a gauge).
    ///
    /// ```no_run
    /// # let module = sdk_host::WasmModule::from_file("filter.wasm")?;
    /// let host = sdk_host::Host::builder().start(&module)?;
    /// assert_eq!(host.gauge("my_filter.active_streams"), Some(0));
    /// # Ok::<(), Box<dyn std::error::Error>>(())
    /// ```
    pub fn gauge(&self, name: &str) -> Option<i64> {
        match self.metric(name)? {
            MetricValue::Gauge(v) => Some(v),
            _ => None,
        }
    }

    /// Shared data of this VM's `vm_id`: value and CAS.
    ///
    /// ```
    /// # let module = sdk_host::doc_support::pass_through()?;
    /// let host = sdk_host::Host::builder().vm_id("vm").start(&module)?;
    /// assert!(host.proxy().set_shared_data("vm", "limit", b"10").is_ok());
    /// let (value, cas) = host.shared_data("limit").ok_or("missing")?;
    /// assert_eq!((value.as_slice(), cas > 0), (&b"10"[..], true));
    /// # Ok::<(), Box<dyn std::error::Error>>(())
    /// ```
    pub fn shared_data(&self, key: &str) -> Option<(Vec<u8>, u32)> {
        let state = self.runtime.state_ref();
        state.proxy.shared_data(&state.settings.vm_id, key)
    }

    /// The process-wide state this host uses.
    ///
    /// ```
    /// # let module = sdk_host::doc_support::pass_through()?;
    /// let host = sdk_host::Host::builder().start(&module)?;
    /// // A handle on the process-wide state, to share with another host.
    /// let proxy = host.proxy();
    /// let _worker = sdk_host::Host::builder().proxy(&proxy).start(&module)?;
    /// # Ok::<(), Box<dyn std::error::Error>>(())
    /// ```
    pub fn proxy(&self) -> Proxy {
        self.runtime.state_ref().proxy.clone()
    }

    /// The VM failed (a trap): Envoy no longer calls it.
    ///
    /// ```
    /// # let module = sdk_host::doc_support::pass_through()?;
    /// let host = sdk_host::Host::builder().start(&module)?;
    /// assert_eq!(host.failure(), None); // set once the guest traps
    /// # Ok::<(), Box<dyn std::error::Error>>(())
    /// ```
    pub fn failure(&self) -> Option<&str> {
        self.failed.as_deref()
    }

    /// The exit code the guest passed to WASI `proc_exit`, if it did.
    ///
    /// ```
    /// # let module = sdk_host::doc_support::pass_through()?;
    /// let host = sdk_host::Host::builder().start(&module)?;
    /// assert_eq!(host.exit_code(), None); // set by WASI proc_exit
    /// # Ok::<(), Box<dyn std::error::Error>>(())
    /// ```
    pub fn exit_code(&self) -> Option<u32> {
        self.runtime.state_ref().exit_code
    }
}

/// A read-only view of an HTTP stream.
///
/// ```
/// # let module = sdk_host::doc_support::pass_through()?;
/// let mut host = sdk_host::Host::builder().start(&module)?;
/// let stream = host.new_http_stream()?;
/// host.send_request_headers(stream, &[(":path", "/")], true)?;
/// let view = host.http(stream)?;
/// assert!(view.upstream().complete && view.local_response().is_none() && !view.request_paused());
/// # Ok::<(), Box<dyn std::error::Error>>(())
/// ```
pub struct HttpView<'a> {
    pub(super) stream: &'a HttpStream,
}

impl HttpView<'_> {
    /// The request headers as the filter left them.
    ///
    /// ```
    /// # let module = sdk_host::doc_support::pass_through()?;
    /// let mut host = sdk_host::Host::builder().start(&module)?;
    /// let stream = host.new_http_stream()?;
    /// host.send_request_headers(stream, &[(":path", "/"), ("x-user", "a")], true)?;
    /// assert_eq!(host.http(stream)?.request_headers().and_then(|h| h.get("x-user")), Some("a"));
    /// # Ok::<(), Box<dyn std::error::Error>>(())
    /// ```
    pub fn request_headers(&self) -> Option<&HeaderMap> {
        self.stream.request.headers.as_ref()
    }

    /// The request trailers as the filter left them.
    ///
    /// ```
    /// # let module = sdk_host::doc_support::pass_through()?;
    /// let mut host = sdk_host::Host::builder().start(&module)?;
    /// let stream = host.new_http_stream()?;
    /// host.send_request_headers(stream, &[(":method", "POST")], false)?;
    /// host.send_request_trailers(stream, &[("x-sum", "9")])?;
    /// assert_eq!(host.http(stream)?.request_trailers().and_then(|t| t.get("x-sum")), Some("9"));
    /// # Ok::<(), Box<dyn std::error::Error>>(())
    /// ```
    pub fn request_trailers(&self) -> Option<&HeaderMap> {
        self.stream.request.trailers.as_ref()
    }

    /// The response headers as the filter left them.
    ///
    /// ```
    /// # let module = sdk_host::doc_support::pass_through()?;
    /// let mut host = sdk_host::Host::builder().start(&module)?;
    /// let stream = host.new_http_stream()?;
    /// host.send_request_headers(stream, &[(":path", "/")], true)?;
    /// host.send_response_headers(stream, &[(":status", "404")], true)?;
    /// assert_eq!(host.http(stream)?.response_headers().and_then(|h| h.get(":status")), Some("404"));
    /// # Ok::<(), Box<dyn std::error::Error>>(())
    /// ```
    pub fn response_headers(&self) -> Option<&HeaderMap> {
        self.stream.response.headers.as_ref()
    }

    /// The response trailers as the filter left them.
    ///
    /// ```
    /// # let module = sdk_host::doc_support::pass_through()?;
    /// let mut host = sdk_host::Host::builder().start(&module)?;
    /// let stream = host.new_http_stream()?;
    /// host.send_request_headers(stream, &[(":path", "/")], true)?;
    /// host.send_response_headers(stream, &[(":status", "200")], false)?;
    /// host.send_response_trailers(stream, &[("grpc-status", "0")])?;
    /// assert!(host.http(stream)?.response_trailers().is_some());
    /// # Ok::<(), Box<dyn std::error::Error>>(())
    /// ```
    pub fn response_trailers(&self) -> Option<&HeaderMap> {
        self.stream.response.trailers.as_ref()
    }

    /// What the upstream server received.
    ///
    /// ```
    /// # let module = sdk_host::doc_support::pass_through()?;
    /// let mut host = sdk_host::Host::builder().start(&module)?;
    /// let stream = host.new_http_stream()?;
    /// host.send_request_headers(stream, &[(":path", "/")], false)?;
    /// host.send_request_body(stream, "data", true)?;
    /// let upstream = host.http(stream)?.upstream().clone();
    /// assert_eq!((upstream.body.as_slice(), upstream.complete), (&b"data"[..], true));
    /// # Ok::<(), Box<dyn std::error::Error>>(())
    /// ```
    pub fn upstream(&self) -> &Forwarded {
        &self.stream.request.forwarded
    }

    /// What the downstream client received.
    ///
    /// ```
    /// # let module = sdk_host::doc_support::pass_through()?;
    /// let mut host = sdk_host::Host::builder().start(&module)?;
    /// let stream = host.new_http_stream()?;
    /// host.send_request_headers(stream, &[(":path", "/")], true)?;
    /// host.send_response_headers(stream, &[(":status", "200")], false)?;
    /// host.send_response_body(stream, "ok", true)?;
    /// assert_eq!(host.http(stream)?.downstream().body, b"ok");
    /// # Ok::<(), Box<dyn std::error::Error>>(())
    /// ```
    pub fn downstream(&self) -> &Forwarded {
        &self.stream.response.forwarded
    }

    /// The local response the filter sent, if it did.
    ///
    /// ```
    /// # let module = sdk_host::doc_support::pass_through()?;
    /// let mut host = sdk_host::Host::builder().start(&module)?;
    /// let stream = host.new_http_stream()?;
    /// host.send_request_headers(stream, &[(":path", "/")], true)?;
    /// // This module never calls proxy_send_local_response.
    /// assert!(host.http(stream)?.local_response().is_none());
    /// # Ok::<(), Box<dyn std::error::Error>>(())
    /// ```
    pub fn local_response(&self) -> Option<&LocalResponse> {
        self.stream.local_response.as_ref()
    }

    /// Whether the request is held by the filter (paused and not resumed).
    ///
    /// ```
    /// # let module = sdk_host::doc_support::pass_through()?;
    /// let mut host = sdk_host::Host::builder().start(&module)?;
    /// let stream = host.new_http_stream()?;
    /// host.send_request_headers(stream, &[(":path", "/")], true)?;
    /// assert!(!host.http(stream)?.request_paused());
    /// # Ok::<(), Box<dyn std::error::Error>>(())
    /// ```
    pub fn request_paused(&self) -> bool {
        matches!(
            self.stream.request.state,
            FlowState::HeadersStopped | FlowState::BodyStopped | FlowState::TrailersStopped
        )
    }

    /// Whether the response is held by the filter.
    ///
    /// ```
    /// # let module = sdk_host::doc_support::pass_through()?;
    /// let mut host = sdk_host::Host::builder().start(&module)?;
    /// let stream = host.new_http_stream()?;
    /// host.send_request_headers(stream, &[(":path", "/")], true)?;
    /// host.send_response_headers(stream, &[(":status", "200")], true)?;
    /// assert!(!host.http(stream)?.response_paused());
    /// # Ok::<(), Box<dyn std::error::Error>>(())
    /// ```
    pub fn response_paused(&self) -> bool {
        matches!(
            self.stream.response.state,
            FlowState::HeadersStopped | FlowState::BodyStopped | FlowState::TrailersStopped
        )
    }

    /// Why the stream was reset, if it was.
    ///
    /// ```
    /// # let module = sdk_host::doc_support::pass_through()?;
    /// let mut host = sdk_host::Host::builder().start(&module)?;
    /// let stream = host.new_http_stream()?;
    /// host.send_request_headers(stream, &[(":path", "/")], true)?;
    /// assert_eq!(host.http(stream)?.reset(), None);
    /// # Ok::<(), Box<dyn std::error::Error>>(())
    /// ```
    pub fn reset(&self) -> Option<&str> {
        self.stream.reset.as_deref()
    }

    /// How often the filter called `clear_route_cache`.
    ///
    /// ```
    /// # let module = sdk_host::doc_support::pass_through()?;
    /// let mut host = sdk_host::Host::builder().start(&module)?;
    /// let stream = host.new_http_stream()?;
    /// host.send_request_headers(stream, &[(":path", "/")], true)?;
    /// assert_eq!(host.http(stream)?.route_cache_cleared(), 0);
    /// # Ok::<(), Box<dyn std::error::Error>>(())
    /// ```
    pub fn route_cache_cleared(&self) -> u32 {
        self.stream.route_cache_cleared
    }

    /// Whether `proxy_on_done`/`proxy_on_log`/`proxy_on_delete` ran.
    ///
    /// ```
    /// # let module = sdk_host::doc_support::pass_through()?;
    /// let mut host = sdk_host::Host::builder().start(&module)?;
    /// let stream = host.new_http_stream()?;
    /// host.send_request_headers(stream, &[(":path", "/")], true)?;
    /// assert!(!host.http(stream)?.finished());
    /// # Ok::<(), Box<dyn std::error::Error>>(())
    /// ```
    pub fn finished(&self) -> bool {
        self.stream.finished
    }
}

/// A read-only view of a TCP stream.
///
/// ```
/// # let module = sdk_host::doc_support::pass_through()?;
/// let mut host = sdk_host::Host::builder().start(&module)?;
/// let (connection, _) = host.new_tcp_stream()?;
/// host.send_downstream_data(connection, "ping", false)?;
/// let view = host.tcp(connection)?;
/// assert_eq!((view.to_upstream(), view.to_downstream()), (&b"ping"[..], &b""[..]));
/// # Ok::<(), Box<dyn std::error::Error>>(())
/// ```
pub struct TcpView<'a> {
    pub(super) stream: &'a TcpStream,
}

impl TcpView<'_> {
    /// Bytes that went to the upstream server.
    ///
    /// ```
    /// # let module = sdk_host::doc_support::pass_through()?;
    /// let mut host = sdk_host::Host::builder().start(&module)?;
    /// let (connection, _) = host.new_tcp_stream()?;
    /// host.send_downstream_data(connection, "GET", false)?;
    /// assert_eq!(host.tcp(connection)?.to_upstream(), b"GET");
    /// # Ok::<(), Box<dyn std::error::Error>>(())
    /// ```
    pub fn to_upstream(&self) -> &[u8] {
        &self.stream.to_upstream
    }

    /// Bytes that went to the downstream client.
    ///
    /// ```
    /// # let module = sdk_host::doc_support::pass_through()?;
    /// let mut host = sdk_host::Host::builder().start(&module)?;
    /// let (connection, _) = host.new_tcp_stream()?;
    /// host.send_upstream_data(connection, "200", false)?;
    /// assert_eq!(host.tcp(connection)?.to_downstream(), b"200");
    /// # Ok::<(), Box<dyn std::error::Error>>(())
    /// ```
    pub fn to_downstream(&self) -> &[u8] {
        &self.stream.to_downstream
    }

    /// Sides the filter closed with `proxy_close_stream`.
    ///
    /// ```
    /// # let module = sdk_host::doc_support::pass_through()?;
    /// let mut host = sdk_host::Host::builder().start(&module)?;
    /// let (connection, _) = host.new_tcp_stream()?;
    /// // Sides the guest closed with proxy_close_stream; this one closes none.
    /// assert!(host.tcp(connection)?.closed().is_empty());
    /// # Ok::<(), Box<dyn std::error::Error>>(())
    /// ```
    pub fn closed(&self) -> &[StreamType] {
        &self.stream.closed
    }
}
