//! `google.protobuf.Struct`, the message Istio exchanges peer metadata in,
//! and `envoy.config.core.v3.Metadata`, which Envoy serves a cluster's
//! metadata as: the two protobuf messages the telemetry filter reads and
//! writes, by hand, since a protobuf library would double its size.
//!
//! Encoding is deterministic as protobuf's own deterministic serializer
//! makes it (map entries sorted by key), so the same workload always sends
//! the same header. Decoding is defensive: a hostile peer's bytes give an
//! error, never a panic or unbounded recursion.

/// A `google.protobuf.Value`.
#[derive(Debug, Clone, PartialEq)]
pub enum ProtoValue {
    /// `null_value`.
    Null,
    /// `number_value`.
    Number(f64),
    /// `string_value`.
    String(String),
    /// `bool_value`.
    Bool(bool),
    /// `struct_value`: fields in key order.
    Struct(Vec<(String, ProtoValue)>),
    /// `list_value`.
    List(Vec<ProtoValue>),
}

impl ProtoValue {
    /// The string, if this is one.
    pub fn as_str(&self) -> Option<&str> {
        match self {
            ProtoValue::String(s) => Some(s),
            _ => None,
        }
    }

    /// The field `key` of a struct value.
    pub fn get(&self, key: &str) -> Option<&ProtoValue> {
        match self {
            ProtoValue::Struct(fields) => fields.iter().find(|(k, _)| k == key).map(|(_, v)| v),
            _ => None,
        }
    }
}

/// Why bytes are not the message they should be.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct MalformedProto(pub &'static str);

impl std::fmt::Display for MalformedProto {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(self.0)
    }
}

/// Nesting deeper than this is refused: Istio's metadata is two levels deep.
const MAX_DEPTH: u8 = 16;

/// Serializes the fields of a `Struct`, sorted by key.
///
/// # Examples
///
/// ```
/// use meshwasm_core::telemetry::proto::{decode_struct, encode_struct, ProtoValue};
///
/// let fields = vec![
///     ("NAMESPACE".to_owned(), ProtoValue::String("shop".into())),
///     ("LABELS".to_owned(), ProtoValue::Struct(vec![("app".into(), ProtoValue::String("ratings".into()))])),
/// ];
/// let bytes = encode_struct(&fields);
/// let back = decode_struct(&bytes).unwrap();
/// assert_eq!(back[0].0, "LABELS"); // sorted, as protobuf's deterministic output
/// assert_eq!(back[1].1.as_str(), Some("shop"));
/// ```
pub fn encode_struct(fields: &[(String, ProtoValue)]) -> Vec<u8> {
    let mut out = Vec::new();
    write_struct(&mut out, fields);
    out
}

fn write_struct(out: &mut Vec<u8>, fields: &[(String, ProtoValue)]) {
    let mut sorted: Vec<&(String, ProtoValue)> = fields.iter().collect();
    sorted.sort_by(|a, b| a.0.cmp(&b.0));
    for (key, value) in sorted {
        let mut entry = Vec::new();
        write_len(&mut entry, 1, key.as_bytes());
        let mut v = Vec::new();
        write_value(&mut v, value);
        write_len(&mut entry, 2, &v);
        write_len(out, 1, &entry);
    }
}

fn write_value(out: &mut Vec<u8>, value: &ProtoValue) {
    match value {
        ProtoValue::Null => {
            out.push(1 << 3);
            out.push(0);
        }
        ProtoValue::Number(n) => {
            out.push((2 << 3) | 1);
            out.extend_from_slice(&n.to_le_bytes());
        }
        ProtoValue::String(s) => write_len(out, 3, s.as_bytes()),
        ProtoValue::Bool(b) => {
            out.push(4 << 3);
            out.push(u8::from(*b));
        }
        ProtoValue::Struct(fields) => {
            let mut inner = Vec::new();
            write_struct(&mut inner, fields);
            write_len(out, 5, &inner);
        }
        ProtoValue::List(items) => {
            let mut inner = Vec::new();
            for item in items {
                let mut v = Vec::new();
                write_value(&mut v, item);
                write_len(&mut inner, 1, &v);
            }
            write_len(out, 6, &inner);
        }
    }
}

