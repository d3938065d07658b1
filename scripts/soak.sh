#!/usr/bin/env bash
# The full fault-injection soak (issue 12, must-show 1): 1,000 fault cycles (cut, cut + refuse,
# delay, half-open, stalls) through a proxy between 10 clients and a worker, with mutations in
# flight; asserts that no mutation ran twice, that every call a client saw succeed ran, and that
# every mirror converges; prints the figures (cycles, faults, mutations, retries, reconnects,
# time). A few minutes in release on 2 cores. CI runs the same test with 60 cycles (the default).
#   scripts/soak.sh                         AMRPC_SOAK_CYCLES=200 AMRPC_SOAK_SEED=7 scripts/soak.sh
# Equivalent to:
#   AMRPC_SOAK_CYCLES=1000 cargo test --release -p amrpc-server --test soak -- --nocapture
set -euo pipefail
cd "$(dirname "$0")/.."
export AMRPC_SOAK_CYCLES="${AMRPC_SOAK_CYCLES:-1000}"
exec cargo test --release -p amrpc-server --test soak -- --nocapture
