//! Translation of the Istio examples the project keeps in
//! `examples/virtual-services/`, and the errors users get for bad input.
#![allow(clippy::unwrap_used, clippy::expect_used, clippy::panic)]

use envoyfilter::render::{self, Code, EnvoyFilterForm, EnvoyOptions, Filter, IstioOptions};
use envoyfilter::translate::{Finding, Options, Placement, Severity, translate, translate_files};
use meshwasm_core::authz::AuthzPlan;
use meshwasm_core::fault::FaultPlan;
use meshwasm_core::plan::Plan;
use meshwasm_core::rate_limit::RateLimitPlan;
use meshwasm_core::router::RouterPlan;
use meshwasm_core::telemetry::TelemetryPlan;
use serde_json::Value;

fn example(name: &str) -> String {
    let path = format!(
        "{}/../examples/virtual-services/{name}",
        env!("CARGO_MANIFEST_DIR")
    );
    std::fs::read_to_string(&path).unwrap_or_else(|e| panic!("{path}: {e}"))
}

const EXAMPLES: [&str; 10] = [
    "canary-split.yaml",
    "circuit-breaker.yaml",
    "deny-admin.yaml",
    "fault-delay.yaml",
    "fault-jason-abort.yaml",
    "fault-jason-abort-v1alpha3.yaml",
    "gateway-prefixes-mirror.yaml",
    "global-rate-limit.yaml",
    "header-routing.yaml",
    "local-rate-limit.yaml",
];

/// The configuration each filter would get at a placement, compiled by the
/// filters' own code: what Envoy would load.
fn compile(config: &Value) -> (RouterPlan, FaultPlan) {
    let json = config.to_string();
    (
        RouterPlan::from_json(json.as_bytes()).unwrap(),
        FaultPlan::from_json(json.as_bytes()).unwrap(),
    )
}

fn only_error(input: &str) -> Finding {
    let rejected = translate(input, &Options::default()).unwrap_err();
    let errors: Vec<_> = rejected
        .findings
        .iter()
        .filter(|f| f.severity == Severity::Error)
        .collect();
    assert_eq!(errors.len(), 1, "{rejected}");
    errors[0].clone()
}

#[test]
fn every_example_translates_and_the_filters_accept_the_result() {
    for name in EXAMPLES {
        let t = translate(&example(name), &Options::default())
            .unwrap_or_else(|e| panic!("{name}:\n{e}"));
        assert!(!t.services.is_empty(), "{name}");
        for placement in t.placements() {
            let router = t.router_config(&placement).unwrap();
            compile(&router);
            if let Some(fault) = t.fault_config(&placement) {
                compile(&fault);
            }
        }
        for limit in &t.rate_limits {
            RateLimitPlan::from_json(limit.config.to_string().as_bytes())
                .unwrap_or_else(|e| panic!("{name}: {e}"));
        }
        for authz in &t.authz {
            AuthzPlan::from_json(authz.config.to_string().as_bytes())
                .unwrap_or_else(|e| panic!("{name}: {e}"));
        }
        for doc in render::istio_manifests(&t, &IstioOptions::default()) {
            assert!(
                doc["apiVersion"].is_string() && doc["metadata"]["name"].is_string(),
                "{name}: {doc}"
            );
        }
    }
}

#[test]
fn fault_delay_puts_both_services_in_one_filter_per_kind() {
    let t = translate(&example("fault-delay.yaml"), &Options::default()).unwrap();
    assert_eq!(t.placements(), [Placement::Mesh]);
    let router = t.router_config(&Placement::Mesh).unwrap();
    let specs = router["virtualServices"].as_array().unwrap();
    assert_eq!(specs.len(), 2);
    assert_eq!(specs[1]["hosts"][0], "details");
    // Both have faults, so the fault filter gets both.
    let fault = t.fault_config(&Placement::Mesh).unwrap();
    assert_eq!(fault["virtualServices"].as_array().unwrap().len(), 2);
    // The legacy integer `delay.percent` is honoured, and said, not warned.
    let findings: Vec<String> = t.findings.iter().map(ToString::to_string).collect();
    assert_eq!(
        findings,
        [
            "note: document 1 (VirtualService ratings) spec.http[0].fault.delay.percent (line 14): the integer percent is deprecated (v1alpha3); write percentage: {value: N}"
        ]
    );
}

/// The jason abort as the v1alpha3 write-ups give it, `abort.percent: 100`:
/// it was refused as an unknown field; now the fault filter gets it, and
/// the only finding is a note that the form is deprecated.
#[test]
fn the_v1alpha3_jason_abort_with_an_integer_percent_translates() {
    let strict = Options {
        strict: true,
        ..Options::default()
    };
    let t = translate(&example("fault-jason-abort-v1alpha3.yaml"), &strict).unwrap();
    let fault = t.fault_config(&Placement::Mesh).unwrap();
    assert_eq!(fault["http"][0]["fault"]["abort"]["percent"], 100);
    assert_eq!(t.findings.len(), 1, "{:?}", t.findings);
    assert_eq!(t.findings[0].severity, Severity::Note);
    assert_eq!(t.findings[0].path, "spec.http[0].fault.abort.percent");
    let (_, plan) = compile(&fault);
    assert_eq!(
        plan.summary(),
        "2 http routes, 1 with faults; header faults: off; maxActiveFaults: unlimited"
    );
}

#[test]
fn jason_abort_gets_a_fault_plugin_before_the_router() {
    let t = translate(&example("fault-jason-abort.yaml"), &Options::default()).unwrap();
    let docs = render::istio_manifests(&t, &IstioOptions::default());
    let fault = &docs[0];
    let router = &docs[1];
    assert_eq!(fault["spec"]["pluginName"], "meshwasm.fault");
    assert_eq!(router["spec"]["pluginName"], "meshwasm.router");
    assert_eq!(fault["spec"]["phase"], router["spec"]["phase"]);
    assert!(fault["spec"]["priority"].as_i64() > router["spec"]["priority"].as_i64());
    assert_eq!(
        fault["spec"]["pluginConfig"]["http"][0]["fault"]["abort"]["httpStatus"],
        500
    );
    // The sidecars strip client-sent hand-off headers before any filter.
    let strip = &docs[2];
    assert_eq!(strip["kind"], "EnvoyFilter");
    assert_eq!(
        strip["spec"]["configPatches"][0]["patch"]["value"]["typed_config"]["early_header_mutation_extensions"]
            [0]["typed_config"]["mutations"][0]["remove_on_match"]["key_matcher"]["prefix"],
        "x-meshwasm-"
    );
    // The companion replaces the user's VirtualService (same name) and routes by the router's header.
    let companion = &docs[3];
    assert_eq!(companion["metadata"]["name"], "ratings");
    assert_eq!(
        companion["spec"]["http"][0]["match"][0]["headers"]["x-meshwasm-cluster"]["exact"],
        "outbound||v1|ratings.default.svc.cluster.local"
    );
    assert_eq!(
        companion["spec"]["http"][0]["route"][0]["destination"]["subset"],
        "v1"
    );
}

#[test]
fn gateway_placement_uses_the_gateways_selector_and_its_https_redirect() {
    let t = translate(
        &example("gateway-prefixes-mirror.yaml"),
        &Options::default(),
    )
    .unwrap();
    let gateway = t
        .placements()
        .into_iter()
        .find(|p| matches!(p, Placement::Gateway { .. }))
        .unwrap();
    let Placement::Gateway { selector } = &gateway else {
        unreachable!()
    };
    assert_eq!(selector["istio"], "ingressgateway");
    assert_eq!(gateway.slug(), "ingressgateway");
    let config = t.router_config(&gateway).unwrap();
    assert_eq!(config["hosts"][0], "httpbin.example.com");
    assert_eq!(config["meshwasm"]["router"]["httpsRedirect"], true);
    // The mirror service stays in the mesh, without the gateway's redirect.
    let mesh = t.router_config(&Placement::Mesh).unwrap();
    assert_eq!(mesh["hosts"][0], "httpbin");
    assert!(mesh.get("meshwasm").is_none());
    // A mirror without a port cannot name an Istio cluster: said, with its line.
    let mirror = &t.findings[0];
    assert_eq!(mirror.path, "spec.http[0].mirror");
    assert_eq!(mirror.line, Some(54));
    assert_eq!(mirror.source.as_ref().unwrap().name, "httpbin-mirror");
    // A plugin selects pods of its own namespace only: the gateway's plugins
    // go where the gateway pods run, not where the Gateway resource is.
    let options = IstioOptions {
        namespace: "meshwasm-demo".into(),
        gateway_namespace: "ingress".into(),
        ..IstioOptions::default()
    };
    let manifests = render::istio_manifests(&t, &options);
    let namespaces: Vec<(&str, String)> = manifests
        .iter()
        .filter(|d| d["kind"] == "WasmPlugin")
        .map(|d| {
            let selected = d["spec"]["selector"]["matchLabels"]["istio"].as_str();
            (
                selected.unwrap_or("(mesh)"),
                d["metadata"]["namespace"].as_str().unwrap().to_owned(),
            )
        })
        .collect();
    assert_eq!(
        namespaces,
        [
            ("(mesh)", "meshwasm-demo".to_owned()),
            ("ingressgateway", "ingress".to_owned())
        ]
    );
}

/// Two Gateways on the same pods: those pods run one filter chain, so one
/// router holds both VirtualServices, each with its own gateway's redirect.
#[test]
fn gateways_on_the_same_pods_share_one_router() {
    let extras = "apiVersion: networking.istio.io/v1
kind: Gateway
metadata: {name: web-gateway}
spec:
  selector: {istio: ingressgateway}
  servers: [{port: {number: 80, name: http, protocol: HTTP}, hosts: [web.example.com]}]
";
    let t = translate_files(
        &[
            ("canary-split.yaml".into(), example("canary-split.yaml")),
            (
                "gateway-prefixes-mirror.yaml".into(),
                example("gateway-prefixes-mirror.yaml"),
            ),
            ("extras.yaml".into(), extras.into()),
        ],
        &Options::default(),
    )
    .unwrap();
    let placements = t.placements();
    assert_eq!(placements.len(), 2, "{placements:?}");
    let config = t.router_config(&placements[1]).unwrap();
    let specs = config["virtualServices"].as_array().unwrap();
    let redirects: Vec<(&str, bool)> = specs
        .iter()
        .map(|s| {
            (
                s["hosts"][0].as_str().unwrap(),
                s["meshwasm"]["router"]["httpsRedirect"] == true,
            )
        })
        .collect();
    assert_eq!(redirects, [("*", false), ("httpbin.example.com", true)]);
    let plugins = render::istio_manifests(&t, &IstioOptions::default());
    let names: Vec<&str> = plugins
        .iter()
        .filter(|d| d["kind"] == "WasmPlugin")
        .map(|d| d["metadata"]["name"].as_str().unwrap())
        .collect();
    assert_eq!(
        names,
        ["meshwasm-router-mesh", "meshwasm-router-ingressgateway"]
    );
}

#[test]
fn strict_turns_every_warning_into_an_error() {
    let strict = Options {
        strict: true,
        ..Options::default()
    };
    let rejected = translate(&example("canary-split.yaml"), &strict).unwrap_err();
    assert!(
        rejected
            .findings
            .iter()
            .all(|f| f.severity == Severity::Error)
    );
    assert!(
        rejected.to_string().contains("spec.gateways[0] (line 24)"),
        "{rejected}"
    );
    // An example without warnings passes strict mode.
    translate(&example("fault-delay.yaml"), &strict).unwrap();
}

#[test]
fn a_gateway_in_another_file_serves_the_virtual_service() {
    let gateway = "apiVersion: networking.istio.io/v1\nkind: Gateway\nmetadata: {name: web-gateway}\nspec:\n  selector: {app: edge}\n  servers: [{port: {number: 80, name: http, protocol: HTTP}, hosts: ['*']}]\n";
    let files = [
        ("gw.yaml".to_owned(), gateway.to_owned()),
        ("canary.yaml".to_owned(), example("canary-split.yaml")),
    ];
    let t = translate_files(
        &files,
        &Options {
            strict: true,
            ..Options::default()
        },
    )
    .unwrap();
    let Placement::Gateway { selector, .. } = &t.placements()[0] else {
        panic!()
    };
    assert_eq!(selector["app"], "edge");
}

#[test]
fn bad_input_names_document_resource_path_and_line() {
    let vs = |spec: &str| {
        format!(
            "apiVersion: networking.istio.io/v1\nkind: DestinationRule\nmetadata: {{name: r}}\nspec: {{host: r}}\n---\napiVersion: networking.istio.io/v1\nkind: VirtualService\nmetadata:\n  name: reviews\nspec:\n{spec}"
        )
    };
    // Weights summing to 0.
    let e = only_error(&vs(
        "  hosts: [reviews]\n  http:\n  - route:\n    - destination: {host: reviews, subset: a}\n      weight: 0\n    - destination: {host: reviews, subset: b}\n      weight: 0\n",
    ));
    let source = e.source.clone().unwrap();
    assert_eq!(
        (source.document, source.kind.as_str(), source.name.as_str()),
        (2, "VirtualService", "reviews")
    );
    assert!(e.path.starts_with("spec.http[0].route"), "{e}");
    assert_eq!(e.line, Some(13), "{e}");
    // A regex that does not compile.
    let e = only_error(&vs(
        "  hosts: [reviews]\n  http:\n  - match:\n    - headers:\n        cookie: {regex: 'user=(jason'}\n    route:\n    - destination: {host: reviews}\n",
    ));
    assert_eq!(e.path, "spec.http[0].match[0].headers.cookie.regex", "{e}");
    assert_eq!(e.line, Some(15), "{e}");
    assert!(e.message.contains("user=(jason"), "{e}");
    // Missing hosts.
    let e = only_error(&vs(
        "  http:\n  - route:\n    - destination: {host: reviews}\n",
    ));
    assert_eq!(e.path, "spec.hosts", "{e}");
    assert_eq!(e.line, Some(10), "{e}"); // missing: the line of `spec`
    // A misspelt field.
    let e = only_error(&vs("  hosts: [reviews]\n  http:\n  - rout: []\n"));
    assert_eq!(e.path, "spec.http[0].rout", "{e}");
    assert!(e.message.contains("unknown field `rout`"), "{e}");
    assert_eq!(e.line, Some(13), "{e}");
}

