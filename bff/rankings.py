"""Leaderboards as Redis sorted sets, kept in step with the database (the source of truth).

Per game: a sorted set of the best `size` scores, a marker saying the set is complete, a refill
lock, and a pending set for scores recorded while a refill runs. The order is the database's,
points desc then user id asc: the score is the points (exact in a double, at most 2^31-1), the
member the user id's complement, zero-padded, so that among equal points the reversed
lexicographic order Redis uses puts the lower user id first.

- `top(game, n)`: one script call; None when the set is not there (cold or restarted Redis,
  expired marker, Redis unreachable): the caller reads the database.
- `refill(game, load)`: one process per game at a time (single-flight here, a lock key across
  instances) reads the top `size` from the database and writes the set; others read the database
  meanwhile. Scores recorded during the refill wait in the pending set and are merged in.
- `record(game, user, points)` after the write committed: `ZADD GT` then trim to `size`. The set
  always holds the true top `size`: scores only rise, and every rise is recorded.
- The marker expires after CACHE_REDIS_TTL_SECONDS: a record lost to a Redis failure is
  corrected by the next refill.
"""

from __future__ import annotations

import asyncio
import contextlib
import uuid
from collections.abc import Awaitable, Callable

import structlog
from redis.asyncio import Redis
from redis.exceptions import RedisError

log = structlog.get_logger("bff.rankings")
REDIS_TIMEOUT_SECONDS = 1.0
LOCK_SECONDS = 15  # longer than a refill's statement may run (DB_STATEMENT_TIMEOUT_MS)
_MAX_ID = 2**63 - 1

Entries = list[tuple[int, int]]  # (user id, points), best first

# KEYS: set, marker. ARGV: n.
_TOP = """
if redis.call('EXISTS', KEYS[2]) == 0 then return false end
return redis.call('ZREVRANGE', KEYS[1], 0, tonumber(ARGV[1]) - 1, 'WITHSCORES')
"""

# KEYS: set, marker, pending, lock. ARGV: points, member, size, pending ttl.
_RECORD = """
if redis.call('EXISTS', KEYS[2]) == 1 then
  redis.call('ZADD', KEYS[1], 'GT', ARGV[1], ARGV[2])
  redis.call('ZREMRANGEBYRANK', KEYS[1], 0, -(tonumber(ARGV[3]) + 1))
elseif redis.call('EXISTS', KEYS[4]) == 1 then
  redis.call('ZADD', KEYS[3], 'GT', ARGV[1], ARGV[2])
  redis.call('EXPIRE', KEYS[3], ARGV[4])
end
return 0
"""

# KEYS: set, marker, pending, lock. ARGV: ttl, size, lock token, then points, member pairs.
_REFILL = """
redis.call('DEL', KEYS[1])
for i = 4, #ARGV, 2 do
  redis.call('ZADD', KEYS[1], ARGV[i], ARGV[i + 1])
end
if redis.call('EXISTS', KEYS[3]) == 1 then
  redis.call('ZUNIONSTORE', KEYS[1], 2, KEYS[1], KEYS[3], 'AGGREGATE', 'MAX')
  redis.call('DEL', KEYS[3])
end
redis.call('ZREMRANGEBYRANK', KEYS[1], 0, -(tonumber(ARGV[2]) + 1))
-- The set outlives its marker: a reader never sees the marker without the set.
redis.call('EXPIRE', KEYS[1], tonumber(ARGV[1]) + 60)
redis.call('SET', KEYS[2], '1', 'EX', ARGV[1])
if redis.call('GET', KEYS[4]) == ARGV[3] then redis.call('DEL', KEYS[4]) end
return 0
"""


def member(user_id: int) -> str:
    return f"{_MAX_ID - user_id:019d}"


def user_of(member_bytes: bytes | str) -> int:
    return _MAX_ID - int(member_bytes)


class Rankings:
    def __init__(self, redis: Redis, prefix: str, *, ttl_seconds: int, size: int) -> None:
        self._redis = redis
        self._prefix = prefix
        self.ttl = ttl_seconds
        self.size = size
        self._top = redis.register_script(_TOP)
        self._record = redis.register_script(_RECORD)
        self._refill = redis.register_script(_REFILL)
        self._refilling: dict[int, asyncio.Future[Entries | None]] = {}

    def _keys(self, game_id: int) -> list[str]:
        base = f"{self._prefix}{game_id}"
        return [base, base + ":complete", base + ":pending", base + ":lock"]

    async def top(self, game_id: int, n: int) -> Entries | None:
        """The best `n` (n <= size), or None when the set cannot answer."""
        try:
            async with asyncio.timeout(REDIS_TIMEOUT_SECONDS):
                raw = await self._top(keys=self._keys(game_id)[:2], args=[n])
        except (RedisError, OSError, TimeoutError) as exc:
            log.warning("ranking_read_failed", game=game_id, error=type(exc).__name__)
            return None
        if raw is None:
            return None
        return [(user_of(raw[i]), int(float(raw[i + 1]))) for i in range(0, len(raw), 2)]

    async def record(self, game_id: int, user_id: int, points: int) -> None:
        """A user's new best, after it committed."""
        try:
            async with asyncio.timeout(REDIS_TIMEOUT_SECONDS):
                await self._record(
                    keys=self._keys(game_id), args=[points, member(user_id), self.size, LOCK_SECONDS * 2]
                )
        except (RedisError, OSError, TimeoutError) as exc:
            # Bounded by the marker's TTL: the next refill reads the database again.
            log.warning("ranking_record_failed", game=game_id, error=type(exc).__name__)

    async def refill(self, game_id: int, load: Callable[[int], Awaitable[Entries]], n: int) -> Entries:
        """The best `n` from the database; writes the set when this process wins the refill lock."""
        running = self._refilling.get(game_id)
        if running is not None:
            with contextlib.suppress(Exception):
                entries = await asyncio.shield(running)
                if entries is not None:
                    return entries[:n]
            return await load(n)
        future: asyncio.Future[Entries | None] = asyncio.get_running_loop().create_future()
        future.add_done_callback(lambda f: f.cancelled() or f.exception())
        self._refilling[game_id] = future
        try:
            entries = await self._refill_once(game_id, load)
            future.set_result(entries)
        finally:
            if not future.done():
                future.set_result(None)
            del self._refilling[game_id]
        return entries[:n] if entries is not None else await load(n)

    async def _refill_once(self, game_id: int, load: Callable[[int], Awaitable[Entries]]) -> Entries | None:
        keys = self._keys(game_id)
        token = uuid.uuid4().hex
        try:
            async with asyncio.timeout(REDIS_TIMEOUT_SECONDS):
                locked = await self._redis.set(keys[3], token, nx=True, ex=LOCK_SECONDS)
        except (RedisError, OSError, TimeoutError) as exc:
            log.warning("ranking_lock_failed", game=game_id, error=type(exc).__name__)
            return None
        if not locked:
            return None  # another instance refills; read the database meanwhile
        entries = await load(self.size)
        args: list[str | int] = [self.ttl, self.size, token]
        for user_id, points in entries:
            args += [points, member(user_id)]
        try:
            async with asyncio.timeout(REDIS_TIMEOUT_SECONDS):
                await self._refill(keys=keys, args=args)
        except (RedisError, OSError, TimeoutError) as exc:
            log.warning("ranking_refill_failed", game=game_id, error=type(exc).__name__)
        return entries
