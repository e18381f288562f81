"""Every socket is bounded: a client that stops reading is closed, not buffered for.

Real server processes on real Postgres and Redis. Events are published straight to Redis
(the channel and event shape `sendMessage` uses) to push 10,000 of them quickly.
"""

from __future__ import annotations

import asyncio
import contextlib
import json
import secrets
import socket
import time
from collections.abc import Iterator
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

import psutil
import pytest
import redis.asyncio as redis
import websockets

from realtime import channels
from realtime.lag import stamp
from tests.e2e.test_redis_restart import message_pk, metric, until
from tests.e2e.test_subscriptions_e2e import TRANSPORT_WS, Subscriber, room_member, tokens
from tests.procs import ServerProcess, running_server
from tests.servers import RedisServer

LIGHT_SUBSCRIPTION = "subscription($room: ID!) { messageAdded(roomId: $room) { id body } }"
EVENTS = 10_000
BODY_CHARS = 4_000  # MAX_MESSAGE_CHARS: 10,000 events are ~40 MB of frames per subscriber
FIRST_EVENT_ID = 50_000_000  # above anything stored: messageAdded skips ids it has passed


@pytest.fixture
def server_env(postgres_url: str, redis_server: RedisServer) -> dict[str, str]:
    return {"DATABASE_URL": postgres_url, "REDIS_URL": redis_server.url}


@contextlib.contextmanager
def server(tmp_path: Path, env: dict[str, str], **settings: object) -> Iterator[ServerProcess]:
    with running_server(tmp_path, {**env, **{k.upper(): str(v) for k, v in settings.items()}}) as process:
        yield process


def event(event_id: int, author: int, body: str, published_at: float | None = None) -> bytes:
    """A `chat_room` event as the broker puts it on the wire: stamped now, unless told otherwise
    (realtime/lag.py; `published_at=0` leaves it unstamped, as an older publisher sends it)."""
    message = {
        "id": event_id,
        "room_id": 1,
        "author_id": author,
        "body": body,
        "created_at": datetime.now(UTC).isoformat(),
        "client_message_id": f"limits-{event_id}",
    }
    data = channels.encode({"message": message, "author": None})
    return data if published_at == 0 else stamp(data, time.time() if published_at is None else published_at)


async def subscribe(subscriber: Subscriber, op_id: str = "1") -> None:
    await subscriber.ws.send(
        json.dumps(
            {
                "id": op_id,
                "type": "subscribe",
                "payload": {"query": LIGHT_SUBSCRIPTION, "variables": {"room": "1"}},
            }
        )
    )


async def next_frame(ws: Any, timeout: float = 10) -> dict[str, Any]:
    async with asyncio.timeout(timeout):
        while True:
            frame: dict[str, Any] = json.loads(await ws.recv())
            if frame["type"] not in ("ping", "pong", "ka"):
                return frame


async def closed_with(ws: Any, timeout: float = 10) -> int:
    """Read (and drop) frames until the server closes; its close code."""
    with pytest.raises(websockets.ConnectionClosed) as closed:
        async with asyncio.timeout(timeout):
            while True:
                await ws.recv()
    assert closed.value.rcvd is not None, "closed without a close frame"
    return closed.value.rcvd.code


async def open_raw(srv: ServerProcess, user: int, **kwargs: Any) -> Any:
    ws = await websockets.connect(srv.ws_url, subprotocols=[TRANSPORT_WS], open_timeout=10, **kwargs)  # type: ignore[list-item]
    await ws.send(
        json.dumps({"type": "connection_init", "payload": {"authorization": f"Bearer {tokens.issue(user)}"}})
    )
    return ws


