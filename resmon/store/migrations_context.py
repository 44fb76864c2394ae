"""The schema step to version 11 (the list of versions is in
:mod:`resmon.store.migrations`, which runs it). The run's context (branch, commit, event, attempt, runner, pod, namespace, node)
and its steps."""

from __future__ import annotations

from peewee import Database
from playhouse.migrate import SchemaMigrator


def to_v11(db: Database, migrator: SchemaMigrator) -> None:
    """Nothing yet: the tables and columns of this version are added here."""
