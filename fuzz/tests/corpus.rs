//! Replays the kept corpus (`corpus/<target>/`: inputs libFuzzer found
//! interesting, the seeds, and every crash once fixed) through the
//! properties, in the test command.
#![allow(clippy::expect_used, clippy::panic)]

use std::path::Path;

/// Runs every input of `corpus/<target>` through `property`; at least
/// `least` inputs must be there.
fn replay(target: &str, least: usize, property: fn(&[u8])) {
    let dir = Path::new(env!("CARGO_MANIFEST_DIR"))
        .join("corpus")
        .join(target);
    let mut replayed = 0;
    for entry in std::fs::read_dir(&dir).expect("the corpus is kept in the repo") {
        let input = std::fs::read(entry.expect("a corpus entry").path()).expect("a corpus file");
        property(&input);
        replayed += 1;
    }
    assert!(
        replayed >= least,
        "only {replayed} inputs in {}",
        dir.display()
    );
}

#[test]
fn the_authz_corpus_holds_its_properties() {
    replay("authz", 50, meshwasm_fuzz::authz);
}

#[test]
fn the_telemetry_corpus_holds_its_properties() {
    replay("telemetry", 10, meshwasm_fuzz::telemetry);
}

#[test]
fn the_config_corpus_holds_its_properties() {
    replay("config", 30, meshwasm_fuzz::config);
}

#[test]
fn the_routing_corpus_holds_its_properties() {
    replay("routing", 9, meshwasm_fuzz::routing);
}

#[test]
fn the_header_map_corpus_holds_its_properties() {
    replay("header_map", 9, meshwasm_fuzz::header_map);
}

#[test]
fn the_durations_corpus_holds_its_properties() {
    replay("durations", 9, meshwasm_fuzz::durations);
}

#[test]
fn the_wasmhub_corpus_holds_its_properties() {
    replay("wasmhub", 8, meshwasm_fuzz::wasmhub);
}

#[test]
fn the_envoyfilter_corpus_holds_its_properties() {
    replay("envoyfilter", 10, meshwasm_fuzz::envoyfilter);
}

#[test]
fn the_sdk_host_corpus_holds_its_properties() {
    replay("sdk_host", 10, meshwasm_fuzz::sdk_host);
}
