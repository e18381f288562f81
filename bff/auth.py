"""Bearer tokens: `Authorization: Bearer <JWT>` -> Viewer, or a refusal.

Two modes, one algorithm each, pinned by `JWT_ALGORITHM`:
- HS256/384/512 with `JWT_SECRET` (development; `bff token` signs these);
- RS*/ES* with the identity provider's public keys from `JWT_JWKS_URL` (bff/jwks.py), the
  token's `kid` picking the key.
A token whose header names another algorithm is refused before any key is looked up, so
`alg: none` and HS/RS confusion (a public key used as an HMAC secret) never verify. `iss`,
`aud`, `exp` and `sub` are required; `exp`, `nbf` and `iat` allow `JWT_LEEWAY_SECONDS` of skew.
A verified token is kept in a small LRU until it expires (or, with a JWKS, until its key is
withdrawn), so a phone's repeated requests skip the signature check.
"""

from __future__ import annotations

import contextlib
import time
from collections import OrderedDict
from collections.abc import Iterator
from dataclasses import dataclass
from typing import Any

import jwt

from bff.config import Settings
from bff.errors import BffError, ErrorCode
from bff.jwks import JwksClient, KeysUnavailable, UnknownKey

MAX_USER_ID = 2**63 - 1  # BIGINT


@dataclass(frozen=True, slots=True)
class Viewer:
    """Who is asking: the database id of the authenticated user."""

    user_id: int
    expires_at: float


def _invalid() -> BffError:
    return BffError(ErrorCode.UNAUTHENTICATED, "The token is invalid", reason="invalid_token")


def _keys_unavailable() -> BffError:
    # 401 like any refusal, but told apart: the token may be fine, the identity provider is not.
    return BffError(
        ErrorCode.UNAUTHENTICATED,
        "The keys to check this token are unavailable; retry shortly",
        reason="keys_unavailable",
        retryable=True,
    )


@contextlib.contextmanager
def _key_errors() -> Iterator[None]:
    """A JWKS lookup's failures as the 401s clients see."""
    try:
        yield
    except UnknownKey:
        raise _invalid() from None
    except KeysUnavailable:
        raise _keys_unavailable() from None


def _user_id(value: Any) -> int:
    """The claim as a user id: an integer, or its decimal text (never a bool or a float)."""
    if isinstance(value, bool) or not isinstance(value, int | str):
        raise ValueError("the user id claim must be an integer or its decimal text")
    return int(value)


