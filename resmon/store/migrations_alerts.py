"""The schema step to version 10 (the list of versions is in
:mod:`resmon.store.migrations`, which runs it). Alerts: rules, the state per matched job and container, and the webhook outbox."""

from __future__ import annotations

from peewee import Database
from playhouse.migrate import SchemaMigrator


def to_v10(db: Database, migrator: SchemaMigrator) -> None:
    """Nothing yet: the tables and columns of this version are added here."""
