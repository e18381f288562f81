"""Client CPU per feed-page statement: bff's Database (a lent connection) against asyncpg's
`Pool.fetch` (acquire and release around each statement), on one pool, one after the other.

    taskset -c 0 .venv/bin/python -m bench.statement_cpu postgresql://postgres@127.0.0.1:15432/bff_bench

time.process_time over --n statements, best of --rounds, for random viewers: this process's
CPU only (Postgres's is its own). Not used by the server: a measurement for docs/benchmarks.md.
"""

from __future__ import annotations

import argparse
import time
from collections.abc import Awaitable, Callable
from typing import Any

from bff.db import Database
from resolvers import feed

FEED_PAGE = feed._STATEMENTS[(True, False)]  # the first page, as Home reads it


async def best_us(run: Callable[[int], Awaitable[Any]], n: int, rounds: int) -> float:
    best = float("inf")
    for _ in range(rounds):
        started = time.process_time()
        for i in range(n):
            await run(1 + i * 7919 % 10_000)
        best = min(best, (time.process_time() - started) / n * 1e6)
    return best


async def main(args: argparse.Namespace) -> None:
    db = Database(args.database_url, pool_min=4, pool_max=8)
    await db.connect()
    try:
        text, _ = db._pg(FEED_PAGE, {"viewer": 1, "n": 21})

        async def lent(viewer: int) -> Any:
            return await db.fetch_all(FEED_PAGE, {"viewer": viewer, "n": 21})

        await best_us(lent, 200, 1)  # warm: connections, prepared statements, caches
        assert db._lender is not None
        pool = db._lender.pool

        async def pooled(viewer: int) -> Any:
            return await pool.fetch(text, viewer, 21)

        for _ in range(2):  # interleaved: a busy neighbour hurts each alike
            print(
                f"lent connection (bff)   {await best_us(lent, args.n, args.rounds):6.1f} µs CPU per statement"
            )
            print(
                f"asyncpg Pool.fetch      {await best_us(pooled, args.n, args.rounds):6.1f} µs CPU per statement"
            )
    finally:
        await db.disconnect()


def parse_args() -> argparse.Namespace:
    parser = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    parser.add_argument("database_url")
    parser.add_argument("--n", type=int, default=3000)
    parser.add_argument("--rounds", type=int, default=3)
    return parser.parse_args()


if __name__ == "__main__":
    import uvloop

    uvloop.run(main(parse_args()))
