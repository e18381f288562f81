"""bff/db.py: statements outside a transaction take any pooled connection; inside one, its own.

On Postgres, statements outside `transaction()` go to asyncpg's pool directly (bypassing
`databases`' per-Task connection bookkeeping); these tests pin down that a transaction still
sees its own writes, that nobody else sees them before the commit, and that a rollback leaves
nothing behind, on both dialects.
"""

from __future__ import annotations

import asyncio

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
    """Concurrent statements outside a transaction each take a pooled connection of their own."""
    db = Database(postgres_url, pool_min=1, pool_max=3)
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
