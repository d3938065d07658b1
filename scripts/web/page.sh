#!/usr/bin/env bash
# The web pages in a real browser: playwright-core (npm) drives the Debian Chromium against a real
# server: the inspector at / (tests/web/inspector.test.mjs) and the classic page at /classic/
# (tests/web/page.test.mjs). Installs and builds what they need (idempotently), leaves
# screenshots in target/test-artifacts/.
# Usage: scripts/web/page.sh
set -euo pipefail
ROOT="$(cd "$(dirname "${BASH_SOURCE[0]}")/../.." && pwd)"

# The page needs only the web build of the package: build it when stale, skip the others.
. "$ROOT/scripts/web/tools.sh"
amrpc_ensure_pkg web
# the inspector served at / (web/inspector/dist), built from the packed npm package
amrpc_ensure_inspector
# the example app (tests/web/example.test.mjs runs its production build)
amrpc_ensure_app example
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
