"""The long-lived parts one process shares between requests: built from Settings, started by the app's lifespan."""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import TypeVar

import strawberry

from bff.auth import TokenVerifier, Viewer
from bff.cache import Cache
from bff.config import Settings
from bff.db import Database
from bff.persisted import PersistedOperations
from realtime import presence as presence_backends
from realtime.broker import Broker, from_url
from realtime.coalesce import Coalescer
from realtime.presence import Presence
from resolvers.context import Context
from resolvers.loaders import background_reloads, warmed_on_start

C = TypeVar("C", bound=Context)


@dataclass
class Services:
    settings: Settings
    db: Database
    broker: Broker
    tokens: TokenVerifier
    schema: strawberry.Schema
    presence: Presence
    leaderboards: Coalescer
    cache: Cache  # users, like counts, leaderboard tops (bff/cache.py)
    persisted: PersistedOperations = field(init=False)  # documents by hash (APQ, trusted documents)

    def __post_init__(self) -> None:
        self.persisted = PersistedOperations(self.settings, self.db)
        for namespace, load in background_reloads(self.db, self.settings.feed_cached_sources):
            self.cache.reload_from(namespace, load)

    @classmethod
    def from_settings(cls, settings: Settings) -> Services:
        from schema import schema

        broker = from_url(settings.redis_url)
        return cls(
            settings=settings,
            db=Database(
                settings.database_url,
                pool_min=settings.db_pool_min,
                pool_max=settings.db_pool_max,
                statement_timeout_ms=settings.db_statement_timeout_ms,
            ),
            broker=broker,
            tokens=TokenVerifier(settings),
            schema=schema,
            presence=presence_backends.from_url(
                settings.redis_url, broker, settings.presence_ttl_seconds, settings.presence_heartbeat
            ),
            leaderboards=Coalescer(broker, settings.leaderboard_coalesce_ms / 1000),
            cache=Cache.from_settings(settings, broker),
        )

    def context(
        self,
        viewer: Viewer | None = None,
        request_id: str = "",
        context_class: type[C] = Context,  # type: ignore[assignment]
    ) -> C:
        """A per-request (or per-socket) Context over this process's services."""
        return context_class(
            db=self.db,
            broker=self.broker,
            settings=self.settings,
            tokens=self.tokens,
            viewer=viewer,
            request_id=request_id,
            presence=self.presence,
            leaderboards=self.leaderboards,
            cache=self.cache,
        )

    async def start(self) -> None:
        await self.db.connect()
        await self.broker.start()
        await self.presence.start()
        await self.cache.start()  # listening for invalidations before the first request
        # Then the fleet's hot keys, before it serves.
        await self.cache.warm(warmed_on_start(self.settings.feed_cached_sources))

    async def close(self) -> None:
        await self.leaderboards.close()
        await self.presence.close()  # says LEFT for its connections while the broker is up
        await self.cache.close()
        await self.broker.close()
        await self.persisted.close()
        await self.db.disconnect()
