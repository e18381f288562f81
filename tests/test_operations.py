"""What the platform running the BFF relies on: probes, metrics, request ids, logs, Sentry, shutdown."""

from __future__ import annotations

import asyncio
import gzip
import json
import re
import shutil
import signal
import socket
import threading
import time
from collections.abc import Callable, Iterator
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path
from typing import Any

import brotli
import httpx
import pytest
from asgi_lifespan import LifespanManager
from starlette.applications import Starlette

from bff.app import create_app
from bff.config import Settings
from tests.procs import running_server
from tests.servers import RedisServer, free_port

HOME = json.loads((Path(__file__).parent / "ops" / "home.json").read_text())


def asgi_client(app: Starlette) -> httpx.AsyncClient:
    return httpx.AsyncClient(transport=httpx.ASGITransport(app), base_url="http://bff.test")


async def readyz(settings: Settings) -> httpx.Response:
    app = create_app(settings)
    async with LifespanManager(app), asgi_client(app) as client:
        # Readiness must answer, never hang, whatever the dependencies do.
        return await asyncio.wait_for(client.get("/readyz"), timeout=20)


# -- probes ----------------------------------------------------------------------------------


async def test_healthz(client: httpx.AsyncClient) -> None:
    response = await client.get("/healthz")
    assert response.status_code == 200
    assert response.json() == {"status": "ok"}


async def test_readyz_with_the_in_process_broker(client: httpx.AsyncClient, database_url: str) -> None:
    response = await client.get("/readyz")
    assert response.status_code == 200, response.text
    body = response.json()
    assert body["status"] == "ok"
    assert body["checks"] == {"database": "ok", "broker": "ok"}
    assert body["broker"] == "memory"
    assert body["database"] == ("sqlite" if database_url.startswith("sqlite") else "postgresql")


async def test_readyz_with_a_real_redis_broker(
    make_settings: Callable[..., Settings], redis_server: RedisServer
) -> None:
    response = await readyz(make_settings(redis_url=redis_server.url))
    assert response.status_code == 200, response.text
    assert response.json()["checks"] == {"database": "ok", "broker": "ok"}
    assert response.json()["broker"] == "redis"


async def test_readyz_fails_fast_when_redis_is_unreachable(make_settings: Callable[..., Settings]) -> None:
    # A free port with nothing listening: connections are refused.
    response = await readyz(make_settings(redis_url=f"redis://127.0.0.1:{free_port()}/0"))
    assert response.status_code == 503, response.text
    assert response.json()["status"] == "unavailable"
    assert response.json()["checks"] == {"database": "ok", "broker": "failing"}


async def test_readyz_fails_when_the_database_is_unreachable(
    make_settings: Callable[..., Settings], database_url: str
) -> None:
    if not database_url.startswith("postgresql"):
        pytest.skip("an unreachable server only exists for Postgres")
    settings = make_settings()
    app = create_app(settings)
    async with LifespanManager(app), asgi_client(app) as client:
        await app.state.services.db.disconnect()  # as when the server goes away
        response = await asyncio.wait_for(client.get("/readyz"), timeout=20)
        await app.state.services.db.connect()
    assert response.status_code == 503
    assert response.json()["checks"]["database"] == "failing"


async def test_readyz_reports_draining_after_shutdown_starts(make_settings: Callable[..., Settings]) -> None:
    app = create_app(make_settings())
    async with asgi_client(app) as client:
        async with LifespanManager(app):
            assert (await client.get("/readyz")).status_code == 200
        response = await client.get("/readyz")
    assert response.status_code == 503
    assert response.json() == {"status": "draining"}


# -- metrics and request ids -----------------------------------------------------------------


async def test_metrics_expose_graphql_latency_by_operation(client: httpx.AsyncClient, gql: Any) -> None:
    response = await gql(HOME["query"], HOME["variables"], user=7)
    assert response.status_code == 200 and "errors" not in response.json()
    metrics = await client.get("/metrics")
    assert metrics.status_code == 200
    assert metrics.headers["content-type"].startswith("text/plain")
    text = metrics.text
    assert "# TYPE bff_graphql_request_duration_seconds histogram" in text
    counts = re.findall(r"^bff_graphql_request_duration_seconds_count\{([^}]*)\} (\S+)$", text, re.M)
    home = [
        float(value) for labels, value in counts if 'operation="Home"' in labels and 'kind="query"' in labels
    ]
    assert home and home[0] >= 1
    assert re.search(r'^bff_http_responses_total\{path="/graphql",status="200"\} ', text, re.M)


