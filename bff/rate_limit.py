"""Rate limits: each operation's cost charged against a per-minute budget, shared by every instance.

The algorithm is GCRA (the generic cell rate algorithm, as redis-cell and Stripe use): each
key stores one timestamp, the "theoretical arrival time" (TAT). A budget of N units per
minute emits one unit every 60/N s and tolerates a burst of the whole budget; a request of
cost c is allowed when `TAT + c * interval - burst <= now`, and then moves TAT forward. Unlike
a fixed window it never lets 2N through around a window boundary, and unlike a sliding log it
stores one number per key.

- With REDIS_URL the check-and-charge is one Lua script (atomic; Redis' clock, so instances
  with skewed clocks agree); without Redis, the same arithmetic in process (bounded map).
- Keys: `user:<id>` for a signed-in request (RATE_LIMIT_PER_MINUTE_USER), `ip:<address>` for
  an anonymous one (RATE_LIMIT_PER_MINUTE_IP). The address is the peer, or with TRUSTED_PROXIES
  the right-most X-Forwarded-For entry that is not a trusted proxy.
- A cost above the whole budget is charged as the whole budget: such an operation can run once
  a minute instead of never.
- Redis unreachable: the request is allowed (logged). A limiter must not take the API down.
"""

from __future__ import annotations

import ipaddress
import math
import time
from collections import OrderedDict
from collections.abc import Iterable, Mapping
from dataclasses import dataclass
from typing import Any, Protocol

import structlog
from redis.asyncio import Redis
from redis.exceptions import RedisError

log = structlog.get_logger("bff.rate_limit")
WINDOW_MS = 60_000

# KEYS[1]: the key. ARGV: emission interval (ms per unit), burst (ms), cost.
# Returns {allowed (1/0), retry after (ms)}.
_GCRA = """
local t = redis.call('TIME')
local now = tonumber(t[1]) * 1000 + math.floor(tonumber(t[2]) / 1000)
local interval = tonumber(ARGV[1])
local burst = tonumber(ARGV[2])
local cost = tonumber(ARGV[3])
local tat = tonumber(redis.call('GET', KEYS[1]))
if tat == nil or tat < now then tat = now end
local new_tat = tat + interval * cost
local allow_at = new_tat - burst
if allow_at > now then
  return {0, math.ceil(allow_at - now)}
end
redis.call('SET', KEYS[1], string.format('%.3f', new_tat), 'PX', math.max(1, math.ceil(new_tat - now)))
return {1, 0}
"""


@dataclass(frozen=True, slots=True)
class Decision:
    allowed: bool
    retry_after_ms: int = 0

    @property
    def retry_after_seconds(self) -> int:
        return max(1, math.ceil(self.retry_after_ms / 1000))


class Limiter(Protocol):
    async def charge(self, key: str, cost: int, per_minute: int) -> Decision: ...


def _gcra_args(cost: int, per_minute: int) -> tuple[float, float, int]:
    interval = WINDOW_MS / per_minute
    return interval, float(WINDOW_MS), max(1, min(cost, per_minute))


class MemoryLimiter:
    """GCRA in process (embedded mode): one instance only, so its own count is the total."""

    def __init__(self, max_keys: int = 100_000) -> None:
        self._tat: OrderedDict[str, float] = OrderedDict()
        self._max_keys = max_keys

    async def charge(self, key: str, cost: int, per_minute: int) -> Decision:
        interval, burst, units = _gcra_args(cost, per_minute)
        now = time.monotonic() * 1000
        tat = max(self._tat.get(key, now), now)
        new_tat = tat + interval * units
        allow_at = new_tat - burst
        if allow_at > now:
            return Decision(False, math.ceil(allow_at - now))
        self._tat[key] = new_tat
        self._tat.move_to_end(key)
        while len(self._tat) > self._max_keys:  # the oldest entry is the one most likely spent
            self._tat.popitem(last=False)
        return Decision(True)


class RedisLimiter:
    def __init__(self, redis: Redis, prefix: str = "bff:rl:") -> None:
        self._redis = redis
        self._prefix = prefix
        self._script = redis.register_script(_GCRA)

    async def charge(self, key: str, cost: int, per_minute: int) -> Decision:
        interval, burst, units = _gcra_args(cost, per_minute)
        try:
            allowed, retry_ms = await self._script(keys=[self._prefix + key], args=[interval, burst, units])
        except (RedisError, OSError) as exc:
            log.warning("rate_limit_unavailable", error=str(exc)[:200])
            return Decision(True)
        return Decision(bool(allowed), int(retry_ms))


def client_ip(
    scope: Mapping[str, Any], trusted: Iterable[ipaddress.IPv4Network | ipaddress.IPv6Network]
) -> str:
    """The client's address: the peer, or behind trusted proxies the first untrusted hop from the right."""
    client = scope.get("client")
    peer = str(client[0]) if client else "unknown"
    networks = list(trusted)
    if not networks or not _within(peer, networks):
        return peer
    forwarded = [
        value.decode("latin-1") for name, value in scope.get("headers", ()) if name == b"x-forwarded-for"
    ]
    hops = [hop.strip() for header in forwarded for hop in header.split(",") if hop.strip()]
    for hop in reversed(hops):
        if not _within(hop, networks):
            return str(hop[:64])
    return str(hops[0][:64]) if hops else str(peer)


def _within(address: str, networks: list[ipaddress.IPv4Network | ipaddress.IPv6Network]) -> bool:
    try:
        ip = ipaddress.ip_address(address)
    except ValueError:
        return False
    return any(ip in network for network in networks)


def parse_networks(text: str) -> list[ipaddress.IPv4Network | ipaddress.IPv6Network]:
    return [ipaddress.ip_network(part.strip(), strict=False) for part in text.split(",") if part.strip()]
