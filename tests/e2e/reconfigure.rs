//! Configuration changed under load, as a control plane changes it:
//! envoyfilter renders a plain Envoy bootstrap with `ecds_dir` (the CLI's
//! `--ecds-dir`), in which Envoy 1.40 discovers the fault and router
//! filters' configurations from files in a watched directory (ECDS), and
//! renders those files from the Istio YAML. While clients keep sending on
//! keep-alive connections, the VirtualService goes from 80/20 to 20/80
//! with its abort from 10 % to 30 % (the files rendered again), then an
//! invalid router configuration is written there. Every response says
//! which configuration routed it (a response header the VirtualService
//! sets).

use envoyfilter::render::{
    EnvoyOptions, envoy_bootstrap, envoy_discovered_configs, write_discovered_configs,
};
use envoyfilter::translate::{Options, translate};
use meshwasm_artifacts::ROUTER_WASM;
use meshwasm_local::envoy::{self, Bootstrap, Envoy};
use meshwasm_local::traffic::binomial_bounds;
use meshwasm_local::upstream::Upstream;
use serde_json::Value;
use std::path::Path;
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

/// z for a two-sided 99.9 % bound.
const Z_999: f64 = 3.29;

/// The status of an abort the fault filter injects: intended, not a failure.
const ABORT: u16 = 418;

