//! The attribute expressions of Istio's Telemetry API (`tagOverrides`
//! values, `accessLogging[].filter.expression`): the part of CEL that
//! these fields use, compiled once and evaluated per request.
//!
//! Supported: attribute paths (`request.host`, `xds.cluster_name`,
//! `filter_state['wasm.upstream_peer']`), request and response headers
//! (`request.headers['x-tenant']`), the exchanged peers
//! (`downstream_peer.app`, `upstream_peer.labels['team']`), string and
//! integer literals, `duration('1s')`, `has(...)`, `string(...)`, `+` on
//! strings, `==`, `!=`, `<`, `<=`, `>`, `>=`, `!`, `&&`, `||`, `? :` and
//! parentheses. Anything else is refused when the configuration is
//! loaded, with the position of what was not understood.

use crate::duration::parse_duration;
use crate::telemetry::workload::Workload;

/// A value an expression produces.
#[derive(Debug, Clone, PartialEq)]
pub enum Value {
    /// A string.
    Str(String),
    /// An integer.
    Int(i64),
    /// A boolean.
    Bool(bool),
    /// A duration, in nanoseconds.
    Duration(i64),
    /// An attribute the host does not have.
    Missing,
}

impl Value {
    /// The value as a label: `unknown` when missing.
    pub fn to_label(&self) -> String {
        match self {
            Value::Str(s) => s.clone(),
            Value::Int(n) => n.to_string(),
            Value::Bool(b) => b.to_string(),
            Value::Duration(nanos) => format!("{}ms", nanos / 1_000_000),
            Value::Missing => super::labels::UNKNOWN.to_owned(),
        }
    }

    fn truthy(&self) -> bool {
        matches!(self, Value::Bool(true))
    }
}

/// Which exchanged peer a path names.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum PeerSide {
    /// `downstream_peer`: the client.
    Downstream,
    /// `upstream_peer`: the server.
    Upstream,
}

/// How a property's bytes are read.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Kind {
    Str,
    Int,
    Bool,
    Duration,
}

/// An attribute an expression reads.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Attribute {
    /// A request header, by lower-case name.
    RequestHeader(String),
    /// A response header, by lower-case name.
    ResponseHeader(String),
    /// A field of an exchanged peer (`app`, `labels.team`...).
    Peer(PeerSide, String),
    /// A property of the host, by path.
    Property(Vec<String>),
}

/// Where an expression gets the attributes it reads.
pub trait Attributes {
    /// A request header's value.
    fn request_header(&mut self, name: &str) -> Option<String>;
    /// A response header's value.
    fn response_header(&mut self, name: &str) -> Option<String>;
    /// A peer's workload.
    fn peer(&mut self, side: PeerSide) -> Option<&Workload>;
    /// A property's bytes.
    fn property(&mut self, path: &[String]) -> Option<Vec<u8>>;
}

/// A compiled expression.
///
/// # Examples
///
/// ```
/// use meshwasm_core::telemetry::expr::{Attributes, Expr, PeerSide, Value};
/// use meshwasm_core::telemetry::workload::Workload;
///
/// struct Request;
/// impl Attributes for Request {
///     fn request_header(&mut self, name: &str) -> Option<String> {
///         (name == "x-tenant").then(|| "acme".to_owned())
///     }
///     fn response_header(&mut self, _: &str) -> Option<String> { None }
///     fn peer(&mut self, _: PeerSide) -> Option<&Workload> { None }
///     fn property(&mut self, path: &[String]) -> Option<Vec<u8>> {
///         (path == ["response", "code"]).then(|| 503i64.to_le_bytes().to_vec())
///     }
/// }
///
/// let tenant = Expr::parse("request.headers['x-tenant']").unwrap();
/// assert_eq!(tenant.eval(&mut Request), Value::Str("acme".into()));
/// let errors = Expr::parse("response.code >= 500 && !has(request.headers['x-canary'])").unwrap();
/// assert!(errors.matches(&mut Request));
/// assert_eq!(Expr::parse("upstream_peer.app").unwrap().eval(&mut Request).to_label(), "unknown");
/// assert_eq!(
///     Expr::parse("request.headers[").unwrap_err(),
///     "expected a string or integer at character 17"
/// );
/// ```
#[derive(Debug, Clone, PartialEq)]
pub enum Expr {
    /// A literal.
    Literal(Value),
    /// An attribute.
    Attr(Attribute),
    /// `has(attribute)`.
    Has(Attribute),
    /// `string(x)`.
    ToString(Box<Expr>),
    /// `!x`.
    Not(Box<Expr>),
    /// `a && b`.
    And(Box<Expr>, Box<Expr>),
    /// `a || b`.
    Or(Box<Expr>, Box<Expr>),
    /// `a + b` on strings or integers.
    Add(Box<Expr>, Box<Expr>),
    /// A comparison.
    Cmp(Cmp, Box<Expr>, Box<Expr>),
    /// `c ? a : b`.
    Cond(Box<Expr>, Box<Expr>, Box<Expr>),
}

