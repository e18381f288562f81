"""Fixtures: real Postgres and Redis started by the suite, the embedded SQLite default, an app per test.

`database_url` is parametrized: every test using it runs on SQLite and on Postgres. Each test
gets a fresh database cloned from a template that is migrated and seeded (`tiny`) once.
"""

from __future__ import annotations

import itertools
import shutil
from collections.abc import AsyncIterator, Callable, Iterator
from pathlib import Path
from typing import Any

import asyncpg
import httpx
import pytest
from asgi_lifespan import LifespanManager
from starlette.applications import Starlette

from bff.app import create_app
from bff.config import Settings, load_settings
from bff.db import Database
from bff.migrate import upgrade
from bff.row_lists import RowList
from bff.seed import seed
from tests.servers import PostgresServer, RedisServer, run_blocking

TEMPLATE = "bff_template"
_clone_ids = itertools.count()


@pytest.fixture(scope="session")
def postgres() -> Iterator[PostgresServer]:
    server = PostgresServer.start()
    try:
        url = server.url_for(TEMPLATE)

        async def make_template() -> None:
            conn = await asyncpg.connect(server.url)
            await conn.execute(f"CREATE DATABASE {TEMPLATE}")
            await conn.close()

        run_blocking(make_template())
        upgrade(url)

        async def load() -> None:
            db = Database(url)
            await db.connect()
            await seed(db, "tiny")
            await db.disconnect()

        run_blocking(load())
        yield server
    finally:
        server.stop()


@pytest.fixture(scope="session")
def redis_server() -> Iterator[RedisServer]:
    server = RedisServer.start()
    yield server
    server.stop()


@pytest.fixture(scope="session")
def sqlite_template(tmp_path_factory: pytest.TempPathFactory) -> Path:
    path = tmp_path_factory.mktemp("sqlite") / "template.db"
    url = f"sqlite:///{path}"
    upgrade(url)

    async def load() -> None:
        db = Database(url)
        await db.connect()
        await seed(db, "tiny")
        await db.execute("PRAGMA wal_checkpoint(TRUNCATE)")
        await db.disconnect()

    run_blocking(load())
    return path


async def clone_postgres(server: PostgresServer) -> str:
    name = f"test_{next(_clone_ids)}"
    conn = await asyncpg.connect(server.url)
    try:
        await conn.execute(f"DROP DATABASE IF EXISTS {name} WITH (FORCE)")
        await conn.execute(f"CREATE DATABASE {name} TEMPLATE {TEMPLATE}")
    finally:
        await conn.close()
    return server.url_for(name)


@pytest.fixture(params=["sqlite", "postgres"])
async def database_url(request: pytest.FixtureRequest, tmp_path: Path) -> str:
    """A fresh, migrated, seeded database: the embedded SQLite file or real Postgres."""
    if request.param == "sqlite":
        path = tmp_path / "bff.db"
        shutil.copy(request.getfixturevalue("sqlite_template"), path)
        return f"sqlite:///{path}"
    return await clone_postgres(request.getfixturevalue("postgres"))


@pytest.fixture
async def postgres_url(postgres: PostgresServer) -> str:
    """A fresh Postgres database only (tests about Postgres itself)."""
    return await clone_postgres(postgres)


@pytest.fixture
def make_settings(database_url: str) -> Callable[..., Settings]:
    def make(**overrides: Any) -> Settings:
        values: dict[str, Any] = {"database_url": database_url, "log_json": True, "bff_env": "test"}
        values.update(overrides)
        return load_settings(**values)

    return make


@pytest.fixture
async def app(make_settings: Callable[..., Settings]) -> AsyncIterator[Starlette]:
    application = create_app(make_settings())
    async with LifespanManager(application):
        yield application


@pytest.fixture
async def client(app: Starlette) -> AsyncIterator[httpx.AsyncClient]:
    async with httpx.AsyncClient(transport=httpx.ASGITransport(app), base_url="http://bff.test") as c:
        yield c


@pytest.fixture
def token(app: Starlette) -> Callable[[int], str]:
    """A valid bearer token for a user id."""

    def issue(user_id: int) -> str:
        return str(app.state.services.tokens.issue(user_id))

    return issue


@pytest.fixture
def gql(client: httpx.AsyncClient, token: Callable[[int], str]) -> Callable[..., Any]:
    """POST one operation; returns the httpx response. `user=N` signs in as user N."""

    async def post(
        query: str, variables: dict[str, Any] | None = None, *, user: int | None = None, **kwargs: Any
    ) -> httpx.Response:
        headers = dict(kwargs.pop("headers", {}))
        headers.setdefault("accept", "application/graphql-response+json")
        if user is not None:
            headers["authorization"] = f"Bearer {token(user)}"
        return await client.post(
            "/graphql", json={"query": query, "variables": variables or {}}, headers=headers, **kwargs
        )

    return post


@pytest.fixture
def built_row_lists(monkeypatch: pytest.MonkeyPatch) -> list[str]:
    """Names of the types whose RowList built its objects (bff/row_lists.py), one per build, from now on."""
    built: list[str] = []
    real = RowList.objects

    def objects(self: RowList[Any]) -> list[Any]:
        if self._built is None:
            built.append(self.projection.origin.__name__)
        return real(self)

    monkeypatch.setattr(RowList, "objects", objects)
    return built
