"""GraphQL subscriptions over WebSocket on /graphql, through strawberry's protocol handlers.

Both `graphql-transport-ws` and the legacy `graphql-ws` subprotocol are served. The token
comes from `connection_init`'s payload (`{"authorization": "Bearer …"}`) or the upgrade
request's Authorization header; a bad token closes the socket with 4403. When the token
expires the socket is closed with 4403 "token expired", so a phone re-authenticates.
"""

from __future__ import annotations

import asyncio
import contextlib
import time
from collections.abc import Mapping
from datetime import timedelta
from typing import Any, cast

import structlog
from graphql import OperationDefinitionNode, OperationType, parse
from starlette.requests import Request
from starlette.responses import Response
from starlette.types import Receive, Scope, Send
from starlette.websockets import WebSocket
from strawberry.asgi import GraphQL
from strawberry.exceptions import ConnectionRejectionError
from strawberry.http.exceptions import WebSocketDisconnected
from strawberry.subscriptions import GRAPHQL_TRANSPORT_WS_PROTOCOL, GRAPHQL_WS_PROTOCOL
from strawberry.subscriptions.protocols.graphql_transport_ws.types import Message
from strawberry.types.execution import ExecutionResult, PreExecutionError
from strawberry.types.unset import UnsetType
from strawberry.utils.aio import aclosing

from bff.auth import Viewer
from bff.config import Settings
from bff.edge import Edge
from bff.errors import BffError, ErrorCode, error_extensions
from bff.services import Services
from bff.ws_fanout import SharedSubscriptions
from bff.ws_handlers import PolicedLegacyWSHandler, PolicedTransportWSHandler
from bff.ws_limits import ConnectionsPerUser, PolicedWebSocket, SocketPolicy
from resolvers.context import Context

log = structlog.get_logger("bff.websocket")
TOKEN_EXPIRED = 4403
_EXPIRY = "bff.token_expiry"  # scope key: the socket's TokenExpiry, owned by __call__


class TokenExpiry:
    """Closes one socket when its viewer's token expires. `arm` (re)schedules, `cancel` stops it.

    A timer handle until it fires (not a task sleeping for hours), then a task closing the socket.
    """

    __slots__ = ("_closing", "_timer", "_websocket")

    def __init__(self, websocket: WebSocket) -> None:
        self._websocket = websocket
        self._timer: asyncio.TimerHandle | None = None
        self._closing: asyncio.Task[None] | None = None

    def arm(self, expires_at: float) -> None:
        self.cancel()
        loop = asyncio.get_running_loop()
        self._timer = loop.call_at(loop.time() + max(0.0, expires_at - time.time()), self._expire)

    def cancel(self) -> None:
        if self._timer is not None:
            self._timer.cancel()
            self._timer = None
        if self._closing is not None:
            self._closing.cancel()
            self._closing = None

    def _expire(self) -> None:
        self._timer = None
        self._closing = asyncio.create_task(self._close(), name="bff-ws-token-expiry")

    async def _close(self) -> None:
        log.info("ws_token_expired")
        with contextlib.suppress(Exception):  # already closed by the client
            await self._websocket.close(code=TOKEN_EXPIRED, reason="token expired")


class WebSocketContext(Context):
    connection_params: dict[str, Any] | None = None
    token_expiry: TokenExpiry | None = None
    scope: Mapping[str, Any] | None = None  # the upgrade request's, for the rate limiter's client address


# -- rate limits on sockets --------------------------------------------------------------------
# Every operation a socket starts is charged to the same per-minute budget as HTTP requests
# (bff/edge.py, shared through Redis), one unit each: a client opening subscriptions in a loop
# gets RATE_LIMITED errors instead of server work.


async def rate_limited(view: Any, context: Context) -> dict[str, Any] | None:
    """The error payload when this socket's owner is over budget, else None (charged)."""
    edge: Edge | None = getattr(view, "edge", None)
    if edge is None:
        return None
    owner = edge.owner(getattr(context, "scope", None) or {}, context.viewer)
    decision = await edge.charge(owner, 1)
    if decision.allowed:
        return None
    wait = decision.retry_after_seconds
    return {
        "message": f"Too many operations: retry in {wait} s",
        "extensions": error_extensions(ErrorCode.RATE_LIMITED, {"retryAfter": wait}),
    }


