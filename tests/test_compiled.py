"""The compiled executor answers exactly as graphql-core does: same data, same errors, same SQL cost.

Every case runs graphql-core and the plan, both as generated source (bff/codegen.py) and as
the step walk (bff/compiled_run.py), on the same app and database (SQLite and Postgres), each with a
fresh Context, and compares `data` and the errors as clients see them (bff.errors.format_error).
"""

from __future__ import annotations

import json
import time
from datetime import UTC, datetime, timedelta, timezone
from pathlib import Path
from typing import Any

import pytest
from graphql import DocumentNode, ExecutionResult, parse, validate
from prometheus_client import REGISTRY
from starlette.applications import Starlette

from bff.auth import Viewer
from bff.compiled import (
    Compiler,
    PlanCache,
    Unsupported,
    compile_operation,
    execute_plan,
    execute_with_graphql_core,
)
from bff.db import Database, StatementCounter, current_counter
from bff.errors import format_error
from bff.row_lists import RowList
from resolvers.context import Context
from resolvers.rows import PostRow, PostView, UserRow
from schema.feed import EDGE_ROWS, POST_ROWS
from schema.games import LEADERBOARD_ROWS
from schema.relay import decode_global_id, encode_feed_cursor, to_global_id
from schema.users import USER_ROWS, User

OPS = Path(__file__).parent / "ops"


def op(name: str) -> dict[str, Any]:
    loaded: dict[str, Any] = json.loads((OPS / name).read_text())
    return loaded


def context(app: Starlette, user: int | None) -> Context:
    services = app.state.services
    return Context(
        db=services.db,
        broker=services.broker,
        settings=services.settings,
        tokens=services.tokens,
        viewer=Viewer(user, time.time() + 3600) if user is not None else None,
    )


async def run_core(
    app: Starlette, document: DocumentNode, name: str | None, variables: Any, user: int | None
) -> ExecutionResult:
    # As bff/graphql_http.py runs what plans do not cover.
    return await execute_with_graphql_core(
        app.state.services.schema, document, name, context(app, user), variables
    )


def errors_of(result: ExecutionResult) -> list[dict[str, Any]] | None:
    return None if result.errors is None else [format_error(e) for e in result.errors]


async def both(
    app: Starlette,
    query: str,
    variables: dict[str, Any] | None = None,
    *,
    user: int | None = None,
    name: str | None = None,
    ordered: bool = True,
) -> ExecutionResult:
    """Run `query` with both executors, assert they agree, return the compiled result.

    `ordered=False` compares the errors as a set: the order of errors raised by concurrent
    siblings follows the database's timing, and varies between two graphql-core runs too.
    """
    schema = app.state.services.schema
    document = parse(query)
    assert validate(schema._schema, document) == []
    plan = compile_operation(schema, document, name)
    assert plan is not None
    expected = await run_core(app, document, name, variables, user)
    got = await execute_plan(plan, context(app, user), variables)
    # The same plan walked step by step instead of through bff/codegen.py's generated source.
    walking = compile_operation(schema, document, name)
    assert walking is not None
    walking.generate = False
    walked = await execute_plan(walking, context(app, user), variables)
    for result in (got, walked):
        assert result.data == expected.data
        if ordered:
            assert errors_of(result) == errors_of(expected)
        else:
            assert sorted(map(repr, errors_of(result) or [])) == sorted(map(repr, errors_of(expected) or []))
    return got


async def sql(app: Starlette, statement: str, values: dict[str, Any] | None = None) -> Any:
    db: Database = app.state.services.db
    return await db.fetch_val(statement, values or {})


@pytest.mark.parametrize("name", ["home.json", "home-relay.json"])
async def test_home_answers_alike_signed_in(app: Starlette, name: str) -> None:
    home = op(name)
    result = await both(app, home["query"], home["variables"], user=7, name="Home")
    assert result.errors is None
    assert result.data is not None and len(result.data["feed"]["edges"]) == 20


