"""Objects a Home leaves in reference cycles: what only the cyclic collector can free.

    python -m bench.cycles postgresql://postgres@127.0.0.1:15432/bff_bench \
        --redis-url redis://127.0.0.1:16379/0 --n 200

In-process (production services, the ASGI app called as uvicorn calls it, bench/home_from_rows.py's
caller), warmed first; then the collector is switched off, `--n` Homes run, and one collection
with gc.DEBUG_SAVEALL keeps what it found unreachable: printed per Home, by type. A count, not a
time. Not used by the server.
"""

from __future__ import annotations

import argparse
import asyncio
import collections
import gc
import json

import orjson
from asgi_lifespan import LifespanManager

from bench.home_from_rows import DEFAULT_OP, app_runner
from bff.app import create_app
from bff.config import load_settings


async def main(args: argparse.Namespace) -> None:
    op = json.loads(DEFAULT_OP.read_text())
    app = create_app(
        load_settings(
            database_url=args.database_url,
            redis_url=args.redis_url,
            bff_env="production",
            jwt_secret="bff-bench-secret-" + "x" * 32,
            rate_limit_enabled=False,
            log_level="WARNING",
        )
    )
    async with LifespanManager(app):
        services = app.state.services
        tokens = [services.tokens.issue(v, 86_400) for v in range(1, 1001)]
        body = orjson.dumps(
            {"query": op["query"], "variables": op["variables"], "operationName": op.get("operationName")}
        )
        run = app_runner(app, body, tokens)
        for i in range(2000):
            await run(1 + i % 1000)
        gc.collect()
        gc.disable()
        gc.set_debug(gc.DEBUG_SAVEALL)
        try:
            for i in range(args.n):
                await run(1 + i % 1000)
            gc.collect()
            kinds = collections.Counter(type(o).__qualname__ for o in gc.garbage)
            print(f"objects left in cycles per Home: {len(gc.garbage) / args.n:.1f}")
            for kind, count in kinds.most_common(20):
                print(f"{count / args.n:7.2f} {kind}")
        finally:
            gc.set_debug(0)
            gc.garbage.clear()
            gc.enable()


if __name__ == "__main__":
    parser = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    parser.add_argument("database_url")
    parser.add_argument("--redis-url", default=None)
    parser.add_argument("--n", type=int, default=200)
    asyncio.run(main(parser.parse_args()))
