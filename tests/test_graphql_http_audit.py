"""GraphQL over HTTP conformance: the `serverAudits` of the npm package `graphql-http`, against a real server.

tests/audit pins graphql-http (and graphql, its peer) in package-lock.json; `npm ci` installs
them there the first time. Node and npm are not optional: `make test` installs them
(scripts/ensure-system-deps.sh), so their absence fails this test instead of skipping it.
"""

from __future__ import annotations

import json
import shutil
import subprocess
from pathlib import Path

import httpx
import pytest

from tests.procs import running_server

AUDIT_DIR = Path(__file__).resolve().parent / "audit"

# Audits allowed to be other than `ok`, by id, each with the documented decision it conflicts
# with. MUST audits never go here. Empty: every audit, MUST, SHOULD and MAY, passes.
ALLOWED: dict[str, str] = {}

pytestmark = pytest.mark.timeout(300)


def _tool(name: str) -> str:
    path = shutil.which(name)
    if path is None:
        pytest.fail(
            f"`{name}` is not installed: the GraphQL-over-HTTP audit needs Node.js 18+ and npm "
            "(`make system-deps` installs them with scripts/ensure-system-deps.sh)",
            pytrace=False,
        )
    return path


def _installed() -> None:
    """node_modules of tests/audit, from package-lock.json (`npm ci`), once."""
    if (AUDIT_DIR / "node_modules" / "graphql-http" / "package.json").exists():
        return
    npm = _tool("npm")
    done = subprocess.run(
        [npm, "ci", "--no-audit", "--no-fund", "--loglevel=error"],
        cwd=AUDIT_DIR,
        capture_output=True,
        text=True,
        timeout=240,
    )
    if done.returncode != 0:
        pytest.fail(f"`npm ci` in {AUDIT_DIR} failed:\n{done.stdout}\n{done.stderr}", pytrace=False)


def test_graphql_http_server_audits_pass(tmp_path: Path, sqlite_template: Path) -> None:
    node = _tool("node")
    _installed()
    database = tmp_path / "bff.db"
    shutil.copy(sqlite_template, database)
    with running_server(tmp_path, {"DATABASE_URL": f"sqlite:///{database}"}) as server:
        url = f"{server.url}/graphql"
        # The server answers before the audits start (and so before any of them could be blamed).
        assert httpx.post(url, json={"query": "{ __typename }"}, timeout=10).status_code == 200
        done = subprocess.run(
            [node, "run-audits.mjs", url], cwd=AUDIT_DIR, capture_output=True, text=True, timeout=180
        )
        log = server.log()
    assert done.returncode == 0, f"run-audits.mjs failed:\n{done.stderr}\n{done.stdout}"
    results = json.loads(done.stdout)
    assert len(results) >= 50, f"graphql-http ran only {len(results)} audits: {done.stdout}"
    ids = [r["id"] for r in results]
    assert len(set(ids)) == len(ids)
    for audit_id in ALLOWED:
        assert audit_id in ids, f"ALLOWED names {audit_id}, which graphql-http no longer has"
    failed = [
        f"{r['id']} {r['name']} ({r['status']}): {r['reason']}"
        for r in results
        if r["status"] != "ok" and r["id"] not in ALLOWED
    ]
    must_failed = [r for r in results if r["status"] != "ok" and r["name"].startswith("MUST")]
    assert not must_failed, f"MUST audits failed: {must_failed}"
    assert not failed, "GraphQL-over-HTTP audits failed:\n" + "\n".join(failed)
    # No request of the audits made the server log an unexpected exception.
    assert "unhandled_error" not in log, log[-5000:]
