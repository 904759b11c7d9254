#!/usr/bin/env bash
# Every test: formatting and lints, filters/core natively and on wasm32
# (wasm-bindgen-test under Node), the built filters in a real Envoy, the
# local demo, wasmhub against a real registry and skopeo, envoyfilter's
# Istio output against Istio's CRD schemas, the compose file, and the
# scenario files in sdk-host and in Envoy (with filters in AssemblyScript
# and Go).
set -euo pipefail
source "$(dirname "$0")/setup.sh"
cd "$ROOT"
started=$SECONDS

setup_rust
setup_envoy
setup_wasm_bindgen_runner
setup_debian_tools
setup_crd_validator
setup_assemblyscript_filter
setup_go_filter

say "cargo fmt --check"
cargo fmt --all -- --check

say "clippy (host, all targets)"
cargo clippy --locked --workspace --all-targets -- -D warnings
say "clippy (wasm32-wasip1: every crate of filters/ and the sdk-host probe)"
# shellcheck disable=SC2046 # one -p NAME per crate
cargo clippy --locked $(filters_dir_packages) -p sdk-host-probe --target wasm32-wasip1 -- -D warnings

say "Native tests: unit, doc, and end-to-end in Envoy $ENVOY_VERSION"
cargo test --locked --workspace

say "filters/core on wasm32-unknown-unknown (wasm-bindgen-test)"
cargo test --locked -p meshwasm-core --target wasm32-unknown-unknown --test all

say "All tests passed in $((SECONDS - started)) s"
