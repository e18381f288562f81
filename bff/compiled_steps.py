"""Compiling a query into steps: per response key, how to resolve it and complete its value.

graphql-core's own `collect_fields` groups the fields; the work graphql-core repeats per
object (field definition, arguments of literals, completion kind) is done here once.
"""

from __future__ import annotations

import functools
from collections.abc import Callable
from typing import Any

import strawberry
from graphql import (
    FieldNode,
    GraphQLField,
    GraphQLObjectType,
    GraphQLOutputType,
    GraphQLSchema,
    Node,
    VariableNode,
    get_named_type,
    is_abstract_type,
    is_leaf_type,
    is_list_type,
    is_non_null_type,
    is_object_type,
)
from graphql.execution.collect_fields import FieldDetailsList, collect_fields, collect_subfields
from graphql.execution.values import get_argument_values
from strawberry.relay.types import GlobalID
from strawberry.types.arguments import _is_leaf_type
from strawberry.types.base import StrawberryMaybe, StrawberryOptional
from strawberry.types.field import StrawberryField

from bff.codegen import ResolverCall, fields_function
from bff.codegen_fused import fused_function, rows_function
from bff.compiled_complete import (
    LEAF_PLACEHOLDER,
    Abstract,
    Completer,
    Leaf,
    ListOf,
    NonNull,
    Object,
    strawberry_is_type_of,
)
from bff.compiled_run import Run

_CACHEABLE_ARGS = (str, int, float, bool, type(None))  # immutable: safe to share between requests


class Unsupported(Exception):
    """The operation uses something the compiled executor leaves to graphql-core."""


# -- the plan ------------------------------------------------------------------------------


class Step:
    """One response key of one object type: how to resolve it and complete its value."""

    __slots__ = (
        "args",
        "attr",
        "call",
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
        self.call: ResolverCall | None = None  # the same with arguments: generated source only
        self.fast: type | None = None  # set when the attribute's value is its own serialization
        self.needs_info = False
        self.needs_path = False
        self.complete: Completer = LEAF_PLACEHOLDER


# -- compiling -----------------------------------------------------------------------------


class Compiler:
    """Builds steps for one plan variant, with graphql-core's field collection."""

    def __init__(self, schema: strawberry.Schema, generate: bool = True) -> None:
        self.strawberry = schema
        self.schema: GraphQLSchema = schema._schema
        self.generate = generate  # compile each selection to Python source (bff/codegen.py)

    def root(self, run: Run) -> Object:
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
        return self._object(root_type, self.steps(root_type, collected.grouped_field_set, run))

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
        return self._object(type_, self.steps(type_, collected.grouped_field_set, run))

    def _object(self, type_: GraphQLObjectType, steps: list[Step]) -> Object:
        completer = Object(type_, steps)
        if self.generate:
            generic = fields_function(steps)
            completer.execute = fused_function(completer, generic) or generic
            completer.rows_for = functools.partial(rows_function, completer)
        return completer

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
                if step.direct is None:
                    step.call = _resolver_call(self.strawberry, step, definition, resolve)
                if field_def.args or step.node.arguments:
                    step.args = _static_args(field_def, step.node, run)
                else:
                    step.args = {}
        named = get_named_type(field_def.type)
        if is_abstract_type(named) or (is_object_type(named) and not strawberry_is_type_of(named)):
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

    __slots__ = ("definition", "function", "info_class", "info_name", "parent_names", "with_self")

    def __init__(self, definition: StrawberryField, info_class: type[Any]) -> None:
        resolver = definition.base_resolver
        assert resolver is not None
        self.definition = definition
        # What StrawberryResolver.__call__ calls (it refuses an uncallable one itself).
        self.function = resolver.wrapped_func if callable(resolver.wrapped_func) else resolver
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
        return self.function(source, **kwargs) if self.with_self else self.function(**kwargs)


def _wrapped_only(schema: strawberry.Schema, definition: Any, resolve: Any) -> bool:
    """A strawberry resolver whose wrapper adds nothing but arguments and the info: no field
    extensions, no exception handlers, strawberry's own wrapper as graphql-core's resolve."""
    return (
        isinstance(definition, StrawberryField)
        and definition.base_resolver is not None
        and not definition.extensions
        and getattr(resolve, "__name__", "") in ("_resolver", "_async_resolver")
        and not schema.schema_converter._exception_handler_specs
    )


def _direct_call(
    schema: strawberry.Schema, definition: Any, field_def: GraphQLField, resolve: Any
) -> DirectCall | None:
    if (
        _wrapped_only(schema, definition, resolve)
        and not definition.is_async
        and not definition.arguments
        and not field_def.args
    ):
        return DirectCall(definition, schema.config.info_class)
    return None


def _resolver_call(
    schema: strawberry.Schema, step: Step, definition: Any, resolve: Any
) -> ResolverCall | None:
    """For the generated source: a resolver with arguments (or an async one) called directly, when
    strawberry would hand its arguments over unchanged (see ResolverCall)."""
    if not _wrapped_only(schema, definition, resolve):
        return None
    registry = schema.schema_converter.scalar_registry
    for argument in definition.arguments:
        kind = argument.type
        if isinstance(kind, StrawberryMaybe):
            return None
        if isinstance(kind, StrawberryOptional):
            kind = kind.of_type
        if kind is GlobalID or not _is_leaf_type(kind, registry, skip_classes=(GlobalID,)):
            return None
    convert = schema.config.name_converter
    names = {convert.get_graphql_name(a): a.python_name for a in definition.arguments}
    if set(names) != set(step.field_def.args):
        return None
    return ResolverCall(step, DirectCall(definition, schema.config.info_class), names)


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
