"""The feed's sources, cached: whom each viewer follows, and each author's newest post keys.

A first Home page is then merged in-process from the followees' short sorted lists (decision
49): the database only reads the page's rows by primary key, with the viewer's likes, instead
of scanning ~50 followees' posts per request. Both kinds are shared through the cache layers
like users: a list serves every follower of its author.

Nothing bff serves writes posts or follows today. A mutation that does must invalidate
RECENT_POSTS for the author (a post) or FOLLOWEES for the follower (a follow): until then,
rows written outside bff are seen within the cache's TTLs, as for users.
"""

from __future__ import annotations

import heapq
from collections.abc import Iterable, Sequence
from datetime import UTC, datetime, timedelta
from itertools import islice
from typing import Any

import orjson

from bff.cache import Cache, Namespace
from bff.db import Database

# A default Home page (20) and the probe for its next page. Each list holds at most this many:
# deeper pages and longer pages are merged only where the cut lists still decide them.
KEYS_PER_AUTHOR = 21

# A post's place in the feed as one int: microseconds since the epoch, then the id, so that
# int order is the feed's (created_at, id) order and a merge compares ints, not tuples.
_ID_BITS = 40
_ID_MASK = (1 << _ID_BITS) - 1
_EPOCH = datetime(1970, 1, 1, tzinfo=UTC)
_MICROSECOND = timedelta(microseconds=1)


def post_key(created_at: datetime, post_id: int) -> int:
    """ValueError for an id beyond 40 bits (a trillion posts): such pages are scanned."""
    if not 0 <= post_id <= _ID_MASK:
        raise ValueError(f"post id {post_id} does not fit a feed key")
    return ((created_at - _EPOCH) // _MICROSECOND) << _ID_BITS | post_id


def post_id_of(key: int) -> int:
    return key & _ID_MASK


def _encode_keys(keys: tuple[int, ...]) -> bytes:
    return ",".join(map(str, keys)).encode()  # orjson stops at 64-bit ints; these are ~91 bits


def _decode_keys(data: bytes) -> tuple[int, ...]:
    return tuple(map(int, data.split(b","))) if data else ()


# Whom a viewer follows (viewer id -> followee ids).
FOLLOWEES: Namespace[tuple[int, ...]] = Namespace(
    "followees", orjson.dumps, lambda b: tuple(orjson.loads(b)), parse_key=int
)
# An author's newest KEYS_PER_AUTHOR post keys, newest first (author id -> keys).
RECENT_POSTS: Namespace[tuple[int, ...]] = Namespace(
    "recent_posts", _encode_keys, _decode_keys, parse_key=int
)


def held_sources(cache: Cache, viewer_id: int) -> list[tuple[int, ...]] | None:
    """Every followee's list as the in-process layer holds them, or None if any is missing."""
    followees = cache.held(FOLLOWEES, (viewer_id,)).get(viewer_id)
    if followees is None:
        cache.missed(FOLLOWEES, 1)
        return None
    lists = cache.held(RECENT_POSTS, followees)
    if len(lists) < len(followees):
        cache.missed(RECENT_POSTS, len(followees) - len(lists))
        return None
    return list(lists.values())


def merge_page(lists: Iterable[Sequence[int]], n: int, before: int | None = None) -> list[int] | None:
    """The newest `n` keys of `lists` (each newest first), older than `before`; None when the
    lists cannot tell.

    A list cut at KEYS_PER_AUTHOR hides its author's older posts, all older than its last key.
    So the page is exact when it is full and its last key is not older than any cut list's
    last; otherwise one of the hidden posts could belong in it.
    """
    bound: int | None = None
    runs: list[Sequence[int]] = []
    for keys in lists:
        if not keys:
            continue
        if len(keys) >= KEYS_PER_AUTHOR and (bound is None or keys[-1] > bound):
            bound = keys[-1]
        if before is not None and keys[0] >= before:
            keys = [k for k in keys if k < before]
            if not keys:
                continue
        runs.append(keys)
    top = list(islice(heapq.merge(*runs, reverse=True), n))
    if bound is not None and (len(top) < n or top[-1] < bound):
        return None
    return top


# Refresh-through (`Cache.reload_from`): the same values, read without a request.
async def followees_from_db(db: Database, viewer_ids: list[int]) -> dict[int, tuple[int, ...]]:
    rows = await db.fetch_all(
        "SELECT follower_id, followee_id FROM follows WHERE " + db.in_list("follower_id", "ids"),
        {"ids": viewer_ids},
    )
    found: dict[int, list[int]] = {v: [] for v in viewer_ids}
    for row in rows:
        found[row["follower_id"]].append(row["followee_id"])
    return {v: tuple(ids) for v, ids in found.items()}


_RECENT_PG = """
SELECT a.author_id, k.id, k.created_at
FROM unnest(CAST(:ids AS bigint[])) AS a(author_id)
CROSS JOIN LATERAL (
  SELECT id, created_at FROM posts WHERE author_id = a.author_id
  ORDER BY created_at DESC, id DESC LIMIT :k
) k
"""
_RECENT_SQLITE = """
SELECT author_id, id, created_at FROM (
  SELECT author_id, id, created_at,
    ROW_NUMBER() OVER (PARTITION BY author_id ORDER BY created_at DESC, id DESC) AS rn
  FROM posts WHERE author_id IN (SELECT value FROM json_each(:ids))
) WHERE rn <= :k
"""


async def recent_posts_from_db(db: Database, author_ids: list[int]) -> dict[int, tuple[int, ...]]:
    sql = _RECENT_PG if db.dialect == "postgresql" else _RECENT_SQLITE
    rows = await db.fetch_all(sql, {"ids": author_ids, "k": KEYS_PER_AUTHOR})
    return keys_by_author(rows, author_ids)


def keys_by_author(rows: Iterable[Any], authors: Iterable[int] = ()) -> dict[int, tuple[int, ...]]:
    """Rows of (author_id, id, created_at) as each author's keys, newest first; `authors` and
    rows without a post (id NULL: a followee who never posted) get an empty list. ValueError
    for an id beyond what a key holds (`post_key`)."""
    found: dict[int, list[int]] = {a: [] for a in authors}
    for row in rows:
        keys = found.setdefault(row["author_id"], [])
        if row["id"] is not None:
            keys.append(post_key(row["created_at"], row["id"]))
    return {a: tuple(sorted(keys, reverse=True)) for a, keys in found.items()}
