# Shared pieces of the shell benchmarks (run.sh, pg_options.sh, serving.sh, soak.sh). Source it, then call
# bench_init. Everything a benchmark starts (servers, a temp dir in /dev/shm, PostgreSQL databases named
# bench_rcp_<pid>_*) is its own and is stopped, removed or dropped on exit. Ports: 18300-18399.
set -euo pipefail

bench_init() {
  cd "$(dirname "${BASH_SOURCE[0]}")/.."
  here=$(pwd)
  venv=${VENV:-$here/.venv}
  # A git worktree has no .venv of its own: use the main checkout's.
  [ -x "$venv/bin/python" ] || venv=$(cd "$(dirname "$(git rev-parse --git-common-dir)")" && pwd)/.venv
  py=$venv/bin/python
  gunicorn=$venv/bin/gunicorn
  shared=${SHARED_BENCH:-$here/../shared/bench}
  [ -f "$shared/upstream.py" ] || shared=$here/../../shared/bench
  [ -f "$shared/upstream.py" ] || { echo "reference bench not found (set SHARED_BENCH)" >&2; exit 1; }
  command -v hey >/dev/null || { echo "hey is missing: apt-get install hey" >&2; exit 1; }
  work=$(mktemp -d /dev/shm/platform-bench.XXXX)
  pids=()
  pg_dbs=()
  pg_admin=${BENCH_PG_ADMIN:-postgres://postgres@127.0.0.1:5432/postgres}
  pg_base=${pg_admin%/*}
  : > "$work/ceiling.conf.py"  # the ceiling is the reference: plain `gunicorn -w 2` (sync), no project config
  trap bench_cleanup EXIT
}

bench_cleanup() {
  local p
  for p in "${pids[@]}"; do kill "$p" 2>/dev/null || true; done
  for p in "${pids[@]}"; do wait "$p" 2>/dev/null || true; done
  for p in "${pg_dbs[@]}"; do psql -q "$pg_admin" -c "DROP DATABASE IF EXISTS $p WITH (FORCE)" >/dev/null 2>&1 || true; done
  rm -rf "$work"
}

stop() {  # pid: stop one server this script started
  kill "$1" 2>/dev/null || true
  wait "$1" 2>/dev/null || true
}

pg_create() {  # suffix -> sets pg_url to a new database of this run (not in $(...): the list must stay here)
  local name="bench_rcp_$$_$1"
  psql -q "$pg_admin" -c "CREATE DATABASE $name" >/dev/null
  pg_dbs+=("$name")
  pg_url=$pg_base/$name
}

platform_env() {  # database URL: the production-like environment of the platform under test
  export DEBUG=false SECURE_SSL_REDIRECT=false ALLOW_PRIVATE_NETWORK_TARGETS=true LOG_LEVEL=WARNING
  export SECRET_KEY=bench-secret-key-0123456789abcdefghijklmnopqrstuvwxyz0123456789
  export FERNET_KEYS=ZGV2LWZlcm5ldC1rZXktbmV2ZXItdXNlLWluLXByb2c=
  export CREDENTIALS_API_TOKEN=bench-credentials-token-0123456789abcdef
  export DATABASE_URL=$1
}

seed() {  # upstream_url key -> sets app_id access_key (migrates DATABASE_URL first)
  "$py" manage.py migrate -v 0
  read -r app_id access_key < <("$py" bench/seed_bench.py "$1" "$2")
}

start_upstream() {  # port key
  python3 "$shared/upstream.py" "$1" "$2" & pids+=($!)
  wait_http "http://127.0.0.1:$1/__stats"
}

start_platform() {  # port [gunicorn options...] -> sets platform_pid (the master). Reads ./gunicorn.conf.py.
  local port=$1; shift
  # PLATFORM_ENV (VAR=value words) sets a variant's environment; `env` execs, so $! is the master.
  env ${PLATFORM_ENV:-} "$gunicorn" -w 2 "$@" -b "127.0.0.1:$port" config.wsgi:application --log-level warning &
  platform_pid=$!
  pids+=("$platform_pid")
  wait_http "http://127.0.0.1:$port/healthz"
}

start_ceiling() {  # port database(sqlite path | postgres URL) upstream_url key -> sets ceiling_pid
  local port=$1 db=$2
  if [[ $db == postgres://* ]]; then export CEILING_PG=$db; else unset CEILING_PG; export CEILING_SQLITE=$db; fi
  CEILING_DB=1 CEILING_UPSTREAM=$3 CEILING_KEY=$4 \
    "$gunicorn" -c "$work/ceiling.conf.py" -w 2 -b "127.0.0.1:$port" --chdir "$shared" ceiling:application \
    --log-level warning & ceiling_pid=$!
  pids+=("$ceiling_pid")
  unset CEILING_PG CEILING_SQLITE
  wait_http "http://127.0.0.1:$port/" -X POST
}

wait_http() {  # url [curl options]: until the server answers anything
  local url=$1; shift
  for _ in $(seq 100); do curl -s -o /dev/null "$@" "$url" && return 0; sleep 0.1; done
  echo "no answer from $url" >&2; return 1
}

body='{"input": {}}'

check_run() {  # url [curl options]: one run completes
  local url=$1; shift
  curl -sf -X POST "$@" -H 'Content-Type: application/json' -d "$body" "$url" | grep -q '"completed"' \
    || { echo "the benchmark run did not complete at $url" >&2; exit 1; }
}

warm() {  # url [hey options]
  local url=$1; shift
  hey -n 200 -c 4 -m POST "$@" -T application/json -d "$body" "$url" >/dev/null
}

load_c1() {  # name url [hey options] -> $work/name-c1.txt
  local name=$1 url=$2; shift 2
  hey -n "${C1_REQUESTS:-500}" -c 1 -m POST "$@" -T application/json -d "$body" "$url" > "$work/$name-c1.txt"
}

load_c8() {  # name url [hey options] -> $work/name-c8.txt, for $secs seconds
  local name=$1 url=$2; shift 2
  hey -z "${secs}s" -c 8 -m POST "$@" -T application/json -d "$body" "$url" > "$work/$name-c8.txt"
}

rps() { grep 'Requests/sec' "$1" | awk '{printf "%.1f", $2}'; }
p50() { grep " 50% in" "$1" | awk '{printf "%.2f", $3*1000}' | grep . || echo -; }
p99() { grep ' 99% in' "$1" | awk '{printf "%.2f", $3*1000}'; }
errors() {  # non-200 answers and transport errors of a hey report
  local bad
  bad=$(sed -n '/Status code distribution/,/^$/p' "$1" | grep -E '^\s+\[' | grep -v '\[200\]' | awk '{s+=$2} END {print s+0}')
  echo $((bad + $(sed -n '/Error distribution/,$p' "$1" | grep -E '^\s+\[' | awk '{s+=$1} END {print s+0}')))
}
pct() { echo "100*$1/$2" | bc -l | xargs printf '%.0f%%'; }
times() { echo "$1/$2" | bc -l | xargs printf '%.2fx'; }

worker_pids() { pgrep -P "$1" | sort -n | xargs; }  # master pid -> its worker pids
worker_rss() {  # master pid -> "a/b" MB, the VmRSS of each worker
  local p out=()
  for p in $(worker_pids "$1"); do out+=("$(awk '/VmRSS/ {printf "%.0f", $2/1024}' "/proc/$p/status")"); done
  (IFS=/; echo "${out[*]}")
}

# Side-by-side comparison of several servers started at once (each idle while another is loaded):
# `target LABEL URL MASTER_PID [hey options]` registers one, `compare ROUNDS` loads each in turn, round after
# round (c1 then c8 of every target per round), `compare_table TITLE` prints medians over the rounds.
t_labels=(); t_urls=(); t_pids=(); t_opts=()
target() { t_labels+=("$1"); t_urls+=("$2"); t_pids+=("$3"); t_opts+=("${4:-}"); }
_hey_opts() { [ -n "$1" ] && printf '%s\n' -H "$1" || true; }
compare() {
  local rounds=$1 i r
  for i in "${!t_labels[@]}"; do
    mapfile -t o < <(_hey_opts "${t_opts[$i]}")
    check_run "${t_urls[$i]}" "${o[@]}"; warm "${t_urls[$i]}" "${o[@]}"
  done
  for r in $(seq "$rounds"); do
    for i in "${!t_labels[@]}"; do
      mapfile -t o < <(_hey_opts "${t_opts[$i]}")
      load_c1 "cmp$i-r$r" "${t_urls[$i]}" "${o[@]}"
      load_c8 "cmp$i-r$r" "${t_urls[$i]}" "${o[@]}"
    done
  done
  for i in "${!t_labels[@]}"; do worker_rss "${t_pids[$i]}" > "$work/cmp$i-rss"; done
  compare_rounds=$rounds
}
median() { sort -g | awk '{a[NR]=$1} END {if (NR%2) print a[(NR+1)/2]; else printf "%.2f\n", (a[NR/2]+a[NR/2+1])/2}'; }
compare_table() {  # title: first target is the reference of the ratios
  local i r base_rps base_p50 rps_m p50_m bad
  printf '\n%-44s %9s %7s %9s %7s %6s %9s\n' "$1" "req/s c8" ratio "p50 c1" ratio non200 "RSS MB"
  for i in "${!t_labels[@]}"; do
    rps_m=$(for r in $(seq "$compare_rounds"); do rps "$work/cmp$i-r$r-c8.txt"; echo; done | median)
    p50_m=$(for r in $(seq "$compare_rounds"); do p50 "$work/cmp$i-r$r-c1.txt"; echo; done | median)
    bad=0
    for r in $(seq "$compare_rounds"); do
      bad=$((bad + $(errors "$work/cmp$i-r$r-c1.txt") + $(errors "$work/cmp$i-r$r-c8.txt")))
    done
    [ "$i" = 0 ] && { base_rps=$rps_m; base_p50=$p50_m; }
    printf '%-44s %9s %7s %9s %7s %6s %9s\n' "${t_labels[$i]}" "$rps_m" "$(pct "$rps_m" "$base_rps")" \
      "$p50_m" "$(times "$p50_m" "$base_p50")" "$bad" "$(cat "$work/cmp$i-rss")"
  done
  printf '(medians of %s interleaved rounds: c1 %s requests, c8 %ss each; ratios against the first row)\n' \
    "$compare_rounds" "${C1_REQUESTS:-500}" "$secs"
}
