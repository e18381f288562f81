"""Feed read model: per-request LATERAL read vs a per-user timeline table, on one database.

    python bench/feed_read_model.py postgresql://postgres@127.0.0.1:15432/bff_bench

Builds the timeline as an UNLOGGED table, measures, then drops it.
"""

import asyncio
import random
import sys
import time

import asyncpg

DSN = sys.argv[1] if len(sys.argv) > 1 else "postgresql://postgres@127.0.0.1:15432/bff_bench"
LATERAL = """SELECT p.id, p.author_id, p.body, p.created_at FROM follows f CROSS JOIN LATERAL (
  SELECT id, author_id, body, created_at FROM posts WHERE author_id = f.followee_id
  ORDER BY created_at DESC, id DESC LIMIT $2) p WHERE f.follower_id = $1
ORDER BY p.created_at DESC, p.id DESC LIMIT $2"""
TIMELINE = """SELECT p.id, p.author_id, p.body, p.created_at FROM timeline t JOIN posts p ON p.id = t.post_id
WHERE t.user_id = $1 ORDER BY t.created_at DESC, t.post_id DESC LIMIT $2"""


async def bench(conn, sql, n=2000):
    viewers = [random.randint(1, 10000) for _ in range(n)]
    for v in viewers[:100]:
        await conn.fetch(sql, v, 21)
    t = time.perf_counter()
    lat = []
    for v in viewers:
        s = time.perf_counter()
        await conn.fetch(sql, v, 21)
        lat.append(time.perf_counter() - s)
    lat.sort()
    return n / (time.perf_counter() - t), lat[len(lat) // 2] * 1000, lat[int(len(lat) * 0.99)] * 1000


async def main():
    conn = await asyncpg.connect(DSN)
    print("per-request LATERAL: %.0f/s p50 %.2f ms p99 %.2f ms" % await bench(conn, LATERAL))
    await conn.execute("DROP TABLE IF EXISTS timeline")
    t = time.perf_counter()
    await conn.execute(
        "CREATE UNLOGGED TABLE timeline AS SELECT f.follower_id AS user_id, p.created_at, p.id AS post_id FROM follows f JOIN posts p ON p.author_id = f.followee_id"
    )
    await conn.execute("CREATE INDEX ON timeline (user_id, created_at DESC, post_id DESC)")
    await conn.execute("ANALYZE timeline")
    build = time.perf_counter() - t
    rows = await conn.fetchval("SELECT count(*) FROM timeline")
    size = await conn.fetchval("SELECT pg_size_pretty(pg_total_relation_size('timeline'))")
    print(f"timeline build {build:.1f} s, {rows} rows, {size}")
    print("timeline read: %.0f/s p50 %.2f ms p99 %.2f ms" % await bench(conn, TIMELINE))
    print("per-request LATERAL again: %.0f/s p50 %.2f ms p99 %.2f ms" % await bench(conn, LATERAL))
    await conn.execute("DROP TABLE timeline")
    await conn.close()


asyncio.run(main())
