#!/usr/bin/env bash
# CPU instructions per sync run, platform vs the reference ceiling, counted by valgrind's callgrind in
# process (Django's handler, no HTTP server): repeatable on a busy machine, where req/s and latency are
# not. Counts only the measured requests (callgrind_control toggles collection after the warm-up).
# Usage: bench/instructions.sh [N=50]. Needs valgrind (Debian), the .venv and ../shared/bench.
set -euo pipefail
cd "$(dirname "$0")/.."
here=$(pwd)
n=${1:-50}
shared=${SHARED_BENCH:-$here/../shared/bench}
py=$here/.venv/bin/python
command -v valgrind >/dev/null || { echo "valgrind is missing: apt-get install valgrind" >&2; exit 1; }
work=$(mktemp -d /dev/shm/platform-instr.XXXX)
up_port=$(python3 -c 'import socket; s=socket.socket(); s.bind(("127.0.0.1", 0)); print(s.getsockname()[1])'); key=k-1
python3 "$shared/upstream.py" $up_port $key & up=$!
trap 'kill $up 2>/dev/null || true; rm -rf "$work"' EXIT
sleep 0.3
count() {  # file -> instructions per run
  grep -E '^totals:' "$1" | head -1 | awk -v n="$n" '{printf "%.0f", $2 / n}'
}
CEILING_DB=1 CEILING_SQLITE=$work/ceiling.sqlite3 CEILING_UPSTREAM=http://127.0.0.1:$up_port/ CEILING_KEY=$key SHARED_BENCH=$shared \
  valgrind --tool=callgrind --instr-atstart=no --callgrind-out-file="$work/ceiling.out" "$py" bench/ceiling_inprocess.py "$n" >/dev/null 2>&1
SHARED_BENCH=$shared BENCH_CALLGRIND=1 \
  valgrind --tool=callgrind --instr-atstart=no --callgrind-out-file="$work/platform.out" "$py" bench/inprocess.py "$n" >/dev/null 2>&1
c=$(count "$work/ceiling.out"); p=$(count "$work/platform.out")
printf '\n%-40s %14s %14s %8s\n' "sync run, 1 HTTP node, in process (n=$n)" ceiling platform ratio
printf '%-40s %14s %14s %7.2fx\n' "instructions per run (callgrind)" "$c" "$p" "$(echo "$p/$c" | bc -l)"
