"""HTTP caching of queries: Cache-Control from the per-field table, ETag and 304, Vary."""

from __future__ import annotations

import json
import shutil
from pathlib import Path
from typing import Any

import httpx
import pytest
from graphql import parse

from bff.http_cache import PRIVATE, PUBLIC, CachePolicies, Hint, Policy, matching_tag
from schema import schema
from schema.cache_policy import CACHE_POLICY


@pytest.fixture
def database_url(sqlite_template: Path, tmp_path: Path) -> str:
    """SQLite only: caching headers do not depend on the database."""
    path = tmp_path / "bff.db"
    shutil.copy(sqlite_template, path)
    return f"sqlite:///{path}"


HOME = json.loads((Path(__file__).parent / "ops" / "home-relay.json").read_text())
GAMES = "query Games { games { id name } }"
JSON_ACCEPT = {"accept": "application/graphql-response+json"}


def policy_of(query: str, name: str | None = None) -> Policy:
    return CachePolicies(schema._schema, CACHE_POLICY).compute(parse(query), name)


def test_the_policy_is_the_smallest_max_age_and_the_most_private_scope_of_the_selected_fields() -> None:
    assert policy_of("{ games { id } }") == Policy(PUBLIC, 60)
    assert policy_of('{ games { id } leaderboard(gameId: "R2FtZTox") { rank } }') == Policy(PUBLIC, 10)
    assert policy_of("{ viewer { id } }") == Policy(PRIVATE, 30)
    assert policy_of(HOME["query"]).header() == "no-store"  # feed is live
    # A viewer-scoped field deep inside a public root field makes the answer private.
    assert policy_of('{ user(id: "VXNlcjox") { id rooms { id } } }') == Policy(PRIVATE, 30)


def test_fragments_are_followed_when_computing_the_policy() -> None:
    query = """
      query Q { ...Top }
      fragment Top on Query { games { ...G } user(id: "VXNlcjox") { handle } }
      fragment G on Game { leaderboard { rank } }
    """
    assert policy_of(query, "Q") == Policy(PUBLIC, 10)
    inline = '{ ... on Query { node(id: "UG9zdDox") { ... on Post { viewerHasLiked } } } }'
    assert policy_of(inline).header() == "no-store"


def test_a_root_field_missing_from_the_table_is_not_cacheable() -> None:
    policies = CachePolicies(schema._schema, {"Query.games": Hint(PUBLIC, 60)})
    assert policies.compute(parse("{ games { id } viewer { id } }"), None).header() == "no-store"
    assert policies.compute(parse("{ __typename }"), None).header() == "no-store"


def test_if_none_match_compares_weakly_and_ignores_the_encoding_mark() -> None:
    assert matching_tag('"abc-br"', '"abc"') == '"abc-br"'
    assert matching_tag('W/"x", "abc-gzip"', '"abc"') == '"abc-gzip"'
    assert matching_tag("*", '"abc"') == '"abc"'
    assert matching_tag('"abd"', '"abc"') is None
    assert matching_tag(None, '"abc"') is None


async def test_a_public_query_over_get_is_cacheable_and_answers_304_to_its_etag(
    client: httpx.AsyncClient,
) -> None:
    # given a public query over GET
    first = await client.get("/graphql", params={"query": GAMES}, headers=JSON_ACCEPT)
    assert first.status_code == 200, first.text
    assert first.headers["cache-control"] == "public, max-age=60"
    assert first.headers["vary"] == "Accept, Authorization, Accept-Encoding"
    tag = first.headers["etag"]
    assert tag.startswith('"') and tag.endswith('"')
    # when it is asked again with the tag
    again = await client.get(
        "/graphql", params={"query": GAMES}, headers={**JSON_ACCEPT, "if-none-match": tag}
    )
    # then the body is not sent again
    assert again.status_code == 304
    assert again.content == b""
    assert again.headers["etag"] == tag
    assert again.headers["cache-control"] == "public, max-age=60"
    # and another tag gets the full answer
    other = await client.get(
        "/graphql", params={"query": GAMES}, headers={**JSON_ACCEPT, "if-none-match": '"stale"'}
    )
    assert other.status_code == 200 and other.content == first.content


async def test_post_queries_get_etags_and_304_too(gql: Any) -> None:
    first = await gql(GAMES)
    assert first.status_code == 200
    again = await gql(GAMES, headers={"if-none-match": first.headers["etag"]})
    assert again.status_code == 304


async def test_an_authenticated_request_is_private_even_for_public_fields(gql: Any) -> None:
    response = await gql(GAMES, user=7)
    assert response.headers["cache-control"] == "private, max-age=60"


async def test_home_is_not_stored(gql: Any) -> None:
    response = await gql(HOME["query"], HOME["variables"], user=7)
    assert response.status_code == 200 and "errors" not in response.json()
    assert response.headers["cache-control"] == "no-store"
    assert "etag" in response.headers  # revalidation still saves the body


async def test_mutations_errors_and_refusals_are_no_store(gql: Any, client: httpx.AsyncClient) -> None:
    mutation = await gql(
        'mutation { sendMessage(roomId: "Q2hhdFJvb206MQ==", body: "hi", clientMessageId: "c1") { id } }',
        user=1,
    )
    assert mutation.headers["cache-control"] == "no-store"
    assert "etag" not in mutation.headers
    error = await gql('{ games { id } chatRoom(id: "Q2hhdFJvb206MQ==") { id } }')  # anonymous: FORBIDDEN
    assert error.json()["errors"] and error.headers["cache-control"] == "no-store"
    invalid = await gql("{ nope }")
    assert invalid.status_code == 400 and invalid.headers["cache-control"] == "no-store"
    assert invalid.headers["vary"] == "Accept, Authorization, Accept-Encoding"
    refused = await client.get("/graphql", params={"query": "mutation { setTyping(roomId: 1) }"})
    assert refused.status_code == 405 and refused.headers["cache-control"] == "no-store"
