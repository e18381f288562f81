"""GraphQL over WebSocket on /graphql against a real server process, rule by rule, with raw frames.

`graphql-transport-ws`: one test per rule of graphql-ws's PROTOCOL.md (close codes 4400, 4401,
4403, 4408, 4409, 4429, ping/pong, client `complete`, `error`, single-result operations).
The legacy `graphql-ws` subprotocol: subscriptions-transport-ws's PROTOCOL.md (`connection_ack`
then `ka`, `start`/`data`/`stop`/`complete`, `error`, `connection_terminate`).
Auth on the socket: the token comes in `connection_init` or on the upgrade request.
"""

from __future__ import annotations

import asyncio
import json
import shutil
import sqlite3
import uuid
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import httpx
import pytest
import websockets

from bff.auth import TokenVerifier
from bff.config import load_settings
from tests.procs import ServerProcess, running_server

TRANSPORT_WS = "graphql-transport-ws"
LEGACY_WS = "graphql-ws"
INIT_TIMEOUT_S = 1.0
ROOM = "1"
SUBSCRIPTION = "subscription($room: ID!) { messageAdded(roomId: $room) { id body author { handle } } }"
SEND = "mutation($room: ID!, $body: String!, $cid: String!) { sendMessage(roomId: $room, body: $body, clientMessageId: $cid) { id } }"

tokens = TokenVerifier(load_settings())


def start_sqlite_server(tmp_dir: Path, template: Path, name: str) -> tuple[Path, dict[str, str]]:
    database = tmp_dir / f"{name}.db"
    shutil.copy(template, database)
    return database, {
        "DATABASE_URL": f"sqlite:///{database}",
        "WS_CONNECTION_INIT_TIMEOUT_SECONDS": str(INIT_TIMEOUT_S),
    }


def room_member(database: Path, room: int = 1) -> int:
    with sqlite3.connect(database) as conn:
        (user,) = conn.execute("SELECT min(user_id) FROM room_members WHERE room_id = ?", (room,)).fetchone()
    return int(user)


@pytest.fixture(scope="module")
def server_and_member(
    tmp_path_factory: pytest.TempPathFactory, sqlite_template: Path
) -> Iterator[tuple[ServerProcess, int]]:
    tmp_dir = tmp_path_factory.mktemp("ws-protocol")
    database, env = start_sqlite_server(tmp_dir, sqlite_template, "ws-protocol")
    with running_server(tmp_dir, env, "ws-protocol") as server:
        yield server, room_member(database)


@pytest.fixture
def server(server_and_member: tuple[ServerProcess, int]) -> ServerProcess:
    return server_and_member[0]


@pytest.fixture
def member(server_and_member: tuple[ServerProcess, int]) -> int:
    return server_and_member[1]


def bearer(user: int) -> str:
    return f"Bearer {tokens.issue(user)}"


async def send_message(server: ServerProcess, user: int, body: str) -> str:
    """sendMessage over HTTP; returns the new message's id."""
    async with httpx.AsyncClient(timeout=10) as client:
        response = await client.post(
            f"{server.url}/graphql",
            json={"query": SEND, "variables": {"room": ROOM, "body": body, "cid": uuid.uuid4().hex}},
            headers={"authorization": bearer(user)},
        )
    payload = response.json()
    assert "errors" not in payload, payload
    return str(payload["data"]["sendMessage"]["id"])


# A raw client: every frame and close code visible.


async def connect(
    server: ServerProcess, protocol: str | None = TRANSPORT_WS, headers: dict[str, str] | None = None
) -> Any:
    return await websockets.connect(
        server.ws_url,
        subprotocols=[protocol] if protocol else None,  # type: ignore[list-item]
        additional_headers=headers,
        open_timeout=10,
    )


async def send(ws: Any, message: dict[str, Any]) -> None:
    await ws.send(json.dumps(message))


async def recv(ws: Any, timeout: float = 10, skip: tuple[str, ...] = ()) -> dict[str, Any]:
    async with asyncio.timeout(timeout):
        while True:
            message: dict[str, Any] = json.loads(await ws.recv())
            if message["type"] not in skip:
                return message


