"""The read cache: layers, TTL bound, single-flight, counters, invalidation, and Home's SQL cost.

Home runs on SQLite and Postgres, each with and without Redis (without: the in-process layer only).
"""

from __future__ import annotations

import asyncio
import base64
import json
from collections.abc import AsyncIterator, Callable
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import httpx
import pytest
from asgi_lifespan import LifespanManager
from prometheus_client import REGISTRY
from redis.asyncio import Redis
from starlette.applications import Starlette

from bff.app import create_app
from bff.cache import Cache, Namespace
from bff.cache_local import LocalLayer
from bff.config import Settings
from bff.db import Database, StatementCounter, current_counter
from bff.rankings import Rankings
from realtime.memory import MemoryBroker
from resolvers.loaders import USERS
from schema.relay import to_global_id
from tests.edge_fixtures import fresh_redis_url
from tests.servers import RedisServer

HOME = json.loads((Path(__file__).parent / "ops" / "home.json").read_text())
LIKE = "mutation($id: ID!) { likePost(postId: $id) { id likeCount viewerHasLiked } }"
UNLIKE = "mutation($id: ID!) { unlikePost(postId: $id) { id likeCount viewerHasLiked } }"
SUBMIT = "mutation($g: ID!, $p: Int!) { submitScore(gameId: $g, points: $p) { points improved } }"
TOP = "query($g: ID!) { leaderboard(gameId: $g, first: 10) { rank points user { id } } }"
DIALECTS = ("sqlite", "postgresql")
COUNTS: Namespace[int] = Namespace("test", lambda n: str(n).encode(), lambda b: int(b))


# -- the object ----------------------------------------------------------------------------------


def local_cache(max_entries: int = 100, ttl: float = 60) -> Cache:
    return Cache(enabled=True, local=LocalLayer(max_entries, ttl), broker=MemoryBroker())


class Source:
    """A loader that counts its calls and keys, and can be held open."""

    def __init__(self) -> None:
        self.values: dict[int, int] = {}
        self.calls: list[list[int]] = []
        self.release = asyncio.Event()
        self.release.set()

    async def __call__(self, keys: list[int]) -> dict[int, int]:
        self.calls.append(keys)
        read = {k: self.values.get(k, 0) for k in keys}  # what the database said when asked
        await self.release.wait()
        return read


async def test_a_second_read_is_a_local_hit_until_the_ttl_ends() -> None:
    cache = local_cache(ttl=0.2)
    source = Source()
    source.values[1] = 10
    assert await cache.get_many(COUNTS, [1], source) == {1: 10}
    source.values[1] = 11
    assert await cache.get_many(COUNTS, [1], source) == {1: 10}
    assert len(source.calls) == 1
    # past the TTL the value is read again: the bound on staleness
    await asyncio.sleep(0.25)
    assert await cache.get_many(COUNTS, [1], source) == {1: 11}
    assert len(source.calls) == 2


async def test_the_local_layer_keeps_at_most_its_bound_dropping_the_least_recently_used() -> None:
    cache = local_cache(max_entries=3)
    source = Source()
    await cache.get_many(COUNTS, [1, 2, 3], source)
    await cache.get_many(COUNTS, [1], source)  # 1 is now the most recent
    await cache.get_many(COUNTS, [4], source)  # evicts 2
    assert len(cache.local) == 3
    source.calls.clear()
    await cache.get_many(COUNTS, [1, 2, 3, 4], source)
    assert source.calls == [[2]]


async def test_concurrent_misses_of_a_key_cause_one_load() -> None:
    cache = local_cache()
    source = Source()
    source.values = {1: 5, 2: 6}
    source.release.clear()
    readers = [asyncio.create_task(cache.get_many(COUNTS, [1, 2], source)) for _ in range(50)]
    while not source.calls:
        await asyncio.sleep(0)
    await asyncio.sleep(0.01)  # every reader has found the fetch in flight by now
    source.release.set()
    assert all(r == {1: 5, 2: 6} for r in await asyncio.gather(*readers))
    assert source.calls == [[1, 2]]


