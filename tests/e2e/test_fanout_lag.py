"""`bff_fanout_lag_seconds` measures publish -> send: the publisher's stamp to the frame handed to the socket.

A real server process on real Postgres and Redis; events go through Redis, stamped by a
RedisBroker in this process (as `sendMessage` publishes) or published as raw envelopes (an
old stamp, or none at all, as an older publisher sends).
"""

from __future__ import annotations

import asyncio
import json
import time
from collections.abc import Iterator
from pathlib import Path

import pytest
import redis.asyncio as redis
import websockets

from realtime import channels
from realtime.lag import stamp
from realtime.redis import RedisBroker
from tests.e2e.test_fanout import Client, members, metric
from tests.e2e.test_subscriptions_e2e import TRANSPORT_WS, tokens
from tests.e2e.test_ws_limits import FIRST_EVENT_ID, event
from tests.edge_fixtures import fresh_redis_url
from tests.procs import ServerProcess, running_server
from tests.servers import RedisServer, run_blocking

TYPING = "subscription($room: ID!) { typing(roomId: $room) { typing user { id } } }"
LAG = "bff_fanout_lag_seconds"
NOW = "2026-11-25T12:00:00+00:00"


@pytest.fixture
def redis_url(redis_server: RedisServer) -> str:
    return run_blocking(fresh_redis_url(redis_server))


@pytest.fixture
def server(tmp_path: Path, postgres_url: str, redis_url: str) -> Iterator[ServerProcess]:
    env = {"DATABASE_URL": postgres_url, "REDIS_URL": redis_url, "WS_MAX_CONNECTIONS_PER_USER": "100"}
    with running_server(tmp_path, env) as process:
        yield process


async def lag(server: ServerProcess) -> tuple[float, float]:
    """(count, sum) of the lag histogram."""
    return await metric(server, f"{LAG}_count"), await metric(server, f"{LAG}_sum")


async def typing_subscriber(server: ServerProcess, user: int) -> websockets.ClientConnection:
    ws = await websockets.connect(server.ws_url, subprotocols=[TRANSPORT_WS], open_timeout=10)  # type: ignore[list-item]
    init = {"type": "connection_init", "payload": {"authorization": f"Bearer {tokens.issue(user)}"}}
    await ws.send(json.dumps(init))
    assert json.loads(await ws.recv())["type"] == "connection_ack"
    subscribe = {"id": "t", "type": "subscribe", "payload": {"query": TYPING, "variables": {"room": "1"}}}
    await ws.send(json.dumps(subscribe))
    return ws


async def next_typing(ws: websockets.ClientConnection) -> dict[str, object]:
    async with asyncio.timeout(10):
        while True:
            frame = json.loads(await ws.recv())
            if frame["type"] == "next":
                return dict(frame["payload"]["data"]["typing"])


async def test_lag_is_observed_once_per_frame_sent_from_the_publish_stamp_through_redis(
    server: ServerProcess, postgres_url: str, redis_url: str
) -> None:
    # given: three sockets on one shared messageAdded group, all live
    room = await members(postgres_url)
    clients = [await Client.subscribe(server, m) for m in room[:3]]
    upstream = redis.Redis.from_url(redis_url)
    broker = RedisBroker(redis_url)
    await broker.start()
    next_id = FIRST_EVENT_ID
    try:
        for attempt in range(30):
            next_id += 1
            await upstream.publish(channels.chat_room(1), event(next_id, room[0], f"probe {attempt}"))
            done = await asyncio.gather(
                *(c.until(f"probe {attempt}", 2) for c in clients), return_exceptions=True
            )
            if not any(isinstance(r, BaseException) for r in done):
                break
        count, total = await lag(server)

        # when: an event published through the broker (stamped now)
        next_id += 1
        await broker.publish(channels.chat_room(1), event(next_id, room[0], "fresh", published_at=0))
        await asyncio.gather(*(c.until("fresh") for c in clients))
        # then: one observation per frame sent, each at least 0 and well below a second
        fresh_count, fresh_total = await lag(server)
        assert fresh_count - count == len(clients)
        assert 0 <= fresh_total - total < len(clients) * 1.0

        # when: an envelope whose publish stamp is 5 s old
        next_id += 1
        await upstream.publish(channels.chat_room(1), event(next_id, room[0], "old", time.time() - 5))
        await asyncio.gather(*(c.until("old") for c in clients))
        # then: each frame's observation is its age since publishing, 5 s or more
        old_count, old_total = await lag(server)
        assert old_count - fresh_count == len(clients)
        assert old_total - fresh_total >= 5 * len(clients)
        assert await metric(server, f'{LAG}_bucket{{le="2.5"}}') == fresh_count  # none of them under 5 s

        # when: an envelope without a stamp (an older publisher)
        next_id += 1
        await upstream.publish(channels.chat_room(1), event(next_id, room[0], "unstamped", published_at=0))
        # then: it is delivered as before, and not observed
        await asyncio.gather(*(c.until("unstamped") for c in clients))
        assert await lag(server) == (old_count, old_total)
    finally:
        await broker.close()
        await upstream.aclose()
        for client in clients:
            await client.ws.close()


async def test_the_per_subscriber_path_observes_its_frames_too(
    server: ServerProcess, postgres_url: str, redis_url: str
) -> None:
    # given: a typing subscriber (strawberry's per-subscriber path), live
    room = await members(postgres_url)
    watcher, typist = room[0], room[1]
    ws = await typing_subscriber(server, watcher)
    upstream = redis.Redis.from_url(redis_url)
    user = {"id": typist, "handle": "h", "display_name": "d", "avatar_url": None, "created_at": NOW}
    try:
        async with asyncio.timeout(20):
            while True:
                await upstream.publish(channels.typing(1), channels.encode({"user": user, "typing": False}))
                try:
                    async with asyncio.timeout(1):
                        await next_typing(ws)
                    break
                except TimeoutError:
                    continue
        count, total = await lag(server)
        # when: a typing event stamped 5 s ago goes through Redis
        typing = channels.encode({"user": user, "typing": True})
        await upstream.publish(channels.typing(1), stamp(typing, time.time() - 5))
        assert (await next_typing(ws))["typing"] is True
        # then: its one frame is observed, 5 s or more after its publish
        after_count, after_total = await lag(server)
        assert after_count - count == 1
        assert after_total - total >= 5
    finally:
        await upstream.aclose()
        await ws.close()
