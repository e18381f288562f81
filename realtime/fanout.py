"""Shared fan-out: an event is rendered once per group of like subscribers, not once per subscriber.

A group is every local subscriber of one channel asking for the same answer (same document,
same variables shaping it, same viewer when the answer depends on the viewer: the caller's
key says which). The group holds one hub subscription and one task; for each event it calls
`render` once (execute the selection, encode the payload) and hands the same text to every
member. A member keeps its own cursor: it skips events at or below it, holds live events back
while it refills from storage (its `after`, or after `RESYNC`), and is dropped when its socket
cannot take more (`send` returned False).

A member has no task while it waits: the group's task hands it each event, a refill after
`RESYNC` runs in a task that ends with it, and whoever joined it calls `leave` (an idle
subscriber costs its `Member` and the caller's callbacks, not a task and its coroutine frames).

No SQL and no schema types here: `render`, `send` and `refill` come from the caller.
"""

from __future__ import annotations

import asyncio
from collections.abc import AsyncIterator, Awaitable, Callable, Hashable
from contextlib import AbstractAsyncContextManager

import structlog
from prometheus_client import Counter, Gauge

from realtime.hub import RESYNC, SlowConsumer, Subscription
from realtime.lag import FANOUT_LAG

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
OnFail = Callable[[], None]
"""Called once when a member is dropped (its socket fell behind, or its group failed)."""


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
        "_joining",
        "_on_fail",
        "_pending",
        "_refill",
        "_refilling",
        "_resync",
        "_task",
        "group",
        "last_seen",
        "send",
    )

    def __init__(
        self, group: Group, send: Send, refill: Refill | None, last_seen: int, on_fail: OnFail
    ) -> None:
        self.group: Group | None = group  # None once it left
        self.send = send
        self._refill = refill
        self._on_fail = on_fail
        self.last_seen = last_seen
        self._floor = last_seen
        self._pending: list[tuple[int, str, float | None]] | None = None  # with each event's publish stamp
        self._refilling = True  # until the first refill (or none) is done
        self._joining = True  # the joiner runs refills until `join` returns
        self._resync = False
        self._failed = False
        self._task: asyncio.Task[None] | None = None  # a refill after RESYNC, while it runs

    def offer(self, position: int, payload: str, published_at: float | None = None) -> bool:
        """A live event; True when its frame was handed to the socket now (not held, skipped or refused)."""
        group = self.group
        if self._failed or group is None:
            return False
        if self._refilling:
            pending = self._pending
            if pending is None:
                pending = self._pending = []
            if len(pending) >= group.fanout.max_pending:
                self.fail()
            else:
                pending.append((position, payload, published_at))
            return False
        return self._deliver(position, payload)

    def _deliver(self, position: int, payload: str) -> bool:
        if position <= self._floor:
            return False  # the client has it from storage
        self.last_seen = max(self.last_seen, position)
        if not self.send(payload):
            self.fail()
            return False
        return True

    def resync(self) -> None:
        # Hold live events from now on: the refill must read storage from the cursor as it is
        # at the gap, before any later event moves it past what was missed.
        if self._failed:
            return
        self._refilling = True
        self._resync = True
        if not self._joining and self._task is None:
            self._task = asyncio.create_task(self._refill_after_resync(), name="bff-fanout-refill")

    async def _refill_after_resync(self) -> None:
        try:
            await self._refills()
        except asyncio.CancelledError:
            raise
        except Exception:
            log.exception("fanout_refill_failed")
            self.fail()
        finally:
            self._task = None

    async def _refills(self) -> None:
        """Refill until no RESYNC came meanwhile."""
        await self.refill()
        while self._resync and not self._failed:
            self._resync = False
            await self.refill()

    async def refill(self) -> None:
        """Storage after the cursor, then the live events held back meanwhile; duplicates skipped."""
        self._refilling = True
        if self._refill is not None and self.last_seen:
            async for position, payload in self._refill(self.last_seen):
                if self._failed:
                    return
                self._deliver(position, payload)
                self._floor = max(self._floor, position)
        pending, self._pending = self._pending, None
        self._refilling = False
        for position, payload, published_at in pending or ():
            if self._failed:
                return
            if self._deliver(position, payload) and published_at is not None:
                FANOUT_LAG.observe(published_at)

    def fail(self) -> None:
        """Drop this member: out of its group, and its socket told (`on_fail`) once."""
        if self._failed:
            return
        self._failed = True
        self._pending = None
        self.leave()
        self._on_fail()

    def leave(self) -> None:
        """Out of its group, its refill stopped; idempotent. The group stops with its last member."""
        task, self._task = self._task, None
        if task is not None and task is not asyncio.current_task():
            task.cancel()
        group, self.group = self.group, None
        if group is not None:
            group.fanout.discard(group, self)


