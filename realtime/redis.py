"""Redis pub/sub broker: a client for publishing, one PubSub connection for all channels.

A reader task receives every message of this process's channels and hands it to the hub.
If Redis goes away the reader reconnects with backoff, subscribes again to every channel
that still has local subscribers, and, as each SUBSCRIBE is confirmed, puts `RESYNC` on
that channel's local queues: subscribers re-read storage after their cursor, so the events
published while we were away are not lost (storage first, then live, duplicates skipped).

The subscriber connection never retries inside redis-py: a silent reconnect there would
re-subscribe without telling us, and the gap would go unnoticed.

Publishing never raises for a broker outage: callers publish after committing, and
subscribers fill the gap from storage once the broker is back. Failures are logged and
counted (`bff_publish_failures_total`).

Each event travels with its publish time (realtime/lag.py: the first key of its JSON object,
taken off again by the reader); events without it are delivered all the same.
"""

from __future__ import annotations

import asyncio
import contextlib
import random
import time
from contextlib import AbstractAsyncContextManager
from typing import Any

import redis.asyncio as redis
import structlog
from prometheus_client import Counter, Gauge
from redis.asyncio.retry import Retry
from redis.backoff import ExponentialBackoff, NoBackoff
from redis.exceptions import RedisError

from realtime.hub import Hub, Subscription
from realtime.lag import stamp, unstamp
from realtime.memory import PUBLISHED

log = structlog.get_logger("bff.broker")
RECONNECTS = Counter(
    "bff_broker_reconnects_total", "Times the Redis subscriber connection was re-established"
)
PUBLISH_FAILURES = Counter(
    "bff_publish_failures_total", "Events not published because Redis was unreachable (stored all the same)"
)
CONNECTED = Gauge(
    "bff_broker_connected", "1 while the Redis subscriber connection is up, 0 while reconnecting"
)

BACKOFF_MIN_S = 0.1
BACKOFF_MAX_S = 5.0
CONFIRM_TIMEOUT_S = 5.0


def _text(value: Any) -> str:
    return value.decode() if isinstance(value, bytes) else str(value)


