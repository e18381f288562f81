"""Fuzzing /graphql: over 10,000 random and mutated documents and bodies, never a 500, a hang or a leak.

Three hypothesis strategies feed one in-process app (SQLite, built once for the module):

- grammar-aware documents built from schema.graphql's types, fields and arguments: valid ones
  and almost-valid ones (unknown fields, arguments and variables of the wrong type, aliases,
  fragments that cycle or do not fit, directives, deep nesting, huge numbers, unicode, NULs);
- the reference operations of tests/ops/*.json with their text, variables and JSON bytes mutated
  (byte flips, truncations, duplications, token swaps);
- HTTP requests of any shape: random JSON and non-JSON bodies, fields of the wrong type, garbage
  persisted-query extensions, random content types, methods, query strings and headers.

Every answer must come within PER_REQUEST_SECONDS, below 500 (a 504 only with TIMEOUT), as JSON
whose errors each carry an `extensions.code` other than INTERNAL_SERVER_ERROR, with no
traceback or file path. The last test checks that the process did not grow past
MAX_RSS_GROWTH_BYTES over the whole run (every in-process cache and store is bounded).

Hypothesis runs derandomized (the same cases on every run); a failure is shrunk to a minimal
example, which then becomes an explicit regression test at the end of this file.
"""

from __future__ import annotations

import asyncio
import base64
import gc
import hashlib
import json
import random
import re
import shutil
import time
import tracemalloc
from collections import Counter
from collections.abc import Iterator, Sequence
from pathlib import Path
from typing import Any, TypeVar
from urllib.parse import quote, urlencode

import httpx
import psutil
import pytest
from asgi_lifespan import LifespanManager
from graphql import (
    GraphQLField,
    GraphQLInputType,
    GraphQLInterfaceType,
    GraphQLList,
    GraphQLNonNull,
    GraphQLObjectType,
    GraphQLScalarType,
    Undefined,
    build_schema,
    get_named_type,
)
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from bff.app import create_app
from bff.config import load_settings
from bff.graphql_http import GraphQLHTTP

ROOT = Path(__file__).resolve().parent.parent
GRAPHQL_RESPONSE = "application/graphql-response+json"
JSON = "application/json"
PER_REQUEST_SECONDS = 5.0
MAX_RSS_GROWTH_BYTES = 128 * 1024 * 1024  # the whole run, caches filling to their bounds included
MAX_TRACED_GROWTH_BYTES = 2 * 1024 * 1024  # 400 requests once the caches are full
# Examples per strategy: together at least MIN_REQUESTS requests.
DOCUMENT_EXAMPLES = 4_500
MUTATED_EXAMPLES = 2_500
HTTP_EXAMPLES = 3_200
MIN_REQUESTS = 10_000
MAX_URL_CHARS = 60_000  # httpx refuses longer URLs (as proxies do)
# Methods the /graphql route answers itself; any other gets Starlette's plain-text 405.
ROUTED_METHODS = {"GET", "HEAD", "POST", "PUT", "PATCH", "DELETE", "OPTIONS"}
# Text that must never reach a client unless the request itself carried it.
LEAKS = (
    "Traceback",
    'File "/',
    "site-packages",
    '.py", line',
    "SELECT ",
    "INSERT INTO",
    "sqlite3",
    "asyncpg",
)

FUZZ = settings(
    deadline=None,
    derandomize=True,
    database=None,
    print_blob=True,
    suppress_health_check=[HealthCheck.too_slow, HealthCheck.data_too_large, HealthCheck.filter_too_much],
)

pytestmark = pytest.mark.timeout(900)
T = TypeVar("T")


# -- the app under test --------------------------------------------------------------------------


class Harness:
    """One app, one client and one event loop for the whole module; requests run to completion."""

    def __init__(self, database_url: str) -> None:
        self.loop = asyncio.new_event_loop()
        self.settings = load_settings(
            database_url=database_url,
            bff_env="test",
            log_json=True,
            log_level="WARNING",  # access lines would be 10,000 lines of noise; errors still show
            rate_limit_per_minute_ip=1_000_000_000,
            rate_limit_per_minute_user=1_000_000_000,
            # Small caches: the run goes through their evictions thousands of times, and the
            # memory probe fills them quickly.
            document_cache_size=128,
            persisted_query_cache_size=100,
        )
        self.app = create_app(self.settings)

        async def start() -> tuple[LifespanManager, httpx.AsyncClient]:
            lifespan = LifespanManager(self.app)  # sniffs the async library: inside the loop
            await lifespan.__aenter__()
            return lifespan, httpx.AsyncClient(
                transport=httpx.ASGITransport(self.app), base_url="http://bff.test"
            )

        self.lifespan, self.client = self.loop.run_until_complete(start())
        services = self.app.state.services
        members = self.loop.run_until_complete(
            services.db.fetch_all("SELECT DISTINCT user_id FROM room_members ORDER BY user_id LIMIT 3")
        )
        # Room members (so sendMessage and chatRoom run), and users who may be none.
        users = [int(row["user_id"]) for row in members] + [1, 150]
        self.tokens = [str(services.tokens.issue(user)) for user in users]
        self.sent: Counter[str] = Counter()
        self.statuses: Counter[int] = Counter()
        self.seconds: Counter[str] = Counter()  # time spent in requests, by strategy
        self.codes: Counter[str] = Counter()  # error codes (and `data` answers), by strategy
        self.process = psutil.Process()
        self.rss_before = 0

    def close(self) -> None:
        self.loop.run_until_complete(self.client.aclose())
        self.loop.run_until_complete(self.lifespan.__aexit__(None, None, None))
        self.loop.close()

    def send(
        self,
        strategy: str,
        method: str,
        url: str = "/graphql",
        *,
        headers: dict[str, str] | None = None,
        content: bytes | None = None,
    ) -> httpx.Response:
        """One request, answered within PER_REQUEST_SECONDS and checked."""

        # Bytes: httpx would encode str values as ASCII, a client may send any Latin-1 octet.
        raw_headers = {name: value.encode("latin-1") for name, value in (headers or {}).items()}

        async def request() -> httpx.Response:
            async with asyncio.timeout(PER_REQUEST_SECONDS):
                return await self.client.request(method, url, headers=raw_headers, content=content)

        started = time.perf_counter()
        try:
            response = self.loop.run_until_complete(request())
        except TimeoutError:
            raise AssertionError(
                f"no answer within {PER_REQUEST_SECONDS} s: {method} {url[:300]} {content!r:.500}"
            ) from None
        self.sent[strategy] += 1
        self.seconds[strategy] += time.perf_counter() - started
        self.statuses[response.status_code] += 1
        elapsed = time.perf_counter() - started
        assert elapsed < PER_REQUEST_SECONDS, f"{elapsed:.1f} s"
        sent = f"{url} {headers} {content!r}"
        for code in check(response, method, sent):
            self.codes[f"{strategy}:{code}"] += 1
        return response

    def rss(self) -> int:
        return int(self.process.memory_info().rss)


