"""The database: the only module that uses `databases`.

One API over Postgres (asyncpg) and the embedded SQLite file. Queries are plain SQL
with `:name` parameters; the few places where the dialects differ ask `db.dialect`
or use the helpers here (`in_list`). Every statement is counted on the current
request's `StatementCounter`, so tests can assert how many statements an operation
costs, and on a Prometheus counter.
"""

from __future__ import annotations

import contextvars
import functools
import json
import re
from collections.abc import AsyncIterator, Iterable, Mapping, Sequence
from contextlib import asynccontextmanager
from dataclasses import dataclass, field
from datetime import UTC, datetime
from typing import Any, Literal, cast

import databases
from prometheus_client import Counter

from bff.pg_lender import Lender

SQL_STATEMENTS = Counter("bff_sql_statements_total", "SQL statements sent to the database", ["dialect"])

# A row: a dict on SQLite, an asyncpg Record (read-only, same `row["column"]` access) on Postgres.
Row = Mapping[str, Any]
Dialect = Literal["postgresql", "sqlite"]


@dataclass
class StatementCounter:
    """Statements run while this counter is current (one per request, or per test)."""

    count: int = 0
    statements: list[str] = field(default_factory=list)

    def add(self, sql: str) -> None:
        self.count += 1
        if len(self.statements) < 200:
            self.statements.append(_one_line(sql))


@functools.lru_cache(maxsize=2048)  # statement texts are fixed in code: normalised once each
def _one_line(sql: str) -> str:
    return " ".join(sql.split())[:200]


current_counter: contextvars.ContextVar[StatementCounter | None] = contextvars.ContextVar(
    "bff_statement_counter", default=None
)

# Set inside `Database.transaction()`: statements there must run on the transaction's connection.
_in_transaction: contextvars.ContextVar[bool] = contextvars.ContextVar("bff_in_transaction", default=False)


def sqlite_timestamp(value: datetime) -> str:
    """Timestamps are ISO-8601 UTC text in SQLite, in one fixed format so text order is time order."""
    return value.astimezone(UTC).strftime("%Y-%m-%dT%H:%M:%S.%fZ")


def normalise_url(url: str) -> str:
    """Accept the URL spellings people paste (postgres://, postgresql+asyncpg://)."""
    if url.startswith("postgres://"):
        return "postgresql://" + url[len("postgres://") :]
    if url.startswith("postgresql+asyncpg://"):
        return "postgresql://" + url[len("postgresql+asyncpg://") :]
    if url.startswith("sqlite+aiosqlite://"):
        return "sqlite://" + url[len("sqlite+aiosqlite://") :]
    return url


# `:name` parameters, not `::type` casts.
_NAMED = re.compile(r"(?<![:\w]):([A-Za-z_]\w*)")
_PG_STATEMENTS: dict[str, tuple[str, list[str]]] = {}


def _to_numbered(sql: str) -> tuple[str, list[str]]:
    names: list[str] = []

    def number(match: re.Match[str]) -> str:
        name = match.group(1)
        if name not in names:
            names.append(name)
        return f"${names.index(name) + 1}"

    return _NAMED.sub(number, sql), names


async def _rollback_if_in_transaction(connection: Any) -> None:
    if connection.is_in_transaction():
        await connection.execute("ROLLBACK")