async def test_a_client_that_stops_reading_is_closed_with_1013_and_memory_stays_bounded(
    tmp_path: Path, server_env: dict[str, str], postgres_url: str, redis_server: RedisServer
) -> None:
    member = await room_member(postgres_url)
    publisher = redis.Redis.from_url(redis_server.url)
    next_id = FIRST_EVENT_ID
    with server(tmp_path, server_env, ws_send_queue_size=64) as srv:
        # given: a normal subscriber, and a slow one with a tiny receive buffer, both live
        normal = await Subscriber.open(srv, member)
        await normal.ack()
        await subscribe(normal)
        # A fixed 64 KiB receive buffer (no autotuning) and a one-frame client queue: once the
        # test stops calling recv, the client stops reading the socket and TCP pushes back.
        # (Much smaller buffers make draining crawl on delayed ACKs.)
        tiny = socket.create_connection(("127.0.0.1", srv.port))
        tiny.setsockopt(socket.SOL_SOCKET, socket.SO_RCVBUF, 65536)
        slow_ws = await open_raw(srv, member, sock=tiny, compression=None, max_queue=1, ping_interval=None)
        assert (await next_frame(slow_ws))["type"] == "connection_ack"
        await subscribe(Subscriber(slow_ws))
        async with asyncio.timeout(15):
            seen: set[str] = set()
            while seen != {"normal", "slow"}:
                next_id += 1
                await publisher.publish(channels.chat_room(1), event(next_id, member, "probe"))
                for name, ws in (("normal", normal.ws), ("slow", slow_ws)):
                    with contextlib.suppress(TimeoutError):
                        while name not in seen:
                            frame = await next_frame(ws, timeout=0.3)
                            if frame["payload"]["data"]["messageAdded"]["body"] == "probe":
                                seen.add(name)
        # the slow client reads nothing from here on
        received: list[int] = []

        async def read_normal() -> None:
            while True:
                frame = await next_frame(normal.ws, timeout=30)
                assert frame["type"] == "next", frame
                message = frame["payload"]["data"]["messageAdded"]
                if message["body"] != "probe":
                    received.append(message_pk(message["id"]))

        process = psutil.Process(srv.process.pid)
        rss_before = process.memory_info().rss
        rss_peak = rss_before
        bodies = [secrets.token_hex(BODY_CHARS // 2) for _ in range(50)]  # incompressible
        first = next_id + 1

        # when: 10,000 events are published, paced by the normal subscriber (hub queues hold 1,000)
        async with asyncio.TaskGroup() as group:
            reader = group.create_task(read_normal())
            for start in range(first, first + EVENTS, 250):
                await until(lambda s=start: len(received) >= s - first - 500, 20, "the normal subscriber")
                async with publisher.pipeline(transaction=False) as pipe:
                    for event_id in range(start, min(start + 250, first + EVENTS)):
                        pipe.publish(channels.chat_room(1), event(event_id, member, bodies[event_id % 50]))
                    await pipe.execute()
                rss_peak = max(rss_peak, process.memory_info().rss)
            await until(lambda: len(received) >= EVENTS, 30, "all events on the normal subscriber")
            reader.cancel()
        rss_peak = max(rss_peak, process.memory_info().rss)

        # then: the slow client was closed with 1013 (it sees the code once it reads again) …
        await until(lambda: _closed(srv, "1013"), 10, "the slow consumer to be closed")
        assert await closed_with(slow_ws, timeout=20) == 1013
        # … the normal one got everything, in order, and the server did not buffer for the slow one
        assert received == list(range(first, first + EVENTS))
        published_mb = EVENTS * BODY_CHARS / 2**20
        grown_mb = (rss_peak - rss_before) / 2**20
        # Buffering for the slow client would take ~40 MB. What grows (~12 MB) is mostly graphql-core
        # 3.3.2's per-subscription field cache, which keeps ~1 KB per event executed (not ours).
        assert grown_mb < published_mb / 2, f"RSS grew {grown_mb:.1f} MB for {published_mb:.0f} MB published"
        assert await metric(srv, "bff_fanout_lag_seconds_count") >= EVENTS
        await normal.ws.close()
    await publisher.aclose()


async def _closed(srv: ServerProcess, code: str) -> bool:
    return await metric(srv, f'bff_ws_closes_total{{by="server",code="{code}"}}') >= 1


async def test_a_frame_over_the_size_limit_closes_the_socket_with_1009(
    tmp_path: Path, server_env: dict[str, str], postgres_url: str
) -> None:
    member = await room_member(postgres_url)
    with server(tmp_path, server_env, ws_max_message_bytes=2048) as srv:
        subscriber = await Subscriber.open(srv, member)
        await subscriber.ack()
        await subscriber.ws.send(json.dumps({"type": "ping", "payload": {"pad": "x" * 4096}}))
        assert await closed_with(subscriber.ws) == 1009


async def test_a_socket_that_sends_nothing_is_closed_with_4410_and_pings_keep_it_open(
    tmp_path: Path, server_env: dict[str, str], postgres_url: str
) -> None:
    member = await room_member(postgres_url)
    with server(tmp_path, server_env, ws_idle_timeout_seconds=1) as srv:
        subscriber = await Subscriber.open(srv, member)
        await subscriber.ack()
        # pinging every 0.3 s for 2.5 s (more than the timeout) keeps it open
        loop = asyncio.get_running_loop()
        end = loop.time() + 2.5
        while loop.time() < end:
            await subscriber.ws.send(json.dumps({"type": "ping"}))
            async with asyncio.timeout(5):
                assert json.loads(await subscriber.ws.recv())["type"] == "pong"
            await asyncio.sleep(0.3)  # the client's ping interval (pacing, not synchronisation)
        # silence closes it
        assert await closed_with(subscriber.ws, timeout=5) == 4410


async def test_a_user_over_the_connection_limit_is_closed_with_1008_without_an_ack(
    tmp_path: Path, server_env: dict[str, str], postgres_url: str
) -> None:
    member = await room_member(postgres_url)
    with server(tmp_path, server_env, ws_max_connections_per_user=2) as srv:
        first, second = await Subscriber.open(srv, member), await Subscriber.open(srv, member)
        await first.ack()
        await second.ack()
        third = await Subscriber.open(srv, member)
        with pytest.raises(websockets.ConnectionClosed) as closed:
            await next_frame(third.ws)  # the close comes instead of connection_ack
        assert closed.value.rcvd is not None and closed.value.rcvd.code == 1008
        # a slot is released when a socket closes
        await first.ws.close()
        await until(lambda: _closed_by_client(srv), 10, "the server to see the close")
        fourth = await Subscriber.open(srv, member)
        await fourth.ack()
        assert await metric(srv, "bff_ws_connections") == 2


async def _closed_by_client(srv: ServerProcess) -> bool:
    return await metric(srv, 'bff_ws_closes_total{by="client",code="1000"}') >= 1


async def test_subscriptions_per_connection_are_limited_and_counted_per_field(
    tmp_path: Path, server_env: dict[str, str], postgres_url: str
) -> None:
    member = await room_member(postgres_url)
    with server(tmp_path, server_env, ws_max_subscriptions_per_connection=2) as srv:
        subscriber = await Subscriber.open(srv, member)
        await subscriber.ack()
        await subscribe(subscriber, "1")
        await subscribe(subscriber, "2")
        await subscribe(subscriber, "3")
        frame = await next_frame(subscriber.ws)
        assert frame["type"] == "error" and frame["id"] == "3", frame
        assert frame["payload"][0]["message"] == "Subscription limit reached"
        await until(lambda: _gauge(srv, 'bff_ws_subscriptions{field="messageAdded"}', 2), 10, "the gauge")
        await subscriber.ws.send(json.dumps({"id": "1", "type": "complete"}))
        await until(lambda: _gauge(srv, 'bff_ws_subscriptions{field="messageAdded"}', 1), 10, "the gauge")


async def _gauge(srv: ServerProcess, name: str, value: float) -> bool:
    return await metric(srv, name) == value
