//! The scenarios of Istio's own examples, from the Istio YAML in
//! `examples/virtual-services/`. Each runs the Envoy configuration that
//! envoyfilter rendered from that file (`examples/envoy/`, the same file
//! docker-compose runs), with local upstreams named as the compose services.

use crate::routing::{Z_999, counts, header, row};
use crate::{Line, line};
use anyhow::Result;
use meshwasm_local::envoy;
use meshwasm_local::mesh::Mesh;
use meshwasm_local::prometheus;
use meshwasm_local::traffic::{Outcome, binomial_bounds, quantile, send, send_many, send_raw};
use meshwasm_local::upstream::Reply;
use std::path::PathBuf;
use std::time::{Duration, Instant};

/// The rendered Envoy file of an example.
pub(crate) fn envoy_file(example: &str) -> PathBuf {
    let dir = PathBuf::from(concat!(env!("CARGO_MANIFEST_DIR"), "/../envoy"));
    dir.canonicalize().unwrap_or(dir).join(example)
}

async fn start(example: &str) -> Result<Mesh> {
    Mesh::from_envoy_file(&envoy_file(example), &[]).await
}

/// `n` GETs for `host` and `path` with the given headers, 16 at a time.
async fn many(
    mesh: &Mesh,
    n: usize,
    host: &'static str,
    path: &str,
    headers: &'static [(&'static str, &'static str)],
) -> Result<Vec<Outcome>> {
    let (http, url) = (envoy::client()?, mesh.envoy.url(path));
    send_many(n, 16, move |_| {
        headers
            .iter()
            .fold(http.get(&url).header("host", host), |req, (k, v)| {
                req.header(*k, *v)
            })
    })
    .await
}

fn count(outcomes: &[Outcome], upstream: &str) -> usize {
    counts(outcomes).get(upstream).copied().unwrap_or(0)
}

pub(crate) async fn canary_split() -> Result<Vec<Line>> {
    let mesh = start("canary-split.yaml").await?;
    let n = 2000;
    let columns = ["web-v1", "web-v2"];
    let outcomes = many(&mesh, n, "web", "/", &[]).await?;
    let v2 = count(&outcomes, "web-v2");
    let (low, high) = binomial_bounds(n, 0.20, Z_999);
    Ok(vec![
        header(&columns),
        line(
            (low..=high).contains(&v2) && count(&outcomes, "web-v1") + v2 == n,
            format!(
                "{}   web-v2 expected {low}..={high} (99.9 %)",
                row(
                    &format!("80/20 ({n} requests)"),
                    &counts(&outcomes),
                    &columns
                )
            ),
        ),
    ])
}

pub(crate) async fn header_routing() -> Result<Vec<Line>> {
    let mesh = start("header-routing.yaml").await?;
    let columns = ["reviews-v1", "reviews-v2", "reviews-prod", "reviews-qa"];
    let mut lines = vec![header(&columns)];
    for (label, host, path, headers, want) in [
        (
            "reviews, end-user jason",
            "reviews",
            "/reviews/0",
            &[("end-user", "jason")][..],
            "reviews-v2",
        ),
        (
            "reviews, end-user kim",
            "reviews",
            "/reviews/0",
            &[("end-user", "kim")][..],
            "reviews-v1",
        ),
        (
            "uk.bookinfo.com, dev-123",
            "uk.bookinfo.com",
            "/",
            &[("cookie", "user=dev-123")][..],
            "reviews-qa",
        ),
    ] {
        let outcomes = many(&mesh, 20, host, path, headers).await?;
        lines.push(line(
            count(&outcomes, want) == 20,
            row(label, &counts(&outcomes), &columns),
        ));
    }
    let n = 400;
    let outcomes = many(&mesh, n, "eu.bookinfo.com", "/reviews/1", &[]).await?;
    let prod = count(&outcomes, "reviews-prod");
    let (low, high) = binomial_bounds(n, 0.8, Z_999);
    lines.push(line(
        (low..=high).contains(&prod) && prod + count(&outcomes, "reviews-qa") == n,
        format!(
            "{}   80/20: prod expected {low}..={high}",
            row("eu.bookinfo.com /reviews/", &counts(&outcomes), &columns)
        ),
    ));
    let stranger = mesh.get("ratings", "/", &[]).await?;
    lines.push(line(
        stranger.status == 404,
        format!(
            "host ratings (no VirtualService) -> {} {:?}",
            stranger.status,
            stranger.body.trim()
        ),
    ));
    Ok(lines)
}

