//! envoyfilter's plain Envoy output, from the Istio YAML in
//! `examples/virtual-services/`: Envoy accepts every rendered bootstrap
//! (validation creates the Wasm VMs and configures the filters), and one
//! bootstrap with two VirtualServices in one filter routes real traffic,
//! Istio's local rate limit EnvoyFilter, rendered, throttles in Envoy, and
//! its global one asks a rate limit service.

use envoyfilter::render::{self, EnvoyOptions, envoy_bootstrap};
use envoyfilter::translate::{Options, Translation, translate};
use meshwasm_artifacts::{RATE_LIMIT_WASM, ROUTER_WASM};
use meshwasm_local::envoy::{self, Bootstrap, Envoy};
use meshwasm_local::mesh::Mesh;
use meshwasm_local::traffic::{send, send_many};
use meshwasm_local::upstream::Upstream;
use std::collections::BTreeMap;
use std::path::Path;

/// The Istio YAML files in `examples/virtual-services/`.
pub(crate) const EXAMPLES: [&str; 12] = [
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
    "mesh-bookinfo.yaml",
    "telemetry.yaml",
];

/// An example, translated with the default options.
pub(crate) fn example(name: &str) -> Translation {
    let path = format!(
        "{}/../examples/virtual-services/{name}",
        env!("CARGO_MANIFEST_DIR")
    );
    let text = std::fs::read_to_string(&path).unwrap_or_else(|e| panic!("{path}: {e}"));
    translate(&text, &Options::default()).unwrap_or_else(|e| panic!("{path}:\n{e}"))
}

fn loopback_options() -> EnvoyOptions {
    let wasm_dir = Path::new(ROUTER_WASM).parent().unwrap();
    EnvoyOptions {
        listen: ("127.0.0.1".into(), 0),
        admin: ("127.0.0.1".into(), 0),
        wasm_dir: wasm_dir.display().to_string(),
        ..EnvoyOptions::default()
    }
}

