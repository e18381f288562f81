"""Postgres connections lent to statements outside a transaction, kept between statements, and
handed to waiting statements oldest first.

asyncpg's `Pool.fetch` acquires a connection and releases it around every statement: a queue
get, the holder's bookkeeping, a proxy object, the release's reset and its inactivity timer.
For the feed page that was ~60 µs of client CPU per statement against ~42 µs on a connection
already held (docs/benchmarks.md), and Home runs one statement warm. The lender holds up to
`keep` connections it acquired and hands one to the next statement for the cost of a list pop.

When all `keep` are in use, a statement waits in the lender's own queue, and a statement that
ends hands its connection to the oldest waiter. asyncpg's pool queue (an asyncio.Queue) is not
fair: a connection released to it goes to whoever calls `acquire` before the woken waiter runs,
and the waiter, finding the queue empty, goes back to the end of the line. With statements
started as soon as a request arrives (bff/compiled_run.py's `gather_into`), newcomers took
released connections that way and some requests waited hundreds of milliseconds at c=64
(docs/benchmarks.md, eighth session).

A statement that fails, or is cancelled, leaves its connection in a state nobody checked: it
goes back to the pool, which resets it (bff/db.py's reset rolls back an open transaction) or
discards it if it broke, and the oldest waiter acquires a new one. Transactions and `databases`'
own connections come from the pool, which keeps at least pool_max - keep for them.
"""

from __future__ import annotations

import asyncio
from collections import deque
from collections.abc import Sequence
from typing import Any

from prometheus_client import Gauge

# Statements waiting for a lent connection: above zero for long, DB_POOL_MAX is too small for the
# load (or Postgres too slow for it). Not a fast-path cost: touched only by a statement that waits.
WAITING = Gauge("bff_db_statements_waiting", "Statements waiting for a lent Postgres connection")


class Lender:
    def __init__(self, pool: Any, keep: int) -> None:
        self.pool = pool
        self.keep = keep  # the most connections held at once, in use or idle
        self.idle: list[Any] = []  # held, between two statements
        self.held = 0  # acquired from the pool and not given back
        # Statements waiting for a connection, oldest first. Each future gets a connection, or
        # None: a slot was freed (a connection went back to the pool), acquire one.
        self.waiting: deque[asyncio.Future[Any]] = deque()
        self.closed = False

    async def run(self, method: str, text: str, args: Sequence[Any]) -> Any:
        """asyncpg's `method` (fetch, fetchrow, fetchval, execute) on a lent connection."""
        connection = await self._take()
        try:
            result = await getattr(connection, method)(text, *args)
        except BaseException:
            await self._give_back(connection)
            raise
        if self.closed and not self.waiting:
            await self._give_back(connection)
        else:
            self._hand_on(connection)
        return result

    async def _take(self) -> Any:
        if not self.waiting:
            if self.idle:
                return self.idle.pop()
            if self.held < self.keep:
                return await self._acquire()
        waiter: asyncio.Future[Any] = asyncio.get_running_loop().create_future()
        self.waiting.append(waiter)
        WAITING.inc()
        try:
            connection = await waiter
        except BaseException:
            if waiter.done() and not waiter.cancelled():
                self._pass_on(waiter.result())  # handed over as this statement was cancelled
            else:
                self.waiting.remove(waiter)
            raise
        finally:
            WAITING.dec()
        return connection if connection is not None else await self._acquire()

    async def _acquire(self) -> Any:
        self.held += 1
        try:
            return await self.pool.acquire()
        except BaseException:
            self.held -= 1
            self._pass_on(None)
            raise

    def _hand_on(self, connection: Any) -> None:
        """To the oldest statement still waiting, else kept idle."""
        while self.waiting:
            waiter = self.waiting.popleft()
            if not waiter.done():
                waiter.set_result(connection)
                return
        self.idle.append(connection)

    def _pass_on(self, connection: Any | None) -> None:
        if connection is not None:
            self._hand_on(connection)
            return
        while self.waiting:  # a free slot: the oldest waiter acquires a connection of its own
            waiter = self.waiting.popleft()
            if not waiter.done():
                waiter.set_result(None)
                return

    async def _give_back(self, connection: Any) -> None:
        self.held -= 1
        try:
            await self.pool.release(connection)
        finally:
            self._pass_on(None)

    async def close(self) -> None:
        """Every idle connection back to the pool, which closes only what was released to it;
        from now on nothing is kept: a statement still running gives its connection back when
        it ends (or to a statement waiting for one)."""
        self.closed = True
        idle, self.idle = self.idle, []
        for connection in idle:
            await self._give_back(connection)
