"""The read cache for hot, shared rows: an in-process layer in front of a Redis layer.

- Local: a bounded LRU with a TTL, per process. Redis (with REDIS_URL): shared by every
  instance, entries expiring after CACHE_REDIS_TTL_SECONDS. Without Redis, only the local layer.
- `get_many(namespace, keys, load)`: local hits, then one MGET, then one `load` of what is
  still missing. Concurrent misses of a key in this process share one fetch (single-flight).
- `invalidate(namespace, keys)` after a write commits: drops the local entries, deletes the
  Redis entries and bumps their versions, and (with Redis) publishes the keys on the broker:
  every instance drops them from its local layer. A lost message (pub/sub is at most once) is
  bounded by the local TTL; a broker gap (RESYNC) clears the local layer.
- A fill never stores what a concurrent write made stale: Redis fills are compare-and-set on
  the key's version read with the miss, local fills are skipped for keys invalidated since the
  fetch began.
- A Redis failure never fails a read: it counts as a miss and the store is skipped (logged).
- With Redis, hot entries are re-read from it before they expire (refresh-ahead), and an entry
  read shortly after its expiry is answered while it is re-read (stale-while-revalidate,
  counted as `result="stale"`): a request waits for Redis only for a key it has not read lately.

Counters: `bff_cache_requests_total{namespace, layer, result}` (hit/miss), loads from the
database, invalidations, Redis errors; in `/metrics`.
"""

from __future__ import annotations

import asyncio
import contextlib
import contextvars
import functools
import math
import random
import time
import uuid
from collections.abc import Awaitable, Callable, Hashable, Iterable, Sequence
from dataclasses import dataclass
from typing import Any, Generic, TypeVar

import orjson
import structlog
from prometheus_client import Counter
from redis.asyncio import Redis
from redis.exceptions import RedisError

from bff.cache_local import LocalLayer, scope_of
from bff.config import Settings
from bff.rankings import Rankings
from realtime import channels
from realtime.broker import Broker
from realtime.hub import RESYNC

K = TypeVar("K", bound=Hashable)
V = TypeVar("V")
log = structlog.get_logger("bff.cache")

REQUESTS = Counter("bff_cache_requests_total", "Cache lookups by layer", ["namespace", "layer", "result"])
LOADS = Counter("bff_cache_loads_total", "Keys read from the database on a cache miss", ["namespace"])
INVALIDATIONS = Counter(
    "bff_cache_invalidations_total", "Keys invalidated, by where the write happened", ["namespace", "origin"]
)
ERRORS = Counter(
    "bff_cache_redis_errors_total", "Redis cache commands that failed (served as misses)", ["op"]
)


REFRESHES = Counter(
    "bff_cache_refreshes_total",
    "In-process entries renewed before they expired (refresh-ahead), by result: refreshed (from "
    "Redis), reloaded (from the database, Redis had lost it), gone (left to expire), failed (the "
    "reload failed: left to expire)",
    ["namespace", "result"],
)


@functools.cache
def _requests(namespace: str, layer: str, result: str) -> Counter:
    """The labelled child of REQUESTS, looked up once: `labels()` costs a lock and a tuple per call."""
    return REQUESTS.labels(namespace, layer, result)


@functools.cache
def _loads(namespace: str) -> Counter:
    return LOADS.labels(namespace)


WARMED = Counter(
    "bff_cache_warmed_keys_total",
    "Keys copied from Redis into the in-process layer when this instance started",
    ["namespace"],
)

REDIS_TIMEOUT_SECONDS = 1.0
WARM_TIMEOUT_SECONDS = 5.0  # a start never waits longer than this for its warm-up
WARM_BATCH = 1_000  # keys per SCAN step and per MGET
REFRESH_BATCH = 256  # keys per refresh MGET: other requests run between two
WARM_JITTER = 0.5  # copied entries live 50-100% of the TTL: they do not all expire together
# Redis copies live 80-100% of CACHE_REDIS_TTL_SECONDS: keys filled in one burst (a cold start,
# a busy minute) do not all leave Redis in the same second, which would send their readers to
# the database together once refresh-ahead finds them gone.
REDIS_TTL_JITTER = 0.2
VERSION_TTL_SECONDS = 86_400  # far beyond any fetch: a version never expires under a fetch in flight

