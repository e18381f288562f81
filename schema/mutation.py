"""Mutation: every one is safe for a phone to retry."""

from __future__ import annotations

import strawberry
from strawberry.types import Info

from resolvers import chat as chat_resolvers
from resolvers import games as game_resolvers
from resolvers import posts as post_resolvers
from resolvers import realtime as realtime_resolvers
from resolvers.context import Context
from schema.chat import Message
from schema.feed import Post
from schema.games import Game, SubmitScorePayload
from schema.relay import parse_id


@strawberry.type(description="Writes. Each is idempotent, so a phone may retry it after a timeout.")
class Mutation:
    @strawberry.mutation(
        description="Send a message to a room you are a member of. Stored before it returns. Idempotent on "
        "(you, clientMessageId): a retry returns the stored message instead of sending a second one."
    )
    async def send_message(
        self, info: Info[Context, None], room_id: strawberry.ID, body: str, client_message_id: str
    ) -> Message:
        ctx = info.context
        ctx.require_viewer()
        room = parse_id(room_id, "ChatRoom", "roomId")
        return Message.from_view(await chat_resolvers.send_message(ctx, room, body, client_message_id))

    @strawberry.mutation(description="Like a post. Liking it again keeps one like.")
    async def like_post(self, info: Info[Context, None], post_id: strawberry.ID) -> Post:
        info.context.require_viewer()
        return Post.from_row(
            await post_resolvers.like_post(info.context, parse_id(post_id, "Post", "postId"))
        )

    @strawberry.mutation(
        description="Remove your like from a post. Unliking a post you do not like does nothing."
    )
    async def unlike_post(self, info: Info[Context, None], post_id: strawberry.ID) -> Post:
        info.context.require_viewer()
        return Post.from_row(
            await post_resolvers.unlike_post(info.context, parse_id(post_id, "Post", "postId"))
        )

    @strawberry.mutation(
        description="Submit a score. The leaderboard keeps each user's best, so a retry changes nothing."
    )
    async def submit_score(
        self, info: Info[Context, None], game_id: strawberry.ID, points: int
    ) -> SubmitScorePayload:
        info.context.require_viewer()
        result = await game_resolvers.submit_score(info.context, parse_id(game_id, "Game", "gameId"), points)
        return SubmitScorePayload(
            game=Game.from_row(result.game), points=result.best, rank=result.rank, improved=result.improved
        )

    @strawberry.mutation(
        description="Tell the other members of a room that you are (or stopped) typing. Nothing is stored; "
        "repeat it every few seconds while typing. Members only: FORBIDDEN otherwise. Returns true."
    )
    async def set_typing(
        self, info: Info[Context, None], room_id: strawberry.ID, typing: bool = True
    ) -> bool:
        info.context.require_viewer()
        room = parse_id(room_id, "ChatRoom", "roomId")
        return await realtime_resolvers.set_typing(info.context, room, typing)
