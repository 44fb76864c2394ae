"""The schema step to version 9 (the list of versions is in
:mod:`resmon.store.migrations`, which runs it): the hourly and daily rollups
(``rollup_jobs``, ``rollup_containers``), where each run was counted
(``rollup_runs``) and the background pass's cursor (``rollup_cursor``), as
:mod:`resmon.store.rollups` writes them.

The runs stored before are rolled up here, from the runs (one statement per table
and day, :func:`resmon.store.rollups.rebuild`), and every event stored before counts
as applied: a migrated database holds what a fresh one that received the same runs
holds.  Tables already there are kept and the rollups recomputed, so a repeated
step is harmless."""

from __future__ import annotations

import logging
from datetime import timedelta

from peewee import Database
from playhouse.migrate import SchemaMigrator

from resmon.store import models

log = logging.getLogger(__name__)


def to_v9(db: Database, migrator: SchemaMigrator) -> None:
    """The rollup tables, filled from the runs stored so far."""
    from resmon.store import rollups

    db.create_tables(models.ROLLUP_MODELS, safe=True)
    row = db.execute_sql("SELECT MIN(received_at), MAX(received_at) FROM runs").fetchone()
    if row and row[0] is not None:
        low, high = rollups.as_time(row[0]), rollups.as_time(row[1])
        assert low is not None and high is not None
        days = 0
        day, last = rollups.floor_day(low), rollups.ceil_day(high + timedelta(seconds=1))
        while day < last:
            following = day + timedelta(days=1)
            rollups.rebuild_day(day, following)  # in the migration's transaction
            day, days = following, days + 1
        log.info("schema 9: the rollups of %d days built from the stored runs", days)
    rollups.set_cursor_to_latest()
