//! Replays the kept corpus (`corpus/<target>/`: inputs libFuzzer found
//! interesting, and every crash once fixed) through the properties.

use std::path::Path;

#[test]
fn the_authz_corpus_holds_its_properties() {
    let dir = Path::new(env!("CARGO_MANIFEST_DIR")).join("corpus/authz");
    let mut replayed = 0;
    for entry in std::fs::read_dir(&dir).expect("the corpus is kept in the repo") {
        let input = std::fs::read(entry.expect("a corpus entry").path()).expect("a corpus file");
        meshwasm_fuzz::authz(&input);
        replayed += 1;
    }
    assert!(
        replayed >= 50,
        "only {replayed} inputs in {}",
        dir.display()
    );
}

#[test]
fn the_telemetry_corpus_holds_its_properties() {
    let dir = Path::new(env!("CARGO_MANIFEST_DIR")).join("corpus/telemetry");
    let mut replayed = 0;
    for entry in std::fs::read_dir(&dir).expect("the corpus is kept in the repo") {
        let input = std::fs::read(entry.expect("a corpus entry").path()).expect("a corpus file");
        meshwasm_fuzz::telemetry(&input);
        replayed += 1;
    }
    assert!(
        replayed >= 10,
        "only {replayed} inputs in {}",
        dir.display()
    );
}
