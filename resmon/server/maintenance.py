"""The background work of ``resmon serve``: the rollup pass and retention.

A process of its own, started by ``resmon serve`` when its app is made (before
gunicorn forks the request workers, which then run none of it), runs:

- every ``rollup_interval`` (1 s): :func:`resmon.store.rollup_pass.run_pass` until no
  event waits, so the rollups lag the runs by about that long (the readers never
  wait for them: they read the runs not rolled up yet, see
  :mod:`resmon.store.rollups`);
- every ``retention_interval`` (1 min): :func:`resmon.store.retention.delete_expired`.

Each under :func:`resmon.store.retention.exclusive`: one process of all the workers
and replicas runs a pass at a time (a PostgreSQL advisory lock; on SQLite a lock
file beside the database); the others find it taken and try at their next tick.
Nothing runs until :func:`configure` is called (``resmon serve`` does; an app made by
``create_app`` alone, as in tests, does no background work).

Why a process and not a thread of a request worker: deleting 100,000 expired runs
while pushes arrived at 500/s (bench/retention.py --where worker,process, one run,
load average 5-6) took the push p99 from 62 ms (no retention, same run) to 113 ms
(1.82x) from a worker's thread, and to 65 ms (1.04x) from a process beside the
workers: the same batches and the same writer lock, so what the thread cost was its
share of the worker's interpreter (the GIL the request threads wait for), not the
database.  The process ends with the server (and checks every tick that the server
is still its parent).
"""

from __future__ import annotations

import atexit
import logging
import os
import pickle
import signal
import subprocess
import sys
import threading
import time
from dataclasses import dataclass, field
from datetime import UTC, datetime
from typing import Any

from resmon.store import retention, rollup_pass
from resmon.store.models import database_proxy

log = logging.getLogger(__name__)

TICK = 0.25
# A pass applies this many events at most before the thread looks at its other work.
PASSES_PER_TICK = 20


@dataclass(frozen=True)
class MaintenanceOptions:
    rollup_interval: float = 1.0  # seconds; 0: no rollup pass
    retention_interval: float = 60.0  # seconds; 0: no retention
    policy: retention.RetentionPolicy = field(default_factory=retention.RetentionPolicy)


_options: MaintenanceOptions | None = None
_started_pid = 0
_guard = threading.Lock()
# The maintenance process this server started (then no worker runs a thread).
_process: subprocess.Popen | None = None
_process_owner = 0  # the pid that started it (a forked worker must not stop it)


def configure(options: MaintenanceOptions | None) -> None:
    """What the background thread of each worker does (None: nothing)."""
    global _options
    _options = options


def init_app(app: Any) -> None:
    """When configured, start the maintenance process for the app's database (once);
    else every request of a worker makes sure its maintenance thread runs (an app
    whose process could not be started keeps the thread)."""
    options = _options
    if options is not None and _process is None and _wanted(options):
        database = app.extensions["resmon"].config.database
        try:
            start_process(options, database)
        except OSError as exc:
            log.warning("no maintenance process (%s): the workers run it", exc)

    @app.before_request
    def _start_maintenance() -> None:
        ensure_started()


def _wanted(options: MaintenanceOptions) -> bool:
    return options.rollup_interval > 0 or options.retention_interval > 0


def start_process(options: MaintenanceOptions, database: str) -> subprocess.Popen:
    """Run :func:`_loop` in a process of its own on ``database`` until this process
    ends; the request workers forked after it run no maintenance thread."""
    global _process, _process_owner
    level = logging.getLevelName(logging.getLogger().getEffectiveLevel()).lower()
    proc = subprocess.Popen(
        [sys.executable, "-c", "from resmon.server.maintenance import main; main()"],
        stdin=subprocess.PIPE,
    )
    assert proc.stdin is not None
    proc.stdin.write(pickle.dumps((options, database, level, os.getpid())))
    proc.stdin.close()
    _process, _process_owner = proc, os.getpid()
    atexit.register(stop_process)
    return proc


def stop_process() -> None:
    global _process
    if _process_owner != os.getpid():
        return  # a request worker, forked after the process started: not its to end
    proc, _process = _process, None
    if proc is None or proc.poll() is not None:
        return
    proc.terminate()
    try:
        proc.wait(5)
    except subprocess.TimeoutExpired:
        proc.kill()
        proc.wait()


def main() -> None:
    """The maintenance process (started by :func:`start_process`): options from
    stdin, the loop until the server that started it is gone or SIGTERM."""
    from resmon.server.logs import configure_logging
    from resmon.store.db import open_database

    options, database, level, parent = pickle.loads(sys.stdin.buffer.read())
    configure_logging(level)
    signal.signal(signal.SIGTERM, lambda *_: sys.exit(0))
    signal.signal(signal.SIGINT, lambda *_: sys.exit(0))  # Ctrl-C reaches the group
    open_database(database)
    _loop(options, alive=lambda: os.getppid() == parent)


def ensure_started() -> None:
    global _started_pid
    options = _options
    if options is None or _process is not None or _started_pid == os.getpid():
        return
    if options.rollup_interval <= 0 and options.retention_interval <= 0:
        return
    with _guard:
        if _started_pid == os.getpid():
            return
        _started_pid = os.getpid()
        threading.Thread(
            target=_loop, args=(options,), name="resmon-maintenance", daemon=True
        ).start()


def rollups_once(options: MaintenanceOptions) -> int:
    """Apply what waits, if this process may; returns how many events were applied."""
    policy = options.policy
    now = datetime.now(UTC).replace(tzinfo=None)
    oldest = now - policy.runs if policy.runs is not None else None
    applied = 0
    with retention.exclusive("rollups") as mine:
        if not mine:
            return 0
        for _ in range(PASSES_PER_TICK):
            result = rollup_pass.run_pass(pause=0.002, min_bucket=oldest)
            applied += result.events
            if result.events < rollup_pass.EVENTS_PER_PASS:
                break
    return applied


def retention_once(options: MaintenanceOptions, *, first: bool = False) -> None:
    with retention.exclusive("retention") as mine:
        if not mine:
            return
        if first:
            retention.ensure_incremental_vacuum(database_proxy.obj)
        done = retention.delete_expired(options.policy)
        if done.batches:
            log.info(
                "retention: deleted %s in %d batches%s",
                ", ".join(f"{n} {table}" for table, n in sorted(done.rows.items())),
                done.batches,
                f", {done.pages_freed} pages given back" if done.pages_freed else "",
            )


def _loop(options: MaintenanceOptions, *, alive: Any = lambda: True) -> None:
    next_rollup = time.monotonic()
    # The first retention pass a little after start: the server answers first.
    next_retention = time.monotonic() + min(5.0, options.retention_interval)
    first = True
    while alive():
        time.sleep(TICK)
        now = time.monotonic()
        if options.rollup_interval > 0 and now >= next_rollup:
            next_rollup = now + options.rollup_interval
            try:
                rollups_once(options)
            except Exception as exc:  # a database away for a while: try again next tick
                log.warning("rollup pass failed: %s: %s", type(exc).__name__, exc)
        if options.retention_interval > 0 and now >= next_retention:
            next_retention = now + options.retention_interval
            try:
                retention_once(options, first=first)
                first = False
            except Exception as exc:
                log.warning("retention failed: %s: %s", type(exc).__name__, exc)
