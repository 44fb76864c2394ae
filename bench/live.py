"""Live runs on a real ``resmon serve`` (SQLite, loopback): CPU of the live traffic,
batch ingest under load, and 200 SSE subscribers.  (issue 15)

Phases, each ``--duration`` seconds (a few minutes in all):

1. idle: the server's CPU with nothing to do (subtracted from phase 2);
2. live traffic: ``--jobs`` simulated running jobs, each sending a batch of 7
   samples every ``--interval`` seconds to ``POST /api/v1/metrics/live``, spread
   evenly; the server's CPU for it, in percent of one core (target < 15 %).  Every
   job's first batch (which creates its run) is sent before, back to back, and
   its CPU printed apart: the phase measures running jobs, not 1,000 starting;
3. ingest: ``--clients`` keep-alive connections of wrk (C, epoll, a Lua script)
   sending batches back to back, 64 runs per wrk thread; batches/s and p99 (target
   >= 1,000/s, p99 < 50 ms), and the server's CPU per batch;
4. the same with ``--subscribers`` SSE streams open (``GET /api/v1/events``, every
   event): batches/s against phase 3 (target >= 80 %) and push-to-event latency
   (the batch's sample time, stamped when sent, to the event's arrival on each
   stream; p99 target < 1 s).

The clients run on the same two cores as the server, so the figures are a floor;
each phase prints the client's own CPU in percent of one core (wrk's from its
rusage, the bench process's own for the paced jobs and the SSE streams).  Every
client sends one pre-built body per run with only the run key, seq and sample times
patched in (``body_template``).  CPU is the utime+stime of the server's arbiter and
workers (/proc).  ``--runs N`` repeats everything on a fresh server and prints the
medians.  wrk is Debian's package ``wrk`` (LuaJIT: the sample time is stamped with
gettimeofday through its FFI).

    .venv/bin/python bench/live.py                    # 20 s per phase
    .venv/bin/python bench/live.py --duration 8 --runs 3
"""

from __future__ import annotations

import argparse
import http.client
import os
import re
import resource
import secrets
import selectors
import shutil
import signal
import socket
import statistics
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
sys.path.insert(0, str(Path(__file__).resolve().parent))

import server_load  # noqa: E402

from resmon.tokens import push_token  # noqa: E402

SCOPE = ("bench-org", "bench-org/repo", "live.yml", "build")
T_FIELD = re.compile(rb'"t":"([^"]+)"')
WRK = shutil.which("wrk") or "wrk"


def now_text() -> str:
    return datetime.now(UTC).strftime("%Y-%m-%dT%H:%M:%S.%fZ")


MARKS = {"\x01R": "run", "\x01S": "seq", "\x01T": "t"}


