"""The in-process layer of the read cache (bff/cache.py) and the scope of its Redis keys."""

from __future__ import annotations

import random
import time
from collections import OrderedDict
from collections.abc import Hashable, Iterable
from typing import Any
from urllib.parse import urlsplit

TTL_JITTER = 0.2
# An entry read in the last quarter of its life is due for a refresh (bff/cache.py re-reads it
# from Redis in the background): a key read again and again never expires on a request's path.
REFRESH_AHEAD = 0.25
# An entry read within this fraction of the TTL after its expiry is still answered, and
# revalidated from Redis in the background (RFC 5861's stale-while-revalidate): a key read less
# often than once per TTL no longer costs its reader a Redis round trip, a loop turn behind every
# other request. Only with refresh (a shared namespace, with Redis); never for a settled entry
# (its revalidation failed) nor an invalidated one (`drop` removes it). See decision 42.
STALE_WHILE_REVALIDATE = 1.0


class LocalLayer:
    """key -> (expires at, value): least recently used first, bounded."""

    def __init__(self, max_entries: int, ttl_seconds: float) -> None:
        self.max_entries = max_entries
        self.ttl = ttl_seconds
        # A settled entry (`settle`) has a third element.
        self._entries: OrderedDict[tuple[str, Hashable], tuple[Any, ...]] = OrderedDict()
        # When each key was last invalidated (bounded as well), and when everything was.
        self._invalidated: OrderedDict[tuple[str, Hashable], float] = OrderedDict()
        self._cleared_at = -float("inf")
        # Keys read in their last REFRESH_AHEAD of life, by namespace: what bff/cache.py refreshes.
        self.due: dict[str, set[Hashable]] = {}
        # Expired entries answered (stale-while-revalidate) since bff/cache.py last counted them.
        self.stale_hits = 0

    def get_many(self, namespace: str, keys: Iterable[Hashable], refresh: bool = False) -> dict[Any, Any]:
        """The live values of `keys` in `namespace`; without `refresh`, each hit is made the most
        recently used.

        One clock read for the whole list: a page's keys are looked up within microseconds of
        each other. With `refresh`, hits in their last REFRESH_AHEAD of life are noted in `due`,
        and so are entries expired less than STALE_WHILE_REVALIDATE ago, which are answered
        too (counted in `stale_hits`). With `refresh` a hit does not move its entry either: a
        key read in its last quarter of life is renewed by its refresh (`set` moves it), so the
        order stays "least recently read" to within one TTL, which no entry outlives anyway;
        one call fewer per key read.
        """
        entries = self._entries
        now = time.monotonic()
        # Without refresh the window is empty: an entry is live until its expiry, no longer.
        floor, soon = self._window(now) if refresh else (now, now)
        found: dict[Any, Any] = {}
        due: list[Hashable] | None = None
        for key in keys:
            full = (namespace, key)
            entry = entries.get(full)
            if entry is None:
                continue
            expires = entry[0]
            if expires <= soon:
                if expires <= now:
                    if len(entry) != 2 or expires <= floor:  # settled, or past the stale window
                        del entries[full]
                        continue
                    if key not in found:  # a page repeats keys (one author, many posts): once each
                        self.stale_hits += 1
                if len(entry) == 2:  # not settled (see `settle`)
                    if due is None:
                        due = [key]
                    else:
                        due.append(key)
            if not refresh:
                entries.move_to_end(full)
            found[key] = entry[1]
        if due is not None:
            self.due.setdefault(namespace, set()).update(due)
        return found

    def is_due(self, key: tuple[str, Hashable]) -> bool:
        """Whether `key` is held, not settled, and in its last REFRESH_AHEAD of life or expired
        less than STALE_WHILE_REVALIDATE ago (not refreshed meanwhile)."""
        entry = self._entries.get(key)
        if entry is None or len(entry) != 2:
            return False
        floor, soon = self._window(time.monotonic())
        return bool(floor < entry[0] <= soon)

    def _window(self, now: float) -> tuple[float, float]:
        """The expiry times an entry read at `now` is due for a refresh between: from
        STALE_WHILE_REVALIDATE ago (answered stale) to REFRESH_AHEAD ahead."""
        return now - self.ttl * STALE_WHILE_REVALIDATE, now + self.ttl * REFRESH_AHEAD

    def settle(self, key: tuple[str, Hashable]) -> None:
        """A refresh was tried and could not renew `key`: keep its entry to its expiry without
        asking for another refresh, and never past it (an expired one, answered stale while
        this refresh ran, goes now). The mark (a third element) goes with the entry."""
        entry = self._entries.get(key)
        if entry is None:
            return
        if entry[0] <= time.monotonic():
            del self._entries[key]
        else:
            self._entries[key] = (entry[0], entry[1], None)  # same place in the LRU order

    def set(
        self, key: tuple[str, Hashable], value: Any, fetched_since: float, jitter: float | None = None
    ) -> None:
        """Store `value` read after `fetched_since`, unless the key was invalidated meanwhile.

        Its lifetime is between 1 - `jitter` (default TTL_JITTER) and all of the TTL."""
        if self.max_entries <= 0 or fetched_since <= self._cleared_at:
            return
        if self._invalidated.get(key, -float("inf")) >= fetched_since:
            return
        # A lifetime between 1 - spread and all of the TTL (80-100% by default): what one burst
        # filled (a warm-up, a restart) does not all expire in the same second and miss together.
        spread = TTL_JITTER if jitter is None else jitter
        lifetime = self.ttl * (1.0 - spread * random.random())
        self._entries[key] = (time.monotonic() + lifetime, value)
        self._entries.move_to_end(key)
        while len(self._entries) > self.max_entries:
            self._entries.popitem(last=False)

    def drop(self, key: tuple[str, Hashable]) -> None:
        self._entries.pop(key, None)
        self._invalidated[key] = time.monotonic()
        self._invalidated.move_to_end(key)
        while len(self._invalidated) > max(self.max_entries, 1_000):
            self._invalidated.popitem(last=False)

    def clear(self) -> None:
        self._entries.clear()
        self._invalidated.clear()
        self.due.clear()
        self._cleared_at = time.monotonic()

    def __len__(self) -> int:
        return len(self._entries)


def scope_of(database_url: str) -> str:
    """Redis keys are namespaced by the database they copy: databases sharing a Redis never mix.

    The database name (or SQLite file), not the whole URL: instances reaching one database
    through different hosts or credentials still share entries and invalidations.
    """
    parts = urlsplit(database_url)
    name = parts.path.lstrip("/") or parts.netloc
    return name.replace(" ", "_")[:200] or "default"
