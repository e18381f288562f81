"""Plans as generated Python source (bff/codegen.py) answer as graphql-core does, edge cases included.

tests/test_compiled.py runs the app's own queries through graphql-core, the step walk and the
generated source; here a small schema covers what those queries do not reach: resolvers that
read their info past `context`, fail, return null for non-null, return awaitables or values
that need serializing, `__typename`, aliases and names that are not identifiers.
"""

from __future__ import annotations

import asyncio
from datetime import UTC, date, datetime
from enum import Enum
from typing import Any

import pytest
import strawberry
from graphql import parse
from prometheus_client import REGISTRY
from strawberry.schema.config import StrawberryConfig
from strawberry.types import Info

from bff.codegen import LazyInfo, LazyResolveInfo
from bff.compiled import compile_operation, execute_plan, execute_with_graphql_core
from bff.compiled_complete import Object
from bff.errors import format_error
from bff.known import known_as


@strawberry.enum
class Color(Enum):
    RED = "red"
    BLUE = "blue"


@strawberry.interface
class Named:
    name: str


@strawberry.type
class Tag(Named):
    pass


@strawberry.type
class Label(Named):
    pass


@strawberry.type
class Item:
    n: int
    label: str
    when: datetime
    maybe: str | None = None

    @strawberry.field
    def doubled(self) -> int:
        return self.n * 2

    @strawberry.field
    def where(self, info: Info[Any, None]) -> str:
        # Reads past `context`: the lazy info builds graphql-core's own.
        return f"{info.field_name}@{'.'.join(map(str, info.path.as_list()))}"

    @strawberry.field
    def whose(self, info: Info[Any, None]) -> str:
        return str(info.context["owner"])

    @strawberry.field
    def fails(self) -> str | None:
        if self.n % 2:
            raise ValueError(f"odd {self.n}")
        return "even"

    @strawberry.field
    def strict(self) -> str:
        if self.n == 3:
            raise ValueError("three")
        return "ok"

    @strawberry.field
    def null_for_non_null(self) -> str:
        return None  # type: ignore[return-value]

    @strawberry.field
    def later(self) -> int:
        async def value() -> int:
            await asyncio.sleep(0)
            return self.n + 100

        return value()  # type: ignore[return-value]

    @strawberry.field
    def scaled(self, by: int = 2, extra_amount: int | None = None) -> int:
        return self.n * by + (extra_amount or 0)

    @strawberry.field
    async def tagged(self, info: Info[Any, None], tag: str | None = None) -> str:
        await asyncio.sleep(0)
        return f"{tag}:{self.n}:{info.context['owner']}:{info.path.key}"

    @strawberry.field
    def summed(self, values: list[int]) -> int:  # a list: strawberry copies it, left to it
        return self.n + sum(values)

    @strawberry.field
    def shade(self, color: Color) -> str:  # an enum: graphql-core already made it a member
        return f"{color.value}-{self.n}"

    @strawberry.field
    def stamp(self) -> datetime | None:
        # A datetime, a date (isoformat too), and a value DateTime cannot serialize: an error.
        return {1: self.when, 2: date(2026, 12, 6), 3: "yesterday"}.get(self.n)  # type: ignore[return-value]

    @strawberry.field
    def tag(self) -> Tag | None:
        tag = Tag(name=f"t{self.n}")
        # Of class Tag, but cast as a Label: strawberry's is_type_of for Tag says no.
        return strawberry.cast(Label, tag) if self.n == 2 else tag

    known_half: strawberry.Private[int | None] = None
    half_calls: strawberry.Private[list[int] | None] = None

    @strawberry.field
    @known_as("known_half")
    def half(self, info: Info[Any, None]) -> int:
        # What the object was given, else worked out (as a loader would): one value either way.
        if self.half_calls is not None:
            self.half_calls.append(self.n)
        if self.known_half is not None:
            return self.known_half
        return self.n // 2

    # Plain values of the wrong kind for some items (bff/codegen.py's fused selections fall back).
    big: int = 0
    code: str = ""
    known_tag: strawberry.Private[Tag | None] = None

    @strawberry.field
    @known_as("known_tag")
    def held_tag(self) -> Tag | None:
        return self.known_tag if self.known_tag is not None else Tag(name=f"made {self.n}")

    @strawberry.field
    def child(self) -> Item | None:
        return Item(n=self.n + 10, label=f"child of {self.n}", when=self.when) if self.n < 10 else None


