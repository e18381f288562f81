"""Liveness, readiness and metrics endpoints for the platform running the BFF."""

from __future__ import annotations

import asyncio
from collections.abc import Awaitable

from prometheus_client import CONTENT_TYPE_LATEST, generate_latest
from starlette.requests import Request
from starlette.responses import JSONResponse, Response

from bff.services import Services

READY_TIMEOUT_SECONDS = 2.0


async def healthz(request: Request) -> Response:
    """Alive: the event loop answers. Never touches dependencies (a restart would not fix them)."""
    return JSONResponse({"status": "ok"})


async def _check(name: str, probe: Awaitable[bool]) -> tuple[str, bool]:
    try:
        ok = await asyncio.wait_for(probe, READY_TIMEOUT_SECONDS)
    except Exception:
        ok = False
    return name, bool(ok)


async def readyz(request: Request) -> Response:
    """Ready: the database and the broker (Redis) answer; 503 otherwise, so the balancer skips us."""
    services: Services = request.app.state.services
    if getattr(request.app.state, "draining", False):
        return JSONResponse({"status": "draining"}, status_code=503)
    results = dict(
        await asyncio.gather(
            _check("database", services.db.ping()),
            _check("broker", services.broker.ping()),
        )
    )
    ok = all(results.values())
    return JSONResponse(
        {
            "status": "ok" if ok else "unavailable",
            "checks": {k: "ok" if v else "failing" for k, v in results.items()},
            "broker": services.broker.name,
            "database": services.db.dialect,
        },
        status_code=200 if ok else 503,
    )


async def metrics(request: Request) -> Response:
    return Response(generate_latest(), media_type=CONTENT_TYPE_LATEST)
