"""Error codes clients can rely on, and the masking of everything else.

Clients read `extensions.code`. Codes are added, never renamed (docs/operations.md lists them).
Any exception that is not a `BffError` is reported (logs, Sentry) and reaches the client only
as INTERNAL_SERVER_ERROR with a generic message: no stack trace, no internal text.
"""

from __future__ import annotations

from enum import StrEnum
from typing import Any

import structlog
from graphql import GraphQLError

log = structlog.get_logger("bff.errors")
# SQLSTATE of a statement Postgres cancelled, e.g. past statement_timeout.
QUERY_CANCELED = "57014"


class ErrorCode(StrEnum):
    BAD_USER_INPUT = "BAD_USER_INPUT"
    BAD_REQUEST = "BAD_REQUEST"
    UNAUTHENTICATED = "UNAUTHENTICATED"
    FORBIDDEN = "FORBIDDEN"
    NOT_FOUND = "NOT_FOUND"
    GRAPHQL_PARSE_FAILED = "GRAPHQL_PARSE_FAILED"
    GRAPHQL_VALIDATION_FAILED = "GRAPHQL_VALIDATION_FAILED"
    DOCUMENT_TOO_LARGE = "DOCUMENT_TOO_LARGE"
    TOKEN_LIMIT_EXCEEDED = "TOKEN_LIMIT_EXCEEDED"
    DEPTH_LIMIT_EXCEEDED = "DEPTH_LIMIT_EXCEEDED"
    ALIAS_LIMIT_EXCEEDED = "ALIAS_LIMIT_EXCEEDED"
    PAYLOAD_TOO_LARGE = "PAYLOAD_TOO_LARGE"
    OPERATION_NOT_FOUND = "OPERATION_NOT_FOUND"
    METHOD_NOT_ALLOWED = "METHOD_NOT_ALLOWED"
    UNSUPPORTED_MEDIA_TYPE = "UNSUPPORTED_MEDIA_TYPE"
    BATCHING_NOT_ENABLED = "BATCHING_NOT_ENABLED"
    BATCH_TOO_LARGE = "BATCH_TOO_LARGE"
    INTERNAL_SERVER_ERROR = "INTERNAL_SERVER_ERROR"
    RATE_LIMITED = "RATE_LIMITED"
    TIMEOUT = "TIMEOUT"
    IDEMPOTENCY_KEY_REUSED = "IDEMPOTENCY_KEY_REUSED"
    IDEMPOTENCY_KEY_IN_USE = "IDEMPOTENCY_KEY_IN_USE"
    ROOT_FIELD_LIMIT_EXCEEDED = "ROOT_FIELD_LIMIT_EXCEEDED"
    DIRECTIVE_LIMIT_EXCEEDED = "DIRECTIVE_LIMIT_EXCEEDED"
    COST_LIMIT_EXCEEDED = "COST_LIMIT_EXCEEDED"
    INTROSPECTION_DISABLED = "INTROSPECTION_DISABLED"
    PERSISTED_QUERY_NOT_FOUND = "PERSISTED_QUERY_NOT_FOUND"
    PERSISTED_QUERY_NOT_SUPPORTED = "PERSISTED_QUERY_NOT_SUPPORTED"
    PERSISTED_QUERY_HASH_MISMATCH = "PERSISTED_QUERY_HASH_MISMATCH"
    OPERATION_NOT_TRUSTED = "OPERATION_NOT_TRUSTED"


# Codes a client may simply retry (the same request may succeed later).
RETRYABLE = {
    ErrorCode.INTERNAL_SERVER_ERROR,
    ErrorCode.RATE_LIMITED,
    ErrorCode.TIMEOUT,
    ErrorCode.IDEMPOTENCY_KEY_IN_USE,
}


class BffError(Exception):
    """An error meant for the client: its message is shown as is, with its code."""

    def __init__(self, code: ErrorCode, message: str, **extensions: Any) -> None:
        super().__init__(message)
        self.code = code
        self.message = message
        # graphql-core copies an original error's `extensions` onto the GraphQLError it wraps it in.
        self.extensions = error_extensions(code, extensions)

    def to_graphql(self) -> GraphQLError:
        return GraphQLError(self.message, extensions=self.extensions)


def error_extensions(code: ErrorCode, extra: dict[str, Any] | None = None) -> dict[str, Any]:
    out: dict[str, Any] = {"code": code.value}
    if code in RETRYABLE:
        out["retryable"] = True
    if extra:
        out.update(extra)
    return out


def _code_for_graphql_core_error(error: GraphQLError) -> ErrorCode:
    """graphql-core's own errors during execution: bad variables or arguments are the client's input."""
    message = error.message
    if message.startswith("Variable ") or "Argument " in message or "got invalid value" in message:
        return ErrorCode.BAD_USER_INPUT
    return ErrorCode.INTERNAL_SERVER_ERROR


def format_error(error: GraphQLError, *, debug: bool = False) -> dict[str, Any]:
    """The JSON form of one error, masked unless it is meant for the client."""
    original = error.original_error
    while isinstance(original, GraphQLError) and original.original_error is not None:
        original = original.original_error
    out: dict[str, Any] = {"message": error.message}
    if isinstance(original, BffError):
        out["message"] = original.message
        extensions = dict(original.extensions)
    elif getattr(original, "sqlstate", None) == QUERY_CANCELED:
        # Postgres cancelled the statement (statement_timeout): slow, not broken; a retry may pass.
        out["message"] = "The database did not answer in time"
        extensions = error_extensions(ErrorCode.TIMEOUT)
    elif original is not None and not isinstance(original, GraphQLError):
        report_exception(original, path=error.path)
        out["message"] = "Internal server error"
        extensions = error_extensions(ErrorCode.INTERNAL_SERVER_ERROR)
        if debug:
            extensions["debug"] = f"{type(original).__name__}: {original}"[:500]
    else:
        # graphql-core's own error: variable coercion wraps the scalar's complaint in a
        # GraphQLError ("Variable '$first' got invalid value ...; Int cannot represent ...").
        code = (error.extensions or {}).get("code") or (
            original.extensions.get("code") if original is not None and original.extensions else None
        )
        extensions = dict(error.extensions or {})
        if not code:
            classified = _code_for_graphql_core_error(error)
            extensions.update(error_extensions(classified))
            if classified is ErrorCode.INTERNAL_SERVER_ERROR:
                # e.g. a resolver returned a value its type cannot serialize: a bug of ours.
                report_exception(original or error, path=error.path)
                out["message"] = "Internal server error"
                if debug:
                    extensions["debug"] = error.message[:500]
        else:
            extensions["code"] = code
    if error.locations:
        out["locations"] = [{"line": loc.line, "column": loc.column} for loc in error.locations]
    if error.path:
        out["path"] = list(error.path)
    out["extensions"] = extensions
    return out


def report_exception(exc: BaseException, **fields: Any) -> None:
    """Log an unexpected exception with its traceback and send it to Sentry (when configured)."""
    log.error("unhandled_error", exc_info=exc, error_type=type(exc).__name__, **fields)
    try:
        import sentry_sdk

        sentry_sdk.capture_exception(exc)
    except Exception:  # pragma: no cover - reporting must never break a response
        pass
