"""`bff seed`: the reference dataset, deterministic from a seed.

`small` and `medium` follow shared/peers/data/seed.py call for call (same random
stream, same anchor), so a bff database seeded with seed 42 holds the same rows as
the peers' `ref_small`/`ref_medium`: the peers' verifier and benchmarks apply as is.
`tiny` is the same shape, small enough for tests and a first look.
"""

from __future__ import annotations

import asyncio
import bisect
import itertools
import random
from collections.abc import Callable, Iterator
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta
from typing import Any

import structlog

from bff.db import Database

log = structlog.get_logger("bff.seed")

# Pages of the feed's tables not marked all-visible. The feed's index-only scans
# (resolvers/feed.py) visit the table for each tuple of such a page: on 2026-12-06 a seeded
# bench database whose VACUUM had left every page unmarked (a snapshot older than the load was
# still open somewhere) cost Postgres ~0.5 ms per Home instead of ~0.35 (docs/benchmarks.md).
_UNMARKED = """
SELECT coalesce(sum(relpages - relallvisible), 0) FROM pg_class
WHERE relname IN ('posts', 'follows', 'likes') AND relkind = 'r'
"""
_VACUUM_ATTEMPTS = 5

SIZES: dict[str, dict[str, int]] = {
    "tiny": dict(
        users=200, follows=20, posts=2_000, likes=5_000, games=3, rooms=4, room_members=20, room_messages=100
    ),
    "small": dict(
        users=1_000,
        follows=50,
        posts=20_000,
        likes=100_000,
        games=3,
        rooms=10,
        room_members=50,
        room_messages=2_000,
    ),
    "medium": dict(
        users=10_000,
        follows=50,
        posts=200_000,
        likes=1_000_000,
        games=3,
        rooms=100,
        room_members=50,
        room_messages=2_000,
    ),
}
ANCHOR = datetime(2025, 6, 1, tzinfo=UTC)

FIRST = ["Ada", "Bo", "Cy", "Dee", "Eli", "Fay", "Gus", "Hal", "Ivy", "Jo", "Kai", "Lu", "Max", "Nia", "Oz", "Pia",
         "Quin", "Rae", "Sol", "Tia", "Uma", "Vic", "Wes", "Xan", "Yui", "Zed"]  # fmt: skip
LAST = ["Stone", "Rivers", "Hale", "Moss", "Park", "Quill", "Reed", "Shaw", "Tate", "Vale", "Wolfe", "Young", "Ames",
        "Brook", "Crane", "Drake"]  # fmt: skip
WORDS = [
    "game",
    "level",
    "score",
    "win",
    "lose",
    "play",
    "again",
    "today",
    "friends",
    "team",
    "match",
    "boss",
    "loot",
    "quest",
    "map",
    "rank",
    "great",
    "nice",
    "wow",
    "lol",
    "gg",
    "fast",
    "slow",
    "hard",
    "easy",
    "new",
    "old",
    "best",
    "worst",
    "fun",
    "chill",
    "night",
    "morning",
    "coffee",
    "streak",
    "combo",
    "bonus",
    "jump",
    "run",
    "fly",
    "build",
    "craft",
    "trade",
    "chat",
    "join",
    "room",
    "party",
    "raid",
    "guild",
    "season",
]
GAMES = ["Block Drop", "Space Rocks", "Word Rush", "Kart Dash", "Tile Quest"]
TABLES = ["users", "follows", "posts", "likes", "games", "scores", "chat_rooms", "room_members", "messages"]

Rows = list[tuple[Any, ...]]


def _text(rng: random.Random, lo: int, hi: int) -> str:
    return " ".join(rng.choices(WORDS, k=rng.randint(lo, hi)))


