"""Persisted operations: Apollo's automatic persisted queries (POST and GET), Redis-backed across
instances, trusted documents, and `bff register-operations`.

The wire protocol is checked request by request here, and end to end with Apollo Client's own
persisted-queries link (tests/apollo/run-apq.mjs) against a real server.
"""

from __future__ import annotations

import hashlib
import json
import os
import shutil
import subprocess
import uuid
from collections.abc import Callable
from pathlib import Path
from typing import Any

import httpx
import pytest
import redis.asyncio as redis

from bff.config import Settings
from bff.db import Database
from bff.persisted import ManifestError, PersistedOperations, read_manifest, register
from tests.edge_fixtures import serving
from tests.procs import running_server
from tests.servers import RedisServer

ROOT = Path(__file__).resolve().parent.parent
APOLLO_DIR = Path(__file__).resolve().parent / "apollo"
BFF = str(ROOT / ".venv" / "bin" / "bff")
GRAPHQL_RESPONSE = "application/graphql-response+json"

GAMES = "query Games { games { id name } }"
TOP = 'query Top($n: Int!) { leaderboard(gameId: "1", first: $n) { rank points } }'


def sha(text: str) -> str:
    return hashlib.sha256(text.encode()).hexdigest()


def persisted(text_or_hash: str, *, version: int = 1) -> dict[str, Any]:
    digest = text_or_hash if len(text_or_hash) == 64 and " " not in text_or_hash else sha(text_or_hash)
    return {"persistedQuery": {"version": version, "sha256Hash": digest}}


def codes(response: httpx.Response) -> list[str]:
    return [e["extensions"]["code"] for e in response.json().get("errors", [])]


def not_found(response: httpx.Response) -> None:
    """What Apollo's link retries on: 200, message PersistedQueryNotFound, code PERSISTED_QUERY_NOT_FOUND."""
    assert response.status_code == 200, response.text
    body = response.json()
    assert "data" not in body
    assert body["errors"] == [
        {"message": "PersistedQueryNotFound", "extensions": {"code": "PERSISTED_QUERY_NOT_FOUND"}}
    ]


def games(response: httpx.Response) -> list[dict[str, Any]]:
    assert response.status_code == 200, response.text
    body = response.json()
    assert "errors" not in body, body
    result: list[dict[str, Any]] = body["data"]["games"]
    assert len(result) == 3
    return result


async def post(
    client: httpx.AsyncClient, payload: dict[str, Any], accept: str = GRAPHQL_RESPONSE
) -> httpx.Response:
    return await client.post("/graphql", json=payload, headers={"accept": accept})


async def get(client: httpx.AsyncClient, payload: dict[str, Any]) -> httpx.Response:
    params = {k: json.dumps(v) if isinstance(v, dict) else v for k, v in payload.items()}
    return await client.get("/graphql", params=params, headers={"accept": GRAPHQL_RESPONSE})


# -- automatic persisted queries -----------------------------------------------------------------


@pytest.mark.parametrize("send", [post, get], ids=["POST", "GET"])
async def test_apq_unknown_hash_then_register_then_hash_only(
    client: httpx.AsyncClient, send: Callable[..., Any]
) -> None:
    # given a hash the server has never seen
    not_found(await send(client, {"extensions": persisted(GAMES)}))
    # when the client sends the query with its hash (Apollo's retry)
    first = games(await send(client, {"query": GAMES, "extensions": persisted(GAMES)}))
    # then the hash alone runs it
    assert games(await send(client, {"extensions": persisted(GAMES)})) == first


async def test_apq_learnt_over_post_runs_over_get_with_variables(client: httpx.AsyncClient) -> None:
    payload = {"query": TOP, "operationName": "Top", "variables": {"n": 2}, "extensions": persisted(TOP)}
    assert (await post(client, payload)).status_code == 200
    response = await get(
        client, {"operationName": "Top", "variables": {"n": 3}, "extensions": persisted(TOP)}
    )
    assert response.status_code == 200, response.text
    assert [row["rank"] for row in response.json()["data"]["leaderboard"]] == [1, 2, 3]


