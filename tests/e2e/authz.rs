//! The adversarial authorization suite (`tests/authz/cases.yaml`) in a real
//! Envoy: each case sent as raw bytes on its own connection, and judged by
//! what reached the upstream socket and the status the client read.
//!
//! meshwasm's header-match filter runs on Envoy's defaults (the connection
//! manager normalizes nothing) and must let no denied request through and
//! stop no allowed one. Envoy's own RBAC filter, with the policies
//! translated as Istio translates them, runs on the same suite under
//! Envoy's defaults and Istio's BASE and DECODE_AND_MERGE_SLASHES
//! normalization; its figures are printed for comparison, not asserted.

#[path = "../authz/suite.rs"]
mod suite;

use meshwasm_artifacts::HEADER_MATCH_WASM;
use meshwasm_local::envoy::{Bootstrap, Envoy, WasmFilter};
use serde_json::{Map, Value, json};
use std::path::Path;
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};
use suite::{Case, Set};
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::{TcpListener, TcpStream};

/// How long a case may take to answer: answers take milliseconds, but the
/// workspace's tests share the machine with many Envoys at once.
const ANSWER_TIMEOUT: Duration = Duration::from_secs(15);

/// An upstream that records the head of every request reaching its socket.
/// It parses nothing, unlike an HTTP server that would refuse an odd
/// target Envoy forwarded and so hide a bypass.
struct RawUpstream {
    addr: std::net::SocketAddr,
    heads: Arc<Mutex<Vec<String>>>,
    task: tokio::task::JoinHandle<()>,
}

impl RawUpstream {
    async fn start() -> RawUpstream {
        let listener = TcpListener::bind("127.0.0.1:0").await.unwrap();
        let addr = listener.local_addr().unwrap();
        let heads = Arc::new(Mutex::new(Vec::new()));
        let recorded = Arc::clone(&heads);
        let task = tokio::spawn(async move {
            while let Ok((stream, _)) = listener.accept().await {
                tokio::spawn(record(stream, Arc::clone(&recorded)));
            }
        });
        RawUpstream { addr, heads, task }
    }

    fn heads(&self) -> Vec<String> {
        self.heads.lock().unwrap().clone()
    }
}

impl Drop for RawUpstream {
    fn drop(&mut self) {
        self.task.abort();
    }
}

async fn record(mut stream: TcpStream, heads: Arc<Mutex<Vec<String>>>) {
    let mut head = Vec::new();
    let mut buf = [0u8; 4096];
    let read = tokio::time::timeout(ANSWER_TIMEOUT, async {
        while !head.windows(4).any(|w| w == b"\r\n\r\n") {
            match stream.read(&mut buf).await {
                Ok(0) | Err(_) => return,
                Ok(n) => head.extend_from_slice(&buf[..n]),
            }
        }
    });
    if read.await.is_err() || head.is_empty() {
        return;
    }
    // Recorded before answering: once the client has its answer, the
    // upstream's record is complete.
    heads
        .lock()
        .unwrap()
        .push(String::from_utf8_lossy(&head).into_owned());
    let _ = stream
        .write_all(b"HTTP/1.1 200 OK\r\ncontent-length: 3\r\nconnection: close\r\n\r\nok\n")
        .await;
    let _ = stream.shutdown().await;
}

/// Sends the case's bytes on a new connection; the status of the answer
/// (0 when there is none in time).
async fn send_raw(envoy: &Envoy, case: &Case) -> u16 {
    let exchange = async {
        let mut stream = TcpStream::connect(envoy.listener()).await.ok()?;
        stream.write_all(&case.wire()).await.ok()?;
        let mut answer = Vec::new();
        let mut buf = [0u8; 1024];
        while !answer.windows(2).any(|w| w == b"\r\n") {
            let n = stream.read(&mut buf).await.ok()?;
            if n == 0 {
                break;
            }
            answer.extend_from_slice(&buf[..n]);
        }
        let line = String::from_utf8_lossy(&answer).into_owned();
        line.split(' ').nth(1)?.parse::<u16>().ok()
    };
    tokio::time::timeout(ANSWER_TIMEOUT, exchange)
        .await
        .ok()
        .flatten()
        .unwrap_or(0)
}

/// Where the suite runs: a filter and the connection manager's settings.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Setting {
    /// meshwasm's header-match filter, Envoy's defaults.
    Meshwasm,
    /// Envoy's RBAC, Envoy's defaults: no normalization.
    RbacDefaults,
    /// Envoy's RBAC, Istio's BASE: `normalize_path`.
    RbacBase,
    /// Envoy's RBAC, Istio's DECODE_AND_MERGE_SLASHES.
    RbacDecodeAndMergeSlashes,
}

const SETTINGS: [Setting; 4] = [
    Setting::Meshwasm,
    Setting::RbacDefaults,
    Setting::RbacBase,
    Setting::RbacDecodeAndMergeSlashes,
];

