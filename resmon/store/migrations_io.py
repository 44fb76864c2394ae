"""The schema step to version 12 (the list of versions is in
:mod:`resmon.store.migrations`, which runs it). Disk and network I/O: the run's and the containers' I/O columns."""

from __future__ import annotations

from peewee import Database
from playhouse.migrate import SchemaMigrator


def to_v12(db: Database, migrator: SchemaMigrator) -> None:
    """Nothing yet: the tables and columns of this version are added here."""
