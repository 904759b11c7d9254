//! Core's shared-data port over the host, natively in sdk-host (which hands
//! back values as Envoy does: an empty value as a null pointer and size 0).
#![allow(clippy::unwrap_used, clippy::expect_used, clippy::panic)]

use meshwasm_core::config::{self, Document};
use meshwasm_core::plan::Plan;
use meshwasm_core::shared_counter::SharedData;
use meshwasm_core::{ConfigError, ConfigNote};
use meshwasm_plugin::host::HostSharedData;
use meshwasm_plugin::reply::{LocalReply, send_local_reply};
use meshwasm_plugin::{Filter, Plugin, Setup};
use proxy_wasm::traits::{Context, HttpContext};
use proxy_wasm::types::Action;
use std::rc::Rc;

/// Which key the probe reads, and the value to write back under the CAS
/// token it read.
#[derive(serde::Deserialize)]
struct Probe {
    key: String,
    write: String,
}

impl Plan for Probe {
    const DOCUMENT: Document = Document {
        name: "a probe",
        example: r#"{"key": "k", "write": "v"}"#,
        list_key: None,
    };
    fn from_json(json: &[u8]) -> Result<Self, ConfigError> {
        config::parse(json, Self::DOCUMENT)
    }
    fn notes(&self) -> &[ConfigNote] {
        &[]
    }
    fn summary(&self) -> String {
        String::new()
    }
}

#[derive(Default)]
struct SharedDataProbe;

struct ProbeStream(Rc<Probe>);

impl Filter for SharedDataProbe {
    const NAME: &'static str = "probe";
    type Plan = Probe;
    type Config = Probe;
    type Stream = ProbeStream;
    fn configure(_: &Plugin<Self>, plan: Probe, _: Setup<'_>) -> Probe {
        plan
    }
    fn stream(_: &Rc<Plugin<Self>>, config: Rc<Probe>, _: u32) -> ProbeStream {
        ProbeStream(config)
    }
}

impl Context for ProbeStream {}

/// Answers with what the read saw and whether the write under its CAS
/// token was taken.
impl HttpContext for ProbeStream {
    fn on_http_request_headers(&mut self, _: usize, _: bool) -> Action {
        let store = HostSharedData;
        let seen = match store.get(&self.0.key) {
            Ok(Some((value, cas))) => {
                let written = store.set(&self.0.key, self.0.write.as_bytes(), cas);
                format!("present {:?} {}", value, written.is_ok())
            }
            Ok(None) => "absent".to_string(),
            Err(e) => format!("error {e:?}"),
        };
        let reply = LocalReply {
            status: 200,
            details: "probe",
            body: seen.as_bytes(),
            grpc_status: None,
        };
        let _ = send_local_reply(reply, []);
        Action::Pause
    }
}

meshwasm_plugin::main!(SharedDataProbe);

fn probe(host: &mut sdk_host::Host) -> String {
    let stream = host.new_http_stream().unwrap();
    host.send_request_headers(stream, &[(":path", "/")], true)
        .unwrap();
    let body = host
        .http(stream)
        .unwrap()
        .local_response()
        .unwrap()
        .body
        .clone();
    String::from_utf8(body).unwrap()
}

fn start(proxy: &sdk_host::Proxy) -> sdk_host::Host {
    sdk_host::Host::builder()
        .proxy(proxy)
        .plugin_config(r#"{"key": "bucket", "write": "drawn"}"#)
        .start_native(sdk_host::native_module!(meshwasm_plugin))
        .unwrap()
}

/// A key created empty (how the rate limit creates its buckets before
/// traffic) exists, with a CAS token: reading it as absent would make the
/// next write unconditional, and two workers drawing a new bucket's first
/// token at once would both get one.
#[test]
fn an_empty_value_is_present_with_its_cas_token() {
    let proxy = sdk_host::Proxy::new();
    let mut host = start(&proxy);
    assert_eq!(probe(&mut host), "absent");
    proxy.set_shared_data("", "bucket", b"").unwrap();
    assert_eq!(probe(&mut host), "present [] true");
    assert_eq!(
        host.shared_data("bucket").map(|(v, _)| v),
        Some(b"drawn".to_vec())
    );
}
