"""Posts: hydration by plan, likes."""

from __future__ import annotations

from bff.errors import BffError, ErrorCode
from resolvers.context import Context
from resolvers.loaders import LIKE_COUNTS
from resolvers.rows import PostRow, PostStats, PostView, UserRow
from resolvers.users import require_writer


async def hydrate(
    ctx: Context, posts: list[PostRow], *, stats: bool, author: bool, liked: list[bool] | None = None
) -> list[PostView]:
    """Attach what the selection asked for, one batched load per kind for the whole page.

    Every list is started before the first await: keys nobody holds are enqueued together and
    join one batch per loader, with no Task; lists already known are answered without waiting.
    `liked`: whether the viewer likes each post, when the caller read it with the posts (the feed).
    """
    loaders = ctx.loaders
    ids = [p.id for p in posts]
    counts = loaders.like_count_by_post_id.load_all(ids) if stats else None
    liked_loads = loaders.viewer_liked_by_post_id.load_all(ids) if stats and liked is None else None
    authors = loaders.user_by_id.load_all([p.author_id for p in posts]) if author else None
    stats_list: list[PostStats | None] = [None] * len(posts)
    if counts is not None:
        flags = liked if liked_loads is None else await liked_loads
        stats_list = [PostStats(c, v) for c, v in zip(await counts, flags or (), strict=True)]
    author_list = await authors if authors is not None else [None] * len(posts)
    return [PostView(p, s, a) for p, s, a in zip(posts, stats_list, author_list, strict=True)]


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
    await _changed_likes(ctx, post_id)
    return post


async def unlike_post(ctx: Context, post_id: int) -> PostRow:
    """Idempotent: unliking a post not liked is a no-op."""
    viewer = await require_writer(ctx)
    post = await get_post(ctx, post_id)
    await ctx.db.execute("DELETE FROM likes WHERE user_id = :u AND post_id = :p", {"u": viewer, "p": post_id})
    await _changed_likes(ctx, post_id)
    return post


async def _changed_likes(ctx: Context, post_id: int) -> None:
    """After the write committed: this request and every instance's cache read the new count."""
    ctx.loaders.like_count_by_post_id.clear(post_id)
    ctx.loaders.viewer_liked_by_post_id.clear(post_id)
    await ctx.cache.invalidate(LIKE_COUNTS, [post_id])


__all__ = ["PostStats", "UserRow", "get_post", "hydrate", "like_post", "unlike_post"]
