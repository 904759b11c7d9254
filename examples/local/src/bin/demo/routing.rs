//! The router's scenarios beyond Istio's examples, from VirtualService
//! specs in `examples/local/virtual-services/`: sticky splits, redirects,
//! rewrites, timeouts, retries and CORS. Each prints counts per version.

use crate::{Line, line};
use anyhow::Result;
use meshwasm_local::envoy;
use meshwasm_local::mesh::Mesh;
use meshwasm_local::traffic::{Outcome, binomial_bounds, send, send_many};
use std::collections::{BTreeMap, BTreeSet};
use std::time::Instant;

const STICKY: &str = include_str!("../../../virtual-services/web-sticky.json");
const SHOP: &str = include_str!("../../../virtual-services/shop-routing.json");

const WEB: [(&str, &str); 2] = [
    ("outbound|5005|v1|web", "v1"),
    ("outbound|5005|v2|web", "v2"),
];

/// z for a two-sided 99.9 % bound.
pub(crate) const Z_999: f64 = 3.29;

/// Answers per upstream (`-` for the filter's own answers).
pub(crate) fn counts(outcomes: &[Outcome]) -> BTreeMap<String, usize> {
    let mut counts = BTreeMap::new();
    for o in outcomes {
        let key = o
            .upstream()
            .map(str::to_owned)
            .unwrap_or_else(|| format!("-{}", o.status));
        *counts.entry(key).or_insert(0) += 1;
    }
    counts
}

fn width(column: &str) -> usize {
    (column.len() + 2).max(8)
}

pub(crate) fn row(label: &str, counts: &BTreeMap<String, usize>, columns: &[&str]) -> String {
    let cells: Vec<String> = columns
        .iter()
        .map(|c| format!("{:>w$}", counts.get(*c).copied().unwrap_or(0), w = width(c)))
        .collect();
    format!("{label:<26}{}", cells.join(""))
}

pub(crate) fn header(columns: &[&str]) -> Line {
    let cells: Vec<String> = columns
        .iter()
        .map(|c| format!("{c:>w$}", w = width(c)))
        .collect();
    line(true, format!("{:<26}{}", "", cells.join("")))
}

pub(crate) async fn sticky() -> Result<Vec<Line>> {
    let mesh = Mesh::start(STICKY, &WEB).await?;
    let users = 500;
    let (http, url) = (envoy::client()?, mesh.envoy.url("/"));
    send_many(3 * users, 16, move |i| {
        http.get(&url)
            .header("host", "web")
            .header("cookie", format!("user=u{}", i % users))
    })
    .await?;
    let mut per_user: BTreeMap<String, BTreeSet<&str>> = BTreeMap::new();
    for version in ["v1", "v2"] {
        for seen in mesh.upstream(version).seen() {
            let user = seen.header("cookie").unwrap_or_default().to_owned();
            per_user.entry(user).or_default().insert(version);
        }
    }
    let moved = per_user.values().filter(|v| v.len() > 1).count();
    let on_v2 = per_user.values().filter(|v| v.contains("v2")).count();
    let (low, high) = binomial_bounds(users, 0.2, Z_999);
    Ok(vec![
        line(
            moved == 0,
            format!("{users} users x 3 requests: {moved} users saw more than one version"),
        ),
        line(
            (low..=high).contains(&on_v2),
            format!("{on_v2} users on v2 (80/20: expected {low}..={high})"),
        ),
    ])
}

pub(crate) async fn shop() -> Result<Vec<Line>> {
    let mesh = Mesh::start(
        SHOP,
        &[
            ("outbound||v1|shop", "v1"),
            ("outbound||v2|shop", "v2"),
            ("outbound||v3|shop", "v3"),
        ],
    )
    .await?;
    let host = "shop.example.com";
    let columns = ["v1", "v2", "v3"];
    let mut lines = vec![header(&columns)];
    for (label, path, headers, want) in [
        ("/API/ (ignoreUriCase)", "/ApI/items", &[][..], "v2"),
        ("/Catalog (case-sensitive)", "/catalog", &[][..], "v1"),
        ("x-beta: 42 (regex)", "/", &[("x-beta", "42")][..], "v3"),
        (
            "x-beta + x-opt-out",
            "/",
            &[("x-beta", "42"), ("x-opt-out", "1")][..],
            "v1",
        ),
        ("?preview=true", "/list?preview=true", &[][..], "v3"),
    ] {
        let out = mesh.get(host, path, headers).await?;
        let counts = counts(std::slice::from_ref(&out));
        lines.push(line(
            out.upstream() == Some(want),
            row(label, &counts, &columns),
        ));
    }
    let rewritten = mesh
        .upstream("v2")
        .seen()
        .first()
        .map(|s| s.path.clone())
        .unwrap_or_default();
    lines.push(line(
        rewritten == "/v2/api/items",
        format!("rewrite: /ApI/items reached v2 as {rewritten}"),
    ));
    let moved = mesh.get(host, "/old-cart/1", &[]).await?;
    lines.push(line(
        moved.status == 301,
        format!(
            "redirect: /old-cart/1 -> {} {}",
            moved.status,
            moved.header("location").unwrap_or("")
        ),
    ));
    let started = Instant::now();
    let slow = mesh
        .get(host, "/checkout", &[("x-upstream-delay-ms", "2000")])
        .await?;
    lines.push(line(
        slow.status == 504,
        format!(
            "timeout 0.3s: a 2 s upstream -> {} after {} ms",
            slow.status,
            started.elapsed().as_millis()
        ),
    ));
    let flaky = mesh
        .get(host, "/inventory", &[("x-upstream-fail-first", "1")])
        .await?;
    let attempts = mesh
        .upstream("v1")
        .seen()
        .iter()
        .filter(|s| s.path == "/inventory")
        .count();
    lines.push(line(
        flaky.status == 200 && attempts == 2,
        format!(
            "retries: first attempt 503, {attempts} attempts, client got {}",
            flaky.status
        ),
    ));
    let preflight = send(
        mesh.request(reqwest::Method::OPTIONS, host, "/cart")?
            .header("origin", "https://app.example.com")
            .header("access-control-request-method", "POST"),
    )
    .await?;
    lines.push(line(
        preflight.status == 200 && preflight.header("access-control-allow-origin").is_some(),
        format!(
            "CORS preflight from https://app.example.com -> {} allow-methods {}",
            preflight.status,
            preflight
                .header("access-control-allow-methods")
                .unwrap_or("(none)")
        ),
    ));
    Ok(lines)
}
