"""The app factory: `create_app()` wires settings, services, routes and middleware."""

from __future__ import annotations

from collections.abc import AsyncIterator
from contextlib import asynccontextmanager
from pathlib import Path

import structlog
from starlette.applications import Starlette
from starlette.middleware.cors import CORSMiddleware
from starlette.requests import Request
from starlette.responses import Response
from starlette.routing import Mount, Route, WebSocketRoute
from starlette.staticfiles import StaticFiles

from bff import heap
from bff.compression import CompressionMiddleware
from bff.config import Settings, load_settings
from bff.drain import Drain
from bff.graphql_http import GraphQLHTTP, wants_html
from bff.health import healthz, metrics, readyz
from bff.middleware import RequestContextMiddleware
from bff.observability import configure_logging, configure_sentry
from bff.playground import playground
from bff.services import Services
from bff.websocket import GraphQLWebSocket
from schema.cache_policy import CACHE_POLICY

STATIC = Path(__file__).resolve().parent / "static"
# What a browser app on an allowed origin may send and read (CORS_ALLOW_ORIGINS).
CORS_REQUEST_HEADERS = [
    "Authorization",
    "Content-Type",
    "Apollo-Require-Preflight",
    "X-Apollo-Operation-Name",
    "Idempotency-Key",
    "X-Request-Id",
    "If-None-Match",
]
CORS_EXPOSED_HEADERS = ["ETag", "Retry-After", "X-Request-Id", "Idempotent-Replayed"]
log = structlog.get_logger("bff.app")


def create_app(settings: Settings | None = None) -> Starlette:
    settings = settings or load_settings()
    configure_logging(settings)
    configure_sentry(settings)
    services = Services.from_settings(settings)
    http = GraphQLHTTP(services, CACHE_POLICY)
    websocket = GraphQLWebSocket(services)
    websocket.edge = http.edge  # one rate-limit budget for HTTP and sockets
    drain = Drain(on_start=lambda: setattr(app.state, "draining", True))
    websocket.open_sockets = drain.sockets

    async def graphql(request: Request) -> Response:
        if request.method == "GET" and wants_html(request):
            return await playground(request)
        return await http.handle(request)

    @asynccontextmanager
    async def lifespan(app: Starlette) -> AsyncIterator[None]:
        await services.start()
        drain.install()
        heap.freeze_startup_objects()
        log.info("started", database=services.db.dialect, broker=services.broker.name, env=settings.bff_env)
        try:
            yield
        finally:
            app.state.draining = True
            await http.close()
            await services.close()
            heap.thaw()
            log.info("stopped")

    app = Starlette(
        routes=[
            Route("/graphql", graphql, methods=["GET", "POST", "PUT", "PATCH", "DELETE", "OPTIONS"]),
            WebSocketRoute("/graphql", websocket),
            Route("/healthz", healthz),
            Route("/readyz", readyz),
            Route("/metrics", metrics),
            Mount("/static", StaticFiles(directory=STATIC, check_dir=False), name="static"),
        ],
        lifespan=lifespan,
    )
    app.state.services = services
    app.state.http = http  # the GraphQL-over-HTTP view, for operators' and tests' inspection
    app.state.draining = False
    # Outermost last: request ids and access logs see every answer, CORS headers go on
    # compressed and uncompressed answers alike, WebSocket traffic passes all three untouched.
    app.add_middleware(CompressionMiddleware, minimum_size=settings.compression_min_bytes)
    origins = [o.strip() for o in settings.cors_allow_origins.split(",") if o.strip()]
    if origins:
        app.add_middleware(
            CORSMiddleware,
            allow_origins=origins,
            allow_methods=["GET", "POST"],
            allow_headers=CORS_REQUEST_HEADERS,
            expose_headers=CORS_EXPOSED_HEADERS,
            max_age=600,
        )
    app.add_middleware(RequestContextMiddleware)
    return app
