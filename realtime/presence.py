"""Who is online in a room, counted once per user across devices and instances.

A user is online in a room while at least one of their connections is `connect`ed to it
(a `roomPresence` subscription). The first connection of a user publishes JOINED on
`channels.presence(room)`, the last one to go publishes LEFT. Chosen like the broker:
`redis://…` -> RedisPresence (shared by every instance, entries expire after a TTL unless
refreshed, so the members of a crashed instance go offline), otherwise MemoryPresence.

Guarantees every implementation keeps:
- one JOINED when a user goes from no connection to one, one LEFT when the last one goes
  (or, with Redis, expires); a second device is neither.
- `online` lists each user once, in user id order.
"""

from __future__ import annotations

import asyncio
import contextlib
import itertools
import uuid
from collections.abc import AsyncIterator
from contextlib import AbstractAsyncContextManager, asynccontextmanager
from typing import Any, Literal, Protocol

import redis.asyncio as redis
import structlog
from prometheus_client import Counter

from realtime import channels
from realtime.broker import Broker

log = structlog.get_logger("bff.presence")
EXPIRED = Counter("bff_presence_expired_total", "Users marked offline because their entries expired")
Kind = Literal["JOINED", "LEFT"]


class Presence(Protocol):
    name: str

    async def start(self) -> None: ...
    async def close(self) -> None: ...
    def connect(self, room_id: int, user_id: int) -> AbstractAsyncContextManager[None]:
        """Count one connection of `user_id` in `room_id` while the context is open."""
        ...

    async def online(self, room_id: int) -> list[int]: ...


def from_url(url: str | None, broker: Broker, ttl_seconds: float, heartbeat_seconds: float) -> Presence:
    """`redis://…` -> RedisPresence; None or `memory://` -> the in-process presence."""
    if not url or url.startswith("memory://"):
        return MemoryPresence(broker)
    if url.startswith(("redis://", "rediss://", "unix://")):
        return RedisPresence(url, broker, ttl_seconds, heartbeat_seconds)
    raise ValueError(f"unsupported presence URL scheme: {url.split(':', 1)[0]}")


def event(kind: Kind, user_id: int) -> bytes:
    return channels.encode({"kind": kind, "user_id": user_id})


class MemoryPresence:
    """One process: connection counts per (room, user). A crash takes the whole state with it."""

    name = "memory"

    def __init__(self, broker: Broker) -> None:
        self._broker = broker
        self._rooms: dict[int, dict[int, int]] = {}

    async def start(self) -> None:
        return None

    async def close(self) -> None:
        return None

    @asynccontextmanager
    async def connect(self, room_id: int, user_id: int) -> AsyncIterator[None]:
        users = self._rooms.setdefault(room_id, {})
        users[user_id] = users.get(user_id, 0) + 1
        try:
            if users[user_id] == 1:
                await self._broker.publish(channels.presence(room_id), event("JOINED", user_id))
            yield
        finally:
            users[user_id] -= 1
            if users[user_id] == 0:
                del users[user_id]
                if not users:
                    self._rooms.pop(room_id, None)
                with contextlib.suppress(Exception):
                    await self._broker.publish(channels.presence(room_id), event("LEFT", user_id))

    async def online(self, room_id: int) -> list[int]:
        return sorted(self._rooms.get(room_id, {}))


# Keys share a hash tag per room, so a room's keys live on one Redis Cluster slot.
#   bff:presence:{<room>}          sorted set: user -> latest expiry of their connections
#   bff:presence:{<room>}:<user>   sorted set: connection -> its expiry
# Scores are Redis server time (TIME), so instances' clocks need not agree.
_NOW = "local t = redis.call('TIME') local now = tonumber(t[1]) + tonumber(t[2]) / 1000000 "

# KEYS: room, user key. ARGV: user, connection, ttl. Returns 1 if the user was offline.
_JOIN = (
    _NOW
    + """
local ttl = tonumber(ARGV[3])
local expires = now + ttl
local keep = math.ceil(ttl * 2) + 1
redis.call('ZREMRANGEBYSCORE', KEYS[2], '-inf', now)
local before = redis.call('ZCARD', KEYS[2])
redis.call('ZADD', KEYS[2], expires, ARGV[2])
redis.call('EXPIRE', KEYS[2], keep)
local listed = redis.call('ZSCORE', KEYS[1], ARGV[1])
if (not listed) or tonumber(listed) < expires then
  redis.call('ZADD', KEYS[1], expires, ARGV[1])
end
redis.call('EXPIRE', KEYS[1], keep)
if before == 0 and not (listed and tonumber(listed) > now) then return 1 end
return 0
"""
)

# KEYS: room, user key. ARGV: user, connection. Returns 1 if the user went offline.
_LEAVE = (
    _NOW
    + """
redis.call('ZREM', KEYS[2], ARGV[2])
redis.call('ZREMRANGEBYSCORE', KEYS[2], '-inf', now)
local latest = redis.call('ZRANGE', KEYS[2], -1, -1, 'WITHSCORES')
if #latest == 0 then
  redis.call('DEL', KEYS[2])
  return redis.call('ZREM', KEYS[1], ARGV[1])
end
redis.call('ZADD', KEYS[1], latest[2], ARGV[1])
return 0
"""
)

