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
"""

from __future__ import annotations

import gc


def freeze_startup_objects() -> None:
    """Collect what startup left behind, then exempt the survivors from future collections."""
    gc.collect()
    gc.freeze()


def thaw() -> None:
    gc.unfreeze()
