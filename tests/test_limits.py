"""Query limits: each refuses with its own code, is configurable, and lets the reference operations through.

Every HTTP case runs on SQLite and Postgres (the `gql` fixture). The static cost is also checked
on its own: Home's number, the multiplication rules, variables and the cap.
"""

from __future__ import annotations

import json
from collections.abc import AsyncIterator, Callable
from contextlib import asynccontextmanager
from pathlib import Path
from typing import Any

import httpx
import pytest
from asgi_lifespan import LifespanManager
from starlette.types import Receive, Scope, Send

from bff.app import create_app
from bff.config import Settings, load_settings
from bff.documents import DocumentCache
from schema import schema

GRAPHQL_RESPONSE = "application/graphql-response+json"
OPS = Path(__file__).resolve().parent / "ops"
HOME = json.loads((OPS / "home.json").read_text())
HOME_COST = 291


def codes(response: httpx.Response) -> list[str]:
    return [e["extensions"]["code"] for e in response.json().get("errors", [])]


def refused(response: httpx.Response, code: str, status: int = 400) -> dict[str, Any]:
    assert response.status_code == status, response.text[:2000]
    body: dict[str, Any] = response.json()
    assert "data" not in body, body
    assert set(codes(response)) == {code}, response.text[:2000]
    return body


def executed(response: httpx.Response) -> dict[str, Any]:
    """Ran (anonymous Home has UNAUTHENTICATED field errors, but data)."""
    assert response.status_code == 200, response.text[:2000]
    body: dict[str, Any] = response.json()
    assert body["data"] is not None, body
    assert "COST_LIMIT_EXCEEDED" not in codes(response)
    return body


def ran(response: httpx.Response) -> dict[str, Any]:
    assert response.status_code == 200, response.text[:2000]
    body: dict[str, Any] = response.json()
    assert "errors" not in body, body
    return body


@asynccontextmanager
async def app_with(
    make_settings: Callable[..., Settings], **overrides: Any
) -> AsyncIterator[tuple[httpx.AsyncClient, list[dict[str, Any]]]]:
    """A client of an app with these settings, and the `state` of each request it served."""
    application = create_app(make_settings(**overrides))
    states: list[dict[str, Any]] = []

    async def recording(scope: Scope, receive: Receive, send: Send) -> None:
        await application(scope, receive, send)
        if scope["type"] == "http":
            states.append(scope.get("state", {}))

    async with (
        LifespanManager(application),
        httpx.AsyncClient(transport=httpx.ASGITransport(recording), base_url="http://bff.test") as client,
    ):
        yield client, states


async def post(
    client: httpx.AsyncClient, query: str, variables: dict[str, Any] | None = None
) -> httpx.Response:
    return await client.post(
        "/graphql", json={"query": query, "variables": variables or {}}, headers={"accept": GRAPHQL_RESPONSE}
    )


def fields(n: int) -> str:
    return " ".join(f"a{i}: __typename" for i in range(n))


# -- the limits, each with its code --------------------------------------------------------------


async def test_root_fields_over_the_limit_are_refused(gql: Callable[..., Any]) -> None:
    # given the default of 30 root fields
    # when an operation selects 31, written out or through a fragment (unaliased: the alias
    # limit, also 30, would refuse the document first)
    body = refused(await gql("{ " + "__typename " * 31 + "}"), "ROOT_FIELD_LIMIT_EXCEEDED")
    assert body["errors"][0]["extensions"]["limit"] == 30
    document = "query { ...Q } fragment Q on Query { " + "__typename " * 31 + "}"
    refused(await gql(document), "ROOT_FIELD_LIMIT_EXCEEDED")
    # then 30 run
    assert ran(await gql("{ " + fields(30) + " }"))["data"]["a29"] == "Query"
    # and an unknown root field is a validation error first
    refused(await gql("{ " + "nope " * 31 + "}"), "GRAPHQL_VALIDATION_FAILED")


async def test_a_fragment_spread_twice_at_the_root_counts_once(gql: Callable[..., Any]) -> None:
    # 25 root fields, spread three times: 75 if each spread counted, 25 as execution collects them
    document = "query { ...Q ...Q ... on Query { ...Q } } fragment Q on Query { " + "__typename " * 25 + "}"
    ran(await gql(document))


async def test_root_field_limit_is_configurable(make_settings: Callable[..., Settings]) -> None:
    async with app_with(make_settings, max_root_fields=2) as (client, _):
        refused(
            await post(client, "{ a: __typename b: __typename c: __typename }"), "ROOT_FIELD_LIMIT_EXCEEDED"
        )
        ran(await post(client, "{ a: __typename b: __typename }"))