def generate(size: str, seed: int = 42, anchor: datetime = ANCHOR) -> Iterator[tuple[str, list[str], Rows]]:
    """Yield (table, columns, rows) in load order. Mirrors the peers' generator exactly."""
    cfg = SIZES[size]
    rng = random.Random(seed)
    n_users = cfg["users"]
    window = 30 * 24 * 3600
    start = anchor - timedelta(seconds=window)

    users: Rows = []
    for uid in range(1, n_users + 1):
        users.append(
            (
                uid,
                f"user{uid}",
                f"{rng.choice(FIRST)} {rng.choice(LAST)}",
                f"https://cdn.example.com/avatars/{uid}.png",
                anchor - timedelta(seconds=rng.randint(window, 365 * 24 * 3600)),
            )
        )
    yield "users", ["id", "handle", "display_name", "avatar_url", "created_at"], users

    follows: Rows = []
    population = range(1, n_users + 1)
    for uid in population:
        picked = [v for v in rng.sample(population, cfg["follows"] + 1) if v != uid][: cfg["follows"]]
        follows.extend((uid, v) for v in picked)
    yield "follows", ["follower_id", "followee_id"], follows

    ranked = list(population)
    rng.shuffle(ranked)
    cum = list(itertools.accumulate(1.0 / r for r in range(1, n_users + 1)))
    total = cum[-1]
    posts: Rows = []
    for pid in range(1, cfg["posts"] + 1):
        author = ranked[bisect.bisect_left(cum, rng.random() * total)]
        created = start + timedelta(seconds=rng.randint(0, window - 1))
        posts.append((pid, author, _text(rng, 3, 30), created))
    yield "posts", ["id", "author_id", "body", "created_at"], posts

    seen: set[int] = set()
    likes: Rows = []
    n_posts = cfg["posts"]
    while len(likes) < cfg["likes"]:
        u = rng.randint(1, n_users)
        p = rng.randint(1, n_posts)
        key = u * (n_posts + 1) + p
        if key in seen:
            continue
        seen.add(key)
        likes.append((u, p))
    del seen
    yield "likes", ["user_id", "post_id"], likes

    games: Rows = [(gid, GAMES[gid - 1]) for gid in range(1, cfg["games"] + 1)]
    yield "games", ["id", "name"], games
    scores: Rows = []
    for gid, _ in games:
        for uid in population:
            points = rng.randint(0, 1_000_000)  # drawn before updated_at, as the peers do
            scores.append((gid, uid, points, start + timedelta(seconds=rng.randint(0, window - 1))))
    yield "scores", ["game_id", "user_id", "points", "updated_at"], scores

    rooms: Rows = [(rid, f"room-{rid}") for rid in range(1, cfg["rooms"] + 1)]
    yield "chat_rooms", ["id", "name"], rooms
    members: Rows = []
    room_users: dict[int, list[int]] = {}
    for rid, _ in rooms:
        room_users[rid] = sorted(rng.sample(population, cfg["room_members"]))
        members.extend((rid, uid) for uid in room_users[rid])
    yield "room_members", ["room_id", "user_id"], members

    messages: Rows = []
    mid = 0
    for rid, _ in rooms:
        offsets = sorted(rng.randint(0, window - 1) for _ in range(cfg["room_messages"]))
        for off in offsets:
            mid += 1
            author = rng.choice(room_users[rid])  # drawn before the body, as the peers do
            messages.append(
                (mid, rid, author, _text(rng, 1, 20), start + timedelta(seconds=off), f"seed-{mid}")
            )
    yield "messages", ["id", "room_id", "author_id", "body", "created_at", "client_message_id"], messages


@dataclass
class SeedResult:
    size: str
    loaded: bool
    rows: dict[str, int]


Progress = Callable[[str, int], None]


async def seed(
    db: Database, size: str, *, seed: int = 42, reset: bool = False, progress: Progress | None = None
) -> SeedResult:
    """Load `size` once. A database already seeded is left alone unless `reset` (which empties it first)."""
    if size not in SIZES:
        raise ValueError(f"unknown size {size!r}; choose one of {', '.join(SIZES)}")
    existing = await db.fetch_all("SELECT size, seed FROM bff_seed")
    if existing and not reset:
        return SeedResult(size=str(existing[0]["size"]), loaded=False, rows={})
    has_rows = await db.fetch_val("SELECT count(*) FROM users")
    if has_rows and not reset:
        raise RuntimeError(
            "the database already holds users that bff seed did not load; use --reset to replace them"
        )
    counts: dict[str, int] = {}
    if db.dialect == "postgresql":
        counts = await _load_postgres(db, size, seed, progress)
    else:
        async with db.transaction():
            for table in [*reversed(TABLES), "bff_seed"]:
                await db.execute(f"DELETE FROM {table}")
        for table, columns, rows in generate(size, seed):
            counts[table] = await db.bulk_insert(table, columns, rows)
            if progress:
                progress(table, counts[table])
    if db.dialect == "postgresql":
        for table in ("users", "posts", "games", "chat_rooms", "messages"):
            await db.execute(
                f"SELECT setval(pg_get_serial_sequence('{table}', 'id'), (SELECT coalesce(max(id), 1) FROM {table}))"
            )
        await _vacuum(db)
    await db.execute(
        "INSERT INTO bff_seed (size, seed, seeded_at) VALUES (:size, :seed, :at)",
        {"size": size, "seed": seed, "at": datetime.now(UTC)},
    )
    return SeedResult(size=size, loaded=True, rows=counts)


