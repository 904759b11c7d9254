//! The messages of Envoy's rate limit service,
//! `envoy.service.ratelimit.v3.RateLimitService/ShouldRateLimit`, in
//! protobuf's wire format.
//!
//! Written by hand rather than with prost: two messages, a dozen fields,
//! and a filter module that V8 compiles whole at start-up, where prost's
//! derive code and its `bytes` dependency would cost more than this file.
//! The tests' rate limit service is built with tonic and prost, and Envoy's
//! own `ratelimit` filter talks to it too, so the encoding is checked
//! against both.

use super::descriptor::Entry;
use std::time::Duration;

/// The gRPC service Envoy's `ratelimit` filter calls.
pub const SERVICE: &str = "envoy.service.ratelimit.v3.RateLimitService";
/// Its one method.
pub const METHOD: &str = "ShouldRateLimit";

/// Encodes a `RateLimitRequest`: the domain and the request's descriptors.
///
/// # Examples
///
/// ```
/// use meshwasm_core::rate_limit::rls::encode_request;
///
/// let bytes = encode_request("web", &[vec![("remote_address".into(), "10.0.0.1".into())]]);
/// assert_eq!(&bytes[..5], b"\x0a\x03web");
/// ```
pub fn encode_request(domain: &str, descriptors: &[Vec<Entry>]) -> Vec<u8> {
    let mut out = Vec::new();
    put_bytes(&mut out, 1, domain.as_bytes());
    for descriptor in descriptors {
        let mut d = Vec::new();
        for (key, value) in descriptor {
            let mut e = Vec::new();
            put_bytes(&mut e, 1, key.as_bytes());
            put_bytes(&mut e, 2, value.as_bytes());
            put_bytes(&mut d, 1, &e);
        }
        put_bytes(&mut out, 2, &d);
    }
    out
}

/// `RateLimitResponse.Code`.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub enum Code {
    /// The service could not decide.
    #[default]
    Unknown,
    /// Under every limit.
    Ok,
    /// Over a limit.
    OverLimit,
}

impl Code {
    fn from_wire(n: u64) -> Code {
        match n {
            1 => Code::Ok,
            2 => Code::OverLimit,
            _ => Code::Unknown,
        }
    }
}

/// A `DescriptorStatus`: the limit a descriptor is under, and what is left.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct DescriptorStatus {
    /// This descriptor's answer.
    pub code: Code,
    /// `current_limit`: requests per unit, the unit's length, the limit's name.
    pub limit: Option<Limit>,
    /// `limit_remaining`.
    pub remaining: u32,
    /// `duration_until_reset`.
    pub until_reset: Option<Duration>,
}

/// A `RateLimitResponse.RateLimit`.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct Limit {
    /// `requests_per_unit`.
    pub requests_per_unit: u32,
    /// The unit in seconds (`None` for UNKNOWN, or a unit Envoy gives no window).
    pub window_secs: Option<u64>,
    /// `name`.
    pub name: String,
}

/// A decoded `RateLimitResponse`.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct Response {
    /// `overall_code`.
    pub overall_code: Code,
    /// `statuses`, one per descriptor sent.
    pub statuses: Vec<DescriptorStatus>,
    /// `response_headers_to_add`.
    pub response_headers: Vec<(String, String)>,
    /// `request_headers_to_add`.
    pub request_headers: Vec<(String, String)>,
    /// `raw_body`: the body of a denial.
    pub raw_body: Vec<u8>,
}

/// Why a response could not be decoded.
#[derive(Debug, Clone, Copy, PartialEq, Eq, thiserror::Error)]
#[error("malformed RateLimitResponse")]
pub struct Malformed;

