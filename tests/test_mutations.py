"""Mutations are safe to retry, access rules hold, and objects refetch by global ID.

Every test runs on SQLite and on Postgres (the `database_url` fixture), and checks the
database itself: counts of rows, not only what the API answers.
"""

from __future__ import annotations

import asyncio
import base64
from collections.abc import AsyncIterator
from typing import Any

import pytest

from bff.db import Database

SEND = (
    "mutation Send($roomId: ID!, $body: String!, $cmid: String!) { "
    "sendMessage(roomId: $roomId, body: $body, clientMessageId: $cmid) "
    "{ id body clientMessageId createdAt author { id } } }"
)
LIKE = "mutation($id: ID!) { likePost(postId: $id) { id likeCount viewerHasLiked } }"
UNLIKE = "mutation($id: ID!) { unlikePost(postId: $id) { id likeCount viewerHasLiked } }"
SUBMIT = (
    "mutation($g: ID!, $p: Int!) { submitScore(gameId: $g, points: $p) { game { id } points rank improved } }"
)
NODE = "query($id: ID!) { node(id: $id) { __typename id } }"


def gid(type_name: str, pk: int) -> str:
    return base64.b64encode(f"{type_name}:{pk}".encode()).decode()


def pk(global_id: str) -> int:
    return int(base64.b64decode(global_id).decode().partition(":")[2])


def codes(body: dict[str, Any]) -> list[str]:
    return [e["extensions"]["code"] for e in body.get("errors", [])]


def no_data(body: dict[str, Any], field: str) -> bool:
    """The field errored: `data` is null or absent (a non-null root field nulls `data`), or the field is null."""
    return (body.get("data") or {}).get(field) is None


@pytest.fixture
async def db(database_url: str) -> AsyncIterator[Database]:
    """A connection of the test's own to the same database the app uses."""
    database = Database(database_url)
    await database.connect()
    yield database
    await database.disconnect()


async def member_of(db: Database, room: int) -> int:
    return int(await db.fetch_val("SELECT min(user_id) FROM room_members WHERE room_id = :r", {"r": room}))


async def non_member_of(db: Database, room: int) -> int:
    return int(
        await db.fetch_val(
            "SELECT min(id) FROM users WHERE id NOT IN (SELECT user_id FROM room_members WHERE room_id = :r)",
            {"r": room},
        )
    )


async def count(db: Database, sql: str, values: dict[str, Any] | None = None) -> int:
    return int(await db.fetch_val(sql, values))


# -- sendMessage -----------------------------------------------------------------------------


async def test_send_message_is_stored_before_it_returns(gql: Any, db: Database) -> None:
    user = await member_of(db, 1)
    response = await gql(SEND, {"roomId": "1", "body": "hello there", "cmid": "stored-1"}, user=user)
    body = response.json()
    assert "errors" not in body, body
    message = body["data"]["sendMessage"]
    assert pk(message["author"]["id"]) == user
    # Read right after the response, on a connection of our own: the row is committed.
    row = await db.fetch_one(
        "SELECT id, room_id, author_id, body, client_message_id FROM messages WHERE id = :id",
        {"id": pk(message["id"])},
    )
    assert row is not None
    assert (row["room_id"], row["author_id"], row["body"], row["client_message_id"]) == (
        1,
        user,
        "hello there",
        "stored-1",
    )


async def test_send_message_retry_returns_the_stored_message(gql: Any, db: Database) -> None:
    user = await member_of(db, 1)
    before = await count(db, "SELECT count(*) FROM messages")
    variables = {"roomId": gid("ChatRoom", 1), "body": "retry me", "cmid": "retry-1"}
    first = (await gql(SEND, variables, user=user)).json()
    second = (await gql(SEND, variables, user=user)).json()
    # A retry with another body (the phone re-rendered it) still returns the stored message.
    third = (await gql(SEND, {**variables, "body": "edited"}, user=user)).json()
    assert "errors" not in first and "errors" not in second and "errors" not in third, (first, second, third)
    ids = {r["data"]["sendMessage"]["id"] for r in (first, second, third)}
    assert len(ids) == 1
    assert third["data"]["sendMessage"]["body"] == "retry me"
    assert await count(db, "SELECT count(*) FROM messages") == before + 1
    assert (
        await count(
            db,
            "SELECT count(*) FROM messages WHERE author_id = :a AND client_message_id = 'retry-1'",
            {"a": user},
        )
        == 1
    )


