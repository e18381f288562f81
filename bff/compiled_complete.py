"""Completers: how a value of one output type is completed (graphql-core's `complete_value`),
decided once per step when the plan is compiled (bff/compiled_steps.py).
"""

from __future__ import annotations

import datetime
from collections.abc import Awaitable, Callable, Iterable
from typing import TYPE_CHECKING, Any

from graphql import (
    GraphQLAbstractType,
    GraphQLError,
    GraphQLLeafType,
    GraphQLList,
    GraphQLNonNull,
    GraphQLObjectType,
    GraphQLOutputType,
    GraphQLString,
    Undefined,
)
from graphql.execution.executor import collect_iterator_awaitables, invalid_return_type_error
from graphql.pyutils import Path, inspect, is_iterable
from graphql.type.scalars import serialize_boolean, serialize_id, serialize_string
from strawberry.schema.types.base_scalars import isoformat as strawberry_isoformat
from strawberry.types.cast import TYPE_CAST_ATTRIBUTE

from bff.compiled_run import (
    Run,
    await_completed,
    complete_awaitable,
    execute_fields,
    gather_into,
    handle_field_error,
    is_awaitable,
    new_tuple,
)
from bff.row_lists import RowList, RowProjection

if TYPE_CHECKING:
    from bff.compiled_steps import Compiler, Step

# graphql-core's serializers that return a value of exactly this type unchanged.
_UNCHANGED: dict[Any, type] = {
    serialize_string: str,
    serialize_id: str,
    serialize_boolean: bool,
}
# Serializers known to return a string for values of exactly these types: strawberry's Date,
# DateTime and Time scalars serialize with `methodcaller("isoformat")`.
_CONVERTS: dict[Any, frozenset[type]] = {
    strawberry_isoformat: frozenset({datetime.datetime, datetime.date, datetime.time}),
}


class Completer:
    """How a value of one output type is completed (graphql-core's `complete_value`)."""

    type: GraphQLOutputType

    def complete(self, run: Run, step: Step, info: Any, path: Path | None, result: Any) -> Any:
        raise NotImplementedError


class Leaf(Completer):
    __slots__ = ("coerce", "converts", "fast", "type")

    def __init__(self, type_: GraphQLLeafType) -> None:
        self.type = type_
        self.coerce = type_.coerce_output_value
        # graphql-core's serializers return a value of exactly these types unchanged.
        self.fast: type | None = _UNCHANGED.get(self.coerce)
        # Types this serializer turns into a string without fail: generated code calls it alone.
        self.converts: frozenset[type] = _CONVERTS.get(self.coerce, frozenset())

    def complete(self, run: Run, step: Step, info: Any, path: Path | None, result: Any) -> Any:
        if type(result) is self.fast:
            return result
        if isinstance(result, Exception):
            raise result
        if result is None or result is Undefined:
            return None
        coerced = self.coerce(result)
        if coerced is Undefined or coerced is None:
            raise TypeError(
                f"Expected `{inspect(self.type)}.coerce_output_value({inspect(result)})` to return"
                f" non-nullable value, returned: {inspect(coerced)}"
            )
        return coerced


LEAF_PLACEHOLDER = Leaf(GraphQLString)


class _NoClass:
    """No value is of this type: the fast branches compare `type(value) is` a class or this."""


_NO_CLASS: Any = _NoClass


class NonNull(Completer):
    __slots__ = ("inner", "message", "type")

    def __init__(self, type_: GraphQLNonNull[Any], inner: Completer, step: Step) -> None:
        self.type = type_
        self.inner = inner
        self.message = f"Cannot return null for non-nullable field {step.parent_type}.{step.name}."

    def complete(self, run: Run, step: Step, info: Any, path: Path | None, result: Any) -> Any:
        completed = self.inner.complete(run, step, info, path, result)
        if completed is None:
            raise TypeError(self.message)
        return completed


