//! Header maps as Envoy keeps them: ordered pairs, keys lower-cased, and the
//! ABI's serialized form of a whole map.

use std::fmt;

/// An ordered multimap of header names to values.
///
/// Names are lower-cased when they enter, as Envoy's `LowerCaseString` does;
/// values are bytes, since Envoy does not require them to be UTF-8.
///
/// # Examples
///
/// ```
/// use sdk_host::HeaderMap;
/// let mut map = HeaderMap::from_pairs([(":method", "GET"), ("X-Id", "1")]);
/// map.add("x-id", "2");
/// assert_eq!(map.get("x-id"), Some("1"));
/// assert_eq!(map.get_all("X-ID").count(), 2);
/// map.replace("x-id", "3");
/// assert_eq!(map.get_all("x-id").collect::<Vec<_>>(), vec!["3"]);
/// ```
#[derive(Clone, Default, PartialEq, Eq)]
pub struct HeaderMap {
    pairs: Vec<(String, Vec<u8>)>,
}

impl HeaderMap {
    /// A map holding these pairs in order.
    ///
    /// ```
    /// let map = sdk_host::HeaderMap::from_pairs([(":path", "/"), ("X-Tag", "a")]);
    /// assert_eq!(map.get("x-tag"), Some("a"));
    /// ```
    pub fn from_pairs<K: AsRef<str>, V: AsRef<[u8]>>(
        pairs: impl IntoIterator<Item = (K, V)>,
    ) -> HeaderMap {
        let mut map = HeaderMap::default();
        for (k, v) in pairs {
            map.add(k.as_ref(), v.as_ref());
        }
        map
    }

    /// Number of pairs (a name that appears twice counts twice).
    ///
    /// ```
    /// let map = sdk_host::HeaderMap::from_pairs([("a", "1"), ("a", "2")]);
    /// assert_eq!(map.len(), 2);
    /// ```
    pub fn len(&self) -> usize {
        self.pairs.len()
    }

    /// Whether the map holds no pairs.
    ///
    /// ```
    /// assert!(sdk_host::HeaderMap::default().is_empty());
    /// ```
    pub fn is_empty(&self) -> bool {
        self.pairs.is_empty()
    }

    /// The first value of `name` as text, if it is present and UTF-8.
    ///
    /// ```
    /// let map = sdk_host::HeaderMap::from_pairs([("x-user", "a"), ("x-user", "b")]);
    /// assert_eq!(map.get("X-User"), Some("a"));
    /// ```
    pub fn get(&self, name: &str) -> Option<&str> {
        self.get_bytes(name)
            .and_then(|value| std::str::from_utf8(value).ok())
    }

    /// The first value of `name`, as Envoy's `proxy_get_header_map_value`
    /// answers (it never joins repeated headers).
    ///
    /// ```
    /// let map = sdk_host::HeaderMap::from_pairs([("x-bin", &b"\xff\x00"[..])]);
    /// assert_eq!(map.get_bytes("x-bin"), Some(&b"\xff\x00"[..]));
    /// assert_eq!(map.get("x-bin"), None); // not UTF-8
    /// ```
    pub fn get_bytes(&self, name: &str) -> Option<&[u8]> {
        let name = name.to_ascii_lowercase();
        self.pairs
            .iter()
            .find(|(k, _)| *k == name)
            .map(|(_, v)| v.as_slice())
    }

