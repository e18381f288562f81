"""Pending fields of a compiled plan (bff/compiled_run.py's `gather_into`): started at once,
in order; the first to suspend continued in the request's task, the rest given Tasks.

graphql-core gives each pending field a Task. The answers, errors, context isolation and the
task each resolver runs in must stay what they were with Tasks; only fewer Tasks are made.
"""

from __future__ import annotations

import asyncio
import contextvars
import gc
import warnings
from typing import Any

import pytest
import strawberry
from graphql import parse

from bff import compiled_run
from bff.compiled import compile_operation, execute_plan, execute_with_graphql_core
from bff.errors import format_error

MARK: contextvars.ContextVar[str] = contextvars.ContextVar("mark", default="unset")


async def _same_task_throughout() -> bool:
    task = asyncio.current_task()
    await asyncio.sleep(0)
    await asyncio.sleep(0)
    return asyncio.current_task() is task


@strawberry.type
class Query:
    @strawberry.field
    async def ready(self) -> int:
        return 1  # no suspension: answered without a Task

    @strawberry.field
    async def ready_too(self) -> int:
        return 2

    @strawberry.field
    async def slow(self) -> int:
        await asyncio.sleep(0.005)
        return 3

    @strawberry.field
    async def timed(self) -> str | None:
        # A resolver's own timeout: it must cancel the task this resolver runs in, and only it.
        async with asyncio.timeout(0.01):
            await asyncio.sleep(5)
        return "never"

    @strawberry.field
    async def same_task(self) -> bool:
        return await _same_task_throughout()

    @strawberry.field
    async def same_task_too(self) -> bool:
        return await _same_task_throughout()

    @strawberry.field
    async def setter(self) -> str:
        MARK.set("setter")
        await asyncio.sleep(0)
        return MARK.get()

    @strawberry.field
    async def reader(self) -> str:
        return MARK.get()  # a sibling's context is its own: "unset" as with a Task per field

    @strawberry.field
    async def fails(self) -> int:
        raise ValueError("at once")

    @strawberry.field
    async def counted(self) -> int:
        await asyncio.sleep(0.005)
        COUNTED.append(1)
        return 4


COUNTED: list[int] = []
SCHEMA = strawberry.Schema(query=Query)


async def answer_alike(query: str, ordered: bool = True) -> dict[str, Any]:
    """graphql-core's answer and the plan's (generated source and step walk), compared; errors in
    their order unless `ordered` is False (errors of fields that fail at the same moment come in
    the order the fields started, which is the selection's only for graphql-core)."""
    document = parse(query)
    expected = await execute_with_graphql_core(SCHEMA, document, None, {}, None)
    for generate in (True, False):
        plan = compile_operation(SCHEMA, document, None)
        assert plan is not None
        plan.generate = generate
        got = await execute_plan(plan, {}, None)
        assert got.data == expected.data
        errors, wanted = ([format_error(e) for e in r.errors or []] for r in (got, expected))
        assert errors == wanted if ordered else sorted(errors, key=str) == sorted(wanted, key=str)
    return {"data": expected.data, "errors": [format_error(e) for e in expected.errors or []]}


@pytest.fixture(autouse=True)
def nothing_noted() -> None:
    compiled_run._suspended_last.clear()  # each test starts without what others' runs noted


@pytest.fixture
async def tasks_made(monkeypatch: pytest.MonkeyPatch) -> list[Any]:
    """Every Task the running loop makes from here on (whoever asks for it)."""
    loop = asyncio.get_running_loop()
    made: list[Any] = []
    real = loop.create_task

    def counting(coroutine: Any, **kwargs: Any) -> Any:
        if not getattr(coroutine, "__name__", "").startswith("test_"):  # pytest-asyncio's own
            made.append(coroutine)
        return real(coroutine, **kwargs)

    monkeypatch.setattr(loop, "create_task", counting)
    return made


