//! Upstream HTTP servers (hyper) that answer with their own name and record
//! what reached them.
//!
//! Tests steer an answer with request headers:
//! - `x-upstream-delay-ms: N` answers after N ms (a slow upstream);
//! - `x-upstream-fail-first: N` answers 503 to the first N attempts of a
//!   request, told apart by Envoy's `x-request-id`, which retries keep.

use anyhow::Result;
use bytes::Bytes;
use http_body_util::{BodyExt, Full};
use hyper::service::service_fn;
use hyper::{Request, Response};
use hyper_util::rt::TokioIo;
use std::collections::HashMap;
use std::convert::Infallible;
use std::net::SocketAddr;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};
use tokio::net::TcpListener;
use tokio::task::JoinHandle;

/// A request as the upstream saw it.
#[derive(Debug, Clone)]
pub struct Seen {
    /// Method.
    pub method: String,
    /// Path and query.
    pub path: String,
    /// Headers, lowercase names.
    pub headers: Vec<(String, String)>,
    /// The whole body.
    pub body: Bytes,
    /// When the request's body was complete.
    pub at: Instant,
}

impl Seen {
    /// The first value of a header.
    pub fn header(&self, name: &str) -> Option<&str> {
        self.headers
            .iter()
            .find(|(n, _)| n == name)
            .map(|(_, v)| v.as_str())
    }
}

/// An answer set by the test, given instead of the upstream's name.
#[derive(Debug, Clone, Default)]
pub struct Reply {
    /// Status code.
    pub status: u16,
    /// Headers.
    pub headers: Vec<(String, String)>,
    /// Body.
    pub body: Vec<u8>,
}

/// A running upstream on 127.0.0.1; it stops when dropped.
pub struct Upstream {
    name: String,
    addr: SocketAddr,
    seen: Arc<Mutex<Vec<Seen>>>,
    reply: Arc<Mutex<Option<Reply>>>,
    replies: Arc<Mutex<Replies>>,
    connections: Arc<AtomicUsize>,
    task: JoinHandle<()>,
}

/// Answers given in order, the last repeating; `None` never answers (a
/// cluster that times out).
#[derive(Debug, Default)]
struct Replies {
    answers: Vec<Option<Reply>>,
    given: usize,
}

/// How long a reply that "never comes" holds the request: longer than any
/// callout timeout a scenario sets.
const NEVER: Duration = Duration::from_secs(90);

impl Upstream {
    /// Starts a server on a free port that answers `200 <name>\n` with an
    /// `x-upstream: <name>` header.
    ///
    /// # Errors
    ///
    /// Fails if no port can be bound.
    pub async fn start(name: &str) -> Result<Upstream> {
        Self::start_slow(name, Duration::ZERO).await
    }

    /// As [`start`](Self::start), answering every request after `delay`.
    ///
    /// # Errors
    ///
    /// Fails if no port can be bound.
    pub async fn start_slow(name: &str, delay: Duration) -> Result<Upstream> {
        let listener = TcpListener::bind("127.0.0.1:0").await?;
        let addr = listener.local_addr()?;
        let seen = Arc::new(Mutex::new(Vec::new()));
        let reply = Arc::new(Mutex::new(None));
        let replies = Arc::new(Mutex::new(Replies::default()));
        let connections = Arc::new(AtomicUsize::new(0));
        let state = Arc::new(State {
            name: name.to_owned(),
            delay,
            seen: Arc::clone(&seen),
            reply: Arc::clone(&reply),
            replies: Arc::clone(&replies),
            attempts: Mutex::new(HashMap::new()),
            connections: Arc::clone(&connections),
        });
        let task = tokio::spawn(serve(listener, state));
        Ok(Upstream {
            name: name.to_owned(),
            addr,
            seen,
            reply,
            replies,
            connections,
            task,
        })
    }

    /// Answers the requests from now on with these replies in order, the
    /// last one repeating (a scenario's `clusters:` entry); `None` holds the
    /// request without answering. Takes precedence over [`set_reply`](Self::set_reply).
    pub fn set_replies(&self, answers: Vec<Option<Reply>>) {
        if let Ok(mut replies) = self.replies.lock() {
            *replies = Replies { answers, given: 0 };
        }
    }

    /// Answers every request from now on with `reply` (`None`: with the
    /// name again), as a scenario file's `response:` asks.
    pub fn set_reply(&self, reply: Option<Reply>) {
        if let Ok(mut current) = self.reply.lock() {
            *current = reply;
        }
    }

