"""Query benchmark: one GraphQL operation, N keep-alive connections, a random viewer per request.

    python -m bench.query --url http://127.0.0.1:8000/graphql --op tests/ops/home-relay.json \
        --tokens tokens.txt --concurrency 16 --duration 20 --warmup 5

Each worker holds one keep-alive connection and sends the operation back to back (closed
loop). Every request picks a random viewer: a random line of --tokens (sent as
`Authorization: Bearer <line>`), or with --viewer-header a random id in 1..--viewers sent in
that header (how the peers learn the viewer). A response counts as an error unless it is a
200 whose JSON has `data` and no `errors`. Prints requests/s, p50/p95/p99/max latency and the
error count (and one JSON line with --json). Exits 1 when any request failed.

The client is Python (httpx): pin it away from the server (`taskset -c 1`) and keep an eye on
its CPU figure; above ~80% the client, not the server, sets the pace.
"""

from __future__ import annotations

import argparse
import asyncio
import json
import math
import random
import sys
import time
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import httpx

DEFAULT_OP = Path(__file__).resolve().parent.parent / "tests" / "ops" / "home-relay.json"


@dataclass
class Stats:
    latencies: list[float] = field(default_factory=list)  # seconds, successful requests only
    errors: int = 0
    first_error: str = ""

    def error(self, what: str) -> None:
        self.errors += 1
        if not self.first_error:
            self.first_error = what[:300]


@dataclass
class Target:
    url: str
    body: bytes
    headers: list[dict[str, str]]  # one set of headers per viewer; a request picks one at random


def load_target(args: argparse.Namespace) -> Target:
    op = json.loads(Path(args.op).read_text())
    payload: dict[str, Any] = {"query": op["query"], "variables": op.get("variables") or {}}
    if op.get("operationName"):
        payload["operationName"] = op["operationName"]
    body = json.dumps(payload, separators=(",", ":")).encode()
    base = {"content-type": "application/json", "accept": "application/json"}
    if args.tokens:
        lines = [ln.strip() for ln in Path(args.tokens).read_text().splitlines() if ln.strip()]
        tokens = lines[: args.viewers] if args.viewers else lines
        if not tokens:
            raise SystemExit(f"{args.tokens}: no tokens")
        headers = [{**base, "authorization": f"Bearer {t}"} for t in tokens]
    elif args.viewer_header:
        headers = [{**base, args.viewer_header: str(i)} for i in range(1, (args.viewers or 10_000) + 1)]
    else:
        headers = [base]
    return Target(args.url, body, headers)


async def worker(client: httpx.AsyncClient, target: Target, deadline: float, stats: Stats) -> None:
    rng = random.Random()
    while True:
        start = time.perf_counter()
        if start >= deadline:
            return
        try:
            resp = await client.post(target.url, content=target.body, headers=rng.choice(target.headers))
        except httpx.HTTPError as exc:
            stats.error(f"{type(exc).__name__}: {exc}")
            await asyncio.sleep(0.01)  # a refused connection must not spin
            continue
        elapsed = time.perf_counter() - start
        if resp.status_code != 200:
            stats.error(f"HTTP {resp.status_code}: {resp.text}")
            continue
        try:
            doc = resp.json()
        except ValueError:
            stats.error(f"not JSON: {resp.text}")
            continue
        if not isinstance(doc, dict) or doc.get("errors") or doc.get("data") is None:
            stats.error(json.dumps(doc)[:300])
            continue
        stats.latencies.append(elapsed)


async def run_phase(target: Target, concurrency: int, seconds: float, timeout: float) -> tuple[Stats, float]:
    limits = httpx.Limits(max_connections=concurrency, max_keepalive_connections=concurrency)
    stats = Stats()
    async with httpx.AsyncClient(limits=limits, timeout=timeout) as client:
        start = time.perf_counter()
        deadline = start + seconds
        await asyncio.gather(*(worker(client, target, deadline, stats) for _ in range(concurrency)))
        wall = time.perf_counter() - start
    return stats, wall


