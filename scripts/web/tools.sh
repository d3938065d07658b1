#!/usr/bin/env bash
# Tool installs and the npm package build, shared by scripts/serve.sh and scripts/web/setup.sh.
# Source it (it only defines ROOT, PATH and functions; nothing runs until you call them):
#   amrpc_ensure_chromium     Debian chromium + chromium-driver (apt), when missing
#   amrpc_ensure_wasm_tools   the wasm32 target, wasm-bindgen-cli (the Cargo.lock version), wasm-pack 0.15.1
#   build_pkg <target>        wasm-pack build of client-wasm into target/npm/<target> (web|nodejs|bundler)
#   amrpc_pkg_stale <target>  true when target/npm/<target> is missing or older than its sources
#   amrpc_ensure_pkg <target> build_pkg <target> when it is stale (installing the wasm tools first)
# Installs are idempotent: a tool already there at the right version is not reinstalled.
# See ../shared/TOOLCHAIN.md for why each step is done this way.

ROOT="${ROOT:-$(cd "$(dirname "${BASH_SOURCE[0]}")/../.." && pwd)}"
case ":$PATH:" in *":$HOME/.cargo/bin:"*) ;; *) export PATH="$HOME/.cargo/bin:$PATH" ;; esac
export PKG_DIR="$ROOT/target/npm"
AMRPC_WASM_PACK_VERSION=0.15.1

amrpc_ensure_chromium() {
  local need_apt=()
  [ -x /usr/bin/chromium ] || need_apt+=(chromium)
  [ -x /usr/bin/chromedriver ] || need_apt+=(chromium-driver)
  if [ ${#need_apt[@]} -gt 0 ]; then
    echo "installing ${need_apt[*]}"
    apt-get update -qq
    DEBIAN_FRONTEND=noninteractive apt-get install -y -qq "${need_apt[@]}" >/dev/null
  fi
}

# The wasm-bindgen version pinned in Cargo.lock (the CLI must match it exactly).
amrpc_wbg_version() {
  awk '/^name = "wasm-bindgen"$/{getline; gsub(/version = |"/,""); print; exit}' "$ROOT/Cargo.lock"
}

amrpc_ensure_wasm_tools() {
  if ! command -v rustup >/dev/null 2>&1; then
    echo "rustup not found: install Rust with rustup first (https://rustup.rs)" >&2
    return 1
  fi
  rustup target list --installed | grep -qx wasm32-unknown-unknown || rustup target add wasm32-unknown-unknown
  local wbg
  wbg=$(amrpc_wbg_version)
  # no --locked for wasm-bindgen-cli: its lockfile pins a crate version the registry does not serve
  if ! wasm-bindgen --version 2>/dev/null | grep -qF "$wbg"; then
    echo "installing wasm-bindgen-cli $wbg (about 1.5 minutes, once)"
    cargo install -q wasm-bindgen-cli --version "$wbg" --no-default-features
  fi
  if ! wasm-pack --version 2>/dev/null | grep -qF "$AMRPC_WASM_PACK_VERSION"; then
    echo "installing wasm-pack $AMRPC_WASM_PACK_VERSION (about 1.5 minutes, once)"
    cargo install -q --locked wasm-pack --version "$AMRPC_WASM_PACK_VERSION"
  fi
}

# Build the npm package for one wasm-pack target (--mode no-install: never let wasm-pack fetch tools).
build_pkg() {
  local target=$1 profile=wasm-release
  # Node's build is made for speed, the browsers' for size (Cargo.toml)
  [ "$target" = nodejs ] && profile=wasm-node
  (cd "$ROOT/client-wasm" && wasm-pack build --mode no-install --profile "$profile" --target "$target" \
    --out-dir "$PKG_DIR/$target" --out-name amrpc >/dev/null)
}

amrpc_pkg_stale() {
  local target=$1
  local built="$PKG_DIR/$target/amrpc_bg.wasm"
  [ -f "$built" ] && [ -f "$PKG_DIR/$target/amrpc.js" ] || return 0
  # anything the package is built from that changed after the build
  [ -n "$(find "$ROOT/client-wasm/src" "$ROOT/client-wasm/Cargo.toml" "$ROOT/shared/src" \
    "$ROOT/shared/Cargo.toml" "$ROOT/Cargo.lock" -newer "$built" -print -quit 2>/dev/null)" ]
}

amrpc_ensure_pkg() {
  local target=$1
  if amrpc_pkg_stale "$target"; then
    amrpc_ensure_wasm_tools
    echo "building the wasm package (target/npm/$target)"
    build_pkg "$target"
  fi
}

# A Vite app of web/ (the inspector, the example) built into web/<app>/dist when missing or older
# than its sources or the npm package it imports. It imports `amrpc` from target/npm/amrpc
# (assembled by pack.sh, linked by its package.json), like any app would.
amrpc_ensure_app() {
  local app=$1
  local dir="$ROOT/web/$app"
  local stale=""
  if [ ! -f "$dir/dist/index.html" ]; then
    stale=1
  elif [ -n "$(find "$dir/src" "$dir/index.html" "$dir/package.json" "$dir/vite.config.ts" \
      "$ROOT/client-wasm/npm" "$ROOT/client-wasm/src" "$ROOT/shared/src" -newer "$dir/dist/index.html" -print -quit)" ]; then
    stale=1
  fi
  [ -n "$stale" ] || return 0
  echo "building web/$app (Vite)"
  "$ROOT/scripts/web/pack.sh" >/dev/null
  if [ ! -d "$dir/node_modules/vite" ] || [ "$dir/package-lock.json" -nt "$dir/node_modules/.package-lock.json" ]; then
    (cd "$dir" && timeout 600 npm ci --no-audit --no-fund --loglevel=error)
  fi
  (cd "$dir" && timeout 600 npm run build --silent)
}

# The inspector served at / by `amrpc serve`.
amrpc_ensure_inspector() {
  amrpc_ensure_app inspector
}
