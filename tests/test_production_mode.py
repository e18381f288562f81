"""Production mode (BFF_ENV=production): no introspection, no suggestions, masked errors.

Development keeps all three; INTROSPECTION overrides the default either way.
"""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

import httpx
import pytest

from bff.config import Settings
from tests.edge_fixtures import serving

GRAPHQL_RESPONSE = "application/graphql-response+json"
SECRET = "a-test-secret-that-is-not-the-development-one"
SCHEMA = "{ __schema { queryType { name } } }"
TYPE = '{ __type(name: "User") { fields { name } } }'
TYPO = "{ games { nmae } }"


async def post(client: httpx.AsyncClient, query: str) -> httpx.Response:
    return await client.post("/graphql", json={"query": query}, headers={"accept": GRAPHQL_RESPONSE})


def codes(response: httpx.Response) -> list[str]:
    return [e["extensions"]["code"] for e in response.json().get("errors", [])]


@pytest.fixture
def production(make_settings: Callable[..., Settings]) -> Callable[..., Settings]:
    def make(**overrides: Any) -> Settings:
        return make_settings(bff_env="production", jwt_secret=SECRET, **overrides)

    return make


async def test_production_refuses_introspection(production: Callable[..., Settings]) -> None:
    async with serving(production()) as client:
        for query in (
            SCHEMA,
            TYPE,
            'query { ...F } fragment F on Query { x: __type(name: "Post") { name } }',
        ):
            response = await post(client, query)
            assert response.status_code == 400, response.text
            assert codes(response) == ["INTROSPECTION_DISABLED"], response.text
            assert "data" not in response.json()
        # __typename is not introspection: clients add it to every selection
        response = await post(client, "{ __typename games { __typename id } }")
        assert response.status_code == 200 and "errors" not in response.json()


async def test_production_hides_did_you_mean_suggestions(
    production: Callable[..., Settings], make_settings: Callable[..., Settings]
) -> None:
    async with serving(production()) as client:
        response = await post(client, TYPO)
        assert codes(response) == ["GRAPHQL_VALIDATION_FAILED"]
        message = response.json()["errors"][0]["message"]
        assert message == "Cannot query field 'nmae' on type 'Game'."
        assert "name" not in message.replace("nmae", "")
    async with serving(make_settings(bff_env="development")) as client:
        response = await post(client, TYPO)
        assert "Did you mean 'name'?" in response.json()["errors"][0]["message"]


async def test_development_keeps_introspection(make_settings: Callable[..., Settings]) -> None:
    async with serving(make_settings(bff_env="development")) as client:
        response = await post(client, SCHEMA)
        assert response.json() == {"data": {"__schema": {"queryType": {"name": "Query"}}}}


async def test_introspection_setting_overrides_the_environment(
    production: Callable[..., Settings], make_settings: Callable[..., Settings]
) -> None:
    async with serving(production(introspection=True)) as client:
        assert (await post(client, SCHEMA)).json()["data"]["__schema"]["queryType"]["name"] == "Query"
    async with serving(make_settings(bff_env="development", introspection=False)) as client:
        response = await post(client, SCHEMA)
        assert codes(response) == ["INTROSPECTION_DISABLED"]


@pytest.mark.parametrize("env", ["production", "development"])
async def test_errors_are_masked_in_production_and_detailed_in_development(
    make_settings: Callable[..., Settings], monkeypatch: pytest.MonkeyPatch, env: str
) -> None:
    from resolvers import users

    async def broken(ctx: Any, user_id: int) -> Any:
        raise RuntimeError("secret internal detail")

    monkeypatch.setattr(users, "get_user", broken)
    async with serving(make_settings(bff_env=env, jwt_secret=SECRET)) as client:
        response = await post(client, '{ user(id: "1") { id } }')
    error = response.json()["errors"][0]
    assert error["message"] == "Internal server error"
    assert error["extensions"]["code"] == "INTERNAL_SERVER_ERROR"
    if env == "production":
        assert "secret" not in response.text and "debug" not in error["extensions"]
    else:
        assert "secret internal detail" in error["extensions"]["debug"]
