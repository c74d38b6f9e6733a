#!/usr/bin/env bash
# Runs the whole test suite: formatting and lints, the native tests on real SQLite, and the
# end-to-end tests on both Workers under wrangler dev (each test starts its own on a free
# port with a fresh state folder; cargo-nextest runs them side by side), the CLI, the
# bad-input corpus, short chaos and soak runs, every benchmark scenario briefly, and a short
# fuzz of each decoder. Installs what is missing first; safe to run twice.
#
# Where the time goes is in docs/testing.md. The compiling steps run one after another (they
# use both cores), with clippy's lints inside them; the steps that mostly wait (the
# end-to-end tests wait on wrangler dev and on queues) run beside the fuzzing and the
# benchmark's quick run, each into its own log.
set -euo pipefail
source "$(dirname "$0")/env.sh"
cd "$ROOT"
started=$(date +%s)
"$ROOT/scripts/setup.sh"
# Clippy's lints run inside the builds themselves: clippy-driver stands in for rustc on this
# workspace's crates (never on dependencies) and denies every warning, so each crate is
# compiled once, linted as it is built, instead of once more by `cargo clippy`. That covers
# both Workers in both variants and the inline Worker (their release builds), and every
# native crate with its tests. `cargo clippy` itself stays clean, and applies the same lints.
export RUSTC_WORKSPACE_WRAPPER="$(command -v clippy-driver)"
export CLIPPY_ARGS="-D__CLIPPY_HACKERY__warnings__CLIPPY_HACKERY__"
log "cargo fmt --check, and the web pages' TypeScript type-checked (tsc -p web)"
cargo fmt --all --check
ts/node_modules/.bin/tsc -p web
"$ROOT/scripts/build.sh"
log "building the inline-write Worker (bench/inline, for the benchmark's quick run)"
(cd "$ROOT/bench/inline" && worker_build --release)
log "compiling the tests, the CLI and the load generator (with clippy's lints)"
TESTS=(-p chat-core -p e2e -p chat-admin -p bench --lib --bins --tests)
cargo nextest run --no-run --cargo-quiet "${TESTS[@]}"
cargo build -q -p bench

out="$(mktemp)"
side="$(mktemp -d)"
trap 'rm -rf "$out" "$side"' EXIT
# Beside the tests, side by side: the fuzzing (without AddressSanitizer: see scripts/fuzz.sh;
# bash scripts/fuzz.sh 300 for a long run), and every benchmark scenario briefly, with its
# invariant checks (nothing lost, nothing counted twice); timings are never judged here.
log "beside the tests: fuzzing each decoder for 10 s, and bash scripts/bench.sh --quick"
(
  # The fuzzer builds on the nightly toolchain, whose rustc the stable clippy-driver is not.
  unset RUSTC_WORKSPACE_WRAPPER CLIPPY_ARGS
  FUZZ_SANITIZER=none "$ROOT/scripts/fuzz.sh" 10 > "$side/fuzz.log" 2>&1 \
    && echo 0 > "$side/fuzz.rc" || echo $? > "$side/fuzz.rc"
) &
fuzz_pid=$!
(
  BENCH_SKIP_BUILD=1 BENCH_PROFILE=debug "$ROOT/scripts/bench.sh" --quick > "$side/bench.log" 2>&1 \
    && echo 0 > "$side/bench.rc" || echo $? > "$side/bench.rc"
) &
bench_pid=$!

log "tests (cargo nextest: every binary's tests side by side, .config/nextest.toml)"
set +e
cargo nextest run --no-fail-fast "${TESTS[@]}" 2>&1 | tee "$out"
status=${PIPESTATUS[0]}
log "tests done; waiting for the fuzzing and the benchmark's quick run"
wait "$fuzz_pid" "$bench_pid"
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
# One closing line for the whole suite: nextest's count and the steps beside it.
awk '/^test result:|tests run:/ { for (i = 1; i <= NF; i++) { if ($(i+1) ~ /^passed/) p += $i; if ($(i+1) ~ /^failed/) f += $i } }
     END { printf "summary: %d passed, %d failed\n", p, f }' "$out"
log "the suite took $(( $(date +%s) - started )) s"
exit "$status"
