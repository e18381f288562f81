"""The Broker interface and its choice by URL (modelled on encode/databases' backends).

Guarantees every implementation keeps:
- `publish` returns once the event has left this process (Redis) or been handed to
  local subscribers (memory); events of one channel from one publisher arrive in order.
- one upstream subscription per channel per process, shared by all local subscribers.
- delivery is at most once; gaps (a Redis restart) are filled from storage by callers.
"""

from __future__ import annotations

from collections.abc import AsyncIterator
from contextlib import AbstractAsyncContextManager
from typing import Protocol

from realtime.hub import Subscription


class Broker(Protocol):
    name: str

    async def start(self) -> None: ...
    async def close(self) -> None: ...
    async def ping(self) -> bool: ...
    async def publish(self, channel: str, data: bytes) -> None: ...
    def subscribe(self, channel: str) -> AbstractAsyncContextManager[Subscription]: ...


def from_url(url: str | None) -> Broker:
    """`redis://…` -> RedisBroker; None or `memory://` -> the in-process broker."""
    if not url or url.startswith("memory://"):
        from realtime.memory import MemoryBroker

        return MemoryBroker()
    if url.startswith(("redis://", "rediss://", "unix://")):
        from realtime.redis import RedisBroker

        return RedisBroker(url)
    raise ValueError(f"unsupported broker URL scheme: {url.split(':', 1)[0]}")


async def iterate(sub: Subscription) -> AsyncIterator[bytes]:
    async for data in sub:
        yield data
