//! YAML in and out: multi-document streams read into JSON values that
//! remember the line of every field, and JSON values written back as YAML.
//!
//! Errors found long after parsing (a weight sum of 0 at
//! `spec.http[0].route`) still point at the user's line, because each
//! [`Document`] keeps a map from field path to position.
//!
//! A leaf crate: envoyfilter reads Istio manifests with it and sdk-host
//! its scenario files, so the test host does not link the code it tests.
//!
//! ```
//! let docs = yaml_doc::load("kind: VirtualService\nspec:\n  hosts: [a]\n").unwrap();
//! assert_eq!(docs[0].position("spec.hosts[0]").unwrap().line, 3);
//! assert_eq!(yaml_doc::dump(&[docs[0].value.clone()]).lines().next(), Some("kind: VirtualService"));
//! ```
#![deny(missing_docs)]
#![doc(test(attr(deny(warnings))))]

use saphyr::{LoadableYamlNode, MarkedYaml, Scalar, Yaml, YamlData, YamlEmitter};
use serde_json::{Map, Number, Value};
use std::collections::BTreeMap;
use std::fmt;

/// One document of a YAML stream, as JSON, with the position of each field.
#[derive(Debug, Clone)]
pub struct Document {
    /// Position in the stream, from 1 (empty documents are not counted).
    pub number: usize,
    /// The document's content.
    pub value: Value,
    /// Line (from 1) where the document's content starts.
    pub line: usize,
    positions: BTreeMap<String, Position>,
}

/// A place in the source text.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Position {
    /// Line, from 1.
    pub line: usize,
    /// Column, from 1.
    pub column: usize,
}

impl fmt::Display for Position {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "line {}, column {}", self.line, self.column)
    }
}

impl Document {
    /// The resources of a Kubernetes `List` (what `kubectl get -o yaml`
    /// prints): each of its `items` as a document of its own, with the
    /// positions of its fields in the file; any other document as it is.
    ///
    /// # Examples
    ///
    /// ```
    /// let text = "apiVersion: v1\nkind: List\nitems:\n- kind: Gateway\n  spec: {}\n- kind: VirtualService\n  spec:\n    hosts: [a]\n";
    /// let docs = yaml_doc::load(text).unwrap().remove(0).list_items();
    /// assert_eq!(docs.len(), 2);
    /// assert_eq!(docs[1].value["kind"], "VirtualService");
    /// assert_eq!(docs[1].position("spec.hosts").unwrap().line, 8);
    /// ```
    pub fn list_items(self) -> Vec<Document> {
        let Some(items) = self
            .value
            .get("items")
            .and_then(Value::as_array)
            .filter(|_| self.value["kind"] == "List")
        else {
            return vec![self];
        };
        items
            .iter()
            .enumerate()
            .map(|(i, item)| {
                let prefix = format!("items[{i}]");
                let positions = self
                    .positions
                    .iter()
                    .filter_map(|(path, p)| {
                        let rest = path.strip_prefix(&prefix)?;
                        let rest = rest.strip_prefix('.').or(rest.is_empty().then_some(""))?;
                        Some((rest.to_owned(), *p))
                    })
                    .collect();
                Document {
                    number: self.number,
                    value: item.clone(),
                    line: self.positions.get(&prefix).map_or(self.line, |p| p.line),
                    positions,
                }
            })
            .collect()
    }

    /// Where the field at `path` (`spec.http[0].route`) is written; for a
    /// path that does not exist (a missing field), the nearest enclosing
    /// field that does.
    ///
    /// # Examples
    ///
    /// ```
    /// let docs = yaml_doc::load("kind: VirtualService\nspec:\n  http:\n  - route: []\n").unwrap();
    /// assert_eq!(docs[0].position("spec.http[0].route").unwrap().line, 4);
    /// assert_eq!(docs[0].position("spec.hosts").unwrap().line, 2); // missing: its parent, `spec`
    /// ```
    pub fn position(&self, path: &str) -> Option<Position> {
        let mut path = path;
        loop {
            if let Some(p) = self.positions.get(path) {
                return Some(*p);
            }
            let cut = path.rfind(['.', '['])?;
            path = &path[..cut];
        }
    }
}

/// A YAML stream that could not be read.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("{position}: {message}")]
pub struct YamlError {
    /// Where.
    pub position: Position,
    /// What is wrong.
    pub message: String,
}

