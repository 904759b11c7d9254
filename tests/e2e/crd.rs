//! envoyfilter's Istio output against Istio's published CRD schemas (and
//! Kubernetes' for plain resources), through `tests/crd/validate.mjs`: the
//! `@kubernetes-models` validators generated from Istio's `crd-all.gen.yaml`,
//! plus a probe that refuses fields the schema does not name, as
//! `kubectl apply` does.

use crate::envoyfilter::{EXAMPLES, example};
use envoyfilter::render::{
    Code, EnvoyFilterForm, FailStrategy, Filter, IstioOptions, envoy_filters, istio_manifests,
};
use serde_json::{Value, json};
use std::io::Write as _;
use std::path::{Path, PathBuf};
use std::process::{Command, Stdio};

fn repo() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR")).join("..")
}

/// What the validator said: exit code and the problem lines.
struct Verdict {
    code: i32,
    problems: Vec<String>,
}

/// Runs the schema check on `(source, manifest)` pairs.
fn validate(manifests: &[(String, Value)]) -> Verdict {
    let dir = repo().join("tests/crd");
    assert!(
        dir.join("node_modules/@kubernetes-models/istio").is_dir(),
        "the schema validators are not installed: run ./scripts/test.sh, \
         or `npm ci --prefix tests/crd`"
    );
    let input: Vec<Value> = manifests
        .iter()
        .map(|(source, manifest)| json!({"source": source, "manifest": manifest}))
        .collect();
    let mut child = Command::new("node")
        .arg("validate.mjs")
        .current_dir(&dir)
        .stdin(Stdio::piped())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .expect("node (Node.js 18+) runs the schema check");
    child
        .stdin
        .take()
        .unwrap()
        .write_all(serde_json::to_string(&input).unwrap().as_bytes())
        .unwrap();
    let out = child.wait_with_output().unwrap();
    let stderr = String::from_utf8_lossy(&out.stderr);
    let code = out.status.code().unwrap_or(-1);
    assert!(code == 0 || code == 1, "validate.mjs failed: {stderr}");
    assert!(
        stderr.contains(&format!("{} manifests", manifests.len())),
        "validate.mjs did not read every manifest: {stderr}"
    );
    Verdict {
        code,
        problems: String::from_utf8_lossy(&out.stdout)
            .lines()
            .map(str::to_owned)
            .collect(),
    }
}

fn labelled(source: &str, docs: Vec<Value>) -> impl Iterator<Item = (String, Value)> + '_ {
    docs.into_iter()
        .enumerate()
        .map(move |(i, doc)| (format!("{source} #{}", i + 1), doc))
}

/// Every option that changes the shape of a WasmPlugin, in one set.
fn every_option() -> IstioOptions {
    IstioOptions {
        image_prefix: "oci://registry.example.com:5000/mesh".into(),
        tag: "1.2.3".into(),
        sha256: [(Filter::Router, format!("sha256:{}", "ab".repeat(32)))].into(),
        namespace: "mesh-root".into(),
        gateway_namespace: "ingress".into(),
        fail_strategy: FailStrategy::FailReload,
        pull_policy: Some("Always".into()),
        pull_secret: Some("registry-credentials".into()),
        vm_env: vec![("LOG_LEVEL".into(), "debug".into())],
        target_refs: vec![("Gateway".into(), "web-gateway".into())],
        cluster_domain: "mesh.internal".into(),
    }
}

