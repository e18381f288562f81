"""GraphQL over HTTP, as the GraphQL-over-HTTP spec says.

- POST with `application/json`; GET for queries only (a mutation over GET gets 405).
- `Accept: application/graphql-response+json` (or `*/*`): request errors (unparsable JSON,
  parse, validation, limits) get 4xx; `Accept: application/json` keeps 200 for
  well-formed requests whose document fails, as older clients expect.
- Bodies above MAX_BODY_BYTES get 413 before they are read in full; batches get 400.
- A present but invalid bearer token gets 401: a phone must refresh it, not see anonymous data.
- A request error (nothing executed: variable coercion failed) has no `data` entry; a field
  error keeps `data` (even `null`) and 200, as the spec says for both media types.
- Every error carries `extensions.code`; an unexpected exception in this layer is reported and
  answered with a JSON INTERNAL_SERVER_ERROR, never a stack trace.
"""

from __future__ import annotations

import asyncio
import time
from collections.abc import Awaitable, Callable, Mapping
from dataclasses import dataclass
from functools import partial
from typing import Any

import orjson
from graphql import ExecutionResult, GraphQLError, OperationType
from starlette.requests import ClientDisconnect, Request
from starlette.responses import Response

from bff import cost, csrf, http_cache, idempotency
from bff.auth import Viewer
from bff.compiled import PlanCache, execute_plan, execute_with_graphql_core
from bff.db import StatementCounter, current_counter
from bff.documents import DocumentCache, DocumentRefused, PreparedDocument
from bff.edge import Edge
from bff.errors import BffError, ErrorCode, error_extensions, format_error, report_exception
from bff.http_cache import Hint
from bff.observability import ERRORS, operation_label, request_seconds
from bff.services import Services
from resolvers.context import Context

GRAPHQL_RESPONSE = "application/graphql-response+json"


@dataclass(frozen=True, slots=True)
class Batch:
    """A batched body: a JSON array of operations (only when BATCH_MAX_OPERATIONS allows it)."""

    items: list[Any]


JSON = "application/json"
# Answers an Idempotency-Key does not keep: the mutation may or may not have happened.
_NOT_FINAL = {ErrorCode.TIMEOUT.value, ErrorCode.INTERNAL_SERVER_ERROR.value}
# Statuses of request errors that do not follow the media type. Apollo's persisted-query link
# retries with the query on PERSISTED_QUERY_NOT_FOUND in a 200 (older links give up on
# persisted queries after a 400); a hash that does not match its query is a malformed request.
_STATUS_BY_CODE = {
    ErrorCode.PERSISTED_QUERY_NOT_FOUND: 200,
    ErrorCode.PERSISTED_QUERY_NOT_SUPPORTED: 200,
    ErrorCode.PERSISTED_QUERY_HASH_MISMATCH: 400,
    ErrorCode.BAD_REQUEST: 400,
}


class RequestRefused(Exception):
    """The HTTP request itself is wrong: answered with `status` and one error."""

    def __init__(
        self,
        status: int,
        code: ErrorCode,
        message: str,
        headers: dict[str, str] | None = None,
        extensions: dict[str, object] | None = None,
    ) -> None:
        super().__init__(message)
        self.status = status
        self.code = code
        self.message = message
        self.headers = headers or {}
        self.extensions = error_extensions(code, extensions)


def _media_types(header: str) -> list[tuple[str, float]]:
    out = []
    for part in header.split(","):
        fields = [f.strip() for f in part.split(";")]
        media, q = fields[0].lower(), 1.0
        for param in fields[1:]:
            if param.startswith("q="):
                try:
                    q = float(param[2:])
                except ValueError:
                    q = 0.0
        if media:
            out.append((media, q))
    return out


def negotiate(accept: str | None) -> str | None:
    """The response media type, or None when the client accepts neither JSON type."""
    if not accept:
        return JSON  # the spec's legacy default
    best: tuple[float, int, str] | None = None
    for media, q in _media_types(accept):
        if q <= 0:
            continue
        if media == GRAPHQL_RESPONSE:
            choice = (q, 2, GRAPHQL_RESPONSE)
        elif media == JSON:
            choice = (q, 1, JSON)
        elif media in ("*/*", "application/*"):
            choice = (q, 0, JSON)
        else:
            continue
        if best is None or choice[:2] > best[:2]:
            best = choice
    return best[2] if best else None