/// The Istio YAML: one VirtualService with an abort and a split, whose
/// responses carry `x-config: GENERATION`.
fn istio_yaml(v1: u32, v2: u32, abort_percent: u32, generation: &str) -> String {
    format!(
        "apiVersion: networking.istio.io/v1
kind: DestinationRule
metadata: {{name: web}}
spec:
  host: web
  subsets:
  - {{name: v1, labels: {{version: v1}}}}
  - {{name: v2, labels: {{version: v2}}}}
---
apiVersion: networking.istio.io/v1
kind: VirtualService
metadata: {{name: web}}
spec:
  hosts: [\"*\"]
  http:
  - fault:
      abort: {{httpStatus: {ABORT}, percentage: {{value: {abort_percent}}}}}
    headers:
      response:
        set: {{x-config: {generation}}}
    route:
    - destination: {{host: web, port: {{number: 5005}}, subset: v1}}
      weight: {v1}
    - destination: {{host: web, port: {{number: 5005}}, subset: v2}}
      weight: {v2}
"
    )
}

fn render(yaml: &str, options: &EnvoyOptions) -> Vec<(String, Value)> {
    let t = translate(yaml, &Options::default()).unwrap();
    envoy_discovered_configs(&t, options)
}

/// One response: when its request was sent, what came back.
#[derive(Debug, Clone)]
struct Answer {
    sent: Instant,
    status: u16,
    upstream: Option<String>,
    config: Option<String>,
}

/// Clients sending on keep-alive connections until `stop`, recording
/// every answer; a connection error is recorded as status 0.
fn load(envoy: &Envoy, clients: usize, answers: &Arc<Mutex<Vec<Answer>>>) -> Arc<Mutex<bool>> {
    let stop = Arc::new(Mutex::new(false));
    for _ in 0..clients {
        let http = envoy::client().unwrap();
        let url = envoy.url("/");
        let answers = Arc::clone(answers);
        let stop = Arc::clone(&stop);
        tokio::spawn(async move {
            while !*stop.lock().unwrap() {
                let sent = Instant::now();
                let answer = match http.get(&url).header("host", "web").send().await {
                    Ok(resp) => {
                        let header = |n: &str| {
                            resp.headers()
                                .get(n)
                                .and_then(|v| v.to_str().ok())
                                .map(str::to_owned)
                        };
                        let answer = Answer {
                            sent,
                            status: resp.status().as_u16(),
                            upstream: header("x-upstream"),
                            config: header("x-config"),
                        };
                        let _ = resp.bytes().await;
                        answer
                    }
                    Err(_) => Answer {
                        sent,
                        status: 0,
                        upstream: None,
                        config: None,
                    },
                };
                answers.lock().unwrap().push(answer);
            }
        });
    }
    stop
}

/// The answers to requests sent in `[from, to)`.
fn between(answers: &[Answer], from: Instant, to: Instant) -> Vec<Answer> {
    answers
        .iter()
        .filter(|a| a.sent >= from && a.sent < to)
        .cloned()
        .collect()
}

fn v2_share_within_bound(answers: &[Answer], share: f64, label: &str) {
    let routed: Vec<&Answer> = answers.iter().filter(|a| a.status == 200).collect();
    let v2 = routed
        .iter()
        .filter(|a| a.upstream.as_deref() == Some("v2"))
        .count();
    let (low, high) = binomial_bounds(routed.len(), share, Z_999);
    println!("{label}: v2 answered {v2} of {} routed", routed.len());
    assert!(
        (low..=high).contains(&v2),
        "{label}: v2 answered {v2} of {}, 99.9 % bound {low}..={high}",
        routed.len()
    );
}

fn abort_share_within_bound(answers: &[Answer], share: f64, label: &str) {
    let aborted = answers.iter().filter(|a| a.status == ABORT).count();
    let (low, high) = binomial_bounds(answers.len(), share, Z_999);
    println!("{label}: {aborted} of {} aborted", answers.len());
    assert!(
        (low..=high).contains(&aborted),
        "{label}: {aborted} of {} aborted, 99.9 % bound {low}..={high}",
        answers.len()
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_new_split_and_fault_take_effect_under_load_and_an_invalid_one_is_refused() {
    let dir = tempfile::tempdir().unwrap();
    let default = Upstream::start("default").await.unwrap();
    let v1 = Upstream::start("v1").await.unwrap();
    let v2 = Upstream::start("v2").await.unwrap();
    let local = |a: std::net::SocketAddr| vec![(a.ip().to_string(), a.port())];
    let options = EnvoyOptions {
        listen: ("127.0.0.1".into(), 0),
        admin: ("127.0.0.1".into(), 0),
        wasm_dir: Path::new(ROUTER_WASM)
            .parent()
            .unwrap()
            .display()
            .to_string(),
        upstreams: [
            ("outbound|5005|v1|web".to_owned(), local(v1.addr())),
            ("outbound|5005|v2|web".to_owned(), local(v2.addr())),
        ]
        .into(),
        default_cluster: Some(("127.0.0.1".into(), default.addr().port())),
        ecds_dir: Some(dir.path().display().to_string()),
        ..EnvoyOptions::default()
    };
    let first = istio_yaml(80, 20, 10, "first");
    write_discovered_configs(dir.path(), &render(&first, &options)).unwrap();
    let t = translate(&first, &Options::default()).unwrap();
    let envoy = Envoy::start(Bootstrap::from_config(envoy_bootstrap(&t, &options)))
        .await
        .unwrap();

    let answers = Arc::new(Mutex::new(Vec::new()));
    let stop = load(&envoy, 8, &answers);
    let started = Instant::now();
    tokio::time::sleep(Duration::from_secs(3)).await;

    let swapped = Instant::now();
    write_discovered_configs(
        dir.path(),
        &render(&istio_yaml(20, 80, 30, "second"), &options),
    )
    .unwrap();
    tokio::time::sleep(Duration::from_secs(3)).await;

    // A bad file, as a hand edit or a broken control plane leaves it
    // (envoyfilter itself refuses such a VirtualService).
    let invalid_pushed = Instant::now();
    let mut files = render(&istio_yaml(20, 80, 30, "third"), &options);
    let router = files
        .iter_mut()
        .find(|(name, _)| name == "meshwasm.router.json")
        .unwrap();
    let value = &mut router.1["resources"][0]["typed_config"]["config"]["configuration"]["value"];
    let broken = value
        .as_str()
        .unwrap()
        .replace("\"weight\":20", "\"weight\":\"twenty\"");
    assert_ne!(broken, value.as_str().unwrap());
    *value = Value::String(broken);
    write_discovered_configs(dir.path(), &files[..]).unwrap();
    tokio::time::sleep(Duration::from_secs(3)).await;
    *stop.lock().unwrap() = true;
    tokio::time::sleep(Duration::from_millis(300)).await;
    let answers = answers.lock().unwrap().clone();
    let ended = Instant::now();

    // Not one request failed: every answer is the upstream's or an abort.
    let failed: Vec<&Answer> = answers
        .iter()
        .filter(|a| a.status != 200 && a.status != ABORT)
        .collect();
    assert!(
        failed.is_empty(),
        "{} failed: {:?}",
        failed.len(),
        &failed[..failed.len().min(5)]
    );

    // When the new VirtualService took effect: the first request it routed,
    // and the last one the old one routed, after the swap.
    let routed_by = |generation: &str| {
        answers
            .iter()
            .filter(|a| a.config.as_deref() == Some(generation))
            .map(|a| a.sent)
            .collect::<Vec<_>>()
    };
    let first_new = routed_by("second").into_iter().min().unwrap();
    let last_old = routed_by("first").into_iter().max().unwrap();
    let took = first_new.saturating_duration_since(swapped);
    let all_moved = last_old.saturating_duration_since(swapped);
    println!(
        "{} requests in {:.1} s; the new split routed its first request {} ms after the files moved, \
         the old one its last {} ms after",
        answers.len(),
        (ended - started).as_secs_f64(),
        took.as_millis(),
        all_moved.as_millis()
    );
    assert!(took < Duration::from_secs(1), "took {took:?}");
    assert!(
        all_moved < Duration::from_secs(1),
        "old config routed until {all_moved:?}"
    );

    // Each configuration's split and abort rate, away from the swaps.
    let before = between(&answers, started, swapped);
    let after = between(&answers, swapped + Duration::from_secs(1), invalid_pushed);
    let after_invalid = between(&answers, invalid_pushed, ended);
    v2_share_within_bound(&before, 0.20, "80/20");
    v2_share_within_bound(&after, 0.80, "20/80");
    abort_share_within_bound(&before, 0.10, "10 % abort");
    abort_share_within_bound(&after, 0.30, "30 % abort");

    // The invalid one is refused with the filter's message, and the
    // second configuration keeps routing.
    assert!(
        after_invalid
            .iter()
            .filter(|a| a.status == 200)
            .all(|a| a.config.as_deref() == Some("second")),
        "a request was routed by something else than the second configuration"
    );
    v2_share_within_bound(&after_invalid, 0.80, "20/80 after the invalid push");
    let log = envoy.log();
    let refusal = log
        .lines()
        .find(|l| l.contains("meshwasm router: invalid configuration"))
        .unwrap_or_else(|| panic!("no refusal in the log:\n{log}"));
    assert!(refusal.contains("http[0].route[0].weight"), "{refusal}");
    println!("refused: {}", refusal.split("] ").last().unwrap_or(refusal));
    let stats = envoy.stats().await.unwrap();
    let stat = |suffix: &str| {
        stats
            .iter()
            .filter(|(k, _)| k.starts_with("extension_config_discovery.") && k.ends_with(suffix))
            .map(|(k, v)| format!("{k}={v}"))
            .collect::<Vec<_>>()
    };
    println!(
        "Envoy: {:?} {:?}",
        stat(".config_reload"),
        stat(".config_fail")
    );
    assert_eq!(
        stats["extension_config_discovery.http_filter.meshwasm.router.config_fail"],
        1
    );
    // The first load and the swap at least (a move of the fault's file in
    // the same directory may make Envoy read the router's again).
    assert!(stats["extension_config_discovery.http_filter.meshwasm.router.config_reload"] >= 2);
}
