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
# scripts/test.sh has just built every Worker (the inline one too) and the load generator in
# the test profile, and sets BENCH_SKIP_BUILD=1 and BENCH_PROFILE=debug: a quick run judges
# no timing, so it need not compile everything again for release.
PROFILE="${BENCH_PROFILE:-release}"
if [ "${BENCH_SKIP_BUILD:-}" != 1 ]; then
  "$ROOT/scripts/build.sh"
  log "building the inline-write Worker (bench/inline, benchmark only)"
  (cd "$ROOT/bench/inline" && worker_build --release)
  log "building the load generator"
  cargo build --release -q -p bench
fi
log "running the benchmarks ($PROFILE load generator)"
exec "$ROOT/target/$PROFILE/bench" "$@"
