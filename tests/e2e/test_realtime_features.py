"""Leaderboard pushes, typing indicators, room presence and token expiry on sockets.

In-process tests run the schema against the memory broker (SQLite and Postgres); the e2e tests
run two real server processes on one Postgres and one Redis and speak graphql-transport-ws.
"""

from __future__ import annotations

import asyncio
import base64
import contextlib
import json
import signal
import time
from collections.abc import AsyncGenerator, AsyncIterator, Callable, Iterator
from pathlib import Path
from typing import Any

import httpx
import pytest
import redis.asyncio as redis
import websockets
from prometheus_client import REGISTRY
from starlette.applications import Starlette
from strawberry.types import ExecutionResult

from bff.auth import TokenVerifier, Viewer
from bff.config import load_settings
from bff.db import Database
from realtime import channels
from realtime.coalesce import Coalescer
from realtime.memory import MemoryBroker
from resolvers.context import Context
from tests.procs import ServerProcess, running_server
from tests.servers import RedisServer

TRANSPORT_WS = "graphql-transport-ws"
LEADERBOARD = "subscription($game: ID!, $first: Int) { leaderboardUpdated(gameId: $game, first: $first) { rank points user { id handle } } }"
TYPING = "subscription($room: ID!) { typing(roomId: $room) { typing user { id handle } } }"
SET_TYPING = "mutation($room: ID!, $typing: Boolean) { setTyping(roomId: $room, typing: $typing) }"
PRESENCE = (
    "subscription($room: ID!) { roomPresence(roomId: $room) { kind user { id } online { id handle } } }"
)
MESSAGES = "subscription($room: ID!) { messageAdded(roomId: $room) { id } }"
SUBMIT = "mutation($game: ID!, $points: Int!) { submitScore(gameId: $game, points: $points) { improved } }"

tokens = TokenVerifier(load_settings())


def gid(type_name: str, pk: int) -> str:
    return base64.b64encode(f"{type_name}:{pk}".encode()).decode()


async def fetch(database_url: str, sql: str, values: dict[str, Any] | None = None) -> list[dict[str, Any]]:
    db = Database(database_url)
    await db.connect()
    try:
        return await db.fetch_all(sql, values)
    finally:
        await db.disconnect()


async def room_members(database_url: str, room: int, count: int) -> list[int]:
    rows = await fetch(
        database_url,
        "SELECT user_id FROM room_members WHERE room_id = :r ORDER BY user_id LIMIT :n",
        {"r": room, "n": count},
    )
    return [int(r["user_id"]) for r in rows]


async def top(database_url: str, game: int, first: int) -> list[tuple[int, int, str]]:
    rows = await fetch(
        database_url,
        "SELECT user_id, points FROM scores WHERE game_id = :g ORDER BY points DESC, user_id ASC LIMIT :n",
        {"g": game, "n": first},
    )
    return [(i + 1, int(r["points"]), gid("User", int(r["user_id"]))) for i, r in enumerate(rows)]


def entries(push: list[dict[str, Any]]) -> list[tuple[int, int, str]]:
    return [(e["rank"], e["points"], e["user"]["id"]) for e in push]


# ---------------------------------------------------------------------------------------------
# In-process: the schema on the memory broker.


class Live:
    """One in-process subscription, pumped into a queue by a task the test owns."""

    def __init__(self, stream: AsyncGenerator[ExecutionResult, None]) -> None:
        self.results: asyncio.Queue[ExecutionResult] = asyncio.Queue()
        self.task = asyncio.create_task(self._pump(stream))

    async def _pump(self, stream: AsyncGenerator[ExecutionResult, None]) -> None:
        async for result in stream:
            await self.results.put(result)

    async def next(self) -> dict[str, Any]:
        async with asyncio.timeout(5):
            result = await self.results.get()
        assert not result.errors, result.errors
        assert result.data is not None
        return result.data

    async def close(self) -> None:
        self.task.cancel()
        with contextlib.suppress(asyncio.CancelledError):
            await self.task


