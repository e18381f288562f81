"""Local fan-out: every subscriber of a channel in this process, each with a bounded queue.

The broker delivers each event once per process; the hub hands the same bytes to every
local subscriber. A subscriber whose queue is full is dropped (its iterator ends with
`SlowConsumer`) instead of growing memory without bound.

After the broker lost its upstream connection and got it back, every subscriber of the
channels it re-subscribed receives `RESYNC` instead of an event: whatever was published
meanwhile is gone from pub/sub, and the subscriber fills the gap from storage.
"""

from __future__ import annotations

import asyncio
from collections.abc import AsyncIterator, Awaitable, Callable
from contextlib import asynccontextmanager

from prometheus_client import Counter, Gauge

from realtime.lag import PUBLISHED_AT

SUBSCRIBERS = Gauge("bff_hub_subscribers", "Local subscribers across all channels")
DELIVERED = Counter("bff_events_delivered_total", "Events handed to local subscribers")
OVERFLOWS = Counter(
    "bff_subscriber_queue_overflows_total", "Subscribers dropped because their queue was full"
)
RESYNCS = Counter("bff_hub_resyncs_total", "RESYNC markers handed to local subscribers after a reconnect")

RESYNC = b"\x00resync"
"""Not an event: the upstream connection was re-established, events may have been missed.

Never valid JSON, so it cannot collide with an encoded event. A subscriber that keeps a
cursor re-reads storage after it; one without (ephemeral events) just ignores it.
"""


class SlowConsumer(Exception):
    """The subscriber did not keep up; its queue filled and it was dropped."""


class Subscription:
    """One local subscriber's queue. Iterating it yields each event's bytes; `published_at` is then
    the publisher's stamp of the event just yielded (None for RESYNC, or an unstamped event)."""

    def __init__(self, channel: str, maxsize: int) -> None:
        self.channel = channel
        # (bytes, publish time); None ends the stream.
        self.queue: asyncio.Queue[tuple[bytes, float | None] | None] = asyncio.Queue(maxsize)
        self.overflowed = False
        self.published_at: float | None = None

    def offer(self, data: bytes, published_at: float | None = None) -> None:
        if self.overflowed:
            return
        try:
            self.queue.put_nowait((data, published_at))
        except asyncio.QueueFull:
            self.overflowed = True
            OVERFLOWS.inc()
            # Make room for the end-of-stream marker so the reader wakes up and stops.
            while not self.queue.empty():
                self.queue.get_nowait()
            self.queue.put_nowait(None)

    async def __aiter__(self) -> AsyncIterator[bytes]:
        while True:
            item = await self.queue.get()
            if item is None:
                if self.overflowed:
                    raise SlowConsumer(self.channel)
                return
            data, self.published_at = item
            # For the per-subscriber path: its socket observes publish -> send (realtime/lag.py).
            PUBLISHED_AT.set(self.published_at)
            yield data


class Hub:
    """channel -> local subscriptions. `on_first`/`on_last` tell the broker to (un)subscribe upstream."""

    def __init__(
        self,
        on_first: Callable[[str], Awaitable[None]],
        on_last: Callable[[str], Awaitable[None]],
        queue_size: int = 1000,
    ) -> None:
        self._channels: dict[str, set[Subscription]] = {}
        self._on_first = on_first
        self._on_last = on_last
        self._queue_size = queue_size
        self._locks: dict[str, asyncio.Lock] = {}

    def channels(self) -> list[str]:
        return list(self._channels)

    def deliver(self, channel: str, data: bytes, published_at: float | None = None) -> int:
        """Hand an event to every local subscriber; `published_at` is its publisher's stamp."""
        subs = self._channels.get(channel)
        if not subs:
            return 0
        for sub in tuple(subs):
            sub.offer(data, published_at)
        DELIVERED.inc(len(subs))
        return len(subs)

    def resync(self, channel: str) -> int:
        """Put `RESYNC` on every local subscriber's queue of `channel` (after the broker reconnected)."""
        subs = self._channels.get(channel)
        if not subs:
            return 0
        for sub in tuple(subs):
            sub.offer(RESYNC)
        RESYNCS.inc(len(subs))
        return len(subs)

    @asynccontextmanager
    async def subscribe(self, channel: str) -> AsyncIterator[Subscription]:
        sub = Subscription(channel, self._queue_size)
        lock = self._locks.setdefault(channel, asyncio.Lock())
        async with lock:
            subs = self._channels.setdefault(channel, set())
            subs.add(sub)
            SUBSCRIBERS.inc()
            if len(subs) == 1:
                try:
                    await self._on_first(channel)
                except BaseException:
                    subs.discard(sub)
                    SUBSCRIBERS.dec()
                    if not subs:
                        del self._channels[channel]
                    raise
        try:
            yield sub
        finally:
            async with lock:
                subs = self._channels.get(channel, set())
                subs.discard(sub)
                SUBSCRIBERS.dec()
                if not subs:
                    self._channels.pop(channel, None)
                    await self._on_last(channel)
