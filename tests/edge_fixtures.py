"""Helpers for the edge tests: a SQLite copy per test, a Redis database of its own, the app served in-process."""

from __future__ import annotations

import itertools
import shutil
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager
from pathlib import Path

import httpx
from asgi_lifespan import LifespanManager
from redis.asyncio import Redis

from bff.app import create_app
from bff.config import Settings
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


@asynccontextmanager
async def serving(settings: Settings) -> AsyncIterator[httpx.AsyncClient]:
    """An app built from `settings`, started, and an HTTP client calling it in-process."""
    application = create_app(settings)
    async with (
        LifespanManager(application),
        httpx.AsyncClient(transport=httpx.ASGITransport(application), base_url="http://bff.test") as client,
    ):
        yield client
