#!/usr/bin/env bash
# Fuzzes the decoders that face untrusted bytes (chat bodies, turn records, auth headers and
# tokens, admin bodies) with cargo-fuzz on the machine's nightly toolchain, each for a set
# time. Seeds are committed in fuzz/seeds/; what libFuzzer learns goes to fuzz/corpus/
# (ignored). A crash, out-of-memory, timeout or leak is saved under fuzz/artifacts/ and fails
# the run, as does any failing exit of the fuzzer: turn it into a regression test. Usage: bash scripts/fuzz.sh [seconds per target, default 60]
set -euo pipefail
source "$(dirname "$0")/env.sh"
cd "$ROOT"
SECONDS_PER_TARGET="${1:-60}"
"$ROOT/scripts/setup.sh"
cargo +nightly fuzz build -O --fuzz-dir fuzz
for target in chat_request turn_record auth admin_request; do
  mkdir -p "fuzz/corpus/$target"
  log "fuzzing $target for $SECONDS_PER_TARGET s"
  set +e
  cargo +nightly fuzz run -O --fuzz-dir fuzz "$target" "fuzz/corpus/$target" "fuzz/seeds/$target" -- \
    -max_total_time="$SECONDS_PER_TARGET" -max_len=65536 -timeout=10 -rss_limit_mb=2048 \
    -print_final_stats=1 2>&1 \
    | grep -E '^(#[0-9]+\s+DONE|Done|stat::number_of_executed_units|==[0-9]+==|SUMMARY|artifact)'
  status=${PIPESTATUS[0]}
  set -e
  # Any artifact fails the run: a crash, an out-of-memory, a timeout or a leak.
  artifacts="$(ls "fuzz/artifacts/$target"/crash-* "fuzz/artifacts/$target"/oom-* \
    "fuzz/artifacts/$target"/timeout-* "fuzz/artifacts/$target"/leak-* 2>/dev/null || true)"
  if [ "$status" -ne 0 ] || [ -n "$artifacts" ]; then
    log "FAILED: $target (exit $status); artifacts: ${artifacts:-none}"
    exit 1
  fi
done
log "fuzz: no crash, out-of-memory, timeout or leak in any target"
