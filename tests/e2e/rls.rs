//! A rate limit service for the tests: `envoy.service.ratelimit.v3`'s
//! `ShouldRateLimit` over gRPC (tonic, prost), counting requests per
//! descriptor in fixed windows as envoyproxy/ratelimit does.
//!
//! Its own counting rather than the `limitador` crate: the tests need to
//! make the service slow or failing on demand and to see each request it
//! got, and a window counter is all the limiting the filter's answers
//! depend on. The messages are declared with prost from the field numbers
//! of Envoy's `rls.proto`, independently of the filter's own encoder.

use std::collections::HashMap;
use std::convert::Infallible;
use std::net::SocketAddr;
use std::sync::{Arc, Mutex};
use std::time::Duration;
use tonic::codegen::{BoxFuture, Context, Poll, Service, http};

/// `envoy.service.ratelimit.v3.RateLimitRequest`.
#[derive(Clone, PartialEq, prost::Message)]
pub(crate) struct RateLimitRequest {
    #[prost(string, tag = "1")]
    pub(crate) domain: String,
    #[prost(message, repeated, tag = "2")]
    pub(crate) descriptors: Vec<Descriptor>,
    #[prost(uint32, tag = "3")]
    pub(crate) hits_addend: u32,
}

/// `envoy.extensions.common.ratelimit.v3.RateLimitDescriptor`.
#[derive(Clone, PartialEq, prost::Message)]
pub(crate) struct Descriptor {
    #[prost(message, repeated, tag = "1")]
    pub(crate) entries: Vec<Entry>,
}

/// Its `Entry`.
#[derive(Clone, PartialEq, prost::Message)]
pub(crate) struct Entry {
    #[prost(string, tag = "1")]
    pub(crate) key: String,
    #[prost(string, tag = "2")]
    pub(crate) value: String,
}

/// `envoy.service.ratelimit.v3.RateLimitResponse`.
#[derive(Clone, PartialEq, prost::Message)]
pub(crate) struct RateLimitResponse {
    #[prost(int32, tag = "1")]
    pub(crate) overall_code: i32,
    #[prost(message, repeated, tag = "2")]
    pub(crate) statuses: Vec<DescriptorStatus>,
    #[prost(message, repeated, tag = "3")]
    pub(crate) response_headers_to_add: Vec<HeaderValue>,
    #[prost(message, repeated, tag = "4")]
    pub(crate) request_headers_to_add: Vec<HeaderValue>,
    #[prost(bytes = "vec", tag = "5")]
    pub(crate) raw_body: Vec<u8>,
}

/// `RateLimitResponse.DescriptorStatus`.
#[derive(Clone, PartialEq, prost::Message)]
pub(crate) struct DescriptorStatus {
    #[prost(int32, tag = "1")]
    pub(crate) code: i32,
    #[prost(message, optional, tag = "2")]
    pub(crate) current_limit: Option<CurrentLimit>,
    #[prost(uint32, tag = "3")]
    pub(crate) limit_remaining: u32,
    #[prost(message, optional, tag = "4")]
    pub(crate) duration_until_reset: Option<ProtoDuration>,
}

/// `RateLimitResponse.RateLimit`.
#[derive(Clone, PartialEq, prost::Message)]
pub(crate) struct CurrentLimit {
    #[prost(uint32, tag = "1")]
    pub(crate) requests_per_unit: u32,
    #[prost(int32, tag = "2")]
    pub(crate) unit: i32,
    #[prost(string, tag = "3")]
    pub(crate) name: String,
}

/// `google.protobuf.Duration`.
#[derive(Clone, PartialEq, prost::Message)]
pub(crate) struct ProtoDuration {
    #[prost(int64, tag = "1")]
    pub(crate) seconds: i64,
    #[prost(int32, tag = "2")]
    pub(crate) nanos: i32,
}

/// `envoy.config.core.v3.HeaderValue`.
#[derive(Clone, PartialEq, prost::Message)]
pub(crate) struct HeaderValue {
    #[prost(string, tag = "1")]
    pub(crate) key: String,
    #[prost(string, tag = "2")]
    pub(crate) value: String,
}

const OK: i32 = 1;
const OVER_LIMIT: i32 = 2;
/// `RateLimit.Unit.MINUTE`.
const MINUTE: i32 = 2;

/// How the service behaves.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum Mode {
    /// Answers at once.
    Up,
    /// Answers after this long.
    Slow(Duration),
    /// Fails every call with gRPC UNAVAILABLE.
    Failing,
}

/// What the service is told to do and what it saw.
#[derive(Debug)]
struct State {
    mode: Mode,
    /// Requests per minute for each descriptor, by its entries' values joined with `|`.
    limits: HashMap<String, u32>,
    /// Hits in the current window, by descriptor.
    hits: HashMap<String, u32>,
    /// Every request received.
    seen: Vec<RateLimitRequest>,
    /// The `:authority` of every call, in order.
    authorities: Vec<String>,
    /// Headers added to every answer, to the response and to the request.
    response_headers: Vec<(String, String)>,
    request_headers: Vec<(String, String)>,
}

/// A running service on 127.0.0.1; it stops when dropped.
pub(crate) struct Rls {
    addr: SocketAddr,
    state: Arc<Mutex<State>>,
    task: tokio::task::JoinHandle<()>,
}

impl Drop for Rls {
    fn drop(&mut self) {
        self.task.abort();
    }
}

fn descriptor_key(d: &Descriptor) -> String {
    d.entries
        .iter()
        .map(|e| format!("{}={}", e.key, e.value))
        .collect::<Vec<_>>()
        .join("|")
}

