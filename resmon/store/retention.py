"""Retention: what is older than its keep time is deleted, in small batches.

Defaults (``resmon serve --retention-*``; 0 or ``off`` keeps forever): live samples
(``run_batches``) 7 days, runs 180 days, hourly rollups 90 days, daily rollups 2
years, events 7 days.  Rollups outlive the runs they came from: deleting a run never
changes a rollup (:mod:`resmon.store.rollups`).

A batch is one short write transaction (:data:`RUNS_PER_BATCH` runs with their
containers, regressions, samples, and whatever else references them by a cascading
foreign key; :data:`ROWS_PER_BATCH` rows of the other tables), under the writer lock
on SQLite, with a pause between batches, so a push waits at most one batch: never
the whole deletion.  Events the rollup pass has not applied yet are kept whatever
their age.

Only one process or replica deletes at a time (:func:`exclusive`: a PostgreSQL
advisory lock, on SQLite a lock file beside the database), run by
:mod:`resmon.server.maintenance`.

SQLite gives the space back: a file with ``auto_vacuum=INCREMENTAL`` returns its
free pages to the file system after each deletion (``PRAGMA incremental_vacuum``,
a few MiB per transaction).  That mode must be set before the tables exist or by a
``VACUUM``: :func:`ensure_incremental_vacuum` does it on a file of at most
:data:`AUTO_CONVERT_BYTES` (a new database, or a small one: the VACUUM takes well
under a second); a larger file keeps its pages for new rows (it stops growing but
does not shrink) until ``resmon admin vacuum`` converts it, which holds the write
lock for the whole VACUUM (run it when pushes can wait).
"""

from __future__ import annotations

import contextlib
import fcntl
import logging
import os
import time
from collections.abc import Callable, Iterator
from dataclasses import dataclass, field
from datetime import UTC, datetime, timedelta
from typing import Any

from peewee import Database, PostgresqlDatabase, SqliteDatabase

from resmon.store import alert_eval, rollups
from resmon.store import db as dbmod
from resmon.store.models import database_proxy

log = logging.getLogger(__name__)

RUNS_PER_BATCH = 50
ROWS_PER_BATCH = 1000
BATCH_PAUSE = 0.05  # seconds between two batches: the writers' turn
VACUUM_PAGES = 512  # pages given back per incremental_vacuum transaction (2 MiB)
AUTO_CONVERT_BYTES = 64 * 2**20
# Any constants: the PostgreSQL advisory locks of the background loops.
PG_LOCKS = {"retention": 0x7265736D7274, "rollups": 0x7265736D726C}
# The tables whose rows belong to a run and go with it (besides cascading foreign keys).
RUN_CHILDREN = (
    ("run_containers", "run_id"),
    ("run_regressions", "run_id"),
    ("run_batches", "run_id"),
    ("rollup_runs", "run_pk"),
)


@dataclass(frozen=True)
class RetentionPolicy:
    """How long each kind of row is kept; None: forever."""

    samples: timedelta | None = timedelta(days=7)
    runs: timedelta | None = timedelta(days=180)
    hourly_rollups: timedelta | None = timedelta(days=90)
    daily_rollups: timedelta | None = timedelta(days=730)
    events: timedelta | None = timedelta(days=7)


@dataclass
class Deleted:
    """Rows deleted by one retention pass, by table, and the batches it took."""

    rows: dict[str, int] = field(default_factory=dict)
    batches: int = 0
    pages_freed: int = 0

    def add(self, table: str, n: int) -> None:
        self.rows[table] = self.rows.get(table, 0) + n
        self.batches += 1


def _write(fn: Callable[..., Any], *args: Any) -> Any:
    db = database_proxy
    with dbmod.write_lock(db.obj), db.atomic():
        return fn(*args)


def _in(ids: list[int]) -> str:
    return ", ".join([database_proxy.param] * len(ids))


def _delete_runs(ids: list[int]) -> None:
    db = database_proxy
    for table, column in RUN_CHILDREN:
        db.execute_sql(f"DELETE FROM {table} WHERE {column} IN ({_in(ids)})", ids)
    db.execute_sql(f"DELETE FROM runs WHERE id IN ({_in(ids)})", ids)


def _delete_ids(table: str, ids: list[int]) -> None:
    database_proxy.execute_sql(f"DELETE FROM {table} WHERE id IN ({_in(ids)})", ids)


def delete_expired(
    policy: RetentionPolicy,
    *,
    now: datetime | None = None,
    runs_per_batch: int = RUNS_PER_BATCH,
    rows_per_batch: int = ROWS_PER_BATCH,
    pause: float = BATCH_PAUSE,
    stop: Callable[[], bool] = lambda: False,
) -> Deleted:
    """Delete everything older than ``policy`` keeps, batch by batch; ``stop`` is asked
    between batches (a server shutting down).  Returns what was deleted."""
    now = (now or datetime.now(UTC)).astimezone(UTC).replace(tzinfo=None)
    db = database_proxy
    p = db.param
    done = Deleted()

    def batches(table: str, select: str, params: list[Any], delete: Callable) -> None:
        while not stop():
            ids = [int(r[0]) for r in db.execute_sql(select, params).fetchall()]
            if not ids:
                return
            _write(delete, ids)
            done.add(table, len(ids))
            if pause:
                time.sleep(pause)

    if policy.runs is not None:
        cutoff = rollups.param_time(now - policy.runs)
        batches(
            "runs",
            f"SELECT id FROM runs WHERE received_at < {p} ORDER BY received_at "
            f"LIMIT {int(runs_per_batch)}",
            [cutoff],
            _delete_runs,
        )
    if policy.samples is not None:
        _delete_batches(now - policy.samples, rows_per_batch, pause, stop, done)
    spans = (
        (rollups.HOUR, policy.hourly_rollups),
        (rollups.DAY, policy.daily_rollups),
        (rollups.RUN_DAY, policy.daily_rollups),
    )
    for span, keep in spans:
        if keep is None:
            continue
        cutoff = rollups.param_time(rollups.floor_hour(now - keep))
        for table in ("rollup_jobs", "rollup_containers"):
            batches(
                table,
                f"SELECT id FROM {table} WHERE span = {p} AND bucket < {p} "
                f"LIMIT {int(rows_per_batch)}",
                [span, cutoff],
                lambda ids, table=table: _delete_ids(table, ids),
            )
    if policy.events is not None:
        # Never an event the rollup pass or the alert evaluator has still to read.
        readers = [rollups.cursor(), alert_eval.read_cursor()]
        batches(
            "events",
            f"SELECT id FROM events WHERE created_at < {p} AND id <= {p} ORDER BY id "
            f"LIMIT {int(rows_per_batch)}",
            [rollups.param_time(now - policy.events), min(c for c in readers if c is not None)],
            lambda ids: _delete_ids("events", ids),
        )
    if done.batches and isinstance(db.obj, SqliteDatabase):
        done.pages_freed = give_space_back(stop=stop, pause=pause)
    return done