#[test]
fn every_rendered_istio_manifest_passes_istios_crd_schemas() {
    let mut manifests = Vec::new();
    for name in EXAMPLES {
        let t = example(name);
        let defaults = IstioOptions::default();
        manifests.extend(labelled(name, istio_manifests(&t, &defaults)));
        manifests.extend(labelled(
            &format!("{name} (every option)"),
            istio_manifests(&t, &every_option()),
        ));
        manifests.extend(labelled(
            &format!("{name} (--mesh)"),
            envoyfilter::render::mesh::istio_manifests(istio_manifests(&t, &defaults), &defaults),
        ));
        for (form, label) in [
            (
                EnvoyFilterForm::Inline(Code::Local {
                    filename: "/var/local/lib/wasm/meshwasm_router.wasm".into(),
                }),
                "inline local",
            ),
            (
                EnvoyFilterForm::Inline(Code::Remote {
                    uri: "https://wasm.example.com/meshwasm_router.wasm".into(),
                    cluster: "outbound|443||wasm.example.com".into(),
                    sha256: Some("cd".repeat(32)),
                }),
                "inline remote",
            ),
            (
                EnvoyFilterForm::Ecds {
                    uri: "oci://ghcr.io/meshwasm/meshwasm-router:latest".into(),
                    sha256: None,
                },
                "ECDS",
            ),
        ] {
            manifests.extend(labelled(
                &format!("{name} (EnvoyFilter, {label})"),
                envoy_filters(&t, &form, &defaults),
            ));
        }
    }
    // AuthorizationPolicies placed the other ways: by targetRefs, and
    // mesh-wide from the root namespace.
    let policies = "apiVersion: security.istio.io/v1\nkind: AuthorizationPolicy\nmetadata: {name: edge, namespace: shop}\nspec:\n  targetRefs:\n  - {kind: Gateway, group: gateway.networking.k8s.io, name: shop-gateway}\n  action: DENY\n  rules: [{to: [{operation: {paths: [/internal/*]}}]}]\n---\napiVersion: security.istio.io/v1beta1\nkind: AuthorizationPolicy\nmetadata: {name: no-debug, namespace: istio-system}\nspec:\n  action: DENY\n  rules: [{to: [{operation: {paths: ['/debug/{**}']}}]}]\n";
    let t = envoyfilter::translate::translate(policies, &Default::default()).unwrap();
    assert_eq!(t.authz.len(), 2);
    manifests.extend(labelled(
        "authorization policies by targetRefs and mesh-wide",
        istio_manifests(&t, &IstioOptions::default()),
    ));
    let inline = EnvoyFilterForm::Inline(Code::Local {
        filename: "/var/local/lib/wasm/{file}".into(),
    });
    manifests.extend(labelled(
        "authorization policies by targetRefs and mesh-wide (EnvoyFilter)",
        envoy_filters(&t, &inline, &IstioOptions::default()),
    ));
    let kinds: std::collections::BTreeSet<&str> = manifests
        .iter()
        .filter_map(|(_, m)| m["kind"].as_str())
        .collect();
    assert_eq!(
        kinds.into_iter().collect::<Vec<_>>(),
        [
            "DestinationRule",
            "EnvoyFilter",
            "Gateway",
            "Telemetry",
            "VirtualService",
            "WasmPlugin"
        ]
    );
    // Each names its namespace, so the output applies as one file: kubectl
    // refuses a file that mixes named and defaulted namespaces under `-n`.
    for (source, manifest) in &manifests {
        assert!(
            manifest["metadata"]["namespace"].is_string(),
            "{source}: no namespace"
        );
    }
    let verdict = validate(&manifests);
    assert_eq!(
        verdict.code,
        0,
        "{} manifests, problems:\n{}",
        manifests.len(),
        verdict.problems.join("\n")
    );
}

