"""GraphQL subscriptions over WebSocket on /graphql, through strawberry's protocol handlers.

Both `graphql-transport-ws` and the legacy `graphql-ws` subprotocol are served. The token
comes from `connection_init`'s payload (`{"authorization": "Bearer …"}`) or the upgrade
request's Authorization header; a bad token closes the socket with 4403.
"""

from __future__ import annotations

from datetime import timedelta
from typing import Any

import structlog
from starlette.requests import Request
from starlette.responses import Response
from starlette.websockets import WebSocket
from strawberry.asgi import GraphQL
from strawberry.exceptions import ConnectionRejectionError
from strawberry.subscriptions import GRAPHQL_TRANSPORT_WS_PROTOCOL, GRAPHQL_WS_PROTOCOL
from strawberry.types.unset import UnsetType

from bff.errors import BffError
from bff.services import Services
from resolvers.context import Context

log = structlog.get_logger("bff.websocket")


class WebSocketContext(Context):
    connection_params: dict[str, Any] | None = None


class GraphQLWebSocket(GraphQL[Context, None]):
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

    async def get_context(self, request: Request | WebSocket, response: Response | WebSocket) -> Context:
        services = self.services
        context = WebSocketContext(
            db=services.db,
            broker=services.broker,
            settings=services.settings,
            tokens=services.tokens,
            request_id=request.scope.get("state", {}).get("request_id", ""),
        )
        try:
            context.set_viewer(services.tokens.from_authorization(request.headers.get("authorization")))
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
                context.set_viewer(self.services.tokens.from_authorization(header))
            except BffError as error:
                log.info("ws_auth_failed", reason=error.message)
                raise ConnectionRejectionError() from None
        elif getattr(context, "upgrade_token_invalid", False):
            log.info("ws_auth_failed", reason="invalid upgrade token")
            raise ConnectionRejectionError()
        log.info("ws_connected", user_id=context.viewer.user_id if context.viewer else None)
        return None
