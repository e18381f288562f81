"""Production JWT: RS256/ES256 tokens checked with keys from a JWKS URL, and each classic attack refused.

A real JWKS server runs on 127.0.0.1 (http.server in a thread) with RSA and EC keys made here,
and counts the requests it gets: refetch policy is asserted by counting, not timing. Requests go
through the whole app (httpx over ASGI, SQLite), one case over WebSocket (starlette TestClient).
"""

from __future__ import annotations

import asyncio
import base64
import hashlib
import hmac
import json
import shutil
import threading
import time
from collections.abc import AsyncIterator, Callable, Iterator
from contextlib import asynccontextmanager
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path
from typing import Any

import httpx
import jwt
import pytest
from asgi_lifespan import LifespanManager
from cryptography.hazmat.primitives import serialization
from cryptography.hazmat.primitives.asymmetric import ec, rsa
from jwt.algorithms import ECAlgorithm, RSAAlgorithm
from pydantic import ValidationError
from starlette.testclient import TestClient
from starlette.websockets import WebSocketDisconnect

from bff.app import create_app
from bff.auth import TokenVerifier
from bff.config import Settings, load_settings
from bff.jwks import JwksClient, UnknownKey
from schema.relay import to_global_id
from tests.servers import free_port

pytestmark = pytest.mark.timeout(60)

ISSUER = "https://idp.test/"
AUDIENCE = "bff-mobile"
VIEWER = "{ viewer { id } }"
GRAPHQL_RESPONSE = "application/graphql-response+json"


# -- keys and tokens ----------------------------------------------------------------------------


class Key:
    """A signing key of the identity provider: private half here, public half in the JWKS."""

    def __init__(self, kid: str, algorithm: str) -> None:
        self.kid, self.algorithm = kid, algorithm
        if algorithm.startswith("RS"):
            self.private: Any = rsa.generate_private_key(public_exponent=65537, key_size=2048)
            public = RSAAlgorithm.to_jwk(self.private.public_key(), as_dict=True)
        else:
            self.private = ec.generate_private_key(ec.SECP256R1())
            public = ECAlgorithm.to_jwk(self.private.public_key(), as_dict=True)
        self.jwk: dict[str, Any] = {**public, "kid": kid, "alg": algorithm, "use": "sig"}

    def public_pem(self) -> bytes:
        return bytes(
            self.private.public_key().public_bytes(
                serialization.Encoding.PEM, serialization.PublicFormat.SubjectPublicKeyInfo
            )
        )

    def sign(self, user_id: int | None = 1, **overrides: Any) -> str:
        return jwt.encode(
            claims(user_id, **overrides), self.private, self.algorithm, headers={"kid": self.kid}
        )


def claims(user_id: int | None = 1, **overrides: Any) -> dict[str, Any]:
    now = int(time.time())
    out: dict[str, Any] = {
        "sub": str(user_id),
        "iss": ISSUER,
        "aud": AUDIENCE,
        "iat": now,
        "nbf": now,
        "exp": now + 600,
    }
    if user_id is None:
        del out["sub"]
    out.update(overrides)
    return {k: v for k, v in out.items() if v is not None}


def b64url(raw: bytes) -> str:
    return base64.urlsafe_b64encode(raw).rstrip(b"=").decode()


def handmade(header: dict[str, Any], payload: dict[str, Any], sign: Callable[[bytes], bytes]) -> str:
    """A token assembled by hand, as an attacker would (PyJWT refuses to make the bad ones)."""
    signing_input = f"{b64url(json.dumps(header).encode())}.{b64url(json.dumps(payload).encode())}"
    return f"{signing_input}.{b64url(sign(signing_input.encode()))}"


@pytest.fixture(scope="module")
def rsa_key() -> Key:
    return Key("rsa-1", "RS256")


@pytest.fixture(scope="module")
def rsa_key_2() -> Key:
    return Key("rsa-2", "RS256")


@pytest.fixture(scope="module")
def ec_key() -> Key:
    return Key("ec-1", "ES256")


# -- the identity provider's JWKS endpoint ------------------------------------------------------