async def test_apq_not_found_is_200_for_both_media_types(client: httpx.AsyncClient) -> None:
    for accept in (GRAPHQL_RESPONSE, "application/json"):
        not_found(await post(client, {"extensions": persisted("f" * 64)}, accept))


async def test_apq_hash_mismatch_is_400_and_stores_nothing(client: httpx.AsyncClient) -> None:
    response = await post(client, {"query": GAMES, "extensions": persisted("{ __typename }")})
    assert response.status_code == 400
    assert codes(response) == ["PERSISTED_QUERY_HASH_MISMATCH"]
    assert "data" not in response.json()
    not_found(await post(client, {"extensions": persisted("{ __typename }")}))
    not_found(await post(client, {"extensions": persisted(GAMES)}))


async def test_apq_hash_is_compared_in_either_case(client: httpx.AsyncClient) -> None:
    extensions = {"persistedQuery": {"version": 1, "sha256Hash": sha(GAMES).upper()}}
    games(await post(client, {"query": GAMES, "extensions": extensions}))
    games(await post(client, {"extensions": extensions}))


async def test_apq_invalid_documents_are_not_stored(client: httpx.AsyncClient) -> None:
    bad = "{ nope }"
    response = await post(client, {"query": bad, "extensions": persisted(bad)})
    assert codes(response) == ["GRAPHQL_VALIDATION_FAILED"]
    not_found(await post(client, {"extensions": persisted(bad)}))


@pytest.mark.parametrize(
    "extensions",
    [
        {"persistedQuery": "abc"},
        {"persistedQuery": {"version": 2, "sha256Hash": "a" * 64}},
        {"persistedQuery": {"version": 1}},
        {"persistedQuery": {"version": 1, "sha256Hash": "not-a-hash"}},
        {"persistedQuery": {"version": 1, "sha256Hash": "a" * 10_000}},
    ],
)
async def test_malformed_persisted_query_extensions_are_400(
    client: httpx.AsyncClient, extensions: dict[str, Any]
) -> None:
    response = await post(client, {"extensions": extensions})
    assert response.status_code == 400, response.text
    assert codes(response) == ["BAD_REQUEST"]
    assert len(response.text) < 1000


async def test_without_a_hash_a_missing_query_is_still_400(client: httpx.AsyncClient) -> None:
    response = await post(client, {"extensions": {"other": 1}})
    assert response.status_code == 400 and codes(response) == ["BAD_REQUEST"]


async def test_apq_switched_off_says_not_supported(make_settings: Callable[..., Settings]) -> None:
    async with serving(make_settings(persisted_queries=False)) as client:
        response = await post(client, {"extensions": persisted(GAMES)})
        assert response.status_code == 200
        assert response.json()["errors"][0]["message"] == "PersistedQueryNotSupported"
        assert codes(response) == ["PERSISTED_QUERY_NOT_SUPPORTED"]
        games(await post(client, {"query": GAMES}))


async def test_apq_in_redis_is_shared_by_two_instances(
    make_settings: Callable[..., Settings], redis_server: RedisServer
) -> None:
    # given two instances on one Redis, with a prefix of this test's own
    prefix = f"test-{uuid.uuid4().hex}:apq:"
    settings = make_settings(
        redis_url=redis_server.url, persisted_query_redis_prefix=prefix, persisted_query_ttl_seconds=600
    )
    async with serving(settings) as a, serving(settings) as b:
        # when A learns the query
        not_found(await post(b, {"extensions": persisted(GAMES)}))
        games(await post(a, {"query": GAMES, "extensions": persisted(GAMES)}))
        # then B runs it by hash alone
        games(await post(b, {"extensions": persisted(GAMES)}))
    # and it is stored in Redis under the prefix, with the TTL
    client = redis.Redis.from_url(redis_server.url, decode_responses=True)
    try:
        assert await client.get(prefix + sha(GAMES)) == GAMES
        assert 0 < await client.ttl(prefix + sha(GAMES)) <= 600
    finally:
        await client.aclose()


