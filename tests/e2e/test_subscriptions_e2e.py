"""Subscriptions through real server processes on real Postgres and Redis.

Two instances share one database and one Redis: a message sent on A reaches a subscriber on B;
a subscriber that resumes with `after` gets what it missed, then live messages, once each.
"""

from __future__ import annotations

import asyncio
import base64
import json
import uuid
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import httpx
import pytest
import websockets

from bff.auth import TokenVerifier
from bff.config import load_settings
from bff.db import Database
from tests.procs import ServerProcess, running_server
from tests.servers import RedisServer

TRANSPORT_WS = "graphql-transport-ws"
LEGACY_WS = "graphql-ws"
SUBSCRIPTION = "subscription($room: ID!, $after: String) { messageAdded(roomId: $room, after: $after) { id body author { handle } } }"
SEND = "mutation($room: ID!, $body: String!, $cid: String!) { sendMessage(roomId: $room, body: $body, clientMessageId: $cid) { id } }"

tokens = TokenVerifier(load_settings())


@pytest.fixture
def two_servers(
    tmp_path: Path, postgres_url: str, redis_server: RedisServer
) -> Iterator[tuple[ServerProcess, ServerProcess]]:
    env = {"DATABASE_URL": postgres_url, "REDIS_URL": redis_server.url}
    with running_server(tmp_path, env, "a") as a, running_server(tmp_path, env, "b") as b:
        yield a, b


async def room_member(database_url: str, room: int = 1) -> int:
    db = Database(database_url)
    await db.connect()
    try:
        return int(
            await db.fetch_val("SELECT min(user_id) FROM room_members WHERE room_id = :r", {"r": room})
        )
    finally:
        await db.disconnect()


async def send(server: ServerProcess, user: int, body: str) -> str:
    async with httpx.AsyncClient(timeout=10) as client:
        response = await client.post(
            f"{server.url}/graphql",
            json={"query": SEND, "variables": {"room": "1", "body": body, "cid": uuid.uuid4().hex}},
            headers={"authorization": f"Bearer {tokens.issue(user)}"},
        )
    payload = response.json()
    assert "errors" not in payload, payload
    return str(payload["data"]["sendMessage"]["id"])


class Subscriber:
    """A graphql-transport-ws client speaking the protocol by hand, to see every frame and close code."""

    def __init__(self, ws: Any) -> None:
        self.ws = ws

    @classmethod
    async def open(cls, server: ServerProcess, user: int | None, protocol: str = TRANSPORT_WS) -> Subscriber:
        ws = await websockets.connect(server.ws_url, subprotocols=[protocol], open_timeout=10)  # type: ignore[list-item]
        init: dict[str, Any] = {"type": "connection_init", "payload": {}}
        if user is not None:
            init["payload"] = {"authorization": f"Bearer {tokens.issue(user)}"}
        await ws.send(json.dumps(init))
        return cls(ws)

    async def ack(self) -> None:
        async with asyncio.timeout(10):
            message = json.loads(await self.ws.recv())
        assert message["type"] == "connection_ack", message

    async def subscribe(self, variables: dict[str, Any], op_id: str = "1") -> None:
        await self.ws.send(
            json.dumps(
                {"id": op_id, "type": "subscribe", "payload": {"query": SUBSCRIPTION, "variables": variables}}
            )
        )

    async def messages(self, count: int) -> list[dict[str, Any]]:
        received: list[dict[str, Any]] = []
        async with asyncio.timeout(15):
            while len(received) < count:
                frame = json.loads(await self.ws.recv())
                if frame["type"] in ("ping", "pong", "ka"):
                    continue
                assert frame["type"] in ("next", "data"), frame
                assert "errors" not in frame["payload"], frame
                received.append(frame["payload"]["data"]["messageAdded"])
        return received


async def listening(subscriber: Subscriber, server: ServerProcess, user: int) -> None:
    """Wait until the subscription is live: send probes until one arrives."""
    async with asyncio.timeout(15):
        while True:
            await send(server, user, "probe")
            try:
                async with asyncio.timeout(0.5):
                    got = await subscriber.messages(1)
                    if got[0]["body"] == "probe":
                        return
            except TimeoutError:
                continue


