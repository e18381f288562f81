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
from datetime import timedelta
from typing import Any

import structlog
from starlette.requests import Request
from starlette.responses import Response
from starlette.types import Receive, Scope, Send
from starlette.websockets import WebSocket
from strawberry.asgi import GraphQL
from strawberry.exceptions import ConnectionRejectionError
from strawberry.subscriptions import GRAPHQL_TRANSPORT_WS_PROTOCOL, GRAPHQL_WS_PROTOCOL
from strawberry.types.unset import UnsetType

from bff.auth import Viewer
from bff.config import Settings
from bff.errors import BffError
from bff.services import Services
from bff.ws_fanout import SharedSubscriptions
from bff.ws_limits import (
    ConnectionsPerUser,
    PolicedLegacyWSHandler,
    PolicedTransportWSHandler,
    PolicedWebSocket,
    SocketPolicy,
)
from resolvers.context import Context

log = structlog.get_logger("bff.websocket")
TOKEN_EXPIRED = 4403
_EXPIRY = "bff.token_expiry"  # scope key: the socket's TokenExpiry, owned by __call__


class TokenExpiry:
    """Closes one socket when its viewer's token expires. `arm` (re)schedules, `cancel` stops it."""

    def __init__(self, websocket: WebSocket) -> None:
        self._websocket = websocket
        self._task: asyncio.Task[None] | None = None

    def arm(self, expires_at: float) -> None:
        self.cancel()
        self._task = asyncio.create_task(self._close_at(expires_at), name="bff-ws-token-expiry")

    def cancel(self) -> None:
        if self._task is not None:
            self._task.cancel()
            self._task = None

    async def _close_at(self, expires_at: float) -> None:
        await asyncio.sleep(max(0.0, expires_at - time.time()))
        log.info("ws_token_expired")
        with contextlib.suppress(Exception):  # already closed by the client
            await self._websocket.close(code=TOKEN_EXPIRED, reason="token expired")


class WebSocketContext(Context):
    connection_params: dict[str, Any] | None = None
    token_expiry: TokenExpiry | None = None


class GraphQLWebSocket(GraphQL[Context, None]):
    # Socket limits and metrics (bff/ws_limits.py): strawberry's extension points.
    websocket_adapter_class = PolicedWebSocket
    graphql_transport_ws_handler_class = PolicedTransportWSHandler
    graphql_ws_handler_class = PolicedLegacyWSHandler

    def __init__(self, services: Services) -> None:
        super().__init__(
            services.schema,
            graphql_ide=None,
            allow_queries_via_get=False,
            subscription_protocols=(GRAPHQL_TRANSPORT_WS_PROTOCOL, GRAPHQL_WS_PROTOCOL),
            # A socket that never sends connection_init is closed with 4408 after this.
            connection_init_wait_timeout=timedelta(seconds=10),
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
        services = self.services
        context = Context(
            db=services.db,
            broker=services.broker,
            settings=services.settings,
            tokens=services.tokens,
            presence=services.presence,
            leaderboards=services.leaderboards,
        )
        context.set_viewer(viewer)
        return context

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
        context = WebSocketContext(
            db=services.db,
            broker=services.broker,
            settings=services.settings,
            tokens=services.tokens,
            request_id=request.scope.get("state", {}).get("request_id", ""),
            presence=services.presence,
            leaderboards=services.leaderboards,
        )
        if isinstance(response, WebSocket):
            context.token_expiry = request.scope[_EXPIRY] = TokenExpiry(response)
        try:
            context.set_viewer(await services.tokens.authenticate(request.headers.get("authorization")))
        except BffError:
            context.upgrade_token_invalid = True  # type: ignore[attr-defined]
        return context

    async def on_ws_connect(self, context: Context) -> UnsetType | dict[str, object] | None:
        params = getattr(context, "connection_params", None) or {}
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