async def test_anonymous_home_nulls_viewer_and_feed_with_unauthenticated_errors(app: Starlette) -> None:
    home = op("home.json")
    result = await both(app, home["query"], home["variables"], name="Home")
    assert result.data is not None
    assert result.data["viewer"] is None and result.data["feed"] is None
    assert len(result.data["leaderboard"]) == 10
    assert [e["extensions"]["code"] for e in errors_of(result) or []] == ["UNAUTHENTICATED"] * 2


@pytest.mark.parametrize("first", [1, 20, 100])
async def test_compiled_home_costs_at_most_four_statements(app: Starlette, first: int) -> None:
    home = op("home.json")
    plan = compile_operation(app.state.services.schema, parse(home["query"]), "Home")
    assert plan is not None
    counter = StatementCounter()
    token = current_counter.set(counter)
    try:
        result = await execute_plan(plan, context(app, 11), {**home["variables"], "first": first})
    finally:
        current_counter.reset(token)
    assert result.errors is None and result.data is not None
    assert len(result.data["feed"]["edges"]) == first
    assert counter.count <= 4, counter.statements


async def test_chat_list_and_room_history_answer_alike(app: Starlette) -> None:
    member = int(await sql(app, "SELECT min(user_id) FROM room_members WHERE room_id = 1"))
    await both(app, "{ viewer { rooms { id name } } }", user=member)
    history = await both(
        app,
        "query($id: ID!) { chatRoom(id: $id) { id name members { id } messages(last: 50) {"
        " edges { cursor node { id body createdAt clientMessageId author { id handle avatarUrl } } }"
        " pageInfo { startCursor endCursor hasPreviousPage hasNextPage } } } }",
        {"id": to_global_id("ChatRoom", 1)},
        user=member,
    )
    assert history.errors is None and history.data is not None
    assert history.data["chatRoom"]["messages"]["edges"]


async def test_a_chat_room_of_others_is_forbidden_alike(app: Starlette) -> None:
    outsider = int(
        await sql(
            app,
            "SELECT min(id) FROM users WHERE id NOT IN (SELECT user_id FROM room_members WHERE room_id = 1)",
        )
    )
    result = await both(app, '{ chatRoom(id: "1") { id name } games { id name } }', user=outsider)
    assert result.data is not None and result.data["chatRoom"] is None and result.data["games"]
    assert [e["extensions"]["code"] for e in errors_of(result) or []] == ["FORBIDDEN"]


async def test_bad_ids_are_bad_user_input_alike(app: Starlette) -> None:
    result = await both(
        app,
        '{ user(id: "not an id") { id } node(id: "bm9wZQ==") { id } other: user(id: "2") { handle } }',
        user=3,
    )
    assert [e["extensions"]["code"] for e in errors_of(result) or []] == ["BAD_USER_INPUT"] * 2


async def test_node_and_nodes_with_fragments_inline_fragments_and_aliases_answer_alike(
    app: Starlette,
) -> None:
    outsider = int(
        await sql(
            app,
            "SELECT min(id) FROM users WHERE id NOT IN (SELECT user_id FROM room_members WHERE room_id = 1)",
        )
    )
    ids = [
        to_global_id("User", 1),
        to_global_id("Post", 1),
        "garbage",  # BAD_USER_INPUT for this item only
        to_global_id("ChatRoom", 1),  # FORBIDDEN for this item only
        to_global_id("Post", 10**9),  # null: no such post
        to_global_id("Game", 2),
        to_global_id("Message", 1),  # FORBIDDEN as well
    ]
    query = """
        query Refetch($id: ID!, $ids: [ID!]!) {
          first: node(id: $id) { __typename id ...UserBits ... on Post { body } }
          second: node(id: $id) { ... on User { handle h: handle } }
          nodes(ids: $ids) {
            __typename
            id
            ...UserBits
            ...PostBits
            ... on Game { name leaderboard(first: 3) { rank points user { id } } }
            ... on ChatRoom { name }
          }
        }
        fragment UserBits on User { handle displayName createdAt }
        fragment PostBits on Post { likeCount viewerHasLiked createdAt author { ...UserBits } }
    """
    # Three items fail concurrently: their errors' order follows database timing (set comparison).
    result = await both(
        app, query, {"id": to_global_id("User", 5), "ids": ids}, user=outsider, name="Refetch", ordered=False
    )
    assert result.data is not None
    nodes = result.data["nodes"]
    assert [n and n["__typename"] for n in nodes] == ["User", "Post", None, None, None, "Game", None]
    codes = sorted(e["extensions"]["code"] for e in errors_of(result) or [])
    assert codes == ["BAD_USER_INPUT", "FORBIDDEN", "FORBIDDEN"]