class Database:
    """A connection pool to Postgres or SQLite, with counted statements."""

    def __init__(
        self, url: str, *, pool_min: int = 2, pool_max: int = 10, statement_timeout_ms: int = 0
    ) -> None:
        self.url = normalise_url(url)
        self.dialect: Dialect = "sqlite" if self.url.startswith("sqlite") else "postgresql"
        self._statements_total = SQL_STATEMENTS.labels(self.dialect)  # `labels()` once, not per statement
        options: dict[str, Any]
        if self.dialect == "postgresql":
            server_settings = {"application_name": "bff"}
            if statement_timeout_ms:
                server_settings["statement_timeout"] = str(statement_timeout_ms)
            options = {
                "min_size": pool_min,
                "max_size": pool_max,
                "server_settings": server_settings,
                # asyncpg's default reset costs a round trip per release (RESET ALL, UNLISTEN…);
                # bff sets no session state, so only an open transaction needs undoing.
                "reset": _rollback_if_in_transaction,
            }
        else:
            # sqlite3's `timeout` is its busy timeout: writers wait for the file lock instead of failing.
            options = {"timeout": 15}
        self._db = databases.Database(self.url, **options)
        # Statements outside a transaction run on connections lent by this (bff/pg_lender.py).
        self._keep = max(1, pool_max // 2)
        self._lender: Lender | None = None

    async def connect(self) -> None:
        self._lender = None  # made on first use, over the pool this connect creates
        await self._db.connect()
        if self.dialect == "sqlite":
            # WAL lets readers go on while a writer commits; it is a property of the file.
            await self._db.execute("PRAGMA journal_mode=WAL")

    async def disconnect(self) -> None:
        if self._lender is not None:
            await self._lender.close()  # kept, it stays closed: nothing is kept past this
        await self._db.disconnect()

    def in_list(self, column: str, param: str) -> str:
        """`column` is one of the values of list parameter `param`, with a fixed statement text."""
        if self.dialect == "postgresql":
            return f"{column} = ANY(:{param})"
        return f"{column} IN (SELECT value FROM json_each(:{param}))"

    def _values(self, values: Mapping[str, Any] | None) -> dict[str, Any] | None:
        if not values or self.dialect == "postgresql":
            return dict(values) if values else None
        out: dict[str, Any] = {}
        for key, value in values.items():
            if isinstance(value, list | tuple):
                value = json.dumps(list(value))
            elif isinstance(value, datetime):
                value = sqlite_timestamp(value)
            out[key] = value
        return out

    def _row(self, record: Any) -> Row:
        row = dict(record._mapping)
        if self.dialect == "sqlite":
            for key, value in row.items():
                if key.endswith("_at") and isinstance(value, str):
                    row[key] = datetime.fromisoformat(value)
        return row

    def _count(self, sql: str) -> None:
        self._statements_total.inc()
        counter = current_counter.get()
        if counter is not None:
            counter.add(sql)

    def _pg(self, sql: str, values: Mapping[str, Any] | None) -> tuple[str, list[Any]]:
        """asyncpg's form of a statement: `$n` placeholders and positional arguments."""
        converted = _PG_STATEMENTS.get(sql)
        if converted is None:
            converted = _to_numbered(sql)
            if len(_PG_STATEMENTS) < 2048:  # statement texts are fixed in code, so this stays small
                _PG_STATEMENTS[sql] = converted
        text, names = converted
        return text, [values[n] for n in names] if values else []

    def _free_lender(self) -> Lender | None:
        """The lender over asyncpg's pool, when a statement may take any connection; else None.

        Outside a transaction a statement needs no connection of its own: it runs on one the
        lender keeps between statements, or acquires from asyncpg's pool (bff/pg_lender.py).
        Through `databases` the same statement also built a
        `Connection` (three asyncio locks) keyed by the current Task in a WeakKeyDictionary, and
        took and released a lock around acquire and release: ~4% of a Home request's CPU.
        Inside `transaction()` (this task, or a task it started) `databases` keeps its
        connection, as before. The pool is a private of `databases` 0.9.0, pinned in
        pyproject.toml; without it, statements go through `databases`.
        """
        if _in_transaction.get():
            return None
        lender = self._lender
        if lender is None:
            pool = getattr(getattr(self._db, "_backend", None), "_pool", None)
            if pool is None:
                return None
            lender = self._lender = Lender(pool, self._keep)
        return lender

    async def _on_postgres(self, method: str, sql: str, values: Mapping[str, Any] | None) -> Any:
        """Run asyncpg's `method` (fetch, fetchrow, fetchval, execute): straight to asyncpg, since
        compiling each statement through SQLAlchemy cost ~14% of a Home request; on a lent
        connection outside a transaction, else on the connection `databases` keeps for this task."""
        text, args = self._pg(sql, values)
        lender = self._free_lender()
        if lender is not None:
            return await lender.run(method, text, args)
        async with self._db.connection() as conn:
            return await getattr(conn.raw_connection, method)(text, *args)

    async def fetch_all(self, sql: str, values: Mapping[str, Any] | None = None) -> list[Row]:
        self._count(sql)
        if self.dialect == "postgresql":
            return cast("list[Row]", await self._on_postgres("fetch", sql, values))
        records = await self._db.fetch_all(sql, self._values(values))
        return [self._row(r) for r in records]

    async def fetch_one(self, sql: str, values: Mapping[str, Any] | None = None) -> Row | None:
        self._count(sql)
        if self.dialect == "postgresql":
            return cast("Row | None", await self._on_postgres("fetchrow", sql, values))
        record = await self._db.fetch_one(sql, self._values(values))
        return None if record is None else self._row(record)

    async def fetch_val(self, sql: str, values: Mapping[str, Any] | None = None) -> Any:
        self._count(sql)
        if self.dialect == "postgresql":
            return await self._on_postgres("fetchval", sql, values)
        return await self._db.fetch_val(sql, self._values(values))

    async def execute(self, sql: str, values: Mapping[str, Any] | None = None) -> Any:
        self._count(sql)
        if self.dialect == "postgresql":
            return await self._on_postgres("execute", sql, values)
        return await self._db.execute(sql, self._values(values))

    @asynccontextmanager
    async def transaction(self) -> AsyncIterator[None]:
        """One transaction on one connection for the statements awaited inside it."""
        token = _in_transaction.set(True)
        try:
            async with self._db.transaction():
                yield
        finally:
            _in_transaction.reset(token)

    async def bulk_insert(self, table: str, columns: Sequence[str], rows: Iterable[Sequence[Any]]) -> int:
        """Load many rows fast (seeding): COPY on Postgres, executemany on SQLite. Uncounted."""
        rows = list(rows)
        if not rows:
            return 0
        async with self._db.connection() as conn:
            raw = conn.raw_connection
            if self.dialect == "postgresql":
                await raw.copy_records_to_table(table, records=rows, columns=list(columns))
            else:
                converted = [
                    tuple(sqlite_timestamp(v) if isinstance(v, datetime) else v for v in row) for row in rows
                ]
                marks = ", ".join("?" for _ in columns)
                # The connection autocommits: without an explicit transaction every row is a commit.
                await raw.execute("BEGIN")
                await raw.executemany(
                    f"INSERT INTO {table} ({', '.join(columns)}) VALUES ({marks})", converted
                )
                await raw.execute("COMMIT")
        return len(rows)

    async def ping(self) -> bool:
        try:
            return bool(await self._db.fetch_val("SELECT 1"))
        except Exception:
            return False
