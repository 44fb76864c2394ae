"""Read API latency with 100,000 stored runs, and proof the queries use indexes.

    .venv/bin/python bench/query_api.py [--runs 100000] [--jobs 200] [--requests 50]

Seeds a temporary SQLite file through the models (bulk inserts in a few
transactions: 100,000 runs over 90 days, two containers each, a realistic
payload per run), starts a real ``resmon serve`` on it, sends ``--requests``
sequential GETs to each read endpoint and prints p50/p99 latency, then prints
SQLite's EXPLAIN QUERY PLAN for every statement the read side runs.
Everything is removed afterwards.
"""

from __future__ import annotations

import argparse
import logging
import os
import random
import secrets
import shutil
import signal
import socket
import statistics
import subprocess
import sys
import tempfile
import time
from datetime import UTC, datetime, timedelta
from pathlib import Path

import orjson
import requests

from resmon.stats import STAT_KEYS
from resmon.store import history
from resmon.store.db import migrate, open_database
from resmon.store.models import ContainerStat, Run, database_proxy

BATCH = 2000  # rows per INSERT statement batch, well under SQLite's variable limit


def stat(top: float) -> dict[str, float]:
    return {
        "peak": top,
        "p99": top * 0.99,
        "p95": top * 0.95,
        "p75": top * 0.75,
        "p50": top / 2,
        "avg": top * 0.55,
    }


def jobs(n: int) -> list[tuple[str, str, str, str]]:
    out = []
    for i in range(n):
        org = f"org{i % 20}"
        out.append(
            (org, f"{org}/repo{i % 37}", ("ci.yml", "nightly.yml", "release.yml")[i % 3], f"job{i}")
        )
    return out


