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

/// A configuration error names where: its field path, or the document for
/// one that does not parse (with a line and column), is empty, or lacks
/// every key it needs (naming them).
fn check_error(e: &meshwasm_core::ConfigError) {
    use meshwasm_core::ConfigErrorKind;
    let shown = e.to_string();
    let place = if e.path.is_empty() {
        "configuration"
    } else {
        e.path.as_str()
    };
    assert!(shown.starts_with(place), "{shown}");
    assert!(
        !e.path.is_empty()
            || matches!(
                e.kind,
                ConfigErrorKind::Json { .. }
                    | ConfigErrorKind::Empty { .. }
                    | ConfigErrorKind::Missing { .. }
            ),
        "an error without a field path: {shown}"
    );
}

/// Every filter's configuration parser, through the entry the filter uses
/// (`Plan::from_json` on the bytes `on_configure` reads): none panics, and
/// every error names its field.
pub fn config(data: &[u8]) {
    use meshwasm_core::authz::AuthzPlan;
    use meshwasm_core::fault::FaultPlan;
    use meshwasm_core::mesh::MeshPlan;
    use meshwasm_core::rate_limit::RateLimitPlan;
    use meshwasm_core::router::RouterPlan;
    use meshwasm_core::telemetry::TelemetryPlan;
    fn check<P: Plan>(data: &[u8]) {
        if let Err(e) = P::from_json(data) {
            check_error(&e);
        }
    }
    check::<RouterPlan>(data);
    check::<FaultPlan>(data);
    check::<AuthzPlan>(data);
    check::<RateLimitPlan>(data);
    check::<TelemetryPlan>(data);
    check::<MeshPlan>(data);
}

/// A request over a parsed Proxy-Wasm header map, read as the filters'
/// `HostRequest` reads one (values lossily as text, the first value alone
/// for rate-limit actions).
struct MapRequest {
    map: meshwasm_core::header_map::HeaderMap,
    port: u32,
}

impl meshwasm_core::request::RequestAttributes for MapRequest {
    fn header(&mut self, name: &str) -> Option<std::borrow::Cow<'_, str>> {
        self.map.get(name)
    }
    fn destination_port(&mut self) -> Option<u32> {
        Some(self.port)
    }
    fn first_header(&mut self, name: &str) -> Option<std::borrow::Cow<'_, str>> {
        self.map.first(name).map(String::from_utf8_lossy)
    }
}

/// The VirtualServices every routing input is decided against: matches of
/// every kind, a regex cookie rule with a fault, weights, a rewrite, a
/// redirect, a direct response and header edits.
fn routing_plans() -> &'static (
    meshwasm_core::router::RouterPlan,
    meshwasm_core::fault::FaultPlan,
) {
    use meshwasm_core::fault::FaultPlan;
    use meshwasm_core::router::RouterPlan;
    static PLANS: OnceLock<(RouterPlan, FaultPlan)> = OnceLock::new();
    PLANS.get_or_init(|| {
        let json = br#"{"virtualServices": [
            {"hosts": ["reviews", "*.example.com"], "http": [
                {"match": [{"headers": {"cookie": {"regex": "^(.*?;)?(user=jason)(;.*)?$"}}}],
                 "fault": {"abort": {"httpStatus": 500, "percentage": {"value": 50}}, "delay": {"fixedDelay": "1s", "percentage": {"value": 10}}},
                 "route": [{"destination": {"host": "reviews", "subset": "v2"}}]},
                {"match": [{"uri": {"prefix": "/API/"}, "ignoreUriCase": true, "queryParams": {"preview": {"exact": "true"}}}],
                 "rewrite": {"uri": "/v2/"},
                 "headers": {"request": {"set": {"x-api": "v2"}, "remove": ["x-debug"]}, "response": {"add": {"x-served": "v2"}}},
                 "route": [{"destination": {"host": "reviews", "subset": "v3", "port": {"number": 9080}}}]},
                {"match": [{"uri": {"exact": "/old"}}], "redirect": {"uri": "/new", "redirectCode": 301}},
                {"match": [{"uri": {"regex": "/status/[0-9]+"}, "port": 8080}], "directResponse": {"status": 418, "body": {"string": "teapot"}}},
                {"match": [{"headers": {"end-user": {"exact": "jason"}}, "withoutHeaders": {"x-opt-out": {}}}],
                 "route": [{"destination": {"host": "reviews", "subset": "v2"}}]},
                {"route": [{"destination": {"host": "reviews", "subset": "v1"}, "weight": 80},
                           {"destination": {"host": "reviews", "subset": "v2"}, "weight": 20}],
                 "mirror": {"host": "reviews", "subset": "shadow", "port": {"number": 9080}}, "mirrorPercentage": {"value": 5}}
            ]},
            {"hosts": ["*"], "http": [{"route": [{"destination": {"host": "web"}}]}]}
        ]}"#;
        (
            RouterPlan::from_json(json).expect("the fuzz VirtualServices route"),
            FaultPlan::from_json(json).expect("the fuzz VirtualServices' faults"),
        )
    })
}

