"""Load test of ``resmon serve`` on SQLite, against a floor app on the same server.  (issue 7)

Three phases of ``--duration`` seconds each, on loopback, all with the same
workers and threads (``--workers`` gthread workers x ``--threads`` threads):

1. floor: the project's ingest floor, ``../shared/bench/floor_app.py`` (``--floor-app``),
   run as it is under stock gunicorn (``python -m gunicorn -k gthread --workers W
   --threads T --keep-alive 5 floor_app:app``, resmon serve's keep-alive; no resmon
   code in the process, no front), its SQLite
   database in the bench's temporary directory (FLOOR_DB, created by ``python
   floor_app.py DB``), FLOOR_HMAC_KEY the bench's key, and FLOOR_SWITCH the GIL
   switch interval resmon serve sets (``--floor-switch``): it parses the body
   (orjson), checks the scoped HMAC push token and inserts one row -- the cost of
   any receiver;
2. resmon, pushes only: ``--connections`` clients POST run summaries, each one a
   new run (distinct run ids) of one of ``--scopes`` distinct org/repo/workflow/job
   scopes, each with its own push token;
3. resmon, pushes and reads at once: the same pushes, plus ``--read-connections``
   clients reading those scopes (``GET /api/v1/metrics/repo/...?limit=20`` and
   ``GET /api/v1/jobs``).

The client is wrk (C, epoll) with a Lua script, so that on two cores the client
costs little next to the server; the bench installs it with apt-get when it is
missing and it can.  Prints requests per second, p50/p99 latency, non-2xx
responses, socket errors and, for the push phases, the server's CPU per request
(its process group's utime+stime over the phase's requests: what the ratio to the
floor would be on cores that run nothing else), then checks that every response
was 2xx, that the runs stored equal the 201 responses, and the targets: resmon
pushes/s at least 0.6 of the floor and at least 1000, p99 under 50 ms.  Exit status 1 when a
correctness check fails (targets are reported, not enforced: they depend on what
else the machine runs).

    .venv/bin/python bench/server_load.py                    # 15 s per phase
    .venv/bin/python bench/server_load.py --duration 10 --connections 32
    .venv/bin/python bench/server_load.py --duration 8 --runs 3  # medians of 3 runs
"""

from __future__ import annotations

import argparse
import os
import shutil
import signal
import socket
import sqlite3
import statistics
import subprocess
import sys
import tempfile
import time
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import orjson
import requests

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))

from resmon.server.wsgi import GIL_SWITCH_INTERVAL  # noqa: E402
from resmon.tokens import push_token  # noqa: E402

HMAC_KEY = "load-test-hmac-key"
READ_TOKEN = "load-test-read-token"
PLACEHOLDER = "\u0001{}\u0001"


# --- the floor app ---------------------------------------------------------------------

FLOOR_APP = ROOT.parent / "shared" / "bench" / "floor_app.py"


def start_floor(
    floor_app: Path, port: int, database: Path, args: argparse.Namespace, tmp: Path, log
) -> subprocess.Popen:
    """floor_app.py, unmodified, under stock gunicorn gthread: its table created by its
    own ``python floor_app.py DB``, then served with the workers and threads resmon gets."""
    env = {k: v for k, v in os.environ.items() if k != "GUNICORN_CMD_ARGS"}
    env.update(FLOOR_DB=str(database), FLOOR_HMAC_KEY=HMAC_KEY)
    if args.floor_switch:
        env["FLOOR_SWITCH"] = f"{args.floor_switch:g}"
    subprocess.run(
        [sys.executable, str(floor_app), str(database)],
        cwd=floor_app.parent,
        env=env,
        check=True,
    )
    return subprocess.Popen(
        [
            sys.executable,
            "-m",
            "gunicorn",
            "-k",
            "gthread",
            f"--workers={args.workers}",
            f"--threads={args.threads}",
            f"--bind=127.0.0.1:{port}",
            # resmon serve's keep-alive (resmon.server.wsgi), instead of gunicorn's 2 s:
            # the bench's quiet GRACE_SECONDS after a phase would otherwise see every
            # idle connection closed, which wrk counts as a socket error.
            "--keep-alive=5",
            f"--chdir={floor_app.parent}",
            f"{floor_app.stem}:app",
        ],
        cwd=tmp,  # no ./gunicorn.conf.py picked up: stock settings
        stdout=subprocess.DEVNULL,
        stderr=log,
        env=env,
        start_new_session=True,
    )


