"""The schema step to version 12 (the list of versions is in
:mod:`resmon.store.migrations`, which runs it): the job's disk I/O and network.

``runs`` gains :data:`resmon.store.io_columns.IO_COLUMNS` (bytes read and written and
their source, bytes received and sent), nullable (on PostgreSQL a catalogue change,
no rewrite; on SQLite an ALTER TABLE ADD COLUMN), backfilled from the stored
summaries whose job block has them (a newer collector may have pushed to an older
server: the payload kept them).  A summary without them (the Go collector's, older
resmon's) leaves them NULL.  Each part is skipped where already done, so a repeated
step is harmless, and the result equals a database created at version 12.
"""

from __future__ import annotations

from peewee import Database, PostgresqlDatabase
from playhouse.migrate import SchemaMigrator
from playhouse.migrate import migrate as run_ops

from resmon.store import models
from resmon.store.backfill import update_runs
from resmon.store.io_columns import IO_COLUMNS, io_columns_of_text

# Runs read per backfill batch: the payloads only of the runs whose text mentions
# "io" or "network", a batch of ids at a time.
_BATCH_ROWS = 2000
_CASTS = {name: "text" if name == "job_io_source" else "bigint" for name in IO_COLUMNS}


def to_v12(db: Database, migrator: SchemaMigrator) -> None:
    """The I/O columns, backfilled."""
    present = {c.name for c in db.get_columns("runs")}
    fields = models.Run._meta.columns
    missing = [name for name in IO_COLUMNS if name not in present]
    if missing:
        run_ops(*(migrator.add_column("runs", n, fields[n]) for n in missing))
    _backfill(db)


def _backfill(db: Database) -> int:
    """The I/O columns of every stored run whose summary's job block has them; returns
    how many runs were updated.  One UPDATE joined to a VALUES list per batch on
    PostgreSQL, executemany on SQLite (as the earlier backfills)."""
    p = db.param
    postgres = isinstance(db, PostgresqlDatabase)
    if postgres:
        mentions = f"(strpos(payload, {p}) > 0 OR strpos(payload, {p}) > 0)"
        patterns: tuple[str, ...] = ('"io"', '"network"')
    else:
        mentions = f"(payload LIKE {p} OR payload LIKE {p})"
        patterns = ('%"io"%', '%"network"%')
    scan = (
        f"SELECT id, payload FROM runs WHERE id > {p} AND {mentions} "
        f"ORDER BY id LIMIT {_BATCH_ROWS}"
    )
    names = list(IO_COLUMNS)
    last, updated = 0, 0
    while rows := db.execute_sql(scan, (last, *patterns)).fetchall():
        last = rows[-1][0]
        updates = []
        for run_pk, payload in rows:
            figures = io_columns_of_text(payload)
            if any(value is not None for value in figures.values()):
                updates.append((run_pk, *(figures[n] for n in names)))
        updated += len(updates)
        update_runs(db, names, _CASTS, updates)
    return updated
