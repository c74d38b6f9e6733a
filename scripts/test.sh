#!/usr/bin/env bash
# Runs the whole test suite: formatting and lints, the native tests on real SQLite, and the
# end-to-end tests on both Workers under wrangler dev (each test starts its own on a free
# port with a fresh state folder), the CLI, the bad-input corpus, short chaos and soak runs,
# and a short fuzz of each decoder. Installs what is missing first; safe to run twice.
set -euo pipefail
source "$(dirname "$0")/env.sh"
cd "$ROOT"
"$ROOT/scripts/build.sh"
log "cargo fmt --check, and the web pages' TypeScript type-checked (tsc -p web)"
cargo fmt --all --check
ts/node_modules/.bin/tsc -p web
log "cargo clippy (native crates, then the Workers on wasm32, deployable and local)"
cargo clippy -p chat-core -p e2e -p chat-admin -p bench --all-targets -- -D warnings
cargo clippy -p worker-support -p chat-worker -p consumer-worker -p inline-write-worker --target wasm32-unknown-unknown -- -D warnings
cargo clippy -p chat-worker -p consumer-worker --target wasm32-unknown-unknown --features local -- -D warnings
log "fuzzing each decoder for 10 s (bash scripts/fuzz.sh 300 for a long run)"
"$ROOT/scripts/fuzz.sh" 10
log "tests"
out="$(mktemp)"
trap 'rm -f "$out" "$out.bench"' EXIT
set +e
cargo test --no-fail-fast -p chat-core -p e2e -p chat-admin -p bench --lib --bins --tests -- --test-threads 2 2>&1 | tee "$out"
status=${PIPESTATUS[0]}
# Every benchmark scenario, briefly, with its invariant checks (nothing lost, nothing
# counted twice); timings are never judged here.
log "bash scripts/bench.sh --quick"
BENCH_SKIP_BUILD=1 "$ROOT/scripts/bench.sh" --quick > "$out.bench" 2>&1 && bench=0 || bench=$?
tail -n 40 "$out.bench"
if [ "$bench" -ne 0 ]; then
  echo "test result: FAILED. 0 passed; 1 failed (bash scripts/bench.sh --quick)" | tee -a "$out"
  [ "$status" -ne 0 ] || status=$bench
else
  echo "test result: ok. 1 passed; 0 failed (bash scripts/bench.sh --quick)" | tee -a "$out"
fi
set -e
# One closing line for the whole suite, summed over every test binary.
awk '/^test result:/ { for (i = 1; i <= NF; i++) { if ($(i+1) ~ /^passed/) p += $i; if ($(i+1) ~ /^failed/) f += $i } }
     END { printf "summary: %d passed, %d failed\n", p, f }' "$out"
exit "$status"
