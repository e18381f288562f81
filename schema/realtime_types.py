"""Ephemeral live events: typing indicators and room presence (never stored)."""

from __future__ import annotations

from enum import Enum

import strawberry

from resolvers.realtime import PresenceRow, TypingRow
from schema.users import User


@strawberry.type(description="A member of the room started or stopped typing. Not stored.")
class TypingEvent:
    user: User = strawberry.field(description="Who is typing.")
    typing: bool = strawberry.field(
        description="True while they type; false when they stopped. Clients should also treat an "
        "indicator not repeated for a few seconds as stopped (the sender may have gone away)."
    )

    @classmethod
    def from_row(cls, row: TypingRow) -> TypingEvent:
        return cls(user=User.from_row(row.user), typing=row.typing)


@strawberry.enum(description="What a presence event reports.")
class PresenceKind(Enum):
    SNAPSHOT = strawberry.enum_value(
        "SNAPSHOT", description="The first event of a subscription: who is online now (`user` is null)."
    )
    JOINED = strawberry.enum_value("JOINED", description="`user` came online (their first device).")
    LEFT = strawberry.enum_value(
        "LEFT", description="`user` went offline (their last device left, or its server stopped answering)."
    )


@strawberry.type(description="Who is online in a chat room, and what changed.")
class PresenceEvent:
    kind: PresenceKind = strawberry.field(description="SNAPSHOT first, then JOINED or LEFT.")
    user: User | None = strawberry.field(description="The member who joined or left; null for the SNAPSHOT.")
    online: list[User] = strawberry.field(
        description="Everyone online in the room after this event, each user once, by user id."
    )

    @classmethod
    def from_row(cls, row: PresenceRow) -> PresenceEvent:
        return cls(
            kind=PresenceKind(row.kind),
            user=User.from_row(row.user) if row.user is not None else None,
            online=[User.from_row(u) for u in row.online],
        )
