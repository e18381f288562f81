"""Subscription fan-out benchmark: N subscribers on one room, M messages at a rate.

    python -m bench.fanout --sub-url ws://127.0.0.1:18032/graphql --pub-url http://127.0.0.1:18031/graphql \
        --tokens tokens.txt --users 191,497,643 --clients 5000 --messages 30 --rate 1 \
        --server-pid B_PID --redis-url redis://127.0.0.1:16379/0 --procs 4

Subscribers (graphql-transport-ws, `messageAdded(roomId)` with the reference selection) connect
to --sub-url, spread over --procs client processes (5,000 sockets need more than one event
loop's worth of parsing, and more open files than the default 1,024: `ulimit -n 20000`).
Subscriber i signs in as user --users[i % len] with line N of --tokens for user N (what
`bff token --user 1 --count 10000` prints); the users must be members of --room, and the
server needs WS_MAX_CONNECTIONS_PER_USER >= clients / len(users). The publisher (the first
user) sends `sendMessage` to --pub-url: probes until every subscriber got one (all live),
then M messages at --rate per second, each body `bench|run|seq|send time`.

Prints delivered/s, p50/p90/p99/max publish-to-receive latency (one host clock), lost
(expected - delivered once the drain window ends), duplicates, the subscriber server's RSS
per connection ((RSS with every subscription live - RSS before connecting) / N, from
--server-pid), and Redis connections: each server pid's TCP connections to Redis (psutil) and
Redis's own `connected_clients`. --json adds one JSON line.
"""

from __future__ import annotations

import argparse
import asyncio
import json
import math
import multiprocessing as mp
import secrets
import sys
import time
from multiprocessing.connection import Connection
from pathlib import Path
from typing import Any
from urllib.parse import urlparse

import httpx
import orjson
import psutil  # type: ignore[import-untyped]
import redis
import websockets
from websockets.typing import Subprotocol

SUBSCRIPTION = (
    "subscription MessageAdded($roomId: ID!) { messageAdded(roomId: $roomId) "
    "{ id body createdAt author { id handle } } }"
)
SEND = (
    "mutation SendMessage($roomId: ID!, $body: String!, $clientMessageId: String!) "
    "{ sendMessage(roomId: $roomId, body: $body, clientMessageId: $clientMessageId) { id createdAt } }"
)


# -- client processes ------------------------------------------------------------------------


def client_process(conn: Connection, url: str, tokens: list[str], room: str, messages: int) -> None:
    try:
        import uvloop

        uvloop.run(_clients(conn, url, tokens, room, messages))
    except ImportError:  # pragma: no cover
        asyncio.run(_clients(conn, url, tokens, room, messages))


async def _clients(conn: Connection, url: str, tokens: list[str], room: str, messages: int) -> None:
    n = len(tokens)
    received = bytearray(n * messages)
    latencies: list[float] = []
    probed: set[int] = set()
    duplicates = 0
    errors = 0
    run = ""

    def on_frame(i: int, raw: str | bytes) -> None:
        nonlocal duplicates, errors
        frame = orjson.loads(raw)
        kind = frame.get("type")
        if kind == "ping":
            return
        if kind != "next" or frame["payload"].get("errors"):
            errors += 1
            return
        parts = frame["payload"]["data"]["messageAdded"]["body"].split("|")
        if parts[1] != run:
            return
        if parts[0] == "probe":
            probed.add(i)
        elif parts[0] == "bench":
            slot = i * messages + int(parts[2])
            if received[slot]:
                duplicates += 1
            else:
                received[slot] = 1
                latencies.append(time.time() - float(parts[3]))

    async def subscriber(i: int, token: str) -> None:
        ws = await websockets.connect(
            url,
            subprotocols=[Subprotocol("graphql-transport-ws")],
            compression=None,
            open_timeout=60,
            max_queue=None,
        )
        await ws.send(
            json.dumps({"type": "connection_init", "payload": {"authorization": f"Bearer {token}"}})
        )
        ack = json.loads(await ws.recv())
        if ack["type"] != "connection_ack":
            raise RuntimeError(f"not acknowledged: {ack}")
        await ws.send(
            json.dumps(
                {
                    "id": "1",
                    "type": "subscribe",
                    "payload": {"query": SUBSCRIPTION, "variables": {"roomId": room}},
                }
            )
        )
        sockets.append(ws)
        async for raw in ws:
            on_frame(i, raw)

    sockets: list[Any] = []
    tasks = []
    for start in range(0, n, 100):  # connect in batches, as phones would not all arrive at once
        batch = [asyncio.create_task(subscriber(i, tokens[i])) for i in range(start, min(n, start + 100))]
        tasks += batch
        while len(sockets) < min(n, start + 100) and not any(t.done() for t in batch):
            await asyncio.sleep(0.01)
    failed = [t for t in tasks if t.done() and t.exception()]
    conn.send(("connected", len(sockets), len(failed)))
    loop = asyncio.get_running_loop()
    while True:
        command = await loop.run_in_executor(None, conn.recv)
        if command[0] == "run":
            run = command[1]
        elif command[0] == "probed?":
            conn.send(("probed", len(probed)))
        elif command[0] == "received?":
            conn.send(("received", len(latencies)))
        elif command[0] == "report":
            conn.send(("report", latencies, duplicates, errors))
            break
    for ws in sockets:
        await ws.close()
    for task in tasks:
        task.cancel()


