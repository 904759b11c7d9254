//! The adversarial authorization suite, `tests/authz/cases.yaml`, read for
//! the tests that play it: sdk-host (`filters/header-match/tests/adversarial.rs`)
//! and a real Envoy (`tests/e2e/authz.rs`). Both include this file with
//! `#[path]`, so the two read the cases the same way.

// Each of the two tests uses its own part of this file.
#![allow(dead_code)]

use saphyr::{LoadableYamlNode, Scalar, Yaml};
use serde_json::{Map, Value};
use std::path::Path;

/// What must become of a request.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum Outcome {
    /// The upstream receives it.
    Reach,
    /// 403, never reaches.
    Deny,
    /// 400, never reaches.
    Reject,
}

impl Outcome {
    fn parse(text: &str) -> Outcome {
        match text {
            "reach" => Outcome::Reach,
            "deny" => Outcome::Deny,
            "reject" => Outcome::Reject,
            other => panic!("expect: {other:?} is not reach, deny or reject"),
        }
    }

    /// The status the client gets (200 from the upstream when it reaches).
    pub(crate) fn status(self) -> u16 {
        match self {
            Outcome::Reach => 200,
            Outcome::Deny => 403,
            Outcome::Reject => 400,
        }
    }

    /// Whether the upstream receives the request.
    pub(crate) fn reaches(self) -> bool {
        self == Outcome::Reach
    }
}

/// One request and its expected outcome.
#[derive(Debug, Clone)]
pub(crate) struct Case {
    /// `set/name`, unique in the suite.
    pub(crate) name: String,
    /// The method, as sent.
    pub(crate) method: String,
    /// The request target, as sent.
    pub(crate) target: String,
    /// Header lines as sent, split at the first `:` (value untrimmed).
    pub(crate) headers: Vec<(String, String)>,
    /// What the filter must do.
    pub(crate) expect: Outcome,
    /// Whether Envoy's HTTP/1 codec answers 400 itself, before any filter.
    pub(crate) envoy_codec_rejects: bool,
    /// What a backend would serve, in one line.
    pub(crate) why: String,
}

/// A configuration of the filter and the cases played against it.
#[derive(Debug, Clone)]
pub(crate) struct Set {
    /// The set's name.
    pub(crate) name: String,
    /// The filter's configuration.
    pub(crate) policy: Value,
    /// Its cases.
    pub(crate) cases: Vec<Case>,
}

/// Reads `tests/authz/cases.yaml` from the workspace root.
pub(crate) fn load(workspace: &Path) -> Vec<Set> {
    let path = workspace.join("tests/authz/cases.yaml");
    let text = std::fs::read_to_string(&path)
        .unwrap_or_else(|e| panic!("reading {}: {e}", path.display()));
    let docs = Yaml::load_from_str(&text).unwrap_or_else(|e| panic!("{}: {e}", path.display()));
    let root = to_json(&docs[0]);
    let sets: Vec<Set> = root["sets"]
        .as_array()
        .expect("sets: a list")
        .iter()
        .map(read_set)
        .collect();
    let mut names: Vec<&str> = sets
        .iter()
        .flat_map(|s| &s.cases)
        .map(|c| c.name.as_str())
        .collect();
    let count = names.len();
    names.sort_unstable();
    names.dedup();
    assert_eq!(names.len(), count, "case names must be unique");
    sets
}

fn read_set(set: &Value) -> Set {
    let name = text(set, "name").expect("a set has a name");
    let cases = set["cases"]
        .as_array()
        .unwrap_or_else(|| panic!("{name}: cases: a list"))
        .iter()
        .map(|c| read_case(&name, c))
        .collect();
    Set {
        policy: set["policy"].clone(),
        name,
        cases,
    }
}