async def test_include_and_skip_follow_the_variables_of_each_request(app: Starlette) -> None:
    query = """
        query Screen($withViewer: Boolean!, $noFeed: Boolean = false) {
          viewer @include(if: $withViewer) { id handle }
          feed(first: 3) @skip(if: $noFeed) {
            edges { node { id body @include(if: $withViewer) ... @skip(if: $withViewer) { createdAt } } }
          }
          games { id name @skip(if: true) }
        }
    """
    schema = app.state.services.schema
    document = parse(query)
    plan = compile_operation(schema, document, "Screen")
    assert plan is not None and plan.directive_variables == ("withViewer", "noFeed")
    for variables in (
        {"withViewer": True},
        {"withViewer": False, "noFeed": False},
        {"withViewer": True, "noFeed": True},
        {"withViewer": True},
    ):
        expected = await run_core(app, document, "Screen", variables, 4)
        got = await execute_plan(plan, context(app, 4), variables)
        assert got.data == expected.data and errors_of(got) == errors_of(expected)
    assert len(plan.variants) == 3  # one variant per combination, reused by the fourth request
    data = got.data
    assert data is not None and "viewer" in data and "name" not in data["games"][0]


async def test_a_non_null_field_error_nulls_the_nearest_nullable_parent(app: Starlette) -> None:
    member = int(await sql(app, "SELECT min(user_id) FROM room_members WHERE room_id = 1"))
    # ChatRoom.messages is non-null: its error nulls chatRoom, the other root fields stay.
    result = await both(
        app,
        '{ chatRoom(id: "1") { name messages(last: 5, before: "garbage") { edges { cursor } } } viewer { id } }',
        user=member,
    )
    assert result.data is not None and result.data["chatRoom"] is None and result.data["viewer"]
    assert [e["path"] for e in errors_of(result) or []] == [["chatRoom", "messages"]]


async def test_a_non_null_error_reaching_the_root_nulls_all_data_alike(app: Starlette) -> None:
    # Game.leaderboard, the Game items and Query.games are all non-null: data itself is null,
    # and graphql-core keeps only the first error once the root is nulled.
    result = await both(app, "{ viewer { id } games { name leaderboard(first: 5000) { rank } } }", user=2)
    assert result.data is None
    assert [e["extensions"]["code"] for e in errors_of(result) or []] == ["BAD_USER_INPUT"]


async def test_variables_that_do_not_coerce_are_a_request_error_alike(app: Starlette) -> None:
    home = op("home.json")
    result = await both(app, home["query"], {"first": "twenty", "game": "1"}, user=7, name="Home")
    assert result.data is None and result.errors and result.errors[0].path is None


