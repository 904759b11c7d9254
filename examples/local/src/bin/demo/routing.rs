//! The router's scenarios: the Istio examples' canaries and header routes,
//! sticky splits, mirroring, redirects, rewrites, timeouts and retries.
//! Each prints a table of counts per version.

use crate::{Line, line};
use anyhow::Result;
use meshwasm_local::envoy;
use meshwasm_local::mesh::Mesh;
use meshwasm_local::traffic::{Outcome, binomial_bounds, send, send_many};
use std::collections::{BTreeMap, BTreeSet};
use std::time::{Duration, Instant};

const CANARIES: &str = include_str!("../../../virtual-services/web-canaries.json");
const STICKY: &str = include_str!("../../../virtual-services/web-sticky.json");
const JASON_V2: &str = include_str!("../../../virtual-services/reviews-jason-v2.json");
const DEV_COOKIE: &str = include_str!("../../../virtual-services/bookinfo-dev-cookie.json");
const MIRROR: &str = include_str!("../../../virtual-services/httpbin-mirror.json");
const GATEWAY: &str = include_str!("../../../virtual-services/httpbin-gateway.json");
const SHOP: &str = include_str!("../../../virtual-services/shop-routing.json");

const WEB: [(&str, &str); 2] = [
    ("outbound|5005|v1|web", "v1"),
    ("outbound|5005|v2|web", "v2"),
];

/// z for a two-sided 99.9 % bound.
const Z_999: f64 = 3.29;

