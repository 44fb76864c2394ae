"""Idle and slow clients against a live ``resmon serve`` while a normal client works.  (issue 11)

Starts a real ``resmon serve`` (SQLite, ``--workers`` x ``--threads``) on a free
loopback port and holds open, for ``--duration`` seconds:

- ``--idle`` connections that send nothing;
- ``--slowloris`` connections that send their request headers one byte per second
  and never finish them;
- ``--slow-body`` pushes whose headers arrive at once and whose body then arrives
  one byte per second.

A connection the server closes is opened again at once, so the pressure stays the
same for the whole run.  Meanwhile one normal client, sequentially, pushes a new
run (kept-alive connection), reads the scope's runs (same connection) and asks
``/healthz`` on a new connection, as a load balancer's probe does.

Prints the normal client's p50/p99/max per request kind and its errors (a
timeout, a refused connection or an unexpected status), and for each kind of slow
connection how many the server closed, after how long, and with which answer.
Target: p99 under 100 ms and no error.  Exit status 1 when the normal client saw
an error.  Loopback only; everything stops by itself.

    .venv/bin/python bench/slow_clients.py                      # 1000 + 200 + 50, 60 s
    .venv/bin/python bench/slow_clients.py --idle 100 --slowloris 20 --slow-body 5 --duration 20
    .venv/bin/python bench/slow_clients.py --serve-arg=--request-timeout=10
"""

from __future__ import annotations

import argparse
import itertools
import os
import random
import resource
import selectors
import socket
import statistics
import sys
import tempfile
import threading
import time
from collections.abc import Iterator
from dataclasses import dataclass, field
from pathlib import Path
from urllib.parse import quote

import orjson
import requests

sys.path.insert(0, str(Path(__file__).resolve().parent))

from server_load import (  # noqa: E402
    HMAC_KEY,
    READ_TOKEN,
    free_port,
    run_summary,
    start_resmon,
    stop,
    wait_ready,
    wait_workers,
)

from resmon.tokens import push_token  # noqa: E402

SCOPE = ("bench-org", "bench-org/slow", "ci.yml", "build")
KINDS = ("idle", "slowloris", "slow-body")


def payload(run_id: str) -> bytes:
    org, repo, workflow, job = SCOPE
    execution = {
        "organization": org,
        "repository": repo,
        "workflow": workflow,
        "job": job,
        "run_id": run_id,
    }
    return orjson.dumps({"execution": execution, "run_summary": run_summary()})


# --- the slow connections ----------------------------------------------------------------


@dataclass(eq=False)  # kept in a set: identity, not value
class SlowConn:
    sock: socket.socket
    kind: str
    opened: float
    data: Iterator[int] | None  # the bytes still to trickle, one per second
    next_send: float
    reply: bytes = b""


@dataclass
class Closed:
    kind: str
    age: float
    status: str  # the status code the server answered with, or "" for none


@dataclass
class SlowStats:
    opened: dict[str, int] = field(default_factory=lambda: dict.fromkeys(KINDS, 0))
    connect_errors: int = 0
    closed: list[Closed] = field(default_factory=list)


