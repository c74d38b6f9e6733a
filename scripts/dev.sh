#!/usr/bin/env bash
# Starts the whole system locally on http://localhost:8787: installs what is missing, builds
# both Workers, applies the migrations to the local D1 under .state/, and runs both Workers in
# one `wrangler dev` session (shared D1 and queues) with development auth. Ctrl-C stops it.
#   PORT=8787 STATE=.state bash scripts/dev.sh
set -euo pipefail
source "$(dirname "$0")/env.sh"
cd "$ROOT"
PORT="${PORT:-8787}"
STATE="${STATE:-$ROOT/.state}"
"$ROOT/scripts/build.sh"
log "applying migrations to the local D1 in $STATE"
CI=true wrangler d1 migrations apply DB --local --persist-to "$STATE" -c wrangler.toml
log "starting both Workers on http://localhost:$PORT (X-Dev-User auth)"
exec wrangler dev -c wrangler.toml -c consumer/wrangler.toml --persist-to "$STATE" \
  --port "$PORT" --ip 127.0.0.1 --var AUTH_MODE:dev --show-interactive-dev-session=false
