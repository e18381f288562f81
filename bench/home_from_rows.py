"""Prototype of the next step of the performance issue: the Home answer built straight from rows.

    python -m bench.home_from_rows postgresql://postgres@127.0.0.1:15432/bff_bench \
        --redis-url redis://127.0.0.1:16379/0 --n 400 --rounds 5

In-process, no sockets, the production services (cache in layers, Redis when given). For the
same viewers, back to back, it measures the CPU per Home (time.process_time: this process
only, the database's work excluded) of:

- `app`: the whole ASGI app (middleware, auth, document cache, cost, compiled plan, orjson
  body, compression off), driven by a minimal ASGI caller: what a request costs minus uvicorn;
- `compiled`: bff/compiled.py's plan plus the JSON encoding: the execution share of `app`;
- `rows`: the same resolver calls (the same loaders, caches and SQL), then the answer built
  by one hand-written projection of Home, the way a plan compiled to Python source per
  trusted operation (graphql-jit's approach) would build it; then the same JSON encoding;
- `http`: the app with its execution replaced by a ready answer (the first viewer's): the
  HTTP layer alone. `app` minus `compiled` exceeds it by what executing inside a request
  costs beyond executing alone (the answer's release after the response, caches shared
  with the layer's own work).

`rows` answers exactly what `compiled` answers (checked for --viewers viewers first), so the
difference between the two is what executing a trusted operation as generated code instead of
a walk over steps would save; `app` minus `compiled` is the HTTP layer's share. Not used by
the server: a measurement for docs/benchmarks.md.
"""

from __future__ import annotations

import argparse
import asyncio
import cProfile
import json
import pstats
import statistics
import time
from collections.abc import Awaitable, Callable
from pathlib import Path
from typing import Any

import orjson
from asgi_lifespan import LifespanManager
from graphql import ExecutionResult, parse

from bff.app import create_app
from bff.auth import Viewer
from bff.compiled import Plan, compile_operation, execute_plan
from bff.config import load_settings
from bff.services import Services
from resolvers import feed as feed_resolvers
from resolvers import games as game_resolvers
from resolvers import posts as post_resolvers
from resolvers import users as user_resolvers
from resolvers.context import Context
from schema.relay import encode_feed_cursor, to_global_id

DEFAULT_OP = Path(__file__).resolve().parent.parent / "tests" / "ops" / "home-relay.json"
Execute = Callable[[int], Awaitable[bytes]]


def _iso(value: Any) -> str:
    return str(value.isoformat())


async def home_from_rows(ctx: Context, first: int, game_id: int) -> dict[str, Any]:
    """Home's answer: the resolvers' data, projected by hand (what generated code would do)."""
    viewer_id = ctx.require_viewer()

    async def feed() -> tuple[list[Any], bool]:
        page = await feed_resolvers.list_feed(ctx, viewer_id, first, None)
        views = await post_resolvers.hydrate(ctx, page.posts, stats=True, author=True, liked=page.liked)
        return views, page.has_next_page

    viewer, (views, has_next), board = await asyncio.gather(
        user_resolvers.get_viewer(ctx),
        feed(),
        game_resolvers.leaderboard(ctx, game_id, 10, with_users=True),
    )
    edges = []
    for view in views:
        post, stats, author = view.post, view.stats, view.author
        edges.append(
            {
                "cursor": encode_feed_cursor(post.created_at, post.id),
                "node": {
                    "id": to_global_id("Post", post.id),
                    "body": post.body,
                    "createdAt": _iso(post.created_at),
                    "likeCount": stats.like_count,
                    "viewerHasLiked": stats.viewer_has_liked,
                    "author": {
                        "id": to_global_id("User", author.id),
                        "handle": author.handle,
                        "avatarUrl": author.avatar_url,
                    },
                },
            }
        )
    return {
        "viewer": {
            "id": to_global_id("User", viewer.id),
            "handle": viewer.handle,
            "displayName": viewer.display_name,
            "avatarUrl": viewer.avatar_url,
        },
        "feed": {
            "edges": edges,
            "pageInfo": {"endCursor": edges[-1]["cursor"] if edges else None, "hasNextPage": has_next},
        },
        "leaderboard": [
            {
                "rank": row.entry.rank,
                "points": row.entry.points,
                "user": {
                    "id": to_global_id("User", row.user.id),
                    "handle": row.user.handle,
                    "avatarUrl": row.user.avatar_url,
                },
            }
            for row in board
        ],
    }


