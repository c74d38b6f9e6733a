#!/usr/bin/env bash
# Installs what building, running and testing need, at pinned versions, from crates.io, npm
# and Debian's packages only (see docs/design.md, "Building offline"). Reuses whatever is already installed: safe to run
# again, and quick when nothing is missing.
set -euo pipefail
source "$(dirname "$0")/env.sh"
cd "$ROOT"

version_is() { command -v "$1" >/dev/null 2>&1 && "$1" --version 2>/dev/null | grep -qF "$2"; }
# Debian's packages, installed again if their files are gone though dpkg lists them.
apt_install() {
  apt-get update -qq && apt-get install -y -qq --reinstall "$@"
}
# `cargo install --locked` where the registry has every version the tool's lock file names;
# without it when it does not (the registry mirror can lag behind a lock file). `--force`:
# a tool is installed only when its binary is missing or of another version, and cargo's
# own record of what it installed may still list a binary that is gone.
install_crate() {
  cargo install --force --locked "$@" || { log "retrying without --locked"; cargo install --force "$@"; }
}

# A C compiler (ring, zstd and SQLite's bundled build need one) from Debian's packages.
if ! command -v cc >/dev/null 2>&1; then
  log "installing a C compiler (gcc) from Debian's packages"
  apt_install gcc libc6-dev
fi
# Headless Chromium and its WebDriver for the browser tests (tests/tests/browser.rs) and the
# screenshots (scripts/screenshots.sh), from Debian's packages only: no browser is downloaded
# from anywhere else. Both come from one source package, so their versions always match.
if ! { command -v chromium >/dev/null 2>&1 && command -v chromedriver >/dev/null 2>&1; }; then
  log "installing chromium and chromium-driver from Debian's packages"
  apt_install chromium chromium-driver
fi
# wrk, from Debian's packages: the benchmark checks its own load generator against it.
if ! command -v wrk >/dev/null 2>&1; then
  log "installing wrk from Debian's packages (the benchmark's reference load generator)"
  apt_install wrk
fi
# cargo-fuzz needs a nightly toolchain (for the sanitizers); rustup brings it.
if ! rustup toolchain list | grep -q '^nightly'; then
  log "installing the nightly toolchain for fuzzing"
  rustup toolchain install nightly --profile minimal \
    || log "could not install the nightly toolchain: scripts/fuzz.sh will fail until one is installed"
fi

# fmt and clippy run in every test run (scripts/test.sh); a minimal rustup profile lacks them.
for component in rustfmt clippy; do
  if ! rustup component list --installed | grep -q "^$component"; then
    log "adding the $component component"
    rustup component add "$component"
  fi
done
if ! rustup target list --installed | grep -qx wasm32-unknown-unknown; then
  log "adding the wasm32-unknown-unknown target"
  rustup target add wasm32-unknown-unknown
fi
if ! version_is worker-build "$WORKER_BUILD_VERSION"; then
  log "installing worker-build $WORKER_BUILD_VERSION"
  install_crate worker-build --version "$WORKER_BUILD_VERSION"
fi
if ! version_is wasm-bindgen "$WASM_BINDGEN_VERSION"; then
  # No --locked: the registry mirror can lag behind the CLI's own lock file.
  log "installing wasm-bindgen-cli $WASM_BINDGEN_VERSION (the version in Cargo.lock)"
  cargo install --force wasm-bindgen-cli --version "$WASM_BINDGEN_VERSION"
fi
# cargo-nextest runs the test binaries side by side (scripts/test.sh, .config/nextest.toml).
if ! { command -v cargo-nextest >/dev/null 2>&1 && cargo nextest --version 2>/dev/null | grep -qF "$CARGO_NEXTEST_VERSION"; }; then
  log "installing cargo-nextest $CARGO_NEXTEST_VERSION"
  install_crate cargo-nextest --version "$CARGO_NEXTEST_VERSION"
fi
if ! version_is cargo-fuzz "$CARGO_FUZZ_VERSION"; then
  log "installing cargo-fuzz $CARGO_FUZZ_VERSION (fuzzing runs on the machine's nightly toolchain)"
  install_crate cargo-fuzz --version "$CARGO_FUZZ_VERSION"
fi
if ! { version_is wrangler "$WRANGLER_VERSION" && [ -x node_modules/.bin/wasm-opt ] && [ -x node_modules/.bin/esbuild ]; }; then
  log "installing wrangler $WRANGLER_VERSION and binaryen from package-lock.json"
  npm ci --no-audit --no-fund
fi
if ! { [ -x ts/node_modules/.bin/drizzle-kit ] && [ -x ts/node_modules/.bin/tsc ]; }; then
  log "installing the TypeScript schema package's tools (drizzle-kit, typescript) from ts/package-lock.json"
  (cd ts && npm ci --no-audit --no-fund)
fi
# Every tool is where the other scripts look for it, or setup says which is not.
hash -r
for tool in worker-build wasm-bindgen cargo-nextest cargo-fuzz wrk chromium chromedriver \
  "$ROOT/node_modules/.bin/wrangler" "$ROOT/node_modules/.bin/wasm-opt" "$ROOT/node_modules/.bin/esbuild"; do
  if ! command -v "$tool" >/dev/null 2>&1; then
    echo "setup: $tool is still missing after the install" >&2
    exit 1
  fi
done