def headers_of(request: Request) -> dict[str, str]:
    """The request's headers as a plain dict (lower-case names, the first of repeated ones, as
    Starlette's `Headers.get` answers), built once per request: `Headers.get` scans the raw list
    per call and raises and catches a KeyError for each absent header, and a request reads ~10."""
    scope = request.scope
    found: dict[str, str] | None = scope.get("bff.headers")
    if found is None:
        found = scope["bff.headers"] = {
            name.decode("latin-1").lower(): value.decode("latin-1")
            for name, value in reversed(scope["headers"])
        }
    return found


def wants_html(request: Request) -> bool:
    accept = request.headers.get("accept", "")
    return "text/html" in accept and not request.query_params.get("query")


class GraphQLHTTP:
    def __init__(self, services: Services, cache_hints: Mapping[str, Hint] | None = None) -> None:
        self.services = services
        self.settings = services.settings
        self.schema = services.schema
        self.documents = DocumentCache(services.schema._schema, services.settings)
        # Queries run through plans compiled once per document; anything a plan does not
        # cover (mutations, introspection, @defer…) goes to graphql-core's executor.
        self.plans = (
            PlanCache(services.schema, services.settings.document_cache_size or 256)
            if services.settings.compiled_execution
            else None
        )
        self.edge = Edge(services.settings, services.schema._schema, cache_hints or {})

    async def close(self) -> None:
        await self.edge.close()

    async def handle(self, request: Request) -> Response:
        # Cache-Control and Vary on every answer; a cacheable query has set its own already.
        return http_cache.default_headers(await self._handle(request))

    async def _handle(self, request: Request) -> Response:
        state = request.scope.setdefault("state", {})
        headers = headers_of(request)
        media = negotiate(headers.get("accept"))
        if media is None:
            return self._refusal(
                RequestRefused(
                    406, ErrorCode.BAD_REQUEST, "Accept application/graphql-response+json or application/json"
                ),
                JSON,
                state,
            )
        try:
            if csrf.refused(headers, self.settings.csrf_prevention):
                raise RequestRefused(400, ErrorCode.BAD_REQUEST, csrf.MESSAGE)
            params = await self._params(request)
            if isinstance(params, Batch):
                return await self._run_batch(request, params.items, media)
            return await self._run(request, params, media)
        except RequestRefused as refused:
            return self._refusal(refused, media, state)
        except Exception as exc:  # a bug of ours: reported, answered without internals
            report_exception(exc, operation=state.get("operation_name"))
            state["error_codes"] = [ErrorCode.INTERNAL_SERVER_ERROR.value]
            ERRORS.labels(ErrorCode.INTERNAL_SERVER_ERROR.value).inc()
            body = {
                "errors": [
                    {
                        "message": "Internal server error",
                        "extensions": error_extensions(ErrorCode.INTERNAL_SERVER_ERROR),
                    }
                ]
            }
            return Response(orjson.dumps(body), status_code=500, media_type=media)

    async def _run_batch(self, request: Request, batch: list[Any], media: str) -> Response:
        """Each operation in order, each through the same limits, cost and rate limit as alone."""
        state = request.scope["state"]
        parts: list[bytes] = []
        for item in batch:
            try:
                if not isinstance(item, dict):
                    raise RequestRefused(
                        400, ErrorCode.BAD_REQUEST, "Each operation of a batch is a JSON object"
                    )
                response = await self._run(request, self._checked(item), media)
            except RequestRefused as refused:
                response = self._refusal(refused, media, state)
            parts.append(bytes(response.body))
        return Response(b"[" + b",".join(parts) + b"]", media_type=media)

    # -- reading the request -------------------------------------------------------------

    async def _params(self, request: Request) -> dict[str, Any] | Batch:
        if request.method == "GET":
            query = request.query_params
            params: dict[str, Any] = {
                "query": query.get("query"),
                "operationName": query.get("operationName"),
            }
            for key in ("variables", "extensions"):
                raw = query.get(key)
                if raw:
                    try:
                        params[key] = orjson.loads(raw)
                    except orjson.JSONDecodeError:
                        raise RequestRefused(
                            400, ErrorCode.BAD_REQUEST, f"`{key}` is not valid JSON"
                        ) from None
            return self._checked(params)
        if request.method != "POST":
            raise RequestRefused(405, ErrorCode.METHOD_NOT_ALLOWED, "Use GET or POST", {"Allow": "GET, POST"})
        content_type = headers_of(request).get("content-type", "").split(";")[0].strip().lower()
        if content_type != JSON:
            raise RequestRefused(
                415, ErrorCode.UNSUPPORTED_MEDIA_TYPE, "POST a JSON body (Content-Type: application/json)"
            )
        body = await self._read_body(request)
        try:
            parsed = orjson.loads(body)
        except orjson.JSONDecodeError:
            raise RequestRefused(400, ErrorCode.BAD_REQUEST, "The body is not valid JSON") from None
        if isinstance(parsed, list):
            limit = self.settings.batch_max_operations
            if not limit:
                raise RequestRefused(
                    400,
                    ErrorCode.BATCHING_NOT_ENABLED,
                    "Batched requests are not enabled: send one operation",
                )
            if not parsed or len(parsed) > limit:
                raise RequestRefused(400, ErrorCode.BATCH_TOO_LARGE, f"A batch holds 1 to {limit} operations")
            return Batch(parsed)
        if not isinstance(parsed, dict):
            raise RequestRefused(400, ErrorCode.BAD_REQUEST, "The body must be a JSON object")
        return self._checked(parsed)

    async def _read_body(self, request: Request) -> bytes:
        limit = self.settings.max_body_bytes
        declared = headers_of(request).get("content-length")
        if declared is not None and declared.isdigit() and int(declared) > limit:
            raise RequestRefused(
                413, ErrorCode.PAYLOAD_TOO_LARGE, f"Request bodies hold at most {limit} bytes"
            )
        chunks, size = [], 0
        try:
            async for chunk in request.stream():
                size += len(chunk)
                if size > limit:
                    raise RequestRefused(
                        413, ErrorCode.PAYLOAD_TOO_LARGE, f"Request bodies hold at most {limit} bytes"
                    )
                chunks.append(chunk)
        except ClientDisconnect:
            raise RequestRefused(400, ErrorCode.BAD_REQUEST, "The client went away mid-body") from None
        return b"".join(chunks)

    @staticmethod
    def _checked(params: dict[str, Any]) -> dict[str, Any]:
        query = params.get("query")
        extensions = params.get("extensions")
        # A persisted query (Apollo's APQ protocol) may come without its text: only its hash.
        by_hash = query is None and isinstance(extensions, dict) and "persistedQuery" in extensions
        if not by_hash and (not isinstance(query, str) or not query):
            raise RequestRefused(400, ErrorCode.BAD_REQUEST, "`query` must be a non-empty string")
        if params.get("variables") is not None and not isinstance(params["variables"], dict):
            raise RequestRefused(400, ErrorCode.BAD_REQUEST, "`variables` must be an object")
        if params.get("operationName") is not None and not isinstance(params["operationName"], str):
            raise RequestRefused(400, ErrorCode.BAD_REQUEST, "`operationName` must be a string")
        if params.get("operationName") == "":
            params["operationName"] = None  # what some clients send for "the only operation"
        if params.get("extensions") is not None and not isinstance(params["extensions"], dict):
            raise RequestRefused(400, ErrorCode.BAD_REQUEST, "`extensions` must be an object")
        return params

    # -- running it ----------------------------------------------------------------------

    async def _run(self, request: Request, params: dict[str, Any], media: str) -> Response:
        started = time.perf_counter()
        state = request.scope["state"]
        try:
            prepared = await self.services.persisted.document(
                params.get("query"), params.get("extensions"), self.documents.prepare
            )
            name, kind = prepared.operation(params.get("operationName"))
            # The static cost, with this request's variables: refused above MAX_COST, and kept
            # on the request for the access log and the rate limiter (which charges by it).
            state["cost"] = prepared.cost(name, params.get("variables"))
            cost.check(state["cost"], self.settings)
        except DocumentRefused as refused:
            return self._errors_response(
                refused.errors, media, 400 if media == GRAPHQL_RESPONSE else 200, state
            )
        except BffError as error:
            status = _STATUS_BY_CODE.get(error.code, 400 if media == GRAPHQL_RESPONSE else 200)
            return self._errors_response([error.to_graphql()], media, status, state)
        state["operation_name"], state["operation_kind"] = name, kind.value
        if kind is OperationType.SUBSCRIPTION:
            raise RequestRefused(400, ErrorCode.BAD_REQUEST, "Subscriptions run over WebSocket on this path")
        if kind is OperationType.MUTATION and request.method == "GET":
            raise RequestRefused(405, ErrorCode.METHOD_NOT_ALLOWED, "Mutations need POST", {"Allow": "POST"})
        try:
            viewer = await self.services.tokens.authenticate(headers_of(request).get("authorization"))
        except BffError as error:
            raise RequestRefused(
                401,
                error.code,
                error.message,
                {"WWW-Authenticate": 'Bearer error="invalid_token"'},
                error.extensions,  # `reason`: token_expired (refresh it) or invalid_token
            ) from None
        owner = self.edge.owner(request.scope, viewer)
        decision = await self.edge.charge(owner, state.get("cost", 1))
        if not decision.allowed:
            wait = decision.retry_after_seconds
            raise RequestRefused(
                429,
                ErrorCode.RATE_LIMITED,
                f"Too many requests: retry in {wait} s",
                {"Retry-After": str(wait)},
                {"retryAfter": wait},
            )
        answer = partial(self._answer, request, params, media, prepared, name, kind, viewer, started)
        key = headers_of(request).get("idempotency-key")
        if kind is OperationType.MUTATION and key is not None:
            fingerprint = idempotency.fingerprint(_source(prepared), name, params.get("variables"))
            return await self._idempotent(key, owner, fingerprint, state, answer)
        return await answer()

    async def _answer(
        self,
        request: Request,
        params: dict[str, Any],
        media: str,
        prepared: PreparedDocument,
        name: str | None,
        kind: OperationType,
        viewer: Viewer | None,
        started: float,
    ) -> Response:
        state = request.scope["state"]
        context: Context = self.services.context(viewer, state.get("request_id", ""))
        counter = StatementCounter()
        token = current_counter.set(counter)
        deadline_ms = self.settings.request_timeout_ms
        try:
            async with asyncio.timeout(deadline_ms / 1000):
                result = await self._execute(prepared, name, params.get("variables"), context)
        except TimeoutError:
            # The whole execution was cancelled: no data to give. Without `data` the spec wants a
            # 4xx/5xx for application/graphql-response+json; a gateway timeout says what happened.
            late = BffError(ErrorCode.TIMEOUT, f"The operation did not finish within {deadline_ms} ms")
            return self._result_response(
                ExecutionResult(None, [late.to_graphql()]),
                media,
                504 if media == GRAPHQL_RESPONSE else 200,
                state,
                with_data=False,
            )
        finally:
            context.drop_loaders()  # no reference cycle left for the collector to find
            current_counter.reset(token)
            state["sql_statements"] = counter.count
            request_seconds(operation_label(name), kind.value).observe(time.perf_counter() - started)
        # Errors without a path come from before execution (variable coercion): a request error,
        # answered without `data`. Field errors (with a path) keep `data`, even when it is null.
        request_error = (
            result.data is None and bool(result.errors) and all(e.path is None for e in result.errors or ())
        )
        status = 400 if request_error and media == GRAPHQL_RESPONSE else 200
        response = self._result_response(result, media, status, state, with_data=not request_error)
        if kind is OperationType.QUERY and status == 200 and not result.errors:
            policy = self.edge.cache.policy(prepared.document, name)
            return http_cache.conditional(
                headers_of(request), response, policy.for_viewer(viewer is not None)
            )
        return response

    async def _idempotent(
        self,
        key: str,
        owner: str,
        fingerprint: str,
        state: dict[str, Any],
        answer: Callable[[], Awaitable[Response]],
    ) -> Response:
        """Run a mutation once per Idempotency-Key (bff/idempotency.py)."""
        if not idempotency.valid_key(key):
            raise RequestRefused(
                400, ErrorCode.BAD_REQUEST, "Idempotency-Key must be 1 to 255 printable ASCII characters"
            )
        store, scoped = self.edge.idempotency, f"{owner}:{key}"
        claim = await store.begin(scoped, fingerprint, self.settings.request_timeout_ms / 1000 + 5)
        if claim.outcome == "replay" and claim.stored is not None:
            stored = claim.stored
            return Response(
                stored.body,
                status_code=stored.status,
                media_type=stored.media_type,
                headers={"Idempotent-Replayed": "true"},
            )
        if claim.outcome == "reused":
            raise RequestRefused(
                422,
                ErrorCode.IDEMPOTENCY_KEY_REUSED,
                "This Idempotency-Key was used with a different request: use a new key for a new request",
            )
        if claim.outcome == "in_use":
            raise RequestRefused(
                409,
                ErrorCode.IDEMPOTENCY_KEY_IN_USE,
                "A request with this Idempotency-Key is still running: retry shortly to get its answer",
                {"Retry-After": "1"},
            )
        if claim.outcome != "run":  # the store is unreachable: run unprotected, as without a key
            return await answer()
        try:
            response = await answer()
        except BaseException:
            await asyncio.shield(store.release(scoped, claim))
            raise
        codes = set(state.get("error_codes") or ())
        if response.status_code >= 500 or codes & _NOT_FINAL:
            await store.release(scoped, claim)  # nothing final to replay: a retry runs again
        else:
            body = bytes(response.body)
            stored = idempotency.Stored(response.status_code, response.media_type or JSON, body)
            await store.finish(scoped, claim, fingerprint, stored)
        return response

    async def _execute(
        self, prepared: PreparedDocument, name: str | None, variables: dict[str, Any] | None, context: Context
    ) -> ExecutionResult:
        if self.plans is not None:
            plan = self.plans.plan(prepared.document, name)
            if plan is not None:
                return await execute_plan(plan, context, variables)
        return await execute_with_graphql_core(self.schema, prepared.document, name, context, variables)

    # -- answering -----------------------------------------------------------------------

    def _result_response(
        self, result: ExecutionResult, media: str, status: int, state: dict[str, Any], *, with_data: bool
    ) -> Response:
        body: dict[str, Any] = {}
        if result.errors:
            errors = [format_error(e, debug=self.settings.is_development) for e in result.errors]
            codes = [e["extensions"]["code"] for e in errors]
            for code in codes:
                ERRORS.labels(code).inc()
            state["error_codes"] = codes
            body["errors"] = errors
        if with_data:
            body["data"] = result.data
        return Response(orjson.dumps(body), status_code=status, media_type=media)

    def _errors_response(
        self, errors: list[GraphQLError], media: str, status: int, state: dict[str, Any]
    ) -> Response:
        formatted = [format_error(e) for e in errors]
        codes = [e["extensions"]["code"] for e in formatted]
        for code in codes:
            ERRORS.labels(code).inc()
        state["error_codes"] = codes
        return Response(orjson.dumps({"errors": formatted}), status_code=status, media_type=media)

    @staticmethod
    def _refusal(refused: RequestRefused, media: str, state: dict[str, Any]) -> Response:
        ERRORS.labels(refused.code.value).inc()
        state["error_codes"] = [refused.code.value]
        body = {"errors": [{"message": refused.message, "extensions": refused.extensions}]}
        return Response(
            orjson.dumps(body), status_code=refused.status, media_type=media, headers=refused.headers
        )


def _source(prepared: PreparedDocument) -> str:
    """The document's text, however it arrived (in full, or by a persisted-query hash)."""
    loc = prepared.document.loc
    return loc.source.body if loc is not None else ""
