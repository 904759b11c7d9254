//! Properties the fuzz targets check, as plain functions: libFuzzer calls
//! them from `fuzz_targets/`, and `tests/corpus.rs` replays every input of
//! `corpus/` through them in the test command.
//!
//! A property panics when it fails, which is what libFuzzer reports.

// Failing loudly is what a property is for.
#![allow(clippy::unwrap_used, clippy::expect_used, clippy::panic)]

use meshwasm_core::authz::path::{Normalization, normalize};
use meshwasm_core::authz::{AuthzPlan, Peer, Verdict};
use meshwasm_core::plan::Plan;
use meshwasm_core::request::StaticRequest;
use std::sync::OnceLock;

const MODES: [Normalization; 4] = [
    Normalization::None,
    Normalization::Base,
    Normalization::MergeSlashes,
    Normalization::DecodeAndMergeSlashes,
];

/// The policies every input is matched against: DENY and ALLOW with paths,
/// templates, hosts, methods and header conditions.
fn plans() -> &'static [AuthzPlan] {
    static PLANS: OnceLock<Vec<AuthzPlan>> = OnceLock::new();
    PLANS.get_or_init(|| {
        [
            r#"{"action": "DENY", "rules": [{"to": [{"operation": {"paths": ["/admin", "/admin/*", "*.bak"]}}]}]}"#,
            r#"{"policies": [{"action": "ALLOW", "rules": [{"to": [{"operation": {"methods": ["GET"], "paths": ["/public/*", "/api/{*}/items", "/debug/{**}"]}}]}]}]}"#,
            r#"{"action": "DENY", "rules": [{"to": [{"operation": {"hosts": ["admin.example.com", "*.internal"], "notPorts": ["8443"]}}],
                "when": [{"key": "request.headers[x-user]", "values": ["mallory"]}]}]}"#,
            r#"{"policies": [{"action": "ALLOW", "rules": [{"when": [{"key": "request.headers[x-role]", "notValues": ["guest", "*bot"]}]}]}],
                "headerRules": [{"match": [{"headers": {"user-agent": {"regex": ".*(Mobile|Android).*"}}}], "request": {"set": {"x-client-class": "mobile"}}}]}"#,
        ]
        .iter()
        .map(|json| AuthzPlan::from_json(json.as_bytes()).expect("the fuzz policies are valid"))
        .collect()
    })
}

/// A header line `name:value`; a pseudo-header's name starts with `:`.
fn header(line: &[u8]) -> (&[u8], &[u8]) {
    let from = usize::from(line.first() == Some(&b':'));
    match line[from..].iter().position(|b| *b == b':') {
        Some(at) => (&line[..from + at], &line[from + at + 1..]),
        None => (line, b""),
    }
}

/// Normalization is idempotent in every mode, and the matcher decides any
/// request, of any bytes, without panicking.
///
/// The input is a request: `:path`, then header lines `name:value`
/// separated by `\n` (names may repeat), from arbitrary bytes.
pub fn authz(data: &[u8]) {
    let mut lines = data.split(|b| *b == b'\n');
    let target = lines.next().unwrap_or_default();
    let text = String::from_utf8_lossy(target);
    for mode in MODES {
        if let Ok(once) = normalize(&text, mode) {
            assert_eq!(
                normalize(&once, mode).as_deref(),
                Ok(once.as_str()),
                "{mode:?}: normalizing {text:?} twice changed it"
            );
        }
    }
    let mut headers: Vec<(&[u8], &[u8])> = vec![(b":method", b"GET"), (b":path", target)];
    headers.extend(lines.map(header));
    for plan in plans() {
        let Ok(req) = plan.read(headers.iter().copied(), Peer::default()) else {
            continue;
        };
        let decision = plan.decide(&req, &mut StaticRequest::get(&text));
        if let Verdict::Deny { details } = &decision.verdict {
            assert!(
                details.starts_with("rbac_access_denied_matched_policy["),
                "{details}"
            );
        }
    }
}

/// The telemetry filter's parsers on arbitrary bytes: a Telemetry spec, an
/// attribute expression, a peer's metadata header and `Struct`, a gRPC
/// body. None panics; a refused spec names where; a workload survives its
/// own exchange; gRPC messages count the same however the body is cut.
pub fn telemetry(data: &[u8]) {
    use meshwasm_core::telemetry::TelemetryPlan;
    use meshwasm_core::telemetry::expr::{Attributes, Expr, PeerSide};
    use meshwasm_core::telemetry::grpc::MessageCounter;
    use meshwasm_core::telemetry::peer::{Exchange, decode};
    use meshwasm_core::telemetry::proto::decode_struct;
    use meshwasm_core::telemetry::workload::Workload;

    if let Err(e) = TelemetryPlan::from_json(data) {
        let shown = e.to_string();
        assert!(
            shown.starts_with(&e.path) || shown.starts_with("configuration:"),
            "{shown}"
        );
    }
    let text = String::from_utf8_lossy(data);
    struct Fixed;
    impl Attributes for Fixed {
        fn request_header(&mut self, name: &str) -> Option<String> {
            Some(name.repeat(2))
        }
        fn response_header(&mut self, _: &str) -> Option<String> {
            None
        }
        fn peer(&mut self, _: PeerSide) -> Option<&Workload> {
            None
        }
        fn property(&mut self, path: &[String]) -> Option<Vec<u8>> {
            (path.len() == 2).then(|| 200i64.to_le_bytes().to_vec())
        }
    }
    if let Ok(expr) = Expr::parse(&text) {
        let _ = expr.eval(&mut Fixed).to_label();
    }
    let _ = decode(&text);
    let _ = decode_struct(data);
    // A workload made of the input's lines comes back from the exchange as sent.
    let lines: Vec<&str> = text.split('\n').collect();
    let field = |i: usize| lines.get(i).copied().unwrap_or_default();
    let labels: Vec<(&str, &str)> = lines
        .iter()
        .skip(4)
        .filter_map(|l| l.split_once('='))
        .collect();
    let sent = Workload::from_fields(
        [
            ("NAME", field(0)),
            ("NAMESPACE", field(1)),
            ("WORKLOAD_NAME", field(2)),
            ("CLUSTER_ID", field(3)),
        ],
        labels.iter().copied(),
    );
    let exchanged = decode(Exchange::new(&sent, "id").metadata()).expect("our own header decodes");
    assert_eq!(exchanged, sent);
    let mut whole = MessageCounter::default();
    whole.feed(data);
    let mut cut = MessageCounter::default();
    let at = data.first().map_or(0, |b| usize::from(*b)).min(data.len());
    cut.feed(&data[..at]);
    cut.feed(&data[at..]);
    assert_eq!(whole.messages(), cut.messages());
}
