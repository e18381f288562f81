"""Subscriptions with the real client libraries against a real server process.

- graphql-ws's `createClient` (graphql-transport-ws) and subscriptions-transport-ws's
  `SubscriptionClient` (legacy graphql-ws), run by tests/clients/subscribe.mjs; tests/clients pins
  them in package-lock.json and `npm ci` installs them there the first time. Node and npm are not
  optional: `make test` installs them (scripts/ensure-system-deps.sh), so their absence fails.
- Python's `gql` (`WebsocketsTransport`) with each of the two subprotocols.

Each subscribes as a room member with the token in connection_init, resuming `after` a message:
the messages sent before it connected are replayed, those sent after arrive live, all in order
and once each. A bad token is refused with 4403 (graphql-transport-ws) or `connection_error`.
"""

from __future__ import annotations

import asyncio
import json
import shutil
import subprocess
import uuid
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
import websockets
from gql import Client, GraphQLRequest
from gql.transport.exceptions import TransportError
from gql.transport.websockets import WebsocketsTransport

from tests.e2e.test_ws_protocol import (
    ROOM,
    room_member,
    send_message,
    start_sqlite_server,
    tokens,
)
from tests.procs import ServerProcess, running_server

CLIENTS_DIR = Path(__file__).resolve().parent.parent / "clients"
PACKAGES = ("graphql-ws", "subscriptions-transport-ws", "ws", "graphql")
NODE_CLIENTS = {"graphql-ws createClient": "graphql-transport-ws", "SubscriptionClient": "graphql-ws"}
GQL_SUBPROTOCOLS = {
    "graphql-transport-ws": WebsocketsTransport.GRAPHQLWS_SUBPROTOCOL,
    "graphql-ws": WebsocketsTransport.APOLLO_SUBPROTOCOL,
}
SUBSCRIPTION = """subscription ($room: ID!, $after: String) {
  messageAdded(roomId: $room, after: $after) { id body author { handle } }
}"""
BEFORE, AFTER = 2, 3  # messages sent before the client connects (replayed), then after (live)

pytestmark = pytest.mark.timeout(300)


def _tool(name: str) -> str:
    path = shutil.which(name)
    if path is None:
        pytest.fail(
            f"`{name}` is not installed: the real-client tests need Node.js 20+ and npm "
            "(`make system-deps` installs them with scripts/ensure-system-deps.sh)",
            pytrace=False,
        )
    return path


@pytest.fixture(scope="module")
def node() -> str:
    """node, with tests/clients' node_modules installed from package-lock.json (`npm ci`) once."""
    node = _tool("node")
    if all((CLIENTS_DIR / "node_modules" / p / "package.json").exists() for p in PACKAGES):
        return node
    done = subprocess.run(
        [_tool("npm"), "ci", "--no-audit", "--no-fund", "--loglevel=error"],
        cwd=CLIENTS_DIR,
        capture_output=True,
        text=True,
        timeout=240,
    )
    if done.returncode != 0:
        pytest.fail(f"`npm ci` in {CLIENTS_DIR} failed:\n{done.stdout}\n{done.stderr}", pytrace=False)
    return node


@pytest.fixture(scope="module")
def server_and_member(
    tmp_path_factory: pytest.TempPathFactory, sqlite_template: Path
) -> Iterator[tuple[ServerProcess, int]]:
    tmp_dir = tmp_path_factory.mktemp("real-clients")
    database, env = start_sqlite_server(tmp_dir, sqlite_template, "real-clients")
    with running_server(tmp_dir, env, "real-clients") as server:
        yield server, room_member(database)


@pytest.fixture
def server(server_and_member: tuple[ServerProcess, int]) -> ServerProcess:
    return server_and_member[0]


@pytest.fixture
def member(server_and_member: tuple[ServerProcess, int]) -> int:
    return server_and_member[1]


class NodeClient:
    """tests/clients/subscribe.mjs as a child process, its JSON lines read as they come."""

    def __init__(self, process: asyncio.subprocess.Process) -> None:
        self.process = process
        self.events: list[dict[str, Any]] = []

    @classmethod
    async def start(
        cls, node: str, server: ServerProcess, protocol: str, token: str, count: int, after: str | None = None
    ) -> NodeClient:
        args = ["--url", server.ws_url, "--protocol", protocol, "--token", token, "--room", ROOM]
        args += ["--count", str(count), "--timeout", "30000"]
        if after is not None:
            args += ["--after", after]
        process = await asyncio.create_subprocess_exec(
            node,
            "subscribe.mjs",
            *args,
            cwd=CLIENTS_DIR,
            stdout=asyncio.subprocess.PIPE,
            stderr=asyncio.subprocess.PIPE,
        )
        return cls(process)

    async def event(self, timeout: float = 30) -> dict[str, Any]:
        assert self.process.stdout is not None
        async with asyncio.timeout(timeout):
            line = await self.process.stdout.readline()
        if not line:
            raise AssertionError(f"the client exited: {await self.finished()}")
        event: dict[str, Any] = json.loads(line)
        self.events.append(event)
        return event

    async def wait_for(self, kind: str) -> dict[str, Any]:
        while True:
            event = await self.event()
            if event["event"] == kind:
                return event

    async def finished(self, timeout: float = 30) -> tuple[int, list[dict[str, Any]], str]:
        """Exit code, the events not read yet, stderr."""
        async with asyncio.timeout(timeout):
            stdout, stderr = await self.process.communicate()
        rest = [json.loads(line) for line in stdout.decode().splitlines() if line.strip()]
        self.events += rest
        assert self.process.returncode is not None
        return self.process.returncode, rest, stderr.decode()

    def kill(self) -> None:
        if self.process.returncode is None:
            self.process.kill()


