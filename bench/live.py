"""Live runs on a real ``resmon serve`` (SQLite, loopback): CPU of the live traffic,
batch ingest under load, and 200 SSE subscribers.  (issue 15)

Phases, each ``--duration`` seconds (a few minutes in all):

1. idle: the server's CPU with nothing to do (subtracted from phase 2);
2. live traffic: ``--jobs`` simulated running jobs, each sending a batch of 7
   samples (2 s apart) every ``--interval`` seconds to ``POST /api/v1/metrics/live``,
   spread evenly; the server's CPU for it, in percent of one core (target < 15 %);
3. ingest: ``--clients`` clients (processes x threads, keep-alive) sending batches
   back to back; batches/s and p99 (target >= 1,000/s, p99 < 50 ms);
4. the same with ``--subscribers`` SSE streams open (``GET /api/v1/events``, every
   event): batches/s against phase 3 (target >= 80 %) and push-to-event latency
   (the batch's sample time, stamped when sent, to the event's arrival on each
   stream; p99 target < 1 s).

The clients run on the same two cores as the server, so the figures are a floor.
CPU is the utime+stime of the server's arbiter and workers (/proc).

    .venv/bin/python bench/live.py                    # 20 s per phase
    .venv/bin/python bench/live.py --duration 10 --jobs 1000 --subscribers 200
"""

from __future__ import annotations

import argparse
import http.client
import multiprocessing
import os
import re
import secrets
import selectors
import signal
import socket
import subprocess
import sys
import tempfile
import threading
import time
import uuid
from datetime import UTC, datetime
from pathlib import Path

import orjson
import requests

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))
from resmon.tokens import push_token  # noqa: E402

SCOPE = ("bench-org", "bench-org/repo", "live.yml", "build")
T_FIELD = re.compile(rb'"t":"([^"]+)"')


def now_text() -> str:
    return datetime.now(UTC).strftime("%Y-%m-%dT%H:%M:%S.%fZ")


def batch(run_key: str, seq: int) -> bytes:
    t = now_text()
    sample = {
        "t": t,
        "elapsed": 2.0,
        "host": {"cpu_percent": 40.0, "mem_used_bytes": 1 << 30, "mem_total_bytes": 4 << 30},
        "job": {"cpu_cores": 1.0, "memory_bytes": 1 << 28, "cpu_seconds": 2.0 * seq},
        "containers": {
            "command": {
                "cpu_cores": 1.0,
                "memory_bytes": 1 << 28,
                "cpu_seconds": 2.0 * seq,
                "memory_kind": "pss",
                "limit_cpu_cores": 2.0,
                "limit_memory_bytes": None,
            }
        },
    }
    org, repo, workflow, job = SCOPE
    body = {
        "execution": {
            "organization": org,
            "repository": repo,
            "workflow": workflow,
            "job": job,
            "run_id": run_key[:8],
            "run_attempt": "1",
        },
        "run": {
            "run_key": run_key,
            "start_time": "2026-11-30T09:00:00.000Z",
            "host": "bench-runner",
            "live_interval_seconds": 15,
            "interval_seconds": 2.0,
            "mode": "wrapper",
            "command_container": "command",
        },
        # 7 samples, the last one stamped now (the snapshot event carries its time)
        "batch": {"seq": seq, "samples": [sample] * 6 + [{**sample, "t": t}]},
    }
    return orjson.dumps(body)


