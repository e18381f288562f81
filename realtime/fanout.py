"""Shared fan-out: an event is rendered once per group of like subscribers, not once per subscriber.

A group is every local subscriber of one channel asking for the same answer (same document,
same variables shaping it, same viewer when the answer depends on the viewer: the caller's
key says which). The group holds one hub subscription and one task; for each event it calls
`render` once (execute the selection, encode the payload) and hands the same text to every
member. A member keeps its own cursor: it skips events at or below it, holds live events back
while it refills from storage (its `after`, or after `RESYNC`), and is dropped when its socket
cannot take more (`send` returned False).

No SQL and no schema types here: `render`, `send` and `refill` come from the caller.
"""

from __future__ import annotations

import asyncio
from collections.abc import AsyncIterator, Awaitable, Callable, Hashable
from contextlib import AbstractAsyncContextManager

import structlog
from prometheus_client import Counter, Gauge

from realtime.hub import RESYNC, SlowConsumer, Subscription

log = structlog.get_logger("bff.fanout")

GROUPS = Gauge("bff_fanout_groups", "Groups of local subscribers sharing one rendering of each event")
MEMBERS = Gauge("bff_fanout_members", "Subscribers served by a shared group")
RENDERS = Counter("bff_fanout_renders_total", "Events rendered once for a whole group")
RESYNCS = Counter(
    "bff_fanout_resyncs_total",
    "RESYNC markers handed to members of shared groups (each refills from storage)",
)

Render = Callable[[bytes], Awaitable[tuple[int, str] | None]]
"""Event bytes -> (its position, e.g. the message id; the payload as JSON text), or None to skip it."""
Refill = Callable[[int], AsyncIterator[tuple[int, str]]]
"""Stored events after a position, oldest first, as (position, payload): replay and RESYNC."""
Send = Callable[[str], bool]
"""Queue one payload for a subscriber; False when its socket is full or closing (it is dropped)."""


class Member:
    """One subscriber of a group: its cursor, and the live events held back while it refills.

    `last_seen` is the highest position delivered (where a refill reads storage from);
    `_floor` the highest position the client already has from storage (its `after`, then each
    refill's last). Live events at or below the floor are skipped as duplicates; others are
    delivered even when they arrive after a higher one (two senders' publishes can cross), so
    nothing is dropped for arriving late.
    """

    __slots__ = (
        "_failed",
        "_floor",
        "_pending",
        "_refilling",
        "_resync",
        "_waiter",
        "last_seen",
        "max_pending",
        "send",
    )

    def __init__(self, send: Send, last_seen: int, max_pending: int) -> None:
        self.send = send
        self.last_seen = last_seen
        self._floor = last_seen
        self.max_pending = max_pending
        self._pending: list[tuple[int, str]] = []
        self._refilling = True  # until the first refill (or none) is done
        self._resync = False
        self._failed = False
        # A future while `serve` sleeps (an asyncio.Event would cost a deque per subscriber).
        self._waiter: asyncio.Future[None] | None = None

    def offer(self, position: int, payload: str) -> None:
        if self._failed:
            return
        if self._refilling:
            if len(self._pending) >= self.max_pending:
                self.fail()
            else:
                self._pending.append((position, payload))
            return
        self._deliver(position, payload)

    def _deliver(self, position: int, payload: str) -> None:
        if position <= self._floor:
            return  # the client has it from storage
        self.last_seen = max(self.last_seen, position)
        if not self.send(payload):
            self.fail()

    def resync(self) -> None:
        # Hold live events from now on: the refill must read storage from the cursor as it is
        # at the gap, before any later event moves it past what was missed.
        self._refilling = True
        self._resync = True
        self._wake()

    def fail(self) -> None:
        self._failed = True
        self._pending.clear()
        self._wake()

    def _wake(self) -> None:
        if self._waiter is not None and not self._waiter.done():
            self._waiter.set_result(None)

    async def refill(self, refill: Refill | None) -> None:
        """Storage after the cursor, then the live events held back meanwhile; duplicates skipped."""
        self._refilling = True
        if refill is not None and self.last_seen:
            async for position, payload in refill(self.last_seen):
                if self._failed:
                    break
                self._deliver(position, payload)
                self._floor = max(self._floor, position)
        pending, self._pending = self._pending, []
        self._refilling = False
        for position, payload in pending:
            if self._failed:
                break
            self._deliver(position, payload)

    async def serve(self, refill: Refill | None) -> None:
        """Until cancelled; refills on RESYNC; raises SlowConsumer once the member failed."""
        await self.refill(refill)
        while True:
            if self._failed:
                raise SlowConsumer("subscriber socket full")
            if self._resync:
                self._resync = False
                await self.refill(refill)
                continue
            self._waiter = asyncio.get_running_loop().create_future()
            try:
                await self._waiter
            finally:
                self._waiter = None


