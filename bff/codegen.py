"""A plan's field sets compiled to Python source: one function per selection (graphql-jit's way).

bff/compiled_run.py's `execute_fields` walks a list of steps for every object of a response:
per field it reads which kind of step it is, calls `_execute_field`, builds a resolve info
for every resolver, then calls `_complete_field`. Here each selection of a plan becomes one
generated function with a `results[key] = ...` block per field, in the selection's order, in
which that dispatch is already decided:

- `__typename` is a constant;
- a plain attribute is read inline: a leaf whose value is its own serialization (str, bool, a
  32-bit int) is kept after a type test, anything else is completed by the step's completer;
- a sync resolver without arguments (bff/compiled_steps.py's `DirectCall`) is called inline;
  when it takes an `info`, it gets strawberry's Info over a `LazyResolveInfo`, which holds the
  request's context and builds graphql-core's resolve info only if the resolver reads more
  (list resolvers hand their fields pre-fetched values, so most never do);
- a resolver with arguments, or an async one, is called the same way (`ResolverCall`) when
  strawberry would hand its arguments over unchanged;
- anything else (abstract types, extensions, other arguments) runs the generic step.

What each block does on a value, an error or an awaitable is exactly `execute_fields`'s: the
same completion, the same error handling (a non-null error propagates, pending siblings are
settled in the background), the same concurrent gather of pending fields. Tests run every
query of tests/test_compiled.py through both and graphql-core, and compare.
"""

from __future__ import annotations

import keyword
from collections.abc import Callable
from typing import TYPE_CHECKING, Any

from graphql import (
    FieldNode,
    GraphQLResolveInfo,
    get_named_type,
    is_abstract_type,
    is_leaf_type,
    is_non_null_type,
    is_object_type,
)
from graphql.execution.values import get_argument_values
from graphql.pyutils import Path
from graphql.type.scalars import serialize_int
from strawberry.types import Info
from strawberry.types.cast import TYPE_CAST_ATTRIBUTE

from bff.compiled_complete import Completer, Leaf, NonNull, Object, strawberry_is_type_of
from bff.compiled_run import (
    Run,
    _complete_field,
    _execute_field,
    _field_error,
    await_completed,
    gather_into,
    is_awaitable,
    new_tuple,
)
from bff.known import known_attribute

if TYPE_CHECKING:
    from bff.compiled_steps import DirectCall, Step

# Types a completed value has when it is not awaitable: tested before calling is_awaitable.
_DONE = frozenset({dict, list, str, int, float, bool, type(None)})

FieldsFunction = Callable[[Run, Any, Any, Path | None], Any]

_PROLOGUE = """\
def fields(run, _steps, src, path):
    r = {}
    p = None
    try:
"""
_EPILOGUE = """\
    except Exception:
        if p:
            run.executor.settle_in_background([r[k] for k in p])
        raise
    if p is None:
        return r
    return gather_into(run, r, p)
"""
_PENDING = """\
{i}if type(v) not in done and is_awaitable(v):
{i}    if p is None:
{i}        p = [{key}]
{i}    else:
{i}        p.append({key})
"""


class LazyResolveInfo:
    """graphql-core's resolve info for one field, built only when something reads past `context`."""

    __slots__ = ("_built", "_path", "_run", "_step", "context")

    def __init__(self, run: Run, step: Step, path: Path | None) -> None:
        self._run = run
        self._step = step
        self._path = path
        self._built: GraphQLResolveInfo[Any] | None = None
        self.context = run.executor.context_value

    def __getattr__(self, name: str) -> Any:
        built = self._built
        if built is None:
            built = self._built = _resolve_info(self._run, self._step, self._path)
        return getattr(built, name)


def _resolve_info(run: Run, step: Step, path: Path | None) -> GraphQLResolveInfo[Any]:
    """graphql-core's resolve info for `step`'s field under `path`, as the executor builds it."""
    field_path = Path(path, step.key, step.parent_name)
    return run.executor.build_resolve_info(step.field_def, step.nodes, step.parent_type, field_path)


class LazyInfo(Info):
    """strawberry's own `Info` with a `LazyResolveInfo`'s laziness, in one object.

    A page of posts calls three resolvers per post that read `info.context` at most (their
    values were fetched by plan): one object per call instead of two, and `context` without
    a lookup through the raw info. Used when the schema's info class is strawberry's `Info`
    (a custom one may initialise itself: it gets a `LazyResolveInfo` in the usual wrapper).
    """

    def __init__(self, run: Run, step: Step, path: Path | None, field: Any) -> None:
        # Not the dataclass's __init__: `_raw_info` is built on first read, by __getattr__.
        self._run = run
        self._step = step
        self._path = path
        self._field = field

    @property
    def context(self) -> Any:
        return self._run.executor.context_value

    @property
    def field_nodes(self) -> list[FieldNode]:
        """The field's nodes (the plan's), without building the resolve info for them."""
        return self._step.nodes

    def __getattr__(self, name: str) -> Any:
        if name != "_raw_info":
            raise AttributeError(name)
        built = self._raw_info = _resolve_info(self._run, self._step, self._path)
        return built