/// A comparison operator.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Cmp {
    /// `==`
    Eq,
    /// `!=`
    Ne,
    /// `<`
    Lt,
    /// `<=`
    Le,
    /// `>`
    Gt,
    /// `>=`
    Ge,
}

impl Expr {
    /// Compiles `source`.
    ///
    /// # Errors
    ///
    /// What was not understood, and at which character (1-based).
    pub fn parse(source: &str) -> Result<Expr, String> {
        let tokens = tokenize(source)?;
        let mut parser = Parser {
            tokens,
            at: 0,
            end: source.chars().count() + 1,
        };
        let expr = parser.conditional(0)?;
        match parser.peek() {
            None => Ok(expr),
            Some((_, at)) => Err(format!("unexpected text at character {at}")),
        }
    }

    /// The attributes the expression reads.
    pub fn attributes(&self) -> Vec<&Attribute> {
        let mut out = Vec::new();
        self.collect(&mut out);
        out
    }

    fn collect<'a>(&'a self, out: &mut Vec<&'a Attribute>) {
        match self {
            Expr::Literal(_) => {}
            Expr::Attr(a) | Expr::Has(a) => out.push(a),
            Expr::ToString(e) | Expr::Not(e) => e.collect(out),
            Expr::And(a, b) | Expr::Or(a, b) | Expr::Add(a, b) | Expr::Cmp(_, a, b) => {
                a.collect(out);
                b.collect(out);
            }
            Expr::Cond(c, a, b) => {
                c.collect(out);
                a.collect(out);
                b.collect(out);
            }
        }
    }

    /// Evaluates the expression; what cannot be evaluated is [`Value::Missing`].
    pub fn eval(&self, attrs: &mut dyn Attributes) -> Value {
        match self {
            Expr::Literal(v) => v.clone(),
            Expr::Attr(a) => read(a, attrs),
            Expr::Has(a) => Value::Bool(read(a, attrs) != Value::Missing),
            Expr::ToString(e) => match e.eval(attrs) {
                Value::Missing => Value::Missing,
                v => Value::Str(v.to_label()),
            },
            Expr::Not(e) => match e.eval(attrs) {
                Value::Bool(b) => Value::Bool(!b),
                _ => Value::Missing,
            },
            Expr::And(a, b) => Value::Bool(a.eval(attrs).truthy() && b.eval(attrs).truthy()),
            Expr::Or(a, b) => Value::Bool(a.eval(attrs).truthy() || b.eval(attrs).truthy()),
            Expr::Add(a, b) => match (a.eval(attrs), b.eval(attrs)) {
                (Value::Str(x), Value::Str(y)) => Value::Str(x + &y),
                (Value::Int(x), Value::Int(y)) => {
                    x.checked_add(y).map_or(Value::Missing, Value::Int)
                }
                _ => Value::Missing,
            },
            Expr::Cmp(op, a, b) => compare(*op, &a.eval(attrs), &b.eval(attrs)),
            Expr::Cond(c, a, b) => {
                if c.eval(attrs).truthy() {
                    a.eval(attrs)
                } else {
                    b.eval(attrs)
                }
            }
        }
    }

    /// Evaluates the expression as a condition: true only for `true`.
    pub fn matches(&self, attrs: &mut dyn Attributes) -> bool {
        self.eval(attrs).truthy()
    }
}