/// Reads every document of a YAML stream; empty documents (only comments,
/// or a stray `---`) are skipped.
///
/// Aliases are expanded (with the parser's cap against alias bombs); keys
/// that are not scalars, duplicate keys and numbers JSON cannot hold are
/// refused.
///
/// # Errors
///
/// [`YamlError`] with the line and column of the first problem.
///
/// # Examples
///
/// ```
/// let docs = yaml_doc::load("a: 1\n---\n# nothing\n---\nb: [x, 'y']\n").unwrap();
/// assert_eq!(docs.len(), 2);
/// assert_eq!((docs[1].number, docs[1].line), (2, 5));
/// assert_eq!(docs[1].value["b"][1], "y");
///
/// let err = yaml_doc::load("a: 1\nb: [1, 2\n").unwrap_err();
/// assert_eq!(err.position.line, 2); // where the `[` that is never closed opens
/// assert!(err.message.starts_with("this `[` is never closed (the parser stopped at line 3"), "{}", err.message);
/// ```
pub fn load(text: &str) -> Result<Vec<Document>, YamlError> {
    let nodes = MarkedYaml::load_from_str(text).map_err(|e| {
        let stopped = Position {
            line: e.marker().line(),
            column: e.marker().col() + 1,
        };
        // The parser stops where it notices, often a line after the real
        // mistake: an unclosed `[` or `{` is reported where it opens.
        match unclosed_flow(text, e.marker().index()) {
            Some((bracket, opened)) => YamlError {
                position: opened,
                message: format!(
                    "this `{bracket}` is never closed (the parser stopped at line {}, column {}: {})",
                    stopped.line,
                    stopped.column,
                    e.info()
                ),
            },
            None => YamlError {
                position: stopped,
                message: e.info().to_owned(),
            },
        }
    })?;
    let mut documents = Vec::new();
    for node in &nodes {
        if matches!(node.data, YamlData::Value(Scalar::Null)) {
            continue;
        }
        let mut positions = BTreeMap::new();
        let value = to_json(node, String::new(), &mut positions)?;
        documents.push(Document {
            number: documents.len() + 1,
            value,
            line: node.span.start.line(),
            positions,
        });
    }
    Ok(documents)
}

/// The innermost `[` or `{` still open at character `end` of `text`, and
/// where it is: quoted scalars and comments are skipped.
fn unclosed_flow(text: &str, end: usize) -> Option<(char, Position)> {
    let mut open: Vec<(char, Position)> = Vec::new();
    let (mut line, mut column) = (1, 0);
    let mut quote: Option<char> = None;
    let mut comment = false;
    let mut previous = '\n';
    for c in text.chars().take(end) {
        column += 1;
        if c == '\n' {
            line += 1;
            column = 0;
            comment = false;
        } else if comment {
        } else if let Some(q) = quote {
            if c == q {
                quote = None;
            }
        } else {
            match c {
                '\'' | '"' => quote = Some(c),
                '#' if previous.is_whitespace() => comment = true,
                '[' | '{' => open.push((c, Position { line, column })),
                ']' | '}' => {
                    open.pop();
                }
                _ => {}
            }
        }
        previous = c;
    }
    open.pop()
}

fn position(node: &MarkedYaml<'_>) -> Position {
    Position {
        line: node.span.start.line(),
        column: node.span.start.col() + 1,
    }
}

fn to_json(
    node: &MarkedYaml<'_>,
    path: String,
    positions: &mut BTreeMap<String, Position>,
) -> Result<Value, YamlError> {
    let here = position(node);
    let fail = |message: String| YamlError {
        position: here,
        message,
    };
    let value = match &node.data {
        YamlData::Value(scalar) => scalar_to_json(scalar).map_err(fail)?,
        YamlData::Representation(text, _, _) => {
            scalar_to_json(&Scalar::parse_from_cow(text.clone())).map_err(fail)?
        }
        YamlData::Sequence(items) => {
            let mut out = Vec::with_capacity(items.len());
            for (i, item) in items.iter().enumerate() {
                out.push(to_json(item, format!("{path}[{i}]"), positions)?);
            }
            Value::Array(out)
        }
        YamlData::Mapping(entries) => {
            let mut out = Map::with_capacity(entries.len());
            for (key, item) in entries {
                let key_text = match &key.data {
                    YamlData::Value(Scalar::String(s)) => s.to_string(),
                    YamlData::Value(Scalar::Integer(i)) => i.to_string(),
                    YamlData::Value(Scalar::Boolean(b)) => b.to_string(),
                    _ => {
                        return Err(YamlError {
                            position: position(key),
                            message: "a mapping key must be a string".into(),
                        });
                    }
                };
                let child = if path.is_empty() {
                    key_text.clone()
                } else {
                    format!("{path}.{key_text}")
                };
                let value = to_json(item, child.clone(), positions)?;
                // A field is where its key is written: a block value starts a line later.
                positions.insert(child, position(key));
                out.insert(key_text, value);
            }
            Value::Object(out)
        }
        YamlData::Tagged(_, inner) => return to_json(inner, path, positions),
        YamlData::Alias(_) => {
            // The loader expands aliases; one left unresolved names no anchor.
            return Err(fail("an alias to an unknown anchor".into()));
        }
        YamlData::BadValue => return Err(fail("a value that does not fit its tag".into())),
    };
    positions.insert(path, here);
    Ok(value)
}