async def test_concurrent_retries_store_one_message(gql: Any, db: Database) -> None:
    user = await member_of(db, 2)
    before = await count(db, "SELECT count(*) FROM messages")
    variables = {"roomId": "2", "body": "at once", "cmid": "concurrent-1"}
    responses = await asyncio.wait_for(
        asyncio.gather(*(gql(SEND, variables, user=user) for _ in range(5))), timeout=60
    )
    bodies = [r.json() for r in responses]
    assert all("errors" not in b for b in bodies), bodies
    assert len({b["data"]["sendMessage"]["id"] for b in bodies}) == 1
    assert await count(db, "SELECT count(*) FROM messages") == before + 1


async def test_same_client_message_id_in_another_room_is_refused(gql: Any, db: Database) -> None:
    user = int(
        await db.fetch_val(
            "SELECT min(a.user_id) FROM room_members a JOIN room_members b "
            "ON a.user_id = b.user_id AND a.room_id = 1 AND b.room_id <> 1"
        )
    )
    other_room = int(
        await db.fetch_val(
            "SELECT min(room_id) FROM room_members WHERE user_id = :u AND room_id <> 1", {"u": user}
        )
    )
    first = (await gql(SEND, {"roomId": "1", "body": "one", "cmid": "dup-room"}, user=user)).json()
    assert "errors" not in first, first
    before = await count(db, "SELECT count(*) FROM messages")
    second = (
        await gql(SEND, {"roomId": str(other_room), "body": "two", "cmid": "dup-room"}, user=user)
    ).json()
    assert codes(second) == ["BAD_USER_INPUT"]
    assert no_data(second, "sendMessage")
    assert await count(db, "SELECT count(*) FROM messages") == before


async def test_non_member_cannot_send_or_read(gql: Any, db: Database) -> None:
    outsider = await non_member_of(db, 1)
    before = await count(db, "SELECT count(*) FROM messages")
    sent = (await gql(SEND, {"roomId": "1", "body": "let me in", "cmid": "outsider-1"}, user=outsider)).json()
    assert codes(sent) == ["FORBIDDEN"]
    assert await count(db, "SELECT count(*) FROM messages") == before

    room = (await gql("query($id: ID!) { chatRoom(id: $id) { id name } }", {"id": "1"}, user=outsider)).json()
    assert codes(room) == ["FORBIDDEN"] and no_data(room, "chatRoom")
    members = (
        await gql("query($id: ID!) { chatRoom(id: $id) { members { id } } }", {"id": "1"}, user=outsider)
    ).json()
    assert codes(members) == ["FORBIDDEN"] and no_data(members, "chatRoom")
    history = (
        await gql(
            "query($id: ID!) { chatRoom(id: $id) { messages(last: 5) { edges { node { body } } } } }",
            {"id": gid("ChatRoom", 1)},
            user=outsider,
        )
    ).json()
    assert codes(history) == ["FORBIDDEN"] and no_data(history, "chatRoom")
    # Another user's chat list is not readable either.
    member = await member_of(db, 1)
    rooms = (
        await gql("query($id: ID!) { user(id: $id) { rooms { id } } }", {"id": str(member)}, user=outsider)
    ).json()
    assert codes(rooms) == ["FORBIDDEN"]


# -- likes -----------------------------------------------------------------------------------


async def test_like_twice_keeps_one_like_and_unlike_is_idempotent(gql: Any, db: Database) -> None:
    user = 9
    post = int(
        await db.fetch_val(
            "SELECT min(id) FROM posts WHERE id NOT IN (SELECT post_id FROM likes WHERE user_id = :u)",
            {"u": user},
        )
    )
    likes_before = await count(db, "SELECT count(*) FROM likes WHERE post_id = :p", {"p": post})
    total_before = await count(db, "SELECT count(*) FROM likes")

    for _ in range(2):
        body = (await gql(LIKE, {"id": gid("Post", post)}, user=user)).json()
        assert "errors" not in body, body
        assert body["data"]["likePost"]["likeCount"] == likes_before + 1
        assert body["data"]["likePost"]["viewerHasLiked"] is True
    assert await count(db, "SELECT count(*) FROM likes WHERE post_id = :p", {"p": post}) == likes_before + 1
    assert (
        await count(
            db, "SELECT count(*) FROM likes WHERE post_id = :p AND user_id = :u", {"p": post, "u": user}
        )
        == 1
    )
    assert await count(db, "SELECT count(*) FROM likes") == total_before + 1

    for _ in range(2):
        body = (await gql(UNLIKE, {"id": str(post)}, user=user)).json()
        assert "errors" not in body, body
        assert body["data"]["unlikePost"]["likeCount"] == likes_before
        assert body["data"]["unlikePost"]["viewerHasLiked"] is False
    assert await count(db, "SELECT count(*) FROM likes") == total_before


