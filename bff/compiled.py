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

Modules: this one (plans, their cache, running one), bff/compiled_steps.py (compiling a
document into steps), bff/compiled_complete.py (completing values), bff/compiled_run.py
(executing steps).

Anything outside that subset (mutations, subscriptions, `@defer`/`@stream`, introspection
fields, other directives, fragment arguments) compiles to None: the caller runs graphql-core.
"""

from __future__ import annotations

from collections import OrderedDict
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
    GraphQLError,
    InlineFragmentNode,
    OperationDefinitionNode,
    OperationType,
    SelectionSetNode,
    VariableNode,
    execute,
)
from graphql.execution.collect_fields import FragmentDetails
from graphql.execution.executor import default_field_resolver, default_type_resolver
from graphql.execution.values import VariableValues, get_variable_values
from strawberry.execution import optimized_is_awaitable
from strawberry.schema._graphql_core import execution_context_class_kwargs
from strawberry.schema.schema import StrawberryGraphQLCoreExecutionContext

from bff.compiled_complete import Object
from bff.compiled_run import Run, is_awaitable
from bff.compiled_steps import Compiler, Unsupported

__all__ = [
    "Compiler",
    "Plan",
    "PlanCache",
    "Unsupported",
    "compile_operation",
    "execute_plan",
    "execute_with_graphql_core",
]

_MISSING = object()
_MAX_VARIANTS = 16  # @include/@skip variable combinations kept per plan
_MAX_VARIABLE_SETS = 32  # coerced variable sets kept per plan (bounded: cursors differ per page)
# Raw variable values whose coercion may be reused: immutable, and compared with their type
# (True == 1 and 1 == 1.0 in Python, while Int refuses true and a Float may not be an Int).
_SCALARS = frozenset({str, int, float, bool, type(None)})


# -- the public face -------------------------------------------------------------------------


@dataclass(eq=False)
class Plan:
    """A compiled query: one step tree per combination of @include/@skip variable values."""

    schema: strawberry.Schema
    document: DocumentNode
    operation_name: str | None
    directive_variables: tuple[str, ...]
    operation: OperationDefinitionNode
    variants: OrderedDict[tuple[Any, ...], Object] = field(default_factory=OrderedDict)
    generate: bool = True  # run generated Python source (bff/codegen.py), not the step walk
    # What graphql-core's `Executor.build` derives from the document on every request, kept.
    fragment_definitions: dict[str, FragmentDefinitionNode] = field(default_factory=dict)
    fragments: dict[str, FragmentDetails] = field(default_factory=dict)
    variable_sets: OrderedDict[tuple[Any, ...], VariableValues] = field(default_factory=OrderedDict)

    def __post_init__(self) -> None:
        for definition in self.document.definitions:
            if isinstance(definition, FragmentDefinitionNode):  # none has variables: _scan refuses
                self.fragment_definitions[definition.name.value] = definition
                self.fragments[definition.name.value] = FragmentDetails(definition, None)

    def coerce(self, raw: dict[str, Any] | None) -> VariableValues | list[GraphQLError]:
        """graphql-core's coercion of this operation's variables, reused for repeated scalar sets.

        A screen's request sends the same few scalars again and again (`first: 20`, a game id);
        their coercion is the same every time. Each request gets its own dicts all the same.
        """
        raw = raw or {}
        key: tuple[Any, ...] | None = None
        if all(type(value) in _SCALARS for value in raw.values()):
            key = tuple((name, type(value), value) for name, value in raw.items())
            known = self.variable_sets.get(key)
            if known is not None:
                return VariableValues(dict(known.sources), dict(known.coerced))
        coerced = get_variable_values(
            self.schema._schema, self.operation.variable_definitions or (), raw, max_errors=50
        )
        if (
            key is not None
            and not isinstance(coerced, list)
            and all(type(value) in _SCALARS for value in coerced.coerced.values())
        ):
            self.variable_sets[key] = VariableValues(dict(coerced.sources), dict(coerced.coerced))
            if len(self.variable_sets) > _MAX_VARIABLE_SETS:
                self.variable_sets.popitem(last=False)
        return coerced


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
    return Plan(schema, document, operation_name, tuple(dict.fromkeys(variables)), chosen[0])


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
    coerced = plan.coerce(variables)
    if isinstance(coerced, list):
        return ExecutionResult(None, coerced)  # variables that do not coerce: a request error
    # What `Executor.build` returns for this document and these variables (as bff/graphql_http.py's
    # `execute` calls it: infos are strawberry's), without finding the operation and fragments
    # and coercing the variables again: the plan holds them.
    built = executor_class(
        schema._schema,
        plan.fragment_definitions,
        plan.fragments,
        None,
        context,
        plan.operation,
        coerced,
        default_field_resolver,
        default_type_resolver,
        default_field_resolver,
        is_awaitable=optimized_is_awaitable,  # type: ignore[arg-type]
        operation_extensions=None,  # type: ignore[call-arg]  # strawberry's executor takes it
    )
    run = Run(built)
    key = tuple(coerced.coerced.get(name, _MISSING) for name in plan.directive_variables)
    root = plan.variants.get(key)
    if root is None:
        try:
            root = Compiler(schema, plan.generate).root(run)
        except Unsupported:  # not expected past compile_operation's scan; graphql-core answers
            return await execute_with_graphql_core(
                plan.schema, plan.document, plan.operation_name, context, variables
            )
        plan.variants[key] = root
        if len(plan.variants) > _MAX_VARIANTS:
            plan.variants.popitem(last=False)
    errors = built.collected_errors
    try:
        data = root.execute(run, root.steps, None, None)
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
