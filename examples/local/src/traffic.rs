//! Sending many requests and summarising what came back.

use anyhow::Result;
use std::sync::Arc;
use std::time::{Duration, Instant};

/// One response as the client saw it.
#[derive(Debug, Clone)]
pub struct Outcome {
    /// HTTP status.
    pub status: u16,
    /// Time from sending to the whole body.
    pub latency: Duration,
    /// The body.
    pub body: String,
    /// Every response header.
    pub headers: reqwest::header::HeaderMap,
}

impl Outcome {
    /// A response header's value, if it is text.
    pub fn header(&self, name: &str) -> Option<&str> {
        self.headers.get(name).and_then(|v| v.to_str().ok())
    }

    /// Which upstream answered (its `x-upstream` header), if any did.
    pub fn upstream(&self) -> Option<&str> {
        self.header("x-upstream")
    }

    /// The `grpc-status` header, if any.
    pub fn grpc_status(&self) -> Option<&str> {
        self.header("grpc-status")
    }
}

/// Sends one request built by `build` and records the outcome.
///
/// # Errors
///
/// Fails on connection errors (an HTTP error status is an outcome, not an error).
pub async fn send(request: reqwest::RequestBuilder) -> Result<Outcome> {
    let started = Instant::now();
    let resp = request.send().await?;
    let status = resp.status().as_u16();
    let headers = resp.headers().clone();
    let body = resp.text().await?;
    Ok(Outcome {
        status,
        latency: started.elapsed(),
        body,
        headers,
    })
}

/// Sends `count` requests, `concurrency` at a time; `build(i)` makes request `i`.
///
/// # Errors
///
/// The first connection error.
pub async fn send_many<F>(count: usize, concurrency: usize, build: F) -> Result<Vec<Outcome>>
where
    F: Fn(usize) -> reqwest::RequestBuilder + Send + Sync + 'static,
{
    let build = Arc::new(build);
    let next = Arc::new(std::sync::atomic::AtomicUsize::new(0));
    let mut workers = tokio::task::JoinSet::new();
    for _ in 0..concurrency.max(1) {
        let (build, next) = (Arc::clone(&build), Arc::clone(&next));
        workers.spawn(async move {
            let mut outcomes = Vec::new();
            loop {
                let i = next.fetch_add(1, std::sync::atomic::Ordering::Relaxed);
                if i >= count {
                    return Ok::<_, anyhow::Error>(outcomes);
                }
                outcomes.push(send(build(i)).await?);
            }
        });
    }
    let mut all = Vec::with_capacity(count);
    while let Some(joined) = workers.join_next().await {
        all.extend(joined??);
    }
    Ok(all)
}

/// Sends `count` requests at a fixed rate, one every `interval`, whatever
/// the responses do (open loop), as independent clients would.
///
/// # Errors
///
/// The first connection error.
pub async fn send_paced<F>(count: usize, interval: Duration, build: F) -> Result<Vec<Outcome>>
where
    F: Fn(usize) -> reqwest::RequestBuilder,
{
    let start = tokio::time::Instant::now();
    let mut requests = tokio::task::JoinSet::new();
    for i in 0..count {
        tokio::time::sleep_until(start + interval * u32::try_from(i)?).await;
        requests.spawn(send(build(i)));
    }
    let mut all = Vec::with_capacity(count);
    while let Some(joined) = requests.join_next().await {
        all.push(joined??);
    }
    Ok(all)
}

/// A response to [`send_raw`]: its status and body.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct RawResponse {
    /// HTTP status.
    pub status: u16,
    /// The body (after the blank line), as text.
    pub body: String,
}

/// How long [`send_raw`] waits for the whole answer.
const RAW_TIMEOUT: Duration = Duration::from_secs(5);

/// Sends one HTTP/1.1 GET to `addr` with the request target exactly as
/// given (`//admin`, `/admin/../admin`): an HTTP client library would
/// normalize such a path before sending it, and a test of path
/// normalization needs what a hostile client sends.
///
/// # Errors
///
/// Connection errors, an answer that is not HTTP, or no answer within 5 s.
pub async fn send_raw(
    addr: std::net::SocketAddr,
    host: &str,
    target: &str,
    headers: &[(&str, &str)],
) -> Result<RawResponse> {
    let mut request = format!("GET {target} HTTP/1.1\r\nhost: {host}\r\nconnection: close\r\n");
    for (name, value) in headers {
        request.push_str(&format!("{name}: {value}\r\n"));
    }
    request.push_str("\r\n");
    send_raw_bytes(addr, request.as_bytes())
        .await
        .map_err(|e| anyhow::anyhow!("GET {target}: {e}"))
}

/// Sends `request`, bytes exactly as given (a request line that is not
/// GET, header values that are not UTF-8), on a new connection, and reads
/// the answer until the server closes it.
///
/// # Errors
///
/// Connection errors, an answer that is not HTTP, or no answer within 5 s.
pub async fn send_raw_bytes(addr: std::net::SocketAddr, request: &[u8]) -> Result<RawResponse> {
    use tokio::io::{AsyncReadExt as _, AsyncWriteExt as _};
    let exchange = async {
        let mut stream = tokio::net::TcpStream::connect(addr).await?;
        stream.write_all(request).await?;
        let mut answer = Vec::new();
        stream.read_to_end(&mut answer).await?;
        Ok::<_, std::io::Error>(answer)
    };
    let answer = tokio::time::timeout(RAW_TIMEOUT, exchange)
        .await
        .map_err(|_| anyhow::anyhow!("no answer within {RAW_TIMEOUT:?}"))??;
    let text = String::from_utf8_lossy(&answer);
    let status = text
        .split(' ')
        .nth(1)
        .and_then(|s| s.parse().ok())
        .ok_or_else(|| anyhow::anyhow!("not an HTTP answer: {text:?}"))?;
    let body = text
        .split_once("\r\n\r\n")
        .map_or("", |(_, b)| b)
        .to_owned();
    Ok(RawResponse { status, body })
}

/// The `q`-quantile (0.0..=1.0) of some durations, nearest rank.
pub fn quantile(values: &[Duration], q: f64) -> Duration {
    let mut sorted = values.to_vec();
    sorted.sort();
    if sorted.is_empty() {
        return Duration::ZERO;
    }
    let rank = ((q * sorted.len() as f64).ceil() as usize).clamp(1, sorted.len());
    sorted[rank - 1]
}

/// Bounds for a binomial count: `n * p ± z * sqrt(n p (1 - p))`, clamped to 0..=n.
pub fn binomial_bounds(n: usize, p: f64, z: f64) -> (usize, usize) {
    let mean = n as f64 * p;
    let sd = (n as f64 * p * (1.0 - p)).sqrt();
    let low = (mean - z * sd).floor().max(0.0) as usize;
    let high = ((mean + z * sd).ceil() as usize).min(n);
    (low, high)
}