/// Answers per upstream (`-` for the filter's own answers).
fn counts(outcomes: &[Outcome]) -> BTreeMap<String, usize> {
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

fn row(label: &str, counts: &BTreeMap<String, usize>, columns: &[&str]) -> String {
    let cells: Vec<String> = columns
        .iter()
        .map(|c| format!("{:>8}", counts.get(*c).copied().unwrap_or(0)))
        .collect();
    format!("{label:<26}{}", cells.join(""))
}

fn header(columns: &[&str]) -> Line {
    let cells: Vec<String> = columns.iter().map(|c| format!("{c:>8}")).collect();
    line(true, format!("{:<26}{}", "", cells.join("")))
}

pub(crate) async fn canaries() -> Result<Vec<Line>> {
    let mesh = Mesh::start(CANARIES, &WEB).await?;
    let n = 2000;
    let mut lines = vec![header(&["v1", "v2"])];
    for (path, label, v2_share) in [
        ("/split-75", "75/25", 0.25),
        ("/", "80/20", 0.20),
        ("/split-95", "95/5", 0.05),
    ] {
        let (http, url) = (envoy::client()?, mesh.envoy.url(path));
        let outcomes = send_many(n, 16, move |_| http.get(&url).header("host", "web")).await?;
        let counts = counts(&outcomes);
        let v2 = counts.get("v2").copied().unwrap_or(0);
        let (low, high) = binomial_bounds(n, v2_share, Z_999);
        lines.push(line(
            (low..=high).contains(&v2) && counts.get("v1").copied().unwrap_or(0) + v2 == n,
            format!(
                "{}   v2 expected {low}..={high} (99.9 %)",
                row(&format!("{label} ({n} requests)"), &counts, &["v1", "v2"])
            ),
        ));
    }
    Ok(lines)
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

pub(crate) async fn jason() -> Result<Vec<Line>> {
    let mesh = Mesh::start(
        JASON_V2,
        &[
            ("outbound||v1|reviews", "v1"),
            ("outbound||v2|reviews", "v2"),
        ],
    )
    .await?;
    let mut lines = vec![header(&["v1", "v2"])];
    for (user, want) in [("jason", "v2"), ("kim", "v1")] {
        let (http, url) = (envoy::client()?, mesh.envoy.url("/reviews/0"));
        let outcomes = send_many(20, 4, move |_| {
            http.get(&url)
                .header("host", "reviews")
                .header("end-user", user)
        })
        .await?;
        let counts = counts(&outcomes);
        lines.push(line(
            counts.get(want) == Some(&20),
            row(&format!("end-user: {user}"), &counts, &["v1", "v2"]),
        ));
    }
    Ok(lines)
}

pub(crate) async fn dev_cookie() -> Result<Vec<Line>> {
    let mesh = Mesh::start(
        DEV_COOKIE,
        &[
            ("outbound|7777||reviews.qa.svc.cluster.local", "qa"),
            ("outbound|9080||reviews.prod.svc.cluster.local", "prod"),
            ("outbound|||reviews.qa.svc.cluster.local", "qa"),
        ],
    )
    .await?;
    let columns = ["prod", "qa", "default"];
    let mut lines = vec![header(&columns)];
    for (label, path, cookie) in [
        ("cookie user=dev-123", "/", "user=dev-123"),
        ("/reviews/, other users", "/reviews/1", "user=kim"),
    ] {
        let (http, url) = (envoy::client()?, mesh.envoy.url(path));
        let outcomes = send_many(200, 8, move |_| {
            http.get(&url)
                .header("host", "uk.bookinfo.com")
                .header("cookie", cookie)
        })
        .await?;
        let counts = counts(&outcomes);
        let ok = if cookie == "user=dev-123" {
            counts.get("qa") == Some(&200)
        } else {
            counts.get("prod").copied().unwrap_or(0) > counts.get("qa").copied().unwrap_or(0)
        };
        lines.push(line(ok, row(label, &counts, &columns)));
    }
    Ok(lines)
}

pub(crate) async fn mirror() -> Result<Vec<Line>> {
    let delay = Duration::from_millis(500);
    let mesh = Mesh::start_with(
        MIRROR,
        &[
            ("outbound||v1|httpbin", "v1"),
            ("outbound||v2|httpbin", "v2-mirror"),
        ],
        &[("v2-mirror", delay)],
    )
    .await?;
    let started = Instant::now();
    let (http, url) = (envoy::client()?, mesh.envoy.url("/anything"));
    let outcomes = send_many(50, 4, move |_| http.get(&url).header("host", "httpbin")).await?;
    let client_time = started.elapsed();
    let deadline = Instant::now() + Duration::from_secs(10);
    while mesh.upstream("v2-mirror").hits() < 50 && Instant::now() < deadline {
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
    let copies = mesh.upstream("v2-mirror").seen();
    let shadowed = copies
        .iter()
        .filter(|s| s.header("host") == Some("httpbin-shadow"))
        .count();
    let counts = counts(&outcomes);
    Ok(vec![
        line(
            counts.get("v1") == Some(&50),
            format!(
                "client answers: {}",
                row("", &counts, &["v1", "v2-mirror"]).trim()
            ),
        ),
        line(
            shadowed == 50,
            format!(
                "{shadowed} copies reached v2 as host httpbin-shadow, each after {} ms",
                delay.as_millis()
            ),
        ),
        line(
            client_time < delay * 50 / 4,
            format!(
                "the clients waited {} ms in all: the slow mirror is not on their path",
                client_time.as_millis()
            ),
        ),
    ])
}

pub(crate) async fn gateway() -> Result<Vec<Line>> {
    let mesh = Mesh::start(GATEWAY, &[("outbound|8000||httpbin", "httpbin")]).await?;
    let host = "httpbin.example.com";
    let plain = mesh.get(host, "/status/200", &[]).await?;
    let tls = [("x-forwarded-proto", "https")];
    let status = mesh.get(host, "/status/418", &tls).await?;
    let hidden = mesh.get(host, "/headers", &tls).await?;
    Ok(vec![
        line(
            plain.status == 301,
            format!(
                "http  /status/200 -> {} location {}",
                plain.status,
                plain.header("location").unwrap_or("(none)")
            ),
        ),
        line(
            status.upstream() == Some("httpbin"),
            format!(
                "https /status/418 -> {} from {}",
                status.status,
                status.upstream().unwrap_or_default()
            ),
        ),
        line(
            hidden.upstream() == Some("default"),
            "https /headers    -> not exposed: Envoy's default route",
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
