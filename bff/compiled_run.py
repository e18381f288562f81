"""Executing a compiled plan's steps: graphql-core's `execute_fields`, `execute_field` and
`complete_value`, field error handling included, over steps built once (bff/compiled_steps.py).
"""

from __future__ import annotations

from asyncio import Future, ensure_future, gather
from collections.abc import Awaitable, Coroutine, Generator
from contextvars import Context, copy_context
from dataclasses import dataclass
from types import CoroutineType
from typing import TYPE_CHECKING, Any

from graphql import GraphQLOutputType, is_non_null_type, located_error
from graphql.execution.executor import Executor
from graphql.execution.values import get_argument_values
from graphql.pyutils import Path
from strawberry.execution import optimized_is_awaitable

if TYPE_CHECKING:
    from bff.compiled_complete import Completer
    from bff.compiled_steps import Step

is_awaitable = optimized_is_awaitable  # one name for the plan modules


# `new_tuple(Path, (prev, key, typename))` is `Path(prev, key, typename)` without the
# NamedTuple's Python-level `__new__`: a response builds one per object field and list item.
new_tuple = tuple.__new__


def path_to(prev: Path | None, key: str | int, typename: str | None) -> Path:
    return new_tuple(Path, (prev, key, typename))


# -- executing -----------------------------------------------------------------------------


@dataclass(slots=True)
class Run:
    """One execution: graphql-core's executor supplies infos, variables and error collection."""

    executor: Executor[Any]


def execute_fields(run: Run, steps: list[Step], source: Any, path: Path | None) -> Any:
    results: dict[str, Any] = {}
    pending: list[str] = []
    try:
        for step in steps:
            fast = step.fast
            if fast is not None:
                # A plain attribute of a leaf type whose serializer returns it unchanged: the bulk
                # of every response, done without a call, a path or an info.
                try:
                    value = getattr(source, step.attr)  # type: ignore[arg-type]
                except Exception as raw_error:
                    result = _field_error(run, raw_error, step, None, path)
                else:
                    if type(value) is fast:
                        results[step.key] = value
                        continue
                    result = _complete_field(run, step, None, None, path, value)
            else:
                result = _execute_field(run, step, source, path)
            results[step.key] = result
            if is_awaitable(result):
                pending.append(step.key)
    except Exception:
        if pending:
            run.executor.settle_in_background([results[key] for key in pending])
        raise
    if not pending:
        return results
    return gather_into(run, results, pending)


async def gather_into(run: Run, results: Any, pending: list[Any]) -> Any:
    """Await the pending entries of a dict or list in place, concurrently like graphql-core.

    graphql-core makes a Task per pending entry (`gather_with_cancel`). Here the coroutines are
    started at once, in order, each in its own copy of the context as a Task would run it: one
    that finishes without suspending (a value the cache held) needs no Task. The first one that
    suspends is continued in this task (`_Resume`); the entries after it get Tasks, unstarted,
    as graphql-core gives them, so no coroutine ever moves from the task it started in to
    another (`asyncio.timeout` and `current_task()` inside a resolver stay right).

    The start order is the selection's, except that entries of a dict which suspended at
    their last start here (`_suspended_last`: the feed's statement) start after the others
    (the viewer and the leaderboard the cache held): all of Home's root fields then go without
    a Task. The answer keeps the selection's order; siblings' order of execution is not one
    GraphQL promises for queries.

    Errors as with `gather_with_cancel`: the first raised propagates once the others are
    cancelled and settled. One difference: a Task's error waits for the coroutine continued
    here to finish instead of cancelling it.
    """
    if len(pending) == 1:
        results[pending[0]] = await results[pending[0]]
        return results
    site: tuple[Any, ...] | None = None
    if type(results) is dict:
        site = tuple(pending)
        suspended = _suspended_last.get(site)
        if suspended:
            pending = [k for k in pending if k not in suspended] + [k for k in pending if k in suspended]
    inline: _Resume | None = None
    inline_key: Any = None
    later: list[Any] = []
    for position, key in enumerate(pending):
        awaitable = results[key]
        if inline is not None or type(awaitable) is not CoroutineType:
            later.append(key)
            continue
        context = copy_context()
        try:
            yielded = context.run(awaitable.send, None)
        except StopIteration as done:
            results[key] = done.value
            continue
        except BaseException:
            # As with the siblings of any synchronous error (execute_fields above, the generated
            # epilogues): they run to the end in the background, their errors observed.
            run.executor.settle_in_background(
                [results[k] for k in later] + [results[k] for k in pending[position + 1 :]]
            )
            raise
        inline, inline_key = _Resume(awaitable, context, yielded), key
    if site is not None:
        _note_suspended(site, inline_key, later)
    tasks = [ensure_future(results[key]) for key in later]
    try:
        if inline is not None:
            results[inline_key] = await inline
        if len(tasks) == 1:
            results[later[0]] = await tasks[0]
        elif tasks:
            for key, value in zip(later, await gather(*tasks), strict=True):
                results[key] = value
    except BaseException as error:
        for task in tasks:
            task.cancel()  # a no-op on a task already done
        if isinstance(error, Exception) and tasks:
            await gather(*tasks, return_exceptions=True)  # settled before the error propagates
        else:
            for task in tasks:
                task.add_done_callback(_retrieve)
        raise
    return results


