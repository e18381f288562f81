"""Hostile input gets a clear refusal with a stable `extensions.code`: never a 500, a hang or a write.

Each case goes through the in-process app (SQLite and Postgres). Every response is checked for
a JSON body whose errors all carry a code, for the absence of stack traces and internal text,
and for a bounded time; the hostile writes are followed by a count of the rows they target.
"""

from __future__ import annotations

import base64
import json
import time
import warnings
from collections.abc import AsyncIterator, Callable
from typing import Any

import httpx
import jwt
import pytest
from asgi_lifespan import LifespanManager

from bff.app import create_app
from bff.config import Settings
from bff.db import Database

pytestmark = pytest.mark.timeout(120)

GRAPHQL_RESPONSE = "application/graphql-response+json"
# A request of any of these cases is answered well within this many seconds (the limits stop
# the work early); the pytest timeout above catches a real hang.
MAX_SECONDS = 10.0
# Text that must never reach a client: tracebacks, exception reprs, SQL, file paths.
LEAKS = (
    "Traceback",
    'File "/',
    "site-packages",
    '.py", line',
    "SELECT ",
    "INSERT INTO",
    "asyncpg",
    "sqlite3",
)

SEND_MESSAGE = (
    "mutation Send($roomId: ID!, $body: String!, $cid: String!) "
    "{ sendMessage(roomId: $roomId, body: $body, clientMessageId: $cid) { id body } }"
)
LIKE_POST = "mutation Like($postId: ID!) { likePost(postId: $postId) { id likeCount } }"
FEED = "query Feed($first: Int, $after: String) { feed(first: $first, after: $after) { edges { cursor } } }"


def b64(text: str) -> str:
    return base64.b64encode(text.encode()).decode()


def b64url(data: dict[str, Any]) -> str:
    return base64.urlsafe_b64encode(json.dumps(data).encode()).rstrip(b"=").decode()


def codes(response: httpx.Response) -> list[str]:
    return [e["extensions"]["code"] for e in response.json().get("errors", [])]


def check_clean(response: httpx.Response) -> dict[str, Any]:
    """Not a 500; a JSON body whose every error has a code and no internal text."""
    assert response.status_code < 500, response.text[:2000]
    assert response.headers["content-type"].startswith(
        ("application/graphql-response+json", "application/json")
    )
    body: dict[str, Any] = response.json()
    for error in body.get("errors", []):
        assert error["extensions"]["code"] != "INTERNAL_SERVER_ERROR", error
        assert "debug" not in error["extensions"], error
        assert isinstance(error["message"], str) and len(error["message"]) < 1000, error["message"][:200]
    for leak in LEAKS:
        assert leak not in response.text, f"{leak!r} in {response.text[:2000]}"
    return body


def refused(response: httpx.Response, status: int, code: str) -> dict[str, Any]:
    """A request error: `status`, no `data` entry, and `code` among the errors."""
    body = check_clean(response)
    assert response.status_code == status, response.text[:2000]
    assert "data" not in body, body
    assert code in codes(response), response.text[:2000]
    return body


def field_error(response: httpx.Response, code: str) -> dict[str, Any]:
    """A well-formed request whose field failed: 200, a `data` entry, and `code` among the errors."""
    body = check_clean(response)
    assert response.status_code == 200, response.text[:2000]
    assert "data" in body, body
    assert codes(response) and set(codes(response)) == {code}, response.text[:2000]
    return body


@pytest.fixture
async def timed(client: httpx.AsyncClient) -> AsyncIterator[Callable[..., Any]]:
    """client.request, checking that each answer comes back in bounded time."""

    async def request(method: str, url: str = "/graphql", **kwargs: Any) -> httpx.Response:
        headers = {"accept": GRAPHQL_RESPONSE, **kwargs.pop("headers", {})}
        started = time.perf_counter()
        response = await client.request(method, url, headers=headers, **kwargs)
        elapsed = time.perf_counter() - started
        assert elapsed < MAX_SECONDS, f"{method} took {elapsed:.1f}s"
        return response

    yield request


