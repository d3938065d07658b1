#!/usr/bin/env bash
# The npm package `amrpc` under Node: pack it, install the tarball (not the source folder) with
# `ws` into a copy of tests/node, and run `node --test` against the test servers.
#
#   scripts/web/node.sh [node --test args, e.g. a file name]
#
# Setup (tools, wasm-pack builds, servers) is scripts/web/setup.sh; the package is assembled by
# scripts/web/pack.sh. The copy lives in target/node-tests (node_modules kept between runs, the
# package itself reinstalled every time). node --test's summary is the last output; the exit code
# is non-zero on any failure.
set -euo pipefail
ROOT="$(cd "$(dirname "${BASH_SOURCE[0]}")/../.." && pwd)"
. "$ROOT/scripts/web/setup.sh"

TARBALL=$("$ROOT/scripts/web/pack.sh" | tail -n 1)
echo "package: $TARBALL"
# out_of_the_box.test.mjs installs it again into an empty project
export AMRPC_TARBALL="$TARBALL"
# types.test.mjs runs `amrpc types` against the test server (built by setup.sh)
export AMRPC_BIN="$ROOT/target/release/amrpc"

WORK="$ROOT/target/node-tests"
mkdir -p "$WORK"
# the tests as committed (stale copies removed; node_modules kept as a cache)
find "$WORK" -mindepth 1 -maxdepth 1 ! -name node_modules -exec rm -rf {} +
(cd "$ROOT/tests/node" && tar --exclude=./node_modules --exclude=./package-lock.json -cf - .) | (cd "$WORK" && tar -xf -)
rm -rf "$WORK/node_modules/amrpc"
(cd "$WORK" && timeout 300 npm install --no-audit --no-fund --loglevel=error "$TARBALL" >/dev/null)

cd "$WORK"
files=("$@")
[ ${#files[@]} -gt 0 ] || files=(*.test.mjs)
# one file at a time: the files share the server's `test` worker (and Kick drops every session)
timeout 600 node --test --test-concurrency=1 --test-timeout=30000 "${files[@]}"