#[test]
fn unknown_kinds_and_bad_yaml_are_errors_with_lines() {
    let e = only_error("apiVersion: apps/v1\nkind: Deployment\nmetadata: {name: web}\nspec: {}\n");
    assert_eq!(e.path, "kind");
    assert!(e.message.contains("unknown kind \"Deployment\""), "{e}");
    let e = only_error(
        "apiVersion: networking.istio.io/v1\nkind: VirtualService\nmetadata: {name: x}\nspec:\n  hosts: [a\n",
    );
    assert!(e.message.starts_with("not valid YAML"), "{e}");
    // The `[` that is never closed, not the line where the parser gave up.
    assert_eq!(e.line, Some(5), "{e}");
    assert!(e.message.contains("this `[` is never closed"), "{e}");
    let e = only_error(
        "apiVersion: networking.istio.io/v1\nkind: VirtualService\nspec: {hosts: [a]}\n",
    );
    assert_eq!(e.path, "metadata.name");
    let e = only_error("# only a comment\n");
    assert!(e.message.contains("no documents"), "{e}");
    // Other Istio kinds are not lost in silence either.
    let rejected = translate(
        "apiVersion: networking.istio.io/v1\nkind: Sidecar\nmetadata: {name: x}\nspec: {egress: []}\n",
        &Options { strict: true, ..Options::default() },
    )
    .unwrap_err();
    assert!(
        rejected.to_string().contains("Sidecar is not translated"),
        "{rejected}"
    );
}

#[test]
fn destination_rule_subsets_and_policies_are_checked() {
    let input = "apiVersion: networking.istio.io/v1\nkind: DestinationRule\nmetadata: {name: reviews}\nspec:\n  host: reviews\n  trafficPolicy: {loadBalancer: {simple: LEAST_REQUEST}}\n  subsets:\n  - name: v1\n    labels: {version: v1}\n---\napiVersion: networking.istio.io/v1\nkind: VirtualService\nmetadata: {name: reviews}\nspec:\n  hosts: [reviews]\n  http:\n  - route:\n    - destination: {host: reviews, subset: v3}\n";
    let t = translate(input, &Options::default()).unwrap();
    let paths: Vec<&str> = t.findings.iter().map(|f| f.path.as_str()).collect();
    // The load balancer is rendered (tests/traffic_policy.rs), so only the
    // missing subset is said.
    assert_eq!(paths, ["spec.http[0].route[0].destination.subset"]);
    assert!(
        t.findings[0].message.contains("subset \"v3\""),
        "{}",
        t.findings[0]
    );
}

#[test]
fn notes_from_the_filters_become_warnings_with_paths() {
    let input = "apiVersion: networking.istio.io/v1\nkind: VirtualService\nmetadata: {name: r}\nspec:\n  hosts: [r]\n  exportTo: ['.']\n  tcp:\n  - route: [{destination: {host: r}}]\n  http:\n  - match: [{uri: {prefix: /a}, statPrefix: a}]\n    route: [{destination: {host: r}}]\n";
    let t = translate(input, &Options::default()).unwrap();
    let paths: Vec<&str> = t.findings.iter().map(|f| f.path.as_str()).collect();
    assert!(paths.contains(&"spec"), "{paths:?}"); // tcp routes: ignored by HTTP filters
    assert!(
        paths.contains(&"spec.http[0].match[0].statPrefix"),
        "{paths:?}"
    );
    assert!(paths.contains(&"spec.exportTo"), "{paths:?}");
}

#[test]
fn envoy_filter_forms_carry_the_same_configuration() {
    let t = translate(&example("header-routing.yaml"), &Options::default()).unwrap();
    let options = IstioOptions::default();
    let inline = render::envoy_filters(
        &t,
        &EnvoyFilterForm::Inline(Code::Local {
            filename: "/wasm/{file}".into(),
        }),
        &options,
    );
    let mesh = inline
        .iter()
        .find(|d| d["metadata"]["name"] == "meshwasm-router-mesh")
        .unwrap();
    let patch = &mesh["spec"]["configPatches"][0];
    assert_eq!(patch["match"]["context"], "SIDECAR_OUTBOUND");
    let config = &patch["patch"]["value"]["typed_config"]["config"];
    assert_eq!(
        config["vm_config"]["code"]["local"]["filename"],
        "/wasm/meshwasm_router.wasm"
    );
    let value: Value =
        serde_json::from_str(config["configuration"]["value"].as_str().unwrap()).unwrap();
    // bookinfo-rule (gateways: [my-gateway, mesh]) and reviews both apply to sidecars.
    let hosts: Vec<&str> = value["virtualServices"]
        .as_array()
        .unwrap()
        .iter()
        .map(|s| s["hosts"][0].as_str().unwrap())
        .collect();
    assert_eq!(hosts, ["reviews.prod.svc.cluster.local", "reviews"]);
    let ecds = render::envoy_filters(
        &t,
        &EnvoyFilterForm::Ecds {
            uri: "oci://r.example/{image}:1".into(),
            sha256: None,
        },
        &options,
    );
    let mesh = ecds
        .iter()
        .find(|d| d["metadata"]["name"] == "meshwasm-router-mesh")
        .unwrap();
    let patches = mesh["spec"]["configPatches"].as_array().unwrap();
    assert_eq!(patches[0]["applyTo"], "EXTENSION_CONFIG");
    assert_eq!(
        patches[0]["patch"]["value"]["typed_config"]["config"]["vm_config"]["code"]["remote"]["http_uri"]
            ["uri"],
        "oci://r.example/meshwasm-router:1"
    );
    assert_eq!(
        patches[1]["patch"]["value"]["config_discovery"]["type_urls"][0],
        render::WASM_FILTER_TYPE
    );
    assert_eq!(
        patches[1]["patch"]["value"]["name"],
        patches[0]["patch"]["value"]["name"]
    );
}

#[test]
fn wasm_plugin_options_reach_the_manifest() {
    let t = translate(&example("fault-jason-abort.yaml"), &Options::default()).unwrap();
    let mut options = IstioOptions::default();
    options
        .sha256
        .insert(Filter::Router, format!("sha256:{}", "ab".repeat(32)));
    options.pull_secret = Some("regcred".into());
    options.vm_env = vec![("LOG".into(), "debug".into())];
    options.target_refs = vec![("Service".into(), "ratings".into())];
    let docs = render::istio_manifests(&t, &options);
    let router = docs
        .iter()
        .find(|d| d["spec"]["pluginName"] == "meshwasm.router")
        .unwrap();
    assert_eq!(router["spec"]["sha256"], "ab".repeat(32));
    assert_eq!(router["spec"]["imagePullSecret"], "regcred");
    assert_eq!(router["spec"]["vmConfig"]["env"][0]["name"], "LOG");
    assert_eq!(router["spec"]["targetRefs"][0]["kind"], "Service");
    assert!(
        router["spec"].get("selector").is_none(),
        "selector and targetRefs are exclusive"
    );
}

#[test]
fn the_envoy_bootstrap_has_a_cluster_per_destination_and_mirror() {
    let t = translate(
        &example("gateway-prefixes-mirror.yaml"),
        &Options::default(),
    )
    .unwrap();
    let mut options = EnvoyOptions::default();
    options
        .upstreams
        .insert("httpbin".into(), vec![("127.0.0.1".into(), 8000)]);
    let bootstrap = render::envoy_bootstrap(&t, &options);
    let clusters: Vec<&str> = bootstrap["static_resources"]["clusters"]
        .as_array()
        .unwrap()
        .iter()
        .map(|c| c["name"].as_str().unwrap())
        .collect();
    assert_eq!(
        clusters,
        [
            "outbound|8000||httpbin",
            "outbound||v1|httpbin",
            "outbound||v2|httpbin"
        ]
    );
    let filters = &bootstrap["static_resources"]["listeners"][0]["filter_chains"][0]["filters"][0]
        ["typed_config"]["http_filters"];
    assert_eq!(filters[0]["name"], "meshwasm.router");
    assert_eq!(filters[1]["name"], "envoy.filters.http.router");
}

/// Bookinfo's 50/50 reviews split (namespace `default`) beside a
/// DestinationRule for reviews in `prod`: the rule is another service's,
/// so its subsets say nothing about `v3` here. It used to warn (short names
/// were compared), and `--strict` failed on it.
#[test]
fn a_destination_rule_of_another_namespace_does_not_judge_the_subsets() {
    let vs = "apiVersion: networking.istio.io/v1\nkind: VirtualService\nmetadata: {name: reviews}\nspec:\n  hosts: [reviews]\n  http:\n  - route:\n    - destination: {host: reviews, subset: v1}\n      weight: 50\n    - destination: {host: reviews, subset: v3}\n      weight: 50\n";
    let prod_rule = "apiVersion: networking.istio.io/v1\nkind: DestinationRule\nmetadata: {name: reviews-destination}\nspec:\n  host: reviews.prod.svc.cluster.local\n  subsets:\n  - name: v1\n    labels: {version: v1}\n  - name: v2\n    labels: {version: v2}\n";
    let strict = Options {
        strict: true,
        ..Options::default()
    };
    let files = [
        ("reviews-5050.yaml".to_owned(), vs.to_owned()),
        ("destinationrule.yaml".to_owned(), prod_rule.to_owned()),
    ];
    let t = translate_files(&files, &strict).unwrap();
    assert!(t.findings.is_empty(), "{:?}", t.findings);
    // The same rule in the VirtualService's namespace does judge them.
    let here = prod_rule.replace("reviews.prod.svc.cluster.local", "reviews");
    let files = [files[0].clone(), ("destinationrule.yaml".to_owned(), here)];
    let t = translate_files(&files, &Options::default()).unwrap();
    let findings: Vec<String> = t.findings.iter().map(ToString::to_string).collect();
    assert_eq!(
        findings,
        [
            "warning: reviews-5050.yaml: document 1 (VirtualService reviews) spec.http[0].route[1].destination.subset (line 10): subset \"v3\" of reviews is not defined by DestinationRule reviews-destination (it defines v1, v2); Istio answers 503 for it"
        ]
    );
}

/// A file with only a DestinationRule has no router, so its bootstrap has
/// no route that follows `x-meshwasm-cluster`: a client sending one got
/// 503 `no_cluster` from that route; now every request gets the 404.
#[test]
fn a_bootstrap_without_virtual_services_routes_nothing_by_header() {
    let rule = "apiVersion: networking.istio.io/v1\nkind: DestinationRule\nmetadata: {name: web}\nspec:\n  host: web\n  subsets:\n  - {name: v1, labels: {version: v1}}\n";
    let t = translate(rule, &Options::default()).unwrap();
    let bootstrap = render::envoy_bootstrap(&t, &EnvoyOptions::default());
    let hcm = &bootstrap["static_resources"]["listeners"][0]["filter_chains"][0]["filters"][0]["typed_config"];
    let routes = hcm["route_config"]["virtual_hosts"][0]["routes"]
        .as_array()
        .unwrap();
    assert_eq!(routes.len(), 1, "{routes:?}");
    assert_eq!(routes[0]["direct_response"]["status"], 404);
    assert_eq!(hcm["use_remote_address"], true);
}

/// A delegate VirtualService (no hosts, named by another's `delegate`) got
/// the advice to add `hosts: ["*"]`, which Istio forbids for a delegate.
/// Both sides of a delegation now say it is not supported and how to inline.
#[test]
fn delegation_is_refused_with_how_to_inline_it() {
    let delegate = "apiVersion: networking.istio.io/v1\nkind: VirtualService\nmetadata: {name: productpage, namespace: nsA}\nspec:\n  http:\n  - match: [{uri: {prefix: /productpage/v1}}]\n    route: [{destination: {host: productpage-v1.nsA.svc.cluster.local}}]\n";
    let err = translate(delegate, &Options::default()).unwrap_err();
    let message = err.to_string();
    assert!(!message.contains("[\"*\"]"), "{message}");
    assert!(
        message.contains(
            "spec.hosts (line 4): is not supported: a VirtualService without hosts is a delegate"
        ),
        "{message}"
    );
    let root = "apiVersion: networking.istio.io/v1\nkind: VirtualService\nmetadata: {name: bookinfo}\nspec:\n  hosts: [bookinfo.com]\n  http:\n  - match: [{uri: {prefix: /productpage}}]\n    delegate: {name: productpage, namespace: nsA}\n";
    let err = translate(root, &Options::default()).unwrap_err();
    assert!(
        err.to_string().contains(
            "spec.http[0].delegate (line 8): is not supported: delegation is joined by istiod"
        ),
        "{err}"
    );
}