class JwksServer:
    """GET anything -> {"keys": [...]}; `status` other than 200 plays a failing provider."""

    def __init__(self) -> None:
        self.port = free_port()
        self.keys: list[dict[str, Any]] = []
        self.status = 200
        self.hits = 0
        self._lock = threading.Lock()
        self._httpd: ThreadingHTTPServer | None = None
        self._thread: threading.Thread | None = None

    @property
    def url(self) -> str:
        return f"http://127.0.0.1:{self.port}/.well-known/jwks.json"

    def publish(self, *keys: Key) -> None:
        self.keys = [key.jwk for key in keys]

    def start(self) -> None:
        server = self

        class Handler(BaseHTTPRequestHandler):
            def do_GET(self) -> None:
                with server._lock:
                    server.hits += 1
                body = json.dumps({"keys": server.keys}).encode()
                self.send_response(server.status)
                self.send_header("content-type", "application/json")
                self.send_header("content-length", str(len(body)))
                self.end_headers()
                self.wfile.write(body)

            def log_message(self, format: str, *args: Any) -> None:
                pass

        self._httpd = ThreadingHTTPServer(("127.0.0.1", self.port), Handler)
        self._thread = threading.Thread(target=self._httpd.serve_forever, daemon=True)
        self._thread.start()

    def stop(self) -> None:
        if self._httpd is not None and self._thread is not None:
            self._httpd.shutdown()
            self._httpd.server_close()
            self._thread.join(5)
            self._httpd = self._thread = None


@pytest.fixture
def jwks(rsa_key: Key, ec_key: Key) -> Iterator[JwksServer]:
    server = JwksServer()
    server.publish(rsa_key, ec_key)
    server.start()
    yield server
    server.stop()


# -- the app --------------------------------------------------------------------------------------


@pytest.fixture
def sqlite_url(sqlite_template: Path, tmp_path: Path) -> str:
    """The seeded embedded database only: nothing here depends on the database engine."""
    path = tmp_path / "bff.db"
    shutil.copy(sqlite_template, path)
    return f"sqlite:///{path}"


@pytest.fixture
def settings_for(sqlite_url: str, jwks: JwksServer) -> Callable[..., Settings]:
    def make(**overrides: Any) -> Settings:
        values: dict[str, Any] = {
            "database_url": sqlite_url,
            "bff_env": "test",
            "jwt_jwks_url": jwks.url,
            "jwt_algorithm": "RS256",
            "jwt_issuer": ISSUER,
            "jwt_audience": AUDIENCE,
            "jwt_leeway_seconds": 30,
        }
        values.update(overrides)
        return load_settings(**values)

    return make


class Bff:
    def __init__(self, client: httpx.AsyncClient) -> None:
        self.client = client

    async def viewer(self, token: str) -> httpx.Response:
        return await self.client.post(
            "/graphql",
            json={"query": VIEWER},
            headers={"authorization": f"Bearer {token}", "accept": GRAPHQL_RESPONSE},
        )

    async def viewer_id(self, token: str) -> str:
        response = await self.viewer(token)
        assert response.status_code == 200, response.text
        return str(response.json()["data"]["viewer"]["id"])

    async def refusal(self, token: str) -> dict[str, Any]:
        """401, UNAUTHENTICATED, a Bearer challenge: returns the error's extensions."""
        response = await self.viewer(token)
        assert response.status_code == 401, response.text
        assert response.headers["www-authenticate"].startswith("Bearer")
        [error] = response.json()["errors"]
        assert error["extensions"]["code"] == "UNAUTHENTICATED", error
        return dict(error["extensions"])


@asynccontextmanager
async def serve(settings: Settings) -> AsyncIterator[Bff]:
    application = create_app(settings)
    async with (
        LifespanManager(application),
        httpx.AsyncClient(transport=httpx.ASGITransport(application), base_url="http://bff.test") as client,
    ):
        yield Bff(client)


async def until(condition: Callable[[], Any], timeout: float = 10) -> None:
    """Wait for an async condition under a deadline."""
    async with asyncio.timeout(timeout):
        while not await condition():
            await asyncio.sleep(0.05)


# -- the happy paths ----------------------------------------------------------------------------


async def test_a_valid_rs256_token_signs_in_its_user_with_one_jwks_fetch(
    settings_for: Callable[..., Settings], jwks: JwksServer, rsa_key: Key
) -> None:
    async with serve(settings_for()) as bff:
        assert await bff.viewer_id(rsa_key.sign(1)) == to_global_id("User", 1)
        assert await bff.viewer_id(rsa_key.sign(2)) == to_global_id("User", 2)
    assert jwks.hits == 1  # the second token's key came from the cache