async def test_apq_survives_a_redis_outage_as_misses(make_settings: Callable[..., Settings]) -> None:
    # given a Redis URL nobody listens on (the broker is not involved: it is memory here)
    settings = make_settings(redis_url="redis://127.0.0.1:1/0")
    db = Database(settings.database_url)
    await db.connect()
    operations = PersistedOperations(settings, db)
    try:
        # then a lookup is a miss, not a failure, and a store is skipped
        with pytest.raises(Exception, match="PersistedQueryNotFound"):
            await operations.document(None, persisted(GAMES), lambda text: text)
        assert await operations.document(GAMES, persisted(GAMES), lambda text: text) == GAMES
    finally:
        await operations.close()
        await db.disconnect()


# -- trusted documents ---------------------------------------------------------------------------


async def registered(database_url: str, *texts: str) -> None:
    db = Database(database_url)
    await db.connect()
    try:
        await register(db, [(sha(t), None, t) for t in texts])
    finally:
        await db.disconnect()


async def test_trusted_documents_run_only_registered_operations(
    make_settings: Callable[..., Settings], database_url: str
) -> None:
    await registered(database_url, GAMES)
    async with serving(make_settings(trusted_documents=True)) as client:
        # registered: by hash, in full, or both
        games(await post(client, {"extensions": persisted(GAMES)}))
        games(await post(client, {"query": GAMES}))
        games(await post(client, {"query": GAMES, "extensions": persisted(GAMES)}))
        games(await get(client, {"extensions": persisted(GAMES)}))
        # anything else is refused, and nothing is learnt from clients
        other = "{ games { id } }"
        for payload in ({"query": other}, {"query": other, "extensions": persisted(other)}):
            response = await post(client, payload)
            assert response.status_code == 400, response.text
            assert codes(response) == ["OPERATION_NOT_TRUSTED"]
        not_found(await post(client, {"extensions": persisted(other)}))
        response = await post(client, {"query": other, "extensions": persisted(GAMES)})
        assert codes(response) == ["PERSISTED_QUERY_HASH_MISMATCH"]


async def test_registered_operations_also_serve_apq_clients(
    client: httpx.AsyncClient, database_url: str
) -> None:
    """A hash registered from a manifest runs on the first request, without Apollo's retry."""
    await registered(database_url, TOP)
    response = await post(client, {"variables": {"n": 1}, "extensions": persisted(TOP)})
    assert response.json()["data"]["leaderboard"][0]["rank"] == 1


def test_manifests_in_apollo_and_map_formats_are_read() -> None:
    apollo = {
        "format": "apollo-persisted-query-manifest",
        "version": 1,
        "operations": [{"id": sha(GAMES), "name": "Games", "type": "query", "body": GAMES}],
    }
    assert read_manifest(apollo) == [(sha(GAMES), "Games", GAMES)]
    assert read_manifest({sha(TOP): TOP}) == [(sha(TOP), None, TOP)]
    for bad in (
        [],
        {"format": "apollo-persisted-query-manifest", "version": 2, "operations": []},
        {"format": "apollo-persisted-query-manifest", "version": 1, "operations": [{"id": "x"}]},
        {sha(GAMES): TOP},
        {"abc": 1},
    ):
        with pytest.raises(ManifestError):
            read_manifest(bad)


def bff(*args: str, database_url: str) -> subprocess.CompletedProcess[str]:
    env = {**os.environ, "DATABASE_URL": database_url}
    return subprocess.run([BFF, *args], cwd=ROOT, env=env, capture_output=True, text=True, timeout=180)