fn write_len(out: &mut Vec<u8>, field: u8, bytes: &[u8]) {
    out.push((field << 3) | 2);
    write_varint(out, bytes.len() as u64);
    out.extend_from_slice(bytes);
}

fn write_varint(out: &mut Vec<u8>, mut n: u64) {
    while n >= 0x80 {
        out.push((n as u8) | 0x80);
        n >>= 7;
    }
    out.push(n as u8);
}

/// Parses a serialized `Struct` into its fields, in the order sent.
///
/// # Errors
///
/// What is malformed: truncated fields, bad wire types, nesting deeper
/// than 16 levels, strings that are not UTF-8.
pub fn decode_struct(bytes: &[u8]) -> Result<Vec<(String, ProtoValue)>, MalformedProto> {
    read_struct(bytes, 0)
}

/// A protobuf field: its number and its payload.
enum Field<'a> {
    Varint(u64),
    Fixed64([u8; 8]),
    Bytes(&'a [u8]),
    Fixed32,
}

struct Reader<'a> {
    bytes: &'a [u8],
}

impl<'a> Reader<'a> {
    fn varint(&mut self) -> Result<u64, MalformedProto> {
        let mut n: u64 = 0;
        for shift in (0..64).step_by(7) {
            let (&byte, rest) = self
                .bytes
                .split_first()
                .ok_or(MalformedProto("truncated varint"))?;
            self.bytes = rest;
            n |= u64::from(byte & 0x7f) << shift;
            if byte < 0x80 {
                return Ok(n);
            }
        }
        Err(MalformedProto("varint longer than 10 bytes"))
    }

    fn take(&mut self, len: usize) -> Result<&'a [u8], MalformedProto> {
        if len > self.bytes.len() {
            return Err(MalformedProto("field runs past the message"));
        }
        let (head, rest) = self.bytes.split_at(len);
        self.bytes = rest;
        Ok(head)
    }

    fn next(&mut self) -> Option<Result<(u64, Field<'a>), MalformedProto>> {
        if self.bytes.is_empty() {
            return None;
        }
        Some(self.field())
    }

    fn field(&mut self) -> Result<(u64, Field<'a>), MalformedProto> {
        let tag = self.varint()?;
        let field = match tag & 7 {
            0 => Field::Varint(self.varint()?),
            1 => {
                let mut word = [0u8; 8];
                word.copy_from_slice(self.take(8)?);
                Field::Fixed64(word)
            }
            2 => {
                let len = usize::try_from(self.varint()?)
                    .map_err(|_| MalformedProto("length out of range"))?;
                Field::Bytes(self.take(len)?)
            }
            5 => {
                self.take(4)?;
                Field::Fixed32
            }
            _ => return Err(MalformedProto("unsupported wire type")),
        };
        Ok((tag >> 3, field))
    }
}

fn read_struct(bytes: &[u8], depth: u8) -> Result<Vec<(String, ProtoValue)>, MalformedProto> {
    if depth > MAX_DEPTH {
        return Err(MalformedProto("nested too deeply"));
    }
    let mut fields = Vec::new();
    let mut reader = Reader { bytes };
    while let Some(field) = reader.next() {
        let (1, Field::Bytes(entry)) = field? else {
            continue;
        };
        let mut key = String::new();
        let mut value = ProtoValue::Null;
        let mut entry = Reader { bytes: entry };
        while let Some(part) = entry.next() {
            match part? {
                (1, Field::Bytes(k)) => key = utf8(k)?,
                (2, Field::Bytes(v)) => value = read_value(v, depth + 1)?,
                _ => {}
            }
        }
        fields.push((key, value));
    }
    Ok(fields)
}

fn read_value(bytes: &[u8], depth: u8) -> Result<ProtoValue, MalformedProto> {
    if depth > MAX_DEPTH {
        return Err(MalformedProto("nested too deeply"));
    }
    let mut value = ProtoValue::Null;
    let mut reader = Reader { bytes };
    while let Some(field) = reader.next() {
        value = match field? {
            (2, Field::Fixed64(word)) => ProtoValue::Number(f64::from_le_bytes(word)),
            (3, Field::Bytes(s)) => ProtoValue::String(utf8(s)?),
            (4, Field::Varint(b)) => ProtoValue::Bool(b != 0),
            (5, Field::Bytes(s)) => ProtoValue::Struct(read_struct(s, depth + 1)?),
            (6, Field::Bytes(list)) => {
                let mut items = Vec::new();
                let mut list = Reader { bytes: list };
                while let Some(item) = list.next() {
                    if let (1, Field::Bytes(item)) = item? {
                        items.push(read_value(item, depth + 1)?);
                    }
                }
                ProtoValue::List(items)
            }
            (1, _) => ProtoValue::Null,
            _ => continue,
        };
    }
    Ok(value)
}

