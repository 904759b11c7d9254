//! Envoy's attributes ("properties" in Proxy-Wasm), typed.
//!
//! A filter asks the host for a property by path (`source.address` is
//! `["source", "address"]`) and gets bytes in Envoy's encoding: strings as
//! they are, integers as 8 little-endian bytes, booleans as one byte,
//! durations and timestamps as 8-byte nanoseconds. [`Attribute`] pairs a
//! path with its type, so that a filter writes
//! `SOURCE_ADDRESS.read(&mut props)` and gets a `String`, and a wrongly
//! encoded value reads as absent instead of as garbage.
//!
//! The list is Envoy 1.40's (`docs/root/intro/arch_overview/advanced/attributes.rst`),
//! restricted to what meshwasm's filters read; [`node_metadata`] builds
//! the path of one key of the node's metadata, which Envoy serves at
//! `xds.node.metadata.*` (not `node.*`).

use std::collections::BTreeMap;
use std::marker::PhantomData;
use std::time::{Duration, SystemTime, UNIX_EPOCH};

/// Read access to the host's properties.
pub trait Properties {
    /// The raw bytes of a property, or `None` if the host has none there.
    fn property(&mut self, path: &[&str]) -> Option<Vec<u8>>;
}

/// A type in Envoy's property encoding.
///
/// # Examples
///
/// ```
/// use meshwasm_core::properties::PropertyValue;
/// use std::time::Duration;
///
/// assert_eq!(i64::decode(&9080i64.to_le_bytes()), Some(9080));
/// assert_eq!(i64::decode(b"9080"), None);
/// assert_eq!(bool::decode(&[1]), Some(true));
/// assert_eq!(Duration::decode(&1_500_000i64.to_le_bytes()), Some(Duration::from_micros(1500)));
/// assert_eq!(String::decode(&String::from("ab").encode()), Some("ab".to_owned()));
/// ```
pub trait PropertyValue: Sized {
    /// Reads Envoy's encoding; `None` for bytes that are not one.
    fn decode(bytes: &[u8]) -> Option<Self>;
    /// Writes Envoy's encoding (for test hosts and round trips).
    fn encode(&self) -> Vec<u8>;
}

impl PropertyValue for i64 {
    fn decode(bytes: &[u8]) -> Option<Self> {
        Some(i64::from_le_bytes(bytes.try_into().ok()?))
    }
    fn encode(&self) -> Vec<u8> {
        self.to_le_bytes().to_vec()
    }
}

impl PropertyValue for u64 {
    fn decode(bytes: &[u8]) -> Option<Self> {
        Some(u64::from_le_bytes(bytes.try_into().ok()?))
    }
    fn encode(&self) -> Vec<u8> {
        self.to_le_bytes().to_vec()
    }
}

impl PropertyValue for bool {
    fn decode(bytes: &[u8]) -> Option<Self> {
        match bytes {
            [0] => Some(false),
            [1] => Some(true),
            _ => None,
        }
    }
    fn encode(&self) -> Vec<u8> {
        vec![u8::from(*self)]
    }
}

impl PropertyValue for String {
    fn decode(bytes: &[u8]) -> Option<Self> {
        String::from_utf8(bytes.to_vec()).ok()
    }
    fn encode(&self) -> Vec<u8> {
        self.as_bytes().to_vec()
    }
}

impl PropertyValue for Vec<u8> {
    fn decode(bytes: &[u8]) -> Option<Self> {
        Some(bytes.to_vec())
    }
    fn encode(&self) -> Vec<u8> {
        self.clone()
    }
}

/// Durations are signed nanoseconds; a negative one reads as absent.
impl PropertyValue for Duration {
    fn decode(bytes: &[u8]) -> Option<Self> {
        let nanos = u64::try_from(i64::decode(bytes)?).ok()?;
        Some(Duration::from_nanos(nanos))
    }
    fn encode(&self) -> Vec<u8> {
        i64::try_from(self.as_nanos()).unwrap_or(i64::MAX).encode()
    }
}

/// Timestamps are nanoseconds since the Unix epoch.
impl PropertyValue for SystemTime {
    fn decode(bytes: &[u8]) -> Option<Self> {
        UNIX_EPOCH.checked_add(Duration::decode(bytes)?)
    }
    fn encode(&self) -> Vec<u8> {
        self.duration_since(UNIX_EPOCH).unwrap_or_default().encode()
    }
}

/// A property's path with the type of its value.
///
/// # Examples
///
/// ```
/// use meshwasm_core::properties::{attributes, StaticProperties};
///
/// let mut props = StaticProperties::default()
///     .with(attributes::DESTINATION_PORT, 9080)
///     .with(attributes::SOURCE_ADDRESS, "10.0.0.7:50312".to_owned());
/// assert_eq!(attributes::DESTINATION_PORT.read(&mut props), Some(9080));
/// assert_eq!(attributes::CONNECTION_MTLS.read(&mut props), None);
/// ```
#[derive(Debug)]
pub struct Attribute<T> {
    path: &'static [&'static str],
    value: PhantomData<fn() -> T>,
}

impl<T> Clone for Attribute<T> {
    fn clone(&self) -> Self {
        *self
    }
}

impl<T> Copy for Attribute<T> {}

impl<T: PropertyValue> Attribute<T> {
    /// The attribute at `path`.
    pub const fn new(path: &'static [&'static str]) -> Self {
        Attribute {
            path,
            value: PhantomData,
        }
    }

    /// The path, as the host takes it.
    pub fn path(&self) -> &'static [&'static str] {
        self.path
    }

    /// The dotted name, as Envoy's documentation writes it.
    pub fn name(&self) -> String {
        self.path.join(".")
    }

    /// Reads and decodes the attribute; `None` if absent or not of type `T`.
    pub fn read(&self, props: &mut (impl Properties + ?Sized)) -> Option<T> {
        T::decode(&props.property(self.path)?)
    }
}