# --- wrk scripts -------------------------------------------------------------------------


def run_summary() -> dict:
    """A run summary of the size a real collector pushes (one container, top processes)."""
    stat = {"peak": 2.0, "p99": 1.9, "p95": 1.5, "p75": 1.0, "p50": 0.5, "avg": 0.7}
    procs = [
        {"pid": 40 + i, "name": f"proc{i}", "peak_cpu_percent": 99.5, "peak_mem_rss_bytes": 1e8}
        for i in range(5)
    ]
    return {
        "start_time": "2026-01-02T03:04:05Z",
        "end_time": "2026-01-02T03:14:05Z",
        "duration_seconds": 600.0,
        "sample_count": 300,
        "cpu_total_percent": {**stat, "peak": 95.0},
        "mem_used_bytes": {k: v * 1e9 for k, v in stat.items()},
        "mem_used_percent": {**stat, "peak": 50.0},
        "top_cpu_processes": procs,
        "top_mem_processes": procs,
        "containers": [
            {
                "name": "runner",
                "cpu_cores": stat,
                "memory_bytes": {k: v * 1e9 for k, v in stat.items()},
                "cpu_seconds": 420.5,
                "limit_cpu_cores": 2.0,
                "limit_memory_bytes": 2147483648,
            }
        ],
    }


def scopes(n: int) -> list[tuple[str, str, str, str]]:
    return [(f"org-{i % 50}", f"org-{i % 50}/repo-{i}", "ci.yml", f"job-{i % 7}") for i in range(n)]


def lua_string(text: str) -> str:
    return '"' + text.replace("\\", "\\\\").replace('"', '\\"').replace("\n", "\\n") + '"'


LUA_COMMON = """
local threads = {}
function setup(thread)
  thread:set("tid", #threads + 1)
  table.insert(threads, thread)
end
function init(args)
  counter = 0
  s2xx = 0; s201 = 0; s200 = 0; sother = 0
  prefix = args[1] or "run"
  stop_file = args[2]
  stopped = false
end
-- The bench creates stop_file when the phase ends: from then on no request is
-- sent (a delay of an hour), so every request in flight gets its answer counted
-- before wrk's own, longer, duration ends.
function delay()
  if not stopped and stop_file then
    local f = io.open(stop_file, "r")
    if f then f:close(); stopped = true end
  end
  if stopped then return 3600000 end
  return 0
end
function response(status, headers, body)
  if status == 201 then s201 = s201 + 1 elseif status == 200 then s200 = s200 + 1
  elseif status >= 200 and status < 300 then s2xx = s2xx + 1
  else sother = sother + 1 end
end
function done(summary, latency, requests)
  local c201, c200, c2xx, cother = 0, 0, 0, 0
  for _, t in ipairs(threads) do
    c201 = c201 + t:get("s201"); c200 = c200 + t:get("s200")
    c2xx = c2xx + t:get("s2xx"); cother = cother + t:get("sother")
  end
  local e = summary.errors
  io.write(string.format(
    'RESULT {"requests":%d,"duration_us":%d,"p50_us":%d,"p99_us":%d,"max_us":%d,' ..
    '"s201":%d,"s200":%d,"s2xx":%d,"non2xx":%d,"socket_errors":%d}\\n',
    summary.requests, summary.duration, latency:percentile(50), latency:percentile(99),
    latency.max, c201, c200, c2xx, cother,
    e.connect + e.read + e.write + e.timeout))
end
"""


def push_script(n_scopes: int) -> str:
    template = orjson.dumps(
        {
            "execution": {
                "organization": PLACEHOLDER.format("o"),
                "repository": PLACEHOLDER.format("r"),
                "workflow": PLACEHOLDER.format("w"),
                "job": PLACEHOLDER.format("j"),
                "run_id": PLACEHOLDER.format("id"),
            },
            "run_summary": run_summary(),
        }
    ).decode()
    template = template.replace("%", "%%")
    for name in ("o", "r", "w", "j", "id"):
        template = template.replace(PLACEHOLDER.format(name).replace("\u0001", "\\u0001"), "%s")
    entries = []
    for org, repo, wf, job in scopes(n_scopes):
        token = push_token(HMAC_KEY, org, repo, wf, job)
        entries.append(
            f"{{{lua_string(org)}, {lua_string(repo)}, {lua_string(wf)}, {lua_string(job)}, "
            f"{lua_string(token)}}}"
        )
    return (
        "local scopes = {\n  "
        + ",\n  ".join(entries)
        + "\n}\n"
        + f"local template = {lua_string(template)}\n"
        + """
function request()
  counter = counter + 1
  local s = scopes[(counter + tid * 7919) % #scopes + 1]
  local run_id = prefix .. "-" .. tid .. "-" .. counter
  local body = string.format(template, s[1], s[2], s[3], s[4], run_id)
  return wrk.format("POST", "/api/v1/metrics",
    {["Authorization"] = "Bearer " .. s[5], ["Content-Type"] = "application/json"}, body)
end
"""
        + LUA_COMMON
    )


