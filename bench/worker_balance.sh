#!/usr/bin/env bash
# How the harness's keep-alive connections spread over bff's workers (uvicorn --workers: one
# listening socket shared by every worker; whichever wakes first accepts).
#
#   ./bench/worker_balance.sh [runs]       (after one `make bench`: it reuses .tmp/peers)
#
# Each run starts bff with BFF_WORKERS (default 2) workers on SERVER_CPU (default 0-1), loads it
# with the peers' bench-query at CONCURRENCY (default 16) for 10 s, counts the established
# connections per worker pid with `ss` near the end, and prints them beside the run's figures.
set -euo pipefail
cd "$(dirname "$0")/.."
ROOT="$PWD"
WORK="$ROOT/.tmp/peers"
RUNS="${1:-3}"
SERVER_CPU="${SERVER_CPU:-0-1}"
BFF_WORKERS="${BFF_WORKERS:-2}"
CONCURRENCY="${CONCURRENCY:-16}"
BFF_PORT="${BFF_PORT:-18013}"
OUT="$ROOT/.tmp/worker-balance.jsonl"
. "$ROOT/bench/bff_server.sh"
harness_up
: > "$OUT"
trap 'bff_stop 2>/dev/null || true' EXIT
for run in $(seq "$RUNS"); do
  bff_start_bench "$BFF_PORT"
  load_home "balance-$run" "$CONCURRENCY" 10 "$OUT" >/dev/null 2>&1 &
  load=$!
  sleep 11
  spread="$(ss -tnp state established "( sport = :$BFF_PORT )" | grep -o 'pid=[0-9]*' | sort | uniq -c \
    | awk '{print $1}' | sort -rn | paste -sd/)"
  wait "$load"
  bff_stop
  line="$(tail -1 "$OUT")"
  figures="$("$ROOT/.venv/bin/python" -c '
import json, sys
r = json.loads(sys.argv[1])
print("%.0f req/s, p50 %s ms, p99 %s ms" % (r["rps"], r["p50_ms"], r["p99_ms"]))' "$line")"
  echo "run $run: connections per worker $spread; $figures"
done