class RedisBroker:
    name = "redis"

    def __init__(self, url: str, queue_size: int = 1000) -> None:
        self._url = url
        # Publishing: two quick retries, then give up (the message is stored; subscribers resync).
        self._client = redis.Redis.from_url(
            url,
            max_connections=16,
            socket_connect_timeout=2,
            socket_timeout=5,
            health_check_interval=30,
            retry=Retry(ExponentialBackoff(cap=0.5, base=0.05), 2),
        )
        self._sub_client = redis.Redis.from_url(
            url, socket_connect_timeout=2, health_check_interval=30, retry=Retry(NoBackoff(), 0)
        )
        self._pubsub = self._sub_client.pubsub()
        self.hub = Hub(self._subscribe_upstream, self._unsubscribe_upstream, queue_size)
        self._reader: asyncio.Task[None] | None = None
        self._wake = asyncio.Event()
        # Serialises (un)subscribing with the reader replacing the PubSub on reconnect.
        self._lock = asyncio.Lock()
        self._live = True  # optimistic until the first failure
        self._broken = False  # set by a failed SUBSCRIBE: the reader reconnects
        self._confirming: dict[str, asyncio.Future[None]] = {}
        self._resync_pending: set[str] = set()

    async def start(self) -> None:
        CONNECTED.set(1)
        self._reader = asyncio.create_task(self._read_forever(), name="bff-redis-broker-reader")

    async def close(self) -> None:
        if self._reader:
            self._reader.cancel()
            with contextlib.suppress(asyncio.CancelledError):
                await self._reader
        with contextlib.suppress(Exception):
            await self._pubsub.aclose()
        await self._sub_client.aclose()
        await self._client.aclose()

    async def ping(self) -> bool:
        try:
            return bool(await asyncio.wait_for(self._client.ping(), timeout=2))
        except Exception:
            return False

    async def publish(self, channel: str, data: bytes) -> None:
        try:
            await self._client.publish(channel, stamp(data, time.time()))
        except (RedisError, OSError) as exc:
            PUBLISH_FAILURES.inc()
            log.warning("publish_failed", channel=channel, error=type(exc).__name__, detail=str(exc))
            return
        PUBLISHED.labels(self.name).inc()

    def subscribe(self, channel: str) -> AbstractAsyncContextManager[Subscription]:
        return self.hub.subscribe(channel)

    # Upstream (un)subscription, called by the hub for a channel's first and last local subscriber.

    async def _subscribe_upstream(self, channel: str) -> None:
        async with self._lock:
            if not self._live:
                # Reconnecting: the reader subscribes every hub channel, this one included,
                # and hands its subscribers RESYNC once it is confirmed.
                return
            confirmed = asyncio.get_running_loop().create_future()
            self._confirming[channel] = confirmed
            try:
                await self._pubsub.subscribe(channel)
            except Exception as exc:
                self._confirming.pop(channel, None)
                log.warning("broker_subscribe_failed", channel=channel, error=type(exc).__name__)
                self._broken = True
                self._wake.set()
                return
        self._wake.set()
        # Wait for Redis to confirm, so a caller replaying storage next cannot miss an event
        # published between its read and the SUBSCRIBE taking effect.
        try:
            await asyncio.wait_for(asyncio.shield(confirmed), CONFIRM_TIMEOUT_S)
        except TimeoutError:
            # The connection is failing; the reader will reconnect and RESYNC this channel.
            log.warning("broker_subscribe_unconfirmed", channel=channel)

    async def _unsubscribe_upstream(self, channel: str) -> None:
        async with self._lock:
            self._resync_pending.discard(channel)
            if self._live:
                with contextlib.suppress(Exception):
                    await self._pubsub.unsubscribe(channel)

    # The reader.

    async def _read_forever(self) -> None:
        backoff = BACKOFF_MIN_S
        while True:
            try:
                await self._pump()
            except asyncio.CancelledError:
                raise
            except Exception as exc:
                self._live = False
                CONNECTED.set(0)
                self._release_confirmations()
                log.warning("broker_disconnected", error=type(exc).__name__, detail=str(exc))
            while True:
                await asyncio.sleep(backoff * random.uniform(0.5, 1.0))
                backoff = min(backoff * 2, BACKOFF_MAX_S)
                try:
                    channels = await self._reconnect()
                    break
                except asyncio.CancelledError:
                    raise
                except Exception as exc:
                    log.info("broker_reconnect_failed", error=type(exc).__name__, retry_in_s=backoff)
            RECONNECTS.inc()
            CONNECTED.set(1)
            log.info("broker_reconnected", channels=channels)
            backoff = BACKOFF_MIN_S

    async def _pump(self) -> None:
        """Hand messages to the hub until the connection fails (raises)."""
        while True:
            if self._broken:
                raise ConnectionError("a SUBSCRIBE failed on the subscriber connection")
            if not self._pubsub.subscribed:
                self._wake.clear()
                await self._wake.wait()
                continue
            message = await self._pubsub.get_message(timeout=1.0)
            if message is None:
                continue
            kind = message["type"]
            if kind == "message":
                data, published_at = unstamp(message["data"])
                self.hub.deliver(_text(message["channel"]), data, published_at)
            elif kind == "subscribe":
                self._on_confirmed(_text(message["channel"]))

    def _on_confirmed(self, channel: str) -> None:
        waiter = self._confirming.pop(channel, None)
        if waiter is not None and not waiter.done():
            waiter.set_result(None)
        if channel in self._resync_pending:
            self._resync_pending.discard(channel)
            count = self.hub.resync(channel)
            log.info("broker_resync", channel=channel, subscribers=count)

    def _release_confirmations(self) -> None:
        # Their channels are in the hub: the reconnect subscribes them and sends RESYNC.
        for waiter in self._confirming.values():
            if not waiter.done():
                waiter.set_result(None)
        self._confirming.clear()

    async def _reconnect(self) -> int:
        """A fresh PubSub subscribed to every channel with local subscribers; raises if Redis is down."""
        async with self._lock:
            old, self._pubsub = self._pubsub, self._sub_client.pubsub()
            with contextlib.suppress(Exception):
                await old.aclose()
            channels = self.hub.channels()
            if channels:
                await self._pubsub.subscribe(*channels)
            else:
                await self._pubsub.connect()  # type: ignore[no-untyped-call]  # nothing to resubscribe: prove Redis is back
            self._resync_pending = set(channels)
            self._broken = False
            self._live = True
            return len(channels)
