"""The static cost of an operation, known before it runs.

Each field costs 1 (`__typename` 0: it is answered without work). A list multiplies what is
selected under it by how many items it can hold:

- a field with a `first`/`last` argument that returns a list (`leaderboard(first: 10)`)
  multiplies its selections by the page size;
- one that returns a connection (`feed(first: 20)`) hands the page size to the connection's
  list fields (`edges`), so `pageInfo` counts once;
- `nodes(ids: [...])` multiplies by the number of ids; any other list by UNBOUNDED_LIST_SIZE;
- lists of introspection types (`__schema { types }`) count once: they are bounded by the schema.

The page size is the literal argument, the variable's value, the variable's default or the
argument's default, in that order, bounded by MAX_PAGE_SIZE (a larger one is refused by the
resolver with BAD_USER_INPUT anyway). Nested lists multiply.

A plan (the structure above, without numbers that depend on variables) is built once per
document, when the document is prepared and cached; a request evaluates it with its variables:
one walk over the plan, each fragment once per page size handed to it. Numbers are capped just
above the limit, so a document that multiplies exponentially stays cheap to evaluate.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any

from graphql import (
    DocumentNode,
    FieldNode,
    FragmentDefinitionNode,
    FragmentSpreadNode,
    GraphQLField,
    GraphQLInterfaceType,
    GraphQLList,
    GraphQLNamedType,
    GraphQLObjectType,
    GraphQLSchema,
    InlineFragmentNode,
    IntValueNode,
    ListValueNode,
    OperationDefinitionNode,
    SelectionSetNode,
    ValueNode,
    VariableNode,
    get_named_type,
    get_nullable_type,
    value_from_ast_untyped,
)
from graphql.type.introspection import SchemaMetaFieldDef, TypeMetaFieldDef

from bff.config import Settings
from bff.errors import BffError, ErrorCode

# Items assumed in a list without a size argument (`games`, `members`, `rooms`).
UNBOUNDED_LIST_SIZE = 10
PAGE_ARGUMENTS = ("first", "last")
LIST_ARGUMENT = "ids"


@dataclass(frozen=True, slots=True)
class Size:
    """How many items a list holds: a constant, or a variable's value with a fallback."""

    constant: int | None = None
    variable: str | None = None
    default: int = UNBOUNDED_LIST_SIZE
    count_items: bool = False  # the variable holds a list: its length is the size

    def evaluate(self, variables: dict[str, Any], maximum: int) -> int:
        if self.constant is not None:
            value = self.constant
        else:
            raw = variables.get(self.variable) if self.variable else None
            if self.count_items and isinstance(raw, list):
                value = len(raw)
            elif not self.count_items and isinstance(raw, int) and not isinstance(raw, bool):
                value = raw
            else:  # absent, null or of the wrong type (coercion refuses the latter later)
                value = self.default
        return min(max(value, 0), maximum)


ONE = Size(constant=1)
# Marks a list field that takes the page size of the connection it is in, if any.
INHERITED = Size(constant=None, variable=None)


@dataclass(slots=True)
class FieldPlan:
    cost: int
    size: Size  # multiplies the children's cost
    connection: Size | None  # handed to the list fields directly below (a connection's page size)
    children: SelectionPlan


@dataclass(slots=True)
class SelectionPlan:
    fields: list[FieldPlan] = field(default_factory=list)
    fragments: list[str] = field(default_factory=list)  # distinct names, as execution collects them


@dataclass(slots=True)
class CostPlan:
    """One operation's cost structure; `evaluate` gives its cost for a request's variables."""

    root: SelectionPlan
    fragments: dict[str, SelectionPlan]
    variable_defaults: dict[str, Any]
    max_page_size: int
    # Costs already evaluated, by the variables' values: a screen sends the same few all day.
    known: dict[tuple[Any, ...], int] = field(default_factory=dict)

    def evaluate(self, variables: dict[str, Any] | None, cap: int) -> int:
        values = dict(self.variable_defaults)
        if variables:
            values.update(variables)
        key = _known_key(values, cap)
        if key is not None:
            known = self.known.get(key)
            if known is not None:
                return known
        total = _Evaluation(self, values, cap).selection(self.root, None)
        if key is not None:
            if len(self.known) >= _KNOWN_MAX:
                self.known.clear()
            self.known[key] = total
        return total


