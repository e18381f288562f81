"""Redis pub/sub broker: one connection for publishing, one PubSub connection for all channels.

A reader task receives every message of this process's channels and hands it to the hub.
If Redis goes away the reader reconnects with backoff and subscribes again to every channel
that still has local subscribers.
"""

from __future__ import annotations

import asyncio
import contextlib
from contextlib import AbstractAsyncContextManager

import redis.asyncio as redis
import structlog
from prometheus_client import Counter

from realtime.hub import Hub, Subscription
from realtime.memory import PUBLISHED

log = structlog.get_logger("bff.broker")
RECONNECTS = Counter(
    "bff_broker_reconnects_total", "Times the Redis subscriber connection was re-established"
)


class RedisBroker:
    name = "redis"

    def __init__(self, url: str, queue_size: int = 1000) -> None:
        self._url = url
        self._client = redis.Redis.from_url(
            url, max_connections=16, socket_connect_timeout=5, health_check_interval=30
        )
        self._pubsub = self._client.pubsub(ignore_subscribe_messages=True)
        self.hub = Hub(self._subscribe_upstream, self._unsubscribe_upstream, queue_size)
        self._reader: asyncio.Task[None] | None = None
        self._wake = asyncio.Event()

    async def start(self) -> None:
        self._reader = asyncio.create_task(self._read_forever(), name="bff-redis-broker-reader")

    async def close(self) -> None:
        if self._reader:
            self._reader.cancel()
            with contextlib.suppress(asyncio.CancelledError):
                await self._reader
        with contextlib.suppress(Exception):
            await self._pubsub.aclose()  # type: ignore[no-untyped-call]
        await self._client.aclose()

    async def ping(self) -> bool:
        try:
            return bool(await asyncio.wait_for(self._client.ping(), timeout=2))
        except Exception:
            return False

    async def publish(self, channel: str, data: bytes) -> None:
        PUBLISHED.labels(self.name).inc()
        await self._client.publish(channel, data)

    def subscribe(self, channel: str) -> AbstractAsyncContextManager[Subscription]:
        return self.hub.subscribe(channel)

    async def _subscribe_upstream(self, channel: str) -> None:
        await self._pubsub.subscribe(channel)
        self._wake.set()

    async def _unsubscribe_upstream(self, channel: str) -> None:
        with contextlib.suppress(Exception):
            await self._pubsub.unsubscribe(channel)

    async def _read_forever(self) -> None:
        backoff = 0.1
        while True:
            if not self._pubsub.subscribed:
                self._wake.clear()
                await self._wake.wait()
                continue
            try:
                message = await self._pubsub.get_message(timeout=1.0)
                backoff = 0.1
                if message and message["type"] == "message":
                    channel = message["channel"]
                    self.hub.deliver(
                        channel.decode() if isinstance(channel, bytes) else channel, message["data"]
                    )
            except asyncio.CancelledError:
                raise
            except Exception as exc:
                RECONNECTS.inc()
                log.warning("broker_reconnect", error=type(exc).__name__, backoff_s=backoff)
                await asyncio.sleep(backoff)
                backoff = min(backoff * 2, 5.0)
                channels = self.hub.channels()
                with contextlib.suppress(Exception):
                    await self._pubsub.aclose()  # type: ignore[no-untyped-call]
                self._pubsub = self._client.pubsub(ignore_subscribe_messages=True)
                with contextlib.suppress(Exception):
                    if channels:
                        await self._pubsub.subscribe(*channels)
