"""Parsing and validating GraphQL documents, once per distinct document.

Phones send the same few operations all day: the parsed and validated document is kept in
an LRU keyed by the query text, so a repeat request skips lexing, parsing and validation.
Only documents that passed validation are cached; refusals are cheap to recompute and must
not fill the cache. The cached entry also holds each operation's cost plan (bff/cost.py): the
cost depends on the variables, so a request evaluates the cached plan with its own.

With introspection off (production, unless INTROSPECTION says otherwise) a validation rule
refuses `__schema` and `__type` (`__typename` stays: clients add it everywhere), and
validation messages lose their "Did you mean …?" suggestions, which would spell the schema
out one guess at a time.

graphql-core's OverlappingFieldsCanBeMerged rule compares fields pairwise within a complexity
budget (500,000 by default): 300 repetitions of `leaderboard { user { id } }` fit in the token
limit and cost 2 s of event-loop time to validate. VALIDATION_COMPLEXITY_BUDGET lowers the
budget tenfold (a refusal in a fraction of a second, "Validation aborted."), still far above
what a real screen's document spends (the Home operation validates in 4 ms either way).
"""

from __future__ import annotations

import re
from collections import OrderedDict
from dataclasses import dataclass
from typing import Any

import graphql.validation.rules.overlapping_fields_can_be_merged as overlapping_fields
from graphql import (
    DocumentNode,
    FieldNode,
    GraphQLError,
    GraphQLSchema,
    GraphQLSyntaxError,
    OperationDefinitionNode,
    OperationType,
    ValidationRule,
    parse,
    specified_rules,
    validate,
)

from bff import cost, limits
from bff.config import Settings
from bff.errors import BffError, ErrorCode


@dataclass(frozen=True, slots=True)
class PreparedDocument:
    document: DocumentNode
    # operation name (None for the anonymous one) -> kind
    operations: dict[str | None, OperationType]
    costs: dict[str | None, cost.CostPlan]
    max_cost: int

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

    def cost(self, name: str | None, variables: dict[str, Any] | None) -> int:
        """The static cost of operation `name` with these variables (capped just above MAX_COST)."""
        return self.costs[name].evaluate(variables, self.max_cost + 1)


class DocumentRefused(Exception):
    """The document cannot run: parse, limit or validation errors (a GraphQL request error)."""

    def __init__(self, errors: list[GraphQLError]) -> None:
        super().__init__(errors[0].message if errors else "refused")
        self.errors = errors


VALIDATION_COMPLEXITY_BUDGET = 50_000
# graphql-core reads it at each validation: every validation in this process (WebSocket too).
overlapping_fields.MAX_COMPLEXITY_BUDGET = VALIDATION_COMPLEXITY_BUDGET

_SUGGESTION = re.compile(r"\s*Did you mean .*\?\s*$", re.DOTALL)


class NoIntrospection(ValidationRule):
    """Refuses the introspection entry points `__schema` and `__type` with INTROSPECTION_DISABLED."""

    def enter_field(self, node: FieldNode, *_: object) -> None:
        if node.name.value in ("__schema", "__type"):
            self.report_error(
                GraphQLError(
                    "Introspection is disabled on this server",
                    node,
                    extensions={"code": ErrorCode.INTROSPECTION_DISABLED.value},
                )
            )


def introspection_enabled(settings: Settings) -> bool:
    """INTROSPECTION when set, else on everywhere but production."""
    if settings.introspection is not None:
        return settings.introspection
    return settings.bff_env != "production"


class DocumentCache:
    def __init__(self, schema: GraphQLSchema, settings: Settings) -> None:
        self._schema = schema
        self._settings = settings
        self._introspection = introspection_enabled(settings)
        self._rules = list(specified_rules) if self._introspection else [*specified_rules, NoIntrospection]
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
        errors = validate(self._schema, document, self._rules, max_errors=20)
        if errors:
            for invalid in errors:
                if not (invalid.extensions or {}).get("code"):
                    invalid.extensions = {"code": ErrorCode.GRAPHQL_VALIDATION_FAILED.value}
                if not self._introspection:
                    invalid.message = _SUGGESTION.sub("", invalid.message)
            raise DocumentRefused(list(errors))
        try:
            limits.check_root_fields(document, settings)
        except BffError as error:
            raise DocumentRefused([error.to_graphql()]) from None
        operations = {
            (d.name.value if d.name else None): d.operation
            for d in document.definitions
            if isinstance(d, OperationDefinitionNode)
        }
        return PreparedDocument(
            document, operations, cost.plans(self._schema, document, settings), settings.max_cost
        )