async def test_directives_over_the_limit_are_refused(gql: Callable[..., Any]) -> None:
    # given the default of 50 directives per document
    many = "{ __typename" + " @include(if: true)" * 51 + " }"
    body = refused(await gql(many), "DIRECTIVE_LIMIT_EXCEEDED")
    assert body["errors"][0]["extensions"]["limit"] == 50
    # counted across the whole document, fragments included
    spread = (
        "query { ...Q @skip(if: false) } fragment Q on Query { games { "
        + "id @include(if: true) " * 50
        + "} }"
    )
    refused(await gql(spread), "DIRECTIVE_LIMIT_EXCEEDED")
    # unknown directives count too: the limit comes before validation
    refused(await gql("{ __typename" + " @nope" * 60 + " }"), "DIRECTIVE_LIMIT_EXCEEDED")


async def test_directives_within_the_limit_run(gql: Callable[..., Any]) -> None:
    document = "{ " + " ".join(f"a{i}: __typename @include(if: true)" for i in range(20)) + " }"
    assert len(ran(await gql(document))["data"]) == 20


async def test_directive_limit_is_configurable(make_settings: Callable[..., Settings]) -> None:
    async with app_with(make_settings, max_directives=1) as (client, _):
        refused(
            await post(client, "{ __typename @include(if: true) @skip(if: false) }"),
            "DIRECTIVE_LIMIT_EXCEEDED",
        )
        ran(await post(client, "{ __typename @include(if: true) }"))


async def test_depth_alias_token_and_size_limits_keep_their_codes(
    make_settings: Callable[..., Settings],
) -> None:
    async with app_with(make_settings, max_depth=3, max_aliases=2, max_tokens=60, max_document_chars=300) as (
        client,
        _,
    ):
        refused(await post(client, "{ viewer { rooms { members { id } } } }"), "DEPTH_LIMIT_EXCEEDED")
        refused(await post(client, "{ " + fields(3) + " }"), "ALIAS_LIMIT_EXCEEDED")
        refused(await post(client, "{" + " a" * 61 + " }"), "TOKEN_LIMIT_EXCEEDED")
        refused(await post(client, "{ __typename }" + " " * 300), "DOCUMENT_TOO_LARGE")
        ran(await post(client, "{ games { leaderboard { rank } } " + fields(2) + " }"))


async def test_page_sizes_above_max_page_size_are_bad_user_input(gql: Callable[..., Any]) -> None:
    response = await gql("{ feed(first: 101) { edges { cursor } } }", user=1)
    assert response.status_code == 200
    assert codes(response) == ["BAD_USER_INPUT"]
    assert response.json()["errors"][0]["extensions"]["maximum"] == 100
    ran(await gql("{ feed(first: 100) { edges { cursor } } }", user=1))


# -- the static cost -----------------------------------------------------------------------------


def cost_of(query: str, variables: dict[str, Any] | None = None, **overrides: Any) -> int:
    settings = load_settings(database_url="sqlite:///unused.db", **overrides)
    prepared = DocumentCache(schema._schema, settings).prepare(query)
    name, _ = prepared.operation(None)
    return prepared.cost(name, variables)


def test_home_costs_291() -> None:
    """Home: viewer 5, feed 1 + edges (1 + 20 x 11) + pageInfo 3 = 225, leaderboard 1 + 10 x 6 = 61."""
    assert cost_of(HOME["query"], HOME["variables"]) == HOME_COST
    assert cost_of(HOME["query"], {**HOME["variables"], "first": 100}) == 5 + 1 + (1 + 100 * 11) + 3 + 61
    assert Settings.model_fields["max_cost"].default > HOME_COST * 10


def test_cost_multiplies_lists_by_their_page_size() -> None:
    # a list with `first`: its selections times the page size
    assert cost_of('{ leaderboard(gameId: "1", first: 7) { rank user { id } } }') == 1 + 7 * (1 + 2)
    # absent: the argument's default (10)
    assert cost_of('{ leaderboard(gameId: "1") { rank } }') == 1 + 10 * 1
    # a connection: the page size goes to `edges`, `pageInfo` counts once
    assert cost_of("{ feed(first: 3) { edges { cursor } pageInfo { hasNextPage } } }") == 1 + (1 + 3 * 1) + 2
    # also through a fragment on the connection
    query = "{ feed(first: 4) { ...P } } fragment P on PostConnection { edges { cursor } }"
    assert cost_of(query) == 1 + (1 + 4 * 1)
    # `nodes(ids:)`: the number of ids
    assert cost_of('{ nodes(ids: ["1", "2", "3"]) { id } }') == 1 + 3 * 1
    # a list without a size: 10 items; nested lists multiply
    assert cost_of("{ games { id leaderboard(first: 5) { rank } } }") == 1 + 10 * (1 + (1 + 5 * 1))
    # `__typename` is free
    assert cost_of("{ __typename games { __typename } }") == 1


