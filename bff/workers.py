"""Several worker processes, each with a listening socket of its own (SO_REUSEPORT).

`uvicorn --workers N` binds one socket in the parent and every worker accepts on it: whichever
wakes first takes what is waiting. Clients that open their keep-alive connections together (a
load balancer's pool, the bench's 16) then mostly land on one worker: 13/3, 16/0, 16/0 and 15/1
of 16 in `./bench/worker_balance.sh` (docs/benchmarks.md, eighth session), one worker busy and
the other idle. With a socket per worker bound with SO_REUSEPORT, the kernel spreads incoming
connections over the sockets by their addresses.

uvicorn's supervisor (`Multiprocess`: health checks, restarts, signals) is kept. It hands each
worker process the socket list it was given, pickled; `OwnSockets` is that list, and what a
worker unpickles is a socket it binds itself. Linux (and the BSDs) only; elsewhere, and with one
worker, `uvicorn.run` serves as before.
"""

from __future__ import annotations

import socket
import sys
from typing import Any

import uvicorn
from uvicorn.config import STARTUP_FAILURE
from uvicorn.supervisors import Multiprocess


def reuse_port_socket(host: str, port: int, backlog: int, *, listen: bool = True) -> socket.socket:
    """A TCP socket bound to host:port that other processes may bind too (SO_REUSEPORT),
    listening unless `listen` is False."""
    family = socket.AF_INET6 if ":" in host else socket.AF_INET
    sock = socket.socket(family, socket.SOCK_STREAM)
    sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
    sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEPORT, 1)
    sock.bind((host, port))
    if listen:
        sock.listen(backlog)
    sock.set_inheritable(True)
    return sock


def _bound_in_worker(host: str, port: int, backlog: int) -> list[socket.socket]:
    return [reuse_port_socket(host, port, backlog)]


class OwnSockets(list[socket.socket]):
    """Empty in the parent; unpickled in a worker as a list of one socket that worker bound."""

    def __init__(self, host: str, port: int, backlog: int) -> None:
        super().__init__()
        self.host, self.port, self.backlog = host, port, backlog

    def __reduce__(self) -> tuple[Any, ...]:
        return (_bound_in_worker, (self.host, self.port, self.backlog))


def supported() -> bool:
    return hasattr(socket, "SO_REUSEPORT")


def run(config: uvicorn.Config) -> None:
    """Serve `config` with its workers, each on its own socket (uvicorn's supervisor around them)."""
    if config.workers <= 1 or not supported() or config.uds or config.fd is not None:
        server = uvicorn.Server(config)
        server.run()
        if not server.started:  # as uvicorn.run: a failed startup is a failed command
            sys.exit(STARTUP_FAILURE)
        return
    if config.port == 0:
        raise ValueError("several workers need a fixed port: each binds it with SO_REUSEPORT")
    # Bound once here first (not listening: no connection waits on it): a port already taken
    # fails now, with a clear error, not in each worker.
    reuse_port_socket(config.host, config.port, config.backlog, listen=False).close()
    Multiprocess(config, sockets=OwnSockets(config.host, config.port, config.backlog)).run()