impl Setting {
    fn label(self) -> &'static str {
        match self {
            Setting::Meshwasm => "meshwasm (Envoy defaults)",
            Setting::RbacDefaults => "RBAC, Envoy defaults",
            Setting::RbacBase => "RBAC, Istio BASE",
            Setting::RbacDecodeAndMergeSlashes => "RBAC, Istio DECODE_AND_MERGE_SLASHES",
        }
    }

    fn bootstrap(self, set: &Set, upstream: std::net::SocketAddr) -> Bootstrap {
        let bootstrap = Bootstrap::new(upstream);
        if self == Setting::Meshwasm {
            let filter = WasmFilter::new("header-match", HEADER_MATCH_WASM, set.policy.to_string());
            return bootstrap.filter(filter);
        }
        let mut options = match self {
            Setting::RbacBase => json!({"normalize_path": true}),
            Setting::RbacDecodeAndMergeSlashes => json!({
                "normalize_path": true,
                "merge_slashes": true,
                "path_with_escaped_slashes_action": "UNESCAPE_AND_FORWARD",
            }),
            _ => json!({}),
        };
        // meshwasm's REJECT of `_` in header names is Istio's
        // `headers_with_underscores_action: REJECT_REQUEST` on the HCM.
        if set.policy["meshwasm"]["headersWithUnderscores"] == "REJECT" {
            options["common_http_protocol_options"] =
                json!({"headers_with_underscores_action": "REJECT_REQUEST"});
        }
        let options: Map<String, Value> = options.as_object().unwrap().clone();
        rbac_filters(&set.policy)
            .into_iter()
            .fold(bootstrap.connection_manager_options(options), |b, f| {
                b.native_filter(f)
            })
    }
}

/// Envoy RBAC filters for an AuthorizationPolicy spec or `{"policies": [...]}`,
/// one per policy, as Istio translates them: paths as `url_path` matchers
/// (exact, prefix, suffix, presence; `{*}` and `{**}` as a `uri_template`),
/// methods as `:method` and hosts as `:authority` (ignoring case, as Istio
/// does since CVE-2021-39155) header matchers, `request.headers[...]`
/// conditions as header matchers.
fn rbac_filters(config: &Value) -> Vec<Value> {
    let specs: Vec<&Value> = match config.get("policies").and_then(Value::as_array) {
        Some(list) => list.iter().collect(),
        None => vec![config],
    };
    specs
        .iter()
        .enumerate()
        .map(|(p, spec)| {
            let action = spec["action"].as_str().unwrap_or("ALLOW");
            let policies: Map<String, Value> = spec["rules"]
                .as_array()
                .into_iter()
                .flatten()
                .enumerate()
                .map(|(r, rule)| {
                    let permission = rule_permission(rule);
                    (
                        format!("policy[{p}]-rule[{r}]"),
                        json!({"permissions": [permission], "principals": [{"any": true}]}),
                    )
                })
                .collect();
            json!({
                "name": "envoy.filters.http.rbac",
                "typed_config": {
                    "@type": "type.googleapis.com/envoy.extensions.filters.http.rbac.v3.RBAC",
                    "rules": {"action": action, "policies": policies},
                },
            })
        })
        .collect()
}

fn rule_permission(rule: &Value) -> Value {
    let mut all: Vec<Value> = Vec::new();
    let operations: Vec<Value> = rule["to"]
        .as_array()
        .into_iter()
        .flatten()
        .map(|to| {
            let op = &to["operation"];
            let mut fields = Vec::new();
            let mut field = |key: &str, matcher: &dyn Fn(&str) -> Value| {
                if let Some(values) = op[key].as_array() {
                    let rules: Vec<Value> = values
                        .iter()
                        .map(|v| matcher(v.as_str().unwrap()))
                        .collect();
                    fields.push(json!({"or_rules": {"rules": rules}}));
                }
            };
            field("paths", &path_permission);
            field("methods", &|m| header(":method", json!({"exact": m})));
            field("hosts", &|h| {
                let mut m = string_match(h);
                m["ignore_case"] = json!(true);
                header(":authority", m)
            });
            and(fields)
        })
        .collect();
    if !operations.is_empty() {
        all.push(json!({"or_rules": {"rules": operations}}));
    }
    for condition in rule["when"].as_array().into_iter().flatten() {
        let key = condition["key"].as_str().unwrap();
        let name = key
            .strip_prefix("request.headers[")
            .and_then(|k| k.strip_suffix(']'))
            .unwrap_or_else(|| panic!("no translation for {key}"));
        let rules: Vec<Value> = condition["values"]
            .as_array()
            .unwrap()
            .iter()
            .map(|v| header(name, string_match(v.as_str().unwrap())))
            .collect();
        all.push(json!({"or_rules": {"rules": rules}}));
    }
    and(all)
}

fn and(rules: Vec<Value>) -> Value {
    if rules.is_empty() {
        json!({"any": true})
    } else {
        json!({"and_rules": {"rules": rules}})
    }
}

fn header(name: &str, matcher: Value) -> Value {
    json!({"header": {"name": name, "string_match": matcher}})
}

