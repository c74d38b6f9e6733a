#!/usr/bin/env bash
# Builds the release Workers, runs every benchmark scenario on wrangler dev (each starts on a
# free port with a fresh state folder and stops after), prints a markdown table and writes the
# raw figures to bench/results/latest.json. Loopback only; every loop is bounded.
#   bash scripts/bench.sh [--seconds 5 --runs 3 --turns 4000 ...]   (see: cargo run -p bench -- --help)
set -euo pipefail
source "$(dirname "$0")/env.sh"
cd "$ROOT"
"$ROOT/scripts/build.sh"
log "building the load generator"
cargo build --release -q -p bench
log "running the benchmarks (about 5 minutes)"
exec "$ROOT/target/release/bench" "$@"
