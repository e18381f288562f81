"""Bytes on the wire per screen of the reference workload: plain, persisted, compressed.

    python -m bench.payloads              # tiny seed (fast)
    python -m bench.payloads --size small

Runs the app in process (no server, no network) on a fresh SQLite database loaded with the
chosen seed, sends each screen's operation as a phone would and prints a Markdown table
(docs/payloads.md holds its output). Sizes are HTTP bodies (and, for GET, the request target):
headers are left out, as HTTP/2 and HTTP/3 compress them across requests (HPACK/QPACK).

- request, plain: the POST body `{"query", "operationName", "variables"}`.
- request, APQ: Apollo's automatic persisted queries, the hash only: the POST body
  `{"operationName", "variables", "extensions": {"persistedQuery": {"version": 1, "sha256Hash"}}}`,
  and the GET request target Apollo Client uses for hashed queries (`useGETForHashedQueries`).
  Computed from the protocol, whether or not this server has registered the hash.
- response: the body as sent with `Accept-Encoding: identity`, `gzip` and `br`
  (Content-Length of each; compression starts at COMPRESSION_MIN_BYTES).
"""

from __future__ import annotations

import argparse
import asyncio
import hashlib
import json
import tempfile
import uuid
from dataclasses import dataclass
from pathlib import Path
from typing import Any
from urllib.parse import urlencode

import httpx
from asgi_lifespan import LifespanManager

from bff.app import create_app
from bff.config import load_settings
from bff.db import Database
from bff.migrate import upgrade
from bff.seed import seed

OPS = Path(__file__).resolve().parent.parent / "tests" / "ops"
ROOM = "Q2hhdFJvb206MQ=="  # ChatRoom:1
GAME = "R2FtZTox"  # Game:1

ROOM_HISTORY = (
    "query RoomHistory($id: ID!, $last: Int!) { chatRoom(id: $id) { id name messages(last: $last) { "
    "edges { cursor node { id body createdAt author { id handle avatarUrl } } } "
    "pageInfo { hasPreviousPage startCursor } } } }"
)
CHAT_LIST = "query ChatList { viewer { id rooms { id name } } }"
LEADERBOARD = (
    "query Leaderboard($game: ID!, $first: Int!) { "
    "leaderboard(gameId: $game, first: $first) { rank points user { id handle avatarUrl } } }"
)


@dataclass
class Screen:
    name: str
    query: str
    operation: str
    variables: dict[str, Any]


def screens() -> list[Screen]:
    home = json.loads((OPS / "home-relay.json").read_text())
    send = json.loads((OPS / "send-message.json").read_text())
    return [
        Screen("Home (feed first 20)", home["query"], home["operationName"], home["variables"]),
        Screen("Room history (last 50)", ROOM_HISTORY, "RoomHistory", {"id": ROOM, "last": 50}),
        Screen("Chat list", CHAT_LIST, "ChatList", {}),
        Screen(
            "Send message",
            send["query"],
            send["operationName"],
            {"roomId": ROOM, "body": "On my way, see you in 10 minutes!", "clientMessageId": ""},
        ),
        Screen("Leaderboard (top 10)", LEADERBOARD, "Leaderboard", {"game": GAME, "first": 10}),
    ]


def _compact(value: Any) -> bytes:
    return json.dumps(value, separators=(",", ":"), ensure_ascii=False).encode()


def plain_request(screen: Screen) -> bytes:
    return _compact({"query": screen.query, "operationName": screen.operation, "variables": screen.variables})


def apq_extensions(screen: Screen) -> dict[str, Any]:
    digest = hashlib.sha256(screen.query.encode()).hexdigest()
    return {"persistedQuery": {"version": 1, "sha256Hash": digest}}


def apq_post(screen: Screen) -> bytes:
    return _compact(
        {
            "operationName": screen.operation,
            "variables": screen.variables,
            "extensions": apq_extensions(screen),
        }
    )


def apq_get_target(screen: Screen) -> str:
    query = urlencode(
        {
            "operationName": screen.operation,
            "variables": _compact(screen.variables).decode(),
            "extensions": _compact(apq_extensions(screen)).decode(),
        }
    )
    return f"/graphql?{query}"


async def measure(size: str) -> list[dict[str, Any]]:
    with tempfile.TemporaryDirectory() as tmp:
        url = f"sqlite:///{Path(tmp) / 'bff.db'}"
        await asyncio.to_thread(upgrade, url)
        db = Database(url)
        await db.connect()
        try:
            await seed(db, size)
            member = int(await db.fetch_val("SELECT min(user_id) FROM room_members WHERE room_id = 1"))
        finally:
            await db.disconnect()
        settings = load_settings(
            database_url=url, bff_env="test", log_level="WARNING", rate_limit_enabled=False
        )
        app = create_app(settings)
        rows = []
        async with (
            LifespanManager(app),
            httpx.AsyncClient(transport=httpx.ASGITransport(app), base_url="http://bff.test") as client,
        ):
            token = app.state.services.tokens.issue(member)
            for screen in screens():
                row: dict[str, Any] = {
                    "screen": screen.name,
                    "request": len(plain_request(screen)),
                    "apq_post": len(apq_post(screen)),
                    "apq_get": len(apq_get_target(screen)),
                }
                for encoding in ("identity", "gzip", "br"):
                    if "clientMessageId" in screen.variables:
                        screen.variables["clientMessageId"] = uuid.uuid4().hex
                    response = await client.post(
                        "/graphql",
                        content=plain_request(screen),
                        headers={
                            "content-type": "application/json",
                            "accept": "application/graphql-response+json",
                            "accept-encoding": encoding,
                            "authorization": f"Bearer {token}",
                        },
                    )
                    body = response.json()
                    if response.status_code != 200 or body.get("errors"):
                        raise RuntimeError(f"{screen.name}: {response.status_code} {response.text[:300]}")
                    row[encoding] = int(response.headers["content-length"])
                rows.append(row)
        return rows


def table(rows: list[dict[str, Any]], size: str) -> str:
    lines = [
        f"Seed `{size}`; bytes of HTTP bodies (GET: request target), headers excluded.",
        "",
        "| screen | request | request, APQ POST | request, APQ GET | response | response gzip | response br |",
        "|---|---:|---:|---:|---:|---:|---:|",
    ]
    for r in rows:
        lines.append(
            f"| {r['screen']} | {r['request']:,} | {r['apq_post']:,} | {r['apq_get']:,} "
            f"| {r['identity']:,} | {r['gzip']:,} | {r['br']:,} |"
        )
    return "\n".join(lines)


def main() -> None:
    parser = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    parser.add_argument("--size", default="tiny", choices=["tiny", "small"])
    args = parser.parse_args()
    print(table(asyncio.run(measure(args.size)), args.size))


if __name__ == "__main__":
    main()
