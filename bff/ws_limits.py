"""Per-socket policy for GraphQL over WebSocket: every socket is bounded, counted and logged.

- frames go straight to the transport while it takes them; once it is paused (the client
  reads slowly) they wait in a bounded queue drained by a writer task: a client that stops
  reading fills it and is closed with 1013 (slow consumer) instead of growing server memory;
- frames larger than WS_MAX_MESSAGE_BYTES close the socket with 1009;
- no frame from the client (pings included) for WS_IDLE_TIMEOUT_SECONDS closes it with 4410;
- at most WS_MAX_CONNECTIONS_PER_USER sockets per user per process: one more is closed with
  1008 instead of acknowledged;
- metrics: open sockets, running subscriptions per root field, closes by code; one log line
  per close with its code.

It plugs into strawberry through its extension points: this module's socket adapter class and
the two protocol handler classes of bff/ws_handlers.py (see `GraphQLWebSocket` in
bff/websocket.py).
"""

from __future__ import annotations

import asyncio
import contextlib
from collections import deque
from collections.abc import AsyncGenerator, Coroutine, Mapping
from dataclasses import dataclass
from json import JSONDecodeError
from typing import TYPE_CHECKING, Any, cast

import structlog
from prometheus_client import Counter, Gauge
from starlette.websockets import WebSocket
from strawberry.asgi import ASGIWebSocketAdapter
from strawberry.http.exceptions import (
    NonJsonMessageReceived,
    NonTextMessageReceived,
    WebSocketDisconnected,
)

from bff.config import Settings
from realtime.lag import FANOUT_LAG, PUBLISHED_AT

if TYPE_CHECKING:
    from strawberry.http.async_base_view import AsyncBaseHTTPView


log = structlog.get_logger("bff.websocket")

# Close codes (docs/decisions.md). None is in graphql-ws's list of fatal codes: clients reconnect.
SLOW_CONSUMER = 1013  # "Try Again Later": reconnect, resuming with `after`
TOO_MANY_CONNECTIONS = 1008  # "Policy Violation"
MESSAGE_TOO_BIG = 1009  # "Message Too Big"
IDLE_TIMEOUT = 4410

OPEN_SOCKETS = Gauge("bff_ws_connections", "Open GraphQL WebSockets")
SUBSCRIPTIONS = Gauge("bff_ws_subscriptions", "Running subscription operations, by root field", ["field"])
CLOSES = Counter("bff_ws_closes_total", "GraphQL WebSockets closed, by code and by whom", ["code", "by"])

FLUSH_BEFORE_CLOSE_S = 2.0


@dataclass(frozen=True, slots=True)
class SocketPolicy:
    send_queue_size: int
    max_message_bytes: int
    idle_timeout_seconds: float
    max_connections_per_user: int

    @classmethod
    def from_settings(cls, settings: Settings) -> SocketPolicy:
        return cls(
            send_queue_size=settings.ws_send_queue_size,
            max_message_bytes=settings.ws_max_message_bytes,
            idle_timeout_seconds=settings.ws_idle_timeout_seconds,
            max_connections_per_user=settings.ws_max_connections_per_user,
        )


class ConnectionsPerUser:
    """Open sockets per user in this process."""

    def __init__(self, limit: int) -> None:
        self.limit = limit
        self._counts: dict[int, int] = {}

    def acquire(self, user_id: int) -> bool:
        count = self._counts.get(user_id, 0)
        if count >= self.limit:
            return False
        self._counts[user_id] = count + 1
        return True

    def release(self, user_id: int) -> None:
        count = self._counts.get(user_id, 0) - 1
        if count > 0:
            self._counts[user_id] = count
        else:
            self._counts.pop(user_id, None)


async def _resume(coroutine: Coroutine[Any, Any, None], waiting_on: object) -> None:
    """Finish a coroutine that was stepped by hand and suspended, as the task running it would:
    wait until what it yielded (a future, or None for a bare yield) is done, then step it again.

    `asyncio.wait` rather than `await future`: the future is still marked as awaited by the
    coroutine that yielded it, and awaiting it a second time would raise.
    """
    while True:
        try:
            if waiting_on is None:
                await asyncio.sleep(0)
            else:
                await asyncio.wait((cast(asyncio.Future[Any], waiting_on),))
        except asyncio.CancelledError:
            coroutine.close()
            raise
        try:
            waiting_on = coroutine.send(None)
        except StopIteration:
            return