def read_script(n_scopes: int) -> str:
    from urllib.parse import quote

    paths = [
        "/api/v1/metrics/repo/"
        + "/".join(quote(x, safe="") for x in (org, repo, wf, job))
        + "?limit=20"
        for org, repo, wf, job in scopes(n_scopes)[:100]
    ]
    paths.append("/api/v1/jobs")
    return (
        "local paths = {\n  "
        + ",\n  ".join(lua_string(p) for p in paths)
        + "\n}\n"
        + f"local auth = {lua_string('Bearer ' + READ_TOKEN)}\n"
        + """
function request()
  counter = counter + 1
  return wrk.format("GET", paths[(counter + tid * 31) % #paths + 1], {["Authorization"] = auth})
end
"""
        + LUA_COMMON
    )


# --- running things -----------------------------------------------------------------------


@dataclass
class Result:
    name: str
    requests: int
    seconds: float
    p50_ms: float
    p99_ms: float
    max_ms: float
    s201: int
    s200: int
    non2xx: int
    socket_errors: int
    # The server's CPU (utime+stime of its process group, all cores) per request of
    # the phase; less sensitive than req/s to what else the cores run.  0: not taken.
    server_cpu_ms: float = 0.0

    @property
    def rps(self) -> float:
        return self.requests / self.seconds if self.seconds else 0.0


def ensure_wrk() -> str:
    wrk = shutil.which("wrk")
    if wrk:
        return wrk
    if os.geteuid() == 0 and shutil.which("apt-get"):
        print("wrk missing: installing it with apt-get", file=sys.stderr)
        subprocess.run(
            "apt-get install -y -qq --no-install-recommends wrk >/dev/null 2>&1 || "
            "(apt-get update -qq && apt-get install -y -qq --no-install-recommends wrk >/dev/null)",
            shell=True,
            check=False,
        )
        wrk = shutil.which("wrk")
    if not wrk:
        sys.exit("this bench needs wrk (Debian package wrk): apt-get install wrk")
    return wrk


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def start_resmon(
    port: int, db: Path, log: Any, workers: int, threads: int, *options: str
) -> subprocess.Popen:
    """A real ``resmon serve`` of this checkout on 127.0.0.1:PORT, in its own session
    (so :func:`stop` can end it whole), its stderr in ``log``."""
    env = {
        **os.environ,
        "PYTHONPATH": str(ROOT),
        "RECEIVER_READ_TOKEN": READ_TOKEN,
        "RECEIVER_HMAC_KEY": HMAC_KEY,
    }
    return subprocess.Popen(
        [sys.executable, "-m", "resmon", "serve", f"--addr=127.0.0.1:{port}", f"--db={db}",
         f"--workers={workers}", f"--threads={threads}", *options],
        stdout=subprocess.DEVNULL, stderr=log, env=env, start_new_session=True,
    )  # fmt: skip


def wait_ready(url: str, proc: subprocess.Popen, log: Path) -> None:
    deadline = time.monotonic() + 30
    while time.monotonic() < deadline:
        if proc.poll() is not None:
            sys.exit(f"server exited with {proc.returncode}:\n{log.read_text()[-3000:]}")
        try:
            if requests.get(url, timeout=1).status_code == 200:
                return
        except requests.ConnectionError:
            pass
        time.sleep(0.1)
    sys.exit(f"server not ready:\n{log.read_text()[-3000:]}")


def wait_workers(proc: subprocess.Popen, workers: int) -> None:
    """gunicorn forks its workers one after the other: wait for all of them, or the
    first one would take every keep-alive connection wrk opens at its start."""
    deadline = time.monotonic() + 30
    while time.monotonic() < deadline:
        children = 0
        for entry in os.listdir("/proc"):
            if entry.isdigit():
                try:
                    stat = Path(f"/proc/{entry}/stat").read_bytes()
                except OSError:
                    continue
                children += int(stat[stat.rfind(b")") + 2 :].split()[1]) == proc.pid
        if children >= workers:
            time.sleep(0.5)  # let the last one finish importing and start accepting
            return
        time.sleep(0.05)
    sys.exit(f"only {children} of {workers} workers started")


