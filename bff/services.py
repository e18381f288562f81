"""The long-lived parts one process shares between requests: built from Settings, started by the app's lifespan."""

from __future__ import annotations

from dataclasses import dataclass

import strawberry

from bff.auth import TokenVerifier
from bff.config import Settings
from bff.db import Database
from realtime.broker import Broker, from_url


@dataclass
class Services:
    settings: Settings
    db: Database
    broker: Broker
    tokens: TokenVerifier
    schema: strawberry.Schema

    @classmethod
    def from_settings(cls, settings: Settings) -> Services:
        from schema import schema

        return cls(
            settings=settings,
            db=Database(
                settings.database_url,
                pool_min=settings.db_pool_min,
                pool_max=settings.db_pool_max,
                statement_timeout_ms=settings.db_statement_timeout_ms,
            ),
            broker=from_url(settings.redis_url),
            tokens=TokenVerifier(settings),
            schema=schema,
        )

    async def start(self) -> None:
        await self.db.connect()
        await self.broker.start()

    async def close(self) -> None:
        await self.broker.close()
        await self.db.disconnect()
