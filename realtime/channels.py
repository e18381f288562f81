"""Channel names and event payloads: what travels between instances."""

from __future__ import annotations

from typing import Any

import orjson


def chat_room(room_id: int) -> str:
    return f"bff:room:{room_id}"


def leaderboard(game_id: int) -> str:
    return f"bff:leaderboard:{game_id}"


def typing(room_id: int) -> str:
    """Ephemeral typing indicators of a room: published, never stored."""
    return f"bff:typing:{room_id}"


def presence(room_id: int) -> str:
    """JOINED/LEFT of a room's online members (realtime/presence.py publishes them)."""
    return f"bff:presence:{room_id}"


def cache_invalidation(scope: str) -> str:
    """Cache keys a write made stale: every instance drops them from its local cache (bff/cache.py)."""
    return f"bff:cache:{scope}:invalidate"


def encode(event: dict[str, Any]) -> bytes:
    return orjson.dumps(event)


def decode(data: bytes) -> dict[str, Any]:
    value = orjson.loads(data)
    if not isinstance(value, dict):
        raise ValueError("an event is a JSON object")
    return value
