"""Idempotency-Key on mutations: replay, refusal of a reused key, one run for concurrent requests."""

from __future__ import annotations

import asyncio
from collections.abc import AsyncIterator, Callable
from pathlib import Path
from typing import Any

import httpx
import pytest
from asgi_lifespan import LifespanManager
from redis.asyncio import Redis
from starlette.applications import Starlette

import resolvers.games
from bff.app import create_app
from bff.config import Settings
from bff.idempotency import MemoryIdempotencyStore, RedisIdempotencyStore, Stored, valid_key
from tests.edge_fixtures import fresh_redis_url, sqlite_copy
from tests.servers import RedisServer

SUBMIT = (
    'mutation Submit($points: Int!) { submitScore(gameId: "R2FtZTox", points: $points) { points improved } }'
)
ACCEPT = "application/graphql-response+json"


@pytest.fixture
def database_url(sqlite_template: Path, tmp_path: Path) -> str:
    return sqlite_copy(sqlite_template, tmp_path)


@pytest.fixture(params=["memory", "redis"])
async def app(
    request: pytest.FixtureRequest, make_settings: Callable[..., Settings]
) -> AsyncIterator[Starlette]:
    overrides: dict[str, Any] = {}
    if request.param == "redis":
        overrides["redis_url"] = await fresh_redis_url(request.getfixturevalue("redis_server"))
    application = create_app(make_settings(**overrides))
    async with LifespanManager(application):
        yield application


@pytest.fixture
def submit(client: httpx.AsyncClient, token: Callable[[int], str]) -> Callable[..., Any]:
    async def post(points: int, key: str | None, user: int = 5) -> httpx.Response:
        headers = {"accept": ACCEPT, "authorization": f"Bearer {token(user)}"}
        if key is not None:
            headers["idempotency-key"] = key
        return await client.post(
            "/graphql", json={"query": SUBMIT, "variables": {"points": points}}, headers=headers
        )

    return post


@pytest.fixture
def runs(monkeypatch: pytest.MonkeyPatch) -> list[int]:
    """How many times submitScore really ran."""
    calls: list[int] = []
    original = resolvers.games.submit_score

    async def counted(ctx: Any, game_id: int, points: int) -> Any:
        calls.append(points)
        return await original(ctx, game_id, points)

    monkeypatch.setattr(resolvers.games, "submit_score", counted)
    return calls


async def test_the_same_key_and_body_replays_the_first_answer(submit: Any, runs: list[int]) -> None:
    first = await submit(900_001, "key-1")
    assert first.status_code == 200 and first.json()["data"]["submitScore"]["improved"] is True
    again = await submit(900_001, "key-1")
    assert again.status_code == 200
    assert again.content == first.content  # improved: true, as the first time
    assert again.headers["idempotent-replayed"] == "true"
    assert runs == [900_001]
    # Without the key the same request runs again (and is not an improvement any more).
    plain = await submit(900_001, None)
    assert plain.json()["data"]["submitScore"]["improved"] is False
    assert runs == [900_001, 900_001]


async def test_the_same_key_with_another_body_is_refused(submit: Any, runs: list[int]) -> None:
    assert (await submit(10, "key-2")).status_code == 200
    reused = await submit(11, "key-2")
    assert reused.status_code == 422
    assert reused.json()["errors"][0]["extensions"]["code"] == "IDEMPOTENCY_KEY_REUSED"
    assert runs == [10]


async def test_keys_belong_to_their_user(submit: Any, runs: list[int]) -> None:
    assert (await submit(20, "shared", user=5)).status_code == 200
    other = await submit(21, "shared", user=6)
    assert other.status_code == 200 and "idempotent-replayed" not in other.headers
    assert runs == [20, 21]


async def test_an_unusable_key_is_a_bad_request(submit: Any, runs: list[int]) -> None:
    for key in ("", "x" * 256):
        response = await submit(1, key)
        assert response.status_code == 400
        assert response.json()["errors"][0]["extensions"]["code"] == "BAD_REQUEST"
    assert runs == []
    assert not valid_key("caf\u00e9") and not valid_key("a\tb") and valid_key("8a1e-4c2f")