async def nothing_more(ws: Any, seconds: float, skip: tuple[str, ...] = ()) -> None:
    """No frame (but `skip`ped ones) arrives for a while, and the socket stays open."""
    try:
        message = await recv(ws, seconds, skip)
    except TimeoutError:
        return
    raise AssertionError(f"unexpected frame: {message}")


async def closed_with(ws: Any, timeout: float = 10) -> tuple[int, str]:
    """Read until the server closes the socket; its close code and reason."""
    with pytest.raises(websockets.ConnectionClosed) as closed:
        async with asyncio.timeout(timeout):
            while True:
                await ws.recv()
    frame = closed.value.rcvd
    assert frame is not None, "the connection dropped without a close frame"
    return frame.code, frame.reason


async def acknowledged(server: ServerProcess, user: int | None, protocol: str = TRANSPORT_WS) -> Any:
    """A socket past connection_init/connection_ack, signed in as `user` (None: anonymous)."""
    ws = await connect(server, protocol)
    await send(ws, {"type": "connection_init", "payload": {"authorization": bearer(user)} if user else {}})
    ack = await recv(ws, skip=("ka",))
    assert ack["type"] == "connection_ack", ack
    return ws


async def live(ws: Any, server: ServerProcess, user: int, op_id: str, data_type: str = "next") -> None:
    """Wait until the subscription `op_id` delivers: send probes until one arrives."""
    async with asyncio.timeout(15):
        while True:
            await send_message(server, user, "probe")
            try:
                message = await recv(ws, 0.5, skip=("ka", "ping", "pong"))
            except TimeoutError:
                continue
            assert message["type"] == data_type and message["id"] == op_id, message
            assert message["payload"]["data"]["messageAdded"]["body"] == "probe", message
            # Later probes may still be on their way: drain them.
            while True:
                try:
                    await recv(ws, 0.3, skip=("ka", "ping", "pong"))
                except TimeoutError:
                    return


def subscribe(
    op_id: str, query: str = SUBSCRIPTION, variables: dict[str, Any] | None = None
) -> dict[str, Any]:
    return {
        "id": op_id,
        "type": "subscribe",
        "payload": {"query": query, "variables": {"room": ROOM} if variables is None else variables},
    }


# graphql-transport-ws: the handshake.


@pytest.mark.parametrize("protocols", [["graphql-foo"], None], ids=["unknown", "none"])
async def test_a_subprotocol_other_than_the_two_is_refused(
    server: ServerProcess, protocols: list[str] | None
) -> None:
    try:
        ws = await websockets.connect(server.ws_url, subprotocols=protocols, open_timeout=10)  # type: ignore[arg-type]
    except websockets.InvalidHandshake:
        return  # refused at the upgrade
    assert ws.subprotocol is None
    code, reason = await closed_with(ws)
    assert (code, reason) == (4406, "Subprotocol not acceptable")


async def test_both_subprotocols_are_offered_and_the_client_choice_is_kept(server: ServerProcess) -> None:
    for protocol in (TRANSPORT_WS, LEGACY_WS):
        ws = await connect(server, protocol)
        assert ws.subprotocol == protocol
        await ws.close()


# graphql-transport-ws: invalid messages close with 4400.

INVALID_MESSAGES: dict[str, str | bytes] = {
    "not json": "{not json",
    "binary frame": b'{"type": "ping"}',
    "unknown type": json.dumps({"type": "hello"}),
    "no type": json.dumps({"payload": {}}),
    "server-only type next": json.dumps({"id": "1", "type": "next", "payload": {}}),
    "server-only type connection_ack": json.dumps({"type": "connection_ack"}),
    "not an object": json.dumps(["connection_init"]),
    "a bare string": json.dumps("connection_init"),
    "init payload not an object": json.dumps({"type": "connection_init", "payload": "token"}),
    "ping payload not an object": json.dumps({"type": "ping", "payload": [1]}),
    "type not a string": json.dumps({"type": 1}),
}


@pytest.mark.parametrize("frame", list(INVALID_MESSAGES.values()), ids=list(INVALID_MESSAGES))
async def test_an_invalid_message_closes_with_4400(server: ServerProcess, frame: str | bytes) -> None:
    ws = await connect(server)
    await ws.send(frame)
    code, _ = await closed_with(ws, timeout=INIT_TIMEOUT_S / 2)  # immediately, not at the init timeout
    assert code == 4400


