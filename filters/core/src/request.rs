//! What a filter can ask about a request, as a small port the host side implements.
//!
//! Matching code asks for headers and the destination port only when a
//! rule needs them, so a filter pays for host calls it actually uses.

use std::borrow::Cow;

/// Read access to the request being decided on.
///
/// Header names are lowercase, pseudo-headers included (`:path`,
/// `:method`, `:authority`, `:scheme`). A header sent several times reads
/// as its values joined with `,`, as Envoy's route matching sees it.
pub trait RequestAttributes {
    /// The value of a header, or `None` if the request does not have it.
    fn header(&mut self, name: &str) -> Option<Cow<'_, str>>;

    /// The port the request was addressed to (Envoy's `destination.port`).
    fn destination_port(&mut self) -> Option<u32>;

    /// The client's address as Envoy's `source.address` gives it
    /// (`ip:port`, `[ipv6]:port`); `None` when the host cannot say.
    fn source_address(&mut self) -> Option<Cow<'_, str>> {
        None
    }

    /// The first value of a header, as Envoy's rate-limit actions read it.
    fn first_header(&mut self, name: &str) -> Option<Cow<'_, str>> {
        self.header(name)
    }

    /// The cluster the route sends the request to (Envoy's `xds.cluster_name`).
    fn route_cluster(&mut self) -> Option<Cow<'_, str>> {
        None
    }
}

/// An in-memory request, for tests and tools.
///
/// # Examples
///
/// ```
/// use meshwasm_core::request::{RequestAttributes, StaticRequest};
///
/// let mut req = StaticRequest::get("/ratings/1").with_header("end-user", "jason");
/// assert_eq!(req.header("end-user").as_deref(), Some("jason"));
/// assert_eq!(req.header(":method").as_deref(), Some("GET"));
/// ```
#[derive(Debug, Clone, Default)]
pub struct StaticRequest {
    headers: Vec<(String, String)>,
    port: Option<u32>,
    source: Option<String>,
    cluster: Option<String>,
}

impl StaticRequest {
    /// A GET of `path` on authority `example.com` over http.
    pub fn get(path: &str) -> Self {
        StaticRequest::default()
            .with_header(":method", "GET")
            .with_header(":path", path)
            .with_header(":authority", "example.com")
            .with_header(":scheme", "http")
    }

    /// Adds a header (names are lowercased, as HTTP/2 and Envoy do).
    pub fn with_header(mut self, name: &str, value: &str) -> Self {
        self.headers
            .push((name.to_ascii_lowercase(), value.to_owned()));
        self
    }

    /// Replaces every value of a header.
    pub fn set_header(mut self, name: &str, value: &str) -> Self {
        let name = name.to_ascii_lowercase();
        self.headers.retain(|(n, _)| *n != name);
        self.headers.push((name, value.to_owned()));
        self
    }

    /// Sets the client's address, e.g. `10.0.0.7:50312`.
    pub fn with_source(mut self, address: &str) -> Self {
        self.source = Some(address.to_owned());
        self
    }

    /// Sets the cluster the route picked.
    pub fn with_cluster(mut self, cluster: &str) -> Self {
        self.cluster = Some(cluster.to_owned());
        self
    }

    /// Sets the destination port.
    pub fn with_port(mut self, port: u32) -> Self {
        self.port = Some(port);
        self
    }
}

impl RequestAttributes for StaticRequest {
    fn header(&mut self, name: &str) -> Option<Cow<'_, str>> {
        join_values(
            self.headers
                .iter()
                .filter(|(n, _)| n == name)
                .map(|(_, v)| v.as_bytes()),
        )
    }

    fn destination_port(&mut self) -> Option<u32> {
        self.port
    }

    fn source_address(&mut self) -> Option<Cow<'_, str>> {
        self.source.as_deref().map(Cow::Borrowed)
    }

    fn first_header(&mut self, name: &str) -> Option<Cow<'_, str>> {
        self.headers
            .iter()
            .find(|(n, _)| n == name)
            .map(|(_, v)| Cow::Borrowed(v.as_str()))
    }

    fn route_cluster(&mut self) -> Option<Cow<'_, str>> {
        self.cluster.as_deref().map(Cow::Borrowed)
    }
}

/// Joins header values with `,`; one value is borrowed, not copied. Bytes
/// that are not UTF-8 read as U+FFFD.
pub(crate) fn join_values<'a>(mut values: impl Iterator<Item = &'a [u8]>) -> Option<Cow<'a, str>> {
    let first = values.next()?;
    let mut joined = String::from_utf8_lossy(first);
    for more in values {
        let s = joined.to_mut();
        s.push(',');
        s.push_str(&String::from_utf8_lossy(more));
    }
    Some(joined)
}
