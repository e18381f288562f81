"""CPU per execution of one operation: graphql-core's executor against bff/compiled.py's plan.

    python -m bench.compiled_cpu postgresql://postgres@127.0.0.1:5432/bff_prof --n 300 --rounds 5

Runs in-process, without HTTP: a fresh Context per execution (as bff/graphql_http.py builds
it), the same viewers for both executors, executions back to back. Prints CPU milliseconds
per execution (time.process_time, which includes the database driver's work in this process
but not the database's), the SQL statements per execution, and a cProfile top 15 of the
compiled executor. Checks that both executors answer alike before measuring.
"""

from __future__ import annotations

import argparse
import asyncio
import cProfile
import io
import json
import pstats
import statistics
import time
from collections.abc import Awaitable, Callable
from pathlib import Path
from typing import Any

from graphql import DocumentNode, ExecutionResult, parse

from bff.auth import Viewer
from bff.compiled import Plan, compile_operation, execute_plan, execute_with_graphql_core
from bff.config import load_settings
from bff.db import StatementCounter, current_counter
from bff.services import Services
from resolvers.context import Context

DEFAULT_OP = Path(__file__).resolve().parent.parent / "tests" / "ops" / "home-relay.json"
Run = Callable[[Context], Awaitable[ExecutionResult]]


def core_runner(
    services: Services, document: DocumentNode, name: str | None, variables: dict[str, Any]
) -> Run:
    async def run(context: Context) -> ExecutionResult:
        return await execute_with_graphql_core(services.schema, document, name, context, variables)

    return run


def plan_runner(plan: Plan, variables: dict[str, Any]) -> Run:
    async def run(context: Context) -> ExecutionResult:
        return await execute_plan(plan, context, variables)

    return run


async def measure(services: Services, run: Run, n: int, viewers: int) -> tuple[float, float]:
    """(CPU ms per execution, SQL statements per execution)."""
    settings = services.settings
    counter = StatementCounter()
    token = current_counter.set(counter)
    try:
        started = time.process_time()
        for i in range(n):
            context = Context(
                db=services.db,
                broker=services.broker,
                settings=settings,
                tokens=services.tokens,
                viewer=Viewer(1 + i % viewers, time.time() + 3600),
            )
            result = await run(context)
            if result.errors:
                raise SystemExit(f"execution failed: {result.errors[0]}")
        elapsed = time.process_time() - started
    finally:
        current_counter.reset(token)
    return elapsed * 1000 / n, counter.count / n


async def main(args: argparse.Namespace) -> None:
    op = json.loads(Path(args.op).read_text())  # noqa: ASYNC240 - once, before measuring
    variables = op.get("variables") or {}
    name = op.get("operationName")
    settings = load_settings(database_url=args.database_url, bff_env="test", log_json=True)
    services = Services.from_settings(settings)
    await services.start()
    try:
        document = parse(op["query"])
        plan = compile_operation(services.schema, document, name)
        if plan is None:
            raise SystemExit("this operation does not compile")
        core, compiled = core_runner(services, document, name, variables), plan_runner(plan, variables)
        for viewer in range(1, args.viewers + 1):
            expected = await core(
                Context(services.db, services.broker, settings, services.tokens, Viewer(viewer, 1e12))
            )
            got = await compiled(
                Context(services.db, services.broker, settings, services.tokens, Viewer(viewer, 1e12))
            )
            if (expected.data, expected.errors) != (got.data, got.errors):
                raise SystemExit(f"the executors disagree for viewer {viewer}")
        runs = {"graphql-core": core, "compiled": compiled}
        cpu: dict[str, list[float]] = {label: [] for label in runs}
        statements: dict[str, float] = {}
        for run in runs.values():
            await measure(services, run, args.warmup, args.viewers)
        # Rounds alternate between the executors, so a busy neighbour on the machine hurts both.
        for _ in range(args.rounds):
            for label, run in runs.items():
                ms, statements[label] = await measure(services, run, args.n, args.viewers)
                cpu[label].append(ms)
        for label in runs:
            print(
                f"{label:13} median {statistics.median(cpu[label]):6.3f} ms  min {min(cpu[label]):6.3f} ms"
                f" CPU per execution   {statements[label]:.1f} statements   ({args.rounds} x {args.n})"
            )
        print(
            f"compiled / graphql-core: {statistics.median(cpu['compiled']) / statistics.median(cpu['graphql-core']):.2f}"
        )
        for label, run in runs.items():
            profile = cProfile.Profile()
            profile.enable()
            await measure(services, run, args.n, args.viewers)
            profile.disable()
            stats = pstats.Stats(profile)
            print(f"\n{label}: where the CPU goes (cProfile tottime by package, ms per execution)")
            for area, seconds in by_area(stats):
                print(f"  {area:28} {seconds * 1000 / args.n:6.3f}")
            if label == "compiled":
                out = io.StringIO()
                pstats.Stats(profile, stream=out).sort_stats("tottime").print_stats(15)
                print(out.getvalue())
    finally:
        await services.close()


AREAS = (
    ("bff/compiled", "bff.compiled* (plan executor)"),
    ("site-packages/graphql/", "graphql-core"),
    ("site-packages/strawberry/", "strawberry"),
    ("/schema/", "schema (our types)"),
    ("/resolvers/", "resolvers + loaders"),
    ("site-packages/aiodataloader", "aiodataloader"),
    ("site-packages/asyncpg", "asyncpg"),
    ("site-packages/databases", "databases"),
    ("site-packages/sqlalchemy", "sqlalchemy"),
    ("/bff/", "bff (db, auth...)"),
    ("asyncio", "asyncio"),
)


def by_area(stats: pstats.Stats) -> list[tuple[str, float]]:
    totals: dict[str, float] = {}
    for (filename, _line, _function), row in stats.stats.items():  # type: ignore[attr-defined]
        area = next((name for marker, name in AREAS if marker in filename), None)
        if area is None:
            area = "builtins (socket, C calls...)" if filename == "~" else "other"
        totals[area] = totals.get(area, 0.0) + row[2]
    return sorted(totals.items(), key=lambda item: -item[1])


def parse_args() -> argparse.Namespace:
    parser = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    parser.add_argument("database_url", help="a seeded database (bff seed); only read")
    parser.add_argument("--op", default=str(DEFAULT_OP), help="an operation file like tests/ops/home.json")
    parser.add_argument("--n", type=int, default=300, help="executions measured per executor")
    parser.add_argument("--warmup", type=int, default=50)
    parser.add_argument("--rounds", type=int, default=5, help="alternating rounds; the median is reported")
    parser.add_argument("--viewers", type=int, default=50, help="viewer ids 1..N, in turn")
    return parser.parse_args()


if __name__ == "__main__":
    asyncio.run(main(parse_args()))
