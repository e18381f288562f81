"""The GraphiQL playground in a real headless Chromium, against a real server process.

The page must work offline: every request it makes goes to the server's own origin (any
other is blocked and fails the test). The Home query runs through the UI's Execute button
over HTTP; a subscription runs from the page over WebSocket (graphql-transport-ws) and
shows a message sent by another client.
"""

from __future__ import annotations

import re
import shutil
import sqlite3
import time
import uuid
from collections.abc import Callable, Iterator
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any
from urllib.parse import quote, urlencode, urlsplit

import httpx
import orjson
import pytest
from playwright.sync_api import Browser, Page, Route, sync_playwright

from bff.auth import TokenVerifier
from bff.config import load_settings
from tests.procs import ServerProcess, running_server

HOME = """query Home($first: Int!, $game: ID!) {
  viewer { id handle displayName avatarUrl }
  feed(first: $first) { edges { cursor node { id body createdAt likeCount viewerHasLiked author { id handle avatarUrl } } } pageInfo { endCursor hasNextPage } }
  leaderboard(gameId: $game, first: 10) { rank points user { id handle avatarUrl } }
}
"""
MESSAGE_ADDED = 'subscription Live { messageAdded(roomId: "1") { id body } }\n'
SEND = (
    "mutation Send($body: String!, $cmid: String!) { "
    'sendMessage(roomId: "1", body: $body, clientMessageId: $cmid) { id body } }'
)
TIMEOUT_MS = 30_000

pytestmark = pytest.mark.timeout(120)


def chromium_path() -> str:
    for candidate in (shutil.which("chromium"), "/usr/bin/chromium"):
        if candidate and Path(candidate).exists():
            return candidate
    raise RuntimeError("Chromium not found: run `make test` (it installs Debian's chromium)")


@dataclass
class Site:
    server: ServerProcess
    database: Path
    browser: Browser
    foreign: list[str] = field(default_factory=list)

    def token(self, user_id: int) -> str:
        return TokenVerifier(load_settings()).issue(user_id)

    def open(self, query: str, variables: dict[str, Any] | None, headers: dict[str, str]) -> Page:
        """A fresh page on the playground, its editors filled from the URL fragment."""
        context = self.browser.new_context(service_workers="block")
        context.set_default_timeout(TIMEOUT_MS)
        origin = self.server.url

        def guard(route: Route) -> None:
            url = route.request.url
            if same_origin(url, origin):
                route.continue_()
            else:
                self.foreign.append(url)
                route.abort()

        context.route("**/*", guard)
        page = context.new_page()
        page.on("websocket", lambda ws: None if same_origin(ws.url, origin) else self.foreign.append(ws.url))
        fragment = {"query": query, "headers": orjson.dumps(headers).decode()}
        if variables is not None:
            fragment["variables"] = orjson.dumps(variables).decode()
        page.goto(f"{origin}/graphql#{urlencode(fragment, quote_via=quote)}")
        page.locator(".graphiql-container").wait_for()
        return page


def same_origin(url: str, origin: str) -> bool:
    if url.startswith(("data:", "blob:")):
        return True
    parts, home = urlsplit(url), urlsplit(origin)
    return parts.hostname == home.hostname and parts.port == home.port


def response_text(page: Page) -> str:
    """The whole result pane (CodeMirror draws only the visible lines, so ask it)."""
    return str(
        page.evaluate(
            """() => {
                const editor = document.querySelector('.result-window .CodeMirror');
                return editor ? editor.CodeMirror.getValue() : '';
            }"""
        )
    )


def wait_for_response(page: Page, check: Callable[[str], bool], timeout: float = 20) -> str:
    deadline = time.monotonic() + timeout
    text = ""
    while time.monotonic() < deadline:
        text = response_text(page)
        if check(text):
            return text
        page.wait_for_timeout(100)
    raise AssertionError(f"the result pane never showed the expected data; it shows:\n{text[:2000]}")


def execute(page: Page) -> None:
    page.get_by_label(re.compile(r"^Execute query")).click()