/// Routing and fault decisions on any request: `:path` (with its query),
/// `:authority`, then header lines of arbitrary bytes (non-UTF-8 included),
/// encoded as a Proxy-Wasm header map and parsed as the filters parse
/// Envoy's. No decision panics, and the same seed gives the same decision.
pub fn routing(data: &[u8]) {
    use meshwasm_core::header_map::{HeaderMap, serialize_pairs};
    use meshwasm_core::percent::Rng;
    let mut lines = data.split(|b| *b == b'\n');
    let path = lines.next().unwrap_or_default();
    let authority = lines.next().unwrap_or_default();
    let mut pairs: Vec<(&[u8], &[u8])> = vec![
        (b":method", b"GET"),
        (b":scheme", b"http"),
        (b":path", path),
        (b":authority", authority),
    ];
    pairs.extend(lines.map(header));
    let request = || MapRequest {
        map: HeaderMap::parse(serialize_pairs(pairs.iter().copied()))
            .expect("our own encoding parses"),
        port: u32::from(data.first().copied().unwrap_or(0)) * 40,
    };
    let (router, fault) = routing_plans();
    let seed = data.len() as u64;
    let first = format!(
        "{:?}",
        router.decide(&mut request(), &mut Rng::with_seed(seed))
    );
    let again = format!(
        "{:?}",
        router.decide(&mut request(), &mut Rng::with_seed(seed))
    );
    assert_eq!(first, again, "the same seed, another decision");
    let _ = fault.decide(&mut request(), &mut Rng::with_seed(seed));
}

/// The Proxy-Wasm header-map encoding: any bytes parse or are refused
/// without panicking; a map that parses encodes back to the same pairs; and
/// any pairs (lines `name:value` of the input) survive encoding and parsing.
pub fn header_map(data: &[u8]) {
    use meshwasm_core::header_map::{HeaderMap, serialize_pairs};
    if let Ok(map) = HeaderMap::parse(data.to_vec()) {
        let pairs: Vec<(Vec<u8>, Vec<u8>)> =
            map.iter().map(|(n, v)| (n.to_vec(), v.to_vec())).collect();
        let again = HeaderMap::parse(serialize_pairs(pairs.iter().map(|(n, v)| (n, v))))
            .expect("re-encoded");
        let back: Vec<(Vec<u8>, Vec<u8>)> = again
            .iter()
            .map(|(n, v)| (n.to_vec(), v.to_vec()))
            .collect();
        assert_eq!(back, pairs);
        assert_eq!(again.byte_size(), map.byte_size());
    }
    let lines: Vec<(&[u8], &[u8])> = data.split(|b| *b == b'\n').map(header).collect();
    let parsed =
        HeaderMap::parse(serialize_pairs(lines.iter().copied())).expect("our own encoding parses");
    let back: Vec<(&[u8], &[u8])> = parsed.iter().collect();
    assert_eq!(back, lines);
}

