#!/usr/bin/env bash
# Prints each built Worker's wasm and JS bundle size, raw and gzip-compressed (the Workers
# platform limits the compressed size: 3 MB free, 10 MB paid). Run scripts/build.sh first.
set -euo pipefail
source "$(dirname "$0")/env.sh"
printf '| Worker | file | raw | gzip -9 |\n|---|---|---:|---:|\n'
for crate in producer consumer; do
  for f in index_bg.wasm index.js; do
    path="$ROOT/$crate/build/$f"
    [ -f "$path" ] || { echo "missing $path: run scripts/build.sh" >&2; exit 1; }
    raw=$(stat -c %s "$path")
    gz=$(gzip -9 -c "$path" | wc -c)
    printf '| %s | %s | %d KiB | %d KiB |\n' "$crate" "$f" $((raw / 1024)) $((gz / 1024))
  done
done
# The web pages' bundles (static assets: they count toward no Worker's size limit).
for f in play.js ops.js; do
  path="$ROOT/web/dist/$f"
  [ -f "$path" ] || { echo "missing $path: run scripts/build.sh" >&2; exit 1; }
  printf '| web page | %s | %d KiB | %d KiB |\n' "$f" $(($(stat -c %s "$path") / 1024)) $(($(gzip -9 -c "$path" | wc -c) / 1024))
done
