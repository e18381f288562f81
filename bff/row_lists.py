"""Lists of rows that compiled plans answer from directly, and that build objects for the rest.

A page of 20 posts costs 20 PostEdge, 20 Post and up to 20 User strawberry objects, built only
for bff/codegen_fused.py's functions to read their attributes back into the answer. A list
resolver returns a `RowList` instead: its rows and the `RowProjection` saying how each field of
the list's type is read from a row. A compiled plan whose selection the projection covers
builds the answer from the rows in one generated loop (bff/codegen_fused.py's
`rows_function`); everything else (graphql-core, the step walk, a selection the projection
does not cover, a row whose value needs a resolver) iterates the list and gets the objects
`build` makes, exactly those the resolver returned before.

The projection must answer what the built object answers, field for field: tests/test_compiled.py
compares both for a selection of every projected field.
"""

from __future__ import annotations

from collections.abc import Callable, Iterator, Mapping, Sequence
from dataclasses import dataclass, field
from typing import Any, Generic, TypeVar, overload

T = TypeVar("T")


@dataclass(frozen=True, eq=False)
class Read:
    """How one field's value is read from a row.

    `path`: dotted attributes from the row ("post.body"), or "" for the row itself.
    `convert`: a function of that value (a global ID from a primary key), or None.
    `rows`: for an object-valued field, the projection of the value read (its row class).
    `serialized`: for a leaf field, the value read (a str) is already what the field's scalar
    serializes the object's value to (a DateTime's `isoformat()` kept per post, say), and is
    answered as it is.
    A value that is None where the field is non-null, or of a type the field's completion
    would change, sends the whole list to the built objects (whose resolvers decide).
    """

    path: str = ""
    convert: Callable[[Any], Any] | None = None
    rows: RowProjection | None = None
    serialized: bool = False

    def __post_init__(self) -> None:
        if self.path and not all(part.isidentifier() for part in self.path.split(".")):
            raise ValueError(f"not a dotted attribute path: {self.path!r}")


@dataclass(frozen=True, eq=False)
class RowProjection:
    """The fields of strawberry type `origin` read from rows of exactly class `row`.

    `fields` is keyed by GraphQL field name; a field not in it makes every selection of it go
    through `build` (the object, its resolvers).
    """

    origin: type
    row: type
    build: Callable[[Any], Any]
    fields: Mapping[str, Read] = field(default_factory=dict)


class RowList(Sequence[T], Generic[T]):
    """A list resolver's result: rows for compiled plans, built objects for anyone iterating."""

    __slots__ = ("_built", "projection", "rows")

    def __init__(self, projection: RowProjection, rows: Sequence[Any]) -> None:
        self.projection = projection
        self.rows = rows
        self._built: list[T] | None = None

    def objects(self) -> list[T]:
        built = self._built
        if built is None:
            build = self.projection.build
            built = self._built = [build(row) for row in self.rows]
        return built

    def __len__(self) -> int:
        return len(self.rows)

    def __iter__(self) -> Iterator[T]:
        return iter(self.objects())

    @overload
    def __getitem__(self, index: int) -> T: ...

    @overload
    def __getitem__(self, index: slice) -> list[T]: ...

    def __getitem__(self, index: int | slice) -> T | list[T]:
        return self.objects()[index]

    def __repr__(self) -> str:
        return f"RowList({self.projection.origin.__name__}, {len(self.rows)} rows)"
