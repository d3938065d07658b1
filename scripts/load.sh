#!/usr/bin/env bash
# The load run (issue 12): 10,000 concurrent WebSocket clients on one server on this machine —
# the server in a child process, the clients in amrpc-bench's own process, loopback only. Checks
# that every client handshakes, that every mirror converges to the worker's clock after a burst
# of 1000 worker mutations, that a probe client connecting meanwhile gets its round trips through,
# that no session is lost and the worker has 0 errors (exit 1 otherwise); records, never asserts,
# the timings: time to connect all, server RSS before/after and per session, fan-out p50/p99/max,
# convergence time, the probe's connect time and round-trip p50/p99/max, the load average.
#
# Usage: scripts/load.sh                       (10,000 clients, 100 fan-out samples of each kind)
#        CLIENTS=5000 MUTATIONS=50 JSON=docs/bench/load.json scripts/load.sh
#        scripts/load.sh --burst 5000 --max-load 0.7   (other amrpc-bench options: --gap-ms,
#            --connect-concurrency, --probe-ms, --server-threads; --max-load waits, up to
#            --load-wait s, for a quiet machine first)
# Figures: printed, and written as JSON to $JSON (default target/bench/load.json).
# Takes 1.5 to 2.5 minutes on 2 cores, plus the release build (minutes, when not built yet).
#
# Each client and each session holds a socket: both processes need more than N descriptors.
# amrpc-bench raises its soft limit to the hard limit itself (rlimit), and the child server
# inherits it; this script raises the soft limit too, so that a hard limit below N fails here,
# with a clear message, rather than as refused connections. 10,000 clients also use about 20,000
# of the 28,000 ephemeral ports (net.ipv4.ip_local_port_range).
set -euo pipefail
ROOT="$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)"
cd "$ROOT"

CLIENTS="${CLIENTS:-10000}"
MUTATIONS="${MUTATIONS:-100}"
JSON="${JSON:-target/bench/load.json}"
NEED=$((CLIENTS + CLIENTS / 20 + 256))
hard="$(ulimit -Hn)"
if [ "$hard" != unlimited ] && [ "$hard" -lt "$NEED" ]; then
  echo "the hard fd limit is $hard; $CLIENTS clients need about $NEED (raise it: ulimit -Hn, limits.conf)" >&2
  exit 1
fi
ulimit -n "$hard"

uptime
cargo build --release -p amrpc-bench
status=0
target/release/amrpc-bench load --clients "$CLIENTS" --mutations "$MUTATIONS" --json "$JSON" "$@" ||
  status=$?
uptime
exit "$status"
