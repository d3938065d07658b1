#!/usr/bin/env bash
# The example app (web/example, Vite + React + amrpc/react) against the demo workers:
# starts `amrpc serve` on 127.0.0.1:8080 and the app's Vite dev server on http://127.0.0.1:5173/
# (it proxies /ws to the server). Builds the npm package first when missing or stale, and
# installs the app's dependencies (npm ci) when missing. Ctrl-C stops both.
set -euo pipefail
ROOT="$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)"
cd "$ROOT"
. "$ROOT/scripts/web/tools.sh"
"$ROOT/scripts/web/pack.sh" >/dev/null
APP="$ROOT/web/example"
if [ ! -d "$APP/node_modules/vite" ] || [ "$APP/package-lock.json" -nt "$APP/node_modules/.package-lock.json" ]; then
  (cd "$APP" && timeout 600 npm ci --no-audit --no-fund --loglevel=error)
fi
cargo build -q --release -p amrpc-server
"$ROOT/target/release/amrpc" serve --addr "${AMRPC_ADDR:-127.0.0.1:8080}" &
SERVER=$!
trap 'kill $SERVER 2>/dev/null || true' EXIT
export AMRPC_SERVER="http://${AMRPC_ADDR:-127.0.0.1:8080}"
cd "$APP"
echo "example app: http://127.0.0.1:5173/ (the inspector: $AMRPC_SERVER/)"
npx vite --host 127.0.0.1 --port 5173 --strictPort