# Per dict selection (its pending keys), those that suspended when last started here. Bounded:
# cleared when full (it only orders starts).
_suspended_last: dict[tuple[Any, ...], frozenset[Any]] = {}
_SITES = 1024


def _note_suspended(site: tuple[Any, ...], inline_key: Any, later: list[Any]) -> None:
    """Those started here that suspended (the inline one), and those not started (kept as
    noted before): the others finished at once."""
    before = _suspended_last.get(site, frozenset())
    now = frozenset(k for k in later if k in before)
    if inline_key is not None:
        now |= {inline_key}
    if now != before:
        if len(_suspended_last) >= _SITES:
            _suspended_last.clear()
        _suspended_last[site] = now


class _Resume:
    """An awaitable that continues a coroutine already stepped once (`yielded` is what its
    first step gave up), in `context`: what `yield from` does, from the second step on."""

    __slots__ = ("_context", "_coroutine", "_yielded")

    def __init__(self, coroutine: Coroutine[Any, Any, Any], context: Context, yielded: Any) -> None:
        self._coroutine = coroutine
        self._context = context
        self._yielded = yielded

    def __await__(self) -> Generator[Any, Any, Any]:
        coroutine, run, yielded = self._coroutine, self._context.run, self._yielded
        send, throw = coroutine.send, coroutine.throw
        while True:
            try:
                sent = yield yielded
            except BaseException as error:  # thrown in by the task: a cancellation
                try:
                    yielded = run(throw, error)
                except StopIteration as done:
                    return done.value
            else:
                try:
                    yielded = run(send, sent)
                except StopIteration as done:
                    return done.value


def _retrieve(task: Future[Any]) -> None:
    if not task.cancelled():
        task.exception()  # no "exception was never retrieved" for a sibling that failed too


def _execute_field(run: Run, step: Step, source: Any, path: Path | None) -> Any:
    field_path = path_to(path, step.key, step.parent_name) if step.needs_path else None
    info: Any = None
    try:
        if step.needs_info:
            info = run.executor.build_resolve_info(step.field_def, step.nodes, step.parent_type, field_path)  # type: ignore[arg-type]
        if step.attr is not None:
            result = getattr(source, step.attr)
        elif step.typename is not None:
            result = step.typename
        elif step.direct is not None:
            result = step.direct.call(source, info)
        else:
            args = step.args
            if args is None:
                executor = run.executor
                args = get_argument_values(
                    step.field_def, step.node, executor.variable_values, None, executor.hide_suggestions
                )
            result = step.resolve(source, info, **args)  # type: ignore[misc]
    except Exception as raw_error:
        return _field_error(run, raw_error, step, field_path, path)
    return _complete_field(run, step, info, field_path, path, result)


def _complete_field(
    run: Run, step: Step, info: Any, field_path: Path | None, path: Path | None, result: Any
) -> Any:
    if is_awaitable(result):
        if field_path is None:
            field_path = path_to(path, step.key, step.parent_name)
        return complete_awaitable(run, step, step.complete, info, field_path, result)
    try:
        completed = step.complete.complete(run, step, info, field_path, result)
    except Exception as raw_error:
        return _field_error(run, raw_error, step, field_path, path)
    if is_awaitable(completed):
        if field_path is None:
            field_path = path_to(path, step.key, step.parent_name)
        return await_completed(run, step, step.complete, field_path, completed)
    return completed


def _field_error(
    run: Run, raw_error: Exception, step: Step, field_path: Path | None, path: Path | None
) -> Any:
    """None in place of the failed value, or the located error when the field is non-null."""
    if field_path is None:
        field_path = path_to(path, step.key, step.parent_name)
    handle_field_error(run, raw_error, step.return_type, step, field_path)
    return None


async def complete_awaitable(
    run: Run, step: Step, completer: Completer, info: Any, path: Path | None, result: Awaitable[Any]
) -> Any:
    try:
        completed = completer.complete(run, step, info, path, await result)
        if is_awaitable(completed):
            completed = await completed
    except Exception as raw_error:
        handle_field_error(run, raw_error, completer.type, step, path)
        return None
    return completed


async def await_completed(
    run: Run, step: Step, completer: Completer, path: Path | None, completed: Awaitable[Any]
) -> Any:
    try:
        return await completed
    except Exception as raw_error:
        handle_field_error(run, raw_error, completer.type, step, path)
        return None


def handle_field_error(
    run: Run, raw_error: Exception, return_type: GraphQLOutputType, step: Step, path: Path | None
) -> None:
    assert path is not None
    error = located_error(raw_error, step.nodes, path.as_list())
    if is_non_null_type(return_type):
        raise error  # the nearest nullable parent is nulled instead
    run.executor.collected_errors.add(error, path)
