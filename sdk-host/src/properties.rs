//! Envoy's attribute tree as `proxy_get_property` serves it: paths of
//! NUL-separated segments, values in Envoy's encodings.

use crate::headers::HeaderMap;
use std::collections::BTreeMap;

/// A property path: its segments, e.g. `["request", "headers", "x-id"]`.
pub(crate) type PropertyPath = Vec<String>;

/// A property value, encoded as Envoy encodes it for the guest.
///
/// # Examples
///
/// ```
/// use sdk_host::PropertyValue;
/// assert_eq!(PropertyValue::Int(200).encode(), 200i64.to_le_bytes());
/// assert_eq!(PropertyValue::from("GET").encode(), b"GET");
/// assert_eq!(PropertyValue::Bool(true).encode(), [1]);
/// ```
#[derive(Debug, Clone, PartialEq)]
pub enum PropertyValue {
    /// Raw bytes, as given.
    Bytes(Vec<u8>),
    /// A string: its UTF-8 bytes, no terminator.
    String(String),
    /// An integer (also ports, sizes, codes): 8 bytes little-endian.
    Int(i64),
    /// A float: 8 bytes little-endian IEEE 754.
    Double(f64),
    /// A boolean: one byte, 0 or 1.
    Bool(bool),
    /// A timestamp or duration in nanoseconds: 8 bytes little-endian.
    Nanos(i64),
    /// A string map (headers, labels): the ABI's serialized pairs.
    Map(HeaderMap),
}

impl PropertyValue {
    /// The bytes the guest receives.
    ///
    /// ```
    /// use sdk_host::PropertyValue;
    /// assert_eq!(PropertyValue::Int(200).encode(), 200i64.to_le_bytes());
    /// assert_eq!(PropertyValue::from("GET").encode(), b"GET");
    /// assert_eq!(PropertyValue::Bool(true).encode(), [1]);
    /// ```
    pub fn encode(&self) -> Vec<u8> {
        match self {
            PropertyValue::Bytes(b) => b.clone(),
            PropertyValue::String(s) => s.as_bytes().to_vec(),
            PropertyValue::Int(i) | PropertyValue::Nanos(i) => i.to_le_bytes().to_vec(),
            PropertyValue::Double(d) => d.to_le_bytes().to_vec(),
            PropertyValue::Bool(b) => vec![u8::from(*b)],
            PropertyValue::Map(m) => m.serialize(),
        }
    }
}

impl From<&str> for PropertyValue {
    fn from(s: &str) -> Self {
        PropertyValue::String(s.to_string())
    }
}

impl From<String> for PropertyValue {
    fn from(s: String) -> Self {
        PropertyValue::String(s)
    }
}

impl From<i64> for PropertyValue {
    fn from(i: i64) -> Self {
        PropertyValue::Int(i)
    }
}

impl From<bool> for PropertyValue {
    fn from(b: bool) -> Self {
        PropertyValue::Bool(b)
    }
}

/// Splits a path as the guest sends it: segments separated by NUL bytes
/// (a trailing NUL is allowed, as some SDKs send one).
pub(crate) fn split_path(raw: &[u8]) -> PropertyPath {
    let raw = raw.strip_suffix(&[0]).unwrap_or(raw);
    raw.split(|b| *b == 0)
        .map(|segment| String::from_utf8_lossy(segment).into_owned())
        .collect()
}

/// Properties set on the host or a stream, by path.
#[derive(Debug, Clone, Default)]
pub(crate) struct PropertyStore {
    values: BTreeMap<PropertyPath, PropertyValue>,
}

impl PropertyStore {
    pub(crate) fn set(&mut self, path: PropertyPath, value: PropertyValue) {
        self.values.insert(path, value);
    }

    /// The value at `path`, or, for a path inside a map value (such as
    /// `xds.node.metadata.KEY` when `xds.node.metadata` is a map), the map's entry.
    pub(crate) fn get(&self, path: &[String]) -> Option<PropertyValue> {
        if let Some(value) = self.values.get(path) {
            return Some(value.clone());
        }
        for split in (1..path.len()).rev() {
            if let Some(PropertyValue::Map(map)) = self.values.get(&path[..split]) {
                if split + 1 == path.len() {
                    return map
                        .get_bytes(&path[split])
                        .map(|v| PropertyValue::Bytes(v.to_vec()));
                }
                return None;
            }
        }
        None
    }
}
