//! What a client gets from Envoy 1.40 when a meshwasm filter's VM cannot
//! be made or breaks, for every filter under every failure policy: Envoy's
//! deprecated `fail_open` (false, its default, and true) and the
//! `failure_policy` envoyfilter writes for Istio's `failStrategy`
//! (FAIL_CLOSE, FAIL_OPEN, FAIL_RELOAD), as istiod writes it too.
//!
//! Each filter is configured so that one probe request shows it acted (a
//! route to v1, an abort, a denial, a rate-limit header, a metric), so a
//! request that skipped the filter is told apart from one it handled.
//! The cases: a module that does not compile, a module whose remote url
//! answers 404, a configuration `on_configure` refuses, and a trap (the
//! filters built with the test-only `trap-on-marked-request` feature).

use envoyfilter::render::FailStrategy;
use meshwasm_artifacts::{Artifact, FILTERS};
use meshwasm_local::configs;
use meshwasm_local::envoy::{self, Bootstrap, Envoy, WasmFilter, expect_rejected};
use meshwasm_local::mesh::CLUSTER_HEADER;
use meshwasm_local::traffic::send;
use meshwasm_local::upstream::{Reply, Upstream};
use serde_json::{Value, json};
use std::fmt;
use std::time::Duration;

/// How a plugin says what to do when its VM fails.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Policy {
    /// Envoy's deprecated `fail_open`.
    FailOpen(bool),
    /// `failure_policy`, as envoyfilter renders a `failStrategy`.
    Strategy(FailStrategy),
}

const POLICIES: [Policy; 5] = [
    Policy::FailOpen(false),
    Policy::FailOpen(true),
    Policy::Strategy(FailStrategy::FailClose),
    Policy::Strategy(FailStrategy::FailOpen),
    Policy::Strategy(FailStrategy::FailReload),
];

impl Policy {
    /// Writes the policy into an `http_filters` entry.
    fn apply(self, entry: &mut Value) {
        let config = entry["typed_config"]["config"].as_object_mut().unwrap();
        config.remove("fail_open");
        match self {
            Policy::FailOpen(open) => config.insert("fail_open".into(), json!(open)),
            Policy::Strategy(s) => config.insert("failure_policy".into(), json!(s.envoy_policy())),
        };
    }

    /// Whether a request skips the filter of a VM that failed.
    fn skips(self) -> bool {
        matches!(
            self,
            Policy::FailOpen(true) | Policy::Strategy(FailStrategy::FailOpen)
        )
    }
}

impl fmt::Display for Policy {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            Policy::FailOpen(open) => write!(f, "fail_open: {open}"),
            Policy::Strategy(s) => write!(f, "failure_policy: {} ({s})", s.envoy_policy()),
        }
    }
}

