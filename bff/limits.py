"""Static limits checked on a parsed document before it is validated or executed.

Each refusal has its own code, so a client (or an operator reading logs) knows which limit
it hit. Depth follows fragment spreads; a fragment cycle stops the walk here and is then
reported by graphql-core's NoFragmentCycles rule.
"""

from __future__ import annotations

from graphql import (
    DocumentNode,
    FieldNode,
    FragmentDefinitionNode,
    FragmentSpreadNode,
    InlineFragmentNode,
    OperationDefinitionNode,
    SelectionSetNode,
)

from bff.config import Settings
from bff.errors import BffError, ErrorCode


def _depth(
    selection_set: SelectionSetNode | None,
    fragments: dict[str, FragmentDefinitionNode],
    visiting: frozenset[str],
    limit: int,
) -> int:
    if selection_set is None:
        return 0
    deepest = 0
    for node in selection_set.selections:
        if isinstance(node, FieldNode):
            depth = 1 + _depth(node.selection_set, fragments, visiting, limit) if node.selection_set else 1
        elif isinstance(node, InlineFragmentNode):
            depth = _depth(node.selection_set, fragments, visiting, limit)
        elif isinstance(node, FragmentSpreadNode):
            name = node.name.value
            fragment = fragments.get(name)
            if fragment is None or name in visiting:
                continue
            depth = _depth(fragment.selection_set, fragments, visiting | {name}, limit)
        else:  # pragma: no cover - graphql-core has no other selection kinds
            continue
        deepest = max(deepest, depth)
        if deepest > limit:  # stop early: a hostile document may be huge
            return deepest
    return deepest


def _aliases(selection_set: SelectionSetNode | None) -> int:
    if selection_set is None:
        return 0
    total = 0
    for node in selection_set.selections:
        if isinstance(node, FieldNode):
            total += (node.alias is not None) + _aliases(node.selection_set)
        elif isinstance(node, InlineFragmentNode):
            total += _aliases(node.selection_set)
    return total


def check(document: DocumentNode, settings: Settings) -> None:
    """Raise a BffError for the first limit the document exceeds."""
    fragments = {d.name.value: d for d in document.definitions if isinstance(d, FragmentDefinitionNode)}
    aliases = sum(
        _aliases(d.selection_set)
        for d in document.definitions
        if isinstance(d, OperationDefinitionNode | FragmentDefinitionNode)
    )
    if aliases > settings.max_aliases:
        raise BffError(
            ErrorCode.ALIAS_LIMIT_EXCEEDED,
            f"The document uses {aliases} aliases; at most {settings.max_aliases} are allowed",
            limit=settings.max_aliases,
        )
    for definition in document.definitions:
        if isinstance(definition, OperationDefinitionNode):
            depth = _depth(definition.selection_set, fragments, frozenset(), settings.max_depth)
            if depth > settings.max_depth:
                raise BffError(
                    ErrorCode.DEPTH_LIMIT_EXCEEDED,
                    f"Selections nest deeper than {settings.max_depth} levels",
                    limit=settings.max_depth,
                )