def stop(proc: subprocess.Popen) -> None:
    proc.send_signal(signal.SIGTERM)
    try:
        proc.wait(30)
    except subprocess.TimeoutExpired:
        os.killpg(proc.pid, signal.SIGKILL)
        proc.wait(10)


GRACE_SECONDS = 3  # wrk keeps running this long after the stop file, for answers in flight


@dataclass
class Load:
    proc: subprocess.Popen
    stop_file: Path
    started: float
    stopped: float = 0.0


def start_wrk(
    wrk: str, script: Path, url: str, connections: int, seconds: float, threads: int, tag: str
) -> Load:
    stop_file = script.parent / f"stop-{tag}"
    stop_file.unlink(missing_ok=True)
    proc = subprocess.Popen(
        [
            wrk,
            f"-t{threads}",
            f"-c{connections}",
            f"-d{round(seconds) + GRACE_SECONDS}s",
            "--timeout",
            "5s",
            "-s",
            str(script),
            url,
            "--",
            f"{tag}-{time.time_ns()}",
            str(stop_file),
        ],
        stdout=subprocess.PIPE,
        stderr=subprocess.STDOUT,
        text=True,
    )
    return Load(proc=proc, stop_file=stop_file, started=time.monotonic())


def group_cpu(pgid: int) -> float:
    """utime+stime in seconds of the processes of group ``pgid`` (a server started in
    its own session: its arbiter and workers)."""
    total = 0
    for entry in os.listdir("/proc"):
        if not entry.isdigit():
            continue
        try:
            fields = Path(f"/proc/{entry}/stat").read_bytes().rsplit(b")", 1)[1].split()
        except OSError:
            continue
        if int(fields[2]) == pgid:
            total += int(fields[11]) + int(fields[12])
    return total / os.sysconf("SC_CLK_TCK")


def with_cpu(result: Result, cpu_seconds: float) -> Result:
    result.server_cpu_ms = cpu_seconds / max(result.requests, 1) * 1000
    return result


def run_phase(loads: list[Load], seconds: float) -> None:
    """Let the loads run ``seconds``, then tell them all to stop sending."""
    time.sleep(seconds)
    for load in loads:
        load.stop_file.touch()
        load.stopped = time.monotonic()


