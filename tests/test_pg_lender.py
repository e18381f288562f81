"""bff/pg_lender.py with a pool and connections of its own making: who gets a connection when.

The lender holds at most `keep` connections; statements beyond wait in its queue and get a
connection oldest first, even when a newcomer arrives between a hand-over and the waiter's
turn (asyncpg's pool queue lets the newcomer take it). tests/test_db.py runs it on Postgres.
"""

from __future__ import annotations

import asyncio
from typing import Any

import pytest
from prometheus_client import REGISTRY

from bff.pg_lender import Lender


class Connection:
    def __init__(self, name: str) -> None:
        self.name = name
        self.gates: dict[str, asyncio.Event] = {}

    async def fetch(self, label: str) -> str:
        gate = self.gates.setdefault(label, asyncio.Event())
        await gate.wait()
        if label.startswith("fail"):
            raise ValueError(label)
        return f"{label}@{self.name}"


class Pool:
    def __init__(self) -> None:
        self.made = 0
        self.released: list[str] = []
        self.connections: list[Connection] = []

    async def acquire(self) -> Connection:
        self.made += 1
        connection = Connection(f"c{self.made}")
        self.connections.append(connection)
        return connection

    async def release(self, connection: Connection) -> None:
        self.released.append(connection.name)


async def settle() -> None:
    for _ in range(5):
        await asyncio.sleep(0)


async def started(lender: Lender, label: str) -> asyncio.Task[Any]:
    """A statement `label` running (or waiting) once the loop has turned a few times."""
    task = asyncio.create_task(lender.run("fetch", label, ()))
    await settle()
    return task


def open_gate(pool: Pool, label: str) -> None:
    for connection in pool.connections:
        connection.gates.setdefault(label, asyncio.Event()).set()


async def test_waiting_statements_get_the_connection_oldest_first_and_newcomers_queue() -> None:
    pool = Pool()
    lender = Lender(pool, keep=1)
    first = await started(lender, "a")
    waiting = [await started(lender, label) for label in ("b", "c")]
    assert len(lender.waiting) == 2 and pool.made == 1
    assert waiting_gauge() == 2  # in /metrics while they wait
    open_gate(pool, "a")
    await asyncio.sleep(0)  # `a` ended and handed its connection to `b`, which has not run yet
    newcomer = asyncio.create_task(lender.run("fetch", "d", ()))
    await settle()
    for label in ("b", "c", "d"):
        open_gate(pool, label)
    assert await first == "a@c1"
    assert await asyncio.gather(*waiting, newcomer) == ["b@c1", "c@c1", "d@c1"]
    assert pool.made == 1 and pool.released == [] and lender.idle == [pool.connections[0]]
    assert waiting_gauge() == 0


def waiting_gauge() -> float:
    return REGISTRY.get_sample_value("bff_db_statements_waiting") or 0.0


async def test_a_failed_statement_gives_its_connection_back_and_the_next_waiter_acquires_one() -> None:
    pool = Pool()
    lender = Lender(pool, keep=1)
    failing = await started(lender, "fail")
    after = await started(lender, "b")
    open_gate(pool, "fail")
    with pytest.raises(ValueError, match="fail"):
        await failing
    await settle()
    open_gate(pool, "b")
    assert await after == "b@c2"  # a new connection: the failed one went back to the pool
    assert pool.released == ["c1"] and lender.held == 1


async def test_a_statement_cancelled_while_waiting_leaves_the_line_and_passes_on_what_it_got() -> None:
    pool = Pool()
    lender = Lender(pool, keep=1)
    first = await started(lender, "a")
    gone = asyncio.create_task(lender.run("fetch", "x", ()))
    handed = await started(lender, "b")
    gone.cancel()  # cancelled in line
    await settle()
    assert len(lender.waiting) == 1
    # Handed over and cancelled before running: the connection goes on to the next in line.
    third = await started(lender, "c")
    open_gate(pool, "a")
    await asyncio.sleep(0)
    handed.cancel()
    open_gate(pool, "c")
    assert await first == "a@c1" and await third == "c@c1"
    with pytest.raises(asyncio.CancelledError):
        await handed
    assert pool.made == 1 and not lender.waiting and waiting_gauge() == 0


async def test_after_close_nothing_is_kept() -> None:
    pool = Pool()
    lender = Lender(pool, keep=2)
    running = await started(lender, "a")
    idle_one = await started(lender, "b")
    open_gate(pool, "b")
    await idle_one
    await lender.close()
    assert pool.released == ["c2"]  # the idle one
    open_gate(pool, "a")
    await running
    assert pool.released == ["c2", "c1"] and lender.idle == [] and lender.held == 0