async def test_a_failed_load_fails_its_reader_and_the_waiters_load_themselves() -> None:
    cache = local_cache()
    gate = asyncio.Event()

    async def failing(keys: list[int]) -> dict[int, int]:
        await gate.wait()
        raise RuntimeError("database down")

    first = asyncio.create_task(cache.get_many(COUNTS, [1], failing))
    await asyncio.sleep(0)
    source = Source()
    second = asyncio.create_task(cache.get_many(COUNTS, [1], source))
    await asyncio.sleep(0)
    gate.set()
    with pytest.raises(RuntimeError):
        await first
    assert await second == {1: 0}


async def test_a_value_read_before_an_invalidation_is_not_stored() -> None:
    cache = local_cache()
    source = Source()
    source.values[1] = 1
    source.release.clear()
    reader = asyncio.create_task(cache.get_many(COUNTS, [1], source))
    while not source.calls:
        await asyncio.sleep(0)
    # a write commits and invalidates while the old value is on its way
    source.values[1] = 2
    await cache.invalidate(COUNTS, [1])
    source.release.set()
    assert await reader == {1: 1}  # that reader began before the write
    assert await cache.get_many(COUNTS, [1], source) == {1: 2}  # but nobody is served it later


async def test_two_caches_on_one_redis_share_values_and_invalidations(redis_server: RedisServer) -> None:
    url = await fresh_redis_url(redis_server)
    from realtime.redis import RedisBroker

    brokers = [RedisBroker(url), RedisBroker(url)]
    caches = [
        Cache(
            enabled=True,
            local=LocalLayer(100, 60),
            redis=Redis.from_url(url),
            broker=broker,
            scope="shared-test",
        )
        for broker in brokers
    ]
    for broker, cache in zip(brokers, caches, strict=True):
        await broker.start()
        await cache.start()
    try:
        a, b = caches
        source = Source()
        source.values[7] = 70
        assert await a.get_many(COUNTS, [7], source) == {7: 70}
        # B finds it in Redis: no second load
        assert await b.get_many(COUNTS, [7], source) == {7: 70}
        assert len(source.calls) == 1
        # a write on A: B's local copy goes within the bound (normally a pub/sub hop)
        source.values[7] = 71
        await a.invalidate(COUNTS, [7])
        async with asyncio.timeout(5):
            while (await b.get_many(COUNTS, [7], source)) != {7: 71}:
                await asyncio.sleep(0.01)
    finally:
        for broker, cache in zip(brokers, caches, strict=True):
            await cache.close()
            await broker.close()


def refreshes(result: str) -> float:
    return (
        REGISTRY.get_sample_value("bff_cache_refreshes_total", {"namespace": "test", "result": result}) or 0.0
    )


async def redis_cache(redis_server: RedisServer, ttl: float, monkeypatch: pytest.MonkeyPatch) -> Cache:
    monkeypatch.setattr("bff.cache_local.TTL_JITTER", 0.0)  # lifetimes exactly `ttl`: timed tests
    client = Redis.from_url(await fresh_redis_url(redis_server))
    return Cache(enabled=True, local=LocalLayer(100, ttl), redis=client, scope="refresh-test")


TTL = 2.0  # long enough that a stalled CI machine does not expire an entry between two steps


async def read_in_its_last_quarter(cache: Cache, key: int, held: int, result: str) -> None:
    """Sleep into `key`'s last quarter of life, find it still held, and wait until the
    background refresh that read asked for is counted with `result`."""
    await asyncio.sleep(TTL * 0.8)
    before = refreshes(result)
    assert cache.held(COUNTS, [key]) == {key: held}
    await counted_refresh(result, before)


async def filled(
    redis_server: RedisServer, monkeypatch: pytest.MonkeyPatch, key: int, value: int
) -> tuple[Cache, Source]:
    """A cache over a real Redis holding `key` (loaded once, filled into Redis), and its source."""
    cache = await redis_cache(redis_server, TTL, monkeypatch)
    source = Source()
    source.values[key] = value
    assert await cache.get_many(COUNTS, [key], source) == {key: value}
    return cache, source