    /// Every value of `name`, in order; values that are not UTF-8 are skipped.
    ///
    /// ```
    /// let map = sdk_host::HeaderMap::from_pairs([("set-cookie", "a=1"), ("set-cookie", "b=2")]);
    /// assert_eq!(map.get_all("set-cookie").collect::<Vec<_>>(), ["a=1", "b=2"]);
    /// ```
    pub fn get_all<'a>(&'a self, name: &str) -> impl Iterator<Item = &'a str> + 'a {
        let name = name.to_ascii_lowercase();
        self.pairs
            .iter()
            .filter(move |(k, _)| *k == name)
            .filter_map(|(_, v)| std::str::from_utf8(v).ok())
    }

    /// Appends a pair, keeping any existing values of `name`. As in Envoy's
    /// header maps, a pseudo-header goes after the other pseudo-headers,
    /// before every regular header.
    ///
    /// ```
    /// let mut map = sdk_host::HeaderMap::from_pairs([(":status", "200"), ("via", "a")]);
    /// map.add("Via", "b");
    /// map.add(":x-pseudo", "p");
    /// assert_eq!(map.get_all("via").count(), 2);
    /// assert_eq!(map.iter().map(|(k, _)| k).collect::<Vec<_>>(), [":status", ":x-pseudo", "via", "via"]);
    /// ```
    pub fn add(&mut self, name: &str, value: impl AsRef<[u8]>) {
        let pair = (name.to_ascii_lowercase(), value.as_ref().to_vec());
        if pair.0.starts_with(':') {
            let at = self
                .pairs
                .iter()
                .position(|(k, _)| !k.starts_with(':'))
                .unwrap_or(self.pairs.len());
            self.pairs.insert(at, pair);
        } else {
            self.pairs.push(pair);
        }
    }

    /// Sets `name` to one value: the first occurrence takes it in place, the
    /// others go; an absent name is appended.
    ///
    /// ```
    /// let mut map = sdk_host::HeaderMap::from_pairs([("x-a", "1"), ("x-b", "2"), ("x-a", "3")]);
    /// map.replace("x-a", "new");
    /// assert_eq!(map.iter().map(|(k, _)| k).collect::<Vec<_>>(), ["x-a", "x-b"]);
    /// assert_eq!(map.get("x-a"), Some("new"));
    /// ```
    pub fn replace(&mut self, name: &str, value: impl AsRef<[u8]>) {
        let name = name.to_ascii_lowercase();
        let mut seen = false;
        self.pairs.retain_mut(|(k, v)| {
            if *k != name {
                return true;
            }
            if seen {
                return false;
            }
            seen = true;
            *v = value.as_ref().to_vec();
            true
        });
        if !seen {
            self.pairs.push((name, value.as_ref().to_vec()));
        }
    }

    /// Removes every value of `name`; returns whether there was one.
    ///
    /// ```
    /// let mut map = sdk_host::HeaderMap::from_pairs([("x-a", "1"), ("x-a", "2")]);
    /// assert!(map.remove("x-a"));
    /// assert!(!map.remove("x-a"));
    /// ```
    pub fn remove(&mut self, name: &str) -> bool {
        let name = name.to_ascii_lowercase();
        let before = self.pairs.len();
        self.pairs.retain(|(k, _)| *k != name);
        self.pairs.len() != before
    }

    /// The pairs in order, values as bytes.
    ///
    /// ```
    /// let map = sdk_host::HeaderMap::from_pairs([(":status", "200"), ("server", "envoy")]);
    /// let names: Vec<&str> = map.iter().map(|(name, _)| name).collect();
    /// assert_eq!(names, [":status", "server"]);
    /// ```
    pub fn iter(&self) -> impl Iterator<Item = (&str, &[u8])> {
        self.pairs.iter().map(|(k, v)| (k.as_str(), v.as_slice()))
    }

    /// Total size of names and values, as Envoy's `byteSize()` counts it.
    ///
    /// ```
    /// let map = sdk_host::HeaderMap::from_pairs([("ab", "cde")]);
    /// assert_eq!(map.byte_size(), 5);
    /// ```
    pub fn byte_size(&self) -> usize {
        self.pairs.iter().map(|(k, v)| k.len() + v.len()).sum()
    }

    /// The ABI's serialized form: the pair count, each pair's name and
    /// value lengths (all `u32` little-endian), then each name and value
    /// followed by a NUL byte.
    ///
    /// # Examples
    ///
    /// ```
    /// use sdk_host::HeaderMap;
    /// let map = HeaderMap::from_pairs([("a", "bc")]);
    /// let bytes = map.serialize();
    /// assert_eq!(bytes, [1, 0, 0, 0, 1, 0, 0, 0, 2, 0, 0, 0, b'a', 0, b'b', b'c', 0]);
    /// assert_eq!(HeaderMap::deserialize(&bytes).unwrap(), map);
    /// ```
    pub fn serialize(&self) -> Vec<u8> {
        serialize_pairs(self.pairs.iter().map(|(k, v)| (k.as_str(), v.as_slice())))
    }

    /// Parses the ABI's serialized form; keys are lower-cased as Envoy does.
    ///
    /// # Errors
    ///
    /// [`PairsError`] when the sizes do not add up or a name is not UTF-8.
    ///
    /// ```
    /// use sdk_host::{HeaderMap, PairsError};
    /// let map = HeaderMap::from_pairs([("a", "1")]);
    /// assert_eq!(HeaderMap::deserialize(&map.serialize()), Ok(map));
    /// assert_eq!(HeaderMap::deserialize(&[1, 0, 0, 0]), Err(PairsError::Truncated));
    /// ```
    pub fn deserialize(bytes: &[u8]) -> Result<HeaderMap, PairsError> {
        let mut map = HeaderMap::default();
        for (k, v) in deserialize_pairs(bytes)? {
            let name = std::str::from_utf8(k).map_err(|_| PairsError::NameNotUtf8)?;
            map.add(name, v);
        }
        Ok(map)
    }
}

