"""User: profiles and the viewer."""

from __future__ import annotations

import functools
from datetime import datetime
from typing import TYPE_CHECKING, Annotated, Any

import strawberry
from strawberry.types import Info

from bff.row_lists import Read, RowProjection
from resolvers import users as user_resolvers
from resolvers.context import Context
from resolvers.rows import UserRow
from schema.node import Node
from schema.relay import memoized_global_id

if TYPE_CHECKING:
    from schema.chat import ChatRoom


@strawberry.type(description="A person using the app.")
class User(Node):
    handle: str = strawberry.field(description="Unique public handle, without the @.")
    display_name: str = strawberry.field(description="Name shown in the app.")
    avatar_url: str = strawberry.field(description="URL of the avatar image.")
    created_at: datetime = strawberry.field(description="When the account was created (ISO 8601, UTC).")
    pk: strawberry.Private[int]

    @classmethod
    def from_row(cls, row: UserRow) -> User:
        return cls(
            id=strawberry.ID(memoized_global_id("User", row.id)),
            handle=row.handle,
            display_name=row.display_name,
            avatar_url=row.avatar_url,
            created_at=row.created_at,
            pk=row.id,
        )

    @strawberry.field(
        description="Chat rooms this user belongs to, by room id (the chat list screen). "
        "Only the user themselves may list them: FORBIDDEN otherwise."
    )
    async def rooms(
        self, info: Info[Context, None]
    ) -> list[Annotated[ChatRoom, strawberry.lazy("schema.chat")]]:
        from schema.chat import ChatRoom

        return [ChatRoom.from_row(r) for r in await user_resolvers.rooms_of(info.context, self.pk)]


# Users read from their rows by compiled plans (bff/row_lists.py): what `User.from_row` holds.
USER_ROWS = RowProjection(
    User,
    UserRow,
    User.from_row,
    {
        "id": Read("id", convert=functools.partial(memoized_global_id, "User")),
        "handle": Read("handle"),
        "displayName": Read("display_name"),
        "avatarUrl": Read("avatar_url"),
        "createdAt": Read("created_at"),
    },
)


def then(future: Any, convert: Any) -> Any:
    """An awaitable of `convert(result)`: lets a sync resolver hand graphql-core a loader future.

    Fields whose data the list resolver already fetched return plain values; only the others
    pay for a coroutine.
    """

    async def wait() -> Any:
        value = await future
        if value is None:  # pragma: no cover - foreign keys guarantee the row
            raise LookupError("referenced row is missing")
        return convert(value)

    return wait()


def user_or_none(row: UserRow | None) -> User | None:
    return User.from_row(row) if row is not None else None
