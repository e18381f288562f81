"""Subscriptions served by shared fan-out: one execution and one encoding per event per group.

strawberry runs a subscription per subscriber: every event is executed and encoded once for
each of them. For the fields listed in `schema.subscription.SHARED_STREAMS` (`messageAdded`),
the WebSocket handlers (bff/ws_handlers.py) ask this module first. A document is planned once
(parsed, validated, its selection checked against the field's viewer-independent fields); each
subscriber is authorised on its own at subscribe time (the field's `open`, as the resolver
would), then joins the group of its channel, document, shaping variables and, when the
selection is not viewer-independent, its viewer (realtime/fanout.py). Each event is executed
once per group with graphql-core (the event as root value, a context without a viewer for
public selections) and encoded once; each socket gets the same payload text behind its own
operation id. Replay (`after`) and RESYNC refills are per subscriber, with its own context.

Anything the plan does not cover (another field, several root fields, invalid documents or
variables, a refused subscriber) falls back to strawberry's path, which reports errors as usual.
"""

from __future__ import annotations

import json
from collections import OrderedDict
from collections.abc import AsyncIterator, Callable, Hashable
from dataclasses import dataclass
from typing import Any

import orjson
import strawberry
from graphql import (
    DocumentNode,
    ExecutionResult,
    FieldNode,
    GraphQLError,
    GraphQLField,
    GraphQLSchema,
    OperationDefinitionNode,
    OperationType,
    TypeInfo,
    TypeInfoVisitor,
    VariableNode,
    Visitor,
    get_operation_ast,
    parse,
    validate,
    visit,
)
from graphql.execution import execute
from graphql.execution.values import get_argument_values, get_variable_values
from strawberry.schema._graphql_core import execution_context_class_kwargs

from bff.auth import Viewer
from bff.errors import BffError, format_error
from realtime.broker import Broker
from realtime.fanout import Fanout, Member, OnFail, Refill, Render, Send
from resolvers.context import Context
from schema.subscription import SHARED_STREAMS, SharedStream

PLAN_CACHE_SIZE = 256
MAX_TOKENS = 10_000


@dataclass(frozen=True, slots=True)
class Plan:
    document: DocumentNode
    operation: OperationDefinitionNode
    field_node: FieldNode
    field_def: GraphQLField
    stream: SharedStream
    public: bool  # every selected field is the same for every viewer
    shaping_variables: tuple[str, ...]  # variables used below the root field (they shape the answer)


class _SelectionCheck(Visitor):
    """Collects the `Type.field`s and variables used below the root field."""

    def __init__(self, type_info: TypeInfo, root: FieldNode) -> None:
        super().__init__()
        self.type_info = type_info
        self.root = root
        self.fields: set[str] = set()
        self.variables: set[str] = set()
        self._root_args = {id(a) for a in root.arguments or ()}
        self._in_root_args = 0

    def enter_field(self, node: FieldNode, *_: Any) -> None:
        parent = self.type_info.get_parent_type()
        if node is not self.root and parent is not None and not node.name.value.startswith("__"):
            self.fields.add(f"{parent.name}.{node.name.value}")

    def enter_argument(self, node: Any, *_: Any) -> None:
        if id(node) in self._root_args:
            self._in_root_args += 1

    def leave_argument(self, node: Any, *_: Any) -> None:
        if id(node) in self._root_args:
            self._in_root_args -= 1

    def enter_variable_definition(self, *_: Any) -> Any:
        return False  # declarations are not uses

    def enter_variable(self, node: VariableNode, *_: Any) -> None:
        if not self._in_root_args:
            self.variables.add(node.name.value)


class StoredEvents:
    """One subscriber's replay (its `after`, a RESYNC refill): stored events after a position,
    executed with its own context. Kept by its member, so slots rather than a closure's cells."""

    __slots__ = ("_args", "_context", "_operation_name", "_plan", "_shared", "_variables")

    def __init__(
        self,
        shared: SharedSubscriptions,
        plan: Plan,
        context: Context,
        args: dict[str, Any],
        variables: dict[str, Any],
        operation_name: str | None,
    ) -> None:
        self._shared = shared
        self._plan = plan
        self._context = context
        self._args = args
        self._variables = variables
        self._operation_name = operation_name

    async def __call__(self, after_id: int) -> AsyncIterator[tuple[int, str]]:
        plan, context = self._plan, self._context
        try:
            async for position, root in plan.stream.stored(context, self._args, after_id):
                yield (
                    position,
                    await self._shared.execute(plan, root, context, self._variables, self._operation_name),
                )
        finally:
            context.drop_loaders()  # what the replay loaded (authors…) is not kept for hours


class Runner:
    """One subscriber, authorised and keyed: `join` puts it in its group."""

    __slots__ = ("_fanout", "channel", "key", "last_seen", "make_render", "refill")

    def __init__(
        self,
        fanout: Fanout,
        key: Hashable,
        channel: str,
        make_render: Callable[[], Render],
        refill: Refill,
        last_seen: int,
    ) -> None:
        self._fanout = fanout
        self.key = key
        self.channel = channel
        self.make_render = make_render
        self.refill = refill
        self.last_seen = last_seen

    async def join(self, send: Send, on_fail: OnFail) -> Member:
        """Live in its group (storage after its cursor replayed first); the caller calls `leave`."""
        return await self._fanout.join(
            self.key, self.channel, self.make_render, send, self.refill, self.last_seen, on_fail
        )