const SERVICE_ENTRIES: &str = "apiVersion: networking.istio.io/v1\nkind: ServiceEntry\nmetadata: {name: payments}\nspec:\n  hosts: [payments.example.com]\n  ports:\n  - {number: 443, name: https, protocol: TLS}\n  resolution: DNS\n---\napiVersion: networking.istio.io/v1\nkind: ServiceEntry\nmetadata: {name: legacy}\nspec:\n  hosts: [legacy.internal]\n  ports:\n  - {number: 8080, name: http, protocol: HTTP}\n  resolution: STATIC\n  endpoints:\n  - address: 10.0.0.7\n  - {address: 10.0.0.8, ports: {http: 9090}}\n---\napiVersion: networking.istio.io/v1\nkind: ServiceEntry\nmetadata: {name: anything}\nspec:\n  hosts: ['*.example.org']\n  ports:\n  - {number: 80, name: http, protocol: HTTP}\n  resolution: NONE\n";

/// ServiceEntries were reported as "keep applying it to Istio" while
/// `envoyfilter istio` wrote nothing for them. They are passed through now,
/// and the plain Envoy output turns DNS and STATIC ones into clusters.
#[test]
fn service_entries_are_passed_to_istio_and_become_envoy_clusters() {
    let t = translate(SERVICE_ENTRIES, &Options::default()).unwrap();
    let docs = render::istio_manifests(&t, &IstioOptions::default());
    let kinds: Vec<&str> = docs.iter().map(|d| d["kind"].as_str().unwrap()).collect();
    assert_eq!(kinds, ["ServiceEntry", "ServiceEntry", "ServiceEntry"]);
    assert_eq!(docs[1]["metadata"]["namespace"], "default");

    let bootstrap = render::envoy_bootstrap(&t, &EnvoyOptions::default());
    let clusters = bootstrap["static_resources"]["clusters"]
        .as_array()
        .unwrap();
    let summary: Vec<(String, String, Vec<String>)> = clusters
        .iter()
        .map(|c| {
            let endpoints = c["load_assignment"]["endpoints"][0]["lb_endpoints"]
                .as_array()
                .unwrap()
                .iter()
                .map(|e| {
                    let a = &e["endpoint"]["address"]["socket_address"];
                    format!("{}:{}", a["address"].as_str().unwrap(), a["port_value"])
                })
                .collect();
            (
                c["name"].as_str().unwrap().to_owned(),
                c["type"].as_str().unwrap().to_owned(),
                endpoints,
            )
        })
        .collect();
    assert_eq!(
        summary,
        [
            (
                "outbound|443||payments.example.com".to_owned(),
                "STRICT_DNS".to_owned(),
                vec!["payments.example.com:443".to_owned()]
            ),
            (
                "outbound|8080||legacy.internal".to_owned(),
                "STATIC".to_owned(),
                vec!["10.0.0.7:8080".to_owned(), "10.0.0.8:9090".to_owned()]
            ),
        ]
    );
    // The one plain Envoy cannot render is said, not dropped in silence.
    let findings: Vec<String> = t.findings.iter().map(ToString::to_string).collect();
    assert_eq!(
        findings,
        [
            "warning: document 3 (ServiceEntry anything) spec.resolution (line 29): resolution NONE (Envoy's original destination) is not rendered in the plain Envoy output; Istio gets the ServiceEntry as it is"
        ]
    );
}