@strawberry.type
class Query:
    @strawberry.field
    def items(self) -> list[Item]:
        when = datetime(2026, 12, 6, 12, 0, tzinfo=UTC)
        return [
            Item(
                n=n,
                label=f"item {n}",
                when=when,
                maybe="m" if n == 1 else None,
                known_half=n // 2 if n % 2 else None,  # given to odd items only
                half_calls=HALF_CALLS,
                big=2**40 if n == 3 else n,  # beyond GraphQL's 32-bit Int
                code=None if n == 4 else f"c{n}",  # type: ignore[arg-type]  # null for non-null
                # A tag; none (the resolver makes one); one cast as a Label; a Label.
                known_tag={
                    1: Tag(name="t1"),
                    3: strawberry.cast(Label, Tag(name="t3")),
                    4: Label(name="l4"),
                }.get(n),  # type: ignore[arg-type]
            )
            for n in range(1, 5)
        ]


HALF_CALLS: list[int] = []  # the items whose `half` resolver ran


SCHEMA = strawberry.Schema(query=Query)


async def run_three(query: str, schema: strawberry.Schema = SCHEMA) -> dict[str, Any]:
    document = parse(query)
    context = {"owner": "bff"}
    expected = await execute_with_graphql_core(schema, document, None, context, None)
    results = []
    for generate in (True, False):
        plan = compile_operation(schema, document, None)
        assert plan is not None
        plan.generate = generate
        results.append(await execute_plan(plan, context, None))
    for result in results:
        assert result.data == expected.data
        assert [format_error(e) for e in result.errors or []] == [
            format_error(e) for e in expected.errors or []
        ]
    return {"data": expected.data, "errors": [format_error(e) for e in expected.errors or []]}


async def test_plain_fields_resolvers_and_lazy_infos_answer_alike() -> None:
    answer = await run_three(
        "{ items { __typename n label when maybe doubled where whose later"
        " also: doubled child { n where child { n } } } }"
    )
    first = answer["data"]["items"][0]
    assert first["where"] == "where@items.0.where" and first["whose"] == "bff" and first["later"] == 101
    assert (
        first["when"] == "2026-12-06T12:00:00+00:00"
        and first["child"]["where"] == "where@items.0.child.where"
    )


async def test_field_errors_null_the_field_or_the_nearest_nullable_parent_alike() -> None:
    answer = await run_three("{ items { n fails } }")
    assert [e["path"] for e in answer["errors"]] == [["items", 0, "fails"], ["items", 2, "fails"]]
    # A non-null field failing nulls its item; the list's items are non-null: the list goes.
    answer = await run_three("{ items { n strict } }")
    assert answer["data"] is None and [e["path"] for e in answer["errors"]] == [["items", 2, "strict"]]
    # `child` is nullable: null for its non-null field nulls only the child.
    answer = await run_three("{ items { n child { n nullForNonNull } } }")
    assert answer["data"]["items"][0] == {"n": 1, "child": None}
    assert answer["errors"][0]["path"] == ["items", 0, "child", "nullForNonNull"]


def items_plan(query: str) -> Object:
    """The compiled `Item` selection of `{ items { … } }`, after one run."""
    plan = compile_operation(SCHEMA, parse(query), None)
    assert plan is not None
    asyncio.run(execute_plan(plan, {"owner": "x"}, None))
    root = next(iter(plan.variants.values()))
    items = root.steps[0].complete.inner.item.inner  # type: ignore[attr-defined]
    assert isinstance(items, Object)
    return items


