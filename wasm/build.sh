#!/usr/bin/env bash
# Builds the npm package `quorumlock` into wasm/pkg (or $QUORUMLOCK_PKG_DIR): the core compiled
# for wasm32, JavaScript glue from the wasm-bindgen CLI, wasm-opt when installed (skip it with
# QUORUMLOCK_WASM_OPT=0), the hand-written JavaScript in js/, and a CommonJS bundle.
# Prints the raw and gzipped sizes. `npm pack` in the output folder makes the tarball.
set -euo pipefail

here=$(cd "$(dirname "$0")" && pwd)
root=$(cd "$here/.." && pwd)
out=${QUORUMLOCK_PKG_DIR:-$here/pkg}
target_dir=${CARGO_TARGET_DIR:-$root/target}
cargo=${CARGO:-cargo}
wasm_bindgen_version=0.2.130

if [ "$(wasm-bindgen --version 2>/dev/null)" != "wasm-bindgen $wasm_bindgen_version" ]; then
  echo "wasm-bindgen $wasm_bindgen_version is required (it must match the crate); run scripts/install-deps.sh" >&2
  exit 1
fi
if [ ! -x "$here/node_modules/.bin/esbuild" ]; then
  echo "npm packages are missing; run scripts/install-deps.sh (or npm ci in wasm/)" >&2
  exit 1
fi

# Size settings for this build only, so the workspace's own release profile stays as it is.
CARGO_PROFILE_RELEASE_LTO=true \
CARGO_PROFILE_RELEASE_OPT_LEVEL=z \
CARGO_PROFILE_RELEASE_CODEGEN_UNITS=1 \
CARGO_PROFILE_RELEASE_PANIC=abort \
CARGO_TARGET_DIR=$target_dir \
  "$cargo" build --quiet --release --target wasm32-unknown-unknown -p quorumlock-wasm

rm -rf "$out"
mkdir -p "$out"
wasm-bindgen --target web --out-dir "$out" --out-name quorumlock_wasm --no-typescript \
  --remove-name-section --remove-producers-section \
  "$target_dir/wasm32-unknown-unknown/release/quorumlock_wasm.wasm"

if [ "${QUORUMLOCK_WASM_OPT:-1}" != 0 ] && [ -x "$here/node_modules/.bin/wasm-opt" ]; then
  # binaryen from npm: Debian's older wasm-opt writes modules that fail to load.
  "$here/node_modules/.bin/wasm-opt" -Oz \
    --enable-bulk-memory --enable-nontrapping-float-to-int --enable-sign-ext \
    --enable-mutable-globals --enable-reference-types --enable-multivalue \
    -o "$out/quorumlock_wasm_bg.wasm" "$out/quorumlock_wasm_bg.wasm"
fi

cp "$here"/js/*.js "$here"/js/*.mjs "$here/js/package.json" "$here/js/index.d.ts" "$out/"
cp "$here/js/index.d.ts" "$out/index.d.cts"
cp -r "$here/js/adapters" "$out/adapters"
cp "$here/README.md" "$out/README.md"

# CommonJS: one bundle of the Node entry, with import.meta.url rebuilt from __filename.
shim=$(mktemp -d)
trap 'rm -rf "$shim"' EXIT
echo "export const importMetaUrl = require('node:url').pathToFileURL(__filename).href;" > "$shim/import-meta-url.js"
"$here/node_modules/.bin/esbuild" "$out/node.mjs" --bundle --format=cjs --platform=node \
  --target=node18 --log-level=warning --inject:"$shim/import-meta-url.js" \
  --define:import.meta.url=importMetaUrl --outfile="$out/node.cjs"

size() { wc -c < "$1" | tr -d ' '; }
gzipped() { gzip -9 -c "$1" | wc -c | tr -d ' '; }
api_files=("$out"/{index,redlock,lock,errors,options,engine,resp-codec}.js "$out"/adapters/*.js)
api_raw=$(cat "${api_files[@]}" | wc -c | tr -d ' ')
api_gz=$(cat "${api_files[@]}" | gzip -9 -c | wc -c | tr -d ' ')
echo "built $out"
printf '  %-28s %8s bytes, %7s gzipped\n' \
  quorumlock_wasm_bg.wasm "$(size "$out/quorumlock_wasm_bg.wasm")" "$(gzipped "$out/quorumlock_wasm_bg.wasm")" \
  "quorumlock_wasm.js (glue)" "$(size "$out/quorumlock_wasm.js")" "$(gzipped "$out/quorumlock_wasm.js")" \
  "API and adapters (js/)" "$api_raw" "$api_gz"