class SlowClients:
    """Every slow connection, driven by one thread and one selector."""

    def __init__(self, port: int, counts: dict[str, int]) -> None:
        self.port = port
        self.counts = counts
        self.stats = SlowStats()
        self.selector = selectors.DefaultSelector()
        self.conns: set[SlowConn] = set()
        self.stopping = threading.Event()
        self.serial = itertools.count()

    def open(self, kind: str) -> None:
        try:
            sock = socket.create_connection(("127.0.0.1", self.port), timeout=5)
        except OSError:
            self.stats.connect_errors += 1
            return
        now = time.monotonic()
        data: Iterator[int] | None = None
        if kind == "slowloris":  # headers that never end
            head = b"GET /healthz HTTP/1.1\r\nHost: bench\r\n"
            data = itertools.chain(head, itertools.cycle(b"X-Slow: aaaaaaaa\r\n"))
        elif kind == "slow-body":  # whole headers, then the body byte by byte
            body = payload(f"slow-{next(self.serial)}")
            token = push_token(HMAC_KEY, *SCOPE)
            sock.sendall(
                f"POST /api/v1/metrics HTTP/1.1\r\nHost: bench\r\nAuthorization: Bearer {token}\r\n"
                f"Content-Type: application/json\r\nContent-Length: {len(body)}\r\n\r\n".encode()
            )
            data = iter(body)
        sock.setblocking(False)
        conn = SlowConn(sock, kind, now, data, now + random.random())
        self.conns.add(conn)
        self.selector.register(sock, selectors.EVENT_READ, conn)
        self.stats.opened[kind] += 1

    def close(self, conn: SlowConn, by_server: bool) -> None:
        self.selector.unregister(conn.sock)
        conn.sock.close()
        self.conns.discard(conn)
        if by_server:
            status = conn.reply[9:12].decode(errors="replace") if conn.reply else ""
            self.stats.closed.append(Closed(conn.kind, time.monotonic() - conn.opened, status))
            if not self.stopping.is_set():
                self.open(conn.kind)

    def run(self) -> None:
        while not self.stopping.is_set():
            for key, _ in self.selector.select(timeout=0.1):
                conn = key.data
                try:
                    chunk = conn.sock.recv(4096)
                except BlockingIOError:
                    continue
                except OSError:
                    chunk = b""
                if chunk:
                    conn.reply += chunk[: 64 - len(conn.reply)]
                else:
                    self.close(conn, by_server=True)
            now = time.monotonic()
            for conn in list(self.conns):
                if conn.data is None or conn.next_send > now:
                    continue
                conn.next_send += 1.0
                byte = next(conn.data, None)
                if byte is None:
                    continue
                try:
                    conn.sock.send(bytes((byte,)))
                except BlockingIOError:
                    pass
                except OSError:
                    self.close(conn, by_server=True)
        for conn in list(self.conns):
            self.close(conn, by_server=False)

    def open_all(self) -> None:
        for kind in KINDS:
            for _ in range(self.counts[kind]):
                self.open(kind)


# --- the normal client -------------------------------------------------------------------


@dataclass
class NormalStats:
    latencies: dict[str, list[float]] = field(
        default_factory=lambda: {"push": [], "read": [], "healthz (new connection)": []}
    )
    errors: list[str] = field(default_factory=list)


def normal_client(url: str, stopping: threading.Event, pause: float) -> NormalStats:
    stats = NormalStats()
    session = requests.Session()
    token = push_token(HMAC_KEY, *SCOPE)
    push_headers = {"Authorization": f"Bearer {token}", "Content-Type": "application/json"}
    read_url = url + "/api/v1/metrics/repo/" + "/".join(quote(x, safe="") for x in SCOPE)
    read_headers = {"Authorization": f"Bearer {READ_TOKEN}"}
    calls = {
        "push": lambda n: session.post(
            url + "/api/v1/metrics", data=payload(f"normal-{n}"), headers=push_headers, timeout=10
        ),
        "read": lambda n: session.get(read_url + "?limit=5", headers=read_headers, timeout=10),
        "healthz (new connection)": lambda n: requests.get(url + "/healthz", timeout=10),
    }
    expected = {"push": 201, "read": 200, "healthz (new connection)": 200}
    for n in itertools.count():
        if stopping.is_set():
            break
        for kind, call in calls.items():
            started = time.monotonic()
            try:
                status = call(n).status_code
            except requests.RequestException as exc:
                stats.errors.append(f"{kind}: {type(exc).__name__}")
                session = requests.Session() if kind != "healthz (new connection)" else session
                continue
            stats.latencies[kind].append(time.monotonic() - started)
            if status != expected[kind]:
                stats.errors.append(f"{kind}: HTTP {status}")
        time.sleep(pause)
    return stats


# --- running it ----------------------------------------------------------------------------


def raise_nofile(needed: int) -> None:
    soft, hard = resource.getrlimit(resource.RLIMIT_NOFILE)
    if soft != resource.RLIM_INFINITY and soft < needed:
        target = needed if hard == resource.RLIM_INFINITY else min(needed, hard)
        resource.setrlimit(resource.RLIMIT_NOFILE, (target, hard))
        if target < needed:
            print(f"warning: open files limited to {target} (asked {needed})", file=sys.stderr)


def percentile(values: list[float], p: float) -> float:
    if not values:
        return float("nan")
    ordered = sorted(values)
    return ordered[min(len(ordered) - 1, int(round(p / 100 * (len(ordered) - 1))))]


