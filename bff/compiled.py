"""Trusted queries executed through a compiled plan instead of graphql-core's generic walk.

graphql-core re-derives, for every field of every object, what a document already fixes: the
field definition, a resolve info (a 15-slot tuple), the arguments, which completion applies,
and strawberry wraps even a plain attribute read in two calls. `compile_operation` does that
work once per (document, operation) and leaves a tree of steps: a plain field becomes one
`getattr` (no call at all when its value is already its serialization); a field with a
resolver gets the same info graphql-core would build (by the executor class strawberry uses)
and strawberry's wrapped resolver, except a sync resolver without arguments, extensions or
exception handlers, which is called as that wrapper would call it (`DirectCall`).

Answers are graphql-core's, field for field: execution mirrors `Executor.execute_fields`,
`execute_field`, `complete_value` and their error handling (the same gather-with-cancel of
sibling awaitables, so the FetchGate still sees sibling lists start together; the same
`CollectedErrors`, so a non-null error nulls the nearest nullable parent and errors below a
nulled position are dropped). Fields are grouped by graphql-core's own `collect_fields`; a
plan has one variant per value of the variables read by `@include`/`@skip`.

Anything outside that subset (mutations, subscriptions, `@defer`/`@stream`, introspection
fields, other directives, fragment arguments) compiles to None: the caller runs graphql-core.
"""

from __future__ import annotations

from collections import OrderedDict
from collections.abc import Awaitable, Callable, Iterable
from dataclasses import dataclass, field
from typing import Any

import strawberry
from graphql import (
    DirectiveNode,
    DocumentNode,
    ExecutionResult,
    FieldNode,
    FragmentDefinitionNode,
    FragmentSpreadNode,
    GraphQLAbstractType,
    GraphQLError,
    GraphQLField,
    GraphQLLeafType,
    GraphQLList,
    GraphQLNonNull,
    GraphQLObjectType,
    GraphQLOutputType,
    GraphQLSchema,
    GraphQLString,
    InlineFragmentNode,
    Node,
    OperationDefinitionNode,
    OperationType,
    SelectionSetNode,
    Undefined,
    VariableNode,
    execute,
    get_named_type,
    is_abstract_type,
    is_leaf_type,
    is_list_type,
    is_non_null_type,
    is_object_type,
    located_error,
)
from graphql.execution.collect_fields import FieldDetailsList, collect_fields, collect_subfields
from graphql.execution.executor import (
    Executor,
    collect_iterator_awaitables,
    invalid_return_type_error,
)
from graphql.execution.values import get_argument_values
from graphql.pyutils import Path, gather_with_cancel, inspect, is_iterable
from graphql.type.scalars import serialize_boolean, serialize_id, serialize_string
from strawberry.execution import optimized_is_awaitable
from strawberry.schema._graphql_core import execution_context_class_kwargs
from strawberry.schema.schema import StrawberryGraphQLCoreExecutionContext
from strawberry.types.field import StrawberryField

is_awaitable = optimized_is_awaitable
_MISSING = object()
_CACHEABLE_ARGS = (str, int, float, bool, type(None))  # immutable: safe to share between requests
_MAX_VARIANTS = 16
_UNCHANGED: dict[Any, type] = {
    serialize_string: str,
    serialize_id: str,
    serialize_boolean: bool,
}  # @include/@skip variable combinations kept per plan


class Unsupported(Exception):
    """The operation uses something the compiled executor leaves to graphql-core."""


# -- the plan ------------------------------------------------------------------------------


class Step:
    """One response key of one object type: how to resolve it and complete its value."""

    __slots__ = (
        "args",
        "attr",
        "complete",
        "details",
        "direct",
        "fast",
        "field_def",
        "key",
        "name",
        "needs_info",
        "needs_path",
        "node",
        "nodes",
        "parent_name",
        "parent_type",
        "resolve",
        "return_type",
        "typename",
    )

    def __init__(
        self, key: str, parent_type: GraphQLObjectType, field_def: GraphQLField, details: FieldDetailsList
    ) -> None:
        self.key = key
        self.parent_type = parent_type
        self.parent_name = parent_type.name
        self.field_def = field_def
        self.return_type: GraphQLOutputType = field_def.type
        self.details = details
        self.nodes: list[FieldNode] = [d.node for d in details]
        self.node = self.nodes[0]
        self.name = self.node.name.value
        self.attr: str | None = None  # a plain attribute read (strawberry's basic field)
        self.typename: str | None = None  # `__typename`
        self.resolve: Callable[..., Any] | None = None
        self.args: dict[str, Any] | None = None  # None: coerced per call (they read variables)
        self.direct: DirectCall | None = None  # strawberry's resolver, called without its wrapper
        self.fast: type | None = None  # set when the attribute's value is its own serialization
        self.needs_info = False
        self.needs_path = False
        self.complete: Completer = _LEAF_PLACEHOLDER


