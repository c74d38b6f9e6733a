#!/usr/bin/env bash
# Builds both Workers for release (wasm32, wasm-bindgen, wasm-opt, esbuild) into
# producer/build and consumer/build, where the wrangler.toml files point.
set -euo pipefail
source "$(dirname "$0")/env.sh"
"$ROOT/scripts/setup.sh"
export WASM_BINDGEN_BIN="$(command -v wasm-bindgen)"
for crate in producer consumer; do
  log "building the $crate Worker"
  (cd "$ROOT/$crate" && worker-build --release)
done
