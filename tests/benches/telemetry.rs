//! Telemetry filter benchmarks in a real Envoy, against a baseline of the
//! same run:
//! - `instructions`: instructions per request under callgrind: no filter;
//!   the Wasm filter with Istio's defaults (`{}`) as a server sidecar whose
//!   clients send their peer metadata; Envoy's own access log in Istio's
//!   JSON format; the Wasm filter with its JSON access log on as well;
//! - `size`: the module raw, after `wasm-opt -Oz` and gzipped.
//!
//! Run: `cargo bench -p meshwasm-e2e --bench telemetry [-- instructions|size]`.

#![allow(clippy::unwrap_used, clippy::expect_used, clippy::panic)]

use meshwasm_artifacts::TELEMETRY_WASM;
use meshwasm_core::telemetry::labels::STANDARD_LABELS;
use meshwasm_core::telemetry::peer::{Exchange, ID_HEADER, METADATA_HEADER};
use meshwasm_core::telemetry::workload::Workload;
use meshwasm_local::bench::{self, Case, Traffic};
use meshwasm_local::envoy::{self, Bootstrap, WasmFilter};
use meshwasm_local::upstream::Upstream;
use serde_json::{Value, json};

/// The server sidecar's node, as Istio's injector writes it.
fn node() -> Value {
    json!({
        "id": "sidecar~127.0.0.1~ratings-v1-7f9c.shop~shop.svc.cluster.local",
        "metadata": {
            "NAME": "ratings-v1-7f9c", "NAMESPACE": "shop", "WORKLOAD_NAME": "ratings-v1",
            "CLUSTER_ID": "Kubernetes",
            "LABELS": {"app": "ratings", "version": "v1"},
        },
    })
}

/// Istio's default JSON access log, as Envoy's own file access log.
fn native_access_log() -> Value {
    let format: serde_json::Map<String, Value> = [
        ("start_time", "%START_TIME%"),
        ("method", "%REQ(:METHOD)%"),
        ("path", "%REQ(X-ENVOY-ORIGINAL-PATH?:PATH)%"),
        ("protocol", "%PROTOCOL%"),
        ("response_code", "%RESPONSE_CODE%"),
        ("response_flags", "%RESPONSE_FLAGS%"),
        ("response_code_details", "%RESPONSE_CODE_DETAILS%"),
        (
            "connection_termination_details",
            "%CONNECTION_TERMINATION_DETAILS%",
        ),
        (
            "upstream_transport_failure_reason",
            "%UPSTREAM_TRANSPORT_FAILURE_REASON%",
        ),
        ("bytes_received", "%BYTES_RECEIVED%"),
        ("bytes_sent", "%BYTES_SENT%"),
        ("duration", "%DURATION%"),
        (
            "upstream_service_time",
            "%RESP(X-ENVOY-UPSTREAM-SERVICE-TIME)%",
        ),
        ("x_forwarded_for", "%REQ(X-FORWARDED-FOR)%"),
        ("user_agent", "%REQ(USER-AGENT)%"),
        ("request_id", "%REQ(X-REQUEST-ID)%"),
        ("authority", "%REQ(:AUTHORITY)%"),
        ("upstream_host", "%UPSTREAM_HOST%"),
        ("upstream_cluster", "%UPSTREAM_CLUSTER%"),
        ("upstream_local_address", "%UPSTREAM_LOCAL_ADDRESS%"),
        ("downstream_local_address", "%DOWNSTREAM_LOCAL_ADDRESS%"),
        ("downstream_remote_address", "%DOWNSTREAM_REMOTE_ADDRESS%"),
        ("requested_server_name", "%REQUESTED_SERVER_NAME%"),
        ("route_name", "%ROUTE_NAME%"),
    ]
    .into_iter()
    .map(|(k, v)| (k.to_owned(), json!(v)))
    .collect();
    json!([{
        "name": "envoy.access_loggers.file",
        "typed_config": {
            "@type": "type.googleapis.com/envoy.extensions.access_loggers.file.v3.FileAccessLog",
            "path": "/dev/null",
            "log_format": {"json_format": format},
        },
    }])
}

#[tokio::main(flavor = "multi_thread", worker_threads = 2)]
async fn main() {
    println!(
        "meshwasm telemetry filter benchmarks, Envoy {} (V8)\n",
        envoy::ENVOY_VERSION
    );
    let wanted = bench::wanted_parts();
    if wanted("instructions") {
        instructions_per_request().await;
    }
    if wanted("size") {
        bench::module_size(TELEMETRY_WASM);
    }
}

async fn instructions_per_request() {
    if !bench::have_valgrind() {
        return;
    }
    let upstream = Upstream::start("backend").await.unwrap();
    let labels: Vec<String> = STANDARD_LABELS.iter().map(|l| (*l).to_owned()).collect();
    let sidecar = || {
        Bootstrap::new(upstream.addr())
            .node(node())
            .direction("INBOUND")
            .stats_config(envoyfilter::render::stats::stats_config(&labels))
    };
    let telemetry =
        |config: Value| WasmFilter::new("telemetry", TELEMETRY_WASM, config.to_string());
    let with_native_log = || {
        let mut options = serde_json::Map::new();
        options.insert("access_log".into(), native_access_log());
        options
    };
    let cases = vec![
        Case::new("no filter (baseline)", sidecar()),
        Case::new(
            "Wasm telemetry, Istio's defaults ({})",
            sidecar().filter(telemetry(json!({}))),
        ),
        Case::new(
            "Envoy native access log, Istio's JSON format",
            sidecar().connection_manager_options(with_native_log()),
        ),
        Case::new(
            "Wasm telemetry, defaults and its JSON access log",
            sidecar()
                .filter(telemetry(
                    json!({"accessLogging": [{"providers": [{"name": "envoy"}]}]}),
                ))
                .wasm_log_level("info"),
        ),
    ];
    // Every client is a sidecar that sends its workload, as in a mesh.
    let client = Workload::from_fields(
        [("WORKLOAD_NAME", "productpage-v1"), ("NAMESPACE", "shop")],
        [("app", "productpage"), ("version", "v1")],
    );
    let exchange = Exchange::new(
        &client,
        "sidecar~10.0.0.9~productpage-v1-abc.shop~shop.svc.cluster.local",
    );
    let (metadata, id) = (exchange.metadata().to_owned(), exchange.id().to_owned());
    let traffic = Traffic::new("/ratings/42", move |req, _| {
        req.header(METADATA_HEADER, metadata.as_str())
            .header(ID_HEADER, id.as_str())
            .header("user-agent", "bench/1.0")
    });
    bench::instructions_per_request(cases, 500, &traffic)
        .await
        .unwrap();
    println!();
}
