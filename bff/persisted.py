"""Persisted operations: Apollo's automatic persisted queries, and trusted documents.

The wire protocol is Apollo's (`extensions.persistedQuery = {version: 1, sha256Hash}`), over
POST and GET:

- hash without `query`: the stored document runs; an unknown hash gets PERSISTED_QUERY_NOT_FOUND
  (message `PersistedQueryNotFound`) with HTTP 200, so Apollo's link retries with the query
  instead of giving up on persisted queries (older links disable them on a 400);
- hash with `query`: the hash must be the SHA-256 of the query (PERSISTED_QUERY_HASH_MISMATCH
  otherwise); once the document parses and validates it is stored and runs.

Automatic ones live in Redis (`PERSISTED_QUERY_REDIS_PREFIX` + hash, expiring after
`PERSISTED_QUERY_TTL_SECONDS`) when REDIS_URL is set, so every instance knows what one learnt;
in process otherwise. Operations registered from a manifest (`bff register-operations`) live
in the database table `persisted_operations` and are found by hash in every mode. An LRU of
`PERSISTED_QUERY_CACHE_SIZE` documents sits in front of both.

With TRUSTED_DOCUMENTS only registered operations run: nothing is learnt from clients, a
document sent in full runs only when its hash is registered (OPERATION_NOT_TRUSTED otherwise),
and an unknown hash is PERSISTED_QUERY_NOT_FOUND.

A Redis failure never fails a request: a lookup counts as a miss (the client then sends the
query) and a store is skipped; both are logged.
"""

from __future__ import annotations

import asyncio
import hashlib
import re
from collections import OrderedDict
from collections.abc import Callable
from typing import Any, TypeVar

import redis.asyncio as redis
import structlog
from redis.exceptions import RedisError

from bff.config import Settings
from bff.db import Database
from bff.errors import BffError, ErrorCode

log = structlog.get_logger("bff.persisted")
_SHA256 = re.compile(r"^[0-9a-f]{64}$")
REDIS_TIMEOUT_SECONDS = 1.0
T = TypeVar("T")


def sha256(text: str) -> str:
    return hashlib.sha256(text.encode()).hexdigest()


def not_found() -> BffError:
    # The message is what older Apollo links match on; newer ones read the code.
    return BffError(ErrorCode.PERSISTED_QUERY_NOT_FOUND, "PersistedQueryNotFound")


def requested_hash(extensions: dict[str, Any] | None) -> str | None:
    """The sha256Hash of `extensions.persistedQuery`, checked; None when there is none."""
    if not extensions or "persistedQuery" not in extensions:
        return None
    persisted = extensions["persistedQuery"]
    if not isinstance(persisted, dict):
        raise BffError(ErrorCode.BAD_REQUEST, "`extensions.persistedQuery` must be an object")
    if persisted.get("version") != 1:
        raise BffError(ErrorCode.BAD_REQUEST, "Unsupported persisted query version: send version 1")
    digest = persisted.get("sha256Hash")
    if not isinstance(digest, str) or not _SHA256.match(digest.lower()):
        raise BffError(
            ErrorCode.BAD_REQUEST, "`extensions.persistedQuery.sha256Hash` must be 64 hexadecimal digits"
        )
    return digest.lower()