async def test_concurrent_likes_keep_one_like(gql: Any, db: Database) -> None:
    user = 10
    post = int(
        await db.fetch_val(
            "SELECT min(id) FROM posts WHERE id NOT IN (SELECT post_id FROM likes WHERE user_id = :u)",
            {"u": user},
        )
    )
    total_before = await count(db, "SELECT count(*) FROM likes")
    responses = await asyncio.wait_for(
        asyncio.gather(*(gql(LIKE, {"id": str(post)}, user=user) for _ in range(5))), timeout=60
    )
    assert all("errors" not in r.json() for r in responses), [r.json() for r in responses]
    assert await count(db, "SELECT count(*) FROM likes") == total_before + 1


# -- scores ----------------------------------------------------------------------------------


async def sql_rank(db: Database, game: int, user: int) -> int:
    rows = await db.fetch_all(
        "SELECT user_id FROM scores WHERE game_id = :g ORDER BY points DESC, user_id ASC", {"g": game}
    )
    return [r["user_id"] for r in rows].index(user) + 1


async def test_submit_score_keeps_the_best(gql: Any, db: Database) -> None:
    user, game = 12, 2
    stored = await count(
        db, "SELECT points FROM scores WHERE game_id = :g AND user_id = :u", {"g": game, "u": user}
    )
    rows_before = await count(db, "SELECT count(*) FROM scores")
    best = stored + 1_000_000

    first = (await gql(SUBMIT, {"g": gid("Game", game), "p": best}, user=user)).json()
    assert "errors" not in first, first
    payload = first["data"]["submitScore"]
    assert (payload["points"], payload["improved"]) == (best, True)
    assert pk(payload["game"]["id"]) == game
    assert payload["rank"] == await sql_rank(db, game, user) == 1

    retry = (await gql(SUBMIT, {"g": str(game), "p": best}, user=user)).json()["data"]["submitScore"]
    assert (retry["points"], retry["improved"], retry["rank"]) == (best, False, 1)

    lower = (await gql(SUBMIT, {"g": str(game), "p": 3}, user=user)).json()["data"]["submitScore"]
    assert (lower["points"], lower["improved"]) == (best, False)
    assert (
        await count(
            db, "SELECT points FROM scores WHERE game_id = :g AND user_id = :u", {"g": game, "u": user}
        )
        == best
    )
    assert await count(db, "SELECT count(*) FROM scores") == rows_before


async def test_submit_score_rank_matches_sql(gql: Any, db: Database) -> None:
    game = 1
    # A tie with the 5th best: ties go to the lower user id.
    fifth = await db.fetch_one(
        "SELECT user_id, points FROM scores WHERE game_id = :g ORDER BY points DESC, user_id ASC LIMIT 1 OFFSET 4",
        {"g": game},
    )
    assert fifth is not None
    for user in (fifth["user_id"] + 1, max(fifth["user_id"] - 1, 1)):
        body = (await gql(SUBMIT, {"g": str(game), "p": fifth["points"]}, user=user)).json()
        assert "errors" not in body, body
        result = body["data"]["submitScore"]
        assert result["rank"] == await sql_rank(db, game, user)
        board = (
            await gql(
                "query($g: ID!) { leaderboard(gameId: $g, first: 100) { rank user { id } } }", {"g": "1"}
            )
        ).json()["data"]["leaderboard"]
        ranks = {pk(e["user"]["id"]): e["rank"] for e in board}
        if user in ranks:
            assert ranks[user] == result["rank"]


