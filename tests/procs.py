"""Real server processes for end-to-end tests: `bff` under uvicorn on a free loopback port."""

from __future__ import annotations

import os
import signal
import subprocess
import sys
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass, field
from pathlib import Path

from tests.servers import free_port, wait_for_port

ROOT = Path(__file__).resolve().parent.parent


@dataclass
class ServerProcess:
    port: int
    process: subprocess.Popen[bytes]
    log_path: Path
    env: dict[str, str] = field(default_factory=dict)

    @property
    def url(self) -> str:
        return f"http://127.0.0.1:{self.port}"

    @property
    def ws_url(self) -> str:
        return f"ws://127.0.0.1:{self.port}/graphql"

    def log(self) -> str:
        return self.log_path.read_text(errors="replace") if self.log_path.exists() else ""

    def terminate(self, timeout: float = 30) -> int:
        """SIGTERM, as a platform does on deploy; returns the exit code."""
        if self.process.poll() is None:
            self.process.send_signal(signal.SIGTERM)
        try:
            return self.process.wait(timeout)
        except subprocess.TimeoutExpired:
            self.process.kill()
            return self.process.wait(10)


def start_server(tmp_dir: Path, env: dict[str, str], name: str = "bff") -> ServerProcess:
    """Start uvicorn with create_app() and the given environment (DATABASE_URL, REDIS_URL…)."""
    port = free_port()
    full_env = {**os.environ, "BFF_ENV": "test", "LOG_JSON": "true", **env}
    log_path = tmp_dir / f"{name}-{port}.log"
    log_file = log_path.open("wb")
    process = subprocess.Popen(
        [
            sys.executable,
            "-m",
            "uvicorn",
            "bff.app:create_app",
            "--factory",
            "--host",
            "127.0.0.1",
            "--port",
            str(port),
            "--no-access-log",
            "--timeout-graceful-shutdown",
            "5",
            "--ws",  # as the Procfile and `bff run` serve sockets
            "bff.ws_protocol:WebSocketProtocol",
        ],
        cwd=ROOT,
        env=full_env,
        stdout=log_file,
        stderr=subprocess.STDOUT,
    )
    try:
        wait_for_port(port, timeout=60, process=process)
    except Exception:
        process.kill()
        raise RuntimeError(f"server did not start:\n{log_path.read_text(errors='replace')}") from None
    return ServerProcess(port, process, log_path, env)


@contextmanager
def running_server(tmp_dir: Path, env: dict[str, str], name: str = "bff") -> Iterator[ServerProcess]:
    server = start_server(tmp_dir, env, name)
    try:
        yield server
    finally:
        server.terminate()
