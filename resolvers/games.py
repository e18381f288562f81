"""Games and leaderboards: each user's best score, ranked by points desc then user id asc.

The top of a leaderboard comes from the cache: the in-process layer, in front of a Redis sorted
set per game (bff/rankings.py, refilled from the database when missing) when there is Redis;
submitScore drops it in every instance. The database stays the source of truth: submitScore writes it first.
"""

from __future__ import annotations

from dataclasses import dataclass
from datetime import UTC, datetime

import orjson

from bff.cache import Namespace
from bff.errors import BffError, ErrorCode
from realtime import channels
from resolvers.context import Context
from resolvers.rows import GameRow, LeaderboardRow, RankedScore
from resolvers.users import require_writer

MAX_POINTS = 2_147_483_647
# Each game's top MAX_PAGE_SIZE in the local layer (short TTL, invalidated on a new best), in front
# of the Redis sorted set when there is one (bff/rankings.py), else of the database.
TOPS: Namespace[list[tuple[int, int]]] = Namespace(
    "leaderboard", orjson.dumps, lambda b: [(u, p) for u, p in orjson.loads(b)], shared=False
)


async def list_games(ctx: Context) -> list[GameRow]:
    rows = await ctx.db.fetch_all("SELECT id, name FROM games ORDER BY id LIMIT 100")
    return [GameRow(r["id"], r["name"]) for r in rows]


async def get_game(ctx: Context, game_id: int) -> GameRow:
    game = await ctx.loaders.game_by_id.load(game_id)
    if game is None:
        raise BffError(ErrorCode.NOT_FOUND, f"No game {game_id}")
    return game


async def leaderboard(ctx: Context, game_id: int, first: int, *, with_users: bool) -> list[LeaderboardRow]:
    top = _held_top(ctx, game_id, first)
    if top is None:
        with ctx.loaders.gate.list_fetch():
            top = await _top(ctx, game_id, first)
    entries = [RankedScore(i + 1, points, user_id) for i, (user_id, points) in enumerate(top)]
    users = (
        await ctx.loaders.user_by_id.load_all([e.user_id for e in entries])
        if with_users
        else [None] * len(entries)
    )
    return [LeaderboardRow(e, u) for e, u in zip(entries, users, strict=True)]


def _held_top(ctx: Context, game_id: int, first: int) -> list[tuple[int, int]] | None:
    """The best `first` as the in-process layer holds them (what most reads find), or None.

    Answered at once, so no list statement is announced to the FetchGate for it.
    """
    if first > ctx.settings.max_page_size:
        return None  # longer than what is cached
    held = ctx.cache.held(TOPS, (game_id,))
    return held[game_id][:first] if held else None


async def _top(ctx: Context, game_id: int, first: int) -> list[tuple[int, int]]:
    """(user id, points) of the best `first`, from the nearest place that has them."""
    cache = ctx.cache

    async def from_db(n: int) -> list[tuple[int, int]]:
        rows = await ctx.db.fetch_all(
            "SELECT user_id, points FROM scores WHERE game_id = :g ORDER BY points DESC, user_id ASC LIMIT :n",
            {"g": game_id, "n": n},
        )
        return [(int(r["user_id"]), int(r["points"])) for r in rows]

    rankings = cache.rankings
    size = ctx.settings.max_page_size
    if not cache.enabled or first > size:
        return await from_db(first)

    async def load(ids: list[int]) -> dict[int, list[tuple[int, int]]]:
        if rankings is None:
            return {game_id: await from_db(size)}
        top = await rankings.top(game_id, rankings.size)
        if top is None:
            top = await rankings.refill(game_id, from_db, rankings.size)
        return {game_id: top}

    # The local layer answers most reads (every viewer asks for the same top); a new best drops
    # it here and, through the broker, in every other instance (submit_score).
    found = await cache.get_many(TOPS, [game_id], load)
    return found[game_id][:first]


@dataclass(slots=True)
class ScoreResult:
    game: GameRow
    best: int
    rank: int
    improved: bool


async def submit_score(ctx: Context, game_id: int, points: int) -> ScoreResult:
    """Keeps the user's best score. Idempotent: the same submission twice changes nothing."""
    viewer = await require_writer(ctx)
    if not 0 <= points <= MAX_POINTS:
        raise BffError(ErrorCode.BAD_USER_INPUT, f"points must be between 0 and {MAX_POINTS}")
    game = await get_game(ctx, game_id)
    # Write first, one statement at a time, each atomic on its own: no read-then-write transaction,
    # which SQLite refuses (SQLITE_BUSY_SNAPSHOT, "database is locked") when a concurrent
    # submission commits between the read and the write.
    key = {"g": game_id, "u": viewer, "p": points, "at": datetime.now(UTC)}
    best = await ctx.db.fetch_val(
        "INSERT INTO scores (game_id, user_id, points, updated_at) VALUES (:g, :u, :p, :at) "
        "ON CONFLICT (game_id, user_id) DO NOTHING RETURNING points",
        key,
    )
    improved = best is not None
    if not improved:
        # The row exists (committed: a concurrent insert of it was waited for): raise it if lower.
        best = await ctx.db.fetch_val(
            "UPDATE scores SET points = :p, updated_at = :at "
            "WHERE game_id = :g AND user_id = :u AND points < :p RETURNING points",
            key,
        )
        improved = best is not None
    if not improved:
        best = await ctx.db.fetch_val(
            "SELECT points FROM scores WHERE game_id = :g AND user_id = :u", {"g": game_id, "u": viewer}
        )
    rank = await ctx.db.fetch_val(
        "SELECT COUNT(*) + 1 FROM scores WHERE game_id = :g AND (points > :p OR (points = :p AND user_id < :u))",
        {"g": game_id, "p": best, "u": viewer},
    )
    if improved:
        # After the write (each statement commits on its own), before subscribers re-read.
        if ctx.cache.rankings is not None:
            await ctx.cache.rankings.record(game_id, viewer, int(best))
        await ctx.cache.invalidate(TOPS, [game_id])
        event = {"game_id": game_id, "user_id": viewer, "points": int(best)}
        await ctx.broker.publish(channels.leaderboard(game_id), orjson.dumps(event))
    return ScoreResult(game, int(best), int(rank), improved)