def check(response: httpx.Response, method: str, sent: str) -> list[str]:
    """No 500, a JSON body whose every error has a code (not INTERNAL_SERVER_ERROR), no internals.

    Returns the error codes of the answer (`data` for a clean one, `-` for one without a body).
    """
    status = response.status_code
    where = f"{method} -> {status}: {response.text[:1500]} (sent {sent[:1500]})"
    if method not in ROUTED_METHODS:
        assert status == 405, where
        return ["-"]
    if method == "HEAD":
        assert status < 500, where  # no body to look at
        return ["-"]
    media = response.headers.get("content-type", "")
    if method == "GET" and status == 200 and media.startswith("text/html"):
        return ["-"]  # the GraphiQL page, for a browser that asks for HTML
    if status == 304:
        assert not response.content, where
        return ["-"]
    assert media.startswith((GRAPHQL_RESPONSE, JSON)), where
    body = response.json()
    assert isinstance(body, dict), where
    errors = body.get("errors")
    if errors is None:
        assert "data" in body and status == 200, where
    else:
        assert isinstance(errors, list) and errors, where
        for error in errors:
            assert isinstance(error.get("message"), str), where
            code = error["extensions"]["code"]
            assert isinstance(code, str) and code, where
            assert code != "INTERNAL_SERVER_ERROR", where
            assert "debug" not in error["extensions"], where
    if status >= 500:
        assert status == 504 and {e["extensions"]["code"] for e in errors or ()} == {"TIMEOUT"}, where
    for leak in LEAKS:
        assert leak not in response.text or leak in sent, f"{leak!r} leaked: {where}"
    return sorted({e["extensions"]["code"] for e in errors}) if errors else ["data"]


@pytest.fixture(scope="module")
def harness(sqlite_template: Path, tmp_path_factory: pytest.TempPathFactory) -> Iterator[Harness]:
    path = tmp_path_factory.mktemp("fuzz") / "bff.db"
    shutil.copy(sqlite_template, path)
    h = Harness(f"sqlite:///{path}")
    try:
        # Warm up (imports, pools, the reference operations' caches) before the memory baseline.
        for op in REFERENCE_OPS:
            body = {"query": op["query"], "variables": op.get("variables") or {}}
            h.send("warmup", "POST", headers=_headers(GRAPHQL_RESPONSE, h.tokens[0]), content=_json(body))
        h.rss_before = h.rss()
        yield h
    finally:
        h.close()


def _json(value: Any) -> bytes:
    # json (not orjson): lone surrogates go out as \ud800 escapes, as a broken client would send them.
    return json.dumps(value, ensure_ascii=True).encode()


def _headers(accept: str | None, token: str | None = None, **extra: str) -> dict[str, str]:
    headers = {"content-type": JSON}
    if accept is not None:
        headers["accept"] = accept
    if token is not None:
        headers["authorization"] = f"Bearer {token}"
    headers.update(extra)
    return headers


# -- the schema ----------------------------------------------------------------------------------
#
# Generators take a `random.Random` that hypothesis seeds (`st.randoms(use_true_random=True)`):
# one hypothesis draw per example instead of hundreds keeps 10,000 cases within minutes, and
# `derandomize=True` makes the seeds, so the cases, the same on every run.

