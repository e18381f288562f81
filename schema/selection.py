"""What a resolver's caller selected below it, so list resolvers fetch by plan.

`selected(info, "edges", "node")` answers with the field names selected at that path,
fragments and inline fragments included. A field is fetched only if some client asked for it.

The answer depends only on the field's nodes (and the fragments of their document), which a
document in use keeps from one request to the next: answers are kept per nodes and path, so a
screen's list resolvers do not walk the same selection on every request, and under a compiled
plan (bff/codegen.py's `LazyInfo`) graphql-core's resolve info is not even built for it.
"""

from __future__ import annotations

from collections import OrderedDict
from collections.abc import Iterable, Sequence

from graphql import FieldNode, FragmentSpreadNode, InlineFragmentNode, SelectionSetNode
from strawberry.types import Info

from bff.codegen import LazyInfo

_KEPT = 512  # (nodes, path) answers kept: a few per document in use
# Keyed by the nodes' identities; each entry holds its nodes, so no identity is reused meanwhile.
_answers: OrderedDict[tuple[tuple[int, ...], tuple[str, ...]], tuple[Sequence[FieldNode], frozenset[str]]] = (
    OrderedDict()
)


def _fields(selection_set: SelectionSetNode | None, info: Info, seen: set[str]) -> Iterable[FieldNode]:
    if selection_set is None:
        return
    for node in selection_set.selections:
        if isinstance(node, FieldNode):
            yield node
        elif isinstance(node, InlineFragmentNode):
            yield from _fields(node.selection_set, info, seen)
        elif isinstance(node, FragmentSpreadNode):
            name = node.name.value
            fragment = info._raw_info.fragments.get(name)
            if fragment is not None and name not in seen:  # validation already refused cycles
                yield from _fields(fragment.selection_set, info, seen | {name})


def selected(info: Info, *path: str) -> frozenset[str]:
    """Field names (not aliases) selected at `path` below the current field."""
    nodes = info.field_nodes if isinstance(info, LazyInfo) else info._raw_info.field_nodes
    key = (tuple(map(id, nodes)), path)
    kept = _answers.get(key)
    if kept is not None:
        _answers.move_to_end(key)
        return kept[1]
    answer = _walk(info, nodes, path)
    _answers[key] = (nodes, answer)
    if len(_answers) > _KEPT:
        _answers.popitem(last=False)
    return answer


def _walk(info: Info, nodes: Sequence[FieldNode], path: tuple[str, ...]) -> frozenset[str]:
    level: list[FieldNode] = list(nodes)
    for name in path:
        level = [
            f for node in level for f in _fields(node.selection_set, info, set()) if f.name.value == name
        ]
    return frozenset(f.name.value for node in level for f in _fields(node.selection_set, info, set()))
