#!/usr/bin/env bash
# Commits of bff served one after another at c=64: their p50, p99 and max latency side by side.
#
#   ./bench/ab_tail.sh <rev> [<rev> ...]       (after one `make bench`: it reuses .tmp/peers)
#
# `bench/ab_server.sh` compares CPU per Home at c=16; a change can lower that and still make a
# tail at c=64 (some requests waiting far longer than the rest), which only latency shows. Each
# rev is served in the order given (repeat revs to interleave them: A B A B), one worker on
# SERVER_CPU (default CPU 0), for DURATION s (default 10) after a 3 s warm-up, by the peers'
# bench-query at --concurrency 64 (CONCURRENCY to change it). Worktrees in .tmp/ab/, named by
# commit hash as ab_server.sh names them.
set -euo pipefail
cd "$(dirname "$0")/.."
ROOT="$PWD"
WORK="$ROOT/.tmp/peers"
[ "$#" -ge 1 ] || { echo "usage: $0 <rev> [<rev> ...]" >&2; exit 2; }
DURATION="${DURATION:-10}"
CONCURRENCY="${CONCURRENCY:-64}"
SERVER_CPU="${SERVER_CPU:-0}"
BFF_PORT="${BFF_PORT:-18012}"
OUT="$ROOT/.tmp/ab/tail.jsonl"
. "$ROOT/bench/bff_server.sh"
revs=()
for rev in "$@"; do
  revs+=("$(ab_worktree "$rev")")
done
harness_up
mkdir -p "$ROOT/.tmp/ab"
: > "$OUT"
trap 'bff_stop 2>/dev/null || true' EXIT
for rev in "${revs[@]}"; do
  BFF_CODE="$ROOT/.tmp/ab/$rev" bff_start_bench "$BFF_PORT"
  load_home "$rev" "$CONCURRENCY" "$DURATION" "$OUT" >/dev/null 2>&1
  bff_stop
done
cd "$ROOT"
.venv/bin/python - "$OUT" <<'PY'
import json, sys
for line in open(sys.argv[1]):
    r = json.loads(line)
    print(f"{r['date']}  {r['target']:>10}  c={r['concurrency']}  {r['rps']:7.1f} req/s  p50 {r['p50_ms']:7.2f} ms"
          f"  p99 {r['p99_ms']:7.2f} ms  max {r['max_ms']:7.2f} ms  errors {r['errors']}")
PY
