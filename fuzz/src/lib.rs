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
