"""CPU per Home with the feed's sources cached or not (FEED_CACHED_SOURCES, decision 49): this
process's CPU (the app and its in-process client) and Postgres's (every backend of the server
whose data directory is given), over passes of Homes for the same viewers.

    taskset -c 0 .venv/bin/python -m bench.feed_sources \\
        postgresql://postgres@127.0.0.1:15432/bff_bench .tmp/peers/.run/pgdata --cached-sources on

Pass 1 finds every viewer cold (with `on`: the fill statement); later passes are warm (`on`:
merged). Postgres CPU is read from /proc (utime + stime of the postmaster's children), so the
server must serve nothing else meanwhile. Not used by the server: for docs/benchmarks.md.
"""

from __future__ import annotations

import argparse
import asyncio
import json
import os
import time
from pathlib import Path

import httpx
from asgi_lifespan import LifespanManager

from bff.app import create_app
from bff.config import load_settings

HOME = json.loads((Path(__file__).parent.parent / "tests" / "ops" / "home.json").read_text())
TICKS = os.sysconf("SC_CLK_TCK")


def postgres_cpu_seconds(data_dir: Path) -> float:
    """utime + stime of the postmaster's children (its backends and workers)."""
    postmaster = int((data_dir / "postmaster.pid").read_text().split()[0])
    total = 0
    for entry in Path("/proc").iterdir():
        if not entry.name.isdigit():
            continue
        try:
            fields = (entry / "stat").read_text().rpartition(")")[2].split()
        except OSError:
            continue  # ended meanwhile
        if int(fields[1]) == postmaster:  # ppid
            total += int(fields[11]) + int(fields[12])  # utime, stime
    return total / TICKS


async def run(url: str, data_dir: Path, cached: bool, viewers: int, passes: int) -> None:
    settings = load_settings(
        database_url=url,
        feed_cached_sources=cached,
        rate_limit_enabled=False,
        bff_env="production",
        log_level="WARNING",
        jwt_secret="bench-secret-bench-secret-bench-secret-0",
    )
    app = create_app(settings)
    async with LifespanManager(app):
        tokens = app.state.services.tokens
        headers = {
            v: {"authorization": f"Bearer {tokens.issue(v)}", "accept-encoding": "identity"}
            for v in range(1, viewers + 1)
        }
        body = {"query": HOME["query"], "variables": HOME["variables"]}
        async with httpx.AsyncClient(transport=httpx.ASGITransport(app), base_url="http://bench") as client:
            for number in range(1, passes + 1):
                cpu, pg, wall = time.process_time(), postgres_cpu_seconds(data_dir), time.perf_counter()
                for viewer in range(1, viewers + 1):
                    response = await client.post("/graphql", json=body, headers=headers[viewer])
                    assert response.status_code == 200 and "errors" not in response.json()
                cpu = (time.process_time() - cpu) / viewers * 1e6
                pg = (postgres_cpu_seconds(data_dir) - pg) / viewers * 1e6
                wall = (time.perf_counter() - wall) / viewers * 1e6
                print(
                    f"cached_sources={'on' if cached else 'off'} pass {number}: {viewers} Homes, "
                    f"bff+client CPU {cpu:.0f} us, Postgres CPU {pg:.0f} us, wall {wall:.0f} us per Home",
                    flush=True,
                )


def main() -> None:
    parser = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    parser.add_argument("database_url")
    parser.add_argument("pg_data_dir", type=Path)
    parser.add_argument("--cached-sources", choices=["on", "off"], default="on")
    parser.add_argument("--viewers", type=int, default=2000)
    parser.add_argument("--passes", type=int, default=3)
    args = parser.parse_args()
    asyncio.run(
        run(args.database_url, args.pg_data_dir, args.cached_sources == "on", args.viewers, args.passes)
    )


if __name__ == "__main__":
    main()
