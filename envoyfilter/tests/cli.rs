//! The `envoyfilter` command as a user runs it: exit codes and messages.
#![allow(clippy::unwrap_used, clippy::expect_used, clippy::panic)]

use std::path::Path;
use std::process::{Command, Output};

fn envoyfilter(args: &[&str], dir: &Path) -> Output {
    Command::new(env!("CARGO_BIN_EXE_envoyfilter"))
        .args(args)
        .current_dir(dir)
        .output()
        .unwrap()
}

fn stderr(out: &Output) -> String {
    String::from_utf8_lossy(&out.stderr).into_owned()
}

const CANARY: &str = "apiVersion: networking.istio.io/v1\nkind: VirtualService\nmetadata: {name: web}\nspec:\n  hosts: [web]\n  http:\n  - route:\n    - destination: {host: web, subset: v1}\n      weight: 80\n    - destination: {host: web, subset: v2}\n      weight: 20\n";

/// A mistyped `--upstream` was accepted and left the cluster resolving by
/// DNS; now it is an error naming what exists.
#[test]
fn an_upstream_that_names_no_destination_is_an_error() {
    let dir = tempfile::tempdir().unwrap();
    std::fs::write(dir.path().join("canary.yaml"), CANARY).unwrap();
    let ok = envoyfilter(
        &[
            "envoy",
            "canary.yaml",
            "--upstream",
            "outbound||v1|web=127.0.0.1:8081",
            "--upstream",
            "web=127.0.0.1:8080",
        ],
        dir.path(),
    );
    assert!(ok.status.success(), "{}", stderr(&ok));
    let typo = envoyfilter(
        &[
            "envoy",
            "canary.yaml",
            "--upstream",
            "outbound||v1|wbe=127.0.0.1:8081",
        ],
        dir.path(),
    );
    assert_eq!(typo.status.code(), Some(1));
    assert_eq!(
        stderr(&typo),
        "envoyfilter: upstream \"outbound||v1|wbe\" is neither a cluster nor a destination host of the input; the clusters are outbound||v1|web, outbound||v2|web, the hosts web\n"
    );
    assert!(typo.stdout.is_empty());
}

/// Whole-file errors read like every other message (`error: FILE ...`), and
/// an unclosed `[` is reported where it opens.
#[test]
fn a_file_that_is_not_yaml_is_reported_at_its_mistake() {
    let dir = tempfile::tempdir().unwrap();
    let broken = "apiVersion: networking.istio.io/v1\nkind: VirtualService\nmetadata:\n  name: x\nspec:\n  hosts: [a, b\n  http: []\n";
    std::fs::write(dir.path().join("09-invalid.yaml"), broken).unwrap();
    std::fs::write(dir.path().join("empty.yaml"), "# nothing here\n").unwrap();
    let out = envoyfilter(&["check", "09-invalid.yaml"], dir.path());
    assert_eq!(out.status.code(), Some(1));
    assert_eq!(
        stderr(&out).lines().next(),
        Some(
            "error: 09-invalid.yaml (line 6): not valid YAML at column 10: this `[` is never closed (the parser stopped at line 7, column 7: illegal placement of ':' indicator)"
        )
    );
    let out = envoyfilter(&["check", "empty.yaml"], dir.path());
    assert_eq!(
        stderr(&out).lines().next(),
        Some(
            "error: empty.yaml: no documents: expected Istio VirtualService, DestinationRule or Gateway resources"
        )
    );
}

/// What `kubectl get virtualservices,destinationrules -o yaml` prints: one
/// `List` whose items are the resources. It was refused as an unknown kind.
#[test]
fn a_kubernetes_list_is_read_item_by_item() {
    let dir = tempfile::tempdir().unwrap();
    let list = "apiVersion: v1\nkind: List\nmetadata: {resourceVersion: \"\"}\nitems:\n- apiVersion: networking.istio.io/v1\n  kind: VirtualService\n  metadata: {name: web, namespace: shop}\n  spec:\n    hosts: [web]\n    http:\n    - route:\n      - destination: {host: web, subset: v3}\n- apiVersion: networking.istio.io/v1\n  kind: DestinationRule\n  metadata: {name: web, namespace: shop}\n  spec:\n    host: web\n    subsets:\n    - {name: v1, labels: {version: v1}}\n";
    std::fs::write(dir.path().join("list.yaml"), list).unwrap();
    let out = envoyfilter(&["check", "list.yaml"], dir.path());
    assert!(out.status.success(), "{}", stderr(&out));
    assert_eq!(
        stderr(&out),
        "warning: list.yaml: document 1 (VirtualService web) spec.http[0].route[0].destination.subset (line 12): subset \"v3\" of web is not defined by DestinationRule web (it defines v1); Istio answers 503 for it\n1 VirtualServices, 1 placements, 1 warnings\n"
    );
}