SCHEMA = build_schema((ROOT / "schema.graphql").read_text())
REFERENCE_OPS: list[dict[str, Any]] = [
    json.loads(p.read_text()) for p in sorted((ROOT / "tests" / "ops").glob("*.json"))
]
COMPOSITE = sorted(
    name
    for name, type_ in SCHEMA.type_map.items()
    if isinstance(type_, GraphQLObjectType | GraphQLInterfaceType) and not name.startswith("__")
)
FIELDS: dict[str, dict[str, GraphQLField]] = {
    name: dict(SCHEMA.type_map[name].fields)  # type: ignore[attr-defined]
    for name in COMPOSITE
}
FIELD_NAMES = sorted({f for fields in FIELDS.values() for f in fields})
ARG_NAMES = sorted({a for fields in FIELDS.values() for f in fields.values() for a in f.args})
TYPE_NAMES = [
    *sorted(n for n in SCHEMA.type_map if not n.startswith("__")),
    "Nope",
    "Int!",
    "[Int]",
    "[ID!]!",
]
BOGUS_NAMES = ["nope", "a", "_", "x1", "__schema", "__type", "__typename", "id", "node", "Query", "true"]
HUGE_INTS = [2**31, -(2**31) - 1, 2**53 + 1, 2**63, -(2**63) - 1, 10**30, 10**400, 0, -1, 101, 2**31 - 1]
# Characters that break naive code: NUL, controls, quotes, escapes, right-to-left marks, the
# replacement character, astral planes, a byte-order mark, GraphQL punctuation.
WEIRD_CHARS = [
    "\x00", "\x01", "\n", "\r", "\t", '"', "\\", "'", "\u202e", "\ufffd", "\U0001f600", "\ufeff",
    "é", "Ж", "中", "{", "}", "$", "@", "#", "%", "&", "=", "?", "/", " ",
]  # fmt: skip
VARIABLE_NAMES = ["v0", "v1", "v2", "first", "id", "x"]
OBJECT_KEYS = ["query", "variables", "id", "first", "", "__proto__", "constructor", "a" * 300]
GRAMMAR_TOKENS = [
    "{", "}", "(", ")", "[", "]", ":", "$", "@", "!", "=", "...", ",", "|", "&", '"', '"""', "#",
    "query", "mutation", "subscription", "fragment", "on", "null", "true", "\x00", "\ufeff", "é",
    "999999999999999999999999", "1e999", "-0", "0x1F", "__typename", "__schema { types { name } }",
    "@include(if: $v0)", "@skip(if: true)", "@defer", "...F0", "fragment F0 on Query { ...F0 }",
]  # fmt: skip
TOKEN = re.compile(r"\s+|[_A-Za-z][_0-9A-Za-z]*|-?\d+(?:\.\d+)?|\.\.\.|\"(?:[^\"\\]|\\.)*\"|.", re.DOTALL)


class Gen:
    """Random building blocks for documents, JSON values, text and bytes."""

    def __init__(self, rng: random.Random) -> None:
        self.rng = rng

    def chance(self, p: float) -> bool:
        return self.rng.random() < p

    def pick(self, options: Sequence[T]) -> T:
        return options[self.rng.randrange(len(options))]

    def int(self, low: int, high: int) -> int:
        return self.rng.randint(low, high)

    def char(self) -> str:
        roll = self.rng.random()
        if roll < 0.3:
            return self.pick(WEIRD_CHARS)
        if roll < 0.8:
            return chr(self.rng.randint(0x20, 0x7E))
        code = self.rng.randint(0x80, 0x10FFFF)
        return chr(code) if not 0xD800 <= code <= 0xDFFF else "\ufffd"

    def text(self, size: int = 24) -> str:
        if self.chance(0.02):
            return self.char() * self.int(1_000, 20_000)  # long
        return "".join(self.char() for _ in range(self.int(0, size)))

    def ident(self) -> str:
        first = self.pick("_abcdefghijklmnopqrstuvwxyzABCDEFGHIJKLMNOPQRSTUVWXYZ")
        return first + "".join(self.pick("_abcxyzABC0123456789") for _ in range(self.int(0, 8)))

    def number(self) -> int | float:
        roll = self.int(0, 3)
        if roll == 0:
            return self.pick(HUGE_INTS)
        if roll == 1:
            return self.rng.uniform(-1e300, 1e300) if self.chance(0.5) else self.rng.random()
        return self.int(-1000, 1000)

    def json(self, depth: int = 0) -> Any:
        roll = self.int(0, 9 if depth < 3 else 6)
        if roll == 0:
            return None
        if roll == 1:
            return self.chance(0.5)
        if roll in (2, 3):
            return self.number()
        if roll in (4, 5, 6):
            return self.text()
        if roll in (7, 8):
            return [self.json(depth + 1) for _ in range(self.int(0, 4))]
        keys = [self.pick(OBJECT_KEYS) if self.chance(0.3) else self.text(8) for _ in range(self.int(0, 4))]
        return {k: self.json(depth + 1) for k in keys}

    def id_value(self) -> str:
        roll = self.int(0, 5)
        if roll <= 1:
            return str(self.int(1, 250))
        if roll == 2:
            type_name = self.pick(["User", "Post", "Game", "ChatRoom", "Message", "Secret", "__class__", ""])
            pk = self.pick([str(self.int(-5, 250)), str(self.pick(HUGE_INTS)), self.text(6)])
            return base64.b64encode(f"{type_name}:{pk}".encode()).decode()
        if roll == 3:
            return self.pick(["0", "-3", "9" * 25, "١٢٣", "1.5", " 1", "0x10"])
        return self.text(12)


# -- documents -----------------------------------------------------------------------------------


def graphql_string(text: str) -> str:
    return json.dumps(text, ensure_ascii=False)  # GraphQL's escapes are JSON's


