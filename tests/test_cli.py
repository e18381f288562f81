"""The `bff` command, run as a user runs it: a subprocess with DATABASE_URL in its environment."""

from __future__ import annotations

import base64
import hashlib
import os
import subprocess
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

import asyncpg
import httpx
import jwt
import pytest

from bff import schema_check
from bff.db import Database
from bff.migrate import current_head
from bff.seed import _UNMARKED, SIZES, TABLES
from tests.servers import PostgresServer

ROOT = Path(__file__).resolve().parent.parent
BFF = str(ROOT / ".venv" / "bin" / "bff")
CLI_TIMEOUT = 180

# Rows compared across databases, in a fixed order.
SAMPLE = {
    "users": "SELECT id, handle, display_name, avatar_url, created_at FROM users ORDER BY id",
    "follows": "SELECT follower_id, followee_id FROM follows ORDER BY follower_id, followee_id",
    "posts": "SELECT id, author_id, body, created_at FROM posts ORDER BY id",
    "likes": "SELECT user_id, post_id FROM likes ORDER BY user_id, post_id",
    "scores": "SELECT game_id, user_id, points, updated_at FROM scores ORDER BY game_id, user_id",
    "room_members": "SELECT room_id, user_id FROM room_members ORDER BY room_id, user_id",
    "messages": "SELECT id, room_id, author_id, body, created_at, client_message_id FROM messages ORDER BY id",
}


def bff(*args: str, database_url: str | None = None, **env: str) -> subprocess.CompletedProcess[str]:
    full_env = {**os.environ, **env}
    if database_url is not None:
        full_env["DATABASE_URL"] = database_url
    return subprocess.run(
        [BFF, *args], cwd=ROOT, env=full_env, capture_output=True, text=True, timeout=CLI_TIMEOUT
    )


def ok(result: subprocess.CompletedProcess[str]) -> subprocess.CompletedProcess[str]:
    assert result.returncode == 0, (
        f"exit {result.returncode}\nstdout:\n{result.stdout}\nstderr:\n{result.stderr}"
    )
    return result


async def fresh_postgres(server: PostgresServer, name: str) -> str:
    conn = await asyncpg.connect(server.url)
    try:
        await conn.execute(f"DROP DATABASE IF EXISTS {name} WITH (FORCE)")
        await conn.execute(f"CREATE DATABASE {name}")
    finally:
        await conn.close()
    return server.url_for(name)


async def query(url: str, sql: str) -> list[dict[str, Any]]:
    db = Database(url)
    await db.connect()
    try:
        return [dict(row) for row in await db.fetch_all(sql)]
    finally:
        await db.disconnect()


async def counts(url: str) -> dict[str, int]:
    db = Database(url)
    await db.connect()
    try:
        return {t: int(await db.fetch_val(f"SELECT count(*) FROM {t}")) for t in [*TABLES, "bff_seed"]}
    finally:
        await db.disconnect()


async def unmarked_pages(url: str) -> int:
    db = Database(url)
    await db.connect()
    try:
        return int(await db.fetch_val(_UNMARKED))
    finally:
        await db.disconnect()


def _canonical(value: Any) -> str:
    if isinstance(value, datetime):
        return value.astimezone(UTC).isoformat()
    return repr(value)


async def fingerprints(url: str) -> dict[str, str]:
    """md5 of the ordered rows of each sampled table, the same text on SQLite and Postgres."""
    db = Database(url)
    await db.connect()
    try:
        out = {}
        for table, sql in SAMPLE.items():
            digest = hashlib.md5()
            for row in await db.fetch_all(sql):
                digest.update(("|".join(_canonical(v) for v in row.values()) + "\n").encode())
            out[table] = digest.hexdigest()
        return out
    finally:
        await db.disconnect()


# -- migrate ---------------------------------------------------------------------------------


async def assert_migrated(url: str) -> None:
    version = await query(url, "SELECT version_num FROM alembic_version")
    assert [r["version_num"] for r in version] == [current_head()]
    for table in [*TABLES, "bff_seed"]:
        assert await query(url, f"SELECT count(*) AS n FROM {table}") == [{"n": 0}]


