"""py-spy's raw samples of a bff worker, summed: what bench/profile_home.sh prints.

    python -m bench.profile_summary .tmp/profile-home.raw [--top 30]

Each line of py-spy's raw format is one stack (frames from the outermost, `;`-separated) and
its sample count. Printed: the functions with the most samples of their own (a C call counts
for the Python line that made it), then each sample given to one layer of a request: the layer
of the innermost frame that belongs to one (a dataclass's generated `__init__` called by
`Post.from_row` counts for the schema types), so the shares add up to 100%.
"""

from __future__ import annotations

import argparse
from collections import Counter
from pathlib import Path

# A layer: a label and the file marks (in py-spy's "function (file:line)") of its frames.
LAYERS: list[tuple[str, tuple[str, ...]]] = [
    ("uvicorn (HTTP parsing, writing)", ("uvicorn/",)),
    ("Starlette", ("starlette/",)),
    (
        "bff's HTTP layer (middleware, auth, documents, cost, caching headers, metrics, logs)",
        (
            "bff/middleware.py",
            "bff/graphql_http.py",
            "bff/compression.py",
            "bff/http_cache.py",
            "bff/auth.py",
            "bff/documents.py",
            "bff/cost.py",
            "bff/edge.py",
            "bff/csrf.py",
            "bff/persisted.py",
            "bff/observability.py",
            "prometheus_client/",
            "structlog/",
            "jwt/",
            "uuid.py",
        ),
    ),
    (
        "the plan's execution (bff/compiled*, generated code, graphql-core, strawberry)",
        ("bff/compiled", "<bff.codegen", "bff/codegen", "graphql/", "strawberry/"),
    ),
    ("schema types (schema/: objects built from rows)", ("schema/",)),
    ("resolvers and loaders (resolvers/, aiodataloader)", ("resolvers/", "aiodataloader/")),
    ("the cache layers (bff/cache*)", ("bff/cache",)),
    ("the database client (bff/db.py, the lender, asyncpg)", ("bff/db.py", "bff/pg_lender.py", "asyncpg/")),
    ("the event loop (asyncio, uvloop)", ("asyncio/", "uvloop", "selectors.py")),
]


def layer_of(frames: list[str]) -> str:
    for frame in reversed(frames):  # the innermost first
        for label, marks in LAYERS:
            if any(mark in frame for mark in marks):
                return label
    return "other"


def frame_name(frame: str) -> str:
    """ "fields (<bff.codegen Post>:37)" -> "fields (<bff.codegen Post>)"."""
    head, _, place = frame.rpartition(" (")
    file, _, _line = place.rstrip(")").rpartition(":")
    return f"{head} ({file or place.rstrip(')')})"


def main() -> None:
    parser = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    parser.add_argument("raw", type=Path)
    parser.add_argument("--top", type=int, default=30)
    args = parser.parse_args()
    own: Counter[str] = Counter()
    layers: Counter[str] = Counter()
    total = 0
    for line in args.raw.read_text().splitlines():
        stack, _, count = line.rpartition(" ")
        if not stack or not count.isdigit():
            continue
        n = int(count)
        total += n
        frames = stack.split(";")
        own[frame_name(frames[-1])] += n
        layers[layer_of(frames)] += n
    if not total:
        raise SystemExit("no samples")
    print(f"{total} samples")
    print(f"\nfunctions with the most samples of their own (top {args.top}):")
    for name, n in own.most_common(args.top):
        print(f"{100 * n / total:5.1f}%  {name}")
    print("\nsamples by layer (the innermost frame's):")
    for label, n in layers.most_common():
        print(f"{100 * n / total:5.1f}%  {label}")


if __name__ == "__main__":
    main()
