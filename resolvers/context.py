"""The per-request context every resolver receives (as strawberry's `info.context`)."""

from __future__ import annotations

from dataclasses import dataclass, field

from bff.auth import TokenVerifier, Viewer
from bff.cache import NO_CACHE, Cache
from bff.config import Settings
from bff.db import Database
from bff.errors import BffError, ErrorCode
from realtime.broker import Broker
from realtime.coalesce import Coalescer
from realtime.presence import Presence
from resolvers.loaders import Loaders


@dataclass
class Context:
    db: Database
    broker: Broker
    settings: Settings
    tokens: TokenVerifier
    viewer: Viewer | None = None
    request_id: str = ""
    # Process-wide realtime state, used by subscriptions (the WebSocket endpoint passes them).
    presence: Presence | None = None
    leaderboards: Coalescer | None = None
    # The process's read cache (Services); the default reads through to the database.
    cache: Cache = NO_CACHE
    _loaders: Loaders | None = field(default=None, init=False, repr=False)

    @property
    def loaders(self) -> Loaders:
        """This request's loaders, made on first use: a socket's context may not load for hours."""
        if self._loaders is None:
            self._loaders = self.fresh_loaders()
        return self._loaders

    @loaders.setter
    def loaders(self, loaders: Loaders) -> None:
        self._loaders = loaders

    def drop_loaders(self) -> None:
        """Forget what the loaders hold (a request that is answered; a socket's context, once its
        subscription is authorised)."""
        if self._loaders is not None:
            self._loaders.close()
            self._loaders = None

    def set_viewer(self, viewer: Viewer | None) -> None:
        """WebSockets learn the viewer at connection_init, after the context exists."""
        self.viewer = viewer
        self._loaders = None

    def require_viewer(self) -> int:
        """The viewer's user id; UNAUTHENTICATED for anonymous requests."""
        if self.viewer is None:
            raise BffError(ErrorCode.UNAUTHENTICATED, "Sign in: this needs `Authorization: Bearer <token>`")
        return self.viewer.user_id

    def fresh_loaders(self) -> Loaders:
        """Loaders for one subscription event: a socket lives for hours, its caches must not."""
        return Loaders(self.db, self.viewer.user_id if self.viewer else None, self.cache)