async def test_concurrent_score_submissions_keep_the_maximum(gql: Any, db: Database) -> None:
    user, game = 14, 3
    stored = await count(
        db, "SELECT points FROM scores WHERE game_id = :g AND user_id = :u", {"g": game, "u": user}
    )
    points = [stored + 10 * i for i in range(1, 6)]
    responses = await asyncio.wait_for(
        asyncio.gather(*(gql(SUBMIT, {"g": str(game), "p": p}, user=user) for p in points)), timeout=60
    )
    bodies = [r.json() for r in responses]
    assert all("errors" not in b for b in bodies), bodies
    assert await count(
        db, "SELECT points FROM scores WHERE game_id = :g AND user_id = :u", {"g": game, "u": user}
    ) == max(points)
    assert sum(b["data"]["submitScore"]["improved"] for b in bodies) >= 1


async def test_score_out_of_range_is_bad_input(gql: Any) -> None:
    body = (await gql(SUBMIT, {"g": "1", "p": -1}, user=3)).json()
    assert codes(body) == ["BAD_USER_INPUT"]


# -- authentication and missing objects ------------------------------------------------------


@pytest.mark.parametrize(
    ("query", "variables"),
    [
        (SEND, {"roomId": "1", "body": "hi", "cmid": "anon-1"}),
        (LIKE, {"id": "1"}),
        (UNLIKE, {"id": "1"}),
        (SUBMIT, {"g": "1", "p": 10}),
        ("{ viewer { id } }", {}),
        ("{ feed(first: 3) { edges { node { id } } } }", {}),
    ],
)
async def test_anonymous_requests_are_unauthenticated(
    gql: Any, db: Database, query: str, variables: dict[str, Any]
) -> None:
    tables = ("messages", "likes", "scores")
    before = [await count(db, f"SELECT count(*) FROM {t}") for t in tables]
    body = (await gql(query, variables)).json()
    assert codes(body) == ["UNAUTHENTICATED"], body
    assert [await count(db, f"SELECT count(*) FROM {t}") for t in tables] == before


@pytest.mark.parametrize(
    ("query", "variables"),
    [
        (SEND, {"roomId": "9999", "body": "hi", "cmid": "nowhere-1"}),
        (LIKE, {"id": "999999"}),
        (UNLIKE, {"id": gid("Post", 999999)}),
        (SUBMIT, {"g": "99", "p": 10}),
    ],
)
async def test_unknown_targets_are_not_found(
    gql: Any, db: Database, query: str, variables: dict[str, Any]
) -> None:
    tables = ("messages", "likes", "scores")
    before = [await count(db, f"SELECT count(*) FROM {t}") for t in tables]
    body = (await gql(query, variables, user=5)).json()
    assert codes(body) == ["NOT_FOUND"], body
    assert [await count(db, f"SELECT count(*) FROM {t}") for t in tables] == before


async def test_ids_of_the_wrong_type_are_bad_input(gql: Any) -> None:
    body = (await gql(LIKE, {"id": gid("Game", 1)}, user=5)).json()
    assert codes(body) == ["BAD_USER_INPUT"]
    body = (await gql(SEND, {"roomId": "not-an-id", "body": "x", "cmid": "x"}, user=5)).json()
    assert codes(body) == ["BAD_USER_INPUT"]


# -- node / nodes / user ---------------------------------------------------------------------


async def test_node_refetches_every_type(gql: Any, db: Database) -> None:
    member = await member_of(db, 1)
    message = int(await db.fetch_val("SELECT min(id) FROM messages WHERE room_id = 1"))
    query = """query($u: ID!, $p: ID!, $g: ID!, $r: ID!, $m: ID!) {
      u: node(id: $u) { __typename id ... on User { handle } }
      p: node(id: $p) { __typename id ... on Post { body likeCount author { id } } }
      g: node(id: $g) { __typename id ... on Game { name } }
      r: node(id: $r) { __typename id ... on ChatRoom { name } }
      m: node(id: $m) { __typename id ... on Message { body author { id } } }
    }"""
    variables = {
        "u": gid("User", 5),
        "p": gid("Post", 3),
        "g": gid("Game", 2),
        "r": gid("ChatRoom", 1),
        "m": gid("Message", message),
    }
    body = (await gql(query, variables, user=member)).json()
    assert "errors" not in body, body
    data = body["data"]
    for alias, type_name in (
        ("u", "User"),
        ("p", "Post"),
        ("g", "Game"),
        ("r", "ChatRoom"),
        ("m", "Message"),
    ):
        assert data[alias]["__typename"] == type_name
        assert data[alias]["id"] == variables[alias]
    assert data["u"]["handle"] == await db.fetch_val("SELECT handle FROM users WHERE id = 5")
    post = await db.fetch_one("SELECT body, author_id FROM posts WHERE id = 3")
    assert post is not None
    assert data["p"]["body"] == post["body"] and pk(data["p"]["author"]["id"]) == post["author_id"]
    assert data["p"]["likeCount"] == await count(db, "SELECT count(*) FROM likes WHERE post_id = 3")
    assert data["g"]["name"] == await db.fetch_val("SELECT name FROM games WHERE id = 2")
    assert data["r"]["name"] == await db.fetch_val("SELECT name FROM chat_rooms WHERE id = 1")
    assert data["m"]["body"] == await db.fetch_val("SELECT body FROM messages WHERE id = :m", {"m": message})