def report(args: argparse.Namespace, normal: NormalStats, slow: SlowStats, log: str) -> int:
    print(
        f"\nresmon serve with slow clients: {os.cpu_count()} cores, {args.workers} workers x "
        f"{args.threads} threads, {args.idle} idle + {args.slowloris} slowloris + "
        f"{args.slow_body} slow-body connections for {args.duration:g} s"
        + (f", serve {' '.join(args.serve_arg)}" if args.serve_arg else "")
    )
    print(f"\n{'normal client':<26} {'requests':>8} {'p50 ms':>8} {'p99 ms':>8} {'max ms':>8}")
    every = [x for values in normal.latencies.values() for x in values]
    for name, values in [*normal.latencies.items(), ("all", every)]:
        print(
            f"{name:<26} {len(values):>8} {percentile(values, 50) * 1000:>8.1f} "
            f"{percentile(values, 99) * 1000:>8.1f} {max(values, default=float('nan')) * 1000:>8.1f}"
        )
    errors = len(normal.errors)
    print(f"errors: {errors}" + (f" ({', '.join(sorted(set(normal.errors)))})" if errors else ""))
    print(
        f"\n{'slow connections':<12} {'opened':>7} {'closed':>7} {'age at close (s)':>22}  answers"
    )
    for kind in KINDS:
        closed = [c for c in slow.closed if c.kind == kind]
        ages = [c.age for c in closed]
        spread = (
            f"{min(ages):.1f} / {statistics.median(ages):.1f} / {max(ages):.1f}" if ages else "-"
        )
        answers: dict[str, int] = {}
        for c in closed:
            answers[c.status or "none"] = answers.get(c.status or "none", 0) + 1
        listed = ", ".join(f"{k}: {v}" for k, v in sorted(answers.items())) or "-"
        print(f"{kind:<16} {slow.opened[kind]:>7} {len(closed):>7} {spread:>22}  {listed}")
    print("(age at close: min / median / max; connections closed are opened again)")
    if slow.connect_errors:
        print(f"slow connections that could not connect: {slow.connect_errors}")
    print(f"tracebacks in the server's log: {log.count('Traceback')}")
    p99 = percentile(every, 99) * 1000
    print(f"\ntarget p99 < 100 ms {'met   ' if p99 < 100 else 'MISSED'} ({p99:.1f} ms)")
    print(f"target 0 errors     {'met   ' if not errors else 'MISSED'} ({errors})")
    return 1 if errors else 0


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--idle", type=int, default=1000, help="connections that send nothing")
    parser.add_argument("--slowloris", type=int, default=200, help="headers at 1 byte/s")
    parser.add_argument("--slow-body", type=int, default=50, help="push bodies at 1 byte/s")
    parser.add_argument("--duration", type=float, default=60.0, help="seconds to hold them")
    parser.add_argument("--pause", type=float, default=0.02, help="normal client's pause, s")
    parser.add_argument("--workers", type=int, default=2)
    parser.add_argument("--threads", type=int, default=8)
    parser.add_argument(
        "--serve-arg", action="append", default=[], help="extra resmon serve option (repeatable)"
    )
    args = parser.parse_args()
    counts = {"idle": args.idle, "slowloris": args.slowloris, "slow-body": args.slow_body}
    raise_nofile(2 * sum(counts.values()) + 1024)  # both ends are in this machine

    with tempfile.TemporaryDirectory(prefix="resmon-slow-") as tmp_name:
        tmp = Path(tmp_name)
        port, log_path = free_port(), tmp / "resmon.log"
        with log_path.open("wb") as log:
            server = start_resmon(
                port, tmp / "metrics.db", log, args.workers, args.threads,
                "--log-level=warning", *args.serve_arg,
            )  # fmt: skip
        url = f"http://127.0.0.1:{port}"
        slow = SlowClients(port, counts)
        try:
            wait_ready(url + "/readyz", server, log_path)
            wait_workers(server, args.workers)
            started = time.monotonic()
            slow.open_all()
            print(f"opened {sum(counts.values())} slow connections in "
                  f"{time.monotonic() - started:.1f} s", file=sys.stderr)  # fmt: skip
            driver = threading.Thread(target=slow.run, daemon=True)
            driver.start()
            stopping = threading.Event()
            result: list[NormalStats] = []
            client = threading.Thread(
                target=lambda: result.append(normal_client(url, stopping, args.pause))
            )
            client.start()
            time.sleep(args.duration)
            stopping.set()
            client.join(30)
            slow.stopping.set()
            driver.join(30)
        finally:
            stop(server)
        return report(args, result[0], slow.stats, log_path.read_text(errors="replace"))


if __name__ == "__main__":
    sys.exit(main())
