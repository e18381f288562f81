"""bff/db.py: statements outside a transaction take any pooled connection; inside one, its own.

On Postgres, statements outside `transaction()` go to asyncpg's pool directly (bypassing
`databases`' per-Task connection bookkeeping); these tests pin down that a transaction still
sees its own writes, that nobody else sees them before the commit, and that a rollback leaves
nothing behind, on both dialects.
"""

from __future__ import annotations

import asyncio
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager

import pytest

from bff.db import Database, StatementCounter, current_counter

GAME = 9_001


class _Rollback(Exception):
    pass


async def _game(db: Database) -> str | None:
    return await db.fetch_val("SELECT name FROM games WHERE id = :id", {"id": GAME})


async def test_a_transaction_reads_its_own_writes_and_others_do_not_until_commit(database_url: str) -> None:
    db = Database(database_url, pool_min=1, pool_max=3)
    await db.connect()
    try:
        async with db.transaction():
            await db.execute(
                "INSERT INTO games (id, name) VALUES (:id, :name)", {"id": GAME, "name": "Draft"}
            )
            assert await _game(db) == "Draft"  # the transaction's own connection
            # Another task is outside the transaction: it must not see the uncommitted row.
            assert await asyncio.create_task(_game(db)) is None
        assert await _game(db) == "Draft"  # committed: visible from any connection
        assert await asyncio.create_task(_game(db)) == "Draft"
    finally:
        await db.disconnect()


async def test_a_rolled_back_transaction_leaves_nothing(database_url: str) -> None:
    db = Database(database_url, pool_min=1, pool_max=3)
    await db.connect()
    try:
        with pytest.raises(_Rollback):
            async with db.transaction():
                await db.execute(
                    "INSERT INTO games (id, name) VALUES (:id, :name)", {"id": GAME, "name": "Gone"}
                )
                assert await db.fetch_one("SELECT id, name FROM games WHERE id = :id", {"id": GAME})
                raise _Rollback
        assert await _game(db) is None
        rows = await db.fetch_all("SELECT id FROM games WHERE id = :id", {"id": GAME})
        assert rows == []
    finally:
        await db.disconnect()


async def test_statements_outside_a_transaction_run_concurrently_and_are_counted(postgres_url: str) -> None:
    """Concurrent statements outside a transaction each take a pooled connection of their own, up
    to half the pool (the rest is left to transactions)."""
    db = Database(postgres_url, pool_min=1, pool_max=6)
    await db.connect()
    counter = StatementCounter()
    token = current_counter.set(counter)
    try:
        pids = await asyncio.gather(
            *(db.fetch_val("SELECT pg_backend_pid() FROM pg_sleep(0.05)") for _ in range(3))
        )
        assert len(set(pids)) == 3
        assert counter.count == 3
    finally:
        current_counter.reset(token)
        await db.disconnect()


PID = "SELECT pg_backend_pid()"


@asynccontextmanager
async def connected(url: str, pool_max: int) -> AsyncIterator[Database]:
    db = Database(url, pool_min=1, pool_max=pool_max)
    await db.connect()
    try:
        yield db
    finally:
        async with asyncio.timeout(10):  # kept connections go back first, or the pool waits for them
            await db.disconnect()


async def test_statements_one_after_another_run_on_one_kept_connection(postgres_url: str) -> None:
    """The lender keeps what it acquired, up to half the pool, and hands it to the next statement."""
    async with connected(postgres_url, 4) as db:
        pids = [await db.fetch_val(PID) for _ in range(6)]
        assert len(set(pids)) == 1
        # Four at once: at most half the pool (2) lent, the other two wait for them; both kept.
        pids = await asyncio.gather(*(db.fetch_val(f"{PID} FROM pg_sleep(0.05)") for _ in range(4)))
        assert len(set(pids)) == 2
        assert db._lender is not None and len(db._lender.idle) == 2 and db._lender.held == 2
        async with db.transaction():  # the pool still has connections for transactions
            await db.execute("INSERT INTO games (id, name) VALUES (:id, :name)", {"id": GAME, "name": "Kept"})
        assert await _game(db) == "Kept"


async def test_statements_waiting_for_a_connection_get_one_oldest_first(postgres_url: str) -> None:
    """One connection lent (a pool of 2 keeps 1): statements started one after the other end in
    that order, each on the connection the one before handed on."""
    async with connected(postgres_url, 2) as db:
        ended: list[int] = []

        async def statement(n: int) -> int:
            pid = await db.fetch_val(f"{PID} FROM pg_sleep(0.02)")
            ended.append(n)
            return int(pid)

        tasks = []
        for n in range(5):
            tasks.append(asyncio.create_task(statement(n)))
            await asyncio.sleep(0.005)  # started in order, while the first holds the connection
        pids = await asyncio.gather(*tasks)
        assert ended == [0, 1, 2, 3, 4] and len(set(pids)) == 1
        assert db._lender is not None and db._lender.held == 1 and len(db._lender.idle) == 1


async def test_a_failed_or_cancelled_statement_gives_its_connection_back_to_the_pool(
    postgres_url: str,
) -> None:
    async with connected(postgres_url, 2) as db:
        kept = await db.fetch_val(PID)
        with pytest.raises(Exception, match="division by zero"):
            await db.fetch_val("SELECT 1 / 0")
        assert db._lender is not None and db._lender.idle == []  # not kept: back to the pool
        slow = asyncio.create_task(db.fetch_val("SELECT 1 FROM pg_sleep(5)"))
        await asyncio.sleep(0.2)
        slow.cancel()
        with pytest.raises(asyncio.CancelledError):
            await slow
        assert db._lender.idle == []
        # The pool's connections are usable again: no "another operation is in progress".
        pids = await asyncio.gather(*(db.fetch_val(f"{PID} FROM pg_sleep(0.05)") for _ in range(2)))
        assert None not in pids and await db.fetch_val("SELECT 41 + 1") == 42
        assert db._lender.held == 1
        assert kept is not None


async def test_a_statement_ending_while_the_database_disconnects_does_not_hold_the_pool_open(
    postgres_url: str,
) -> None:
    db = Database(postgres_url, pool_min=1, pool_max=2)
    await db.connect()
    await db.fetch_val(PID)  # one connection kept
    late = asyncio.create_task(db.fetch_val("SELECT 1 FROM pg_sleep(0.3)"))  # a background task's
    await asyncio.sleep(0.1)
    async with asyncio.timeout(10):  # the pool closes once the late statement gave its connection back
        await db.disconnect()
    assert await late == 1
