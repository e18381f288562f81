"""Fused selections: a selection whose values were all fetched by plan, answered in one literal.

A page of edges runs bff/codegen.py's function for each edge, then for its post, then for the
post's author: three calls, a path tuple per object and a completer step per field, though
every value was fetched by plan and only needs reading. Here such a selection becomes one
function that reads every value, tests each is what needs no completion, and returns the
nested answer at once; anything else sends the object to the generic function.

`rows_function` does the same for a whole list of rows (bff/row_lists.py): the values are read
from the rows as the list's projection says, and no object is built at all.
"""

from __future__ import annotations

from collections.abc import Callable, Sequence
from typing import TYPE_CHECKING, Any

from prometheus_client import Counter
from strawberry.types.cast import TYPE_CAST_ATTRIBUTE

from bff.codegen import FieldsFunction, completes_without_info, leaf_test, plain_name
from bff.compiled_complete import Leaf, NonNull, Object
from bff.known import known_attribute
from bff.row_lists import RowProjection

if TYPE_CHECKING:
    from bff.compiled_steps import Step

RowsFunction = Callable[[Sequence[Any]], list[Any] | None]

_FUSED_LIMIT = 200  # fields inlined into one fused function, descendants included
# A share that grows means a list resolver stopped fetching what its objects' fields read.
FALLBACKS = Counter(
    "bff_fused_fallbacks_total",
    "Objects a fused selection handed to the generic function (a value it does not take)",
    ["type"],
)


def fused_function(completer: Object, generic: FieldsFunction) -> FieldsFunction | None:
    """A faster first attempt at `generic` for selections that only read what objects hold.

    When every field of a selection, and of the objects below it, is `__typename`, a plain
    attribute or a `known_as` value, and every value read is of the type that needs no
    completion (a leaf that is its own serialization, a datetime, an object of exactly its
    class), the answer is one nested dict literal: no function per object, no path, no
    completer call. The attempt only reads attributes; the first value that is anything else
    (None where a resolver must run or an error must be raised, another class, a cast object,
    a value to serialize) abandons it and `generic` computes the whole object again, errors and
    paths included. So the answer is always `generic`'s. None when the selection has a field of
    another kind (resolvers, lists, abstract types).
    """
    origin = completer.origin
    if origin is None:
        return None
    fallbacks = FALLBACKS.labels(completer.object_type.name)

    def fallback(run: Any, steps: Any, source: Any, path: Any) -> Any:
        fallbacks.inc()
        return generic(run, steps, source, path)

    namespace: dict[str, Any] = {"g": fallback, "C": origin}
    fused = _fuse(_Fuse(namespace), completer, None, indent=8)
    if fused is None:
        return None
    guards, literal = fused
    source = (
        "# fused\n"
        "def fields(run, _steps, src, path):\n"
        "    if type(src) is not C:\n"
        "        return g(run, _steps, src, path)\n"
        "    try:\n"
        f"{guards}"
        f"        return {literal}\n"
        "    except Exception:\n"
        "        return g(run, _steps, src, path)\n"
    )
    exec(compile(source, f"<bff.codegen_fused {completer.object_type.name}>", "exec"), namespace)
    function: FieldsFunction = namespace["fields"]
    function.__source__ = source + "# otherwise:\n" + generic.__source__  # type: ignore[attr-defined]
    return function


def rows_function(completer: Object, projection: RowProjection) -> RowsFunction | None:
    """The answer for a list of `projection`'s rows under this selection, built from the rows.

    One generated loop reads each row's values as the projection says, with the tests
    `fused_function` makes; the first value that needs more (None for a non-null field, a value
    to complete, a row of another class) abandons the whole list: None, and the caller
    completes the objects the list builds, as if no projection existed. None when a field of
    the selection (or of an object below it) is not in the projection.
    """
    if projection.origin is not completer.origin or completer.exact == "ask":
        return None
    namespace: dict[str, Any] = {"R": projection.row}
    fused = _fuse(_Fuse(namespace, fallback="return None"), completer, projection, indent=12)
    if fused is None:
        return None
    guards, literal = fused
    source = (
        "# from rows\n"
        "def rows(items):\n"
        "    out = []\n"
        "    append = out.append\n"
        "    try:\n"
        "        for src in items:\n"
        "            if type(src) is not R:\n"
        "                return None\n"
        f"{guards}"
        f"            append({literal})\n"
        "    except Exception:\n"
        "        return None\n"
        "    return out\n"
    )
    name = f"{completer.object_type.name} from {projection.row.__name__}"
    exec(compile(source, f"<bff.codegen_fused {name}>", "exec"), namespace)
    generated: RowsFunction = namespace["rows"]
    fallbacks = FALLBACKS.labels(completer.object_type.name)

    def answer(rows: Sequence[Any]) -> list[Any] | None:
        out = generated(rows)
        if out is None:
            fallbacks.inc()
        return out

    answer.__source__ = source  # type: ignore[attr-defined]  # for debugging and the tests
    return answer