def finish_wrk(name: str, load: Load) -> Result:
    proc = load.proc
    out, _ = proc.communicate(timeout=600)
    line = next((x for x in out.splitlines() if x.startswith("RESULT ")), None)
    if line is None:
        sys.exit(f"wrk gave no result for {name}:\n{out}")
    r = orjson.loads(line[len("RESULT ") :])
    return Result(
        name=name,
        requests=r["requests"],
        # The sending window, not wrk's whole run (which includes the grace period).
        seconds=load.stopped - load.started,
        p50_ms=r["p50_us"] / 1000,
        p99_ms=r["p99_us"] / 1000,
        max_ms=r["max_us"] / 1000,
        s201=r["s201"],
        s200=r["s200"],
        non2xx=r["non2xx"],
        socket_errors=r["socket_errors"],
    )


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--duration", type=float, default=15.0, help="seconds per phase")
    parser.add_argument("--connections", type=int, default=32, help="concurrent pushing clients")
    parser.add_argument("--read-connections", type=int, default=8, help="concurrent readers")
    parser.add_argument("--scopes", type=int, default=500, help="distinct push scopes")
    parser.add_argument("--workers", type=int, default=2)
    parser.add_argument("--threads", type=int, default=8)
    parser.add_argument(
        "--floor-app",
        type=Path,
        default=FLOOR_APP,
        help="the ingest floor, served by stock gunicorn (default: %(default)s)",
    )
    parser.add_argument(
        "--floor-switch",
        type=float,
        default=GIL_SWITCH_INTERVAL,
        help="FLOOR_SWITCH for floor_app.py: its GIL switch interval in seconds, by default "
        "the one resmon serve sets (%(default)g); 0 leaves Python's 5 ms",
    )
    parser.add_argument(
        "--runs",
        type=int,
        default=1,
        help="repeat the three phases (floor and resmon each on a fresh server), then "
        "print the median of each figure and of the ratio to the floor",
    )
    args = parser.parse_args()
    args.floor_app = args.floor_app.resolve()
    if not args.floor_app.is_file():
        sys.exit(f"no floor app at {args.floor_app}")

    wrk = ensure_wrk()
    status = 0
    runs: list[list[Result]] = []
    for i in range(args.runs):
        load_before = os.getloadavg()[0]
        results, floor_rows, stored, metrics = run_once(wrk, args)
        if args.runs > 1:
            print(f"\n--- run {i + 1} of {args.runs} (load average before it {load_before:.2f})")
        print_table(results, args)
        status |= verdict(results, floor_rows, stored, metrics)
        runs.append(results)
    if args.runs > 1:
        medians = [
            Result(
                name=first.name,
                requests=round(statistics.median(r[k].requests for r in runs)),
                seconds=1.0,
                p50_ms=statistics.median(r[k].p50_ms for r in runs),
                p99_ms=statistics.median(r[k].p99_ms for r in runs),
                max_ms=statistics.median(r[k].max_ms for r in runs),
                s201=0,
                s200=0,
                non2xx=sum(r[k].non2xx for r in runs),
                socket_errors=sum(r[k].socket_errors for r in runs),
                server_cpu_ms=statistics.median(r[k].server_cpu_ms for r in runs),
            )
            for k, first in enumerate(runs[0])
        ]
        for k, result in enumerate(medians):  # req/s: the median rate, not of counts
            result.requests = round(statistics.median(r[k].rps for r in runs))
        ratios = sorted(r[1].rps / r[0].rps for r in runs if r[0].rps)
        print(f"\n--- medians of {args.runs} runs (requests column: the median req/s)")
        print_table(medians, args)
        print()
        print(f"resmon pushes/s / floor, per run: {', '.join(f'{x:.2f}' for x in ratios)}")
        median_ratio = statistics.median(ratios) if ratios else 0.0
        print_targets("median resmon", median_ratio, medians[1], medians[2])
    return status


def run_once(wrk: str, args: argparse.Namespace) -> tuple[list[Result], int, int, str]:
    """The three phases once: the floor, then a fresh resmon serve."""
    results: list[Result] = []
    with tempfile.TemporaryDirectory(prefix="resmon-load-") as tmp_name:
        tmp = Path(tmp_name)
        push_lua, read_lua = tmp / "push.lua", tmp / "read.lua"
        push_lua.write_text(push_script(args.scopes))
        read_lua.write_text(read_script(args.scopes))

        # 1. the floor
        port, floor_db, floor_log = free_port(), tmp / "floor.db", tmp / "floor.log"
        with floor_log.open("wb") as log:
            floor = start_floor(args.floor_app, port, floor_db, args, tmp, log)
        try:
            wait_ready(f"http://127.0.0.1:{port}/health", floor, floor_log)
            wait_workers(floor, args.workers)
            cpu0 = group_cpu(floor.pid)
            load = start_wrk(
                wrk,
                push_lua,
                f"http://127.0.0.1:{port}",
                args.connections,
                args.duration,
                2,
                "floor",
            )
            run_phase([load], args.duration)
            result = finish_wrk("floor: push", load)
            results.append(with_cpu(result, group_cpu(floor.pid) - cpu0))
        finally:
            stop(floor)
        floor_rows = sqlite3.connect(floor_db).execute("SELECT count(*) FROM runs").fetchone()[0]

        # 2. and 3. resmon serve
        port, db, log_path = free_port(), tmp / "metrics.db", tmp / "resmon.log"
        with log_path.open("wb") as log:
            server = start_resmon(port, db, log, args.workers, args.threads, "--log-level=info")
        url = f"http://127.0.0.1:{port}"
        try:
            wait_ready(url + "/readyz", server, log_path)
            wait_workers(server, args.workers)
            cpu0 = group_cpu(server.pid)
            load = start_wrk(wrk, push_lua, url, args.connections, args.duration, 2, "push")
            run_phase([load], args.duration)
            result = finish_wrk("resmon: push", load)
            results.append(with_cpu(result, group_cpu(server.pid) - cpu0))
            pushes = start_wrk(wrk, push_lua, url, args.connections, args.duration, 2, "mixed")
            reads = start_wrk(wrk, read_lua, url, args.read_connections, args.duration, 1, "read")
            run_phase([pushes, reads], args.duration)
            results.append(finish_wrk("resmon: push + reads", pushes))
            results.append(finish_wrk("resmon: reads + push", reads))
            metrics = requests.get(
                url + "/metrics", headers={"Authorization": f"Bearer {READ_TOKEN}"}, timeout=10
            ).text
        finally:
            stop(server)
        stored = sqlite3.connect(db).execute("SELECT count(*) FROM runs").fetchone()[0]

    return results, floor_rows, stored, metrics


