#!/usr/bin/env bash
# The project's single test command: installs what it needs (idempotently), then runs every check.
# Usage: scripts/test.sh            (all checks)
#        QUICK=1 scripts/test.sh    (skip clippy and the no_std/wasm builds)
set -euo pipefail
cd "$(dirname "$0")/.."

log() { printf '\n==> %s\n' "$*"; }

if ! command -v cargo >/dev/null 2>&1; then
  echo "cargo not found: install Rust with rustup first" >&2
  exit 1
fi

if [ -z "${QUICK:-}" ]; then
  log "toolchain components and targets"
  rustup component add clippy rustfmt >/dev/null 2>&1 || true
  for t in wasm32-unknown-unknown thumbv7em-none-eabihf; do
    rustup target list --installed | grep -qx "$t" || rustup target add "$t"
  done

  log "rustfmt"
  cargo fmt --all -- --check

  log "clippy (-D warnings)"
  cargo clippy --workspace --all-targets -- -D warnings
  cargo clippy -p amrpc-core --no-default-features --lib -- -D warnings
  cargo clippy -p amrpc-wasm --target wasm32-unknown-unknown --all-targets -- -D warnings

  log "layers: the machine never imports the protocol (docs/ARCHITECTURE.md)"
  if grep -rnE 'crate::(wire|session)|use crate::\{[^}]*(wire|session)' shared/src/machine \
    shared/src/{error,types,wait,schema,handlers,transition,resolver,api,tracer,sync,why}.rs; then
    echo "the machine depends on the protocol (above)" >&2
    exit 1
  fi

  log "amrpc-core builds no_std (thumbv7em-none-eabihf) and for wasm32-unknown-unknown"
  cargo build -p amrpc-core --no-default-features --target thumbv7em-none-eabihf
  cargo build -p amrpc-core --no-default-features --target wasm32-unknown-unknown
  cargo build -p amrpc-core --target wasm32-unknown-unknown

  log "docs build without warnings"
  RUSTDOCFLAGS="-D warnings" cargo doc -p amrpc-core --no-deps
fi

log "benchmarks compile and run once (correctness only, no timings)"
cargo bench -p amrpc-core --bench machine -- --test

log "the demo runs"
cargo run -q -p amrpc-core --example demo >/dev/null

log "benchmark suite, quick mode: counts and correctness only, never timings"
cargo run -q -p amrpc-bench -- --quick

if [ -z "${QUICK:-}" ] && [ -z "${AMRPC_SKIP_WEB:-}" ]; then
  # installs Chromium, chromedriver, wasm-bindgen-cli (the Cargo.lock version) and wasm-pack when missing
  log "browser client: wasm-bindgen tests in headless Chromium against a real server"
  scripts/web/browser.sh
  log "npm package: Node tests from the packed tarball"
  scripts/web/node.sh
  log "web page: two browsers, playwright-core"
  scripts/web/page.sh
  log "benchmark suite, JS figures (quick: correctness only): the npm package in Node and Chromium beside a raw WebSocket echo"
  cargo run -q -p amrpc-bench -- node --quick --json target/bench/node-quick.json
  cargo run -q -p amrpc-bench -- browser --quick --json target/bench/browser-quick.json
fi

log "nats-server with JetStream (the NATS bridge's tests start their own, one per test)"
if ! command -v nats-server >/dev/null 2>&1; then
  apt-get update -qq
  DEBIAN_FRONTEND=noninteractive apt-get install -y -qq nats-server >/dev/null
fi
nats-server --version

log "benchmark suite, NATS hop (quick: one clock message per worker change, every op and fan-out right)"
cargo run -q -p amrpc-bench -- nats --quick --json target/bench/nats-quick.json

log "tests: upstream suites, vector replay, property tests, RPC suites, NATS bridge, doctests"
cargo test --workspace --lib --tests --examples
cargo test --workspace --doc
