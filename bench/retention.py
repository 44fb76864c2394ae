"""Retention deleting 100,000 expired runs while pushes arrive at 500/s: push latency
against a baseline measured in the same run on the same database without retention.

    .venv/bin/python bench/retention.py [--expired 100000] [--rate 500] [--duration 20]
                                        [--where serve,process]

1. A SQLite file with ``--expired`` runs received 200 days ago (two containers each:
   bulk SQL, bench/query_api.py's generator) and their rollups.
2. retention, for each ``--where``: a copy of it, wrk pushing new runs at about
   ``--rate`` per second (bench/server_load.py's push script, each connection
   pausing between requests) while the expired runs (kept 180 days) are deleted in
   batches, by ``resmon serve --retention-interval 1s`` itself (``serve``: its
   maintenance process, resmon.server.maintenance) or by a process the bench starts
   beside a server with retention off (``process``); the phase lasts until they are
   all gone (at least ``--duration``).
3. baseline: another copy, retention off, the same pushes for as long as the
   longest deleting phase took (the other work on the machine weighs on both alike).

Prints pushes/s, p50/p99/max latency of each phase and their ratios, how long the
deletion took and its rate, and whether the push p99 stayed under 50 ms.
"""

from __future__ import annotations

import argparse
import os
import shutil
import signal
import sqlite3
import subprocess
import sys
import tempfile
import time
from datetime import UTC, datetime
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent))

import query_api  # noqa: E402
import server_load  # noqa: E402

from resmon.store.retention import RUNS_PER_BATCH  # noqa: E402


def expired_db(path: str, expired: int) -> float:
    """The database: ``expired`` runs 200 to 210 days old, with their rollups."""
    end = datetime.now(UTC).replace(tzinfo=None, microsecond=0)
    from datetime import timedelta

    return query_api.bulk_seed(path, expired, 200, days=10, end=end - timedelta(days=200))


def count_old(path: str) -> int:
    conn = sqlite3.connect(f"file:{path}?mode=ro", uri=True, timeout=10)
    try:
        return conn.execute(
            "SELECT COUNT(*) FROM runs WHERE received_at < datetime('now', '-180 days')"
        ).fetchone()[0]
    finally:
        conn.close()


# A separate process deleting as the server's maintenance thread does (the same
# batches, pauses and writer lock), for --where process.
DELETER = """
import sys, time
from resmon.store.db import open_database
from resmon.store import retention
open_database(sys.argv[1])
while True:
    done = retention.delete_expired(retention.RetentionPolicy())
    if not done.batches:
        time.sleep(1.0)
"""