@pytest.mark.parametrize(
    ("value", "signed_in"),
    [(42, True), ("42", True), (True, False), (4.2, False), ("auth0|42", False), (None, False)],
)
async def test_a_custom_user_id_claim_signs_in_providers_with_opaque_subjects(
    settings_for: Callable[..., Settings], rsa_key: Key, value: Any, signed_in: bool
) -> None:
    claim = "https://bff.example/user_id"
    async with serve(settings_for(jwt_user_id_claim=claim)) as bff:
        token = rsa_key.sign(1, sub="auth0|6553f0a1", **{claim: value})
        if signed_in:
            assert await bff.viewer_id(token) == to_global_id("User", 42)
        else:
            assert (await bff.refusal(token))["reason"] == "invalid_token"


async def test_a_valid_es256_token_signs_in_with_the_es256_configuration(
    settings_for: Callable[..., Settings], jwks: JwksServer, ec_key: Key
) -> None:
    async with serve(settings_for(jwt_algorithm="ES256")) as bff:
        assert await bff.viewer_id(ec_key.sign(3)) == to_global_id("User", 3)


async def test_a_not_before_within_the_leeway_is_accepted(
    settings_for: Callable[..., Settings], rsa_key: Key
) -> None:
    now = int(time.time())
    async with serve(settings_for(jwt_leeway_seconds=30)) as bff:
        assert await bff.viewer_id(rsa_key.sign(1, nbf=now + 20, iat=now + 20)) == to_global_id("User", 1)
        assert await bff.viewer_id(rsa_key.sign(2, exp=now - 10)) == to_global_id("User", 2)


async def test_a_rotated_key_is_fetched_once_and_the_withdrawn_one_serves_until_the_refetch(
    settings_for: Callable[..., Settings], jwks: JwksServer, rsa_key: Key, rsa_key_2: Key
) -> None:
    # given a running app that knows rsa-1
    async with serve(settings_for(jwt_jwks_min_refetch_seconds=0)) as bff:
        earlier = rsa_key.sign(1)
        assert await bff.viewer_id(earlier) == to_global_id("User", 1)
        assert jwks.hits == 1
        # when the provider rotates to rsa-2 only
        jwks.publish(rsa_key_2)
        # then rsa-1 keeps verifying from the cache until something makes us refetch
        assert await bff.viewer_id(rsa_key.sign(2)) == to_global_id("User", 2)
        assert jwks.hits == 1
        # and the first rsa-2 token is accepted after exactly one refetch, no restart
        assert await bff.viewer_id(rsa_key_2.sign(3)) == to_global_id("User", 3)
        assert await bff.viewer_id(rsa_key_2.sign(4)) == to_global_id("User", 4)
        assert jwks.hits == 2
        # and rsa-1, withdrawn by that refetch, no longer verifies: not even an already-verified token
        assert (await bff.refusal(rsa_key.sign(5)))["reason"] == "invalid_token"
        assert (await bff.refusal(earlier))["reason"] == "invalid_token"


async def test_the_cached_keys_keep_serving_while_a_refresh_fails(
    settings_for: Callable[..., Settings], jwks: JwksServer, rsa_key: Key
) -> None:
    async with serve(settings_for(jwt_jwks_cache_seconds=0.01, jwt_jwks_min_refetch_seconds=0)) as bff:
        assert await bff.viewer_id(rsa_key.sign(1)) == to_global_id("User", 1)
        jwks.status = 500  # the provider breaks once our keys are stale
        before = jwks.hits

        async def refreshed_in_vain() -> bool:
            assert await bff.viewer_id(rsa_key.sign(2)) == to_global_id("User", 2)
            return jwks.hits > before + 1  # background refreshes were tried, and failed

        await until(refreshed_in_vain)


# -- attacks --------------------------------------------------------------------------------------


def attacks(rsa_key: Key, ec_key: Key, other_rsa: Key) -> dict[str, str]:
    """Tokens an attacker can make for the RS256 configuration whose JWKS publishes rsa_key and ec_key."""
    payload = claims(1)
    hs256 = {"alg": "HS256", "typ": "JWT", "kid": rsa_key.kid}
    return {
        "alg none": handmade({"alg": "none", "kid": rsa_key.kid}, payload, lambda _: b""),
        "alg None": handmade({"alg": "None", "kid": rsa_key.kid}, payload, lambda _: b""),
        # The classic confusion: the public key (PEM, published) as the HMAC secret.
        "HS256 with the public key PEM as secret": handmade(
            hs256, payload, lambda data: hmac.new(rsa_key.public_pem(), data, hashlib.sha256).digest()
        ),
        "HS256 with the JWK's modulus as secret": handmade(
            hs256,
            payload,
            lambda data: hmac.new(rsa_key.jwk["n"].encode(), data, hashlib.sha256).digest(),
        ),
        "ES256 when RS256 is configured": ec_key.sign(1),
        "RS512 with the right key": jwt.encode(
            payload, rsa_key.private, "RS512", headers={"kid": rsa_key.kid}
        ),
        "signed by a key not in the JWKS, claiming its kid": jwt.encode(
            payload, other_rsa.private, "RS256", headers={"kid": rsa_key.kid}
        ),
        "tampered payload": tamper(rsa_key.sign(1)),
        "no kid": jwt.encode(payload, rsa_key.private, "RS256"),
    }