pub(crate) async fn gateway_mirror() -> Result<Vec<Line>> {
    let delay = Duration::from_millis(500);
    let mesh = Mesh::from_envoy_file(
        &envoy_file("gateway-prefixes-mirror.yaml"),
        &[("httpbin-v2", delay)],
    )
    .await?;
    let host = "httpbin.example.com";
    let plain = mesh.get(host, "/status/200", &[]).await?;
    let tls = [("x-forwarded-proto", "https")];
    let forged = mesh.get(host, "/status/200", &tls).await?;
    // Behind a load balancer that terminates TLS and says so in
    // x-forwarded-proto: the same file with that one hop trusted, as
    // `envoyfilter envoy --trusted-proxies 1` renders it.
    let mut behind =
        meshwasm_local::mesh::read_envoy_file(&envoy_file("gateway-prefixes-mirror.yaml"))?;
    meshwasm_local::mesh::connection_manager(&mut behind)["xff_num_trusted_hops"] =
        serde_json::json!(1);
    let balanced = Mesh::from_envoy_config(behind, &[]).await?;
    let status = balanced.get(host, "/status/418", &tls).await?;
    let hidden = balanced.get(host, "/headers", &tls).await?;
    let started = Instant::now();
    let mirrored = many(&mesh, 50, "httpbin", "/anything", &[]).await?;
    let client_time = started.elapsed();
    let deadline = Instant::now() + Duration::from_secs(10);
    while mesh.upstream("httpbin-v2").hits() < 50 && Instant::now() < deadline {
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
    let shadowed = mesh
        .upstream("httpbin-v2")
        .seen()
        .iter()
        .filter(|s| s.header("host") == Some("httpbin-shadow"))
        .count();
    Ok(vec![
        line(
            plain.status == 301,
            format!(
                "gateway, http  /status/200 -> {} location {}",
                plain.status,
                plain.header("location").unwrap_or("(none)")
            ),
        ),
        line(
            forged.status == 301,
            format!(
                "gateway, http  /status/200 claiming x-forwarded-proto: https -> {}",
                forged.status
            ),
        ),
        line(
            status.upstream() == Some("httpbin"),
            format!(
                "gateway behind a TLS load balancer, https /status/418 -> {} from {}",
                status.status,
                status.upstream().unwrap_or("(the filter)")
            ),
        ),
        line(
            hidden.status == 404,
            format!(
                "gateway behind a TLS load balancer, https /headers    -> {}: not exposed",
                hidden.status
            ),
        ),
        line(
            count(&mirrored, "httpbin-v1") == 50,
            format!(
                "mesh, host httpbin: 50 answers, {} from httpbin-v1",
                count(&mirrored, "httpbin-v1")
            ),
        ),
        line(
            shadowed == 50,
            format!(
                "{shadowed} copies reached httpbin-v2 as host httpbin-shadow, each after {} ms",
                delay.as_millis()
            ),
        ),
        line(
            client_time < delay * 50 / 16,
            format!(
                "the clients waited {} ms in all: the slow mirror is not on their path",
                client_time.as_millis()
            ),
        ),
    ])
}

fn summarize(outcomes: &[Outcome]) -> String {
    let mut counts: Vec<(String, usize)> = Vec::new();
    for o in outcomes {
        let key = match o.upstream() {
            Some(up) => format!("{} from {up}", o.status),
            None => format!("{} {:?}", o.status, o.body.trim()),
        };
        match counts.iter_mut().find(|(k, _)| *k == key) {
            Some((_, n)) => *n += 1,
            None => counts.push((key, 1)),
        }
    }
    counts
        .iter()
        .map(|(k, n)| format!("{n}x {k}"))
        .collect::<Vec<_>>()
        .join(", ")
}

/// The jason abort from `file`: the current form or v1alpha3's `percent`.
pub(crate) async fn fault_jason_abort(file: &str) -> Result<Vec<Line>> {
    let mesh = start(file).await?;
    let mut lines = Vec::new();
    for (headers, want) in [
        (&[("cookie", "user=jason")][..], 500),
        (&[("cookie", "user=kim")][..], 200),
    ] {
        let outcomes = many(&mesh, 20, "ratings", "/ratings/0", headers).await?;
        lines.push(line(
            outcomes.iter().all(|o| o.status == want),
            format!("cookie {:<11} -> {}", headers[0].1, summarize(&outcomes)),
        ));
    }
    let other = mesh
        .get("details", "/", &[("cookie", "user=jason")])
        .await?;
    lines.push(line(
        other.status == 404,
        format!(
            "host details, jason -> {}: not aborted (the rule is for ratings), and no route",
            other.status
        ),
    ));
    Ok(lines)
}

pub(crate) async fn fault_delay() -> Result<Vec<Line>> {
    let mesh = start("fault-delay.yaml").await?;
    let delayed = many(&mesh, 10, "ratings", "/ratings/0", &[]).await?;
    let other = many(&mesh, 10, "details", "/", &[]).await?;
    let lat = |o: &[Outcome], q| quantile(&o.iter().map(|o| o.latency).collect::<Vec<_>>(), q);
    let (min, max) = (lat(&delayed, 0.0), lat(&delayed, 1.0));
    let n = 2000;
    let flaky = many(&mesh, n, "details", "/flaky", &[]).await?;
    let aborted = flaky.iter().filter(|o| o.status == 500).count();
    let (low, high) = binomial_bounds(n, 0.5, 5.0);
    let delays = mesh
        .envoy
        .stat("wasmcustom.meshwasm.fault.delays_injected")
        .await?;
    Ok(vec![
        line(
            min >= Duration::from_secs(2) && max < Duration::from_millis(2500),
            format!(
                "10 concurrent requests to ratings: {} ms .. {} ms",
                min.as_millis(),
                max.as_millis()
            ),
        ),
        line(
            lat(&other, 1.0) < Duration::from_millis(500),
            format!(
                "10 requests to details /: at most {:.1} ms (not delayed)",
                lat(&other, 1.0).as_secs_f64() * 1e3
            ),
        ),
        line(
            (low..=high).contains(&aborted),
            format!(
                "details /flaky: {aborted} of {n} aborted with 500 (50 %: expected {low}..={high})"
            ),
        ),
        line(
            (10..=22).contains(&delays),
            format!(
                "{delays} requests delayed in all: the 10 to ratings, and about 2 of {n} to /flaky (0.1 %, 5 s)",
            ),
        ),
    ])
}

/// Istio's local rate limit task, with a bucket per `x-client`: a crawler
/// hammering the site at 10 requests a second gets its 4 a minute, while
/// other clients keep theirs.
pub(crate) async fn local_rate_limit() -> Result<Vec<Line>> {
    let mesh = start("local-rate-limit.yaml").await?;
    let http = envoy::client()?;
    let url = mesh.envoy.url("/");
    let started = Instant::now();
    let crawler = meshwasm_local::traffic::send_paced(30, Duration::from_millis(100), |_| {
        http.get(&url)
            .header("host", "productpage")
            .header("x-client", "crawler")
    })
    .await?;
    let admitted = crawler.iter().filter(|o| o.status == 200).count();
    let marked = crawler
        .iter()
        .filter(|o| o.status == 429 && o.header("x-local-rate-limit") == Some("true"))
        .count();
    let mut lines = vec![line(
        admitted == 4 && marked == 26,
        format!(
            "crawler, 10 requests/s for {:.1} s: {admitted} admitted, {marked} answered 429 (x-local-rate-limit: true)",
            started.elapsed().as_secs_f64()
        ),
    )];
    for client in ["alice", "bob"] {
        let mut statuses = Vec::new();
        for _ in 0..5 {
            statuses.push(
                mesh.get("productpage", "/", &[("x-client", client)])
                    .await?
                    .status,
            );
        }
        lines.push(line(
            statuses == [200, 200, 200, 200, 429],
            format!("x-client {client:<7} 5 requests -> {statuses:?}: a bucket of 4 of its own"),
        ));
    }
    Ok(lines)
}

/// An AuthorizationPolicy that denies httpbin's admin pages, however the
/// path is spelled, and a header rule that tags phones' requests.
/// The seeds' circuit-breaking example: concurrent keep-alive clients
/// against httpbin's one connection and one pending request, then a
/// ratings endpoint that fails, ejected by outlier detection.
pub(crate) async fn circuit_breaker() -> Result<Vec<Line>> {
    // A slow httpbin, so that the clients' requests are in flight at once.
    let mesh = Mesh::from_envoy_file(
        &envoy_file("circuit-breaker.yaml"),
        &[("httpbin", Duration::from_millis(300))],
    )
    .await?;
    let clients = 20;
    let url = mesh.envoy.url("/get");
    let http: Vec<reqwest::Client> = (0..clients)
        .map(|_| envoy::client())
        .collect::<Result<_>>()?;
    let outcomes = send_many(clients, clients, move |i| {
        http[i].get(&url).header("host", "httpbin")
    })
    .await?;
    let passed = outcomes.iter().filter(|o| o.status == 200).count();
    let overloaded = outcomes
        .iter()
        .filter(|o| o.status == 503 && o.header("x-envoy-overloaded") == Some("true"))
        .count();
    let stat = |name: &str| {
        let name = format!("cluster.outbound|8000||httpbin.{name}");
        let envoy = &mesh.envoy;
        async move { envoy.stat(&name).await }
    };
    let pending_overflow = stat("upstream_rq_pending_overflow").await?;
    let connection_overflow = stat("upstream_cx_overflow").await?;
    let mut lines = vec![
        line(
            passed >= 1 && overloaded >= clients / 2 && passed + overloaded == clients,
            format!(
                "{clients} clients at once to httpbin (maxConnections 1, http1MaxPendingRequests 1): \
                 {passed} passed, {overloaded} refused 503 UO (x-envoy-overloaded)"
            ),
        ),
        line(
            pending_overflow as usize == overloaded,
            format!(
                "Envoy's counters: upstream_rq_pending_overflow {pending_overflow}, \
                 upstream_cx_overflow {connection_overflow}"
            ),
        ),
    ];
    mesh.upstream("ratings-down").set_reply(Some(Reply {
        status: 503,
        headers: vec![("x-upstream".into(), "ratings-down".into())],
        body: b"down\n".to_vec(),
    }));
    let mut answers = Vec::new();
    for _ in 0..10 {
        let outcome = send(mesh.request(reqwest::Method::GET, "ratings", "/ratings/1")?).await?;
        answers.push(format!(
            "{} {}",
            outcome.status,
            outcome.upstream().unwrap_or("?")
        ));
    }
    let down = answers
        .iter()
        .filter(|a| a.ends_with("ratings-down"))
        .count();
    let ejections = mesh
        .envoy
        .stat("cluster.outbound|9080||ratings.outlier_detection.ejections_enforced_consecutive_5xx")
        .await?;
    lines.push(line(
        down == 1
            && answers[answers.len() - 8..]
                .iter()
                .all(|a| a == "200 ratings-v1"),
        format!("ratings, 10 requests round robin over ratings-v1 and ratings-down: {answers:?}"),
    ));
    lines.push(line(
        ejections == 1,
        format!("ratings-down ejected after its first 503 (consecutive5xxErrors: 1): ejections_enforced_consecutive_5xx {ejections}"),
    ));
    Ok(lines)
}

pub(crate) async fn deny_admin() -> Result<Vec<Line>> {
    let mesh = start("deny-admin.yaml").await?;
    let httpbin = mesh.upstream("httpbin");
    let mut lines = Vec::new();
    let admin = mesh.get("httpbin", "/admin", &[]).await?;
    lines.push(line(
        admin.status == 403 && admin.body == DENIED,
        format!(
            "/admin                 -> {} {:?}",
            admin.status, admin.body
        ),
    ));
    // Sent as written: a client library would clean these paths up first.
    let before = httpbin.hits();
    for target in ["/%61dmin", "//admin", "/admin/../admin", "/admin;x=1"] {
        let answer = send_raw(mesh.envoy.listener(), "httpbin", target, &[]).await?;
        lines.push(line(
            answer.status == 403 && answer.body == DENIED,
            format!("{target:<22} -> {} {:?}", answer.status, answer.body),
        ));
    }
    let reached = httpbin.hits() - before;
    lines.push(line(
        reached == 0,
        format!("denied requests that reached httpbin: {reached}"),
    ));
    for (path, why) in [
        ("/status/200", ""),
        ("/ADMIN", " (paths are case-sensitive, as in Istio)"),
    ] {
        let outcome = mesh.get("httpbin", path, &[]).await?;
        lines.push(line(
            outcome.status == 200 && outcome.upstream() == Some("httpbin"),
            format!(
                "{path:<22} -> {} from {}{why}",
                outcome.status,
                outcome.upstream().unwrap_or("-")
            ),
        ));
    }
    for (label, agent, want) in [
        ("iPhone", IPHONE, Some("mobile")),
        ("desktop", DESKTOP, None),
    ] {
        let outcome = mesh
            .get("httpbin", "/headers", &[("user-agent", agent)])
            .await?;
        let seen = httpbin.seen();
        let tag = seen
            .last()
            .and_then(|s| s.header("x-client-class"))
            .map(str::to_owned);
        lines.push(line(
            outcome.status == 200 && tag.as_deref() == want,
            format!(
                "user-agent {label:<8} -> {}, httpbin saw x-client-class: {}",
                outcome.status,
                tag.as_deref().unwrap_or("(none)")
            ),
        ));
    }
    Ok(lines)
}

/// The body of a denial, as Envoy's RBAC filter answers.
const DENIED: &str = "RBAC: access denied";
const IPHONE: &str = "Mozilla/5.0 (iPhone; CPU iPhone OS 17_0 like Mac OS X) Mobile/15E148";
const DESKTOP: &str = "Mozilla/5.0 (X11; Linux x86_64) Firefox/128.0";

/// Istio's standard metrics from a plain Envoy: the telemetry filter's
/// `istio_requests_total` per response code, against what the clients got,
/// and its access log of the failures.
pub(crate) async fn telemetry() -> Result<Vec<Line>> {
    let mesh = start("telemetry.yaml").await?;
    let n = 500;
    let outcomes = many(&mesh, n, "ratings", "/ratings/1", &[]).await?;
    let mut seen: std::collections::BTreeMap<u16, usize> = std::collections::BTreeMap::new();
    for o in &outcomes {
        *seen.entry(o.status).or_default() += 1;
    }
    // Envoy writes a stream's stats when it is over; give the last ones a moment.
    tokio::time::sleep(Duration::from_millis(300)).await;
    let stats = prometheus::parse(&mesh.envoy.admin_get("/stats/prometheus").await?);
    let mut lines = vec![line(
        true,
        format!(
            "{:<14} {:<15} {:>22} {:>14}",
            "response_code", "response_flags", "istio_requests_total", "clients got"
        ),
    )];
    let mut rows: Vec<(String, String, f64)> = stats
        .get("istio_requests_total")
        .into_iter()
        .flatten()
        .map(|(labels, value)| {
            let label = |k: &str| labels.get(k).cloned().unwrap_or_default();
            (label("response_code"), label("response_flags"), *value)
        })
        .collect();
    rows.sort_by(|a, b| a.partial_cmp(b).unwrap_or(std::cmp::Ordering::Equal));
    let mut counted = 0.0;
    for (code, flags, value) in &rows {
        counted += value;
        let got = code
            .parse()
            .ok()
            .and_then(|c| seen.get(&c))
            .copied()
            .unwrap_or(0);
        lines.push(line(
            *value == got as f64,
            format!("{code:<14} {flags:<15} {value:>22} {got:>14}"),
        ));
    }
    lines.push(line(
        counted == n as f64,
        format!("every request counted once: {counted} of {n}"),
    ));
    let failed = seen.get(&503).copied().unwrap_or(0);
    let logged = mesh
        .envoy
        .log()
        .lines()
        .filter(|l| l.contains("\"response_code\":503"))
        .count();
    lines.push(line(
        logged == failed && failed > 0,
        format!(
            "access log (filter response.code >= 500): {logged} JSON lines for {failed} failures"
        ),
    ));
    if let Some((labels, _)) = stats.get("istio_requests_total").and_then(|s| s.first()) {
        let show = [
            "reporter",
            "destination_service",
            "request_protocol",
            "request_method",
        ];
        let shown: Vec<String> = show
            .iter()
            .map(|k| format!("{k}=\"{}\"", labels.get(*k).map_or("", String::as_str)))
            .collect();
        lines.push(line(
            labels.len() == 26,
            format!("{} labels, among them {}", labels.len(), shown.join(" ")),
        ));
    }
    Ok(lines)
}

/// Bookinfo's rules in one module: the routing, the fault, the access rule,
/// the rate limit and the metrics that the other scenarios run as a filter
/// each, here as the mesh module's parts, on one pass over each request.
pub(crate) async fn mesh() -> Result<Vec<Line>> {
    let mesh = start("mesh-bookinfo.yaml").await?;
    let config = meshwasm_local::mesh::read_envoy_file(&envoy_file("mesh-bookinfo.yaml"))?;
    let wasm_filters: Vec<String> = config["static_resources"]["listeners"][0]["filter_chains"][0]
        ["filters"][0]["typed_config"]["http_filters"]
        .as_array()
        .into_iter()
        .flatten()
        .filter(|f| {
            f["typed_config"]["@type"]
                .as_str()
                .is_some_and(|t| t.ends_with("wasm.v3.Wasm"))
        })
        .filter_map(|f| f["name"].as_str().map(str::to_owned))
        .collect();
    let mut lines = vec![line(
        wasm_filters == ["meshwasm.mesh"],
        format!("Wasm filters in the chain: {wasm_filters:?}"),
    )];
    for (host, path, user, want_status, want_upstream) in [
        ("reviews", "/reviews/1", "jason", 200, Some("reviews-v2")),
        ("reviews", "/reviews/1", "kim", 200, Some("reviews-v1")),
        ("ratings", "/ratings/1", "jason", 500, None),
        ("ratings", "/ratings/1", "kim", 200, Some("ratings-v1")),
        ("reviews", "/admin", "kim", 403, None),
    ] {
        let outcome = mesh.get(host, path, &[("end-user", user)]).await?;
        lines.push(line(
            outcome.status == want_status && outcome.upstream() == want_upstream,
            format!(
                "{host} {path:<11} end-user {user:<6} -> {} {}",
                outcome.status,
                outcome.upstream().unwrap_or(outcome.body.trim())
            ),
        ));
    }
    let mut crawler = Vec::new();
    for _ in 0..6 {
        let outcome = mesh
            .get("reviews", "/reviews/1", &[("x-client", "crawler")])
            .await?;
        crawler.push(outcome.status);
    }
    lines.push(line(
        crawler == [200, 200, 200, 200, 429, 429],
        format!("x-client crawler, 6 requests -> {crawler:?}: 4 a minute"),
    ));
    tokio::time::sleep(Duration::from_millis(300)).await;
    let stats = prometheus::parse(&mesh.envoy.admin_get("/stats/prometheus").await?);
    let mut by_code: std::collections::BTreeMap<String, f64> = std::collections::BTreeMap::new();
    for (labels, value) in stats.get("istio_requests_total").into_iter().flatten() {
        let code = labels.get("response_code").cloned().unwrap_or_default();
        *by_code.entry(code).or_default() += *value;
    }
    let total: f64 = by_code.values().sum();
    lines.push(line(
        total == 11.0,
        format!("istio_requests_total by response_code: {by_code:?}"),
    ));
    Ok(lines)
}
