"""The schema step to version 11 (the list of versions is in
:mod:`resmon.store.migrations`, which runs it): the run's context and its steps.

- ``runs`` gains the context columns (:data:`resmon.store.run_context.CONTEXT_COLUMNS`:
  ref, branch, commit, event, runner name and labels, pod, namespace, node), nullable
  (on PostgreSQL a catalogue change, no rewrite; on SQLite an ALTER TABLE ADD COLUMN),
  backfilled from the stored summaries that have a ``context`` (a newer collector may
  have pushed to an older server: the payload kept it), and the index a job's runs
  and trend on one branch use;
- ``run_steps``, a new table (:mod:`resmon.store.steps`): empty, since no older server
  merged steps.

Each part is skipped where already done, so a repeated step is harmless, and the
result equals a database created at version 11 (tests/store/test_schema_v11.py).
"""

from __future__ import annotations

from peewee import Database, PostgresqlDatabase
from playhouse.migrate import SchemaMigrator
from playhouse.migrate import migrate as run_ops

from resmon.store import models
from resmon.store.run_context import CONTEXT_COLUMNS, context_columns_of_text

# Runs read per backfill batch (ids and payload sizes first; the payloads only of the
# runs whose text mentions "context").
_BATCH_ROWS = 2000
BRANCH_INDEX = "run_organization_repository_workflow_job_branch_received_at"


def to_v11(db: Database, migrator: SchemaMigrator) -> None:
    """The context columns (backfilled), their index, and ``run_steps``."""
    present = {c.name for c in db.get_columns("runs")}
    fields = models.Run._meta.columns
    missing = [name for name in CONTEXT_COLUMNS if name not in present]
    if missing:
        run_ops(*(migrator.add_column("runs", n, fields[n]) for n in missing))
    _backfill(db)
    db.execute_sql(
        f"CREATE INDEX IF NOT EXISTS {BRANCH_INDEX} "
        "ON runs (organization, repository, workflow, job, branch, received_at)"
    )
    models.RunStep.create_table(safe=True)


def _backfill(db: Database) -> int:
    """The context columns of every stored run whose summary has a ``context``; returns
    how many runs were updated.  Payloads are read only where their text mentions
    ``"context"`` (LIKE on SQLite, strpos on PostgreSQL), a batch of ids at a time."""
    p = db.param
    if isinstance(db, PostgresqlDatabase):
        mentions, pattern = f"strpos(payload, {p}) > 0", '"context"'
    else:
        mentions, pattern = f"payload LIKE {p}", '%"context"%'
    scan = (
        f"SELECT id, payload FROM runs WHERE id > {p} AND {mentions} "
        f"ORDER BY id LIMIT {_BATCH_ROWS}"
    )
    names = list(CONTEXT_COLUMNS)
    update = f"UPDATE runs SET {', '.join(f'{n} = {p}' for n in names)} WHERE id = {p}"
    last, updated = 0, 0
    while rows := db.execute_sql(scan, (last, pattern)).fetchall():
        last = rows[-1][0]
        for run_pk, payload in rows:
            columns = context_columns_of_text(payload)
            if any(value is not None for value in columns.values()):
                db.execute_sql(update, (*(columns[n] for n in names), run_pk))
                updated += 1
    return updated