class ListOf(Completer):
    __slots__ = ("item", "message", "type")

    def __init__(self, type_: GraphQLList[Any], item: Completer, step: Step) -> None:
        self.type = type_
        self.item = item
        self.message = f"Expected Iterable, but did not find one for field '{step.parent_type}.{step.name}'."

    def complete(self, run: Run, step: Step, info: Any, path: Path | None, result: Any) -> Any:
        if isinstance(result, Exception):
            raise result
        if result is None or result is Undefined:
            return None
        if run.executor.is_async_iterable(result):
            return self._complete_async_iterable(run, step, info, path, result)
        if not is_iterable(result):
            raise GraphQLError(self.message)
        return self._complete_items(run, step, info, path, result)

    async def _complete_async_iterable(
        self, run: Run, step: Step, info: Any, path: Path | None, result: Any
    ) -> Any:
        items = [item async for item in result]
        completed = self._complete_items(run, step, info, path, items)
        return await completed if is_awaitable(completed) else completed

    def _complete_items(
        self, run: Run, step: Step, info: Any, path: Path | None, items: Iterable[Any]
    ) -> Any:
        item = self.item
        # Items of one strawberry class (a page of edges, a leaderboard) go straight to the
        # object's fields: what NonNull.complete, Object.complete and complete_object would do.
        objects: Any = item.inner if isinstance(item, NonNull) else item
        origin = objects.origin if isinstance(objects, Object) else _NO_CLASS
        if type(items) is RowList:
            # Rows a list resolver fetched: answered from them when the plan can, else their objects.
            answer = objects.answer_rows(items) if origin is not _NO_CLASS else None
            if answer is not None:
                return answer
            items = items.objects()
        completed: list[Any] = []
        pending: list[int] = []
        iterator = iter(items)
        index = 0
        try:
            for value in iterator:
                item_path = new_tuple(Path, (path, index, None))
                if type(value) is not origin and is_awaitable(value):
                    completed.append(complete_awaitable(run, step, item, info, item_path, value))
                    pending.append(index)
                else:
                    try:
                        if type(value) is origin and objects.takes_exact(value, info):
                            done = objects.execute(run, objects.steps, value, item_path)
                        else:
                            done = item.complete(run, step, info, item_path, value)
                        if type(done) is not dict and is_awaitable(done):
                            completed.append(await_completed(run, step, item, item_path, done))
                            pending.append(index)
                        else:
                            completed.append(done)
                    except Exception as raw_error:
                        handle_field_error(run, raw_error, item.type, step, item_path)
                        completed.append(None)
                index += 1
        except Exception:
            awaitables = [completed[i] for i in pending]
            awaitables.extend(collect_iterator_awaitables(iterator, is_awaitable))
            if awaitables:
                run.executor.settle_in_background(awaitables)
            raise
        if not pending:
            return completed
        return gather_into(run, completed, pending)


_UNSET: Any = object()