# KEYS: value, version pairs. ARGV, per pair: the version read with the miss, the payload, its TTL.
_FILL = """
for i = 1, #KEYS, 2 do
  local a = (i - 1) / 2 * 3
  local now = redis.call('GET', KEYS[i + 1]) or ''
  if now == ARGV[a + 1] then
    redis.call('SET', KEYS[i], ARGV[a + 2], 'EX', ARGV[a + 3])
  end
end
return 0
"""

# Values read without a version check (`offer`): KEYS are value, version pairs; ARGV per pair the
# payload and its TTL. Stored only where no write ever bumped the key's version (nor within
# VERSION_TTL_SECONDS) and nothing is stored yet: such a value cannot predate a write's delete.
_OFFER = """
for i = 1, #KEYS, 2 do
  local a = i - 1
  if redis.call('EXISTS', KEYS[i + 1]) == 0 then
    redis.call('SET', KEYS[i], ARGV[a + 1], 'EX', ARGV[a + 2], 'NX')
  end
end
return 0
"""


@dataclass(frozen=True, slots=True)
class Namespace(Generic[V]):
    """A kind of cached value: its name (keys, metrics) and how it travels through Redis."""

    name: str
    encode: Callable[[V], bytes]
    decode: Callable[[bytes], V]
    shared: bool = True  # False: local layer only
    # A key back from its text in a Redis key name; with it, a starting instance warms this
    # namespace from Redis (`Cache.warm`).
    parse_key: Callable[[str], Hashable] | None = None


class _Abandoned(Exception):
    """The fetch another request was doing for this key did not finish (cancelled, failed)."""