def test_the_generated_source_reads_attributes_and_calls_resolvers_inline() -> None:
    items = items_plan("{ items { n label doubled whose child { n } } }")
    source = items.execute.__source__  # type: ignore[attr-defined]
    assert "src.n" in source and "src.label" in source and "src.child" not in source
    assert "execute_field(" not in source  # no field of Item needs the generic step
    assert "LazyInfo(run" in source  # `whose` takes an info: strawberry's, made lazy in one object


def test_a_known_value_is_read_and_the_resolver_called_only_without_one() -> None:
    items = items_plan("{ items { n half } }")
    source = items.execute.__source__  # type: ignore[attr-defined]
    assert "src.known_half" in source
    HALF_CALLS.clear()
    answer = asyncio.run(run_three("{ items { n half } }"))
    assert [item["half"] for item in answer["data"]["items"]] == [0, 1, 1, 2]
    # graphql-core calls the resolver for every item, then the generated source only for the
    # items given no value (2 and 4), then the step walk for every item again.
    assert HALF_CALLS == [1, 2, 3, 4, 2, 4, 1, 2, 3, 4]


class StepLike:
    key, parent_name, field_def, nodes, parent_type = "f", "T", None, [], None


def run_building_infos(built: list[str]) -> Any:
    """A run whose executor records each resolve info it is asked to build."""

    class Executor:
        context_value = "context"

        def build_resolve_info(self, field_def: Any, nodes: Any, parent: Any, path: Any) -> Any:
            built.append(path.key)
            return type("Raw", (), {"path": path, "field_name": "f", "context": "raw"})()

    return type("Run", (), {"executor": Executor()})()


def test_a_lazy_info_builds_graphql_cores_info_once_and_only_when_read() -> None:
    built: list[str] = []
    info = LazyResolveInfo(run_building_infos(built), StepLike(), None)  # type: ignore[arg-type]
    assert info.context == "context" and built == []
    assert info.field_name == "f" and info.path.as_list() == ["f"] and built == ["f"]


def test_a_lazy_info_is_strawberrys_info_and_builds_the_raw_one_once_when_read() -> None:
    built: list[str] = []
    info = LazyInfo(run_building_infos(built), StepLike(), None, field="definition")  # type: ignore[arg-type]
    assert isinstance(info, Info) and info.context == "context" and built == []
    assert info.field_name == "f" and info.path.as_list() == ["f"] and built == ["f"]
    assert info._raw_info.field_name == "f" and built == ["f"]  # built once
    with pytest.raises(AttributeError):
        info.not_an_attribute  # noqa: B018


class OwnInfo(Info):  # type: ignore[type-arg]
    @property
    def owner(self) -> str:
        return str(self.context["owner"])


@strawberry.type
class OwnInfoQuery:
    @strawberry.field
    def owner(self, info: OwnInfo) -> str:
        return info.owner + ":" + info.field_name


async def test_a_schemas_own_info_class_is_built_as_strawberry_builds_it() -> None:
    schema = strawberry.Schema(query=OwnInfoQuery, config=StrawberryConfig(info_class=OwnInfo))
    answer = await run_three("{ owner }", schema)
    assert answer["data"] == {"owner": "bff:owner"}
    plan = compile_operation(schema, parse("{ owner }"), None)
    assert plan is not None
    await execute_plan(plan, {"owner": "bff"}, None)
    source = next(iter(plan.variants.values())).execute.__source__  # type: ignore[attr-defined]
    assert "LazyResolveInfo(run" in source and "LazyInfo(run" not in source


def test_leaves_serialized_without_the_generic_completion_answer_alike() -> None:
    answer = asyncio.run(run_three("{ items { n stamp } }"))
    assert [i["stamp"] for i in answer["data"]["items"]] == [
        "2026-12-06T12:00:00+00:00",
        "2026-12-06",
        None,
        None,
    ]
    assert [e["path"] for e in answer["errors"]] == [["items", 2, "stamp"]]
    assert "in t" in items_plan("{ items { stamp } }").execute.__source__  # type: ignore[attr-defined]


