//! Proxy-Wasm's serialized header map, read without copying.
//!
//! `proxy_get_header_map_pairs` returns one buffer: a little-endian `u32`
//! count, then a `(name_len, value_len)` pair of `u32`s per entry, then each
//! name and value followed by a NUL. A filter fetches the whole map in one
//! host call and looks headers up in place.

use crate::request::join_values;
use std::borrow::Cow;
use std::ops::Range;

/// The buffer did not have the Proxy-Wasm map layout.
#[derive(Debug, Clone, Copy, PartialEq, Eq, thiserror::Error)]
#[error("malformed serialized header map: {0}")]
pub struct MalformedHeaderMap(&'static str);

/// A header map in Proxy-Wasm's serialized form, indexed once.
///
/// # Examples
///
/// ```
/// use meshwasm_core::header_map::{serialize_pairs, HeaderMap};
///
/// let buf = serialize_pairs([(":path", &b"/a"[..]), ("x-v", b"1"), ("x-v", b"2")]);
/// let map = HeaderMap::parse(buf).unwrap();
/// assert_eq!(map.get(":path").as_deref(), Some("/a"));
/// assert_eq!(map.get("x-v").as_deref(), Some("1,2"));
/// assert_eq!(map.first("x-v"), Some(&b"1"[..]));
/// ```
#[derive(Debug, Clone, Default)]
pub struct HeaderMap {
    buf: Vec<u8>,
    entries: Vec<(Range<usize>, Range<usize>)>,
}

impl HeaderMap {
    /// Indexes a serialized map. An empty buffer is an empty map.
    ///
    /// # Errors
    ///
    /// [`MalformedHeaderMap`] if the sizes do not fit the buffer.
    pub fn parse(buf: Vec<u8>) -> Result<Self, MalformedHeaderMap> {
        if buf.is_empty() {
            return Ok(HeaderMap::default());
        }
        let count = read_u32(&buf, 0).ok_or(MalformedHeaderMap("no entry count"))? as usize;
        let sizes_end = count
            .checked_mul(8)
            .and_then(|n| n.checked_add(4))
            .filter(|end| *end <= buf.len())
            .ok_or(MalformedHeaderMap("entry count larger than the buffer"))?;
        let mut entries = Vec::with_capacity(count);
        let mut at = sizes_end;
        for i in 0..count {
            let name_len =
                read_u32(&buf, 4 + i * 8).ok_or(MalformedHeaderMap("truncated sizes"))? as usize;
            let value_len =
                read_u32(&buf, 8 + i * 8).ok_or(MalformedHeaderMap("truncated sizes"))? as usize;
            let name = take(&buf, &mut at, name_len)?;
            let value = take(&buf, &mut at, value_len)?;
            entries.push((name, value));
        }
        Ok(HeaderMap { buf, entries })
    }

    /// All values of `name` joined with `,`; names compare exactly (Envoy's are lowercase).
    pub fn get(&self, name: &str) -> Option<Cow<'_, str>> {
        join_values(
            self.iter()
                .filter(|(n, _)| *n == name.as_bytes())
                .map(|(_, v)| v),
        )
    }

    /// The first value of `name`, as bytes.
    pub fn first(&self, name: &str) -> Option<&[u8]> {
        self.iter()
            .find(|(n, _)| *n == name.as_bytes())
            .map(|(_, v)| v)
    }

    /// Entries in order, as `(name, value)` bytes.
    pub fn iter(&self) -> impl Iterator<Item = (&[u8], &[u8])> {
        self.entries
            .iter()
            .map(|(n, v)| (&self.buf[n.clone()], &self.buf[v.clone()]))
    }

    /// The bytes of every name and value, as Envoy's `byteSize()` counts
    /// a header map (and its `request.total_size` the request's headers).
    pub fn byte_size(&self) -> usize {
        self.iter().map(|(n, v)| n.len() + v.len()).sum()
    }

    /// Number of entries.
    pub fn len(&self) -> usize {
        self.entries.len()
    }

    /// True when there are no entries.
    pub fn is_empty(&self) -> bool {
        self.entries.is_empty()
    }
}

fn read_u32(buf: &[u8], at: usize) -> Option<u32> {
    let bytes = buf.get(at..at.checked_add(4)?)?;
    Some(u32::from_le_bytes([bytes[0], bytes[1], bytes[2], bytes[3]]))
}

/// Takes `len` bytes plus the NUL terminator that follows them.
fn take(buf: &[u8], at: &mut usize, len: usize) -> Result<Range<usize>, MalformedHeaderMap> {
    let start = *at;
    let end = start
        .checked_add(len)
        .filter(|end| *end < buf.len())
        .ok_or(MalformedHeaderMap("entry runs past the buffer"))?;
    if buf[end] != 0 {
        return Err(MalformedHeaderMap("entry not NUL-terminated"));
    }
    *at = end + 1;
    Ok(start..end)
}

/// Serializes pairs into Proxy-Wasm's map layout (what a host returns, and
/// what `proxy_set_header_map_pairs` and local responses take).
pub fn serialize_pairs<'a, N, V>(pairs: impl IntoIterator<Item = (N, V)>) -> Vec<u8>
where
    N: AsRef<[u8]> + 'a,
    V: AsRef<[u8]> + 'a,
{
    let pairs: Vec<(N, V)> = pairs.into_iter().collect();
    let mut out = Vec::with_capacity(
        4 + pairs
            .iter()
            .map(|(n, v)| 10 + n.as_ref().len() + v.as_ref().len())
            .sum::<usize>(),
    );
    out.extend_from_slice(&len_u32(pairs.len()).to_le_bytes());
    for (n, v) in &pairs {
        out.extend_from_slice(&len_u32(n.as_ref().len()).to_le_bytes());
        out.extend_from_slice(&len_u32(v.as_ref().len()).to_le_bytes());
    }
    for (n, v) in &pairs {
        out.extend_from_slice(n.as_ref());
        out.push(0);
        out.extend_from_slice(v.as_ref());
        out.push(0);
    }
    out
}

fn len_u32(n: usize) -> u32 {
    u32::try_from(n).unwrap_or(u32::MAX)
}