fn compare(op: Cmp, a: &Value, b: &Value) -> Value {
    use std::cmp::Ordering;
    let order: Option<Ordering> = match (a, b) {
        (Value::Str(x), Value::Str(y)) => Some(x.cmp(y)),
        (Value::Int(x), Value::Int(y)) | (Value::Duration(x), Value::Duration(y)) => Some(x.cmp(y)),
        (Value::Bool(x), Value::Bool(y)) => Some(x.cmp(y)),
        _ => None,
    };
    let Some(order) = order else {
        // A missing attribute equals nothing: `!=` holds, the rest do not.
        return Value::Bool(op == Cmp::Ne);
    };
    Value::Bool(match op {
        Cmp::Eq => order == Ordering::Equal,
        Cmp::Ne => order != Ordering::Equal,
        Cmp::Lt => order == Ordering::Less,
        Cmp::Le => order != Ordering::Greater,
        Cmp::Gt => order == Ordering::Greater,
        Cmp::Ge => order != Ordering::Less,
    })
}

fn read(attribute: &Attribute, attrs: &mut dyn Attributes) -> Value {
    let text = |s: Option<String>| s.map_or(Value::Missing, Value::Str);
    match attribute {
        Attribute::RequestHeader(name) => text(attrs.request_header(name)),
        Attribute::ResponseHeader(name) => text(attrs.response_header(name)),
        Attribute::Peer(side, field) => text(attrs.peer(*side).and_then(|w| peer_field(w, field))),
        Attribute::Property(path) => {
            let Some(bytes) = attrs.property(path) else {
                return Value::Missing;
            };
            let int = || {
                <[u8; 8]>::try_from(bytes.as_slice())
                    .ok()
                    .map(i64::from_le_bytes)
            };
            match kind_of(path) {
                Kind::Str => Value::Str(String::from_utf8_lossy(&bytes).into_owned()),
                Kind::Int => int().map_or(Value::Missing, Value::Int),
                Kind::Duration => int().map_or(Value::Missing, Value::Duration),
                Kind::Bool => match bytes.as_slice() {
                    [b] => Value::Bool(*b != 0),
                    _ => Value::Missing,
                },
            }
        }
    }
}

/// A peer's field as Istio's peer object names them.
fn peer_field(w: &Workload, field: &str) -> Option<String> {
    let value = match field {
        "name" => w.name.as_str(),
        "namespace" => w.namespace.as_str(),
        "workload" => w.workload.as_str(),
        "cluster" => w.cluster.as_str(),
        "app" => w.app()?,
        "version" => w.version()?,
        "service" => w.canonical_service(),
        "revision" => w.canonical_revision(),
        other => w.label(other.strip_prefix("labels.")?)?,
    };
    (!value.is_empty()).then(|| value.to_owned())
}

/// The types of Envoy's typed attributes; the rest are strings.
fn kind_of(path: &[String]) -> Kind {
    let path: Vec<&str> = path.iter().map(String::as_str).collect();
    match path.as_slice() {
        ["request", "duration"] => Kind::Duration,
        ["connection", "mtls"] => Kind::Bool,
        [
            "response",
            "code" | "grpc_status" | "size" | "total_size" | "flags",
        ]
        | ["request", "size" | "total_size" | "time"]
        | ["source" | "destination" | "upstream", "port"]
        | ["connection", "id"]
        | ["xds", "listener_direction"] => Kind::Int,
        _ => Kind::Str,
    }
}

/// The attribute roots Envoy 1.40 serves, and the peers.
const ROOTS: [&str; 13] = [
    "request",
    "response",
    "source",
    "destination",
    "connection",
    "upstream",
    "xds",
    "filter_state",
    "plugin_name",
    "plugin_root_id",
    "plugin_vm_id",
    "upstream_peer",
    "downstream_peer",
];

