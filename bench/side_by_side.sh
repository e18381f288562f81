#!/usr/bin/env bash
# One command for the Home figures: bff side by side with the peers (naive-strawberry, mercurius)
# in one run, on the same Postgres, the same dataset and the same CPU pinning.
#
#   make bench                         # medium dataset, c=16 and c=64
#   PEERS=/path/to/peers make bench    # another copy of the harness (default ../shared/peers)
#
# The harness is read-only: it is copied to .tmp/peers once (with its own venv and node_modules).
# Its Postgres (15432) holds the peers' ref_medium and bff's own bff_bench, loaded by `bff seed`.
# Results: the harness's markdown tables on stdout and .tmp/peers/results/query.jsonl.
set -euo pipefail
cd "$(dirname "$0")/.."
ROOT="$PWD"
SOURCE="${PEERS:-$ROOT/../shared/peers}"
WORK="$ROOT/.tmp/peers"
TARGETS="${TARGETS:-naive-strawberry mercurius bff}"
BFF_PORT="${BFF_PORT:-18010}"

if [ ! -d "$WORK" ]; then
  mkdir -p "$ROOT/.tmp"
  cp -a "$SOURCE" "$WORK"
fi
cd "$WORK"
command -v wrk >/dev/null || { echo "installing wrk" >&2; apt-get install -y -qq wrk >/dev/null; }
[ -x .venv/bin/python ] || { python3 -m venv .venv && .venv/bin/pip install -q -r requirements.txt; }
[ -d node_modules ] || npm install --silent
. ./env.sh
deps/up
psql_() { psql -h 127.0.0.1 -p "$PG_PORT" -U postgres -tAc "$1" postgres; }
[ "$(psql_ "SELECT 1 FROM pg_database WHERE datname = 'ref_$DATASET'")" = 1 ] || data/seed --size "$DATASET"
[ "$(psql_ "SELECT 1 FROM pg_database WHERE datname = 'bff_bench'")" = 1 ] || psql_ "CREATE DATABASE bff_bench"
BFF_DB="postgresql://postgres@127.0.0.1:$PG_PORT/bff_bench"
DATABASE_URL="$BFF_DB" "$ROOT/.venv/bin/bff" seed --size "$DATASET"
TOKENS="$WORK/.run/bff-tokens.txt"
mkdir -p .run/logs

for target in $TARGETS; do
  if [ "$target" = bff ]; then
    pushd "$ROOT" >/dev/null
    DATABASE_URL="$BFF_DB" LOG_LEVEL=WARNING RATE_LIMIT_ENABLED=false BFF_ENV=production \
      JWT_SECRET=bff-development-secret-do-not-use-in-production-bench \
      nohup taskset -c "$SERVER_CPU" .venv/bin/uvicorn bff.app:create_app --factory --host 127.0.0.1 \
      --port "$BFF_PORT" --workers 1 --loop uvloop --http httptools --no-access-log --log-level warning \
      > "$WORK/.run/logs/bff-$BFF_PORT.log" 2>&1 &
    pid=$!
    popd >/dev/null
    trap 'kill "$pid" 2>/dev/null || true' EXIT
    for _ in $(seq 300); do (exec 3<>"/dev/tcp/127.0.0.1/$BFF_PORT") 2>/dev/null && break; sleep 0.1; done
    # Tokens signed with the bench secret above.
    (cd "$ROOT" && JWT_SECRET=bff-development-secret-do-not-use-in-production-bench JWT_TTL_SECONDS=86400 \
      .venv/bin/bff token --user 1 --count 10000 > "$TOKENS")
    ./bench-query bff "http://127.0.0.1:$BFF_PORT/graphql" ops/home-relay.json "tokens:$TOKENS" \
      --server-pid "$pid" --note "dataset=$DATASET side_by_side"
    kill "$pid"
    for _ in $(seq 100); do kill -0 "$pid" 2>/dev/null || break; sleep 0.1; done
    kill -9 "$pid" 2>/dev/null || true
    trap - EXIT
  else
    ./run-query-matrix "$target"
  fi
  sleep 2
done
./stop all >/dev/null 2>&1 || true
echo "Results: $WORK/results/query.jsonl" >&2