def print_table(results: list[Result], args: argparse.Namespace) -> None:
    print(
        f"\nresmon serve load test: {os.cpu_count()} cores, {args.workers} workers x {args.threads} "
        f"threads, SQLite, {args.connections} push clients ({args.read_connections} readers in "
        f"the mixed phase), {args.scopes} scopes, {args.duration:g} s per phase, client wrk"
    )
    switch = f"{args.floor_switch * 1000:g} ms" if args.floor_switch else "Python's default"
    print(
        f"floor: {args.floor_app.name} under stock gunicorn gthread {args.workers} x "
        f"{args.threads} (no front; keep-alive 5 s; GIL switch interval {switch}; {args.floor_app})\n"
    )
    header = f"{'phase':<22} {'req/s':>8} {'p50 ms':>8} {'p99 ms':>8} {'max ms':>8} {'requests':>9} {'201':>7} {'200':>6} {'non-2xx':>8} {'sock err':>8} {'CPU ms/req':>10}"
    print(header)
    print("-" * len(header))
    for r in results:
        print(
            f"{r.name:<22} {r.rps:>8.0f} {r.p50_ms:>8.2f} {r.p99_ms:>8.2f} {r.max_ms:>8.1f} "
            f"{r.requests:>9} {r.s201:>7} {r.s200:>6} {r.non2xx:>8} {r.socket_errors:>8}"
            f" {f'{r.server_cpu_ms:.3f}' if r.server_cpu_ms else '':>10}"
        )


def verdict(results: list[Result], floor_rows: int, stored: int, metrics: str) -> int:
    floor, push, mixed_push = results[0], results[1], results[2]
    failures = []
    for r in results:
        if r.non2xx or r.socket_errors:
            failures.append(
                f"{r.name}: {r.non2xx} non-2xx responses, {r.socket_errors} socket errors"
            )
    created = push.s201 + mixed_push.s201
    if stored != created:
        failures.append(f"resmon stored {stored} runs but answered 201 {created} times")
    if floor_rows != floor.s201:
        failures.append(f"floor stored {floor_rows} rows but answered 201 {floor.s201} times")
    if push.s200 or mixed_push.s200:
        failures.append("distinct runs were answered as duplicates")
    ratio = push.rps / floor.rps if floor.rps else 0.0
    print()
    print(
        f"stored runs {stored} == 201 responses {created}: {'yes' if stored == created else 'NO'}"
    )
    print(f"/metrics after the run: {_metric_line(metrics, 'resmon_runs_stored')}")
    if floor.server_cpu_ms and push.server_cpu_ms:
        print(
            f"server CPU per push: resmon {push.server_cpu_ms:.3f} ms, floor "
            f"{floor.server_cpu_ms:.3f} ms (floor/resmon {floor.server_cpu_ms / push.server_cpu_ms:.2f}:"
            " the ratio the cores allow when nothing else runs)"
        )
    print_targets("resmon", ratio, push, mixed_push)
    for f in failures:
        print(f"FAIL: {f}")
    return 1 if failures else 0


def print_targets(label: str, ratio: float, push: Result, mixed_push: Result) -> None:
    """The push targets, met or missed: of one run, or of the medians (``label``)."""
    for text, ok, target in (
        (f"{label} pushes/s / floor = {ratio:.2f}", ratio >= 0.6, ">= 0.6"),
        (f"{label} pushes/s = {push.rps:.0f}", push.rps >= 1000, ">= 1000"),
        (f"{label} push p99 = {push.p99_ms:.1f} ms", push.p99_ms < 50, "< 50 ms"),
        (
            f"{label} push p99 with reads = {mixed_push.p99_ms:.1f} ms",
            mixed_push.p99_ms < 50,
            "< 50 ms",
        ),
    ):
        print(f"target {target:<8} {'met   ' if ok else 'MISSED'} {text}")


def _metric_line(text: str, name: str) -> str:
    return next((line for line in text.splitlines() if line.startswith(name + " ")), "(missing)")


if __name__ == "__main__":
    sys.exit(main())
