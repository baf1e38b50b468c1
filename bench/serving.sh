#!/usr/bin/env bash
# gunicorn worker classes side by side (docs/decisions.md "Serving"), on SQLite, 2 workers each:
# 1. the sync run: req/s at c8 and p50 at c1 per worker class, beside the ceiling (plain sync -w 2);
# 2. SSE: S streamed runs (`stream: true`) held open by a slow upstream (STREAM_SECONDS), and meanwhile
#    sync runs at c1 for a few seconds: how many answered, their p50 and slowest, and whether every
#    stream ended with run.completed.
# Usage: bench/serving.sh [SECONDS=10] [ROUNDS=3]
# SERVING_VARIANTS overrides the classes: "label|gunicorn options;label|...".
source "$(dirname "$0")/lib.sh"
bench_init
secs=${1:-10}; rounds=${2:-3}
C1_REQUESTS=${C1_REQUESTS:-300}
stream_seconds=${STREAM_SECONDS:-6}
up_port=18340; slow_port=18341; key=bench-upstream-key-1
start_upstream $up_port $key
"$py" bench/slow_upstream.py $slow_port $key "$stream_seconds" & pids+=($!)
wait_http "http://127.0.0.1:$slow_port/__stats"

IFS=';' read -r -a variants <<< "${SERVING_VARIANTS:-sync|-k sync;gthread 2 x 4 threads|-k gthread --threads 4;gthread 2 x 8 threads|-k gthread --threads 8}"

platform_env "sqlite:///$work/platform.sqlite3"
seed "http://127.0.0.1:$up_port/" $key
read -r slow_app slow_key < <("$py" bench/seed_bench.py "http://127.0.0.1:$slow_port/" $key slow)
start_ceiling 18342 "$work/ceiling.sqlite3" "http://127.0.0.1:$up_port/" $key
target "ceiling (gunicorn -w 2, sync)" "http://127.0.0.1:18342/" "$ceiling_pid"
port=18343; ports=()
for variant in "${variants[@]}"; do
  # shellcheck disable=SC2086 # the options are words
  start_platform $port ${variant#*|}
  target "${variant%%|*}" "http://127.0.0.1:$port/apps/$app_id/v1/runs" "$platform_pid" "Authorization: Bearer $access_key"
  ports+=("$port"); port=$((port + 1))
done
compare "$rounds"
compare_table "sync run on SQLite, gunicorn -w 2, by worker class"

# SSE: streams held open while sync runs are measured.
sse_row() {  # label port streams
  local label=$1 port=$2 n=$3 i ok
  local url="http://127.0.0.1:$port/apps/$slow_app/v1/runs"
  local spids=()
  for i in $(seq "$n"); do
    curl -sN -m $((stream_seconds + 30)) -X POST -H "Authorization: Bearer $slow_key" -H 'Content-Type: application/json' \
      -d '{"input": {}, "stream": true}' "$url" > "$work/sse-$port-$n-$i.txt" 2>/dev/null &
    spids+=($!)
  done
  sleep 0.5
  hey -z 4s -c 1 -t 30 -m POST -H "Authorization: Bearer $access_key" -T application/json -d "$body" \
    "http://127.0.0.1:$port/apps/$app_id/v1/runs" > "$work/sse-$port-$n-sync.txt"
  for i in "${spids[@]}"; do wait "$i" || true; done
  ok=0
  for i in $(seq "$n"); do grep -q 'event: run.completed' "$work/sse-$port-$n-$i.txt" && ok=$((ok + 1)); done
  local f=$work/sse-$port-$n-sync.txt
  printf '%-28s %8s %10s %10s %11s %8s %11s\n' "$label" "$n" \
    "$(grep -E '^\s+\[200\]' "$f" | awk '{print $2}' | head -1 || echo 0)" "$(p50 "$f")" \
    "$(grep 'Slowest' "$f" | awk '{printf "%.0f", $2*1000}')" "$(errors "$f")" "$ok/$n"
}
printf '\n%-28s %8s %10s %10s %11s %8s %11s\n' "SSE: ${stream_seconds}s streams open" streams "sync 200s" "p50 ms" "slowest ms" non200 "streams ok"
i=0
for variant in "${variants[@]}"; do
  for n in 0 4 8; do sse_row "${variant%%|*}" "${ports[$i]}" "$n"; done
  i=$((i + 1))
done
printf '(sync runs at c1 for 4 s while the streams are open; 2 workers each)\n'
