//! A module from another language's SDK: the AssemblyScript filter in
//! `tests/assemblyscript` (built by the test set-up with npm), played
//! through its scenario file, which the e2e suite also plays in Envoy.

use sdk_host::WasmModule;
use sdk_host::scenario::Scenario;
use std::path::Path;

#[test]
fn the_assemblyscript_filter_runs_its_scenario() {
    let file =
        Path::new(env!("CARGO_MANIFEST_DIR")).join("../tests/scenarios/assemblyscript-filter.yaml");
    let scenario = Scenario::from_file(&file).unwrap();
    let wasm = scenario.filter_path();
    let module = WasmModule::from_file(&wasm).unwrap_or_else(|e| {
        panic!("{e}: build it with ./scripts/test.sh (npm ci && npm run build in sdk-host/tests/assemblyscript)")
    });
    assert_eq!(module.abi_version(), "proxy_abi_version_0_2_0");
    let report = scenario.run(&module).unwrap();
    assert!(report.passed(), "{:#?}", report.failures);
}
