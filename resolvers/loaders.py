"""Every DataLoader, created per request, and the gate that lets their batches grow.

aiodataloader dispatches a batch one loop tick after the first `load`. A screen like
Home first runs a few list statements concurrently (feed page, leaderboard top) and only
then knows which users, stats… it needs: dispatching per tick would send one users
batch per list. The `FetchGate` holds loader dispatch while list statements of this
request are in flight, so everything they reveal joins one batch per loader. It only
delays: list statements never wait on loaders, so nothing can deadlock.
"""

from __future__ import annotations

import asyncio
from collections.abc import Awaitable, Callable, Coroutine, Generator, Hashable, Mapping, Sequence
from functools import cached_property, partial
from typing import Any, Generic, Self, TypeVar

import orjson
from aiodataloader import DataLoader, Loader, dispatch_queue

from bff.cache import Cache, Namespace
from bff.db import Database
from resolvers.feed_sources import FOLLOWEES, RECENT_POSTS, followees_from_db, recent_posts_from_db
from resolvers.rows import GameRow, MessageRow, PostRow, RoomRow, UserRow

K = TypeVar("K", bound=Hashable)
V = TypeVar("V")


class FetchGate:
    def __init__(self) -> None:
        self._in_flight = 0
        self._waiting: list[DataLoader[Any, Any]] = []
        self._flush_scheduled = False

    def list_fetch(self) -> FetchGate:
        """Wrap a list statement whose rows will feed loaders: `with gate.list_fetch(): ...`.

        A plain context manager (entering and leaving never wait, so no coroutine is needed);
        `async with` works too.
        """
        return self

    def __enter__(self) -> None:
        self._in_flight += 1

    def __exit__(self, *exc: object) -> None:
        self._in_flight -= 1
        if self._in_flight == 0 and self._waiting:
            self._schedule()

    async def __aenter__(self) -> None:
        self.__enter__()

    async def __aexit__(self, *exc: object) -> None:
        self.__exit__()

    def hold(self, loader: DataLoader[Any, Any]) -> None:
        self._waiting.append(loader)
        if self._in_flight == 0:
            self._schedule()

    def _schedule(self) -> None:
        if self._flush_scheduled:
            return
        self._flush_scheduled = True
        loop = asyncio.get_running_loop()
        # Two hops, like aiodataloader's own dispatch: resolvers resumed by the same tick
        # still get to enqueue their keys.
        loop.call_soon(loop.call_soon, self._flush)

    def _flush(self) -> None:
        self._flush_scheduled = False
        if self._in_flight:
            return  # the last list statement to finish schedules the flush again
        waiting, self._waiting = self._waiting, []
        for loader in waiting:
            if loader._queue:
                dispatch_queue(loader)


