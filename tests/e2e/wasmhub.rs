//! The whole publishing path: a filter packed by wasmhub, pushed to a real
//! registry, pulled and extracted by Istio's rules, then loaded by Envoy,
//! where it must behave exactly like the module that was built.

use meshwasm_artifacts::FAULT_WASM;
use meshwasm_local::envoy::{self, Bootstrap, Envoy, WasmFilter};
use meshwasm_local::registry::Registry;
use meshwasm_local::upstream::Upstream;
use oci_client::secrets::RegistryAuth;
use wasmhub::image::{BuildOptions, Image, Variant};
use wasmhub::istio;
use wasmhub::registry;

const JASON_ABORT: &str =
    include_str!("../../examples/local/virtual-services/ratings-jason-abort.json");

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn envoy_runs_the_filter_as_pulled_from_a_registry_in_both_variants() {
    let registry = Registry::start().await.unwrap();
    let client = registry::Registry::default();
    let built = std::fs::read(FAULT_WASM).unwrap();
    let upstream = Upstream::start("ratings-v1").await.unwrap();
    let dir = tempfile::tempdir().unwrap();
    for variant in [Variant::Compat, Variant::WasmHub] {
        let image = Image::build(
            &built,
            &BuildOptions {
                variant,
                root_ids: vec!["fault".into()],
            },
        )
        .unwrap();
        let reference =
            registry::parse_reference(&format!("{}/meshwasm/fault:{variant}", registry.host()))
                .unwrap();
        let pushed = client
            .push(&reference, &image, &RegistryAuth::Anonymous, &())
            .await
            .unwrap();
        assert_eq!(pushed.digest, image.digest());

        // What Istio's agent does: pull by the pinned digest, extract, load.
        let pinned = reference.clone_with_digest(pushed.digest.clone());
        let pulled = client
            .pull(&pinned, &RegistryAuth::Anonymous, &())
            .await
            .unwrap();
        let extracted = istio::extract(&pulled).unwrap();
        assert_eq!(extracted.module, built);
        let module = dir.path().join(format!("fault-{variant}.wasm"));
        std::fs::write(&module, &extracted.module).unwrap();

        let envoy = Envoy::start(Bootstrap::new(upstream.addr()).filter(WasmFilter::new(
            "fault",
            &module,
            JASON_ABORT,
        )))
        .await
        .unwrap();
        let http = envoy::client().unwrap();
        let get = |cookie: &'static str| {
            http.get(envoy.url("/ratings/0"))
                .header("host", "ratings")
                .header("cookie", cookie)
                .send()
        };
        assert_eq!(get("user=jason").await.unwrap().status(), 500, "{variant}");
        assert_eq!(get("user=alice").await.unwrap().status(), 200, "{variant}");
    }
}