async def lose_in_redis(cache: Cache, source: Source, key: int, value: int) -> None:
    """Delete `key`'s Redis copy, as a write does, and give the source its new `value`."""
    assert cache._redis is not None
    await cache._redis.delete(f"bff:cache:refresh-test:test:{key}")
    source.values[key] = value


async def counted_refresh(result: str, before: float) -> None:
    """Wait until a background refresh is counted with `result` past `before`."""
    async with asyncio.timeout(5):
        while refreshes(result) == before:
            await asyncio.sleep(0.01)


async def test_a_hot_entry_is_refreshed_from_redis_before_it_expires(
    redis_server: RedisServer, monkeypatch: pytest.MonkeyPatch
) -> None:
    cache, source = await filled(redis_server, monkeypatch, 5, 50)
    await read_in_its_last_quarter(cache, 5, 50, "refreshed")
    await asyncio.sleep(TTL * 0.3)  # past its first expiry: still held, no request waited on a load
    assert await cache.get_many(COUNTS, [5], source) == {5: 50}
    assert len(source.calls) == 1
    await cache.close()


async def test_an_entry_redis_no_longer_holds_expires_and_is_loaded_again(
    redis_server: RedisServer, monkeypatch: pytest.MonkeyPatch
) -> None:
    cache, source = await filled(redis_server, monkeypatch, 6, 60)
    await lose_in_redis(cache, source, 6, 61)  # a write on another instance
    await read_in_its_last_quarter(cache, 6, 60, "gone")  # still within its bound
    # Settled: later reads until its expiry do not ask Redis again.
    assert cache.held(COUNTS, [6]) == {6: 60} and cache.local.due == {}
    await asyncio.sleep(TTL * 0.3)  # past its expiry: not extended, so the next read loads the new value
    assert await cache.get_many(COUNTS, [6], source) == {6: 61}
    assert len(source.calls) == 2
    await cache.close()


async def test_a_refresh_redis_fails_leaves_the_entry_to_expire_without_retrying(
    redis_server: RedisServer, monkeypatch: pytest.MonkeyPatch
) -> None:
    cache, _ = await filled(redis_server, monkeypatch, 8, 80)
    assert cache._redis is not None
    await cache._redis.aclose()
    cache._redis = Redis.from_url("redis://127.0.0.1:1/0")  # nothing listens: connection refused
    failed = REGISTRY.get_sample_value("bff_cache_redis_errors_total", {"op": "refresh"}) or 0.0
    await asyncio.sleep(TTL * 0.8)
    assert cache.held(COUNTS, [8]) == {8: 80}
    async with asyncio.timeout(5):
        while (REGISTRY.get_sample_value("bff_cache_redis_errors_total", {"op": "refresh"}) or 0.0) == failed:
            await asyncio.sleep(0.01)
    assert cache.held(COUNTS, [8]) == {8: 80} and cache.local.due == {}  # settled: no retry per read
    await cache.close()


class Reloader(Source):
    """A background reloader: also notes whether a request's statement counter was current."""

    def __init__(self) -> None:
        super().__init__()
        self.counters: list[object] = []
        self.fail = False

    async def __call__(self, keys: list[int]) -> dict[int, int]:
        self.counters.append(current_counter.get())
        if self.fail:
            raise ConnectionError("the database is down")
        return await super().__call__(keys)


async def test_a_hot_entry_redis_lost_is_reloaded_from_the_database_in_the_background(
    redis_server: RedisServer, monkeypatch: pytest.MonkeyPatch
) -> None:
    cache, source = await filled(redis_server, monkeypatch, 15, 150)
    reloader = Reloader()
    cache.reload_from(COUNTS, reloader)
    await lose_in_redis(cache, source, 15, 151)  # its TTL ended, or a write deleted it
    reloader.values[15] = 151
    counter = StatementCounter()
    token = current_counter.set(counter)  # the request whose read starts the refresh
    try:
        await read_in_its_last_quarter(cache, 15, 150, "reloaded")
    finally:
        current_counter.reset(token)
    assert reloader.calls == [[15]] and reloader.counters == [None]  # not on that request's count
    # Renewed in both layers: no reader waits on a load, here or on another instance.
    assert cache.held(COUNTS, [15]) == {15: 151}
    await asyncio.sleep(TTL * 0.3)  # past the first expiry
    assert await cache.get_many(COUNTS, [15], source) == {15: 151}
    assert len(source.calls) == 1
    assert cache._redis is not None and await cache._redis.get("bff:cache:refresh-test:test:15") == b"151"
    await cache.close()