class PolicedWebSocket(ASGIWebSocketAdapter):
    """strawberry's socket adapter with a bounded send queue, a frame size limit and an idle timeout."""

    # One per socket, for hours: slots, and the idle timeout is a timer handle, not a task.
    __slots__ = (
        "_closer",
        "_closing",
        "_finished",
        "_idle",
        "_last_frame",
        "_opened",
        "_outbox",
        "_registry",
        "_user_id",
        "_users",
        "_writer",
        "close_code",
        "close_reason",
        "policy",
    )

    def __init__(
        self,
        view: AsyncBaseHTTPView[Any, Any, Any, Any, Any, Any, Any],
        request: WebSocket,
        response: WebSocket,
    ) -> None:
        super().__init__(view, request, response)
        self.policy: SocketPolicy = view.socket_policy  # type: ignore[attr-defined]
        self._users: ConnectionsPerUser = view.socket_users  # type: ignore[attr-defined]
        # Open sockets of this process, closed with 1001 on SIGTERM (bff/drain.py).
        self._registry: set[Any] | None = getattr(view, "open_sockets", None)
        # Frames behind one the transport could not take yet; exists only while the writer does.
        self._outbox: deque[str] | None = None
        self._writer: asyncio.Task[None] | None = None
        self._idle: asyncio.TimerHandle | None = None
        self._closer: asyncio.Task[None] | None = None
        self._closing = False
        self._opened = False
        self._finished = False
        self._user_id: int | None = None
        self._last_frame = 0.0
        self.close_code: int | None = None
        self.close_reason = ""

    # Receiving: the connection's main loop.

    async def iter_json(self, *, ignore_parsing_errors: bool = False) -> AsyncGenerator[object, None]:
        self._open()
        # A frame that is not JSON text is the handler's to close (4400, 1002…): not finished here,
        # or that close would be skipped as already closing; the handler finishes the socket after.
        invalid_frame = False
        try:
            while True:
                message = await self.ws.receive()
                if message["type"] == "websocket.disconnect":
                    if self.close_code is None:
                        self._closing = True
                        self._record_close(int(message.get("code", 1005)), "client")
                    return
                if self._closing:  # closing: nothing more is handled
                    continue
                self._last_frame = asyncio.get_running_loop().time()
                text = message.get("text")
                if text is None:
                    invalid_frame = True
                    raise NonTextMessageReceived
                if self._too_big(text):
                    await self.close(MESSAGE_TOO_BIG, "Message too big")
                    continue
                try:
                    value = self.view.decode_json(text)
                except JSONDecodeError as error:
                    if ignore_parsing_errors:
                        continue
                    invalid_frame = True
                    raise NonJsonMessageReceived from error
                yield value
        finally:
            if not invalid_frame:
                await self.finish()

    def _too_big(self, text: str) -> bool:
        limit = self.policy.max_message_bytes
        # Each character is 1 to 4 bytes: encode only when the length alone cannot tell.
        return len(text) > limit or (len(text) * 4 > limit and len(text.encode()) > limit)

    # Sending: straight to the transport while it takes frames, else through the bounded queue.

    async def send_json(self, message: Mapping[str, object]) -> None:
        data = self.view.encode_json(message)
        if not self.queue_text(data if isinstance(data, str) else data.decode()):
            raise WebSocketDisconnected
        if message.get("type") in ("next", "data"):
            # strawberry's per-subscriber path: the event this operation's task took last
            # became this frame (realtime/lag.py); once per event.
            published_at = PUBLISHED_AT.get()
            if published_at is not None:
                PUBLISHED_AT.set(None)
                FANOUT_LAG.observe(published_at)

    def queue_text(self, text: str) -> bool:
        """Send one text frame, in order; False once the socket is closing (a full queue closes it).

        With nothing queued, the frame is written at once: uvicorn hands it to the transport
        without suspending unless the transport is paused (the client reads slowly). Only then
        does a writer task exist, finishing that frame and draining the queue behind it.
        Fan-out thus costs no task switch per subscriber.
        """
        if self._closing:
            return False
        if self._writer is None:
            self._write_now(text)
            return not self._closing
        outbox = self._outbox
        if outbox is None or len(outbox) >= self.policy.send_queue_size:
            self._slow_consumer()
            return False
        outbox.append(text)
        return True

    def drop_slow_consumer(self) -> None:
        """Close with 1013 now (a shared fan-out group fell behind): the client resumes with `after`."""
        if not self._closing:
            self._slow_consumer()

    def _write_now(self, text: str) -> None:
        sending = self.ws.send({"type": "websocket.send", "text": text})
        try:
            waiting_on = sending.send(None)  # one step: complete unless the transport is paused
        except StopIteration:
            return
        except Exception:
            self._peer_gone()
            return
        self._outbox = deque()
        self._writer = asyncio.create_task(self._write_backlog(sending, waiting_on), name="bff-ws-writer")

    async def _write_backlog(self, sending: Coroutine[Any, Any, None], waiting_on: object) -> None:
        try:
            await _resume(sending, waiting_on)
            while self._outbox:
                await self.ws.send_text(self._outbox.popleft())  # not None: checked just above
        except asyncio.CancelledError:
            raise
        except Exception:  # the peer is gone; the receive loop sees the disconnect
            self._peer_gone()
        finally:
            self._writer = None
            self._outbox = None

    def _peer_gone(self) -> None:
        self._closing = True
        self._drop_outbox()

    def _drop_outbox(self) -> None:
        if self._outbox is not None:
            self._outbox.clear()

    def _slow_consumer(self) -> None:
        log.warning("ws_slow_consumer", queued=len(self._outbox or ()), user_id=self._user_id)
        self._closing = True
        self._drop_outbox()  # free the memory now; the client reconnects with its cursor
        if self._writer is not None:
            self._writer.cancel()
        self._closer = asyncio.create_task(
            self._close_now(SLOW_CONSUMER, "Slow consumer: send queue full"), name="bff-ws-closer"
        )

    # Closing.

    async def close(self, code: int, reason: str) -> None:
        """Close after the frames already queued (waiting at most FLUSH_BEFORE_CLOSE_S for them)."""
        if self._closing:
            return
        self._closing = True
        writer = self._writer
        if writer is not None and not writer.done():
            with contextlib.suppress(TimeoutError):
                await asyncio.wait_for(asyncio.shield(writer), FLUSH_BEFORE_CLOSE_S)
            writer.cancel()
        await self._close_now(code, reason)

    async def _close_now(self, code: int, reason: str) -> None:
        self._record_close(code, "server", reason)
        # Waits while the transport is paused: a client that does not read gets the close frame
        # after what is already in flight, or is dropped by uvicorn's keepalive.
        with contextlib.suppress(Exception):
            await self.ws.close(code=code, reason=reason)

    def _record_close(self, code: int, by: str, reason: str = "") -> None:
        self.close_code, self.close_reason = code, reason
        CLOSES.labels(str(code), by).inc()

    # Lifecycle.

    def _open(self) -> None:
        if self._opened:
            return
        self._opened = True
        OPEN_SOCKETS.inc()
        if self._registry is not None:
            self._registry.add(self)
        loop = asyncio.get_running_loop()
        self._last_frame = loop.time()
        if self.policy.idle_timeout_seconds > 0:
            self._idle = loop.call_at(self._last_frame + self.policy.idle_timeout_seconds, self._check_idle)

    def _check_idle(self) -> None:
        """The idle timer: re-armed for the last frame's deadline, or closes with 4410 once it passed."""
        self._idle = None
        if self._closing:
            return
        loop = asyncio.get_running_loop()
        deadline = self._last_frame + self.policy.idle_timeout_seconds
        if deadline > loop.time():
            self._idle = loop.call_at(deadline, self._check_idle)
            return
        self._closer = asyncio.create_task(self.close(IDLE_TIMEOUT, "Idle timeout"), name="bff-ws-idle-close")

    async def admit(self, context: object) -> bool:
        """Take one of the viewer's connection slots; close with 1008 when they are all taken."""
        viewer = getattr(context, "viewer", None)
        if viewer is None or self._user_id is not None:
            return True
        if self._users.acquire(viewer.user_id):
            self._user_id = viewer.user_id
            return True
        log.info("ws_rejected", reason="too many connections", user_id=viewer.user_id)
        await self.close(TOO_MANY_CONNECTIONS, "Too many connections for this user")
        return False

    async def finish(self) -> None:
        """Release everything this socket holds; idempotent (the handler and the receive loop both call it)."""
        if self._finished or not self._opened:
            return
        self._finished = True
        self._closing = True
        if self._idle is not None:
            self._idle.cancel()
            self._idle = None
        tasks = [t for t in (self._writer, self._closer) if t is not None]
        for task in tasks:
            if task is not asyncio.current_task():
                task.cancel()
        for task in tasks:
            if task is not asyncio.current_task():
                with contextlib.suppress(BaseException):
                    await task
        self._drop_outbox()
        if self._registry is not None:
            self._registry.discard(self)
        if self._user_id is not None:
            self._users.release(self._user_id)
        OPEN_SOCKETS.dec()
        log.info("ws_closed", code=self.close_code, reason=self.close_reason, user_id=self._user_id)