INVALID_SUBSCRIBES: dict[str, dict[str, Any]] = {
    "no id": {"type": "subscribe", "payload": {"query": "{ __typename }"}},
    "empty id": {"id": "", "type": "subscribe", "payload": {"query": "{ __typename }"}},
    "no payload": {"id": "1", "type": "subscribe"},
    "payload without query": {"id": "1", "type": "subscribe", "payload": {}},
    "payload not an object": {"id": "1", "type": "subscribe", "payload": "{ __typename }"},
    "id not a string": {"id": 1, "type": "subscribe", "payload": {"query": "{ __typename }"}},
    "query not a string": {"id": "1", "type": "subscribe", "payload": {"query": 42}},
    "variables not an object": {
        "id": "1",
        "type": "subscribe",
        "payload": {"query": "{ __typename }", "variables": [1]},
    },
    "operationName not a string": {
        "id": "1",
        "type": "subscribe",
        "payload": {"query": "{ __typename }", "operationName": 1},
    },
    "complete without id": {"type": "complete"},
    "syntax error": {"id": "1", "type": "subscribe", "payload": {"query": "{ __typename"}},
}


@pytest.mark.parametrize("message", list(INVALID_SUBSCRIBES.values()), ids=list(INVALID_SUBSCRIBES))
async def test_a_malformed_operation_message_closes_with_4400(
    server: ServerProcess, member: int, message: dict[str, Any]
) -> None:
    ws = await acknowledged(server, member)
    await send(ws, message)
    code, _ = await closed_with(ws, timeout=5)
    assert code == 4400


# graphql-transport-ws: connection_init, auth, 4401, 4403, 4408, 4429.


async def test_subscribe_before_connection_init_closes_with_4401(server: ServerProcess) -> None:
    ws = await connect(server)
    await send(ws, subscribe("1", "{ __typename }"))
    assert await closed_with(ws, timeout=INIT_TIMEOUT_S / 2) == (4401, "Unauthorized")


@pytest.mark.parametrize(
    "payload",
    [
        {"authorization": "Bearer forged.token.here"},
        {"authorization": "Basic dXNlcjpwYXNz"},
        {"Authorization": "Bearer not-a-jwt"},
        {"authorization": 42},
    ],
    ids=["forged", "not bearer", "capitalised key", "not a string"],
)
async def test_a_bad_token_in_connection_init_closes_with_4403(
    server: ServerProcess, payload: dict[str, Any]
) -> None:
    ws = await connect(server)
    await send(ws, {"type": "connection_init", "payload": payload})
    assert await closed_with(ws) == (4403, "Forbidden")


async def test_an_expired_token_in_connection_init_closes_with_4403(
    server: ServerProcess, member: int
) -> None:
    ws = await connect(server)
    expired = tokens.issue(member, ttl_seconds=-60)
    await send(ws, {"type": "connection_init", "payload": {"authorization": f"Bearer {expired}"}})
    assert await closed_with(ws) == (4403, "Forbidden")


@pytest.mark.parametrize("init", [{"type": "connection_init"}, {"type": "connection_init", "payload": None}])
async def test_connection_init_payload_may_be_missing_or_null(
    server: ServerProcess, init: dict[str, Any]
) -> None:
    ws = await connect(server)
    await send(ws, init)
    assert (await recv(ws))["type"] == "connection_ack"
    await ws.close()


async def test_the_token_in_connection_init_signs_the_socket_in(server: ServerProcess, member: int) -> None:
    ws = await acknowledged(server, member)
    await send(ws, subscribe("q", "{ viewer { id } }", {}))
    message = await recv(ws)
    assert message["type"] == "next" and message["id"] == "q", message
    assert message["payload"]["data"]["viewer"] is not None
    assert (await recv(ws)) == {"id": "q", "type": "complete"}
    await ws.close()


async def test_without_a_token_the_socket_is_anonymous(server: ServerProcess) -> None:
    ws = await acknowledged(server, None)
    await send(ws, subscribe("q", "{ viewer { id } }", {}))
    message = await recv(ws)
    assert message["type"] == "next" and message["payload"]["data"] == {"viewer": None}, message
    assert [e["extensions"]["code"] for e in message["payload"]["errors"]] == ["UNAUTHENTICATED"]
    assert (await recv(ws)) == {"id": "q", "type": "complete"}
    await ws.close()


