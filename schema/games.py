"""Games, leaderboards and score submissions."""

from __future__ import annotations

from typing import cast

import strawberry
from strawberry.types import Info

from bff.known import known_as
from bff.row_lists import Read, RowList, RowProjection
from resolvers import games as game_resolvers
from resolvers.context import Context
from resolvers.rows import GameRow, LeaderboardRow
from schema.node import Node
from schema.relay import page_size, to_global_id
from schema.selection import selected
from schema.users import USER_ROWS, User, then


@strawberry.type(description="One row of a leaderboard: a user's best score in a game.")
class LeaderboardEntry:
    rank: int = strawberry.field(description="1 is the best; ties on points go to the lower user id.")
    points: int = strawberry.field(description="The user's best score in this game.")
    user_pk: strawberry.Private[int]
    user_row: strawberry.Private[User | None]

    @classmethod
    def from_row(cls, row: LeaderboardRow) -> LeaderboardEntry:
        user = User.from_row(row.user) if row.user is not None else None
        return cls(rank=row.entry.rank, points=row.entry.points, user_pk=row.entry.user_id, user_row=user)

    @strawberry.field(description="Who holds this score.")
    @known_as("user_row")  # read without this call by generated plans (bff/known.py)
    def user(self, info: Info[Context, None]) -> User:
        # Sync when the list resolver fetched users by plan: no coroutine per entry.
        if self.user_row is not None:
            return self.user_row
        return then(info.context.loaders.user_by_id.load(self.user_pk), User.from_row)  # type: ignore[no-any-return]


# Leaderboard entries read from their rows by compiled plans (bff/row_lists.py).
LEADERBOARD_ROWS = RowProjection(
    LeaderboardEntry,
    LeaderboardRow,
    LeaderboardEntry.from_row,
    {"rank": Read("entry.rank"), "points": Read("entry.points"), "user": Read("user", rows=USER_ROWS)},
)


@strawberry.type(description="A game with a leaderboard.")
class Game(Node):
    name: str = strawberry.field(description="Display name of the game.")
    pk: strawberry.Private[int]

    @classmethod
    def from_row(cls, row: GameRow) -> Game:
        return cls(id=strawberry.ID(to_global_id("Game", row.id)), name=row.name, pk=row.id)

    @strawberry.field(description="The best `first` players of this game, best first.")
    async def leaderboard(self, info: Info[Context, None], first: int = 10) -> list[LeaderboardEntry]:
        return await load_leaderboard(info, self.pk, first)


async def load_leaderboard(
    info: Info[Context, None], game_id: int, first: int | None
) -> list[LeaderboardEntry]:
    ctx = info.context
    n = page_size(first, 10, ctx.settings.max_page_size, "first")
    rows = await game_resolvers.leaderboard(ctx, game_id, n, with_users="user" in selected(info))
    # A sequence of LeaderboardEntry to whoever iterates it; compiled plans read the rows.
    return cast("list[LeaderboardEntry]", RowList(LEADERBOARD_ROWS, rows))


@strawberry.type(description="The result of `submitScore`.")
class SubmitScorePayload:
    game: Game = strawberry.field(description="The game the score was submitted to.")
    points: int = strawberry.field(description="The viewer's best score in this game after the submission.")
    rank: int = strawberry.field(description="The viewer's rank in this game after the submission.")
    improved: bool = strawberry.field(
        description="Whether this submission raised the viewer's best score (a retry never does)."
    )