_KNOWN_MAX = 256  # distinct variable sets remembered per operation
_KNOWN_TYPES = frozenset({int, str, bool, float, type(None)})


def _known_key(values: dict[str, Any], cap: int) -> tuple[Any, ...] | None:
    """A key for a few short scalar variables (typed: 1 and true differ), else None: not kept."""
    if len(values) > 8:
        return None
    items = []
    for name, value in values.items():
        kind = type(value)
        if kind not in _KNOWN_TYPES or (kind is str and len(value) > 64):
            return None
        items.append((name, kind.__name__, value))
    items.sort()
    return (cap, *items)


class _Evaluation:
    def __init__(self, plan: CostPlan, variables: dict[str, Any], cap: int) -> None:
        self._plan = plan
        self._variables = variables
        self._cap = cap
        self._fragments: dict[tuple[str, int | None], int] = {}
        self._open: set[tuple[str, int | None]] = set()

    def selection(self, plan: SelectionPlan, inherited: int | None) -> int:
        total = 0
        for node in plan.fields:
            total += self._field(node, inherited)
            if total >= self._cap:
                return self._cap
        for name in plan.fragments:
            total += self._fragment(name, inherited)
            if total >= self._cap:
                return self._cap
        return total

    def _field(self, node: FieldPlan, inherited: int | None) -> int:
        maximum = self._plan.max_page_size
        if node.size is INHERITED:
            size = inherited if inherited is not None else UNBOUNDED_LIST_SIZE
        else:
            size = node.size.evaluate(self._variables, maximum)
        handed = node.connection.evaluate(self._variables, maximum) if node.connection else None
        if not node.children.fields and not node.children.fragments:
            return node.cost
        return min(self._cap, node.cost + size * self.selection(node.children, handed))

    def _fragment(self, name: str, inherited: int | None) -> int:
        key = (name, inherited)
        if key in self._fragments:
            return self._fragments[key]
        plan = self._plan.fragments.get(name)
        if plan is None or key in self._open:  # unknown or a cycle: validation refused those
            return 0
        self._open.add(key)
        try:
            cost = self.selection(plan, inherited)
        finally:
            self._open.discard(key)
        self._fragments[key] = cost
        return cost


