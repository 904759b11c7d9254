//! The field path at a place in a JSON text: `http[0].fault.abort.httpStatus`
//! for the line and column where serde_json stopped with an error.
//!
//! Deserializing through a path-tracking wrapper gives the same path, but
//! it is generic over every type of the document: in a filter it was 31 %
//! of the module. Configurations are parsed once, and an error is rare, so
//! the path is found only then, by reading the text again up to the error.
//!
//! serde_json reports the last byte it read. It reads a key, a string, a
//! number or a literal whole before refusing it, and refuses a `{` or `[`
//! on seeing it, so the path is:
//! - after a key (an unknown field): the key's object, then the key;
//! - after a value, or before a `{` or `[` whose type is wrong: the key or
//!   index holding it;
//! - at a `}` or `]` (a missing field, a wrong length): the container's own.

/// One open container, and where in it the reading is.
enum Frame {
    /// An object and the key whose value is being read, if any.
    Object { key: Option<String> },
    /// An array, the index of the element being read or next, and whether
    /// that element has begun.
    Array { index: usize, started: bool },
}

/// The path, as `FieldPath` renders it, at `line` and `column` (from 1,
/// in bytes, as serde_json counts them) of `json`.
pub(super) fn path_at(json: &[u8], line: usize, column: usize) -> String {
    let line_start = json
        .iter()
        .enumerate()
        .filter(|(_, b)| **b == b'\n')
        .nth(line.saturating_sub(2))
        .map_or(0, |(i, _)| i + 1);
    let line_start = if line <= 1 { 0 } else { line_start };
    // The byte serde_json read last.
    let error_at = (line_start + column).saturating_sub(1);
    render(&frames_at(json, error_at))
}

/// The containers open once serde_json has read up to `error_at`.
fn frames_at(json: &[u8], error_at: usize) -> Vec<Frame> {
    let mut frames: Vec<Frame> = Vec::new();
    let mut at = 0;
    while at < json.len() && at <= error_at {
        let byte = json[at];
        match byte {
            b'{' | b'[' => {
                begin_value(&mut frames);
                frames.push(if byte == b'{' {
                    Frame::Object { key: None }
                } else {
                    Frame::Array {
                        index: 0,
                        started: false,
                    }
                });
                at += 1;
            }
            b'}' | b']' => {
                if at == error_at {
                    // A missing field or a wrong length is found on
                    // closing the container: the error is its own. A `}`
                    // closing an array is where its next element should be.
                    if byte == b'}' && matches!(frames.last(), Some(Frame::Array { .. })) {
                        begin_value(&mut frames);
                    }
                    return frames;
                }
                frames.pop();
                end_value(&mut frames);
                at += 1;
            }
            b',' => {
                if let Some(Frame::Array { index, started }) = frames.last_mut() {
                    *index += 1;
                    *started = false;
                }
                at += 1;
            }
            b'"' => {
                let end = string_end(json, at);
                if let Some(Frame::Object { key: slot @ None }) = frames.last_mut() {
                    // Without its closing quote when the text ends inside it.
                    let close = if end > at + 1 && json.get(end - 1) == Some(&b'"') {
                        end - 1
                    } else {
                        end
                    };
                    let key = String::from_utf8_lossy(json.get(at + 1..close).unwrap_or_default());
                    *slot = Some(unescape(&key));
                    at = end;
                    continue;
                }
                begin_value(&mut frames);
                if error_at < end {
                    // Read whole, then refused (a string of the wrong type).
                    return frames;
                }
                end_value(&mut frames);
                at = end;
            }
            b if b.is_ascii_whitespace() || b == b':' => at += 1,
            _ => {
                // A number, true, false or null.
                let end = json[at..]
                    .iter()
                    .position(|b| matches!(b, b',' | b'}' | b']') || b.is_ascii_whitespace())
                    .map_or(json.len(), |n| at + n);
                begin_value(&mut frames);
                if error_at < end {
                    return frames;
                }
                end_value(&mut frames);
                at = end;
            }
        }
    }
    // serde_json refuses a `{` or `[` of the wrong type on seeing it, before
    // reading it: the error is then about the element that comes next.
    let next = json[at.min(json.len())..]
        .iter()
        .find(|b| !b.is_ascii_whitespace());
    if next.is_some_and(|b| *b != b']') {
        begin_value(&mut frames);
    }
    frames
}

/// A value begins in the innermost container.
fn begin_value(frames: &mut [Frame]) {
    if let Some(Frame::Array { started, .. }) = frames.last_mut() {
        *started = true;
    }
}

/// The value being read in the innermost container is whole.
fn end_value(frames: &mut [Frame]) {
    match frames.last_mut() {
        Some(Frame::Object { key }) => *key = None,
        Some(Frame::Array { started, .. }) => *started = false,
        None => {}
    }
}

/// The index just past the string that opens at `start`.
fn string_end(json: &[u8], start: usize) -> usize {
    let mut at = start + 1;
    while at < json.len() {
        match json[at] {
            b'\\' => at += 2,
            b'"' => return at + 1,
            _ => at += 1,
        }
    }
    json.len()
}

/// The common escapes of a key; field names rarely have any.
fn unescape(key: &str) -> String {
    if !key.contains('\\') {
        return key.to_owned();
    }
    key.replace("\\\"", "\"")
        .replace("\\/", "/")
        .replace("\\\\", "\\")
}

fn render(frames: &[Frame]) -> String {
    let mut path = String::new();
    for frame in frames {
        match frame {
            Frame::Object { key: Some(key) } => {
                if !path.is_empty() {
                    path.push('.');
                }
                path.push_str(key);
            }
            Frame::Array {
                index,
                started: true,
            } => {
                path.push('[');
                path.push_str(&index.to_string());
                path.push(']');
            }
            // An object between keys, an array between elements: the
            // error is the container's own, and no deeper frame is open.
            Frame::Object { key: None } | Frame::Array { .. } => break,
        }
    }
    path
}

#[cfg(test)]
mod tests {
    use super::path_at;

    #[test]
    fn finds_the_field_serde_json_stopped_in() {
        let json = br#"{"http": [{"fault": {"abort": {"httpStauts": 500}}}]}"#;
        // After the unknown key's closing quote.
        assert_eq!(path_at(json, 1, 43), "http[0].fault.abort.httpStauts");
        let pretty = b"{\n  \"hosts\": [\n    \"a\",\n    7\n  ]\n}";
        assert_eq!(path_at(pretty, 4, 5), "hosts[1]");
    }

    #[test]
    fn never_panics_on_text_that_ends_anywhere() {
        let text = br#"{"a": [{"b\"c": "d\\", "e": [1, {"f": tru"#;
        for end in 0..=text.len() {
            for column in 0..=text.len() + 2 {
                let _ = path_at(&text[..end], 1, column);
                let _ = path_at(&text[..end], 7, column);
            }
        }
        assert_eq!(path_at(b"\"", 1, 1), "");
        assert_eq!(path_at(b"{\"", 1, 2), "");
    }
}
