#!/usr/bin/env bash
# Sync-run throughput and latency of the platform vs the reference ceiling (a bare DRF view making the
# same upstream call and inserting one row), side by side, on SQLite and on PostgreSQL: one table per
# database. The platform runs under gunicorn with 2 workers and the repo's gunicorn.conf.py (the
# configured serving); the ceiling under plain `gunicorn -w 2` (sync), inserting into the same kind of
# database. Loaded with `hey` on loopback; ceiling and platform alternate at each load level.
# Per table: req/s at c8, p50 at c1, non-200 answers, SQL statements per sync run on a warm worker
# (bench/sql_statements.py, in process) and the RSS of each gunicorn worker after the load.
# Usage: bench/run.sh [SECONDS=15]   (BENCH_DATABASES="sqlite postgres" selects the tables)
# Needs: the .venv (make deps), Debian's `hey`, ../shared/bench, PostgreSQL on 127.0.0.1:5432 (postgres,
# trust): a database of its own is created for the platform and one for the ceiling, dropped at the end.
source "$(dirname "$0")/lib.sh"
bench_init
secs=${1:-15}
up_port=18300; key=bench-upstream-key-1
upstream=http://127.0.0.1:$up_port/
start_upstream $up_port $key

bench_database() {  # label platform_db_url ceiling_db app_port ceiling_port
  local label=$1 app_port=$4 ceil_port=$5
  platform_env "$2"
  seed "$upstream" $key
  local statements
  statements=$("$py" bench/sql_statements.py "$app_id" "$access_key")
  start_ceiling "$ceil_port" "$3" "$upstream" $key
  start_platform "$app_port"
  local ours="http://127.0.0.1:$app_port/apps/$app_id/v1/runs" ceiling="http://127.0.0.1:$ceil_port/"
  local auth=(-H "Authorization: Bearer $access_key")
  check_run "$ours" "${auth[@]}"
  warm "$ceiling"; warm "$ours" "${auth[@]}"
  load_c1 "$label-ceiling" "$ceiling"; load_c1 "$label-platform" "$ours" "${auth[@]}"
  load_c8 "$label-ceiling" "$ceiling"; load_c8 "$label-platform" "$ours" "${auth[@]}"
  local rss_p rss_c
  rss_p=$(worker_rss "$platform_pid"); rss_c=$(worker_rss "$ceiling_pid")
  stop "$platform_pid"; stop "$ceiling_pid"

  local f=$work/$label c_rps p_rps c_p50 p_p50
  c_rps=$(rps "$f-ceiling-c8.txt"); p_rps=$(rps "$f-platform-c8.txt")
  c_p50=$(p50 "$f-ceiling-c1.txt"); p_p50=$(p50 "$f-platform-c1.txt")
  {
    printf '\n%-40s %10s %10s %8s\n' "sync run, $label (gunicorn -w 2)" ceiling platform ratio
    printf '%-40s %10s %10s %8s\n' "req/s at concurrency 8" "$c_rps" "$p_rps" "$(pct "$p_rps" "$c_rps")"
    printf '%-40s %10s %10s %8s\n' "p50 ms at concurrency 1" "$c_p50" "$p_p50" "$(times "$p_p50" "$c_p50")"
    printf '%-40s %10s %10s\n' "non-200 answers (c1 + c8)" \
      $(($(errors "$f-ceiling-c1.txt") + $(errors "$f-ceiling-c8.txt"))) \
      $(($(errors "$f-platform-c1.txt") + $(errors "$f-platform-c8.txt")))
    printf '%-40s %10s %10s\n' "SQL statements per sync run (warm)" 1 "$statements"
    printf '%-40s %10s %10s\n' "RSS MB per worker after the load" "$rss_c" "$rss_p"
  } >> "$work/tables.txt"
}

for database in ${BENCH_DATABASES:-sqlite postgres}; do
  case $database in
    sqlite) bench_database SQLite "sqlite:///$work/platform.sqlite3" "$work/ceiling.sqlite3" 18301 18302 ;;
    postgres)
      pg_create ceiling; ceiling_db=$pg_url
      # Made here: the ceiling's two workers would race on its CREATE TABLE IF NOT EXISTS.
      psql -q "$ceiling_db" -c "CREATE TABLE run (id BIGSERIAL PRIMARY KEY, body TEXT)"
      pg_create platform
      bench_database PostgreSQL "$pg_url" "$ceiling_db" 18303 18304 ;;
    *) echo "unknown database $database" >&2; exit 2 ;;
  esac
done
cat "$work/tables.txt"
printf 'gunicorn.conf.py: %s\n' "$("$py" -c 'import runpy; c = runpy.run_path("gunicorn.conf.py"); print("worker_class", c.get("worker_class", "sync"), "threads", c.get("threads", 1))')"
printf 'budget (SPEC 11): >= 70%% of the ceiling req/s at c8 (stretch 85%%), p50 at c1 <= 1.5x, <= 5 statements\n'
