#!/usr/bin/env bash
# Shared setup for the browser, Node and page tests: installs what they need (idempotently, see
# ../shared/TOOLCHAIN.md), builds the npm package and starts the test servers.
# Source it: `. scripts/web/setup.sh`; it exports AMRPC_TEST_URL, AMRPC_TEST_URL_LOCKED,
# AMRPC_TEST_HTTP, PKG_DIR (the npm package folders) and kills the server on exit.
set -euo pipefail
ROOT="$(cd "$(dirname "${BASH_SOURCE[0]}")/../.." && pwd)"
export PATH="$HOME/.cargo/bin:$PATH"

need_apt=()
[ -x /usr/bin/chromium ] || need_apt+=(chromium)
[ -x /usr/bin/chromedriver ] || need_apt+=(chromium-driver)
if [ ${#need_apt[@]} -gt 0 ]; then
  echo "installing ${need_apt[*]}"
  apt-get update -qq
  DEBIAN_FRONTEND=noninteractive apt-get install -y -qq "${need_apt[@]}" >/dev/null
fi

rustup target list --installed | grep -qx wasm32-unknown-unknown || rustup target add wasm32-unknown-unknown

# wasm-bindgen CLI: exactly the version in Cargo.lock (no --locked: see TOOLCHAIN.md)
WBG_VERSION=$(awk '/^name = "wasm-bindgen"$/{getline; gsub(/version = |"/,""); print; exit}' "$ROOT/Cargo.lock")
if ! wasm-bindgen --version 2>/dev/null | grep -q "$WBG_VERSION"; then
  cargo install -q wasm-bindgen-cli --version "$WBG_VERSION" --no-default-features
fi
if ! wasm-pack --version 2>/dev/null | grep -q "0.15.1"; then
  cargo install -q --locked wasm-pack --version 0.15.1
fi

# the npm package, for every target
export PKG_DIR="$ROOT/target/npm"
build_pkg() {
  local target=$1
  (cd "$ROOT/client-wasm" && wasm-pack build --mode no-install --release --target "$target" \
    --out-dir "$PKG_DIR/$target" --out-name amrpc >/dev/null)
}
if [ -z "${AMRPC_SKIP_PKG:-}" ]; then
  for t in web nodejs bundler; do build_pkg "$t"; done
fi

# the test servers
cargo build -q --release -p amrpc-server
SERVER_LOG=$(mktemp)
"$ROOT/target/release/amrpc" serve-test --web "$ROOT/web" >"$SERVER_LOG" 2>&1 &
SERVER_PID=$!
trap 'kill $SERVER_PID 2>/dev/null || true' EXIT
for _ in $(seq 1 100); do
  grep -q AMRPC_TEST_HTTP "$SERVER_LOG" && break
  sleep 0.1
done
eval "$(grep '^AMRPC_TEST_' "$SERVER_LOG" | sed 's/^/export /')"
echo "test servers: $AMRPC_TEST_URL (open), $AMRPC_TEST_URL_LOCKED (locked)"