async def _vacuum(db: Database) -> None:
    """VACUUM ANALYZE, as after any bulk load, until the feed's tables are marked all-visible.

    A snapshot taken before the load committed keeps VACUUM from marking its pages; such
    snapshots end within seconds (an autovacuum ANALYZE, a client between statements), so
    VACUUM is tried again a few times before the seed says so and carries on.
    """
    await db.execute("VACUUM ANALYZE")
    for _ in range(_VACUUM_ATTEMPTS - 1):
        if not await db.fetch_val(_UNMARKED):
            return
        await asyncio.sleep(1)
        await db.execute("VACUUM posts, follows, likes")
    unmarked = await db.fetch_val(_UNMARKED)
    if unmarked:
        log.warning(
            "seed_visibility_map_unset", pages=int(unmarked), advice="run VACUUM once the database is idle"
        )


# Foreign keys and secondary indexes of the seeded tables, with the statements that re-create them.
_FOREIGN_KEYS = """
SELECT quote_ident(r.relname) AS tbl, quote_ident(c.conname) AS name, pg_get_constraintdef(c.oid) AS def
FROM pg_constraint c
JOIN pg_class r ON r.oid = c.conrelid
JOIN pg_namespace n ON n.oid = r.relnamespace
WHERE c.contype = 'f' AND n.nspname = current_schema() AND r.relname = ANY(:tables)
ORDER BY c.oid
"""
_SECONDARY_INDEXES = """
SELECT quote_ident(x.relname) AS name, pg_get_indexdef(i.indexrelid) AS def
FROM pg_index i
JOIN pg_class r ON r.oid = i.indrelid
JOIN pg_class x ON x.oid = i.indexrelid
JOIN pg_namespace n ON n.oid = r.relnamespace
WHERE n.nspname = current_schema() AND r.relname = ANY(:tables)
  AND NOT EXISTS (SELECT 1 FROM pg_constraint c WHERE c.conindid = i.indexrelid AND c.contype IN ('p', 'u', 'x'))
ORDER BY i.indexrelid
"""


async def _load_postgres(db: Database, size: str, seed: int, progress: Progress | None) -> dict[str, int]:
    """Empty and load every table in one transaction, as fast as Postgres allows.

    Row-by-row foreign-key triggers dominate a plain COPY (1M likes = 2M lookups), so the
    foreign keys and the secondary indexes are dropped for the load and re-created after it
    from their own definitions (each foreign key is then validated by one query). Primary keys
    and unique constraints stay. The rows are the ones `generate` yields, in the same order;
    any failure rolls the whole load back, schema included.
    """
    counts: dict[str, int] = {}
    async with db.transaction():
        await db.execute(f"TRUNCATE {', '.join([*TABLES, 'bff_seed'])}")
        fks = await db.fetch_all(_FOREIGN_KEYS, {"tables": TABLES})
        indexes = await db.fetch_all(_SECONDARY_INDEXES, {"tables": TABLES})
        for fk in fks:
            await db.execute(f"ALTER TABLE {fk['tbl']} DROP CONSTRAINT {fk['name']}")
        for index in indexes:
            await db.execute(f"DROP INDEX {index['name']}")
        for table, columns, rows in generate(size, seed):
            counts[table] = await db.bulk_insert(table, columns, rows)
            if progress:
                progress(table, counts[table])
        for index in indexes:
            await db.execute(index["def"])
        for fk in fks:
            await db.execute(f"ALTER TABLE {fk['tbl']} ADD CONSTRAINT {fk['name']} {fk['def']}")
    return counts