class DocumentGen(Gen):
    """One grammar-aware document from the schema.

    A strict document (about two in three) makes only the schema's choices: known fields with
    their required arguments of the right type, variables declared as they are used, fragments
    on fitting types, without cycles; most of those run. A sloppy one also draws unknown
    fields and arguments, values and variables of any type, fragments on any type and spreads
    that cycle, directives anywhere, selections missing or on leaves.
    """

    def __init__(self, rng: random.Random) -> None:
        super().__init__(rng)
        self.sloppy = self.chance(0.35)
        self.variables: dict[str, str] = {}  # name -> declared type
        self.variable_types: dict[str, GraphQLInputType | None] = {}
        self.fragments: dict[str, str] = {}  # name -> type condition
        self.max_depth = self.int(1, 16) if self.sloppy or self.chance(0.1) else self.int(1, 7)
        # Selections left to draw: a deep document is a narrow one.
        self.budget = self.int(3, 30)
        self.aliases = 0
        self.in_fragment = False

    def mistake(self, p: float) -> bool:
        return self.sloppy and self.chance(p)

    def variable(self, type_: GraphQLInputType | None) -> str:
        if self.sloppy:
            name = self.pick(VARIABLE_NAMES)
        else:  # one name per type, so a reuse has the same type
            name = re.sub(r"\W", "_", str(type_)) + str(self.int(0, 1))
        if name not in self.variables and not self.mistake(0.05):  # else: used, never declared
            declared = self.pick(TYPE_NAMES) if type_ is None or self.mistake(0.2) else str(type_)
            self.variables[name] = declared
            self.variable_types[name] = type_
        return f"${name}"

    def literal(self, type_: GraphQLInputType | None, depth: int = 0) -> str:
        """A value for `type_`: a literal or a variable of that type, or (sloppy) anything at all."""
        roll = self.int(0, 9)
        if roll <= 1 and depth == 0:
            return self.variable(type_)
        if type_ is not None and (roll <= 7 or not self.sloppy):
            return self.typed_literal(type_, depth)
        return self.any_literal(depth)

    def typed_literal(self, type_: GraphQLInputType, depth: int) -> str:
        if isinstance(type_, GraphQLNonNull):
            return self.typed_literal(type_.of_type, depth)
        if isinstance(type_, GraphQLList):
            items = self.int(0, 4 if depth < 2 else 1)
            return "[" + ", ".join(self.literal(type_.of_type, depth + 1) for _ in range(items)) + "]"
        name = type_.name if isinstance(type_, GraphQLScalarType) else ""
        if name == "Int":
            return str(
                self.int(0, 120) if self.chance(0.8) else self.pick(INT32_EDGES + HUGE_INTS * self.sloppy)
            )
        if name == "Boolean":
            return self.pick(["true", "false"])
        if name == "ID":
            value = self.id_value()
            return value if value.isdigit() and self.chance(0.5) else graphql_string(value)
        return graphql_string(self.text())

    def any_literal(self, depth: int) -> str:
        roll = self.int(0, 8)
        if roll == 0:
            return str(self.pick(HUGE_INTS))
        if roll == 1:
            return repr(self.rng.uniform(-1e300, 1e300) if self.chance(0.5) else self.rng.random())
        if roll == 2:
            return graphql_string(self.text())
        if roll == 3:
            return '"""' + self.text().replace('"""', "") + '"""'
        if roll == 4:
            return self.pick(["true", "false", "null", "SNAPSHOT", "JOINED", "NOPE"])
        if roll == 5 and depth < 3:
            return "[" + ", ".join(self.any_literal(depth + 1) for _ in range(self.int(0, 3))) + "]"
        if roll == 6 and depth < 3:
            keys = [self.ident() for _ in range(self.int(0, 3))]
            return "{" + ", ".join(f"{k}: {self.any_literal(depth + 1)}" for k in keys) + "}"
        if roll == 7:
            return f"${self.ident()}"
        return str(self.int(-1000, 1000))

    def directives(self) -> str:
        if not self.chance(0.1):
            return ""
        out = []
        for _ in range(self.int(1, 3) if self.sloppy else 1):
            if self.sloppy:
                name = self.pick(["include", "skip", "include", "skip", "deprecated", "defer", "nope"])
            else:
                name = self.pick(["include", "skip"])
            if self.sloppy and self.chance(0.2):
                out.append(f"@{name}")
            else:
                out.append(f"@{name}(if: {self.literal(BOOLEAN)})")
        return " " + " ".join(out)

    def arguments(self, field: GraphQLField | None) -> str:
        parts = []
        for name, argument in (field.args if field is not None else {}).items():
            required = isinstance(argument.type, GraphQLNonNull) and argument.default_value is Undefined
            if (required and not self.mistake(0.1)) or self.chance(0.6):
                parts.append(f"{name}: {self.literal(argument.type)}")
        if self.mistake(0.1):
            parts.append(f"{self.pick([*ARG_NAMES, 'nope'])}: {self.any_literal(0)}")
        if parts and self.mistake(0.05):
            parts.append(parts[0])  # the same argument twice
        return f"({', '.join(parts)})" if parts else ""

    def conditions(self, type_name: str) -> list[str]:
        """Type conditions a fragment may have in a selection on `type_name`."""
        if self.sloppy:
            return [type_name, type_name, *COMPOSITE]
        type_ = SCHEMA.type_map[type_name]
        if isinstance(type_, GraphQLInterfaceType):
            return [type_name, *(t.name for t in SCHEMA.get_possible_types(type_))]
        if isinstance(type_, GraphQLObjectType):
            return [type_name, *(i.name for i in type_.interfaces)]
        return [type_name]

    def selection_set(self, type_name: str, depth: int) -> str:
        fields = FIELDS.get(type_name, {})
        selections = []
        for _ in range(self.int(1, 4) if self.budget > 0 else 1):
            self.budget -= 1
            roll = self.int(0, 19)
            if roll == 0:
                selections.append("__typename")
            elif roll == 1 and depth < self.max_depth:
                condition = self.pick(self.conditions(type_name))
                body = self.selection_set(condition, depth + 1)
                selections.append(f"... on {condition}{self.directives()} {body}")
            elif roll == 2 and depth < self.max_depth:
                selections.append(f"...{self.directives()} {self.selection_set(type_name, depth + 1)}")
            elif roll == 3 and (self.sloppy or not self.in_fragment):
                selections.append(self.spread(type_name))
            elif (roll == 4 and self.sloppy) or not fields:
                selections.append(self.pick([*FIELD_NAMES, *BOGUS_NAMES]) + self.arguments(None))
            else:
                name = self.pick(sorted(fields))
                selections.append(self.field(name, fields[name], depth))
        return "{ " + " ".join(selections) + " }"

    def spread(self, type_name: str) -> str:
        condition = self.pick(self.conditions(type_name))
        name = f"F{self.int(0, 3)}" if self.sloppy else f"{condition}{self.int(0, 1)}"
        if name not in self.fragments and not self.mistake(0.2):  # else: never defined
            self.fragments[name] = condition
        return f"...{name}{self.directives()}"

    def field(self, name: str, field: GraphQLField, depth: int) -> str:
        alias = ""
        # Strict: a field with arguments always gets its own alias (no conflicting merges).
        if (field.args and not self.sloppy) or self.chance(0.2):
            self.aliases += 1
            alias = f"a{self.aliases}: " if not self.sloppy else f"{self.ident()}: "
        text = alias + name + self.arguments(field) + self.directives()
        named = get_named_type(field.type)
        composite = isinstance(named, GraphQLObjectType | GraphQLInterfaceType)
        if composite and depth < self.max_depth and self.budget > 0 and not self.mistake(0.05):
            text += " " + self.selection_set(named.name, depth + 1)
        elif composite and (not self.sloppy or self.chance(0.5)):
            text += " { __typename }"
        elif not composite and self.mistake(0.03):
            text += " { id }"  # a selection on a leaf
        return text

    def json_for(self, type_: GraphQLInputType) -> Any:
        if isinstance(type_, GraphQLNonNull):
            return self.json_for(type_.of_type)
        if isinstance(type_, GraphQLList):
            if self.chance(0.2):
                return self.json_for(type_.of_type)  # a single item where a list goes: coerced
            return [self.json_for(type_.of_type) for _ in range(self.int(0, 5))]
        name = type_.name if isinstance(type_, GraphQLScalarType) else ""
        if name == "Int":
            return self.int(0, 120) if self.chance(0.8) else self.pick(INT32_EDGES + HUGE_INTS * self.sloppy)
        if name == "Boolean":
            return self.chance(0.5)
        if name == "ID":
            return self.id_value() if self.chance(0.8) else self.int(1, 250)
        return self.text()

    def document(self) -> tuple[str, dict[str, Any], str | None]:
        """(document, variables, operationName)."""
        kind = self.pick(["query"] * 14 + ["mutation"] * 4 + ["subscription"])
        root = {"query": "Query", "mutation": "Mutation", "subscription": "Subscription"}[kind]
        selection = self.selection_set(root, 1)
        name = self.pick(["Op", "Home", "Other", "", ""])
        # Fragments come after the operation; sloppy ones may spread each other (cycles included).
        self.in_fragment = True
        fragments, done = [], set()
        while len(done) < len(self.fragments):
            fragment, condition = next((n, c) for n, c in self.fragments.items() if n not in done)
            done.add(fragment)
            fragments.append(f"fragment {fragment} on {condition} {self.selection_set(condition, 2)}")
        header = ""
        if self.variables or name or kind != "query" or self.chance(0.5):
            definitions = []
            for variable, declared in self.variables.items():
                default = ""
                if self.chance(0.15) and not declared.endswith("!"):
                    default = (
                        f" = {self.typed_literal(t, 1) if (t := self.variable_types[variable]) else 'null'}"
                    )
                definitions.append(f"${variable}: {declared}{default}")
            if self.mistake(0.1):
                definitions.append(f"$unused: {self.pick(TYPE_NAMES)}")
            header = f"{kind} {name}" + (f"({', '.join(definitions)})" if definitions else "")
            if self.sloppy:
                header += self.directives()
        parts = [f"{header} {selection}".strip(), *fragments]
        operation_name = self.pick([None, None, name or None]) if not self.sloppy else None
        if self.chance(0.1):
            parts.append(self.pick(["query Other { __typename }", "{ __typename }", "mutation M { x }"]))
        if self.sloppy:
            operation_name = self.pick([None, None, None, name or None, "Other", "Nope", ""])
        elif len(parts) > 1 + len(fragments) and name:
            operation_name = name
        text = " ".join(parts)
        if self.mistake(0.4):
            text = mutated_text(self, text)  # almost valid
        variables: dict[str, Any] = {}
        for variable, type_ in self.variable_types.items():
            roll = self.int(0, 9)
            if (roll < 6 or not self.sloppy) and type_ is not None and not self.mistake(0.1):
                variables[variable] = self.json_for(type_)
            elif roll < 9:
                variables[variable] = self.json()
        if self.mistake(0.2):
            variables[self.text(8)] = self.json()
        return text, variables, operation_name


