"""Compression: br > gzip > identity by Accept-Encoding, above COMPRESSION_MIN_BYTES; WebSocket untouched."""

from __future__ import annotations

import gzip
import json
import shutil
from collections.abc import Callable
from pathlib import Path
from typing import Any

import brotli
import httpx
import pytest
from asgi_lifespan import LifespanManager
from starlette.testclient import TestClient

from bff.app import create_app
from bff.compression import choose_encoding
from bff.config import Settings

HOME = json.loads((Path(__file__).parent / "ops" / "home-relay.json").read_text())
# Home (first 20) on the tiny seed, in bytes on the wire; docs/payloads.md records the figures.
# Today: 8,631 plain, 1,889 gzip, 1,835 br. The budgets leave 15-25% room: a regression (a
# field added by mistake, a longer cursor, compression switched off) shows, data drift does not.
HOME_BUDGET = {"identity": 10_000, "gzip": 2_300, "br": 2_200}


@pytest.fixture
def database_url(sqlite_template: Path, tmp_path: Path) -> str:
    path = tmp_path / "bff.db"
    shutil.copy(sqlite_template, path)
    return f"sqlite:///{path}"


def test_the_encoding_follows_accept_encoding_preferring_brotli() -> None:
    assert choose_encoding("gzip, deflate, br") == "br"
    assert choose_encoding("gzip") == "gzip"
    assert choose_encoding("br;q=0.5, gzip") == "gzip"
    assert choose_encoding("br;q=0, gzip;q=0") is None
    assert choose_encoding("*") == "br"
    assert choose_encoding("identity") is None
    assert choose_encoding(None) is None


async def home(gql: Any, encoding: str) -> httpx.Response:
    return await gql(HOME["query"], HOME["variables"], user=7, headers={"accept-encoding": encoding})


@pytest.mark.parametrize("encoding", ["br", "gzip"])
async def test_home_is_compressed_and_decodes_to_the_same_json(gql: Any, encoding: str) -> None:
    plain = await home(gql, "identity")
    packed = await home(gql, f"{encoding}, identity")
    assert "content-encoding" not in plain.headers
    assert packed.headers["content-encoding"] == encoding
    assert "Accept-Encoding" in packed.headers["vary"]
    raw = packed.content  # httpx decodes; the wire size is the header's
    assert int(packed.headers["content-length"]) < len(plain.content) / 3
    assert raw == plain.content
    # A strong validator differs per representation, and still revalidates.
    assert packed.headers["etag"] == plain.headers["etag"][:-1] + f'-{encoding}"'


async def test_home_stays_within_its_byte_budget(gql: Any) -> None:
    sizes = {}
    for encoding in ("identity", "gzip", "br"):
        response = await home(gql, encoding)
        sizes[encoding] = int(response.headers["content-length"])
        assert len(response.json()["data"]["feed"]["edges"]) == 20
    assert all(sizes[e] <= HOME_BUDGET[e] for e in sizes), sizes


async def test_a_small_answer_is_not_compressed(gql: Any) -> None:
    response = await gql("{ __typename }", headers={"accept-encoding": "br, gzip"})
    assert response.status_code == 200
    assert "content-encoding" not in response.headers
    assert "Accept-Encoding" in response.headers["vary"]


async def test_the_threshold_is_a_setting(make_settings: Callable[..., Settings]) -> None:
    app = create_app(make_settings(compression_min_bytes=10))
    async with (
        LifespanManager(app),
        httpx.AsyncClient(transport=httpx.ASGITransport(app), base_url="http://bff.test") as client,
    ):
        response = await client.post(
            "/graphql", json={"query": "{ __typename }"}, headers={"accept-encoding": "gzip"}
        )
    assert response.headers["content-encoding"] == "gzip"
    assert response.json() == {"data": {"__typename": "Query"}}


async def test_raw_bytes_on_the_wire_are_valid_brotli_and_gzip(app: Any) -> None:
    body = json.dumps({"query": HOME["query"], "variables": HOME["variables"]})
    token = app.state.services.tokens.issue(7)
    for encoding, decode in (("br", brotli.decompress), ("gzip", gzip.decompress)):
        messages: list[dict[str, Any]] = []

        async def receive() -> dict[str, Any]:
            return {"type": "http.request", "body": body.encode(), "more_body": False}

        async def send(message: dict[str, Any], sink: list[dict[str, Any]] = messages) -> None:
            sink.append(message)

        scope = {
            "type": "http",
            "asgi": {"version": "3.0"},
            "http_version": "1.1",
            "method": "POST",
            "scheme": "http",
            "path": "/graphql",
            "raw_path": b"/graphql",
            "query_string": b"",
            "root_path": "",
            "headers": [
                (b"content-type", b"application/json"),
                (b"accept-encoding", encoding.encode()),
                (b"authorization", f"Bearer {token}".encode()),
            ],
            "client": ("127.0.0.1", 5000),
            "server": ("bff.test", 80),
        }
        await app(scope, receive, send)
        wire = b"".join(m.get("body", b"") for m in messages if m["type"] == "http.response.body")
        assert json.loads(decode(wire))["data"]["viewer"] is not None


def test_websocket_traffic_is_not_touched(make_settings: Callable[..., Settings]) -> None:
    app = create_app(make_settings(compression_min_bytes=0))
    with (
        TestClient(app) as client,
        client.websocket_connect(
            "/graphql",
            subprotocols=["graphql-transport-ws"],
            headers={"accept-encoding": "br, gzip"},
        ) as ws,
    ):
        ws.send_json({"type": "connection_init"})
        assert ws.receive_json()["type"] == "connection_ack"
