"""The read cache across instances: a write on A is never served stale from B past its bound.

Two server processes on one Postgres and one Redis. B is warmed first (its local layer and Redis
hold the values), then A writes; B must answer the new value within CACHE_LOCAL_TTL_SECONDS
(normally within one pub/sub hop). A flushed Redis loses the leaderboard sets: they refill from
Postgres, the source of truth, and stay in step with later writes.
"""

from __future__ import annotations

import asyncio
import base64
import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import httpx
import pytest
from redis.asyncio import Redis

from bff.auth import TokenVerifier
from bff.config import load_settings
from bff.db import Database
from tests.edge_fixtures import fresh_redis_url
from tests.procs import ServerProcess, running_server
from tests.servers import RedisServer, run_blocking

BOUND_SECONDS = 2.0  # CACHE_LOCAL_TTL_SECONDS of both servers
FEED = "{ feed(first: 20) { edges { node { id likeCount viewerHasLiked } } } }"
LIKE = "mutation($id: ID!) { likePost(postId: $id) { likeCount } }"
TOP = "query($g: ID!) { leaderboard(gameId: $g, first: 10) { rank points user { id } } }"
SUBMIT = "mutation($g: ID!, $p: Int!) { submitScore(gameId: $g, points: $p) { improved } }"
tokens = TokenVerifier(load_settings())


@pytest.fixture
def redis_url(redis_server: RedisServer) -> str:
    return run_blocking(fresh_redis_url(redis_server))


@pytest.fixture
def two_servers(
    tmp_path: Path, postgres_url: str, redis_url: str
) -> Iterator[tuple[ServerProcess, ServerProcess]]:
    env = {
        "DATABASE_URL": postgres_url,
        "REDIS_URL": redis_url,
        "CACHE_LOCAL_TTL_SECONDS": str(BOUND_SECONDS),
        "RATE_LIMIT_ENABLED": "false",
    }
    with running_server(tmp_path, env, "a") as a, running_server(tmp_path, env, "b") as b:
        yield a, b


async def gql(
    server: ServerProcess, query: str, variables: dict[str, Any] | None = None, user: int = 7
) -> Any:
    async with httpx.AsyncClient(timeout=10) as client:
        response = await client.post(
            f"{server.url}/graphql",
            json={"query": query, "variables": variables or {}},
            headers={"authorization": f"Bearer {tokens.issue(user)}"},
        )
    body = response.json()
    assert "errors" not in body, body
    return body["data"]


def pk(global_id: str) -> int:
    return int(base64.b64decode(global_id).decode().partition(":")[2])


async def db_top(database_url: str, game: int) -> list[tuple[int, int]]:
    db = Database(database_url)
    await db.connect()
    try:
        rows = await db.fetch_all(
            "SELECT user_id, points FROM scores WHERE game_id = :g ORDER BY points DESC, user_id ASC LIMIT 10",
            {"g": game},
        )
        return [(int(r["user_id"]), int(r["points"])) for r in rows]
    finally:
        await db.disconnect()


def entries(data: Any) -> list[tuple[int, int]]:
    return [(pk(e["user"]["id"]), e["points"]) for e in data["leaderboard"]]


async def remote_invalidations(server: ServerProcess, namespace: str, at_least: int) -> bool:
    """Whether `server` applied at least `at_least` invalidations of `namespace` sent by another instance."""
    async with httpx.AsyncClient(timeout=10) as client:
        text = (await client.get(f"{server.url}/metrics")).text
    sample = f'bff_cache_invalidations_total{{namespace="{namespace}",origin="remote"}}'
    values = [float(line.split()[-1]) for line in text.splitlines() if line.startswith(sample)]
    return bool(values) and values[0] >= at_least


async def until(check: Any, timeout: float) -> float:
    """Seconds until `check()` is true; fails past `timeout`."""
    started = time.monotonic()
    async with asyncio.timeout(timeout):
        while not await check():
            await asyncio.sleep(0.02)
    return time.monotonic() - started


async def test_a_like_on_a_reaches_b_within_the_bound(
    two_servers: tuple[ServerProcess, ServerProcess],
) -> None:
    a, b = two_servers
    # given B warm: the feed's like counts are in its local layer and in Redis
    first = (await gql(b, FEED))["feed"]["edges"]
    await gql(b, FEED)
    node = next(e["node"] for e in first if not e["node"]["viewerHasLiked"])
    before = node["likeCount"]
    # when user 3 likes the post on A
    assert (await gql(a, LIKE, {"id": node["id"]}, user=3))["likePost"]["likeCount"] == before + 1

    # then B serves the new count within the bound
    async def b_sees_it() -> bool:
        edges = (await gql(b, FEED))["feed"]["edges"]
        return next(e["node"]["likeCount"] for e in edges if e["node"]["id"] == node["id"]) == before + 1

    assert await until(b_sees_it, timeout=BOUND_SECONDS + 3) <= BOUND_SECONDS + 1
    # and never goes back to the old one
    for _ in range(5):
        assert await b_sees_it()


async def test_a_score_on_a_is_on_bs_leaderboard_and_a_flushed_redis_refills_from_postgres(
    two_servers: tuple[ServerProcess, ServerProcess], postgres_url: str, redis_url: str
) -> None:
    a, b = two_servers
    # given B's leaderboard read (the sorted set filled from Postgres)
    assert entries(await gql(b, TOP, {"g": "1"})) == await db_top(postgres_url, 1)
    best = entries(await gql(b, TOP, {"g": "1"}))[0][1]
    # when a player beats the best on A
    assert (await gql(a, SUBMIT, {"g": "1", "p": best + 1}, user=12))["submitScore"]["improved"]
    # then A told B to drop its in-process copy of the top (not just waited for its TTL)
    await until(lambda: remote_invalidations(b, "leaderboard", at_least=1), timeout=10)

    # then B's leaderboard has it
    async def b_agrees() -> bool:
        return entries(await gql(b, TOP, {"g": "1"})) == await db_top(postgres_url, 1)

    await until(b_agrees, timeout=BOUND_SECONDS + 3)
    assert entries(await gql(b, TOP, {"g": "1"}))[0] == (12, best + 1)

    # when Redis loses everything
    client = Redis.from_url(redis_url)
    try:
        await client.flushdb()
    finally:
        await client.aclose()
    # then both refill from Postgres and stay correct, through later writes too
    assert entries(await gql(b, TOP, {"g": "1"})) == await db_top(postgres_url, 1)
    assert entries(await gql(a, TOP, {"g": "1"})) == await db_top(postgres_url, 1)
    assert (await gql(a, SUBMIT, {"g": "1", "p": best + 2}, user=13))["submitScore"]["improved"]
    await until(b_agrees, timeout=BOUND_SECONDS + 3)
    assert entries(await gql(b, TOP, {"g": "1"}))[:2] == [(13, best + 2), (12, best + 1)]