BOOLEAN = GraphQLNonNull(SCHEMA.type_map["Boolean"])  # type: ignore[arg-type]
INT32_EDGES = [0, -1, 101, 2**31 - 1, -(2**31)]


# -- mutations of text and bytes -----------------------------------------------------------------


def mutated_text(gen: Gen, text: str) -> str:
    """`text` with 1 to 4 edits: character flips, truncations, duplications, token swaps and inserts."""
    for _ in range(gen.int(1, 4)):
        edit = gen.int(0, 6)
        size = len(text)
        if edit == 0 and size:  # flip a character
            i = gen.int(0, size - 1)
            text = text[:i] + (gen.pick(GRAMMAR_TOKENS) if gen.chance(0.5) else gen.char()) + text[i + 1 :]
        elif edit == 1 and size:  # truncate
            text = text[: gen.int(0, size - 1)]
        elif edit == 2 and size:  # duplicate a slice, up to 5 times
            i = gen.int(0, size - 1)
            j = gen.int(i, min(size, i + 200))
            text = text[:j] + text[i:j] * gen.int(1, 5) + text[j:]
        elif edit in (3, 4):  # swap two tokens, or replace one
            tokens = TOKEN.findall(text)
            if len(tokens) >= 2:
                i, j = gen.int(0, len(tokens) - 1), gen.int(0, len(tokens) - 1)
                if edit == 3:
                    tokens[i], tokens[j] = tokens[j], tokens[i]
                else:
                    tokens[i] = gen.pick(GRAMMAR_TOKENS + FIELD_NAMES)
                text = "".join(tokens)
        elif edit == 5:  # insert a token
            i = gen.int(0, size)
            text = text[:i] + " " + gen.pick(GRAMMAR_TOKENS) + " " + text[i:]
        elif size:  # delete a slice
            i = gen.int(0, size - 1)
            text = text[:i] + text[gen.int(i, size) :]
    return text