/// Decodes a `RateLimitResponse`, skipping fields it does not use.
///
/// # Errors
///
/// [`Malformed`] for bytes that are not the message.
///
/// # Examples
///
/// ```
/// use meshwasm_core::rate_limit::rls::{Code, decode_response};
///
/// assert_eq!(decode_response(&[0x08, 0x02]).unwrap().overall_code, Code::OverLimit);
/// assert!(decode_response(&[0x0a, 0x05]).is_err());
/// ```
pub fn decode_response(bytes: &[u8]) -> Result<Response, Malformed> {
    let mut response = Response::default();
    for field in Fields(bytes) {
        match field? {
            (1, Value::Varint(n)) => response.overall_code = Code::from_wire(n),
            (2, Value::Bytes(b)) => response.statuses.push(decode_status(b)?),
            (3, Value::Bytes(b)) => response.response_headers.push(decode_header(b)?),
            (4, Value::Bytes(b)) => response.request_headers.push(decode_header(b)?),
            (5, Value::Bytes(b)) => response.raw_body = b.to_vec(),
            _ => {}
        }
    }
    Ok(response)
}

fn decode_status(bytes: &[u8]) -> Result<DescriptorStatus, Malformed> {
    let mut status = DescriptorStatus::default();
    for field in Fields(bytes) {
        match field? {
            (1, Value::Varint(n)) => status.code = Code::from_wire(n),
            (2, Value::Bytes(b)) => status.limit = Some(decode_limit(b)?),
            (3, Value::Varint(n)) => status.remaining = u32::try_from(n).unwrap_or(u32::MAX),
            (4, Value::Bytes(b)) => status.until_reset = Some(decode_duration(b)?),
            _ => {}
        }
    }
    Ok(status)
}

fn decode_limit(bytes: &[u8]) -> Result<Limit, Malformed> {
    let mut limit = Limit::default();
    for field in Fields(bytes) {
        match field? {
            (1, Value::Varint(n)) => limit.requests_per_unit = u32::try_from(n).unwrap_or(u32::MAX),
            // Envoy's windows: SECOND, MINUTE, HOUR, DAY; the other units have none.
            (2, Value::Varint(n)) => {
                limit.window_secs = match n {
                    1 => Some(1),
                    2 => Some(60),
                    3 => Some(3600),
                    4 => Some(86_400),
                    _ => None,
                }
            }
            (3, Value::Bytes(b)) => limit.name = String::from_utf8_lossy(b).into_owned(),
            _ => {}
        }
    }
    Ok(limit)
}

fn decode_duration(bytes: &[u8]) -> Result<Duration, Malformed> {
    let (mut secs, mut nanos) = (0u64, 0u32);
    for field in Fields(bytes) {
        match field? {
            (1, Value::Varint(n)) => secs = n,
            (2, Value::Varint(n)) => nanos = u32::try_from(n).unwrap_or(0).min(999_999_999),
            _ => {}
        }
    }
    Ok(Duration::new(secs, nanos))
}

fn decode_header(bytes: &[u8]) -> Result<(String, String), Malformed> {
    let (mut key, mut value) = (String::new(), Vec::new());
    for field in Fields(bytes) {
        match field? {
            (1, Value::Bytes(b)) => key = String::from_utf8_lossy(b).into_owned(),
            (2 | 3, Value::Bytes(b)) => value = b.to_vec(),
            _ => {}
        }
    }
    Ok((
        key.to_ascii_lowercase(),
        String::from_utf8_lossy(&value).into_owned(),
    ))
}

fn put_varint(out: &mut Vec<u8>, mut n: u64) {
    while n >= 0x80 {
        out.push((n as u8) | 0x80);
        n >>= 7;
    }
    out.push(n as u8);
}

/// Appends a length-delimited field (a string, bytes or a message).
pub(crate) fn put_bytes_field(out: &mut Vec<u8>, field: u32, bytes: &[u8]) {
    put_bytes(out, field, bytes);
}

/// Appends a string field.
pub(crate) fn put_string(out: &mut Vec<u8>, field: u32, text: &str) {
    put_bytes(out, field, text.as_bytes());
}

