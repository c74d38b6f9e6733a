#!/usr/bin/env bash
# Builds the web pages into web/dist/, which the chat Worker serves as static assets
# ([assets] in wrangler.toml): the files in web/static/ as they are (HTML, CSS, the _headers
# file with the CSP), and each page's TypeScript bundled and minified by the esbuild that
# wrangler brings. Prints each bundle's size. Type-checking is `tsc -p web` (scripts/test.sh).
set -euo pipefail
source "$(dirname "$0")/env.sh"
cd "$ROOT/web"
rm -rf dist.tmp && mkdir dist.tmp
cp -R static/. dist.tmp/
"$ESBUILD_BIN" src/play.ts src/ops.ts --bundle --minify --format=esm --target=es2020 \
  --outdir=dist.tmp --log-level=warning
# Swapped in whole, so that a running `wrangler dev` never serves a half-written folder.
rm -rf dist && mv dist.tmp dist
for f in dist/play.js dist/ops.js; do
  log "$f: $(stat -c %s "$f") bytes, $(gzip -9 -c "$f" | wc -c) gzip"
done