async def test_migrate_a_fresh_sqlite_file(tmp_path: Path) -> None:
    path = tmp_path / "fresh.db"
    url = f"sqlite:///{path}"
    ok(bff("migrate", database_url=url))
    assert path.exists()
    await assert_migrated(url)
    ok(bff("migrate", database_url=url))  # again: nothing to do, no error
    await assert_migrated(url)


async def test_migrate_a_fresh_postgres_database(postgres: PostgresServer) -> None:
    url = await fresh_postgres(postgres, "cli_migrate")
    ok(bff("migrate", database_url=url))
    await assert_migrated(url)
    ok(bff("migrate", database_url=url))
    await assert_migrated(url)


# -- seed ------------------------------------------------------------------------------------


async def test_seed_twice_does_not_duplicate_and_is_deterministic(
    tmp_path: Path, postgres: PostgresServer
) -> None:
    first = f"sqlite:///{tmp_path / 'one.db'}"
    second = f"sqlite:///{tmp_path / 'two.db'}"
    pg = await fresh_postgres(postgres, "cli_seed")

    ok(bff("seed", "--size", "tiny", database_url=first))
    loaded = await counts(first)
    tiny = SIZES["tiny"]
    assert loaded["users"] == tiny["users"] and loaded["posts"] == tiny["posts"]
    assert loaded["likes"] == tiny["likes"] and loaded["bff_seed"] == 1
    assert loaded["messages"] == tiny["rooms"] * tiny["room_messages"]

    again = ok(bff("seed", "--size", "tiny", database_url=first))
    assert "Already seeded" in again.stderr
    assert await counts(first) == loaded

    ok(bff("seed", "--size", "tiny", database_url=second))
    ok(bff("seed", "--size", "tiny", database_url=pg))
    # Its VACUUM marked the feed's tables all-visible: index-only scans stay in the index.
    assert await unmarked_pages(pg) == 0
    ok(bff("seed", "--size", "tiny", database_url=pg))
    assert await counts(second) == loaded
    assert await counts(pg) == loaded

    reference = await fingerprints(first)
    assert await fingerprints(second) == reference
    assert await fingerprints(pg) == reference


async def test_seed_refuses_an_unknown_size(tmp_path: Path) -> None:
    result = bff("seed", "--size", "huge", database_url=f"sqlite:///{tmp_path / 'x.db'}")
    assert result.returncode != 0
    assert "unknown size" in result.stderr + result.stdout


# -- token -----------------------------------------------------------------------------------


async def test_token_is_accepted_by_the_server(client: httpx.AsyncClient) -> None:
    printed = ok(bff("token", "--user", "5")).stdout.strip()
    assert printed.count("\n") == 0
    claims = jwt.decode(printed, options={"verify_signature": False})
    assert claims["sub"] == "5"
    assert claims["exp"] > claims["iat"]
    response = await client.post(
        "/graphql",
        json={"query": "{ viewer { id handle } }"},
        headers={"authorization": f"Bearer {printed}"},
    )
    body = response.json()
    assert response.status_code == 200 and "errors" not in body, body
    assert base64.b64decode(body["data"]["viewer"]["id"]).decode() == "User:5"
    assert body["data"]["viewer"]["handle"] == "user5"


async def test_token_signed_with_another_secret_is_refused(client: httpx.AsyncClient) -> None:
    printed = ok(bff("token", "--user", "5", JWT_SECRET="some-other-secret-entirely")).stdout.strip()
    response = await client.post(
        "/graphql", json={"query": "{ viewer { id } }"}, headers={"authorization": f"Bearer {printed}"}
    )
    assert response.status_code == 401


# -- schema ----------------------------------------------------------------------------------


def test_committed_schema_is_not_stale(tmp_path: Path) -> None:
    """Fails when schema.graphql lags the code: run `bff export-schema` and commit it."""
    output = tmp_path / "schema.graphql"
    ok(bff("export-schema", "--output", str(output)))
    assert output.read_text() == (ROOT / "schema.graphql").read_text()


def test_check_schema_passes_on_this_repository() -> None:
    result = ok(bff("check-schema"))
    assert "no unacknowledged breaking change" in result.stderr