#[test]
fn envoy_accepts_every_rendered_bootstrap() {
    let dir = tempfile::tempdir().unwrap();
    for name in EXAMPLES {
        let mut options = loopback_options();
        options.default_cluster = Some(("127.0.0.1".into(), 9));
        // As examples/generate.sh renders them.
        options.mesh = name.starts_with("mesh-");
        let t = example(name);
        // Hosts left to DNS must not be looked up here: point them at loopback.
        for service in &t.services {
            for upstream in &service.upstreams {
                options
                    .upstreams
                    .insert(upstream.host.clone(), vec![("127.0.0.1".into(), 9)]);
            }
        }
        // The rate limit services' clusters too.
        for cluster in &t.service_clusters {
            options
                .upstreams
                .insert(cluster.name.clone(), vec![("127.0.0.1".into(), 9)]);
        }
        // The YAML a user would save, not the JSON value: the writer is tested too.
        let config = dir.path().join(name);
        std::fs::write(
            &config,
            envoyfilter::yaml::dump(&[envoy_bootstrap(&t, &options)]),
        )
        .unwrap();
        envoy::validate(&config).unwrap_or_else(|e| panic!("{name}: {e:#}"));
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn header_routing_yaml_routes_each_host_by_its_own_virtual_service() {
    let t = example("header-routing.yaml");
    let prod = Upstream::start("prod").await.unwrap();
    let qa = Upstream::start("qa").await.unwrap();
    let v1 = Upstream::start("v1").await.unwrap();
    let v2 = Upstream::start("v2").await.unwrap();
    let at = |u: &Upstream| vec![(u.addr().ip().to_string(), u.addr().port())];
    let mut options = loopback_options();
    options.upstreams = BTreeMap::from([
        ("reviews.prod.svc.cluster.local".into(), at(&prod)),
        ("reviews.qa.svc.cluster.local".into(), at(&qa)),
        ("outbound||v1|reviews".into(), at(&v1)),
        ("outbound||v2|reviews".into(), at(&v2)),
    ]);
    let envoy = Envoy::start(Bootstrap::from_config(envoy_bootstrap(&t, &options)))
        .await
        .unwrap();
    let http = envoy::client().unwrap();
    let upstream_of = |host: &'static str, headers: &'static [(&'static str, &'static str)]| {
        let mut request = http.get(envoy.url("/reviews/1")).header("host", host);
        for (name, value) in headers {
            request = request.header(*name, *value);
        }
        async move {
            let outcome = send(request).await.unwrap();
            (
                outcome.status,
                outcome.upstream().unwrap_or_default().to_owned(),
            )
        }
    };
    // The reviews VirtualService: jason sees v2, everyone else v1.
    assert_eq!(
        upstream_of("reviews", &[("end-user", "jason")]).await,
        (200, "v2".into())
    );
    assert_eq!(upstream_of("reviews:9080", &[]).await, (200, "v1".into()));
    // bookinfo-rule, for its own hosts: the dev cookie goes to qa.
    assert_eq!(
        upstream_of("uk.bookinfo.com", &[("cookie", "user=dev-123")]).await,
        (200, "qa".into())
    );
    // No VirtualService names this host: the bootstrap's 404.
    assert_eq!(upstream_of("ratings", &[]).await.0, 404);
    // bookinfo-rule's 80/20 split between prod and qa.
    let url = envoy.url("/reviews/1");
    let outcomes = send_many(400, 8, move |_| {
        http.get(&url).header("host", "eu.bookinfo.com")
    })
    .await
    .unwrap();
    let prod_share = outcomes
        .iter()
        .filter(|o| o.upstream() == Some("prod"))
        .count();
    let qa_share = outcomes
        .iter()
        .filter(|o| o.upstream() == Some("qa"))
        .count();
    assert_eq!(prod_share + qa_share, 400);
    // 80 % of 400 within about 4.5 standard deviations (sd = 8).
    assert!(
        (284..=356).contains(&prod_share),
        "prod {prod_share}, qa {qa_share}"
    );
}

/// The Gateway's `tls.httpsRedirect` in the rendered file: a plain-HTTP
/// request is redirected even when the client claims `x-forwarded-proto:
/// https` (it got the page before: the listener trusted the client's
/// header). Behind a load balancer that terminates TLS, the file rendered
/// with `--trusted-proxies 1` trusts that hop's header.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_client_cannot_skip_the_gateways_https_redirect() {
    let file = Path::new(env!("CARGO_MANIFEST_DIR"))
        .join("../examples/envoy/gateway-prefixes-mirror.yaml");
    let mesh = Mesh::from_envoy_file(&file, &[]).await.unwrap();
    let host = "httpbin.example.com";
    let plain = mesh.get(host, "/status/418", &[]).await.unwrap();
    let forged = mesh
        .get(host, "/status/418", &[("x-forwarded-proto", "https")])
        .await
        .unwrap();
    for answer in [&plain, &forged] {
        assert_eq!(answer.status, 301);
        assert_eq!(
            answer.header("location"),
            Some("https://httpbin.example.com/status/418")
        );
    }
    assert_eq!(mesh.upstream("httpbin").hits(), 0);

    let t = example("gateway-prefixes-mirror.yaml");
    let behind_a_balancer = EnvoyOptions {
        trusted_proxies: 1,
        ..loopback_options()
    };
    let config = render::envoy_bootstrap(&t, &behind_a_balancer);
    let mesh = Mesh::from_envoy_config(config, &[]).await.unwrap();
    let tls = mesh
        .get(host, "/status/418", &[("x-forwarded-proto", "https")])
        .await
        .unwrap();
    assert_eq!(tls.upstream(), Some("httpbin"), "{}", tls.status);
    let plain = mesh.get(host, "/status/418", &[]).await.unwrap();
    assert_eq!(plain.status, 301);
}

/// Istio's local rate limit task, as `examples/envoy/local-rate-limit.yaml`
/// renders it for plain Envoy (the file docker-compose runs): the Wasm
/// filter ahead of the router, 4 requests a minute per `x-client` value
/// and 4 for requests without one, each refusal a 429 with the task's
/// `x-local-rate-limit: true`; a crawler is throttled while another client
/// still gets in. Then the same EnvoyFilter with its config written
/// directly (`@type: ...LocalRateLimit`) instead of in a TypedStruct.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn istios_local_rate_limit_throttles_a_crawler_in_envoy() {
    assert!(Path::new(RATE_LIMIT_WASM).is_file(), "{RATE_LIMIT_WASM}");
    let file =
        Path::new(env!("CARGO_MANIFEST_DIR")).join("../examples/envoy/local-rate-limit.yaml");
    let typed_struct = Mesh::from_envoy_file(&file, &[]).await.unwrap();

    let t = example("local-rate-limit.yaml");
    let mut direct = t.clone();
    let config = &mut direct.rate_limits[0].config;
    config["@type"] = envoyfilter::translate::LOCAL_RATE_LIMIT_TYPE.into();
    let mut options = loopback_options();
    options
        .upstreams
        .insert("productpage".into(), vec![("productpage".into(), 9080)]);
    let direct = Mesh::from_envoy_config(envoy_bootstrap(&direct, &options), &[])
        .await
        .unwrap();

    for mesh in [&typed_struct, &direct] {
        let statuses = |client: Option<&'static str>, n: usize| async move {
            let mut out = Vec::new();
            for _ in 0..n {
                let headers: Vec<(&str, &str)> =
                    client.map(|c| ("x-client", c)).into_iter().collect();
                let answer = mesh.get("productpage", "/", &headers).await.unwrap();
                if answer.status == 429 {
                    assert_eq!(answer.header("x-local-rate-limit"), Some("true"));
                } else {
                    assert_eq!(answer.upstream(), Some("productpage"), "{}", answer.status);
                }
                out.push(answer.status);
            }
            out
        };
        assert_eq!(
            statuses(Some("crawler"), 6).await,
            [200, 200, 200, 200, 429, 429]
        );
        // Another client has its own bucket, and so do requests without one.
        assert_eq!(statuses(Some("alice"), 2).await, [200, 200]);
        assert_eq!(statuses(None, 5).await, [200, 200, 200, 200, 429]);
        assert_eq!(statuses(Some("crawler"), 1).await, [429]);
        assert_eq!(mesh.upstream("productpage").hits(), 10);
    }
}

