#!/usr/bin/env bash
# The c=64 tail, seen from the server: one bff worker on CPU 0 (as `make bench` pins it) with its
# JSON access log on, driven by the harness's client at c=64 in runs of 25 s then 20 s (DURATIONS).
# Every request's `duration_ms` lands in LOG (default .tmp/access.log); read it with
# `python -m bench.latency_modes LOG`. Needs the harness set up by `make bench` (.tmp/peers).
#
#   ./bench/access_log_run.sh                                  # the defaults
#   CACHE_LOCAL_TTL_SECONDS=300 ./bench/access_log_run.sh      # any setting, as for a server
#   DURATIONS="45 45" LOG=.tmp/access2.log ./bench/access_log_run.sh   # other run lengths
set -euo pipefail
cd "$(dirname "$0")/.."
ROOT="$PWD"
LOG="${LOG:-$ROOT/.tmp/access.log}"
PORT="${PORT:-18011}"
cd "$ROOT/.tmp/peers"
. ./env.sh
[ -s .run/bff-tokens.txt ] || { echo "run make bench once first (it writes .run/bff-tokens.txt)" >&2; exit 1; }
cd "$ROOT"
DATABASE_URL="postgresql://postgres@127.0.0.1:$PG_PORT/bff_bench" LOG_LEVEL=INFO LOG_JSON=true \
  RATE_LIMIT_ENABLED=false BFF_ENV=production JWT_SECRET=bff-development-secret-do-not-use-in-production-bench \
  taskset -c 0 .venv/bin/uvicorn bff.app:create_app --factory --host 127.0.0.1 --port "$PORT" --workers 1 \
  --loop uvloop --http httptools --no-access-log --log-level warning > "$LOG" 2>&1 &
PID=$!
trap 'kill $PID 2>/dev/null || true' EXIT
for _ in $(seq 300); do (exec 3<>"/dev/tcp/127.0.0.1/$PORT") 2>/dev/null && break; sleep 0.1; done
cd "$ROOT/.tmp/peers"
for seconds in ${DURATIONS:-25 20}; do
  ./bench-query bff "http://127.0.0.1:$PORT/graphql" ops/home-relay.json tokens:.run/bff-tokens.txt \
    --server-pid "$PID" --concurrency 64 --duration "$seconds" --check shape 2>&1 | grep -E " c=" | tail -1
done