def http_runner(app: Any, body: bytes, tokens: list[str], answer: dict[str, Any]) -> Execute:
    """`app_runner` with GraphQLHTTP's execution answering `answer` at once."""
    http = app.state.http
    through_app = app_runner(app, body, tokens)

    async def ready(*_: Any) -> ExecutionResult:
        return ExecutionResult(answer, None)

    async def run(viewer: int) -> bytes:
        http._execute = ready  # this instance only, for this call
        try:
            return await through_app(viewer)
        finally:
            del http._execute

    return run


def compiled_runner(services: Services, plan: Plan, variables: dict[str, Any]) -> Execute:
    async def run(viewer: int) -> bytes:
        ctx = services.context(Viewer(viewer, 1e12))
        result = await execute_plan(plan, ctx, variables)
        if result.errors:
            raise SystemExit(f"execution failed: {result.errors[0]}")
        return orjson.dumps({"data": result.data})

    return run


def rows_runner(services: Services, variables: dict[str, Any]) -> Execute:
    first = int(variables["first"])
    game = 1  # ops/home-relay.json asks for Game:1

    async def run(viewer: int) -> bytes:
        ctx = services.context(Viewer(viewer, 1e12))
        return orjson.dumps({"data": await home_from_rows(ctx, first, game)})

    return run


def app_runner(app: Any, body: bytes, tokens: list[str]) -> Execute:
    """One POST /graphql through the ASGI app, as uvicorn would call it (one body chunk)."""

    async def run(viewer: int) -> bytes:
        scope = {
            "type": "http",
            "asgi": {"version": "3.0"},
            "http_version": "1.1",
            "method": "POST",
            "scheme": "http",
            "path": "/graphql",
            "raw_path": b"/graphql",
            "query_string": b"",
            "root_path": "",
            "headers": [
                (b"host", b"127.0.0.1"),
                (b"content-type", b"application/json"),
                (b"accept", b"application/json"),
                (b"authorization", b"Bearer " + tokens[viewer - 1].encode()),
                (b"content-length", str(len(body)).encode()),
            ],
            "client": ("127.0.0.1", 50000),
            "server": ("127.0.0.1", 8000),
            "state": {},
        }
        chunks: list[bytes] = []
        status = 0

        async def receive() -> dict[str, Any]:
            return {"type": "http.request", "body": body, "more_body": False}

        async def send(message: dict[str, Any]) -> None:
            nonlocal status
            if message["type"] == "http.response.start":
                status = message["status"]
            elif message["type"] == "http.response.body":
                chunks.append(message.get("body", b""))

        await app(scope, receive, send)
        if status != 200:
            raise SystemExit(f"HTTP {status}: {b''.join(chunks)[:300]!r}")
        return b"".join(chunks)

    return run


async def cpu_ms(run: Execute, n: int, viewers: int, offset: int) -> float:
    started = time.process_time()
    for i in range(n):
        await run(1 + (offset + i) % viewers)
    return (time.process_time() - started) * 1000 / n