async def test_a_reload_the_database_fails_leaves_the_entry_to_expire(
    redis_server: RedisServer, monkeypatch: pytest.MonkeyPatch
) -> None:
    cache, source = await filled(redis_server, monkeypatch, 16, 160)
    reloader = Reloader()
    reloader.fail = True
    cache.reload_from(COUNTS, reloader)
    await lose_in_redis(cache, source, 16, 161)
    await read_in_its_last_quarter(cache, 16, 160, "failed")
    assert cache.held(COUNTS, [16]) == {16: 160} and cache.local.due == {}  # settled: no retry per read
    await asyncio.sleep(TTL * 0.3)  # expired: the next read loads it
    assert await cache.get_many(COUNTS, [16], source) == {16: 161}
    assert len(reloader.counters) == 1
    await cache.close()


def stale_hits() -> float:
    labels = {"namespace": "test", "layer": "local", "result": "stale"}
    return REGISTRY.get_sample_value("bff_cache_requests_total", labels) or 0.0


async def test_an_entry_read_just_after_its_expiry_is_answered_and_revalidated_from_redis(
    redis_server: RedisServer, monkeypatch: pytest.MonkeyPatch
) -> None:
    cache, source = await filled(redis_server, monkeypatch, 11, 110)
    before, refreshed = stale_hits(), refreshes("refreshed")
    await asyncio.sleep(TTL * 1.2)  # expired, never read in its last quarter: no refresh-ahead
    assert cache.held(COUNTS, [11]) == {11: 110}  # answered at once, no request waits on Redis
    assert stale_hits() == before + 1
    await counted_refresh("refreshed", refreshed)
    # Renewed from Redis: a fresh entry again, with no load from the source.
    assert cache.held(COUNTS, [11]) == {11: 110} and stale_hits() == before + 1
    assert await cache.get_many(COUNTS, [11], source) == {11: 110}
    assert len(source.calls) == 1
    await cache.close()


async def test_a_stale_key_read_several_times_in_one_list_counts_once(
    redis_server: RedisServer, monkeypatch: pytest.MonkeyPatch
) -> None:
    """A page repeats keys (one author of many posts): the hit counter must not go negative."""
    cache, _ = await filled(redis_server, monkeypatch, 17, 170)
    before = stale_hits()
    await asyncio.sleep(TTL * 1.2)  # expired, within the stale window
    assert cache.held(COUNTS, [17, 17, 17]) == {17: 170}  # counting raised ValueError here once
    assert stale_hits() == before + 1
    await cache.close()


async def test_an_expired_entry_redis_lost_is_answered_once_then_loaded_again(
    redis_server: RedisServer, monkeypatch: pytest.MonkeyPatch
) -> None:
    cache, source = await filled(redis_server, monkeypatch, 12, 120)
    await lose_in_redis(cache, source, 12, 121)  # a write whose message was lost
    gone = refreshes("gone")
    await asyncio.sleep(TTL * 1.2)
    assert cache.held(COUNTS, [12]) == {12: 120}  # stale, while Redis is asked
    await counted_refresh("gone", gone)
    assert cache.held(COUNTS, [12]) == {}  # Redis had nothing: not answered stale again
    assert await cache.get_many(COUNTS, [12], source) == {12: 121}
    assert len(source.calls) == 2
    await cache.close()