/// The duration and percentage parsers: no panic; a duration that parses
/// reads back the same from its nanoseconds; a percentage that is accepted
/// is within 0..=100 and a share of at most one million millionths.
pub fn durations(data: &[u8]) {
    use meshwasm_core::duration::parse_duration;
    use meshwasm_core::percent::PerMillion;
    let text = String::from_utf8_lossy(data);
    if let Ok(d) = parse_duration(&text) {
        let nanos = format!("{}ns", d.as_nanos());
        assert_eq!(parse_duration(&nanos), Ok(d), "{text:?} as {nanos}");
    }
    if let Ok(raw) = <[u8; 8]>::try_from(data.get(..8).unwrap_or_default()) {
        let value = f64::from_le_bytes(raw);
        if let Ok(share) = PerMillion::from_percent(value) {
            assert!((0.0..=100.0).contains(&value), "{value} accepted");
            assert!(share.numerator() <= 1_000_000, "{value}: {share:?}");
        }
    }
    if let Ok(value) = text.trim().parse::<f64>()
        && PerMillion::from_percent(value).is_ok()
    {
        assert!((0.0..=100.0).contains(&value), "{value} accepted");
    }
}

/// wasmhub's readers on what a hostile registry could serve: a manifest,
/// an image index and a module of arbitrary bytes, and arbitrary layer
/// bytes under each media type Istio's fetcher reads (with digests that
/// match, so the tar and gzip readers see them). None panics; a module
/// that comes out starts with `\0asm`.
pub fn wasmhub(data: &[u8]) {
    use wasmhub::digest::sha256;
    use wasmhub::image::Image;
    use wasmhub::media_types::{
        CNCF_WASM_CONFIG, DOCKER_LAYER_TAR_GZIP, OCI_CONFIG, OCI_LAYER_TAR_GZIP, OCI_MANIFEST,
        WASMHUB_CONFIG, WASMHUB_LAYER,
    };
    let _ = wasmhub::module::ProxyWasmModule::parse(data);
    let _ = Image::from_parts(OCI_MANIFEST, data.to_vec(), Vec::new(), Vec::new());
    if let Ok(index) = serde_json::from_slice::<oci_client::manifest::OciImageIndex>(data) {
        let _ = wasmhub::istio::platform_entry(&index);
    }
    let _ = wasmhub::registry::parse_reference(&String::from_utf8_lossy(data));
    // The first byte picks the media types; the rest is the layer.
    let (pick, layer) = data.split_first().unwrap_or((&0, &[]));
    let kinds = [
        (OCI_CONFIG, OCI_LAYER_TAR_GZIP),
        (OCI_CONFIG, DOCKER_LAYER_TAR_GZIP),
        (CNCF_WASM_CONFIG, WASMHUB_LAYER),
        (WASMHUB_CONFIG, WASMHUB_LAYER),
    ];
    let (config_type, layer_type) = kinds[usize::from(*pick) % kinds.len()];
    let config = b"{}".to_vec();
    let manifest = serde_json::json!({
        "schemaVersion": 2,
        "mediaType": OCI_MANIFEST,
        "config": {"mediaType": config_type, "digest": sha256(&config), "size": config.len()},
        "layers": [{"mediaType": layer_type, "digest": sha256(layer), "size": layer.len()}],
    });
    let image = Image::from_parts(
        OCI_MANIFEST,
        manifest.to_string().into_bytes(),
        config,
        vec![layer.to_vec()],
    )
    .expect("digests that match are accepted");
    if let Ok(extracted) = wasmhub::istio::extract(&image) {
        assert!(extracted.module.starts_with(b"\0asm"));
    }
}

/// envoyfilter's YAML input: any text translates or is refused without a
/// panic, and every error names its place (a field path, a line, or the
/// file).
pub fn envoyfilter(data: &[u8]) {
    use envoyfilter::translate::{Options, Severity, translate};
    let text = String::from_utf8_lossy(data);
    if let Err(rejected) = translate(&text, &Options::default()) {
        for finding in rejected
            .findings
            .iter()
            .filter(|f| f.severity == Severity::Error)
        {
            assert!(
                !finding.path.is_empty() || finding.line.is_some() || finding.source.is_none(),
                "an error without a place: {finding}"
            );
        }
    }
}

