"""What a resolver's caller selected below it, so list resolvers fetch by plan.

`selected(info, "edges", "node")` answers with the field names selected at that path,
fragments and inline fragments included. A field is fetched only if some client asked for it.
"""

from __future__ import annotations

from collections.abc import Iterable

from graphql import FieldNode, FragmentSpreadNode, InlineFragmentNode, SelectionSetNode
from strawberry.types import Info


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


def selected(info: Info, *path: str) -> set[str]:
    """Field names (not aliases) selected at `path` below the current field."""
    level: list[FieldNode] = list(info._raw_info.field_nodes)
    for name in path:
        level = [
            f for node in level for f in _fields(node.selection_set, info, set()) if f.name.value == name
        ]
    return {f.name.value for node in level for f in _fields(node.selection_set, info, set())}
