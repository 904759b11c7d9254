//! Configuration changed under load, as a control plane changes it: Envoy
//! 1.40 discovers the fault and router filters' configurations (ECDS) from
//! files in a watched directory, each an `envoy.config.core.v3.TypedExtensionConfig`
//! holding the plugin as envoyfilter renders it. While clients keep
//! sending on keep-alive connections, the router's VirtualService goes
//! from 80/20 to 20/80 and the fault's abort from 10 % to 30 %, then an
//! invalid VirtualService is pushed. Every response says which
//! configuration routed it (a response header the VirtualService sets).

use envoyfilter::render::{Code, Filter, WASM_FILTER_TYPE, http_filter};
use meshwasm_artifacts::{FAULT_WASM, ROUTER_WASM};
use meshwasm_local::envoy::{self, Bootstrap, Envoy};
use meshwasm_local::mesh::CLUSTER_HEADER;
use meshwasm_local::traffic::binomial_bounds;
use meshwasm_local::upstream::Upstream;
use serde_json::{Value, json};
use std::path::Path;
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

/// z for a two-sided 99.9 % bound.
const Z_999: f64 = 3.29;

/// The status of an abort the fault filter injects: intended, not a failure.
const ABORT: u16 = 418;

fn virtual_service(v1: u32, v2: u32, generation: &str) -> Value {
    let destination = |subset: &str, weight: u32| json!({"destination": {"host": "web", "port": {"number": 5005}, "subset": subset}, "weight": weight});
    json!({"hosts": ["*"], "http": [{
        "route": [destination("v1", v1), destination("v2", v2)],
        "headers": {"response": {"set": {"x-config": generation}}},
    }]})
}

fn fault(percent: f64) -> Value {
    json!({"hosts": ["*"], "http": [{
        "fault": {"abort": {"httpStatus": ABORT, "percentage": {"value": percent}}},
        "route": [{"destination": {"host": "web"}}],
    }]})
}

/// Writes a filter's discovered configuration the way a control plane
/// must: a new file renamed over the old one, so Envoy never reads half.
fn publish(dir: &Path, filter: Filter, wasm: &str, config: &Value) {
    let entry = http_filter(
        filter,
        config,
        &Code::Local {
            filename: wasm.to_owned(),
        },
    );
    let resource = json!({"resources": [{
        "@type": "type.googleapis.com/envoy.config.core.v3.TypedExtensionConfig",
        "name": filter.plugin_name(),
        "typed_config": entry["typed_config"],
    }]});
    let name = format!("{}.json", filter.crate_name());
    let staged = dir.join(format!(".{name}.new"));
    std::fs::write(&staged, serde_json::to_vec(&resource).unwrap()).unwrap();
    std::fs::rename(&staged, dir.join(name)).unwrap();
}

/// The filter entry that discovers `filter`'s configuration from its file.
fn discovered(dir: &Path, filter: Filter) -> Value {
    let file = dir.join(format!("{}.json", filter.crate_name()));
    json!({
        "name": filter.plugin_name(),
        "config_discovery": {
            "config_source": {
                "path_config_source": {
                    "path": file.display().to_string(),
                    "watched_directory": {"path": dir.display().to_string()},
                },
                "resource_api_version": "V3",
            },
            "type_urls": [WASM_FILTER_TYPE],
        },
    })
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
    publish(dir.path(), Filter::Fault, FAULT_WASM, &fault(10.0));
    publish(
        dir.path(),
        Filter::Router,
        ROUTER_WASM,
        &virtual_service(80, 20, "first"),
    );
    let default = Upstream::start("default").await.unwrap();
    let v1 = Upstream::start("v1").await.unwrap();
    let v2 = Upstream::start("v2").await.unwrap();
    let envoy = Envoy::start(
        Bootstrap::new(default.addr())
            // Dynamic configuration needs a node with an id and cluster.
            .node(json!({"id": "web-gateway", "cluster": "web"}))
            .route_by_header(CLUSTER_HEADER)
            .cluster("outbound|5005|v1|web", v1.addr())
            .cluster("outbound|5005|v2|web", v2.addr())
            .native_filter(discovered(dir.path(), Filter::Fault))
            .native_filter(discovered(dir.path(), Filter::Router))
            .concurrency(2),
    )
    .await
    .unwrap();

    let answers = Arc::new(Mutex::new(Vec::new()));
    let stop = load(&envoy, 8, &answers);
    let started = Instant::now();
    tokio::time::sleep(Duration::from_secs(3)).await;

    let swapped = Instant::now();
    publish(dir.path(), Filter::Fault, FAULT_WASM, &fault(30.0));
    publish(
        dir.path(),
        Filter::Router,
        ROUTER_WASM,
        &virtual_service(20, 80, "second"),
    );
    tokio::time::sleep(Duration::from_secs(3)).await;

    let invalid_pushed = Instant::now();
    let mut invalid = virtual_service(20, 80, "third");
    invalid["http"][0]["route"][0]["weight"] = json!("twenty");
    publish(dir.path(), Filter::Router, ROUTER_WASM, &invalid);
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