async def test_fields_that_do_not_suspend_and_the_first_that_does_need_no_task(tasks_made: list[Any]) -> None:
    answer = await answer_alike("{ ready readyToo slow }")
    assert answer["data"] == {"ready": 1, "readyToo": 2, "slow": 3}
    tasks_made.clear()
    plan = compile_operation(SCHEMA, parse("{ ready readyToo slow }"), None)
    assert plan is not None
    await execute_plan(plan, {}, None)
    assert tasks_made == []
    # A field after the first to suspend is not started here: it gets its Task, unstarted.
    plan = compile_operation(SCHEMA, parse("{ ready slow readyToo }"), None)
    assert plan is not None
    assert (await execute_plan(plan, {}, None)).data == {"ready": 1, "slow": 3, "readyToo": 2}
    assert len(tasks_made) == 1


async def test_fields_after_the_first_suspended_one_get_tasks_and_run_side_by_side(
    tasks_made: list[Any],
) -> None:
    plan = compile_operation(SCHEMA, parse("{ slow counted c2: counted }"), None)
    assert plan is not None
    COUNTED.clear()
    result = await execute_plan(plan, {}, None)
    assert result.data == {"slow": 3, "counted": 4, "c2": 4} and COUNTED == [1, 1]
    assert len(tasks_made) == 2  # `counted` twice; `slow` continued in this task


@pytest.mark.parametrize("query", ["{ timed slow }", "{ slow timed }", "{ timed t2: timed ready }"])
async def test_a_resolvers_own_timeout_cancels_only_that_resolver(query: str) -> None:
    answer = await answer_alike(query, ordered=False)
    assert answer["data"]["timed"] is None
    assert all(e["path"][0] in ("timed", "t2") for e in answer["errors"])


async def test_each_resolver_runs_in_one_task_from_start_to_end() -> None:
    answer = await answer_alike("{ sameTask sameTaskToo s3: sameTask }")
    assert answer["data"] == {"sameTask": True, "sameTaskToo": True, "s3": True}


async def test_a_context_variable_set_by_one_field_is_not_seen_by_its_siblings() -> None:
    answer = await answer_alike("{ setter reader slow r2: reader }")
    assert answer["data"] == {"setter": "setter", "reader": "unset", "slow": 3, "r2": "unset"}
    assert MARK.get() == "unset"  # nor by the request


async def test_a_non_null_field_failing_at_once_leaves_no_sibling_unsettled() -> None:
    with warnings.catch_warnings(record=True) as caught:
        warnings.simplefilter("always")
        answer = await answer_alike("{ slow fails counted }")
        await asyncio.sleep(0.02)  # the siblings settle in the background
        gc.collect()
    assert answer["data"] is None and answer["errors"][0]["path"] == ["fails"]
    assert [str(w.message) for w in caught if issubclass(w.category, RuntimeWarning)] == []


async def test_cancelling_the_request_cancels_the_fields_in_flight(tasks_made: list[Any]) -> None:
    plan = compile_operation(SCHEMA, parse("{ slow counted }"), None)
    assert plan is not None
    COUNTED.clear()
    with pytest.raises(TimeoutError):
        async with asyncio.timeout(0.001):
            await execute_plan(plan, {}, None)
    assert len(tasks_made) == 1
    await asyncio.sleep(0.02)
    assert COUNTED == []  # `counted`'s task was cancelled too


async def test_fields_that_suspended_last_time_start_after_the_others(tasks_made: list[Any]) -> None:
    plan = compile_operation(SCHEMA, parse("{ ready slow readyToo }"), None)
    assert plan is not None
    first = await execute_plan(plan, {}, None)
    assert len(tasks_made) == 1  # `readyToo`, after `slow` suspended
    tasks_made.clear()
    again = await execute_plan(plan, {}, None)
    assert tasks_made == []  # `slow` now starts last: `readyToo` finished at once before it
    assert list(again.data or {}) == list(first.data or {}) == ["ready", "slow", "readyToo"]
    assert again.data == first.data
