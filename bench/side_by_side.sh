#!/usr/bin/env bash
# One command for the Home figures: bff side by side with the peers (naive-strawberry, mercurius)
# in one run, on the same Postgres, the same dataset and the same CPU pinning.
#
#   make bench                         # medium dataset, c=16 and c=64
#   PEERS=/path/to/peers make bench    # another copy of the harness (default ../shared/peers)
#   ALL_CORES=1 make bench             # every server on every CPU, bff with one worker per CPU
#                                      #   (mercurius stays one Node process: the harness's way)
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
if [ -n "${ALL_CORES:-}" ]; then
  export SERVER_CPU="0-$(($(nproc) - 1))" BFF_WORKERS="$(nproc)"
fi
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
. "$ROOT/bench/bff_server.sh"
mkdir -p .run/logs

for target in $TARGETS; do
  if [ "$target" = bff ]; then
    bff_start "$BFF_DB" "$BFF_PORT" "$TOKENS"
    trap bff_stop EXIT
    ./bench-query bff "http://127.0.0.1:$BFF_PORT/graphql" ops/home-relay.json "tokens:$TOKENS" \
      --server-pid "$BFF_PID" --note "dataset=$DATASET side_by_side${ALL_CORES:+ all_cores}"
    bff_stop
    trap - EXIT
  else
    ./run-query-matrix "$target"
  fi
  sleep 2
done
./stop all >/dev/null 2>&1 || true
echo "Results: $WORK/results/query.jsonl" >&2