class ResolverCall:
    """A resolver with arguments (or an async one), called as strawberry's wrapper would call it.

    Only for arguments whose values strawberry hands over unchanged (what its own `_is_leaf_type`
    says: scalars, IDs, enums, and their optional forms; not lists, which it copies, `GlobalID`,
    `Maybe` or input types) and fields without extensions or exception handlers (decided by
    bff/compiled_steps.py): then the wrapper's work is renaming the arguments to their Python
    names and adding what `DirectCall` adds (`self`, `parent`/`root`, the info, here lazy).
    """

    __slots__ = ("direct", "names", "step")

    def __init__(self, step: Step, direct: DirectCall, names: dict[str, str]) -> None:
        self.step = step
        self.direct = direct
        self.names = names  # GraphQL argument name -> the resolver's parameter name

    def __call__(self, run: Run, source: Any, path: Path | None) -> Any:
        step = self.step
        arguments = step.args
        if arguments is None:  # they read variables: coerced per request, as graphql-core does
            executor = run.executor
            arguments = get_argument_values(
                step.field_def, step.node, executor.variable_values, None, executor.hide_suggestions
            )
        names = self.names
        kwargs = {names[name]: value for name, value in arguments.items()}
        direct = self.direct
        for name in direct.parent_names:
            kwargs[name] = source
        if direct.info_name is not None:
            kwargs[direct.info_name] = (
                LazyInfo(run, step, path, direct.definition)
                if direct.info_class is Info
                else direct.info_class(_raw_info=LazyResolveInfo(run, step, path), _field=direct.definition)
            )
        return direct.function(source, **kwargs) if direct.with_self else direct.function(**kwargs)


def fields_function(steps: list[Step]) -> FieldsFunction:
    """One function computing these steps' fields of a source: `execute_fields`' answer, unrolled."""
    namespace: dict[str, Any] = {
        "Path": Path,
        "new_tuple": new_tuple,
        "LazyInfo": LazyInfo,
        "LazyResolveInfo": LazyResolveInfo,
        "await_completed": await_completed,
        "complete_field": _complete_field,
        "done": _DONE,
        "execute_field": _execute_field,
        "field_error": _field_error,
        "gather_into": gather_into,
        "is_awaitable": is_awaitable,
    }
    blocks = [_block(index, step, namespace) for index, step in enumerate(steps)]
    body = "".join(blocks) if blocks else "        pass\n"
    source = _PROLOGUE + body + _EPILOGUE
    exec(compile(source, f"<bff.codegen {steps[0].parent_name if steps else 'empty'}>", "exec"), namespace)
    function: FieldsFunction = namespace["fields"]
    function.__source__ = source  # type: ignore[attr-defined]  # for debugging and the tests
    return function


def _block(index: int, step: Step, namespace: dict[str, Any]) -> str:
    s = f"s{index}"
    namespace[s] = step
    key = repr(step.key)
    if step.typename is not None:
        return f"        r[{key}] = {step.typename!r}\n"
    if completes_without_info(step):
        if step.attr is not None and plain_name(step.attr):
            return _inline(index, step, f"src.{step.attr}", namespace)
        if step.direct is not None:
            return _inline(index, step, _direct_call(index, step.direct, namespace), namespace)
        if step.call is not None:
            namespace[f"f{index}"] = step.call
            return _inline(index, step, f"f{index}(run, src, path)", namespace)
    return f"        v = r[{key}] = execute_field(run, {s}, src, path)\n" + _PENDING.format(
        i=" " * 8, key=key
    )