/// Istio's string forms: `*` (presence), `prefix*`, `*suffix`, exact.
fn string_match(value: &str) -> Value {
    if value == "*" {
        json!({"safe_regex": {"regex": ".+"}})
    } else if let Some(prefix) = value.strip_suffix('*') {
        json!({"prefix": prefix})
    } else if let Some(suffix) = value.strip_prefix('*') {
        json!({"suffix": suffix})
    } else {
        json!({"exact": value})
    }
}

fn path_permission(path: &str) -> Value {
    if path.contains('{') {
        // Istio's `{*}` and `{**}` are Envoy's URI template `*` and `**`.
        let template = path.replace("{**}", "**").replace("{*}", "*");
        return json!({"uri_template": {
            "name": "uri-template",
            "typed_config": {
                "@type": "type.googleapis.com/envoy.extensions.path.match.uri_template.v3.UriTemplateMatchConfig",
                "path_template": template,
            },
        }});
    }
    json!({"url_path": {"path": string_match(path)}})
}

/// One case's result in one setting.
struct Played {
    case: Case,
    status: u16,
    /// The head of the request as the upstream received it, if it did.
    upstream_saw: Option<String>,
}

/// Starts Envoy for a set in a setting and plays its cases one after
/// another, each on its own connection.
async fn play(setting: Setting, set: &Set) -> Vec<Played> {
    let upstream = RawUpstream::start().await;
    let envoy = Envoy::start(setting.bootstrap(set, upstream.addr))
        .await
        .unwrap_or_else(|e| panic!("{} for {}: {e:#}", setting.label(), set.name));
    let mut played = Vec::new();
    for case in &set.cases {
        let before = upstream.heads().len();
        let status = send_raw(&envoy, case).await;
        let heads = upstream.heads();
        assert!(heads.len() <= before + 1, "{}: reached twice", case.name);
        played.push(Played {
            case: case.clone(),
            status,
            upstream_saw: heads.get(before).cloned(),
        });
    }
    played
}

#[derive(Default)]
struct Tally {
    bypasses: Vec<String>,
    false_denies: Vec<String>,
    wrong_status: Vec<String>,
}

fn tally(played: &[Played]) -> Tally {
    let mut t = Tally::default();
    for p in played {
        let want = p.case.envoy_expect();
        let reached = p.upstream_saw.is_some();
        let line = |kind: &str| {
            let saw = p
                .upstream_saw
                .as_deref()
                .and_then(|h| h.lines().next())
                .unwrap_or("-");
            format!(
                "{kind} {} ({} {:?}): status {}, upstream saw {saw:?}, want {want:?}: {}",
                p.case.name, p.case.method, p.case.target, p.status, p.case.why
            )
        };
        if reached && !want.reaches() {
            t.bypasses.push(line("bypass"));
        } else if !reached && want.reaches() {
            t.false_denies.push(line("false deny"));
        } else if p.status != want.status() {
            t.wrong_status.push(line("wrong status"));
        }
    }
    t
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn no_denied_request_reaches_the_upstream_through_meshwasm_and_rbac_is_measured_beside_it() {
    let started = Instant::now();
    let sets = suite::load(&Path::new(env!("CARGO_MANIFEST_DIR")).join(".."));
    let total: usize = sets.iter().map(|s| s.cases.len()).sum();
    let mut results: Vec<(Setting, Vec<Played>)> =
        SETTINGS.iter().map(|s| (*s, Vec::new())).collect();
    for set in &sets {
        // One Envoy per setting for the set, the four side by side.
        let (a, b, c, d) = tokio::join!(
            play(SETTINGS[0], set),
            play(SETTINGS[1], set),
            play(SETTINGS[2], set),
            play(SETTINGS[3], set),
        );
        for (slot, played) in results.iter_mut().zip([a, b, c, d]) {
            slot.1.extend(played);
        }
    }
    eprintln!("\nadversarial authorization suite: {total} cases");
    eprintln!(
        "{:<40} {:>9} {:>13} {:>13}",
        "setting", "bypasses", "false denies", "wrong status"
    );
    let mut meshwasm = Tally::default();
    for (setting, played) in &results {
        assert_eq!(played.len(), total, "{}", setting.label());
        let t = tally(played);
        eprintln!(
            "{:<40} {:>5}/{total} {:>9}/{total} {:>9}/{total}",
            setting.label(),
            t.bypasses.len(),
            t.false_denies.len(),
            t.wrong_status.len()
        );
        if *setting == Setting::Meshwasm {
            meshwasm = t;
        } else {
            for line in t.bypasses.iter().chain(&t.false_denies) {
                eprintln!("  {}: {line}", setting.label());
            }
        }
    }
    eprintln!("(in {:.1} s)", started.elapsed().as_secs_f64());
    let failures: Vec<&String> = meshwasm
        .bypasses
        .iter()
        .chain(&meshwasm.false_denies)
        .chain(&meshwasm.wrong_status)
        .collect();
    assert!(
        failures.is_empty(),
        "meshwasm in Envoy:\n{}",
        failures
            .iter()
            .map(|s| s.as_str())
            .collect::<Vec<_>>()
            .join("\n")
    );
}
