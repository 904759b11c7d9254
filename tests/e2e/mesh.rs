//! The mesh module in Envoy 1.40, beside the same rules run as one filter
//! each: `examples/virtual-services/mesh-bookinfo.yaml` rendered by
//! envoyfilter both ways, the same requests sent to both, and the clients'
//! answers, the upstreams reached and Istio's metrics compared.

use crate::envoyfilter::example;
use envoyfilter::render::{EnvoyOptions, envoy_bootstrap};
use meshwasm_artifacts::MESH_WASM;
use meshwasm_local::envoy::{self, Bootstrap, Envoy};
use meshwasm_local::prometheus;
use meshwasm_local::traffic::send;
use meshwasm_local::upstream::Upstream;
use std::collections::BTreeMap;
use std::path::Path;

/// What a client saw of one request: status, the upstream that answered.
type Seen = (u16, Option<String>);

/// A request: host, path and headers.
type Request = (
    &'static str,
    &'static str,
    &'static [(&'static str, &'static str)],
);

/// The requests of the comparison: every behaviour's case.
const REQUESTS: [Request; 8] = [
    ("reviews", "/reviews/1", &[("end-user", "jason")]),
    ("reviews", "/reviews/1", &[("end-user", "kim")]),
    ("ratings", "/ratings/1", &[("end-user", "jason")]),
    ("ratings", "/ratings/1", &[]),
    ("reviews", "/admin", &[]),
    ("reviews", "/%61dmin", &[]),
    // Four a minute per client: the fifth and sixth are refused.
    ("reviews", "/reviews/2", &[("x-client", "crawler")]),
    ("reviews", "/reviews/3", &[("x-client", "crawler")]),
];

async fn play(envoy: &Envoy) -> (Vec<Seen>, BTreeMap<String, f64>) {
    let http = envoy::client().unwrap();
    let mut seen = Vec::new();
    for round in 0..3 {
        for (host, path, headers) in REQUESTS {
            // The crawler's requests are sent every round; the others once.
            if round > 0 && !headers.iter().any(|(n, _)| *n == "x-client") {
                continue;
            }
            let mut request = http.get(envoy.url(path)).header("host", host);
            for (name, value) in headers {
                request = request.header(*name, *value);
            }
            let outcome = send(request).await.unwrap();
            seen.push((outcome.status, outcome.upstream().map(str::to_owned)));
        }
    }
    // Envoy writes a stream's stats when it is over.
    tokio::time::sleep(std::time::Duration::from_millis(300)).await;
    let stats = prometheus::parse(&envoy.admin_get("/stats/prometheus").await.unwrap());
    let mut by_code = BTreeMap::new();
    for (labels, value) in stats.get("istio_requests_total").into_iter().flatten() {
        let code = labels.get("response_code").cloned().unwrap_or_default();
        *by_code.entry(code).or_default() += *value;
    }
    (seen, by_code)
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_mesh_module_answers_as_the_filters_do_one_by_one() {
    let t = example("mesh-bookinfo.yaml");
    let mut upstreams = Vec::new();
    let mut options = EnvoyOptions {
        listen: ("127.0.0.1".into(), 0),
        admin: ("127.0.0.1".into(), 0),
        wasm_dir: Path::new(MESH_WASM).parent().unwrap().display().to_string(),
        ..EnvoyOptions::default()
    };
    for (cluster, name) in [
        ("outbound||v1|reviews", "reviews-v1"),
        ("outbound||v2|reviews", "reviews-v2"),
        ("outbound||v1|ratings", "ratings-v1"),
    ] {
        let upstream = Upstream::start(name).await.unwrap();
        let addr = upstream.addr();
        options
            .upstreams
            .insert(cluster.into(), vec![(addr.ip().to_string(), addr.port())]);
        upstreams.push(upstream);
    }
    let separate = Envoy::start(Bootstrap::from_config(envoy_bootstrap(&t, &options)))
        .await
        .unwrap();
    let separate_seen = play(&separate).await;
    options.mesh = true;
    let bootstrap = envoy_bootstrap(&t, &options);
    let filters = &bootstrap["static_resources"]["listeners"][0]["filter_chains"][0]["filters"][0]
        ["typed_config"]["http_filters"];
    let names: Vec<&str> = filters
        .as_array()
        .unwrap()
        .iter()
        .filter_map(|f| f["name"].as_str())
        .collect();
    assert_eq!(names, ["meshwasm.mesh", "envoy.filters.http.router"]);
    let mesh = Envoy::start(Bootstrap::from_config(bootstrap))
        .await
        .unwrap();
    let mesh_seen = play(&mesh).await;

    let (seen, by_code) = &mesh_seen;
    let v = |s: &str| Some(s.to_owned());
    assert_eq!(
        seen[..8],
        [
            (200, v("reviews-v2")),
            (200, v("reviews-v1")),
            (500, None),
            (200, v("ratings-v1")),
            (403, None),
            (403, None),
            (200, v("reviews-v1")),
            (200, v("reviews-v1")),
        ],
        "the mesh module"
    );
    assert_eq!(
        seen[8..],
        [
            (200, v("reviews-v1")),
            (200, v("reviews-v1")),
            (429, None),
            (429, None)
        ],
        "the crawler's bucket of 4"
    );
    assert_eq!(
        by_code.values().sum::<f64>(),
        seen.len() as f64,
        "every request counted once: {by_code:?}"
    );
    assert_eq!(
        mesh_seen, separate_seen,
        "the mesh against the filters one by one"
    );
}