class Group:
    __slots__ = ("channel", "fanout", "key", "members", "ready", "render", "task")

    def __init__(self, fanout: Fanout, key: Hashable, channel: str, render: Render) -> None:
        self.fanout = fanout
        self.key = key
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
        self.max_pending = max_pending
        self._groups: dict[Hashable, Group] = {}
        self._stopping: set[asyncio.Task[None]] = set()

    def group_count(self) -> int:
        return len(self._groups)

    async def join(
        self,
        key: Hashable,
        channel: str,
        make_render: Callable[[], Render],
        send: Send,
        refill: Refill | None,
        last_seen: int,
        on_fail: OnFail,
    ) -> Member:
        """A subscriber in its group, live: storage after `last_seen` is replayed first.

        From here on the group's task serves it; the caller calls `leave` when the subscriber
        goes. A member that could not be served (its socket full, its group failed) has been
        failed already: `on_fail` was called, and `leave` does nothing. `make_render` is called
        only when the subscriber starts a group: every subscriber of a key wants the same answer,
        so the first one's rendering serves them all. Cancelled, it leaves the group.
        """
        group = self._groups.get(key)
        if group is None:
            group = self._groups[key] = Group(self, key, channel, make_render())
            group.task = asyncio.create_task(self._run(group), name=f"bff-fanout:{channel}")
            GROUPS.inc()
        member = Member(group, send, refill, last_seen, on_fail)
        group.members.add(member)
        MEMBERS.inc()
        try:
            # Live events are held from here on; the upstream subscription is confirmed before
            # the member reads storage, so nothing published in between is missed.
            await asyncio.shield(group.ready)
            await member._refills()
        except SlowConsumer:
            member.fail()
        except BaseException:
            member.leave()
            raise
        finally:
            member._joining = False
        return member

    def discard(self, group: Group, member: Member) -> None:
        if member in group.members:
            group.members.discard(member)
            MEMBERS.dec()
        if not group.members and self._groups.get(group.key) is group:
            self._stop(group)

    def _stop(self, group: Group) -> None:
        del self._groups[group.key]
        GROUPS.dec()
        if group.task is not None and not group.task.done():
            group.task.cancel()
            self._stopping.add(group.task)
            group.task.add_done_callback(self._stopping.discard)

    async def _run(self, group: Group) -> None:
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
                    published_at = sub.published_at
                    if published_at is None:
                        for member in tuple(group.members):
                            member.offer(position, payload)
                        continue
                    # Publish -> send, per frame handed to a socket; added to the histogram once.
                    lag = FANOUT_LAG.batch(published_at)
                    for member in tuple(group.members):
                        if member.offer(position, payload, published_at):
                            lag.sent()
                    lag.commit()
        except asyncio.CancelledError:
            raise
        except BaseException as exc:
            # The group's own hub queue overflowed (SlowConsumer), or subscribing failed: every
            # member is dropped and reconnects with its cursor.
            log.warning("fanout_group_failed", channel=group.channel, error=type(exc).__name__)
            if not group.ready.done():
                group.ready.set_exception(SlowConsumer(group.channel))
            if self._groups.get(group.key) is group:
                del self._groups[group.key]
                GROUPS.dec()
            for member in tuple(group.members):
                member.fail()
        finally:
            if not group.ready.done():
                group.ready.cancel()