/// Istio's global rate limit task, rendered for plain Envoy from its two
/// EnvoyFilters: the Wasm filter asks a rate limit service (the suite's
/// tonic one, given by the cluster Istio names) about each request's path,
/// with the domain and the route's action moved inline; the task's limit,
/// `/productpage` once a minute, refuses the second request as Envoy's
/// ratelimit filter does, while other paths go on. The call reaches the
/// service, under Istio's cluster name (`outbound|8081||...`), because it
/// carries the task's `authority`: with the cluster name as its
/// `:authority`, tonic would reset every call.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn istios_global_rate_limit_asks_the_rate_limit_service_in_envoy() {
    assert!(Path::new(RATE_LIMIT_WASM).is_file(), "{RATE_LIMIT_WASM}");
    let t = example("global-rate-limit.yaml");
    let productpage = Upstream::start("productpage").await.unwrap();
    let rls = crate::rls::Rls::start(&[("PATH=/productpage", 1)]).await;
    let at = |a: std::net::SocketAddr| (a.ip().to_string(), a.port());
    let mut options = loopback_options();
    options
        .upstreams
        .insert("productpage".into(), vec![at(productpage.addr())]);
    assert_eq!(t.service_clusters.len(), 1);
    options
        .upstreams
        .insert(t.service_clusters[0].name.clone(), vec![at(rls.addr())]);
    render::check_upstreams(&t, &options).unwrap();
    let envoy = Envoy::start(Bootstrap::from_config(envoy_bootstrap(&t, &options)))
        .await
        .unwrap();
    let http = envoy::client().unwrap();
    let get = |path: &'static str| {
        let request = http.get(envoy.url(path)).header("host", "productpage");
        async move { send(request).await.unwrap() }
    };
    let first = get("/productpage").await;
    assert_eq!(first.status, 200, "{first:?}");
    assert_eq!(first.upstream(), Some("productpage"));
    let second = get("/productpage").await;
    assert_eq!(second.status, 429);
    assert_eq!(second.header("x-envoy-ratelimited"), Some("true"));
    for _ in 0..3 {
        assert_eq!(get("/static/style.css").await.status, 200);
    }
    assert_eq!(productpage.hits(), 4);
    let seen = rls.seen();
    assert_eq!(seen.len(), 5);
    assert!(seen.iter().all(|r| r.domain == "ratelimit"));
    assert!(
        rls.authorities()
            .iter()
            .all(|a| a == "ratelimit.default.svc.cluster.local"),
        "{:?}",
        rls.authorities()
    );
    let entry = &seen[0].descriptors[0].entries[0];
    assert_eq!(
        (entry.key.as_str(), entry.value.as_str()),
        ("PATH", "/productpage")
    );
}
