#!/usr/bin/env bash
# PostgreSQL connection options side by side: the sync run under gunicorn (2 workers, ./gunicorn.conf.py)
# with each option set, beside the ceiling inserting into PostgreSQL. All servers start at once and are
# loaded in turn, round after round; the table shows medians (docs/decisions.md "PostgreSQL connections").
# Usage: bench/pg_options.sh [SECONDS=10] [ROUNDS=3]
# PG_VARIANTS overrides the variants: "label|VAR=value VAR=value;label|...".
source "$(dirname "$0")/lib.sh"
bench_init
secs=${1:-10}; rounds=${2:-3}
C1_REQUESTS=${C1_REQUESTS:-300}
up_port=18320; key=bench-upstream-key-1; upstream=http://127.0.0.1:$up_port/
start_upstream $up_port $key

off="DATABASE_POOL=false CONN_HEALTH_CHECKS=false DATABASE_PREPARE_THRESHOLD="
default_variants="persistent (CONN_MAX_AGE=60) + health checks|$off CONN_HEALTH_CHECKS=true"
default_variants+=";persistent, no health checks|$off"
default_variants+=";pool + health checks|$off DATABASE_POOL=true CONN_HEALTH_CHECKS=true"
default_variants+=";pool, no health checks|$off DATABASE_POOL=true"
default_variants+=";persistent, no checks, prepared (threshold 5)|$off DATABASE_PREPARE_THRESHOLD=5"
default_variants+=";pool, no checks, prepared (threshold 5)|$off DATABASE_POOL=true DATABASE_PREPARE_THRESHOLD=5"
IFS=';' read -r -a variants <<< "${PG_VARIANTS:-$default_variants}"

pg_create ceiling; ceiling_db=$pg_url
psql -q "$ceiling_db" -c "CREATE TABLE run (id BIGSERIAL PRIMARY KEY, body TEXT)"
pg_create platform
platform_env "$pg_url"
seed "$upstream" $key
start_ceiling 18321 "$ceiling_db" "$upstream" $key
target "ceiling (PostgreSQL insert, persistent)" "http://127.0.0.1:18321/" "$ceiling_pid"
port=18322
for variant in "${variants[@]}"; do
  PLATFORM_ENV=${variant#*|} start_platform $port
  target "${variant%%|*}" "http://127.0.0.1:$port/apps/$app_id/v1/runs" "$platform_pid" "Authorization: Bearer $access_key"
  port=$((port + 1))
done
compare "$rounds"
compare_table "sync run on PostgreSQL, gunicorn -w 2"