class Object(Completer):
    __slots__ = (
        "exact",
        "execute",
        "from_rows",
        "is_type_of",
        "object_type",
        "origin",
        "rows_for",
        "steps",
        "type",
    )

    def __init__(self, type_: GraphQLObjectType, steps: list[Step]) -> None:
        self.type = self.object_type = type_
        self.steps = steps
        # How the fields of one value are computed: the generic walk, or the function
        # bff/codegen.py generated for these steps (set by the compiler).
        self.execute: Callable[[Run, Any, Any, Path | None], Any] = execute_fields
        # How a list of rows is answered under these steps (bff/row_lists.py): made per
        # projection by the compiler's function (None: the step walk, which builds objects).
        self.rows_for: Callable[[RowProjection], Callable[[Any], list[Any] | None] | None] | None = None
        self.from_rows: dict[RowProjection, Callable[[Any], list[Any] | None] | None] = {}
        # strawberry's generated is_type_of ignores its info: a field without a resolver passes None.
        self.is_type_of = type_.is_type_of
        definition = type_.extensions.get("strawberry-definition")
        self.origin: type | None = getattr(definition, "origin", None)  # the class strawberry maps
        # What `is_type_of` says of a value of exactly `origin`, known without calling it:
        # "yes" with none, "yes unless strawberry.cast marked it as another type" with the one
        # strawberry generates for a type with interfaces (not a generic's specialization).
        self.exact = (
            "yes"
            if self.is_type_of is None
            else "uncast"
            if strawberry_is_type_of(type_) and getattr(definition, "concrete_of", None) is None
            else "ask"
        )

    def answer_rows(self, items: RowList[Any]) -> list[Any] | None:
        """The completed list built from `items`' rows, or None: complete their objects instead."""
        function = self.from_rows.get(items.projection, _UNSET)
        if function is _UNSET:
            make = self.rows_for
            function = self.from_rows[items.projection] = make(items.projection) if make else None
        return None if function is None else function(items.rows)

    def accepts(self, result: Any, info: Any) -> bool:
        """`is_type_of` for a value that is neither None, an exception nor an awaitable."""
        is_type_of = self.is_type_of
        return is_type_of is None or is_type_of(result, info) is True

    def takes_exact(self, result: Any, info: Any) -> bool:
        """`accepts` for a value of exactly `origin`: without a call when the answer is known."""
        exact = self.exact
        if exact == "yes":
            return True
        if exact == "uncast":
            return getattr(result, TYPE_CAST_ATTRIBUTE, None) is None or self.accepts(result, info)
        return self.accepts(result, info)

    def complete(self, run: Run, step: Step, info: Any, path: Path | None, result: Any) -> Any:
        if isinstance(result, Exception):
            raise result
        if result is None or result is Undefined:
            return None
        return self.complete_object(run, step, info, path, result)

    def complete_object(self, run: Run, step: Step, info: Any, path: Path | None, result: Any) -> Any:
        if self.is_type_of is not None:
            is_type_of = self.is_type_of(result, info)
            if is_awaitable(is_type_of):
                return self._complete_after(run, step, path, result, is_type_of)  # type: ignore[arg-type]
            if not is_type_of:
                raise invalid_return_type_error(self.object_type, result, step.details)
        return self.execute(run, self.steps, result, path)

    async def _complete_after(
        self, run: Run, step: Step, path: Path | None, result: Any, check: Awaitable[bool]
    ) -> Any:
        if not await check:
            raise invalid_return_type_error(self.object_type, result, step.details)
        fields = self.execute(run, self.steps, result, path)
        return await fields if is_awaitable(fields) else fields


class Abstract(Completer):
    __slots__ = ("abstract_type", "compiler", "objects", "type")

    def __init__(self, type_: GraphQLAbstractType, compiler: Compiler) -> None:
        self.type = self.abstract_type = type_
        self.compiler = compiler
        self.objects: dict[str, Object] = {}  # runtime type name -> its plan, compiled on first use

    def complete(self, run: Run, step: Step, info: Any, path: Path | None, result: Any) -> Any:
        if isinstance(result, Exception):
            raise result
        if result is None or result is Undefined:
            return None
        resolve_type = self.abstract_type.resolve_type or run.executor.type_resolver
        runtime_type = resolve_type(result, info, self.abstract_type)
        if is_awaitable(runtime_type):
            return self._complete_after(run, step, info, path, result, runtime_type)
        return self._complete_as(run, step, info, path, result, runtime_type)

    async def _complete_after(
        self, run: Run, step: Step, info: Any, path: Path | None, result: Any, runtime: Any
    ) -> Any:
        value = self._complete_as(run, step, info, path, result, await runtime)
        return await value if is_awaitable(value) else value

    def _complete_as(
        self, run: Run, step: Step, info: Any, path: Path | None, result: Any, runtime: Any
    ) -> Any:
        object_type = run.executor.ensure_valid_runtime_type(
            runtime, self.abstract_type, step.details, info, result
        )
        plan = self.objects.get(object_type.name)
        if plan is None:
            plan = self.objects[object_type.name] = self.compiler.object(object_type, step.details, run)
        return plan.complete_object(run, step, info, path, result)


def strawberry_is_type_of(type_: GraphQLObjectType) -> bool:
    name = getattr(type_.is_type_of, "__qualname__", "")
    return type_.is_type_of is None or name.endswith("_get_is_type_of.<locals>.is_type_of")
