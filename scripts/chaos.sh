#!/usr/bin/env bash
# The long reliability run: the chaos run (5,000 turns from 50 players at 32 connections, 10%
# sent twice with the same Idempotency-Key, 20% of D1 batches failed before and 20% after the
# write, 1% poison of each permanent class, every dead letter replayed twice with chat-admin,
# a reconcile dry run) and a 2-minute soak per phase. The test suite runs short versions of
# both. Sizes can be changed: CHAOS_TURNS, CHAOS_PLAYERS, CHAOS_CONCURRENCY, CHAOS_FAULTS,
# SOAK_SECONDS.
set -euo pipefail
source "$(dirname "$0")/env.sh"
cd "$ROOT"
"$ROOT/scripts/build.sh"
export CHAOS_TURNS="${CHAOS_TURNS:-5000}" CHAOS_PLAYERS="${CHAOS_PLAYERS:-50}" CHAOS_CONCURRENCY="${CHAOS_CONCURRENCY:-32}"
export SOAK_SECONDS="${SOAK_SECONDS:-120}"
exec cargo test --release -p chat-admin --test chaos -- --nocapture --test-threads 1