class GatedLoader(DataLoader[K, V]):
    """A DataLoader whose batches are dispatched by the request's FetchGate.

    What is already known is answered without a batch: values this request primed (the feed
    page's `viewerHasLiked`) and, for cached kinds, what the process's cache layer holds. Keys
    are their own cache keys (no `get_cache_key`).
    """

    def __init__(
        self,
        gate: FetchGate,
        batch_fn: Callable[[list[K]], Coroutine[Any, Any, list[V]]],
        held: Callable[[Sequence[K]], Mapping[K, V]] | None = None,
    ) -> None:
        # What `DataLoader.__init__` sets for these arguments, without its checks of `batch_fn`
        # (through `inspect`: ~1 µs per loader, 3-4 loaders per request); each is a bound async
        # method of Loaders. tests/test_data_path_loaders.py compares the two states.
        self.loop = asyncio.get_running_loop()
        self.batch_load_fn = batch_fn
        self.get_cache_key = _same_key
        self._cache = {}
        self._queue: list[Loader] = []
        self._gate = gate
        self._held = held  # what the process's cache holds right now, without waiting
        # Primed values, kept plain: aiodataloader's `prime` makes a future per key, and a page's
        # keys are then awaited through a gather of them (a callback and a loop hop per key).
        self._primed: dict[K, V] = {}

    def do_resolve_reject(self, key: K, future: asyncio.Future[V]) -> None:
        self._queue.append(Loader(key=key, future=future))
        if len(self._queue) == 1:
            self._gate.hold(self)

    def prime(self, key: K, value: V) -> Self:
        """As DataLoader.prime (a key already loaded or primed keeps its value), without a future."""
        if key not in self._primed and key not in self._cache:
            self._primed[key] = value
        return self

    def clear(self, key: K) -> Self:
        self._primed.pop(key, None)
        return super().clear(key)

    def clear_all(self) -> Self:
        self._primed.clear()
        return super().clear_all()

    def load(self, key: K) -> asyncio.Future[V]:
        """One key: settled at once when primed or held (no batch, no Task), else batched."""
        future: asyncio.Future[V] | None = self._cache.get(key)
        if future is not None:
            return future
        known = self._known((key,))
        if key not in known:
            return super().load(key)
        future = self.loop.create_future()
        future.set_result(known[key])
        self._cache[key] = future  # later loads of this request see the same value, as after a batch
        return future

    def load_all(self, keys: Sequence[K]) -> Awaitable[list[V]]:
        """The values of a whole list of keys (a page's authors, counts…), in order.

        Not a coroutine function: the keys not known yet are enqueued by the call itself, so lists
        started one after the other before the first await join one batch per loader (no Task is
        needed to start them side by side). A list that is all known is answered without a
        future: aiodataloader makes one per `load`.
        """
        known = self._known(keys)
        missing = list(dict.fromkeys(k for k in keys if k not in known))
        if not missing:
            return _Ready([known[k] for k in keys])
        loads = asyncio.gather(*[DataLoader.load(self, k) for k in missing])
        loads.add_done_callback(_retrieved)
        return _Merged(keys, known, missing, loads)

    def _known(self, keys: Sequence[K]) -> dict[K, V]:
        """What this request primed and what the process's cache layer holds of `keys`: no waiting."""
        primed = self._primed
        found = {k: primed[k] for k in keys if k in primed} if primed else {}
        if self._held is not None:
            rest = [k for k in keys if k not in found] if found else keys
            if rest:
                found.update(self._held(rest))
        return found


def _same_key(key: Any) -> Any:
    return key


class _Ready(Generic[V]):
    """An awaitable whose value is already there: awaiting it never suspends and makes no future."""

    __slots__ = ("_value",)

    def __init__(self, value: V) -> None:
        self._value = value

    def __await__(self) -> Generator[Any, None, V]:
        return self._value
        yield  # never reached: it makes this a generator, which returns at its first step


class _Merged(Generic[K, V]):
    """A list's values once the batch of its missing keys is in.

    An awaitable object, not a coroutine: a caller that fails on an earlier list and never
    awaits this one leaves no "coroutine was never awaited" behind.
    """

    __slots__ = ("_keys", "_known", "_loads", "_missing")

    def __init__(
        self, keys: Sequence[K], known: dict[K, V], missing: list[K], loads: asyncio.Future[list[V]]
    ) -> None:
        self._keys = keys
        self._known = known
        self._missing = missing
        self._loads = loads

    def __await__(self) -> Generator[Any, None, list[V]]:
        loaded = yield from self._loads.__await__()
        known = self._known
        known.update(zip(self._missing, loaded, strict=True))
        return [known[k] for k in self._keys]


def _retrieved(future: asyncio.Future[Any]) -> None:
    # A list nobody awaits any more (its caller failed first) must not log "exception was never retrieved".
    if not future.cancelled():
        future.exception()


# Hot, shared reads kept in the process's cache (bff/cache.py). Every write to what they copy
# invalidates them: like counts in resolvers/posts.py; users are never written today.
USERS: Namespace[UserRow] = Namespace(
    "user", lambda u: orjson.dumps(u.to_event()), lambda b: UserRow.from_event(orjson.loads(b)), parse_key=int
)
LIKE_COUNTS: Namespace[int] = Namespace("likes", lambda n: str(n).encode(), lambda b: int(b), parse_key=int)


def warmed_on_start(feed_cached_sources: bool) -> tuple[Namespace[Any], ...]:
    """What a starting instance copies from Redis (Cache.warm), up to its local layer's size:
    the kinds every Home reads, those of fewer keys first."""
    if feed_cached_sources:
        return (USERS, FOLLOWEES, RECENT_POSTS, LIKE_COUNTS)
    return (USERS, LIKE_COUNTS)


