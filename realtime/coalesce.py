"""Coalesced state feeds: one reader per key per process, however many local watchers.

A key (say a game's top 10) has a channel that says "it changed" and a `load` that reads the
current state. Per key and process one task listens to the channel and loads at most once per
interval: the first change after a quiet interval loads at once, changes during an interval
mark the key dirty and load once when it ends (trailing edge), so a burst always ends on the
latest state. A value equal to the last one is not passed on. Watchers keep only the newest
value, so a slow watcher skips intermediate states instead of queueing them.

Nothing here reads storage: `load` comes from the caller (resolvers).
"""

from __future__ import annotations

import asyncio
import contextlib
import contextvars
from collections.abc import AsyncIterator, Awaitable, Callable, Hashable
from contextlib import asynccontextmanager
from typing import Any, Generic, TypeVar

import structlog
from prometheus_client import Counter

from realtime.broker import Broker

T = TypeVar("T")
log = structlog.get_logger("bff.coalesce")
LOADS = Counter("bff_coalesced_loads_total", "State loads by coalesced feeds (shared by their watchers)")


class Watcher(Generic[T]):
    """One local subscriber of a key: the newest value it has not seen yet."""

    def __init__(self, feed: _Feed) -> None:
        self._feed = feed
        self._ready = asyncio.Event()
        self._value: T | None = None

    def offer(self, value: T) -> None:
        self._value = value
        self._ready.set()

    def __aiter__(self) -> AsyncIterator[T]:
        return self._iterate()

    async def _iterate(self) -> AsyncIterator[T]:
        while True:
            await self._ready.wait()
            self._ready.clear()
            if self._feed.error is not None:
                raise self._feed.error
            value = self._value
            assert value is not None
            yield value


class _Feed:
    """The per-key task and its watchers."""

    def __init__(self, channel: str, load: Callable[[], Awaitable[Any]], interval: float) -> None:
        self.channel = channel
        self.load = load
        self.interval = interval
        self.watchers: set[Watcher[Any]] = set()
        self.value: Any = None
        self.has_value = False
        self.error: BaseException | None = None
        self.dirty = asyncio.Event()
        self.task: asyncio.Task[None] | None = None

    def add(self, watcher: Watcher[Any]) -> None:
        self.watchers.add(watcher)
        if self.has_value:
            watcher.offer(self.value)  # the current state: no SQL for a second watcher

    async def run(self, broker: Broker) -> None:
        try:
            async with broker.subscribe(self.channel) as sub, asyncio.TaskGroup() as group:

                async def listen() -> None:
                    async for _ in sub:
                        self.dirty.set()

                group.create_task(listen())
                # Subscribed before the first load: a change committed meanwhile marks us dirty.
                self.dirty.set()
                await self._load_forever()
        except asyncio.CancelledError:
            raise
        except BaseException as error:
            log.warning("coalesced_feed_failed", channel=self.channel, error=type(error).__name__)
            self.error = error
            for watcher in self.watchers:
                watcher.offer(None)

    async def _load_forever(self) -> None:
        loop = asyncio.get_running_loop()
        last_load = -float("inf")
        while True:
            await self.dirty.wait()
            wait = last_load + self.interval - loop.time()
            if wait > 0:
                await asyncio.sleep(wait)
            self.dirty.clear()  # changes from here on need another load
            last_load = loop.time()
            LOADS.inc()
            value = await self.load()
            if self.has_value and value == self.value:
                continue
            self.value, self.has_value = value, True
            for watcher in tuple(self.watchers):
                watcher.offer(value)


class Coalescer:
    """key -> one shared feed in this process. Built by the app's services, closed with them."""

    def __init__(self, broker: Broker, interval_seconds: float) -> None:
        self._broker = broker
        self._interval = interval_seconds
        self._feeds: dict[Hashable, _Feed] = {}

    @asynccontextmanager
    async def watch(
        self, key: Hashable, channel: str, load: Callable[[], Awaitable[T]]
    ) -> AsyncIterator[Watcher[T]]:
        """Iterate the returned watcher: the current state first, then each change (coalesced)."""
        feed = self._feeds.get(key)
        if feed is None or feed.error is not None:
            feed = _Feed(channel, load, self._interval)
            self._feeds[key] = feed
            # The feed outlives the subscriber that started it: don't inherit its request context
            # (log bindings, statement counter).
            feed.task = asyncio.create_task(
                feed.run(self._broker), name=f"bff-coalesce-{channel}", context=contextvars.Context()
            )
        watcher: Watcher[T] = Watcher(feed)
        feed.add(watcher)
        try:
            yield watcher
        finally:
            feed.watchers.discard(watcher)
            if not feed.watchers and self._feeds.get(key) is feed:
                del self._feeds[key]
                await _cancel(feed.task)

    def feeds(self) -> int:
        return len(self._feeds)

    async def close(self) -> None:
        feeds, self._feeds = list(self._feeds.values()), {}
        for feed in feeds:
            await _cancel(feed.task)


async def _cancel(task: asyncio.Task[None] | None) -> None:
    if task is None:
        return
    task.cancel()
    with contextlib.suppress(asyncio.CancelledError, Exception):
        await task
