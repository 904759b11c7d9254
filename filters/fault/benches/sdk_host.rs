//! Simulated HTTP streams per second through the fault filter in sdk-host,
//! wasm mode against native mode in the same run, and module instantiation
//! time. `cargo bench -p meshwasm-fault --bench sdk_host`.
#![allow(clippy::unwrap_used, clippy::expect_used, clippy::panic)]

use sdk_host::{Host, WasmModule};
use std::time::{Duration, Instant};

/// A VirtualService whose route matches but injects nothing: every stream
/// runs the filter's full decision.
const CONFIG: &str = r#"{"hosts": ["*"], "http": [{"match": [{"uri": {"prefix": "/api"}}], "fault": {"abort": {"percentage": {"value": 0}, "httpStatus": 503}}, "route": [{"destination": {"host": "web"}}]}]}"#;
const HEADERS: [(&str, &str); 5] = [
    (":method", "GET"),
    (":path", "/api/items?page=2"),
    (":authority", "shop.example.com"),
    ("user-agent", "bench"),
    ("x-request-id", "5b0f2c1e"),
];

/// One stream: create, request headers, response headers, end.
fn stream(host: &mut Host) {
    let id = host.new_http_stream().unwrap();
    host.send_request_headers(id, &HEADERS, true).unwrap();
    host.send_response_headers(id, &[(":status", "200"), ("content-length", "0")], true)
        .unwrap();
    host.finish(id).unwrap();
}

fn streams_per_second(host: &mut Host, budget: Duration) -> f64 {
    for _ in 0..1_000 {
        stream(host);
    }
    let started = Instant::now();
    let mut count = 0u64;
    while started.elapsed() < budget {
        for _ in 0..1_000 {
            stream(host);
        }
        count += 1_000;
    }
    count as f64 / started.elapsed().as_secs_f64()
}

fn main() {
    let budget = Duration::from_secs(3);
    let compile_started = Instant::now();
    let module = WasmModule::from_file(meshwasm_artifacts::FAULT_WASM).unwrap();
    let compile = compile_started.elapsed();

    let rounds = 200;
    let started = Instant::now();
    for _ in 0..rounds {
        Host::builder()
            .plugin_config(CONFIG)
            .start(&module)
            .unwrap();
    }
    let start_wasm = started.elapsed() / rounds;

    let mut wasm = Host::builder()
        .plugin_config(CONFIG)
        .start(&module)
        .unwrap();
    let wasm_rate = streams_per_second(&mut wasm, budget);
    let mut native = Host::builder()
        .plugin_config(CONFIG)
        .start_native(sdk_host::native_module!(meshwasm_fault))
        .unwrap();
    let native_rate = streams_per_second(&mut native, budget);

    println!(
        "fault filter through sdk-host ({} s per mode)",
        budget.as_secs()
    );
    println!(
        "  compile module (once):              {:>9.1} ms",
        compile.as_secs_f64() * 1e3
    );
    println!(
        "  start a host (instantiate + configure): {:>6.1} us",
        start_wasm.as_secs_f64() * 1e6
    );
    println!("  native (baseline):  {native_rate:>10.0} streams/s");
    println!(
        "  wasm:               {wasm_rate:>10.0} streams/s  = {:.2}x native",
        wasm_rate / native_rate
    );
}