#[derive(Debug, Clone, PartialEq)]
enum Token {
    Ident(String),
    Str(String),
    Int(i64),
    Sym(&'static str),
}

fn tokenize(source: &str) -> Result<Vec<(Token, usize)>, String> {
    const SYMBOLS: [&str; 17] = [
        "&&", "||", "==", "!=", "<=", ">=", "<", ">", "!", "(", ")", "[", "]", ".", "?", ":", "+",
    ];
    let chars: Vec<char> = source.chars().collect();
    let mut tokens = Vec::new();
    let mut i = 0;
    while i < chars.len() {
        let c = chars[i];
        let at = i + 1;
        if c.is_whitespace() {
            i += 1;
        } else if c == '\'' || c == '"' {
            let end = chars[i + 1..]
                .iter()
                .position(|d| *d == c)
                .ok_or_else(|| format!("unterminated string at character {at}"))?;
            tokens.push((Token::Str(chars[i + 1..i + 1 + end].iter().collect()), at));
            i += end + 2;
        } else if c.is_ascii_digit() {
            let len = chars[i..].iter().take_while(|d| d.is_ascii_digit()).count();
            let digits: String = chars[i..i + len].iter().collect();
            let n = digits
                .parse()
                .map_err(|_| format!("integer too large at character {at}"))?;
            tokens.push((Token::Int(n), at));
            i += len;
        } else if c.is_ascii_alphabetic() || c == '_' {
            let len = chars[i..]
                .iter()
                .take_while(|d| d.is_ascii_alphanumeric() || **d == '_')
                .count();
            tokens.push((Token::Ident(chars[i..i + len].iter().collect()), at));
            i += len;
        } else {
            let rest: String = chars[i..chars.len().min(i + 2)].iter().collect();
            let sym = SYMBOLS
                .iter()
                .find(|s| rest.starts_with(**s))
                .ok_or_else(|| format!("unexpected {c:?} at character {at}"))?;
            tokens.push((Token::Sym(sym), at));
            i += sym.len();
        }
    }
    Ok(tokens)
}

struct Parser {
    tokens: Vec<(Token, usize)>,
    at: usize,
    end: usize,
}

/// Deeper nesting is refused, so that a configuration cannot overflow the stack.
const MAX_NESTING: u32 = 32;

impl Parser {
    fn peek(&self) -> Option<(&Token, usize)> {
        self.tokens.get(self.at).map(|(t, at)| (t, *at))
    }

    fn position(&self) -> usize {
        self.peek().map_or(self.end, |(_, at)| at)
    }

    fn eat(&mut self, sym: &str) -> bool {
        if matches!(self.peek(), Some((Token::Sym(s), _)) if *s == sym) {
            self.at += 1;
            true
        } else {
            false
        }
    }

    fn expect(&mut self, sym: &str) -> Result<(), String> {
        if self.eat(sym) {
            Ok(())
        } else {
            Err(format!("expected `{sym}` at character {}", self.position()))
        }
    }

    fn conditional(&mut self, depth: u32) -> Result<Expr, String> {
        if depth > MAX_NESTING {
            return Err(format!(
                "nested too deeply at character {}",
                self.position()
            ));
        }
        let cond = self.or(depth)?;
        if !self.eat("?") {
            return Ok(cond);
        }
        let yes = self.conditional(depth + 1)?;
        self.expect(":")?;
        let no = self.conditional(depth + 1)?;
        Ok(Expr::Cond(Box::new(cond), Box::new(yes), Box::new(no)))
    }

    fn or(&mut self, depth: u32) -> Result<Expr, String> {
        let mut left = self.and(depth)?;
        while self.eat("||") {
            left = Expr::Or(Box::new(left), Box::new(self.and(depth)?));
        }
        Ok(left)
    }

    fn and(&mut self, depth: u32) -> Result<Expr, String> {
        let mut left = self.comparison(depth)?;
        while self.eat("&&") {
            left = Expr::And(Box::new(left), Box::new(self.comparison(depth)?));
        }
        Ok(left)
    }

