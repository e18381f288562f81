"""Server-side latency of /graphql requests from bff's JSON access log (bench/access_log_run.sh).

Prints p50/p90/p99 over the last `--last` requests, a 10 ms histogram of them, and, for every
second of the log, the share of requests slower than `--slow` ms: whether slow requests come in
waves (a cache expiring together, a collector pause) or steadily.

    .venv/bin/python -m bench.latency_modes .tmp/access.log --last 16000 --slow 90
"""

from __future__ import annotations

import argparse
import json
from collections import Counter
from pathlib import Path


def requests(path: Path) -> list[dict[str, object]]:
    rows = []
    for line in path.read_text().splitlines():
        try:
            event = json.loads(line)
        except ValueError:
            continue  # uvicorn's own lines
        if event.get("event") == "request" and event.get("path") == "/graphql":
            rows.append(event)
    return rows


def main() -> None:
    parser = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    parser.add_argument("log", type=Path)
    parser.add_argument("--last", type=int, default=16_000, help="requests the percentiles cover")
    parser.add_argument("--slow", type=float, default=90.0, help="ms above which a request counts as slow")
    args = parser.parse_args()
    rows = requests(args.log)
    if not rows:
        raise SystemExit("no /graphql request events in the log (LOG_LEVEL=INFO LOG_JSON=true?)")
    durations = sorted(float(r["duration_ms"]) for r in rows[-args.last :])  # type: ignore[arg-type]
    n = len(durations)
    print(
        f"{n} requests, server-side ms: p50 {durations[n // 2]:.1f}  p90 {durations[int(n * 0.9)]:.1f}"
        f"  p99 {durations[int(n * 0.99)]:.1f}  max {durations[-1]:.1f}"
    )
    histogram = Counter(int(d // 10) * 10 for d in durations)
    for low in sorted(histogram):
        print(f"  {low:4d}-{low + 10:<4d} ms {histogram[low]:6d}")
    per_second: Counter[str] = Counter()
    slow: Counter[str] = Counter()
    for row in rows:
        second = str(row["timestamp"])[11:19]
        per_second[second] += 1
        if float(row["duration_ms"]) > args.slow:  # type: ignore[arg-type]
            slow[second] += 1
    print(f"per second (UTC): requests, share slower than {args.slow:g} ms")
    print(
        "  "
        + " | ".join(f"{s} {per_second[s]} {100 * slow[s] // per_second[s]}%" for s in sorted(per_second))
    )


if __name__ == "__main__":
    main()
