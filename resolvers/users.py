"""Users: the viewer, profiles, a user's rooms."""

from __future__ import annotations

from bff.errors import BffError, ErrorCode
from resolvers.context import Context
from resolvers.rows import RoomRow, UserRow


async def get_viewer(ctx: Context) -> UserRow:
    user_id = ctx.require_viewer()
    user = await ctx.loaders.user_by_id.load(user_id)
    if user is None:
        # A valid token for a user that no longer exists.
        raise BffError(ErrorCode.UNAUTHENTICATED, "The signed-in user no longer exists")
    return user


async def require_writer(ctx: Context) -> int:
    """The viewer's id for a write: the token must name a user that still exists.

    A token outlives a deleted account; writing for it would break a foreign key (Postgres)
    or leave an orphan row (SQLite does not enforce them). One batched load, shared with reads.
    """
    return (await get_viewer(ctx)).id


async def get_user(ctx: Context, user_id: int) -> UserRow | None:
    return await ctx.loaders.user_by_id.load(user_id)


async def rooms_of(ctx: Context, user_id: int) -> list[RoomRow]:
    """Chat rooms a user belongs to: only the user themselves may list them."""
    if ctx.require_viewer() != user_id:
        raise BffError(ErrorCode.FORBIDDEN, "Only the user themselves can list their rooms")
    return await ctx.loaders.rooms_by_user_id.load(user_id)
