"""Idempotency-Key on mutations: a retried request replays the first answer instead of running twice.

Semantics (Stripe's, and the IETF httpapi Idempotency-Key draft's):
- The key is scoped to its owner (`user:<id>`, or `ip:<address>` when anonymous): two users
  never share a key space.
- The first request with a key claims it (a "running" record, expiring after the request
  deadline so a crashed instance cannot lock it forever), runs, and stores its answer (status,
  media type, body) for IDEMPOTENCY_TTL_SECONDS (24 h).
- The same key with the same request (operation, name, variables: a hash) replays the stored
  answer, marked `Idempotent-Replayed: true`.
- The same key with another request: 422 IDEMPOTENCY_KEY_REUSED.
- The same key while the first is still running: 409 IDEMPOTENCY_KEY_IN_USE (retryable), as
  Stripe answers; the client retries after a moment and then gets the replay.
- An answer that says nothing final (5xx, TIMEOUT) is not stored: the claim is released and a
  retry runs again (mutations are idempotent on their own ids, e.g. clientMessageId).
- With REDIS_URL the records live in Redis (shared by every instance; claim with SET NX,
  finish and release with compare-and-set scripts); otherwise in a bounded in-process map.
- Redis unreachable: the mutation runs unprotected (logged), as it would without the header.
"""

from __future__ import annotations

import base64
import hashlib
import time
import uuid
from collections import OrderedDict
from dataclasses import dataclass
from typing import Any, Literal, Protocol

import orjson
import structlog
from redis.asyncio import Redis
from redis.exceptions import RedisError

log = structlog.get_logger("bff.idempotency")
MAX_KEY_CHARS = 255


@dataclass(frozen=True, slots=True)
class Stored:
    status: int
    media_type: str
    body: bytes


@dataclass(frozen=True, slots=True)
class Claim:
    """What `begin` found: go ahead (`run`, with the claim's token), replay, or refuse."""

    outcome: Literal["run", "replay", "in_use", "reused", "unavailable"]
    token: str = ""
    stored: Stored | None = None


def valid_key(key: str) -> bool:
    return 0 < len(key) <= MAX_KEY_CHARS and key.isascii() and key.isprintable()


def fingerprint(document: str, operation_name: str | None, variables: dict[str, Any] | None) -> str:
    """The request, as far as its meaning goes: document text, operation name, variables."""
    canonical = orjson.dumps([document, operation_name, variables or {}], option=orjson.OPT_SORT_KEYS)
    return hashlib.sha256(canonical).hexdigest()


class IdempotencyStore(Protocol):
    async def begin(self, key: str, fingerprint: str, lock_seconds: float) -> Claim: ...

    async def finish(self, key: str, claim: Claim, fingerprint: str, stored: Stored) -> None: ...

    async def release(self, key: str, claim: Claim) -> None: ...


def _record(fingerprint: str, stored: Stored) -> dict[str, Any]:
    return {
        "fp": fingerprint,
        "status": stored.status,
        "media": stored.media_type,
        "body": base64.b64encode(stored.body).decode(),
    }


def _claim_from(record: dict[str, Any], fingerprint: str) -> Claim:
    if record.get("fp") != fingerprint:
        return Claim("reused")
    if record.get("state") == "running":
        return Claim("in_use")
    stored = Stored(int(record["status"]), str(record["media"]), base64.b64decode(record["body"]))
    return Claim("replay", stored=stored)


class MemoryIdempotencyStore:
    """Embedded mode: one process, so a map is enough; bounded (oldest entries go first)."""

    def __init__(self, ttl_seconds: float, max_entries: int = 10_000) -> None:
        self._ttl = ttl_seconds
        self._max = max_entries
        self._entries: OrderedDict[str, tuple[float, dict[str, Any]]] = OrderedDict()

    def _get(self, key: str) -> dict[str, Any] | None:
        entry = self._entries.get(key)
        if entry is None:
            return None
        if entry[0] <= time.monotonic():
            del self._entries[key]
            return None
        return entry[1]

    def _put(self, key: str, record: dict[str, Any], seconds: float) -> None:
        self._entries[key] = (time.monotonic() + seconds, record)
        self._entries.move_to_end(key)
        while len(self._entries) > self._max:
            self._entries.popitem(last=False)

    async def begin(self, key: str, fingerprint: str, lock_seconds: float) -> Claim:
        record = self._get(key)
        if record is not None:
            return _claim_from(record, fingerprint)
        token = uuid.uuid4().hex
        self._put(key, {"state": "running", "fp": fingerprint, "token": token}, lock_seconds)
        return Claim("run", token)

    async def finish(self, key: str, claim: Claim, fingerprint: str, stored: Stored) -> None:
        record = self._get(key)
        if record is not None and record.get("token") == claim.token:
            self._put(key, _record(fingerprint, stored), self._ttl)

    async def release(self, key: str, claim: Claim) -> None:
        record = self._get(key)
        if record is not None and record.get("token") == claim.token:
            del self._entries[key]


# KEYS[1]: key. ARGV: the running record (as claimed), the final record, ttl seconds.
_FINISH = """
if redis.call('GET', KEYS[1]) == ARGV[1] then
  redis.call('SET', KEYS[1], ARGV[2], 'EX', ARGV[3])
  return 1
end
return 0
"""
# KEYS[1]: key. ARGV: the running record (as claimed).
_RELEASE = """
if redis.call('GET', KEYS[1]) == ARGV[1] then
  return redis.call('DEL', KEYS[1])
end
return 0
"""


class RedisIdempotencyStore:
    def __init__(self, redis: Redis, ttl_seconds: int, prefix: str = "bff:idem:") -> None:
        self._redis = redis
        self._ttl = ttl_seconds
        self._prefix = prefix
        self._finish = redis.register_script(_FINISH)
        self._release = redis.register_script(_RELEASE)

    async def begin(self, key: str, fingerprint: str, lock_seconds: float) -> Claim:
        token = uuid.uuid4().hex
        running = orjson.dumps({"state": "running", "fp": fingerprint, "token": token})
        try:
            for _ in range(3):  # the record may expire between SET NX and GET: try again
                if await self._redis.set(
                    self._prefix + key, running, nx=True, px=max(1, int(lock_seconds * 1000))
                ):
                    return Claim("run", running.decode())
                raw = await self._redis.get(self._prefix + key)
                if raw is not None:
                    return _claim_from(orjson.loads(raw), fingerprint)
        except (RedisError, OSError) as exc:
            log.warning("idempotency_unavailable", error=str(exc)[:200])
        return Claim("unavailable")

    async def finish(self, key: str, claim: Claim, fingerprint: str, stored: Stored) -> None:
        try:
            await self._finish(
                keys=[self._prefix + key],
                args=[claim.token, orjson.dumps(_record(fingerprint, stored)), self._ttl],
            )
        except (RedisError, OSError) as exc:
            log.warning("idempotency_unavailable", error=str(exc)[:200])

    async def release(self, key: str, claim: Claim) -> None:
        try:
            await self._release(keys=[self._prefix + key], args=[claim.token])
        except (RedisError, OSError) as exc:
            log.warning("idempotency_unavailable", error=str(exc)[:200])