async def test_request_id_is_echoed_when_given(client: httpx.AsyncClient) -> None:
    response = await client.get("/healthz", headers={"x-request-id": "phone-abc.123:4"})
    assert response.headers["x-request-id"] == "phone-abc.123:4"


async def test_request_id_is_generated_when_missing_or_unsafe(client: httpx.AsyncClient) -> None:
    ids = set()
    for headers in ({}, {"x-request-id": "two words"}, {"x-request-id": "x" * 300}):
        response = await client.get("/healthz", headers=headers)
        generated = response.headers["x-request-id"]
        assert re.fullmatch(r"[0-9a-f]{32}", generated), generated
        ids.add(generated)
    assert len(ids) == 3


async def test_graphql_responses_carry_the_request_id(gql: Any) -> None:
    response = await gql("{ games { id } }", headers={"x-request-id": "req-graphql-1"})
    assert response.status_code == 200
    assert response.headers["x-request-id"] == "req-graphql-1"


# -- Sentry ----------------------------------------------------------------------------------


class EnvelopeSink:
    """A local HTTP server standing in for Sentry: it keeps every envelope POSTed to it."""

    def __init__(self) -> None:
        self.envelopes: list[bytes] = []
        self.received = threading.Event()
        sink = self

        class Handler(BaseHTTPRequestHandler):
            def do_POST(self) -> None:
                body = self.rfile.read(int(self.headers.get("content-length") or 0))
                encoding = self.headers.get("content-encoding")
                if encoding == "gzip":
                    body = gzip.decompress(body)
                elif encoding == "br":  # sentry-sdk prefers brotli when the package is installed
                    body = brotli.decompress(body)
                sink.envelopes.append(body)
                sink.received.set()
                self.send_response(200)
                self.end_headers()
                self.wfile.write(b"{}")

            def log_message(self, *args: Any) -> None:
                return None

        self.server = ThreadingHTTPServer(("127.0.0.1", 0), Handler)
        self.port = self.server.server_address[1]
        self.thread = threading.Thread(target=self.server.serve_forever, daemon=True)

    def __enter__(self) -> EnvelopeSink:
        self.thread.start()
        return self

    def __exit__(self, *exc: object) -> None:
        self.server.shutdown()
        self.server.server_close()
        self.thread.join(10)


@pytest.fixture
def sentry_sink() -> Iterator[EnvelopeSink]:
    import sentry_sdk

    with EnvelopeSink() as sink:
        try:
            yield sink
        finally:
            # sentry-sdk is process-global: switch it off again for the tests that follow.
            sentry_sdk.get_client().close(timeout=2)
            sentry_sdk.init()


async def test_unexpected_errors_are_masked_and_sent_to_sentry(
    make_settings: Callable[..., Settings], sentry_sink: EnvelopeSink, monkeypatch: pytest.MonkeyPatch
) -> None:
    import sentry_sdk

    from resolvers import users

    async def broken(ctx: Any, user_id: int) -> Any:
        raise RuntimeError("secret internal detail: connection string postgres://admin@db")

    monkeypatch.setattr(users, "get_user", broken)
    settings = make_settings(
        bff_env="production",
        jwt_secret="a-test-secret-that-is-not-the-development-one",
        sentry_dsn=f"http://public@127.0.0.1:{sentry_sink.port}/1",
    )
    app = create_app(settings)
    async with LifespanManager(app), asgi_client(app) as client:
        response = await client.post(
            "/graphql",
            json={"query": 'query Profile { user(id: "1") { id handle } games { id } }'},
            headers={"accept": "application/graphql-response+json"},
        )
    assert response.status_code == 200
    body = response.json()
    assert body["data"]["user"] is None and len(body["data"]["games"]) == 3
    assert body["errors"] == [
        {
            "message": "Internal server error",
            "locations": [{"line": 1, "column": 17}],
            "path": ["user"],
            "extensions": {"code": "INTERNAL_SERVER_ERROR", "retryable": True},
        }
    ]
    assert "secret" not in response.text and "Traceback" not in response.text
    assert "RuntimeError" not in response.text

    sentry_sdk.flush(timeout=10)
    assert sentry_sink.received.wait(10), "no envelope reached the Sentry stand-in"
    events = b"\n".join(sentry_sink.envelopes)
    assert b"RuntimeError" in events
    assert b"secret internal detail" in events  # the report keeps what the client must not see


async def test_sentry_stays_off_without_a_dsn(make_settings: Callable[..., Settings]) -> None:
    from bff.observability import configure_sentry

    assert configure_sentry(make_settings()) is False