V1 = "type Query {\n  a: Int\n  b: String\n}\n"
V2 = "type Query {\n  a: Int\n}\n"
V3 = "type Query {\n  a: Int\n  c: Boolean\n}\n"


@pytest.fixture
def schema_repo(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Path:
    """A throw-away git repo standing in for ours: schema_check reads history and acks from ROOT."""
    repo = tmp_path / "repo"
    repo.mkdir()
    for name, value in {
        "GIT_AUTHOR_NAME": "t",
        "GIT_AUTHOR_EMAIL": "t@example.com",
        "GIT_COMMITTER_NAME": "t",
        "GIT_COMMITTER_EMAIL": "t@example.com",
        "GIT_CONFIG_GLOBAL": os.devnull,
        "GIT_CONFIG_NOSYSTEM": "1",
    }.items():
        monkeypatch.setenv(name, value)
    subprocess.run(["git", "init", "-q", str(repo)], check=True, timeout=30)
    monkeypatch.setattr(schema_check, "ROOT", repo)
    return repo


def commit_schema(repo: Path, sdl: str, message: str) -> None:
    (repo / schema_check.SDL_FILE).write_text(sdl)
    subprocess.run(["git", "add", schema_check.SDL_FILE], cwd=repo, check=True, timeout=30)
    subprocess.run(["git", "commit", "-q", "-m", message], cwd=repo, check=True, timeout=30)


def acknowledge(repo: Path, change: str, reason: str) -> None:
    (repo / schema_check.ACK_FILE).write_text(f'[[breaking]]\nchange = "{change}"\nreason = "{reason}"\n')


def test_removed_field_in_the_working_tree_is_reported_until_acknowledged(schema_repo: Path) -> None:
    commit_schema(schema_repo, V1, "v1")
    assert [v[1] for v in schema_check.committed_versions()] == [V1]
    assert schema_check.unacknowledged(V1) == []

    found = schema_check.unacknowledged(V2)
    assert [b.description for b in found] == ["Field Query.b was removed."]
    assert found[0].between.endswith("..working tree")

    acknowledge(schema_repo, "Field Query.b was removed.", "")  # a reason is required
    assert [b.description for b in schema_check.unacknowledged(V2)] == ["Field Query.b was removed."]
    acknowledge(schema_repo, "Field Query.b was removed.", "no client has selected b since app 2.3")
    assert schema_check.unacknowledged(V2) == []
    assert [b.description for b in schema_check.breaking_changes(V2)] == ["Field Query.b was removed."]


def test_removed_field_in_history_is_reported(schema_repo: Path) -> None:
    commit_schema(schema_repo, V1, "v1")
    commit_schema(schema_repo, V2, "drop b")
    commit_schema(schema_repo, V3, "add c")  # additions are not breaking
    versions = schema_check.committed_versions()
    assert [sdl for _, sdl in versions] == [V1, V2, V3]
    found = schema_check.unacknowledged(V3)
    assert [(b.between, b.description) for b in found] == [
        (f"{versions[0][0]}..{versions[1][0]}", "Field Query.b was removed.")
    ]
    acknowledge(schema_repo, "Field Query.b was removed.", "b was never released")
    assert schema_check.unacknowledged(V3) == []


def test_breaking_changes_with_crafted_history(monkeypatch: pytest.MonkeyPatch, tmp_path: Path) -> None:
    monkeypatch.setattr(schema_check, "committed_versions", lambda: [("aaaa", V1)])
    monkeypatch.setattr(schema_check, "ROOT", tmp_path)
    changed = "type Query {\n  a: String\n  b: String\n}\n"
    # Int is then unused: only the field's change is reported, not graphql-core's "Standard scalar Int
    # was removed", which no client can notice.
    assert [b.description for b in schema_check.unacknowledged(changed)] == [
        "Field Query.a changed type from Int to String."
    ]
    assert schema_check.unacknowledged(V1) == []
    acknowledge(tmp_path, "Field Query.a changed type from Int to String.", "a holds ids now")
    assert schema_check.unacknowledged(changed) == []