impl Rls {
    /// Starts the service with a limit per descriptor (`"remote_address=127.0.0.1"`
    /// style keys, entries joined with `|`), in requests per minute.
    pub(crate) async fn start(limits: &[(&str, u32)]) -> Rls {
        let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
        let addr = listener.local_addr().unwrap();
        let state = Arc::new(Mutex::new(State {
            mode: Mode::Up,
            limits: limits.iter().map(|(k, v)| ((*k).to_owned(), *v)).collect(),
            hits: HashMap::new(),
            seen: Vec::new(),
            authorities: Vec::new(),
            response_headers: Vec::new(),
            request_headers: Vec::new(),
        }));
        let service = RlsService(Arc::clone(&state));
        let task = tokio::spawn(async move {
            let _ = tonic::transport::Server::builder()
                .add_service(service)
                .serve_with_incoming(tonic::transport::server::TcpIncoming::from(listener))
                .await;
        });
        Rls { addr, state, task }
    }

    /// Where it listens.
    pub(crate) fn addr(&self) -> SocketAddr {
        self.addr
    }

    /// Changes how it behaves.
    pub(crate) fn set_mode(&self, mode: Mode) {
        self.state.lock().unwrap().mode = mode;
    }

    /// Headers to add to every answer's response and request.
    pub(crate) fn add_headers(&self, response: &[(&str, &str)], request: &[(&str, &str)]) {
        let mut state = self.state.lock().unwrap();
        let owned = |h: &[(&str, &str)]| {
            h.iter()
                .map(|(k, v)| ((*k).to_owned(), (*v).to_owned()))
                .collect()
        };
        state.response_headers = owned(response);
        state.request_headers = owned(request);
    }

    /// Every request it received.
    pub(crate) fn seen(&self) -> Vec<RateLimitRequest> {
        self.state.lock().unwrap().seen.clone()
    }

    /// The `:authority` of every call it received.
    pub(crate) fn authorities(&self) -> Vec<String> {
        self.state.lock().unwrap().authorities.clone()
    }

    fn decide(state: &Mutex<State>, request: RateLimitRequest) -> RateLimitResponse {
        let mut state = state.lock().unwrap();
        state.seen.push(request.clone());
        let mut overall = OK;
        let mut statuses = Vec::new();
        for d in &request.descriptors {
            let key = descriptor_key(d);
            let Some(limit) = state.limits.get(&key).copied() else {
                statuses.push(DescriptorStatus {
                    code: OK,
                    ..Default::default()
                });
                continue;
            };
            let hits = state.hits.entry(key.clone()).or_default();
            *hits += request.hits_addend.max(1);
            let over = *hits > limit;
            if over {
                overall = OVER_LIMIT;
            }
            statuses.push(DescriptorStatus {
                code: if over { OVER_LIMIT } else { OK },
                current_limit: Some(CurrentLimit {
                    requests_per_unit: limit,
                    unit: MINUTE,
                    name: key,
                }),
                limit_remaining: limit.saturating_sub(*hits),
                duration_until_reset: Some(ProtoDuration {
                    seconds: 42,
                    nanos: 0,
                }),
            });
        }
        let header = |(k, v): &(String, String)| HeaderValue {
            key: k.clone(),
            value: v.clone(),
        };
        RateLimitResponse {
            overall_code: overall,
            statuses,
            response_headers_to_add: state.response_headers.iter().map(header).collect(),
            request_headers_to_add: state.request_headers.iter().map(header).collect(),
            raw_body: Vec::new(),
        }
    }
}

/// The service as tonic's generated code would have it.
#[derive(Clone)]
struct RlsService(Arc<Mutex<State>>);

impl tonic::server::NamedService for RlsService {
    const NAME: &'static str = "envoy.service.ratelimit.v3.RateLimitService";
}

struct ShouldRateLimit(Arc<Mutex<State>>);

impl tonic::server::UnaryService<RateLimitRequest> for ShouldRateLimit {
    type Response = RateLimitResponse;
    type Future = BoxFuture<tonic::Response<RateLimitResponse>, tonic::Status>;

    fn call(&mut self, request: tonic::Request<RateLimitRequest>) -> Self::Future {
        let state = Arc::clone(&self.0);
        Box::pin(async move {
            let mode = state.lock().unwrap().mode;
            match mode {
                Mode::Failing => return Err(tonic::Status::unavailable("told to fail")),
                Mode::Slow(by) => tokio::time::sleep(by).await,
                Mode::Up => {}
            }
            Ok(tonic::Response::new(Rls::decide(
                &state,
                request.into_inner(),
            )))
        })
    }
}

impl<B> Service<http::Request<B>> for RlsService
where
    B: tonic::codegen::Body + Send + 'static,
    B::Error: Into<tonic::codegen::StdError> + Send + 'static,
{
    type Response = http::Response<tonic::body::Body>;
    type Error = Infallible;
    type Future = BoxFuture<Self::Response, Self::Error>;

    fn poll_ready(&mut self, _cx: &mut Context<'_>) -> Poll<Result<(), Self::Error>> {
        Poll::Ready(Ok(()))
    }

    fn call(&mut self, request: http::Request<B>) -> Self::Future {
        let state = Arc::clone(&self.0);
        let known =
            request.uri().path() == "/envoy.service.ratelimit.v3.RateLimitService/ShouldRateLimit";
        let authority = request
            .uri()
            .authority()
            .map_or_else(String::new, |a| a.to_string());
        state.lock().unwrap().authorities.push(authority);
        Box::pin(async move {
            if !known {
                return Ok(tonic::Status::unimplemented("no such method").into_http());
            }
            let mut grpc = tonic::server::Grpc::new(tonic_prost::ProstCodec::default());
            Ok(grpc.unary(ShouldRateLimit(state), request).await)
        })
    }
}
