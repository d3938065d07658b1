#!/usr/bin/env bash
# Shared setup for the browser, Node and page tests: installs what they need (idempotently, see
# ../shared/TOOLCHAIN.md), builds the npm package and starts the test servers.
# Source it: `. scripts/web/setup.sh`; it exports AMRPC_TEST_URL, AMRPC_TEST_URL_LOCKED,
# AMRPC_TEST_HTTP, AMRPC_TEST_URL_TLS, AMRPC_TEST_HTTPS (the open server over TLS, its certificate
# trusted via NODE_EXTRA_CA_CERTS and AMRPC_TEST_SPKI), PKG_DIR (the npm package folders) and kills
# the server on exit.
set -euo pipefail
ROOT="$(cd "$(dirname "${BASH_SOURCE[0]}")/../.." && pwd)"
# tool installs and build_pkg live in tools.sh (shared with scripts/serve.sh)
. "$ROOT/scripts/web/tools.sh"
amrpc_ensure_chromium
amrpc_ensure_wasm_tools

# the npm package, for every target (PKG_DIR=$ROOT/target/npm, exported by tools.sh)
if [ -z "${AMRPC_SKIP_PKG:-}" ]; then
  for t in web nodejs bundler; do build_pkg "$t"; done
fi

# the test servers
cargo build -q --release -p amrpc-server
# a fresh self-signed certificate for the TLS server (made now, never committed); Node trusts it
# through NODE_EXTRA_CA_CERTS, Chromium by its key's pin (AMRPC_TEST_SPKI)
CERT_DIR="$ROOT/target/test-certs"
cargo run -q --release -p amrpc-server --example test_cert -- "$CERT_DIR" >/dev/null
export NODE_EXTRA_CA_CERTS="$CERT_DIR/cert.pem"
AMRPC_TEST_SPKI="$(cat "$CERT_DIR/spki.txt")"
export AMRPC_TEST_SPKI
SERVER_LOG=$(mktemp)
"$ROOT/target/release/amrpc" serve-test --web "$ROOT/web" --pkg "$PKG_DIR/web" --tls-dir "$CERT_DIR" >"$SERVER_LOG" 2>&1 &
SERVER_PID=$!
trap 'kill $SERVER_PID 2>/dev/null || true' EXIT
for _ in $(seq 1 100); do
  grep -q AMRPC_TEST_HTTPS "$SERVER_LOG" && break
  sleep 0.1
done
eval "$(grep '^AMRPC_TEST_' "$SERVER_LOG" | sed 's/^/export /')"
echo "test servers: $AMRPC_TEST_URL (open), $AMRPC_TEST_URL_LOCKED (locked)"
