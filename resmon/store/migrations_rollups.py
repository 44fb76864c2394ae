"""The schema step to version 9 (the list of versions is in
:mod:`resmon.store.migrations`, which runs it). Rollups and retention: the hourly and daily rollup tables (filled as runs are
stored, rebuildable from the runs that remain) and what retention needs."""

from __future__ import annotations

from peewee import Database
from playhouse.migrate import SchemaMigrator


def to_v9(db: Database, migrator: SchemaMigrator) -> None:
    """Nothing yet: the tables and columns of this version are added here."""