def _fuse(fuse: _Fuse, completer: Object, rows: RowProjection | None, indent: int) -> tuple[str, str] | None:
    """The guard lines (indented) and the literal for `completer`'s selection of `src`, if fused."""
    literal = fuse.selection(completer.steps, "src", rows)
    if literal is None or fuse.fields > _FUSED_LIMIT:
        return None
    return "".join(f"{' ' * indent}{line}\n" for line in fuse.lines), literal


_FALLBACK = "return g(run, _steps, src, path)"


class _Fuse:
    """Writes the guarded reads of one fused selection and the dict literal they fill."""

    def __init__(self, namespace: dict[str, Any], fallback: str = _FALLBACK) -> None:
        self.namespace = namespace
        self.fallback = fallback  # the statement that abandons the attempt
        self.lines: list[str] = []
        self.fields = 0
        self.names = 0

    def name(self, prefix: str, value: Any = None) -> str:
        """A new name in the generated function's namespace, bound to `value`."""
        self.names += 1
        name = f"{prefix}{self.names}"
        self.namespace[name] = value
        return name

    def selection(self, steps: list[Step], source: str, rows: RowProjection | None = None) -> str | None:
        """The literal for `steps` of `source`: an object, or a row of `rows` when given."""
        parts = []
        for step in steps:
            value = self.field(step, source, rows)
            if value is None:
                return None
            parts.append(f"{step.key!r}: {value}")
        return "{" + ", ".join(parts) + "}"

    def field(self, step: Step, source: str, rows: RowProjection | None) -> str | None:
        self.fields += 1
        if step.typename is not None:
            return repr(step.typename)
        if not completes_without_info(step):
            return None
        below: RowProjection | None = None
        serialized = False
        if rows is not None:
            how = rows.fields.get(step.name)
            if how is None:
                return None
            serialized = how.serialized
            # A field with a resolver takes None as "not fetched", as `known_as` values do.
            read, known, below = f"{source}.{how.path}" if how.path else source, step.attr is None, how.rows
            if how.convert is not None:
                read = f"{self.name('f', how.convert)}({read})"
        elif step.attr is not None and plain_name(step.attr):
            read, known = f"{source}.{step.attr}", False
        elif (
            step.direct is not None
            and step.direct.with_self
            and plain_name(known_attribute(step.direct.function))
        ):
            read, known = f"{source}.{known_attribute(step.direct.function)}", True
        else:
            return None
        var = self.name("a")  # a local of the function: the namespace entry only reserves it
        self.lines.append(f"{var} = {read}")
        completer = step.complete
        nullable = not isinstance(completer, NonNull)
        inner = completer.inner if isinstance(completer, NonNull) else completer
        if known or isinstance(inner, Object):
            # None is refused by the type tests below: for a known value it means "not
            # fetched" (the resolver must run), and a null object is left to the generic
            # function (rare, and nothing below it to read).
            nullable = False
        if isinstance(inner, Leaf):
            if serialized:  # the scalar's text already: a str, or the attempt is abandoned
                condition = f"{var} is None or type({var}) is str" if nullable else f"type({var}) is str"
                self.lines.append(f"if not ({condition}): {self.fallback}")
                return var
            return self.leaf(var, inner, nullable)
        if isinstance(inner, Object):
            if rows is None:
                return self.object(var, inner)
            return None if below is None else self.row(var, inner, below)
        return None

    def leaf(self, var: str, leaf: Leaf, nullable: bool) -> str | None:
        self.names += 1  # bff/codegen.py's test, its type bound as t<n> in this namespace
        test = leaf_test(self.names, leaf, self.namespace, var)
        if test is not None:
            condition = f"{var} is None or {test}" if nullable else test
            self.lines.append(f"if not ({condition}): {self.fallback}")
            return var
        if leaf.converts:
            kinds, coerce = self.name("t", leaf.converts), self.name("k", leaf.coerce)
            if nullable:
                self.lines.append(f"if {var} is not None and type({var}) not in {kinds}: {self.fallback}")
                return f"(None if {var} is None else {coerce}({var}))"
            self.lines.append(f"if type({var}) not in {kinds}: {self.fallback}")
            return f"{coerce}({var})"
        return None

    def object(self, var: str, completer: Object) -> str | None:
        if completer.origin is None or completer.exact == "ask":
            return None
        kind = self.name("c", completer.origin)
        test = f"type({var}) is not {kind}"
        if completer.exact == "uncast":
            self.namespace["CAST"] = TYPE_CAST_ATTRIBUTE
            test += f" or getattr({var}, CAST, None) is not None"
        self.lines.append(f"if {test}: {self.fallback}")
        return self.selection(completer.steps, var)

    def row(self, var: str, completer: Object, rows: RowProjection) -> str | None:
        """An object-valued field read from a row: its selection, read from the row below."""
        if rows.origin is not completer.origin or completer.exact == "ask":
            return None
        kind = self.name("r", rows.row)
        self.lines.append(f"if type({var}) is not {kind}: {self.fallback}")
        return self.selection(completer.steps, var, rows)
