"""HTTP caching of query responses: `Cache-Control` from per-field hints, `ETag`, 304, `Vary`.

The policy of a response is computed from the operation's selection, not from the data:
walk the fields the operation selects (through fragments, as execution would), look each
`Type.field` up in the hint table (schema/cache_policy.py) and keep the smallest max age and
the most private scope. A signed-in request is always private. Max age 0 is `no-store`, as
Apollo Server sends for uncacheable responses. Mutations and responses carrying errors are
`no-store` whatever the fields say.

The ETag is a strong hash of the uncompressed JSON body. The compression middleware marks
the tags of the representations it encodes (`"…-br"`, `"…-gzip"`); `If-None-Match` is
compared without those marks, so a client holding either representation gets its 304.
"""

from __future__ import annotations

from collections import OrderedDict
from collections.abc import Mapping
from dataclasses import dataclass
from typing import Literal

import xxhash
from graphql import (
    DocumentNode,
    FieldNode,
    FragmentDefinitionNode,
    FragmentSpreadNode,
    GraphQLObjectType,
    GraphQLSchema,
    InlineFragmentNode,
    OperationDefinitionNode,
    SelectionSetNode,
    get_named_type,
)
from starlette.responses import Response

Scope = Literal["PUBLIC", "PRIVATE"]
PUBLIC: Scope = "PUBLIC"
PRIVATE: Scope = "PRIVATE"

# Every GraphQL response varies on these: the media type, the viewer, the encoding.
VARY = "Accept, Authorization, Accept-Encoding"
NO_STORE = "no-store"
_ENCODING_MARKS = ("-br", "-gzip")


@dataclass(frozen=True, slots=True)
class Hint:
    """One field's cache hint: its scope and max age in seconds (None: no time of its own)."""

    scope: Scope
    max_age: int | None


@dataclass(frozen=True, slots=True)
class Policy:
    scope: Scope
    max_age: int

    def header(self) -> str:
        if self.max_age <= 0:
            return NO_STORE
        return f"{self.scope.lower()}, max-age={self.max_age}"

    def for_viewer(self, authenticated: bool) -> Policy:
        return Policy(PRIVATE, self.max_age) if authenticated else self


class CachePolicies:
    """The policy of each (document, operation), computed once and remembered (bounded)."""

    def __init__(self, schema: GraphQLSchema, hints: Mapping[str, Hint], cache_size: int = 512) -> None:
        self._schema = schema
        self._hints = dict(hints)
        # Keyed by the document object's id, which stays unique while the entry holds the document.
        self._cache: OrderedDict[tuple[int, str | None], tuple[DocumentNode, Policy]] = OrderedDict()
        self._cache_size = cache_size

    def policy(self, document: DocumentNode, operation_name: str | None) -> Policy:
        key = (id(document), operation_name)
        cached = self._cache.get(key)
        if cached is not None and cached[0] is document:
            self._cache.move_to_end(key)
            return cached[1]
        policy = self.compute(document, operation_name)
        self._cache[key] = (document, policy)
        if len(self._cache) > self._cache_size:
            self._cache.popitem(last=False)
        return policy

    def compute(self, document: DocumentNode, operation_name: str | None) -> Policy:
        operation = _operation(document, operation_name)
        root = self._schema.query_type
        if operation is None or root is None or operation.operation.value != "query":
            return Policy(PRIVATE, 0)
        fragments = {d.name.value: d for d in document.definitions if isinstance(d, FragmentDefinitionNode)}
        walk = _Walk(self._schema, self._hints, fragments)
        walk.selection_set(operation.selection_set, root, root=True)
        return Policy(PRIVATE if walk.private else PUBLIC, walk.max_age if walk.max_age is not None else 0)


