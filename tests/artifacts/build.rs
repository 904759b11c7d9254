//! Builds every `cdylib` crate of the workspace for `wasm32-wasip1` with the
//! `wasm` profile, and writes their paths into `artifacts.rs`, so the tests
//! always load modules built from the current sources, never a stale file.

use serde_json::Value;
use std::env;
use std::fmt::Write as _;
use std::path::{Path, PathBuf};
use std::process::Command;

/// A module of the workspace.
struct Module {
    package: String,
    /// The crate's directory.
    dir: PathBuf,
    /// Under `filters/`: a filter, not a test module.
    filter: bool,
}

fn main() {
    let manifest_dir = PathBuf::from(env::var_os("CARGO_MANIFEST_DIR").unwrap_or_default());
    let workspace = manifest_dir.join("../..");
    let workspace = workspace.canonicalize().unwrap_or(workspace);
    let out_dir = PathBuf::from(env::var_os("OUT_DIR").unwrap_or_default());
    let cargo = env::var_os("CARGO").unwrap_or_else(|| "cargo".into());

    let modules = modules(&cargo, &workspace);
    let target_dir = artifacts_dir(&out_dir);
    for module in &modules {
        build(&cargo, &workspace, &target_dir, module, &[]);
    }
    // The filters again with the test-only trap, in a target directory of
    // their own: the same file name must not flip between the two builds.
    let trapping_dir = target_dir.join("trapping");
    for module in modules.iter().filter(|m| m.filter) {
        build(
            &cargo,
            &workspace,
            &trapping_dir,
            module,
            &["--features", "meshwasm-plugin/trap-on-marked-request"],
        );
    }

    let built = target_dir.join("wasm32-wasip1/wasm");
    let built_trapping = trapping_dir.join("wasm32-wasip1/wasm");
    let mut code = String::new();
    for module in &modules {
        let path = built.join(wasm_file(&module.package));
        let kind = if module.filter {
            "filter"
        } else {
            "test module"
        };
        let _ = writeln!(
            code,
            "/// The `{}` {kind}, built for wasm32-wasip1 with the wasm profile.\n\
             pub const {}: &str = {:?};",
            module.package,
            constant(&module.package),
            path.display().to_string()
        );
    }
    let _ = writeln!(code, "/// Every filter of `filters/`, by name.");
    let _ = writeln!(code, "pub const FILTERS: &[Artifact] = &[");
    for module in modules.iter().filter(|m| m.filter) {
        let trapping = built_trapping.join(wasm_file(&module.package));
        let _ = writeln!(
            code,
            "    Artifact {{ name: {:?}, package: {:?}, wasm: {}, trapping: {:?} }},",
            short_name(&module.package),
            module.package,
            constant(&module.package),
            trapping.display().to_string()
        );
    }
    let _ = writeln!(code, "];");
    if let Err(e) = std::fs::write(out_dir.join("artifacts.rs"), code) {
        fail(&format!("cannot write artifacts.rs: {e}"));
    }

    // The whole filters folder, so that a new filter is picked up.
    let mut watched = vec![
        workspace.join("filters"),
        workspace.join("Cargo.lock"),
        workspace.join("Cargo.toml"),
    ];
    watched.extend(modules.iter().filter(|m| !m.filter).map(|m| m.dir.clone()));
    for path in watched {
        println!("cargo:rerun-if-changed={}", path.display());
    }
}