async def test_coerced_variables_are_kept_per_typed_scalar_set_and_copied_per_request(
    app: Starlette,
) -> None:
    home = op("home.json")
    document = parse(home["query"])
    plan = compile_operation(app.state.services.schema, document, "Home")
    assert plan is not None
    for variables in ({"first": 3, "game": "1"}, {"first": 3, "game": "1"}, {"first": True, "game": "1"}):
        # `true` equals 1 in Python: a set kept for 1 must not answer for it (Int refuses true).
        expected = await run_core(app, document, "Home", variables, 7)
        got = await execute_plan(plan, context(app, 7), variables)
        assert got.data == expected.data and errors_of(got) == errors_of(expected)
    assert got.data is None and got.errors  # the request error, from the plan as from graphql-core
    assert list(plan.variable_sets) == [(("first", int, 3), ("game", str, "1"))]
    one, two = plan.coerce({"first": 3, "game": "1"}), plan.coerce({"first": 3, "game": "1"})
    assert not isinstance(one, list) and not isinstance(two, list)
    assert one.coerced == two.coerced == {"first": 3, "game": "1"}
    assert one.coerced is not two.coerced  # each request its own dicts
    for first in range(40):  # bounded: a cursor differs on every page
        plan.coerce({"first": first, "game": "1", "after": f"cursor-{first}"})
    assert len(plan.variable_sets) == 32


async def test_a_plan_builds_no_resolve_info_for_homes_list_resolvers(
    app: Starlette, monkeypatch: pytest.MonkeyPatch
) -> None:
    """`selected()` reads the plan's nodes and keeps its answers: no graphql-core info per request."""
    from bff import codegen

    built: list[Any] = []
    real = codegen._resolve_info

    def counted(*args: Any) -> Any:
        built.append(args)
        return real(*args)

    monkeypatch.setattr(codegen, "_resolve_info", counted)
    home = op("home-relay.json")
    plan = compile_operation(app.state.services.schema, parse(home["query"]), "Home")
    assert plan is not None
    for _ in range(2):
        result = await execute_plan(plan, context(app, 7), home["variables"])
        assert result.errors is None
    assert built == []


async def test_selections_are_answered_per_document_and_fragment(app: Starlette) -> None:
    without = await both(app, "{ games { leaderboard(first: 2) { rank } } }")
    assert without.data is not None and "user" not in without.data["games"][0]["leaderboard"][0]
    spread = await both(
        app,
        "{ games { leaderboard(first: 2) { rank ...U } } } fragment U on LeaderboardEntry { user { handle } }",
    )
    assert spread.data is not None and spread.data["games"][0]["leaderboard"][0]["user"]["handle"]


PROJECTED = """
    query Projected($first: Int) {
      feed(first: $first) {
        edges {
          __typename cursor
          node {
            __typename id body createdAt likeCount viewerHasLiked
            author { __typename id handle displayName avatarUrl createdAt }
          }
        }
        pageInfo { endCursor hasNextPage }
      }
      leaderboard(gameId: "1", first: 10) {
        __typename rank points user { __typename id handle displayName avatarUrl createdAt }
      }
      games { leaderboard(first: 3) { rank again: rank user { h: handle } } }
    }
"""


async def test_every_projected_field_is_answered_from_rows_as_the_objects_answer(
    app: Starlette, built_row_lists: list[str]
) -> None:
    # graphql-core and the step walk complete the objects the lists build; the generated plan
    # reads the rows: the three answers must be equal.
    result = await both(app, PROJECTED, {"first": 20}, user=7, name="Projected")
    assert result.errors is None and result.data is not None
    assert len(result.data["feed"]["edges"]) == 20 and len(result.data["leaderboard"]) == 10
    built_row_lists.clear()  # from here on: the plan alone
    plan = compile_operation(app.state.services.schema, parse(PROJECTED), "Projected")
    assert plan is not None
    again = await execute_plan(plan, context(app, 7), {"first": 20})
    assert again.data == result.data
    assert built_row_lists == []  # no PostEdge, Post, User or LeaderboardEntry object was built


