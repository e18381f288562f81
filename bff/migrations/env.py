"""Alembic environment: runs the migrations on Postgres (asyncpg) or SQLite (aiosqlite)."""

from __future__ import annotations

import asyncio
from concurrent.futures import ThreadPoolExecutor

from alembic import context
from sqlalchemy.engine import Connection
from sqlalchemy.ext.asyncio import create_async_engine


def _run(connection: Connection) -> None:
    context.configure(connection=connection, target_metadata=None, render_as_batch=True)
    with context.begin_transaction():
        context.run_migrations()


async def _main() -> None:
    url = context.config.get_main_option("sqlalchemy.url")
    assert url, "sqlalchemy.url is set by bff.migrate"
    engine = create_async_engine(url)
    async with engine.connect() as connection:
        await connection.run_sync(_run)
        await connection.commit()
    await engine.dispose()


try:
    asyncio.get_running_loop()
except RuntimeError:
    asyncio.run(_main())
else:
    # Called from inside an event loop (an async test or caller): run in a thread of its own.
    with ThreadPoolExecutor(1) as pool:
        pool.submit(asyncio.run, _main()).result()