@pytest.fixture
async def subscribe(app: Starlette) -> AsyncIterator[Callable[..., Any]]:
    services = app.state.services
    opened: list[Live] = []

    async def open_(query: str, variables: dict[str, Any], user: int | None = None) -> Live:
        ctx = Context(
            db=services.db,
            broker=services.broker,
            settings=services.settings,
            tokens=services.tokens,
            presence=services.presence,
            leaderboards=services.leaderboards,
        )
        if user is not None:
            ctx.set_viewer(Viewer(user, time.time() + 3600))
        stream = await services.schema.subscribe(query, variable_values=variables, context_value=ctx)
        assert not isinstance(stream, ExecutionResult), stream
        live = Live(stream)
        opened.append(live)
        return live

    yield open_
    for live in opened:
        await live.close()


def sql_statements(dialect: str) -> float:
    return REGISTRY.get_sample_value("bff_sql_statements_total", {"dialect": dialect}) or 0.0


async def test_the_coalescer_shares_one_load_among_all_watchers_and_ends_a_burst_on_the_latest_state() -> (
    None
):
    # given a feed whose state is a counter, watched by 10 local subscribers
    broker = MemoryBroker()
    coalescer = Coalescer(broker, interval_seconds=0.05)
    state = {"value": 0, "loads": 0}

    async def load() -> int:
        state["loads"] += 1
        return state["value"]

    async with contextlib.AsyncExitStack() as stack:
        watchers = [
            aiter(await stack.enter_async_context(coalescer.watch("k", "chan", load))) for _ in range(10)
        ]
        assert [await anext(w) for w in watchers] == [0] * 10
        assert state["loads"] == 1  # the first watcher's load; the others got its value
        # when 100 changes arrive in a burst
        for i in range(1, 101):
            state["value"] = i
            await broker.publish("chan", b"changed")
            await asyncio.sleep(0)
        # then every watcher ends on the latest state, after far fewer loads than changes
        for w in watchers:
            async with asyncio.timeout(5):
                while await anext(w) != 100:
                    pass
        assert state["loads"] < 20
        assert coalescer.feeds() == 1
    assert coalescer.feeds() == 0
    await coalescer.close()


async def test_leaderboard_updates_cost_the_same_sql_for_one_subscriber_as_for_five(
    app: Starlette, subscribe: Callable[..., Any], database_url: str
) -> None:
    services = app.state.services
    dialect = services.db.dialect
    best = int(await services.db.fetch_val("SELECT max(points) FROM scores WHERE game_id = 1"))
    user = int(await services.db.fetch_val("SELECT min(id) FROM users"))

    async def cost_of_one_change(subscribers: list[Live], points: int) -> float:
        before = sql_statements(dialect)
        await services.db.execute(
            "UPDATE scores SET points = :p WHERE game_id = 1 AND user_id = :u", {"p": points, "u": user}
        )
        await services.broker.publish(channels.leaderboard(1), b"{}")
        pushes = [await s.next() for s in subscribers]
        assert all(entries(p["leaderboardUpdated"])[0][1] == points for p in pushes)
        return sql_statements(dialect) - before - 1  # minus the UPDATE

    # given one subscriber (its first event is the current top)
    first = await subscribe(LEADERBOARD, {"game": "1", "first": 3})
    initial = (await first.next())["leaderboardUpdated"]
    assert entries(initial) == await top(database_url, 1, 3)
    alone = await cost_of_one_change([first], best + 1)
    # when four more subscribe to the same top 3
    others = [await subscribe(LEADERBOARD, {"game": "1", "first": 3}) for _ in range(4)]
    for other in others:
        assert entries((await other.next())["leaderboardUpdated"])[0][1] == best + 1
    together = await cost_of_one_change([first, *others], best + 2)
    # then a change costs the same statements: one read of the top and its users
    assert alone == together == 2


