"""Chat rooms: membership, history, sending. Only members may read or write a room."""

from __future__ import annotations

import re
from dataclasses import dataclass
from datetime import UTC, datetime

from bff.errors import BffError, ErrorCode
from realtime import channels
from resolvers.context import Context
from resolvers.rows import MessageRow, MessageView, RoomRow, UserRow

CLIENT_MESSAGE_ID = re.compile(r"^[A-Za-z0-9._:\-]{1,64}$")
_COLUMNS = "id, room_id, author_id, body, created_at, client_message_id"


async def require_member(ctx: Context, room_id: int) -> RoomRow:
    """The room, if the viewer is a member: UNAUTHENTICATED, NOT_FOUND or FORBIDDEN otherwise."""
    viewer = ctx.require_viewer()
    room, members = (
        await ctx.loaders.room_by_id.load(room_id),
        await ctx.loaders.member_ids_by_room_id.load(room_id),
    )
    if room is None:
        raise BffError(ErrorCode.NOT_FOUND, f"No chat room {room_id}")
    if viewer not in members:
        raise BffError(ErrorCode.FORBIDDEN, "Only members of this room can read or write it")
    return room


async def member_users(ctx: Context, room_id: int) -> list[UserRow]:
    ids = await ctx.loaders.member_ids_by_room_id.load(room_id)
    return [u for u in await ctx.loaders.user_by_id.load_all(ids) if u is not None]


@dataclass(slots=True)
class HistoryPage:
    messages: list[MessageView]
    has_previous_page: bool


async def history(
    ctx: Context, room_id: int, last: int, before: int | None, *, with_authors: bool
) -> HistoryPage:
    """The `last` messages before message id `before` (or the newest), oldest first."""
    where = "room_id = :r" + (" AND id < :before" if before is not None else "")
    values: dict[str, object] = {"r": room_id, "n": last + 1}
    if before is not None:
        values["before"] = before
    async with ctx.loaders.gate.list_fetch():
        rows = await ctx.db.fetch_all(
            f"SELECT {_COLUMNS} FROM messages WHERE {where} ORDER BY id DESC LIMIT :n", values
        )
    has_previous = len(rows) > last
    messages = [MessageRow.from_db(r) for r in reversed(rows[:last])]
    authors = (
        await ctx.loaders.user_by_id.load_all([m.author_id for m in messages])
        if with_authors
        else [None] * len(messages)
    )
    return HistoryPage([MessageView(m, a) for m, a in zip(messages, authors, strict=True)], has_previous)


async def messages_after(ctx: Context, room_id: int, after_id: int, limit: int) -> list[MessageRow]:
    """Stored messages newer than `after_id`, oldest first (replay for a resuming subscriber)."""
    rows = await ctx.db.fetch_all(
        f"SELECT {_COLUMNS} FROM messages WHERE room_id = :r AND id > :a ORDER BY id ASC LIMIT :n",
        {"r": room_id, "a": after_id, "n": limit},
    )
    return [MessageRow.from_db(r) for r in rows]


def _validate(ctx: Context, body: str, client_message_id: str) -> str:
    if not CLIENT_MESSAGE_ID.match(client_message_id):
        raise BffError(
            ErrorCode.BAD_USER_INPUT,
            "clientMessageId must be 1-64 characters of letters, digits, '.', '_', ':' or '-'",
            field="clientMessageId",
        )
    if not body.strip():
        raise BffError(ErrorCode.BAD_USER_INPUT, "A message needs a body", field="body")
    limit = ctx.settings.max_message_chars
    if len(body) > limit:
        raise BffError(
            ErrorCode.BAD_USER_INPUT, f"A message body holds at most {limit} characters", field="body"
        )
    if "\x00" in body:
        raise BffError(ErrorCode.BAD_USER_INPUT, "A message body cannot contain NUL characters", field="body")
    return body


async def send_message(ctx: Context, room_id: int, body: str, client_message_id: str) -> MessageView:
    """Store, then publish. Idempotent on (author, clientMessageId): a retry returns the stored message."""
    viewer = ctx.require_viewer()
    body = _validate(ctx, body, client_message_id)
    await require_member(ctx, room_id)
    row = await ctx.db.fetch_one(
        "INSERT INTO messages (room_id, author_id, body, created_at, client_message_id) "
        "VALUES (:r, :a, :b, :at, :c) ON CONFLICT (author_id, client_message_id) DO NOTHING "
        f"RETURNING {_COLUMNS}",
        {"r": room_id, "a": viewer, "b": body, "at": datetime.now(UTC), "c": client_message_id},
    )
    author = await ctx.loaders.user_by_id.load(viewer)
    if row is None:  # a retry: the first attempt stored it (and published it)
        stored = await ctx.db.fetch_one(
            f"SELECT {_COLUMNS} FROM messages WHERE author_id = :a AND client_message_id = :c",
            {"a": viewer, "c": client_message_id},
        )
        if stored is None:  # pragma: no cover - the conflict guarantees the row exists
            raise RuntimeError("conflicting message vanished")
        message = MessageRow.from_db(stored)
        if message.room_id != room_id:
            raise BffError(
                ErrorCode.BAD_USER_INPUT,
                "This clientMessageId was already used for a message in another room",
                field="clientMessageId",
            )
        return MessageView(message, author)
    message = MessageRow.from_db(row)
    # The author travels with the event, so deliveries need no SQL.
    event = {"message": message.to_event(), "author": author.to_event() if author else None}
    await ctx.broker.publish(channels.chat_room(room_id), channels.encode(event))
    return MessageView(message, author)
