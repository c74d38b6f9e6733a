#!/usr/bin/env bash
# Builds the Workers (and the benchmark-only inline-write Worker, bench/inline), runs every
# benchmark scenario on wrangler dev (each variant on a free port with a fresh state folder,
# stopped after), prints the text of bench/README.md and writes the figures, with the machine,
# versions and parameters, to bench/results/latest.json. Loopback only; every loop is bounded.
#   bash scripts/bench.sh            the full run (about 15 minutes)
#   bash scripts/bench.sh --quick    every scenario briefly, with its invariant checks and no
#                                    judgement of timings (the test suite runs this)
#   bash scripts/bench.sh --help     every option
set -euo pipefail
source "$(dirname "$0")/env.sh"
cd "$ROOT"
# scripts/test.sh has just built everything else, and sets BENCH_SKIP_BUILD=1.
[ "${BENCH_SKIP_BUILD:-}" = 1 ] || "$ROOT/scripts/build.sh"
log "building the inline-write Worker (bench/inline, benchmark only)"
(cd "$ROOT/bench/inline" && worker-build --release)
log "building the load generator"
cargo build --release -q -p bench
log "running the benchmarks"
exec "$ROOT/target/release/bench" "$@"