async def messages_before(server: ServerProcess, member: int) -> tuple[str, list[str]]:
    """A cursor to resume after, then BEFORE messages sent after it: (cursor, bodies)."""
    cursor = await send_message(server, member, f"cursor {uuid.uuid4().hex}")
    bodies = [f"before {i} {uuid.uuid4().hex}" for i in range(BEFORE)]
    for body in bodies:
        await send_message(server, member, body)
    return cursor, bodies


async def messages_after(server: ServerProcess, member: int) -> list[str]:
    bodies = [f"after {i} {uuid.uuid4().hex}" for i in range(AFTER)]
    for body in bodies:
        await send_message(server, member, body)
    return bodies


@pytest.mark.parametrize("protocol", list(NODE_CLIENTS.values()), ids=list(NODE_CLIENTS))
async def test_node_client_receives_every_message_in_order(
    node: str, server: ServerProcess, member: int, protocol: str
) -> None:
    cursor, before = await messages_before(server, member)
    client = await NodeClient.start(node, server, protocol, tokens.issue(member), BEFORE + AFTER, cursor)
    try:
        await client.wait_for("connected")
        after = await messages_after(server, member)
        code, _, stderr = await client.finished()
    finally:
        client.kill()
    assert code == 0, f"exit {code}: {client.events}\n{stderr}"
    received = [e["data"]["messageAdded"] for e in client.events if e["event"] == "next"]
    assert [m["body"] for m in received] == before + after
    assert len({m["id"] for m in received}) == len(received)
    assert all(m["author"]["handle"] for m in received)


async def test_graphql_ws_client_sees_a_bad_token_refused_with_4403(node: str, server: ServerProcess) -> None:
    client = await NodeClient.start(node, server, "graphql-transport-ws", "forged.token.here", 1)
    try:
        code, _, stderr = await client.finished()
    finally:
        client.kill()
    assert code == 1, f"exit {code}: {client.events}\n{stderr}"
    kinds = [e["event"] for e in client.events]
    assert "connected" not in kinds and "next" not in kinds, client.events
    closed = [e for e in client.events if e["event"] == "closed"]
    assert [(e["code"], e["reason"]) for e in closed] == [(4403, "Forbidden")], client.events
    errors = [e for e in client.events if e["event"] == "error"]
    assert [e["error"] for e in errors] == [{"code": 4403, "reason": "Forbidden"}], client.events


async def test_subscriptions_transport_ws_client_sees_a_bad_token_refused(
    node: str, server: ServerProcess
) -> None:
    client = await NodeClient.start(node, server, "graphql-ws", "forged.token.here", 1)
    try:
        code, _, stderr = await client.finished()
    finally:
        client.kill()
    assert code == 1, f"exit {code}: {client.events}\n{stderr}"
    kinds = [e["event"] for e in client.events]
    assert "connection_error" in kinds, client.events
    assert "connected" not in kinds and "next" not in kinds, client.events


# Python's gql.


def gql_transport(server: ServerProcess, subprotocol: str, token: str) -> WebsocketsTransport:
    return WebsocketsTransport(
        url=server.ws_url,
        init_payload={"authorization": f"Bearer {token}"},
        subprotocols=[subprotocol],
        connect_timeout=10,
        ack_timeout=10,
        close_timeout=5,
    )


@pytest.mark.parametrize("subprotocol", list(GQL_SUBPROTOCOLS.values()), ids=list(GQL_SUBPROTOCOLS))
async def test_gql_receives_every_message_in_order(
    server: ServerProcess, member: int, subprotocol: str
) -> None:
    cursor, before = await messages_before(server, member)
    request = GraphQLRequest(SUBSCRIPTION, variable_values={"room": ROOM, "after": cursor})
    received: list[dict[str, Any]] = []
    async with Client(transport=gql_transport(server, subprotocol, tokens.issue(member))) as session:
        # Connected (connection_ack) once the session is open: what follows is sent live.
        sender = asyncio.create_task(messages_after(server, member))
        async with asyncio.timeout(30):
            async for result in session.subscribe(request):
                received.append(result["messageAdded"])
                if len(received) == BEFORE + AFTER:
                    break
        after = await sender
    assert [m["body"] for m in received] == before + after
    assert len({m["id"] for m in received}) == len(received)


async def test_gql_sees_a_bad_token_refused_with_4403(server: ServerProcess) -> None:
    transport = gql_transport(server, WebsocketsTransport.GRAPHQLWS_SUBPROTOCOL, "forged.token.here")
    with pytest.raises(TransportError) as refused:
        async with asyncio.timeout(30), Client(transport=transport):
            pass
    # gql raises TransportConnectionFailed from the websockets ConnectionClosed: the close frame.
    chain: list[BaseException] = []
    error: BaseException | None = refused.value
    while error is not None and error not in chain:
        chain.append(error)
        error = error.__cause__ or error.__context__
    frames = [e.rcvd for e in chain if isinstance(e, websockets.ConnectionClosed) and e.rcvd is not None]
    assert [(f.code, f.reason) for f in frames] == [(4403, "Forbidden")], repr(chain)


async def test_gql_legacy_sees_a_bad_token_refused(server: ServerProcess) -> None:
    transport = gql_transport(server, WebsocketsTransport.APOLLO_SUBPROTOCOL, "forged.token.here")
    with pytest.raises(TransportError):
        async with asyncio.timeout(30), Client(transport=transport):
            pass


async def test_gql_runs_a_query_over_the_socket_with_the_token(server: ServerProcess, member: int) -> None:
    for subprotocol in GQL_SUBPROTOCOLS.values():
        async with Client(transport=gql_transport(server, subprotocol, tokens.issue(member))) as session:
            result = await session.execute(GraphQLRequest("{ viewer { id } }"))
        assert result["viewer"]["id"], (subprotocol, result)