    fn comparison(&mut self, depth: u32) -> Result<Expr, String> {
        let left = self.sum(depth)?;
        let ops = [
            ("==", Cmp::Eq),
            ("!=", Cmp::Ne),
            ("<=", Cmp::Le),
            (">=", Cmp::Ge),
            ("<", Cmp::Lt),
            (">", Cmp::Gt),
        ];
        for (sym, op) in ops {
            if self.eat(sym) {
                let right = self.sum(depth)?;
                return Ok(Expr::Cmp(op, Box::new(left), Box::new(right)));
            }
        }
        Ok(left)
    }

    fn sum(&mut self, depth: u32) -> Result<Expr, String> {
        let mut left = self.unary(depth)?;
        while self.eat("+") {
            left = Expr::Add(Box::new(left), Box::new(self.unary(depth)?));
        }
        Ok(left)
    }

    fn unary(&mut self, depth: u32) -> Result<Expr, String> {
        if depth > MAX_NESTING {
            return Err(format!(
                "nested too deeply at character {}",
                self.position()
            ));
        }
        if self.eat("!") {
            return Ok(Expr::Not(Box::new(self.unary(depth + 1)?)));
        }
        self.primary(depth)
    }

    fn primary(&mut self, depth: u32) -> Result<Expr, String> {
        let at = self.position();
        let Some((token, _)) = self.peek() else {
            return Err(format!("expected a value at character {at}"));
        };
        let token = token.clone();
        self.at += 1;
        match token {
            Token::Str(s) => Ok(Expr::Literal(Value::Str(s))),
            Token::Int(n) => Ok(Expr::Literal(Value::Int(n))),
            Token::Sym("(") => {
                let inner = self.conditional(depth + 1)?;
                self.expect(")")?;
                Ok(inner)
            }
            Token::Ident(name) if name == "true" || name == "false" => {
                Ok(Expr::Literal(Value::Bool(name == "true")))
            }
            Token::Ident(name) if matches!(self.peek(), Some((Token::Sym("("), _))) => {
                self.at += 1;
                let expr = match name.as_str() {
                    "has" => Expr::Has(self.attribute(None)?),
                    "string" => Expr::ToString(Box::new(self.conditional(depth + 1)?)),
                    "duration" => {
                        let Some((Token::Str(text), at)) = self.peek() else {
                            return Err(format!(
                                "expected a duration string at character {}",
                                self.position()
                            ));
                        };
                        let nanos = parse_duration(text)
                            .ok()
                            .and_then(|d| i64::try_from(d.as_nanos()).ok())
                            .ok_or_else(|| format!("invalid duration at character {at}"))?;
                        self.at += 1;
                        Expr::Literal(Value::Duration(nanos))
                    }
                    other => {
                        return Err(format!(
                            "function `{other}` at character {at} is not supported (has, string and duration are)"
                        ));
                    }
                };
                self.expect(")")?;
                Ok(expr)
            }
            Token::Ident(name) => Ok(Expr::Attr(self.attribute(Some((name, at)))?)),
            _ => Err(format!("expected a value at character {at}")),
        }
    }