fn scalar_to_json(scalar: &Scalar<'_>) -> Result<Value, String> {
    Ok(match scalar {
        Scalar::Null => Value::Null,
        Scalar::Boolean(b) => Value::Bool(*b),
        Scalar::Integer(i) => Value::Number((*i).into()),
        Scalar::FloatingPoint(f) => Number::from_f64(f.into_inner())
            .map(Value::Number)
            .ok_or_else(|| format!("{} is not a finite number", f.into_inner()))?,
        Scalar::String(s) => Value::String(s.to_string()),
    })
}

/// Writes JSON values as one YAML stream, `---` between documents, keys in
/// the values' order.
///
/// # Examples
///
/// ```
/// use serde_json::json;
///
/// let text = yaml_doc::dump(&[json!({"kind": "WasmPlugin", "spec": {"url": "oci://r/f:1", "priority": 10}})]);
/// assert_eq!(text, "kind: WasmPlugin\nspec:\n  url: \"oci://r/f:1\"\n  priority: 10\n");
/// assert_eq!(yaml_doc::load(&text).unwrap()[0].value["spec"]["priority"], 10);
/// ```
pub fn dump(documents: &[Value]) -> String {
    let mut out = String::new();
    for (i, doc) in documents.iter().enumerate() {
        let mut text = String::new();
        let yaml = to_yaml(doc);
        // Writing to a String cannot fail; the emitter only fails on its writer.
        let _ = YamlEmitter::new(&mut text).dump(&yaml);
        let body = text.strip_prefix("---\n").unwrap_or(&text);
        if i > 0 {
            out.push_str("---\n");
        }
        out.push_str(body);
        if !out.ends_with('\n') {
            out.push('\n');
        }
    }
    out
}

fn to_yaml(value: &Value) -> Yaml<'static> {
    match value {
        Value::Null => Yaml::Value(Scalar::Null),
        Value::Bool(b) => Yaml::Value(Scalar::Boolean(*b)),
        Value::Number(n) => match n.as_i64() {
            Some(i) => Yaml::Value(Scalar::Integer(i)),
            None => Yaml::Value(Scalar::FloatingPoint(n.as_f64().unwrap_or_default().into())),
        },
        Value::String(s) => Yaml::Value(Scalar::String(s.clone().into())),
        Value::Array(items) => Yaml::Sequence(items.iter().map(to_yaml).collect()),
        Value::Object(map) => Yaml::Mapping(
            map.iter()
                .map(|(k, v)| (Yaml::Value(Scalar::String(k.clone().into())), to_yaml(v)))
                .collect(),
        ),
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    #[test]
    fn every_field_has_its_line() {
        let docs =
            load("# c\napiVersion: v1\nkind: X\nspec:\n  hosts:\n  - a\n  - \"b\"\n  n: 1.5\n")
                .unwrap();
        let doc = &docs[0];
        assert_eq!(doc.line, 2);
        assert_eq!(doc.position("spec.hosts[1]").unwrap().line, 7);
        assert_eq!(doc.position("spec.n").unwrap().line, 8);
        assert_eq!(doc.value["spec"]["n"], 1.5);
    }

    #[test]
    fn duplicate_keys_aliases_and_bad_keys_are_refused_with_a_line() {
        let dup = load("a: 1\nb: 2\na: 3\n").unwrap_err();
        assert_eq!(dup.position.line, 3, "{dup}");
        // Aliases are expanded by the parser, which caps them against "billion laughs".
        let alias = load("a: &x {k: 1}\nb: *x\n").unwrap();
        assert_eq!(alias[0].value["b"]["k"], 1);
        let key = load("? [a]\n: 1\n").unwrap_err();
        assert!(key.message.contains("key"), "{key}");
    }

    #[test]
    fn strings_that_look_like_other_types_survive_a_round_trip() {
        let value = json!({"s": ["*", "true", "1.0", "", "a: b", "- x", "outbound|9080|v1|r", "null", "#x"], "n": -3, "f": 0.25, "b": false});
        let back = load(&dump(std::slice::from_ref(&value))).unwrap();
        assert_eq!(back[0].value, value);
    }

    #[test]
    fn dump_separates_documents() {
        let text = dump(&[json!({"a": 1}), json!({"b": [1, 2]})]);
        let docs = load(&text).unwrap();
        assert_eq!(docs.len(), 2);
        assert_eq!(docs[1].value["b"][1], 2);
        assert_eq!(docs[1].number, 2);
    }
}