fn put_bytes(out: &mut Vec<u8>, field: u32, bytes: &[u8]) {
    put_varint(out, u64::from(field) << 3 | 2);
    put_varint(out, bytes.len() as u64);
    out.extend_from_slice(bytes);
}

enum Value<'a> {
    Varint(u64),
    Bytes(&'a [u8]),
    Fixed,
}

/// The fields of a message, in order.
struct Fields<'a>(&'a [u8]);

impl<'a> Iterator for Fields<'a> {
    type Item = Result<(u64, Value<'a>), Malformed>;

    fn next(&mut self) -> Option<Self::Item> {
        if self.0.is_empty() {
            return None;
        }
        Some(self.field())
    }
}

impl<'a> Fields<'a> {
    fn varint(&mut self) -> Result<u64, Malformed> {
        let mut n = 0u64;
        for (i, byte) in self.0.iter().enumerate().take(10) {
            n |= u64::from(byte & 0x7f) << (7 * i);
            if byte & 0x80 == 0 {
                self.0 = &self.0[i + 1..];
                return Ok(n);
            }
        }
        Err(Malformed)
    }

    fn take(&mut self, len: usize) -> Result<&'a [u8], Malformed> {
        if self.0.len() < len {
            return Err(Malformed);
        }
        let (head, rest) = self.0.split_at(len);
        self.0 = rest;
        Ok(head)
    }

    fn field(&mut self) -> Result<(u64, Value<'a>), Malformed> {
        let key = self.varint()?;
        let value = match key & 7 {
            0 => Value::Varint(self.varint()?),
            1 => {
                self.take(8)?;
                Value::Fixed
            }
            2 => {
                let len = usize::try_from(self.varint()?).map_err(|_| Malformed)?;
                Value::Bytes(self.take(len)?)
            }
            5 => {
                self.take(4)?;
                Value::Fixed
            }
            _ => return Err(Malformed),
        };
        Ok((key >> 3, value))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_full_response_decodes() {
        // overall_code OVER_LIMIT; one status {OVER_LIMIT, {10, MINUTE, "per-ip"}, 0, 42s};
        // a response header; a raw body.
        let mut limit = Vec::new();
        put_varint(&mut limit, 1 << 3);
        put_varint(&mut limit, 10);
        put_varint(&mut limit, 2 << 3);
        put_varint(&mut limit, 2);
        put_bytes(&mut limit, 3, b"per-ip");
        let mut reset = Vec::new();
        put_varint(&mut reset, 1 << 3);
        put_varint(&mut reset, 42);
        let mut status = vec![0x08, 0x02];
        put_bytes(&mut status, 2, &limit);
        put_bytes(&mut status, 4, &reset);
        let mut header = Vec::new();
        put_bytes(&mut header, 1, b"X-Reason");
        put_bytes(&mut header, 2, b"quota");
        let mut message = vec![0x08, 0x02];
        put_bytes(&mut message, 2, &status);
        put_bytes(&mut message, 3, &header);
        put_bytes(&mut message, 5, b"slow down");
        let r = decode_response(&message).unwrap();
        assert_eq!(r.overall_code, Code::OverLimit);
        assert_eq!(
            r.statuses[0].limit,
            Some(Limit {
                requests_per_unit: 10,
                window_secs: Some(60),
                name: "per-ip".into()
            })
        );
        assert_eq!(r.statuses[0].until_reset, Some(Duration::from_secs(42)));
        assert_eq!(
            r.response_headers,
            [("x-reason".to_owned(), "quota".to_owned())]
        );
        assert_eq!(r.raw_body, b"slow down");
    }

    #[test]
    fn truncated_input_is_malformed_not_a_panic() {
        for cut in 0..6 {
            let _ = decode_response(&[0x12, 0x05, 0x08, 0x01, 0x1a, 0x00][..cut]);
        }
        assert!(decode_response(&[0xff; 11]).is_err());
    }
}