async def test_a_token_on_the_upgrade_request_is_accepted(server: ServerProcess, member: int) -> None:
    ws = await connect(server, headers={"Authorization": bearer(member)})
    await send(ws, {"type": "connection_init"})  # no payload: the header authenticates
    assert (await recv(ws))["type"] == "connection_ack"
    await send(ws, subscribe("s"))
    await live(ws, server, member, "s")
    body = f"via upgrade {uuid.uuid4().hex}"
    await send_message(server, member, body)
    message = await recv(ws, skip=("ping", "pong"))
    assert message["type"] == "next" and message["payload"]["data"]["messageAdded"]["body"] == body
    await ws.close()


async def test_a_bad_token_on_the_upgrade_request_closes_with_4403(server: ServerProcess) -> None:
    ws = await connect(server, headers={"Authorization": "Bearer forged.token.here"})
    await send(ws, {"type": "connection_init", "payload": {}})
    assert await closed_with(ws) == (4403, "Forbidden")


async def test_the_init_token_wins_over_a_bad_upgrade_token(server: ServerProcess, member: int) -> None:
    ws = await connect(server, headers={"Authorization": "Bearer forged.token.here"})
    await send(ws, {"type": "connection_init", "payload": {"authorization": bearer(member)}})
    assert (await recv(ws))["type"] == "connection_ack"
    await ws.close()


async def test_no_connection_init_within_the_timeout_closes_with_4408(server: ServerProcess) -> None:
    ws = await connect(server)
    loop = asyncio.get_running_loop()
    started = loop.time()
    await send(ws, {"type": "ping"})  # pings do not count as connection_init
    assert (await recv(ws))["type"] == "pong"
    assert await closed_with(ws, timeout=INIT_TIMEOUT_S + 5) == (4408, "Connection initialisation timeout")
    assert loop.time() - started >= INIT_TIMEOUT_S * 0.9


async def test_an_acknowledged_socket_outlives_the_init_timeout(server: ServerProcess, member: int) -> None:
    ws = await acknowledged(server, member)
    await asyncio.sleep(INIT_TIMEOUT_S * 1.5)
    await send(ws, {"type": "ping"})
    assert (await recv(ws))["type"] == "pong"
    await ws.close()


async def test_a_second_connection_init_closes_with_4429(server: ServerProcess, member: int) -> None:
    ws = await acknowledged(server, member)
    await send(ws, {"type": "connection_init", "payload": {"authorization": bearer(member)}})
    assert await closed_with(ws) == (4429, "Too many initialisation requests")


async def test_two_connection_inits_back_to_back_close_with_4429(server: ServerProcess, member: int) -> None:
    ws = await connect(server)
    init = {"type": "connection_init", "payload": {"authorization": bearer(member)}}
    await send(ws, init)
    await send(ws, init)
    code, _ = await closed_with(ws)
    assert code == 4429


# graphql-transport-ws: ping and pong.


@pytest.mark.parametrize("payload", [None, {"sent": 1}], ids=["no payload", "payload"])
async def test_a_ping_is_answered_with_a_pong(
    server: ServerProcess, member: int, payload: dict[str, Any] | None
) -> None:
    ws = await acknowledged(server, member)
    ping: dict[str, Any] = {"type": "ping"}
    if payload is not None:
        ping["payload"] = payload
    await send(ws, ping)
    pong = await recv(ws)
    assert pong["type"] == "pong"
    # The pong's payload is optional ("additional details about the pong"); none is made up.
    assert pong.get("payload") in (None, payload)
    await ws.close()


async def test_a_ping_before_connection_init_is_answered(server: ServerProcess, member: int) -> None:
    # "The Ping message can be sent at any time within the established socket."
    ws = await connect(server)
    await send(ws, {"type": "ping"})
    assert (await recv(ws))["type"] == "pong"
    await send(ws, {"type": "connection_init", "payload": {"authorization": bearer(member)}})
    assert (await recv(ws))["type"] == "connection_ack"
    await ws.close()


