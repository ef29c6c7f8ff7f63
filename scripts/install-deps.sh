#!/usr/bin/env bash
# Installs what the build and the tests need, skipping whatever is already there.
# With --bench, also what `make bench` needs: wrk, valgrind and the npm packages of bench/js.
set -euo pipefail

bench=false
[ "${1:-}" = "--bench" ] && bench=true

need_apt=()
command -v redis-server >/dev/null 2>&1 || need_apt+=(redis-server)
# The npm package is built with npm and tested with node's own test runner.
command -v npm >/dev/null 2>&1 || need_apt+=(nodejs npm)
if $bench; then
  command -v wrk >/dev/null 2>&1 || need_apt+=(wrk)
  command -v valgrind >/dev/null 2>&1 || need_apt+=(valgrind)
fi
if [ ${#need_apt[@]} -gt 0 ]; then
  if [ "$(id -u)" -ne 0 ] && command -v sudo >/dev/null 2>&1; then SUDO=sudo; else SUDO=; fi
  echo "installing ${need_apt[*]}"
  $SUDO apt-get update -qq
  DEBIAN_FRONTEND=noninteractive $SUDO apt-get install -y -qq "${need_apt[@]}" >/dev/null
fi

if command -v rustup >/dev/null 2>&1; then
  rustup target list --installed | grep -qx wasm32-unknown-unknown \
    || rustup target add wasm32-unknown-unknown
  rustup component list --installed | grep -q '^clippy' || rustup component add clippy
  rustup component list --installed | grep -q '^rustfmt' || rustup component add rustfmt
fi

# The npm package (wasm/): the wasm-bindgen CLI must be exactly the version of the
# wasm-bindgen crate that wasm/Cargo.toml pins, or the glue it writes does not match.
wasm_bindgen_version=0.2.130
if [ "$(wasm-bindgen --version 2>/dev/null)" != "wasm-bindgen $wasm_bindgen_version" ]; then
  echo "installing wasm-bindgen-cli $wasm_bindgen_version (takes a few minutes)"
  # Without --locked: the registry lacks one of the CLI's pinned transitive versions.
  cargo install --quiet wasm-bindgen-cli --version "$wasm_bindgen_version"
fi

# Build and test tools of the npm package (esbuild, binaryen, workerd, deno, bun, Redis
# clients), exactly as wasm/package-lock.json pins them.
wasm_dir="$(cd "$(dirname "$0")/.." && pwd)/wasm"
if [ ! -f "$wasm_dir/node_modules/.package-lock.json" ] \
  || [ "$wasm_dir/package-lock.json" -nt "$wasm_dir/node_modules/.package-lock.json" ]; then
  echo "installing the npm packages of wasm/"
  # Not `npm ci`: it insists on lock entries for other platforms' optional binaries (deno,
  # workerd), which the registry reachable from CI does not serve. `install --no-save` installs
  # the locked versions and leaves the lock file as it is.
  (cd "$wasm_dir" && npm install --no-save --no-audit --no-fund --loglevel=error)
fi

# The JavaScript clients of the benchmarks (npm redlock, ioredis), as bench/js/package-lock.json
# pins them.
if $bench; then
  bench_js="$(cd "$(dirname "$0")/.." && pwd)/bench/js"
  if [ ! -f "$bench_js/node_modules/.package-lock.json" ] \
    || [ "$bench_js/package-lock.json" -nt "$bench_js/node_modules/.package-lock.json" ]; then
    echo "installing the npm packages of bench/js/"
    (cd "$bench_js" && npm ci --no-audit --no-fund --loglevel=error)
  fi
fi