/// Builds one module for wasm32-wasip1 with the `wasm` profile into
/// `target_dir`, with `extra` arguments (features). One `cargo rustc` per
/// module, asking for the cdylib alone: a crate that is also an rlib (to be
/// linked natively into its tests) gets no LTO from `cargo build`, and LTO
/// is what makes the modules small.
fn build(
    cargo: &std::ffi::OsStr,
    workspace: &Path,
    target_dir: &Path,
    module: &Module,
    extra: &[&str],
) {
    let mut cmd = Command::new(cargo);
    cmd.current_dir(workspace)
        .args([
            "rustc",
            "--lib",
            "--crate-type",
            "cdylib",
            "--profile",
            "wasm",
        ])
        .args(["--target", "wasm32-wasip1", "-p", &module.package])
        .args(extra)
        .env("CARGO_TARGET_DIR", target_dir)
        // Settings meant for the outer (native) build must not reach this one.
        .env_remove("CARGO_ENCODED_RUSTFLAGS")
        .env_remove("RUSTFLAGS")
        .env_remove("RUSTC_WORKSPACE_WRAPPER")
        .env_remove("RUSTC_WRAPPER")
        .env_remove("CARGO_BUILD_TARGET");
    match cmd.status() {
        Ok(s) if s.success() => {}
        Ok(s) => fail(&format!(
            "building {} {} for wasm32-wasip1 failed ({s})",
            module.package,
            extra.join(" ")
        )),
        Err(e) => fail(&format!("cannot run cargo to build the modules: {e}")),
    }
}

/// `meshwasm-header-match` builds `meshwasm_header_match.wasm`.
fn wasm_file(package: &str) -> String {
    format!("{}.wasm", package.replace('-', "_"))
}

/// The `cdylib` crates of the workspace, from `cargo metadata`.
fn modules(cargo: &std::ffi::OsStr, workspace: &Path) -> Vec<Module> {
    let output = Command::new(cargo)
        .current_dir(workspace)
        .args([
            "metadata",
            "--format-version",
            "1",
            "--no-deps",
            "--offline",
        ])
        .env_remove("RUSTC_WORKSPACE_WRAPPER")
        .output();
    let stdout = match output {
        Ok(o) if o.status.success() => o.stdout,
        Ok(o) => fail(&format!(
            "cargo metadata failed: {}",
            String::from_utf8_lossy(&o.stderr)
        )),
        Err(e) => fail(&format!("cannot run cargo metadata: {e}")),
    };
    let metadata: Value = match serde_json::from_slice(&stdout) {
        Ok(v) => v,
        Err(e) => fail(&format!(
            "cargo metadata printed something else than JSON: {e}"
        )),
    };
    let filters = workspace.join("filters");
    let mut modules: Vec<Module> = metadata["packages"]
        .as_array()
        .into_iter()
        .flatten()
        .filter(|package| {
            package["targets"]
                .as_array()
                .into_iter()
                .flatten()
                .any(|t| {
                    t["crate_types"]
                        .as_array()
                        .is_some_and(|types| types.iter().any(|c| c == "cdylib"))
                })
        })
        .filter_map(|package| {
            let manifest = PathBuf::from(package["manifest_path"].as_str()?);
            let dir = manifest.parent()?.to_path_buf();
            Some(Module {
                package: package["name"].as_str()?.to_owned(),
                filter: dir.starts_with(&filters),
                dir,
            })
        })
        .collect();
    modules.sort_by(|a, b| a.package.cmp(&b.package));
    if !modules.iter().any(|m| m.filter) {
        fail("cargo metadata lists no cdylib crate under filters/");
    }
    modules
}

/// `target/meshwasm-artifacts` beside the outer build's profiles, found as
/// the ancestor of OUT_DIR that Cargo tags as its target directory; so
/// every profile of the outer build shares one wasm build.
fn artifacts_dir(out_dir: &Path) -> PathBuf {
    out_dir
        .ancestors()
        .find(|dir| dir.join("CACHEDIR.TAG").is_file())
        .map_or_else(
            || out_dir.join("wasm-target"),
            |t| t.join("meshwasm-artifacts"),
        )
}

/// `meshwasm-header-match` is `header-match`; other packages keep their name.
fn short_name(package: &str) -> &str {
    package.strip_prefix("meshwasm-").unwrap_or(package)
}

/// `meshwasm-header-match` is `HEADER_MATCH_WASM`.
fn constant(package: &str) -> String {
    format!(
        "{}_WASM",
        short_name(package).replace('-', "_").to_uppercase()
    )
}

fn fail(message: &str) -> ! {
    eprintln!("error: {message}");
    eprintln!(
        "hint: the wasm target is installed by ./scripts/test.sh, or: rustup target add wasm32-wasip1"
    );
    std::process::exit(1)
}
