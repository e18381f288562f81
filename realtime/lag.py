"""Publish → send lag: the publish stamp an event carries through the broker, and its histogram.

The publisher's broker stamps each event with its wall clock (`time.time()`, comparable across
instances); `bff_fanout_lag_seconds` observes `now - published_at` when the event's frame is
handed to a socket (written, or queued behind frames the transport has not taken yet), once per
delivered frame. Events replayed from storage carry no stamp and are not observed.

On the Redis wire the stamp is the first key of the event's JSON object, `{"_published_at":…,`:
instances that do not know it ignore the key (every reader looks up the keys it needs), and an
event without it (an older publisher, a payload that is not a JSON object) is delivered as is.
Readers take the key off again, so subscribers see exactly the bytes that were published.
"""

from __future__ import annotations

import re
import time
from bisect import bisect_left
from collections.abc import Iterator
from contextvars import ContextVar

from prometheus_client import REGISTRY
from prometheus_client.core import HistogramMetricFamily
from prometheus_client.registry import Collector

STAMP_PREFIX = b'{"_published_at":'
_STAMPED = re.compile(rb'\{"_published_at":(-?[0-9][0-9.eE+-]*)([,}])')
BUCKETS = (0.0005, 0.001, 0.0025, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1.0, 2.5, 5.0, 10.0)

PUBLISHED_AT: ContextVar[float | None] = ContextVar("bff_event_published_at", default=None)
"""Per-subscriber path: the stamp of the event this task took last from its hub subscription.

strawberry runs a subscription's generator and sends its frames in one task, so the socket
adapter reads it when it sends the frame the event became (and clears it: one frame per event).
"""


def stamp(data: bytes, published_at: float) -> bytes:
    """`data` with the publish time as its first key when it is a JSON object; else unchanged."""
    if data[:1] != b"{":
        return data
    head = STAMP_PREFIX + repr(published_at).encode()
    rest = data[1:]
    return head + (b"}" if rest.lstrip()[:1] == b"}" else b"," + rest)


def unstamp(data: bytes) -> tuple[bytes, float | None]:
    """The published bytes and their publish time (None when the envelope carries none)."""
    found = _STAMPED.match(data)
    if found is None:
        return data, None
    try:
        published_at = float(found[1])
    except ValueError:
        return data, None
    return (b"{}" if found[2] == b"}" else b"{" + data[found.end() :]), published_at


class LagHistogram(Collector):
    """`bff_fanout_lag_seconds`: a histogram that also takes a group's frames in one step.

    prometheus_client's `Histogram.observe` costs ~0.85 µs (a lock per call); a shared group
    writes thousands of frames per event, ~50 µs each, so its loop reads the clock per frame
    and counts into a `LagBatch` (~0.3 µs), added here once per event (docs/decisions.md).
    """

    name = "bff_fanout_lag_seconds"
    documentation = (
        "From an event's publish (the publisher's wall clock) to its frame's send "
        "(handed to the socket: written, or queued for writing), per delivered frame"
    )

    def __init__(self) -> None:
        self.counts = [0] * (len(BUCKETS) + 1)  # the last one: above every bound (+Inf)
        self.total = 0.0

    def observe(self, published_at: float) -> None:
        lag = max(0.0, time.time() - published_at)
        self.counts[bisect_left(BUCKETS, lag)] += 1
        self.total += lag

    def batch(self, published_at: float) -> LagBatch:
        return LagBatch(self, published_at)

    def collect(self) -> Iterator[HistogramMetricFamily]:
        cumulative, running = [], 0
        for bound, count in zip((*map(str, BUCKETS), "+Inf"), self.counts, strict=True):
            running += count
            cumulative.append((bound, float(running)))
        yield HistogramMetricFamily(self.name, self.documentation, buckets=cumulative, sum_value=self.total)


class LagBatch:
    """The frames one event became in one fan-out loop; `commit` adds them to the histogram."""

    __slots__ = ("_counts", "_histogram", "_published_at", "_total")

    def __init__(self, histogram: LagHistogram, published_at: float) -> None:
        self._histogram = histogram
        self._published_at = published_at
        self._counts: dict[int, int] = {}
        self._total = 0.0

    def sent(self) -> None:
        """One frame of this event handed to a socket, now."""
        lag = max(0.0, time.time() - self._published_at)
        index = bisect_left(BUCKETS, lag)
        self._counts[index] = self._counts.get(index, 0) + 1
        self._total += lag

    def commit(self) -> None:
        counts = self._histogram.counts
        for index, count in self._counts.items():
            counts[index] += count
        self._histogram.total += self._total
        self._counts.clear()
        self._total = 0.0


FANOUT_LAG = LagHistogram()
REGISTRY.register(FANOUT_LAG)