# KEYS: room. ARGV: user key prefix. Returns the users whose every connection expired.
_SWEEP = (
    _NOW
    + """
local gone = {}
for _, user in ipairs(redis.call('ZRANGEBYSCORE', KEYS[1], '-inf', now)) do
  local key = ARGV[1] .. user
  redis.call('ZREMRANGEBYSCORE', key, '-inf', now)
  local latest = redis.call('ZRANGE', key, -1, -1, 'WITHSCORES')
  if #latest == 0 then
    redis.call('ZREM', KEYS[1], user)
    redis.call('DEL', key)
    table.insert(gone, user)
  else
    redis.call('ZADD', KEYS[1], latest[2], user)
  end
end
return gone
"""
)

_ONLINE = _NOW + "return redis.call('ZRANGEBYSCORE', KEYS[1], '(' .. now, '+inf')"


def _room_key(room_id: int) -> str:
    return f"bff:presence:{{{room_id}}}"


def _user_key(room_id: int, user_id: int) -> str:
    return f"{_room_key(room_id)}:{user_id}"


class RedisPresence:
    """Shared by all instances through Redis. Each instance refreshes its own connections every
    heartbeat and sweeps expired entries of the rooms it has connections in, publishing LEFT
    for users whose last connection expired (their instance died without saying goodbye)."""

    name = "redis"

    def __init__(self, url: str, broker: Broker, ttl_seconds: float, heartbeat_seconds: float) -> None:
        self._client = redis.Redis.from_url(
            url, max_connections=8, socket_connect_timeout=5, socket_timeout=5
        )
        self._broker = broker
        self._ttl = ttl_seconds
        self._heartbeat = heartbeat_seconds
        self._instance = uuid.uuid4().hex[:12]
        self._ids = itertools.count(1)
        self._local: dict[str, tuple[int, int]] = {}  # connection -> (room, user)
        self._join = self._client.register_script(_JOIN)
        self._leave = self._client.register_script(_LEAVE)
        self._sweep = self._client.register_script(_SWEEP)
        self._online = self._client.register_script(_ONLINE)
        self._task: asyncio.Task[None] | None = None
        # A refresh must not re-add a connection that is leaving meanwhile.
        self._lock = asyncio.Lock()

    async def start(self) -> None:
        self._task = asyncio.create_task(self._refresh_forever(), name="bff-presence-heartbeat")

    async def close(self) -> None:
        if self._task:
            self._task.cancel()
            with contextlib.suppress(asyncio.CancelledError):
                await self._task
        for connection, (room_id, user_id) in list(self._local.items()):
            self._local.pop(connection, None)
            with contextlib.suppress(Exception):
                async with asyncio.timeout(2):
                    await self._disconnect(connection, room_id, user_id)
        await self._client.aclose()

    @asynccontextmanager
    async def connect(self, room_id: int, user_id: int) -> AsyncIterator[None]:
        connection = f"{self._instance}:{next(self._ids)}"
        self._local[connection] = (room_id, user_id)
        try:
            await self._register(connection, room_id, user_id)
            yield
        finally:
            try:
                async with asyncio.timeout(5), self._lock:
                    self._local.pop(connection, None)
                    await self._disconnect(connection, room_id, user_id)
            except Exception as error:  # the entry expires after the TTL anyway
                log.warning("presence_leave_failed", room_id=room_id, error=type(error).__name__)

    async def online(self, room_id: int) -> list[int]:
        users = await self._online(keys=[_room_key(room_id)])
        return sorted(int(u) for u in users)

    async def _register(self, connection: str, room_id: int, user_id: int) -> None:
        keys = [_room_key(room_id), _user_key(room_id, user_id)]
        if await self._join(keys=keys, args=[user_id, connection, self._ttl]):
            await self._broker.publish(channels.presence(room_id), event("JOINED", user_id))

    async def _disconnect(self, connection: str, room_id: int, user_id: int) -> None:
        keys = [_room_key(room_id), _user_key(room_id, user_id)]
        if await self._leave(keys=keys, args=[user_id, connection]):
            await self._broker.publish(channels.presence(room_id), event("LEFT", user_id))

    async def _refresh_forever(self) -> None:
        while True:
            await asyncio.sleep(self._heartbeat)
            try:
                async with asyncio.timeout(max(self._heartbeat, 5)):
                    await self.refresh()
            except asyncio.CancelledError:
                raise
            except Exception as error:
                log.warning("presence_refresh_failed", error=type(error).__name__)

    async def refresh(self) -> None:
        """Extend this instance's entries, then expire other instances' stale ones."""
        for connection in list(self._local):
            async with self._lock:
                entry = self._local.get(connection)
                if entry is not None:
                    # A connection swept while Redis was unreachable comes back (JOINED again).
                    await self._register(connection, *entry)
        for room_id in {room for room, _ in self._local.values()}:
            gone: list[Any] = await self._sweep(keys=[_room_key(room_id)], args=[_room_key(room_id) + ":"])
            for user in gone:
                EXPIRED.inc()
                await self._broker.publish(channels.presence(room_id), event("LEFT", int(user)))