class Group:
    __slots__ = ("channel", "members", "ready", "render", "task")

    def __init__(self, channel: str, render: Render) -> None:
        self.channel = channel
        self.render = render
        self.members: set[Member] = set()
        self.ready: asyncio.Future[None] = asyncio.get_running_loop().create_future()
        self.task: asyncio.Task[None] | None = None


class Fanout:
    """Groups of local subscribers, each fed by one hub subscription and one rendering per event."""

    def __init__(
        self,
        subscribe: Callable[[str], AbstractAsyncContextManager[Subscription]],
        max_pending: int = 1000,
    ) -> None:
        self._subscribe = subscribe
        self._max_pending = max_pending
        self._groups: dict[Hashable, Group] = {}
        self._stopping: set[asyncio.Task[None]] = set()

    def group_count(self) -> int:
        return len(self._groups)

    async def serve(
        self,
        key: Hashable,
        channel: str,
        make_render: Callable[[], Render],
        send: Send,
        refill: Refill | None,
        last_seen: int,
    ) -> None:
        """Serve one subscriber until cancelled. Raises SlowConsumer when its socket fell behind.

        `make_render` is called only when the subscriber starts a group: every subscriber of a
        key wants the same answer, so the first one's rendering serves them all.
        """
        group = self._groups.get(key)
        if group is None:
            group = self._groups[key] = Group(channel, make_render())
            group.task = asyncio.create_task(self._run(key, group), name=f"bff-fanout:{channel}")
            GROUPS.inc()
        member = Member(send, last_seen, self._max_pending)
        group.members.add(member)
        MEMBERS.inc()
        try:
            # Live events are held from here on; the upstream subscription is confirmed before
            # the member reads storage, so nothing published in between is missed.
            await asyncio.shield(group.ready)
            await member.serve(refill)
        finally:
            MEMBERS.dec()
            group.members.discard(member)
            if not group.members and self._groups.get(key) is group:
                self._stop(key, group)

    def _stop(self, key: Hashable, group: Group) -> None:
        del self._groups[key]
        GROUPS.dec()
        if group.task is not None and not group.task.done():
            group.task.cancel()
            self._stopping.add(group.task)
            group.task.add_done_callback(self._stopping.discard)

    async def _run(self, key: Hashable, group: Group) -> None:
        try:
            async with self._subscribe(group.channel) as sub:
                if not group.ready.done():
                    group.ready.set_result(None)
                async for data in sub:
                    if data == RESYNC:
                        for member in tuple(group.members):
                            member.resync()
                        RESYNCS.inc(len(group.members))
                        continue
                    try:
                        rendered = await group.render(data)
                    except Exception:
                        log.exception("fanout_render_failed", channel=group.channel)
                        continue
                    if rendered is None:
                        continue
                    RENDERS.inc()
                    position, payload = rendered
                    for member in tuple(group.members):
                        member.offer(position, payload)
        except asyncio.CancelledError:
            raise
        except BaseException as exc:
            # The group's own hub queue overflowed (SlowConsumer), or subscribing failed: every
            # member is dropped and reconnects with its cursor.
            log.warning("fanout_group_failed", channel=group.channel, error=type(exc).__name__)
            if not group.ready.done():
                group.ready.set_exception(SlowConsumer(group.channel))
            for member in tuple(group.members):
                member.fail()
            if self._groups.get(key) is group:
                del self._groups[key]
                GROUPS.dec()
        finally:
            if not group.ready.done():
                group.ready.cancel()
