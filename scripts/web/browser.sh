#!/usr/bin/env bash
# Issue 5, item 1: amrpc-wasm's wasm-bindgen tests (client-wasm/tests/browser.rs) in headless
# Chromium against a real `amrpc serve-test` server started here (by setup.sh, killed on exit).
# Installs what it needs (see ../../../shared/TOOLCHAIN.md); exits non-zero on any failure and ends
# with the test runner's summary line. Extra arguments go to `cargo test`, e.g.
# `scripts/web/browser.sh --profile wasm-release` runs the tests on the size-optimised build.
set -euo pipefail
ROOT="$(cd "$(dirname "${BASH_SOURCE[0]}")/../.." && pwd)"

# the npm package is not needed here: the tests link the crate directly
export AMRPC_SKIP_PKG=1
# shellcheck source=setup.sh
. "$ROOT/scripts/web/setup.sh"

# the tests read the server URLs at compile time (option_env!); rustc records them as env
# dependencies of the test crate, so cargo rebuilds the test binary whenever a URL changes
export AMRPC_TEST_URL AMRPC_TEST_URL_LOCKED
export CHROMEDRIVER=/usr/bin/chromedriver
# the runner's budget for the whole page (default 20 s); every step inside is bounded too
export WASM_BINDGEN_TEST_TIMEOUT="${WASM_BINDGEN_TEST_TIMEOUT:-180}"

cd "$ROOT"
# webdriver.json (Chromium binary and flags for root) is read from the crate directory
timeout 1200 cargo test -p amrpc-wasm --target wasm32-unknown-unknown --test browser "$@"
