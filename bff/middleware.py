"""Request ids and access logs for every HTTP request (pure ASGI: no body buffering)."""

from __future__ import annotations

import re
import time
import uuid

import structlog
from starlette.types import ASGIApp, Message, Receive, Scope, Send

from bff.observability import IN_FLIGHT, http_responses

log = structlog.get_logger("bff.access")
# A client-supplied id is echoed only when it is short and printable: logs must not be injectable.
_REQUEST_ID = re.compile(r"^[A-Za-z0-9._:\-]{1,128}$")
_KNOWN_PATHS = {"/graphql", "/healthz", "/readyz", "/metrics"}


def request_id_from(scope: Scope) -> str:
    for name, value in scope.get("headers", ()):
        if name == b"x-request-id":
            text: str = value.decode("latin-1")
            if _REQUEST_ID.match(text):
                return text
    return uuid.uuid4().hex


class RequestContextMiddleware:
    def __init__(self, app: ASGIApp) -> None:
        self.app = app

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] not in ("http", "websocket"):
            await self.app(scope, receive, send)
            return
        request_id = request_id_from(scope)
        scope.setdefault("state", {})["request_id"] = request_id
        structlog.contextvars.clear_contextvars()
        structlog.contextvars.bind_contextvars(request_id=request_id)
        if scope["type"] == "websocket":
            await self.app(scope, receive, send)
            return
        started = time.perf_counter()
        status = 500
        header = (b"x-request-id", request_id.encode())

        async def send_with_id(message: Message) -> None:
            nonlocal status
            if message["type"] == "http.response.start":
                status = message["status"]
                message["headers"] = [*message.get("headers", []), header]
            await send(message)

        IN_FLIGHT.inc()
        try:
            await self.app(scope, receive, send_with_id)
        finally:
            IN_FLIGHT.dec()
            path = scope["path"]
            label = path if path in _KNOWN_PATHS else ("/static" if path.startswith("/static/") else "other")
            http_responses(label, status).inc()
            state = scope["state"]
            log.info(
                "request",
                method=scope["method"],
                path=path[:200],
                status=status,
                duration_ms=round((time.perf_counter() - started) * 1000, 2),
                operation=state.get("operation_name"),
                operation_kind=state.get("operation_kind"),
                sql_statements=state.get("sql_statements"),
                cost=state.get("cost"),
                error_codes=state.get("error_codes"),
            )
