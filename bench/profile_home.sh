#!/usr/bin/env bash
# Where one bff worker's CPU goes while it serves Home under the harness's load.
#
#   ./bench/profile_home.sh [seconds]          (after one `make bench`: it reuses .tmp/peers)
#
# Starts bff as `make bench` does (one worker on SERVER_CPU, default CPU 0, medium dataset in
# the harness's Postgres), drives it with the peers' bench-query at c=16 for SECONDS + 15 s,
# samples it with py-spy (300 Hz, Python frames) for SECONDS in the middle of the run, and
# prints bench/profile_summary.py's table: the functions with the most samples of their own,
# and the share of each layer of a request. The raw samples stay in .tmp/profile-home.raw.
set -euo pipefail
cd "$(dirname "$0")/.."
ROOT="$PWD"
WORK="$ROOT/.tmp/peers"
SECONDS_SAMPLED="${1:-12}"
SERVER_CPU="${SERVER_CPU:-0}"
BFF_PORT="${BFF_PORT:-18010}"
RAW="$ROOT/.tmp/profile-home.raw"
. "$ROOT/bench/bff_server.sh"
harness_up
bff_start_bench "$BFF_PORT"
trap bff_stop EXIT
load_home bff-profiled 16 "$((SECONDS_SAMPLED + 15))" "$ROOT/.tmp/profile-home.jsonl" 5 \
  > "$ROOT/.tmp/profile-home.log" 2>&1 &
LOAD=$!
sleep 12  # past the check and the warm-up
"$ROOT/.venv/bin/py-spy" record -p "$BFF_PID" -d "$SECONDS_SAMPLED" -r 300 -f raw -o "$RAW" >/dev/null
wait "$LOAD"
grep '^| bff' "$ROOT/.tmp/profile-home.log" || true
cd "$ROOT"
.venv/bin/python -m bench.profile_summary "$RAW"
