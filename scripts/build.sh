#!/usr/bin/env bash
# Builds the web pages (scripts/build-web.sh), then both Workers for release (wasm32, wasm-bindgen, wasm-opt, esbuild), twice:
# - build/: the deployable build, where the wrangler.toml files point (`wrangler deploy`,
#   `wrangler deploy --dry-run`). It has no test switches.
# - build-local/: the local build, with cargo feature `local` (development auth and the
#   consumer's fault switch), which scripts/dev.sh and the tests run. Both variants use the
#   release profile, so their dependencies are compiled once (on a fresh clone that halves
#   this step); only the Worker's own crate is compiled again for the other variant.
set -euo pipefail
source "$(dirname "$0")/env.sh"
"$ROOT/scripts/setup.sh"
log "building the web pages (web/dist/, served by the chat Worker as static assets)"
"$ROOT/scripts/build-web.sh"
for crate in producer consumer; do
  log "building the $crate Worker: deployable (build/), then local (build-local/)"
  (cd "$ROOT/$crate" && worker_build --release && worker_build --release --out-dir build-local --features local)
done
