"""Plain rows the resolvers return: schema types wrap them, subscriptions and the CLI reuse them.

Rows the cache shares between requests (UserRow…) are frozen. Rows built per request by the
dozen (a feed page's posts and stats, a leaderboard's entries) are not: a frozen dataclass's
`__init__` goes through `object.__setattr__` per field, ~4x the cost of a plain one. Nobody
changes them after they are built either way.
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass
from datetime import datetime
from typing import Any


@dataclass(slots=True, frozen=True)
class UserRow:
    id: int
    handle: str
    display_name: str
    avatar_url: str
    created_at: datetime

    @classmethod
    def from_db(cls, row: Mapping[str, Any]) -> UserRow:
        return cls(row["id"], row["handle"], row["display_name"], row["avatar_url"], row["created_at"])

    def to_event(self) -> dict[str, Any]:
        return {
            "id": self.id,
            "handle": self.handle,
            "display_name": self.display_name,
            "avatar_url": self.avatar_url,
            "created_at": self.created_at.isoformat(),
        }

    @classmethod
    def from_event(cls, data: dict[str, Any]) -> UserRow:
        return cls(
            data["id"],
            data["handle"],
            data["display_name"],
            data["avatar_url"],
            datetime.fromisoformat(data["created_at"]),
        )


@dataclass(slots=True)
class PostRow:
    id: int
    author_id: int
    body: str
    created_at: datetime

    @classmethod
    def from_db(cls, row: Mapping[str, Any]) -> PostRow:
        return cls(row["id"], row["author_id"], row["body"], row["created_at"])


@dataclass(slots=True)
class PostStats:
    like_count: int
    viewer_has_liked: bool


@dataclass(slots=True)
class PostView:
    """A post with what its screen asked for: stats and author are None when not selected."""

    post: PostRow
    stats: PostStats | None
    author: UserRow | None


@dataclass(slots=True, frozen=True)
class GameRow:
    id: int
    name: str


@dataclass(slots=True)
class RankedScore:
    rank: int
    points: int
    user_id: int


@dataclass(slots=True)
class LeaderboardRow:
    entry: RankedScore
    user: UserRow | None


@dataclass(slots=True, frozen=True)
class RoomRow:
    id: int
    name: str


@dataclass(slots=True, frozen=True)
class MessageRow:
    id: int
    room_id: int
    author_id: int
    body: str
    created_at: datetime
    client_message_id: str

    @classmethod
    def from_db(cls, row: Mapping[str, Any]) -> MessageRow:
        return cls(
            row["id"],
            row["room_id"],
            row["author_id"],
            row["body"],
            row["created_at"],
            row["client_message_id"],
        )

    def to_event(self) -> dict[str, Any]:
        return {
            "id": self.id,
            "room_id": self.room_id,
            "author_id": self.author_id,
            "body": self.body,
            "created_at": self.created_at.isoformat(),
            "client_message_id": self.client_message_id,
        }

    @classmethod
    def from_event(cls, data: dict[str, Any]) -> MessageRow:
        return cls(
            data["id"],
            data["room_id"],
            data["author_id"],
            data["body"],
            datetime.fromisoformat(data["created_at"]),
            data["client_message_id"],
        )


@dataclass(slots=True)
class MessageView:
    message: MessageRow
    author: UserRow | None