def test_projections_name_fields_of_their_types(app: Starlette) -> None:
    """A misspelt field would silently send every list of the type to its objects."""
    schema = app.state.services.schema._schema
    for projection in (USER_ROWS, POST_ROWS, EDGE_ROWS, LEADERBOARD_ROWS):
        graphql_type = schema.get_type(projection.origin.__name__)
        assert set(projection.fields) <= set(graphql_type.fields), projection.origin


async def test_a_selection_the_projection_does_not_cover_completes_the_objects(
    app: Starlette, built_row_lists: list[str]
) -> None:
    # User.rooms has a resolver, which no projection reads (and which refuses others' rooms:
    # FORBIDDEN nulls the feed, alike in every executor).
    query = "{ feed(first: 3) { edges { node { id author { id rooms { id } } } } } }"
    result = await both(app, query, user=7, ordered=False)
    assert result.data == {"feed": None}
    assert {e["extensions"]["code"] for e in errors_of(result) or []} == {"FORBIDDEN"}
    assert "PostEdge" in built_row_lists


async def test_a_row_missing_a_value_sends_the_list_to_the_objects_and_their_resolvers(
    app: Starlette, monkeypatch: pytest.MonkeyPatch
) -> None:
    """A view without its stats (not fetched) has no like count to read: the resolvers load it."""
    from resolvers import posts as post_resolvers

    real = post_resolvers.hydrate

    async def without_first_stats(*args: Any, **kwargs: Any) -> Any:
        views = await real(*args, **kwargs)
        if views:
            views[0].stats = None
        return views

    home = op("home-relay.json")
    document = parse(home["query"])
    expected = await run_core(app, document, "Home", home["variables"], 7)
    monkeypatch.setattr(post_resolvers, "hydrate", without_first_stats)
    before = fallbacks_of("PostEdge")
    plan = compile_operation(app.state.services.schema, document, "Home")
    assert plan is not None
    got = await execute_plan(plan, context(app, 7), home["variables"])
    assert got.errors is None and got.data == expected.data
    # The list left its rows (one), then the edge whose post holds no like count left its fused
    # selection for the generic function (one more); the other 19 edges stayed fused.
    assert fallbacks_of("PostEdge") == before + 2


async def test_a_post_text_that_is_not_a_string_sends_the_list_to_the_objects(app: Starlette) -> None:
    """A `serialized` read answers its value only when it is a str: anything else abandons the
    rows and the objects (strawberry's DateTime) answer."""
    from schema import feed as feed_types

    home = op("home-relay.json")
    document = parse(home["query"])
    expected = await run_core(app, document, "Home", home["variables"], 7)
    first = expected.data["feed"]["edges"][0]["node"] if expected.data else None
    assert first is not None
    decoded = decode_global_id(first["id"])
    assert decoded is not None
    post_id = decoded[1]
    created_at, cursor, _ = feed_types._TEXTS[post_id]
    feed_types._TEXTS[post_id] = (created_at, cursor, 12345)  # type: ignore[assignment]
    try:
        before = fallbacks_of("PostEdge")
        plan = compile_operation(app.state.services.schema, document, "Home")
        assert plan is not None
        got = await execute_plan(plan, context(app, 7), home["variables"])
    finally:
        feed_types._TEXTS.pop(post_id, None)
    assert got.errors is None and got.data == expected.data
    assert fallbacks_of("PostEdge") == before + 1


def test_post_texts_follow_the_rows_created_at_and_its_zone() -> None:
    from schema.feed import view_created_at_text, view_cursor

    def view(post_id: int, created_at: datetime) -> PostView:
        return PostView(PostRow(post_id, 1, "b", created_at), None, None)

    moment = datetime(2026, 5, 1, 12, 30, 15, 250_000, tzinfo=UTC)
    first = view(987_654_321, moment)
    assert view_created_at_text(first) == moment.isoformat()
    assert view_cursor(first) == encode_feed_cursor(moment, 987_654_321)
    later = moment.replace(second=16)
    assert view_created_at_text(view(987_654_321, later)) == later.isoformat()
    assert view_cursor(view(987_654_321, later)) == encode_feed_cursor(later, 987_654_321)
    # The same instant in another zone is equal as a datetime, but its text is its own.
    elsewhere = later.astimezone(timezone(timedelta(hours=2)))
    assert elsewhere == later
    assert view_created_at_text(view(987_654_321, elsewhere)) == elsewhere.isoformat() != later.isoformat()