class Completer:
    """How a value of one output type is completed (graphql-core's `complete_value`)."""

    type: GraphQLOutputType

    def complete(self, run: Run, step: Step, info: Any, path: Path | None, result: Any) -> Any:
        raise NotImplementedError


class Leaf(Completer):
    __slots__ = ("coerce", "fast", "type")

    def __init__(self, type_: GraphQLLeafType) -> None:
        self.type = type_
        self.coerce = type_.coerce_output_value
        # graphql-core's serializers return a value of exactly these types unchanged.
        self.fast: type | None = _UNCHANGED.get(self.coerce)

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


_LEAF_PLACEHOLDER = Leaf(GraphQLString)


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
        completed: list[Any] = []
        pending: list[int] = []
        iterator = iter(items)
        index = 0
        try:
            for value in iterator:
                item_path = Path(path, index, None)
                if is_awaitable(value):
                    completed.append(_complete_awaitable(run, step, item, info, item_path, value))
                    pending.append(index)
                else:
                    try:
                        done = item.complete(run, step, info, item_path, value)
                        if is_awaitable(done):
                            completed.append(_await_completed(run, step, item, item_path, done))
                            pending.append(index)
                        else:
                            completed.append(done)
                    except Exception as raw_error:
                        _handle_field_error(run, raw_error, item.type, step, item_path)
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
        return _gather_into(completed, pending)


class Object(Completer):
    __slots__ = ("is_type_of", "object_type", "steps", "type")

    def __init__(self, type_: GraphQLObjectType, steps: list[Step]) -> None:
        self.type = self.object_type = type_
        self.steps = steps
        # strawberry's generated is_type_of ignores its info: a field without a resolver passes None.
        self.is_type_of = type_.is_type_of

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
        return _execute_fields(run, self.steps, result, path)

    async def _complete_after(
        self, run: Run, step: Step, path: Path | None, result: Any, check: Awaitable[bool]
    ) -> Any:
        if not await check:
            raise invalid_return_type_error(self.object_type, result, step.details)
        fields = _execute_fields(run, self.steps, result, path)
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


def _strawberry_is_type_of(type_: GraphQLObjectType) -> bool:
    name = getattr(type_.is_type_of, "__qualname__", "")
    return type_.is_type_of is None or name.endswith("_get_is_type_of.<locals>.is_type_of")


# -- compiling -----------------------------------------------------------------------------