class _Planner:
    """Builds selection plans with the schema's types, each fragment once per document."""

    def __init__(self, schema: GraphQLSchema, document: DocumentNode) -> None:
        self._schema = schema
        self._fragment_nodes = {
            d.name.value: d for d in document.definitions if isinstance(d, FragmentDefinitionNode)
        }
        self.fragments: dict[str, SelectionPlan] = {}

    def fragment(self, name: str) -> None:
        if name in self.fragments:
            return
        node = self._fragment_nodes.get(name)
        if node is None:
            return
        self.fragments[name] = SelectionPlan()  # placeholder: a cycle stops here
        parent = self._schema.get_type(node.type_condition.name.value)
        self.fragments[name] = self.selection(node.selection_set, parent)

    def selection(
        self, selection_set: SelectionSetNode | None, parent: GraphQLNamedType | None
    ) -> SelectionPlan:
        plan = SelectionPlan()
        if selection_set is not None:
            self._collect(selection_set, parent, plan, set())
        return plan

    def _collect(
        self,
        selection_set: SelectionSetNode,
        parent: GraphQLNamedType | None,
        plan: SelectionPlan,
        visited: set[str],
    ) -> None:
        for node in selection_set.selections:
            if isinstance(node, FieldNode):
                plan.fields.append(self._field(node, parent))
            elif isinstance(node, InlineFragmentNode):
                condition = (
                    self._schema.get_type(node.type_condition.name.value) if node.type_condition else parent
                )
                self._collect(node.selection_set, condition, plan, visited)
            elif isinstance(node, FragmentSpreadNode):
                name = node.name.value
                if name not in visited:  # execution collects a fragment once per selection set
                    visited.add(name)
                    plan.fragments.append(name)
                    self.fragment(name)

    def _field(self, node: FieldNode, parent: GraphQLNamedType | None) -> FieldPlan:
        name = node.name.value
        if name == "__typename":
            return FieldPlan(0, ONE, None, SelectionPlan())
        definition = self._definition(name, parent)
        if definition is None:  # validation refused the document; nothing to count
            return FieldPlan(1, ONE, None, SelectionPlan())
        return_type = get_nullable_type(definition.type)
        named = get_named_type(definition.type)
        is_list = isinstance(return_type, GraphQLList)
        size, connection = ONE, None
        if named.name.startswith("__"):
            pass  # introspection: bounded by the schema
        elif page := self._page_size(node, definition):
            if is_list:
                size = page
            else:
                connection = page
        elif is_list:
            size = self._list_size(node, definition)
        return FieldPlan(1, size, connection, self.selection(node.selection_set, named))

    def _definition(self, name: str, parent: GraphQLNamedType | None) -> GraphQLField | None:
        if parent is self._schema.query_type:
            if name == "__schema":
                return SchemaMetaFieldDef
            if name == "__type":
                return TypeMetaFieldDef
        if isinstance(parent, GraphQLObjectType | GraphQLInterfaceType):
            found: GraphQLField | None = parent.fields.get(name)
            return found
        return None

    @staticmethod
    def _page_size(node: FieldNode, definition: GraphQLField) -> Size | None:
        """The page size of a field with `first`/`last`: the one given, else the first's default."""
        fallback: int | None = None
        for argument_name in PAGE_ARGUMENTS:
            argument = definition.args.get(argument_name)
            if argument is None:
                continue
            default = argument.default_value
            own_fallback = default if isinstance(default, int) else UNBOUNDED_LIST_SIZE
            given = _argument(node, argument_name)
            if given is not None:
                return _size_of(given, own_fallback, count_items=False)
            if fallback is None:
                fallback = own_fallback
        return None if fallback is None else Size(constant=fallback)

    @staticmethod
    def _list_size(node: FieldNode, definition: GraphQLField) -> Size:
        if LIST_ARGUMENT in definition.args:
            given = _argument(node, LIST_ARGUMENT)
            if given is not None:
                return _size_of(given, 0, count_items=True)
        return INHERITED


def _argument(node: FieldNode, name: str) -> ValueNode | None:
    for argument in node.arguments or ():
        if argument.name.value == name:
            return argument.value
    return None


def _size_of(value: ValueNode, fallback: int, *, count_items: bool) -> Size:
    if isinstance(value, VariableNode):
        return Size(variable=value.name.value, default=fallback, count_items=count_items)
    if count_items and isinstance(value, ListValueNode):
        return Size(constant=len(value.values))
    if not count_items and isinstance(value, IntValueNode):
        return Size(constant=int(value.value))
    return Size(constant=fallback)  # null (or a single id for a list argument: coerced to one)


def plans(schema: GraphQLSchema, document: DocumentNode, settings: Settings) -> dict[str | None, CostPlan]:
    """The cost plan of each operation of a validated document, by operation name."""
    planner = _Planner(schema, document)
    out: dict[str | None, CostPlan] = {}
    for definition in document.definitions:
        if not isinstance(definition, OperationDefinitionNode):
            continue
        root = schema.get_root_type(definition.operation)
        defaults = {
            v.variable.name.value: value_from_ast_untyped(v.default_value)
            for v in definition.variable_definitions or ()
            if v.default_value is not None
        }
        out[definition.name.value if definition.name else None] = CostPlan(
            planner.selection(definition.selection_set, root),
            planner.fragments,
            defaults,
            settings.max_page_size,
        )
    return out


def check(cost: int, settings: Settings) -> None:
    """Refuse an operation that costs more than MAX_COST."""
    if cost > settings.max_cost:
        raise BffError(
            ErrorCode.COST_LIMIT_EXCEEDED,
            f"The operation costs more than {settings.max_cost} (1 per field, lists times their page size): "
            "ask for smaller pages or fewer fields",
            limit=settings.max_cost,
        )