async def test_an_unchanged_top_is_not_pushed_again(
    app: Starlette, subscribe: Callable[..., Any], database_url: str
) -> None:
    services = app.state.services
    live = await subscribe(LEADERBOARD, {"game": "1", "first": 2})
    await live.next()
    # a change event that leaves the top 2 as it was, then one that changes it
    lowest = int(await services.db.fetch_val("SELECT min(user_id) FROM scores WHERE game_id = 1"))
    await services.broker.publish(channels.leaderboard(1), b"{}")  # nothing changed
    best = int(await services.db.fetch_val("SELECT max(points) FROM scores WHERE game_id = 1"))
    await services.db.execute(
        "UPDATE scores SET points = :p WHERE game_id = 1 AND user_id = :u", {"p": best + 5, "u": lowest}
    )
    await services.broker.publish(channels.leaderboard(1), b"{}")
    push = entries((await live.next())["leaderboardUpdated"])
    assert push[0] == (1, best + 5, gid("User", lowest))
    assert live.results.empty()


async def test_typing_reaches_other_members_but_not_the_sender_and_stores_nothing(
    app: Starlette, subscribe: Callable[..., Any], gql: Callable[..., Any], database_url: str
) -> None:
    alice, bob = await room_members(database_url, 1, 2)
    messages_before = int(await app.state.services.db.fetch_val("SELECT count(*) FROM messages"))
    alice_sees = await subscribe(TYPING, {"room": "1"}, alice)
    bob_sees = await subscribe(TYPING, {"room": "1"}, bob)
    await _until_subscribed(app, channels.typing(1), 2)
    # when alice types, then bob stops
    response = await gql(SET_TYPING, {"room": "1", "typing": True}, user=alice)
    assert response.json() == {"data": {"setTyping": True}}
    await gql(SET_TYPING, {"room": "1", "typing": False}, user=bob)
    # then each sees only the other's indicator
    assert (await bob_sees.next())["typing"] == {
        "typing": True,
        "user": {"id": gid("User", alice), "handle": ANY},
    }
    assert (await alice_sees.next())["typing"]["user"]["id"] == gid("User", bob)
    assert alice_sees.results.empty() and bob_sees.results.empty()
    assert int(await app.state.services.db.fetch_val("SELECT count(*) FROM messages")) == messages_before


async def test_a_non_member_can_neither_type_nor_watch_typing(
    app: Starlette, gql: Callable[..., Any], database_url: str
) -> None:
    rows = await fetch(
        database_url,
        "SELECT min(id) AS id FROM users WHERE id NOT IN (SELECT user_id FROM room_members WHERE room_id = 1)",
    )
    outsider = int(rows[0]["id"])
    response = await gql(SET_TYPING, {"room": "1"}, user=outsider)
    assert [e["extensions"]["code"] for e in response.json()["errors"]] == ["FORBIDDEN"]
    services = app.state.services
    ctx = Context(db=services.db, broker=services.broker, settings=services.settings, tokens=services.tokens)
    ctx.set_viewer(Viewer(outsider, time.time() + 60))
    stream = await services.schema.subscribe(TYPING, variable_values={"room": "1"}, context_value=ctx)
    assert not isinstance(stream, ExecutionResult)
    result = await anext(stream)
    assert result.errors and result.errors[0].extensions["code"] == "FORBIDDEN"  # type: ignore[index]


async def test_presence_counts_a_user_once_across_devices_in_process(
    app: Starlette, subscribe: Callable[..., Any], database_url: str
) -> None:
    alice, bob = await room_members(database_url, 2, 2)
    watcher = await subscribe(PRESENCE, {"room": "2"}, alice)
    snapshot = (await watcher.next())["roomPresence"]
    assert snapshot["kind"] == "SNAPSHOT" and snapshot["user"] is None
    assert [u["id"] for u in snapshot["online"]] == [gid("User", alice)]
    # when bob connects twice
    phone = await subscribe(PRESENCE, {"room": "2"}, bob)
    joined = (await watcher.next())["roomPresence"]
    assert joined["kind"] == "JOINED" and joined["user"] == {"id": gid("User", bob)}
    tablet = await subscribe(PRESENCE, {"room": "2"}, bob)
    tablet_snapshot = (await tablet.next())["roomPresence"]
    assert [u["id"] for u in tablet_snapshot["online"]] == [gid("User", alice), gid("User", bob)]
    # then one device leaving keeps him online; the last one leaving is LEFT
    await phone.close()
    assert watcher.results.empty()
    await tablet.close()
    left = (await watcher.next())["roomPresence"]
    assert left["kind"] == "LEFT" and left["user"] == {"id": gid("User", bob)}
    assert [u["id"] for u in left["online"]] == [gid("User", alice)]


