"""In-process broker: the embedded default. Events reach subscribers of this process only."""

from __future__ import annotations

import time
from contextlib import AbstractAsyncContextManager

from prometheus_client import Counter

from realtime.hub import Hub, Subscription

PUBLISHED = Counter("bff_events_published_total", "Events published", ["broker"])


class MemoryBroker:
    name = "memory"

    def __init__(self, queue_size: int = 1000) -> None:
        self.hub = Hub(self._noop, self._noop, queue_size)

    @staticmethod
    async def _noop(channel: str) -> None:
        return None

    async def start(self) -> None:
        return None

    async def close(self) -> None:
        return None

    async def ping(self) -> bool:
        return True

    async def publish(self, channel: str, data: bytes) -> None:
        PUBLISHED.labels(self.name).inc()
        self.hub.deliver(channel, data, time.time())  # the publish stamp (realtime/lag.py)

    def subscribe(self, channel: str) -> AbstractAsyncContextManager[Subscription]:
        return self.hub.subscribe(channel)
