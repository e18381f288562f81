"""SIGTERM drains sockets with 1001; the client resumes on another instance without losing a message."""

from __future__ import annotations

import asyncio
import json
import signal
from pathlib import Path

import pytest
import websockets

from tests.e2e.test_subscriptions_e2e import SUBSCRIPTION, Subscriber, room_member, send
from tests.procs import running_server
from tests.servers import RedisServer


async def test_a_draining_instance_closes_with_1001_and_the_client_resumes_elsewhere(
    tmp_path: Path, postgres_url: str, redis_server: RedisServer
) -> None:
    env = {"DATABASE_URL": postgres_url, "REDIS_URL": redis_server.url}
    member = await room_member(postgres_url)
    with running_server(tmp_path, env, "a") as a, running_server(tmp_path, env, "b") as b:
        subscriber = await Subscriber.open(a, member)
        await subscriber.ack()
        await subscriber.subscribe({"room": "1"})
        # Live once a probe comes through; from then on every message is expected exactly once.
        async with asyncio.timeout(20):
            while True:
                probe = await send(b, member, "probe")
                got = await subscriber.messages(1)
                if got[0]["body"] == "probe" and got[0]["id"] == probe:
                    break
        sent = [await send(b, member, f"before {i}") for i in range(3)]
        received = [m["id"] for m in await subscriber.messages(3)]

        a.process.send_signal(signal.SIGTERM)
        with pytest.raises(websockets.ConnectionClosed) as closed:
            async with asyncio.timeout(20):
                while True:
                    frame = json.loads(await subscriber.ws.recv())
                    if frame["type"] == "next":
                        received.append(frame["payload"]["data"]["messageAdded"]["id"])
        assert closed.value.rcvd is not None and closed.value.rcvd.code == 1001
        assert a.process.wait(30) in (0, -signal.SIGTERM)

        # Messages keep coming while the phone reconnects.
        sent += [await send(b, member, f"during {i}") for i in range(2)]
        resumed = await Subscriber.open(b, member)
        await resumed.ack()
        last = received[-1]
        await resumed.ws.send(
            json.dumps(
                {
                    "id": "1",
                    "type": "subscribe",
                    "payload": {"query": SUBSCRIPTION, "variables": {"room": "1", "after": last}},
                }
            )
        )
        received += [m["id"] for m in await resumed.messages(2)]
        sent += [await send(b, member, f"after {i}") for i in range(2)]
        received += [m["id"] for m in await resumed.messages(2)]
        assert received == sent  # global IDs, in order, each once
        await resumed.ws.close()