def batch_body(run_key: str, seq: object, t: str) -> dict:
    sample = {
        "t": t,
        "elapsed": 2.0,
        "host": {"cpu_percent": 40.0, "mem_used_bytes": 1 << 30, "mem_total_bytes": 4 << 30},
        "job": {"cpu_cores": 1.0, "memory_bytes": 1 << 28, "cpu_seconds": 20.0},
        "containers": {
            "command": {
                "cpu_cores": 1.0,
                "memory_bytes": 1 << 28,
                "cpu_seconds": 20.0,
                "memory_kind": "pss",
                "limit_cpu_cores": 2.0,
                "limit_memory_bytes": None,
            }
        },
    }
    org, repo, workflow, job = SCOPE
    return {
        "execution": {
            "organization": org,
            "repository": repo,
            "workflow": workflow,
            "job": job,
            "run_id": run_key,
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
        # 7 samples stamped now (the snapshot event carries the time of the last)
        "batch": {"seq": seq, "samples": [sample] * 7},
    }


def body_template() -> tuple[str, list[str]]:
    """The batch body as a ``%s`` template and what each ``%s`` is (run, seq, t):
    built once, so a client only formats three values into it per batch."""
    text = orjson.dumps(batch_body("\x01R", "\x01S", "\x01T")).decode().replace("%", "%%")
    order = []
    pattern = re.compile(r'"\\u0001S"|\\u0001[RT]')
    for match in pattern.finditer(text):
        order.append(MARKS["\x01" + match.group().strip('"')[-1]])
    return pattern.sub("%s", text), order


TEMPLATE, ORDER = body_template()


def batch(run_key: str, seq: int) -> bytes:
    values = {"run": run_key, "seq": str(seq), "t": now_text()}
    return (TEMPLATE % tuple(values[name] for name in ORDER)).encode()


class Server:
    def __init__(self, tmp: Path, workers: int, threads: int) -> None:
        self.tmp = tmp
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
        return server_load.group_cpu(self.proc.pid)

    def stop(self) -> None:
        os.killpg(self.proc.pid, signal.SIGTERM)
        try:
            self.proc.wait(30)
        except subprocess.TimeoutExpired:
            print("the server did not stop within 30 s of SIGTERM: killed", file=sys.stderr)
            os.killpg(self.proc.pid, signal.SIGKILL)
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


def paced_jobs(port: int, token: str, keys: list[str], interval: float, duration: float) -> int:
    """One batch of each job every ``interval`` s, spread evenly, seq from 1 (the
    jobs' first batches were sent before: the steady state is measured); batches sent."""
    conn = http.client.HTTPConnection("127.0.0.1", port, timeout=10)
    jobs = len(keys)
    gap = interval / jobs
    start = time.monotonic()
    sent = 0
    while time.monotonic() - start < duration:
        due = start + sent * gap
        delay = due - time.monotonic()
        if delay > 0:
            time.sleep(delay)
        _post(conn, token, keys[sent % jobs], 1 + sent // jobs)
        sent += 1
    return sent


def first_batches(port: int, token: str, keys: list[str]) -> None:
    """Each job's first batch (the run is created), back to back."""
    conn = http.client.HTTPConnection("127.0.0.1", port, timeout=10)
    for key in keys:
        _post(conn, token, key, 0)


LUA = """
local ffi = require("ffi")
ffi.cdef[[ typedef struct { long s; long us; } bench_tv;
int gettimeofday(bench_tv *tv, void *tz); ]]
local tv = ffi.new("bench_tv")
local threads = {}
function setup(thread)
  thread:set("tid", #threads + 1)
  table.insert(threads, thread)
end
function init(args)
  counter = 0; bad = 0
  prefix = args[1]
end
local function now_text()
  ffi.C.gettimeofday(tv, nil)
  return os.date("!%Y-%m-%dT%H:%M:%S", tonumber(tv.s)) .. string.format(".%06dZ", tonumber(tv.us))
end
function request()
  counter = counter + 1
  local values = {
    run = prefix .. "-" .. tid .. "-" .. (counter % RUNS),
    seq = tostring(math.floor(counter / RUNS)),
    t = now_text(),
  }
  local args = {}
  for i, name in ipairs(ORDER) do args[i] = values[name] end
  local body = string.format(TEMPLATE, unpack(args))
  return wrk.format("POST", "/api/v1/metrics/live", {
    ["Authorization"] = AUTH, ["Content-Type"] = "application/json",
    ["Idempotency-Key"] = values.run .. ":" .. values.seq}, body)
end
function response(status, headers, body)
  if status ~= 200 and status ~= 201 then bad = bad + 1 end
end
function done(summary, latency, requests)
  local b = 0
  for _, t in ipairs(threads) do b = b + t:get("bad") end
  local e = summary.errors
  io.write(string.format('RESULT {"requests":%d,"duration_us":%d,"p99_us":%d,"bad":%d}\\n',
    summary.requests, summary.duration, latency:percentile(99),
    b + e.connect + e.read + e.write + e.timeout))
end
"""


def lua_script(token: str) -> str:
    def lua(text: str) -> str:
        return '"' + text.replace("\\", "\\\\").replace('"', '\\"') + '"'

    order = ", ".join(lua(name) for name in ORDER)
    return (
        f"local TEMPLATE = {lua(TEMPLATE)}\nlocal ORDER = {{{order}}}\n"
        f"local AUTH = {lua('Bearer ' + token)}\nlocal RUNS = 64\n" + LUA
    )


def ingest(server: Server, clients: int, duration: float) -> dict[str, float]:
    """wrk, ``clients`` connections back to back for ``duration`` s: batches/s, p99,
    non-2xx and socket errors, the server's CPU ms per batch, wrk's CPU share."""
    script = server.tmp / "ingest.lua"
    script.write_text(lua_script(server.token))
    cpu0, children0 = server.cpu_seconds(), _children_cpu()
    out = subprocess.run(
        [WRK, "-t2", f"-c{clients}", f"-d{duration:g}s", "--timeout", "5s", "-s", str(script),
         server.url, "--", uuid.uuid4().hex[:12]],
        capture_output=True, text=True, check=True,
    ).stdout  # fmt: skip
    server_cpu = server.cpu_seconds() - cpu0
    line = next((x for x in out.splitlines() if x.startswith("RESULT ")), None)
    if line is None:
        sys.exit(f"wrk gave no result:\n{out}")
    r = orjson.loads(line[len("RESULT ") :])
    seconds = r["duration_us"] / 1e6
    return {
        "rate": r["requests"] / seconds,
        "p99": r["p99_us"] / 1e6,
        "bad": r["bad"],
        "server_ms": server_cpu / max(r["requests"], 1) * 1000,
        "client_cpu": (_children_cpu() - children0) / seconds,
    }


def _children_cpu() -> float:
    usage = resource.getrusage(resource.RUSAGE_CHILDREN)
    return usage.ru_utime + usage.ru_stime


def _self_cpu() -> float:
    usage = resource.getrusage(resource.RUSAGE_SELF)
    return usage.ru_utime + usage.ru_stime


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
    parser.add_argument("--runs", type=int, default=1, help="repeat, then print medians")
    args = parser.parse_args()
    if not shutil.which(WRK):
        sys.exit("this bench needs wrk (Debian package wrk): apt-get install wrk")
    runs = []
    for i in range(args.runs):
        with tempfile.TemporaryDirectory() as tmp:
            server = Server(Path(tmp), args.workers, args.threads)
            try:
                figures = run_phases(server, args)
            finally:
                server.stop()
        if figures is None:
            return 1
        runs.append(figures)
        report(figures, args, f"run {i + 1} of {args.runs}")
    if args.runs > 1:
        medians = {k: statistics.median(r[k] for r in runs) for k in runs[0]}
        report(medians, args, f"medians of {args.runs} runs")
    return 0


def run_phases(server: Server, args: argparse.Namespace) -> dict[str, float] | None:
    d = args.duration
    probe = http.client.HTTPConnection("127.0.0.1", server.port, timeout=10)
    if _post(probe, server.token, str(uuid.uuid4()), 0) == 404:
        print("POST /api/v1/metrics/live is not served: nothing to measure")
        return None
    cpu0 = server.cpu_seconds()
    time.sleep(d)
    idle = (server.cpu_seconds() - cpu0) / d
    keys = [str(uuid.uuid4()) for _ in range(args.jobs)]
    cpu0 = server.cpu_seconds()
    first_batches(server.port, server.token, keys)
    first_ms = (server.cpu_seconds() - cpu0) / args.jobs * 1000
    cpu0, self0 = server.cpu_seconds(), _self_cpu()
    sent = paced_jobs(server.port, server.token, keys, args.interval, d)
    live_client = (_self_cpu() - self0) / d
    live_cpu = (server.cpu_seconds() - cpu0) / d - idle
    alone = ingest(server, args.clients, d)
    subs = Subscribers(server.port, server.read, args.subscribers)
    time.sleep(1.0)
    self0 = _self_cpu()
    with_subs = ingest(server, args.clients, d)
    streams_cpu = (_self_cpu() - self0) / d
    time.sleep(1.5)  # the last events arrive
    subs.close()
    lat = sorted(subs.latencies)
    nan = float("nan")
    return {
        "idle": idle,
        "live_rate": sent / d,
        "live_cpu": live_cpu,
        "live_client": live_client,
        "first_ms": first_ms,
        **{f"ingest_{k}": v for k, v in alone.items()},
        **{f"subs_{k}": v for k, v in with_subs.items()},
        "subs_streams_cpu": streams_cpu,
        "subscribers": args.subscribers - subs.refused,
        "lat_p50": lat[len(lat) // 2] if lat else nan,
        "lat_p99": lat[int((len(lat) - 1) * 0.99)] if lat else nan,
        "deliveries": len(lat),
        "share": with_subs["rate"] / alone["rate"] if alone["rate"] else 0.0,
    }


def report(f: dict[str, float], args: argparse.Namespace, title: str) -> None:
    pct = 100
    print(f"--- {title}")
    print(f"idle server CPU: {f['idle'] * pct:.1f} % of a core")
    print(
        f"live traffic: {args.jobs} jobs x {args.interval:g} s ({f['live_rate']:.1f} batches/s): "
        f"server CPU {f['live_cpu'] * pct:.1f} % of a core  target < 15 %  "
        f"{verdict(f['live_cpu'] < 0.15)}  (client {f['live_client'] * pct:.1f} %; "
        f"a first batch, creating its run: {f['first_ms']:.2f} ms server CPU)"
    )
    print(
        f"ingest, {args.clients} connections: {f['ingest_rate']:.0f} batches/s, "
        f"p99 {f['ingest_p99'] * 1000:.1f} ms, {f['ingest_bad']:.0f} non-2xx/errors  "
        f"target >= 1000/s and p99 < 50 ms  "
        f"{verdict(f['ingest_rate'] >= 1000 and f['ingest_p99'] < 0.05)}  "
        f"(server {f['ingest_server_ms']:.2f} ms CPU per batch; "
        f"client wrk {f['ingest_client_cpu'] * pct:.0f} % of a core)"
    )
    print(
        f"with {f['subscribers']:.0f} SSE subscribers: {f['subs_rate']:.0f} batches/s, "
        f"p99 {f['subs_p99'] * 1000:.1f} ms, {f['subs_bad']:.0f} non-2xx/errors  "
        f"(client wrk {f['subs_client_cpu'] * pct:.0f} % + streams "
        f"{f['subs_streams_cpu'] * pct:.0f} % of a core)"
    )
    print(
        f"  push-to-event latency p50 {f['lat_p50']:.3f} s p99 {f['lat_p99']:.3f} s over "
        f"{f['deliveries']:.0f} deliveries  target < 1 s  {verdict(f['lat_p99'] < 1)}"
    )
    print(
        f"  push throughput with subscribers: {f['share'] * pct:.0f} % of without  "
        f"target >= 80 %  {verdict(f['share'] >= 0.8)}"
    )


if __name__ == "__main__":
    sys.exit(main())