/// The hostcalls a guest can make, with their parameters (`I` an i32, `L`
/// an i64), as sdk-host imports them.
const HOSTCALLS: &[(&str, &str)] = &[
    ("proxy_get_property", "IIII"),
    ("proxy_set_property", "IIII"),
    ("proxy_get_buffer_bytes", "IIIII"),
    ("proxy_set_buffer_bytes", "IIIII"),
    ("proxy_get_buffer_status", "III"),
    ("proxy_get_configuration", "II"),
    ("proxy_http_call", "IIIIIIIIII"),
    ("proxy_grpc_call", "IIIIIIIIIIII"),
    ("proxy_grpc_stream", "IIIIIIIII"),
    ("proxy_grpc_send", "IIII"),
    ("proxy_grpc_cancel", "I"),
    ("proxy_grpc_close", "I"),
    ("proxy_get_status", "III"),
    ("proxy_get_current_time_nanoseconds", "I"),
    ("proxy_set_tick_period_milliseconds", "I"),
    ("proxy_set_effective_context", "I"),
    ("proxy_done", ""),
    ("proxy_call_foreign_function", "IIIIII"),
    ("proxy_log", "III"),
    ("proxy_get_log_level", "I"),
    ("proxy_get_header_map_size", "II"),
    ("proxy_get_header_map_pairs", "III"),
    ("proxy_set_header_map_pairs", "III"),
    ("proxy_get_header_map_value", "IIIII"),
    ("proxy_add_header_map_value", "IIIII"),
    ("proxy_replace_header_map_value", "IIIII"),
    ("proxy_remove_header_map_value", "III"),
    ("proxy_define_metric", "IIII"),
    ("proxy_increment_metric", "IL"),
    ("proxy_record_metric", "IL"),
    ("proxy_get_metric", "II"),
    ("proxy_get_shared_data", "IIIII"),
    ("proxy_set_shared_data", "IIIII"),
    ("proxy_register_shared_queue", "III"),
    ("proxy_resolve_shared_queue", "IIIII"),
    ("proxy_dequeue_shared_queue", "III"),
    ("proxy_enqueue_shared_queue", "III"),
    ("proxy_continue_stream", "I"),
    ("proxy_close_stream", "I"),
    ("proxy_send_local_response", "IIIIIIII"),
    ("proxy_continue_request", ""),
    ("proxy_continue_response", ""),
];