def mutated_bytes(gen: Gen, data: bytes) -> bytes:
    out = bytearray(data)
    for _ in range(gen.int(1, 4)):
        if not out:
            break
        i = gen.int(0, len(out) - 1)
        edit = gen.int(0, 3)
        if edit == 0:
            out[i] = gen.int(0, 255)
        elif edit == 1:
            del out[i:]
        elif edit == 2:
            out[i:i] = gen.rng.randbytes(gen.int(1, 8))
        else:
            out[i] ^= 1 << gen.int(0, 7)
    return bytes(out)


# -- requests ------------------------------------------------------------------------------------

GOOD_ACCEPTS = [GRAPHQL_RESPONSE, GRAPHQL_RESPONSE, JSON, "*/*", None, f"{GRAPHQL_RESPONSE};q=0.9, {JSON}"]
ACCEPTS = [
    *GOOD_ACCEPTS,
    "application/*;q=0.5",
    "text/html",
    "text/plain",
    "application/json;q=abc",
    "application/json;q=0",
    "application/json;q=1e999",
    ";;,,",
    "application/json; charset=utf-8, text/html",
]
CONTENT_TYPES = [
    JSON,
    JSON,
    JSON,
    "application/json; charset=utf-8",
    "APPLICATION/JSON",
    "application/graphql",
    "application/graphql-response+json",
    "text/plain",
    "multipart/form-data; boundary=x",
    "application/x-www-form-urlencoded",
    "",
    ";",
]
PERSISTED_HASHES = [hashlib.sha256(op["query"].encode()).hexdigest() for op in REFERENCE_OPS]
REFERENCE_QUERIES = [op["query"] for op in REFERENCE_OPS] + ["{ __typename }", "{ games { id name } }"]


def latin1(gen: Gen, size: int = 40) -> str:
    return "".join(chr(gen.pick([gen.int(0x20, 0x7E), gen.int(0xA0, 0xFF)])) for _ in range(gen.int(0, size)))


def authorization(gen: Gen, tokens: list[str]) -> str | None:
    roll = gen.int(0, 9)
    if roll < 4:
        return None
    token = gen.pick(tokens)
    if roll < 7:
        return f"Bearer {token}"
    return gen.pick(
        [
            "Bearer",
            "Bearer ",
            "Basic dXNlcjpwYXNz",
            f"bearer {token}",
            f"Bearer {token[:-3]}",
            f"Bearer {token}x",
            f"Bearer {token.replace('.', '..', 1)}",
            "Bearer a.b.c",
            "Bearer " + "A" * 5000,
            "Bearer " + latin1(gen),
            latin1(gen),
        ]
    )


def persisted_garbage(gen: Gen) -> Any:
    if gen.chance(0.3):
        return gen.json()
    out: dict[str, Any] = {}
    if gen.chance(0.8):
        out["version"] = 1 if gen.chance(0.7) else gen.json()
    if gen.chance(0.8):
        out["sha256Hash"] = gen.pick(
            [
                gen.rng.randbytes(32).hex(),
                gen.pick(PERSISTED_HASHES),
                gen.rng.randbytes(32).hex().upper(),
                gen.json(),
            ]
        )
    return out


def random_body(gen: Gen) -> bytes:
    kind = gen.int(0, 5)
    if kind == 0:
        return _json(gen.json())
    if kind == 1:
        return gen.rng.randbytes(gen.int(0, 200))
    payload: dict[str, Any] = {}
    candidates = {
        "query": gen.pick(REFERENCE_QUERIES) if gen.chance(0.5) else gen.json(),
        "variables": gen.json(),
        "operationName": gen.pick(["Home", "SendMessage", None]) if gen.chance(0.5) else gen.json(),
        "extensions": {"persistedQuery": persisted_garbage(gen)} if gen.chance(0.6) else gen.json(),
    }
    for key, value in candidates.items():
        if gen.chance(0.7):
            payload[key] = value
    if gen.chance(0.2):
        payload[gen.text(8)] = gen.json()
    content = _json(payload)
    return mutated_bytes(gen, content) if kind == 5 else content


