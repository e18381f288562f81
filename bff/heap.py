"""Keeping the cyclic garbage collector's pauses out of request latency.

Everything startup builds (modules, the strawberry and graphql-core schemas, pydantic and
structlog machinery: ~150,000 objects) lives as long as the process, yet CPython's collector
walks all of it at every full collection. Under load those come every few seconds: requests in
flight keep their objects alive past the young collections, so the old generation keeps
growing, and each full walk stopped the event loop for 100-350 ms, which every request in
flight waited out: the p99 (docs/benchmarks.md). `gc.freeze()` after startup moves those
objects out of the collector's sight; they stay reachable and are freed as usual if they ever
become garbage, except cycles among them, which `thaw` hands back to the collector at shutdown
(an in-process test may start many apps).

The young threshold is raised for the same reason: with Python's (700, 10, 10), a Home in
flight among 64 outlived several young collections, so each collection walked the objects of
every request in flight, and the old generation filled with them. Counted with `gc.callbacks`
over one `make bench`-style run (40 s, c=16 then c=64): ~3.5 s of collector CPU in ~4,000 young
and ~35 full collections with Python's thresholds; ~0.9 s in ~350 young and 3 full ones with
(10,000, 10, 10) (docs/benchmarks.md). The older generations keep Python's 10: raising them too
(100) saved nothing more, and let garbage in cycles (an exception's traceback, graphql-core's
executor: ~25 objects per Home) wait so long that error-heavy traffic grew the heap
(tests/test_fuzz.py's memory bound caught it).
"""

from __future__ import annotations

import gc

THRESHOLDS = (10_000, 10, 10)
_previous: list[tuple[int, int, int]] = []


def freeze_startup_objects() -> None:
    """Collect what startup left behind, exempt the survivors from future collections, and
    collect less often while serving."""
    gc.collect()
    gc.freeze()
    _previous.append(gc.get_threshold())
    gc.set_threshold(*THRESHOLDS)


def thaw() -> None:
    """At shutdown: the frozen objects back to the collector, the previous thresholds back."""
    gc.unfreeze()
    if _previous:
        gc.set_threshold(*_previous.pop())