async def test_an_entry_past_its_stale_window_or_invalidated_is_a_miss(
    redis_server: RedisServer, monkeypatch: pytest.MonkeyPatch
) -> None:
    cache, source = await filled(redis_server, monkeypatch, 13, 130)
    await cache.get_many(COUNTS, [14], source)
    await cache.invalidate(COUNTS, [14])  # a write: dropped, never answered stale
    await asyncio.sleep(TTL * 2.1)  # past expiry and the stale window (one TTL)
    assert cache.held(COUNTS, [13, 14]) == {}
    assert cache.local.due == {}
    await cache.close()


async def test_without_redis_nothing_is_refreshed_ahead(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr("bff.cache_local.TTL_JITTER", 0.0)
    cache = local_cache(ttl=TTL)
    source = Source()
    await cache.get_many(COUNTS, [7], source)
    await asyncio.sleep(TTL * 0.8)
    assert cache.held(COUNTS, [7]) == {7: 0}
    assert cache.local.due == {} and cache._refresher is None
    await asyncio.sleep(TTL * 0.4)  # expired: without Redis to revalidate, never answered stale
    assert cache.held(COUNTS, [7]) == {}


WARM: Namespace[int] = Namespace("warm", lambda n: str(n).encode(), lambda b: int(b), parse_key=int)


async def test_a_starting_instance_copies_what_redis_holds_into_its_local_layer(
    redis_server: RedisServer,
) -> None:
    url = await fresh_redis_url(redis_server)
    a = Cache(enabled=True, local=LocalLayer(100, 60), redis=Redis.from_url(url), scope="warm-test")
    source = Source()
    source.values.update({k: k * 10 for k in range(1, 6)})
    assert await a.get_many(WARM, range(1, 6), source) == {k: k * 10 for k in range(1, 6)}
    await a.invalidate(WARM, [5])  # Redis keeps only its version key: nothing to copy
    assert a._redis is not None
    await a._redis.set("bff:cache:warm-test:warm:not-a-key", b"1")  # skipped, not fatal
    await a._redis.set("bff:cache:other-scope:warm:9", b"90")  # another database's entry
    b = Cache(enabled=True, local=LocalLayer(100, 60), redis=Redis.from_url(url), scope="warm-test")
    assert await b.warm([WARM]) == 4
    assert b.held(WARM, range(1, 10)) == {1: 10, 2: 20, 3: 30, 4: 40}  # no load, no Redis wait
    bounded = Cache(enabled=True, local=LocalLayer(2, 60), redis=Redis.from_url(url), scope="warm-test")
    assert await bounded.warm([WARM]) == 2 and len(bounded.local) == 2  # never past its size
    off = Cache(
        enabled=True,
        local=LocalLayer(100, 60),
        redis=Redis.from_url(url),
        scope="warm-test",
        warm_on_start=False,
    )
    assert await off.warm([WARM]) == 0 and len(off.local) == 0
    assert await local_cache().warm([WARM]) == 0  # without Redis there is nothing to copy
    assert len(source.calls) == 1
    for cache in (a, b, bounded, off):
        await cache.close()


async def test_a_warm_up_against_a_redis_that_refuses_connections_ends_without_failing_the_start() -> None:
    cache = Cache(enabled=True, local=LocalLayer(100, 60), redis=Redis.from_url("redis://127.0.0.1:1/0"))
    failed = REGISTRY.get_sample_value("bff_cache_redis_errors_total", {"op": "warm"}) or 0.0
    assert await cache.warm([WARM]) == 0
    assert REGISTRY.get_sample_value("bff_cache_redis_errors_total", {"op": "warm"}) == failed + 1
    await cache.close()


async def test_an_app_starts_with_the_users_an_earlier_instance_cached(
    redis_server: RedisServer, make_settings: Callable[..., Settings]
) -> None:
    settings = make_settings(redis_url=await fresh_redis_url(redis_server))
    home = "{ viewer { handle } feed(first: 5) { edges { node { likeCount author { handle } } } } }"
    first = create_app(settings)
    async with LifespanManager(first):
        transport = httpx.ASGITransport(app=first)
        async with httpx.AsyncClient(transport=transport, base_url="http://bff") as client:
            token = first.state.services.tokens.issue(1)
            response = await client.post(
                "/graphql", json={"query": home}, headers={"Authorization": f"Bearer {token}"}
            )
            assert response.status_code == 200 and "errors" not in response.json()
    second = create_app(settings)
    async with LifespanManager(second):
        cache = second.state.services.cache
        assert cache.held(USERS, [1]).keys() == {1}  # before any request of its own
        assert len(cache.local) >= 2


async def test_an_app_reloads_a_hot_user_whose_redis_copy_is_gone_from_its_database(
    redis_server: RedisServer, make_settings: Callable[..., Settings], monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setattr("bff.cache_local.TTL_JITTER", 0.0)
    settings = make_settings(redis_url=await fresh_redis_url(redis_server), cache_local_ttl_seconds=TTL)
    application = create_app(settings)
    async with LifespanManager(application):
        cache: Cache = application.state.services.cache
        assert cache._reloaders.keys() == {USERS.name, "likes"}  # wired by Services
        token = application.state.services.tokens.issue(1)
        transport = httpx.ASGITransport(app=application)
        async with httpx.AsyncClient(transport=transport, base_url="http://bff") as client:

            async def viewer() -> Any:
                response = await client.post(
                    "/graphql",
                    json={"query": "{ viewer { handle } }"},
                    headers={"Authorization": f"Bearer {token}"},
                )
                return response.json()["data"]["viewer"]["handle"]

            handle = await viewer()
            redis_key = cache._key(USERS.name, 1)
            assert cache._redis is not None and await cache._redis.delete(redis_key) == 1
            labels = {"namespace": USERS.name, "result": "reloaded"}
            before = REGISTRY.get_sample_value("bff_cache_refreshes_total", labels) or 0.0
            await asyncio.sleep(TTL * 0.8)
            assert await viewer() == handle  # from the in-process layer, which notes it due
            async with asyncio.timeout(5):
                while (REGISTRY.get_sample_value("bff_cache_refreshes_total", labels) or 0.0) == before:
                    await asyncio.sleep(0.01)
            assert await cache._redis.get(redis_key) is not None  # refilled from the database


async def test_a_redis_fill_that_lost_a_race_with_a_write_is_refused(redis_server: RedisServer) -> None:
    url = await fresh_redis_url(redis_server)
    client = Redis.from_url(url)
    cache = Cache(enabled=True, local=LocalLayer(100, 60), redis=client, scope="race-test")
    source = Source()
    source.values[3] = 30
    source.release.clear()
    reader = asyncio.create_task(cache.get_many(COUNTS, [3], source))
    while not source.calls:
        await asyncio.sleep(0)
    source.values[3] = 31
    await cache.invalidate(COUNTS, [3])  # bumps the version the reader saw with its miss
    source.release.set()
    await reader
    assert await client.get("bff:cache:race-test:test:3") is None
    assert await cache.get_many(COUNTS, [3], source) == {3: 31}
    assert await client.get("bff:cache:race-test:test:3") == b"31"
    await cache.close()


async def test_keys_filled_in_one_burst_leave_redis_spread_over_the_last_fifth_of_the_ttl(
    redis_server: RedisServer,
) -> None:
    client = Redis.from_url(await fresh_redis_url(redis_server))
    cache = Cache(
        enabled=True, local=LocalLayer(500, 60), redis=client, scope="spread-test", redis_ttl_seconds=300
    )
    source = Source()
    keys = list(range(200))
    assert await cache.get_many(COUNTS, keys, source) == dict.fromkeys(keys, 0)
    assert source.calls == [keys]  # one load, one fill: a burst
    ttls = [await client.ttl(f"bff:cache:spread-test:test:{key}") for key in keys]
    assert all(239 <= ttl <= 300 for ttl in ttls), ttls  # 240-300 s, less a second the test may take
    assert len(set(ttls)) >= 20  # spread, not one expiry for the whole burst
    await cache.close()


async def test_the_sorted_set_ranks_ties_by_user_id_and_keeps_only_the_top(redis_server: RedisServer) -> None:
    client = Redis.from_url(await fresh_redis_url(redis_server))
    rankings = Rankings(client, "test:lb:", ttl_seconds=60, size=3)
    db_rows = [(5, 100), (2, 100), (9, 90), (1, 10)]

    async def load(n: int) -> list[tuple[int, int]]:
        return sorted(db_rows, key=lambda r: (-r[1], r[0]))[:n]

    assert await rankings.top(1, 3) is None  # cold
    assert await rankings.refill(1, load, 3) == [(2, 100), (5, 100), (9, 90)]
    assert await rankings.top(1, 3) == [(2, 100), (5, 100), (9, 90)]
    # a new best of user 1 ties the leaders; a lower submission changes nothing (GT)
    await rankings.record(1, 1, 100)
    await rankings.record(1, 5, 50)
    assert await rankings.top(1, 3) == [(1, 100), (2, 100), (5, 100)]
    assert await client.zcard("test:lb:1") == 3
    await client.aclose()


# -- through the app -----------------------------------------------------------------------------


@pytest.fixture(params=["local", "redis"])
async def cached_app(
    request: pytest.FixtureRequest, make_settings: Callable[..., Settings]
) -> AsyncIterator[Starlette]:
    overrides: dict[str, Any] = {"rate_limit_enabled": False}
    if request.param == "redis":
        overrides["redis_url"] = await fresh_redis_url(request.getfixturevalue("redis_server"))
    application = create_app(make_settings(**overrides))
    async with LifespanManager(application):
        yield application


@pytest.fixture
async def http(cached_app: Starlette) -> AsyncIterator[Callable[..., Any]]:
    tokens = cached_app.state.services.tokens
    async with httpx.AsyncClient(transport=httpx.ASGITransport(cached_app), base_url="http://bff.test") as c:

        async def post(query: str, variables: dict[str, Any] | None = None, user: int | None = None) -> Any:
            headers = {"authorization": f"Bearer {tokens.issue(user)}"} if user is not None else {}
            response = await c.post(
                "/graphql", json={"query": query, "variables": variables or {}}, headers=headers
            )
            body = response.json()
            assert "errors" not in body, body
            return body["data"]

        post.client = c  # type: ignore[attr-defined]
        yield post


@dataclass
class Cost:
    count: int


async def counted(call: Any) -> tuple[Any, Cost]:
    """The call's result and the SQL statements it cost (the request sets its own StatementCounter)."""

    def total() -> float:
        return sum(
            REGISTRY.get_sample_value("bff_sql_statements_total", {"dialect": d}) or 0 for d in DIALECTS
        )

    before = total()
    result = await call
    return result, Cost(int(total() - before))


async def test_home_costs_at_most_four_statements_cold_and_one_warm(http: Callable[..., Any]) -> None:
    cold, cold_sql = await counted(http(HOME["query"], HOME["variables"], 11))
    warm, warm_sql = await counted(http(HOME["query"], HOME["variables"], 11))
    assert cold_sql.count <= 4
    assert warm_sql.count <= 1
    assert warm == cold


async def test_home_answers_from_the_cache_match_the_database(
    http: Callable[..., Any], database_url: str
) -> None:
    await http(HOME["query"], HOME["variables"], 7)
    data = await http(HOME["query"], HOME["variables"], 7)  # warm
    db = Database(database_url)
    await db.connect()
    try:
        for edge in data["feed"]["edges"]:
            post = _pk(edge["node"]["id"])
            likes = await db.fetch_val("SELECT count(*) FROM likes WHERE post_id = :p", {"p": post})
            liked = await db.fetch_val(
                "SELECT count(*) FROM likes WHERE post_id = :p AND user_id = 7", {"p": post}
            )
            assert (edge["node"]["likeCount"], edge["node"]["viewerHasLiked"]) == (likes, bool(liked))
        top = await db.fetch_all(
            "SELECT user_id, points FROM scores WHERE game_id = 1 ORDER BY points DESC, user_id ASC LIMIT 10"
        )
        assert [(_pk(e["user"]["id"]), e["points"]) for e in data["leaderboard"]] == [
            (r["user_id"], r["points"]) for r in top
        ]
    finally:
        await db.disconnect()


def _pk(global_id: str) -> int:
    return int(base64.b64decode(global_id).decode().partition(":")[2])


async def test_like_counts_are_right_at_once_after_like_and_unlike(http: Callable[..., Any]) -> None:
    # given a warm Home for two viewers who follow the same author
    home = await http(HOME["query"], HOME["variables"], 7)
    node = next(e["node"] for e in home["feed"]["edges"] if not e["node"]["viewerHasLiked"])
    before = node["likeCount"]
    liker = 7
    # when the viewer likes it
    liked = (await http(LIKE, {"id": node["id"]}, liker))["likePost"]
    assert (liked["likeCount"], liked["viewerHasLiked"]) == (before + 1, True)
    # then Home shows it at once, for the liker and for anyone reading the post
    after = await http(HOME["query"], HOME["variables"], liker)
    again = next(e["node"] for e in after["feed"]["edges"] if e["node"]["id"] == node["id"])
    assert (again["likeCount"], again["viewerHasLiked"]) == (before + 1, True)
    other = await http(
        "query($id: ID!) { node(id: $id) { ... on Post { likeCount viewerHasLiked } } }",
        {"id": node["id"]},
        3,
    )
    assert other["node"] == {"likeCount": before + 1, "viewerHasLiked": False}
    # and unliking takes it back
    unliked = (await http(UNLIKE, {"id": node["id"]}, liker))["unlikePost"]
    assert (unliked["likeCount"], unliked["viewerHasLiked"]) == (before, False)
    after = await http(HOME["query"], HOME["variables"], liker)
    again = next(e["node"] for e in after["feed"]["edges"] if e["node"]["id"] == node["id"])
    assert (again["likeCount"], again["viewerHasLiked"]) == (before, False)


async def test_a_new_best_score_is_on_the_cached_leaderboard_at_once(http: Callable[..., Any]) -> None:
    top = (await http(TOP, {"g": "1"}))["leaderboard"]
    player = 12
    best = top[0]["points"] + 1
    assert (await http(SUBMIT, {"g": "1", "p": best}, player))["submitScore"] == {
        "points": best,
        "improved": True,
    }
    top = (await http(TOP, {"g": "1"}))["leaderboard"]
    assert (top[0]["rank"], top[0]["points"], top[0]["user"]["id"]) == (1, best, to_global_id("User", player))


async def test_a_flushed_redis_refills_the_leaderboard_from_the_database(
    cached_app: Starlette, http: Callable[..., Any]
) -> None:
    before = (await http(TOP, {"g": "2"}))["leaderboard"]
    if cached_app.state.services.settings.redis_url is None:
        pytest.skip("the in-process layer has nothing to flush")
    client = Redis.from_url(cached_app.state.services.settings.redis_url)
    await client.flushdb()
    await client.aclose()
    # the in-process layer still answers (nothing was written: it is not stale)
    local, sql = await counted(http(TOP, {"g": "2"}))
    assert local["leaderboard"] == before and sql.count == 0
    # once it expires, the sorted set is gone too: refilled from the database
    cached_app.state.services.cache.local.drop(("leaderboard", 2))
    again, sql = await counted(http(TOP, {"g": "2"}))
    assert again["leaderboard"] == before
    assert sql.count == 1  # the refill read the top once; the users were still in the local layer
    warm, sql = await counted(http(TOP, {"g": "2"}))
    assert warm["leaderboard"] == before and sql.count == 0


async def test_hits_and_misses_are_counted_in_metrics(http: Callable[..., Any]) -> None:
    await http(HOME["query"], HOME["variables"], 11)
    await http(HOME["query"], HOME["variables"], 11)
    text = (await http.client.get("/metrics")).text  # type: ignore[attr-defined]
    for namespace in ("user", "likes"):
        for result in ("hit", "miss"):
            assert (
                f'bff_cache_requests_total{{layer="local",namespace="{namespace}",result="{result}"}}' in text
            )
    assert "bff_cache_loads_total" in text
