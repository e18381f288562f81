"""Live state that is never stored: leaderboard pushes, typing indicators, room presence.

Each function authorises first (a refusal is the subscription's error), then yields rows.
"""

from __future__ import annotations

from collections.abc import AsyncIterator
from dataclasses import dataclass
from typing import Literal

from bff.errors import BffError, ErrorCode
from realtime import channels
from realtime.coalesce import Coalescer
from realtime.hub import RESYNC
from realtime.presence import Presence
from resolvers import chat as chat_resolvers
from resolvers import games as game_resolvers
from resolvers.context import Context
from resolvers.rows import LeaderboardRow, UserRow


def _leaderboards(ctx: Context) -> Coalescer:
    if ctx.leaderboards is None:  # pragma: no cover - the WebSocket endpoint always passes it
        raise RuntimeError("leaderboard coalescer missing from the context")
    return ctx.leaderboards


def _presence(ctx: Context) -> Presence:
    if ctx.presence is None:  # pragma: no cover - the WebSocket endpoint always passes it
        raise RuntimeError("presence missing from the context")
    return ctx.presence


async def leaderboard_updates(ctx: Context, game_id: int, first: int) -> AsyncIterator[list[LeaderboardRow]]:
    """The current top `first`, then each change of it, at most once per coalescing interval.

    One load per (game, first) per interval in this process, shared by every local
    subscriber: the SQL cost does not grow with the number of subscribers.
    """
    await game_resolvers.get_game(ctx, game_id)
    db, broker, settings, tokens = ctx.db, ctx.broker, ctx.settings, ctx.tokens

    async def load() -> list[LeaderboardRow]:
        # Fresh loaders per load (a feed lives for hours); no viewer: the leaderboard is public.
        fresh = Context(db=db, broker=broker, settings=settings, tokens=tokens)
        return await game_resolvers.leaderboard(fresh, game_id, first, with_users=True)

    key = ("leaderboard", game_id, first)
    async with _leaderboards(ctx).watch(key, channels.leaderboard(game_id), load) as watcher:
        async for rows in watcher:
            yield rows


async def set_typing(ctx: Context, room_id: int, typing: bool) -> bool:
    """Publish a typing indicator to the room's subscribers. Nothing is written."""
    viewer = ctx.require_viewer()
    await chat_resolvers.require_member(ctx, room_id)
    user = await ctx.loaders.user_by_id.load(viewer)
    if user is None:  # pragma: no cover - a valid token names an existing user
        raise BffError(ErrorCode.NOT_FOUND, "Your user does not exist")
    event = {"user": user.to_event(), "typing": typing}
    await ctx.broker.publish(channels.typing(room_id), channels.encode(event))
    return True


@dataclass(slots=True, frozen=True)
class TypingRow:
    user: UserRow
    typing: bool


async def typing_events(ctx: Context, room_id: int) -> AsyncIterator[TypingRow]:
    """Other members' typing indicators. The viewer's own (from any device) are not echoed."""
    viewer = ctx.require_viewer()
    await chat_resolvers.require_member(ctx, room_id)
    async with ctx.broker.subscribe(channels.typing(room_id)) as sub:
        async for data in sub:
            if data == RESYNC:  # typing is ephemeral: what was missed during a Redis restart is stale
                continue
            event = channels.decode(data)
            user = UserRow.from_event(event["user"])
            if user.id == viewer:
                continue
            yield TypingRow(user, bool(event["typing"]))


PresenceKind = Literal["SNAPSHOT", "JOINED", "LEFT"]


@dataclass(slots=True)
class PresenceRow:
    kind: PresenceKind
    user: UserRow | None
    online: list[UserRow]


async def presence_events(ctx: Context, room_id: int) -> AsyncIterator[PresenceRow]:
    """Counts the viewer online in the room while subscribed. First a SNAPSHOT of who is online,
    then JOINED/LEFT, each with the online list after it."""
    viewer = ctx.require_viewer()
    await chat_resolvers.require_member(ctx, room_id)
    presence = _presence(ctx)
    users = {u.id: u for u in await chat_resolvers.member_users(ctx, room_id)}

    async def rows(ids: set[int]) -> list[UserRow]:
        missing = [i for i in ids if i not in users]
        if missing:  # joined the room after we subscribed
            for row in await ctx.fresh_loaders().user_by_id.load_all(missing):
                if row is not None:
                    users[row.id] = row
        return [users[i] for i in sorted(ids) if i in users]

    # Listen before joining and reading the list: a change meanwhile is queued, not lost.
    async with ctx.broker.subscribe(channels.presence(room_id)) as sub, presence.connect(room_id, viewer):
        online = set(await presence.online(room_id))
        yield PresenceRow("SNAPSHOT", None, await rows(online))
        async for data in sub:
            if data == RESYNC:
                # Events were lost while Redis was away: the shared set is the truth, push it
                # as a new snapshot if it differs from what we hold.
                now = set(await presence.online(room_id))
                if now != online:
                    online = now
                    yield PresenceRow("SNAPSHOT", None, await rows(online))
                continue
            event = channels.decode(data)
            user_id, kind = int(event["user_id"]), event["kind"]
            # Apply events as changes to the set we hold: one already reflected in the
            # snapshot (our own JOINED, say) changes nothing and is not pushed.
            if kind == "JOINED" and user_id not in online:
                online.add(user_id)
            elif kind == "LEFT" and user_id in online:
                online.discard(user_id)
            else:
                continue
            found = await rows({user_id})
            yield PresenceRow(kind, found[0] if found else None, await rows(online))