class Compiler:
    """Builds steps for one plan variant, with graphql-core's field collection."""

    def __init__(self, schema: strawberry.Schema) -> None:
        self.strawberry = schema
        self.schema: GraphQLSchema = schema._schema

    def root(self, run: Run) -> list[Step]:
        executor = run.executor
        root_type = self.schema.query_type
        assert root_type is not None
        collected = collect_fields(
            self.schema,
            executor.fragments,
            executor.variable_values,
            root_type,
            executor.operation,
            executor.hide_suggestions,
        )
        if collected.new_defer_usages:
            raise Unsupported("@defer")
        return self.steps(root_type, collected.grouped_field_set, run)

    def object(self, type_: GraphQLObjectType, details: FieldDetailsList, run: Run) -> Object:
        executor = run.executor
        collected = collect_subfields(
            self.schema,
            executor.fragments,
            executor.variable_values,
            executor.operation,
            type_,
            details,
            executor.hide_suggestions,
        )
        if collected.new_defer_usages:
            raise Unsupported("@defer")
        return Object(type_, self.steps(type_, collected.grouped_field_set, run))

    def steps(
        self, parent_type: GraphQLObjectType, grouped: dict[str, FieldDetailsList], run: Run
    ) -> list[Step]:
        steps = []
        for key, details in grouped.items():
            if any(d.fragment_variable_values is not None for d in details):
                raise Unsupported("fragment arguments")
            field_def = self.schema.get_field(parent_type, details[0].node.name.value)
            if field_def is None:
                continue  # graphql-core leaves it out of the response too
            steps.append(self.step(key, parent_type, field_def, details, run))
        return steps

    def step(
        self,
        key: str,
        parent_type: GraphQLObjectType,
        field_def: GraphQLField,
        details: FieldDetailsList,
        run: Run,
    ) -> Step:
        step = Step(key, parent_type, field_def, details)
        if step.name == "__typename":
            step.typename = parent_type.name
        else:
            definition = field_def.extensions.get("strawberry-definition")
            resolve = field_def.resolve
            if (
                isinstance(definition, StrawberryField)
                and definition.is_basic_field
                and getattr(resolve, "__name__", "") == "_get_basic_result"
                and definition.default_resolver is getattr
            ):
                step.attr = definition.python_name
            else:
                step.resolve = resolve or run.executor.field_resolver
                step.direct = _direct_call(self.strawberry, definition, field_def, resolve)
                step.needs_info = True
                if field_def.args or step.node.arguments:
                    step.args = _static_args(field_def, step.node, run)
                else:
                    step.args = {}
        named = get_named_type(field_def.type)
        if is_abstract_type(named) or (is_object_type(named) and not _strawberry_is_type_of(named)):
            step.needs_info = True
        step.complete = self.completer(field_def.type, step, run)
        # A leaf field's path is only built if it fails.
        bare = field_def.type.of_type if is_non_null_type(field_def.type) else field_def.type
        step.needs_path = step.needs_info or not is_leaf_type(bare)
        if step.attr is not None and not step.needs_path:
            leaf = step.complete.inner if isinstance(step.complete, NonNull) else step.complete
            step.fast = leaf.fast if isinstance(leaf, Leaf) else None
        return step

    def completer(self, type_: GraphQLOutputType, step: Step, run: Run) -> Completer:
        if is_non_null_type(type_):
            return NonNull(type_, self.completer(type_.of_type, step, run), step)
        if is_list_type(type_):
            return ListOf(type_, self.completer(type_.of_type, step, run), step)
        if is_leaf_type(type_):
            return Leaf(type_)
        if is_abstract_type(type_):
            return Abstract(type_, self)
        if is_object_type(type_):
            return self.object(type_, step.details, run)
        raise Unsupported(f"output type {type_}")  # pragma: no cover - all output types are above


class DirectCall:
    """A sync strawberry resolver without arguments, field extensions or exception handlers.

    Called as strawberry's wrapper calls it (`get_arguments`, then `StrawberryField.get_result`):
    the source as `self`, `parent`/`root` by name, a strawberry Info over graphql-core's.
    """

    __slots__ = ("definition", "info_class", "info_name", "parent_names", "resolver", "with_self")

    def __init__(self, definition: StrawberryField, info_class: type[Any]) -> None:
        resolver = definition.base_resolver
        assert resolver is not None
        self.definition = definition
        self.resolver = resolver
        self.info_class = info_class
        self.with_self = resolver.self_parameter is not None
        self.parent_names = tuple(
            p.name for p in (resolver.parent_parameter, resolver.root_parameter) if p is not None
        )
        self.info_name = resolver.info_parameter.name if resolver.info_parameter is not None else None

    def call(self, source: Any, raw_info: Any) -> Any:
        kwargs = dict.fromkeys(self.parent_names, source)
        if self.info_name is not None:
            kwargs[self.info_name] = self.info_class(_raw_info=raw_info, _field=self.definition)
        return self.resolver(source, **kwargs) if self.with_self else self.resolver(**kwargs)


def _direct_call(
    schema: strawberry.Schema, definition: Any, field_def: GraphQLField, resolve: Any
) -> DirectCall | None:
    if (
        isinstance(definition, StrawberryField)
        and definition.base_resolver is not None
        and not definition.is_async
        and not definition.extensions
        and not definition.arguments
        and not field_def.args
        and getattr(resolve, "__name__", "") == "_resolver"
        and not schema.schema_converter._exception_handler_specs
    ):
        return DirectCall(definition, schema.config.info_class)
    return None


def _static_args(field_def: GraphQLField, node: FieldNode, run: Run) -> dict[str, Any] | None:
    """Arguments coerced once for every request, when they are literals of immutable values."""
    if _has_variable(node):
        return None
    executor = run.executor
    try:
        args = get_argument_values(field_def, node, executor.variable_values, None, executor.hide_suggestions)
    except Exception:
        return None  # the error is raised at the field, per request, as graphql-core does
    return args if all(isinstance(v, _CACHEABLE_ARGS) for v in args.values()) else None