def phase(
    name: str,
    db: Path,
    tmp: Path,
    args: argparse.Namespace,
    options: tuple[str, ...],
    *,
    deleting: bool = False,
    external: bool = False,
    duration: float | None = None,
) -> tuple[server_load.Result, float | None]:
    """Pushes at the rate on a server with ``options`` for ``duration`` seconds (at
    least); with ``deleting``, until no expired run is left, by the server's
    maintenance thread or (``external``) by a process of its own.  Returns the wrk
    result and the seconds until no expired run was left."""
    duration = args.duration if duration is None else duration
    wrk = server_load.ensure_wrk()
    port = server_load.free_port()
    log_path = tmp / f"{name}.log"
    with open(log_path, "wb") as log:
        proc = server_load.start_resmon(port, db, log, args.workers, args.threads, *options)
        try:
            url = f"http://127.0.0.1:{port}"
            server_load.wait_ready(url + "/readyz", proc, log_path)
            server_load.wait_workers(proc, args.workers)
            script = tmp / f"{name}.lua"
            pace_ms = max(1, round(args.connections * 1000 / args.rate))
            text = server_load.push_script(200).replace(
                "  if stopped then return 3600000 end\n  return 0\n",
                f"  if stopped then return 3600000 end\n  return {pace_ms}\n",
            )
            script.write_text(text)
            load = server_load.start_wrk(wrk, script, url, args.connections, 3600, 2, name)
            deleter = None
            if external:
                deleter = subprocess.Popen(
                    [sys.executable, "-c", DELETER, str(db)],
                    env={**os.environ, "PYTHONPATH": str(server_load.ROOT)},
                    start_new_session=True,
                )
            started = time.monotonic()
            gone_after = None
            while True:
                time.sleep(0.5)
                elapsed = time.monotonic() - started
                if deleting and gone_after is None and count_old(str(db)) == 0:
                    gone_after = elapsed
                done = gone_after is not None or not deleting
                if (done and elapsed >= duration) or elapsed > args.timeout:
                    break
            if deleter is not None:
                os.killpg(deleter.pid, signal.SIGTERM)
                deleter.wait()
            load.stop_file.touch()
            load.stopped = time.monotonic()
            time.sleep(1.0)  # the answers in flight
            load.proc.send_signal(signal.SIGINT)  # wrk stops and reports
            result = server_load.finish_wrk(name, load)
        finally:
            server_load.stop(proc)
    return result, gone_after


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--expired", type=int, default=100_000)
    parser.add_argument("--rate", type=float, default=500.0, help="pushes per second")
    parser.add_argument("--duration", type=float, default=20.0, help="seconds, at least")
    parser.add_argument("--timeout", type=float, default=300.0)
    parser.add_argument("--connections", type=int, default=32)
    parser.add_argument("--workers", type=int, default=2)
    parser.add_argument("--threads", type=int, default=8)
    parser.add_argument(
        "--where",
        default="serve",
        help="Who deletes, comma-separated phases: serve (resmon serve's own maintenance) "
        "and/or process (a process the bench starts beside a server with retention off: "
        "the same batches and writer lock).",
    )
    args = parser.parse_args()

    tmp = Path(tempfile.mkdtemp(prefix="resmon-bench-retention-"))
    try:
        seeded = tmp / "seeded.db"
        seconds = expired_db(str(seeded), args.expired)
        print(f"{args.expired:,} expired runs (200-210 days old, 2 containers each) "
              f"generated in {seconds:.0f} s; {os.path.getsize(seeded) / 2**20:,.0f} MiB")  # fmt: skip
        # The deleting phases first; the baseline then pushes as long as the longest
        # of them took, so both see the other work on the machine for as long.
        phases: list[tuple[str, server_load.Result, float | None]] = []
        for where in args.where.split(","):
            ret_db = tmp / f"retention-{where}.db"
            shutil.copy(seeded, ret_db)
            external = where == "process"
            options = ("--retention-interval=0",) if external else ("--retention-interval=1s",)
            result, gone = phase(
                f"retention-{where}", ret_db, tmp, args, options, deleting=True, external=external
            )
            phases.append((f"deleting ({where})", result, gone))
            ret_db.unlink()
        longest = max([args.duration, *(g or args.timeout for _, _, g in phases)])
        base_db = tmp / "baseline.db"
        shutil.copy(seeded, base_db)
        baseline, _ = phase(
            "baseline", base_db, tmp, args, ("--retention-interval=0",), duration=longest
        )
        print(f"\npushes at ~{args.rate:.0f}/s ({args.connections} connections pausing "
              f"{max(1, round(args.connections * 1000 / args.rate))} ms), "
              f"{args.workers} workers x {args.threads} threads; ms")  # fmt: skip
        print(f"{'phase':34} {'pushes/s':>9} {'p50':>7} {'p99':>7} {'max':>8} {'non-2xx':>8}")
        rows = [("baseline (retention off)", baseline, None), *phases]
        for label, r, _ in rows:
            rate = r.requests / r.seconds if r.seconds else 0.0
            print(f"{label:34} {rate:9.0f} {r.p50_ms:7.1f} {r.p99_ms:7.1f} {r.max_ms:8.1f} "
                  f"{r.non2xx + r.socket_errors:8d}")  # fmt: skip
        for label, during, _ in phases:
            print(f"{'ratio ' + label.split()[1] + ' / baseline':34} {'':9} "
                  f"{during.p50_ms / max(baseline.p50_ms, 0.01):7.2f} "
                  f"{during.p99_ms / max(baseline.p99_ms, 0.01):7.2f}")  # fmt: skip
        print(f"baseline pushed for {longest:.0f} s, as long as the longest deletion")
        failed = 0
        for label, during, gone in phases:
            if gone is None:
                print(
                    f"\n{label}: the expired runs were NOT all deleted within {args.timeout:.0f} s"
                )
                failed = 1
                continue
            print(f"\n{label}: {args.expired:,} expired runs deleted in {gone:.1f} s "
                  f"({args.expired / gone:,.0f} runs/s, batches of {RUNS_PER_BATCH} runs with "
                  f"their containers); push p99 during it {during.p99_ms:.1f} ms (target < 50 "
                  f"ms): {'met' if during.p99_ms < 50 else 'missed'}")  # fmt: skip
        return failed
    finally:
        shutil.rmtree(tmp, ignore_errors=True)


if __name__ == "__main__":
    sys.exit(main())
