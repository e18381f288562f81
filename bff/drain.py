"""Graceful drain of WebSockets on SIGTERM.

uvicorn, on SIGTERM, stops accepting and closes sockets with 1012 right away. Phones deserve
better: first `/readyz` turns 503 (the balancer stops sending new clients), then every socket
gets the frames already queued for it and a 1001 "going away" close, so the client reconnects
to another instance and resumes with `after`; only then does uvicorn's own shutdown run.
"""

from __future__ import annotations

import asyncio
import signal
from collections.abc import Callable
from types import FrameType
from typing import Any, Protocol

import structlog

GOING_AWAY = 1001
log = structlog.get_logger("bff.drain")


class Closable(Protocol):
    async def close(self, code: int, reason: str) -> None: ...


class Drain:
    def __init__(self, on_start: Callable[[], None]) -> None:
        self.sockets: set[Closable] = set()
        self._on_start = on_start
        self._previous: Any = None
        self._started = False

    def install(self) -> bool:
        """Take over SIGTERM when uvicorn's handler holds it (not in tests running the app in-process)."""
        previous = signal.getsignal(signal.SIGTERM)
        owner = getattr(previous, "__self__", None)
        if owner is None or type(owner).__module__.split(".")[0] != "uvicorn":
            return False
        self._previous = previous
        loop = asyncio.get_running_loop()

        def on_sigterm(sig: int, frame: FrameType | None) -> None:
            if self._started:  # a second SIGTERM: stop now
                self._previous(sig, frame)
                return
            self._started = True
            loop.call_soon_threadsafe(lambda: asyncio.ensure_future(self._drain(sig, frame)))

        signal.signal(signal.SIGTERM, on_sigterm)
        return True

    async def _drain(self, sig: int, frame: FrameType | None) -> None:
        self._on_start()
        sockets = list(self.sockets)
        log.info("drain_started", sockets=len(sockets))
        await asyncio.gather(
            *(s.close(GOING_AWAY, "Server going away: reconnect and resume") for s in sockets),
            return_exceptions=True,
        )
        log.info("drain_done", sockets=len(sockets))
        self._previous(sig, frame)
