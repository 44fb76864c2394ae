"""The background work of ``resmon serve``: the rollup pass and retention.

A daemon thread per worker process (started at its first request, after gunicorn's
fork, as the lost-run thread is) runs:

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
"""

from __future__ import annotations

import logging
import os
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


def configure(options: MaintenanceOptions | None) -> None:
    """What the background thread of each worker does (None: nothing)."""
    global _options
    _options = options


def init_app(app: Any) -> None:
    """Every request of a worker makes sure its maintenance thread runs."""

    @app.before_request
    def _start_maintenance() -> None:
        ensure_started()


def ensure_started() -> None:
    global _started_pid
    options = _options
    if options is None or _started_pid == os.getpid():
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


def _loop(options: MaintenanceOptions) -> None:
    next_rollup = time.monotonic()
    # The first retention pass a little after start: the server answers first.
    next_retention = time.monotonic() + min(5.0, options.retention_interval)
    first = True
    while True:
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
