"""Rate limits: cost charged per user or per client IP, GCRA, 429 with Retry-After."""

from __future__ import annotations

import ipaddress
from collections.abc import AsyncIterator, Callable
from pathlib import Path

import httpx
import pytest
from asgi_lifespan import LifespanManager
from redis.asyncio import Redis
from starlette.applications import Starlette

from bff.app import create_app
from bff.config import Settings
from bff.edge import Edge
from bff.rate_limit import Limiter, MemoryLimiter, RedisLimiter, client_ip, parse_networks
from schema import schema
from tests.edge_fixtures import fresh_redis_url, sqlite_copy
from tests.servers import RedisServer

ACCEPT = {"accept": "application/graphql-response+json"}
TYPENAME = {"query": "{ __typename }"}


@pytest.fixture
def database_url(sqlite_template: Path, tmp_path: Path) -> str:
    return sqlite_copy(sqlite_template, tmp_path)


@pytest.fixture(params=["memory", "redis"])
async def limiter(request: pytest.FixtureRequest) -> AsyncIterator[Limiter]:
    if request.param == "memory":
        yield MemoryLimiter()
        return
    client = Redis.from_url(await fresh_redis_url(request.getfixturevalue("redis_server")))
    try:
        yield RedisLimiter(client)
    finally:
        await client.aclose()


async def test_a_budget_allows_its_size_at_once_then_refuses_with_the_wait(limiter: Limiter) -> None:
    assert all([(await limiter.charge("ip:a", 1, 5)).allowed for _ in range(5)])
    refused = await limiter.charge("ip:a", 1, 5)
    assert not refused.allowed
    assert 11_000 < refused.retry_after_ms <= 12_000  # one unit comes back every 12 s
    assert refused.retry_after_seconds == 12
    assert (await limiter.charge("ip:b", 1, 5)).allowed  # keys are independent


async def test_cost_is_charged_and_a_cost_above_the_budget_takes_the_whole_budget(limiter: Limiter) -> None:
    assert (await limiter.charge("user:1", 4, 10)).allowed
    assert (await limiter.charge("user:1", 4, 10)).allowed
    assert not (await limiter.charge("user:1", 4, 10)).allowed  # 12 > 10
    assert (await limiter.charge("user:1", 2, 10)).allowed  # 10: exactly the budget
    assert (await limiter.charge("user:2", 500, 10)).allowed  # clamped to 10
    assert not (await limiter.charge("user:2", 1, 10)).allowed


async def test_redis_keys_expire_when_the_budget_is_whole_again(redis_server: RedisServer) -> None:
    client = Redis.from_url(await fresh_redis_url(redis_server))
    try:
        await RedisLimiter(client).charge("ip:x", 3, 60)
        assert 2_000 < await client.pttl("bff:rl:ip:x") <= 3_000
    finally:
        await client.aclose()


async def test_an_unreachable_redis_lets_requests_through() -> None:
    client = Redis.from_url("redis://127.0.0.1:1/0", socket_connect_timeout=0.5)
    try:
        assert (await RedisLimiter(client).charge("ip:x", 1, 1)).allowed
    finally:
        await client.aclose()


def test_x_forwarded_for_is_believed_only_from_trusted_proxies() -> None:
    trusted = parse_networks("10.0.0.0/8, 127.0.0.1")
    headers = [(b"x-forwarded-for", b"203.0.113.9, 198.51.100.7, 10.1.2.3")]
    # from a trusted proxy: the right-most address that is not a proxy
    assert client_ip({"client": ("127.0.0.1", 1), "headers": headers}, trusted) == "198.51.100.7"
    # from anyone else: the peer, whatever the header says
    assert client_ip({"client": ("192.0.2.1", 1), "headers": headers}, trusted) == "192.0.2.1"
    # nothing configured: the peer
    assert client_ip({"client": ("127.0.0.1", 1), "headers": headers}, []) == "127.0.0.1"
    assert parse_networks("") == [] and parse_networks("::1") == [ipaddress.ip_network("::1")]


async def limited_app(settings: Settings) -> AsyncIterator[httpx.AsyncClient]:
    app: Starlette = create_app(settings)
    async with (
        LifespanManager(app),
        httpx.AsyncClient(transport=httpx.ASGITransport(app), base_url="http://bff.test") as client,
    ):
        client.app = app  # type: ignore[attr-defined]
        yield client


async def test_anonymous_requests_are_limited_per_ip_with_429_and_retry_after(
    make_settings: Callable[..., Settings],
) -> None:
    async for client in limited_app(make_settings(rate_limit_per_minute_ip=3)):
        statuses = [
            (await client.post("/graphql", json=TYPENAME, headers=ACCEPT)).status_code for _ in range(3)
        ]
        assert statuses == [200, 200, 200]
        refused = await client.get("/graphql", params=TYPENAME, headers=ACCEPT)
        assert refused.status_code == 429
        assert int(refused.headers["retry-after"]) in range(19, 21)
        error = refused.json()["errors"][0]
        assert error["extensions"]["code"] == "RATE_LIMITED"
        assert error["extensions"]["retryable"] is True
        assert "data" not in refused.json()
        # a signed-in user has a budget of their own
        token = client.app.state.services.tokens.issue(3)  # type: ignore[attr-defined]
        signed_in = await client.post(
            "/graphql", json=TYPENAME, headers={**ACCEPT, "authorization": f"Bearer {token}"}
        )
        assert signed_in.status_code == 200


async def test_users_are_limited_per_user_whatever_their_address(
    make_settings: Callable[..., Settings],
) -> None:
    async for client in limited_app(make_settings(rate_limit_per_minute_user=2)):
        token = client.app.state.services.tokens.issue(4)  # type: ignore[attr-defined]
        headers = {**ACCEPT, "authorization": f"Bearer {token}"}
        statuses = [
            (await client.post("/graphql", json=TYPENAME, headers=headers)).status_code for _ in range(3)
        ]
        assert statuses == [200, 200, 429]


async def test_the_limit_can_be_switched_off(make_settings: Callable[..., Settings]) -> None:
    settings = make_settings(rate_limit_per_minute_ip=1, rate_limit_enabled=False)
    async for client in limited_app(settings):
        for _ in range(3):
            assert (await client.post("/graphql", json=TYPENAME, headers=ACCEPT)).status_code == 200


async def test_the_edge_charges_the_requests_cost_to_the_owners_budget(
    make_settings: Callable[..., Settings],
) -> None:
    # The view passes `scope["state"]["cost"]` (bff/cost.py's static cost, 1 when absent).
    edge = Edge(
        make_settings(rate_limit_per_minute_ip=10, rate_limit_per_minute_user=100), schema._schema, {}
    )
    assert (await edge.charge("ip:z", 6)).allowed
    assert not (await edge.charge("ip:z", 6)).allowed
    assert (await edge.charge("ip:y", "not a number")).allowed  # unusable cost: 1
    assert (await edge.charge("user:1", 60)).allowed  # the user budget applies to user keys
    await edge.close()