    /// Where it listens.
    pub fn addr(&self) -> SocketAddr {
        self.addr
    }

    /// Its name, which is also its answer.
    pub fn name(&self) -> &str {
        &self.name
    }

    /// Requests received so far.
    pub fn seen(&self) -> Vec<Seen> {
        self.seen.lock().map(|s| s.clone()).unwrap_or_default()
    }

    /// Number of requests received so far.
    pub fn hits(&self) -> usize {
        self.seen.lock().map(|s| s.len()).unwrap_or(0)
    }

    /// Connections accepted so far.
    pub fn connections(&self) -> usize {
        self.connections.load(Ordering::Relaxed)
    }
}

impl Drop for Upstream {
    fn drop(&mut self) {
        self.task.abort();
    }
}

struct State {
    name: String,
    delay: Duration,
    seen: Arc<Mutex<Vec<Seen>>>,
    reply: Arc<Mutex<Option<Reply>>>,
    replies: Arc<Mutex<Replies>>,
    /// Attempts per `x-request-id`, for `x-upstream-fail-first`.
    attempts: Mutex<HashMap<String, u32>>,
    connections: Arc<AtomicUsize>,
}

async fn serve(listener: TcpListener, state: Arc<State>) {
    loop {
        let Ok((stream, _)) = listener.accept().await else {
            continue;
        };
        state.connections.fetch_add(1, Ordering::Relaxed);
        let state = Arc::clone(&state);
        tokio::spawn(async move {
            let service = service_fn(move |req: Request<hyper::body::Incoming>| {
                let state = Arc::clone(&state);
                async move { Ok::<_, Infallible>(answer(&state, req).await) }
            });
            // Only the headers the test gives (and the body's length): no
            // `date`, which Envoy would pass on to the filter.
            // More headers than hyper's default 100: a request at Envoy's
            // limit reaches the upstream with the headers Envoy adds.
            let _ = hyper::server::conn::http1::Builder::new()
                .auto_date_header(false)
                .max_headers(200)
                .serve_connection(TokioIo::new(stream), service)
                .await;
        });
    }
}

async fn answer(state: &State, req: Request<hyper::body::Incoming>) -> Response<Full<Bytes>> {
    let method = req.method().to_string();
    let path = req
        .uri()
        .path_and_query()
        .map(ToString::to_string)
        .unwrap_or_default();
    let headers: Vec<(String, String)> = req
        .headers()
        .iter()
        .map(|(k, v)| {
            (
                k.as_str().to_owned(),
                String::from_utf8_lossy(v.as_bytes()).into_owned(),
            )
        })
        .collect();
    let body = req
        .into_body()
        .collect()
        .await
        .map(|b| b.to_bytes())
        .unwrap_or_default();
    let seen = Seen {
        method,
        path,
        headers,
        body,
        at: Instant::now(),
    };
    let number = |name: &str| seen.header(name).and_then(|v| v.parse::<u64>().ok());
    let delay = state.delay + Duration::from_millis(number("x-upstream-delay-ms").unwrap_or(0));
    let fail = number("x-upstream-fail-first").is_some_and(|n| {
        let id = seen.header("x-request-id").unwrap_or(&seen.path).to_owned();
        let Ok(mut attempts) = state.attempts.lock() else {
            return false;
        };
        let count = attempts.entry(id).or_insert(0);
        *count += 1;
        u64::from(*count) <= n
    });
    if let Ok(mut all) = state.seen.lock() {
        all.push(seen);
    }
    if !delay.is_zero() {
        tokio::time::sleep(delay).await;
    }
    let in_turn = state.replies.lock().ok().and_then(|mut replies| {
        let at = replies.given.min(replies.answers.len().checked_sub(1)?);
        replies.given += 1;
        replies.answers.get(at).cloned()
    });
    let scripted = match in_turn {
        Some(None) => {
            tokio::time::sleep(NEVER).await;
            None
        }
        Some(Some(reply)) => Some(reply),
        None => state.reply.lock().ok().and_then(|r| r.clone()),
    };
    if let Some(reply) = scripted {
        let mut response = Response::builder().status(reply.status);
        for (name, value) in &reply.headers {
            response = response.header(name, value);
        }
        return response
            .body(Full::new(Bytes::from(reply.body)))
            .unwrap_or_default();
    }
    let name = state.name.as_str();
    let response = Response::builder()
        .status(if fail { 503 } else { 200 })
        .header("x-upstream", name)
        .body(Full::new(Bytes::from(format!("{name}\n"))));
    response.unwrap_or_default()
}