def test_cost_reads_variables_then_their_defaults_then_the_argument_default() -> None:
    query = 'query Q($n: Int = 3) { leaderboard(gameId: "1", first: $n) { rank } }'
    assert cost_of(query, {"n": 50}) == 1 + 50
    assert cost_of(query, {}) == 1 + 3
    assert cost_of(query, {"n": None}) == 1 + 10  # explicit null: the resolver's default
    assert cost_of(query, {"n": "many"}) == 1 + 10  # coercion refuses it later
    assert cost_of(query, {"n": 10_000}) == 1 + 100  # bounded by MAX_PAGE_SIZE
    assert cost_of("query Q($ids: [ID!]!) { nodes(ids: $ids) { id } }", {"ids": ["1"] * 40}) == 1 + 40


def test_a_kept_cost_is_only_reused_for_the_same_variables() -> None:
    settings = load_settings(database_url="sqlite:///unused.db")
    query = 'query Q($n: Int, $g: ID! = "1") { leaderboard(gameId: $g, first: $n) { rank } }'
    prepared = DocumentCache(schema._schema, settings).prepare(query)
    for _ in range(2):  # the second round answers from what the first kept
        assert prepared.cost("Q", {"n": 5}) == 1 + 5
        assert prepared.cost("Q", {"n": 7}) == 1 + 7
        assert prepared.cost("Q", {"n": True}) == 1 + 10  # not 1: typed keys
        assert prepared.cost("Q", {"n": 5, "g": "2"}) == 1 + 5
        assert prepared.cost("Q", {"n": [5]}) == 1 + 10  # a list: evaluated, never kept
    assert len(prepared.costs["Q"].known) == 4


def test_cost_of_hostile_documents_stays_bounded() -> None:
    # fragments spreading each other twice (2^60 paths) are walked once each
    fragments = " ".join(f"fragment F{i} on Query {{ ...F{i + 1} ...F{i + 1} }}" for i in range(60))
    assert cost_of("{ ...F0 } " + fragments + " fragment F60 on Query { games { id } }") == 11
    # nested lists saturate just above the limit instead of growing without bound
    deep = "{ games { leaderboard(first: 100) { user { rooms { members { rooms { id } } } } } } }"
    assert cost_of(deep) == 5_001


async def test_cost_over_the_limit_is_refused_and_depends_on_variables(
    make_settings: Callable[..., Settings],
) -> None:
    query = 'query Top($n: Int!) { leaderboard(gameId: "1", first: $n) { rank user { id } } }'
    async with app_with(make_settings, max_cost=150) as (client, states):
        # when the same cached document asks for 40, then 100 entries
        ran(await post(client, query, {"n": 40}))
        body = refused(await post(client, query, {"n": 100}), "COST_LIMIT_EXCEEDED")
        # then the cost of each request is on its state (the rate limiter charges by it)
        assert [s["cost"] for s in states] == [1 + 40 * 3, 151]  # capped just above the limit
        assert body["errors"][0]["extensions"]["limit"] == 150


async def test_home_fits_the_default_cost_limit(gql: Callable[..., Any]) -> None:
    response = await gql(HOME["query"], HOME["variables"], user=1)
    ran(response)


async def test_home_is_refused_just_below_its_cost(make_settings: Callable[..., Settings]) -> None:
    async with app_with(make_settings, max_cost=HOME_COST - 1) as (client, _):
        refused(await post(client, HOME["query"], HOME["variables"]), "COST_LIMIT_EXCEEDED")
    async with app_with(make_settings, max_cost=HOME_COST) as (client, states):
        executed(await post(client, HOME["query"], HOME["variables"]))
        assert states[-1]["cost"] == HOME_COST


async def test_legacy_json_clients_get_200_for_a_cost_refusal(make_settings: Callable[..., Settings]) -> None:
    async with app_with(make_settings, max_cost=5) as (client, _):
        response = await client.post(
            "/graphql", json={"query": "{ games { id } }"}, headers={"accept": "application/json"}
        )
        assert response.status_code == 200
        assert codes(response) == ["COST_LIMIT_EXCEEDED"]


async def test_the_access_log_line_has_the_cost(
    make_settings: Callable[..., Settings], capsys: pytest.CaptureFixture[str]
) -> None:
    async with app_with(make_settings, log_json=True) as (client, _):
        capsys.readouterr()
        executed(await post(client, HOME["query"], HOME["variables"]))
        out = capsys.readouterr().out
    lines = [json.loads(line) for line in out.splitlines() if line.startswith("{")]
    requests = [line for line in lines if line.get("event") == "request"]
    assert requests and requests[-1]["cost"] == HOME_COST


@pytest.mark.parametrize("query", ["{ viewer { id } }", "{ __schema { types { name fields { name } } } }"])
def test_cheap_and_introspection_documents_cost_little(query: str) -> None:
    assert cost_of(query) < 100