class PersistedOperations:
    """Finds the document of a request: its `query`, or the one stored under its hash."""

    def __init__(self, settings: Settings, db: Database) -> None:
        self._settings = settings
        self._db = db
        self._lru: OrderedDict[str, str] = OrderedDict()
        self._local: OrderedDict[str, str] = OrderedDict()  # APQ without Redis
        self._redis: redis.Redis | None = None
        if settings.redis_url and settings.persisted_queries and not settings.trusted_documents:
            self._redis = redis.Redis.from_url(
                settings.redis_url,
                socket_timeout=REDIS_TIMEOUT_SECONDS,
                socket_connect_timeout=REDIS_TIMEOUT_SECONDS,
                decode_responses=True,
            )

    async def close(self) -> None:
        if self._redis is not None:
            await self._redis.aclose()

    async def document(
        self, query: str | None, extensions: dict[str, Any] | None, prepare: Callable[[str], T]
    ) -> T:
        """`prepare(text)` of the request's document; learns it when it came with its hash."""
        settings = self._settings
        digest = requested_hash(extensions)
        if settings.trusted_documents:
            return prepare(await self._trusted(query, digest))
        if digest is None:
            assert query is not None  # the HTTP layer requires a query without a hash
            return prepare(query)
        if not settings.persisted_queries:
            raise BffError(ErrorCode.PERSISTED_QUERY_NOT_SUPPORTED, "PersistedQueryNotSupported")
        if query is None:
            stored = await self._find(digest)
            if stored is None:
                raise not_found()
            return prepare(stored)
        if sha256(query) != digest:
            raise BffError(
                ErrorCode.PERSISTED_QUERY_HASH_MISMATCH,
                "`extensions.persistedQuery.sha256Hash` is not the SHA-256 of `query`",
            )
        prepared = prepare(query)  # only documents that parse and validate are stored
        if self._lru.get(digest) != query:
            await self._store(digest, query)
        return prepared

    async def _trusted(self, query: str | None, digest: str | None) -> str:
        if query is None:
            assert digest is not None
            stored = await self._registered(digest)
            if stored is None:
                raise not_found()
            return stored
        computed = sha256(query)
        if digest is not None and computed != digest:
            raise BffError(
                ErrorCode.PERSISTED_QUERY_HASH_MISMATCH,
                "`extensions.persistedQuery.sha256Hash` is not the SHA-256 of `query`",
            )
        if await self._registered(computed) is None:
            raise BffError(
                ErrorCode.OPERATION_NOT_TRUSTED,
                "This server runs only registered operations (trusted documents): register it with "
                "`bff register-operations`",
            )
        return query

    # -- lookups -------------------------------------------------------------------------------

    def _remember(self, digest: str, query: str) -> None:
        size = self._settings.persisted_query_cache_size
        if not size:
            return
        self._lru[digest] = query
        self._lru.move_to_end(digest)
        while len(self._lru) > size:
            self._lru.popitem(last=False)

    def _cached(self, digest: str) -> str | None:
        query = self._lru.get(digest)
        if query is not None:
            self._lru.move_to_end(digest)
        return query

    async def _registered(self, digest: str) -> str | None:
        query = self._cached(digest)
        if query is None:
            query = await self._db.fetch_val(
                "SELECT body FROM persisted_operations WHERE id = :id", {"id": digest}
            )
            if query is not None:
                self._remember(digest, query)
        return query

    async def _find(self, digest: str) -> str | None:
        query = self._cached(digest)
        if query is not None:
            return query
        if self._redis is not None:
            try:
                async with asyncio.timeout(REDIS_TIMEOUT_SECONDS):
                    found = await self._redis.get(self._settings.persisted_query_redis_prefix + digest)
                query = found if isinstance(found, str) else None
            except (RedisError, OSError, TimeoutError) as exc:
                log.warning("persisted_query_lookup_failed", error=type(exc).__name__)
        else:
            query = self._local.get(digest)
            if query is not None:
                self._local.move_to_end(digest)
        if query is not None and sha256(query) == digest:
            self._remember(digest, query)
            return query
        return await self._registered(digest)

    async def _store(self, digest: str, query: str) -> None:
        self._remember(digest, query)
        settings = self._settings
        if self._redis is None:
            # Without Redis the store is this process's: bounded like the LRU, at least 1,000.
            self._local[digest] = query
            self._local.move_to_end(digest)
            while len(self._local) > max(settings.persisted_query_cache_size, 1_000):
                self._local.popitem(last=False)
            return
        try:
            async with asyncio.timeout(REDIS_TIMEOUT_SECONDS):
                await self._redis.set(
                    settings.persisted_query_redis_prefix + digest,
                    query,
                    ex=settings.persisted_query_ttl_seconds,
                )
        except (RedisError, OSError, TimeoutError) as exc:
            log.warning("persisted_query_store_failed", error=type(exc).__name__)


# -- manifests (`bff register-operations`) -------------------------------------------------------


class ManifestError(ValueError):
    pass


def read_manifest(data: object) -> list[tuple[str, str | None, str]]:
    """(hash, name, body) of each operation of an Apollo persisted-query manifest or a {hash: body} map."""
    if not isinstance(data, dict):
        raise ManifestError("The manifest must be a JSON object")
    entries: list[tuple[str, str | None, str]] = []
    if data.get("format") == "apollo-persisted-query-manifest":
        if data.get("version") != 1:
            raise ManifestError("Only version 1 of apollo-persisted-query-manifest is supported")
        operations = data.get("operations")
        if not isinstance(operations, list):
            raise ManifestError("`operations` must be a list")
        for index, operation in enumerate(operations):
            if not isinstance(operation, dict):
                raise ManifestError(f"operations[{index}] must be an object")
            digest, name, body = operation.get("id"), operation.get("name"), operation.get("body")
            if not isinstance(digest, str) or not isinstance(body, str):
                raise ManifestError(f"operations[{index}] needs a string `id` and `body`")
            entries.append((digest, name if isinstance(name, str) else None, body))
    else:
        for digest, body in data.items():
            if not isinstance(body, str):
                raise ManifestError(f"The value of {digest[:80]!r} must be the operation's text")
            entries.append((digest, None, body))
    for digest, _, body in entries:
        if digest.lower() != sha256(body):
            raise ManifestError(
                f"{digest[:80]!r} is not the SHA-256 of its body: clients send that hash, so it must be"
            )
    return [(digest.lower(), name, body) for digest, name, body in entries]


async def register(db: Database, entries: list[tuple[str, str | None, str]]) -> int:
    """Store operations (one transaction); returns how many were new."""
    added = 0
    async with db.transaction():
        for digest, name, body in entries:
            exists = await db.fetch_val("SELECT 1 FROM persisted_operations WHERE id = :id", {"id": digest})
            if exists:
                continue
            await db.execute(
                "INSERT INTO persisted_operations (id, name, body) VALUES (:id, :name, :body)",
                {"id": digest, "name": name, "body": body},
            )
            added += 1
    return added
