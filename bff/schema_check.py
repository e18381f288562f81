"""Breaking-change guard for schema.graphql.

Every version of schema.graphql in git history is compared with the one before it, and the
schema the code builds now with the committed file. Each breaking change (graphql-core's
`find_breaking_changes`: a removed field, a changed type…) must be acknowledged in
schema-changes.toml with a reason, or the check fails: phones in the field still send
yesterday's operations.
"""

from __future__ import annotations

import itertools
import subprocess
import tomllib
from dataclasses import dataclass
from pathlib import Path

from graphql import build_schema, find_breaking_changes

ROOT = Path(__file__).resolve().parent.parent
SDL_FILE = "schema.graphql"
ACK_FILE = "schema-changes.toml"


@dataclass(frozen=True)
class Breaking:
    between: str
    description: str


def export_sdl() -> str:
    from schema import schema

    return schema.as_str().strip() + "\n"


def _git(*args: str) -> str:
    return subprocess.run(["git", *args], cwd=ROOT, check=True, capture_output=True, text=True).stdout


def committed_versions() -> list[tuple[str, str]]:
    """(commit, SDL) for every commit that changed schema.graphql, oldest first."""
    try:
        commits = _git("log", "--format=%H", "--reverse", "--", SDL_FILE).split()
    except (subprocess.CalledProcessError, FileNotFoundError):
        return []
    versions = []
    for commit in commits:
        try:
            versions.append((commit[:10], _git("show", f"{commit}:{SDL_FILE}")))
        except subprocess.CalledProcessError:
            continue  # the file was deleted in that commit
    return versions


def acknowledged() -> set[str]:
    path = ROOT / ACK_FILE
    if not path.exists():
        return set()
    data = tomllib.loads(path.read_text())
    return {entry["change"] for entry in data.get("breaking", []) if entry.get("reason", "").strip()}


def breaking_changes(current_sdl: str | None = None) -> list[Breaking]:
    versions = committed_versions()
    versions.append(("working tree", current_sdl if current_sdl is not None else export_sdl()))
    found: list[Breaking] = []
    for (old_name, old_sdl), (new_name, new_sdl) in itertools.pairwise(versions):
        if old_sdl == new_sdl:
            continue
        for change in find_breaking_changes(build_schema(old_sdl), build_schema(new_sdl)):
            if change.description.startswith("Standard scalar "):
                # graphql-core reports a built-in scalar no field uses any more ("Standard scalar Int
                # was removed because it is not referenced anymore"): no valid operation can use it
                # then, and the change that made it unused (a removed field…) is reported on its own.
                continue
            found.append(Breaking(f"{old_name}..{new_name}", change.description))
    return found


def unacknowledged(current_sdl: str | None = None) -> list[Breaking]:
    acks = acknowledged()
    return [b for b in breaking_changes(current_sdl) if b.description not in acks]
