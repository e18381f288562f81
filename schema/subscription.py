"""Subscription: live events over WebSocket (graphql-transport-ws and legacy graphql-ws)."""

from __future__ import annotations

from collections.abc import AsyncGenerator

import strawberry
from strawberry.types import Info

from realtime import channels
from resolvers import chat as chat_resolvers
from resolvers.context import Context
from resolvers.rows import MessageRow, UserRow
from schema.chat import Message
from schema.relay import decode_message_cursor, parse_id

REPLAY_PAGE = 200


@strawberry.type(description="Live events. Connect over WebSocket to /graphql.")
class Subscription:
    @strawberry.subscription(
        description="Messages added to a room you are a member of. With `after` (a message cursor or ID), "
        "first replays what was stored after it, then goes live with no gap and no duplicate."
    )
    async def message_added(
        self, info: Info[Context, None], room_id: strawberry.ID, after: str | None = None
    ) -> AsyncGenerator[Message, None]:
        ctx = info.context
        room = parse_id(room_id, "ChatRoom", "roomId")
        await chat_resolvers.require_member(ctx, room)
        last_seen = decode_message_cursor(after, "after") if after else 0
        # Subscribe before replaying: whatever is published meanwhile waits in the queue,
        # and ids at or below the last replayed one are skipped, so nothing is lost or doubled.
        async with ctx.broker.subscribe(channels.chat_room(room)) as sub:
            if after:
                while True:
                    stored = await chat_resolvers.messages_after(ctx, room, last_seen, REPLAY_PAGE)
                    for row in stored:
                        last_seen = row.id
                        yield Message.from_row(row)
                    if len(stored) < REPLAY_PAGE:
                        break
            async for data in sub:
                event = channels.decode(data)
                message = MessageRow.from_event(event["message"])
                if message.id <= last_seen:
                    continue
                last_seen = message.id
                author = UserRow.from_event(event["author"]) if event.get("author") else None
                yield Message.from_row(message, author)