def random_url(gen: Gen) -> str:
    if gen.chance(0.25):  # raw, possibly broken percent-encoding
        raw = "".join(gen.pick('abcxyz{}%&=+;$@!:,[]"0123456789AF_. ') for _ in range(gen.int(0, 80)))
        return "/graphql?" + quote(raw, safe='%&=+;$@!:,[]{}"')
    params: dict[str, str] = {}
    for key in ("query", "variables", "extensions", "operationName", "extra"):
        if gen.chance(0.6):
            roll = gen.int(0, 2)
            value = (
                gen.pick(REFERENCE_QUERIES)
                if roll == 0
                else json.dumps(gen.json())
                if roll == 1
                else gen.text()
            )
            if key == "extensions" and gen.chance(0.5):
                value = json.dumps({"persistedQuery": persisted_garbage(gen)})
            params[key] = value
    url = _url(params)
    return url if len(url) < MAX_URL_CHARS else url[:MAX_URL_CHARS]


def _url(params: dict[str, str]) -> str:
    return "/graphql?" + urlencode(params, quote_via=quote) if params else "/graphql"


SEEDS = st.randoms(use_true_random=True)


@settings(FUZZ, max_examples=DOCUMENT_EXAMPLES)
@given(rng=SEEDS)
def test_random_documents(harness: Harness, rng: random.Random) -> None:
    gen = DocumentGen(rng)
    document, variables, operation_name = gen.document()
    headers = _headers(gen.pick(GOOD_ACCEPTS))
    auth = authorization(gen, harness.tokens)
    if auth is not None:
        headers["authorization"] = auth
    if gen.chance(0.1):
        headers["idempotency-key"] = gen.pick(["k1", "k2", "k3", latin1(gen)])
    if gen.chance(0.2):  # over GET
        params = {"query": document, "variables": json.dumps(variables)}
        if operation_name is not None:
            params["operationName"] = operation_name
        url = _url(params)
        if len(url) < MAX_URL_CHARS:
            del headers["content-type"]
            harness.send("documents", "GET", url, headers=headers)
            return
    body: dict[str, Any] = {"query": document, "variables": variables}
    if operation_name is not None:
        body["operationName"] = operation_name
    harness.send("documents", "POST", headers=headers, content=_json(body))


@settings(FUZZ, max_examples=MUTATED_EXAMPLES)
@given(op=st.sampled_from(REFERENCE_OPS), edit=st.integers(0, 9), rng=SEEDS)
def test_mutated_reference_operations(
    harness: Harness, op: dict[str, Any], edit: int, rng: random.Random
) -> None:
    gen = Gen(rng)
    query: str = op["query"]
    variables: dict[str, Any] = dict(op.get("variables") or {})
    if edit < 6:  # the document
        query = mutated_text(gen, query)
    if 4 <= edit < 8:  # the variables
        for _ in range(gen.int(1, 3)):
            key = gen.pick([*variables, "extra"])
            if gen.chance(0.25):
                variables.pop(key, None)
            else:
                variables[key] = gen.json()
    body: dict[str, Any] = {"query": query, "variables": variables, "operationName": op.get("operationName")}
    if gen.chance(0.1):
        digest = hashlib.sha256(query.encode("utf-8", "surrogatepass")).hexdigest()
        body["extensions"] = {"persistedQuery": {"version": 1, "sha256Hash": digest}}
    content = _json(body)
    if edit >= 8:  # the JSON bytes
        content = mutated_bytes(gen, content)
    headers = _headers(gen.pick(ACCEPTS))
    auth = authorization(gen, harness.tokens)
    if auth is not None:
        headers["authorization"] = auth
    if gen.chance(0.15):
        headers["idempotency-key"] = gen.pick(["k1", "k2", "mutated"])
    harness.send("mutated", "POST", headers=headers, content=content)


@settings(FUZZ, max_examples=HTTP_EXAMPLES)
@given(
    method=st.sampled_from(
        ["POST"] * 6 + ["GET"] * 4 + ["PUT", "PATCH", "DELETE", "OPTIONS", "HEAD", "TRACE", "BREW"]
    ),
    rng=SEEDS,
)
def test_random_http_requests(harness: Harness, method: str, rng: random.Random) -> None:
    gen = Gen(rng)
    headers: dict[str, str] = {}
    candidates = {
        "accept": lambda: gen.pick(ACCEPTS) or latin1(gen),
        "authorization": lambda: authorization(gen, harness.tokens),
        "idempotency-key": lambda: gen.pick(["k1", "k2", latin1(gen)]),
        "if-none-match": lambda: gen.pick(["*", 'W/"x"', '"abc"', '"x", "y"', latin1(gen)]),
        "accept-encoding": lambda: gen.pick(
            ["gzip", "br", "br;q=0, gzip;q=abc", "*", "zstd", "identity;q=0", latin1(gen)]
        ),
        "x-request-id": lambda: latin1(gen),
        "x-forwarded-for": lambda: latin1(gen),
        "apollo-require-preflight": lambda: "true",
        "origin": lambda: gen.pick(["https://evil.example", "null"]),
    }
    for name, value in candidates.items():
        if gen.chance(0.25):
            drawn = value()
            if drawn is not None:
                headers[name] = drawn
    if method in ("GET", "HEAD"):
        if gen.chance(0.1):
            headers["content-type"] = gen.pick(CONTENT_TYPES)
        harness.send("http", method, random_url(gen), headers=headers)
        return
    headers["content-type"] = gen.pick(CONTENT_TYPES) if gen.chance(0.9) else latin1(gen)
    harness.send("http", method, headers=headers, content=random_body(gen))