async def test_an_unsolicited_pong_is_accepted(server: ServerProcess, member: int) -> None:
    ws = await connect(server)
    await send(ws, {"type": "pong"})  # before init: "may even be sent unsolicited as a heartbeat"
    await send(ws, {"type": "connection_init", "payload": {"authorization": bearer(member)}})
    assert (await recv(ws))["type"] == "connection_ack"
    await send(ws, {"type": "pong", "payload": {"beat": 1}})
    await nothing_more(ws, 0.5)  # no answer to a pong, and no close
    await send(ws, subscribe("q", "{ __typename }", {}))
    assert (await recv(ws))["type"] == "next"
    await ws.close()


# graphql-transport-ws: operations.


async def test_a_duplicate_subscription_id_closes_with_4409(server: ServerProcess, member: int) -> None:
    ws = await acknowledged(server, member)
    await send(ws, subscribe("dup"))
    await live(ws, server, member, "dup")
    await send(ws, subscribe("dup"))
    assert await closed_with(ws) == (4409, "Subscriber for dup already exists")


async def test_subscription_delivers_next_in_order(server: ServerProcess, member: int) -> None:
    ws = await acknowledged(server, member)
    await send(ws, subscribe("s"))
    await live(ws, server, member, "s")
    bodies = [f"ordered {i} {uuid.uuid4().hex}" for i in range(5)]
    ids = [await send_message(server, member, body) for body in bodies]
    got = [await recv(ws, skip=("ping", "pong")) for _ in bodies]
    assert [m["type"] for m in got] == ["next"] * 5
    assert [m["id"] for m in got] == ["s"] * 5
    assert [m["payload"]["data"]["messageAdded"]["body"] for m in got] == bodies
    assert [m["payload"]["data"]["messageAdded"]["id"] for m in got] == ids
    await ws.close()


async def test_complete_from_the_client_stops_the_stream(server: ServerProcess, member: int) -> None:
    ws = await acknowledged(server, member)
    await send(ws, subscribe("s"))
    await live(ws, server, member, "s")
    await send(ws, {"id": "s", "type": "complete"})
    await send(ws, {"type": "ping"})  # handled after `complete`: the pong comes once it is processed
    assert (await recv(ws))["type"] == "pong"
    await send_message(server, member, "after complete")
    # "No further events, relevant to the original subscription, should be sent through",
    # and the server does not answer the client's complete with one of its own.
    await nothing_more(ws, 1.0)
    # The id is free again: reusing it is not a 4409.
    await send(ws, subscribe("s"))
    await live(ws, server, member, "s")
    await ws.close()


async def test_complete_for_an_unknown_id_is_ignored(server: ServerProcess, member: int) -> None:
    ws = await acknowledged(server, member)
    await send(ws, {"id": "never-started", "type": "complete"})
    await send(ws, {"type": "ping"})
    assert (await recv(ws))["type"] == "pong"
    await ws.close()


async def test_a_validation_error_is_an_error_message_without_complete(
    server: ServerProcess, member: int
) -> None:
    ws = await acknowledged(server, member)
    await send(ws, subscribe("bad", "subscription { messageAdded(roomId: 1) { nope } }", {}))
    message = await recv(ws)
    assert message["type"] == "error" and message["id"] == "bad", message
    errors = message["payload"]
    assert isinstance(errors, list) and errors
    assert all(isinstance(e["message"], str) for e in errors)
    assert any("nope" in e["message"] for e in errors), errors
    # "If the server dispatched the Error message … no Complete message will be emitted."
    await send(ws, {"type": "ping"})
    assert (await recv(ws))["type"] == "pong"
    # The id is released: it can be used again.
    await send(ws, subscribe("bad", "{ __typename }", {}))
    assert (await recv(ws))["type"] == "next"
    assert (await recv(ws)) == {"id": "bad", "type": "complete"}
    await ws.close()


async def test_a_missing_variable_is_an_error_message(server: ServerProcess, member: int) -> None:
    ws = await acknowledged(server, member)
    await send(ws, subscribe("v", SUBSCRIPTION, {}))
    message = await recv(ws)
    assert message["type"] == "error" and message["id"] == "v", message
    assert "room" in message["payload"][0]["message"]
    await ws.close()


