"""Subscription: live events over WebSocket (graphql-transport-ws and legacy graphql-ws)."""

from __future__ import annotations

from collections.abc import AsyncGenerator, AsyncIterator, Awaitable, Callable
from dataclasses import dataclass
from typing import Any

import strawberry
from strawberry.types import Info

from realtime import channels
from realtime.hub import RESYNC
from resolvers import chat as chat_resolvers
from resolvers import realtime as realtime_resolvers
from resolvers.context import Context
from resolvers.rows import MessageRow, UserRow
from schema.chat import Message
from schema.games import LeaderboardEntry
from schema.realtime_types import PresenceEvent, TypingEvent
from schema.relay import decode_message_cursor, page_size, parse_id

REPLAY_PAGE = 200


def message_event(data: bytes) -> Message:
    """A `chat_room` event as the Message it announces (the event carries the author: no SQL)."""
    event = channels.decode(data)
    author = UserRow.from_event(event["author"]) if event.get("author") else None
    return Message.from_row(MessageRow.from_event(event["message"]), author)


async def stored_messages(ctx: Context, room: int, after_id: int) -> AsyncIterator[Message]:
    """Stored messages of a room after a message id, oldest first, a page at a time."""
    while True:
        stored = await chat_resolvers.messages_after(ctx, room, after_id, REPLAY_PAGE)
        for row in stored:
            after_id = row.id
            yield Message.from_row(row)
        if len(stored) < REPLAY_PAGE:
            return


@dataclass(frozen=True, slots=True)
class SharedStream:
    """What bff/ws_fanout.py needs to serve a subscription field from one rendering per event.

    `open` authorises the subscriber (raising BffError as the field would) and returns its
    channel and starting cursor; `root` turns an event into the field's value and its position;
    `stored` replays what storage holds after a position. `public_fields` lists the
    `Type.field`s whose values are the same for every viewer: a selection using only those is
    rendered once for all subscribers, any other once per viewer.
    """

    open: Callable[[Context, dict[str, Any]], Awaitable[tuple[str, int]]]
    root: Callable[[bytes], tuple[int, Any]]
    stored: Callable[[Context, dict[str, Any], int], AsyncIterator[tuple[int, Any]]]
    public_fields: frozenset[str]


async def _open_message_added(ctx: Context, args: dict[str, Any]) -> tuple[str, int]:
    room = parse_id(args["roomId"], "ChatRoom", "roomId")
    await chat_resolvers.require_member(ctx, room)
    after = args.get("after")
    return channels.chat_room(room), decode_message_cursor(after, "after") if after else 0


def _message_added_root(data: bytes) -> tuple[int, Message]:
    message = message_event(data)
    return message.pk, message


async def _stored_message_added(
    ctx: Context, args: dict[str, Any], after_id: int
) -> AsyncIterator[tuple[int, Any]]:
    room = parse_id(args["roomId"], "ChatRoom", "roomId")
    async for message in stored_messages(ctx, room, after_id):
        yield message.pk, message


SHARED_STREAMS: dict[str, SharedStream] = {
    "messageAdded": SharedStream(
        open=_open_message_added,
        root=_message_added_root,
        stored=_stored_message_added,
        public_fields=frozenset(
            {
                "Message.id",
                "Message.body",
                "Message.createdAt",
                "Message.clientMessageId",
                "Message.author",
                "User.id",
                "User.handle",
                "User.displayName",
                "User.avatarUrl",
                "User.createdAt",
            }
        ),
    )
}
"""Subscription fields served by shared fan-out (bff/ws_fanout.py), by schema field name."""


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
        # Over WebSocket, bff/ws_fanout.py serves this field from SHARED_STREAMS (one rendering
        # per event for all subscribers); this generator is the per-subscriber path (other
        # transports, and documents the shared path does not take).
        async with ctx.broker.subscribe(channels.chat_room(room)) as sub:
            if after:
                async for message in stored_messages(ctx, room, last_seen):
                    last_seen = message.pk
                    yield message
            async for data in sub:
                # RESYNC (realtime/hub.py): the broker reconnected, events may be missing. Refill
                # from storage after the cursor (none yet: nothing to refill from); live events
                # at or below it are skipped below.
                if data == RESYNC:
                    if last_seen:
                        async for message in stored_messages(ctx, room, last_seen):
                            last_seen = message.pk
                            yield message
                    continue
                message = message_event(data)
                if message.pk <= last_seen:
                    continue
                last_seen = message.pk
                yield message

    @strawberry.subscription(
        description="The best `first` players of a game: first the current list, then the new list whenever "
        "it changes, at most once per LEADERBOARD_COALESCE_MS (a burst of scores ends on the latest list)."
    )
    async def leaderboard_updated(
        self, info: Info[Context, None], game_id: strawberry.ID, first: int | None = 10
    ) -> AsyncGenerator[list[LeaderboardEntry], None]:
        ctx = info.context
        game = parse_id(game_id, "Game", "gameId")
        n = page_size(first, 10, ctx.settings.max_page_size, "first")
        async for rows in realtime_resolvers.leaderboard_updates(ctx, game, n):
            yield [LeaderboardEntry.from_row(r) for r in rows]

    @strawberry.subscription(
        description="Other members typing in a room you are a member of (your own indicators are not echoed). "
        "Fed by `setTyping`; nothing is stored."
    )
    async def typing(
        self, info: Info[Context, None], room_id: strawberry.ID
    ) -> AsyncGenerator[TypingEvent, None]:
        room = parse_id(room_id, "ChatRoom", "roomId")
        async for row in realtime_resolvers.typing_events(info.context, room):
            yield TypingEvent.from_row(row)

    @strawberry.subscription(
        description="Who is online in a room you are a member of. While subscribed you count as online there. "
        "First a SNAPSHOT of the online members, then JOINED and LEFT; each user counts once across devices."
    )
    async def room_presence(
        self, info: Info[Context, None], room_id: strawberry.ID
    ) -> AsyncGenerator[PresenceEvent, None]:
        room = parse_id(room_id, "ChatRoom", "roomId")
        async for row in realtime_resolvers.presence_events(info.context, room):
            yield PresenceEvent.from_row(row)