# -- totals and memory ---------------------------------------------------------------------------


def test_totals_and_memory(harness: Harness) -> None:
    """After the strategies (file order): enough requests, and memory that stays bounded.

    The run fills every bounded cache (documents, plans, persisted queries, idempotency keys).
    Then 400 more requests with new documents, traced: with the caches full, what they add must
    be evicted, so the traced memory barely moves; a cache or store without a bound grows here.
    """
    fuzzed = harness.sent["documents"] + harness.sent["mutated"] + harness.sent["http"]
    if not all(harness.sent[s] for s in ("documents", "mutated", "http")):
        pytest.skip("run the whole module: the strategies above send the requests counted here")
    growth = harness.rss() - harness.rss_before
    seconds = {k: round(v, 1) for k, v in harness.seconds.items()}
    print(f"fuzz: {fuzzed} requests {dict(harness.sent)} in {seconds} s, statuses {dict(harness.statuses)}")
    print(f"fuzz: RSS +{growth / 2**20:.1f} MB; answers: {sorted(harness.codes.items())}")
    assert fuzzed >= MIN_REQUESTS, harness.sent
    # RSS also counts hypothesis' own bookkeeping and the caches filling up: a coarse bound.
    assert growth < MAX_RSS_GROWTH_BYTES, f"RSS grew by {growth >> 20} MB over {fuzzed} requests"

    def probe(seed: int) -> None:
        # A new document each time (a new entry in every document cache), a new persisted
        # query, a new idempotency key.
        query = f"query Probe{seed} {{ games {{ id name }} p{seed}: viewer {{ id }} }}"
        body: dict[str, Any] = {"query": query}
        if seed % 2:
            digest = hashlib.sha256(query.encode()).hexdigest()
            body["extensions"] = {"persistedQuery": {"version": 1, "sha256Hash": digest}}
        headers = _headers(GRAPHQL_RESPONSE, harness.tokens[seed % len(harness.tokens)])
        response = harness.send("probe", "POST", headers=headers, content=_json(body))
        assert response.status_code == 200 and "errors" not in response.json(), response.text
        headers["idempotency-key"] = f"probe-{seed}"
        mutation = f'mutation Score{seed} {{ submitScore(gameId: "1", points: 1) {{ points }} }}'
        harness.send("probe", "POST", headers=headers, content=_json({"query": mutation}))

    # Traced from the start: memory allocated before tracemalloc starts is not seen when freed.
    # The first requests fill the caches (DOCUMENT_CACHE_SIZE documents each); once they are
    # full, every new entry pushes an old one out and the traced total stays flat.
    gc.collect()
    tracemalloc.start()
    try:
        for seed in range(1_000_000, 1_000_000 + harness.settings.document_cache_size + 50):
            probe(seed)
        gc.collect()
        before = tracemalloc.get_traced_memory()[0]
        for seed in range(2_000_000, 2_000_200):
            probe(seed)
        gc.collect()
        added = tracemalloc.get_traced_memory()[0] - before
    finally:
        tracemalloc.stop()
    print(f"fuzz: 400 more requests kept {added / 2**20:.2f} MB")
    assert added < MAX_TRACED_GROWTH_BYTES, f"400 requests kept {added >> 20} MB: an unbounded cache?"
    # Each in-process store, at or below its bound.
    http: GraphQLHTTP = harness.app.state.http
    size = harness.settings.document_cache_size
    assert len(http.documents._cache) <= size
    assert http.plans is not None and len(http.plans._plans) <= size
    assert len(http.edge.cache._cache) <= size
    assert len(http.edge.idempotency._entries) <= 10_000  # type: ignore[attr-defined]
    assert len(http.edge.limiter._tat) <= 100_000  # type: ignore[attr-defined]
    persisted = harness.app.state.services.persisted
    assert len(persisted._lru) <= max(harness.settings.persisted_query_cache_size, 1)
    assert len(persisted._local) <= max(harness.settings.persisted_query_cache_size, 1_000)


# -- regressions: minimal examples the fuzzer found ----------------------------------------------


def test_overlapping_fields_validation_is_cheap(harness: Harness) -> None:
    """300 repeated selections (9 KB) cost graphql-core 2 s of validation: now refused in well under 1 s."""
    for document in (
        "{ games { " + "leaderboard { user { id } } " * 300 + "} }",
        "{ " + "games { leaderboard { user { id } } } " * 270 + "}",
    ):
        started = time.perf_counter()
        response = harness.send(
            "regression", "POST", headers=_headers(GRAPHQL_RESPONSE), content=_json({"query": document})
        )
        assert time.perf_counter() - started < 1.0
        assert response.status_code == 400
        assert response.json()["errors"][0]["extensions"]["code"] == "GRAPHQL_VALIDATION_FAILED"
    # A real screen's document is far below the budget.
    home = REFERENCE_OPS[[op["name"] for op in REFERENCE_OPS].index("Home")]
    body = {"query": home["query"], "variables": home["variables"]}
    response = harness.send(
        "regression", "POST", headers=_headers(GRAPHQL_RESPONSE, harness.tokens[0]), content=_json(body)
    )
    assert response.status_code == 200 and "errors" not in response.json(), response.text
