# Shared settings for the scripts; source it, do not run it.
# shellcheck shell=bash
ROOT="$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)"
export PATH="$HOME/.cargo/bin:$ROOT/node_modules/.bin:$PATH"
export WRANGLER_SEND_METRICS=false
# Pinned tool versions. wasm-bindgen-cli must equal the wasm-bindgen in Cargo.lock.
WORKER_BUILD_VERSION=0.8.7
WRANGLER_VERSION=4.86.0
CARGO_FUZZ_VERSION=0.13.2
CARGO_NEXTEST_VERSION=0.9.143
WASM_BINDGEN_VERSION="$(awk '/^name = "wasm-bindgen"$/ { getline; gsub(/[^0-9.]/, ""); print; exit }' "$ROOT/Cargo.lock")"
# The pinned local esbuild and wasm-opt (npm, package-lock.json): fixed paths, which exist
# once scripts/setup.sh has run.
export ESBUILD_BIN="$ROOT/node_modules/.bin/esbuild"
export WASM_OPT_BIN="$ROOT/node_modules/.bin/wasm-opt"
# worker-build downloads wasm-bindgen, wasm-opt and esbuild from GitHub unless it is given
# local ones, and no machine here reaches GitHub. Every build goes through `worker_build`,
# which finds wasm-bindgen when it runs (after scripts/setup.sh has installed it, never
# when this file is sourced: a path looked up before the install stays empty) and refuses
# to start if any of the three is missing, rather than let worker-build try to download it.
worker_build() {
  local bindgen
  bindgen="$(command -v wasm-bindgen || true)"
  for tool in "$bindgen" "$ESBUILD_BIN" "$WASM_OPT_BIN"; do
    if [ -z "$tool" ] || [ ! -x "$tool" ]; then
      echo "worker_build: ${tool:-wasm-bindgen} is missing: run scripts/setup.sh first" >&2
      return 1
    fi
  done
  WASM_BINDGEN_BIN="$bindgen" worker-build "$@"
}
# Each step is stamped with the clock, so a log shows where the suite's time goes.
log() { printf '\033[1m==> %s %s\033[0m\n' "$(date -u +%T)" "$*" >&2; }