def test_post_texts_are_bounded(monkeypatch: pytest.MonkeyPatch) -> None:
    from schema import feed as feed_types

    monkeypatch.setattr(feed_types, "_TEXTS", {})
    monkeypatch.setattr(feed_types, "_TEXTS_SIZE", 4)
    moment = datetime(2026, 5, 1, 12, 0, tzinfo=UTC)
    for post_id in range(1, 11):
        view = PostView(PostRow(post_id, 1, "b", moment), None, None)
        assert feed_types.view_cursor(view) == encode_feed_cursor(moment, post_id)
        assert len(feed_types._TEXTS) <= 4
    assert 10 in feed_types._TEXTS  # the newest stays


def fallbacks_of(type_name: str) -> float:
    return REGISTRY.get_sample_value("bff_fused_fallbacks_total", {"type": type_name}) or 0.0


def test_a_row_list_is_a_sequence_of_the_objects_built_once() -> None:
    rows = [
        UserRow(i, f"u{i}", f"U {i}", f"https://a/{i}", datetime(2026, 1, i, tzinfo=UTC)) for i in (1, 2, 3)
    ]
    users: RowList[User] = RowList(USER_ROWS, rows)
    assert len(users) == 3 and repr(users) == "RowList(User, 3 rows)"
    first = list(users)
    assert [u.handle for u in first] == ["u1", "u2", "u3"] and first[0].id == to_global_id("User", 1)
    assert next(iter(users)) is first[0] and users[1] is first[1] and users[-1:] == first[-1:]


@pytest.mark.parametrize(
    "query",
    [
        'mutation { likePost(postId: "1") { likeCount } }',
        'subscription { messageAdded(roomId: "1") { id } }',
        "{ __schema { queryType { name } } }",
        '{ __type(name: "User") { name } }',
        "{ games { id ... @defer { name } } }",
        "{ games { id @deprecated } }",
        "query A { games { id } } query B { games { name } }",
    ],
)
def test_what_the_plan_does_not_cover_is_left_to_graphql_core(app: Starlette, query: str) -> None:
    assert compile_operation(app.state.services.schema, parse(query), None) is None


def test_plans_are_cached_per_document_and_operation(app: Starlette) -> None:
    cache = PlanCache(app.state.services.schema, size=2)
    first, again = parse("query A { games { id } }"), parse("query A { games { id } }")
    plan = cache.plan(first, "A")
    assert plan is not None and cache.plan(first, "A") is plan
    assert cache.plan(again, "A") is plan  # the same text parsed again
    assert cache.plan(first, "B") is None  # no such operation: graphql-core answers
    unlocated = parse("query A { games { id } }", no_location=True)
    assert cache.plan(unlocated, "A") not in (None, plan)


async def test_a_plan_that_cannot_be_built_is_answered_by_graphql_core(
    app: Starlette, monkeypatch: pytest.MonkeyPatch
) -> None:
    def refuse(*_: Any) -> None:
        raise Unsupported("as if the scan had missed something")

    monkeypatch.setattr(Compiler, "root", refuse)
    home = op("home.json")
    document = parse(home["query"])
    plan = compile_operation(app.state.services.schema, document, "Home")
    assert plan is not None
    expected = await run_core(app, document, "Home", home["variables"], 7)
    got = await execute_plan(plan, context(app, 7), home["variables"])
    assert got.data == expected.data and got.errors is None and not plan.variants