async def main(args: argparse.Namespace) -> None:
    op = json.loads(Path(args.op).read_text())  # noqa: ASYNC240 - once, before measuring
    variables = op.get("variables") or {}
    name = op.get("operationName")
    overrides: dict[str, Any] = {
        "database_url": args.database_url,
        "redis_url": args.redis_url,
        "bff_env": "production",
        "jwt_secret": "bff-bench-secret-" + "x" * 32,
        "rate_limit_enabled": False,
        "compression_min_bytes": 1 << 30,  # measured without compression, like the peers' bench
        "log_level": "WARNING",
    }
    app = create_app(load_settings(**overrides))
    async with LifespanManager(app):
        services: Services = app.state.services
        plan = compile_operation(services.schema, parse(op["query"]), name)
        if plan is None:
            raise SystemExit("this operation does not compile")
        tokens = [services.tokens.issue(v, 86_400) for v in range(1, args.viewers + 1)]
        body = orjson.dumps({"query": op["query"], "variables": variables, "operationName": name})
        runs: dict[str, Execute] = {
            "app": app_runner(app, body, tokens),
            "compiled": compiled_runner(services, plan, variables),
            "rows": rows_runner(services, variables),
        }
        for viewer in range(1, min(args.viewers, 20) + 1):
            answers = {label: orjson.loads(await run(viewer)) for label, run in runs.items()}
            if not answers["app"] == answers["compiled"] == answers["rows"]:
                raise SystemExit(f"the answers differ for viewer {viewer}")
        runs["http"] = http_runner(app, body, tokens, orjson.loads(await runs["compiled"](1))["data"])
        for run in runs.values():  # warm every cache layer for every viewer
            await cpu_ms(run, args.viewers, args.viewers, 0)
        cpu: dict[str, list[float]] = {label: [] for label in runs}
        for round_ in range(args.rounds):  # interleaved: a busy neighbour hurts each alike
            for label, run in runs.items():
                cpu[label].append(await cpu_ms(run, args.n, args.viewers, round_ * args.n))
        median = {label: statistics.median(values) for label, values in cpu.items()}
        for label, values in cpu.items():
            print(
                f"{label:9} median {median[label]:6.3f} ms  min {min(values):6.3f} ms CPU per Home"
                f"  ({args.rounds} x {args.n}, {args.viewers} viewers)"
            )
        print(f"HTTP layer (app - compiled): {median['app'] - median['compiled']:.3f} ms")
        print(f"HTTP layer alone (http): {median['http']:.3f} ms")
        print(f"rows / compiled: {median['rows'] / median['compiled']:.2f}")
        projected = median["app"] - median["compiled"] + median["rows"]
        print(
            f"app with the projection (estimate): {projected:.3f} ms -> {1000 / projected:.0f} req/s per core"
        )
        if args.calls:
            for label, run in runs.items():
                await print_calls(label, run, args.calls, args.viewers)


async def print_calls(label: str, run: Execute, n: int, viewers: int) -> None:
    """Function calls (Python and C, as cProfile counts them) per Home: a count, not a time.

    On the `rows` path that is the data path; `compiled` adds the plan's execution, `app` the
    HTTP layer (uvicorn excepted). Deterministic, so it compares commits on a noisy machine.
    """
    profile = cProfile.Profile()
    profile.enable()
    for i in range(n):
        await run(1 + i % viewers)
    profile.disable()
    stats = pstats.Stats(profile)
    calls = stats.total_calls  # type: ignore[attr-defined]
    futures = sum(v[1] for k, v in stats.stats.items() if k[2] == "create_future")  # type: ignore[attr-defined]
    print(f"{label} path: {calls / n:,.0f} function calls, {futures / n:.0f} futures per Home ({n} Homes)")


def parse_args() -> argparse.Namespace:
    parser = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    parser.add_argument("database_url")
    parser.add_argument("--redis-url", default=None)
    parser.add_argument("--op", default=str(DEFAULT_OP))
    parser.add_argument("--n", type=int, default=400)
    parser.add_argument("--rounds", type=int, default=5)
    parser.add_argument("--viewers", type=int, default=1000)
    parser.add_argument("--calls", type=int, default=0, help="then count function calls over this many Homes")
    return parser.parse_args()


if __name__ == "__main__":
    asyncio.run(main(parse_args()))
