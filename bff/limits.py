"""Static limits checked on a parsed document before it is validated or executed.

Each refusal has its own code, so a client (or an operator reading logs) knows which limit
it hit. Both walks follow fragment spreads, as execution would: aliases are counted in the
operation as it expands (a fragment spread under ten aliased fields counts its aliases ten
times), depth goes through fragments. Each fragment is measured once and remembered, so a
document whose fragments spread each other twice over (2^n paths) costs n steps, not 2^n.
A fragment cycle stops the walk here and is then reported by graphql-core's NoFragmentCycles
rule.

Root fields are counted per operation through its fragments (each fragment once per selection
set, as execution collects them), after validation; directives are counted as written in the whole document
(the cost of a directive is its parsing and validation, once per written directive).
"""

from __future__ import annotations

from graphql import (
    DirectiveNode,
    DocumentNode,
    FieldNode,
    FragmentDefinitionNode,
    FragmentSpreadNode,
    InlineFragmentNode,
    OperationDefinitionNode,
    SelectionSetNode,
    Visitor,
    visit,
)

from bff.config import Settings
from bff.errors import BffError, ErrorCode


class _Measure:
    """Depth and alias count of selection sets, each fragment measured once per document.

    Results are capped just above the limit: past it the exact number does not matter, and
    the cap keeps the numbers small for documents that multiply exponentially.
    """

    def __init__(
        self, fragments: dict[str, FragmentDefinitionNode], max_depth: int, max_aliases: int
    ) -> None:
        self._fragments = fragments
        self._depth_cap = max_depth + 1
        self._alias_cap = max_aliases + 1
        self._depths: dict[str, int] = {}
        self._aliases: dict[str, int] = {}
        self._open_depth: set[str] = set()
        self._open_aliases: set[str] = set()

    def depth(self, selection_set: SelectionSetNode | None) -> int:
        if selection_set is None:
            return 0
        deepest = 0
        for node in selection_set.selections:
            if isinstance(node, FieldNode):
                depth = 1 + self.depth(node.selection_set)
            elif isinstance(node, InlineFragmentNode):
                depth = self.depth(node.selection_set)
            elif isinstance(node, FragmentSpreadNode):
                depth = self._fragment_depth(node.name.value)
            else:  # pragma: no cover - graphql-core has no other selection kinds
                continue
            deepest = max(deepest, depth)
            if deepest >= self._depth_cap:  # stop early: a hostile document may be huge
                return self._depth_cap
        return deepest

    def _fragment_depth(self, name: str) -> int:
        if name in self._depths:
            return self._depths[name]
        fragment = self._fragments.get(name)
        if fragment is None or name in self._open_depth:  # unknown or a cycle: validation refuses it
            return 0
        self._open_depth.add(name)
        try:
            depth = self.depth(fragment.selection_set)
        finally:
            self._open_depth.discard(name)
        self._depths[name] = depth
        return depth

    def aliases(self, selection_set: SelectionSetNode | None) -> int:
        if selection_set is None:
            return 0
        total = 0
        for node in selection_set.selections:
            if isinstance(node, FieldNode):
                total += (node.alias is not None) + self.aliases(node.selection_set)
            elif isinstance(node, InlineFragmentNode):
                total += self.aliases(node.selection_set)
            elif isinstance(node, FragmentSpreadNode):
                total += self._fragment_aliases(node.name.value)
            if total >= self._alias_cap:
                return self._alias_cap
        return total

    def _fragment_aliases(self, name: str) -> int:
        if name in self._aliases:
            return self._aliases[name]
        fragment = self._fragments.get(name)
        if fragment is None or name in self._open_aliases:
            return 0
        self._open_aliases.add(name)
        try:
            count = self.aliases(fragment.selection_set)
        finally:
            self._open_aliases.discard(name)
        self._aliases[name] = count
        return count


def _root_fields(
    selection_set: SelectionSetNode, fragments: dict[str, FragmentDefinitionNode], visited: set[str]
) -> int:
    """Fields of a root selection set, fragments flattened (each once, as execution collects them)."""
    count = 0
    for node in selection_set.selections:
        if isinstance(node, FieldNode):
            count += 1
        elif isinstance(node, InlineFragmentNode):
            count += _root_fields(node.selection_set, fragments, visited)
        elif isinstance(node, FragmentSpreadNode) and node.name.value not in visited:
            visited.add(node.name.value)  # also stops a cycle
            fragment = fragments.get(node.name.value)
            if fragment is not None:
                count += _root_fields(fragment.selection_set, fragments, visited)
    return count


class _DirectiveCounter(Visitor):
    def __init__(self) -> None:
        super().__init__()
        self.count = 0

    def enter_directive(self, node: DirectiveNode, *_: object) -> None:
        self.count += 1


def check(document: DocumentNode, settings: Settings) -> None:
    """Raise a BffError for the first limit an operation of the document exceeds."""
    fragments = {d.name.value: d for d in document.definitions if isinstance(d, FragmentDefinitionNode)}
    measure = _Measure(fragments, settings.max_depth, settings.max_aliases)
    operations = [d for d in document.definitions if isinstance(d, OperationDefinitionNode)]
    for operation in operations:
        if measure.aliases(operation.selection_set) > settings.max_aliases:
            raise BffError(
                ErrorCode.ALIAS_LIMIT_EXCEEDED,
                f"An operation uses more than {settings.max_aliases} aliases (counted through its fragments)",
                limit=settings.max_aliases,
            )
    for operation in operations:
        if measure.depth(operation.selection_set) > settings.max_depth:
            raise BffError(
                ErrorCode.DEPTH_LIMIT_EXCEEDED,
                f"Selections nest deeper than {settings.max_depth} levels",
                limit=settings.max_depth,
            )
    counter = _DirectiveCounter()
    visit(document, counter)
    if counter.count > settings.max_directives:
        raise BffError(
            ErrorCode.DIRECTIVE_LIMIT_EXCEEDED,
            f"The document uses more than {settings.max_directives} directives",
            limit=settings.max_directives,
        )


def check_root_fields(document: DocumentNode, settings: Settings) -> None:
    """Refuse an operation with more than MAX_ROOT_FIELDS root fields.

    Checked after validation: an unknown root field is a validation error first, and a root
    field only costs something once it executes.
    """
    fragments = {d.name.value: d for d in document.definitions if isinstance(d, FragmentDefinitionNode)}
    for operation in document.definitions:
        if not isinstance(operation, OperationDefinitionNode):
            continue
        if _root_fields(operation.selection_set, fragments, set()) > settings.max_root_fields:
            raise BffError(
                ErrorCode.ROOT_FIELD_LIMIT_EXCEEDED,
                f"An operation selects more than {settings.max_root_fields} root fields",
                limit=settings.max_root_fields,
            )
