"""The reference workload's operations run unchanged, with correct answers and a constant SQL cost."""

from __future__ import annotations

import base64
import json
from pathlib import Path
from typing import Any

import pytest
from graphql import parse
from prometheus_client import REGISTRY

from bff.compiled_complete import Object
from bff.db import Database

OPS = Path(__file__).parent / "ops"  # copies of ../shared/peers/ops, kept byte for byte


def op(name: str) -> dict[str, Any]:
    return json.loads((OPS / name).read_text())


def pk(global_id: str) -> int:
    type_name, _, value = base64.b64decode(global_id).decode().partition(":")
    assert type_name in {"User", "Post", "Game", "ChatRoom", "Message"}
    return int(value)


async def expected_feed(db: Database, viewer: int, n: int) -> list[int]:
    rows = await db.fetch_all(
        "SELECT id FROM posts WHERE author_id IN (SELECT followee_id FROM follows WHERE follower_id = :v) "
        "ORDER BY created_at DESC, id DESC LIMIT :n",
        {"v": viewer, "n": n},
    )
    return [r["id"] for r in rows]


@pytest.mark.parametrize("name", ["home.json", "home-relay.json"])
async def test_home_answers_match_the_database(gql: Any, database_url: str, name: str) -> None:
    home = op(name)
    response = await gql(home["query"], home["variables"], user=7)
    assert response.status_code == 200, response.text
    body = response.json()
    assert "errors" not in body
    data = body["data"]
    assert pk(data["viewer"]["id"]) == 7
    db = Database(database_url)
    await db.connect()
    try:
        feed_ids = [pk(e["node"]["id"]) for e in data["feed"]["edges"]]
        assert feed_ids == await expected_feed(db, 7, 20)
        for edge in data["feed"]["edges"]:
            post = pk(edge["node"]["id"])
            likes = await db.fetch_val("SELECT count(*) FROM likes WHERE post_id = :p", {"p": post})
            assert edge["node"]["likeCount"] == likes
            liked = await db.fetch_val(
                "SELECT count(*) FROM likes WHERE post_id = :p AND user_id = 7", {"p": post}
            )
            assert edge["node"]["viewerHasLiked"] is bool(liked)
            author = await db.fetch_val("SELECT author_id FROM posts WHERE id = :p", {"p": post})
            assert pk(edge["node"]["author"]["id"]) == author
        top = await db.fetch_all(
            "SELECT user_id, points FROM scores WHERE game_id = 1 ORDER BY points DESC, user_id ASC LIMIT 10"
        )
        assert [(pk(e["user"]["id"]), e["points"]) for e in data["leaderboard"]] == [
            (r["user_id"], r["points"]) for r in top
        ]
        assert [e["rank"] for e in data["leaderboard"]] == list(range(1, 11))
    finally:
        await db.disconnect()


async def test_feed_pages_with_opaque_cursors(gql: Any, database_url: str) -> None:
    query = "query($after: String) { feed(first: 7, after: $after) { edges { cursor node { id } } pageInfo { endCursor hasNextPage } } }"
    seen: list[int] = []
    after = None
    for _ in range(4):
        body = (await gql(query, {"after": after}, user=3)).json()
        page = body["data"]["feed"]
        seen += [pk(e["node"]["id"]) for e in page["edges"]]
        after = page["pageInfo"]["endCursor"]
        assert page["pageInfo"]["hasNextPage"]
    db = Database(database_url)
    await db.connect()
    try:
        assert seen == await expected_feed(db, 3, 28)
    finally:
        await db.disconnect()


def statements_sent(dialect: str) -> float:
    """The process-wide statement counter (the HTTP view counts each request on its own counter)."""
    return REGISTRY.get_sample_value("bff_sql_statements_total", {"dialect": dialect}) or 0.0


@pytest.mark.parametrize("first", [1, 20, 100])
async def test_home_costs_a_constant_number_of_statements(app: Any, gql: Any, first: int) -> None:
    """Counted against both databases (the fixture runs it on SQLite and Postgres), cold caches."""
    home = op("home.json")
    dialect = app.state.services.db.dialect
    before = statements_sent(dialect)
    response = await gql(home["query"], {**home["variables"], "first": first}, user=11)
    cold = statements_sent(dialect) - before
    assert response.status_code == 200 and "errors" not in response.json()
    assert len(response.json()["data"]["feed"]["edges"]) == first
    assert 1 <= cold <= 4, cold
    # The same screen again: users, like counts and the leaderboard come from the cache.
    before = statements_sent(dialect)
    again = await gql(home["query"], {**home["variables"], "first": first}, user=11)
    assert again.json() == response.json()
    assert statements_sent(dialect) - before <= 1


def fused_types(completer: Any, seen: set[str] | None = None) -> set[str]:
    """The object types of a compiled plan answered by a fused selection (bff/codegen_fused.py)."""
    seen = set() if seen is None else seen
    inner = getattr(completer, "inner", None) or getattr(completer, "item", None)
    if inner is not None:
        return fused_types(inner, seen)
    if isinstance(completer, Object):
        if completer.execute.__source__.startswith("# fused"):  # type: ignore[attr-defined]
            seen.add(completer.object_type.name)
        for step in completer.steps:
            fused_types(step.complete, seen)
    return seen


def fallbacks() -> float:
    return sum(
        sample.value
        for metric in REGISTRY.collect()
        if metric.name == "bff_fused_fallbacks"
        for sample in metric.samples
        if sample.name == "bff_fused_fallbacks_total"
    )


async def test_homes_objects_are_answered_by_fused_selections_without_a_fallback(
    app: Any, gql: Any, built_row_lists: list[str]
) -> None:
    home = op("home-relay.json")
    before = fallbacks()
    for viewer in (12, 12, 13):  # cold, warm, and another viewer
        response = await gql(home["query"], home["variables"], user=viewer)
        assert response.status_code == 200 and "errors" not in response.json()
    assert fallbacks() == before  # every post, author, entry and user held what its fields read
    assert built_row_lists == []  # the feed's edges and the leaderboard were answered from their rows
    plan = app.state.http.plans.plan(parse(home["query"]), home["operationName"])
    root = next(iter(plan.variants.values()))
    assert {"User", "PostEdge", "Post", "PageInfo", "LeaderboardEntry"} <= fused_types(root)


async def first_member(database_url: str, room: int = 1) -> int:
    db = Database(database_url)
    await db.connect()
    try:
        return int(
            await db.fetch_val("SELECT min(user_id) FROM room_members WHERE room_id = :r", {"r": room})
        )
    finally:
        await db.disconnect()


async def test_room_history_and_chat_list(gql: Any, database_url: str) -> None:
    member = await first_member(database_url)
    rooms = (await gql("{ viewer { rooms { id name } } }", user=member)).json()
    assert "errors" not in rooms, rooms
    room_id = rooms["data"]["viewer"]["rooms"][0]["id"]
    history = await gql(
        "query($id: ID!) { chatRoom(id: $id) { id name members { id } messages(last: 50) { edges { node { id body createdAt author { id handle avatarUrl } } } } } }",
        {"id": room_id},
        user=member,
    )
    data = history.json()["data"]["chatRoom"]
    ids = [pk(e["node"]["id"]) for e in data["messages"]["edges"]]
    assert ids == sorted(ids) and 0 < len(ids) <= 50
    assert any(pk(m["id"]) == member for m in data["members"])
