#!/usr/bin/env bash
# Fuzzes the decoders that face untrusted bytes (chat bodies, turn records, auth headers and
# tokens, admin bodies) with cargo-fuzz on the machine's nightly toolchain, each for a set
# time. Seeds are committed in fuzz/seeds/; what libFuzzer learns goes to fuzz/corpus/
# (ignored). A crash, out-of-memory, timeout or leak is saved under fuzz/artifacts/ and fails
# the run, as does any failing exit of the fuzzer: turn it into a regression test.
# Usage: bash scripts/fuzz.sh [seconds per target, default 60]
# FUZZ_RESULTS=bench/results/fuzz.json saves each target's figures there (docs/testing.md's
# fuzzing table comes from that file; scripts/chaos.sh sets it for the long run).
# FUZZ_SANITIZER=none builds without AddressSanitizer (the default is `address`): the test
# suite's short run does, since the decoders are safe Rust, where what ten seconds can find
# is a panic, a hang or runaway memory, which libFuzzer catches without it; and an ASan
# build instruments every dependency, which costs the suite minutes. The long run keeps it.
set -euo pipefail
source "$(dirname "$0")/env.sh"
cd "$ROOT"
SECONDS_PER_TARGET="${1:-60}"
"$ROOT/scripts/setup.sh"
SANITIZER="${FUZZ_SANITIZER:-address}"
cargo +nightly fuzz build -O -s "$SANITIZER" --fuzz-dir fuzz
FIGURES=()
for target in chat_request turn_record auth admin_request; do
  mkdir -p "fuzz/corpus/$target"
  log "fuzzing $target for $SECONDS_PER_TARGET s"
  out="$(mktemp)"
  set +e
  cargo +nightly fuzz run -O -s "$SANITIZER" --fuzz-dir fuzz "$target" "fuzz/corpus/$target" "fuzz/seeds/$target" -- \
    -max_total_time="$SECONDS_PER_TARGET" -max_len=65536 -timeout=10 -rss_limit_mb=2048 \
    -print_final_stats=1 2>&1 \
    | grep -E '^(#[0-9]+\s+DONE|Done|stat::number_of_executed_units|==[0-9]+==|SUMMARY|artifact)' \
    | tee "$out"
  status=${PIPESTATUS[0]}
  set -e
  executions="$(sed -n 's/^stat::number_of_executed_units: *\([0-9]*\).*/\1/p' "$out" | tail -1)"
  coverage="$(sed -n 's/^#[0-9]*[[:space:]]*DONE[[:space:]]*cov: \([0-9]*\).*/\1/p' "$out" | tail -1)"
  rm -f "$out"
  # Any artifact fails the run: a crash, an out-of-memory, a timeout or a leak.
  artifacts="$(ls "fuzz/artifacts/$target"/crash-* "fuzz/artifacts/$target"/oom-* \
    "fuzz/artifacts/$target"/timeout-* "fuzz/artifacts/$target"/leak-* 2>/dev/null || true)"
  if [ "$status" -ne 0 ] || [ -n "$artifacts" ]; then
    log "FAILED: $target (exit $status); artifacts: ${artifacts:-none}"
    exit 1
  fi
  FIGURES+=("\"$target\": {\"seconds\": $SECONDS_PER_TARGET, \"executions\": ${executions:-0}, \"coverageEdges\": ${coverage:-0}, \"artifacts\": 0}")
done
if [ -n "${FUZZ_RESULTS:-}" ]; then
  {
    printf '{\n  "run": "fuzz",\n  "date": "%s",\n  "machine": { "cpus": %s, "arch": "%s" },\n' \
      "$(date -u +%Y-%m-%dT%H:%M:%SZ)" "$(nproc)" "$(uname -m)"
    printf '  "parameters": { "secondsPerTarget": %s, "sanitizer": "%s", "toolchain": "%s" },\n  "figures": {\n' \
      "$SECONDS_PER_TARGET" "$SANITIZER" "$(rustc +nightly --version)"
    for i in "${!FIGURES[@]}"; do
      sep=","; [ "$i" -eq $((${#FIGURES[@]} - 1)) ] && sep=""
      printf '    %s%s\n' "${FIGURES[$i]}" "$sep"
    done
    printf '  }\n}\n'
  } > "$FUZZ_RESULTS"
  log "fuzz figures saved to $FUZZ_RESULTS"
fi
log "fuzz: no crash, out-of-memory, timeout or leak in any target"
