#!/usr/bin/env bash
# Runs the whole test suite: formatting and lints, the native tests on real SQLite, and the
# end-to-end tests on both Workers under wrangler dev (each test starts its own on a free
# port with a fresh state folder), the CLI, the bad-input corpus, short chaos and soak runs,
# every benchmark scenario briefly, and a short fuzz of each decoder. Installs what is
# missing first; safe to run twice.
#
# Where the time goes is in docs/testing.md. The compiling steps run one after another (they
# use both cores); the steps that mostly wait (the end-to-end tests wait on wrangler dev and
# on queues) run beside the fuzzing and the benchmark's quick run, each into its own log.
set -euo pipefail
source "$(dirname "$0")/env.sh"
cd "$ROOT"
started=$(date +%s)
"$ROOT/scripts/build.sh"
log "building the inline-write Worker (bench/inline, for the benchmark's quick run)"
(cd "$ROOT/bench/inline" && worker-build --release)
log "cargo fmt --check, and the web pages' TypeScript type-checked (tsc -p web)"
cargo fmt --all --check
ts/node_modules/.bin/tsc -p web
log "cargo clippy (native crates, then the Workers on wasm32, deployable and local)"
cargo clippy -p chat-core -p e2e -p chat-admin -p bench --all-targets -- -D warnings
cargo clippy -p worker-support -p chat-worker -p consumer-worker -p inline-write-worker --target wasm32-unknown-unknown -- -D warnings
cargo clippy -p chat-worker -p consumer-worker --target wasm32-unknown-unknown --features local -- -D warnings
log "compiling the tests, the CLI and the load generator"
TESTS=(-p chat-core -p e2e -p chat-admin -p bench --lib --bins --tests)
cargo test --no-run -q "${TESTS[@]}"
cargo build -q -p bench

out="$(mktemp)"
side="$(mktemp -d)"
trap 'rm -rf "$out" "$side"' EXIT
# Beside the tests: the fuzzing (bash scripts/fuzz.sh 300 for a long run), then every
# benchmark scenario briefly, with its invariant checks (nothing lost, nothing counted
# twice); timings are never judged here.
log "beside the tests: fuzzing each decoder for 10 s, then bash scripts/bench.sh --quick"
(
  "$ROOT/scripts/fuzz.sh" 10 > "$side/fuzz.log" 2>&1 && echo 0 > "$side/fuzz.rc" || echo $? > "$side/fuzz.rc"
  BENCH_SKIP_BUILD=1 BENCH_PROFILE=debug "$ROOT/scripts/bench.sh" --quick > "$side/bench.log" 2>&1 \
    && echo 0 > "$side/bench.rc" || echo $? > "$side/bench.rc"
) &
side_pid=$!

log "tests"
set +e
cargo test --no-fail-fast "${TESTS[@]}" -- --test-threads 2 2>&1 | tee "$out"
status=${PIPESTATUS[0]}
log "tests done; waiting for the fuzzing and the benchmark's quick run"
wait "$side_pid"
for step in fuzz bench; do
  rc="$(cat "$side/$step.rc" 2>/dev/null || echo 1)"
  name="bash scripts/fuzz.sh 10"
  [ "$step" = bench ] && name="bash scripts/bench.sh --quick"
  log "$name (exit $rc):"
  tail -n 25 "$side/$step.log"
  if [ "$rc" -ne 0 ]; then
    echo "test result: FAILED. 0 passed; 1 failed ($name)" | tee -a "$out"
    [ "$status" -ne 0 ] || status=$rc
  else
    echo "test result: ok. 1 passed; 0 failed ($name)" | tee -a "$out"
  fi
done
set -e
# One closing line for the whole suite, summed over every test binary.
awk '/^test result:/ { for (i = 1; i <= NF; i++) { if ($(i+1) ~ /^passed/) p += $i; if ($(i+1) ~ /^failed/) f += $i } }
     END { printf "summary: %d passed, %d failed\n", p, f }' "$out"
log "the suite took $(( $(date +%s) - started )) s"
exit "$status"