async def _until_subscribed(app: Starlette, channel: str, count: int) -> None:
    hub = app.state.services.broker.hub
    async with asyncio.timeout(5):
        while len(hub._channels.get(channel, ())) < count:
            await asyncio.sleep(0.01)


class _Any:
    def __eq__(self, other: object) -> bool:
        return True


ANY = _Any()


# ---------------------------------------------------------------------------------------------
# End to end: two server processes, one Postgres, one Redis.


class Socket:
    """A graphql-transport-ws client speaking the protocol by hand."""

    def __init__(self, ws: Any) -> None:
        self.ws = ws

    @classmethod
    async def open(cls, server: ServerProcess, user: int, ttl_seconds: int | None = None) -> Socket:
        ws = await websockets.connect(server.ws_url, subprotocols=[TRANSPORT_WS], open_timeout=10)  # type: ignore[list-item]
        token = tokens.issue(user, ttl_seconds=ttl_seconds)
        await ws.send(
            json.dumps({"type": "connection_init", "payload": {"authorization": f"Bearer {token}"}})
        )
        socket = cls(ws)
        frame = await socket.frame()
        assert frame["type"] == "connection_ack", frame
        return socket

    async def frame(self, timeout: float = 15) -> dict[str, Any]:
        async with asyncio.timeout(timeout):
            while True:
                frame: dict[str, Any] = json.loads(await self.ws.recv())
                if frame["type"] not in ("ping", "pong"):
                    return frame

    async def subscribe(self, query: str, variables: dict[str, Any], op_id: str = "1") -> None:
        payload = {"query": query, "variables": variables}
        await self.ws.send(json.dumps({"id": op_id, "type": "subscribe", "payload": payload}))

    async def next(self, field: str, timeout: float = 15) -> Any:
        frame = await self.frame(timeout)
        assert frame["type"] == "next" and "errors" not in frame["payload"], frame
        return frame["payload"]["data"][field]

    async def close(self) -> None:
        await self.ws.close()


@pytest.fixture
def env(postgres_url: str, redis_server: RedisServer) -> dict[str, str]:
    return {"DATABASE_URL": postgres_url, "REDIS_URL": redis_server.url, "PRESENCE_TTL_SECONDS": "2"}


@pytest.fixture
def two_servers(tmp_path: Path, env: dict[str, str]) -> Iterator[tuple[ServerProcess, ServerProcess]]:
    with running_server(tmp_path, env, "a") as a, running_server(tmp_path, env, "b") as b:
        yield a, b


@pytest.fixture
async def clean_presence(redis_server: RedisServer) -> None:
    """Presence lives in Redis, shared by the session: start each test from no one online."""
    client = redis.Redis.from_url(redis_server.url)
    try:
        async for key in client.scan_iter("bff:presence:*"):
            await client.delete(key)
    finally:
        await client.aclose()


async def post(server: ServerProcess, user: int, query: str, variables: dict[str, Any]) -> dict[str, Any]:
    async with httpx.AsyncClient(timeout=10) as client:
        response = await client.post(
            f"{server.url}/graphql",
            json={"query": query, "variables": variables},
            headers={"authorization": f"Bearer {tokens.issue(user)}"},
        )
    payload: dict[str, Any] = response.json()
    assert "errors" not in payload, payload
    return payload