async def users_from_db(db: Database, ids: list[int]) -> dict[int, UserRow]:
    rows = await db.fetch_all(
        "SELECT id, handle, display_name, avatar_url, created_at FROM users WHERE " + db.in_list("id", "ids"),
        {"ids": ids},
    )
    return {r["id"]: UserRow.from_db(r) for r in rows}


async def like_counts_from_db(db: Database, ids: list[int]) -> dict[int, int]:
    rows = await db.fetch_all(
        "SELECT post_id, COUNT(*) AS like_count FROM likes WHERE "
        + db.in_list("post_id", "ids")
        + " GROUP BY post_id",
        {"ids": ids},
    )
    counts = {r["post_id"]: int(r["like_count"]) for r in rows}
    return {i: counts.get(i, 0) for i in ids}  # posts nobody likes are cached as 0 too


def background_reloads(
    db: Database, feed_cached_sources: bool
) -> list[tuple[Namespace[Any], Callable[[list[int]], Awaitable[dict[int, Any]]]]]:
    """What the cache reloads from the database by itself when a hot key's Redis copy is gone
    (`Cache.reload_from`): the kinds every Home reads, by loaders that need no request."""
    reloads: list[tuple[Namespace[Any], Callable[[list[int]], Awaitable[dict[int, Any]]]]] = [
        (USERS, partial(users_from_db, db)),
        (LIKE_COUNTS, partial(like_counts_from_db, db)),
    ]
    if feed_cached_sources:
        reloads += [
            (FOLLOWEES, partial(followees_from_db, db)),
            (RECENT_POSTS, partial(recent_posts_from_db, db)),
        ]
    return reloads


def _by_key(rows: list[Mapping[str, Any]], column: str) -> dict[Any, Mapping[str, Any]]:
    return {row[column]: row for row in rows}