    /// An attribute path; `first` is its first segment when already read.
    fn attribute(&mut self, first: Option<(String, usize)>) -> Result<Attribute, String> {
        let (root, at) = match first {
            Some(first) => first,
            None => match self.peek() {
                Some((Token::Ident(name), at)) => {
                    let name = name.clone();
                    self.at += 1;
                    (name, at)
                }
                _ => {
                    return Err(format!(
                        "expected an attribute at character {}",
                        self.position()
                    ));
                }
            },
        };
        if !ROOTS.contains(&root.as_str()) {
            let hint = if root == "node" {
                " (node metadata is xds.node.metadata in Envoy)"
            } else {
                ""
            };
            return Err(format!(
                "unknown attribute `{root}` at character {at}{hint}; known: {}",
                ROOTS.join(", ")
            ));
        }
        let mut path = vec![root];
        loop {
            if self.eat(".") {
                match self.peek() {
                    Some((Token::Ident(name), _)) => {
                        path.push(name.clone());
                        self.at += 1;
                    }
                    _ => {
                        return Err(format!("expected a name at character {}", self.position()));
                    }
                }
            } else if self.eat("[") {
                match self.peek() {
                    Some((Token::Str(key), _)) => path.push(key.clone()),
                    Some((Token::Int(n), _)) => path.push(n.to_string()),
                    _ => {
                        return Err(format!(
                            "expected a string or integer at character {}",
                            self.position()
                        ));
                    }
                }
                self.at += 1;
                self.expect("]")?;
            } else {
                break;
            }
        }
        let segments: Vec<&str> = path.iter().map(String::as_str).collect();
        Ok(match segments.as_slice() {
            ["request", "headers", name] => Attribute::RequestHeader(name.to_ascii_lowercase()),
            ["response", "headers", name] => Attribute::ResponseHeader(name.to_ascii_lowercase()),
            ["request" | "response", "headers" | "trailers", ..] => {
                return Err(format!(
                    "`{}` at character {at}: name one header, as request.headers['x-name']",
                    path.join(".")
                ));
            }
            [side @ ("upstream_peer" | "downstream_peer"), field @ ..] if !field.is_empty() => {
                let side = if *side == "upstream_peer" {
                    PeerSide::Upstream
                } else {
                    PeerSide::Downstream
                };
                Attribute::Peer(side, field.join("."))
            }
            [_] if !["plugin_name", "plugin_root_id", "plugin_vm_id"].contains(&segments[0]) => {
                return Err(format!(
                    "`{}` at character {at} names no attribute; add a field, as request.host",
                    segments[0]
                ));
            }
            _ => Attribute::Property(path),
        })
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    struct Fixed;
    impl Attributes for Fixed {
        fn request_header(&mut self, name: &str) -> Option<String> {
            (name == "user-agent").then(|| "curl".to_owned())
        }
        fn response_header(&mut self, _: &str) -> Option<String> {
            None
        }
        fn peer(&mut self, _: PeerSide) -> Option<&Workload> {
            None
        }
        fn property(&mut self, path: &[String]) -> Option<Vec<u8>> {
            match path.join(".").as_str() {
                "request.duration" => Some(2_000_000_000i64.to_le_bytes().to_vec()),
                "request.host" => Some(b"ratings:9080".to_vec()),
                _ => None,
            }
        }
    }

    fn eval(source: &str) -> Value {
        Expr::parse(source).unwrap().eval(&mut Fixed)
    }

    #[test]
    fn istio_examples_evaluate() {
        assert_eq!(eval("request.host"), Value::Str("ratings:9080".into()));
        assert_eq!(eval("request.duration > duration('1s')"), Value::Bool(true));
        assert_eq!(
            eval("request.headers['User-Agent'] == 'curl'"),
            Value::Bool(true)
        );
        assert_eq!(eval("has(request.headers['x-b3'])"), Value::Bool(false));
        assert_eq!(eval("'a' + 'b'"), Value::Str("ab".into()));
        assert_eq!(
            eval("has(request.headers['x-t']) ? request.headers['x-t'] : 'none'"),
            Value::Str("none".into())
        );
        assert_eq!(eval("response.code != 200"), Value::Bool(true));
        assert_eq!(eval("response.code >= 400"), Value::Bool(false));
        assert_eq!(
            eval("string(request.duration)"),
            Value::Str("2000ms".into())
        );
    }

    #[test]
    fn what_is_not_understood_is_refused_with_its_place() {
        for (source, error) in [
            (
                "node.metadata['X']",
                "unknown attribute `node` at character 1 (node metadata",
            ),
            (
                "request.headers",
                "`request.headers` at character 1: name one header",
            ),
            (
                "size(request.path)",
                "function `size` at character 1 is not supported",
            ),
            ("response.code >", "expected a value at character 16"),
            ("'abc", "unterminated string at character 1"),
            ("request.host # x", "unexpected '#' at character 14"),
            ("request", "`request` at character 1 names no attribute"),
        ] {
            let got = Expr::parse(source).unwrap_err();
            assert!(got.starts_with(error), "{source}: {got}");
        }
        let deep = format!("{}1{}", "(".repeat(100), ")".repeat(100));
        assert!(
            Expr::parse(&deep)
                .unwrap_err()
                .starts_with("nested too deeply")
        );
    }
}
