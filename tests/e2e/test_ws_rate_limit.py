"""Operations started on a socket are charged to the same rate-limit budget as HTTP requests."""

from __future__ import annotations

import asyncio
import json
import shutil
from pathlib import Path
from typing import Any

import websockets

from bff.auth import TokenVerifier
from bff.config import load_settings
from bff.db import Database
from tests.procs import running_server

SUBSCRIPTION = 'subscription { messageAdded(roomId: "1") { id } }'


async def frames_until(ws: Any, wanted: set[str]) -> dict[str, Any]:
    async with asyncio.timeout(10):
        while True:
            frame = json.loads(await ws.recv())
            if frame["type"] in wanted:
                return dict(frame)


async def test_subscribing_past_the_budget_gets_rate_limited_errors(
    tmp_path: Path, sqlite_template: Path
) -> None:
    path = tmp_path / "bff.db"
    shutil.copy(sqlite_template, path)
    db = Database(f"sqlite:///{path}")
    await db.connect()
    member = int(await db.fetch_val("SELECT min(user_id) FROM room_members WHERE room_id = 1"))
    await db.disconnect()
    token = TokenVerifier(load_settings()).issue(member)
    env = {"DATABASE_URL": f"sqlite:///{path}", "RATE_LIMIT_PER_MINUTE_USER": "3"}
    with running_server(tmp_path, env) as server:
        async with websockets.connect(server.ws_url, subprotocols=["graphql-transport-ws"]) as ws:  # type: ignore[list-item]
            await ws.send(
                json.dumps({"type": "connection_init", "payload": {"authorization": f"Bearer {token}"}})
            )
            await frames_until(ws, {"connection_ack"})
            refusals: list[dict[str, Any]] = []
            for i in range(8):
                await ws.send(
                    json.dumps({"id": str(i), "type": "subscribe", "payload": {"query": SUBSCRIPTION}})
                )
                try:
                    async with asyncio.timeout(1):
                        frame = await frames_until(ws, {"error"})
                    refusals.append(frame)
                except TimeoutError:
                    continue  # accepted: a live subscription sends nothing until a message arrives
            assert refusals, "no operation was refused past a budget of 3 per minute"
            assert len(refusals) < 8, "the budget allowed nothing"
            error = refusals[0]["payload"][0]
            assert error["extensions"]["code"] == "RATE_LIMITED"
            assert error["extensions"]["retryAfter"] >= 1
