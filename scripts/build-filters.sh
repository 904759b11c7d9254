#!/usr/bin/env bash
# Builds every filter of filters/ as Envoy loads it, into
# target/wasm32-wasip1/wasm/ (what docker-compose mounts and what
# `wasmhub build` packs): `cargo build-filter -p PACKAGE` for each cdylib
# crate under filters/, so a new filter folder is built with no edit here.
set -euo pipefail
source "$(dirname "$0")/setup.sh"
cd "$ROOT"
setup_rust
for package in $(filter_packages); do
    say "Building $package (wasm32-wasip1, wasm profile)"
    cargo build-filter --locked -p "$package"
done
ls -l target/wasm32-wasip1/wasm/*.wasm | awk '{print "    " $5 " bytes  " $9}'
