"""Redis crashes in the middle of a stream: nothing is lost, nothing arrives twice.

Two real server processes share Postgres and a redis-server of their own: A takes
`sendMessage` over HTTP, B has three subscribers. Redis is killed (SIGKILL) while messages
flow and restarted on the same port. Sends keep succeeding meanwhile (stored, publish
failures counted); B's broker reconnects, re-subscribes, and its subscribers refill the gap
from storage. Every subscriber must end up with exactly the room's stored messages, in order.
"""

from __future__ import annotations

import asyncio
import base64
import contextlib
import json
import uuid
from collections.abc import Awaitable, Callable, Iterator
from pathlib import Path

import httpx
import pytest

from bff.db import Database
from tests.e2e.test_subscriptions_e2e import SEND, Subscriber, room_member, tokens
from tests.procs import ServerProcess, running_server
from tests.servers import RedisServer, free_port

SUBSCRIBERS = 3


@pytest.fixture
def own_redis() -> Iterator[RedisServer]:
    """A redis-server this test may kill, on a fixed port it can be restarted on."""
    server = RedisServer.start(free_port())
    yield server
    server.stop()


async def until(condition: Callable[[], bool | Awaitable[bool]], timeout: float, what: str) -> None:
    """Wait for a condition under a deadline (polling: the condition lives in other processes)."""
    try:
        async with asyncio.timeout(timeout):
            while True:
                result = condition()
                if result if isinstance(result, bool) else await result:
                    return
                await asyncio.sleep(0.05)
    except TimeoutError:
        raise AssertionError(f"timed out after {timeout}s waiting for {what}") from None


async def metric(server: ServerProcess, name: str) -> float:
    async with httpx.AsyncClient(timeout=5) as client:
        text = (await client.get(f"{server.url}/metrics")).text
    return sum(float(line.split()[-1]) for line in text.splitlines() if line.startswith(name + " "))


def message_pk(global_id: str) -> int:
    type_name, pk = base64.b64decode(global_id).decode().split(":")
    assert type_name == "Message"
    return int(pk)


async def stored_ids_after(database_url: str, first: int) -> list[int]:
    db = Database(database_url)
    await db.connect()
    try:
        rows = await db.fetch_all(
            "SELECT id FROM messages WHERE room_id = 1 AND id > :f ORDER BY id", {"f": first}
        )
    finally:
        await db.disconnect()
    return [int(r["id"]) for r in rows]


async def collect(subscriber: Subscriber, into: list[int]) -> None:
    while True:
        frame = json.loads(await subscriber.ws.recv())
        if frame["type"] in ("ping", "pong", "ka"):
            continue
        assert frame["type"] == "next", frame
        assert "errors" not in frame["payload"], frame
        into.append(message_pk(frame["payload"]["data"]["messageAdded"]["id"]))


async def test_subscribers_get_every_message_once_in_order_across_a_redis_crash(
    tmp_path: Path, postgres_url: str, own_redis: RedisServer
) -> None:
    # given: A (publishes) and B (3 subscribers, resuming after a first message)
    env = {"DATABASE_URL": postgres_url, "REDIS_URL": own_redis.url}
    member = await room_member(postgres_url)
    headers = {"authorization": f"Bearer {tokens.issue(member)}"}
    sent: list[int] = []

    with running_server(tmp_path, env, "a") as a, running_server(tmp_path, env, "b") as b:
        async with httpx.AsyncClient(base_url=a.url, timeout=10, headers=headers) as http:

            async def send(body: str) -> int:
                variables = {"room": "1", "body": body, "cid": uuid.uuid4().hex}
                response = await http.post("/graphql", json={"query": SEND, "variables": variables})
                payload = response.json()
                assert "errors" not in payload, payload  # succeeds with Redis down too
                return message_pk(payload["data"]["sendMessage"]["id"])

            first = await send("before subscribing")
            received: list[list[int]] = [[] for _ in range(SUBSCRIBERS)]
            subscribers = []
            for _ in range(SUBSCRIBERS):
                subscriber = await Subscriber.open(b, member)
                await subscriber.ack()
                await subscriber.subscribe({"room": "1", "after": str(first)})
                subscribers.append(subscriber)

            stop = asyncio.Event()

            async def keep_sending() -> None:
                while not stop.is_set():
                    sent.append(await send(f"message {len(sent)}"))

            async with asyncio.TaskGroup() as group:
                readers = [
                    group.create_task(collect(s, r)) for s, r in zip(subscribers, received, strict=True)
                ]
                sender = group.create_task(keep_sending())
                await until(lambda: all(len(r) >= 20 for r in received), 20, "live messages on B")

                # when: Redis crashes mid-stream, sends go on, then it comes back on the same port
                own_redis.kill()
                failures = await metric(a, "bff_publish_failures_total")
                await until(
                    lambda: _more(a, "bff_publish_failures_total", failures + 10),
                    20,
                    "sends while Redis is down",
                )
                restarted = RedisServer.start(own_redis.port)
                own_redis.process = restarted.process  # the fixture stops the new one
                await until(lambda: _more(b, "bff_broker_reconnects_total", 1), 20, "B to reconnect")
                after_restart = len(sent)
                await until(lambda: len(sent) >= after_restart + 20, 20, "sends after the restart")
                stop.set()
                await sender
                last = sent[-1]

                # then: every subscriber gets up to the last message
                await until(lambda: all(r and r[-1] >= last for r in received), 30, "the last message on B")
                for reader in readers:
                    reader.cancel()

            for subscriber in subscribers:
                with contextlib.suppress(Exception):
                    await subscriber.ws.close()
            # Shared fan-out (bff/ws_fanout.py) counts the RESYNCs its members get; the hub, its groups.
            resyncs = await metric(b, "bff_hub_resyncs_total") + await metric(b, "bff_fanout_resyncs_total")

    expected = await stored_ids_after(postgres_url, first)
    assert expected[-1] == last and len(expected) == len(sent)
    for ids in received:
        assert ids == expected  # every message, exactly once, in order
    assert resyncs >= SUBSCRIBERS  # the gap was filled from storage, not by luck


async def _more(server: ServerProcess, name: str, at_least: float) -> bool:
    return await metric(server, name) >= at_least