async def test_a_burst_of_scores_on_one_instance_reaches_a_subscriber_on_another_coalesced(
    two_servers: tuple[ServerProcess, ServerProcess], postgres_url: str
) -> None:
    a, b = two_servers
    player = int((await fetch(postgres_url, "SELECT min(id) AS id FROM users"))[0]["id"])
    best = int((await fetch(postgres_url, "SELECT max(points) AS p FROM scores WHERE game_id = 1"))[0]["p"])
    watcher = await Socket.open(a, player)
    await watcher.subscribe(LEADERBOARD, {"game": "1", "first": 5})
    # the first event is the current top
    assert entries(await watcher.next("leaderboardUpdated")) == await top(postgres_url, 1, 5)
    # when 20 improving scores are submitted quickly on B
    headers = {"authorization": f"Bearer {tokens.issue(player)}"}
    async with httpx.AsyncClient(base_url=b.url, headers=headers, timeout=10) as client:
        for i in range(1, 21):
            variables = {"game": "1", "points": best + i}
            response = await client.post("/graphql", json={"query": SUBMIT, "variables": variables})
            assert response.json() == {"data": {"submitScore": {"improved": True}}}
    final = await top(postgres_url, 1, 5)
    assert final[0] == (1, best + 20, gid("User", player))
    # then A pushes fewer than 20 times, and the last push is the final top
    pushes = []
    while not pushes or entries(pushes[-1]) != final:
        pushes.append(await watcher.next("leaderboardUpdated"))
    assert 1 <= len(pushes) < 20
    await watcher.close()


async def test_typing_on_one_instance_reaches_members_on_another_and_writes_nothing(
    two_servers: tuple[ServerProcess, ServerProcess], postgres_url: str
) -> None:
    a, b = two_servers
    alice, bob = await room_members(postgres_url, 1, 2)
    messages_before = (await fetch(postgres_url, "SELECT count(*) AS n FROM messages"))[0]["n"]
    alice_sees, bob_sees = await Socket.open(b, alice), await Socket.open(b, bob)
    await alice_sees.subscribe(TYPING, {"room": "1"})
    await bob_sees.subscribe(TYPING, {"room": "1"})
    seen_by_alice: list[dict[str, Any]] = []

    async def until_seen(socket: Socket, typist: int, typing: bool, log: list[dict[str, Any]] | None) -> None:
        """Send from A until the socket on B sees it: the subscription is live."""
        async with asyncio.timeout(15):
            while True:
                await post(a, typist, SET_TYPING, {"room": "1", "typing": typing})
                with contextlib.suppress(TimeoutError):
                    while True:
                        event = await socket.next("typing", timeout=0.5)
                        if log is not None:
                            log.append(event)
                        if event == {"typing": typing, "user": {"id": gid("User", typist), "handle": ANY}}:
                            return

    # given both subscriptions live (alice types until bob sees it; bob stops until alice sees it)
    await until_seen(bob_sees, alice, True, None)
    await until_seen(alice_sees, bob, False, seen_by_alice)
    # when alice types, then bob types, each once more
    await post(a, alice, SET_TYPING, {"room": "1", "typing": True})
    await post(a, bob, SET_TYPING, {"room": "1", "typing": True})
    await until_seen_once(alice_sees, bob, seen_by_alice)
    # then alice never saw her own indicator (hers was published first, on the same channel)
    assert {e["user"]["id"] for e in seen_by_alice} == {gid("User", bob)}
    # and nothing was stored
    assert (await fetch(postgres_url, "SELECT count(*) AS n FROM messages"))[0]["n"] == messages_before
    await alice_sees.close()
    await bob_sees.close()


async def until_seen_once(socket: Socket, typist: int, log: list[dict[str, Any]]) -> None:
    async with asyncio.timeout(15):
        while True:
            event = await socket.next("typing")
            log.append(event)
            if event["typing"] and event["user"]["id"] == gid("User", typist):
                return


def online_ids(event: dict[str, Any]) -> list[str]:
    return [u["id"] for u in event["online"]]


