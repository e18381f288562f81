"""strawberry's two WebSocket protocol handlers with bff's socket policy (bff/ws_limits.py).

- graphql-transport-ws: admission (connections per user) before `connection_ack`; each
  operation counted per root field while it runs; subscriptions listed in
  `schema.subscription.SHARED_STREAMS` served by shared fan-out (bff/ws_fanout.py), whose
  frames go out through a `FrameSender` (the operation's id in front of the group's payload);
- legacy graphql-ws: the same admission and counting, one task per operation (strawberry's).
"""

from __future__ import annotations

import asyncio
import contextlib
from collections.abc import Iterator
from typing import TYPE_CHECKING, Any, cast

import orjson
from graphql import FieldNode, OperationDefinitionNode, OperationType, parse
from strawberry.http.exceptions import (
    WebSocketDisconnected,
)
from strawberry.subscriptions.protocols.graphql_transport_ws.handlers import (
    BaseGraphQLTransportWSHandler,
    Operation,
)
from strawberry.subscriptions.protocols.graphql_transport_ws.types import ConnectionInitMessage, Message
from strawberry.subscriptions.protocols.graphql_ws.handlers import BaseGraphQLWSHandler
from strawberry.subscriptions.protocols.graphql_ws.types import OperationMessage

from bff.ws_limits import SUBSCRIPTIONS, PolicedWebSocket
from resolvers.context import Context

if TYPE_CHECKING:
    from bff.ws_fanout import SharedSubscriptions
    from realtime.fanout import Member


def subscription_field(schema: Any, query: str, operation_name: str | None) -> str | None:
    """The root field of a subscription document (a schema field, else "other"); None for other operations."""
    try:
        document = parse(query, no_location=True, max_tokens=10_000)
    except Exception:
        return None  # strawberry reports the syntax error
    operations = [d for d in document.definitions if isinstance(d, OperationDefinitionNode)]
    chosen = [o for o in operations if operation_name is None or (o.name and o.name.value == operation_name)]
    if len(chosen) != 1 or chosen[0].operation != OperationType.SUBSCRIPTION:
        return None
    fields = [s for s in chosen[0].selection_set.selections if isinstance(s, FieldNode)]
    if not fields:
        return "other"
    name = fields[0].name.value
    subscription_type = getattr(getattr(schema, "_schema", None), "subscription_type", None)
    known = subscription_type.fields if subscription_type is not None else {}
    return name if name in known else "other"  # bounded label values


def count_operation(field: str | None, delta: int) -> None:
    if field is not None:
        SUBSCRIPTIONS.labels(field).inc(delta)


@contextlib.contextmanager
def counted(field: str | None) -> Iterator[None]:
    count_operation(field, 1)
    try:
        yield
    finally:
        count_operation(field, -1)


class FrameSender:
    """A shared member's `send`: the group's payload behind this operation's frame prefix
    (`{"id":…,"type":"next","payload":`), closed by `}`. Slots, not a closure: kept per member."""

    __slots__ = ("prefix", "socket")

    def __init__(self, socket: PolicedWebSocket, prefix: str) -> None:
        self.socket = socket
        self.prefix = prefix

    def __call__(self, payload: str) -> bool:
        return self.socket.queue_text(self.prefix + payload + "}")


async def join_shared(
    view: object,
    socket: PolicedWebSocket,
    context: Context,
    frame_prefix: str,
    query: str,
    operation_name: str | None,
    variables: dict[str, object] | None,
) -> Member | None:
    """Put an operation in its shared fan-out group (bff/ws_fanout.py); None when strawberry must run it.

    Each payload is rendered once per group and written to this socket by the group's task; the
    operation needs no task of its own while it waits. The caller calls `leave` when it ends.
    A socket that cannot keep up is closed with 1013 (`drop_slow_consumer`).
    """
    shared: SharedSubscriptions | None = getattr(view, "shared_subscriptions", None)
    if shared is None:
        return None
    runner = await shared.open(query, operation_name, variables, context)
    if runner is None:
        return None
    return await runner.join(FrameSender(socket, frame_prefix), socket.drop_slow_consumer)


def _json_string(value: str) -> str:
    return orjson.dumps(value).decode()