# Protocol conformance: what strawberry's handlers leave to the server (graphql-ws's PROTOCOL.md,
# subscriptions-transport-ws's PROTOCOL.md); tests/e2e/test_ws_protocol.py checks each rule.


def _is_object_or_null(value: object) -> bool:
    return value is None or isinstance(value, dict)


def invalid_transport_message(message: object) -> str | None:
    """Why a graphql-transport-ws message breaks PROTOCOL.md's shapes (closed with 4400); None if it doesn't.

    The checks of graphql-ws's own `validateMessage`; unknown types are left to strawberry (also 4400).
    """
    if not isinstance(message, dict):
        return "Message is expected to be an object"
    kind = message.get("type")
    if not isinstance(kind, str) or not kind:
        return "Message is missing a string 'type' property"
    payload = message.get("payload")
    if kind in ("connection_init", "ping", "pong") and not _is_object_or_null(payload):
        return f'"{kind}" message expects the payload to be an object or null'
    if kind in ("subscribe", "complete") and not (isinstance(message.get("id"), str) and message["id"]):
        return f'"{kind}" message requires a non-empty string id'
    if kind == "subscribe":
        if not isinstance(payload, dict) or not isinstance(payload.get("query"), str):
            return '"subscribe" message expects a payload object with a string query'
        if not _is_object_or_null(payload.get("variables")) or not _is_object_or_null(
            payload.get("extensions")
        ):
            return '"subscribe" message expects variables and extensions to be objects or null'
        if payload.get("operationName") is not None and not isinstance(payload["operationName"], str):
            return '"subscribe" message expects operationName to be a string or null'
    return None


class TransportWSHandler(PolicedTransportWSHandler):
    """graphql-transport-ws: malformed messages close with 4400 (strawberry would crash on some,
    run others), and a `connection_init` whose payload is null is valid."""

    async def handle_message(self, message: Message) -> None:
        reason = invalid_transport_message(message)
        if reason is not None:
            await self.handle_invalid_message(reason)
            return
        if message["type"] == "connection_init" and message.get("payload") is None:
            message = {"type": "connection_init"}
        if message["type"] == "subscribe" and self.connection_acknowledged:
            refusal = await rate_limited(self.view, self.context)
            if refusal is not None:
                await self.send_message(
                    cast(Any, {"id": message["id"], "type": "error", "payload": [refusal]})
                )
                return
        await super().handle_message(message)


def _single_result_operation(query: str, operation_name: str | None) -> bool:
    """Whether the document's chosen operation is a query or a mutation (parse errors: no)."""
    try:
        document = parse(query, no_location=True, max_tokens=10_000)
    except Exception:
        return False
    operations = [d for d in document.definitions if isinstance(d, OperationDefinitionNode)]
    chosen = [o for o in operations if operation_name is None or (o.name and o.name.value == operation_name)]
    return len(chosen) == 1 and chosen[0].operation != OperationType.SUBSCRIPTION


class LegacyWSHandler(PolicedLegacyWSHandler):
    """Legacy graphql-ws: `start` runs queries and mutations too (`data` then `complete`), as the
    protocol's flow says; strawberry's handler runs subscriptions only."""

    async def handle_async_results(
        self, operation_id: str, query: str, operation_name: str | None, variables: dict[str, object] | None
    ) -> None:
        refusal = await rate_limited(self.view, self.context)
        if refusal is not None:
            await self.send_message(cast(Any, {"type": "error", "id": operation_id, "payload": refusal}))
            self.tasks.pop(operation_id, None)
            return
        if not _single_result_operation(query, operation_name):
            await super().handle_async_results(operation_id, query, operation_name, variables)
            return
        try:
            results = await self.schema.stream(
                query,
                variable_values=variables,
                context_value=self.context,
                root_value=self.root_value,
                operation_name=operation_name,
            )
            async with aclosing(results):
                async for result in results:
                    if isinstance(result, PreExecutionError):
                        assert result.errors
                        error = result.errors[0].formatted
                        await self.send_message({"type": "error", "id": operation_id, "payload": error})
                        return
                    if isinstance(result, ExecutionResult):
                        await self.send_data_message(result, operation_id)
            await self.send_message({"type": "complete", "id": operation_id})
        except asyncio.CancelledError:
            await self.send_message({"type": "complete", "id": operation_id})  # `stop`, as strawberry does
        except WebSocketDisconnected:
            pass
        finally:
            self.tasks.pop(operation_id, None)


