"""Query: the entry points of every screen."""

from __future__ import annotations

import strawberry
from strawberry.types import Info

from bff.errors import BffError, ErrorCode
from resolvers import chat as chat_resolvers
from resolvers import feed as feed_resolvers
from resolvers import games as game_resolvers
from resolvers import posts as post_resolvers
from resolvers import users as user_resolvers
from resolvers.context import Context
from schema.chat import ChatRoom, Message
from schema.feed import Post, PostConnection
from schema.games import Game, LeaderboardEntry, load_leaderboard
from schema.node import Node
from schema.relay import decode_feed_cursor, decode_global_id, page_size, parse_id
from schema.selection import selected
from schema.users import User, user_or_none

MAX_NODES = 100


async def resolve_node(ctx: Context, global_id: str) -> Node | None:
    """The object behind a global ID; null when it does not exist, errors when not allowed."""
    decoded = decode_global_id(global_id)
    if decoded is None:
        raise BffError(ErrorCode.BAD_USER_INPUT, f"{global_id[:40]!r} is not a global ID", argument="id")
    type_name, pk = decoded
    loaders = ctx.loaders
    if type_name == "User":
        return user_or_none(await loaders.user_by_id.load(pk))
    if type_name == "Post":
        post = await loaders.post_by_id.load(pk)
        return Post.from_row(post) if post else None
    if type_name == "Game":
        game = await loaders.game_by_id.load(pk)
        return Game.from_row(game) if game else None
    if type_name == "ChatRoom":
        room = await loaders.room_by_id.load(pk)
        if room is None:
            return None
        await chat_resolvers.require_member(ctx, pk)
        return ChatRoom.from_row(room)
    if type_name == "Message":
        message = await loaders.message_by_id.load(pk)
        if message is None:
            return None
        await chat_resolvers.require_member(ctx, message.room_id)
        return Message.from_row(message)
    raise BffError(ErrorCode.BAD_USER_INPUT, f"No type {type_name} has global IDs", argument="id")


@strawberry.type(description="Read entry points. One request per screen.")
class Query:
    @strawberry.field(description="The signed-in user. Needs a token: UNAUTHENTICATED otherwise.")
    async def viewer(self, info: Info[Context, None]) -> User | None:
        return User.from_row(await user_resolvers.get_viewer(info.context))

    @strawberry.field(
        description="The home feed: newest posts of the people the viewer follows (Relay connection, "
        "`first` at most MAX_PAGE_SIZE, default 20). Needs a token."
    )
    async def feed(
        self, info: Info[Context, None], first: int | None = 20, after: str | None = None
    ) -> PostConnection | None:
        ctx = info.context
        viewer = ctx.require_viewer()
        n = page_size(first, 20, ctx.settings.max_page_size, "first")
        cursor = decode_feed_cursor(after) if after else None
        want = selected(info, "edges", "node")
        page = await feed_resolvers.list_feed(ctx, viewer, n, cursor)
        views = await post_resolvers.hydrate(
            ctx,
            page.posts,
            stats=bool(want & {"likeCount", "viewerHasLiked"}),
            author="author" in want,
            liked=page.liked,
        )
        return PostConnection.from_views(views, page.has_next_page, has_previous_page=cursor is not None)

    @strawberry.field(description="The best `first` players of a game (default 10), best first.")
    async def leaderboard(
        self, info: Info[Context, None], game_id: strawberry.ID, first: int | None = 10
    ) -> list[LeaderboardEntry]:
        return await load_leaderboard(info, parse_id(game_id, "Game", "gameId"), first)

    @strawberry.field(description="Every game, by id.")
    async def games(self, info: Info[Context, None]) -> list[Game]:
        return [Game.from_row(g) for g in await game_resolvers.list_games(info.context)]

    @strawberry.field(
        description="A chat room, for its members only (FORBIDDEN otherwise); null if none has this id."
    )
    async def chat_room(self, info: Info[Context, None], id: strawberry.ID) -> ChatRoom | None:
        ctx = info.context
        room_id = parse_id(id, "ChatRoom", "id")
        room = await ctx.loaders.room_by_id.load(room_id)
        if room is None:
            return None
        await chat_resolvers.require_member(ctx, room_id)
        return ChatRoom.from_row(room)

    @strawberry.field(description="A user's public profile; null if none has this id.")
    async def user(self, info: Info[Context, None], id: strawberry.ID) -> User | None:
        return user_or_none(await user_resolvers.get_user(info.context, parse_id(id, "User", "id")))

    @strawberry.field(description="Any object by its global ID (Relay refetch); null if it does not exist.")
    async def node(self, info: Info[Context, None], id: strawberry.ID) -> Node | None:
        return await resolve_node(info.context, id)

    @strawberry.field(description=f"Objects by global IDs, in the same order (at most {MAX_NODES}).")
    async def nodes(self, info: Info[Context, None], ids: list[strawberry.ID]) -> list[Node | None]:
        if len(ids) > MAX_NODES:
            raise BffError(ErrorCode.BAD_USER_INPUT, f"At most {MAX_NODES} ids per request", argument="ids")
        ctx = info.context
        # One awaitable per item, not a gather: an item that fails (FORBIDDEN, a bad ID) is null
        # on its own path, the others still answer. Loads are batched by the loaders all the same.
        return [resolve_node(ctx, i) for i in ids]  # type: ignore[misc]


__all__ = ["Query", "selected"]
