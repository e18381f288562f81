"""uvicorn's `websockets-sansio` WebSocket protocol, lighter per connection (run with `--ws bff.ws_protocol:WebSocketProtocol`).

A subscribed phone keeps its socket open for hours, mostly idle, so what each connection holds
is multiplied by every phone. uvicorn's protocol keeps, for the socket's whole life:
- an `asyncio.Queue` for received messages and an `asyncio.Event` for "the transport takes
  writes": five deques, ~3.8 KiB, where a list and a future while waiting do;
- the handshake's request and response, with their parsed headers (~4.5 KiB), needed only
  until the response is sent.
This subclass swaps the first two for `ReceiveQueue` and `Writable` (the calls uvicorn makes on
them, nothing more) and drops the handshake objects once the socket is accepted. Everything
else is uvicorn's; without this class (plain `uvicorn`), bff works the same with more memory
per socket (docs/benchmarks.md, "Subscriptions fan-out").
"""

from __future__ import annotations

import asyncio
from typing import Any, Generic, TypeVar

from uvicorn.protocols.websockets.websockets_sansio_impl import WebSocketsSansIOProtocol

T = TypeVar("T")


class ReceiveQueue(Generic[T]):
    """An unbounded queue for one consumer (the app's `receive`): a list, and a future only while it waits."""

    __slots__ = ("_items", "_waiter")

    def __init__(self) -> None:
        self._items: list[T] = []
        self._waiter: asyncio.Future[None] | None = None

    def put_nowait(self, item: T) -> None:
        self._items.append(item)
        waiter = self._waiter
        if waiter is not None and not waiter.done():
            waiter.set_result(None)

    async def get(self) -> T:
        while not self._items:
            if self._waiter is not None:
                raise RuntimeError("ReceiveQueue has one consumer: get() is already waiting")
            self._waiter = asyncio.get_running_loop().create_future()
            try:
                await self._waiter
            finally:
                self._waiter = None
        return self._items.pop(0)

    def empty(self) -> bool:
        return not self._items

    def qsize(self) -> int:
        return len(self._items)


class Writable:
    """Set while the transport takes writes; `wait` returns at once then, else when `set` is called.

    `asyncio.Event`'s semantics (each waiter has its own future, so cancelling one does not
    cancel the others) without a deque kept for the socket's life: a list exists only while paused.
    """

    __slots__ = ("_waiters",)

    def __init__(self) -> None:
        self._waiters: list[asyncio.Future[None]] | None = None  # None: set

    def is_set(self) -> bool:
        return self._waiters is None

    def set(self) -> None:
        waiters, self._waiters = self._waiters, None
        for waiter in waiters or ():
            if not waiter.done():
                waiter.set_result(None)

    def clear(self) -> None:
        if self._waiters is None:
            self._waiters = []

    async def wait(self) -> bool:
        waiters = self._waiters
        if waiters is None:
            return True
        waiter = asyncio.get_running_loop().create_future()
        waiters.append(waiter)
        try:
            await waiter
            return True
        finally:
            if self._waiters is waiters:
                waiters.remove(waiter)


class WebSocketProtocol(WebSocketsSansIOProtocol):
    """uvicorn's sans-I/O WebSocket protocol with a lighter queue and flag, and no handshake kept."""

    def __init__(self, *args: Any, **kwargs: Any) -> None:
        super().__init__(*args, **kwargs)
        self.queue = ReceiveQueue()  # type: ignore[assignment]
        self.writable = Writable()  # type: ignore[assignment]

    def start_keepalive(self) -> None:
        # Called once the handshake's response is written (the app accepted the socket): the
        # request and response objects and their headers are not read again.
        super().start_keepalive()
        self.__dict__.pop("request", None)
        self.__dict__.pop("response", None)