/// The check is only worth its green if it goes red: each kind of mistake
/// `kubectl apply` would refuse is reported, naming the manifest and field.
#[test]
fn the_schema_check_names_what_a_cluster_would_refuse() {
    let t = example("canary-split.yaml");
    let docs = istio_manifests(&t, &IstioOptions::default());
    let plugin = docs
        .iter()
        .find(|d| d["kind"] == "WasmPlugin")
        .unwrap()
        .clone();
    let service = docs
        .iter()
        .find(|d| d["kind"] == "VirtualService")
        .unwrap()
        .clone();
    let broken = |doc: &Value, edit: &dyn Fn(&mut Value)| {
        let mut doc = doc.clone();
        edit(&mut doc);
        doc
    };
    let cases = [
        (
            broken(&plugin, &|d| d["spec"]["phase"] = json!("LAST")),
            "/spec/phase must be equal to one of the allowed values",
        ),
        (
            broken(&plugin, &|d| {
                d["spec"]["selector"]["labels"] = json!({"app": "web"})
            }),
            "/spec/selector/labels is not a field of extensions.istio.io/v1alpha1 WasmPlugin",
        ),
        (
            broken(&plugin, &|d| d["spec"]["priority"] = json!("10")),
            "/spec/priority must be integer",
        ),
        (
            broken(&service, &|d| {
                d["spec"]["http"][0]["route"][0]["weight"] = json!(12.5);
            }),
            "/spec/http/0/route/0/weight must be integer",
        ),
        (
            broken(&service, &|d| d["spec"]["hostz"] = json!(["web"])),
            "/spec/hostz is not a field of networking.istio.io/v1 VirtualService",
        ),
        (
            json!({"apiVersion": "extensions.istio.io/v1", "kind": "WasmPlugin", "metadata": {"name": "x"}}),
            "no published schema for extensions.istio.io/v1 WasmPlugin",
        ),
    ];
    let manifests: Vec<(String, Value)> = cases
        .iter()
        .enumerate()
        .map(|(i, (doc, _))| (format!("case {i}"), doc.clone()))
        .collect();
    let verdict = validate(&manifests);
    assert_eq!(verdict.code, 1);
    for (i, (doc, want)) in cases.iter().enumerate() {
        let prefix = format!(
            "case {i} ({} {}): ",
            doc["kind"].as_str().unwrap(),
            doc["metadata"]["name"].as_str().unwrap()
        );
        assert!(
            verdict
                .problems
                .iter()
                .any(|p| p.starts_with(&prefix) && p.ends_with(want)),
            "expected `{prefix}...{want}` among:\n{}",
            verdict.problems.join("\n")
        );
    }
    // Free-form pluginConfig keys are the filter's business, not the schema's.
    assert!(
        !verdict.problems.iter().any(|p| p.contains("pluginConfig/")),
        "{}",
        verdict.problems.join("\n")
    );
}

fn documents(path: &Path) -> Vec<(String, Value)> {
    let text = std::fs::read_to_string(path).unwrap();
    let name = path.file_name().unwrap().to_string_lossy().into_owned();
    envoyfilter::yaml::load(&text)
        .unwrap_or_else(|e| panic!("{name}: {e}"))
        .into_iter()
        .map(|d| (format!("{name} #{}", d.number), d.value))
        .collect()
}

/// `examples/istio/`: the apps and the generated manifests pass the
/// schemas, and they fit together: each route's subset selects pods that
/// the apps run, and each plugin pulls the image the README publishes.
#[test]
fn the_istio_walkthrough_passes_the_schemas_and_fits_its_apps() {
    let dir = repo().join("examples/istio");
    let apps = documents(&dir.join("apps.yaml"));
    let generated = documents(&dir.join("meshwasm.yaml"));
    let all: Vec<(String, Value)> = apps.iter().chain(&generated).cloned().collect();
    let verdict = validate(&all);
    assert_eq!(verdict.code, 0, "{}", verdict.problems.join("\n"));

    let of_kind = |docs: &[(String, Value)], kind: &str| -> Vec<Value> {
        docs.iter()
            .filter(|(_, d)| d["kind"] == kind)
            .map(|(_, d)| d.clone())
            .collect()
    };
    let namespace = of_kind(&apps, "Namespace");
    assert_eq!(
        namespace[0]["metadata"]["labels"]["istio-injection"],
        "enabled"
    );
    let deployments = of_kind(&apps, "Deployment");
    let pods: Vec<&Value> = deployments
        .iter()
        .map(|d| &d["spec"]["template"]["metadata"]["labels"])
        .collect();
    let services = of_kind(&apps, "Service");
    for rule in of_kind(&generated, "DestinationRule") {
        let host = rule["spec"]["host"].as_str().unwrap();
        let service = services
            .iter()
            .find(|s| s["metadata"]["name"] == host)
            .unwrap_or_else(|| panic!("DestinationRule {host}: no such Service in apps.yaml"));
        for subset in rule["spec"]["subsets"].as_array().unwrap() {
            let wanted = service["spec"]["selector"]
                .as_object()
                .unwrap()
                .iter()
                .chain(subset["labels"].as_object().unwrap());
            let wanted: Vec<(&String, &Value)> = wanted.collect();
            assert!(
                pods.iter()
                    .any(|labels| wanted.iter().all(|(k, v)| &labels[k.as_str()] == *v)),
                "{host} subset {}: no pod has {wanted:?}",
                subset["name"]
            );
        }
    }
    let plugins = of_kind(&generated, "WasmPlugin");
    assert!(!plugins.is_empty());
    for plugin in plugins {
        let url = plugin["spec"]["url"].as_str().unwrap();
        assert!(
            ["router", "fault", "rate-limit"]
                .iter()
                .any(|f| url == format!("oci://kind-registry:5000/meshwasm/meshwasm-{f}:0.1.0")),
            "{url}"
        );
    }
}