class Server:
    def __init__(self, tmp: Path, workers: int, threads: int) -> None:
        self.port = _free_port()
        self.read = secrets.token_hex(16)
        self.key = secrets.token_hex(16)
        env = {**os.environ, "RECEIVER_READ_TOKEN": self.read, "RECEIVER_HMAC_KEY": self.key}
        cmd = [
            sys.executable, "-m", "resmon", "serve", f"--addr=127.0.0.1:{self.port}",
            f"--db={tmp / 'live.db'}", f"--workers={workers}", f"--threads={threads}",
            "--log-level=warning", "--sse-max-subscribers=1000",
        ]  # fmt: skip
        self.log = open(tmp / "serve.log", "wb")  # noqa: SIM115
        self.proc = subprocess.Popen(cmd, env=env, stderr=self.log, start_new_session=True)
        self.url = f"http://127.0.0.1:{self.port}"
        deadline = time.monotonic() + 30
        while time.monotonic() < deadline:
            try:
                if requests.get(self.url + "/readyz", timeout=1).status_code == 200:
                    break
            except requests.ConnectionError:
                time.sleep(0.1)
        self.token = push_token(self.key, *SCOPE)

    def cpu_seconds(self) -> float:
        """utime+stime of the arbiter and its workers (the process group)."""
        total = 0
        for entry in os.listdir("/proc"):
            if not entry.isdigit():
                continue
            try:
                fields = Path(f"/proc/{entry}/stat").read_bytes().rsplit(b")", 1)[1].split()
            except OSError:
                continue
            if int(fields[2]) == self.proc.pid:  # pgrp
                total += int(fields[11]) + int(fields[12])
        return total / os.sysconf("SC_CLK_TCK")

    def stop(self) -> None:
        os.killpg(self.proc.pid, signal.SIGTERM)
        self.proc.wait(30)


def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def _post(conn: http.client.HTTPConnection, token: str, run_key: str, seq: int) -> int:
    headers = {
        "Authorization": f"Bearer {token}",
        "Content-Type": "application/json",
        "Idempotency-Key": f"{run_key}:{seq}",
    }
    conn.request("POST", "/api/v1/metrics/live", batch(run_key, seq), headers)
    response = conn.getresponse()
    response.read()
    return response.status