def tamper(token: str) -> str:
    header, _, signature = token.split(".")
    return f"{header}.{b64url(json.dumps(claims(2)).encode())}.{signature}"


async def test_each_attack_token_is_refused_with_401(
    settings_for: Callable[..., Settings], jwks: JwksServer, rsa_key: Key, ec_key: Key, rsa_key_2: Key
) -> None:
    async with serve(settings_for()) as bff:
        for name, token in attacks(rsa_key, ec_key, rsa_key_2).items():
            extensions = await bff.refusal(token)
            assert extensions["reason"] == "invalid_token", name
        # a wrong `alg` is refused before any key lookup; only the key-claiming forgeries fetched, once
        assert jwks.hits == 1


async def test_an_rs256_token_is_refused_when_es256_is_configured(
    settings_for: Callable[..., Settings], jwks: JwksServer, rsa_key: Key, ec_key: Key
) -> None:
    async with serve(settings_for(jwt_algorithm="ES256")) as bff:
        await bff.refusal(rsa_key.sign(1))
        assert jwks.hits == 0  # refused on its header alone
        # nor is the RSA key in the JWKS usable with an ES256 header: its kty does not fit
        forged = handmade(
            {"alg": "ES256", "kid": rsa_key.kid},
            claims(1),
            lambda data: b"\x00" * 64,
        )
        await bff.refusal(forged)
        assert await bff.viewer_id(ec_key.sign(1)) == to_global_id("User", 1)


@pytest.mark.parametrize(
    ("case", "overrides", "reason"),
    [
        ("expired", {"exp": -120, "iat": -700, "nbf": -700}, "token_expired"),
        ("not yet valid beyond the leeway", {"nbf": 120, "exp": 900}, "invalid_token"),
        ("issued in the future beyond the leeway", {"iat": 120}, "invalid_token"),
        ("wrong issuer", {"iss": "https://evil.test/"}, "invalid_token"),
        ("wrong audience", {"aud": "someone-else"}, "invalid_token"),
        ("missing subject", {"sub": None}, "invalid_token"),
        ("missing expiry", {"exp": None}, "invalid_token"),
        ("missing issuer", {"iss": None}, "invalid_token"),
        ("missing audience", {"aud": None}, "invalid_token"),
        ("subject not a user id", {"sub": "auth0|abc"}, "invalid_token"),
    ],
)
async def test_a_correctly_signed_token_with_bad_claims_is_refused(
    settings_for: Callable[..., Settings], rsa_key: Key, case: str, overrides: dict[str, Any], reason: str
) -> None:
    now = int(time.time())
    relative = {"exp", "iat", "nbf"}
    values = {k: (now + v if k in relative and v is not None else v) for k, v in overrides.items()}
    async with serve(settings_for(jwt_leeway_seconds=30)) as bff:
        assert (await bff.refusal(rsa_key.sign(1, **values)))["reason"] == reason, case


async def test_forged_kids_are_refused_with_at_most_one_jwks_fetch_per_interval(
    settings_for: Callable[..., Settings], jwks: JwksServer, rsa_key: Key
) -> None:
    async with serve(settings_for(jwt_jwks_min_refetch_seconds=10)) as bff:
        forged = [
            jwt.encode(claims(1), rsa_key.private, "RS256", headers={"kid": f"forged-{i}"}) for i in range(20)
        ]
        # when 20 tokens with unknown kids arrive at once
        refusals = await asyncio.gather(*(bff.refusal(token) for token in forged))
        # then all are refused, and the misses shared one fetch
        assert {r["reason"] for r in refusals} == {"invalid_token"}
        assert jwks.hits == 1
        # and more forged kids within the interval fetch nothing
        for token in forged:
            await bff.refusal(token)
        assert jwks.hits == 1
        # while genuine tokens keep working from the cache
        assert await bff.viewer_id(rsa_key.sign(1)) == to_global_id("User", 1)
        assert jwks.hits == 1


