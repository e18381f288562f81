"""Batched requests: off by default, bounded and individually limited when on."""

from __future__ import annotations

from collections.abc import AsyncIterator, Callable
from typing import Any

import httpx
import pytest
from asgi_lifespan import LifespanManager

from bff.app import create_app
from bff.config import Settings

LEADERBOARD = '{ leaderboard(gameId: "1", first: 3) { rank } }'
GRAPHQL_RESPONSE = "application/graphql-response+json"


@pytest.fixture
async def batching_client(make_settings: Callable[..., Settings]) -> AsyncIterator[httpx.AsyncClient]:
    app = create_app(make_settings(batch_max_operations=3))
    async with (
        LifespanManager(app),
        httpx.AsyncClient(transport=httpx.ASGITransport(app), base_url="http://bff.test") as client,
    ):
        yield client


async def post(client: httpx.AsyncClient, body: Any) -> httpx.Response:
    return await client.post("/graphql", json=body, headers={"accept": GRAPHQL_RESPONSE})


async def test_batches_are_refused_by_default(client: httpx.AsyncClient) -> None:
    response = await post(client, [{"query": LEADERBOARD}])
    assert response.status_code == 400
    assert response.json()["errors"][0]["extensions"]["code"] == "BATCHING_NOT_ENABLED"


async def test_a_batch_runs_each_operation_in_order(batching_client: httpx.AsyncClient) -> None:
    response = await post(
        batching_client,
        [{"query": LEADERBOARD}, {"query": "{ nope }"}, "not an operation"],
    )
    assert response.status_code == 200
    first, second, third = response.json()
    assert [e["rank"] for e in first["data"]["leaderboard"]] == [1, 2, 3]
    assert second["errors"][0]["extensions"]["code"] == "GRAPHQL_VALIDATION_FAILED"
    assert third["errors"][0]["extensions"]["code"] == "BAD_REQUEST"


@pytest.mark.parametrize("size", [0, 4, 200])
async def test_batches_beyond_the_bound_are_refused(batching_client: httpx.AsyncClient, size: int) -> None:
    response = await post(batching_client, [{"query": LEADERBOARD}] * size)
    assert response.status_code == 400
    assert response.json()["errors"][0]["extensions"]["code"] == "BATCH_TOO_LARGE"


async def test_a_json_key_cannot_smuggle_a_batch(batching_client: httpx.AsyncClient) -> None:
    response = await post(
        batching_client, {"\x00batch": [{"query": LEADERBOARD}], "query": "{ games { id } }"}
    )
    assert response.status_code == 200
    assert "games" in response.json()["data"]
