//! No client can pick a cluster, even when the router filter does not run.
//!
//! The rendered `examples/envoy/header-routing.yaml` routes by the header
//! the router sets, `x-meshwasm-cluster`. Its connection manager removes
//! every hand-off header a client sends before Envoy picks a route. Each
//! test sends a forged header naming an existing cluster that no
//! VirtualService of the request's host chooses (reviews' qa service),
//! with the router working, with its module's remote fetch failing under
//! `FAIL_OPEN`, and after its VM trapped, and the same without the removal,
//! which shows the forged header does reach qa then.

use meshwasm_local::mesh::{Mesh, connection_manager};
use serde_json::{Value, json};
use std::path::Path;

/// The cluster of reviews' qa service on port 7777: it exists, but only
/// the `user=dev-123` cookie of the uk/eu/prod hosts leads there.
const QA: &str = "outbound|7777||reviews.qa.svc.cluster.local";

fn rendered() -> Value {
    let path = Path::new(env!("CARGO_MANIFEST_DIR")).join("../examples/envoy/header-routing.yaml");
    meshwasm_local::mesh::read_envoy_file(&path).unwrap()
}

/// The router's Wasm filter entry.
fn router_filter(config: &mut Value) -> &mut Value {
    connection_manager(config)["http_filters"]
        .as_array_mut()
        .unwrap()
        .iter_mut()
        .find(|f| f["name"] == "meshwasm.router")
        .unwrap()
}

/// How a Wasm filter is told to let requests through when it cannot run.
#[derive(Debug, Clone, Copy)]
enum FailOpen {
    /// `failure_policy: FAIL_OPEN`.
    Policy,
    /// The deprecated `fail_open: true`, which Envoy 1.40 still honours.
    Flag,
}

/// The router module fetched from an address nothing listens on, failing
/// open: Envoy starts without the filter.
fn failing_fetch(config: &mut Value, how: FailOpen) {
    let wasm = &mut router_filter(config)["typed_config"]["config"];
    match how {
        FailOpen::Policy => wasm["failure_policy"] = json!("FAIL_OPEN"),
        FailOpen::Flag => {
            // Envoy refuses both at once, and envoyfilter writes the policy.
            wasm.as_object_mut().unwrap().remove("failure_policy");
            wasm["fail_open"] = json!(true);
        }
    }
    wasm["vm_config"]["code"] = json!({"remote": {
        "http_uri": {"uri": "http://127.0.0.1:1/meshwasm_router.wasm", "cluster": "module-server", "timeout": "1s"},
        "sha256": "0".repeat(64),
        "retry_policy": {"num_retries": 0},
    }});
    config["static_resources"]["clusters"]
        .as_array_mut()
        .unwrap()
        .push(json!({
            "name": "module-server",
            "connect_timeout": "1s",
            "type": "STATIC",
            "load_assignment": {"cluster_name": "module-server", "endpoints": [{"lb_endpoints": [
                {"endpoint": {"address": {"socket_address": {"address": "127.0.0.1", "port_value": 1}}}}]}]},
        }));
}

/// In place of the router, a module that traps on every request's
/// headers, under `FAIL_OPEN`.
fn trapping_router(config: &mut Value, dir: &Path) {
    let trap = dir.join("trap.wasm");
    std::fs::write(&trap, wat::parse_str(TRAP_ON_REQUEST).unwrap()).unwrap();
    let wasm = &mut router_filter(config)["typed_config"]["config"];
    wasm["failure_policy"] = json!("FAIL_OPEN");
    wasm["vm_config"]["code"] = json!({"local": {"filename": trap.display().to_string()}});
}

const TRAP_ON_REQUEST: &str = r#"(module
  (memory (export "memory") 1)
  (global $next (mut i32) (i32.const 1024))
  (func (export "proxy_abi_version_0_2_1"))
  (func (export "malloc") (param $n i32) (result i32)
    (local $p i32)
    (local.set $p (global.get $next))
    (global.set $next (i32.add (global.get $next) (local.get $n)))
    (local.get $p))
  (func (export "proxy_on_context_create") (param i32 i32))
  (func (export "proxy_on_vm_start") (param i32 i32) (result i32) (i32.const 1))
  (func (export "proxy_on_configure") (param i32 i32) (result i32) (i32.const 1))
  (func (export "proxy_on_request_headers") (param i32 i32 i32) (result i32) unreachable)
  (func (export "proxy_on_done") (param i32) (result i32) (i32.const 1))
  (func (export "proxy_on_log") (param i32))
  (func (export "proxy_on_delete") (param i32)))"#;

