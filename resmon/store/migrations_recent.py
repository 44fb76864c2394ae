"""The schema steps to versions 6, 7 and 8 (the list of versions is in
:mod:`resmon.store.migrations`, which runs them): the regressions flagged at push,
live runs, and the test that flagged each regression."""

from __future__ import annotations

import logging
from typing import Any

import orjson
from peewee import Database, PostgresqlDatabase
from playhouse.migrate import SchemaMigrator
from playhouse.migrate import migrate as run_ops

from resmon.store import models

log = logging.getLogger(__name__)


def _to_v6(db: Database, migrator: SchemaMigrator) -> None:
    """The regressions flagged at push (``run_regressions``): a new table, empty; runs
    stored before it were never compared, and are not flagged afterwards."""
    models.RunRegression.create_table(safe=True)


# Columns version 7 adds to ``runs`` that may be NULL (added as they are).
_V7_NULLABLE = ("host", "live_interval_seconds", "last_batch_at", "snapshot")


def _to_v7(db: Database, migrator: SchemaMigrator) -> None:
    """Live runs: run states, the live columns, ``run_batches`` and ``events``.
    Parts already there are kept, so a repeated step is harmless.

    ``state`` and ``partial`` are NOT NULL with a default, written out: playhouse's
    add_column would add them NULL, update every row and then set NOT NULL, which
    rebuilds the table on SQLite (cascading into its container rows, see
    :func:`_to_v2`) and rewrites it on PostgreSQL.  With the default in the ADD
    COLUMN every existing run is ``finished`` and not partial at once."""
    present = {c.name for c in db.get_columns("runs")}
    false = "false" if isinstance(db, PostgresqlDatabase) else "0"
    boolean = "BOOLEAN" if isinstance(db, PostgresqlDatabase) else "INTEGER"
    if "state" not in present:
        db.execute_sql("ALTER TABLE runs ADD COLUMN state VARCHAR(16) NOT NULL DEFAULT 'finished'")
    if "partial" not in present:
        db.execute_sql(f"ALTER TABLE runs ADD COLUMN partial {boolean} NOT NULL DEFAULT {false}")
    if "live_key" not in present:  # its unique index below, named as a fresh database's
        db.execute_sql("ALTER TABLE runs ADD COLUMN live_key VARCHAR(64)")
    fields = models.Run._meta.columns
    missing = [name for name in _V7_NULLABLE if name not in present]
    if missing:
        run_ops(*(migrator.add_column("runs", n, fields[n]) for n in missing))
    db.execute_sql("CREATE UNIQUE INDEX IF NOT EXISTS run_live_key ON runs (live_key)")
    db.execute_sql(
        "CREATE INDEX IF NOT EXISTS run_running_last_batch ON runs (last_batch_at) "
        "WHERE (state = 'running')"
    )
    models.RunBatch.create_table(safe=True)
    models.Event.create_table(safe=True)


# Regression events read per statement while backfilling version 8.
_EVENT_BATCH = 500


def _to_v8(db: Database, migrator: SchemaMigrator) -> None:
    """Which test flagged each regression: ``test`` and ``runs`` on ``run_regressions``.

    NOT NULL with their defaults in the ADD COLUMN (as in :func:`_to_v7`: no rebuild,
    no rewrite): ``single`` over 1 run, which every flag stored before the shift test
    was.  The shift test came with the ``regression`` event, which names each flagged
    figure's test and runs: those flags are backfilled from their events.  A repeated
    step is harmless."""
    present = {c.name for c in db.get_columns("run_regressions")}
    if "test" not in present:
        db.execute_sql(
            "ALTER TABLE run_regressions ADD COLUMN test VARCHAR(16) NOT NULL DEFAULT 'single'"
        )
    if "runs" not in present:
        db.execute_sql("ALTER TABLE run_regressions ADD COLUMN runs INTEGER NOT NULL DEFAULT 1")
    updated = _backfill_v8(db)
    if updated:
        log.info("schema 8: %d flagged figures backfilled from their regression events", updated)


def _backfill_v8(db: Database) -> int:
    """Set ``test`` and ``runs`` of the flags whose regression event says another test
    than the default's; returns how many rows changed."""
    p = db.param
    select = (
        f"SELECT id, run_pk, data FROM events WHERE kind = 'regression' AND id > {p} "
        f"ORDER BY id LIMIT {p}"
    )
    update = (
        f"UPDATE run_regressions SET test = {p}, runs = {p} "
        f"WHERE run_id = {p} AND metric = {p} AND "
    )
    after, updated = 0, 0
    while True:
        rows = db.execute_sql(select, (after, _EVENT_BATCH)).fetchall()
        for event_id, run_pk, data in rows:
            after = event_id
            for figure in _event_figures(data):
                test, runs, container, metric = figure
                if container is None:
                    cursor = db.execute_sql(
                        update + "container IS NULL", (test, runs, run_pk, metric)
                    )
                else:
                    cursor = db.execute_sql(
                        update + f"container = {p}", (test, runs, run_pk, metric, container)
                    )
                updated += max(cursor.rowcount or 0, 0)
        if len(rows) < _EVENT_BATCH:
            return updated


def _event_figures(data: Any) -> list[tuple[str, int, str | None, str]]:
    """(test, runs, container, metric) of an event's figures not flagged by the single
    test (those rows have their values already); nothing from an unreadable event."""
    try:
        body = orjson.loads(data)
    except orjson.JSONDecodeError:
        return []
    figures = body.get("regressions") if isinstance(body, dict) else None
    out = []
    for f in figures if isinstance(figures, list) else []:
        if not isinstance(f, dict) or f.get("test") in (None, "single"):
            continue
        test, runs, metric = f.get("test"), f.get("runs"), f.get("metric")
        container = f.get("container")
        if not (isinstance(test, str) and isinstance(metric, str) and len(test) <= 16):
            continue
        if not isinstance(runs, int) or isinstance(runs, bool) or not 1 <= runs <= 1000:
            continue
        if container is not None and not isinstance(container, str):
            continue
        out.append((test, runs, container, metric))
    return out