/// An AuthorizationPolicy as a user runs it: its digest reaches the
/// header-match WasmPlugin, and a field the filter refuses stops the
/// output with the file, path and line.
#[test]
fn an_authorization_policy_becomes_a_plugin_or_an_error_at_its_line() {
    let dir = tempfile::tempdir().unwrap();
    let policy = "apiVersion: security.istio.io/v1\nkind: AuthorizationPolicy\nmetadata: {name: no-admin, namespace: shop}\nspec:\n  selector:\n    matchLabels: {app: web}\n  action: DENY\n  rules:\n  - to:\n    - operation: {paths: [/admin, /admin/*]}\n";
    std::fs::write(dir.path().join("policy.yaml"), policy).unwrap();
    let digest = "ab".repeat(32);
    let out = envoyfilter(
        &[
            "istio",
            "policy.yaml",
            "--strict",
            "--sha256",
            &format!("header-match=sha256:{digest}"),
        ],
        dir.path(),
    );
    assert!(out.status.success(), "{}", stderr(&out));
    let yaml = String::from_utf8_lossy(&out.stdout);
    assert!(
        yaml.contains("name: meshwasm-header-match-no-admin"),
        "{yaml}"
    );
    assert!(yaml.contains(&format!("sha256: {digest}")), "{yaml}");
    assert!(yaml.contains("phase: AUTHZ"), "{yaml}");

    let jwt = policy.replace(
        "  - to:",
        "  - from:\n    - source: {requestPrincipals: ['*']}\n    to:",
    );
    std::fs::write(dir.path().join("jwt.yaml"), jwt).unwrap();
    let out = envoyfilter(&["envoy", "jwt.yaml"], dir.path());
    assert_eq!(out.status.code(), Some(1));
    let message = stderr(&out);
    assert!(
        message.starts_with("error: jwt.yaml: document 1 (AuthorizationPolicy no-admin) spec.rules[0].from[0].source.requestPrincipals (line 10): "),
        "{message}"
    );
    assert!(out.stdout.is_empty());
}

/// A CUSTOM policy in one file and the IstioOperator holding its authorizer
/// in another: plain Envoy gets the authorizer's cluster, where
/// `--upstream` says.
#[test]
fn a_custom_policys_authorizer_becomes_a_cluster_of_plain_envoy() {
    let dir = tempfile::tempdir().unwrap();
    std::fs::write(
        dir.path().join("mesh.yaml"),
        "apiVersion: install.istio.io/v1alpha1\nkind: IstioOperator\nmetadata: {name: cp, namespace: istio-system}\nspec:\n  meshConfig:\n    extensionProviders:\n    - name: gatekeeper\n      envoyExtAuthzHttp: {service: gatekeeper.shop.svc.cluster.local, port: 8300}\n",
    )
    .unwrap();
    std::fs::write(
        dir.path().join("policy.yaml"),
        "apiVersion: security.istio.io/v1\nkind: AuthorizationPolicy\nmetadata: {name: gate, namespace: shop}\nspec:\n  action: CUSTOM\n  provider: {name: gatekeeper}\n  rules: [{to: [{operation: {paths: [/cart]}}]}]\n",
    )
    .unwrap();
    let out = envoyfilter(
        &[
            "envoy",
            "mesh.yaml",
            "policy.yaml",
            "--upstream",
            "outbound|8300||gatekeeper.shop.svc.cluster.local=127.0.0.1:18300",
        ],
        dir.path(),
    );
    assert!(out.status.success(), "{}", stderr(&out));
    let stdout = String::from_utf8_lossy(&out.stdout);
    assert!(
        stdout.contains("outbound|8300||gatekeeper.shop.svc.cluster.local"),
        "{stdout}"
    );
    assert!(stdout.contains("18300"), "{stdout}");
    assert!(!stdout.contains("http2_protocol_options"), "{stdout}");
    assert!(!stderr(&out).contains("warning"), "{}", stderr(&out));
}