async def test_a_query_over_the_socket_is_next_then_complete(server: ServerProcess, member: int) -> None:
    ws = await acknowledged(server, member)
    await send(ws, subscribe("q", "query Q { __typename }", {}))
    assert (await recv(ws)) == {"id": "q", "type": "next", "payload": {"data": {"__typename": "Query"}}}
    assert (await recv(ws)) == {"id": "q", "type": "complete"}
    await ws.close()


async def test_a_mutation_over_the_socket_is_next_then_complete(server: ServerProcess, member: int) -> None:
    ws = await acknowledged(server, member)
    variables = {"room": ROOM, "body": "over the socket", "cid": uuid.uuid4().hex}
    await send(ws, subscribe("m", SEND, variables))
    message = await recv(ws)
    assert message["type"] == "next" and message["id"] == "m", message
    assert message["payload"]["data"]["sendMessage"]["id"]
    assert (await recv(ws)) == {"id": "m", "type": "complete"}
    await ws.close()


async def test_operations_run_side_by_side_on_one_socket(server: ServerProcess, member: int) -> None:
    ws = await acknowledged(server, member)
    await send(ws, subscribe("a"))
    await send(ws, subscribe("b"))
    async with asyncio.timeout(15):
        seen: set[str] = set()
        while seen != {"a", "b"}:
            await send_message(server, member, "probe")
            try:
                while True:
                    message = await recv(ws, 0.5)
                    assert message["type"] == "next", message
                    seen.add(message["id"])
            except TimeoutError:
                continue
    await send(ws, {"id": "a", "type": "complete"})
    await send(ws, {"type": "ping"})
    assert (await recv(ws))["type"] == "pong"
    body = f"only b {uuid.uuid4().hex}"
    await send_message(server, member, body)
    message = await recv(ws)
    assert message["id"] == "b" and message["payload"]["data"]["messageAdded"]["body"] == body
    await nothing_more(ws, 0.5)
    await ws.close()


async def test_a_non_member_gets_next_with_forbidden_then_complete(server: ServerProcess) -> None:
    outsider_ws = await acknowledged(server, None)
    await send(outsider_ws, subscribe("s"))
    message = await recv(outsider_ws)
    assert message["type"] in ("next", "error"), message
    if message["type"] == "next":
        assert message["payload"]["data"] is None
        assert [e["extensions"]["code"] for e in message["payload"]["errors"]] == ["UNAUTHENTICATED"]
        assert (await recv(outsider_ws)) == {"id": "s", "type": "complete"}
    await outsider_ws.close()


async def test_a_normal_closure_by_the_client_is_clean(server: ServerProcess, member: int) -> None:
    ws = await acknowledged(server, member)
    await send(ws, subscribe("s"))
    await live(ws, server, member, "s")
    await ws.close(1000)
    assert ws.close_code == 1000
    # The server is still serving others.
    other = await acknowledged(server, member)
    await other.close()


# The legacy `graphql-ws` subprotocol (subscriptions-transport-ws).


async def test_legacy_connection_init_is_acked_then_kept_alive(server: ServerProcess, member: int) -> None:
    ws = await connect(server, LEGACY_WS)
    await send(ws, {"type": "connection_init", "payload": {"authorization": bearer(member)}})
    assert (await recv(ws))["type"] == "connection_ack"
    assert (await recv(ws)) == {"type": "ka"}  # right after the ack, then periodically
    await ws.close()


async def test_legacy_start_data_stop_complete(server: ServerProcess, member: int) -> None:
    ws = await connect(server, LEGACY_WS)
    await send(ws, {"type": "connection_init", "payload": {"authorization": bearer(member)}})
    assert (await recv(ws))["type"] == "connection_ack"
    await send(
        ws, {"id": "1", "type": "start", "payload": {"query": SUBSCRIPTION, "variables": {"room": ROOM}}}
    )
    await live(ws, server, member, "1", "data")
    bodies = [f"legacy {i} {uuid.uuid4().hex}" for i in range(3)]
    for body in bodies:
        await send_message(server, member, body)
    got = [await recv(ws, skip=("ka",)) for _ in bodies]
    assert [(m["type"], m["id"]) for m in got] == [("data", "1")] * 3
    assert [m["payload"]["data"]["messageAdded"]["body"] for m in got] == bodies
    await send(ws, {"id": "1", "type": "stop"})
    assert (await recv(ws, skip=("ka",))) == {"type": "complete", "id": "1"}
    await send_message(server, member, "after stop")
    await nothing_more(ws, 1.0, skip=("ka",))
    await ws.close()


