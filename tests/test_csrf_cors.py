"""Browser safety: Apollo's CSRF prevention rule for browser requests, and the CORS allow-list."""

from __future__ import annotations

import shutil
from collections.abc import Callable
from pathlib import Path

import httpx
import pytest
from asgi_lifespan import LifespanManager
from starlette.datastructures import Headers

from bff import csrf
from bff.app import create_app
from bff.config import Settings

QUERY = {"query": "{ games { id } }"}
ACCEPT = {"accept": "application/graphql-response+json"}


@pytest.fixture
def database_url(sqlite_template: Path, tmp_path: Path) -> str:
    path = tmp_path / "bff.db"
    shutil.copy(sqlite_template, path)
    return f"sqlite:///{path}"


async def serve(settings: Settings, method: str, **kwargs: object) -> httpx.Response:
    app = create_app(settings)
    async with (
        LifespanManager(app),
        httpx.AsyncClient(transport=httpx.ASGITransport(app), base_url="http://bff.test") as client,
    ):
        return await client.request(method, "/graphql", **kwargs)  # type: ignore[arg-type]


@pytest.mark.parametrize(
    ("headers", "safe"),
    [
        ({}, False),
        ({"content-type": "text/plain"}, False),
        ({"content-type": "application/x-www-form-urlencoded; charset=utf-8"}, False),
        ({"content-type": "multipart/form-data; boundary=x"}, False),
        ({"content-type": "application/json"}, True),
        ({"content-type": "not a mime type"}, True),  # a browser would preflight it
        ({"apollo-require-preflight": "true"}, True),
        ({"x-apollo-operation-name": "Games"}, True),
        ({"apollo-require-preflight": ""}, False),  # empty does not count
        ({"content-type": "text/plain", "x-apollo-operation-name": "Games"}, True),
    ],
)
def test_apollos_preflight_rule(headers: dict[str, str], safe: bool) -> None:
    assert csrf.preflighted(Headers(headers)) is safe


async def test_a_plain_get_without_browser_marks_is_served(client: httpx.AsyncClient) -> None:
    # what a phone, a script or the graphql-http audits send
    response = await client.get("/graphql", params=QUERY, headers=ACCEPT)
    assert response.status_code == 200


@pytest.mark.parametrize(
    "mark",
    [{"cookie": "session=1"}, {"origin": "https://evil.example"}, {"sec-fetch-site": "cross-site"}],
)
async def test_a_simple_get_from_a_browser_is_refused_as_csrf(
    client: httpx.AsyncClient, mark: dict[str, str]
) -> None:
    response = await client.get("/graphql", params=QUERY, headers={**ACCEPT, **mark})
    assert response.status_code == 400
    error = response.json()["errors"][0]
    assert error["extensions"]["code"] == "BAD_REQUEST"
    assert "Cross-Site Request Forgery" in error["message"]
    assert "data" not in response.json()


async def test_a_browser_get_with_a_preflight_header_is_served(client: httpx.AsyncClient) -> None:
    for extra in ({"apollo-require-preflight": "true"}, {"content-type": "application/json"}):
        response = await client.get(
            "/graphql", params=QUERY, headers={**ACCEPT, "sec-fetch-site": "same-origin", **extra}
        )
        assert response.status_code == 200, response.text


async def test_a_browser_form_post_is_refused_before_it_runs(client: httpx.AsyncClient) -> None:
    response = await client.post(
        "/graphql",
        content='{"query": "mutation { setTyping(roomId: \\"1\\") }"}',
        headers={**ACCEPT, "content-type": "text/plain", "origin": "https://evil.example"},
    )
    assert response.status_code == 400
    assert "Cross-Site Request Forgery" in response.json()["errors"][0]["message"]


async def test_a_json_post_from_a_browser_is_served(client: httpx.AsyncClient) -> None:
    response = await client.post("/graphql", json=QUERY, headers={**ACCEPT, "origin": "http://bff.test"})
    assert response.status_code == 200


async def test_always_mode_refuses_plain_gets_and_off_mode_serves_browsers(
    make_settings: Callable[..., Settings],
) -> None:
    strict = await serve(make_settings(csrf_prevention="always"), "GET", params=QUERY, headers=ACCEPT)
    assert strict.status_code == 400
    off = await serve(
        make_settings(csrf_prevention="off"), "GET", params=QUERY, headers={**ACCEPT, "cookie": "a=b"}
    )
    assert off.status_code == 200


async def test_no_cors_headers_by_default(client: httpx.AsyncClient) -> None:
    response = await client.post("/graphql", json=QUERY, headers={**ACCEPT, "origin": "https://app.example"})
    assert "access-control-allow-origin" not in response.headers
    preflight = await client.options(
        "/graphql",
        headers={"origin": "https://app.example", "access-control-request-method": "POST"},
    )
    assert "access-control-allow-origin" not in preflight.headers


async def test_an_allowed_origin_gets_cors_headers_and_others_do_not(
    make_settings: Callable[..., Settings],
) -> None:
    settings = make_settings(cors_allow_origins="https://app.example, https://admin.example")
    preflight = await serve(
        settings,
        "OPTIONS",
        headers={
            "origin": "https://app.example",
            "access-control-request-method": "POST",
            "access-control-request-headers": "authorization, content-type, idempotency-key",
        },
    )
    assert preflight.status_code == 200
    assert preflight.headers["access-control-allow-origin"] == "https://app.example"
    assert "idempotency-key" in preflight.headers["access-control-allow-headers"].lower()
    actual = await serve(settings, "POST", json=QUERY, headers={**ACCEPT, "origin": "https://app.example"})
    assert actual.headers["access-control-allow-origin"] == "https://app.example"
    assert "etag" in actual.headers["access-control-expose-headers"].lower()
    foreign = await serve(
        settings,
        "OPTIONS",
        headers={"origin": "https://evil.example", "access-control-request-method": "POST"},
    )
    assert foreign.status_code == 400
    assert "access-control-allow-origin" not in foreign.headers