fn utf8(bytes: &[u8]) -> Result<String, MalformedProto> {
    String::from_utf8(bytes.to_vec()).map_err(|_| MalformedProto("string is not UTF-8"))
}

/// The `filter_metadata` entry `filter` of a serialized
/// `envoy.config.core.v3.Metadata` (Envoy's `xds.cluster_metadata`), as a
/// struct value.
///
/// # Errors
///
/// What is malformed in the message.
///
/// # Examples
///
/// ```
/// use meshwasm_core::telemetry::proto::{encode_struct, filter_metadata, ProtoValue};
///
/// // Metadata{filter_metadata: {"istio": Struct{"default_original_port": 9080}}}
/// let istio = encode_struct(&[("default_original_port".into(), ProtoValue::Number(9080.0))]);
/// let mut entry = vec![0x0a, 5];
/// entry.extend_from_slice(b"istio");
/// entry.push(0x12);
/// entry.push(istio.len() as u8);
/// entry.extend_from_slice(&istio);
/// let mut metadata = vec![0x0a, entry.len() as u8];
/// metadata.extend_from_slice(&entry);
///
/// let found = filter_metadata(&metadata, "istio").unwrap().unwrap();
/// assert_eq!(found.get("default_original_port"), Some(&ProtoValue::Number(9080.0)));
/// assert_eq!(filter_metadata(&metadata, "other").unwrap(), None);
/// ```
pub fn filter_metadata(bytes: &[u8], filter: &str) -> Result<Option<ProtoValue>, MalformedProto> {
    let mut reader = Reader { bytes };
    while let Some(field) = reader.next() {
        let (1, Field::Bytes(entry)) = field? else {
            continue;
        };
        let mut entry = Reader { bytes: entry };
        let mut key_matches = false;
        let mut value = None;
        while let Some(part) = entry.next() {
            match part? {
                (1, Field::Bytes(k)) => key_matches = k == filter.as_bytes(),
                (2, Field::Bytes(v)) => value = Some(v),
                _ => {}
            }
        }
        if key_matches {
            return Ok(Some(ProtoValue::Struct(read_struct(
                value.unwrap_or_default(),
                1,
            )?)));
        }
    }
    Ok(None)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn every_value_kind_round_trips() {
        let fields = vec![
            ("b".to_owned(), ProtoValue::Bool(true)),
            ("n".to_owned(), ProtoValue::Number(1.5)),
            ("z".to_owned(), ProtoValue::Null),
            (
                "l".to_owned(),
                ProtoValue::List(vec![
                    ProtoValue::String("x".into()),
                    ProtoValue::Bool(false),
                ]),
            ),
            (
                "s".to_owned(),
                ProtoValue::Struct(vec![("k".into(), ProtoValue::String("v".repeat(300)))]),
            ),
        ];
        let mut sorted = fields.clone();
        sorted.sort_by(|a, b| a.0.cmp(&b.0));
        assert_eq!(decode_struct(&encode_struct(&fields)).unwrap(), sorted);
    }

    #[test]
    fn hostile_bytes_are_errors() {
        assert!(decode_struct(&[0x0a, 0x05, 0x0a]).is_err());
        assert!(decode_struct(&[0xff; 12]).is_err());
        // A struct nested 100 deep: Value{struct_value: Struct{fields: {"": ...}}}.
        let mut bytes = Vec::new();
        for _ in 0..100 {
            let mut value = Vec::new();
            write_len(&mut value, 5, &bytes);
            let mut entry = Vec::new();
            write_len(&mut entry, 2, &value);
            bytes.clear();
            write_len(&mut bytes, 1, &entry);
        }
        assert_eq!(
            decode_struct(&bytes),
            Err(MalformedProto("nested too deeply"))
        );
    }
}
