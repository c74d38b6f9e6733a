#!/usr/bin/env bash
# The fresh-machine check (docs/testing.md): the two commands of the README, run as a
# newcomer runs them, on a machine of this kind where none of the project's tools is
# installed yet. It moves aside every tool scripts/setup.sh installs (wasm-bindgen,
# worker-build, cargo-fuzz, cargo-nextest, wrk, chromium and chromedriver) and puts each
# back when it ends, however it ends; then, in a fresh clone (no node_modules, no target/),
# it runs `bash scripts/dev.sh` until both Workers serve, stops it, and runs
# `bash scripts/test.sh`. It prints the time each took, and the install part of each.
#   bash scripts/fresh-machine.sh            clone HEAD of this checkout
#   KEEP=1 bash scripts/fresh-machine.sh     keep the clone and its logs afterwards
# It needs root (Debian's packages are installed with apt-get) and about 20 GB of disk.
set -euo pipefail
source "$(dirname "$0")/env.sh"
aside="$(mktemp -d /tmp/fresh-machine-aside.XXXX)"
clone="$(mktemp -d /tmp/fresh-machine-clone.XXXX)"
moved=()
dev_pid=""

put_back() {
  if [ -n "$dev_pid" ]; then kill -- "-$dev_pid" 2>/dev/null || true; fi
  for entry in "${moved[@]}"; do
    local from="${entry%%|*}" to="${entry##*|}"
    rm -f "$from"
    mv "$to" "$from"
  done
  rm -rf "$aside"
  if [ -z "${KEEP:-}" ]; then rm -rf "$clone"; else log "kept the clone and its logs in $clone"; fi
}
trap put_back EXIT

# Everything scripts/setup.sh installs, wherever this machine has it.
for tool in wasm-bindgen worker-build cargo-fuzz cargo-nextest wrk chromium chromedriver; do
  while path="$(command -v "$tool" 2>/dev/null)" && [ -n "$path" ]; do
    target="$aside/$(echo "$path" | tr / _)"
    mv "$path" "$target"
    moved+=("$path|$target")
    hash -r
  done
done
log "moved aside: ${moved[*]:-nothing}"
for tool in wasm-bindgen worker-build cargo-fuzz cargo-nextest wrk chromium chromedriver; do
  if command -v "$tool" >/dev/null 2>&1; then
    echo "fresh-machine: $tool is still on PATH" >&2
    exit 1
  fi
done

git clone -q "$ROOT" "$clone/repo"
cd "$clone/repo"
log "fresh clone of $(git rev-parse --short HEAD) in $clone/repo"

started=$(date +%s)
setsid bash scripts/dev.sh > "$clone/dev.log" 2>&1 < /dev/null &
dev_pid=$!
serving=""
for _ in $(seq 1 3600); do
  if curl -sf "http://localhost:8787/healthz" >/dev/null 2>&1; then serving=1; break; fi
  if ! kill -0 "$dev_pid" 2>/dev/null; then break; fi
  sleep 1
done
dev_seconds=$(( $(date +%s) - started ))
if [ -z "$serving" ]; then
  tail -n 40 "$clone/dev.log" >&2
  echo "fresh-machine: bash scripts/dev.sh did not serve" >&2
  exit 1
fi
curl -sf -X POST "http://localhost:8787/api/sessions" -H 'Content-Type: application/json' \
  -H 'X-Dev-User: x:fresh' -d '{"characterType":"sakura","username":"Fresh","locale":"en"}' \
  > "$clone/session.json"
log "bash scripts/dev.sh served after $dev_seconds s, and started a session: $(cat "$clone/session.json")"
kill -- "-$dev_pid" 2>/dev/null || true
wait "$dev_pid" 2>/dev/null || true
dev_pid=""

started=$(date +%s)
set +e
bash scripts/test.sh > "$clone/test.log" 2>&1
status=$?
set -e
test_seconds=$(( $(date +%s) - started ))
tail -n 5 "$clone/test.log"

# The install part: from the first line setup.sh logs to the first line after it.
install_seconds() {
  awk '/==> [0-9:]+ (installing|adding|retrying)/ && !first { first = $2 }
       /==> [0-9:]+ (building the web pages|cargo fmt)/ && first && !last { last = $2 }
       END { if (first && last) {
               split(first, a, ":"); split(last, b, ":");
               print (b[1]*3600 + b[2]*60 + b[3]) - (a[1]*3600 + a[2]*60 + a[3]) }
             else print 0 }' "$1"
}
log "dev.sh: $dev_seconds s to serve, of which installing $(install_seconds "$clone/dev.log") s"
log "test.sh: $test_seconds s (exit $status), of which installing $(install_seconds "$clone/test.log") s"
exit "$status"
