"""The home feed: newest posts of the people the viewer follows, one page per statement.

Three ways to a page, counted in `bff_feed_pages_total{path}` (decision 49); the first two only
with FEED_CACHED_SOURCES (off by default):
- merged: the followees and their newest post keys are held in the cache (resolvers/
  feed_sources.py); the page's keys are merged in-process and one statement reads those rows.
- filled: a first page whose sources are not held: one statement reads the page and every
  followee's newest keys, which are offered to the cache for the next Home.
- scanned: a page the cut lists cannot decide (deep or long pages), or no cache: one statement
  scans the followees' posts for this page.

Every page statement also says whether the viewer likes each post (a primary-key probe per
row): like counts are shared by everyone through the cache, and no per-viewer like is cached.
"""

from __future__ import annotations

import time
from dataclasses import dataclass
from datetime import datetime
from typing import Any

from prometheus_client import Counter

from resolvers.context import Context
from resolvers.feed_sources import (
    FOLLOWEES,
    KEYS_PER_AUTHOR,
    RECENT_POSTS,
    held_sources,
    keys_by_author,
    merge_page,
    post_id_of,
    post_key,
)
from resolvers.rows import PostRow

FEED_PAGES = Counter("bff_feed_pages_total", "Feed pages by how they were read", ["path"])
_MERGED, _FILLED, _SCANNED = (FEED_PAGES.labels(p) for p in ("merged", "filled", "scanned"))

# Postgres: newest `n` keys per followee through posts_author_created_idx, then the top `n` of
# those. Only `(created_at, id)` is read there, so each followee costs an index-only scan; the
# page's `n` rows are read from the table afterwards (by primary key) instead of every
# followee's `n`: 0.59 -> 0.35 ms of database time per first page (decision 41).
_PG = """
SELECT k.id, k.created_at
FROM follows f
CROSS JOIN LATERAL (
  SELECT id, created_at FROM posts
  WHERE author_id = f.followee_id {after}
  ORDER BY created_at DESC, id DESC LIMIT :n
) k
WHERE f.follower_id = :viewer
ORDER BY k.created_at DESC, k.id DESC
LIMIT :n
"""
_PG_AFTER = "AND (created_at, id) < (:after_ts, :after_id)"

# SQLite has no LATERAL; the same order and bounds with an IN over the followees.
_SQLITE = """
SELECT id, author_id, body, created_at FROM posts
WHERE author_id IN (SELECT followee_id FROM follows WHERE follower_id = :viewer) {after}
ORDER BY created_at DESC, id DESC
LIMIT :n
"""
_SQLITE_AFTER = "AND (created_at < :after_ts OR (created_at = :after_ts AND id < :after_id))"

# Whether the viewer likes each post of the page: probed for the page's rows only, after the limit.
_PG_WITH_LIKED = """
SELECT p.id, p.author_id, p.body, p.created_at,
  EXISTS (SELECT 1 FROM likes l WHERE l.user_id = :viewer AND l.post_id = p.id) AS liked
FROM ({page}) page
JOIN posts p ON p.id = page.id
ORDER BY page.created_at DESC, page.id DESC
"""
_SQLITE_WITH_LIKED = """
SELECT page.id, page.author_id, page.body, page.created_at,
  EXISTS (SELECT 1 FROM likes l WHERE l.user_id = :viewer AND l.post_id = page.id) AS liked
FROM ({page}) page
ORDER BY page.created_at DESC, page.id DESC
"""

# The four statements, built once: (Postgres?, after a cursor?) -> SQL.
_STATEMENTS = {
    (True, after): _PG_WITH_LIKED.format(page=_PG.format(after=_PG_AFTER if after else ""))
    for after in (True, False)
} | {
    (False, after): _SQLITE_WITH_LIKED.format(page=_SQLITE.format(after=_SQLITE_AFTER if after else ""))
    for after in (True, False)
}


# Filled: each followee's newest keys (an empty row for one who never posted) and, marked
# `on_page`, the page's rows read from them, in one statement. `recent` is per dialect:
# Postgres as _PG per followee; SQLite (no LATERAL) numbers each followee's posts.
_FILL = """
WITH {recent}, page AS (
  SELECT id FROM recent WHERE id IS NOT NULL ORDER BY created_at DESC, id DESC LIMIT :n
)
SELECT r.author_id, r.id, r.created_at, NULL AS body, NULL AS liked, 0 AS on_page FROM recent r
UNION ALL
SELECT p.author_id, p.id, p.created_at, p.body,
  EXISTS (SELECT 1 FROM likes l WHERE l.user_id = :viewer AND l.post_id = p.id), 1
FROM page JOIN posts p ON p.id = page.id
"""
_PG_RECENT = """recent AS (
  SELECT f.followee_id AS author_id, k.id, k.created_at
  FROM follows f
  LEFT JOIN LATERAL (
    SELECT id, created_at FROM posts WHERE author_id = f.followee_id
    ORDER BY created_at DESC, id DESC LIMIT :k
  ) k ON true
  WHERE f.follower_id = :viewer
)"""
_SQLITE_RECENT = """followed AS (
  SELECT followee_id FROM follows WHERE follower_id = :viewer
), recent AS (
  SELECT f.followee_id AS author_id, k.id, k.created_at
  FROM followed f
  LEFT JOIN (
    SELECT id, author_id, created_at,
      ROW_NUMBER() OVER (PARTITION BY author_id ORDER BY created_at DESC, id DESC) AS rn
    FROM posts WHERE author_id IN (SELECT followee_id FROM followed)
  ) k ON k.author_id = f.followee_id AND k.rn <= :k
)"""
_FILL_STATEMENTS = {True: _FILL.format(recent=_PG_RECENT), False: _FILL.format(recent=_SQLITE_RECENT)}