@pytest.fixture
async def member(postgres_url: str) -> int:
    return await room_member(postgres_url)


async def test_a_message_sent_on_one_instance_reaches_subscribers_on_another(
    two_servers: tuple[ServerProcess, ServerProcess], member: int
) -> None:
    a, b = two_servers
    subscriber = await Subscriber.open(b, member)
    await subscriber.ack()
    await subscriber.subscribe({"room": "1"})
    await listening(subscriber, a, member)
    bodies = [f"hello {i}" for i in range(5)]
    for body in bodies:
        await send(a, member, body)
    received = await subscriber.messages(5)
    assert [m["body"] for m in received] == bodies
    await subscriber.ws.close()


async def test_resuming_with_after_replays_then_goes_live_without_gap_or_duplicate(
    two_servers: tuple[ServerProcess, ServerProcess], member: int
) -> None:
    a, b = two_servers
    last_seen = await send(a, member, "seen before going offline")
    missed = [await send(a, member, f"missed {i}") for i in range(3)]
    subscriber = await Subscriber.open(b, member)
    await subscriber.ack()
    await subscriber.subscribe({"room": "1", "after": last_seen})
    replayed = await subscriber.messages(3)
    assert [m["id"] for m in replayed] == [_global("Message", i) for i in missed]
    live = await send(a, member, "live after replay")
    (got,) = await subscriber.messages(1)
    assert got["id"] == _global("Message", live) and got["body"] == "live after replay"
    await subscriber.ws.close()


async def test_legacy_graphql_ws_protocol_delivers(
    two_servers: tuple[ServerProcess, ServerProcess], member: int
) -> None:
    a, b = two_servers
    subscriber = await Subscriber.open(b, member, LEGACY_WS)
    await subscriber.ack()
    await subscriber.ws.send(
        json.dumps(
            {"id": "1", "type": "start", "payload": {"query": SUBSCRIPTION, "variables": {"room": "1"}}}
        )
    )
    await listening(subscriber, a, member)
    await send(a, member, "legacy")
    (got,) = await subscriber.messages(1)
    assert got["body"] == "legacy"
    await subscriber.ws.close()


async def test_a_bad_token_closes_the_socket_with_4403(
    two_servers: tuple[ServerProcess, ServerProcess],
) -> None:
    _, b = two_servers
    ws = await websockets.connect(b.ws_url, subprotocols=[TRANSPORT_WS], open_timeout=10)  # type: ignore[list-item]
    await ws.send(
        json.dumps({"type": "connection_init", "payload": {"authorization": "Bearer forged.token.here"}})
    )
    with pytest.raises(websockets.ConnectionClosed) as closed:
        async with asyncio.timeout(10):
            await ws.recv()
    assert closed.value.rcvd is not None and closed.value.rcvd.code == 4403


async def test_a_non_member_cannot_subscribe(
    two_servers: tuple[ServerProcess, ServerProcess], postgres_url: str
) -> None:
    _, b = two_servers
    db = Database(postgres_url)
    await db.connect()
    outsider = int(
        await db.fetch_val(
            "SELECT min(id) FROM users WHERE id NOT IN (SELECT user_id FROM room_members WHERE room_id = 1)"
        )
    )
    await db.disconnect()
    subscriber = await Subscriber.open(b, outsider)
    await subscriber.ack()
    await subscriber.subscribe({"room": "1"})
    async with asyncio.timeout(10):
        frame = json.loads(await subscriber.ws.recv())
    # The source stream failed to start: graphql-transport-ws sends the result (`next` with errors).
    assert frame["type"] == "next", frame
    assert frame["payload"]["data"] is None
    assert [e["extensions"]["code"] for e in frame["payload"]["errors"]] == ["FORBIDDEN"]
    await subscriber.ws.close()


def _global(type_name: str, pk: str) -> str:
    return pk if not pk.isdigit() else base64.b64encode(f"{type_name}:{pk}".encode()).decode()