/// A guest that plays its plugin configuration as a program of hostcalls:
/// each step is a byte choosing the call, then its arguments as
/// little-endian i32s (pointers into its own memory or anywhere). It plays
/// the program on configure and again on each request's headers.
fn hostcall_guest() -> &'static sdk_host::WasmModule {
    static MODULE: OnceLock<sdk_host::WasmModule> = OnceLock::new();
    MODULE.get_or_init(|| {
        use std::fmt::Write as _;
        let mut wat = String::from("(module\n");
        for (i, (name, params)) in HOSTCALLS.iter().enumerate() {
            let types: Vec<&str> = params
                .chars()
                .map(|p| if p == 'L' { "i64" } else { "i32" })
                .collect();
            let _ = writeln!(
                wat,
                "  (import \"env\" \"{name}\" (func $h{i} (param {}) (result i32)))",
                types.join(" ")
            );
        }
        wat.push_str(
            r#"  (memory (export "memory") 2)
  (global $heap (mut i32) (i32.const 65536))
  (global $program (mut i32) (i32.const 0))
  (global $length (mut i32) (i32.const 0))
  (func (export "proxy_abi_version_0_2_1"))
  (func (export "_initialize"))
  (func (export "proxy_on_memory_allocate") (param $size i32) (result i32)
    (local $at i32)
    ;; A bump allocator that starts over when the second page is full.
    (if (i32.gt_u (i32.add (global.get $heap) (local.get $size)) (i32.const 131072))
      (then (global.set $heap (i32.const 65536))))
    (if (i32.gt_u (local.get $size) (i32.const 65536)) (then (return (i32.const 0))))
    (local.set $at (global.get $heap))
    (global.set $heap (i32.add (global.get $heap) (local.get $size)))
    (local.get $at))
  (func (export "proxy_on_vm_start") (param i32 i32) (result i32) (i32.const 1))
  (func (export "proxy_on_context_create") (param i32 i32))
  (func (export "proxy_on_configure") (param $root i32) (param $size i32) (result i32)
    ;; Keep the program where allocations do not reach: page one.
    (drop (call $h2 (i32.const 7) (i32.const 0) (local.get $size) (i32.const 16) (i32.const 20)))
    (global.set $length (i32.load (i32.const 20)))
    (if (i32.gt_u (global.get $length) (i32.const 60000)) (then (global.set $length (i32.const 60000))))
    (memory.copy (i32.const 1024) (i32.load (i32.const 16)) (global.get $length))
    (global.set $program (i32.const 1024))
    (call $play)
    (i32.const 1))
  (func (export "proxy_on_request_headers") (param i32 i32 i32) (result i32)
    (call $play)
    (i32.const 0))
  (func (export "proxy_on_response_headers") (param i32 i32 i32) (result i32)
    (call $play)
    (i32.const 0))
  (func (export "proxy_on_log") (param i32) (call $play))
  (func (export "proxy_on_done") (param i32) (result i32) (i32.const 1))
  (func (export "proxy_on_delete") (param i32))
  (func $arg (param $at i32) (result i32)
    (if (i32.gt_u (i32.add (local.get $at) (i32.const 4)) (global.get $length))
      (then (return (i32.const 0))))
    (i32.load (i32.add (global.get $program) (local.get $at))))
  (func $play
    (local $pc i32) (local $op i32) (local $steps i32)
    (block $end
      (loop $next
        (br_if $end (i32.ge_u (local.get $pc) (global.get $length)))
        (br_if $end (i32.gt_u (local.get $steps) (i32.const 64)))
        (local.set $steps (i32.add (local.get $steps) (i32.const 1)))
        (local.set $op (i32.load8_u (i32.add (global.get $program) (local.get $pc))))
        (local.set $pc (i32.add (local.get $pc) (i32.const 1)))
"#,
        );
        let _ = writeln!(
            wat,
            "        (local.set $op (i32.rem_u (local.get $op) (i32.const {})))",
            HOSTCALLS.len()
        );
        for (i, (_, params)) in HOSTCALLS.iter().enumerate() {
            let mut args = String::new();
            for (k, p) in params.chars().enumerate() {
                let load = format!("(call $arg (i32.add (local.get $pc) (i32.const {})))", 4 * k);
                if p == 'L' {
                    let _ = write!(args, " (i64.extend_i32_u {load})");
                } else {
                    let _ = write!(args, " {load}");
                }
            }
            let _ = writeln!(
                wat,
                "        (if (i32.eq (local.get $op) (i32.const {i})) (then (drop (call $h{i}{args})) (local.set $pc (i32.add (local.get $pc) (i32.const {})))))",
                4 * params.len()
            );
        }
        wat.push_str("        (br $next))))\n)\n");
        let bytes = wat::parse_str(&wat).expect("the guest's WAT");
        sdk_host::WasmModule::from_bytes("hostcalls.wasm", &bytes).expect("the guest compiles")
    })
}

/// sdk-host's hostcalls driven by a guest that calls them with arbitrary
/// arguments, in arbitrary order, from the root and from a stream: the
/// host never panics, and answers every call with a status rather than
/// trapping the guest.
pub fn sdk_host(data: &[u8]) {
    let Ok(mut host) = sdk_host::Host::builder()
        .plugin_config(data)
        .start(hostcall_guest())
    else {
        return;
    };
    assert_eq!(
        host.failure(),
        None,
        "a hostcall trapped the guest on configure"
    );
    let Ok(stream) = host.new_http_stream() else {
        return;
    };
    let _ = host.send_request_headers(stream, &[(":path", "/"), (":authority", "fuzz")], true);
    let _ = host.send_response_headers(stream, &[(":status", "200")], true);
    let _ = host.finish(stream);
    assert_eq!(
        host.failure(),
        None,
        "a hostcall trapped the guest on a stream"
    );
}