class PolicedTransportWSHandler(BaseGraphQLTransportWSHandler[Context, None]):
    """graphql-transport-ws with the socket policy: admission before the ack, counted operations.

    Operations served by shared fan-out keep no task while they wait (`run_operation`): their
    group writes each frame, and `cleanup_operation` (`complete`, the socket closing) takes them
    out of it.
    """

    shared_operations: dict[str, tuple[Member, str | None]] | None = None  # by id: member, field label

    @property
    def socket(self) -> PolicedWebSocket:
        return cast(PolicedWebSocket, self.websocket)

    async def shutdown(self) -> None:
        try:
            await super().shutdown()
        finally:
            await self.socket.finish()

    async def handle_connection_init(self, message: ConnectionInitMessage) -> None:
        await super().handle_connection_init(message)
        if self.connection_init_received:
            # Cancelled by now: not kept for the socket's life (strawberry keeps it till the end).
            self.connection_init_timeout_task = None

    async def send_message(self, message: Message) -> None:
        if message["type"] == "connection_ack" and not await self.socket.admit(self.context):
            return
        await super().send_message(message)

    async def run_operation(self, operation: Operation[Context, None]) -> None:
        field = subscription_field(self.schema, operation.query, operation.operation_name)
        count_operation(field, 1)
        counted_until_cleanup = False
        try:
            prefix = '{"id":' + _json_string(operation.id) + ',"type":"next","payload":'
            member = await join_shared(
                self.view,
                self.socket,
                self.context,
                prefix,
                operation.query,
                operation.operation_name,
                operation.variables,
            )
            if member is None:
                await super().run_operation(operation)
                return
            if self.operations.get(operation.id) is not operation:  # pragma: no cover - defensive
                member.leave()
                return
            # Served by its group from here on: this task ends; the operation stays registered
            # (its id, the per-socket limit) with no task, and counted, until `cleanup_operation`.
            served = self.shared_operations
            if served is None:
                served = self.shared_operations = {}
            served[operation.id] = (member, field)
            counted_until_cleanup = True
            operation.task = None
        finally:
            if not counted_until_cleanup:
                count_operation(field, -1)

    async def cleanup_operation(self, operation_id: str) -> None:
        served = self.shared_operations.pop(operation_id, None) if self.shared_operations else None
        if served is None:
            await super().cleanup_operation(operation_id)
            return
        self.operations.pop(operation_id, None)
        member, field = served
        member.leave()
        count_operation(field, -1)

    async def handle_task_exception(self, error: Exception) -> None:
        if isinstance(error, WebSocketDisconnected):
            return  # the socket is closing (slow consumer, idle, gone): not an application error
        await super().handle_task_exception(error)


class PolicedLegacyWSHandler(BaseGraphQLWSHandler[Context, None]):
    """Legacy graphql-ws with the same socket policy. Its operations keep strawberry's task each."""

    @property
    def socket(self) -> PolicedWebSocket:
        return cast(PolicedWebSocket, self.websocket)

    async def cleanup(self) -> None:
        try:
            await super().cleanup()
        finally:
            await self.socket.finish()

    async def send_message(self, message: OperationMessage) -> None:
        if message["type"] == "connection_ack" and not await self.socket.admit(self.context):
            return
        await super().send_message(message)

    async def handle_async_results(
        self, operation_id: str, query: str, operation_name: str | None, variables: dict[str, object] | None
    ) -> None:
        with (
            counted(subscription_field(self.schema, query, operation_name)),
            contextlib.suppress(WebSocketDisconnected),
        ):
            prefix = '{"type":"data","id":' + _json_string(operation_id) + ',"payload":'
            handled = False
            member: Member | None = None
            try:
                member = await join_shared(
                    self.view, self.socket, self.context, prefix, query, operation_name, variables
                )
                handled = member is not None
                if member is not None:
                    await asyncio.get_running_loop().create_future()  # its group serves it until `stop`
            except asyncio.CancelledError:
                # `stop` (or the socket ending): answer as strawberry's path does.
                handled = True
                await self.send_message({"type": "complete", "id": operation_id})
            finally:
                if member is not None:
                    member.leave()
                if handled:  # release the bookkeeping strawberry's path would release
                    self.tasks.pop(operation_id, None)
                    self.subscriptions.pop(operation_id, None)
            if not handled:
                await super().handle_async_results(operation_id, query, operation_name, variables)
