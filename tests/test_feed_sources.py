"""The feed merged from cached sources (FEED_CACHED_SOURCES, decision 49): the merge itself, then
the three paths through the app on SQLite and Postgres, the fill a second instance starts from,
and `offer`."""

from __future__ import annotations

import base64
import random
from collections.abc import AsyncIterator, Callable
from datetime import UTC, datetime, timedelta
from typing import Any

import httpx
import pytest
from asgi_lifespan import LifespanManager
from prometheus_client import REGISTRY
from redis.asyncio import Redis
from starlette.applications import Starlette

from bff.app import create_app
from bff.cache import Cache
from bff.cache_local import LocalLayer
from bff.config import Settings
from bff.db import Database
from resolvers.feed_sources import (
    FOLLOWEES,
    KEYS_PER_AUTHOR,
    RECENT_POSTS,
    followees_from_db,
    merge_page,
    post_key,
    recent_posts_from_db,
)
from tests.edge_fixtures import fresh_redis_url
from tests.servers import RedisServer

FEED = """query($first: Int!, $after: String) {
  feed(first: $first, after: $after) {
    edges { cursor node { id likeCount viewerHasLiked author { id } } }
    pageInfo { hasNextPage }
  }
}"""


# -- the merge -----------------------------------------------------------------------------------


def test_a_merged_page_is_the_full_sort_or_none_and_none_only_where_a_cut_list_hides_posts() -> None:
    rng = random.Random(49)
    decided = undecided = 0
    for _ in range(300):
        sizes = [rng.choice([0, 1, 3, 10, 20, 21, 22, 40]) for _ in range(rng.randint(1, 30))]
        authors = [rng.sample(range(1, 100_000), size) for size in sizes]
        full = [sorted(keys, reverse=True) for keys in authors]
        cut = [keys[:KEYS_PER_AUTHOR] for keys in full]
        everything = sorted((k for keys in full for k in keys), reverse=True)
        n = rng.choice([1, 5, 21, 30, 60])
        before = rng.choice([None, *everything[:40]]) if everything else None
        expected = [k for k in everything if before is None or k < before][:n]
        page = merge_page(cut, n, before)
        if page is None:
            undecided += 1
            # only a list that may have been cut can leave a page undecided
            assert any(len(keys) >= KEYS_PER_AUTHOR for keys in full)
        else:
            decided += 1
            assert page == expected
        if all(len(keys) < KEYS_PER_AUTHOR for keys in full):
            assert page == expected  # nothing hidden: always decided
    assert decided > 100 and undecided > 10  # both outcomes were exercised


def test_a_full_first_page_of_one_prolific_author_is_decided() -> None:
    prolific = list(range(1000, 1000 - KEYS_PER_AUTHOR, -1))  # cut: older posts exist
    quiet = [10, 5]
    assert merge_page([prolific, quiet], KEYS_PER_AUTHOR) == prolific
    assert merge_page([prolific, quiet], KEYS_PER_AUTHOR + 1) is None  # the 22nd could be hidden


def test_post_keys_order_as_the_feed_orders_posts() -> None:
    t = datetime(2026, 12, 6, 12, 0, 0, 123456, tzinfo=UTC)
    posts = [(t, 5), (t, 7), (t + timedelta(microseconds=1), 1), (t - timedelta(days=400), 2**40 - 1)]
    assert sorted(posts, key=lambda p: post_key(*p)) == sorted(posts)
    with pytest.raises(ValueError):
        post_key(t, 2**40)


# -- through the app -----------------------------------------------------------------------------


@pytest.fixture
async def app(make_settings: Callable[..., Settings]) -> AsyncIterator[Starlette]:
    """conftest's `app`, with the feed's sources cached (off by default)."""
    application = create_app(make_settings(feed_cached_sources=True))
    async with LifespanManager(application):
        yield application


def _pk(global_id: str) -> int:
    return int(base64.b64decode(global_id).decode().partition(":")[2])


def _paths() -> dict[str, float]:
    return {
        p: REGISTRY.get_sample_value("bff_feed_pages_total", {"path": p}) or 0.0
        for p in ("merged", "filled", "scanned")
    }


def _statements() -> float:
    return sum(
        REGISTRY.get_sample_value("bff_sql_statements_total", {"dialect": d}) or 0.0
        for d in ("sqlite", "postgresql")
    )


