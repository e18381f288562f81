"""Postgres connections lent to statements outside a transaction, kept between statements.

asyncpg's `Pool.fetch` acquires a connection and releases it around every statement: a queue
get, the holder's bookkeeping, a proxy object, the release's reset and its inactivity timer.
For the feed page that was ~60 µs of client CPU per statement against ~42 µs on a connection
already held (docs/benchmarks.md), and Home runs one statement warm. The lender keeps up to
`keep` connections it acquired, idle, and hands one to the next statement for the cost of a
list pop; one it cannot keep goes back to the pool. A statement that fails, or is cancelled,
leaves its connection in a state nobody checked: it goes back to the pool, which resets it
(bff/db.py's reset rolls back an open transaction) or discards it if it broke. Transactions and
`databases`' own connections still come from the pool, which keeps at least pool_max - keep
for them.
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any


class Lender:
    def __init__(self, pool: Any, keep: int) -> None:
        self.pool = pool
        self.keep = keep
        self.idle: list[Any] = []  # acquired from the pool, between two statements
        self.waiting = 0  # statements of ours waiting in the pool's queue for a connection

    async def run(self, method: str, text: str, args: Sequence[Any]) -> Any:
        """asyncpg's `method` (fetch, fetchrow, fetchval, execute) on a lent connection."""
        idle = self.idle
        if idle:
            connection = idle.pop()
        else:
            self.waiting += 1
            try:
                connection = await self.pool.acquire()
            finally:
                self.waiting -= 1
        try:
            result = await getattr(connection, method)(text, *args)
        except BaseException:
            await self.pool.release(connection)
            raise
        # Kept only when nobody waits: a connection kept while statements queue in the pool
        # would serve the next newcomer first and leave the oldest waiting (the c=64 tail).
        if not self.waiting and len(idle) < self.keep:
            idle.append(connection)
        else:
            await self.pool.release(connection)
        return result

    async def close(self) -> None:
        """Every kept connection back to the pool, which closes only what was released to it;
        from now on nothing is kept: a statement still running, or one a background task starts
        meanwhile, gives its connection back when it ends."""
        self.keep = 0
        idle, self.idle = self.idle, []
        for connection in idle:
            await self.pool.release(connection)
