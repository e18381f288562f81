"""Logs, metrics and error reporting: configured once per process from Settings."""

from __future__ import annotations

import functools
import logging
import sys

import structlog
from prometheus_client import Counter, Gauge, Histogram

from bff.config import Settings

REQUEST_SECONDS = Histogram(
    "bff_graphql_request_duration_seconds",
    "GraphQL request latency, by operation name and kind",
    ["operation", "kind"],
    buckets=(0.001, 0.0025, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1.0, 2.5, 5.0, 10.0),
)
ERRORS = Counter("bff_graphql_errors_total", "GraphQL errors returned to clients, by code", ["code"])
HTTP_RESPONSES = Counter("bff_http_responses_total", "HTTP responses, by path and status", ["path", "status"])
IN_FLIGHT = Gauge("bff_http_requests_in_flight", "HTTP requests being served")

# Operation names come from clients: past this many distinct names, new ones are counted as "other".
MAX_OPERATION_LABELS = 200
_seen_operations: set[str] = set()


# The labelled children of the per-request metrics, looked up once each: `labels()` costs a lock
# and a tuple per call. Bounded: operation labels are (MAX_OPERATION_LABELS), and so are the
# paths, statuses and kinds this app answers with.
@functools.cache
def request_seconds(operation: str, kind: str) -> Histogram:
    return REQUEST_SECONDS.labels(operation, kind)


@functools.cache
def http_responses(path: str, status: int) -> Counter:
    return HTTP_RESPONSES.labels(path, str(status))


def operation_label(name: str | None) -> str:
    if not name:
        return "anonymous"
    if name in _seen_operations:
        return name
    if len(_seen_operations) >= MAX_OPERATION_LABELS or len(name) > 64:
        return "other"
    _seen_operations.add(name)
    return name


def configure_logging(settings: Settings) -> None:
    level = logging.getLevelNamesMapping().get(settings.log_level.upper(), logging.INFO)
    renderer: structlog.typing.Processor = (
        structlog.processors.JSONRenderer() if settings.log_json else structlog.dev.ConsoleRenderer()
    )
    structlog.configure(
        processors=[
            structlog.contextvars.merge_contextvars,
            structlog.processors.add_log_level,
            structlog.processors.TimeStamper(fmt="iso", utc=True),
            structlog.processors.dict_tracebacks
            if settings.log_json
            else structlog.processors.format_exc_info,
            renderer,
        ],
        wrapper_class=structlog.make_filtering_bound_logger(level),
        logger_factory=structlog.PrintLoggerFactory(sys.stdout),
        cache_logger_on_first_use=True,
    )


def configure_sentry(settings: Settings) -> bool:
    """sentry-sdk on when SENTRY_DSN is set; errors are also reported by bff.errors.report_exception."""
    if not settings.sentry_dsn:
        return False
    import sentry_sdk

    sentry_sdk.init(
        dsn=settings.sentry_dsn,
        environment=settings.bff_env,
        traces_sample_rate=settings.sentry_traces_sample_rate,
        send_default_pii=False,
    )
    return True