async def _expected_feed(database_url: str, viewer: int) -> list[tuple[int, int, bool]]:
    """(post id, like count, liked by the viewer) of the viewer's whole feed, newest first."""
    db = Database(database_url)
    await db.connect()
    try:
        rows = await db.fetch_all(
            "SELECT p.id, p.created_at,"
            " (SELECT count(*) FROM likes l WHERE l.post_id = p.id) AS likes,"
            " (SELECT count(*) FROM likes l WHERE l.post_id = p.id AND l.user_id = :v) AS liked"
            " FROM posts p JOIN follows f ON f.followee_id = p.author_id AND f.follower_id = :v",
            {"v": viewer},
        )
    finally:
        await db.disconnect()
    rows = sorted(rows, key=lambda r: (r["created_at"], r["id"]), reverse=True)
    return [(r["id"], int(r["likes"]), bool(r["liked"])) for r in rows]


def _edges(body: dict[str, Any]) -> list[tuple[int, int, bool]]:
    edges = body["data"]["feed"]["edges"]
    return [(_pk(e["node"]["id"]), e["node"]["likeCount"], e["node"]["viewerHasLiked"]) for e in edges]


async def test_the_first_home_fills_the_sources_and_the_next_is_merged_with_one_statement(
    gql: Callable[..., Any], database_url: str
) -> None:
    for viewer in (3, 17, 42):
        expected = await _expected_feed(database_url, viewer)
        paths, statements = _paths(), _statements()
        first = (await gql(FEED, {"first": 20}, user=viewer)).json()
        assert _paths()["filled"] == paths["filled"] + 1
        assert _edges(first) == expected[:20]
        assert first["data"]["feed"]["pageInfo"]["hasNextPage"] == (len(expected) > 20)

        paths, statements = _paths(), _statements()
        again = (await gql(FEED, {"first": 20}, user=viewer)).json()
        assert _paths()["merged"] == paths["merged"] + 1
        assert _statements() - statements == 1  # the page's rows and likes; the rest is cached
        assert again == first


async def test_every_page_walked_by_cursor_matches_the_database_whichever_path_read_it(
    gql: Callable[..., Any], database_url: str
) -> None:
    # viewers with a prolific followee, so some pages cannot be decided by the cut lists
    for viewer in (1, 5, 8):
        expected = await _expected_feed(database_url, viewer)
        await gql(FEED, {"first": 20}, user=viewer)  # fills the sources
        before = _paths()
        walked: list[tuple[int, int, bool]] = []
        after = None
        while True:
            body = (await gql(FEED, {"first": 7, "after": after}, user=viewer)).json()
            assert "errors" not in body, body
            walked += _edges(body)
            if not body["data"]["feed"]["pageInfo"]["hasNextPage"]:
                break
            after = body["data"]["feed"]["edges"][-1]["cursor"]
        assert walked == expected
        used = {p for p, n in _paths().items() if n > before[p]}
        assert "merged" in used and "filled" not in used


async def test_a_long_page_is_scanned_and_matches_the_database(
    gql: Callable[..., Any], database_url: str
) -> None:
    expected = await _expected_feed(database_url, 9)
    before = _paths()
    body = (await gql(FEED, {"first": 60}, user=9)).json()
    assert _edges(body) == expected[:60]
    assert _paths()["scanned"] == before["scanned"] + 1  # longer than a cached list: not filled


async def test_a_like_shows_on_the_merged_page_at_once(gql: Callable[..., Any]) -> None:
    like = "mutation($id: ID!) { likePost(postId: $id) { id likeCount viewerHasLiked } }"
    await gql(FEED, {"first": 20}, user=4)  # fills the sources
    edges = (await gql(FEED, {"first": 20}, user=4)).json()["data"]["feed"]["edges"]
    node = next(e["node"] for e in edges if not e["node"]["viewerHasLiked"])
    assert (await gql(like, {"id": node["id"]}, user=4)).status_code == 200
    paths = _paths()
    after = _edges((await gql(FEED, {"first": 20}, user=4)).json())
    assert _paths()["merged"] == paths["merged"] + 1
    assert (_pk(node["id"]), node["likeCount"] + 1, True) in after


