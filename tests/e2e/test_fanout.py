"""Shared fan-out: a message costs the same with 1 subscriber as with 200+ on a room.

Real server processes on real Postgres and Redis: subscribers on B, sendMessage on A. Counted,
not timed: SQL statements on B (`bff_sql_statements_total`), upstream Redis subscriptions
(`PUBSUB NUMSUB`), renderings (`bff_fanout_renders_total`), and every frame every client got.
"""

from __future__ import annotations

import asyncio
import json
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import httpx
import pytest
import redis.asyncio as redis
import websockets

from bff.db import Database
from realtime import channels
from tests.e2e.test_subscriptions_e2e import LEGACY_WS, TRANSPORT_WS, send, tokens
from tests.e2e.test_ws_limits import FIRST_EVENT_ID, event
from tests.procs import ServerProcess, running_server
from tests.servers import RedisServer

SUBSCRIPTION = (
    "subscription($room: ID!) { messageAdded(roomId: $room) { id body createdAt author { id handle } } }"
)
MANY = 210
MESSAGES = 20


@pytest.fixture
def two_servers(
    tmp_path: Path, postgres_url: str, redis_server: RedisServer
) -> Iterator[tuple[ServerProcess, ServerProcess]]:
    # Members repeat across sockets: the tiny dataset has 20 members per room.
    env = {"DATABASE_URL": postgres_url, "REDIS_URL": redis_server.url, "WS_MAX_CONNECTIONS_PER_USER": "100"}
    with running_server(tmp_path, env, "a") as a, running_server(tmp_path, env, "b") as b:
        yield a, b


async def members(database_url: str, room: int = 1) -> list[int]:
    db = Database(database_url)
    await db.connect()
    try:
        rows = await db.fetch_all(
            "SELECT user_id FROM room_members WHERE room_id = :r ORDER BY user_id", {"r": room}
        )
        return [int(r["user_id"]) for r in rows]
    finally:
        await db.disconnect()


async def metric(server: ServerProcess, name: str) -> float:
    """Sum of a metric's samples over its labels."""
    async with httpx.AsyncClient(timeout=5) as client:
        text = (await client.get(f"{server.url}/metrics")).text
    return sum(
        float(line.rsplit(" ", 1)[1])
        for line in text.splitlines()
        if line.startswith((name + " ", name + "{"))
    )


class Client:
    """One raw WebSocket, either protocol, keeping every messageAdded body it receives in order."""

    def __init__(self, ws: Any, protocol: str) -> None:
        self.ws = ws
        self.protocol = protocol
        self.bodies: list[str] = []

    @classmethod
    async def subscribe(cls, server: ServerProcess, user: int, protocol: str = TRANSPORT_WS) -> Client:
        ws = await websockets.connect(server.ws_url, subprotocols=[protocol], open_timeout=10)  # type: ignore[list-item]
        await ws.send(
            json.dumps(
                {"type": "connection_init", "payload": {"authorization": f"Bearer {tokens.issue(user)}"}}
            )
        )
        async with asyncio.timeout(10):
            while (frame := json.loads(await ws.recv()))["type"] == "ka":
                pass
        assert frame["type"] == "connection_ack", frame
        kind = "subscribe" if protocol == TRANSPORT_WS else "start"
        await ws.send(
            json.dumps(
                {"id": "op-1", "type": kind, "payload": {"query": SUBSCRIPTION, "variables": {"room": "1"}}}
            )
        )
        return cls(ws, protocol)

    async def until(self, body: str, timeout: float = 20) -> None:
        """Read frames until a message with this body arrived."""
        async with asyncio.timeout(timeout):
            while body not in self.bodies:
                frame = json.loads(await self.ws.recv())
                if frame["type"] in ("ka", "ping", "pong"):
                    continue
                assert frame["type"] == ("next" if self.protocol == TRANSPORT_WS else "data"), frame
                assert frame["id"] == "op-1"
                assert "errors" not in frame["payload"], frame
                self.bodies.append(frame["payload"]["data"]["messageAdded"]["body"])


async def live(clients: list[Client], a: ServerProcess, sender: int) -> None:
    """Probe until every client received one probe (every subscription is live), then skip probes."""
    for attempt in range(30):
        body = f"probe {attempt}"
        await send(a, sender, body)
        results = await asyncio.gather(*(c.until(body, 2) for c in clients), return_exceptions=True)
        if not any(isinstance(r, BaseException) for r in results):
            break
    else:
        raise AssertionError("subscriptions never went live")
    for client in clients:
        client.bodies.clear()


async def sql_on(server: ServerProcess) -> float:
    return await metric(server, "bff_sql_statements_total")


async def one_message_costs(
    clients: list[Client], a: ServerProcess, b: ServerProcess, sender: int, body: str
) -> tuple[float, float]:
    """(SQL statements, renderings) on B for one sendMessage on A, once every client has it."""
    sql, renders = await sql_on(b), await metric(b, "bff_fanout_renders_total")
    await send(a, sender, body)
    await asyncio.gather(*(c.until(body) for c in clients))
    return await sql_on(b) - sql, await metric(b, "bff_fanout_renders_total") - renders


