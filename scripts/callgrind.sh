#!/usr/bin/env bash
# Instruction counts per op (issue 13): figures a noisy, shared machine cannot move. Each workload
# runs under `valgrind --tool=callgrind` twice, with N1 and N2 ops; (Ir(N2) - Ir(N1)) / (N2 - N1)
# is the cost of one op with setup and teardown cancelled.
#
#   machine   upstream's op on the local worker machine (`amrpc-bench instr machine`)
#   sessions  the same op by a client through the core's sans-IO Connection and ServerSession,
#             frames encoded and decoded, no sockets (`amrpc-bench instr sessions`)
#   socket    the whole op over a real loopback WebSocket, client, server and worker in one
#             current-thread process (`amrpc-bench ops --only "amrpc WS (direct), 1 thread"`);
#             includes tokio and the syscalls' user-space side, so it moves by ~0.5 % run to run;
#             the suite runs N ops three times (warm-up, timed, allocation count), so the
#             difference is divided by 3 (N2 - N1)
#
# Usage: scripts/callgrind.sh                 (all three)
#        scripts/callgrind.sh machine sessions
#        TOP=15 scripts/callgrind.sh sessions (also the 15 costliest functions, inclusive, of N2)
#        BIN=/tmp/amrpc-bench-before scripts/callgrind.sh sessions (another build, e.g. before a change)
# Output: one line per workload, `<name> <Ir/op> Ir/op (N1=…, N2=…)`; the callgrind files stay in
# target/callgrind/ for callgrind_annotate.
set -euo pipefail
ROOT="$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)"
cd "$ROOT"

command -v valgrind >/dev/null || { echo "callgrind.sh: valgrind is not installed (apt-get install valgrind)" >&2; exit 2; }
WORKLOADS=("$@")
[ ${#WORKLOADS[@]} -gt 0 ] || WORKLOADS=(machine sessions socket)
N1="${N1:-1000}"
N2="${N2:-3000}"
TOP="${TOP:-0}"
OUT=target/callgrind
mkdir -p "$OUT"

if [ -z "${BIN:-}" ]; then
  cargo build -q --release -p amrpc-bench
  BIN=target/release/amrpc-bench
fi

# total instructions of one run: `ir <name> <n>`
ir() {
  local name="$1" n="$2" file="$OUT/$1.$2.out"
  local args
  case "$name" in
    machine | sessions) args=(instr "$name" -n "$n") ;;
    socket) args=(ops --only "amrpc WS (direct), 1 thread" --runs 1 -n "$n" --svg-dir "$OUT" --json "$OUT/socket.$n.json") ;;
    *) echo "callgrind.sh: unknown workload $name (machine, sessions, socket)" >&2; exit 2 ;;
  esac
  valgrind --tool=callgrind --callgrind-out-file="$file" "$BIN" "${args[@]}" >/dev/null 2>"$OUT/$name.$n.log" || {
    echo "callgrind.sh: $name -n $n failed:" >&2; tail -20 "$OUT/$name.$n.log" >&2; exit 1
  }
  awk '/^summary:/ { print $2 }' "$file"
}

for w in "${WORKLOADS[@]}"; do
  a=$(ir "$w" "$N1")
  b=$(ir "$w" "$N2")
  runs=1
  [ "$w" = socket ] && runs=3
  awk -v w="$w" -v a="$a" -v b="$b" -v n1="$N1" -v n2="$N2" -v r="$runs" \
    'BEGIN { printf "%-9s %.0f Ir/op (N1=%d: %d, N2=%d: %d)\n", w, (b - a) / (r * (n2 - n1)), n1, a, n2, b }'
  if [ "$TOP" -gt 0 ]; then
    callgrind_annotate --inclusive=yes "$OUT/$w.$N2.out" 2>/dev/null | sed -n "1,$((TOP + 25))p" | grep -E '^ *[0-9,]+ ' | head -"$TOP"
  fi
done
