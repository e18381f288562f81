"""Deadlines: a request past REQUEST_TIMEOUT_MS and a statement past DB_STATEMENT_TIMEOUT_MS are TIMEOUT."""

from __future__ import annotations

import time
from collections.abc import Callable
from typing import Any

import pytest

import resolvers.games
from bff.config import Settings
from tests.edge_fixtures import serving

GAMES = {"query": "{ games { id } }"}


@pytest.fixture
def database_url(postgres_url: str) -> str:
    """Postgres only: pg_sleep makes a statement slow for real."""
    return postgres_url


@pytest.fixture
def slow_games(monkeypatch: pytest.MonkeyPatch) -> None:
    async def slow(ctx: Any) -> list[Any]:
        await ctx.db.fetch_val("SELECT pg_sleep(3)")
        return []

    monkeypatch.setattr(resolvers.games, "list_games", slow)


async def test_a_request_past_its_deadline_is_a_timeout(
    make_settings: Callable[..., Settings], slow_games: None, monkeypatch: pytest.MonkeyPatch
) -> None:
    async with serving(make_settings(request_timeout_ms=200)) as client:
        started = time.monotonic()
        response = await client.post(
            "/graphql", json=GAMES, headers={"accept": "application/graphql-response+json"}
        )
        assert time.monotonic() - started < 2  # not the 3 s of the statement
        # no data: the spec wants a 4xx/5xx with application/graphql-response+json
        assert response.status_code == 504
        body = response.json()
        assert "data" not in body
        assert body["errors"][0]["extensions"] == {"code": "TIMEOUT", "retryable": True}
        assert response.headers["cache-control"] == "no-store"
        # the legacy media type keeps 200 for a well-formed request
        legacy = await client.post("/graphql", json=GAMES, headers={"accept": "application/json"})
        assert legacy.status_code == 200 and legacy.json()["errors"][0]["extensions"]["code"] == "TIMEOUT"
        # and the pool is healthy afterwards: the cancelled statement did not poison a connection
        monkeypatch.undo()
        for _ in range(12):
            ok = await client.post("/graphql", json=GAMES)
            assert ok.status_code == 200 and "errors" not in ok.json(), ok.text


async def test_a_statement_past_the_statement_timeout_is_a_timeout_not_an_internal_error(
    make_settings: Callable[..., Settings], slow_games: None
) -> None:
    async with serving(make_settings(db_statement_timeout_ms=100)) as client:
        response = await client.post(
            "/graphql", json=GAMES, headers={"accept": "application/graphql-response+json"}
        )
        assert response.status_code == 200  # a field error: data is null, as the field is not null
        body = response.json()
        assert body["data"] is None
        assert body["errors"][0]["extensions"] == {"code": "TIMEOUT", "retryable": True}
        assert body["errors"][0]["path"] == ["games"]
