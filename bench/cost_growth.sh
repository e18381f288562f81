#!/usr/bin/env bash
# Cost growth of the Home screen: bff's req/s and p99 at first = 10, 20, 50, 100, on the small
# and the medium dataset, through the peers' bench-query (wrk, same pinning as `make bench`).
# Run `make bench` once before (it prepares .tmp/peers, its Postgres and bff_bench).
#
#   ./bench/cost_growth.sh            # writes docs/cost-growth-rps.svg, docs/cost-growth-p99.svg
set -euo pipefail
cd "$(dirname "$0")/.."
ROOT="$PWD"
WORK="$ROOT/.tmp/peers"
[ -d "$WORK" ] || { echo "run make bench first (it prepares $WORK)" >&2; exit 1; }
cd "$WORK"
. ./env.sh
. "$ROOT/bench/bff_server.sh"
deps/up
psql_() { psql -h 127.0.0.1 -p "$PG_PORT" -U postgres -tAc "$1" postgres; }
PORT="${BFF_PORT:-18011}"
TOKENS="$WORK/.run/bff-tokens.txt"
CONCURRENCY="${CONCURRENCY:-16}"
STAMP="cost_growth $(date -u +%Y%m%dT%H%M%S)"
mkdir -p .run/logs
for size in small medium; do
  db_name=bff_bench; [ "$size" = small ] && db_name=bff_bench_small
  [ "$(psql_ "SELECT 1 FROM pg_database WHERE datname = '$db_name'")" = 1 ] || psql_ "CREATE DATABASE $db_name"
  db="postgresql://postgres@127.0.0.1:$PG_PORT/$db_name"
  DATABASE_URL="$db" "$ROOT/.venv/bin/bff" seed --size "$size"
  bff_start "$db" "$PORT" "$TOKENS"
  trap bff_stop EXIT
  viewers=10000; [ "$size" = small ] && viewers=1000
  for first in 10 20 50 100; do
    op="$WORK/.run/home-first-$first.json"
    "$ROOT/.venv/bin/python" -c "import json,sys; o=json.load(open('ops/home-relay.json')); o['variables']['first']=$first; json.dump(o, open('$op','w'))"
    DATABASE_URL="$db" ./bench-query bff "http://127.0.0.1:$PORT/graphql" "$op" "tokens:$TOKENS" --concurrency "$CONCURRENCY" \
      --viewers "$viewers" --server-pid "$BFF_PID" --note "$STAMP dataset=$size first=$first"
  done
  bff_stop
  trap - EXIT
done
"$ROOT/.venv/bin/python" "$ROOT/bench/plot_cost_growth.py" "$WORK/results/query.jsonl" "$STAMP" "$ROOT/docs"