async def test_two_concurrent_requests_with_one_key_run_once(
    submit: Any, runs: list[int], monkeypatch: pytest.MonkeyPatch
) -> None:
    # given a first request held inside the mutation
    entered, release = asyncio.Event(), asyncio.Event()
    counted = resolvers.games.submit_score

    async def held(ctx: Any, game_id: int, points: int) -> Any:
        entered.set()
        await release.wait()
        return await counted(ctx, game_id, points)

    monkeypatch.setattr(resolvers.games, "submit_score", held)
    first = asyncio.create_task(submit(30, "key-3"))
    async with asyncio.timeout(5):
        await entered.wait()
    # when a second arrives with the same key
    second = await submit(30, "key-3")
    # then it is told to come back (409, retryable), and the mutation runs once
    assert second.status_code == 409
    error = second.json()["errors"][0]
    assert error["extensions"] == {"code": "IDEMPOTENCY_KEY_IN_USE", "retryable": True}
    assert second.headers["retry-after"] == "1"
    release.set()
    async with asyncio.timeout(5):
        done = await first
    assert done.status_code == 200
    # and once it has finished, a retry gets the first answer
    retry = await submit(30, "key-3")
    assert retry.content == done.content and retry.headers["idempotent-replayed"] == "true"
    assert runs == [30]


async def test_an_answer_that_is_not_final_is_not_kept(
    submit: Any, runs: list[int], monkeypatch: pytest.MonkeyPatch
) -> None:
    counted = resolvers.games.submit_score
    fail = [True]

    async def flaky(ctx: Any, game_id: int, points: int) -> Any:
        if fail.pop() if fail else False:
            raise RuntimeError("database went away")
        return await counted(ctx, game_id, points)

    monkeypatch.setattr(resolvers.games, "submit_score", flaky)
    broken = await submit(40, "key-4")
    assert broken.json()["errors"][0]["extensions"]["code"] == "INTERNAL_SERVER_ERROR"
    retried = await submit(40, "key-4")
    assert retried.status_code == 200 and "errors" not in retried.json()
    assert "idempotent-replayed" not in retried.headers
    assert runs == [40]


async def test_queries_ignore_the_header(client: httpx.AsyncClient) -> None:
    for _ in range(2):
        response = await client.post(
            "/graphql", json={"query": "{ games { id } }"}, headers={"idempotency-key": "q", "accept": ACCEPT}
        )
        assert response.status_code == 200 and "idempotent-replayed" not in response.headers


async def test_the_in_process_store_is_bounded_and_expires() -> None:
    store = MemoryIdempotencyStore(ttl_seconds=60, max_entries=3)
    for i in range(5):
        claim = await store.begin(f"k{i}", "fp", 5)
        await store.finish(f"k{i}", claim, "fp", Stored(200, "application/json", b"{}"))
    assert (await store.begin("k0", "fp", 5)).outcome == "run"  # evicted
    assert (await store.begin("k4", "fp", 5)).outcome == "replay"
    short = MemoryIdempotencyStore(ttl_seconds=0.01)
    claim = await short.begin("k", "fp", 5)
    await short.finish("k", claim, "fp", Stored(200, "application/json", b"{}"))
    await asyncio.sleep(0.02)
    assert (await short.begin("k", "fp", 5)).outcome == "run"


async def test_redis_records_expire_after_the_ttl(redis_server: RedisServer) -> None:
    client = Redis.from_url(await fresh_redis_url(redis_server))
    try:
        store = RedisIdempotencyStore(client, ttl_seconds=86_400)
        claim = await store.begin("user:1:k", "fp", 15)
        assert 0 < await client.pttl("bff:idem:user:1:k") <= 15_000  # a crashed run frees the key
        await store.finish("user:1:k", claim, "fp", Stored(200, "application/json", b"{}"))
        assert 86_000 < await client.ttl("bff:idem:user:1:k") <= 86_400
        # a finish by someone whose claim was lost does not overwrite
        await store.finish("user:1:k", claim, "other", Stored(500, "application/json", b"x"))
        assert (await store.begin("user:1:k", "fp", 15)).outcome == "replay"
    finally:
        await client.aclose()