impl fmt::Debug for HeaderMap {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_list()
            .entries(
                self.pairs
                    .iter()
                    .map(|(k, v)| (k, String::from_utf8_lossy(v))),
            )
            .finish()
    }
}

/// Serializes any pairs in the ABI's map format (see [`HeaderMap::serialize`]).
pub(crate) fn serialize_pairs<'a>(
    pairs: impl Iterator<Item = (&'a str, &'a [u8])> + Clone,
) -> Vec<u8> {
    let count = pairs.clone().count();
    let data: usize = pairs.clone().map(|(k, v)| k.len() + v.len() + 2).sum();
    let mut out = Vec::with_capacity(4 + count * 8 + data);
    out.extend_from_slice(&(count as u32).to_le_bytes());
    for (k, v) in pairs.clone() {
        out.extend_from_slice(&(k.len() as u32).to_le_bytes());
        out.extend_from_slice(&(v.len() as u32).to_le_bytes());
    }
    for (k, v) in pairs {
        out.extend_from_slice(k.as_bytes());
        out.push(0);
        out.extend_from_slice(v);
        out.push(0);
    }
    out
}

/// Why a serialized map could not be read.
///
/// ```
/// let err = sdk_host::HeaderMap::deserialize(&[2, 0, 0, 0]).unwrap_err();
/// assert_eq!(err.to_string(), "serialized map is truncated");
/// ```
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum PairsError {
    /// The buffer ends before the sizes say it should.
    #[error("serialized map is truncated")]
    Truncated,
    /// A header name is not UTF-8.
    #[error("header name is not UTF-8")]
    NameNotUtf8,
}

/// (name, value) slices of a serialized map.
type Pairs<'a> = Vec<(&'a [u8], &'a [u8])>;

/// Splits the ABI's map format into (name, value) slices.
fn deserialize_pairs(bytes: &[u8]) -> Result<Pairs<'_>, PairsError> {
    if bytes.is_empty() {
        return Ok(Vec::new());
    }
    let word = |at: usize| -> Result<usize, PairsError> {
        let slice = bytes.get(at..at + 4).ok_or(PairsError::Truncated)?;
        let mut word = [0u8; 4];
        word.copy_from_slice(slice);
        Ok(u32::from_le_bytes(word) as usize)
    };
    let count = word(0)?;
    let mut sizes = Vec::with_capacity(count.min(bytes.len() / 8));
    for i in 0..count {
        sizes.push((word(4 + i * 8)?, word(8 + i * 8)?));
    }
    let mut at = 4 + count * 8;
    let mut pairs = Vec::with_capacity(sizes.len());
    for (key_len, value_len) in sizes {
        let key = bytes.get(at..at + key_len).ok_or(PairsError::Truncated)?;
        at += key_len + 1;
        let value = bytes.get(at..at + value_len).ok_or(PairsError::Truncated)?;
        at += value_len + 1;
        pairs.push((key, value));
    }
    if at > bytes.len() {
        return Err(PairsError::Truncated);
    }
    Ok(pairs)
}