/// The attributes meshwasm reads, with Envoy's types.
pub mod attributes {
    use super::Attribute;
    use std::time::{Duration, SystemTime};

    /// Downstream address, `ip:port` or `[ipv6]:port`.
    pub const SOURCE_ADDRESS: Attribute<String> = Attribute::new(&["source", "address"]);
    /// Downstream port.
    pub const SOURCE_PORT: Attribute<i64> = Attribute::new(&["source", "port"]);
    /// The address the connection was accepted on.
    pub const DESTINATION_ADDRESS: Attribute<String> = Attribute::new(&["destination", "address"]);
    /// The port the connection was accepted on.
    pub const DESTINATION_PORT: Attribute<i64> = Attribute::new(&["destination", "port"]);
    /// The downstream connection's id, unique in the Envoy process.
    pub const CONNECTION_ID: Attribute<u64> = Attribute::new(&["connection", "id"]);
    /// Whether the downstream connection is TLS with a client certificate.
    pub const CONNECTION_MTLS: Attribute<bool> = Attribute::new(&["connection", "mtls"]);
    /// The first URI SAN of the peer's certificate (a SPIFFE id in Istio).
    pub const URI_SAN_PEER_CERTIFICATE: Attribute<String> =
        Attribute::new(&["connection", "uri_san_peer_certificate"]);
    /// The SNI the client asked for.
    pub const REQUESTED_SERVER_NAME: Attribute<String> =
        Attribute::new(&["connection", "requested_server_name"]);
    /// `HTTP/1.0`, `HTTP/1.1`, `HTTP/2`, `HTTP/3`.
    pub const REQUEST_PROTOCOL: Attribute<String> = Attribute::new(&["request", "protocol"]);
    /// When the first byte of the request arrived.
    pub const REQUEST_TIME: Attribute<SystemTime> = Attribute::new(&["request", "time"]);
    /// Total time of the request, once it is over.
    pub const REQUEST_DURATION: Attribute<Duration> = Attribute::new(&["request", "duration"]);
    /// Request bytes received, headers included.
    pub const REQUEST_TOTAL_SIZE: Attribute<i64> = Attribute::new(&["request", "total_size"]);
    /// The response's HTTP status.
    pub const RESPONSE_CODE: Attribute<i64> = Attribute::new(&["response", "code"]);
    /// Envoy's response code details (`via_upstream`, `fault_filter_abort`...).
    pub const RESPONSE_CODE_DETAILS: Attribute<String> =
        Attribute::new(&["response", "code_details"]);
    /// Envoy's response flags, as a bitmask.
    pub const RESPONSE_FLAGS: Attribute<u64> = Attribute::new(&["response", "flags"]);
    /// The gRPC status of the response (set for plain HTTP too).
    pub const RESPONSE_GRPC_STATUS: Attribute<i64> = Attribute::new(&["response", "grpc_status"]);
    /// Response bytes sent, headers included.
    pub const RESPONSE_TOTAL_SIZE: Attribute<i64> = Attribute::new(&["response", "total_size"]);
    /// The root id of the plugin the code runs in.
    pub const PLUGIN_ROOT_ID: Attribute<String> = Attribute::new(&["plugin_root_id"]);
    /// The plugin's name.
    pub const PLUGIN_NAME: Attribute<String> = Attribute::new(&["plugin_name"]);
    /// 1 inbound, 2 outbound, 0 unspecified (Envoy's `TrafficDirection`).
    pub const LISTENER_DIRECTION: Attribute<i64> = Attribute::new(&["xds", "listener_direction"]);
    /// The upstream cluster's name.
    pub const CLUSTER_NAME: Attribute<String> = Attribute::new(&["xds", "cluster_name"]);
    /// The route's name.
    pub const ROUTE_NAME: Attribute<String> = Attribute::new(&["xds", "route_name"]);
    /// The node's id.
    pub const NODE_ID: Attribute<String> = Attribute::new(&["xds", "node", "id"]);
}

/// The path of one key of the node's metadata: `xds.node.metadata.KEY`.
///
/// # Examples
///
/// ```
/// use meshwasm_core::properties::{node_metadata, Properties, StaticProperties};
///
/// let mut props = StaticProperties::default().with_path(&node_metadata("NAMESPACE"), b"shop");
/// assert_eq!(props.property(&node_metadata("NAMESPACE")).as_deref(), Some(&b"shop"[..]));
/// ```
pub fn node_metadata(key: &str) -> [&str; 4] {
    ["xds", "node", "metadata", key]
}

/// Properties held in memory, for tests and tools.
#[derive(Debug, Clone, Default)]
pub struct StaticProperties {
    values: BTreeMap<Vec<String>, Vec<u8>>,
}

impl StaticProperties {
    /// Sets an attribute to `value`, in Envoy's encoding.
    #[must_use]
    pub fn with<T: PropertyValue>(self, attribute: Attribute<T>, value: T) -> Self {
        self.with_path(attribute.path(), &value.encode())
    }

    /// Sets the raw bytes at `path`.
    #[must_use]
    pub fn with_path(mut self, path: &[&str], bytes: &[u8]) -> Self {
        self.values.insert(
            path.iter().map(|s| (*s).to_owned()).collect(),
            bytes.to_vec(),
        );
        self
    }
}

impl Properties for StaticProperties {
    fn property(&mut self, path: &[&str]) -> Option<Vec<u8>> {
        self.values
            .iter()
            .find(|(key, _)| key.iter().map(String::as_str).eq(path.iter().copied()))
            .map(|(_, v)| v.clone())
    }
}
