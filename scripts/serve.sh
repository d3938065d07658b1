#!/usr/bin/env bash
# The main job: `amrpc serve` — the demo workers (`bench`, `downloads`) and the web inspector on
# http://127.0.0.1:8080/ (the classic page at /classic/). Builds what the pages need first, when
# missing or older than their sources: the npm package (target/npm; installing the wasm32 target,
# wasm-bindgen-cli at the Cargo.lock version and wasm-pack when missing: a few minutes, once) and
# the inspector (web/inspector/dist: npm ci + vite build). Arguments go to `amrpc serve` (e.g.
# --addr 127.0.0.1:9000; --help lists them).
set -euo pipefail
ROOT="$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)"
cd "$ROOT"

if ! command -v cargo >/dev/null 2>&1 && [ ! -x "$HOME/.cargo/bin/cargo" ]; then
  echo "cargo not found: install Rust with rustup first (https://rustup.rs)" >&2
  exit 1
fi

. "$ROOT/scripts/web/tools.sh"
amrpc_ensure_pkg web
amrpc_ensure_inspector

# (from the workspace root, `serve` finds web/ and target/npm/web by default)
exec cargo run --release -p amrpc-server -- serve "$@"
