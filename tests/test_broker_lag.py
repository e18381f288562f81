"""The publish stamp: on the wire (Redis envelope), through the in-process broker, and into the lag histogram."""

from __future__ import annotations

import asyncio
import time
from collections.abc import AsyncIterator, Callable

import orjson
from prometheus_client import REGISTRY

from realtime.fanout import Fanout
from realtime.lag import stamp, unstamp
from realtime.memory import MemoryBroker


def lag() -> tuple[float, float]:
    count = REGISTRY.get_sample_value("bff_fanout_lag_seconds_count")
    total = REGISTRY.get_sample_value("bff_fanout_lag_seconds_sum")
    assert count is not None and total is not None
    return count, total


def test_a_stamped_envelope_is_still_the_json_object_and_unstamps_to_the_published_bytes() -> None:
    for data in (b'{"message":{"id":3},"author":null}', b"{}"):
        stamped = stamp(data, 1_764_089_123.25)
        # readers that do not know the stamp see one more key
        assert orjson.loads(stamped) == {"_published_at": 1_764_089_123.25, **orjson.loads(data)}
        assert unstamp(stamped) == (data, 1_764_089_123.25)


def test_envelopes_without_a_stamp_are_accepted_as_they_are() -> None:
    for data in (b'{"message":{"id":3}}', b"changed", b"[1]", b'{"_published_at":"x"}'):
        assert unstamp(data) == (data, None)
    assert stamp(b"changed", 1.0) == b"changed"  # not a JSON object: nothing to stamp


async def test_the_in_process_broker_hands_subscribers_the_publish_time() -> None:
    broker = MemoryBroker()
    async with broker.subscribe("chan") as sub:
        before = time.time()
        await broker.publish("chan", b"{}")
        after = time.time()
        async with asyncio.timeout(5):
            data = await anext(aiter(sub))
        assert data == b"{}"
        assert sub.published_at is not None and before <= sub.published_at <= after


async def test_a_group_observes_one_lag_per_frame_handed_to_a_socket() -> None:
    # given: a shared group of four members on the in-process broker; one socket refuses frames
    broker = MemoryBroker()
    fanout = Fanout(broker.subscribe)
    frames: list[list[str]] = [[], [], [], []]

    def sender(i: int) -> Callable[[str], bool]:
        def send(payload: str) -> bool:
            if i == 3:
                return False  # full: dropped, nothing sent
            frames[i].append(payload)
            return True

        return send

    async def render(data: bytes) -> tuple[int, str]:
        return orjson.loads(data)["n"], data.decode()

    async def no_refill(after: int) -> AsyncIterator[tuple[int, str]]:
        return
        yield  # pragma: no cover

    async def until_each_has(n: int) -> None:
        async with asyncio.timeout(5):
            while not all(f and orjson.loads(f[-1])["n"] == n for f in frames[:3]):
                await asyncio.sleep(0.01)

    dropped: list[int] = []

    def on_fail(i: int) -> Callable[[], None]:
        return lambda: dropped.append(i)

    # join returns once the member is live
    members = [
        await fanout.join("k", "chan", lambda: render, sender(i), no_refill, 0, on_fail(i)) for i in range(4)
    ]
    n = 1
    await broker.publish("chan", orjson.dumps({"n": n}))
    await until_each_has(n)
    assert dropped == [3]  # the socket that refused its frame was dropped, once
    count, total = lag()
    # when: one more event is published
    await broker.publish("chan", orjson.dumps({"n": n + 1}))
    await until_each_has(n + 1)
    # then: three frames were handed to sockets, three lags observed, each at least 0
    new_count, new_total = lag()
    assert new_count - count == 3
    assert 0 <= new_total - total < 3.0
    for member in members:
        member.leave()
    assert fanout.group_count() == 0