/// A Telemetry as a user runs it: its digest reaches the telemetry
/// WasmPlugin, and the plain Envoy bootstrap carries the stats tags.
#[test]
fn a_telemetry_becomes_a_plugin_and_the_bootstraps_stats_tags() {
    let dir = tempfile::tempdir().unwrap();
    let telemetry = "apiVersion: telemetry.istio.io/v1\nkind: Telemetry\nmetadata: {name: tenants, namespace: shop}\nspec:\n  metrics:\n  - overrides:\n    - match: {metric: REQUEST_COUNT}\n      tagOverrides:\n        tenant: {value: \"request.headers['x-tenant']\"}\n";
    std::fs::write(dir.path().join("telemetry.yaml"), telemetry).unwrap();
    let digest = "cd".repeat(32);
    let out = envoyfilter(
        &[
            "istio",
            "telemetry.yaml",
            "--strict",
            "--sha256",
            &format!("telemetry=sha256:{digest}"),
        ],
        dir.path(),
    );
    assert!(out.status.success(), "{}", stderr(&out));
    let yaml = String::from_utf8_lossy(&out.stdout);
    assert!(yaml.contains("name: meshwasm-telemetry-tenants"), "{yaml}");
    assert!(yaml.contains(&format!("sha256: {digest}")), "{yaml}");
    assert!(yaml.contains("phase: STATS\n  priority: 40"), "{yaml}");
    let out = envoyfilter(&["envoy", "telemetry.yaml"], dir.path());
    assert!(out.status.success(), "{}", stderr(&out));
    let yaml = String::from_utf8_lossy(&out.stdout);
    assert!(yaml.contains("stats_config:"), "{yaml}");
    assert!(yaml.contains("tag_name: tenant"), "{yaml}");
    let out = envoyfilter(&["check", "telemetry.yaml"], dir.path());
    assert_eq!(
        stderr(&out),
        "0 VirtualServices, 0 placements, 1 telemetry filters for Telemetries, 0 warnings\n"
    );
}

/// `--mesh`: the WasmPlugins on the same workloads and traffic become one of
/// the mesh module, each filter's document under its key, unchanged.
#[test]
fn mesh_joins_the_plugins_that_run_on_the_same_traffic() {
    let dir = Path::new(env!("CARGO_MANIFEST_DIR")).join("tests");
    let digest = "ab".repeat(32);
    let mesh_digest = format!("mesh=sha256:{digest}");
    let plugins = |extra: &[&str]| -> Vec<serde_json::Value> {
        let mut args = vec!["istio", "mesh-shop.yaml"];
        args.extend_from_slice(extra);
        let out = envoyfilter(&args, &dir);
        assert!(out.status.success(), "{}", stderr(&out));
        let docs = envoyfilter::yaml::load(&String::from_utf8_lossy(&out.stdout)).unwrap();
        docs.into_iter()
            .map(|d| d.value)
            .filter(|d| d["kind"] == "WasmPlugin")
            .collect()
    };
    assert_eq!(plugins(&[]).len(), 5, "one per filter without --mesh");
    let mesh = plugins(&["--mesh", "--sha256", &mesh_digest]);
    let summary: Vec<(String, Vec<String>, String)> = mesh
        .iter()
        .map(|p| {
            let spec = &p["spec"];
            assert_eq!(spec["url"], "oci://ghcr.io/meshwasm/meshwasm-mesh:latest");
            assert_eq!(spec["sha256"], digest.as_str());
            assert_eq!(spec["pluginName"], "meshwasm.mesh");
            let parts = spec["pluginConfig"]
                .as_object()
                .unwrap()
                .keys()
                .cloned()
                .collect();
            let mode = spec["match"][0]["mode"]
                .as_str()
                .unwrap_or("both")
                .to_owned();
            (
                format!("{} {}", spec["phase"].as_str().unwrap(), spec["priority"]),
                parts,
                mode,
            )
        })
        .collect();
    let s = |v: &[&str]| v.iter().map(|x| (*x).to_owned()).collect::<Vec<_>>();
    assert_eq!(
        summary,
        [
            // Telemetry reports both directions: it stays apart.
            ("STATS 40".to_owned(), s(&["telemetry"]), "both".to_owned()),
            // The access rule and the rate limit of productpage's inbound
            // traffic, in the access rule's phase.
            (
                "AUTHZ 10".to_owned(),
                s(&["authorization", "rateLimit"]),
                "SERVER".to_owned()
            ),
            // The VirtualService routes outbound: its fault and its routes.
            (
                "STATS 20".to_owned(),
                s(&["virtualServices"]),
                "CLIENT".to_owned()
            ),
        ]
    );
    let services = &mesh[2]["spec"]["pluginConfig"]["virtualServices"];
    assert_eq!(services[0]["hosts"][0], "reviews");
    assert!(services[0]["http"][0]["fault"].is_object(), "{services}");
    let limit = &mesh[1]["spec"]["pluginConfig"]["rateLimit"];
    assert_eq!(limit["stat_prefix"], "pp", "the LocalRateLimit as written");
}