class _Walk:
    def __init__(
        self, schema: GraphQLSchema, hints: dict[str, Hint], fragments: dict[str, FragmentDefinitionNode]
    ) -> None:
        self._schema = schema
        self._hints = hints
        self._fragments = fragments
        self._seen: set[tuple[str, str, bool]] = set()  # (fragment, type, root): each walked once
        self.max_age: int | None = None
        self.private = False

    def _type(self, name: str, fallback: GraphQLObjectType) -> GraphQLObjectType:
        found = self._schema.get_type(name)
        # An interface or union condition: fields are looked up on it by name all the same.
        return found if found is not None else fallback  # type: ignore[return-value]

    def selection_set(
        self, selection_set: SelectionSetNode | None, parent: GraphQLObjectType, *, root: bool
    ) -> None:
        if selection_set is None:
            return
        for node in selection_set.selections:
            if isinstance(node, FieldNode):
                self.field(node, parent, root=root)
            elif isinstance(node, InlineFragmentNode):
                condition = node.type_condition
                target = self._type(condition.name.value, parent) if condition else parent
                self.selection_set(node.selection_set, target, root=root)
            elif isinstance(node, FragmentSpreadNode):
                fragment = self._fragments.get(node.name.value)
                if fragment is None:
                    continue
                target = self._type(fragment.type_condition.name.value, parent)
                mark = (fragment.name.value, target.name, root)
                if mark in self._seen:
                    continue
                self._seen.add(mark)
                self.selection_set(fragment.selection_set, target, root=root)

    def field(self, node: FieldNode, parent: GraphQLObjectType, *, root: bool) -> None:
        name = node.name.value
        if name == "__typename":
            return
        hint = self._hints.get(f"{parent.name}.{name}")
        if hint is None and root:
            hint = Hint(PUBLIC, 0)  # a root field nobody gave a policy: not cacheable
        if hint is not None:
            if hint.scope == PRIVATE:
                self.private = True
            if hint.max_age is not None:
                self.max_age = hint.max_age if self.max_age is None else min(self.max_age, hint.max_age)
        fields = getattr(parent, "fields", None) or {}
        definition = fields.get(name)
        if definition is None or node.selection_set is None:
            return
        child = get_named_type(definition.type)
        self.selection_set(node.selection_set, child, root=False)


def _operation(document: DocumentNode, name: str | None) -> OperationDefinitionNode | None:
    for definition in document.definitions:
        if isinstance(definition, OperationDefinitionNode) and (
            name is None or (definition.name is not None and definition.name.value == name)
        ):
            return definition
    return None


def etag(body: bytes) -> str:
    """A strong validator: the hash of the exact bytes (uncompressed). XXH3-128, not a
    cryptographic hash: the body is ours, so nobody picks bytes to collide with another's
    validator, and it is ~55x cheaper than blake2b on a Home body (decision 45)."""
    return '"' + xxhash.xxh3_128_hexdigest(body) + '"'


def _opaque(tag: str) -> str:
    tag = tag.strip()
    if tag.startswith("W/"):
        tag = tag[2:]  # If-None-Match uses the weak comparison (RFC 9110 13.1.2)
    tag = tag.strip('"')
    for mark in _ENCODING_MARKS:
        if tag.endswith(mark):
            return tag[: -len(mark)]
    return tag


def matching_tag(if_none_match: str | None, current: str) -> str | None:
    """The client's tag that matches `current` (to echo on the 304), or None."""
    if not if_none_match:
        return None
    wanted = _opaque(current)
    for candidate in if_none_match.split(","):
        candidate = candidate.strip()
        if candidate == "*" or (candidate and _opaque(candidate) == wanted):
            return current if candidate == "*" else candidate
    return None


def conditional(headers: Mapping[str, str], response: Response, policy: Policy) -> Response:
    """A query's 200 answer with its Cache-Control and ETag, or 304 when the client has it."""
    tag = etag(bytes(response.body))
    cache_control = policy.header()
    matched = matching_tag(headers.get("if-none-match"), tag)
    if matched is not None:
        return Response(
            status_code=304, headers={"ETag": matched, "Cache-Control": cache_control, "Vary": VARY}
        )
    response.headers["ETag"] = tag
    response.headers["Cache-Control"] = cache_control
    response.headers["Vary"] = VARY
    return response


def default_headers(response: Response) -> Response:
    """Every other GraphQL answer (mutations, errors, refusals): never stored."""
    response.headers.setdefault("Cache-Control", NO_STORE)
    response.headers.setdefault("Vary", VARY)
    return response
