"""Posts: hydration by plan, likes."""

from __future__ import annotations

import asyncio
from collections.abc import Awaitable

from bff.errors import BffError, ErrorCode
from resolvers.context import Context
from resolvers.rows import PostRow, PostStats, PostView, UserRow
from resolvers.users import require_writer


async def hydrate(ctx: Context, posts: list[PostRow], *, stats: bool, author: bool) -> list[PostView]:
    """Attach what the selection asked for, one batched load per kind for the whole page."""
    ids = [p.id for p in posts]
    none: list[None] = [None] * len(posts)
    want_stats: Awaitable[list[PostStats] | list[None]] = (
        ctx.loaders.post_stats_by_post_id.load_all(ids) if stats else _nothing(none)
    )
    want_authors: Awaitable[list[UserRow | None] | list[None]] = (
        ctx.loaders.user_by_id.load_all([p.author_id for p in posts]) if author else _nothing(none)
    )
    stats_list, authors = await asyncio.gather(want_stats, want_authors)
    return [PostView(p, s, a) for p, s, a in zip(posts, stats_list, authors, strict=True)]


async def _nothing(none: list[None]) -> list[None]:
    return none


async def get_post(ctx: Context, post_id: int) -> PostRow:
    post = await ctx.loaders.post_by_id.load(post_id)
    if post is None:
        raise BffError(ErrorCode.NOT_FOUND, f"No post {post_id}")
    return post


async def like_post(ctx: Context, post_id: int) -> PostRow:
    """Idempotent: liking twice keeps one like."""
    viewer = await require_writer(ctx)
    post = await get_post(ctx, post_id)
    await ctx.db.execute(
        "INSERT INTO likes (user_id, post_id) VALUES (:u, :p) ON CONFLICT (user_id, post_id) DO NOTHING",
        {"u": viewer, "p": post_id},
    )
    ctx.loaders.post_stats_by_post_id.clear(post_id)
    return post


async def unlike_post(ctx: Context, post_id: int) -> PostRow:
    """Idempotent: unliking a post not liked is a no-op."""
    viewer = await require_writer(ctx)
    post = await get_post(ctx, post_id)
    await ctx.db.execute("DELETE FROM likes WHERE user_id = :u AND post_id = :p", {"u": viewer, "p": post_id})
    ctx.loaders.post_stats_by_post_id.clear(post_id)
    return post


__all__ = ["PostStats", "UserRow", "get_post", "hydrate", "like_post", "unlike_post"]
