"""Chat rooms and messages."""

from __future__ import annotations

from datetime import datetime

import strawberry
from strawberry.types import Info

from resolvers import chat as chat_resolvers
from resolvers.context import Context
from resolvers.rows import MessageRow, MessageView, RoomRow, UserRow
from schema.node import Node
from schema.relay import decode_message_cursor, encode_message_cursor, page_size, to_global_id
from schema.selection import selected
from schema.users import User, then


@strawberry.type(description="A chat message.")
class Message(Node):
    body: str = strawberry.field(description="The text of the message.")
    created_at: datetime = strawberry.field(description="When the server stored it (ISO 8601, UTC).")
    client_message_id: str = strawberry.field(
        description="The sender's idempotency key: a retried sendMessage with it returns this message."
    )
    pk: strawberry.Private[int]
    author_pk: strawberry.Private[int]
    author_row: strawberry.Private[UserRow | None]

    @classmethod
    def from_view(cls, view: MessageView) -> Message:
        return cls.from_row(view.message, view.author)

    @classmethod
    def from_row(cls, row: MessageRow, author: UserRow | None = None) -> Message:
        return cls(
            id=strawberry.ID(to_global_id("Message", row.id)),
            body=row.body,
            created_at=row.created_at,
            client_message_id=row.client_message_id,
            pk=row.id,
            author_pk=row.author_id,
            author_row=author,
        )

    @strawberry.field(description="Who sent it.")
    def author(self, info: Info[Context, None]) -> User:
        if self.author_row is not None:
            return User.from_row(self.author_row)
        return then(info.context.loaders.user_by_id.load(self.author_pk), User.from_row)  # type: ignore[no-any-return]


@strawberry.type(description="A message and its position in the room's history.")
class MessageEdge:
    cursor: str = strawberry.field(
        description="Opaque position: pass it as `before` (or to `messageAdded(after:)`)."
    )
    node: Message = strawberry.field(description="The message.")


@strawberry.type(description="Where a page of history sits.")
class MessagePageInfo:
    start_cursor: str | None = strawberry.field(description="Cursor of the oldest message of the page.")
    end_cursor: str | None = strawberry.field(description="Cursor of the newest message of the page.")
    has_previous_page: bool = strawberry.field(description="Whether older messages exist before this page.")
    has_next_page: bool = strawberry.field(
        description="Always false: the newest page is fetched with `last`."
    )


@strawberry.type(description="A window of a room's history, oldest first (Relay cursor connection).")
class MessageConnection:
    edges: list[MessageEdge] = strawberry.field(description="Messages, oldest first within the window.")
    page_info: MessagePageInfo = strawberry.field(description="Cursors and whether older messages exist.")


@strawberry.type(description="A chat room. Only its members may read or write it.")
class ChatRoom(Node):
    name: str = strawberry.field(description="Display name of the room.")
    pk: strawberry.Private[int]

    @classmethod
    def from_row(cls, row: RoomRow) -> ChatRoom:
        return cls(id=strawberry.ID(to_global_id("ChatRoom", row.id)), name=row.name, pk=row.id)

    @strawberry.field(description="Members of the room, by user id.")
    async def members(self, info: Info[Context, None]) -> list[User]:
        await chat_resolvers.require_member(info.context, self.pk)
        return [User.from_row(u) for u in await chat_resolvers.member_users(info.context, self.pk)]

    @strawberry.field(
        description="The `last` messages before the cursor `before` (or the newest ones), oldest first."
    )
    async def messages(
        self, info: Info[Context, None], last: int | None = 50, before: str | None = None
    ) -> MessageConnection:
        ctx = info.context
        await chat_resolvers.require_member(ctx, self.pk)
        n = page_size(last, 50, ctx.settings.max_page_size, "last")
        before_id = decode_message_cursor(before, "before") if before else None
        with_authors = "author" in selected(info, "edges", "node")
        page = await chat_resolvers.history(ctx, self.pk, n, before_id, with_authors=with_authors)
        edges = [
            MessageEdge(cursor=encode_message_cursor(v.message.id), node=Message.from_view(v))
            for v in page.messages
        ]
        return MessageConnection(
            edges=edges,
            page_info=MessagePageInfo(
                start_cursor=edges[0].cursor if edges else None,
                end_cursor=edges[-1].cursor if edges else None,
                has_previous_page=page.has_previous_page,
                has_next_page=False,
            ),
        )