def _delete_batches(
    cutoff: datetime, rows: int, pause: float, stop: Callable[[], bool], done: Deleted
) -> None:
    """Live batches received before ``cutoff``.  Their ids grow with arrival, so the
    oldest are the first by id: walked from there (the primary key), no index on
    received_at to keep up in every batch insert."""
    db = database_proxy
    while not stop():
        rows_read = db.execute_sql(
            f"SELECT id, received_at FROM run_batches ORDER BY id LIMIT {int(rows)}"
        ).fetchall()
        ids = [int(i) for i, received in rows_read if rollups.as_time(received) < cutoff]
        if not ids:
            return
        _write(_delete_ids, "run_batches", ids)
        done.add("run_batches", len(ids))
        if len(ids) < len(rows_read):
            return  # the rest is newer
        if pause:
            time.sleep(pause)


# --- SQLite's space -----------------------------------------------------------------


def auto_vacuum_mode(db: Database) -> int:
    """SQLite's auto_vacuum: 0 none, 1 full, 2 incremental."""
    return int(db.execute_sql("PRAGMA auto_vacuum").fetchone()[0])


def give_space_back(*, stop: Callable[[], bool] = lambda: False, pause: float = 0.0) -> int:
    """On an incremental-vacuum SQLite file, return its free pages to the file system
    a few at a time; returns how many pages were freed (0 in another mode)."""
    db = database_proxy
    if not isinstance(db.obj, SqliteDatabase) or auto_vacuum_mode(db) != 2:
        return 0
    freed = 0
    while not stop():
        free = int(db.execute_sql("PRAGMA freelist_count").fetchone()[0])
        if free == 0:
            break
        step = min(free, VACUUM_PAGES)
        with dbmod.write_lock(db.obj):
            db.execute_sql(f"PRAGMA incremental_vacuum({step})").fetchall()
        freed += step
        if pause:
            time.sleep(pause)
    return freed


def ensure_incremental_vacuum(db: Database, *, force: bool = False) -> bool:
    """Put a SQLite file in ``auto_vacuum=INCREMENTAL`` mode (a VACUUM rewrites it:
    the write lock is held meanwhile); done on its own only for a file of at most
    :data:`AUTO_CONVERT_BYTES`, else with ``force`` (``resmon admin vacuum``).
    Returns whether the file is in that mode now."""
    if not isinstance(db, SqliteDatabase) or str(db.database) in ("", ":memory:"):
        return False
    if auto_vacuum_mode(db) == 2:
        return True
    size = os.path.getsize(str(db.database)) if os.path.exists(str(db.database)) else 0
    if not force and size > AUTO_CONVERT_BYTES:
        log.warning(
            "%s (%d MiB) does not give space back after deletions: run `resmon admin "
            "vacuum --db %s` once when pushes can wait (it rewrites the file)",
            db.database,
            size // 2**20,
            db.database,
        )
        return False
    with dbmod.write_lock(db):
        db.execute_sql("PRAGMA auto_vacuum = INCREMENTAL")
        db.execute_sql("VACUUM")
    log.info("%s now gives space back after deletions (auto_vacuum=incremental)", db.database)
    return auto_vacuum_mode(db) == 2


# --- one at a time ----------------------------------------------------------------


@contextlib.contextmanager
def exclusive(name: str) -> Iterator[bool]:
    """Whether this process may run the background ``name`` now (``retention`` or
    ``rollups``): holds a PostgreSQL session advisory lock, or on SQLite a lock file
    beside the database, for the ``with`` block; yields False when another process or
    replica holds it.  Never waits."""
    db = database_proxy
    if isinstance(db.obj, PostgresqlDatabase):
        key = PG_LOCKS[name]
        got = bool(db.execute_sql("SELECT pg_try_advisory_lock(%s)", (key,)).fetchone()[0])
        try:
            yield got
        finally:
            if got:
                db.execute_sql("SELECT pg_advisory_unlock(%s)", (key,)).fetchone()
        return
    path = str(db.obj.database)
    if path in ("", ":memory:"):
        yield True
        return
    fd = os.open(os.path.abspath(path) + f"-{name}.lock", os.O_RDWR | os.O_CREAT, 0o600)
    try:
        try:
            fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
        except BlockingIOError:
            yield False
            return
        try:
            yield True
        finally:
            fcntl.flock(fd, fcntl.LOCK_UN)
    finally:
        os.close(fd)