def _has_variable(node: Node) -> bool:
    if isinstance(node, VariableNode):
        return True
    for key in node.keys:
        if key in ("selection_set", "directives", "loc"):
            continue
        value = getattr(node, key, None)
        children = value if isinstance(value, tuple | list) else (value,)
        if any(isinstance(c, Node) and _has_variable(c) for c in children):
            return True
    return False


# -- executing -----------------------------------------------------------------------------


@dataclass(slots=True)
class Run:
    """One execution: graphql-core's executor supplies infos, variables and error collection."""

    executor: Executor[Any]


def _execute_fields(run: Run, steps: list[Step], source: Any, path: Path | None) -> Any:
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
    return _gather_into(results, pending)


async def _gather_into(results: Any, pending: list[Any]) -> Any:
    """Await the pending entries of a dict or list in place, concurrently like graphql-core."""
    if len(pending) == 1:
        results[pending[0]] = await results[pending[0]]
    else:
        awaited = await gather_with_cancel(*(results[key] for key in pending))
        for key, value in zip(pending, awaited, strict=True):
            results[key] = value
    return results


def _execute_field(run: Run, step: Step, source: Any, path: Path | None) -> Any:
    field_path = Path(path, step.key, step.parent_name) if step.needs_path else None
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
            field_path = Path(path, step.key, step.parent_name)
        return _complete_awaitable(run, step, step.complete, info, field_path, result)
    try:
        completed = step.complete.complete(run, step, info, field_path, result)
    except Exception as raw_error:
        return _field_error(run, raw_error, step, field_path, path)
    if is_awaitable(completed):
        if field_path is None:
            field_path = Path(path, step.key, step.parent_name)
        return _await_completed(run, step, step.complete, field_path, completed)
    return completed


def _field_error(
    run: Run, raw_error: Exception, step: Step, field_path: Path | None, path: Path | None
) -> Any:
    """None in place of the failed value, or the located error when the field is non-null."""
    if field_path is None:
        field_path = Path(path, step.key, step.parent_name)
    _handle_field_error(run, raw_error, step.return_type, step, field_path)
    return None


async def _complete_awaitable(
    run: Run, step: Step, completer: Completer, info: Any, path: Path | None, result: Awaitable[Any]
) -> Any:
    try:
        completed = completer.complete(run, step, info, path, await result)
        if is_awaitable(completed):
            completed = await completed
    except Exception as raw_error:
        _handle_field_error(run, raw_error, completer.type, step, path)
        return None
    return completed


async def _await_completed(
    run: Run, step: Step, completer: Completer, path: Path | None, completed: Awaitable[Any]
) -> Any:
    try:
        return await completed
    except Exception as raw_error:
        _handle_field_error(run, raw_error, completer.type, step, path)
        return None


def _handle_field_error(
    run: Run, raw_error: Exception, return_type: GraphQLOutputType, step: Step, path: Path | None
) -> None:
    assert path is not None
    error = located_error(raw_error, step.nodes, path.as_list())
    if is_non_null_type(return_type):
        raise error  # the nearest nullable parent is nulled instead
    run.executor.collected_errors.add(error, path)


# -- the public face -------------------------------------------------------------------------


@dataclass(eq=False)
class Plan:
    """A compiled query: one step tree per combination of @include/@skip variable values."""

    schema: strawberry.Schema
    document: DocumentNode
    operation_name: str | None
    directive_variables: tuple[str, ...]
    variants: OrderedDict[tuple[Any, ...], list[Step]] = field(default_factory=OrderedDict)


def compile_operation(
    schema: strawberry.Schema, document: DocumentNode, operation_name: str | None
) -> Plan | None:
    """A plan for a validated query, or None when graphql-core must run it."""
    core = schema._schema
    if core.get_directive("defer") or core.get_directive("stream") or core.query_type is None:
        return None
    operations = [d for d in document.definitions if isinstance(d, OperationDefinitionNode)]
    if operation_name is None:
        chosen = operations if len(operations) == 1 else []
    else:
        chosen = [d for d in operations if d.name is not None and d.name.value == operation_name]
    if not chosen or chosen[0].operation is not OperationType.QUERY or chosen[0].directives:
        return None
    variables: list[str] = []
    try:
        for definition in document.definitions:
            if isinstance(definition, FragmentDefinitionNode):
                if definition.variable_definitions:
                    raise Unsupported("fragment variables")
                _scan(definition.selection_set, variables)
        _scan(chosen[0].selection_set, variables)
    except Unsupported:
        return None
    return Plan(schema, document, operation_name, tuple(dict.fromkeys(variables)))


