#!/usr/bin/env bash
# Two commits of bff, served alternately under the same Home load: which costs less CPU per Home.
#
#   ./bench/ab_server.sh <rev-a> <rev-b> [rounds]       (after one `make bench`: it reuses .tmp/peers)
#
# A side-by-side run moves with the host by more than most changes are worth (the same commit's
# figure moved by 20% within minutes on 2026-12-06). Here each round serves A, B, B, A (the order
# cancels a steady drift), each for DURATION s (default 10) after a 3 s warm-up at c=16, one
# worker on SERVER_CPU (default CPU 0) against the harness's Postgres and medium dataset, and
# reads the worker's CPU share and req/s from the peers' bench-query. It prints each run, then
# per commit the median CPU per Home (the worker's CPU time over its requests: less sensitive to
# the client than req/s) and the median req/s, and B's medians over A's.
# Both commits must read the same database schema (the seeded bff_bench). Worktrees: .tmp/ab/.
set -euo pipefail
cd "$(dirname "$0")/.."
ROOT="$PWD"
WORK="$ROOT/.tmp/peers"
ROUNDS="${3:-4}"
DURATION="${DURATION:-10}"
SERVER_CPU="${SERVER_CPU:-0}"
BFF_PORT="${BFF_PORT:-18010}"
OUT="$ROOT/.tmp/ab/results.jsonl"
. "$ROOT/bench/bff_server.sh"
REV_A="$(ab_worktree "$1")" REV_B="$(ab_worktree "$2")"  # commits by their short hashes
harness_up
mkdir -p "$ROOT/.tmp/ab"
: > "$OUT"
serve() {  # serve <label> <rev>
  BFF_CODE="$ROOT/.tmp/ab/$2" bff_start_bench "$BFF_PORT"
  load_home "$1" 16 "$DURATION" "$OUT" >/dev/null 2>&1
  bff_stop
}
trap 'bff_stop 2>/dev/null || true' EXIT
for round in $(seq "$ROUNDS"); do
  serve A "$REV_A"; serve B "$REV_B"; serve B "$REV_B"; serve A "$REV_A"
  echo "round $round of $ROUNDS done" >&2
done
cd "$ROOT"
.venv/bin/python - "$OUT" "$REV_A" "$REV_B" <<'PY'
import json, statistics, sys
runs = [json.loads(line) for line in open(sys.argv[1])]
names = {"A": sys.argv[2], "B": sys.argv[3]}
for r in runs:
    r["cpu_us"] = r["server_cpu_pct"] * 10_000 / r["rps"]
    print(f"{r['date']}  {r['target']} {names[r['target']]:>12}  {r['rps']:7.1f} req/s  "
          f"{r['server_cpu_pct']:5.1f}% CPU  {r['cpu_us']:6.0f} µs CPU per Home  errors {r['errors']}")
median = {}
for label in "AB":
    mine = [r for r in runs if r["target"] == label]
    median[label] = (statistics.median(r["cpu_us"] for r in mine), statistics.median(r["rps"] for r in mine))
    cpu = sorted(round(r["cpu_us"]) for r in mine)
    print(f"{label} {names[label]}: median {median[label][0]:.0f} µs CPU per Home (runs {cpu}), median {median[label][1]:.0f} req/s")
print(f"B / A: CPU per Home {median['B'][0] / median['A'][0]:.3f}, req/s {median['B'][1] / median['A'][1]:.3f}")
PY