/// The local rate limit example as Istio's task writes it (a TypedStruct),
/// and the same config written directly with its `@type`.
fn rate_limit_forms() -> [(&'static str, String); 2] {
    let typed_struct = example("local-rate-limit.yaml");
    let mut docs: Vec<Value> = envoyfilter::yaml::load(&typed_struct)
        .unwrap()
        .into_iter()
        .map(|d| d.value)
        .collect();
    let typed = &mut docs[0]["spec"]["configPatches"][0]["patch"]["value"]["typed_config"];
    let mut direct = serde_json::json!({"@type": typed["type_url"]});
    for (k, v) in typed["value"].as_object().unwrap() {
        direct[k] = v.clone();
    }
    *typed = direct;
    let direct = envoyfilter::yaml::dump(&docs);
    assert!(!direct.contains("TypedStruct"), "{direct}");
    [("TypedStruct", typed_struct), ("direct @type", direct)]
}

/// An EnvoyFilter with one patch that inserts a local rate limit with this
/// (direct) config, indented for `typed_config`, plus `extra` patches.
fn local_rate_limit(config: &str, extra: &str) -> String {
    format!(
        "apiVersion: networking.istio.io/v1alpha3\nkind: EnvoyFilter\nmetadata: {{name: rl, namespace: shop}}\nspec:\n  workloadSelector:\n    labels: {{app: web}}\n  configPatches:\n  - applyTo: HTTP_FILTER\n    match:\n      context: SIDECAR_INBOUND\n      listener:\n        portNumber: 8080\n        filterChain:\n          filter:\n            name: envoy.filters.network.http_connection_manager\n            subFilter: {{name: envoy.filters.http.router}}\n    patch:\n      operation: INSERT_BEFORE\n      value:\n        name: envoy.filters.http.local_ratelimit\n        typed_config:\n          \"@type\": type.googleapis.com/envoy.extensions.filters.http.local_ratelimit.v3.LocalRateLimit\n{config}{extra}"
    )
}

const BUCKET: &str = "          stat_prefix: rl\n          token_bucket: {max_tokens: 2, tokens_per_fill: 2, fill_interval: 1s}\n          filter_enabled: {default_value: {numerator: 100}}\n          filter_enforced: {default_value: {numerator: 100}}\n";

#[test]
fn istios_local_rate_limit_becomes_the_rate_limit_filter_in_both_forms() {
    let strict = Options {
        strict: true,
        ..Options::default()
    };
    for (form, input) in rate_limit_forms() {
        let t = translate(&input, &strict).unwrap_or_else(|e| panic!("{form}:\n{e}"));
        assert_eq!(t.rate_limits.len(), 1, "{form}");
        let limit = &t.rate_limits[0];
        assert_eq!(limit.selector["app"], "productpage", "{form}");
        assert_eq!(limit.context, "SIDECAR_INBOUND", "{form}");
        assert!(limit.config.get("@type").is_none(), "{form}");
        let config = &limit.config;
        assert_eq!(config["stat_prefix"], "http_local_rate_limiter", "{form}");
        assert_eq!(config["token_bucket"]["fill_interval"], "60s", "{form}");
        assert_eq!(
            config["rate_limits"][0]["actions"][0]["request_headers"]["header_name"], "x-client",
            "{form}"
        );
        // The runtime keys are notes, by path and line, not warnings.
        let findings: Vec<String> = t.findings.iter().map(ToString::to_string).collect();
        assert_eq!(findings.len(), 2, "{form}: {findings:?}");
        assert!(t.findings.iter().all(|f| f.severity == Severity::Note));
        let value = if form == "TypedStruct" { ".value" } else { "" };
        assert_eq!(
            t.findings[0].path,
            format!(
                "spec.configPatches[0].patch.value.typed_config{value}.filter_enabled.runtime_key"
            ),
            "{form}"
        );
        let line = envoyfilter::yaml::load(&input).unwrap()[0]
            .position(&t.findings[0].path)
            .unwrap()
            .line;
        assert_eq!(t.findings[0].line, Some(line), "{form}");
        if form == "TypedStruct" {
            assert_eq!(line, 44);
        }
        // Istio: one rate-limit WasmPlugin on productpage's inbound side,
        // before the router of the VirtualService beside it.
        let docs = render::istio_manifests(&t, &IstioOptions::default());
        let plugin = &docs[0];
        assert_eq!(plugin["kind"], "WasmPlugin");
        assert_eq!(
            plugin["metadata"]["name"],
            "meshwasm-rate-limit-filter-local-ratelimit-svc"
        );
        assert_eq!(plugin["metadata"]["namespace"], "default");
        let spec = &plugin["spec"];
        assert_eq!(
            spec["url"],
            "oci://ghcr.io/meshwasm/meshwasm-rate-limit:latest"
        );
        assert_eq!(spec["selector"]["matchLabels"]["app"], "productpage");
        assert_eq!(spec["match"], serde_json::json!([{"mode": "SERVER"}]));
        assert_eq!(
            (&spec["phase"], &spec["priority"]),
            (&"STATS".into(), &30.into())
        );
        assert_eq!(spec["pluginConfig"], *config);
        assert!(
            docs.iter().all(|d| d["kind"] != "EnvoyFilter"
                || d["metadata"]["name"] != "filter-local-ratelimit-svc")
        );
        let router = docs
            .iter()
            .find(|d| d["metadata"]["name"] == "meshwasm-router-mesh")
            .unwrap();
        assert!(spec["priority"].as_i64() > router["spec"]["priority"].as_i64());
        // Plain Envoy: the Wasm filter first, with the config as its string.
        let bootstrap = render::envoy_bootstrap(&t, &EnvoyOptions::default());
        let filters = &bootstrap["static_resources"]["listeners"][0]["filter_chains"][0]["filters"]
            [0]["typed_config"]["http_filters"];
        let names: Vec<&str> = filters
            .as_array()
            .unwrap()
            .iter()
            .map(|f| f["name"].as_str().unwrap())
            .collect();
        assert_eq!(
            names,
            [
                "meshwasm.rate-limit",
                "meshwasm.router",
                "envoy.filters.http.router"
            ]
        );
        let wasm = &filters[0]["typed_config"]["config"];
        assert_eq!(
            wasm["vm_config"]["code"]["local"]["filename"],
            "target/wasm32-wasip1/wasm/meshwasm_rate_limit.wasm"
        );
        let passed: Value =
            serde_json::from_str(wasm["configuration"]["value"].as_str().unwrap()).unwrap();
        assert_eq!(passed, *config);
        // EnvoyFilter output: the Wasm filter where the native one was.
        let form_ = EnvoyFilterForm::Inline(Code::Local {
            filename: "/var/local/lib/wasm/{file}".into(),
        });
        let docs = render::envoy_filters(&t, &form_, &IstioOptions::default());
        let patch = &docs[0]["spec"]["configPatches"][0];
        assert_eq!(
            docs[0]["spec"]["workloadSelector"]["labels"]["app"],
            "productpage"
        );
        assert_eq!(patch["match"]["context"], "SIDECAR_INBOUND");
        assert_eq!(patch["patch"]["operation"], "INSERT_BEFORE");
        assert_eq!(
            patch["patch"]["value"]["typed_config"]["config"]["vm_config"]["code"]["local"]["filename"],
            "/var/local/lib/wasm/meshwasm_rate_limit.wasm"
        );
    }
}

#[test]
fn a_bad_rate_limit_config_is_the_filters_error_at_the_yaml_path_and_line() {
    // Istio's task with a zero fill interval: the filter's own refusal.
    let input =
        example("local-rate-limit.yaml").replacen("fill_interval: 60s", "fill_interval: 0s", 1);
    let e = only_error(&input);
    assert_eq!(e.source.as_ref().unwrap().kind, "EnvoyFilter");
    assert_eq!(
        e.path,
        "spec.configPatches[0].patch.value.typed_config.value.token_bucket.fill_interval"
    );
    assert_eq!(e.line, Some(42), "{e}");
    // A misspelt field, in camelCase: named as written.
    let e = only_error(&local_rate_limit(
        &BUCKET.replace(
            "stat_prefix: rl",
            "statPrefix: rl\n          tokenBuckt: {}",
        ),
        "",
    ));
    assert_eq!(
        e.path, "spec.configPatches[0].patch.value.typed_config.tokenBuckt",
        "{e}"
    );
    assert!(e.message.contains("unknown field `tokenBuckt`"), "{e}");
    assert!(!e.message.contains("column"), "no JSON position: {e}");
    assert_eq!(e.line, Some(24), "{e}");
    // What the filter refuses by name.
    let e = only_error(&local_rate_limit(
        &format!("{BUCKET}          local_cluster_rate_limit: {{}}\n"),
        "",
    ));
    assert_eq!(
        e.path, "spec.configPatches[0].patch.value.typed_config.local_cluster_rate_limit",
        "{e}"
    );
    assert_eq!(e.line, Some(27), "{e}");
    // A TypedStruct of another type.
    let e = only_error(&example("local-rate-limit.yaml").replace(
        "type_url: type.googleapis.com/envoy.extensions.filters.http.local_ratelimit.v3.LocalRateLimit",
        "type_url: type.googleapis.com/envoy.extensions.filters.http.ratelimit.v3.RateLimit",
    ));
    assert_eq!(
        e.path, "spec.configPatches[0].patch.value.typed_config.type_url",
        "{e}"
    );
}

#[test]
fn per_route_overrides_are_reported_and_route_rate_limits_move_inline() {
    // Istio's per-route variant: typed_per_filter_config on the route.
    let per_route = "  - applyTo: HTTP_ROUTE\n    match:\n      context: SIDECAR_INBOUND\n      routeConfiguration:\n        vhost:\n          name: inbound|http|9080\n          route: {action: ANY}\n    patch:\n      operation: MERGE\n      value:\n        typed_per_filter_config:\n          envoy.filters.http.local_ratelimit:\n            \"@type\": type.googleapis.com/udpa.type.v1.TypedStruct\n            type_url: type.googleapis.com/envoy.extensions.filters.http.local_ratelimit.v3.LocalRateLimit\n            value: {stat_prefix: per_route}\n";
    let t = translate(&local_rate_limit(BUCKET, per_route), &Options::default()).unwrap();
    assert_eq!(t.rate_limits.len(), 1);
    assert_eq!(t.rate_limits[0].port, Some(8080));
    let warnings: Vec<&Finding> = t
        .findings
        .iter()
        .filter(|f| f.severity == Severity::Warning)
        .collect();
    assert_eq!(warnings.len(), 1, "{:?}", t.findings);
    assert_eq!(
        warnings[0].path,
        "spec.configPatches[1].patch.value.typed_per_filter_config.envoy.filters.http.local_ratelimit"
    );
    assert_eq!(warnings[0].line, Some(38), "{}", warnings[0]);
    assert!(
        warnings[0].message.contains("not carried over"),
        "{}",
        warnings[0]
    );
    let strict = Options {
        strict: true,
        ..Options::default()
    };
    assert!(translate(&local_rate_limit(BUCKET, per_route), &strict).is_err());
    // The port reaches the WasmPlugin.
    let plugin = render::rate_limit_plugin(&t.rate_limits[0], &IstioOptions::default());
    assert_eq!(
        plugin["spec"]["match"],
        serde_json::json!([{"mode": "SERVER", "ports": [{"number": 8080}]}])
    );

    // Route rate_limits, on every route: moved inline, with a note.
    let descriptors = "          descriptors:\n          - entries: [{key: client}]\n            token_bucket: {max_tokens: 1, fill_interval: 60s}\n";
    let route = |action: &str| {
        format!(
            "  - applyTo: HTTP_ROUTE\n    match:\n      context: SIDECAR_INBOUND\n      routeConfiguration:\n        vhost:\n          route: {{action: {action}}}\n    patch:\n      operation: MERGE\n      value:\n        route:\n          rate_limits:\n          - actions:\n            - request_headers: {{header_name: x-client, descriptor_key: client}}\n"
        )
    };
    let input = local_rate_limit(&format!("{BUCKET}{descriptors}"), &route("ANY"));
    let t = translate(&input, &strict).unwrap_or_else(|e| panic!("{e}"));
    let config = &t.rate_limits[0].config;
    assert_eq!(
        config["rate_limits"][0]["actions"][0]["request_headers"]["descriptor_key"],
        "client"
    );
    RateLimitPlan::from_json(config.to_string().as_bytes()).unwrap();
    assert_eq!(t.findings.len(), 1, "{:?}", t.findings);
    assert_eq!(t.findings[0].severity, Severity::Note);
    assert_eq!(
        t.findings[0].path,
        "spec.configPatches[1].patch.value.route.rate_limits"
    );
    // On some routes only: moved, but the user is warned the scope grew.
    let t = translate(
        &local_rate_limit(&format!("{BUCKET}{descriptors}"), &route("ROUTE")),
        &Options::default(),
    )
    .unwrap();
    assert_eq!(t.findings[0].severity, Severity::Warning);
    assert!(t.rate_limits[0].config.get("rate_limits").is_some());
    // Two route patches: which filter they belong to is the user's call.
    let two = format!("{}{}", route("ANY"), route("ANY"));
    let t = translate(&local_rate_limit(BUCKET, &two), &Options::default()).unwrap();
    assert!(t.rate_limits[0].config.get("rate_limits").is_none());
    let paths: Vec<&str> = t.findings.iter().map(|f| f.path.as_str()).collect();
    assert_eq!(
        paths,
        [
            "spec.configPatches[1].patch.value.route.rate_limits",
            "spec.configPatches[2].patch.value.route.rate_limits"
        ]
    );
    // A moved action the filter refuses is named where the user wrote it.
    let bad = route("ANY").replace(
        "request_headers: {header_name: x-client, descriptor_key: client}",
        "source_cluster: {}",
    );
    let e = only_error(&local_rate_limit(&format!("{BUCKET}{descriptors}"), &bad));
    assert_eq!(
        e.path, "spec.configPatches[1].patch.value.route.rate_limits[0].actions[0].source_cluster",
        "{e}"
    );
    assert_eq!(e.line, Some(42), "{e}");
}

#[test]
fn other_envoy_filters_and_patches_are_kept_for_istio() {
    // Not about the local rate limit: today's warning, nothing rendered.
    let lua = "apiVersion: networking.istio.io/v1alpha3\nkind: EnvoyFilter\nmetadata: {name: lua}\nspec:\n  configPatches:\n  - applyTo: HTTP_FILTER\n    patch:\n      operation: INSERT_BEFORE\n      value: {name: envoy.filters.http.lua}\n";
    let t = translate(lua, &Options::default()).unwrap();
    assert!(t.rate_limits.is_empty());
    assert_eq!(t.findings.len(), 1);
    assert_eq!(t.findings[0].path, "kind");
    assert!(
        t.findings[0]
            .message
            .contains("EnvoyFilter is not translated")
    );
    // Beside a local rate limit: that patch is named, to keep apart.
    let extra = "  - applyTo: HTTP_FILTER\n    patch:\n      operation: INSERT_BEFORE\n      value: {name: envoy.filters.http.lua}\n";
    let t = translate(&local_rate_limit(BUCKET, extra), &Options::default()).unwrap();
    assert_eq!(t.rate_limits.len(), 1);
    assert_eq!(t.findings.len(), 1, "{:?}", t.findings);
    assert_eq!(t.findings[0].path, "spec.configPatches[1]");
    assert_eq!(t.findings[0].line, Some(27));
    // INSERT_FIRST asks for the head of the chain: AUTHN.
    let first = local_rate_limit(BUCKET, "").replace("INSERT_BEFORE", "INSERT_FIRST");
    let t = translate(&first, &Options::default()).unwrap();
    let plugin = render::rate_limit_plugin(&t.rate_limits[0], &IstioOptions::default());
    assert_eq!(plugin["spec"]["phase"], "AUTHN");
    assert_eq!(plugin["metadata"]["namespace"], "shop");
    // A filter the Wasm filter would not look at is said.
    let unset = BUCKET.replace(
        "          filter_enabled: {default_value: {numerator: 100}}\n",
        "",
    );
    let t = translate(&local_rate_limit(&unset, ""), &Options::default()).unwrap();
    assert_eq!(t.findings[0].severity, Severity::Warning);
    assert_eq!(
        t.findings[0].path,
        "spec.configPatches[0].patch.value.typed_config.filter_enabled"
    );
}

/// The line (from 1) of the first line of `input` that contains `needle`.
fn line_of(input: &str, needle: &str) -> usize {
    input
        .lines()
        .position(|l| l.contains(needle))
        .unwrap_or_else(|| panic!("{needle:?} not in the input"))
        + 1
}

/// An HTTP_FILTER patch inserting Envoy's global rate limit before the
/// router on the inbound side, calling the service in `cluster`, with
/// `extra` lines in its typed_config.
fn global_patch(cluster: &str, extra: &str) -> String {
    format!(
        "  - applyTo: HTTP_FILTER\n    match:\n      context: SIDECAR_INBOUND\n      listener:\n        filterChain:\n          filter:\n            name: envoy.filters.network.http_connection_manager\n            subFilter: {{name: envoy.filters.http.router}}\n    patch:\n      operation: INSERT_BEFORE\n      value:\n        name: envoy.filters.http.ratelimit\n        typed_config:\n          \"@type\": type.googleapis.com/envoy.extensions.filters.http.ratelimit.v3.RateLimit\n          domain: shop\n          rate_limit_service:\n            grpc_service:\n              envoy_grpc: {{cluster_name: \"{cluster}\"}}\n            transport_api_version: V3\n{extra}"
    )
}

/// An EnvoyFilter `name` on `app: web` in namespace shop with these patches.
fn envoy_filter(name: &str, patches: &str) -> String {
    format!(
        "apiVersion: networking.istio.io/v1alpha3\nkind: EnvoyFilter\nmetadata: {{name: {name}, namespace: shop}}\nspec:\n  workloadSelector:\n    labels: {{app: web}}\n  configPatches:\n{patches}"
    )
}

const RLS: &str = "outbound|8081||ratelimit.shop.svc.cluster.local";
const ROUTE_ACTIONS: &str = "  - applyTo: HTTP_ROUTE\n    match:\n      context: SIDECAR_INBOUND\n      routeConfiguration:\n        vhost:\n          route: {action: ANY}\n    patch:\n      operation: MERGE\n      value:\n        route:\n          rate_limits:\n          - actions:\n            - request_headers: {header_name: \":path\", descriptor_key: PATH}\n";

#[test]
fn istios_global_rate_limit_becomes_the_rate_limit_filter_with_the_route_actions_inline() {
    let input = example("global-rate-limit.yaml");
    let t = translate(&input, &Options::default()).unwrap_or_else(|e| panic!("{e}"));
    // Two EnvoyFilters on productpage, read as one chain: one filter.
    assert_eq!(t.rate_limits.len(), 1);
    let limit = &t.rate_limits[0];
    assert_eq!(limit.name, "filter-ratelimit");
    assert_eq!(limit.selector["app"], "productpage");
    assert_eq!(limit.context, "SIDECAR_INBOUND");
    let config = &limit.config;
    assert!(config.get("@type").is_none());
    assert_eq!(config["domain"], "ratelimit");
    assert_eq!(config["failure_mode_deny"], true);
    assert_eq!(config["timeout"], "10s");
    // The route's actions, moved inline from the other EnvoyFilter.
    assert_eq!(
        config["rate_limits"],
        serde_json::json!([{"actions": [{"request_headers": {"header_name": ":path", "descriptor_key": "PATH"}}]}])
    );
    // The authority is kept: the filter's call carries it.
    let service = &config["rate_limit_service"]["grpc_service"]["envoy_grpc"];
    assert_eq!(service["authority"], "ratelimit.default.svc.cluster.local");
    let plan = RateLimitPlan::from_json(config.to_string().as_bytes()).unwrap();
    let cluster = "outbound|8081||ratelimit.default.svc.cluster.local";
    assert_eq!(plan.global().unwrap().cluster(), cluster);
    assert_eq!(
        plan.global().unwrap().authority(),
        Some("ratelimit.default.svc.cluster.local")
    );
    assert_eq!(limit.service_cluster.as_deref(), Some(cluster));
    // Each finding by path and line, in the document that has the field.
    let found: Vec<(Severity, &str, &str, Option<usize>)> = t
        .findings
        .iter()
        .map(|f| {
            (
                f.severity,
                f.source.as_ref().unwrap().name.as_str(),
                f.path.as_str(),
                f.line,
            )
        })
        .collect();
    let typed = "spec.configPatches[0].patch.value.typed_config";
    assert_eq!(
        found,
        [
            (
                Severity::Note,
                "filter-ratelimit-svc",
                "spec.configPatches[0].patch.value.rate_limits",
                Some(line_of(&input, "rate_limits:"))
            ),
            (
                Severity::Note,
                "filter-ratelimit",
                &*format!("{typed}.rate_limit_service.grpc_service.envoy_grpc.cluster_name"),
                Some(line_of(&input, "cluster_name:"))
            ),
        ],
        "{:#?}",
        t.findings
    );
    assert!(
        t.findings[0]
            .message
            .contains("of EnvoyFilter filter-ratelimit")
    );
    assert!(t.findings[1].message.contains("--upstream"));
    // With the authority set, Istio's name with '|' is no problem.
    assert!(
        !t.findings[1].message.contains("no valid authority"),
        "{}",
        t.findings[1]
    );
    let strict = Options {
        strict: true,
        ..Options::default()
    };
    translate(&input, &strict).unwrap_or_else(|e| panic!("nothing is lost: {e}"));
    // Istio: one WasmPlugin replaces both EnvoyFilters.
    let docs = render::istio_manifests(&t, &IstioOptions::default());
    let plugin = &docs[0];
    assert_eq!(plugin["kind"], "WasmPlugin");
    assert_eq!(
        plugin["metadata"]["name"],
        "meshwasm-rate-limit-filter-ratelimit"
    );
    assert_eq!(
        plugin["spec"]["selector"]["matchLabels"]["app"],
        "productpage"
    );
    assert_eq!(
        plugin["spec"]["match"],
        serde_json::json!([{"mode": "SERVER"}])
    );
    assert_eq!(plugin["spec"]["pluginConfig"], *config);
    assert!(docs.iter().all(|d| {
        !d["metadata"]["name"]
            .as_str()
            .unwrap()
            .starts_with("filter-ratelimit")
    }));
    // Plain Envoy: the Wasm filter first, and an HTTP/2 cluster for the
    // service, by DNS unless --upstream says where it is, under Istio's
    // name: the call carries the task's authority.
    let envoy_name = cluster;
    assert_eq!(t.service_clusters[0].envoy_name, envoy_name);
    let mut options = EnvoyOptions::default();
    let bootstrap = render::envoy_bootstrap(&t, &options);
    let clusters = &bootstrap["static_resources"]["clusters"];
    let rls = clusters
        .as_array()
        .unwrap()
        .iter()
        .find(|c| c["name"] == envoy_name)
        .unwrap();
    let socket = &rls["load_assignment"]["endpoints"][0]["lb_endpoints"][0]["endpoint"]["address"]
        ["socket_address"];
    assert_eq!(socket["address"], "ratelimit.default.svc.cluster.local");
    assert_eq!(socket["port_value"], 8081);
    assert!(
        rls["typed_extension_protocol_options"]
            .to_string()
            .contains("http2_protocol_options"),
        "{rls}"
    );
    options
        .upstreams
        .insert(cluster.into(), vec![("ratelimit".into(), 8081)]);
    render::check_upstreams(&t, &options).unwrap();
    let bootstrap = render::envoy_bootstrap(&t, &options);
    let text = bootstrap.to_string();
    assert!(
        text.contains(r#""address":"ratelimit","port_value":8081"#),
        "{text}"
    );
    let filters = &bootstrap["static_resources"]["listeners"][0]["filter_chains"][0]["filters"][0]
        ["typed_config"]["http_filters"];
    assert_eq!(filters[0]["name"], "meshwasm.rate-limit");
    let wasm: Value = serde_json::from_str(
        filters[0]["typed_config"]["config"]["configuration"]["value"]
            .as_str()
            .unwrap(),
    )
    .unwrap();
    assert_eq!(
        wasm["rate_limit_service"]["grpc_service"]["envoy_grpc"]["cluster_name"],
        envoy_name
    );
    // Without the authority, the cluster is HOST:PORT, a valid authority,
    // and Istio's name is reported as none.
    let t = translate(
        &input.replace(
            "                authority: ratelimit.default.svc.cluster.local\n",
            "",
        ),
        &Options::default(),
    )
    .unwrap();
    assert_eq!(
        t.service_clusters[0].envoy_name,
        "ratelimit.default.svc.cluster.local:8081"
    );
    assert!(
        t.findings
            .iter()
            .any(|f| f.message.contains("no valid authority")),
        "{:#?}",
        t.findings
    );
}

#[test]
fn a_local_and_a_global_rate_limit_on_the_same_workloads_become_one_filter() {
    let descriptors = "          descriptors:\n          - entries: [{key: PATH}]\n            token_bucket: {max_tokens: 1, fill_interval: 60s}\n";
    let local = local_rate_limit(&format!("{BUCKET}{descriptors}"), "");
    // On the same traffic as the global one: any port.
    let patches = local
        .split_once("  configPatches:\n")
        .unwrap()
        .1
        .replace("        portNumber: 8080\n", "");
    // One EnvoyFilter: local, global, and the route's actions, which both
    // of Envoy's filters read: moved into both.
    let input = envoy_filter(
        "limits",
        &format!("{patches}{}{ROUTE_ACTIONS}", global_patch(RLS, "")),
    );
    let t = translate(&input, &Options::default()).unwrap_or_else(|e| panic!("{e}"));
    assert_eq!(t.rate_limits.len(), 1, "{:#?}", t.rate_limits);
    let limit = &t.rate_limits[0];
    assert_eq!(limit.name, "limits");
    assert_eq!(limit.port, None);
    let config = &limit.config;
    assert_eq!(config["local"]["stat_prefix"], "rl");
    assert_eq!(config["global"]["domain"], "shop");
    for part in ["local", "global"] {
        assert_eq!(
            config[part]["rate_limits"][0]["actions"][0]["request_headers"]["descriptor_key"],
            "PATH",
            "{part}"
        );
    }
    // The filter takes it as it is: local first, then the service.
    let plan = RateLimitPlan::from_json(config.to_string().as_bytes()).unwrap();
    assert_eq!(plan.global().unwrap().cluster(), RLS);
    let moved = t
        .findings
        .iter()
        .find(|f| f.path == "spec.configPatches[2].patch.value.route.rate_limits")
        .unwrap();
    assert!(moved.message.contains("local and global"), "{moved}");
    assert!(
        moved.message.contains("spec.configPatches[0].patch.value.typed_config and spec.configPatches[1].patch.value.typed_config"),
        "{moved}"
    );
    // One WasmPlugin, and one filter in plain Envoy.
    let docs = render::istio_manifests(&t, &IstioOptions::default());
    let plugins: Vec<&Value> = docs
        .iter()
        .filter(|d| {
            d["metadata"]["name"]
                .as_str()
                .unwrap()
                .starts_with("meshwasm-rate-limit")
        })
        .collect();
    assert_eq!(plugins.len(), 1);
    assert_eq!(plugins[0]["metadata"]["name"], "meshwasm-rate-limit-limits");
    assert_eq!(plugins[0]["spec"]["pluginConfig"], *config);
    assert_eq!(
        plugins[0]["spec"]["match"],
        serde_json::json!([{"mode": "SERVER"}])
    );

    // The global filter first in the chain as written: said, since the
    // rate-limit filter draws the local buckets first.
    let swapped = envoy_filter(
        "limits",
        &format!("{}{patches}{ROUTE_ACTIONS}", global_patch(RLS, "")),
    );
    let t = translate(&swapped, &Options::default()).unwrap();
    assert_eq!(t.rate_limits.len(), 1);
    assert!(t.rate_limits[0].config.get("local").is_some());
    let note = t
        .findings
        .iter()
        .find(|f| f.path == "spec.configPatches[0].patch.value")
        .unwrap_or_else(|| panic!("{:#?}", t.findings));
    assert_eq!(note.severity, Severity::Note);
    assert!(
        note.message.contains("local buckets are drawn first"),
        "{note}"
    );

    // Istio's two examples on the same workloads, in two files: one filter.
    let global = example("global-rate-limit.yaml");
    let local = example("local-rate-limit.yaml").replace(
        "  name: filter-local-ratelimit-svc\n",
        "  name: filter-local-ratelimit-svc\n  namespace: default\n",
    );
    let t = translate_files(
        &[
            ("local-rate-limit.yaml".into(), local),
            ("global-rate-limit.yaml".into(), global),
        ],
        &Options::default(),
    )
    .unwrap_or_else(|e| panic!("{e}"));
    assert_eq!(t.rate_limits.len(), 1);
    let config = &t.rate_limits[0].config;
    assert_eq!(t.rate_limits[0].name, "filter-local-ratelimit-svc");
    // The local part keeps its inline actions; the route's go to the global.
    assert_eq!(
        config["local"]["rate_limits"][0]["actions"][0]["request_headers"]["header_name"],
        "x-client"
    );
    assert_eq!(
        config["global"]["rate_limits"][0]["actions"][0]["request_headers"]["header_name"],
        ":path"
    );
    RateLimitPlan::from_json(config.to_string().as_bytes()).unwrap();

    // On different traffic (another port), they stay two filters.
    let elsewhere = input.replacen(
        "      listener:\n        filterChain",
        "      listener:\n        portNumber: 9090\n        filterChain",
        1,
    );
    let t = translate(&elsewhere, &Options::default()).unwrap_or_else(|e| panic!("{e}"));
    let names: Vec<&str> = t.rate_limits.iter().map(|l| l.name.as_str()).collect();
    assert_eq!(names, ["limits-1", "limits-2"], "{elsewhere}");
}

#[test]
fn a_refused_global_field_is_the_filters_error_at_the_yaml_path_and_line() {
    // google_grpc: the Wasm filter calls through Envoy's own gRPC client.
    let input = envoy_filter("rl", &global_patch(RLS, "")).replace(
        &format!("              envoy_grpc: {{cluster_name: \"{RLS}\"}}\n"),
        "              google_grpc: {target_uri: \"ratelimit:8081\", stat_prefix: rls}\n",
    );
    let e = only_error(&input);
    assert_eq!(e.source.as_ref().unwrap().name, "rl");
    assert_eq!(
        e.path,
        "spec.configPatches[0].patch.value.typed_config.rate_limit_service.grpc_service.google_grpc",
        "{e}"
    );
    assert_eq!(e.line, Some(line_of(&input, "google_grpc:")), "{e}");
    assert!(e.message.contains("envoyGrpc"), "{e}");
    // In camelCase, named as written.
    let camel = input
        .replace("rate_limit_service:", "rateLimitService:")
        .replace("grpc_service:", "grpcService:")
        .replace("google_grpc:", "googleGrpc:")
        .replace("transport_api_version:", "transportApiVersion:");
    let e = only_error(&camel);
    assert_eq!(
        e.path,
        "spec.configPatches[0].patch.value.typed_config.rateLimitService.grpcService.googleGrpc",
        "{e}"
    );
    // No transport_api_version: Envoy's refusal, at the service.
    let input = envoy_filter("rl", &global_patch(RLS, ""))
        .replace("            transport_api_version: V3\n", "");
    let e = only_error(&input);
    assert_eq!(
        e.path,
        "spec.configPatches[0].patch.value.typed_config.rate_limit_service.transport_api_version",
        "{e}"
    );
    assert_eq!(e.line, Some(line_of(&input, "rate_limit_service:")), "{e}");
    // Beside a local rate limit, the global part's error is still at its
    // own patch; and a moved route action the filter refuses is at the route.
    let local = local_rate_limit(BUCKET, "");
    let local_patch = local.split_once("  configPatches:\n").unwrap().1;
    let input = envoy_filter(
        "rl",
        &format!(
            "{local_patch}{}",
            global_patch(RLS, "          timeout: soon\n")
        ),
    );
    let e = only_error(&input);
    assert_eq!(
        e.path, "spec.configPatches[1].patch.value.typed_config.timeout",
        "{e}"
    );
    assert_eq!(e.line, Some(line_of(&input, "timeout: soon")), "{e}");
    let input = envoy_filter(
        "rl",
        &format!(
            "{}{}",
            global_patch(RLS, ""),
            ROUTE_ACTIONS.replace(
                "request_headers: {header_name: \":path\", descriptor_key: PATH}",
                "metadata: {descriptor_key: m}"
            )
        ),
    );
    let e = only_error(&input);
    assert_eq!(
        e.path, "spec.configPatches[1].patch.value.route.rate_limits[0].actions[0].metadata",
        "{e}"
    );
    assert_eq!(e.line, Some(line_of(&input, "- metadata:")), "{e}");
    // Without actions anywhere: the filter cannot read the route's, said.
    let e = only_error(&envoy_filter("rl", &global_patch(RLS, "")));
    assert_eq!(
        e.path, "spec.configPatches[0].patch.value.typed_config.rate_limits",
        "{e}"
    );
    assert!(e.message.contains("cannot read the route"), "{e}");
}

#[test]
fn the_rate_limit_services_cluster_comes_from_a_cluster_patch_or_must_exist() {
    // Istio's older task: the service outside the mesh, its cluster added
    // by a CLUSTER patch of the same EnvoyFilter.
    let cluster_patch = "  - applyTo: CLUSTER\n    match:\n      cluster:\n        service: ratelimit.shop.svc.cluster.local\n    patch:\n      operation: ADD\n      value:\n        name: rate_limit_cluster\n        type: STRICT_DNS\n        connect_timeout: 10s\n        lb_policy: ROUND_ROBIN\n        http2_protocol_options: {}\n        load_assignment:\n          cluster_name: rate_limit_cluster\n          endpoints:\n          - lb_endpoints:\n            - endpoint:\n                address:\n                  socket_address: {address: ratelimit.shop.svc.cluster.local, port_value: 8081}\n";
    let input = envoy_filter(
        "rl",
        &format!(
            "{}{ROUTE_ACTIONS}{cluster_patch}",
            global_patch("rate_limit_cluster", "")
        ),
    );
    let t = translate(&input, &Options::default()).unwrap_or_else(|e| panic!("{e}"));
    assert!(
        t.findings.iter().all(|f| f.severity == Severity::Note),
        "{:#?}",
        t.findings
    );
    assert_eq!(t.service_clusters.len(), 1);
    assert_eq!(t.service_clusters[0].name, "rate_limit_cluster");
    // Plain Envoy: the user's cluster as written.
    let bootstrap = render::envoy_bootstrap(&t, &EnvoyOptions::default());
    let rendered = bootstrap["static_resources"]["clusters"]
        .as_array()
        .unwrap()
        .iter()
        .find(|c| c["name"] == "rate_limit_cluster")
        .unwrap();
    assert_eq!(rendered["connect_timeout"], "10s");
    assert_eq!(rendered["http2_protocol_options"], serde_json::json!({}));
    // Istio: the WasmPlugin cannot add a cluster; an EnvoyFilter keeps it.
    let docs = render::istio_manifests(&t, &IstioOptions::default());
    let kept = docs
        .iter()
        .find(|d| d["metadata"]["name"] == "meshwasm-rate-limit-rl-cluster")
        .unwrap();
    assert_eq!(kept["kind"], "EnvoyFilter");
    assert_eq!(kept["metadata"]["namespace"], "shop");
    assert_eq!(kept["spec"]["workloadSelector"]["labels"]["app"], "web");
    assert_eq!(kept["spec"]["configPatches"][0]["applyTo"], "CLUSTER");
    assert_eq!(
        kept["spec"]["configPatches"][0]["patch"]["value"]["name"],
        "rate_limit_cluster"
    );
    // The EnvoyFilter form carries it beside the Wasm filter.
    let form = EnvoyFilterForm::Inline(Code::Local {
        filename: "/var/local/lib/wasm/{file}".into(),
    });
    let doc = render::rate_limit_envoy_filter(&t.rate_limits[0], &form);
    let applied: Vec<&str> = doc["spec"]["configPatches"]
        .as_array()
        .unwrap()
        .iter()
        .map(|p| p["applyTo"].as_str().unwrap())
        .collect();
    assert_eq!(applied, ["HTTP_FILTER", "CLUSTER"]);

    // A cluster without HTTP/2: gRPC would fail, said at the config's
    // cluster_name.
    let no_h2 = input.replace("        http2_protocol_options: {}\n", "");
    let t = translate(&no_h2, &Options::default()).unwrap();
    let warning = t
        .findings
        .iter()
        .find(|f| f.severity == Severity::Warning)
        .unwrap();
    assert_eq!(
        warning.path,
        "spec.configPatches[0].patch.value.typed_config.rate_limit_service.grpc_service.envoy_grpc.cluster_name"
    );
    assert!(warning.message.contains("HTTP/2"), "{warning}");

    // A cluster nothing defines and whose name says nothing: it must
    // exist, by path and line; plain Envoy has it only from --upstream.
    let input = envoy_filter("rl", &format!("{}{ROUTE_ACTIONS}", global_patch("rls", "")));
    let t = translate(&input, &Options::default()).unwrap();
    let warnings: Vec<&Finding> = t
        .findings
        .iter()
        .filter(|f| f.severity == Severity::Warning)
        .collect();
    assert_eq!(warnings.len(), 1, "{:#?}", t.findings);
    assert!(
        warnings[0].path.ends_with("envoy_grpc.cluster_name"),
        "{}",
        warnings[0]
    );
    assert_eq!(
        warnings[0].line,
        Some(line_of(&input, "cluster_name: \"rls\""))
    );
    assert!(
        warnings[0].message.contains("must exist"),
        "{}",
        warnings[0]
    );
    let names = |bootstrap: &Value| -> Vec<String> {
        bootstrap["static_resources"]["clusters"]
            .as_array()
            .unwrap()
            .iter()
            .map(|c| c["name"].as_str().unwrap().to_owned())
            .collect()
    };
    let mut options = EnvoyOptions::default();
    assert!(!names(&render::envoy_bootstrap(&t, &options)).contains(&"rls".to_owned()));
    options
        .upstreams
        .insert("rls".into(), vec![("127.0.0.1".into(), 8081)]);
    render::check_upstreams(&t, &options).unwrap();
    assert!(names(&render::envoy_bootstrap(&t, &options)).contains(&"rls".to_owned()));
    // A route patch alone, with no rate limit filter on its workloads: kept
    // for Istio, as before.
    let t = translate(&envoy_filter("routes", ROUTE_ACTIONS), &Options::default()).unwrap();
    assert!(t.rate_limits.is_empty());
    assert_eq!(t.findings.len(), 1);
    assert!(
        t.findings[0]
            .message
            .contains("EnvoyFilter is not translated")
    );
}

/// An AuthorizationPolicy `name` in namespace `shop` with this spec (each
/// line indented by two spaces).
fn authorization_policy(name: &str, spec: &str) -> String {
    format!(
        "apiVersion: security.istio.io/v1\nkind: AuthorizationPolicy\nmetadata: {{name: {name}, namespace: shop}}\nspec:\n{spec}"
    )
}

/// The two policies of Istio's explicit deny task (istio.io, Tasks >
/// Security > Authorization > Explicit Deny), in values of our own: a
/// DENY of GET unless a token header says so, and an ALLOW of one path,
/// both on one workload.
fn explicit_deny_task() -> String {
    [
        authorization_policy(
            "refuse-reads",
            "  selector:\n    matchLabels: {app: catalog}\n  action: DENY\n  rules:\n  - to:\n    - operation: {methods: [GET]}\n    when:\n    - key: request.headers[x-pass]\n      notValues: [letmein]\n",
        ),
        authorization_policy(
            "only-address",
            "  selector:\n    matchLabels: {app: catalog}\n  action: ALLOW\n  rules:\n  - to:\n    - operation:\n        paths: [/address]\n",
        ),
    ]
    .join("---\n")
}

#[test]
fn istios_explicit_deny_task_becomes_one_header_match_plugin_for_the_workload() {
    let input = explicit_deny_task();
    let strict = Options {
        strict: true,
        ..Options::default()
    };
    let t = translate(&input, &strict).unwrap_or_else(|e| panic!("{e}"));
    assert!(t.services.is_empty());
    let [authz] = t.authz.as_slice() else {
        panic!("{:?}", t.authz)
    };
    assert_eq!(authz.namespace, "shop");
    assert_eq!(authz.sources.len(), 2);
    let policies = authz.config["policies"].as_array().unwrap();
    assert_eq!(policies[0]["action"], "DENY");
    assert_eq!(
        policies[1]["rules"][0]["to"][0]["operation"]["paths"][0],
        "/address"
    );
    // Placement is the WasmPlugin's, not the filter's.
    assert!(policies.iter().all(|p| p.get("selector").is_none()));
    AuthzPlan::from_json(authz.config.to_string().as_bytes()).unwrap();

    let docs = render::istio_manifests(&t, &IstioOptions::default());
    let [plugin] = docs.as_slice() else {
        panic!("{docs:?}")
    };
    let spec = &plugin["spec"];
    assert_eq!(plugin["metadata"]["name"], "meshwasm-header-match-catalog");
    assert_eq!(plugin["metadata"]["namespace"], "shop");
    assert_eq!(spec["selector"]["matchLabels"]["app"], "catalog");
    assert_eq!(
        (spec["phase"].as_str(), spec["priority"].as_i64()),
        (Some("AUTHZ"), Some(10))
    );
    assert_eq!(spec["match"][0]["mode"], "SERVER");
    assert_eq!(spec["pluginName"], "meshwasm.header-match");
    assert_eq!(spec["pluginConfig"], authz.config);

    // The EnvoyFilter form: the same config on the inbound listeners.
    let form = EnvoyFilterForm::Inline(Code::Local {
        filename: "/var/local/lib/wasm/{file}".into(),
    });
    let docs = render::envoy_filters(&t, &form, &IstioOptions::default());
    let patch = &docs[0]["spec"]["configPatches"][0];
    assert_eq!(
        docs[0]["spec"]["workloadSelector"]["labels"]["app"],
        "catalog"
    );
    assert_eq!(patch["match"]["context"], "SIDECAR_INBOUND");
    let config = &patch["patch"]["value"]["typed_config"]["config"];
    assert_eq!(
        config["vm_config"]["code"]["local"]["filename"],
        "/var/local/lib/wasm/meshwasm_header_match.wasm"
    );
    let carried: Value =
        serde_json::from_str(config["configuration"]["value"].as_str().unwrap()).unwrap();
    assert_eq!(carried, authz.config);
}

#[test]
fn plain_envoy_runs_the_access_rules_where_istios_authz_phase_is() {
    // A rate limit inserted first is AUTHN, before AUTHZ; one before the
    // router is STATS, after it.
    let limit = |name: &str, operation: &str| {
        example("local-rate-limit.yaml")
            .split("---")
            .next()
            .unwrap()
            .replace("filter-local-ratelimit-svc", name)
            .replace(
                "operation: INSERT_BEFORE",
                &format!("operation: {operation}"),
            )
    };
    let input = [
        limit("first", "INSERT_FIRST"),
        limit("later", "INSERT_BEFORE"),
        example("deny-admin.yaml"),
    ]
    .join("---\n");
    let t = translate(&input, &Options::default()).unwrap_or_else(|e| panic!("{e}"));
    let bootstrap = render::envoy_bootstrap(&t, &EnvoyOptions::default());
    let filters = bootstrap["static_resources"]["listeners"][0]["filter_chains"][0]["filters"][0]
        ["typed_config"]["http_filters"]
        .as_array()
        .unwrap();
    let names: Vec<&str> = filters
        .iter()
        .map(|f| f["name"].as_str().unwrap())
        .collect();
    assert_eq!(
        names,
        [
            "meshwasm.rate-limit",
            "meshwasm.header-match",
            "meshwasm.rate-limit",
            "meshwasm.router",
            "envoy.filters.http.router"
        ]
    );
    let config = &filters[1]["typed_config"]["config"];
    assert_eq!(config["root_id"], "meshwasm.header-match");
    assert_eq!(
        config["vm_config"]["code"]["local"]["filename"],
        "target/wasm32-wasip1/wasm/meshwasm_header_match.wasm"
    );
    let carried: Value =
        serde_json::from_str(config["configuration"]["value"].as_str().unwrap()).unwrap();
    assert_eq!(
        carried["headerRules"][0]["request"]["set"]["x-client-class"],
        "mobile"
    );
    AuthzPlan::from_json(carried.to_string().as_bytes()).unwrap();
}

#[test]
fn unsupported_policy_fields_are_the_filters_errors_at_the_yaml_path_and_line() {
    // The reference page's example (istio.io, Reference > Configuration >
    // Security > Authorization Policy) checks a JWT claim, which the
    // filter does not read; in values of our own.
    let input = authorization_policy(
        "partners",
        "  action: ALLOW\n  rules:\n  - from:\n    - source:\n        principals: [cluster.local/ns/shop/sa/front]\n    - source:\n        namespaces: [partners]\n    to:\n    - operation: {methods: [GET], paths: [/stock*]}\n    when:\n    - key: request.auth.claims[iss]\n      values: [https://issuer.example]\n",
    );
    let e = only_error(&input);
    assert_eq!(e.path, "spec.rules[0].when[0].key", "{e}");
    assert_eq!(e.line, Some(line_of(&input, "request.auth.claims")), "{e}");
    assert!(e.message.contains("request.auth.claims"), "{e}");
    assert_eq!(e.source.unwrap().name, "partners");

    // JWT identities are refused by name.
    let input = authorization_policy(
        "jwt",
        "  rules:\n  - from:\n    - source:\n        requestPrincipals: ['*']\n",
    );
    let e = only_error(&input);
    assert_eq!(
        e.path, "spec.rules[0].from[0].source.requestPrincipals",
        "{e}"
    );
    assert_eq!(e.line, Some(line_of(&input, "requestPrincipals")), "{e}");

    // A misspelt field, in the second policy of a group: that policy's
    // document and line.
    let input = [
        authorization_policy("one", "  selector: {matchLabels: {app: a}}\n  action: DENY\n  rules: [{}]\n"),
        authorization_policy(
            "two",
            "  selector: {matchLabels: {app: a}}\n  rules:\n  - to:\n    - operation: {pathz: [/x]}\n",
        ),
    ]
    .join("---\n");
    let e = only_error(&input);
    assert_eq!(e.source.as_ref().unwrap().name, "two");
    assert!(e.path.starts_with("spec.rules[0].to[0].operation"), "{e}");
    assert!(e.message.contains("pathz"), "{e}");
    assert_eq!(e.line, Some(line_of(&input, "pathz")), "{e}");

    // A header rule's bad regex: at its place under spec.meshwasm.
    let input = authorization_policy(
        "tags",
        "  action: DENY\n  rules: [{to: [{operation: {paths: [/admin]}}]}]\n  meshwasm:\n    headerRules:\n    - match:\n      - headers:\n          user-agent: {regex: '(Mobile'}\n      request: {set: {x-client-class: mobile}}\n",
    );
    let e = only_error(&input);
    assert_eq!(
        e.path, "spec.meshwasm.headerRules[0].match[0].headers.user-agent.regex",
        "{e}"
    );
    assert_eq!(e.line, Some(line_of(&input, "(Mobile")), "{e}");

    // The wrong API group.
    let e = only_error(
        &authorization_policy("x", "  {}\n")
            .replace("security.istio.io/v1", "networking.istio.io/v1"),
    );
    assert_eq!(e.path, "apiVersion", "{e}");
    assert!(e.message.contains("security.istio.io/v1beta1"), "{e}");
}

#[test]
fn custom_policies_pass_through_and_the_missing_provider_is_said() {
    // Istio's external authorization task (istio.io, Tasks > Security >
    // Authorization > External Authorization) sends one path to an HTTP
    // authorizer of meshConfig; in values of our own.
    let input = authorization_policy(
        "ask-the-authorizer",
        "  selector:\n    matchLabels: {app: catalog}\n  action: CUSTOM\n  provider:\n    name: shop-authz-http\n  rules:\n  - to:\n    - operation:\n        paths: [/orders]\n",
    );
    let t = translate(&input, &Options::default()).unwrap_or_else(|e| panic!("{e}"));
    let policy = &t.authz[0].config["policies"][0];
    assert_eq!(policy["action"], "CUSTOM");
    assert_eq!(policy["provider"]["name"], "shop-authz-http");
    let [finding] = t.findings.as_slice() else {
        panic!("{:?}", t.findings)
    };
    assert_eq!(finding.severity, Severity::Warning);
    assert_eq!(finding.path, "spec.provider.name");
    assert_eq!(finding.line, Some(line_of(&input, "shop-authz-http")));
    assert!(finding.message.contains("extensionProviders"), "{finding}");
    assert!(finding.message.contains("IstioOperator"), "{finding}");
    assert!(finding.message.contains("istio ConfigMap"), "{finding}");
    assert!(t.authz[0].config.get("extensionProviders").is_none());
    // Its rules are checked all the same.
    let e = only_error(&input.replace("paths: [/orders]", "ports: [http]"));
    assert!(
        e.path.starts_with("spec.rules[0].to[0].operation.ports"),
        "{e}"
    );
    // And strict refuses what would not load.
    let strict = Options {
        strict: true,
        ..Options::default()
    };
    assert!(translate(&input, &strict).is_err());
}

/// The CUSTOM policy of the external authorization task, in values of our
/// own: `/orders` of the catalog asks the authorizer `shop-authz-http`.
fn custom_policy() -> String {
    authorization_policy(
        "ask-the-authorizer",
        "  selector:\n    matchLabels: {app: catalog}\n  action: CUSTOM\n  provider:\n    name: shop-authz-http\n  rules:\n  - to:\n    - operation:\n        paths: [/orders]\n",
    )
}

/// meshConfig's extensionProviders (indented by `indent` spaces): the
/// task's HTTP authorizer, and a tracing provider no policy names.
fn providers(indent: usize) -> String {
    let lines = [
        "extensionProviders:",
        "- name: shop-authz-http",
        "  envoyExtAuthzHttp:",
        "    service: order-checker.shop-auth.svc.cluster.local",
        "    port: 9100",
        "    timeout: 2s",
        "    statusOnError: '503'",
        "    includeRequestHeadersInCheck: [x-shop-user]",
        "    headersToUpstreamOnAllow: [x-shop-verdict]",
        "- name: traces",
        "  zipkin: {service: zipkin.istio-system.svc.cluster.local, port: 9411}",
    ];
    lines
        .iter()
        .map(|l| format!("{}{l}\n", " ".repeat(indent)))
        .collect()
}

fn istio_operator() -> String {
    format!(
        "apiVersion: install.istio.io/v1alpha1\nkind: IstioOperator\nmetadata: {{name: control-plane, namespace: istio-system}}\nspec:\n  meshConfig:\n{}",
        providers(4)
    )
}

fn mesh_config_map() -> String {
    format!(
        "apiVersion: v1\nkind: ConfigMap\nmetadata: {{name: istio, namespace: istio-system}}\ndata:\n  mesh: |\n    accessLogFile: /dev/stdout\n{}",
        providers(4)
    )
}

#[test]
fn a_custom_policy_gets_the_provider_meshconfig_defines() {
    for mesh in [istio_operator(), mesh_config_map()] {
        let input = [mesh.clone(), custom_policy()].join("---\n");
        let t = translate(&input, &Options::default()).unwrap_or_else(|e| panic!("{e}"));
        let config = &t.authz[0].config;
        // Only the provider the policy names.
        let providers = config["extensionProviders"].as_array().unwrap();
        assert_eq!(providers.len(), 1, "{config}");
        assert_eq!(providers[0]["name"], "shop-authz-http");
        assert_eq!(providers[0]["envoyExtAuthzHttp"]["port"], 9100);
        let plan = AuthzPlan::from_json(config.to_string().as_bytes()).unwrap();
        assert_eq!(plan.provider().map(|p| p.name()), Some("shop-authz-http"));
        // The WasmPlugin carries it as it is.
        let plugin = render::authz_plugin(&t.authz[0], &IstioOptions::default());
        assert_eq!(plugin["spec"]["pluginConfig"], *config);
        // meshConfig is read, not "not translated": one note, no warning.
        let [note] = t.findings.as_slice() else {
            panic!("{:?}", t.findings)
        };
        assert_eq!(note.severity, Severity::Note, "{note}");
        assert!(note.message.contains("shop-authz-http, traces"), "{note}");
        assert!(note.path.ends_with("extensionProviders"), "{note}");
        assert_eq!(
            note.line,
            Some(line_of(&input, "extensionProviders:")),
            "{note}"
        );
        // Plain Envoy: the authorizer's HTTP/1.1 cluster, Istio's name.
        let name = "outbound|9100||order-checker.shop-auth.svc.cluster.local";
        let bootstrap = render::envoy_bootstrap(&t, &EnvoyOptions::default());
        let clusters = bootstrap["static_resources"]["clusters"]
            .as_array()
            .unwrap();
        let cluster = clusters.iter().find(|c| c["name"] == name).unwrap();
        assert_eq!(cluster["type"], "STRICT_DNS");
        assert!(cluster.get("typed_extension_protocol_options").is_none());
        let address =
            &cluster["load_assignment"]["endpoints"][0]["lb_endpoints"][0]["endpoint"]["address"];
        assert_eq!(
            address["socket_address"]["address"],
            "order-checker.shop-auth.svc.cluster.local"
        );
        assert_eq!(address["socket_address"]["port_value"], 9100);
        let header_match = &bootstrap["static_resources"]["listeners"][0]["filter_chains"][0]["filters"]
            [0]["typed_config"]["http_filters"][0];
        assert!(header_match.to_string().contains("shop-authz-http"));
        // --upstream moves it, by cluster name or by service.
        let mut options = EnvoyOptions::default();
        options.upstreams.insert(
            "order-checker.shop-auth.svc.cluster.local".into(),
            vec![("127.0.0.1".into(), 18100)],
        );
        render::check_upstreams(&t, &options).unwrap();
        let bootstrap = render::envoy_bootstrap(&t, &options);
        let moved = bootstrap["static_resources"]["clusters"]
            .as_array()
            .unwrap()
            .iter()
            .find(|c| c["name"] == name)
            .unwrap()
            .clone();
        assert_eq!(moved["type"], "STATIC");
        assert!(moved.to_string().contains("18100"));
    }
}

#[test]
fn a_bad_provider_is_an_error_at_its_own_path_and_line() {
    let bad = |mesh: String| {
        let input = [mesh.replace("'503'", "teapot"), custom_policy()].join("---\n");
        (only_error(&input), line_of(&input, "teapot"))
    };
    let (e, line) = bad(istio_operator());
    assert_eq!(
        e.path, "spec.meshConfig.extensionProviders[0].envoyExtAuthzHttp.statusOnError",
        "{e}"
    );
    assert_eq!(e.line, Some(line), "{e}");
    assert_eq!(e.source.as_ref().unwrap().kind, "IstioOperator");
    assert!(e.message.contains("teapot"), "{e}");
    assert!(e.message.contains("shop-authz-http"), "{e}");
    // In the ConfigMap, the path and line inside data.mesh.
    let (e, line) = bad(mesh_config_map());
    assert_eq!(
        e.path, "data.mesh.extensionProviders[0].envoyExtAuthzHttp.statusOnError",
        "{e}"
    );
    assert_eq!(e.line, Some(line), "{e}");
    assert_eq!(e.source.as_ref().unwrap().name, "istio");
    // A misspelt field of the provider, too.
    let input = [
        istio_operator().replace("timeout:", "timeuot:"),
        custom_policy(),
    ]
    .join("---\n");
    let e = only_error(&input);
    assert!(
        e.path.starts_with("spec.meshConfig.extensionProviders[0]"),
        "{e}"
    );
    assert!(e.message.contains("timeuot"), "{e}");
}

#[test]
fn a_provider_without_port_names_its_cluster_and_needs_an_upstream() {
    let mesh: String = istio_operator()
        .lines()
        .filter(|l| l.trim() != "port: 9100")
        .map(|l| format!("{l}\n"))
        .collect();
    let input = [mesh, custom_policy()].join("---\n");
    let t = translate(&input, &Options::default()).unwrap_or_else(|e| panic!("{e}"));
    let warning = t
        .findings
        .iter()
        .find(|f| f.severity == Severity::Warning)
        .unwrap();
    assert_eq!(
        warning.path, "spec.meshConfig.extensionProviders[0].envoyExtAuthzHttp",
        "{warning}"
    );
    assert!(warning.message.contains("--upstream"), "{warning}");
    let service = "order-checker.shop-auth.svc.cluster.local";
    let has = |options: &EnvoyOptions| {
        render::envoy_bootstrap(&t, options)["static_resources"]["clusters"]
            .as_array()
            .unwrap()
            .iter()
            .any(|c| c["name"] == service)
    };
    let mut options = EnvoyOptions::default();
    assert!(!has(&options));
    options
        .upstreams
        .insert(service.into(), vec![("127.0.0.1".into(), 18100)]);
    render::check_upstreams(&t, &options).unwrap();
    assert!(has(&options));
}

#[test]
fn meshconfig_without_providers_is_not_translated_and_another_configmap_is_refused() {
    let operator = "apiVersion: install.istio.io/v1alpha1\nkind: IstioOperator\nmetadata: {name: cp}\nspec:\n  profile: demo\n";
    let input = [operator.to_owned(), custom_policy()].join("---\n");
    let t = translate(&input, &Options::default()).unwrap_or_else(|e| panic!("{e}"));
    assert!(
        t.findings
            .iter()
            .any(|f| f.message.contains("IstioOperator is not translated")),
        "{:?}",
        t.findings
    );
    let other = "apiVersion: v1\nkind: ConfigMap\nmetadata: {name: shop-settings}\ndata: {a: b}\n";
    let e = only_error(other);
    assert_eq!(e.path, "kind", "{e}");
}

#[test]
fn a_root_namespace_policy_without_selector_applies_to_the_whole_mesh() {
    let mesh = "apiVersion: security.istio.io/v1beta1\nkind: AuthorizationPolicy\nmetadata: {name: no-debug, namespace: istio-system}\nspec:\n  action: DENY\n  rules:\n  - to:\n    - operation: {paths: ['/debug/{**}']}\n";
    let input = [mesh.to_owned(), explicit_deny_task()].join("---\n");
    let t = translate(&input, &Options::default()).unwrap_or_else(|e| panic!("{e}"));
    assert_eq!(t.authz.len(), 2);
    let wide = &t.authz[0];
    assert!(wide.mesh_wide && wide.selector.is_empty());
    let plugin = render::authz_plugin(wide, &IstioOptions::default());
    assert_eq!(plugin["metadata"]["namespace"], "istio-system");
    assert!(plugin["spec"].get("selector").is_none());
    assert!(plugin["spec"].get("targetRefs").is_none());
    let note = t
        .findings
        .iter()
        .find(|f| f.path == "metadata.namespace")
        .unwrap();
    assert_eq!(note.severity, Severity::Note);
    // Plain Envoy has one listener: one filter with every policy.
    let everywhere = t.authz_config_everywhere().unwrap();
    assert_eq!(everywhere["policies"].as_array().unwrap().len(), 3);
    AuthzPlan::from_json(everywhere.to_string().as_bytes()).unwrap();

    // A mesh-wide ALLOW beside a workload's ALLOW: two filters in a row
    // would ask for both, so it is said.
    let input = input.replace(
        "action: DENY\n  rules:\n  - to:\n    - operation: {paths: ['/debug",
        "action: ALLOW\n  rules:\n  - to:\n    - operation: {paths: ['/debug",
    );
    let t = translate(&input, &Options::default()).unwrap_or_else(|e| panic!("{e}"));
    let warning = t
        .findings
        .iter()
        .find(|f| f.severity == Severity::Warning && f.path == "spec.action")
        .unwrap_or_else(|| panic!("{:?}", t.findings));
    assert_eq!(warning.source.as_ref().unwrap().name, "refuse-reads");
    assert!(
        warning.message.contains("istio-system/no-debug"),
        "{warning}"
    );
}

#[test]
fn target_refs_become_the_plugins_and_a_gateways_policy_covers_its_listeners() {
    let input = authorization_policy(
        "edge",
        "  targetRefs:\n  - {kind: Gateway, group: gateway.networking.k8s.io, name: shop-gateway}\n  action: DENY\n  rules: [{to: [{operation: {paths: [/internal/*]}}]}]\n",
    );
    let t = translate(&input, &Options::default()).unwrap_or_else(|e| panic!("{e}"));
    let plugin = render::authz_plugin(&t.authz[0], &IstioOptions::default());
    assert_eq!(plugin["spec"]["targetRefs"][0]["name"], "shop-gateway");
    assert!(plugin["spec"].get("selector").is_none());
    // Istio's gateway listeners are not SERVER ones.
    assert!(plugin["spec"].get("match").is_none());
    assert!(t.authz[0].config["policies"][0].get("targetRefs").is_none());

    // A selector that is a Gateway's of the input: the gateway's pods.
    let gateway = "apiVersion: networking.istio.io/v1\nkind: Gateway\nmetadata: {name: shop-gateway, namespace: shop}\nspec:\n  selector: {istio: ingressgateway}\n  servers: [{port: {number: 80, name: http, protocol: HTTP}, hosts: ['*']}]\n";
    let policy = authorization_policy(
        "edge",
        "  selector:\n    matchLabels: {istio: ingressgateway}\n  action: DENY\n  rules:\n  - from:\n    - source: {remoteIpBlocks: [203.0.113.0/24]}\n",
    );
    let t = translate(
        &[gateway.to_owned(), policy].join("---\n"),
        &Options::default(),
    )
    .unwrap_or_else(|e| panic!("{e}"));
    assert!(t.authz[0].gateway);
    let plugin = render::authz_plugin(&t.authz[0], &IstioOptions::default());
    assert_eq!(
        plugin["spec"]["selector"]["matchLabels"]["istio"],
        "ingressgateway"
    );
    assert!(plugin["spec"].get("match").is_none());

    // Labels and targets together: Istio refuses it.
    let e = only_error(&input.replace(
        "  targetRefs:",
        "  selector: {matchLabels: {app: a}}\n  targetRefs:",
    ));
    assert_eq!(e.path, "spec.selector", "{e}");
}

#[test]
fn policies_on_the_same_workloads_share_one_setting() {
    let input = [
        authorization_policy(
            "one",
            "  action: DENY\n  rules: [{}]\n  meshwasm: {pathNormalization: BASE}\n",
        ),
        authorization_policy(
            "two",
            "  action: AUDIT\n  rules: [{}]\n  meshwasm: {pathNormalization: NONE}\n",
        ),
    ]
    .join("---\n");
    let e = only_error(&input);
    assert_eq!(e.source.as_ref().unwrap().name, "two");
    assert_eq!(e.path, "spec.meshwasm.pathNormalization", "{e}");
    assert_eq!(e.line, Some(line_of(&input, "NONE")), "{e}");
    // The same setting twice is one setting; its note from the filter is
    // at the policy that set it.
    let t = translate(&input.replace("NONE", "BASE"), &Options::default())
        .unwrap_or_else(|e| panic!("{e}"));
    assert_eq!(t.authz[0].config["meshwasm"]["pathNormalization"], "BASE");
    let note = t
        .findings
        .iter()
        .find(|f| f.path == "spec.meshwasm.pathNormalization")
        .unwrap_or_else(|| panic!("{:?}", t.findings));
    assert_eq!(note.source.as_ref().unwrap().name, "one");
    assert_eq!(note.severity, Severity::Warning);
}

fn telemetry_example() -> String {
    let path = format!(
        "{}/../examples/istio/telemetry.yaml",
        env!("CARGO_MANIFEST_DIR")
    );
    std::fs::read_to_string(&path).unwrap_or_else(|e| panic!("{path}: {e}"))
}

fn telemetry(name: &str, namespace: &str, spec: &str) -> String {
    format!(
        "apiVersion: telemetry.istio.io/v1\nkind: Telemetry\nmetadata: {{name: {name}, namespace: {namespace}}}\nspec:\n{spec}"
    )
}

/// `examples/istio/telemetry.yaml`: Istio's tagOverrides example (istio.io,
/// Customizing Istio Metrics with Telemetry API), its access log filter
/// (`response.code >= 400`) on one workload, and a network filter.
#[test]
fn istios_telemetry_examples_become_telemetry_plugins_in_the_stats_phase() {
    let strict = Options {
        strict: true,
        ..Options::default()
    };
    let t = translate(&telemetry_example(), &strict).unwrap_or_else(|e| panic!("{e}"));
    let [metrics, logs, tcp] = t.telemetry.as_slice() else {
        panic!("{:?}", t.telemetry)
    };
    for filter in &t.telemetry {
        TelemetryPlan::from_json(filter.config.to_string().as_bytes())
            .unwrap_or_else(|e| panic!("{}: {e}", filter.name));
        // Placement is the WasmPlugin's, not the filter's.
        assert!(filter.config.get("selector").is_none(), "{}", filter.name);
    }
    assert_eq!(metrics.namespace, "default");
    assert!(metrics.selector.is_empty() && !metrics.mesh_wide);
    assert_eq!(metrics.labels.len(), 27);
    assert_eq!(metrics.labels[0], "reporter");
    assert_eq!(&metrics.labels[25..], ["destination_port", "request_host"]);
    assert_eq!(logs.selector["app"], "cart");
    assert!(tcp.network && !logs.network);

    let docs = render::istio_manifests(&t, &IstioOptions::default());
    let kinds: Vec<&str> = docs.iter().map(|d| d["kind"].as_str().unwrap()).collect();
    assert_eq!(
        kinds,
        [
            "WasmPlugin",
            "WasmPlugin",
            "WasmPlugin",
            "Telemetry",
            "Telemetry",
            "Telemetry"
        ]
    );
    let spec = &docs[1]["spec"];
    assert_eq!(
        docs[1]["metadata"]["name"],
        "meshwasm-telemetry-cart-exception-logging"
    );
    assert_eq!(docs[1]["metadata"]["namespace"], "shop");
    assert_eq!(spec["selector"]["matchLabels"]["app"], "cart");
    assert_eq!(
        (spec["phase"].as_str(), spec["priority"].as_i64()),
        (Some("STATS"), Some(40))
    );
    // Above the rate limit, the fault filter and the router of the phase.
    assert!(spec["priority"].as_i64() > Some(render::Filter::RateLimit.default_order().1.into()));
    assert_eq!(spec["type"], "HTTP");
    assert!(spec.get("match").is_none(), "inbound and outbound: {spec}");
    assert_eq!(spec["pluginName"], "meshwasm.telemetry");
    assert_eq!(
        spec["pluginConfig"]["accessLogging"][0]["filter"]["expression"],
        "response.code >= 400"
    );
    assert_eq!(docs[2]["spec"]["type"], "NETWORK");
    // Istio's own metrics and logs off where the filter reports them.
    let companion = &docs[4];
    assert_eq!(companion["metadata"]["name"], "cart-exception-logging");
    assert_eq!(companion["spec"]["selector"]["matchLabels"]["app"], "cart");
    assert_eq!(
        companion["spec"]["metrics"][0]["overrides"][0]["disabled"],
        true
    );
    assert_eq!(companion["spec"]["accessLogging"][0]["disabled"], true);
    assert!(docs[3]["spec"].get("accessLogging").is_none());

    // The EnvoyFilter form: every listener, before the router or tcp_proxy.
    let form = EnvoyFilterForm::Inline(Code::Local {
        filename: "/var/local/lib/wasm/{file}".into(),
    });
    let docs = render::envoy_filters(&t, &form, &IstioOptions::default());
    assert_eq!(docs.len(), 3);
    assert_eq!(docs[0]["spec"]["priority"], -40);
    let http = &docs[1]["spec"]["configPatches"][0];
    assert_eq!(docs[1]["spec"]["workloadSelector"]["labels"]["app"], "cart");
    assert_eq!(
        (http["applyTo"].as_str(), http["match"]["context"].as_str()),
        (Some("HTTP_FILTER"), Some("ANY"))
    );
    assert_eq!(
        http["match"]["listener"]["filterChain"]["filter"]["subFilter"]["name"],
        "envoy.filters.http.router"
    );
    let config = &http["patch"]["value"]["typed_config"]["config"];
    assert_eq!(
        config["vm_config"]["code"]["local"]["filename"],
        "/var/local/lib/wasm/meshwasm_telemetry.wasm"
    );
    let carried: Value =
        serde_json::from_str(config["configuration"]["value"].as_str().unwrap()).unwrap();
    assert_eq!(carried, logs.config);
    let network = &docs[2]["spec"]["configPatches"][0];
    assert_eq!(network["applyTo"], "NETWORK_FILTER");
    assert_eq!(
        network["match"]["listener"]["filterChain"]["filter"]["name"],
        "envoy.filters.network.tcp_proxy"
    );
    assert_eq!(
        network["patch"]["value"]["typed_config"]["@type"],
        render::WASM_NETWORK_FILTER_TYPE
    );
    // ECDS: the discovered config has the network filter's type too.
    let ecds = EnvoyFilterForm::Ecds {
        uri: "oci://ghcr.io/meshwasm/{image}:latest".into(),
        sha256: None,
    };
    let docs = render::envoy_filters(&t, &ecds, &IstioOptions::default());
    let patches = &docs[2]["spec"]["configPatches"];
    assert_eq!(
        patches[0]["patch"]["value"]["typed_config"]["@type"],
        render::WASM_NETWORK_FILTER_TYPE
    );
    assert_eq!(
        patches[1]["patch"]["value"]["config_discovery"]["type_urls"][0],
        render::WASM_NETWORK_FILTER_TYPE
    );
    // Apart from the HTTP filter's, which the same proxy may discover.
    assert_eq!(
        patches[0]["patch"]["value"]["name"],
        "meshwasm.telemetry.network"
    );
    assert_eq!(
        patches[1]["patch"]["value"]["name"],
        "meshwasm.telemetry.network"
    );
}

#[test]
fn plain_envoy_measures_first_and_tags_every_label() {
    let limit = example("local-rate-limit.yaml")
        .split("---")
        .next()
        .unwrap()
        .replace("operation: INSERT_BEFORE", "operation: INSERT_FIRST");
    let input = [limit, example("deny-admin.yaml"), telemetry_example()].join("---\n");
    let t = translate(&input, &Options::default()).unwrap_or_else(|e| panic!("{e}"));
    let bootstrap = render::envoy_bootstrap(&t, &EnvoyOptions::default());
    let filters = bootstrap["static_resources"]["listeners"][0]["filter_chains"][0]["filters"][0]
        ["typed_config"]["http_filters"]
        .as_array()
        .unwrap();
    let names: Vec<&str> = filters
        .iter()
        .map(|f| f["name"].as_str().unwrap())
        .collect();
    assert_eq!(
        names,
        [
            "meshwasm.telemetry",
            "meshwasm.rate-limit",
            "meshwasm.header-match",
            "meshwasm.router",
            "envoy.filters.http.router"
        ]
    );
    let config = &filters[0]["typed_config"]["config"];
    assert_eq!(
        config["vm_config"]["code"]["local"]["filename"],
        "target/wasm32-wasip1/wasm/meshwasm_telemetry.wasm"
    );
    // The first HTTP Telemetry: plain Envoy has one listener (a note says so).
    let carried: Value =
        serde_json::from_str(config["configuration"]["value"].as_str().unwrap()).unwrap();
    assert_eq!(carried, t.telemetry[0].config);
    assert!(t.findings.iter().any(|f| f.severity == Severity::Note
        && f.source.as_ref().unwrap().name == "orders-db-tcp"
        && f.message.contains("HTTP listener only")));
    // A stats tag per label, the added ones included.
    let tags = bootstrap["stats_config"]["stats_tags"].as_array().unwrap();
    let tag_names: Vec<&str> = tags
        .iter()
        .map(|t| t["tag_name"].as_str().unwrap())
        .collect();
    assert_eq!(tag_names, t.telemetry[0].labels);
    assert_eq!(tags[26]["regex"], r"(request_host=\.=(.*?);\.;)");
    assert_eq!(
        bootstrap["stats_config"]["histogram_bucket_settings"][0]["buckets"][0],
        0.5
    );

    // Without a Telemetry, the bootstrap is what it was.
    let t = translate(&example("deny-admin.yaml"), &Options::default()).unwrap();
    let bootstrap = render::envoy_bootstrap(&t, &EnvoyOptions::default());
    assert!(bootstrap.get("stats_config").is_none());
    assert!(!bootstrap.to_string().contains("meshwasm.telemetry"));
}

#[test]
fn a_bad_telemetry_field_is_the_filters_error_at_the_yaml_path_and_line() {
    // Misspelt.
    let input = telemetry_example().replace("tagOverrides:", "tagOverides:");
    let error = only_error(&input);
    assert_eq!(error.path, "spec.metrics[0].overrides[0].tagOverides");
    assert_eq!(error.line, Some(line_of(&input, "tagOverides:")));
    assert_eq!(
        error.message,
        "unknown field `tagOverides`, expected one of `match`, `disabled`, `tagOverrides`"
    );
    // Istio's docs log to the `otel` provider; the filter's exporter is
    // `meshwasm.otlp`, not meshConfig's.
    let input = telemetry_example().replace("name: envoy", "name: otel");
    let error = only_error(&input);
    assert_eq!(error.path, "spec.accessLogging[0].providers[0].name");
    assert_eq!(error.line, Some(line_of(&input, "name: otel")));
    assert!(
        error.message.starts_with("unknown provider \"otel\""),
        "{}",
        error.message
    );
    // An expression that does not parse.
    let input = telemetry_example().replace("\"response.code >= 400\"", "\"response.code >=\"");
    let error = only_error(&input);
    assert_eq!(error.path, "spec.accessLogging[0].filter.expression");
    assert_eq!(error.line, Some(line_of(&input, "expression:")));
    // Placement Istio itself refuses, and another API version.
    let error = only_error(&telemetry(
        "both",
        "shop",
        "  selector: {matchLabels: {app: cart}}\n  targetRefs: [{kind: Service, group: '', name: cart}]\n",
    ));
    assert_eq!(
        (error.path.as_str(), error.line),
        ("spec.selector", Some(5))
    );
    let error = only_error(
        &telemetry("v2", "shop", "  metrics: []\n")
            .replace("telemetry.istio.io/v1", "telemetry.istio.io/v2"),
    );
    assert_eq!(error.path, "apiVersion");
    assert_eq!(
        error.message,
        "\"telemetry.istio.io/v2\" is not an Istio telemetry version; use one of telemetry.istio.io/v1, telemetry.istio.io/v1alpha1"
    );
}

#[test]
fn telemetries_on_the_same_workloads_are_said_since_filters_do_not_merge() {
    let mesh = telemetry(
        "mesh-default",
        "istio-system",
        "  accessLogging: [{providers: [{name: envoy}]}]\n",
    );
    let cart = telemetry(
        "cart",
        "shop",
        "  selector: {matchLabels: {app: cart}}\n  metrics: []\n",
    );
    let again = telemetry(
        "cart-again",
        "shop",
        "  selector: {matchLabels: {app: cart}}\n  metrics: []\n",
    );
    let input = [mesh, cart, again].join("---\n");
    let t = translate(&input, &Options::default()).unwrap_or_else(|e| panic!("{e}"));
    let names: Vec<&str> = t.telemetry.iter().map(|f| f.name.as_str()).collect();
    assert_eq!(names, ["mesh-default", "cart"]);
    assert!(t.telemetry[0].mesh_wide);
    let warnings: Vec<String> = t
        .findings
        .iter()
        .filter(|f| f.severity == Severity::Warning)
        .map(ToString::to_string)
        .collect();
    assert_eq!(warnings.len(), 2, "{warnings:#?}");
    assert!(warnings[0].starts_with("warning: document 3 (Telemetry cart-again) spec (line 17): selects the same workloads as Telemetry shop/cart"), "{}", warnings[0]);
    assert!(warnings[1].starts_with("warning: document 2 (Telemetry cart) spec (line 10): Telemetry istio-system/mesh-default applies mesh-wide too"), "{}", warnings[1]);
    let docs = render::istio_manifests(&t, &IstioOptions::default());
    assert_eq!(docs[0]["metadata"]["namespace"], "istio-system");
    assert!(docs[0]["spec"].get("selector").is_none());
    assert!(
        translate(
            &input,
            &Options {
                strict: true,
                ..Options::default()
            }
        )
        .is_err()
    );

    // A label a stats tag would find inside another one's.
    let input = telemetry(
        "tenant",
        "shop",
        "  metrics:\n  - overrides:\n    - tagOverrides:\n        version: {value: request.host}\n",
    );
    let t = translate(&input, &Options::default()).unwrap();
    let [finding] = t.findings.as_slice() else {
        panic!("{:?}", t.findings)
    };
    assert_eq!(
        finding.path,
        "spec.metrics[0].overrides[0].tagOverrides.version"
    );
    assert_eq!(finding.line, Some(8));
    assert!(
        finding
            .message
            .starts_with("the label \"version\" ends the label \"source_version\""),
        "{}",
        finding.message
    );
}
