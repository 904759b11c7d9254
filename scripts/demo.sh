#!/usr/bin/env bash
# The local demo: builds the filters, runs Istio's routing and fault examples
# through a real Envoy and upstream servers on 127.0.0.1, prints what the
# filters did, and stops everything. No container engine needed.
set -euo pipefail
source "$(dirname "$0")/setup.sh"
cd "$ROOT"

setup_rust
setup_envoy

say "Building the filters (wasm32-wasip1, wasm profile) and the demo"
cargo build --locked -p meshwasm-local --bin meshwasm-demo
say "Running the demo"
exec "$ROOT/target/debug/meshwasm-demo" "$@"
