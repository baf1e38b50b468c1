#!/usr/bin/env bash
# Memory soak and start-up time (SPEC 11: a web worker stays under 150 MB RSS after 10,000 runs, no
# growth; first answer within 3 s of start). gunicorn with 2 workers and ./gunicorn.conf.py.
# 1. Start-up: from launching gunicorn to the first 200 of /healthz and to the first completed sync run,
#    STARTS times (a fresh server each time).
# 2. Soak: RUNS_PER_WORKER x 2 sync runs at c4 in batches of 2 x 1,000; the VmRSS of each worker after
#    each batch (the two workers share the load through the kernel's accept queue, so per worker is ~).
# Usage: bench/soak.sh [RUNS_PER_WORKER=10000]   (SOAK_DATABASE=postgres soaks on PostgreSQL; GUNICORN_OPTS adds
# gunicorn options, e.g. --preload; STARTS=3 start-ups)
source "$(dirname "$0")/lib.sh"
bench_init
per_worker=${1:-10000}
up_port=18360; app_port=18361; key=bench-upstream-key-1
start_upstream $up_port $key
if [ "${SOAK_DATABASE:-sqlite}" = postgres ]; then pg_create soak; db=$pg_url; else db=sqlite:///$work/platform.sqlite3; fi
platform_env "$db"
seed "http://127.0.0.1:$up_port/" $key
url="http://127.0.0.1:$app_port/apps/$app_id/v1/runs"
auth="Authorization: Bearer $access_key"
now_ms() { date +%s%3N; }

printf '\n%-6s %22s %26s\n' start "first /healthz 200 ms" "first completed run ms"
for s in $(seq "${STARTS:-3}"); do
  t0=$(now_ms)
  # shellcheck disable=SC2086 # GUNICORN_OPTS are words, e.g. --preload
  env ${PLATFORM_ENV:-} "$gunicorn" -w 2 ${GUNICORN_OPTS:-} -b "127.0.0.1:$app_port" config.wsgi:application --log-level warning &
  master=$!; pids+=("$master")
  until curl -sf -o /dev/null "http://127.0.0.1:$app_port/healthz"; do sleep 0.02; done
  t1=$(now_ms)
  until curl -sf -X POST -H "$auth" -H 'Content-Type: application/json' -d "$body" "$url" 2>/dev/null | grep -q '"completed"'; do
    sleep 0.02
  done
  t2=$(now_ms)
  printf '%-6s %22s %26s\n' "$s" $((t1 - t0)) $((t2 - t0))
  [ "$s" = "${STARTS:-3}" ] || stop "$master"
done

printf '\n%-14s %16s %12s %10s %8s\n' "runs (total)" "~runs per worker" "RSS MB" "req/s" non200
printf '%-14s %16s %12s %10s %8s\n' 0 0 "$(worker_rss "$master")" - -
batches=$((per_worker / 1000))
for b in $(seq "$batches"); do
  hey -n 2000 -c 4 -m POST -H "$auth" -T application/json -d "$body" "$url" > "$work/soak-$b.txt"
  printf '%-14s %16s %12s %10s %8s\n' $((b * 2000)) $((b * 1000)) "$(worker_rss "$master")" \
    "$(rps "$work/soak-$b.txt")" "$(errors "$work/soak-$b.txt")"
done
printf 'workers: %s (pids)  budget (SPEC 11): < 150 MB per worker, flat; first answer within 3 s\n' "$(worker_pids "$master")"