# Merged: the page's rows by primary key, with the viewer's likes.
_BY_KEYS = """
SELECT p.id, p.author_id, p.body, p.created_at,
  EXISTS (SELECT 1 FROM likes l WHERE l.user_id = :viewer AND l.post_id = p.id) AS liked
FROM posts p WHERE {ids}
"""
_BY_KEYS_STATEMENTS = {
    True: _BY_KEYS.format(ids="p.id = ANY(:ids)"),
    False: _BY_KEYS.format(ids="p.id IN (SELECT value FROM json_each(:ids))"),
}


@dataclass(slots=True)
class FeedPage:
    posts: list[PostRow]
    has_next_page: bool
    liked: list[bool]  # whether the viewer likes each post, read by the page's statement


async def list_feed(ctx: Context, viewer_id: int, first: int, after: tuple[datetime, int] | None) -> FeedPage:
    n = first + 1  # one more than the page: whether there is a next one
    cached_sources = ctx.settings.feed_cached_sources and ctx.cache.enabled
    sources = held_sources(ctx.cache, viewer_id) if cached_sources else None
    if sources is not None:
        keys = _merged(sources, n, after)
        if keys is not None:
            _MERGED.inc()
            return await _page_by_keys(ctx, viewer_id, keys, first)
    elif cached_sources and after is None and n <= KEYS_PER_AUTHOR:
        _FILLED.inc()
        return await _page_and_sources(ctx, viewer_id, first)
    _SCANNED.inc()
    return await _page_by_scan(ctx, viewer_id, first, after)


def _merged(sources: list[tuple[int, ...]], n: int, after: tuple[datetime, int] | None) -> list[int] | None:
    try:
        before = post_key(*after) if after else None
    except ValueError:  # a cursor id no cached key can hold: scanned
        return None
    return merge_page(sources, n, before)


async def _page_by_keys(ctx: Context, viewer_id: int, keys: list[int], first: int) -> FeedPage:
    ids = [post_id_of(k) for k in keys[:first]]
    rows: list[Any] = []
    if ids:
        with ctx.loaders.gate.list_fetch():
            rows = await ctx.db.fetch_all(
                _BY_KEYS_STATEMENTS[ctx.db.dialect == "postgresql"], {"viewer": viewer_id, "ids": ids}
            )
    by_id = {row["id"]: row for row in rows}
    # A post deleted outside bff since its key was cached is left out (bounded by the TTLs).
    return _page(ctx, [by_id[i] for i in ids if i in by_id], has_next_page=len(keys) > first)


async def _page_and_sources(ctx: Context, viewer_id: int, first: int) -> FeedPage:
    sql = _FILL_STATEMENTS[ctx.db.dialect == "postgresql"]
    since = time.monotonic()
    # The offers stay inside the gate: loaders wait for this page's authors to join the batch
    # the viewer's own user is in, instead of sending it alone while Redis answers.
    with ctx.loaders.gate.list_fetch():
        rows = await ctx.db.fetch_all(sql, {"viewer": viewer_id, "k": KEYS_PER_AUTHOR, "n": first + 1})
        page, recent = _split_fill(rows)
        if recent is not None:
            await ctx.cache.offer(RECENT_POSTS, recent, since)
            await ctx.cache.offer(FOLLOWEES, {viewer_id: tuple(recent)}, since)
    return _page(ctx, page[:first], has_next_page=len(page) > first)


def _split_fill(rows: list[Any]) -> tuple[list[Any], dict[int, tuple[int, ...]] | None]:
    """The page's rows, newest first, and each followee's newest keys (None: an id beyond what
    a key holds, so this viewer's sources are not cached)."""
    page = sorted((r for r in rows if r["on_page"]), key=lambda r: (r["created_at"], r["id"]), reverse=True)
    try:
        return page, keys_by_author(r for r in rows if not r["on_page"])
    except ValueError:
        return page, None


async def _page_by_scan(
    ctx: Context, viewer_id: int, first: int, after: tuple[datetime, int] | None
) -> FeedPage:
    sql = _STATEMENTS[ctx.db.dialect == "postgresql", after is not None]
    values: dict[str, object] = {"viewer": viewer_id, "n": first + 1}
    if after:
        values["after_ts"], values["after_id"] = after
    with ctx.loaders.gate.list_fetch():
        rows = await ctx.db.fetch_all(sql, values)
    return _page(ctx, rows[:first], has_next_page=len(rows) > first)


def _page(ctx: Context, rows: list[Any], has_next_page: bool) -> FeedPage:
    # The flags go to the page (hydrate reads them there) and to the loader, for any other
    # field of this request that asks.
    liked = [bool(row["liked"]) for row in rows]
    loader = ctx.loaders.viewer_liked_by_post_id
    for row, flag in zip(rows, liked, strict=True):
        loader.prime(row["id"], flag)
    return FeedPage([PostRow.from_db(r) for r in rows], has_next_page=has_next_page, liked=liked)
