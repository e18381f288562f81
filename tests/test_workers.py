"""`bff run --workers N` (bff/workers.py): each worker listens on a socket of its own.

With one socket shared by every worker (`uvicorn --workers`), connections opened together
mostly went to one worker. Here the kernel spreads them over the workers' SO_REUSEPORT
sockets: a real `bff run` with two workers, 24 keep-alive connections, and the connections
each worker holds read from /proc.
"""

from __future__ import annotations

import os
import pickle
import signal
import socket
import subprocess
import sys
import time
from pathlib import Path

import pytest

from bff.workers import OwnSockets
from tests.procs import ROOT
from tests.servers import free_port, wait_for_port

pytestmark = pytest.mark.skipif(not hasattr(socket, "SO_REUSEPORT"), reason="needs SO_REUSEPORT")


def test_each_worker_unpickles_a_socket_it_bound_on_the_same_port() -> None:
    port = free_port()
    parent = OwnSockets("127.0.0.1", port, 16)
    assert list(parent) == []  # the parent holds no socket
    first, second = (pickle.loads(pickle.dumps(parent)) for _ in range(2))
    try:
        for sockets in (first, second):
            (sock,) = sockets
            assert sock.getsockname() == ("127.0.0.1", port)
            assert sock.getsockopt(socket.SOL_SOCKET, socket.SO_REUSEPORT) == 1
    finally:
        for sockets in (first, second):
            for sock in sockets:
                sock.close()


def _children(pid: int) -> list[int]:
    text = Path(f"/proc/{pid}/task/{pid}/children").read_text()
    return [int(p) for p in text.split()]


def _established_to(port: int, state: str = "01") -> set[int]:
    """Socket inodes of TCP sockets whose local port is `port`, in `state` (01 established, 0A
    listening)."""
    inodes = set()
    for table in ("/proc/net/tcp", "/proc/net/tcp6"):
        if not os.path.exists(table):
            continue
        for line in Path(table).read_text().splitlines()[1:]:
            fields = line.split()
            local_port = int(fields[1].rsplit(":", 1)[1], 16)
            if local_port == port and fields[3] == state:
                inodes.add(int(fields[9]))
    return inodes


def _held_by(pid: int, inodes: set[int]) -> int:
    held = 0
    for fd in Path(f"/proc/{pid}/fd").iterdir():
        try:
            target = os.readlink(fd)
        except OSError:
            continue
        if target.startswith("socket:[") and int(target[8:-1]) in inodes:
            held += 1
    return held


def test_two_workers_share_connections_opened_together(tmp_path: Path) -> None:
    port = free_port()
    env = {
        **os.environ,
        "BFF_ENV": "test",
        "DATABASE_URL": f"sqlite:///{tmp_path / 'workers.db'}",
        "REDIS_URL": "",
        "LOG_JSON": "true",
    }
    log = (tmp_path / "run.log").open("wb")
    process = subprocess.Popen(
        [
            sys.executable,
            "-m",
            "bff.cli",
            "run",
            "--host",
            "127.0.0.1",
            "--port",
            str(port),
            "--workers",
            "2",
        ],
        cwd=ROOT,
        env=env,
        stdout=log,
        stderr=subprocess.STDOUT,
    )
    connections: list[socket.socket] = []
    try:
        deadline = time.monotonic() + 90
        while len(_established_to(port, "0A")) < 2:  # both workers listening
            assert process.poll() is None and time.monotonic() < deadline, "the workers did not listen"
            time.sleep(0.1)
        wait_for_port(port, timeout=30, process=process)
        for _ in range(24):
            conn = socket.create_connection(("127.0.0.1", port), timeout=10)
            conn.sendall(b"GET /healthz HTTP/1.1\r\nHost: t\r\n\r\n")
            assert conn.recv(4096).startswith(b"HTTP/1.1 200")
            connections.append(conn)
        inodes = _established_to(port)
        workers = [c for c in _children(process.pid) if Path(f"/proc/{c}/fd").exists()]
        held = sorted(_held_by(worker, inodes) for worker in workers)
        # Workers and whatever else multiprocessing started (its resource tracker holds none).
        assert sum(held) == 24, held
        assert len(held) >= 2 and held[-2] >= 1, held  # all 24 on one worker: odds 2 in 2^24
    finally:
        for conn in connections:
            conn.close()
        process.send_signal(signal.SIGTERM)
        try:
            code = process.wait(30)
        except subprocess.TimeoutExpired:
            process.kill()
            raise
        log.close()
    assert code == 0, (tmp_path / "run.log").read_text(errors="replace")[-2000:]