# -- the coordinator ---------------------------------------------------------------------------


def percentile(values: list[float], p: float) -> float | None:
    if not values:
        return None
    return values[min(len(values) - 1, max(0, math.ceil(p / 100 * len(values)) - 1))]


def rss_kib(pid: int | None) -> float | None:
    return psutil.Process(pid).memory_info().rss / 1024 if pid else None


def redis_connections(pids: list[int], redis_url: str | None) -> dict[str, Any]:
    if not redis_url:
        return {}
    port = urlparse(redis_url).port or 6379
    out: dict[str, Any] = {}
    for pid in pids:
        conns = psutil.Process(pid).net_connections(kind="tcp")
        out[str(pid)] = sum(
            1 for c in conns if c.raddr and c.raddr.port == port and c.status == "ESTABLISHED"
        )
    out["redis_connected_clients"] = int(redis.Redis.from_url(redis_url).info("clients")["connected_clients"])
    return out


def ask_all(pipes: list[Connection], question: str) -> list[Any]:
    for pipe in pipes:
        pipe.send((question,))
    return [pipe.recv() for pipe in pipes]


async def publish(http: httpx.AsyncClient, url: str, token: str, room: str, body: str) -> float:
    started = time.perf_counter()
    response = await http.post(
        url,
        json={
            "query": SEND,
            "variables": {"roomId": room, "body": body, "clientMessageId": secrets.token_hex(8)},
        },
        headers={"authorization": f"Bearer {token}"},
    )
    payload = response.json()
    if response.status_code != 200 or payload.get("errors"):
        raise RuntimeError(f"sendMessage failed: {response.status_code} {payload}")
    return time.perf_counter() - started