async def table_counts(database_url: str) -> dict[str, int]:
    db = Database(database_url)
    await db.connect()
    try:
        return {t: int(await db.fetch_val(f"SELECT count(*) FROM {t}")) for t in ("messages", "likes")}
    finally:
        await db.disconnect()


async def member_and_unliked_post(database_url: str) -> tuple[int, int, int]:
    """(user, room the user is a member of, post the user does not like)."""
    db = Database(database_url)
    await db.connect()
    try:
        row = await db.fetch_one(
            "SELECT user_id, room_id FROM room_members ORDER BY room_id, user_id LIMIT 1"
        )
        assert row is not None
        user, room = int(row["user_id"]), int(row["room_id"])
        post = await db.fetch_val(
            "SELECT min(id) FROM posts WHERE id NOT IN (SELECT post_id FROM likes WHERE user_id = :u)",
            {"u": user},
        )
        return user, room, int(post)
    finally:
        await db.disconnect()


# -- the body and the request ------------------------------------------------------------------


async def test_malformed_json_is_400(timed: Callable[..., Any]) -> None:
    for body in (b'{ "query": "{ __typename }"', b"{'query': 1}", b"\xff\xfe\x00", b"", b"[}", b"nul"):
        response = await timed("POST", content=body, headers={"content-type": "application/json"})
        refused(response, 400, "BAD_REQUEST")


async def test_malformed_json_in_get_parameters_is_400(timed: Callable[..., Any]) -> None:
    for key in ("variables", "extensions"):
        response = await timed("GET", params={"query": "{ __typename }", key: "{not json"})
        refused(response, 400, "BAD_REQUEST")


async def test_deeply_nested_json_is_refused(timed: Callable[..., Any]) -> None:
    nested = "[" * 100_000 + "]" * 100_000
    body = '{"query": "{ __typename }", "variables": {"x": ' + nested + "}}"
    response = await timed("POST", content=body, headers={"content-type": "application/json"})
    refused(response, 400, "BAD_REQUEST")


async def test_wrong_shapes_are_400(timed: Callable[..., Any]) -> None:
    for payload in (
        {"query": 1},
        {"query": ""},
        {"query": "{ __typename }", "variables": "{}"},
        {"query": "{ __typename }", "variables": []},
        {"query": "{ __typename }", "operationName": 3},
        {"query": "{ __typename }", "extensions": "x"},
        "just a string",
        17,
    ):
        response = await timed("POST", json=payload)
        refused(response, 400, "BAD_REQUEST")


async def test_two_megabytes_of_variables_get_413(timed: Callable[..., Any], database_url: str) -> None:
    before = await table_counts(database_url)
    variables = {"roomId": "1", "body": "x" * (2 * 1024 * 1024), "cid": "big-1"}
    response = await timed("POST", json={"query": SEND_MESSAGE, "variables": variables})
    refused(response, 413, "PAYLOAD_TOO_LARGE")
    assert await table_counts(database_url) == before


async def test_oversized_body_without_content_length_gets_413(timed: Callable[..., Any]) -> None:
    """A chunked body is counted as it arrives: the limit holds without a Content-Length."""
    chunk = b" " * 65536

    async def body() -> AsyncIterator[bytes]:
        yield b'{"query": "{ __typename }", "variables": {"pad": "'
        for _ in range(40):  # 2.5 MB
            yield chunk
        yield b'"}}'

    response = await timed("POST", content=body(), headers={"content-type": "application/json"})
    assert "content-length" not in response.request.headers
    refused(response, 413, "PAYLOAD_TOO_LARGE")