/// Every Wasm plugin an output holds says what it does when its VM fails:
/// FAIL_RELOAD unless asked, in plain Envoy and in both EnvoyFilter forms;
/// asking for FAIL_OPEN over access rules is warned of, and refused under
/// `--strict`.
#[test]
fn every_plugin_carries_the_fail_strategy_and_fail_open_over_access_rules_is_warned_of() {
    let examples = Path::new(env!("CARGO_MANIFEST_DIR")).join("../examples/virtual-services");
    let policies = |out: &Output| -> Vec<String> {
        let text = String::from_utf8_lossy(&out.stdout);
        let values: Vec<serde_json::Value> = envoyfilter::yaml::load(&text)
            .unwrap()
            .into_iter()
            .map(|d| d.value)
            .collect();
        let mut found = Vec::new();
        collect_policies(&serde_json::Value::Array(values), &mut found);
        found
    };
    for (command, extra) in [
        ("envoy", &[][..]),
        ("envoyfilter", &["--form", "inline"][..]),
        ("envoyfilter", &["--form", "ecds"][..]),
    ] {
        for (asked, rendered) in [
            (None, "FAIL_RELOAD"),
            (Some("FAIL_CLOSE"), "FAIL_CLOSED"),
            (Some("FAIL_OPEN"), "FAIL_OPEN"),
        ] {
            let mut args = vec![command, "deny-admin.yaml", "fault-jason-abort.yaml"];
            args.extend(extra);
            if let Some(strategy) = asked {
                args.extend(["--fail-strategy", strategy]);
            }
            let out = envoyfilter(&args, &examples);
            assert!(out.status.success(), "{args:?}: {}", stderr(&out));
            let found = policies(&out);
            assert!(found.len() >= 2, "{args:?}: {found:?}");
            assert!(found.iter().all(|p| p == rendered), "{args:?}: {found:?}");
            let warned = stderr(&out).contains("failStrategy FAIL_OPEN");
            assert_eq!(
                warned,
                asked == Some("FAIL_OPEN"),
                "{args:?}: {}",
                stderr(&out)
            );
        }
    }
    let strict = envoyfilter(
        &[
            "envoy",
            "deny-admin.yaml",
            "--fail-strategy",
            "FAIL_OPEN",
            "--strict",
        ],
        &examples,
    );
    assert_eq!(strict.status.code(), Some(1));
    assert!(
        stderr(&strict).contains("an error under --strict"),
        "{}",
        stderr(&strict)
    );
}

fn collect_policies(value: &serde_json::Value, found: &mut Vec<String>) {
    match value {
        serde_json::Value::Object(map) => {
            assert!(
                !map.contains_key("fail_open"),
                "fail_open rendered: {map:?}"
            );
            if let Some(policy) = map.get("failure_policy").and_then(|p| p.as_str()) {
                found.push(policy.to_owned());
            }
            map.values().for_each(|v| collect_policies(v, found));
        }
        serde_json::Value::Array(items) => items.iter().for_each(|v| collect_policies(v, found)),
        _ => {}
    }
}

/// `--ecds-dir` writes one discovered configuration per filter, whole
/// (nothing staged is left), and the bootstrap discovers each from its file.
#[test]
fn ecds_dir_writes_each_filters_configuration_and_the_bootstrap_points_at_it() {
    let examples = Path::new(env!("CARGO_MANIFEST_DIR")).join("../examples/virtual-services");
    let dir = tempfile::tempdir().unwrap();
    let filters = dir.path().join("filters");
    let out = envoyfilter(
        &[
            "envoy",
            "fault-jason-abort.yaml",
            "deny-admin.yaml",
            "--ecds-dir",
            filters.to_str().unwrap(),
        ],
        &examples,
    );
    assert!(out.status.success(), "{}", stderr(&out));
    let mut written: Vec<String> = std::fs::read_dir(&filters)
        .unwrap()
        .map(|e| e.unwrap().file_name().to_string_lossy().into_owned())
        .collect();
    written.sort();
    assert_eq!(
        written,
        [
            "meshwasm.fault.json",
            "meshwasm.header-match.json",
            "meshwasm.router.json"
        ]
    );
    for name in &written {
        let text = std::fs::read_to_string(filters.join(name)).unwrap();
        let resource: serde_json::Value = serde_json::from_str(&text).unwrap();
        let config = &resource["resources"][0]["typed_config"]["config"];
        assert_eq!(config["name"], name.trim_end_matches(".json"));
        assert_eq!(config["failure_policy"], "FAIL_RELOAD");
    }
    let bootstrap =
        &envoyfilter::yaml::load(&String::from_utf8_lossy(&out.stdout)).unwrap()[0].value;
    let hcm = &bootstrap["static_resources"]["listeners"][0]["filter_chains"][0]["filters"][0]["typed_config"];
    let paths: Vec<&str> = hcm["http_filters"]
        .as_array()
        .unwrap()
        .iter()
        .filter_map(|f| {
            f["config_discovery"]["config_source"]["path_config_source"]["path"].as_str()
        })
        .collect();
    assert_eq!(paths.len(), 3, "{hcm}");
    assert!(
        paths
            .iter()
            .all(|p| p.starts_with(filters.to_str().unwrap()))
    );
    assert_eq!(bootstrap["node"]["id"], "meshwasm");
}