/// The YAML blocks of a Markdown file, each with the `<!-- envoyfilter ... -->`
/// marker before it, if any.
fn yaml_blocks(text: &str) -> Vec<(Option<String>, String)> {
    let mut out = Vec::new();
    let mut marker = None;
    let mut lines = text.lines();
    while let Some(line) = lines.next() {
        if let Some(m) = line.strip_prefix("<!-- envoyfilter ") {
            marker = Some(m.trim_end_matches("-->").trim().to_owned());
        } else if line == "```yaml" {
            let body: Vec<&str> = lines.by_ref().take_while(|l| *l != "```").collect();
            out.push((marker.take(), body.join("\n") + "\n"));
        }
    }
    out
}

/// `examples/istio/rate-limit.md`: every YAML block passes the schemas,
/// every WasmPlugin's `pluginConfig` is one the rate-limit filter takes,
/// and each block marked as `envoyfilter istio` output is what envoyfilter
/// renders today from the input block of the same name.
#[test]
fn the_rate_limit_guide_passes_the_schemas_and_shows_what_envoyfilter_renders() {
    use meshwasm_core::plan::Plan as _;
    let path = repo().join("examples/istio/rate-limit.md");
    let text = std::fs::read_to_string(&path).unwrap();
    let blocks = yaml_blocks(&text);
    assert!(blocks.len() >= 8, "{} blocks", blocks.len());
    let mut manifests = Vec::new();
    for (i, (_, body)) in blocks.iter().enumerate() {
        let docs = envoyfilter::yaml::load(body)
            .unwrap_or_else(|e| panic!("rate-limit.md block {}: {e}", i + 1));
        for d in docs {
            manifests.push((
                format!("rate-limit.md block {} #{}", i + 1, d.number),
                d.value,
            ));
        }
    }
    let verdict = validate(&manifests);
    assert_eq!(verdict.code, 0, "{}", verdict.problems.join("\n"));
    let plugins: Vec<&(String, Value)> = manifests
        .iter()
        .filter(|(_, m)| m["kind"] == "WasmPlugin")
        .collect();
    assert!(plugins.len() >= 3);
    for (source, plugin) in plugins {
        meshwasm_core::rate_limit::RateLimitPlan::from_json(
            plugin["spec"]["pluginConfig"].to_string().as_bytes(),
        )
        .unwrap_or_else(|e| panic!("{source}: {e}"));
    }
    let options = IstioOptions {
        image_prefix: "oci://registry.example.com/meshwasm".into(),
        tag: "0.1.0".into(),
        ..IstioOptions::default()
    };
    let mut compared = 0;
    for (marker, input) in &blocks {
        let Some(name) = marker.as_deref().and_then(|m| m.strip_prefix("input: ")) else {
            continue;
        };
        let t =
            envoyfilter::translate::translate(input, &envoyfilter::translate::Options::default())
                .unwrap_or_else(|e| panic!("{name}: {e}"));
        let wanted = format!("istio output: {name}");
        let (_, shown) = blocks
            .iter()
            .find(|(m, _)| m.as_deref() == Some(wanted.as_str()))
            .unwrap_or_else(|| panic!("no output block for {name}"));
        let shown: Vec<Value> = envoyfilter::yaml::load(shown)
            .unwrap()
            .into_iter()
            .map(|d| d.value)
            .collect();
        assert_eq!(
            shown,
            istio_manifests(&t, &options),
            "{name}: rerender the block"
        );
        compared += 1;
    }
    assert_eq!(compared, 2);
}
