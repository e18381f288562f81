"""Bearer tokens: `Authorization: Bearer <JWT>` -> Viewer, or a refusal.

HS256 with a configured secret; the algorithm is pinned (so `alg: none` and algorithm
confusion are refused), `iss`, `aud`, `exp` and `sub` are required. A verified token is
kept in a small LRU until it expires, so a phone's repeated requests skip the HMAC.
"""

from __future__ import annotations

import time
from collections import OrderedDict
from dataclasses import dataclass

import jwt

from bff.config import Settings
from bff.errors import BffError, ErrorCode

MAX_USER_ID = 2**63 - 1  # BIGINT


@dataclass(frozen=True, slots=True)
class Viewer:
    """Who is asking: the database id of the authenticated user."""

    user_id: int
    expires_at: float


class TokenVerifier:
    def __init__(self, settings: Settings, cache_size: int = 16384) -> None:
        self._secret = settings.jwt_secret.get_secret_value()
        self._algorithm = settings.jwt_algorithm
        self._issuer = settings.jwt_issuer
        self._audience = settings.jwt_audience
        self._leeway = settings.jwt_leeway_seconds
        self._ttl = settings.jwt_ttl_seconds
        self._cache: OrderedDict[str, Viewer] = OrderedDict()
        self._cache_size = cache_size

    def issue(self, user_id: int, ttl_seconds: int | None = None) -> str:
        """A token for `user_id` (development and tests; production tokens come from your identity provider)."""
        now = int(time.time())
        claims = {
            "sub": str(user_id),
            "iss": self._issuer,
            "aud": self._audience,
            "iat": now,
            "nbf": now,
            "exp": now + (ttl_seconds or self._ttl),
        }
        return jwt.encode(claims, self._secret, algorithm=self._algorithm)

    def verify(self, token: str) -> Viewer:
        cached = self._cache.get(token)
        if cached is not None:
            if cached.expires_at + self._leeway > time.time():
                self._cache.move_to_end(token)
                return cached
            del self._cache[token]
        try:
            claims = jwt.decode(
                token,
                self._secret,
                algorithms=[self._algorithm],
                issuer=self._issuer,
                audience=self._audience,
                leeway=self._leeway,
                options={"require": ["exp", "sub", "iss", "aud"]},
            )
            user_id = int(claims["sub"])
            if not 0 < user_id <= MAX_USER_ID:
                raise ValueError("sub must be a user id in the database's range")
        except jwt.ExpiredSignatureError as exc:
            raise BffError(
                ErrorCode.UNAUTHENTICATED, "The token has expired", reason="token_expired"
            ) from exc
        except (jwt.InvalidTokenError, ValueError, TypeError) as exc:
            raise BffError(ErrorCode.UNAUTHENTICATED, "The token is invalid", reason="invalid_token") from exc
        viewer = Viewer(user_id=user_id, expires_at=float(claims["exp"]))
        self._cache[token] = viewer
        if len(self._cache) > self._cache_size:
            self._cache.popitem(last=False)
        return viewer

    def from_authorization(self, header: str | None) -> Viewer | None:
        """None for an anonymous request; BffError(UNAUTHENTICATED) for a bad header or token."""
        if not header:
            return None
        scheme, _, token = header.strip().partition(" ")
        if scheme.lower() != "bearer" or not token.strip():
            raise BffError(
                ErrorCode.UNAUTHENTICATED, "Use `Authorization: Bearer <token>`", reason="invalid_token"
            )
        return self.verify(token.strip())