# -- a real server process: access log, shutdown ---------------------------------------------


@pytest.fixture
def sqlite_url(sqlite_template: Path, tmp_path: Path) -> str:
    path = tmp_path / "server.db"
    shutil.copy(sqlite_template, path)
    return f"sqlite:///{path}"


def wait_for_log(
    server: Any, predicate: Callable[[dict[str, Any]], bool], timeout: float = 15
) -> dict[str, Any]:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        for line in server.log().splitlines():
            try:
                entry = json.loads(line)
            except ValueError:
                continue
            if isinstance(entry, dict) and predicate(entry):
                return entry
        time.sleep(0.05)
    raise AssertionError(f"no such log line after {timeout}s:\n{server.log()}")


def test_access_log_line_has_request_id_and_operation(tmp_path: Path, sqlite_url: str) -> None:
    with running_server(tmp_path, {"DATABASE_URL": sqlite_url}) as server:
        started = wait_for_log(server, lambda e: e.get("event") == "started")
        assert started["database"] == "sqlite"
        with httpx.Client(base_url=server.url, timeout=20) as client:
            response = client.post(
                "/graphql",
                json={"query": HOME["query"], "variables": HOME["variables"], "operationName": "Home"},
                headers={"x-request-id": "e2e-home-1"},
            )
            assert response.status_code == 200
            assert response.headers["x-request-id"] == "e2e-home-1"
            # Anonymous Home: viewer/feed are UNAUTHENTICATED, the leaderboard still answers.
            assert response.json()["data"]["leaderboard"]
            line = wait_for_log(
                server, lambda e: e.get("event") == "request" and e.get("request_id") == "e2e-home-1"
            )
            assert line["operation"] == "Home"
            assert line["operation_kind"] == "query"
            assert line["path"] == "/graphql" and line["status"] == 200
            assert line["level"] == "info" and "timestamp" in line
            assert isinstance(line["sql_statements"], int) and line["sql_statements"] >= 1
            assert "UNAUTHENTICATED" in line["error_codes"]
            generated = client.get("/healthz").headers["x-request-id"]
            wait_for_log(server, lambda e: e.get("request_id") == generated and e.get("path") == "/healthz")


def test_sigterm_lets_the_request_in_flight_finish(tmp_path: Path, sqlite_url: str) -> None:
    """A request whose body is still arriving when SIGTERM comes is answered, then the process exits."""
    with running_server(tmp_path, {"DATABASE_URL": sqlite_url}) as server:
        body = json.dumps({"query": "query InFlight { games { id name } }"}).encode()
        head = (
            f"POST /graphql HTTP/1.1\r\nHost: 127.0.0.1\r\nContent-Type: application/json\r\n"
            f"Content-Length: {len(body)}\r\nX-Request-ID: in-flight-1\r\nConnection: close\r\n\r\n"
        ).encode()
        with socket.create_connection(("127.0.0.1", server.port), timeout=20) as sock:
            sock.sendall(head + body[:10])
            time.sleep(0.2)  # let uvicorn hand the request to the app (it then waits for the body)
            server.process.send_signal(signal.SIGTERM)
            wait_until(lambda: "Shutting down" in server.log(), "uvicorn to start shutting down")
            sock.sendall(body[10:])
            response = b""
            while chunk := sock.recv(65536):
                response += chunk
        status_line, _, rest = response.partition(b"\r\n")
        assert status_line == b"HTTP/1.1 200 OK", response
        payload = json.loads(rest.partition(b"\r\n\r\n")[2])
        assert len(payload["data"]["games"]) == 3
        code = server.process.wait(30)
        # uvicorn re-raises the SIGTERM it handled once shutdown is complete: "killed by SIGTERM" is its
        # clean exit (0 with older uvicorn). A hang would have hit the timeout above.
        assert code in (0, -signal.SIGTERM), code
    log = server.log()
    events = [json.loads(line).get("event") for line in log.splitlines() if line.startswith("{")]
    assert events.count("stopped") == 1, log
    assert events.index("stopped") > events.index("request")
    # The request was answered after shutdown had begun, and before the app stopped.
    answered = log.index('"request_id": "in-flight-1"')
    assert log.index("Shutting down") < answered < log.index('"event": "stopped"')
    assert "Application shutdown complete" in log


def wait_until(predicate: Callable[[], bool], what: str, timeout: float = 15) -> None:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if predicate():
            return
        time.sleep(0.05)
    raise AssertionError(f"timed out after {timeout}s waiting for {what}")