class Cache:
    """Built by Services (`from_settings`); `Cache()` is the disabled one: every read loads."""

    def __init__(
        self,
        *,
        enabled: bool = False,
        local: LocalLayer | None = None,
        redis: Redis | None = None,
        broker: Broker | None = None,
        scope: str = "default",
        redis_ttl_seconds: int = 300,
        rankings: Rankings | None = None,
        warm_on_start: bool = True,
    ) -> None:
        self.enabled = enabled
        self.local = local if local is not None else LocalLayer(0, 0)
        self._redis = redis
        self._broker = broker
        self._prefix = f"bff:cache:{scope}:"
        self._channel = channels.cache_invalidation(scope)
        self._redis_ttl = redis_ttl_seconds
        self._warm_on_start = warm_on_start
        self.rankings = rankings  # leaderboards as Redis sorted sets (with Redis only)
        self._origin = uuid.uuid4().hex
        # Single-flight: each key being fetched -> the future of its whole batch's values.
        self._inflight: dict[tuple[str, Hashable], asyncio.Future[dict[Any, Any]]] = {}
        self._fill = redis.register_script(_FILL) if redis is not None else None
        self._offer = redis.register_script(_OFFER) if redis is not None else None
        self._listener: asyncio.Task[None] | None = None
        # Refresh-ahead: shared namespaces by name, and the one task re-reading due entries.
        self._shared: dict[str, Namespace[Any]] = {}
        self._refresher: asyncio.Task[None] | None = None
        # Refresh-through: namespace name -> a loader needing no request (`reload_from`).
        self._reloaders: dict[str, Callable[[list[Any]], Awaitable[dict[Any, Any]]]] = {}

    @classmethod
    def from_settings(cls, settings: Settings, broker: Broker) -> Cache:
        if not settings.cache_enabled:
            return cls()
        scope = scope_of(settings.database_url)
        redis = None
        rankings = None
        if settings.redis_url:
            redis = Redis.from_url(
                settings.redis_url,
                socket_timeout=REDIS_TIMEOUT_SECONDS,
                socket_connect_timeout=REDIS_TIMEOUT_SECONDS,
            )
            rankings = Rankings(
                redis,
                f"bff:cache:{scope}:lb:",
                ttl_seconds=settings.cache_redis_ttl_seconds,
                size=settings.max_page_size,
            )
        return cls(
            enabled=True,
            local=LocalLayer(settings.cache_local_max_entries, settings.cache_local_ttl_seconds),
            redis=redis,
            # In-process broker: every reader is in this process, and a write drops its keys here.
            broker=broker if redis is not None else None,
            scope=scope,
            redis_ttl_seconds=settings.cache_redis_ttl_seconds,
            rankings=rankings,
            warm_on_start=settings.cache_warm_on_start,
        )

    @property
    def has_redis(self) -> bool:
        return self._redis is not None

    # -- lifecycle -----------------------------------------------------------------------------

    async def start(self) -> None:
        """Listen for other instances' invalidations; returns once subscribed."""
        if not self.enabled or self._broker is None:
            return
        subscribed = asyncio.Event()
        self._listener = asyncio.create_task(self._listen(subscribed), name="bff-cache-invalidations")
        with contextlib.suppress(TimeoutError):  # the broker retries; the local TTL bounds the gap
            async with asyncio.timeout(5):
                await subscribed.wait()

    async def warm(self, namespaces: Sequence[Namespace[Any]]) -> int:
        """Copy what Redis holds of `namespaces` into the in-process layer, up to its size.

        A new instance (a deploy, a scale-out, a restart) then starts with the fleet's hot keys
        instead of missing each once under load: a Redis round trip for its reader, a loop cycle
        behind every other request. Run after `start` subscribed, so an invalidation arriving
        meanwhile wins (`LocalLayer.set` skips keys invalidated since the read began); Redis holds
        no value older than the last write (writes delete the key before they publish). Bounded by
        WARM_TIMEOUT_SECONDS; a Redis failure only ends it early (logged). Returns the keys copied.
        """
        if not self.enabled or self._redis is None or not self._warm_on_start:
            return 0
        started = time.monotonic()
        copied = 0
        try:
            async with asyncio.timeout(WARM_TIMEOUT_SECONDS):
                for namespace in namespaces:
                    if namespace.parse_key is None or not namespace.shared:
                        continue
                    self._shared[namespace.name] = namespace
                    copied += await self._warm_namespace(namespace, self.local.max_entries - copied, started)
        except (RedisError, OSError, TimeoutError) as exc:
            ERRORS.labels("warm").inc()
            log.warning("cache_warm_failed", error=type(exc).__name__, keys=copied)
        log.info("cache_warmed", keys=copied, ms=round((time.monotonic() - started) * 1000))
        return copied

    async def _warm_namespace(self, namespace: Namespace[Any], room: int, since: float) -> int:
        assert self._redis is not None
        prefix = self._key(namespace.name, "")
        match = "".join("\\" + c if c in "*?[]\\" else c for c in prefix) + "*"
        copied = 0
        names: list[str] = []
        async for raw in self._redis.scan_iter(match=match, count=WARM_BATCH):
            name = raw.decode()
            if not name.endswith(":v"):  # a version key (see `_version`), not a value
                names.append(name)
            if len(names) >= WARM_BATCH:
                copied += await self._warm_batch(namespace, prefix, names, since, room - copied)
                names = []
                if copied >= room:
                    break
        if names and copied < room:
            copied += await self._warm_batch(namespace, prefix, names, since, room - copied)
        return copied

    async def _warm_batch(
        self, namespace: Namespace[Any], prefix: str, names: list[str], since: float, room: int
    ) -> int:
        assert self._redis is not None and namespace.parse_key is not None
        if not names or room <= 0:
            return 0
        payloads: list[Any] = list(await self._redis.mget(names))
        copied = 0
        for name, payload in zip(names, payloads, strict=True):
            if payload is None:
                continue  # expired or deleted since the SCAN
            try:
                key = namespace.parse_key(name[len(prefix) :])
                value = namespace.decode(payload)
            except Exception:  # another release's format, say: it is loaded again on a miss
                continue
            self.local.set((namespace.name, key), value, since, jitter=WARM_JITTER)
            copied += 1
            if copied >= room:
                break
        if copied:
            WARMED.labels(namespace.name).inc(copied)
        return copied

    async def close(self) -> None:
        if self._refresher is not None:
            self._refresher.cancel()
            with contextlib.suppress(asyncio.CancelledError, Exception):
                await self._refresher
            self._refresher = None
        if self._listener is not None:
            self._listener.cancel()
            with contextlib.suppress(asyncio.CancelledError, Exception):
                await self._listener
            self._listener = None
        if self._redis is not None:
            await self._redis.aclose()

    async def _listen(self, subscribed: asyncio.Event) -> None:
        assert self._broker is not None
        while True:
            try:
                async with self._broker.subscribe(self._channel) as sub:
                    self.local.clear()  # whatever was published before we (re)subscribed is unknown
                    subscribed.set()
                    async for data in sub:
                        if data == RESYNC:
                            self.local.clear()
                            continue
                        self._apply(data)
            except asyncio.CancelledError:
                raise
            except Exception as exc:
                log.warning("cache_invalidation_listener_failed", error=type(exc).__name__)
                self.local.clear()
                await asyncio.sleep(1)

    def _apply(self, data: bytes) -> None:
        try:
            event = channels.decode(data)
            if event.get("origin") == self._origin:
                return  # applied when it was written
            namespace = str(event["namespace"])
            keys = event["keys"]
        except (ValueError, KeyError, TypeError):
            self.local.clear()
            return
        for key in keys:
            self.local.drop((namespace, key))
        INVALIDATIONS.labels(namespace, "remote").inc(len(keys))

    # -- reads ---------------------------------------------------------------------------------

    def held(self, namespace: Namespace[V], keys: Iterable[K]) -> dict[K, V]:
        """What the in-process layer holds of `keys` right now: no waiting, no fetch (hits counted)."""
        if not self.enabled:
            return {}
        refresh = namespace.shared and self._redis is not None
        local = self.local
        found: dict[K, V] = local.get_many(namespace.name, keys, refresh)
        if found:
            stale = local.stale_hits
            if stale:
                local.stale_hits = 0
                _requests(namespace.name, "local", "stale").inc(stale)
            _requests(namespace.name, "local", "hit").inc(len(found) - stale)
        if refresh and local.due:
            self._shared[namespace.name] = namespace
            if self._refresher is None:
                # In a context of its own: the request that happens to start it must not count
                # its reloads' statements (StatementCounter) or lend them its log fields.
                self._refresher = asyncio.get_running_loop().create_task(
                    self._refresh_due(), name="bff-cache-refresh", context=contextvars.Context()
                )
        return found

    def missed(self, namespace: Namespace[Any], count: int) -> None:
        """Count `count` keys `held` did not have, for a caller that loads them its own way."""
        if self.enabled and count:
            _requests(namespace.name, "local", "miss").inc(count)

    def reload_from(self, namespace: Namespace[K], load: Callable[[list[K]], Awaitable[dict[K, V]]]) -> None:
        """Let refresh-ahead reload `namespace`'s hot keys from the database with `load` when
        their Redis copy is gone (decision 46). `load` must need no request: it runs in the
        background, for whichever keys requests found due."""
        self._reloaders[namespace.name] = load

    async def _refresh_due(self) -> None:
        """Re-read from Redis, in the background, what requests found in its last quarter of life.

        A hot key then never expires on a request's path: its readers do not wait for a Redis
        round trip (a loop turn behind every other request) every CACHE_LOCAL_TTL_SECONDS. An
        entry Redis no longer has (a write deleted it, or its TTL ended) is reloaded from the
        database here when its namespace has a reloader (`reload_from`, decision 46), else left
        to expire and be loaded by the next miss. The staleness bound is the same as a miss's:
        a value is stored only if no invalidation of its key came after the read began
        (`LocalLayer.set`), and Redis holds no value older than the last write.
        """
        try:
            while self.local.due:
                due, self.local.due = self.local.due, {}
                for name, keys in due.items():
                    wanted = [k for k in keys if self.local.is_due((name, k))]
                    namespace = self._shared.get(name)
                    if namespace is not None:
                        # In steps: a refresh of thousands of keys (a warm start's entries
                        # expiring together, say) decoded in one go would stall every request.
                        for start in range(0, len(wanted), REFRESH_BATCH):
                            await self._refresh(namespace, wanted[start : start + REFRESH_BATCH])
        finally:
            self._refresher = None

    async def _refresh(self, namespace: Namespace[Any], keys: list[Hashable]) -> None:
        name = namespace.name
        since = time.monotonic()
        raw = await self._mget(name, [self._key(name, k) for k in keys], "refresh", "cache_refresh_failed")
        if raw is None:  # Redis failed: left to expire, not asked for again by every read
            for key in keys:
                self.local.settle((name, key))
            return
        gone: list[Hashable] = []
        for key, payload in zip(keys, raw, strict=True):
            if payload is not None:
                self.local.set((name, key), namespace.decode(payload), since)
            else:
                gone.append(key)  # its Redis copy reached its TTL, or a write deleted it
        if len(gone) < len(keys):
            REFRESHES.labels(name, "refreshed").inc(len(keys) - len(gone))
        if gone:
            await self._reload(namespace, gone)

    async def _reload(self, namespace: Namespace[Any], keys: list[Hashable]) -> None:
        """Keys hot in this process whose Redis copy is gone: from the database now, in the
        background, when the namespace has a reloader (decision 46); else, as before, left to
        expire and be loaded by the next reader's miss."""
        name = namespace.name
        load = self._reloaders.get(name)
        values: dict[Any, Any] = {}
        inflight = self._inflight
        keys = [key for key in keys if (name, key) not in inflight]  # a reader's miss stores those
        result = "gone"
        if load is not None and keys:
            try:
                # As a miss: single-flight with readers, version-checked fill of both layers.
                values = await self._fetch(namespace, keys, load)
            except Exception as exc:  # the database failed: readers load it themselves later
                result = "failed"
                log.warning("cache_reload_failed", namespace=name, error=type(exc).__name__)
            else:
                REFRESHES.labels(name, "reloaded").inc(len(values))
        unresolved = [key for key in keys if key not in values]  # no reloader, failed, or no row
        if unresolved:
            REFRESHES.labels(name, result).inc(len(unresolved))
            # Not asked for again by every read until its expiry; one already expired
            # (answered stale meanwhile) goes now, so the next read loads it.
            for key in unresolved:
                self.local.settle((name, key))

    async def _mget(self, namespace: str, redis_keys: list[str], op: str, event: str) -> list[Any] | None:
        """MGET within the Redis timeout; None when Redis fails (counted as `op`, logged as `event`)."""
        assert self._redis is not None
        try:
            async with asyncio.timeout(REDIS_TIMEOUT_SECONDS):
                return list(await self._redis.mget(redis_keys))
        except (RedisError, OSError, TimeoutError) as exc:
            ERRORS.labels(op).inc()
            log.warning(event, namespace=namespace, error=type(exc).__name__)
            return None

    async def get_many(
        self,
        namespace: Namespace[V],
        keys: Iterable[K],
        load: Callable[[list[K]], Awaitable[dict[K, V]]],
    ) -> dict[K, V]:
        """The values of `keys` that exist, from the nearest layer that has them."""
        if not self.enabled:
            return await load(list(dict.fromkeys(keys)))
        name = namespace.name
        unique = dict.fromkeys(keys)
        found = self.held(namespace, unique)
        if len(found) == len(unique):
            return found
        inflight = self._inflight
        # Keys someone else is fetching, by their fetch: one wait per fetch, not per key.
        waiting: dict[asyncio.Future[dict[Any, Any]], list[K]] = {}
        mine: list[K] = []
        for key in unique:
            if key in found:
                continue
            fetch = inflight.get((name, key))
            if fetch is None:
                mine.append(key)
            else:
                waiting.setdefault(fetch, []).append(key)
        _requests(name, "local", "miss").inc(len(unique) - len(found))
        if mine:
            found.update(await self._fetch(namespace, mine, load))
        for fetch, wanted in waiting.items():
            try:
                values = await asyncio.shield(fetch)
            except _Abandoned:
                values = await load(wanted)  # read for ourselves, not cached: the fetch failed
            for key in wanted:
                if key in values:
                    found[key] = values[key]
        return found

    async def _fetch(
        self, namespace: Namespace[V], keys: list[K], load: Callable[[list[K]], Awaitable[dict[K, V]]]
    ) -> dict[K, V]:
        """Fetch `keys` for everyone in this process who misses them meanwhile."""
        name = namespace.name
        inflight = self._inflight
        batch: asyncio.Future[dict[Any, Any]] = asyncio.get_running_loop().create_future()  # one per fetch
        for key in keys:
            inflight[(name, key)] = batch
        try:
            values = await self._fetch_from_layers(namespace, keys, load)
            batch.set_result(values)  # waiters read their keys from it and never change it
            return values
        finally:
            if not batch.done():
                batch.set_exception(_Abandoned())
                batch.exception()  # retrieved: nobody may be waiting, and asyncio would log it
            for key in keys:
                if inflight.get((name, key)) is batch:
                    del inflight[(name, key)]

    async def _fetch_from_layers(
        self, namespace: Namespace[V], keys: list[K], load: Callable[[list[K]], Awaitable[dict[K, V]]]
    ) -> dict[K, V]:
        name = namespace.name
        since = time.monotonic()
        values: dict[K, V] = {}
        versions: dict[K, bytes] = {}
        redis_ok = self._redis is not None and namespace.shared
        if redis_ok:
            names = [self._key(name, k) for k in keys]
            raw = await self._mget(
                name, [*names, *(self._version(n) for n in names)], "mget", "cache_read_failed"
            )
            if raw is None:
                redis_ok = False
            else:
                for i, key in enumerate(keys):
                    payload, version = raw[i], raw[len(keys) + i]
                    versions[key] = version or b""
                    if payload is not None:
                        values[key] = namespace.decode(payload)
                        self.local.set((name, key), values[key], since)
                hits = len(values)
                if hits:
                    _requests(name, "redis", "hit").inc(hits)
                if hits < len(keys):
                    _requests(name, "redis", "miss").inc(len(keys) - hits)
        missing = [k for k in keys if k not in values]
        if not missing:
            return values
        loaded = await load(missing)
        _loads(name).inc(len(missing))
        for key, value in loaded.items():
            values[key] = value
            self.local.set((name, key), value, since)
        if redis_ok and loaded:
            await self._store(namespace, loaded, versions)
        return values

    async def _store(self, namespace: Namespace[V], loaded: dict[K, V], versions: dict[K, bytes]) -> None:
        assert self._fill is not None
        keys: list[str] = []
        args: list[Any] = []
        for key, value in loaded.items():
            name = self._key(namespace.name, key)
            keys += [name, self._version(name)]
            args += [versions.get(key, b""), namespace.encode(value), self._redis_lifetime()]
        await self._write(self._fill, keys, args, "fill", namespace.name)

    async def offer(self, namespace: Namespace[V], values: dict[K, V], read_since: float) -> None:
        """Store values a statement read as a by-product of another request (a feed page's
        statement returns each followee's newest posts, say), without `get_many`'s version read.

        Local: skipped for keys invalidated since `read_since` (as any fill). Redis: only keys
        no write ever invalidated (no version key) and not already there (`_OFFER`); a key a
        write touched is filled by `get_many`'s version-checked path instead.
        """
        if not self.enabled or not values:
            return
        name = namespace.name
        for key, value in values.items():
            self.local.set((name, key), value, read_since)
        if self._offer is None or not namespace.shared:
            return
        keys: list[str] = []
        args: list[Any] = []
        for key, value in values.items():
            redis_key = self._key(name, key)
            keys += [redis_key, self._version(redis_key)]
            args += [namespace.encode(value), self._redis_lifetime()]
        await self._write(self._offer, keys, args, "offer", name)

    @staticmethod
    async def _write(script: Any, keys: list[str], args: list[Any], op: str, namespace: str) -> None:
        """One of the storing scripts (`_FILL`, `_OFFER`) within the Redis timeout; a failure
        only skips the store (counted as `op`, logged as `cache_<op>_failed`)."""
        try:
            async with asyncio.timeout(REDIS_TIMEOUT_SECONDS):
                await script(keys=keys, args=args)
        except (RedisError, OSError, TimeoutError) as exc:
            ERRORS.labels(op).inc()
            log.warning(f"cache_{op}_failed", namespace=namespace, error=type(exc).__name__)

    # -- writes --------------------------------------------------------------------------------

    async def invalidate(self, namespace: Namespace[Any], keys: Sequence[Hashable]) -> None:
        """After a write committed: no layer of any instance serves the old values past its bound."""
        if not self.enabled or not keys:
            return
        name = namespace.name
        for key in keys:
            self.local.drop((name, key))
        INVALIDATIONS.labels(name, "local").inc(len(keys))
        if self._redis is not None and namespace.shared:
            try:
                async with asyncio.timeout(REDIS_TIMEOUT_SECONDS):
                    async with self._redis.pipeline(transaction=True) as pipe:
                        for key in keys:
                            redis_key = self._key(name, key)
                            pipe.incr(self._version(redis_key))
                            pipe.expire(self._version(redis_key), VERSION_TTL_SECONDS)
                            pipe.delete(redis_key)
                        await pipe.execute()
            except (RedisError, OSError, TimeoutError) as exc:
                # Bounded by CACHE_REDIS_TTL_SECONDS: the entry expires on its own.
                ERRORS.labels("invalidate").inc()
                log.warning("cache_invalidate_failed", namespace=name, error=type(exc).__name__)
        if self._broker is not None:
            event = {"origin": self._origin, "namespace": name, "keys": list(keys)}
            await self._broker.publish(self._channel, orjson.dumps(event))

    def _redis_lifetime(self) -> int:
        """Whole seconds (EX takes no fraction), between 1 - REDIS_TTL_JITTER and all of the TTL."""
        floor = max(1, math.ceil(self._redis_ttl * (1 - REDIS_TTL_JITTER)))
        return random.randint(floor, max(floor, int(self._redis_ttl)))

    def _key(self, namespace: str, key: Hashable) -> str:
        return f"{self._prefix}{namespace}:{key}"

    @staticmethod
    def _version(redis_key: str) -> str:
        return redis_key + ":v"


NO_CACHE = Cache()  # the disabled cache: contexts built without Services read the database