async def coordinate(args: argparse.Namespace, by_user: list[str]) -> dict[str, Any]:
    users = [int(u) for u in args.users.split(",")]
    tokens = [by_user[users[i % len(users)] - 1] for i in range(args.clients)]
    publisher = by_user[users[0] - 1]
    server_pids = [int(p) for p in args.server_pid.split(",")] if args.server_pid else []
    sub_pid = server_pids[-1] if server_pids else None
    rss_before = rss_kib(sub_pid)
    redis_before = redis_connections(server_pids, args.redis_url)

    context = mp.get_context("spawn")
    pipes: list[Connection] = []
    procs = []
    share = math.ceil(args.clients / args.procs)
    for k in range(args.procs):
        part = tokens[k * share : (k + 1) * share]
        if not part:
            continue
        ours, theirs = context.Pipe()
        proc = context.Process(
            target=client_process, args=(theirs, args.sub_url, part, args.room, args.messages), daemon=True
        )
        proc.start()
        pipes.append(ours)
        procs.append(proc)
    connect_started = time.perf_counter()
    connected = [pipe.recv() for pipe in pipes]
    n = sum(c[1] for c in connected)
    connect_s = time.perf_counter() - connect_started
    print(f"{n}/{args.clients} connected in {connect_s:.1f} s", file=sys.stderr)

    run = secrets.token_hex(4)
    for pipe in pipes:
        pipe.send(("run", run))
    async with httpx.AsyncClient(timeout=30) as http:
        # Probe until every subscription is live, one probe per 5 s at most.
        deadline = time.monotonic() + args.ready_timeout
        probes = 0
        while time.monotonic() < deadline:
            await publish(http, args.pub_url, publisher, args.room, f"probe|{run}|{probes}|0")
            probes += 1
            until = time.monotonic() + 5
            while time.monotonic() < until:
                live = sum(r[1] for r in ask_all(pipes, "probed?"))
                if live >= n:
                    break
                await asyncio.sleep(0.2)
            if live >= n:
                break
        await asyncio.sleep(2)  # let the last probe's deliveries finish
        rss_ready = rss_kib(sub_pid)
        redis_ready = redis_connections(server_pids, args.redis_url)
        print(
            f"{live}/{n} live after {probes} probe(s); publishing {args.messages} at {args.rate}/s",
            file=sys.stderr,
        )

        started = time.perf_counter()
        mutation_s: list[float] = []
        sends = []
        for seq in range(args.messages):
            delay = started + seq / args.rate - time.perf_counter()
            if delay > 0:
                await asyncio.sleep(delay)
            body = f"bench|{run}|{seq}|{time.time()!r}"
            sends.append(asyncio.create_task(publish(http, args.pub_url, publisher, args.room, body)))
        mutation_s = list(await asyncio.gather(*sends))
        expected = live * args.messages
        drain_end = time.monotonic() + args.drain
        delivered = 0
        while time.monotonic() < drain_end:
            delivered = sum(r[1] for r in ask_all(pipes, "received?"))
            if delivered >= expected:
                break
            await asyncio.sleep(0.1)
        elapsed = time.perf_counter() - started  # first publish to the last delivery (±0.1 s)
    reports = ask_all(pipes, "report")
    for proc in procs:
        proc.join(10)
    latencies = sorted(x for r in reports for x in r[1])
    mutation_s.sort()
    return {
        "clients": args.clients,
        "connected": n,
        "live": live,
        "messages": args.messages,
        "rate": args.rate,
        "offered_per_s": live * args.rate,
        "delivered": len(latencies),
        "expected": expected,
        "lost": expected - len(latencies),
        "duplicates": sum(r[2] for r in reports),
        "errors": sum(r[3] for r in reports),
        "delivered_per_s": round(len(latencies) / elapsed, 1),
        "p50_ms": _ms(percentile(latencies, 50)),
        "p90_ms": _ms(percentile(latencies, 90)),
        "p99_ms": _ms(percentile(latencies, 99)),
        "max_ms": _ms(latencies[-1] if latencies else None),
        "mutation_p50_ms": _ms(percentile(mutation_s, 50)),
        "connect_s": round(connect_s, 1),
        "server_rss_before_mib": _mib(rss_before),
        "server_rss_ready_mib": _mib(rss_ready),
        "server_rss_per_conn_kib": round((rss_ready - rss_before) / n, 1)
        if rss_ready and rss_before
        else None,
        "redis_connections_before": redis_before,
        "redis_connections_ready": redis_ready,
    }


def _ms(seconds: float | None) -> float | None:
    return None if seconds is None else round(seconds * 1000, 1)


def _mib(kib: float | None) -> float | None:
    return None if kib is None else round(kib / 1024, 1)


def main() -> None:
    parser = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    parser.add_argument("--sub-url", required=True, help="ws://…/graphql of the subscribers' instance (B)")
    parser.add_argument("--pub-url", required=True, help="http://…/graphql of the publisher's instance (A)")
    parser.add_argument("--tokens", required=True, help="line N = bearer token of user N")
    parser.add_argument("--users", required=True, help="comma-separated members of --room to sign in as")
    parser.add_argument("--room", default="1")
    parser.add_argument("--clients", type=int, default=1000)
    parser.add_argument("--messages", type=int, default=100)
    parser.add_argument("--rate", type=float, default=5.0, help="messages per second")
    parser.add_argument("--procs", type=int, default=2, help="client processes")
    parser.add_argument("--server-pid", default="", help="pids of A,B (B last: its RSS is measured)")
    parser.add_argument("--redis-url", default=None, help="to count each server's Redis connections")
    parser.add_argument("--ready-timeout", type=float, default=120)
    parser.add_argument("--drain", type=float, default=60, help="seconds to wait for late deliveries")
    parser.add_argument("--json", action="store_true", help="also print one JSON line")
    args = parser.parse_args()
    result = asyncio.run(coordinate(args, Path(args.tokens).read_text().split()))
    print(
        f"N={result['connected']} M={args.messages} rate={args.rate}/s offered {result['offered_per_s']}/s: "
        f"delivered {result['delivered']}/{result['expected']} ({result['delivered_per_s']}/s), "
        f"p50 {result['p50_ms']} ms p90 {result['p90_ms']} ms p99 {result['p99_ms']} ms max {result['max_ms']} ms, "
        f"lost {result['lost']}, duplicates {result['duplicates']}, errors {result['errors']}, "
        f"server RSS/conn {result['server_rss_per_conn_kib']} KiB, "
        f"Redis connections {result['redis_connections_ready']}"
    )
    if args.json:
        print(json.dumps(result))


if __name__ == "__main__":
    main()