class Loaders:
    """The per-request set: `<Thing>By<Key>`."""

    def __init__(self, db: Database, viewer_id: int | None, cache: Cache) -> None:
        self.db = db
        self.viewer_id = viewer_id
        self.cache = cache
        self.gate = FetchGate()

    def close(self) -> None:
        """Drop the loaders made so far: each holds a bound method of this object (a reference
        cycle), which refcounting alone would never free; after a request, the cyclic collector
        need not find them. A loader used again afterwards is simply made anew."""
        for name in [n for n, v in vars(self).items() if isinstance(v, DataLoader)]:
            del self.__dict__[name]

    # Created on first use: most requests touch two or three of them.
    @cached_property
    def user_by_id(self) -> GatedLoader[int, UserRow | None]:
        held = self._held(USERS)  # UserRow values, as the loader's UserRow | None
        # Not `GatedLoader[int, UserRow | None](...)`: calling a subscripted generic costs ~2 µs.
        loader: GatedLoader[int, UserRow | None] = GatedLoader(self.gate, self._users, held)
        return loader

    @cached_property
    def post_by_id(self) -> GatedLoader[int, PostRow | None]:
        return GatedLoader(self.gate, self._posts)

    @cached_property
    def like_count_by_post_id(self) -> GatedLoader[int, int]:
        return GatedLoader(self.gate, self._like_counts, self._held(LIKE_COUNTS))

    @cached_property
    def viewer_liked_by_post_id(self) -> GatedLoader[int, bool]:
        """Per viewer, so never in the shared cache; the feed page primes it from its own statement."""
        return GatedLoader(self.gate, self._viewer_liked)

    @cached_property
    def game_by_id(self) -> GatedLoader[int, GameRow | None]:
        return GatedLoader(self.gate, self._games)

    @cached_property
    def room_by_id(self) -> GatedLoader[int, RoomRow | None]:
        return GatedLoader(self.gate, self._rooms)

    @cached_property
    def message_by_id(self) -> GatedLoader[int, MessageRow | None]:
        return GatedLoader(self.gate, self._messages)

    @cached_property
    def member_ids_by_room_id(self) -> GatedLoader[int, list[int]]:
        return GatedLoader(self.gate, self._member_ids)

    @cached_property
    def rooms_by_user_id(self) -> GatedLoader[int, list[RoomRow]]:
        return GatedLoader(self.gate, self._rooms_of_users)

    def _held(self, namespace: Namespace[V]) -> Callable[[Sequence[int]], Mapping[int, V]]:
        return partial(self.cache.held, namespace)

    async def _users(self, ids: list[int]) -> list[UserRow | None]:
        found = await self.cache.get_many(USERS, ids, self._users_from_db)
        return [found.get(i) for i in ids]

    async def _users_from_db(self, ids: list[int]) -> dict[int, UserRow]:
        return await users_from_db(self.db, ids)

    async def _posts(self, ids: list[int]) -> list[PostRow | None]:
        rows = await self.db.fetch_all(
            "SELECT id, author_id, body, created_at FROM posts WHERE " + self.db.in_list("id", "ids"),
            {"ids": ids},
        )
        found = _by_key(rows, "id")
        return [PostRow.from_db(found[i]) if i in found else None for i in ids]

    async def _like_counts(self, ids: list[int]) -> list[int]:
        found = await self.cache.get_many(LIKE_COUNTS, ids, self._like_counts_from_db)
        return [found.get(i, 0) for i in ids]

    async def _like_counts_from_db(self, ids: list[int]) -> dict[int, int]:
        return await like_counts_from_db(self.db, ids)

    async def _viewer_liked(self, ids: list[int]) -> list[bool]:
        if self.viewer_id is None:
            return [False] * len(ids)
        rows = await self.db.fetch_all(
            "SELECT post_id FROM likes WHERE user_id = :viewer AND " + self.db.in_list("post_id", "ids"),
            {"ids": ids, "viewer": self.viewer_id},
        )
        liked = {r["post_id"] for r in rows}
        return [i in liked for i in ids]

    async def _games(self, ids: list[int]) -> list[GameRow | None]:
        rows = await self.db.fetch_all(
            "SELECT id, name FROM games WHERE " + self.db.in_list("id", "ids"), {"ids": ids}
        )
        found = _by_key(rows, "id")
        return [GameRow(i, found[i]["name"]) if i in found else None for i in ids]

    async def _rooms(self, ids: list[int]) -> list[RoomRow | None]:
        rows = await self.db.fetch_all(
            "SELECT id, name FROM chat_rooms WHERE " + self.db.in_list("id", "ids"), {"ids": ids}
        )
        found = _by_key(rows, "id")
        return [RoomRow(i, found[i]["name"]) if i in found else None for i in ids]

    async def _messages(self, ids: list[int]) -> list[MessageRow | None]:
        rows = await self.db.fetch_all(
            "SELECT id, room_id, author_id, body, created_at, client_message_id FROM messages WHERE "
            + self.db.in_list("id", "ids"),
            {"ids": ids},
        )
        found = _by_key(rows, "id")
        return [MessageRow.from_db(found[i]) if i in found else None for i in ids]

    async def _member_ids(self, room_ids: list[int]) -> list[list[int]]:
        rows = await self.db.fetch_all(
            "SELECT room_id, user_id FROM room_members WHERE "
            + self.db.in_list("room_id", "ids")
            + " ORDER BY room_id, user_id",
            {"ids": room_ids},
        )
        members: dict[int, list[int]] = {r: [] for r in room_ids}
        for row in rows:
            members[row["room_id"]].append(row["user_id"])
        return [members[r] for r in room_ids]

    async def _rooms_of_users(self, user_ids: list[int]) -> list[list[RoomRow]]:
        rows = await self.db.fetch_all(
            "SELECT m.user_id, r.id, r.name FROM room_members m JOIN chat_rooms r ON r.id = m.room_id WHERE "
            + self.db.in_list("m.user_id", "ids")
            + " ORDER BY m.user_id, r.id",
            {"ids": user_ids},
        )
        rooms: dict[int, list[RoomRow]] = {u: [] for u in user_ids}
        for row in rows:
            rooms[row["user_id"]].append(RoomRow(row["id"], row["name"]))
        return [rooms[u] for u in user_ids]
