#!/usr/bin/env bash
# Sync-run throughput and latency of the platform vs the reference ceiling (a bare DRF view making the
# same upstream call and inserting one row), side by side in one run, under gunicorn (2 sync workers),
# loaded with `hey` on loopback. Prints a table with ratios. Usage: bench/run.sh [SECONDS]
# Needs: make deps (the .venv), Debian's `hey`, and ../shared/bench (upstream.py, ceiling.py).
set -euo pipefail
cd "$(dirname "$0")/.."
here=$(pwd)
secs=${1:-15}
shared=${SHARED_BENCH:-$here/../shared/bench}
py=$here/.venv/bin/python
gunicorn=$here/.venv/bin/gunicorn
command -v hey >/dev/null || { echo "hey is missing: apt-get install hey" >&2; exit 1; }
[ -f "$shared/upstream.py" ] || { echo "reference bench not found at $shared" >&2; exit 1; }
work=$(mktemp -d /dev/shm/platform-bench.XXXX)
up_port=18181; app_port=18182; ceil_port=18183; key=bench-upstream-key-1
pids=()
cleanup() { for p in "${pids[@]}"; do kill "$p" 2>/dev/null || true; done; wait 2>/dev/null || true; rm -rf "$work"; }
trap cleanup EXIT

python3 "$shared/upstream.py" $up_port $key & pids+=($!)

export DEBUG=false SECURE_SSL_REDIRECT=false ALLOW_PRIVATE_NETWORK_TARGETS=true LOG_LEVEL=WARNING
export SECRET_KEY=bench-secret-key-0123456789abcdefghijklmnopqrstuvwxyz0123456789
export FERNET_KEYS=$($py -c "from cryptography.fernet import Fernet; print(Fernet.generate_key().decode())")
export CREDENTIALS_API_TOKEN=bench-credentials-token-0123456789abcdef
export DATABASE_URL=sqlite:///$work/platform.sqlite3
# Rate limits counted as in production (the embedded cache, var/cache.sqlite3), never reached: one key sends
# far more than its 600 runs a minute here.
export RATE_LIMIT_RUNS=1000000000/minute
$py manage.py migrate -v 0
read -r app_id access_key < <($py bench/seed_bench.py "http://127.0.0.1:$up_port/" $key)

$gunicorn -w 2 -b 127.0.0.1:$app_port config.wsgi:application --log-level warning & pids+=($!)
CEILING_DB=1 CEILING_SQLITE=$work/ceiling.sqlite3 CEILING_UPSTREAM=http://127.0.0.1:$up_port/ CEILING_KEY=$key \
  $gunicorn -w 2 -b 127.0.0.1:$ceil_port --chdir "$shared" ceiling:application --log-level warning & pids+=($!)
for port in $app_port $ceil_port; do
  for _ in $(seq 50); do curl -s -o /dev/null "http://127.0.0.1:$port/" && break; sleep 0.2; done
done

ours_url="http://127.0.0.1:$app_port/apps/$app_id/v1/runs"
body='{"input": {}}'
hdr_auth="Authorization: Bearer $access_key"
curl -sf -X POST -H "$hdr_auth" -H 'Content-Type: application/json' -d "$body" "$ours_url" | grep -q '"completed"' \
  || { echo "the benchmark run did not complete" >&2; exit 1; }

measure() {  # name url [auth]
  local name=$1 url=$2; shift 2
  hey -n 200 -c 4 -m POST "$@" -T application/json -d "$body" "$url" >/dev/null
  hey -n 500 -c 1 -m POST "$@" -T application/json -d "$body" "$url" > "$work/$name-c1.txt"
  hey -z "${secs}s" -c 8 -m POST "$@" -T application/json -d "$body" "$url" > "$work/$name-c8.txt"
}
measure ceiling "http://127.0.0.1:$ceil_port/"
measure platform "$ours_url" -H "$hdr_auth"

rps() { grep 'Requests/sec' "$1" | awk '{print $2}'; }
p50() { grep ' 50% in' "$1" | awk '{printf "%.2f", $3*1000}'; }
errors() { grep -A20 'Status code distribution' "$1" | grep -v '\[200\]' | grep -E '^\s+\[' | awk '{s+=$2} END {print s+0}'; }
c_rps=$(rps "$work/ceiling-c8.txt"); p_rps=$(rps "$work/platform-c8.txt")
c_p50=$(p50 "$work/ceiling-c1.txt"); p_p50=$(p50 "$work/platform-c1.txt")
printf '\n%-34s %12s %12s %8s\n' "sync run, 1 HTTP node (gunicorn -w 2)" ceiling platform ratio
printf '%-34s %12.1f %12.1f %7.0f%%\n' "req/s at concurrency 8" "$c_rps" "$p_rps" "$(echo "100*$p_rps/$c_rps" | bc -l)"
printf '%-34s %12s %12s %8s\n' "p50 ms at concurrency 1" "$c_p50" "$p_p50" ""
printf '%-34s %12s %12s\n' "non-200 answers (c8)" "$(errors "$work/ceiling-c8.txt")" "$(errors "$work/platform-c8.txt")"
printf 'budget (SPEC 11): >= 300 req/s at c8, p50 <= 5 ms at c1, >= 70%% of the ceiling\n'