def test_an_object_cast_as_another_type_is_refused_as_strawberry_refuses_it() -> None:
    answer = asyncio.run(run_three("{ items { n tag { name } } }"))
    assert [i["tag"] for i in answer["data"]["items"]] == [
        {"name": "t1"},
        None,
        {"name": "t3"},
        {"name": "t4"},
    ]
    assert [e["path"] for e in answer["errors"]] == [["items", 1, "tag"]]
    assert "getattr(v, CAST, None)" in items_plan("{ items { tag { name } } }").execute.__source__  # type: ignore[attr-defined]


def test_selections_of_held_values_are_fused_and_fall_back_to_the_generic_source_alike() -> None:
    query = "{ items { __typename n label when maybe half heldTag { __typename name } } }"
    source = items_plan(query).execute.__source__  # type: ignore[attr-defined]
    assert source.startswith("# fused") and "src.known_half" in source and "src.known_tag" in source
    fallbacks = REGISTRY.get_sample_value("bff_fused_fallbacks_total", {"type": "Item"}) or 0.0
    answer = asyncio.run(run_three(query))
    # Items 2 and 4 hold no `half`, item 3's tag is cast: handed to the generic function, counted.
    assert REGISTRY.get_sample_value("bff_fused_fallbacks_total", {"type": "Item"}) == fallbacks + 3
    first = answer["data"]["items"][0]
    assert first == {
        "__typename": "Item",
        "n": 1,
        "label": "item 1",
        "when": "2026-12-06T12:00:00+00:00",
        "maybe": "m",
        "half": 0,
        "heldTag": {"__typename": "Tag", "name": "t1"},
    }
    # Item 2 holds no tag: its resolver made one. Item 3's is cast as a Label: refused as
    # strawberry refuses it. Item 4's is of another class: completed as strawberry completes it.
    assert [i["heldTag"] for i in answer["data"]["items"]] == [
        {"__typename": "Tag", "name": "t1"},
        {"__typename": "Tag", "name": "made 2"},
        None,
        {"__typename": "Tag", "name": "l4"},
    ]
    assert [e["path"] for e in answer["errors"]] == [["items", 2, "heldTag"]]
    # A non-null Int beyond 32 bits, a null for a non-null String: the same errors, the same
    # nulls up to the data, as graphql-core.
    for field, index in (("big", 2), ("code", 3)):
        answer = asyncio.run(run_three(f"{{ items {{ n {field} }} }}"))
        assert answer["data"] is None and [e["path"] for e in answer["errors"]] == [["items", index, field]]


def test_a_selection_with_a_resolver_is_not_fused() -> None:
    source = items_plan("{ items { n doubled } }").execute.__source__  # type: ignore[attr-defined]
    assert not source.startswith("# fused")


@pytest.mark.parametrize("key", ["class", "alias_1"])
async def test_aliases_that_are_keywords_or_odd_names_answer_alike(key: str) -> None:
    answer = await run_three(f"{{ items {{ {key}: label }} }}")
    assert answer["data"]["items"][0] == {key: "item 1"}


async def test_resolvers_with_arguments_answer_alike_called_directly_or_by_strawberry() -> None:
    answer = await run_three(
        'query { items { scaled a: scaled(by: 3) b: scaled(extraAmount: 1) tagged t: tagged(tag: "x")'
        " summed(values: [1, 2]) shade(color: BLUE) } }"
    )
    first = answer["data"]["items"][0]
    assert first["scaled"] == 2 and first["a"] == 3 and first["b"] == 3
    assert first["tagged"] == "None:1:bff:tagged" and first["t"] == "x:1:bff:t"
    assert first["summed"] == 4 and first["shade"] == "blue-1"


def test_only_arguments_strawberry_hands_over_unchanged_are_called_directly() -> None:
    items = items_plan('{ items { scaled tagged(tag: "x") summed(values: [1]) shade(color: RED) } }')
    calls = {step.key: step.call is not None for step in items.steps}
    assert calls == {"scaled": True, "tagged": True, "summed": False, "shade": True}
    assert items.execute.__source__.count("execute_field(") == 1
