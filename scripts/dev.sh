#!/usr/bin/env bash
# Starts the whole system locally on http://localhost:8787 (the play page; /ops is the
# operations console): installs what is missing, builds the web pages and both Workers,
# applies the migrations to the local D1 under .state/, and runs both Workers in one
# `wrangler dev` session (shared D1 and queues) with development auth. Ctrl-C stops it.
#   PORT=8787 STATE=.state bash scripts/dev.sh
# FAULTS=markers (see core/src/faults.rs) turns on both Workers' test-only fault switch, to
# practise failures and replays locally: the consumer's (`[fault:before]`, …) and the chat
# Worker's (`[fault:reset]`, `[fault:send-fails]`); RETRY_BASE_SECONDS=0 makes retries
# immediate.
# OFFLINE_STREAM_MS (60 here) is the offline engine's pause before each piece of a reply, so
# that replies are seen being written; 0 answers at once.
set -euo pipefail
source "$(dirname "$0")/env.sh"
cd "$ROOT"
PORT="${PORT:-8787}"
STATE="${STATE:-$ROOT/.state}"
"$ROOT/scripts/build.sh"
# Local secrets for the chat Worker, kept in .dev.vars (git-ignored); deploys never read it.
touch .dev.vars
for secret in ADMIN_TOKEN SESSION_ID_KEY ERASURE_KEY; do
  if ! grep -q "^$secret=" .dev.vars; then
    log "writing a fresh $secret to .dev.vars"
    printf '%s=%s\n' "$secret" "$(od -An -N16 -tx1 /dev/urandom | tr -d ' \n')" >> .dev.vars
  fi
done
log "admin token: export CHAT_ADMIN_TOKEN=$(sed -n 's/^ADMIN_TOKEN=//p' .dev.vars)"
# Local runs use the local build (build-local/: development auth and the fault switch, cargo
# feature `local`), through copies of both configs that point at it; the wrangler.toml files
# themselves point at the deployable build. `wrangler dev --var` reaches only the first
# Worker, so the consumer's local settings go into its copy. Local runs use two databases
# (DB_0 and DB_1, half of the buckets each), so that routing players is always exercised.
LOCAL_SHARD_MAP="0-127=DB_0,128-255=DB_1"
mkdir -p "$STATE"
CHAT_CONFIG="$STATE/chat.wrangler.toml"
CONSUMER_CONFIG="$STATE/consumer.wrangler.toml"
sed -e "s|^main = \"producer/build/index.js\"|main = \"$ROOT/producer/build-local/index.js\"|" \
    -e "s|^migrations_dir = \"migrations\"|migrations_dir = \"$ROOT/migrations\"|" \
    -e "s|^directory = \"web/dist\"|directory = \"$ROOT/web/dist\"|" wrangler.toml > "$CHAT_CONFIG"
SECOND_DB="
[[d1_databases]]
binding = \"DB_1\"
database_name = \"chat-1\"
database_id = \"00000000-0000-4000-8000-000000000001\"
migrations_dir = \"$ROOT/migrations\""
printf '%s\n' "$SECOND_DB" >> "$CHAT_CONFIG"
sed -e "s|^main = \"build/index.js\"|main = \"$ROOT/consumer/build-local/index.js\"|" \
    -e "s|^migrations_dir = \"../migrations\"|migrations_dir = \"$ROOT/migrations\"|" \
    -e "s|^RETRY_BASE_SECONDS = .*|RETRY_BASE_SECONDS = \"${RETRY_BASE_SECONDS:-2}\"|" \
    -e "s|^SHARD_MAP = .*|SHARD_MAP = \"$LOCAL_SHARD_MAP\"|" \
    -e "s|^\[vars\]|[vars]\nFAULTS = \"${FAULTS:-}\"\nERASURE_KEY = \"$(sed -n 's/^ERASURE_KEY=//p' .dev.vars)\"|" consumer/wrangler.toml > "$CONSUMER_CONFIG"
printf '%s\n' "$SECOND_DB" >> "$CONSUMER_CONFIG"
for config in "$CHAT_CONFIG" "$CONSUMER_CONFIG"; do
  grep -q "^main = \"$ROOT/.*/build-local/index.js\"" "$config" \
    || { echo "$config does not point at the local build: has a wrangler.toml's main changed?" >&2; exit 1; }
done
for binding in DB_0 DB_1; do
  log "applying migrations to $binding, the local D1 in $STATE"
  CI=true wrangler d1 migrations apply "$binding" --local --persist-to "$STATE" -c "$CHAT_CONFIG"
done
if [ -n "${FAULTS:-}" ]; then
  log "faults in both Workers: '${FAULTS:-}', retry base ${RETRY_BASE_SECONDS:-2} s (local build only)"
fi
log "starting both Workers: play at http://localhost:$PORT, operate at http://localhost:$PORT/ops (X-Dev-User auth)"
# --test-scheduled: `curl "localhost:$PORT/__scheduled?cron=17+3+*+*+*"` runs the daily
# Cron Trigger (the archiver's jobs) now.
exec wrangler dev --local --test-scheduled -c "$CHAT_CONFIG" -c "$CONSUMER_CONFIG" --persist-to "$STATE" \
  --port "$PORT" --ip 127.0.0.1 --var AUTH_MODE:dev --var ALLOW_DEV_AUTH:local-only \
  --var "ADMIN_TOKEN:$(sed -n 's/^ADMIN_TOKEN=//p' .dev.vars)" \
  --var "SESSION_ID_KEY:$(sed -n 's/^SESSION_ID_KEY=//p' .dev.vars)" \
  --var "ERASURE_KEY:$(sed -n 's/^ERASURE_KEY=//p' .dev.vars)" \
  --var "TURN_RATE_LIMIT:${TURN_RATE_LIMIT:-off}" --var "SHARD_MAP:$LOCAL_SHARD_MAP" \
  --var "OFFLINE_STREAM_MS:${OFFLINE_STREAM_MS:-60}" --var "FAULTS:${FAULTS:-}" \
  --show-interactive-dev-session=false