async def test_legacy_query_is_data_then_complete(server: ServerProcess, member: int) -> None:
    ws = await connect(server, LEGACY_WS)
    await send(ws, {"type": "connection_init", "payload": {"authorization": bearer(member)}})
    assert (await recv(ws))["type"] == "connection_ack"
    await send(ws, {"id": "q", "type": "start", "payload": {"query": "{ viewer { id } }"}})
    message = await recv(ws, skip=("ka",))
    assert message["type"] == "data" and message["id"] == "q", message
    assert message["payload"]["data"]["viewer"] is not None
    assert (await recv(ws, skip=("ka",))) == {"type": "complete", "id": "q"}
    await ws.close()


async def test_legacy_mutation_is_data_then_complete(server: ServerProcess, member: int) -> None:
    ws = await connect(server, LEGACY_WS)
    await send(ws, {"type": "connection_init", "payload": {"authorization": bearer(member)}})
    assert (await recv(ws))["type"] == "connection_ack"
    variables = {"room": ROOM, "body": "legacy mutation", "cid": uuid.uuid4().hex}
    await send(ws, {"id": "m", "type": "start", "payload": {"query": SEND, "variables": variables}})
    message = await recv(ws, skip=("ka",))
    assert message["type"] == "data" and message["payload"]["data"]["sendMessage"]["id"], message
    assert (await recv(ws, skip=("ka",))) == {"type": "complete", "id": "m"}
    await ws.close()


async def test_legacy_validation_error_is_an_error_message(server: ServerProcess, member: int) -> None:
    ws = await connect(server, LEGACY_WS)
    await send(ws, {"type": "connection_init", "payload": {"authorization": bearer(member)}})
    assert (await recv(ws))["type"] == "connection_ack"
    await send(ws, {"id": "e", "type": "start", "payload": {"query": "subscription { nope }"}})
    message = await recv(ws, skip=("ka",))
    assert message["type"] == "error" and message["id"] == "e", message
    assert "nope" in message["payload"]["message"]
    await ws.close()


async def test_legacy_bad_token_is_a_connection_error(server: ServerProcess) -> None:
    ws = await connect(server, LEGACY_WS)
    await send(ws, {"type": "connection_init", "payload": {"authorization": "Bearer forged.token.here"}})
    assert (await recv(ws))["type"] == "connection_error"
    code, _ = await closed_with(ws)
    assert code != 1000  # the client must not take a refusal for a normal end


async def test_legacy_token_on_the_upgrade_request_is_accepted(server: ServerProcess, member: int) -> None:
    ws = await connect(server, LEGACY_WS, headers={"Authorization": bearer(member)})
    await send(ws, {"type": "connection_init"})
    assert (await recv(ws))["type"] == "connection_ack"
    await send(ws, {"id": "q", "type": "start", "payload": {"query": "{ viewer { id } }"}})
    message = await recv(ws, skip=("ka",))
    assert message["payload"]["data"]["viewer"] is not None, message
    await ws.close()


async def test_legacy_connection_terminate_closes_the_socket(server: ServerProcess, member: int) -> None:
    ws = await connect(server, LEGACY_WS)
    await send(ws, {"type": "connection_init", "payload": {"authorization": bearer(member)}})
    assert (await recv(ws))["type"] == "connection_ack"
    await send(
        ws, {"id": "1", "type": "start", "payload": {"query": SUBSCRIPTION, "variables": {"room": ROOM}}}
    )
    await live(ws, server, member, "1", "data")
    await send(ws, {"type": "connection_terminate"})
    code, _ = await closed_with(ws)
    assert code == 1000


async def test_legacy_start_before_init_closes_with_4401(server: ServerProcess) -> None:
    ws = await connect(server, LEGACY_WS)
    await send(ws, {"id": "1", "type": "start", "payload": {"query": "{ __typename }"}})
    code, _ = await closed_with(ws)
    assert code == 4401
