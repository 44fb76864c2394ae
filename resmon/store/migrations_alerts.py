"""The schema step to version 10 (the list of versions is in
:mod:`resmon.store.migrations`, which runs it).  Alerts: the rules, the state per
matched job and container, the evaluator's cursor in the events table, and the
webhook outbox (:mod:`resmon.store.alerts`)."""

from __future__ import annotations

from peewee import Database
from playhouse.migrate import SchemaMigrator

from resmon.store import models


def to_v10(db: Database, migrator: SchemaMigrator) -> None:
    """Four new tables, empty, with the indexes a fresh database has (``safe``: a
    repeated step keeps what is there).  No cursor row: the evaluator makes it at
    its first tick, at the newest event then, so an upgraded database does not alert
    on its history."""
    db.create_tables(models.ALERT_MODELS, safe=True)
