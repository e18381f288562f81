"""The Broker interface and its choice by URL (modelled on encode/databases' backends).

Guarantees every implementation keeps:
- `publish` returns once the event has left this process (Redis) or been handed to
  local subscribers (memory); events of one channel from one publisher arrive in order.
  It does not raise when the broker is unreachable: the event is stored already, the
  failure is logged and counted, and subscribers fill the gap from storage.
- one upstream subscription per channel per process, shared by all local subscribers;
  `subscribe` returns once the upstream subscription is confirmed (or being re-established).
- delivery is at most once; after a gap (a Redis restart) every local subscriber of the
  re-subscribed channels receives `hub.RESYNC` instead of an event, and re-reads storage
  after its cursor (or ignores it, for events that are not stored).
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