def seed(path: str, runs: int, n_jobs: int) -> tuple[list[tuple[str, str, str, str]], float]:
    t0 = time.perf_counter()
    db = open_database(path)
    migrate(db)
    rng = random.Random(42)
    scopes = jobs(n_jobs)
    now = datetime.now(UTC).replace(tzinfo=None)
    start = now - timedelta(days=90)
    step = (now - start) / runs
    run_rows, container_rows = [], []
    # Ids are assigned in insertion (= arrival) order; known up front for the containers.
    next_id = 1
    for i in range(runs):
        org, repo, workflow, job = scopes[rng.randrange(n_jobs)]
        received = start + step * i
        duration = rng.uniform(60, 1800)
        cpu, mem = rng.uniform(5, 95), rng.uniform(0.5, 12) * 2**30
        cores, cmem = rng.uniform(0.1, 3.5), rng.uniform(0.1, 3.5) * 2**30
        summary = {
            "start_time": (received - timedelta(seconds=duration)).isoformat() + "Z",
            "end_time": received.isoformat() + "Z",
            "duration_seconds": duration,
            "sample_count": int(duration / 2),
            "cpu_seconds": cores * duration * 0.6,
            "cpu_total_percent": stat(cpu),
            "mem_used_bytes": stat(mem),
            "mem_used_percent": stat(mem / 2**34 * 100),
            "top_cpu_processes": [
                {"pid": 100 + k, "name": f"proc{k}", "peak_cpu_percent": 90.0 / (k + 1), "peak_mem_rss_bytes": 2**27}
                for k in range(5)
            ],
            "top_mem_processes": [
                {"pid": 100 + k, "name": f"proc{k}", "peak_cpu_percent": 9.0, "peak_mem_rss_bytes": 2**28 // (k + 1)}
                for k in range(5)
            ],
            "containers": [
                {"name": "runner", "cpu_cores": stat(cores), "memory_bytes": stat(cmem), "limit_cpu_cores": 4.0, "limit_memory_bytes": 4 * 2**30},
                {"name": "postgres", "cpu_cores": stat(0.3), "memory_bytes": stat(2**28)},
            ],
        }  # fmt: skip
        run_rows.append(
            {
                "id": next_id,
                "organization": org,
                "repository": repo,
                "workflow": workflow,
                "job": job,
                "run_id": str(1000 + i),
                "run_attempt": "",
                "body_sha256": secrets.token_hex(32),
                "run_key": secrets.token_hex(32),
                "received_at": received,
                "start_time": received - timedelta(seconds=duration),
                "end_time": received,
                "duration_seconds": duration,
                "sample_count": int(duration / 2),
                "cpu_seconds": summary["cpu_seconds"],
                "cpu_percent_peak": cpu,
                "cpu_percent_p95": cpu * 0.95,
                "mem_bytes_peak": int(mem),
                "mem_bytes_p95": int(mem * 0.95),
                "payload": orjson.dumps(summary).decode(),
            }
        )
        for c in summary["containers"]:
            row = {"run": next_id, "name": c["name"]}
            for key in STAT_KEYS:
                row[f"cpu_cores_{key}"] = c["cpu_cores"][key]
                row[f"memory_bytes_{key}"] = int(c["memory_bytes"][key])
            row["limit_cpu_cores"] = c.get("limit_cpu_cores")
            row["limit_memory_bytes"] = c.get("limit_memory_bytes")
            container_rows.append(row)
        next_id += 1
        if len(run_rows) >= 25_000 or i == runs - 1:
            with db.atomic():
                for k in range(0, len(run_rows), BATCH):
                    Run.insert_many(run_rows[k : k + BATCH]).execute()
                for k in range(0, len(container_rows), BATCH):
                    ContainerStat.insert_many(container_rows[k : k + BATCH]).execute()
            run_rows, container_rows = [], []
    db.execute_sql("ANALYZE")  # what a long-running database has: planner statistics
    db.close()
    return scopes, time.perf_counter() - t0


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def start_server(path: str, port: int, token: str) -> subprocess.Popen:
    env = {**os.environ, "RECEIVER_READ_TOKEN": token, "RECEIVER_HMAC_KEY": secrets.token_hex(16)}
    proc = subprocess.Popen(
        [sys.executable, "-m", "resmon", "serve", f"--addr=127.0.0.1:{port}", f"--db={path}",
         "--workers=1", "--threads=4", "--log-level=warning"],
        env=env, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL, start_new_session=True,
    )  # fmt: skip
    deadline = time.monotonic() + 60
    while time.monotonic() < deadline:
        if proc.poll() is not None:
            raise SystemExit(f"resmon serve exited with {proc.returncode}")
        try:
            if requests.get(f"http://127.0.0.1:{port}/readyz", timeout=1).status_code == 200:
                return proc
        except requests.ConnectionError:
            pass
        time.sleep(0.1)
    os.killpg(proc.pid, signal.SIGKILL)
    raise SystemExit("resmon serve did not become ready")


def measure(session: requests.Session, url: str, n: int) -> tuple[float, float, int]:
    times = []
    size = 0
    for _ in range(n):
        t0 = time.perf_counter()
        response = session.get(url, timeout=30)
        times.append((time.perf_counter() - t0) * 1000)
        response.raise_for_status()
        size = len(response.content)
    times.sort()
    p99 = times[min(len(times) - 1, int((len(times) - 1) * 0.99))]
    return statistics.median(times), p99, size


class Capture(logging.Handler):
    """peewee logs every statement it runs at DEBUG as (sql, params)."""

    def __init__(self) -> None:
        super().__init__(logging.DEBUG)
        self.statements: list[tuple[str, tuple]] = []

    def emit(self, record: logging.LogRecord) -> None:
        if (
            isinstance(record.msg, tuple)
            and len(record.msg) == 2
            and not str(record.msg[0]).startswith("EXPLAIN")
        ):
            self.statements.append(record.msg)


def explain(path: str, scope: tuple[str, str, str, str], run_pk: int) -> None:
    db = open_database(path)
    capture = Capture()
    peewee_log = logging.getLogger("peewee")
    peewee_log.addHandler(capture)
    peewee_log.setLevel(logging.DEBUG)
    questions = {
        "jobs": lambda: history.list_jobs(),
        "runs of a job": lambda: history.job_runs(*scope, limit=20),
        "one run": lambda: history.get_run(run_pk),
        "trend per run": lambda: history.trend(*scope),
        "trend per day, container": lambda: history.trend(*scope, container="runner", by="day"),
        "top cpu 7d": lambda: history.top("cpu", period="7d"),
    }
    try:
        for name, question in questions.items():
            capture.statements.clear()
            question()
            print(f"\n{name}:")
            for sql, params in list(capture.statements):
                print(f"  {sql[:110]}{'...' if len(sql) > 110 else ''}")
                for row in db.execute_sql("EXPLAIN QUERY PLAN " + sql, params).fetchall():
                    print(f"      {row[-1]}")
    finally:
        peewee_log.removeHandler(capture)
        database_proxy.close()


def main() -> None:
    parser = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    parser.add_argument("--runs", type=int, default=100_000)
    parser.add_argument("--jobs", type=int, default=200)
    parser.add_argument("--requests", type=int, default=50)
    args = parser.parse_args()

    tmp = tempfile.mkdtemp(prefix="resmon-bench-")
    path = str(Path(tmp) / "metrics.db")
    proc = None
    try:
        scopes, seconds = seed(path, args.runs, args.jobs)
        size = os.path.getsize(path) / 2**20
        print(f"seeded {args.runs} runs ({2 * args.runs} container rows) of {args.jobs} jobs "
              f"in {seconds:.1f} s; database {size:.0f} MiB")  # fmt: skip
        token = secrets.token_hex(16)
        port = free_port()
        proc = start_server(path, port, token)
        base = f"http://127.0.0.1:{port}"
        org, repo, workflow, job = scopes[7]
        job_path = f"/api/v1/jobs/{org}/{repo.replace('/', '%2F')}/{workflow}/{job}"
        session = requests.Session()
        session.headers["Authorization"] = f"Bearer {token}"
        some_run = session.get(f"{base}{job_path}/runs?limit=1", timeout=30).json()["runs"][0]["id"]
        endpoints = [
            ("GET /api/v1/jobs", "/api/v1/jobs"),
            ("GET /api/v1/jobs?organization=org3", "/api/v1/jobs?organization=org3"),
            ("GET .../runs?limit=20", f"{job_path}/runs?limit=20"),
            ("GET .../runs?since=7d", f"{job_path}/runs?since=7d"),
            ("GET /api/v1/runs/{id}", f"/api/v1/runs/{some_run}"),
            ("GET .../trend", f"{job_path}/trend"),
            ("GET .../trend?container=runner&by=day", f"{job_path}/trend?container=runner&by=day&limit=90"),
            ("GET /api/v1/top?metric=cpu&period=7d", "/api/v1/top?metric=cpu&period=7d"),
            ("GET /api/v1/top?metric=memory&period=30d", "/api/v1/top?metric=memory&period=30d"),
            ("GET seed /api/v1/metrics/repo/...?limit=20", f"/api/v1/metrics/repo/{org}/{repo.replace('/', '%2F')}/{workflow}/{job}?limit=20"),
        ]  # fmt: skip
        print(f"\n{args.requests} sequential requests each, one server worker (4 threads):")
        print(f"{'endpoint':48} {'p50 ms':>8} {'p99 ms':>8} {'bytes':>8}")
        for name, path_q in endpoints:
            session.get(base + path_q, timeout=30)  # warm the connection and the page cache
            p50, p99, nbytes = measure(session, base + path_q, args.requests)
            print(f"{name:48} {p50:8.1f} {p99:8.1f} {nbytes:8d}")
        print("\nEXPLAIN QUERY PLAN of every statement the read side runs:")
        explain(path, scopes[7], some_run)
    finally:
        if proc is not None and proc.poll() is None:
            os.killpg(proc.pid, signal.SIGTERM)
            try:
                proc.wait(20)
            except subprocess.TimeoutExpired:
                os.killpg(proc.pid, signal.SIGKILL)
                proc.wait()
        shutil.rmtree(tmp, ignore_errors=True)


if __name__ == "__main__":
    main()
