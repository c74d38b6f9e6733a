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
cargo clippy -p worker-support -p chat-worker -p consumer-worker --target wasm32-unknown-unknown -- -D warnings
cargo clippy -p chat-worker -p consumer-worker --target wasm32-unknown-unknown --features local -- -D warnings
log "fuzzing each decoder for 10 s (bash scripts/fuzz.sh 300 for a long run)"
"$ROOT/scripts/fuzz.sh" 10
log "tests"
out="$(mktemp)"
trap 'rm -f "$out"' EXIT
set +e
cargo test -p chat-core -p e2e -p chat-admin --lib --bins --tests -- --test-threads 2 2>&1 | tee "$out"
status=${PIPESTATUS[0]}
set -e
# One closing line for the whole suite, summed over every test binary.
awk '/^test result:/ { for (i = 1; i <= NF; i++) { if ($(i+1) ~ /^passed/) p += $i; if ($(i+1) ~ /^failed/) f += $i } }
     END { printf "summary: %d passed, %d failed\n", p, f }' "$out"
exit "$status"