async def test_one_megabyte_document(timed: Callable[..., Any]) -> None:
    document = "{ " + "__typename " * (1024 * 1024 // 11) + "}"
    # POSTed, it is over the body limit before it is a document.
    refused(await timed("POST", json={"query": document}), 413, "PAYLOAD_TOO_LARGE")
    # A GET's query string (clients and proxies cap URLs near 64 KB) is over the document limit.
    document = "{ " + "__typename " * 5_000 + "}"
    refused(await timed("GET", params={"query": document}), 400, "DOCUMENT_TOO_LARGE")


async def test_document_over_the_character_limit(timed: Callable[..., Any]) -> None:
    document = "{ " + "__typename " * 10_000 + "}"  # 110 KB: under the body limit
    refused(await timed("POST", json={"query": document}), 400, "DOCUMENT_TOO_LARGE")


async def test_document_over_the_token_limit(timed: Callable[..., Any]) -> None:
    document = "{" + "a " * 5_000 + "}"  # 10 KB, 5,000 tokens
    refused(await timed("POST", json={"query": document}), 400, "TOKEN_LIMIT_EXCEEDED")


async def test_batches_are_refused_without_running(timed: Callable[..., Any], database_url: str) -> None:
    before = await table_counts(database_url)
    batch = [
        {"query": SEND_MESSAGE, "variables": {"roomId": "1", "body": f"b{i}", "cid": f"batch-{i}"}}
        for i in range(200)
    ]
    refused(await timed("POST", json=batch), 400, "BATCHING_NOT_ENABLED")
    refused(await timed("POST", json=[{"query": "{ __typename }"}]), 400, "BATCHING_NOT_ENABLED")
    assert await table_counts(database_url) == before


async def test_other_methods_and_media_types(timed: Callable[..., Any]) -> None:
    response = await timed("PUT", json={"query": "{ __typename }"})
    refused(response, 405, "METHOD_NOT_ALLOWED")
    assert "POST" in response.headers["allow"]
    response = await timed(
        "POST",
        content=b"query=%7B__typename%7D",
        headers={"content-type": "application/x-www-form-urlencoded"},
    )
    refused(response, 415, "UNSUPPORTED_MEDIA_TYPE")
    response = await timed("POST", content=b"{ __typename }", headers={"content-type": "application/graphql"})
    refused(response, 415, "UNSUPPORTED_MEDIA_TYPE")
    response = await timed("POST", json={"query": "{ __typename }"}, headers={"accept": "text/plain"})
    assert response.status_code == 406
    assert codes(response) == ["BAD_REQUEST"]


# -- the document ------------------------------------------------------------------------------


def aliases_document(n: int) -> str:
    return "{ " + " ".join(f"a{i}: __typename" for i in range(n)) + " }"


async def test_a_thousand_aliases_are_refused(timed: Callable[..., Any]) -> None:
    # Written out, 1,000 aliases need 3,000 tokens: the token limit is the first to refuse them.
    refused(await timed("POST", json={"query": aliases_document(1000)}), 400, "TOKEN_LIMIT_EXCEEDED")
    # Multiplied through fragments (10 x 10 x 10), they fit in a few hundred tokens.
    ten = " ".join(f"a{i}: __typename" for i in range(10))
    document = (
        "query { games { ...F1000 } } "
        f"fragment F10 on User {{ {ten} }} "
        "fragment F100 on LeaderboardEntry { "
        + " ".join(f"b{i}: user {{ ...F10 }}" for i in range(10))
        + " } "
        "fragment F1000 on Game { " + " ".join(f"c{i}: leaderboard {{ ...F100 }}" for i in range(10)) + " }"
    )
    refused(await timed("POST", json={"query": document}), 400, "ALIAS_LIMIT_EXCEEDED")


async def test_aliases_over_the_limit_with_a_roomy_token_limit(
    make_settings: Callable[..., Settings],
) -> None:
    application = create_app(make_settings(max_tokens=50_000, max_document_chars=100_000))
    async with (
        LifespanManager(application),
        httpx.AsyncClient(transport=httpx.ASGITransport(application), base_url="http://bff.test") as c,
    ):
        response = await c.post(
            "/graphql", json={"query": aliases_document(1000)}, headers={"accept": GRAPHQL_RESPONSE}
        )
        refused(response, 400, "ALIAS_LIMIT_EXCEEDED")
        response = await c.post(
            "/graphql", json={"query": aliases_document(30)}, headers={"accept": GRAPHQL_RESPONSE}
        )
        assert response.status_code == 200 and "errors" not in response.json(), response.text


def nested(depth: int, leaf: str = "id") -> str:
    text = leaf
    for _ in range(depth):
        text = f"a {{ {text} }}"
    return text


async def test_depth_fifty_is_refused(timed: Callable[..., Any]) -> None:
    refused(await timed("POST", json={"query": "{ " + nested(50) + " }"}), 400, "DEPTH_LIMIT_EXCEEDED")
    # Through a chain of fragments, each adding one level.
    fragments = " ".join(f"fragment F{i} on T {{ a {{ ...F{i + 1} }} }}" for i in range(50))
    document = "{ ...F0 } " + fragments + " fragment F50 on T { id }"
    refused(await timed("POST", json={"query": document}), 400, "DEPTH_LIMIT_EXCEEDED")


async def test_fragment_cycles_are_refused(timed: Callable[..., Any]) -> None:
    for document in (
        "query { viewer { ...A } } fragment A on User { id ...B } fragment B on User { handle ...A }",
        "query { viewer { ...A } } fragment A on User { id ...A }",
        "query { viewer { ...A } } fragment A on User { ... on User { followers: id ...A } }",
    ):
        refused(await timed("POST", json={"query": document}), 400, "GRAPHQL_VALIDATION_FAILED")


async def test_fragment_fan_out_does_not_hang(timed: Callable[..., Any]) -> None:
    """Each fragment spreads the next twice: 2^60 paths, walked once per fragment."""
    fragments = " ".join(f"fragment F{i} on Query {{ ...F{i + 1} ...F{i + 1} }}" for i in range(60))
    document = "{ ...F0 } " + fragments + " fragment F60 on Query { __typename }"
    response = await timed("POST", json={"query": document})
    assert response.status_code == 200, response.text
    assert response.json() == {"data": {"__typename": "Query"}}
    # The same fan-out under aliased fields multiplies aliases: refused, quickly.
    fragments = " ".join(
        f"fragment G{i} on Query {{ x: viewer {{ ...G{i + 1} }} y: viewer {{ ...G{i + 1} }} }}"
        for i in range(60)
    )
    document = "{ ...G0 } " + fragments + " fragment G60 on Query { __typename }"
    refused(await timed("POST", json={"query": document}), 400, "ALIAS_LIMIT_EXCEEDED")


async def test_parse_and_validation_errors_have_codes(timed: Callable[..., Any]) -> None:
    refused(await timed("POST", json={"query": "{"}), 400, "GRAPHQL_PARSE_FAILED")
    refused(await timed("POST", json={"query": '{ "\\u{D800}" }'}), 400, "GRAPHQL_PARSE_FAILED")
    refused(await timed("POST", json={"query": "{ nope }"}), 400, "GRAPHQL_VALIDATION_FAILED")
    refused(
        await timed("POST", json={"query": 'query { feed(first: "x") { edges { cursor } } }'}),
        400,
        "GRAPHQL_VALIDATION_FAILED",
    )
    many = "{ " + " ".join(f"nope{i}" for i in range(200)) + " }"
    body = refused(await timed("POST", json={"query": many}), 400, "GRAPHQL_VALIDATION_FAILED")
    assert len(body["errors"]) <= 25
    response = await timed("POST", json={"query": "query A { __typename } query B { __typename }"})
    refused(response, 400, "OPERATION_NOT_FOUND")
    response = await timed("POST", json={"query": "query A { __typename }", "operationName": "Z" * 10_000})
    body = refused(response, 400, "OPERATION_NOT_FOUND")
    assert len(body["errors"][0]["message"]) < 200


async def test_legacy_json_clients_get_200_for_document_errors(timed: Callable[..., Any]) -> None:
    response = await timed(
        "POST", json={"query": "{ " + nested(50) + " }"}, headers={"accept": "application/json"}
    )
    assert response.status_code == 200
    assert response.headers["content-type"].startswith("application/json")
    assert codes(response) == ["DEPTH_LIMIT_EXCEEDED"]
    check_clean(response)


# -- tokens ------------------------------------------------------------------------------------


def hostile_tokens(settings: Settings, good: str) -> dict[str, str]:
    now = int(time.time())
    secret = settings.jwt_secret.get_secret_value()
    claims = {
        "sub": "1",
        "iss": settings.jwt_issuer,
        "aud": settings.jwt_audience,
        "iat": now,
        "nbf": now,
        "exp": now + 600,
    }
    header, payload, signature = good.split(".")
    forged_payload = b64url({**claims, "sub": "2"})
    with warnings.catch_warnings():  # the development secret is short for HS512: no matter here
        warnings.simplefilter("ignore")
        hs512 = jwt.encode(claims, secret, algorithm="HS512")
    return {
        "alg none": f"{b64url({'alg': 'none', 'typ': 'JWT'})}.{b64url(claims)}.",
        "alg None": f"{b64url({'alg': 'None', 'typ': 'JWT'})}.{b64url(claims)}.",
        "tampered payload": f"{header}.{forged_payload}.{signature}",
        "tampered signature": f"{header}.{payload}.{signature[:-4]}AAAA",
        "no signature": f"{header}.{payload}.",
        "another secret": jwt.encode(claims, "some-other-secret-of-enough-length-123", algorithm="HS256"),
        "another algorithm": hs512,
        "expired": jwt.encode({**claims, "iat": now - 7200, "nbf": now - 7200, "exp": now - 3600}, secret),
        "not yet valid": jwt.encode({**claims, "nbf": now + 3600, "exp": now + 7200}, secret),
        "wrong audience": jwt.encode({**claims, "aud": "someone-else"}, secret),
        "wrong issuer": jwt.encode({**claims, "iss": "evil"}, secret),
        "no expiry": jwt.encode({k: v for k, v in claims.items() if k != "exp"}, secret),
        "no subject": jwt.encode({k: v for k, v in claims.items() if k != "sub"}, secret),
        "subject not an id": jwt.encode({**claims, "sub": "admin"}, secret),
        "subject zero": jwt.encode({**claims, "sub": "0"}, secret),
        "garbage": "not-a-jwt",
        "three dots": "a.b.c",
        "huge": "A" * 20_000,
    }


async def test_forged_and_invalid_tokens_get_401(
    app: Any, timed: Callable[..., Any], token: Callable[[int], str], database_url: str
) -> None:
    user, room, post = await member_and_unliked_post(database_url)
    before = await table_counts(database_url)
    settings: Settings = app.state.services.settings
    for name, bad in hostile_tokens(settings, token(user)).items():
        for query, variables in (
            ("{ viewer { id } }", {}),
            (SEND_MESSAGE, {"roomId": str(room), "body": "forged", "cid": f"forged-{len(name)}"}),
            (LIKE_POST, {"postId": str(post)}),
        ):
            response = await timed(
                "POST",
                json={"query": query, "variables": variables},
                headers={"authorization": f"Bearer {bad}"},
            )
            body = refused(response, 401, "UNAUTHENTICATED")
            assert response.headers["www-authenticate"].startswith("Bearer"), name
            error = body["errors"][0]
            assert error["message"] in ("The token is invalid", "The token has expired"), name
            assert error["extensions"]["reason"] == (
                "token_expired" if name == "expired" else "invalid_token"
            )
    for header in ("Basic dXNlcjpwYXNz", "Bearer", "Bearer    ", "token abc"):
        response = await timed(
            "POST",
            json={"query": LIKE_POST, "variables": {"postId": str(post)}},
            headers={"authorization": header},
        )
        refused(response, 401, "UNAUTHENTICATED")
    assert await table_counts(database_url) == before


@pytest.mark.parametrize(
    "sub",
    [
        "99999999",  # a user deleted since the token was issued
        "9" * 40,  # beyond BIGINT
        str(2**63),  # one past BIGINT
    ],
)
async def test_signed_token_for_an_impossible_user(
    app: Any, timed: Callable[..., Any], database_url: str, sub: str
) -> None:
    """Signed with our secret (so not forged) but naming no possible user: refused, not a 500."""
    settings: Settings = app.state.services.settings
    now = int(time.time())
    before = await table_counts(database_url)
    claims = {"sub": sub, "iss": settings.jwt_issuer, "aud": settings.jwt_audience, "exp": now + 600}
    bad = jwt.encode(claims, settings.jwt_secret.get_secret_value(), algorithm=settings.jwt_algorithm)
    auth = {"authorization": f"Bearer {bad}"}
    for query, variables in (
        ("{ viewer { id } }", {}),
        (LIKE_POST, {"postId": "1"}),
        (SEND_MESSAGE, {"roomId": "1", "body": "hi", "cid": "ghost-1"}),
    ):
        response = await timed("POST", json={"query": query, "variables": variables}, headers=auth)
        check_clean(response)
        assert {"UNAUTHENTICATED", "FORBIDDEN", "NOT_FOUND"} & set(codes(response)), response.text
    assert await table_counts(database_url) == before


async def test_anonymous_writes_are_refused(timed: Callable[..., Any], database_url: str) -> None:
    _, room, post = await member_and_unliked_post(database_url)
    before = await table_counts(database_url)
    response = await timed("POST", json={"query": LIKE_POST, "variables": {"postId": str(post)}})
    field_error(response, "UNAUTHENTICATED")
    response = await timed(
        "POST",
        json={"query": SEND_MESSAGE, "variables": {"roomId": str(room), "body": "hi", "cid": "anon-1"}},
    )
    field_error(response, "UNAUTHENTICATED")
    assert await table_counts(database_url) == before


# -- hostile writes ----------------------------------------------------------------------------


async def test_hostile_writes_change_nothing(
    timed: Callable[..., Any], token: Callable[[int], str], database_url: str
) -> None:
    user, room, post = await member_and_unliked_post(database_url)
    auth = {"authorization": f"Bearer {token(user)}"}
    before = await table_counts(database_url)

    async def send(variables: dict[str, Any], **kwargs: Any) -> httpx.Response:
        response: httpx.Response = await timed(
            "POST", json={"query": SEND_MESSAGE, "variables": variables}, headers=auth, **kwargs
        )
        return response

    # A 100 KB body, and other bodies and keys the resolver refuses.
    for variables in (
        {"roomId": str(room), "body": "x" * 100_000, "cid": "hostile-1"},
        {"roomId": str(room), "body": "é" * 4_001, "cid": "hostile-2"},
        {"roomId": str(room), "body": "a\x00b", "cid": "hostile-3"},
        {"roomId": str(room), "body": "   ", "cid": "hostile-4"},
        {"roomId": str(room), "body": "hi", "cid": "x" * 65},
        {"roomId": str(room), "body": "hi", "cid": "'; DROP TABLE messages; --"},
        {"roomId": b64(f"Post:{post}"), "body": "hi", "cid": "hostile-5"},
        {"roomId": "-1", "body": "hi", "cid": "hostile-6"},
        {"roomId": "1 OR 1=1", "body": "hi", "cid": "hostile-7"},
    ):
        body = field_error(await send(variables), "BAD_USER_INPUT")
        assert body["data"] is None
    # Variables of the wrong type never reach the resolver.
    for variables in (
        {"roomId": {"id": 1}, "body": "hi", "cid": "hostile-8"},
        {"roomId": str(room), "body": ["hi"], "cid": "hostile-9"},
        {"roomId": str(room), "body": "hi"},
        {"roomId": str(room), "body": None, "cid": "hostile-10"},
    ):
        refused(await send(variables), 400, "BAD_USER_INPUT")
    # A write over GET is refused before anything runs.
    response = await timed(
        "GET",
        params={"query": LIKE_POST, "variables": json.dumps({"postId": str(post)})},
        headers=auth,
    )
    refused(response, 405, "METHOD_NOT_ALLOWED")
    assert response.headers["allow"] == "POST"
    response = await timed(
        "GET",
        params={
            "query": SEND_MESSAGE,
            "variables": json.dumps({"roomId": str(room), "body": "hi", "cid": "get-1"}),
        },
        headers=auth,
    )
    refused(response, 405, "METHOD_NOT_ALLOWED")
    # likePost with IDs it cannot use.
    for post_id in (b64(f"User:{user}"), "abc", "0", "9" * 30, b64("Post:abc"), "", "1.5"):
        response = await timed(
            "POST", json={"query": LIKE_POST, "variables": {"postId": post_id}}, headers=auth
        )
        field_error(response, "BAD_USER_INPUT")
    response = await timed(
        "POST", json={"query": LIKE_POST, "variables": {"postId": "99999999"}}, headers=auth
    )
    field_error(response, "NOT_FOUND")
    # A room the viewer is not a member of.
    db = Database(database_url)
    await db.connect()
    try:
        other = await db.fetch_val(
            "SELECT min(id) FROM chat_rooms WHERE id NOT IN (SELECT room_id FROM room_members WHERE user_id = :u)",
            {"u": user},
        )
    finally:
        await db.disconnect()
    if other is not None:
        response = await send({"roomId": str(other), "body": "hi", "cid": "hostile-11"})
        field_error(response, "FORBIDDEN")
    assert await table_counts(database_url) == before

    # The same requests, well formed, do write: the counts above were not stuck.
    response = await send({"roomId": str(room), "body": "fine", "cid": "fine-1"})
    assert response.status_code == 200 and "errors" not in response.json(), response.text
    response = await timed(
        "POST", json={"query": LIKE_POST, "variables": {"postId": str(post)}}, headers=auth
    )
    assert response.status_code == 200 and "errors" not in response.json(), response.text
    after = await table_counts(database_url)
    assert after == {"messages": before["messages"] + 1, "likes": before["likes"] + 1}


# -- bad variables and arguments ---------------------------------------------------------------


@pytest.mark.parametrize(
    ("query", "variables"),
    [
        ("query($first: Int!) { feed(first: $first) { edges { cursor } } }", {"first": "abc"}),
        ("query($first: Int!) { feed(first: $first) { edges { cursor } } }", {"first": 1.5}),
        ("query($first: Int!) { feed(first: $first) { edges { cursor } } }", {"first": 2**40}),
        ("query($first: Int!) { feed(first: $first) { edges { cursor } } }", {"first": [1]}),
        ("query($first: Int!) { feed(first: $first) { edges { cursor } } }", {}),
        ("query($first: Int!) { feed(first: $first) { edges { cursor } } }", {"first": None}),
        ("query($id: ID!) { user(id: $id) { id } }", {"id": {"$gt": ""}}),
        ("query($id: ID!) { user(id: $id) { id } }", {"id": True}),
        ("query($id: ID!) { user(id: $id) { id } }", {"id": 1.5}),
        ("query($g: ID!, $n: Int) { leaderboard(gameId: $g, first: $n) { rank } }", {"g": "1", "n": "ten"}),
        (
            "mutation($g: ID!, $p: Int!) { submitScore(gameId: $g, points: $p) { points } }",
            {"g": "1", "p": 2**31},
        ),
        (
            "mutation($g: ID!, $p: Int!) { submitScore(gameId: $g, points: $p) { points } }",
            {"g": "1", "p": "1"},
        ),
    ],
)
async def test_variables_of_the_wrong_type_are_request_errors(
    timed: Callable[..., Any], token: Callable[[int], str], query: str, variables: dict[str, Any]
) -> None:
    auth = {"authorization": f"Bearer {token(7)}"}
    response = await timed("POST", json={"query": query, "variables": variables}, headers=auth)
    refused(response, 400, "BAD_USER_INPUT")
    # A legacy client gets the same errors with 200.
    response = await timed(
        "POST", json={"query": query, "variables": variables}, headers={**auth, "accept": "application/json"}
    )
    body = check_clean(response)
    assert response.status_code == 200 and "data" not in body
    assert set(codes(response)) == {"BAD_USER_INPUT"}


@pytest.mark.parametrize(
    ("query", "variables"),
    [
        (FEED, {"first": -1}),
        (FEED, {"first": 100_000}),
        (FEED, {"after": "garbage"}),
        (FEED, {"after": "!!!!"}),
        (FEED, {"after": b64("not-a-date|1")}),
        (FEED, {"after": b64("2024-01-01T00:00:00|1")}),  # no time zone
        (FEED, {"after": b64("2024-01-01T00:00:00+00:00|-1")}),
        (FEED, {"after": b64("Message:1")}),  # another connection's cursor
        (FEED, {"after": "x" * 50_000}),
        ("query($id: ID!) { user(id: $id) { id } }", {"id": "abc"}),
        ("query($id: ID!) { user(id: $id) { id } }", {"id": b64("Post:1")}),  # a global ID of another type
        ("query($id: ID!) { user(id: $id) { id } }", {"id": "0"}),
        ("query($id: ID!) { user(id: $id) { id } }", {"id": "-3"}),
        ("query($id: ID!) { user(id: $id) { id } }", {"id": "9" * 25}),
        ("query($id: ID!) { user(id: $id) { id } }", {"id": b64("User:99999999999999999999999")}),
        ("query($id: ID!) { user(id: $id) { id } }", {"id": "١٢٣"}),  # Arabic-Indic digits
        ("query($id: ID!) { chatRoom(id: $id) { id } }", {"id": b64("Game:1")}),
        ("query($id: ID!) { node(id: $id) { id } }", {"id": "garbage"}),
        ("query($id: ID!) { node(id: $id) { id } }", {"id": b64("Secret:1")}),
        ("query($id: ID!) { node(id: $id) { id } }", {"id": b64("__class__:1")}),
        ("query($ids: [ID!]!) { nodes(ids: $ids) { id } }", {"ids": ["1"] * 101}),
        ("query($g: ID!, $n: Int) { leaderboard(gameId: $g, first: $n) { rank } }", {"g": "1", "n": -1}),
        ("query($g: ID!, $n: Int) { leaderboard(gameId: $g, first: $n) { rank } }", {"g": "1", "n": 100_000}),
        ("query($g: ID!) { leaderboard(gameId: $g) { rank } }", {"g": b64("User:1")}),
        ("query($n: Int) { games { leaderboard(first: $n) { rank } } }", {"n": -1}),
        (
            "mutation($g: ID!, $p: Int!) { submitScore(gameId: $g, points: $p) { points } }",
            {"g": "1", "p": -5},
        ),
        (
            "mutation($g: ID!, $p: Int!) { submitScore(gameId: $g, points: $p) { points } }",
            {"g": "abc", "p": 5},
        ),
    ],
)
async def test_bad_arguments_are_bad_user_input(
    timed: Callable[..., Any], token: Callable[[int], str], query: str, variables: dict[str, Any]
) -> None:
    auth = {"authorization": f"Bearer {token(7)}"}
    response = await timed("POST", json={"query": query, "variables": variables}, headers=auth)
    field_error(response, "BAD_USER_INPUT")


async def test_bad_message_history_arguments(
    timed: Callable[..., Any], token: Callable[[int], str], database_url: str
) -> None:
    user, room, _ = await member_and_unliked_post(database_url)
    auth = {"authorization": f"Bearer {token(user)}"}
    query = (
        "query($id: ID!, $last: Int, $before: String) "
        "{ chatRoom(id: $id) { messages(last: $last, before: $before) { edges { cursor } } } }"
    )
    for variables in (
        {"last": -1},
        {"last": 100_000},
        {"before": "garbage"},
        {"before": b64("Post:1")},
        {"before": b64("2024-01-01T00:00:00+00:00|1")},
    ):
        response = await timed(
            "POST", json={"query": query, "variables": {"id": str(room), **variables}}, headers=auth
        )
        field_error(response, "BAD_USER_INPUT")