@pytest.mark.parametrize("type_name", ["User", "Post", "Game", "ChatRoom", "Message"])
async def test_node_is_null_for_a_missing_object(gql: Any, type_name: str) -> None:
    body = (await gql(NODE, {"id": gid(type_name, 999_999)}, user=5)).json()
    assert body == {"data": {"node": None}}


async def test_node_of_a_room_the_viewer_is_not_in_is_forbidden(gql: Any, db: Database) -> None:
    outsider = await non_member_of(db, 1)
    message = int(await db.fetch_val("SELECT min(id) FROM messages WHERE room_id = 1"))
    for global_id in (gid("ChatRoom", 1), gid("Message", message)):
        body = (await gql(NODE, {"id": global_id}, user=outsider)).json()
        assert codes(body) == ["FORBIDDEN"], body
        assert no_data(body, "node")
    anonymous = (await gql(NODE, {"id": gid("ChatRoom", 1)})).json()
    assert codes(anonymous) == ["UNAUTHENTICATED"]


NODES = "query($ids: [ID!]!) { nodes(ids: $ids) { __typename id } }"


async def test_nodes_keep_order_and_null_what_is_missing(gql: Any, db: Database) -> None:
    member = await member_of(db, 1)
    ids = [gid("Game", 1), gid("User", 999_999), gid("ChatRoom", 1), gid("User", 4), gid("Post", 2)]
    body = (await gql(NODES, {"ids": ids}, user=member)).json()
    assert "errors" not in body, body
    nodes = body["data"]["nodes"]
    assert [n and n["id"] for n in nodes] == [ids[0], None, ids[2], ids[3], ids[4]]
    assert [n and n["__typename"] for n in nodes] == ["Game", None, "ChatRoom", "User", "Post"]


async def test_nodes_with_a_room_the_viewer_is_not_in_is_forbidden(gql: Any, db: Database) -> None:
    outsider = await non_member_of(db, 1)
    body = (await gql(NODES, {"ids": [gid("Game", 1), gid("ChatRoom", 1)]}, user=outsider)).json()
    assert codes(body) == ["FORBIDDEN"], body
    assert body["errors"][0]["path"] == ["nodes", 1]


async def test_nodes_null_only_the_forbidden_item(gql: Any, db: Database) -> None:
    outsider = await non_member_of(db, 1)
    ids = [gid("Game", 1), gid("ChatRoom", 1), gid("User", 4)]
    body = (await gql(NODES, {"ids": ids}, user=outsider)).json()
    assert codes(body) == ["FORBIDDEN"]
    assert body["errors"][0]["path"] == ["nodes", 1]
    assert [n and n["id"] for n in body["data"]["nodes"]] == [ids[0], None, ids[2]]


async def test_node_refuses_malformed_ids(gql: Any) -> None:
    for bad in ("nope", gid("Nothing", 1), base64.b64encode(b"User:abc").decode()):
        body = (await gql(NODE, {"id": bad}, user=5)).json()
        assert codes(body) == ["BAD_USER_INPUT"], (bad, body)


async def test_user_accepts_bare_and_global_ids(gql: Any, db: Database) -> None:
    query = "query($id: ID!) { user(id: $id) { id handle } }"
    handle = await db.fetch_val("SELECT handle FROM users WHERE id = 5")
    for value in ("5", gid("User", 5)):
        body = (await gql(query, {"id": value})).json()
        assert body == {"data": {"user": {"id": gid("User", 5), "handle": handle}}}
    assert (await gql(query, {"id": "999999"})).json() == {"data": {"user": None}}
    assert codes((await gql(query, {"id": gid("Post", 5)})).json()) == ["BAD_USER_INPUT"]
