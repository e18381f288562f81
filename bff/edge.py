"""The edge policies the GraphQL view applies around execution, built once from Settings.

Rate limiter and idempotency store share one Redis client when REDIS_URL is set (so every
instance shares their state), or live in process otherwise. The view owns this object and
closes it with the app.
"""

from __future__ import annotations

import math
from collections.abc import Mapping
from typing import Any

from graphql import GraphQLSchema
from redis.asyncio import Redis

from bff.auth import Viewer
from bff.config import Settings
from bff.http_cache import CachePolicies, Hint
from bff.idempotency import IdempotencyStore, MemoryIdempotencyStore, RedisIdempotencyStore
from bff.rate_limit import Decision, Limiter, MemoryLimiter, RedisLimiter, client_ip, parse_networks


class Edge:
    def __init__(self, settings: Settings, schema: GraphQLSchema, cache_hints: Mapping[str, Hint]) -> None:
        self.settings = settings
        self.cache = CachePolicies(schema, cache_hints, settings.document_cache_size or 1)
        self.trusted = parse_networks(settings.trusted_proxies)
        # Commands fail fast when Redis is away: the limiter then allows, idempotency runs unprotected.
        self.redis: Redis | None = (
            Redis.from_url(settings.redis_url, socket_timeout=2, socket_connect_timeout=2)
            if settings.redis_url
            else None
        )
        self.limiter: Limiter = RedisLimiter(self.redis) if self.redis else MemoryLimiter()
        self.idempotency: IdempotencyStore = (
            RedisIdempotencyStore(self.redis, settings.idempotency_ttl_seconds)
            if self.redis
            else MemoryIdempotencyStore(settings.idempotency_ttl_seconds)
        )

    def owner(self, scope: Mapping[str, Any], viewer: Viewer | None) -> str:
        """Who a request counts against: the user, or the client address when anonymous."""
        if viewer is not None:
            return f"user:{viewer.user_id}"
        return f"ip:{client_ip(scope, self.trusted)}"

    async def charge(self, owner: str, cost: object) -> Decision:
        settings = self.settings
        if not settings.rate_limit_enabled:
            return Decision(True)
        per_minute = (
            settings.rate_limit_per_minute_user
            if owner.startswith("user:")
            else settings.rate_limit_per_minute_ip
        )
        units = (
            math.ceil(cost)
            if isinstance(cost, int | float) and not isinstance(cost, bool) and cost > 0
            else 1
        )
        return await self.limiter.charge(owner, units, per_minute)

    async def close(self) -> None:
        if self.redis is not None:
            await self.redis.aclose()
