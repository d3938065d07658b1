#!/usr/bin/env bash
# The main job: `amrpc serve` — the demo workers (`bench`, `downloads`) and the web page that shows
# them live, on http://127.0.0.1:8080/. Builds what the page needs first: the wasm package
# (target/npm/web) when it is missing or older than its sources, installing the wasm32 target,
# wasm-bindgen-cli (the Cargo.lock version) and wasm-pack when they are missing (a few minutes,
# once). Arguments go to `amrpc serve` (e.g. --addr 127.0.0.1:9000; --help lists them).
set -euo pipefail
ROOT="$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)"
cd "$ROOT"

if ! command -v cargo >/dev/null 2>&1 && [ ! -x "$HOME/.cargo/bin/cargo" ]; then
  echo "cargo not found: install Rust with rustup first (https://rustup.rs)" >&2
  exit 1
fi

. "$ROOT/scripts/web/tools.sh"
amrpc_ensure_pkg web

# (from the workspace root, `serve` finds web/ and target/npm/web by default)
exec cargo run --release -p amrpc-server -- serve "$@"