def paced_jobs(port: int, token: str, jobs: int, interval: float, duration: float) -> int:
    """``jobs`` jobs, one batch each every ``interval`` s, spread evenly; batches sent."""
    conn = http.client.HTTPConnection("127.0.0.1", port, timeout=10)
    keys = [str(uuid.uuid4()) for _ in range(jobs)]
    gap = interval / jobs
    start = time.monotonic()
    sent = 0
    while time.monotonic() - start < duration:
        due = start + sent * gap
        delay = due - time.monotonic()
        if delay > 0:
            time.sleep(delay)
        _post(conn, token, keys[sent % jobs], sent // jobs)
        sent += 1
    return sent


def _client_process(port: int, token: str, threads: int, duration: float, out) -> None:  # noqa: ANN001
    latencies: list[float] = []
    errors = [0]

    def run() -> None:
        conn = http.client.HTTPConnection("127.0.0.1", port, timeout=10)
        key = str(uuid.uuid4())
        seq = 0
        end = time.monotonic() + duration
        while time.monotonic() < end:
            started = time.perf_counter()
            status = _post(conn, token, key, seq)
            latencies.append(time.perf_counter() - started)
            errors[0] += status not in (200, 201)
            seq += 1

    pool = [threading.Thread(target=run) for _ in range(threads)]
    for t in pool:
        t.start()
    for t in pool:
        t.join()
    out.put((latencies, errors[0]))


def ingest(port: int, token: str, clients: int, duration: float) -> tuple[float, float, int]:
    """Batches/s, p99 seconds, non-2xx with ``clients`` clients sending back to back."""
    processes = 4
    out: multiprocessing.Queue = multiprocessing.Queue()
    procs = [
        multiprocessing.Process(
            target=_client_process, args=(port, token, clients // processes, duration, out)
        )
        for _ in range(processes)
    ]
    for p in procs:
        p.start()
    latencies: list[float] = []
    errors = 0
    for _ in procs:
        got, bad = out.get()
        latencies += got
        errors += bad
    for p in procs:
        p.join()
    latencies.sort()
    p99 = latencies[int((len(latencies) - 1) * 0.99)] if latencies else float("nan")
    return len(latencies) / duration, p99, errors


class Subscribers:
    """``count`` SSE streams on one selector thread; every 10th parses event times."""

    def __init__(self, port: int, read: str, count: int) -> None:
        self.selector = selectors.DefaultSelector()
        self.latencies: list[float] = []
        self.events = 0
        self.refused = 0
        self.stopping = False
        request = (
            f"GET /api/v1/events?kinds=snapshot HTTP/1.1\r\nHost: x\r\n"
            f"Authorization: Bearer {read}\r\n\r\n"
        ).encode()
        for i in range(count):
            sock = socket.create_connection(("127.0.0.1", port))
            sock.sendall(request)
            head = sock.recv(4096)
            if not head.startswith(b"HTTP/1.1 200"):
                self.refused += 1
                sock.close()
                continue
            sock.setblocking(False)
            self.selector.register(sock, selectors.EVENT_READ, i % 10 == 0)
        self.thread = threading.Thread(target=self._run, daemon=True)
        self.thread.start()

    def _run(self) -> None:
        while not self.stopping:
            for key, _ in self.selector.select(0.2):
                try:
                    data = key.fileobj.recv(1 << 20)  # type: ignore[union-attr]
                except BlockingIOError:
                    continue
                if not key.data:
                    continue
                arrived = time.time()
                for stamp in T_FIELD.findall(data):
                    sent = datetime.fromisoformat(stamp.decode().replace("Z", "+00:00"))
                    self.latencies.append(arrived - sent.timestamp())
                    self.events += 1

    def close(self) -> None:
        self.stopping = True
        self.thread.join(2)
        for key in list(self.selector.get_map().values()):
            key.fileobj.close()  # type: ignore[union-attr]


def verdict(ok: bool) -> str:
    return "PASS" if ok else "FAIL"


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--duration", type=float, default=20.0)
    parser.add_argument("--jobs", type=int, default=1000)
    parser.add_argument("--interval", type=float, default=15.0)
    parser.add_argument("--clients", type=int, default=32)
    parser.add_argument("--subscribers", type=int, default=200)
    parser.add_argument("--workers", type=int, default=2)
    parser.add_argument("--threads", type=int, default=8)
    args = parser.parse_args()
    with tempfile.TemporaryDirectory() as tmp:
        server = Server(Path(tmp), args.workers, args.threads)
        try:
            return run_phases(server, args)
        finally:
            server.stop()


def run_phases(server: Server, args: argparse.Namespace) -> int:
    d = args.duration
    probe = http.client.HTTPConnection("127.0.0.1", server.port, timeout=10)
    if _post(probe, server.token, str(uuid.uuid4()), 0) == 404:
        print("POST /api/v1/metrics/live is not served: nothing to measure")
        return 1
    cpu0 = server.cpu_seconds()
    time.sleep(d)
    idle = (server.cpu_seconds() - cpu0) / d
    cpu0 = server.cpu_seconds()
    sent = paced_jobs(server.port, server.token, args.jobs, args.interval, d)
    live_cpu = (server.cpu_seconds() - cpu0) / d - idle
    print(f"idle server CPU: {idle * 100:.1f} % of a core")
    print(
        f"live traffic: {args.jobs} jobs x {args.interval:g} s ({sent / d:.1f} batches/s): "
        f"server CPU {live_cpu * 100:.1f} % of a core  target < 15 %  {verdict(live_cpu < 0.15)}"
    )
    rate, p99, errors = ingest(server.port, server.token, args.clients, d)
    print(
        f"ingest, {args.clients} clients: {rate:.0f} batches/s, p99 {p99 * 1000:.1f} ms, "
        f"{errors} non-2xx  target >= 1000/s and p99 < 50 ms  "
        f"{verdict(rate >= 1000 and p99 < 0.05)}"
    )
    subs = Subscribers(server.port, server.read, args.subscribers)
    time.sleep(1.0)
    rate_sub, p99_sub, errors_sub = ingest(server.port, server.token, args.clients, d)
    time.sleep(1.5)  # the last events arrive
    subs.close()
    lat = sorted(subs.latencies)
    lat_p99 = lat[int((len(lat) - 1) * 0.99)] if lat else float("nan")
    share = rate_sub / rate if rate else 0.0
    print(
        f"with {args.subscribers - subs.refused} SSE subscribers ({subs.refused} refused): "
        f"{rate_sub:.0f} batches/s, p99 {p99_sub * 1000:.1f} ms, {errors_sub} non-2xx"
    )
    print(
        f"  push-to-event latency p50 {lat[len(lat) // 2] if lat else float('nan'):.3f} s "
        f"p99 {lat_p99:.3f} s over {len(lat)} deliveries  target < 1 s  {verdict(lat_p99 < 1)}"
    )
    print(
        f"  push throughput with subscribers: {share * 100:.0f} % of without  target >= 80 %  "
        f"{verdict(share >= 0.8)}"
    )
    return 0


if __name__ == "__main__":
    sys.exit(main())
