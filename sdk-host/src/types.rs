//! The ABI's enums, with the numbers Proxy-Wasm 0.2.1 gives them on the wire.

use std::fmt;

/// Declares an ABI enum with its wire numbers, and `from_u32`, its inverse,
/// from one list.
macro_rules! wire_enum {
    (
        $(#[$meta:meta])*
        pub enum $name:ident {
            $($(#[$variant_meta:meta])* $variant:ident = $number:literal,)*
        }
    ) => {
        $(#[$meta])*
        #[repr(u32)]
        pub enum $name {
            $($(#[$variant_meta])* $variant = $number,)*
        }

        impl $name {
            /// The value with this wire number, if the ABI defines one.
            ///
            #[doc = concat!("```\nuse sdk_host::", stringify!($name), ";")]
            #[doc = concat!("assert_eq!(", stringify!($name), "::from_u32(0).map(|v| v as u32), Some(0));")]
            #[doc = concat!("assert_eq!(", stringify!($name), "::from_u32(u32::MAX), None);\n```")]
            pub fn from_u32(value: u32) -> Option<$name> {
                match value {
                    $($number => Some($name::$variant),)*
                    _ => None,
                }
            }
        }
    };
}

wire_enum! {
    /// Result of a hostcall, as the guest sees it (`WasmResult` in the spec).
    ///
    /// # Examples
    ///
    /// ```
    /// use sdk_host::Status;
    /// assert_eq!(Status::NotFound as u32, 1);
    /// assert_eq!(Status::from_u32(8), Some(Status::CasMismatch));
    /// ```
    #[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
    pub enum Status {
        /// The call succeeded.
        Ok = 0,
        /// The key, map, queue, context or token does not exist.
        NotFound = 1,
        /// An argument is out of range or not allowed here.
        BadArgument = 2,
        /// A value could not be serialized.
        SerializationFailure = 3,
        /// A value could not be parsed.
        ParseFailure = 4,
        /// An expression is invalid.
        BadExpression = 5,
        /// A pointer or length points outside the guest's memory.
        InvalidMemoryAccess = 6,
        /// The queue or buffer is empty.
        Empty = 7,
        /// Compare-and-swap failed: the shared data changed since it was read.
        CasMismatch = 8,
        /// A result did not match.
        ResultMismatch = 9,
        /// The host failed internally.
        InternalFailure = 10,
        /// The connection is broken.
        BrokenConnection = 11,
        /// The host does not implement the call.
        Unimplemented = 12,
    }
}

wire_enum! {
    /// Proxy-Wasm log levels.
    ///
    /// # Examples
    ///
    /// ```
    /// use sdk_host::LogLevel;
    /// assert!(LogLevel::Warn > LogLevel::Info);
    /// assert_eq!(LogLevel::from_u32(4), Some(LogLevel::Error));
    /// ```
    #[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Hash)]
    pub enum LogLevel {
        /// `trace`
        Trace = 0,
        /// `debug`
        Debug = 1,
        /// `info`
        Info = 2,
        /// `warn`
        Warn = 3,
        /// `error`
        Error = 4,
        /// `critical`
        Critical = 5,
    }
}

impl LogLevel {
    /// The level's name as Envoy prints it.
    ///
    /// ```
    /// assert_eq!(sdk_host::LogLevel::Warn.name(), "warning"); // as Envoy's log prints it
    /// ```
    pub fn name(self) -> &'static str {
        match self {
            LogLevel::Trace => "trace",
            LogLevel::Debug => "debug",
            LogLevel::Info => "info",
            LogLevel::Warn => "warning",
            LogLevel::Error => "error",
            LogLevel::Critical => "critical",
        }
    }
}

impl fmt::Display for LogLevel {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.name())
    }
}

wire_enum! {
    /// Which header map a header hostcall addresses.
    ///
    /// # Examples
    ///
    /// ```
    /// use sdk_host::MapType;
    /// assert_eq!(MapType::from_u32(2), Some(MapType::HttpResponseHeaders));
    /// ```
    #[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
    pub enum MapType {
        /// Request headers of the current stream.
        HttpRequestHeaders = 0,
        /// Request trailers of the current stream.
        HttpRequestTrailers = 1,
        /// Response headers of the current stream.
        HttpResponseHeaders = 2,
        /// Response trailers of the current stream.
        HttpResponseTrailers = 3,
        /// Initial metadata of a gRPC call, in `proxy_on_grpc_receive_initial_metadata`.
        GrpcReceiveInitialMetadata = 4,
        /// Trailing metadata of a gRPC call, in `proxy_on_grpc_receive_trailing_metadata`.
        GrpcReceiveTrailingMetadata = 5,
        /// Headers of an HTTP callout's response, in `proxy_on_http_call_response`.
        HttpCallResponseHeaders = 6,
        /// Trailers of an HTTP callout's response, in `proxy_on_http_call_response`.
        HttpCallResponseTrailers = 7,
    }
}

wire_enum! {
    /// Which buffer a buffer hostcall addresses.
    ///
    /// # Examples
    ///
    /// ```
    /// use sdk_host::BufferType;
    /// assert_eq!(BufferType::from_u32(7), Some(BufferType::PluginConfiguration));
    /// ```
    #[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
    pub enum BufferType {
        /// The request body buffered so far.
        HttpRequestBody = 0,
        /// The response body buffered so far.
        HttpResponseBody = 1,
        /// Data from the downstream (client) side of a TCP stream.
        DownstreamData = 2,
        /// Data from the upstream (server) side of a TCP stream.
        UpstreamData = 3,
        /// The body of an HTTP callout's response.
        HttpCallResponseBody = 4,
        /// A gRPC message received.
        GrpcReceiveBuffer = 5,
        /// The VM configuration, in `proxy_on_vm_start`.
        VmConfiguration = 6,
        /// The plugin configuration, in `proxy_on_configure`.
        PluginConfiguration = 7,
        /// The arguments of a foreign function call into the guest.
        CallData = 8,
    }
}

wire_enum! {
    /// Which direction `proxy_continue_stream` and `proxy_close_stream` address.
    ///
    /// # Examples
    ///
    /// ```
    /// use sdk_host::StreamType;
    /// assert_eq!(StreamType::from_u32(1), Some(StreamType::HttpResponse));
    /// ```
    #[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
    pub enum StreamType {
        /// The request direction of an HTTP stream.
        HttpRequest = 0,
        /// The response direction of an HTTP stream.
        HttpResponse = 1,
        /// The downstream side of a TCP stream.
        Downstream = 2,
        /// The upstream side of a TCP stream.
        Upstream = 3,
    }
}

wire_enum! {
    /// Metric kinds of `proxy_define_metric`.
    ///
    /// # Examples
    ///
    /// ```
    /// use sdk_host::MetricType;
    /// assert_eq!(MetricType::from_u32(1), Some(MetricType::Gauge));
    /// ```
    #[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
    pub enum MetricType {
        /// Only ever increases.
        Counter = 0,
        /// Goes up and down, and can be set.
        Gauge = 1,
        /// Records values.
        Histogram = 2,
    }
}

/// Which peer closed a TCP connection.
///
/// # Examples
///
/// ```
/// use sdk_host::PeerType;
/// assert_eq!(PeerType::Remote as u32, 2);
/// ```
#[repr(u32)]
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum PeerType {
    /// Not known.
    Unknown = 0,
    /// The proxy closed it.
    Local = 1,
    /// The peer closed it.
    Remote = 2,
}

/// What a stream callback tells the host to do next.
///
/// The numbers are those of Envoy's `FilterHeadersStatus` and
/// `FilterDataStatus` as Proxy-Wasm passes them: `1` is `StopIteration` for
/// headers and `StopIterationAndBuffer` for bodies.
///
/// # Examples
///
/// ```
/// use sdk_host::Action;
/// assert_eq!(Action::from_u32(1), Action::Pause);
/// assert_eq!(Action::from_u32(3), Action::Other(3));
/// ```
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum Action {
    /// Pass the data on to the next filter (`0`).
    Continue,
    /// Stop iteration; for a body, buffer it (`1`).
    Pause,
    /// Another status an SDK may return (`2`: watermark, `3`: no buffer, ...).
    Other(u32),
}

impl Action {
    /// The action with this wire number.
    ///
    /// ```
    /// use sdk_host::Action;
    /// assert_eq!(Action::from_u32(0), Action::Continue);
    /// assert_eq!(Action::from_u32(2), Action::Other(2));
    /// ```
    pub fn from_u32(value: u32) -> Action {
        match value {
            0 => Action::Continue,
            1 => Action::Pause,
            other => Action::Other(other),
        }
    }

    /// Whether iteration continues.
    ///
    /// ```
    /// use sdk_host::Action;
    /// assert!(Action::Continue.is_continue());
    /// assert!(!Action::Pause.is_continue());
    /// ```
    pub fn is_continue(self) -> bool {
        self == Action::Continue
    }
}

/// Declares [`Callback`], [`Callback::ALL`] and [`Callback::export_name`]
/// from one list of (variant, export) pairs.
macro_rules! callbacks {
    ($($variant:ident => $export:literal,)*) => {
        /// A callback the host makes into the guest, as Envoy names it.
        ///
        /// ```
        /// use sdk_host::Callback;
        /// assert_eq!(Callback::RequestHeaders.export_name(), "proxy_on_request_headers");
        /// ```
        #[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
        #[allow(missing_docs)]
        pub enum Callback {
            $($variant,)*
        }

        impl Callback {
            /// Every callback, in declaration order (`ALL[c as usize] == c`).
            ///
            /// ```
            /// use sdk_host::Callback;
            /// assert!(Callback::ALL.iter().any(|c| c.export_name() == "proxy_on_tick"));
            /// ```
            pub const ALL: [Callback; [$(stringify!($variant)),*].len()] =
                [$(Callback::$variant),*];

            /// The export's name, e.g. `proxy_on_request_headers`.
            ///
            /// ```
            /// assert_eq!(sdk_host::Callback::Log.export_name(), "proxy_on_log");
            /// ```
            pub fn export_name(self) -> &'static str {
                match self {
                    $(Callback::$variant => $export,)*
                }
            }
        }
    };
}

callbacks! {
    Initialize => "_initialize",
    ContextCreate => "proxy_on_context_create",
    VmStart => "proxy_on_vm_start",
    Configure => "proxy_on_configure",
    Tick => "proxy_on_tick",
    QueueReady => "proxy_on_queue_ready",
    Done => "proxy_on_done",
    Log => "proxy_on_log",
    Delete => "proxy_on_delete",
    NewConnection => "proxy_on_new_connection",
    DownstreamData => "proxy_on_downstream_data",
    UpstreamData => "proxy_on_upstream_data",
    DownstreamConnectionClose => "proxy_on_downstream_connection_close",
    UpstreamConnectionClose => "proxy_on_upstream_connection_close",
    RequestHeaders => "proxy_on_request_headers",
    RequestBody => "proxy_on_request_body",
    RequestTrailers => "proxy_on_request_trailers",
    ResponseHeaders => "proxy_on_response_headers",
    ResponseBody => "proxy_on_response_body",
    ResponseTrailers => "proxy_on_response_trailers",
    HttpCallResponse => "proxy_on_http_call_response",
    GrpcReceiveInitialMetadata => "proxy_on_grpc_receive_initial_metadata",
    GrpcReceive => "proxy_on_grpc_receive",
    GrpcReceiveTrailingMetadata => "proxy_on_grpc_receive_trailing_metadata",
    GrpcClose => "proxy_on_grpc_close",
    ForeignFunction => "proxy_on_foreign_function",
}
