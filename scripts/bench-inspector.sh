#!/usr/bin/env bash
# Benchmark: the inspector under a worker changing RATE (default 1000) times a second for SECONDS
# (default 10), once per view (states, log, graph, timeline): long tasks, frame rate, transitions
# received and dropped, catch-up time. One JSON line per view; figures in docs/BENCHMARKS.md.
#   scripts/bench-inspector.sh            RATE=2000 SECONDS=5 scripts/bench-inspector.sh
set -euo pipefail
ROOT="$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)"
. "$ROOT/scripts/web/tools.sh"
amrpc_ensure_pkg web
amrpc_ensure_inspector
export AMRPC_SKIP_PKG=1
. "$ROOT/scripts/web/setup.sh"
cd "$ROOT/tests/web"
want=$(node -p "require('./package.json').dependencies['playwright-core']")
have=$(node -p "try { require('./node_modules/playwright-core/package.json').version } catch { '' }")
[ "$want" = "$have" ] || npm ci --no-audit --no-fund --loglevel=error
echo "load: $(uptime)"
for view in ${VIEWS:-states log graph timeline}; do
  VIEW=$view node bench-inspector.mjs
done
