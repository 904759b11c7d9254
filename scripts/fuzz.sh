#!/usr/bin/env bash
# Fuzzing, apart from the test command (which replays the kept corpus):
# runs every cargo-fuzz target of fuzz/ (libFuzzer, nightly) for a fixed
# time and prints a table of executions and crashes.
#
#   ./scripts/fuzz.sh [SECONDS_PER_TARGET] [TARGET...]    # default 60, every target
#
# Each target starts from its kept corpus (fuzz/corpus/TARGET/); new inputs
# go to target/fuzz-corpus/TARGET/, crashes to fuzz/artifacts/TARGET/. A
# crash, once fixed, belongs in fuzz/corpus/TARGET/ so the tests replay it.
set -euo pipefail
source "$(dirname "$0")/setup.sh"
cd "$ROOT"

seconds=${1:-60}
shift || true
setup_rust
need rustup "rustup provides the nightly toolchain cargo-fuzz needs"
if ! rustup toolchain list | grep -q '^nightly'; then
    say "Installing the nightly toolchain (libFuzzer's sanitizer flags need it)"
    rustup toolchain install nightly --profile minimal
fi
if ! command -v cargo-fuzz >/dev/null 2>&1; then
    say "Installing cargo-fuzz from crates.io"
    cargo install --locked cargo-fuzz
fi
targets=("$@")
if ((${#targets[@]} == 0)); then
    mapfile -t targets < <(sed -n 's/^name = "\(.*\)"$/\1/p' fuzz/Cargo.toml | tail -n +2)
fi

rows=()
for target in "${targets[@]}"; do
    found="$ROOT/target/fuzz-corpus/$target"
    artifacts="$ROOT/fuzz/artifacts/$target"
    mkdir -p "$found" "$artifacts"
    before=$(find "$artifacts" -type f | wc -l)
    say "Fuzzing $target for ${seconds}s"
    log="$ROOT/target/fuzz-corpus/$target.log"
    status=0
    cargo +nightly fuzz run "$target" --features libfuzzer "$found" "fuzz/corpus/$target" -- \
        -max_total_time="$seconds" -rss_limit_mb=4096 -artifact_prefix="$artifacts/" >"$log" 2>&1 || status=$?
    runs=$(sed -n 's/^Done \([0-9]*\) runs in \([0-9]*\) second.*/\1 \2/p' "$log" | tail -n 1)
    crashes=$(( $(find "$artifacts" -type f | wc -l) - before ))
    [[ -n "$runs" ]] || runs="? ?"
    rows+=("$target $runs $crashes $status")
done

printf '\n%-12s %12s %8s %10s %8s\n' target executions seconds exec/s crashes
for row in "${rows[@]}"; do
    read -r target runs secs crashes status <<<"$row"
    rate="-"
    [[ "$runs" =~ ^[0-9]+$ && "$secs" =~ ^[0-9]+$ && $secs -gt 0 ]] && rate=$((runs / secs))
    printf '%-12s %12s %8s %10s %8s\n' "$target" "$runs" "$secs" "$rate" "$crashes"
    ((status == 0)) || echo "  $target exited $status: see target/fuzz-corpus/$target.log and fuzz/artifacts/$target/"
done
