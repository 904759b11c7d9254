//! Builds the filters for `wasm32-wasip1` (release profile) as part of this
//! crate's build, so the demo and the end-to-end tests always load `.wasm`
//! files built from the current sources, never a stale prebuilt file.

use std::env;
use std::fmt::Write as _;
use std::path::PathBuf;
use std::process::Command;

/// (package, artifact constant) for every filter crate, and sdk-host's
/// test module (small; built here so there is one wasm build to wait for).
const FILTERS: [(&str, &str); 3] = [
    ("meshwasm-fault", "FAULT_WASM"),
    ("meshwasm-router", "ROUTER_WASM"),
    ("sdk-host-probe", "PROBE_WASM"),
];

fn main() {
    let manifest_dir = PathBuf::from(env::var_os("CARGO_MANIFEST_DIR").unwrap_or_default());
    let workspace = manifest_dir.join("../..");
    let out_dir = PathBuf::from(env::var_os("OUT_DIR").unwrap_or_default());
    // A separate target directory: the outer build holds the lock on its own.
    let target_dir = out_dir.join("wasm-target");
    let cargo = env::var_os("CARGO").unwrap_or_else(|| "cargo".into());

    let mut cmd = Command::new(cargo);
    cmd.current_dir(&workspace)
        .args(["build", "--release", "--target", "wasm32-wasip1"])
        .env("CARGO_TARGET_DIR", &target_dir)
        // Settings meant for the outer (native) build must not reach this one.
        .env_remove("CARGO_ENCODED_RUSTFLAGS")
        .env_remove("RUSTFLAGS")
        .env_remove("RUSTC_WORKSPACE_WRAPPER")
        .env_remove("RUSTC_WRAPPER")
        .env_remove("CARGO_BUILD_TARGET");
    for (package, _) in FILTERS {
        cmd.args(["-p", package]);
    }
    let status = cmd.status();
    match status {
        Ok(s) if s.success() => {}
        Ok(s) => fail(&format!(
            "building the filters for wasm32-wasip1 failed ({s})"
        )),
        Err(e) => fail(&format!("cannot run cargo to build the filters: {e}")),
    }

    let mut consts = String::new();
    for (package, constant) in FILTERS {
        let file = format!("{}.wasm", package.replace('-', "_"));
        let path = target_dir.join("wasm32-wasip1/release").join(&file);
        let _ = writeln!(
            consts,
            "/// The `{package}` filter, built for wasm32-wasip1 in release mode."
        );
        let _ = writeln!(
            consts,
            "pub const {constant}: &str = {:?};",
            path.display().to_string()
        );
    }
    if let Err(e) = std::fs::write(out_dir.join("artifacts.rs"), consts) {
        fail(&format!("cannot write artifacts.rs: {e}"));
    }
    for watched in ["filters", "sdk-host/probe", "Cargo.lock", "Cargo.toml"] {
        println!(
            "cargo:rerun-if-changed={}",
            workspace.join(watched).display()
        );
    }
}

fn fail(message: &str) -> ! {
    eprintln!("error: {message}");
    eprintln!(
        "hint: the wasm target is installed by ./scripts/test.sh, or: rustup target add wasm32-wasip1"
    );
    std::process::exit(1)
}
