"""What an idle subscribed socket holds: no task but uvicorn's, no timer task, no handshake objects.

bff under uvicorn in this process (with bff's WebSocket protocol, as the Procfile runs it), real
sockets from the `websockets` client; counted, not timed. Memory per socket itself is measured
by bench/fanout.py (docs/benchmarks.md, "Subscriptions fan-out").
"""

from __future__ import annotations

import asyncio
import contextlib
import json
from collections.abc import AsyncIterator, Callable
from pathlib import Path
from typing import Any

import pytest
import uvicorn
import websockets
from prometheus_client import REGISTRY
from starlette.applications import Starlette
from websockets.typing import Subprotocol

from bff.ws_protocol import ReceiveQueue, WebSocketProtocol, Writable
from realtime import channels
from tests.e2e.test_ws_limits import FIRST_EVENT_ID, event
from tests.servers import free_port

SUBSCRIPTION = "subscription($room: ID!) { messageAdded(roomId: $room) { id body } }"
SOCKETS = 20
TRANSPORT_WS = [Subprotocol("graphql-transport-ws")]
CLIENT_LIBRARY = str(Path(websockets.__file__).parent)


@pytest.fixture
async def served(app: Starlette) -> AsyncIterator[uvicorn.Server]:
    port = free_port()
    config = uvicorn.Config(
        app,
        host="127.0.0.1",
        port=port,
        ws=WebSocketProtocol,
        ws_per_message_deflate=False,
        lifespan="off",  # the `app` fixture runs it
        log_level="warning",
    )
    server = uvicorn.Server(config)
    serving = asyncio.create_task(server.serve())
    async with asyncio.timeout(10):
        while not server.started:
            await asyncio.sleep(0.01)
    try:
        yield server
    finally:
        server.should_exit = True
        with contextlib.suppress(BaseException):
            await asyncio.wait_for(serving, 10)


def members() -> float:
    return REGISTRY.get_sample_value("bff_fanout_members") or 0.0


def server_tasks() -> list[str]:
    """Names of the running tasks that are not the test's or the client library's."""
    current = asyncio.current_task()
    names = []
    for task in asyncio.all_tasks():
        coro: Any = task.get_coro()
        module = getattr(getattr(coro, "cr_code", None), "co_filename", "")
        if task is current or module.startswith(CLIENT_LIBRARY):
            continue
        names.append(getattr(coro, "__qualname__", repr(coro)))
    return names


async def test_an_idle_shared_subscription_holds_one_task_and_no_handshake(
    served: uvicorn.Server, app: Starlette, token: Callable[[int], str]
) -> None:
    services = app.state.services
    member = int(await services.db.fetch_val("SELECT min(user_id) FROM room_members WHERE room_id = 1"))
    url = f"ws://127.0.0.1:{served.config.port}/graphql"
    before = server_tasks()
    members_before = members()
    sockets = []
    try:
        # when: SOCKETS sockets subscribe to one room, get a message each, and wait
        for i in range(SOCKETS):
            ws = await websockets.connect(
                url, subprotocols=TRANSPORT_WS, compression=None, ping_interval=None
            )
            sockets.append(ws)
            init = {"type": "connection_init", "payload": {"authorization": f"Bearer {token(member)}"}}
            await ws.send(json.dumps(init))
            assert json.loads(await ws.recv())["type"] == "connection_ack"
            payload = {"query": SUBSCRIPTION, "variables": {"room": "1"}}
            await ws.send(json.dumps({"id": f"s{i}", "type": "subscribe", "payload": payload}))
        async with asyncio.timeout(10):
            while members() - members_before < SOCKETS or any("run_operation" in n for n in server_tasks()):
                await asyncio.sleep(0.01)
        await services.broker.publish(channels.chat_room(1), event(FIRST_EVENT_ID, member, "hello"))
        for ws in sockets:
            async with asyncio.timeout(10):
                frame = json.loads(await ws.recv())
            assert frame["type"] == "next" and frame["payload"]["data"]["messageAdded"]["body"] == "hello"
        # then: each socket holds one task, uvicorn's running the app (plus its group's one task):
        # no task per operation, and the idle and token-expiry timers are not tasks
        added = server_tasks()
        for name in before:
            added.remove(name)
        assert sorted(set(added)) == ["Fanout._run", "WebSocketsSansIOProtocol.run_asgi"], added
        assert added.count("WebSocketsSansIOProtocol.run_asgi") == SOCKETS
        # and uvicorn's protocol keeps neither the handshake nor an asyncio queue and event
        protocols = [c for c in served.server_state.connections if isinstance(c, WebSocketProtocol)]
        assert len(protocols) == SOCKETS
        for protocol in protocols:
            assert "request" not in vars(protocol) and "response" not in vars(protocol)
            assert isinstance(protocol.queue, ReceiveQueue) and isinstance(protocol.writable, Writable)
    finally:
        for ws in sockets:
            await ws.close()


async def test_the_receive_queue_hands_items_in_order_to_its_one_consumer() -> None:
    queue: ReceiveQueue[int] = ReceiveQueue()
    getter = asyncio.create_task(queue.get())
    await asyncio.sleep(0)  # it waits
    queue.put_nowait(1)
    queue.put_nowait(2)
    assert await getter == 1
    assert not queue.empty()
    assert await queue.get() == 2
    assert queue.empty()
    # a consumer cancelled while waiting loses nothing
    cancelled = asyncio.create_task(queue.get())
    await asyncio.sleep(0)
    cancelled.cancel()
    with contextlib.suppress(asyncio.CancelledError):
        await cancelled
    queue.put_nowait(3)
    assert await queue.get() == 3


async def test_writable_blocks_waiters_while_paused_and_a_cancelled_waiter_leaves_the_others() -> None:
    writable = Writable()
    assert writable.is_set() and await writable.wait()
    writable.clear()
    first, second = asyncio.create_task(writable.wait()), asyncio.create_task(writable.wait())
    await asyncio.sleep(0)
    assert not first.done() and not second.done()
    first.cancel()
    with contextlib.suppress(asyncio.CancelledError):
        await first
    assert not second.done()
    writable.set()
    assert await second is True