async def test_cli_registers_a_manifest_then_trusted_mode_runs_it(
    make_settings: Callable[..., Settings], database_url: str, tmp_path: Path
) -> None:
    # given an Apollo manifest and a plain map
    apollo = tmp_path / "persisted-query-manifest.json"
    apollo.write_text(
        json.dumps(
            {
                "format": "apollo-persisted-query-manifest",
                "version": 1,
                "operations": [{"id": sha(GAMES), "name": "Games", "type": "query", "body": GAMES}],
            }
        )
    )
    plain = tmp_path / "map.json"
    plain.write_text(json.dumps({sha(TOP): TOP, sha(GAMES): GAMES}))
    # when both are registered (twice: registering is idempotent)
    for manifest in (apollo, plain, plain):
        done = bff("register-operations", str(manifest), database_url=database_url)
        assert done.returncode == 0, done.stderr
    assert "(0 new)" in done.stderr
    # then trusted mode runs them
    async with serving(make_settings(trusted_documents=True)) as client:
        games(await post(client, {"extensions": persisted(GAMES)}))
        response = await post(client, {"variables": {"n": 2}, "extensions": persisted(TOP)})
        assert len(response.json()["data"]["leaderboard"]) == 2


def test_cli_refuses_bad_manifests_and_invalid_operations(database_url: str, tmp_path: Path) -> None:
    invalid = tmp_path / "invalid.json"
    invalid.write_text(json.dumps({sha("{ nope }"): "{ nope }", sha(GAMES): GAMES}))
    done = bff("register-operations", str(invalid), database_url=database_url)
    assert done.returncode == 1 and "nope" in done.stderr and "Nothing registered" in done.stderr
    wrong_hash = tmp_path / "wrong.json"
    wrong_hash.write_text(json.dumps({"0" * 64: GAMES}))
    done = bff("register-operations", str(wrong_hash), database_url=database_url)
    assert done.returncode == 1 and "SHA-256" in done.stderr
    done = bff("register-operations", str(tmp_path / "missing.json"), database_url=database_url)
    assert done.returncode == 1


# -- Apollo Client's own link --------------------------------------------------------------------


def _node() -> str:
    node = shutil.which("node")
    if node is None:
        pytest.fail(
            "`node` is not installed: the Apollo Client test needs Node.js 18+ and npm", pytrace=False
        )
    if not (APOLLO_DIR / "node_modules" / "@apollo" / "client" / "package.json").exists():
        npm = shutil.which("npm")
        assert npm is not None, "npm is not installed"
        done = subprocess.run(
            [npm, "ci", "--no-audit", "--no-fund", "--loglevel=error"],
            cwd=APOLLO_DIR,
            capture_output=True,
            text=True,
            timeout=240,
        )
        assert done.returncode == 0, f"npm ci in {APOLLO_DIR} failed:\n{done.stdout}\n{done.stderr}"
    return node


@pytest.mark.timeout(300)
def test_apollo_clients_persisted_queries_link(tmp_path: Path, sqlite_template: Path) -> None:
    node = _node()
    database = tmp_path / "bff.db"
    shutil.copy(sqlite_template, database)
    with running_server(tmp_path, {"DATABASE_URL": f"sqlite:///{database}"}) as server:
        runs = {}
        for mode in ("post", "get"):
            done = subprocess.run(
                [node, "run-apq.mjs", f"{server.url}/graphql", mode],
                cwd=APOLLO_DIR,
                capture_output=True,
                text=True,
                timeout=120,
            )
            assert done.returncode == 0, f"run-apq.mjs {mode} failed:\n{done.stderr}\n{done.stdout}"
            runs[mode] = json.loads(done.stdout)
        log = server.log()
    for mode, method in (("post", "POST"), ("get", "GET")):
        requests, results = runs[mode]["requests"], runs[mode]["results"]
        hashes = {r["hash"] for r in requests}
        assert len(hashes) == 1 and None not in hashes, requests
        # The first run: hash alone (not found), then hash and query over POST; the second: hash alone.
        assert [(r["method"], r["hasQuery"], r["status"]) for r in requests] == [
            (method, False, 200),
            ("POST", True, 200),
            (method, False, 200),
        ], requests
        for result in results:
            assert result["error"] is None, result
            assert [g["name"] for g in result["data"]["games"]] and all(
                len(g["leaderboard"]) <= 2 for g in result["data"]["games"]
            )
    assert "unhandled_error" not in log, log[-5000:]
