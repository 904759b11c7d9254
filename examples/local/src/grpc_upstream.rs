//! A gRPC upstream (HTTP/2 without TLS, hyper) that answers every method
//! with the answers a test gives it in order: a scenario's `clusters:`
//! entry for a cluster the filter calls with `proxy_grpc_call` or
//! `proxy_grpc_stream`.

use anyhow::Result;
use bytes::{BufMut, Bytes, BytesMut};
use hyper::body::{Body, Frame, Incoming, SizeHint};
use hyper::header::HeaderMap;
use hyper::service::service_fn;
use hyper::{Request, Response};
use hyper_util::rt::{TokioExecutor, TokioIo};
use std::collections::VecDeque;
use std::convert::Infallible;
use std::net::SocketAddr;
use std::pin::Pin;
use std::sync::{Arc, Mutex};
use std::task::{Context, Poll};
use std::time::Duration;
use tokio::net::TcpListener;
use tokio::task::JoinHandle;

/// One gRPC answer: initial metadata, messages, then the status (with its
/// message and trailing metadata). No messages and a non-zero status is a
/// trailers-only answer, as gRPC servers send errors.
#[derive(Debug, Clone, Default)]
pub struct GrpcReply {
    /// gRPC status code.
    pub status: u32,
    /// `grpc-message`.
    pub message: String,
    /// Response metadata sent with the headers.
    pub initial_metadata: Vec<(String, String)>,
    /// Messages, each sent length-prefixed in its own frame.
    pub messages: Vec<Vec<u8>>,
    /// Trailing metadata besides `grpc-status` and `grpc-message`.
    pub trailers: Vec<(String, String)>,
}

/// A running gRPC upstream on 127.0.0.1; it stops when dropped.
pub struct GrpcUpstream {
    addr: SocketAddr,
    replies: Arc<Mutex<(Vec<Option<GrpcReply>>, usize)>>,
    task: JoinHandle<()>,
}

/// How long an answer that never comes holds the call.
const NEVER: Duration = Duration::from_secs(90);

impl GrpcUpstream {
    /// Starts the server on a free port with these answers, used in order
    /// with the last repeating; `None` never answers (a timeout).
    ///
    /// # Errors
    ///
    /// No port can be bound.
    pub async fn start(replies: Vec<Option<GrpcReply>>) -> Result<GrpcUpstream> {
        let listener = TcpListener::bind("127.0.0.1:0").await?;
        let addr = listener.local_addr()?;
        let replies = Arc::new(Mutex::new((replies, 0)));
        let task = tokio::spawn(serve(listener, Arc::clone(&replies)));
        Ok(GrpcUpstream {
            addr,
            replies,
            task,
        })
    }

    /// Where it listens.
    pub fn addr(&self) -> SocketAddr {
        self.addr
    }

    /// Calls answered (or held) so far.
    pub fn calls(&self) -> usize {
        self.replies.lock().map(|r| r.1).unwrap_or(0)
    }
}

impl Drop for GrpcUpstream {
    fn drop(&mut self) {
        self.task.abort();
    }
}

type Replies = Arc<Mutex<(Vec<Option<GrpcReply>>, usize)>>;

async fn serve(listener: TcpListener, replies: Replies) {
    loop {
        let Ok((stream, _)) = listener.accept().await else {
            continue;
        };
        let replies = Arc::clone(&replies);
        tokio::spawn(async move {
            let service = service_fn(move |request: Request<Incoming>| {
                let replies = Arc::clone(&replies);
                async move { Ok::<_, Infallible>(answer(&replies, request).await) }
            });
            let _ = hyper::server::conn::http2::Builder::new(TokioExecutor::new())
                .serve_connection(TokioIo::new(stream), service)
                .await;
        });
    }
}

/// Waits for the caller's first message (or the end of its side), then
/// answers with the next reply: a stream is answered once the guest has
/// sent on it, as sdk-host's scenario runner does.
async fn answer(replies: &Replies, request: Request<Incoming>) -> Response<Frames> {
    let mut body = request.into_body();
    while let Some(Ok(frame)) = std::future::poll_fn(|cx| Pin::new(&mut body).poll_frame(cx)).await
    {
        if frame.data_ref().is_some_and(|d| !d.is_empty()) {
            break;
        }
    }
    let next = replies.lock().ok().and_then(|mut r| {
        let at = r.1.min(r.0.len().checked_sub(1)?);
        r.1 += 1;
        r.0.get(at).cloned()
    });
    let reply = match next {
        Some(Some(reply)) => reply,
        Some(None) => {
            tokio::time::sleep(NEVER).await;
            GrpcReply::default()
        }
        None => GrpcReply {
            status: 12,
            message: "no answer set for this cluster".into(),
            ..GrpcReply::default()
        },
    };
    // Keep reading what the caller sends, so its stream stays open.
    tokio::spawn(async move {
        while let Some(Ok(_)) = std::future::poll_fn(|cx| Pin::new(&mut body).poll_frame(cx)).await
        {
        }
    });
    let mut response = Response::builder()
        .status(200)
        .header("content-type", "application/grpc");
    for (name, value) in &reply.initial_metadata {
        response = response.header(name, value);
    }
    let status = |map: &mut HeaderMap| {
        map.insert("grpc-status", reply.status.into());
        if !reply.message.is_empty()
            && let Ok(value) = reply.message.parse()
        {
            map.insert("grpc-message", value);
        }
    };
    if reply.messages.is_empty() && reply.status != 0 {
        let mut built = response.body(Frames::default()).unwrap_or_default();
        status(built.headers_mut());
        return built;
    }
    let mut frames: VecDeque<Frame<Bytes>> = reply
        .messages
        .iter()
        .map(|message| {
            let mut framed = BytesMut::with_capacity(5 + message.len());
            framed.put_u8(0);
            framed.put_u32(message.len() as u32);
            framed.put_slice(message);
            Frame::data(framed.freeze())
        })
        .collect();
    let mut trailers = HeaderMap::new();
    status(&mut trailers);
    for (name, value) in &reply.trailers {
        if let (Ok(name), Ok(value)) = (
            name.parse::<hyper::header::HeaderName>(),
            value.parse::<hyper::header::HeaderValue>(),
        ) {
            trailers.append(name, value);
        }
    }
    frames.push_back(Frame::trailers(trailers));
    response.body(Frames(frames)).unwrap_or_default()
}

/// A response body made of given frames (data, then trailers).
#[derive(Debug, Default)]
pub struct Frames(VecDeque<Frame<Bytes>>);

impl Body for Frames {
    type Data = Bytes;
    type Error = Infallible;

    fn poll_frame(
        mut self: Pin<&mut Self>,
        _: &mut Context<'_>,
    ) -> Poll<Option<Result<Frame<Bytes>, Infallible>>> {
        Poll::Ready(self.0.pop_front().map(Ok))
    }

    fn is_end_stream(&self) -> bool {
        self.0.is_empty()
    }

    fn size_hint(&self) -> SizeHint {
        SizeHint::default()
    }
}