def percentile(sorted_values: list[float], q: float) -> float:
    """Nearest-rank percentile of an ascending list (0 when empty)."""
    if not sorted_values:
        return 0.0
    rank = max(1, min(len(sorted_values), math.ceil(q / 100 * len(sorted_values))))
    return sorted_values[rank - 1]


def report(args: argparse.Namespace, stats: Stats, wall: float, cpu: float) -> dict[str, Any]:
    lat = sorted(stats.latencies)
    ms = {f"p{q}_ms": round(percentile(lat, q) * 1000, 2) for q in (50, 95, 99)}
    return {
        "url": args.url,
        "operation": Path(args.op).name,
        "concurrency": args.concurrency,
        "duration_s": round(wall, 2),
        "requests": len(lat),
        "rps": round(len(lat) / wall, 1) if wall else 0.0,
        **ms,
        "max_ms": round(lat[-1] * 1000, 2) if lat else 0.0,
        "errors": stats.errors,
        "client_cpu_pct": round(100 * cpu / wall, 1) if wall else 0.0,
    }


def parse_args(argv: list[str] | None = None) -> argparse.Namespace:
    ap = argparse.ArgumentParser(prog="python -m bench.query", description=__doc__.split("\n\n")[0])
    ap.add_argument("--url", default="http://127.0.0.1:8000/graphql")
    ap.add_argument("--op", default=str(DEFAULT_OP), help="operation file: {query, variables, operationName}")
    ap.add_argument("--tokens", help="file of bearer tokens, one per line (bff token --user 1 --count N)")
    ap.add_argument("--viewer-header", help="instead of tokens: send a random viewer id in this header")
    ap.add_argument("--viewers", type=int, default=0, help="use only the first N viewers (0 = all tokens)")
    ap.add_argument("--concurrency", type=int, default=16)
    ap.add_argument("--duration", type=float, default=20.0, help="measured seconds")
    ap.add_argument("--warmup", type=float, default=5.0, help="seconds of unrecorded load first")
    ap.add_argument("--timeout", type=float, default=10.0, help="per-request timeout in seconds")
    ap.add_argument("--json", action="store_true", help="also print the figures as one JSON line")
    args = ap.parse_args(argv)
    if args.concurrency < 1 or args.duration <= 0:
        ap.error("--concurrency and --duration must be positive")
    return args


async def amain(args: argparse.Namespace) -> int:
    target = load_target(args)
    if args.warmup > 0:
        await run_phase(target, args.concurrency, args.warmup, args.timeout)
    cpu0 = time.process_time()
    stats, wall = await run_phase(target, args.concurrency, args.duration, args.timeout)
    result = report(args, stats, wall, time.process_time() - cpu0)
    print(
        f"{result['url']}  {result['operation']}  c={result['concurrency']}  {result['duration_s']}s\n"
        f"  requests   {result['requests']}\n"
        f"  req/s      {result['rps']:.1f}\n"
        f"  latency ms p50 {result['p50_ms']:.2f}  p95 {result['p95_ms']:.2f}  "
        f"p99 {result['p99_ms']:.2f}  max {result['max_ms']:.2f}\n"
        f"  errors     {result['errors']}\n"
        f"  client CPU {result['client_cpu_pct']}%"
    )
    if stats.first_error:
        print(f"  first error: {stats.first_error}", file=sys.stderr)
    if args.json:
        print(json.dumps(result))
    return 1 if stats.errors else 0


def main(argv: list[str] | None = None) -> int:
    args = parse_args(argv)
    try:
        import uvloop
    except ImportError:  # pragma: no cover - uvloop comes with uvicorn[standard]
        return asyncio.run(amain(args))
    return uvloop.run(amain(args))


if __name__ == "__main__":
    sys.exit(main())