@pytest.fixture(scope="module")
def site(tmp_path_factory: pytest.TempPathFactory, sqlite_template: Path) -> Iterator[Site]:
    tmp = tmp_path_factory.mktemp("playground")
    database = tmp / "bff.db"
    shutil.copy(sqlite_template, database)
    with (
        running_server(tmp, {"DATABASE_URL": f"sqlite:///{database}"}) as server,
        sync_playwright() as playwright,
    ):
        browser = playwright.chromium.launch(executable_path=chromium_path(), headless=True)
        try:
            yield Site(server, database, browser)
        finally:
            browser.close()


@pytest.fixture
def site_log(site: Site) -> Iterator[Site]:
    """The shared site, checked after each test: the page made no request outside the app."""
    site.foreign.clear()
    yield site
    assert site.foreign == [], f"the page reached outside the app: {site.foreign}"


def test_page_is_served_by_the_app_with_its_assets(site_log: Site) -> None:
    page = httpx.get(f"{site_log.server.url}/graphql", headers={"accept": "text/html"}, timeout=10)
    assert page.status_code == 200
    assert page.headers["content-type"].startswith("text/html")
    assets = re.findall(r'(?:src|href)="([^"]+)"', page.text)
    assert assets, page.text
    for asset in assets:
        if asset.startswith("data:"):
            continue
        assert asset.startswith("/static/graphiql/"), asset
        served = httpx.get(f"{site_log.server.url}{asset}", timeout=10)
        assert served.status_code == 200, asset


def test_home_query_runs_from_the_playground(site_log: Site) -> None:
    token = site_log.token(7)
    page = site_log.open(HOME, {"first": 20, "game": "1"}, {"Authorization": f"Bearer {token}"})
    try:
        execute(page)
        text = wait_for_response(page, lambda t: '"feed"' in t and '"leaderboard"' in t)
        result = orjson.loads(text)
        assert "errors" not in result, text[:2000]
        assert result["data"]["viewer"]["handle"] == "user7"
        assert result["data"]["feed"]["edges"], text[:2000]
        assert result["data"]["leaderboard"], text[:2000]
    finally:
        page.context.close()


def test_subscription_runs_from_the_playground(site_log: Site) -> None:
    with sqlite3.connect(site_log.database) as conn:
        (member,) = conn.execute("SELECT min(user_id) FROM room_members WHERE room_id = 1").fetchone()
    token = site_log.token(member)
    page = site_log.open(MESSAGE_ADDED, None, {"Authorization": f"Bearer {token}"})
    subscribed: list[str] = []
    page.on(
        "websocket",
        lambda ws: ws.on("framesent", lambda frame: subscribed.append(str(frame))),
    )
    try:
        execute(page)
        deadline = time.monotonic() + 20
        while not any('"subscribe"' in f for f in subscribed) and time.monotonic() < deadline:
            page.wait_for_timeout(50)
        assert any('"subscribe"' in f for f in subscribed), f"no subscribe frame sent: {subscribed}"
        # The server registers the subscription a moment after the frame: resend until one shows.
        run = uuid.uuid4().hex[:8]
        marker = f"hello from the playground {run}"
        text = ""
        with httpx.Client(base_url=site_log.server.url, timeout=10) as http:
            for attempt in range(10):
                sent = http.post(
                    "/graphql",
                    json={
                        "query": SEND,
                        "variables": {"body": f"{marker} #{attempt}", "cmid": f"playground-{run}-{attempt}"},
                    },
                    headers={
                        "authorization": f"Bearer {token}",
                        "accept": "application/graphql-response+json",
                    },
                )
                assert sent.status_code == 200 and "errors" not in sent.json(), sent.text
                try:
                    text = wait_for_response(page, lambda t: marker in t, timeout=2)
                    break
                except AssertionError:
                    continue
        assert marker in text, (
            f"the subscription never showed the message; server log:\n{site_log.server.log()[-3000:]}"
        )
        assert '"messageAdded"' in text
    finally:
        page.context.close()