async def test_one_message_costs_the_same_sql_and_one_redis_subscription_for_1_or_200_subscribers(
    two_servers: tuple[ServerProcess, ServerProcess], postgres_url: str, redis_server: RedisServer
) -> None:
    a, b = two_servers
    room_members = await members(postgres_url)
    sender = room_members[0]
    upstream = redis.Redis.from_url(redis_server.url)
    everyone: list[Client] = []
    try:
        # given: one subscriber on B
        first = await Client.subscribe(b, room_members[0])
        everyone.append(first)
        await live([first], a, sender)
        # when: one message is sent on A
        sql_one, renders_one = await one_message_costs([first], a, b, sender, "to one")
        # then: one rendering, one upstream subscription
        assert renders_one == 1
        assert dict(await upstream.pubsub_numsub(channels.chat_room(1))) == {
            channels.chat_room(1).encode(): 1
        }

        # given: 210 subscribers on B (both protocols, members repeated across sockets)
        for i in range(1, MANY):
            protocol = LEGACY_WS if i % 10 == 0 else TRANSPORT_WS
            everyone.append(await Client.subscribe(b, room_members[i % len(room_members)], protocol))
        await live(everyone, a, sender)
        # when: one message is sent on A
        sql_many, renders_many = await one_message_costs(everyone, a, b, sender, "to many")
        # then: the same SQL and one rendering, still one upstream subscription for the process
        assert sql_many == sql_one
        assert renders_many == 1
        assert dict(await upstream.pubsub_numsub(channels.chat_room(1))) == {
            channels.chat_room(1).encode(): 1
        }
        assert await metric(b, "bff_fanout_groups") == 1

        # when: a burst of messages, then a last one
        for client in everyone:
            client.bodies.clear()
        bodies = [f"burst {i}" for i in range(MESSAGES)]
        for body in bodies:
            await send(a, sender, body)
        await send(a, sender, "last")
        await asyncio.gather(*(c.until("last") for c in everyone))
        # then: every subscriber got every message exactly once, in order
        for client in everyone:
            assert client.bodies == [*bodies, "last"]
    finally:
        await upstream.aclose()
        for client in everyone:
            await client.ws.close()


async def test_different_selections_are_rendered_per_selection_each_with_its_own_answer(
    two_servers: tuple[ServerProcess, ServerProcess], postgres_url: str
) -> None:
    a, b = two_servers
    room_members = await members(postgres_url)
    sender = room_members[0]
    # given: subscribers with the standard selection, and one asking only for the body
    standard = [await Client.subscribe(b, m) for m in room_members[:3]]
    light_ws = await websockets.connect(b.ws_url, subprotocols=[TRANSPORT_WS], open_timeout=10)  # type: ignore[list-item]
    await light_ws.send(
        json.dumps(
            {"type": "connection_init", "payload": {"authorization": f"Bearer {tokens.issue(sender)}"}}
        )
    )
    assert json.loads(await light_ws.recv())["type"] == "connection_ack"
    await light_ws.send(
        json.dumps(
            {
                "id": "light",
                "type": "subscribe",
                "payload": {
                    "query": "subscription($r: ID!) { added: messageAdded(roomId: $r) { body } }",
                    "variables": {"r": "1"},
                },
            }
        )
    )
    await live(standard, a, sender)
    # when: a message is sent
    await send(a, sender, "two shapes")
    await asyncio.gather(*(c.until("two shapes") for c in standard))
    # then: each got the shape it asked for
    async with asyncio.timeout(10):
        while True:
            frame = json.loads(await light_ws.recv())
            if frame["type"] == "next" and frame["payload"]["data"]["added"]["body"] == "two shapes":
                break
    assert frame == {"id": "light", "type": "next", "payload": {"data": {"added": {"body": "two shapes"}}}}
    assert await metric(b, "bff_fanout_groups") == 2
    for client in standard:
        await client.ws.close()
    await light_ws.close()


async def test_a_message_published_after_a_newer_one_is_still_delivered(
    two_servers: tuple[ServerProcess, ServerProcess], postgres_url: str, redis_server: RedisServer
) -> None:
    a, b = two_servers
    room_members = await members(postgres_url)
    clients = [await Client.subscribe(b, m) for m in room_members[:3]]
    await live(clients, a, room_members[0])
    upstream = redis.Redis.from_url(redis_server.url)
    try:
        # when: two senders' publishes cross: the newer message is published first
        newer, older = FIRST_EVENT_ID + 2, FIRST_EVENT_ID + 1
        for event_id in (newer, older):
            await upstream.publish(
                channels.chat_room(1), event(event_id, room_members[0], f"crossed {event_id}")
            )
        # then: both arrive, once each, in publish order
        await asyncio.gather(*(c.until(f"crossed {older}") for c in clients))
        for client in clients:
            assert client.bodies == [f"crossed {newer}", f"crossed {older}"]
    finally:
        await upstream.aclose()
        for client in clients:
            await client.ws.close()