async def test_a_jwks_server_down_at_startup_gives_a_retryable_401_and_service_recovers(
    settings_for: Callable[..., Settings], jwks: JwksServer, rsa_key: Key
) -> None:
    # given the provider unreachable (connection refused) when the app starts
    jwks.stop()
    async with serve(settings_for(jwt_jwks_min_refetch_seconds=0.1)) as bff:
        token = rsa_key.sign(1)
        # then a token gets a quick 401 that says to retry, not a 500 or a hang
        started = time.monotonic()
        extensions = await bff.refusal(token)
        assert time.monotonic() - started < 5
        assert extensions["reason"] == "keys_unavailable"
        assert extensions["retryable"] is True
        # and anonymous requests are served meanwhile
        response = await bff.client.post("/graphql", json={"query": VIEWER})
        assert response.status_code == 200 and response.json()["data"] == {"viewer": None}
        # and a failing (500) provider is the same
        jwks.status = 500
        jwks.start()
        assert (await bff.refusal(token))["reason"] == "keys_unavailable"

        # when it comes back, the same token is accepted without a restart
        jwks.status = 200

        async def accepted() -> bool:
            return (await bff.viewer(token)).status_code == 200

        await until(accepted)
        assert await bff.viewer_id(token) == to_global_id("User", 1)


# -- WebSocket ------------------------------------------------------------------------------------


def test_a_socket_with_a_forged_token_is_closed_with_4403_and_a_valid_one_is_acknowledged(
    settings_for: Callable[..., Settings], rsa_key: Key, rsa_key_2: Key
) -> None:
    forged = jwt.encode(claims(1), rsa_key_2.private, "RS256", headers={"kid": rsa_key.kid})
    with TestClient(create_app(settings_for())) as client:
        with client.websocket_connect("/graphql", subprotocols=["graphql-transport-ws"]) as ws:
            ws.send_json({"type": "connection_init", "payload": {"authorization": f"Bearer {forged}"}})
            with pytest.raises(WebSocketDisconnect) as closed:
                ws.receive_json()
            assert closed.value.code == 4403
        with client.websocket_connect("/graphql", subprotocols=["graphql-transport-ws"]) as ws:
            ws.send_json(
                {"type": "connection_init", "payload": {"authorization": f"Bearer {rsa_key.sign(1)}"}}
            )
            assert ws.receive_json()["type"] == "connection_ack"


# -- configuration ----------------------------------------------------------------------------------


def test_a_jwks_url_with_an_hs_algorithm_is_refused_at_startup() -> None:
    with pytest.raises(ValidationError, match="asymmetric"):
        load_settings(jwt_jwks_url="https://idp.test/jwks.json", jwt_algorithm="HS256")


def test_an_asymmetric_algorithm_without_a_jwks_url_is_refused_at_startup() -> None:
    with pytest.raises(ValidationError, match="needs JWT_JWKS_URL"):
        load_settings(jwt_algorithm="RS256")


def test_production_with_a_jwks_url_needs_no_jwt_secret_but_without_one_does() -> None:
    settings = load_settings(
        bff_env="production", jwt_jwks_url="https://idp.test/jwks.json", jwt_algorithm="ES256"
    )
    assert settings.jwt_algorithm == "ES256"
    with pytest.raises(RuntimeError, match="identity provider"):
        TokenVerifier(settings).issue(1)
    with pytest.raises(ValidationError, match="JWT_SECRET must be set"):
        load_settings(bff_env="production")


async def test_concurrent_misses_share_one_fetch_even_without_a_refetch_interval(
    jwks: JwksServer, rsa_key: Key
) -> None:
    client = JwksClient(jwks.url, "RS256", min_refetch_seconds=0)
    try:
        found = await asyncio.gather(
            *(client.key(f"unknown-{i}") for i in range(20)), client.key(rsa_key.kid), return_exceptions=True
        )
    finally:
        await client.aclose()
    assert all(isinstance(result, UnknownKey) for result in found[:-1])
    assert not isinstance(found[-1], BaseException)
    assert jwks.hits == 1


def test_development_tokens_carry_the_custom_user_id_claim(sqlite_url: str) -> None:
    verifier = TokenVerifier(load_settings(database_url=sqlite_url, bff_env="test", jwt_user_id_claim="uid"))
    token = verifier.issue(7)
    assert jwt.decode(token, options={"verify_signature": False})["uid"] == 7
    assert verifier.verify(token).user_id == 7
