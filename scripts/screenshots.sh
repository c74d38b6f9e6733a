#!/usr/bin/env bash
# Refreshes the README's pictures of the web pages (docs/screenshots/play.png and ops.png):
# runs the two browser tests that walk through each page, on wrangler dev in headless
# Chromium, with SCREENSHOTS_DIR set so that each saves its page at the end.
set -euo pipefail
source "$(dirname "$0")/env.sh"
cd "$ROOT"
"$ROOT/scripts/build.sh"
SCREENSHOTS_DIR="$ROOT/docs/screenshots" cargo test -p e2e --test browser -- \
  --test-threads 2 a_player_chats_reloads_loses_and_starts_again \
  an_operator_filters_inspects_replays_and_discards_dead_letters
ls -l "$ROOT/docs/screenshots"
