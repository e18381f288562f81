"""Helpers for the edge tests: a SQLite copy per test and a Redis database of its own."""

from __future__ import annotations

import itertools
import shutil
from pathlib import Path

from redis.asyncio import Redis

from tests.servers import RedisServer

# Databases 1..15 of the suite's Redis, in turn, flushed before use: keys of the rate limiter and
# the idempotency store (fixed prefixes) never leak from one test into the next.
_databases = itertools.cycle(range(1, 16))


async def fresh_redis_url(server: RedisServer) -> str:
    url = f"redis://127.0.0.1:{server.port}/{next(_databases)}"
    client = Redis.from_url(url)
    try:
        await client.flushdb()
    finally:
        await client.aclose()
    return url


def sqlite_copy(template: Path, tmp_path: Path) -> str:
    path = tmp_path / "bff.db"
    shutil.copy(template, path)
    return f"sqlite:///{path}"