/// How a probe shows that the filter acted on it.
#[derive(Debug, Clone, Copy)]
enum Effect {
    /// It reached this upstream (the default one otherwise).
    Upstream(&'static str),
    /// It was answered with this status.
    Status(u16),
    /// The response carries this header.
    Header(&'static str),
    /// This Prometheus metric counted it.
    Metric(&'static str),
}

/// What a probe request saw.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Seen {
    /// The filter acted on it.
    Filtered,
    /// It went through as if the filter were not there.
    Skipped,
    /// Envoy refused it for the failed VM: 503, no upstream.
    Refused,
}

/// A filter, configured so that a probe request shows it worked, and a
/// configuration of it that `on_configure` refuses.
struct Subject {
    artifact: &'static Artifact,
    config: Value,
    effect: Effect,
    refused: Value,
}

const V1: &str = "outbound|5005|v1|web";

fn subjects() -> Vec<Subject> {
    let to_v1 = json!({"hosts": ["*"], "http": [{"route": [
        {"destination": {"host": "web", "port": {"number": 5005}, "subset": "v1"}}]}]});
    FILTERS
        .iter()
        .map(|artifact| {
            let (config, effect, refused) = match artifact.name {
                "router" => (
                    to_v1.clone(),
                    Effect::Upstream("v1"),
                    json!({"hosts": ["*"], "http": [{"route": [{"destination": {"host": "web"}, "weight": "all"}]}]}),
                ),
                "fault" => (
                    json!({"hosts": ["*"], "http": [{"fault": {"abort": {"httpStatus": 418, "percentage": {"value": 100}}}}]}),
                    Effect::Status(418),
                    json!({"hosts": ["*"], "http": [{"fault": {"abort": {"httpStatus": 418, "percentage": {"value": 250}}}}]}),
                ),
                "header-match" => (
                    json!({"action": "DENY", "rules": [{"to": [{"operation": {"paths": ["/probe"]}}]}]}),
                    Effect::Status(403),
                    json!({"action": "PERMIT", "rules": [{}]}),
                ),
                "rate-limit" => (
                    configs::local_rate_limit("probe", 1_000_000),
                    Effect::Header("x-ratelimit-limit"),
                    json!({"stat_prefix": "probe", "token_bucket": {"max_tokens": -1, "fill_interval": "1s"}}),
                ),
                "telemetry" => (
                    json!({}),
                    Effect::Metric("istio_requests_total"),
                    json!({"metrics": [{"overrides": "none"}]}),
                ),
                "mesh" => (
                    json!({"virtualServices": [to_v1.clone()]}),
                    Effect::Upstream("v1"),
                    json!({"virtualServices": {"hosts": ["*"]}}),
                ),
                other => panic!("filter {other} has no failure-policy subject: add one here"),
            };
            Subject {
                artifact,
                config,
                effect,
                refused,
            }
        })
        .collect()
}

/// An Envoy with one filter under `policy`, loading the module `code`.
fn bootstrap(
    subject: &Subject,
    policy: Policy,
    config: &Value,
    code: Value,
    upstreams: &Upstreams,
) -> Bootstrap {
    let mut entry = WasmFilter::new(subject.artifact.name, "", config.to_string()).to_json();
    entry["typed_config"]["config"]["vm_config"]["code"] = code;
    policy.apply(&mut entry);
    let mut bootstrap = Bootstrap::new(upstreams.default.addr())
        .node(configs::sidecar_node("web", "v1"))
        .route_by_header(CLUSTER_HEADER)
        .cluster(V1, upstreams.v1.addr())
        .native_filter(entry);
    if let Some(modules) = &upstreams.modules {
        bootstrap = bootstrap.cluster("modules", modules.addr());
    }
    bootstrap
}

fn local(wasm: &str) -> Value {
    json!({"local": {"filename": wasm}})
}

struct Upstreams {
    default: Upstream,
    v1: Upstream,
    /// A server of modules that has none (404).
    modules: Option<Upstream>,
}

impl Upstreams {
    async fn start(with_modules: bool) -> Upstreams {
        let modules = if with_modules {
            let server = Upstream::start("modules").await.unwrap();
            server.set_reply(Some(Reply {
                status: 404,
                ..Reply::default()
            }));
            Some(server)
        } else {
            None
        };
        Upstreams {
            default: Upstream::start("default").await.unwrap(),
            v1: Upstream::start("v1").await.unwrap(),
            modules,
        }
    }
}

/// Sends one probe (marked to trap, or not) and judges it.
async fn probe(envoy: &Envoy, effect: Effect, trap: bool) -> Seen {
    let http = envoy::client().unwrap();
    let before = metric(envoy, effect).await;
    let mut request = http.get(envoy.url("/probe")).header("host", "web");
    if trap {
        request = request.header("x-test-trap", "1");
    }
    let outcome = send(request).await.unwrap();
    if outcome.status == 503 && outcome.upstream().is_none() {
        return Seen::Refused;
    }
    let acted = match effect {
        Effect::Upstream(name) => outcome.upstream() == Some(name),
        Effect::Status(status) => outcome.status == status,
        Effect::Header(name) => outcome.header(name).is_some(),
        Effect::Metric(_) => {
            // The metric is written when the stream ends, about when the
            // client has the answer.
            let mut counted = false;
            for _ in 0..20 {
                counted = metric(envoy, effect).await > before;
                if counted {
                    break;
                }
                tokio::time::sleep(Duration::from_millis(25)).await;
            }
            counted
        }
    };
    if acted {
        Seen::Filtered
    } else {
        assert_eq!(outcome.status, 200, "{outcome:?}");
        Seen::Skipped
    }
}

/// The sum of a metric's series (Envoy's own names, tags and all).
async fn metric(envoy: &Envoy, effect: Effect) -> u64 {
    let Effect::Metric(name) = effect else {
        return 0;
    };
    let stats = envoy.stats().await.unwrap();
    stats
        .iter()
        .filter(|(k, _)| k.contains(name))
        .map(|(_, v)| v)
        .sum()
}

/// Runs `case` for every subject under every policy, the subjects of a
/// policy at once (each Envoy is its own process), printing and returning
/// one row per run.
async fn for_every_subject_and_policy<F, Fut>(case: F) -> Vec<(String, Policy, String)>
where
    F: Fn(&'static Subject, Policy) -> Fut,
    Fut: std::future::Future<Output = String> + Send + 'static,
{
    let subjects: &'static [Subject] = Vec::leak(subjects());
    let mut rows = Vec::new();
    for policy in POLICIES {
        let runs: Vec<_> = subjects
            .iter()
            .map(|s| tokio::spawn(case(s, policy)))
            .collect();
        for (subject, run) in subjects.iter().zip(runs) {
            let seen = run.await.unwrap();
            println!(
                "{:>14} | {:<42} | {seen}",
                subject.artifact.name,
                policy.to_string()
            );
            rows.push((subject.artifact.name.to_owned(), policy, seen));
        }
    }
    rows
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_module_that_does_not_compile_is_refused_under_every_policy() {
    let dir = tempfile::tempdir().unwrap();
    let dir: &'static std::path::Path = Box::leak(dir.keep().into_boxed_path());
    for_every_subject_and_policy(|subject, policy| async move {
        // Half a module: what an interrupted copy leaves.
        let bytes = std::fs::read(subject.artifact.wasm).unwrap();
        let corrupt = dir.join(format!("{}.wasm", subject.artifact.name));
        std::fs::write(&corrupt, &bytes[..bytes.len() / 2]).unwrap();
        let upstreams = Upstreams::start(false).await;
        let code = local(corrupt.to_str().unwrap());
        let log = expect_rejected(bootstrap(
            subject,
            policy,
            &subject.config,
            code,
            &upstreams,
        ))
        .await
        .unwrap_or_else(|e| panic!("{} under {policy}: {e:#}", subject.artifact.name));
        let plugin = format!(
            "Unable to create Wasm plugin meshwasm.{}",
            subject.artifact.name
        );
        assert!(log.contains(&plugin), "{plugin:?} not in:\n{log}");
        "Envoy refuses the configuration (does not start)".to_owned()
    })
    .await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_configuration_the_filter_refuses_is_refused_by_envoy_under_every_policy() {
    for_every_subject_and_policy(|subject, policy| async move {
        let upstreams = Upstreams::start(false).await;
        let code = local(subject.artifact.wasm);
        let log = expect_rejected(bootstrap(
            subject,
            policy,
            &subject.refused,
            code,
            &upstreams,
        ))
        .await
        .unwrap_or_else(|e| panic!("{} under {policy}: {e:#}", subject.artifact.name));
        let name = subject.artifact.name;
        let line = log
            .lines()
            .find(|l| l.contains(&format!("meshwasm {name}: invalid configuration")))
            .unwrap_or_else(|| panic!("{name}: no invalid-configuration line in:\n{log}"));
        assert!(
            log.contains(&format!("Unable to create Wasm plugin meshwasm.{name}")),
            "{log}"
        );
        format!(
            "Envoy refuses it: {}",
            line.split("invalid configuration: ").nth(1).unwrap_or(line)
        )
    })
    .await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_module_whose_url_fails_refuses_requests_unless_the_policy_skips_the_filter() {
    let rows = for_every_subject_and_policy(|subject, policy| async move {
        let upstreams = Upstreams::start(true).await;
        let modules = upstreams.modules.as_ref().unwrap().addr();
        // The real module's digest, for a url that never serves it.
        let digest = wasmhub::digest::sha256(&std::fs::read(subject.artifact.wasm).unwrap());
        let sha256 = wasmhub::digest::sha256_hex(&digest).unwrap().to_owned();
        let code = json!({"remote": {
            "http_uri": {"uri": format!("http://{modules}/{}.wasm", subject.artifact.name), "cluster": "modules", "timeout": "2s"},
            "sha256": sha256,
            "retry_policy": {"num_retries": 0},
        }});
        let envoy = Envoy::start(bootstrap(subject, policy, &subject.config, code, &upstreams))
            .await
            .unwrap();
        let mut seen = Vec::new();
        for _ in 0..3 {
            seen.push(probe(&envoy, subject.effect, false).await);
        }
        let want = if policy.skips() {
            Seen::Skipped
        } else {
            Seen::Refused
        };
        assert_eq!(seen, [want; 3], "{} under {policy}", subject.artifact.name);
        assert!(upstreams.modules.as_ref().unwrap().hits() >= 1);
        format!("Envoy starts; every request {want:?}")
    })
    .await;
    assert_eq!(rows.len(), POLICIES.len() * FILTERS.len());
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_trap_fails_its_request_and_the_policy_decides_the_next_ones() {
    for_every_subject_and_policy(|subject, policy| async move {
        let upstreams = Upstreams::start(false).await;
        let code = local(subject.artifact.trapping);
        let envoy = Envoy::start(
            bootstrap(subject, policy, &subject.config, code, &upstreams).concurrency(1),
        )
        .await
        .unwrap();
        let name = subject.artifact.name;
        let effect = subject.effect;
        assert_eq!(probe(&envoy, effect, false).await, Seen::Filtered, "{name}: before the trap");
        let trap_sent = std::time::Instant::now();
        let trapped = probe(&envoy, effect, true).await;
        let mut next = Vec::new();
        for _ in 0..3 {
            next.push(probe(&envoy, effect, false).await);
        }
        // Envoy's reload backoff is 1 s, jittered up to 1.5 s: the three
        // must have been sent inside it for FAIL_RELOAD's row to hold (a
        // loaded machine may be slower; the run is then not judged on them).
        let next_in_backoff = trap_sent.elapsed() < Duration::from_millis(950);
        tokio::time::sleep(Duration::from_millis(1600)).await;
        let mut later = Vec::new();
        for _ in 0..3 {
            later.push(probe(&envoy, effect, false).await);
        }
        assert_eq!(envoy.admin_get("/ready").await.unwrap().trim(), "LIVE");
        let stats = envoy.stats().await.unwrap();
        let reloaded = stats
            .iter()
            .filter(|(k, _)| k.ends_with(".vm_reload_success"))
            .map(|(_, v)| *v)
            .sum::<u64>();
        // What Envoy 1.40 does (source/extensions/common/wasm/wasm.cc):
        // fail closed answers 503 for good; the deprecated fail_open lets
        // even the trapped request on; failure_policy FAIL_OPEN fails the
        // trapped request, then skips the filter; FAIL_RELOAD fails
        // requests until its backoff (1 s) has passed, then makes a new VM.
        use Seen::{Filtered, Refused, Skipped};
        let want = match policy {
            Policy::FailOpen(false) | Policy::Strategy(FailStrategy::FailClose) => {
                (Refused, [Refused; 3], [Refused; 3])
            }
            Policy::FailOpen(true) => (Skipped, [Skipped; 3], [Skipped; 3]),
            Policy::Strategy(FailStrategy::FailOpen) => (Refused, [Skipped; 3], [Skipped; 3]),
            Policy::Strategy(FailStrategy::FailReload) => (Refused, [Refused; 3], [Filtered; 3]),
        };
        assert_eq!(
            (trapped, later.as_slice()),
            (want.0, want.2.as_slice()),
            "{name} under {policy}: the trapped request, and 3 more 1.6 s later"
        );
        if next_in_backoff || policy != Policy::Strategy(FailStrategy::FailReload) {
            assert_eq!(next, want.1, "{name} under {policy}: the 3 right after the trap");
        }
        let want_reloads = u64::from(policy == Policy::Strategy(FailStrategy::FailReload));
        assert_eq!(reloaded, want_reloads, "{name} under {policy}: vm_reload_success");
        let log = envoy.log();
        let trap = log
            .lines()
            .find(|l| l.contains("x-test-trap"))
            .map(|l| l.split("] ").last().unwrap_or(l).to_owned())
            .unwrap_or_default();
        format!("trapped: {trapped:?}; next 3: {next:?}; after 1.6 s: {later:?}; reloads {reloaded}; log: {trap}")
    })
    .await;
}
