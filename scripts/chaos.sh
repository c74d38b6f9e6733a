#!/usr/bin/env bash
# The long reliability run: the chaos run (5,000 turns from 50 players at 32 connections, 10%
# sent twice with the same Idempotency-Key, 20% of D1 batches failed before and 20% after the
# write, every 50th turn failed on every attempt until it is a transient dead letter, 1%
# poison of each permanent class, every dead letter replayed with chat-admin, a reconcile
# dry run), a 2-minute soak per phase, then 60 s of fuzzing per target. The test suite runs
# short versions of all three. Sizes can be changed: CHAOS_TURNS, CHAOS_PLAYERS,
# CHAOS_CONCURRENCY, CHAOS_FAULTS, CHAOS_HOLD_SECONDS, SOAK_SECONDS, FUZZ_SECONDS.
# The figures are saved to bench/results/{chaos,soak,fuzz}.json (RELIABILITY_RESULTS to put
# them elsewhere), where the reliability figures of docs/testing.md come from.
set -euo pipefail
source "$(dirname "$0")/env.sh"
cd "$ROOT"
"$ROOT/scripts/build.sh"
export CHAOS_TURNS="${CHAOS_TURNS:-5000}" CHAOS_PLAYERS="${CHAOS_PLAYERS:-50}" CHAOS_CONCURRENCY="${CHAOS_CONCURRENCY:-32}"
export SOAK_SECONDS="${SOAK_SECONDS:-120}"
export RELIABILITY_RESULTS="${RELIABILITY_RESULTS:-$ROOT/bench/results}"
mkdir -p "$RELIABILITY_RESULTS"
cargo test --release -p chat-admin --test chaos -- --nocapture --test-threads 1
FUZZ_RESULTS="$RELIABILITY_RESULTS/fuzz.json" "$ROOT/scripts/fuzz.sh" "${FUZZ_SECONDS:-60}"
