"""Parsing and validating GraphQL documents, once per distinct document.

Phones send the same few operations all day: the parsed and validated document is kept in
an LRU keyed by the query text, so a repeat request skips lexing, parsing and validation.
Only documents that passed validation are cached; refusals are cheap to recompute and must
not fill the cache.
"""

from __future__ import annotations

from collections import OrderedDict
from dataclasses import dataclass

from graphql import (
    DocumentNode,
    GraphQLError,
    GraphQLSchema,
    GraphQLSyntaxError,
    OperationDefinitionNode,
    OperationType,
    parse,
    validate,
)

from bff import limits
from bff.config import Settings
from bff.errors import BffError, ErrorCode


@dataclass(frozen=True, slots=True)
class PreparedDocument:
    document: DocumentNode
    # operation name (None for the anonymous one) -> kind
    operations: dict[str | None, OperationType]

    def operation(self, name: str | None) -> tuple[str | None, OperationType]:
        """Which operation runs: the named one, or the only one."""
        if name is None:
            if len(self.operations) != 1:
                raise BffError(
                    ErrorCode.OPERATION_NOT_FOUND, "The document holds several operations: give operationName"
                )
            return next(iter(self.operations.items()))
        if name not in self.operations:
            raise BffError(
                ErrorCode.OPERATION_NOT_FOUND, f"No operation named {name[:100]!r} in the document"
            )
        return name, self.operations[name]


class DocumentRefused(Exception):
    """The document cannot run: parse, limit or validation errors (a GraphQL request error)."""

    def __init__(self, errors: list[GraphQLError]) -> None:
        super().__init__(errors[0].message if errors else "refused")
        self.errors = errors


class DocumentCache:
    def __init__(self, schema: GraphQLSchema, settings: Settings) -> None:
        self._schema = schema
        self._settings = settings
        self._cache: OrderedDict[str, PreparedDocument] = OrderedDict()

    def prepare(self, query: str) -> PreparedDocument:
        cached = self._cache.get(query)
        if cached is not None:
            self._cache.move_to_end(query)
            return cached
        prepared = self._prepare(query)
        if self._settings.document_cache_size:
            self._cache[query] = prepared
            if len(self._cache) > self._settings.document_cache_size:
                self._cache.popitem(last=False)
        return prepared

    def _prepare(self, query: str) -> PreparedDocument:
        settings = self._settings
        if len(query) > settings.max_document_chars:
            raise DocumentRefused(
                [
                    BffError(
                        ErrorCode.DOCUMENT_TOO_LARGE,
                        f"The document has {len(query)} characters; at most {settings.max_document_chars} are allowed",
                        limit=settings.max_document_chars,
                    ).to_graphql()
                ]
            )
        try:
            document = parse(query, max_tokens=settings.max_tokens)
        except GraphQLSyntaxError as error:
            code = (
                ErrorCode.TOKEN_LIMIT_EXCEEDED
                if "tokens" in error.message
                else ErrorCode.GRAPHQL_PARSE_FAILED
            )
            error.extensions = {"code": code.value}
            raise DocumentRefused([error]) from None
        try:
            limits.check(document, settings)
        except BffError as error:
            raise DocumentRefused([error.to_graphql()]) from None
        errors = validate(self._schema, document, max_errors=20)
        if errors:
            for invalid in errors:
                invalid.extensions = {"code": ErrorCode.GRAPHQL_VALIDATION_FAILED.value}
            raise DocumentRefused(list(errors))
        operations = {
            (d.name.value if d.name else None): d.operation
            for d in document.definitions
            if isinstance(d, OperationDefinitionNode)
        }
        return PreparedDocument(document, operations)
