#!/usr/bin/env bash
# The web page (web/) in a real browser: playwright-core (npm) drives the Debian Chromium; two
# pages mirror the demo worker `downloads` of a real server, a click in one shows in the other.
# Installs what it needs (idempotently), leaves target/test-artifacts/page.png.
# Usage: scripts/web/page.sh
set -euo pipefail
ROOT="$(cd "$(dirname "${BASH_SOURCE[0]}")/../.." && pwd)"

# The page needs only the web build of the package: build it when stale, skip the others.
. "$ROOT/scripts/web/tools.sh"
amrpc_ensure_pkg web
export AMRPC_SKIP_PKG=1
. "$ROOT/scripts/web/setup.sh" # chromium, the test server (AMRPC_TEST_HTTP); stops it on exit

# playwright-core, exactly the version in tests/web/package.json (lockfile: npm ci)
cd "$ROOT/tests/web"
want=$(node -p "require('./package.json').dependencies['playwright-core']")
have=$(node -p "try { require('./node_modules/playwright-core/package.json').version } catch { '' }")
if [ "$want" != "$have" ]; then
  echo "installing playwright-core $want into tests/web"
  npm ci --no-audit --no-fund --loglevel=error
fi

cd "$ROOT"
mkdir -p target/test-artifacts
export AMRPC_TEST_ARTIFACTS="$ROOT/target/test-artifacts"
node --test tests/web