/// How many of the forged requests qa received, and what each got.
async fn forge(mesh: &Mesh) -> (usize, Vec<(u16, String)>) {
    let before = mesh.upstream("reviews-qa").hits();
    let mut answers = Vec::new();
    for (host, extra) in [
        // No VirtualService has this host.
        ("ratings", None),
        // reviews' VirtualService routes kim to v1 and jason to v2, never to qa.
        ("reviews", Some(("end-user", "kim"))),
        ("reviews", Some(("end-user", "jason"))),
    ] {
        let mut headers = vec![("x-meshwasm-cluster", QA), ("x-meshwasm-subset", "qa")];
        headers.extend(extra);
        let answer = mesh.get(host, "/reviews/1", &headers).await.unwrap();
        answers.push((answer.status, answer.upstream().unwrap_or("-").to_owned()));
    }
    (mesh.upstream("reviews-qa").hits() - before, answers)
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_forged_cluster_header_is_ignored_while_the_router_runs() {
    let mesh = Mesh::from_envoy_config(rendered(), &[]).await.unwrap();
    let (to_qa, answers) = forge(&mesh).await;
    assert_eq!(to_qa, 0, "{answers:?}");
    assert_eq!(
        answers,
        [
            (404, "-".to_owned()),
            (200, "reviews-v1".to_owned()),
            (200, "reviews-v2".to_owned())
        ]
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_forged_cluster_header_is_ignored_when_the_module_fails_to_load_and_fails_open() {
    for how in [FailOpen::Policy, FailOpen::Flag] {
        let mut config = rendered();
        failing_fetch(&mut config, how);
        let mesh = Mesh::from_envoy_config(config, &[]).await.unwrap();
        let (to_qa, answers) = forge(&mesh).await;
        assert_eq!(to_qa, 0, "{how:?}: {answers:?}");
        // Without the filter nothing is routed: every request gets the
        // fallback route's 404, none a cluster of the client's choosing.
        assert_eq!(answers, vec![(404, "-".to_owned()); 3], "{how:?}");
        assert!(
            mesh.envoy
                .log()
                .contains("Plugin meshwasm.router failed to load"),
            "{}",
            mesh.envoy.log()
        );
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_forged_cluster_header_is_ignored_after_the_router_traps() {
    let dir = tempfile::tempdir().unwrap();
    let mut config = rendered();
    trapping_router(&mut config, dir.path());
    let mesh = Mesh::from_envoy_config(config, &[]).await.unwrap();
    let (to_qa, answers) = forge(&mesh).await;
    assert_eq!(to_qa, 0, "{answers:?}");
    // The request that trapped the VM gets a 503; the later ones skip the
    // failed filter and, with no routing header left, get the fallback 404.
    assert_eq!(
        answers,
        [
            (503, "-".to_owned()),
            (404, "-".to_owned()),
            (404, "-".to_owned())
        ]
    );
    assert!(
        mesh.envoy
            .log()
            .contains("proxy_on_request_headers failed: Uncaught RuntimeError: unreachable"),
        "{}",
        mesh.envoy.log()
    );
}

/// The same failure without the removal: the client's header picks qa.
/// This is what the removal is for, and shows the tests above can fail.
/// (Envoy 1.40 logs "Plugin configured to fail closed failed to load" under
/// `FAIL_OPEN` too, yet lets the requests through; `FAIL_CLOSED` answers
/// them 503.)
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn without_the_removal_a_forged_cluster_header_reaches_any_cluster() {
    let mut config = rendered();
    failing_fetch(&mut config, FailOpen::Policy);
    let removed = connection_manager(&mut config)
        .as_object_mut()
        .unwrap()
        .remove("early_header_mutation_extensions");
    assert!(removed.is_some(), "the rendered file strips no header");
    let mesh = Mesh::from_envoy_config(config, &[]).await.unwrap();
    let (to_qa, answers) = forge(&mesh).await;
    assert_eq!(to_qa, 3, "{answers:?}");
}

/// Envoy's router obeys `x-envoy-upstream-rq-timeout-ms` from clients it
/// counts as internal (here: 127.0.0.1). Only the router filter may set
/// it, for a VirtualService `timeout`: a client's own is removed first.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_client_cannot_set_the_router_timeout_headers() {
    let slow = [("reviews-v1", std::time::Duration::from_millis(300))];
    for protected in [true, false] {
        let mut config = rendered();
        let hcm = connection_manager(&mut config);
        hcm["use_remote_address"] = json!(true);
        hcm["internal_address_config"] =
            json!({"cidr_ranges": [{"address_prefix": "127.0.0.0", "prefix_len": 8}]});
        if !protected {
            hcm.as_object_mut()
                .unwrap()
                .remove("early_header_mutation_extensions");
        }
        let mesh = Mesh::from_envoy_config(config, &slow).await.unwrap();
        let answer = mesh
            .get(
                "reviews",
                "/",
                &[
                    ("end-user", "kim"),
                    ("x-envoy-upstream-rq-timeout-ms", "50"),
                ],
            )
            .await
            .unwrap();
        let expected = if protected { 200 } else { 504 };
        assert_eq!(answer.status, expected, "protected: {protected}");
    }
}