class GraphQLWebSocket(GraphQL[Context, None]):
    edge: Edge | None = None  # the HTTP view's rate limiter, set by create_app
    open_sockets: set[Any] | None = None  # drained with 1001 on SIGTERM (bff/drain.py), set by create_app
    # Socket limits and metrics (bff/ws_limits.py, bff/ws_handlers.py): strawberry's extension points.
    websocket_adapter_class = PolicedWebSocket
    graphql_transport_ws_handler_class = TransportWSHandler  # protocol conformance (above) over ws_limits
    graphql_ws_handler_class = LegacyWSHandler

    def __init__(self, services: Services) -> None:
        super().__init__(
            services.schema,
            graphql_ide=None,
            allow_queries_via_get=False,
            subscription_protocols=(GRAPHQL_TRANSPORT_WS_PROTOCOL, GRAPHQL_WS_PROTOCOL),
            # A socket that never sends connection_init is closed with 4408 after this.
            connection_init_wait_timeout=timedelta(
                seconds=services.settings.ws_connection_init_timeout_seconds
            ),
            # Legacy graphql-ws clients expect keep-alive messages; graphql-transport-ws uses ping/pong.
            keep_alive=True,
            keep_alive_interval=15,
        )
        self.services = services
        self._install_socket_limits(services.settings)
        # messageAdded and other SHARED_STREAMS: one execution per event per group (bff/ws_fanout.py).
        self.shared_subscriptions = SharedSubscriptions(
            services.schema,
            services.broker,
            self._event_context,
            max_pending=services.settings.ws_send_queue_size,
            debug=services.settings.is_development,
        )

    def _event_context(self, viewer: Viewer | None) -> Context:
        """The context a shared group renders its events with: no viewer unless its answer needs one."""
        return self.services.context(viewer)

    def _install_socket_limits(self, settings: Settings) -> None:
        """Per-socket policy (bff/ws_limits.py), read by the adapter and handler classes above."""
        self.socket_policy = SocketPolicy.from_settings(settings)
        self.socket_users = ConnectionsPerUser(settings.ws_max_connections_per_user)
        self.max_subscriptions_per_connection = settings.ws_max_subscriptions_per_connection

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] != "websocket":
            await super().__call__(scope, receive, send)
            return
        try:
            await super().__call__(scope, receive, send)
        finally:
            expiry = scope.get(_EXPIRY)
            if isinstance(expiry, TokenExpiry):
                expiry.cancel()

    async def get_context(self, request: Request | WebSocket, response: Response | WebSocket) -> Context:
        services = self.services
        context = services.context(
            request_id=request.scope.get("state", {}).get("request_id", ""), context_class=WebSocketContext
        )
        context.scope = request.scope
        if isinstance(response, WebSocket):
            context.token_expiry = request.scope[_EXPIRY] = TokenExpiry(response)
        try:
            context.set_viewer(await services.tokens.authenticate(request.headers.get("authorization")))
        except BffError:
            context.upgrade_token_invalid = True  # type: ignore[attr-defined]
        return context

    async def on_ws_connect(self, context: Context) -> UnsetType | dict[str, object] | None:
        params = getattr(context, "connection_params", None) or {}
        if isinstance(context, WebSocketContext):
            context.connection_params = None  # read once here: the token is not kept for the socket's life
        header = (
            params.get("authorization") or params.get("Authorization") if isinstance(params, dict) else None
        )
        if header is not None and not isinstance(header, str):
            log.info("ws_auth_failed", reason="authorization is not a string")
            raise ConnectionRejectionError()
        if header:
            try:
                context.set_viewer(await self.services.tokens.authenticate(header))
            except BffError as error:
                log.info("ws_auth_failed", reason=error.message)
                raise ConnectionRejectionError() from None
        elif getattr(context, "upgrade_token_invalid", False):
            log.info("ws_auth_failed", reason="invalid upgrade token")
            raise ConnectionRejectionError()
        log.info("ws_connected", user_id=context.viewer.user_id if context.viewer else None)
        expiry = getattr(context, "token_expiry", None)
        if context.viewer is not None and isinstance(expiry, TokenExpiry):
            expiry.arm(context.viewer.expires_at)
        return None