def _inline(index: int, step: Step, expression: str, namespace: dict[str, Any]) -> str:
    """Resolve by `expression`, then complete as `_execute_field` would, with no info to pass."""
    s = f"s{index}"
    key = repr(step.key)
    lines = []
    if not _is_leaf(step):
        lines.append(f"        fp = new_tuple(Path, (path, {key}, {step.parent_name!r}))\n")
        field_path = "fp"
    else:
        field_path = "None"
    lines.append(
        f"        try:\n"
        f"            v = {expression}\n"
        f"        except Exception as e:\n"
        f"            r[{key}] = field_error(run, e, {s}, {field_path}, path)\n"
        f"        else:\n"
    )
    generic = f"complete_field(run, {s}, None, {field_path}, path, v)"
    completer = step.complete.inner if isinstance(step.complete, NonNull) else step.complete
    test = leaf_test(index, completer, namespace)
    if test is not None:
        lines.append(f"            if not ({test}):\n")
        lines.append(f"                v = {generic}\n")
        lines.append(_PENDING.format(i=" " * 16, key=key))
    elif isinstance(completer, Leaf) and completer.converts:
        # A leaf whose serializer is known to succeed on values of these types (a datetime).
        namespace[f"k{index}"] = completer.coerce
        namespace[f"t{index}"] = completer.converts
        lines.append(
            f"            if type(v) in t{index}:\n"
            f"                v = k{index}(v)\n"
            f"            else:\n"
            f"                v = {generic}\n" + _PENDING.format(i=" " * 16, key=key)
        )
    elif isinstance(completer, Object) and completer.origin is not None:
        # A value of the object's own class: its fields' function directly, as complete_field,
        # NonNull.complete, Object.complete and complete_object would get there.
        namespace[f"c{index}"] = completer.origin
        namespace[f"o{index}"] = completer
        namespace[f"x{index}"] = completer.execute
        lines.append(
            f"            if type(v) is c{index} and {_takes(index, completer, namespace)}:\n"
            f"                try:\n"
            f"                    v = x{index}(run, None, v, fp)\n"
            f"                except Exception as e:\n"
            f"                    v = field_error(run, e, {s}, fp, path)\n"
            f"                else:\n"
            f"                    if type(v) is not dict and is_awaitable(v):\n"
            f"                        v = await_completed(run, {s}, {s}.complete, fp, v)\n"
            + _PENDING.format(i=" " * 24, key=key)
            + f"            else:\n"
            f"                v = {generic}\n" + _PENDING.format(i=" " * 16, key=key)
        )
    else:
        lines.append(f"            v = {generic}\n")
        lines.append(_PENDING.format(i=" " * 12, key=key))
    lines.append(f"            r[{key}] = v\n")
    return "".join(lines)


def leaf_test(index: int, completer: Completer, namespace: dict[str, Any], var: str = "v") -> str | None:
    """A test on `var` that holds when the leaf's serialization is its value itself."""
    if not isinstance(completer, Leaf):
        return None
    if completer.fast is not None:
        namespace[f"t{index}"] = completer.fast
        return f"type({var}) is t{index}"
    if completer.coerce is serialize_int:  # graphql-core's Int: a 32-bit int is returned as is
        return f"type({var}) is int and -2147483648 <= {var} <= 2147483647"
    return None


def _takes(index: int, completer: Object, namespace: dict[str, Any]) -> str:
    """The test `completer.takes_exact(v, None)` makes, written out."""
    if completer.exact == "yes":
        return "True"
    if completer.exact == "uncast":
        namespace["CAST"] = TYPE_CAST_ATTRIBUTE
        return f"(getattr(v, CAST, None) is None or o{index}.accepts(v, None))"
    return f"o{index}.accepts(v, None)"


def _direct_call(index: int, direct: DirectCall, namespace: dict[str, Any]) -> str:
    """The call `DirectCall.call` makes, written out: self, parent/root by name, a lazy info;
    for a resolver marked `known_as` (bff/known.py), only when its object's attribute is None."""
    call = _call(index, direct, namespace)
    attribute = known_attribute(direct.function)
    if attribute is None or not direct.with_self or not plain_name(attribute):
        return call
    return f"(q if (q := src.{attribute}) is not None else {call})"


def _call(index: int, direct: DirectCall, namespace: dict[str, Any]) -> str:
    namespace[f"f{index}"] = direct.function
    arguments = ["src"] if direct.with_self else []
    arguments += [f"{name}=src" for name in direct.parent_names]
    if direct.info_name is not None:
        namespace[f"i{index}"] = direct.info_class
        namespace[f"d{index}"] = direct.definition
        if direct.info_class is Info:
            arguments.append(f"{direct.info_name}=LazyInfo(run, s{index}, path, d{index})")
        else:
            arguments.append(
                f"{direct.info_name}=i{index}(_raw_info=LazyResolveInfo(run, s{index}, path), _field=d{index})"
            )
    return f"f{index}({', '.join(arguments)})"


def completes_without_info(step: Step) -> bool:
    """Leaves, and objects whose strawberry `is_type_of` ignores its info: nothing to build."""
    named = get_named_type(step.return_type)
    return not is_abstract_type(named) and not (is_object_type(named) and not strawberry_is_type_of(named))


def _is_leaf(step: Step) -> bool:
    # A leaf field's path is only built if it fails (as compiled_steps.py decides `needs_path`).
    bare = step.return_type.of_type if is_non_null_type(step.return_type) else step.return_type
    return is_leaf_type(bare)


def plain_name(name: str | None) -> bool:
    return name is not None and name.isidentifier() and not keyword.iskeyword(name)
