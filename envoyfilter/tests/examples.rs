//! The generated files under `examples/` are what `examples/generate.sh`
//! makes with this envoyfilter today: a change to the filters' schema, the
//! renderer or an example shows up here until the files are regenerated.
#![allow(clippy::unwrap_used, clippy::expect_used, clippy::panic)]

use std::path::{Path, PathBuf};
use std::process::Command;

fn examples() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR")).join("../examples")
}

fn files_under(dir: &Path) -> Vec<PathBuf> {
    let mut files: Vec<PathBuf> = walk(dir)
        .into_iter()
        .map(|p| p.strip_prefix(dir).unwrap().to_owned())
        .collect();
    files.sort();
    files
}

fn walk(dir: &Path) -> Vec<PathBuf> {
    std::fs::read_dir(dir)
        .unwrap()
        .flat_map(|entry| {
            let path = entry.unwrap().path();
            if path.is_dir() {
                walk(&path)
            } else {
                vec![path]
            }
        })
        .collect()
}

#[test]
fn generated_examples_match_what_envoyfilter_renders_now() {
    let out = tempfile::tempdir().unwrap();
    let status = Command::new("bash")
        .arg(examples().join("generate.sh"))
        .arg(out.path())
        .env("ENVOYFILTER", env!("CARGO_BIN_EXE_envoyfilter"))
        .status()
        .unwrap();
    assert!(status.success(), "examples/generate.sh failed: {status}");
    let generated = files_under(out.path());
    let sources = std::fs::read_dir(examples().join("virtual-services"))
        .unwrap()
        .filter(|e| {
            e.as_ref()
                .unwrap()
                .path()
                .extension()
                .is_some_and(|x| x == "yaml")
        })
        .count();
    assert_eq!(
        generated.len(),
        sources + 1,
        "an Envoy file per example and the Istio manifests: {generated:?}"
    );
    for file in &generated {
        let fresh = std::fs::read_to_string(out.path().join(file)).unwrap();
        let kept = std::fs::read_to_string(examples().join(file)).unwrap_or_default();
        assert!(
            fresh == kept,
            "examples/{} is not what envoyfilter renders now; run examples/generate.sh",
            file.display()
        );
    }
    // No file left over from an example that is gone.
    let kept: Vec<PathBuf> = files_under(&examples().join("envoy"))
        .into_iter()
        .map(|f| Path::new("envoy").join(f))
        .collect();
    for file in kept {
        assert!(
            generated.contains(&file),
            "examples/{} is not generated any more: remove it",
            file.display()
        );
    }
}