class TokenVerifier:
    def __init__(self, settings: Settings, cache_size: int = 16384) -> None:
        self._secret = settings.jwt_secret.get_secret_value()
        self._algorithm = settings.jwt_algorithm
        self._issuer = settings.jwt_issuer
        self._audience = settings.jwt_audience
        self._leeway = settings.jwt_leeway_seconds
        self._user_claim = settings.jwt_user_id_claim
        self._required = list(dict.fromkeys(["exp", "sub", "iss", "aud", self._user_claim]))
        self._ttl = settings.jwt_ttl_seconds
        self.jwks: JwksClient | None = None
        if settings.jwt_jwks_url is not None:
            self.jwks = JwksClient(
                settings.jwt_jwks_url,
                settings.jwt_algorithm,
                cache_seconds=settings.jwt_jwks_cache_seconds,
                min_refetch_seconds=settings.jwt_jwks_min_refetch_seconds,
            )
        # token -> (viewer, kid of the key that verified it; None for HS*)
        self._cache: OrderedDict[str, tuple[Viewer, str | None]] = OrderedDict()
        self._cache_size = cache_size

    def issue(self, user_id: int, ttl_seconds: int | None = None) -> str:
        """A token for `user_id` (development and tests; production tokens come from your identity provider)."""
        if self.jwks is not None:
            raise RuntimeError("with JWT_JWKS_URL set, tokens come from the identity provider, not `issue`")
        now = int(time.time())
        claims = {
            "sub": str(user_id),
            "iss": self._issuer,
            "aud": self._audience,
            "iat": now,
            "nbf": now,
            "exp": now + (ttl_seconds or self._ttl),
        }
        if self._user_claim != "sub":
            claims[self._user_claim] = user_id
        return jwt.encode(claims, self._secret, algorithm=self._algorithm)

    async def authenticate(self, header: str | None) -> Viewer | None:
        """None for an anonymous request; BffError(UNAUTHENTICATED) for a bad header or token.

        May wait for a JWKS fetch (an unknown `kid`), bounded by bff/jwks.py's timeout.
        """
        token = self._bearer(header)
        if token is None:
            return None
        found = self._without_key_lookup(token)
        if isinstance(found, Viewer):
            return found
        assert self.jwks is not None  # a kid is only returned in JWKS mode
        with _key_errors():
            key = await self.jwks.key(found)
        return self._decode(token, key, found)

    def verify(self, token: str) -> Viewer:
        """The synchronous check: HS*, or a JWKS key already cached (it never fetches; prefer `authenticate`)."""
        found = self._without_key_lookup(token)
        if isinstance(found, Viewer):
            return found
        assert self.jwks is not None  # a kid is only returned in JWKS mode
        with _key_errors():
            key = self.jwks.cached_key(found)
        return self._decode(token, key, found)

    def from_authorization(self, header: str | None) -> Viewer | None:
        """`authenticate` without network: for HS* (or keys already cached)."""
        token = self._bearer(header)
        return None if token is None else self.verify(token)

    async def aclose(self) -> None:
        if self.jwks is not None:
            await self.jwks.aclose()

    # -- steps -----------------------------------------------------------------------------

    @staticmethod
    def _bearer(header: str | None) -> str | None:
        if not header:
            return None
        scheme, _, token = header.strip().partition(" ")
        if scheme.lower() != "bearer" or not token.strip():
            raise BffError(
                ErrorCode.UNAUTHENTICATED, "Use `Authorization: Bearer <token>`", reason="invalid_token"
            )
        return token.strip()

    def _cached(self, token: str) -> Viewer | None:
        entry = self._cache.get(token)
        if entry is None:
            return None
        viewer, kid = entry
        withdrawn = kid is not None and self.jwks is not None and not self.jwks.known(kid)
        if viewer.expires_at + self._leeway > time.time() and not withdrawn:
            self._cache.move_to_end(token)
            return viewer
        del self._cache[token]
        return None

    def _without_key_lookup(self, token: str) -> Viewer | str:
        """The viewer when no JWKS key is needed (verified before, or HS*); else the token's `kid`."""
        cached = self._cached(token)
        if cached is not None:
            return cached
        if self.jwks is None:
            return self._decode(token, self._secret, None)
        return self._kid(token)

    def _kid(self, token: str) -> str:
        """The header's `kid`, once its `alg` is the pinned one (no key lookup, no fetch otherwise)."""
        try:
            header = jwt.get_unverified_header(token)
        except jwt.InvalidTokenError:
            raise _invalid() from None
        kid = header.get("kid")
        if header.get("alg") != self._algorithm or not isinstance(kid, str) or not kid:
            raise _invalid()
        return kid

    def _decode(self, token: str, key: Any, kid: str | None) -> Viewer:
        try:
            claims = jwt.decode(
                token,
                key,
                algorithms=[self._algorithm],
                issuer=self._issuer,
                audience=self._audience,
                leeway=self._leeway,
                options={"require": self._required},
            )
            user_id = _user_id(claims[self._user_claim])
            if not 0 < user_id <= MAX_USER_ID:
                raise ValueError("sub must be a user id in the database's range")
        except jwt.ExpiredSignatureError as exc:
            raise BffError(
                ErrorCode.UNAUTHENTICATED, "The token has expired", reason="token_expired"
            ) from exc
        except (jwt.InvalidTokenError, ValueError, TypeError) as exc:
            raise _invalid() from exc
        viewer = Viewer(user_id=user_id, expires_at=float(claims["exp"]))
        self._cache[token] = (viewer, kid)
        if len(self._cache) > self._cache_size:
            self._cache.popitem(last=False)
        return viewer