fn read_case(set: &str, case: &Value) -> Case {
    let name = format!("{set}/{}", text(case, "name").expect("a case has a name"));
    let lines: Vec<String> = match case.get("headers") {
        Some(list) => list
            .as_array()
            .unwrap_or_else(|| panic!("{name}: headers: a list"))
            .iter()
            .map(|h| h.as_str().expect("a header line").to_owned())
            .collect(),
        None => vec!["Host: shop.example.com".to_owned()],
    };
    let headers = lines
        .iter()
        .map(|line| {
            let (n, v) = line
                .split_once(':')
                .unwrap_or_else(|| panic!("{name}: {line:?} has no ':'"));
            (n.to_owned(), v.to_owned())
        })
        .collect();
    let envoy = text(case, "envoy");
    assert!(
        envoy.as_deref().is_none_or(|e| e == "reject"),
        "{name}: envoy: only `reject`"
    );
    Case {
        method: text(case, "method").unwrap_or_else(|| "GET".to_owned()),
        target: text(case, "target").unwrap_or_else(|| panic!("{name}: no target")),
        headers,
        expect: Outcome::parse(&text(case, "expect").unwrap_or_default()),
        envoy_codec_rejects: envoy.is_some(),
        why: text(case, "why").unwrap_or_else(|| panic!("{name}: no why")),
        name,
    }
}

fn text(value: &Value, key: &str) -> Option<String> {
    value.get(key).and_then(Value::as_str).map(str::to_owned)
}

fn to_json(node: &Yaml<'_>) -> Value {
    match node {
        Yaml::Value(scalar) => scalar_to_json(scalar),
        Yaml::Representation(text, _, _) => scalar_to_json(&Scalar::parse_from_cow(text.clone())),
        Yaml::Sequence(items) => Value::Array(items.iter().map(to_json).collect()),
        Yaml::Mapping(entries) => Value::Object(
            entries
                .iter()
                .map(|(k, v)| {
                    let key = match to_json(k) {
                        Value::String(s) => s,
                        other => other.to_string(),
                    };
                    (key, to_json(v))
                })
                .collect::<Map<_, _>>(),
        ),
        Yaml::Tagged(_, inner) => to_json(inner),
        other => panic!("unsupported YAML node {other:?}"),
    }
}

fn scalar_to_json(scalar: &Scalar<'_>) -> Value {
    match scalar {
        Scalar::Null => Value::Null,
        Scalar::Boolean(b) => Value::Bool(*b),
        Scalar::Integer(i) => Value::from(*i),
        Scalar::FloatingPoint(f) => Value::from(f.into_inner()),
        Scalar::String(s) => Value::String(s.to_string()),
    }
}

impl Case {
    /// The request as bytes on the wire: request line, header lines, blank line.
    pub(crate) fn wire(&self) -> Vec<u8> {
        let mut out = format!("{} {} HTTP/1.1\r\n", self.method, self.target);
        for (name, value) in &self.headers {
            out.push_str(&format!("{name}:{value}\r\n"));
        }
        out.push_str("Connection: close\r\n\r\n");
        out.into_bytes()
    }

    /// The header map Envoy's HTTP/1 codec makes of the request: `:method`;
    /// an absolute-form target gives `:authority` (replacing `Host`) and
    /// `:path`; several `Host` headers become one `:authority` joined with
    /// `,`, as Envoy joins them. Other names and every value are left as
    /// sent (Envoy lowercases and trims them; the filter must not rely on it).
    pub(crate) fn envoy_headers(&self) -> Vec<(String, String)> {
        let mut path = self.target.clone();
        let mut authority: Option<String> = None;
        let lower = self.target.to_ascii_lowercase();
        for scheme in ["http://", "https://"] {
            if lower.starts_with(scheme) {
                let rest = &self.target[scheme.len()..];
                let end = rest.find(['/', '?']).unwrap_or(rest.len());
                authority = Some(rest[..end].to_owned());
                path = match &rest[end..] {
                    "" => "/".to_owned(),
                    p if p.starts_with('?') => format!("/{p}"),
                    p => p.to_owned(),
                };
            }
        }
        let hosts: Vec<&str> = self
            .headers
            .iter()
            .filter(|(n, _)| n.eq_ignore_ascii_case("host"))
            .map(|(_, v)| v.trim())
            .collect();
        let authority = authority.unwrap_or_else(|| hosts.join(","));
        let mut map = vec![
            (":method".to_owned(), self.method.clone()),
            (":path".to_owned(), path),
            (":authority".to_owned(), authority),
            (":scheme".to_owned(), "http".to_owned()),
        ];
        map.extend(
            self.headers
                .iter()
                .filter(|(n, _)| !n.eq_ignore_ascii_case("host"))
                .cloned(),
        );
        map
    }

    /// The answer expected from Envoy: the codec's 400, else the filter's.
    pub(crate) fn envoy_expect(&self) -> Outcome {
        if self.envoy_codec_rejects {
            Outcome::Reject
        } else {
            self.expect
        }
    }
}