async def test_a_second_instance_merges_a_viewers_first_home_from_what_redis_was_offered(
    redis_server: RedisServer, make_settings: Callable[..., Settings]
) -> None:
    settings = make_settings(
        redis_url=await fresh_redis_url(redis_server), rate_limit_enabled=False, feed_cached_sources=True
    )
    answers = []
    for instance in range(2):
        application = create_app(settings)
        async with LifespanManager(application):
            token = application.state.services.tokens.issue(6)
            transport = httpx.ASGITransport(app=application)
            async with httpx.AsyncClient(transport=transport, base_url="http://bff") as client:
                paths, statements = _paths(), _statements()
                response = await client.post(
                    "/graphql",
                    json={"query": FEED, "variables": {"first": 20}},
                    headers={"Authorization": f"Bearer {token}"},
                )
                answers.append(response.json())
                if instance == 1:  # warmed from Redis at its start: no scan of the followees
                    assert _paths()["merged"] == paths["merged"] + 1
                    assert _statements() - statements == 1
    assert answers[0] == answers[1] and "errors" not in answers[0]


async def test_the_background_reloads_read_what_the_fill_offered(
    app: Starlette, gql: Callable[..., Any]
) -> None:
    """Refresh-through reloads a key without a request (`Cache.reload_from`): its statements
    must give the values the fill statement gave, on both databases."""
    services = app.state.services
    await gql(FEED, {"first": 20}, user=12)
    followees = services.cache.held(FOLLOWEES, [12])[12]
    lists = services.cache.held(RECENT_POSTS, followees)
    reloaded = await followees_from_db(services.db, [12])
    assert sorted(reloaded[12]) == sorted(followees)  # the same people (the order is not used)
    assert await recent_posts_from_db(services.db, list(followees)) == lists
    assert any(len(keys) == KEYS_PER_AUTHOR for keys in lists.values())  # some were cut
    assert await recent_posts_from_db(services.db, [10**9]) == {10**9: ()}  # no such author


async def test_by_default_every_page_is_scanned_and_nothing_is_cached_for_it(
    make_settings: Callable[..., Settings],
) -> None:
    application = create_app(make_settings())
    async with LifespanManager(application):
        token = application.state.services.tokens.issue(3)
        transport = httpx.ASGITransport(app=application)
        async with httpx.AsyncClient(transport=transport, base_url="http://bff") as client:
            before = _paths()
            for _ in range(2):
                response = await client.post(
                    "/graphql",
                    json={"query": FEED, "variables": {"first": 20}},
                    headers={"Authorization": f"Bearer {token}"},
                )
                assert "errors" not in response.json()
        assert _paths()["scanned"] == before["scanned"] + 2
        assert application.state.services.cache.held(FOLLOWEES, [3]) == {}


# -- offer ---------------------------------------------------------------------------------------


async def test_an_offer_fills_what_redis_lacks_and_never_a_key_a_write_touched(
    redis_server: RedisServer,
) -> None:
    client = Redis.from_url(await fresh_redis_url(redis_server))
    cache = Cache(enabled=True, local=LocalLayer(100, 60), redis=client, scope="offer-test")
    prefix = "bff:cache:offer-test:followees:"
    await cache.offer(FOLLOWEES, {1: (2, 3)}, 0.0)
    assert await client.get(prefix + "1") == b"[2,3]"
    assert cache.held(FOLLOWEES, [1]) == {1: (2, 3)}

    await client.set(prefix + "2", b"[9]")
    await cache.offer(FOLLOWEES, {2: (4,)}, 0.0)
    assert await client.get(prefix + "2") == b"[9]"  # what Redis holds stays (no older than a write)

    await cache.invalidate(FOLLOWEES, [3])
    await cache.offer(FOLLOWEES, {3: (5,)}, 0.0)  # read before that write, for all `offer` knows
    assert await client.get(prefix + "3") is None
    assert cache.held(FOLLOWEES, [3]) == {}  # the local layer refuses it too: invalidated since
    await cache.close()


async def test_an_author_list_travels_through_redis_as_text_and_back(redis_server: RedisServer) -> None:
    client = Redis.from_url(await fresh_redis_url(redis_server))
    cache = Cache(enabled=True, local=LocalLayer(100, 60), redis=client, scope="keys-test")
    keys = tuple(
        sorted((post_key(datetime(2026, 1, 1, tzinfo=UTC), i) for i in (1, 2**40 - 1)), reverse=True)
    )
    await cache.offer(RECENT_POSTS, {7: keys, 8: ()}, 0.0)
    assert RECENT_POSTS.decode(await client.get("bff:cache:keys-test:recent_posts:7")) == keys
    assert RECENT_POSTS.decode(await client.get("bff:cache:keys-test:recent_posts:8")) == ()
    await cache.close()