class SharedSubscriptions:
    """Plans documents and starts subscribers on the shared fan-out engine."""

    def __init__(
        self,
        schema: strawberry.Schema,
        broker: Broker,
        make_context: Callable[[Viewer | None], Context],
        max_pending: int,
        debug: bool = False,
        streams: dict[str, SharedStream] = SHARED_STREAMS,
    ) -> None:
        self._schema: GraphQLSchema = schema._schema
        self._executor_kwargs = execution_context_class_kwargs(schema.execution_context_class)
        self._make_context = make_context
        self._debug = debug
        self._streams = streams
        self._plans: OrderedDict[tuple[str, str | None], Plan | None] = OrderedDict()
        self.fanout = Fanout(broker.subscribe, max_pending)

    # Planning: once per document.

    def plan(self, query: str, operation_name: str | None) -> Plan | None:
        key = (query, operation_name)
        if key in self._plans:
            self._plans.move_to_end(key)
            return self._plans[key]
        plan = self._make_plan(query, operation_name)
        self._plans[key] = plan
        if len(self._plans) > PLAN_CACHE_SIZE:
            self._plans.popitem(last=False)
        return plan

    def _make_plan(self, query: str, operation_name: str | None) -> Plan | None:
        try:
            document = parse(query, no_location=False, max_tokens=MAX_TOKENS)
        except GraphQLError:
            return None
        if validate(self._schema, document):
            return None
        operation = get_operation_ast(document, operation_name)
        subscription_type = self._schema.subscription_type
        if (
            operation is None
            or operation.operation != OperationType.SUBSCRIPTION
            or subscription_type is None
        ):
            return None
        selections = operation.selection_set.selections
        if len(selections) != 1 or not isinstance(selections[0], FieldNode) or selections[0].directives:
            return None
        field_node = selections[0]
        stream = self._streams.get(field_node.name.value)
        if stream is None:
            return None
        type_info = TypeInfo(self._schema)
        check = _SelectionCheck(type_info, field_node)
        visit(document, TypeInfoVisitor(type_info, check))
        return Plan(
            document=document,
            operation=operation,
            field_node=field_node,
            field_def=subscription_type.fields[field_node.name.value],
            stream=stream,
            public=check.fields <= stream.public_fields,
            shaping_variables=tuple(sorted(check.variables)),
        )

    # Starting a subscriber.

    async def open(
        self, query: str, operation_name: str | None, variables: dict[str, Any] | None, context: Context
    ) -> Runner | None:
        """Authorise and key one subscriber; None when strawberry's path should serve it instead."""
        plan = self.plan(query, operation_name)
        if plan is None or not isinstance(variables, dict | None):
            return None
        variables = variables or {}
        coerced = get_variable_values(self._schema, plan.operation.variable_definitions or (), variables)
        if isinstance(coerced, list):
            return None
        try:
            args = get_argument_values(plan.field_def, plan.field_node, coerced)
            channel, last_seen = await plan.stream.open(context, args)
        except (GraphQLError, BffError):
            return None  # strawberry's path reports it the usual way
        # The socket's context lives as long as the socket: its loaders (the room's members,
        # read to authorise) are made again if a replay needs them.
        context.drop_loaders()
        viewer = None if plan.public else context.viewer
        # Canonical text of the variables that shape the answer (a str: orjson's bytes keep a 4 KiB buffer).
        shaping = json.dumps([variables.get(name) for name in plan.shaping_variables], sort_keys=True)
        key = (channel, query, operation_name, shaping, viewer.user_id if viewer else None)

        def make_render() -> Render:
            """The group's rendering, made by its first subscriber: a context of its own."""
            group_context = self._make_context(viewer)

            async def render(data: bytes) -> tuple[int, str]:
                position, root = plan.stream.root(data)
                group_context.loaders = group_context.fresh_loaders()  # nothing cached across events
                return position, await self.execute(plan, root, group_context, variables, operation_name)

            return render

        refill = StoredEvents(self, plan, context, args, variables, operation_name)
        return Runner(self.fanout, key, channel, make_render, refill, last_seen)

    async def execute(
        self, plan: Plan, root: Any, context: Context, variables: dict[str, Any], operation_name: str | None
    ) -> str:
        result = execute(
            self._schema,
            plan.document,
            root_value=root,
            context_value=context,
            variable_values=variables,
            operation_name=operation_name,
            **self._executor_kwargs,
            operation_extensions=None,
        )
        if not isinstance(result, ExecutionResult):
            result = await result
        payload: dict[str, Any] = {"data": result.data}
        if result.errors:
            payload["errors"] = [format_error(e, debug=self._debug) for e in result.errors]
        return orjson.dumps(payload).decode()
