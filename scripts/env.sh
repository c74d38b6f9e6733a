# Shared settings for the scripts; source it, do not run it.
# shellcheck shell=bash
ROOT="$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)"
export PATH="$HOME/.cargo/bin:$ROOT/node_modules/.bin:$PATH"
export WRANGLER_SEND_METRICS=false
# worker-build would download these from GitHub; point it at the pinned local ones.
export ESBUILD_BIN="$ROOT/node_modules/.bin/esbuild"
export WASM_OPT_BIN="$ROOT/node_modules/.bin/wasm-opt"
WASM_BINDGEN_BIN="$(command -v wasm-bindgen || true)"
export WASM_BINDGEN_BIN
# Pinned tool versions. wasm-bindgen-cli must equal the wasm-bindgen in Cargo.lock.
WORKER_BUILD_VERSION=0.8.7
WRANGLER_VERSION=4.86.0
CARGO_FUZZ_VERSION=0.13.2
CARGO_NEXTEST_VERSION=0.9.143
WASM_BINDGEN_VERSION="$(awk '/^name = "wasm-bindgen"$/ { getline; gsub(/[^0-9.]/, ""); print; exit }' "$ROOT/Cargo.lock")"
# Each step is stamped with the clock, so a log shows where the suite's time goes.
log() { printf '\033[1m==> %s %s\033[0m\n' "$(date -u +%T)" "$*" >&2; }
