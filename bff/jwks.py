"""Public keys from the identity provider's JWKS URL, looked up by a token's `kid`.

Keys are cached. A known `kid` never waits on the network: when the cache is older than
`JWT_JWKS_CACHE_SECONDS` it is refreshed in the background and the old keys serve meanwhile
(and keep serving if the refresh fails). An unknown `kid` (a rotation) waits for a refetch,
but at most one fetch starts per `JWT_JWKS_MIN_REFETCH_SECONDS`, however many `kid`s forged
tokens claim, and concurrent misses share that one fetch. A refetch replaces the whole set,
so a key the provider withdrew stops verifying. Only keys that fit the pinned algorithm are
kept: `kty` RSA for RS*, EC on the algorithm's curve for ES*, never `use: enc` or another `alg`.
"""

from __future__ import annotations

import asyncio
import json
import time
from typing import Any

import httpx
import jwt
import structlog

log = structlog.get_logger("bff.jwks")

FETCH_TIMEOUT_SECONDS = 5.0  # the whole fetch, connect to last byte
MAX_DOCUMENT_BYTES = 256 * 1024
MAX_KEYS = 64
MAX_KID_CHARS = 256
_CURVES = {"ES256": "P-256", "ES384": "P-384", "ES512": "P-521"}


class UnknownKey(Exception):
    """The JWKS, fetched successfully, has no key with this `kid`: the token is invalid."""


class KeysUnavailable(Exception):
    """The JWKS could not be fetched, so a `kid` not already cached cannot be checked: retry later."""


class JwksClient:
    """Owner of the key cache and of the one fetch that may be running (`aclose` cancels it)."""

    def __init__(
        self, url: str, algorithm: str, *, cache_seconds: float = 300, min_refetch_seconds: float = 10
    ) -> None:
        if algorithm[:2] not in ("RS", "ES"):
            raise ValueError(f"a JWKS verifies RS* or ES* tokens, not {algorithm}")
        self.url = url
        self.algorithm = algorithm
        self._cache_seconds = cache_seconds
        self._min_refetch_seconds = min_refetch_seconds
        self._keys: dict[str, Any] = {}  # kid -> cryptography public key
        self._fetched_at: float | None = None  # monotonic time of the last successful fetch
        self._attempted_at: float | None = None  # ... of the last attempt, successful or not
        self._failed = False  # did the last attempt fail?
        self._fetch_task: asyncio.Task[None] | None = None
        self.fetches = 0  # attempts so far (logs, tests)

    def known(self, kid: str) -> bool:
        return kid in self._keys

    def cached_key(self, kid: str) -> Any:
        """The key for `kid` if cached, without any network; raises like `key` otherwise."""
        key = self._keys.get(kid)
        if key is None:
            raise KeysUnavailable() if self._failed or self._fetched_at is None else UnknownKey()
        return key

    async def key(self, kid: str) -> Any:
        """The public key for `kid`: UnknownKey if the provider has none, KeysUnavailable if unreachable."""
        key = self._keys.get(kid)
        if key is not None:
            if self._fetched_at is not None and time.monotonic() - self._fetched_at >= self._cache_seconds:
                self._start_fetch()  # refresh in the background; this request uses the cached key
            return key
        self._start_fetch()
        if self._fetch_task is not None:
            # Shielded: a request that gives up does not cancel the fetch others are waiting on.
            await asyncio.shield(self._fetch_task)
        return self.cached_key(kid)

    async def aclose(self) -> None:
        task, self._fetch_task = self._fetch_task, None
        if task is not None:
            task.cancel()
            await asyncio.gather(task, return_exceptions=True)

    def _start_fetch(self) -> None:
        """Start a fetch unless one is running or one started less than the minimum interval ago."""
        if self._fetch_task is not None and not self._fetch_task.done():
            return
        now = time.monotonic()
        if self._attempted_at is not None and now - self._attempted_at < self._min_refetch_seconds:
            return
        self._attempted_at = now
        self.fetches += 1
        self._fetch_task = asyncio.create_task(self._fetch(), name="bff-jwks-fetch")

    async def _fetch(self) -> None:
        try:
            async with asyncio.timeout(FETCH_TIMEOUT_SECONDS):
                keys = self._parse(json.loads(await self._download()))
        except (httpx.HTTPError, OSError, TimeoutError, ValueError, TypeError) as error:
            self._failed = True
            log.warning("jwks_fetch_failed", url=self.url, error=repr(error), stale_keys_kept=len(self._keys))
            return
        self._keys, self._fetched_at, self._failed = keys, time.monotonic(), False
        log.info("jwks_fetched", url=self.url, kids=sorted(keys))

    async def _download(self) -> bytes:
        async with (
            httpx.AsyncClient(timeout=FETCH_TIMEOUT_SECONDS, follow_redirects=False) as client,
            client.stream("GET", self.url, headers={"accept": "application/json"}) as response,
        ):
            response.raise_for_status()
            body = bytearray()
            async for chunk in response.aiter_bytes():
                body += chunk
                if len(body) > MAX_DOCUMENT_BYTES:
                    raise ValueError(f"JWKS document over {MAX_DOCUMENT_BYTES} bytes")
            return bytes(body)

    def _parse(self, document: Any) -> dict[str, Any]:
        """kid -> key for every key that fits the pinned algorithm; ValueError if none does."""
        if not isinstance(document, dict) or not isinstance(document.get("keys"), list):
            raise ValueError("not a JWKS document (no `keys` list)")
        keys: dict[str, Any] = {}
        for jwk in document["keys"][:MAX_KEYS]:
            if not isinstance(jwk, dict) or not self._fits(jwk):
                continue
            try:
                keys[jwk["kid"]] = jwt.PyJWK(jwk, algorithm=self.algorithm).key
            except (jwt.PyJWTError, ValueError, TypeError, KeyError) as error:
                log.warning("jwks_key_skipped", kid=jwk["kid"], error=repr(error))
        if not keys:
            raise ValueError(f"the JWKS has no usable {self.algorithm} key")
        return keys

    def _fits(self, jwk: dict[str, Any]) -> bool:
        kid = jwk.get("kid")
        if not isinstance(kid, str) or not 0 < len(kid) <= MAX_KID_CHARS:
            return False
        if jwk.get("use", "sig") != "sig" or jwk.get("alg", self.algorithm) != self.algorithm:
            return False
        if "d" in jwk:  # a private key published by mistake: not something to verify with
            return False
        if self.algorithm.startswith("RS"):
            return jwk.get("kty") == "RSA"
        return jwk.get("kty") == "EC" and jwk.get("crv") == _CURVES[self.algorithm]