async def test_presence_counts_a_user_once_across_devices_and_instances(
    two_servers: tuple[ServerProcess, ServerProcess], postgres_url: str, clean_presence: None
) -> None:
    a, b = two_servers
    yann, xena, zoe = await room_members(postgres_url, 2, 3)
    watcher = await Socket.open(a, yann)
    await watcher.subscribe(PRESENCE, {"room": "2"})
    snapshot = await watcher.next("roomPresence")
    assert snapshot["kind"] == "SNAPSHOT" and online_ids(snapshot) == [gid("User", yann)]
    # when xena connects from her phone (A) and her tablet (B)
    phone, tablet = await Socket.open(a, xena), await Socket.open(b, xena)
    await phone.subscribe(PRESENCE, {"room": "2"})
    joined = await watcher.next("roomPresence")
    assert joined["kind"] == "JOINED" and joined["user"]["id"] == gid("User", xena)
    await tablet.subscribe(PRESENCE, {"room": "2"})
    tablet_snapshot = await tablet.next("roomPresence")
    # then she is online once
    assert online_ids(tablet_snapshot) == sorted([gid("User", yann), gid("User", xena)], key=_pk)
    # when her phone disconnects, she stays online (the next event is zoe joining, with xena listed)
    await phone.close()
    await _until(lambda: _connections(b, 2, xena), 1)
    late = await Socket.open(a, zoe)
    await late.subscribe(PRESENCE, {"room": "2"})
    after_phone = await watcher.next("roomPresence")
    assert after_phone["kind"] == "JOINED" and after_phone["user"]["id"] == gid("User", zoe)
    assert gid("User", xena) in online_ids(after_phone)
    # when her tablet disconnects too, she has left
    await tablet.close()
    left = await watcher.next("roomPresence")
    assert left["kind"] == "LEFT" and left["user"]["id"] == gid("User", xena)
    assert gid("User", xena) not in online_ids(left)
    for socket in (watcher, late):
        await socket.close()


async def test_members_of_a_killed_instance_go_offline_after_the_ttl(
    tmp_path: Path, env: dict[str, str], postgres_url: str, clean_presence: None
) -> None:
    yann, xena = await room_members(postgres_url, 3, 2)
    with running_server(tmp_path, env, "a") as a, running_server(tmp_path, env, "b") as b:
        watcher = await Socket.open(a, yann)
        await watcher.subscribe(PRESENCE, {"room": "3"})
        await watcher.next("roomPresence")
        phone = await Socket.open(b, xena)
        await phone.subscribe(PRESENCE, {"room": "3"})
        assert (await watcher.next("roomPresence"))["kind"] == "JOINED"
        # when B dies without a word
        b.process.send_signal(signal.SIGKILL)
        b.process.wait(10)
        killed_at = time.monotonic()
        # then A says she left once her entry expired (TTL 2 s, swept every TTL/3)
        left = await watcher.next("roomPresence", timeout=15)
        assert left["kind"] == "LEFT" and left["user"]["id"] == gid("User", xena)
        assert online_ids(left) == [gid("User", yann)]
        assert time.monotonic() - killed_at >= 1.0  # not before the TTL had a chance to run out
        await watcher.close()
        with contextlib.suppress(Exception):
            await phone.ws.close()


async def test_the_socket_closes_with_4403_when_the_token_expires(
    two_servers: tuple[ServerProcess, ServerProcess], postgres_url: str
) -> None:
    a, _ = two_servers
    (member,) = await room_members(postgres_url, 1, 1)
    socket = await Socket.open(a, member, ttl_seconds=2)
    await socket.subscribe(MESSAGES, {"room": "1"})
    with pytest.raises(websockets.ConnectionClosed) as closed:
        async with asyncio.timeout(15):
            while True:
                await socket.ws.recv()
    assert closed.value.rcvd is not None
    assert (closed.value.rcvd.code, closed.value.rcvd.reason) == (4403, "token expired")


def _pk(global_id: str) -> int:
    return int(base64.b64decode(global_id).decode().split(":")[1])


async def _connections(server: ServerProcess, room: int, user: int) -> int:
    client = redis.Redis.from_url(server.env["REDIS_URL"])
    try:
        return int(await client.zcard(f"bff:presence:{{{room}}}:{user}"))
    finally:
        await client.aclose()


async def _until(probe: Callable[[], Any], expected: Any) -> None:
    async with asyncio.timeout(10):
        while await probe() != expected:
            await asyncio.sleep(0.05)