def _scan(selection_set: SelectionSetNode | None, variables: list[str]) -> None:
    """Refuse what the plan leaves to graphql-core; note the variables @include/@skip read."""
    if selection_set is None:
        return
    for selection in selection_set.selections:
        for directive in selection.directives or ():
            _directive(directive, variables)
        if isinstance(selection, FieldNode):
            if selection.name.value in ("__schema", "__type"):
                raise Unsupported("introspection")
            _scan(selection.selection_set, variables)
        elif isinstance(selection, InlineFragmentNode):
            _scan(selection.selection_set, variables)
        elif isinstance(selection, FragmentSpreadNode) and getattr(selection, "arguments", None):
            raise Unsupported("fragment arguments")


def _directive(directive: DirectiveNode, variables: list[str]) -> None:
    if directive.name.value not in ("include", "skip"):
        raise Unsupported(f"@{directive.name.value}")
    for argument in directive.arguments or ():
        if isinstance(argument.value, VariableNode):
            variables.append(argument.value.name.value)


async def execute_plan(plan: Plan, context: Any, variables: dict[str, Any] | None) -> ExecutionResult:
    """Run a plan with this request's context and variables: graphql-core's `execute` result."""
    schema = plan.schema
    executor_class = schema.execution_context_class or StrawberryGraphQLCoreExecutionContext
    # As bff/graphql_http.py's `execute` builds it: infos are strawberry's, variables coerced once.
    built = executor_class.build(
        schema._schema,
        plan.document,
        None,
        context,
        variables,
        plan.operation_name,
        is_awaitable=optimized_is_awaitable,  # type: ignore[arg-type]
        operation_extensions=None,
    )
    if isinstance(built, list):
        return ExecutionResult(None, built)  # variables that do not coerce: a request error
    run = Run(built)
    coerced = built.variable_values.coerced
    key = tuple(coerced.get(name, _MISSING) for name in plan.directive_variables)
    root = plan.variants.get(key)
    if root is None:
        try:
            root = Compiler(schema).root(run)
        except Unsupported:  # not expected past compile_operation's scan; graphql-core answers
            return await execute_with_graphql_core(
                plan.schema, plan.document, plan.operation_name, context, variables
            )
        plan.variants[key] = root
        if len(plan.variants) > _MAX_VARIANTS:
            plan.variants.popitem(last=False)
    errors = built.collected_errors
    try:
        data = _execute_fields(run, root, None, None)
        if is_awaitable(data):
            data = await data
    except GraphQLError as error:
        errors.add(error, None)
        data = None
    return ExecutionResult(data, errors.errors or None)


async def execute_with_graphql_core(
    schema: strawberry.Schema,
    document: DocumentNode,
    operation_name: str | None,
    context: Any,
    variables: dict[str, Any] | None,
) -> ExecutionResult:
    """graphql-core's executor over strawberry's schema, as strawberry runs it (the fallback and the reference)."""
    result = execute(
        schema._schema,
        document,
        context_value=context,
        variable_values=variables,
        operation_name=operation_name,
        is_awaitable=optimized_is_awaitable,  # type: ignore[arg-type]
        **execution_context_class_kwargs(schema.execution_context_class),
        operation_extensions=None,
    )
    return await result if not isinstance(result, ExecutionResult) else result


class PlanCache:
    """Plans of the documents in use, beside bff/documents.py's prepared documents.

    Keyed by the document's text and the operation name, so a document parsed again (a cache
    miss upstream, a persisted query) finds its plan; a document without a source location is
    keyed by identity, its entry keeping it alive so the identity cannot be reused meanwhile.
    Refusals are cached too: graphql-core runs those documents without a second look.
    """

    def __init__(self, schema: strawberry.Schema, size: int = 256) -> None:
        self.schema = schema
        self.size = size
        self._plans: OrderedDict[tuple[str | int, str | None], tuple[DocumentNode, Plan | None]] = (
            OrderedDict()
        )

    def plan(self, document: DocumentNode, operation_name: str | None) -> Plan | None:
        key = (document.loc.source.body if document.loc is not None else id(document), operation_name)
        entry = self._plans.get(key)
        if entry is not None and (document.loc is not None or entry[0] is document):
            self._plans.move_to_end(key)
            return entry[1]
        plan = compile_operation(self.schema, document, operation_name)
        if self.size:
            self._plans[key] = (document, plan)
            if len(self._plans) > self.size:
                self._plans.popitem(last=False)
        return plan
