"""The schema versions and the step that upgrades a database from each to the next.

:func:`resmon.store.db.migrate` runs the steps from a database's version to
:data:`LATEST_VERSION` in one transaction, under its migration lock.  A step uses
``playhouse.migrate`` operations where they do what is needed, and backfills new
columns from the stored rows with the functions a push uses (:mod:`resmon.store.derive`).

Schema versions (``schema_version`` table, one row):

1. a bare ``runs`` table: id, scope, run_id, received_at, payload -- what the
   query API returns, and nothing more;
2. the summary columns a query filters on, ``run_attempt``, idempotency
   (``idempotency_key``, ``body_sha256``, ``run_key``) and ``run_containers``.
   Upgrading backfills all of them from the stored payloads.
3. without the (scope, run_id) index of version 2, which no query used.
4. idempotency keys unique per scope (``scoped_idempotency_key``, backfilled;
   ``idempotency_key`` keeps the key as sent, no longer unique), and columns that
   hold what a push may carry: ``sample_count`` and ``oom_kills`` BIGINT (a push
   of 3e9 was a 500 on PostgreSQL), fractions DOUBLE PRECISION instead of 4-byte
   REAL, the canonical ``repository`` up to 511 characters.  PostgreSQL only for
   the types: SQLite stores 8-byte numbers and any length whatever the declared type.
"""

from __future__ import annotations

import logging
from collections.abc import Callable
from datetime import UTC, datetime
from typing import Any

import orjson
from peewee import (
    BigIntegerField,
    CharField,
    Database,
    DateTimeField,
    FloatField,
    IntegerField,
    PostgresqlDatabase,
)
from playhouse.migrate import SchemaMigrator
from playhouse.migrate import migrate as run_ops

from resmon.schema import parse_time
from resmon.stats import STAT_KEYS
from resmon.store import models
from resmon.store.derive import derive_legacy, scoped_idempotency_key, sha256_hex

log = logging.getLogger(__name__)


def _to_v2(db: Database, migrator: SchemaMigrator) -> None:
    """Summary columns, idempotency and per-container rows, backfilled from payloads."""
    nullable: dict[str, Any] = {
        "run_attempt": CharField(max_length=255, default=""),
        "idempotency_key": CharField(max_length=255, null=True),
        "body_sha256": CharField(max_length=64, null=True),
        "run_key": CharField(max_length=64, null=True),
        "start_time": DateTimeField(null=True),
        "end_time": DateTimeField(null=True),
        "duration_seconds": FloatField(null=True),
        "sample_count": IntegerField(null=True),
        "cpu_seconds": FloatField(null=True),
        "cpu_percent_peak": FloatField(null=True),
        "cpu_percent_p95": FloatField(null=True),
        "mem_bytes_peak": BigIntegerField(null=True),
        "mem_bytes_p95": BigIntegerField(null=True),
    }
    run_ops(*(migrator.add_column("runs", name, field) for name, field in nullable.items()))

    seen: set[str] = set()
    containers: list[dict[str, Any]] = []
    cursor = db.execute_sql(
        "SELECT id, organization, repository, workflow, job, run_id, received_at, payload "
        "FROM runs ORDER BY id"
    )
    for row in cursor.fetchall():
        run_pk, org, repo, workflow, job, run_id, received_at, payload_text = row
        derived = derive_legacy(org, repo, workflow, job, run_id, payload_text)
        # The Go receiver stored every retry as a new row: the first keeps the
        # natural run key, later copies get a key of their own so none is lost.
        if derived.run_key in seen:
            derived.columns["run_key"] = sha256_hex(f"legacy\0{run_pk}")
        seen.add(derived.run_key)
        columns = dict(derived.columns)
        columns["repository"] = derived.repository
        columns["received_at"] = _normalise_time(received_at)
        # The query API splices payload text into its JSON answer: text that is
        # not JSON is kept, as a JSON string.
        try:
            orjson.loads(payload_text)
        except (orjson.JSONDecodeError, TypeError):
            columns["payload"] = orjson.dumps(str(payload_text)).decode()
        models.Run.update(**columns).where(models.Run.id == run_pk).execute()
        for container in derived.containers:
            container["run"] = run_pk
            containers.append(container)

    run_ops(
        migrator.add_not_null("runs", "body_sha256"),
        migrator.add_not_null("runs", "run_key"),
        migrator.add_index("runs", ("idempotency_key",), unique=True),
        migrator.add_index("runs", ("run_key",), unique=True),
        migrator.add_index("runs", ("received_at",), unique=False),
        migrator.add_index(
            "runs", ("organization", "repository", "workflow", "job", "received_at"), unique=False
        ),
    )
    # Only now: SQLite's NOT NULL above rebuilds "runs" (drop + rename), which
    # would cascade-delete container rows created earlier.
    models.ContainerStat.create_table()
    for start in range(0, len(containers), 500):
        models.ContainerStat.insert_many(containers[start : start + 500]).execute()


def _normalise_time(value: Any) -> datetime:
    """A stored time of any common form as a naive UTC datetime (a v1 row may hold
    RFC 3339 text with nanoseconds, as the Go receiver writes it)."""
    if isinstance(value, datetime):
        return value.astimezone(UTC).replace(tzinfo=None) if value.tzinfo else value
    text = str(value).strip().replace(" ", "T", 1)
    try:
        return parse_time(text).replace(tzinfo=None)
    except ValueError:
        pass  # no zone offset: already naive UTC, as peewee writes it
    try:
        return datetime.fromisoformat(text)
    except ValueError:
        log.warning("unparseable received_at %r replaced by the migration time", value)
        return datetime.now(UTC).replace(tzinfo=None)


def _to_v3(db: Database, migrator: SchemaMigrator) -> None:
    """Drop the (scope, run_id) index: no query uses it (EXPLAIN QUERY PLAN of every
    read), and each push paid for updating it.  Named after the model on a database
    created at version 2, after the table on one upgraded from version 1."""
    for prefix in ("run", "runs"):
        db.execute_sql(f"DROP INDEX IF EXISTS {prefix}_organization_repository_workflow_job_run_id")


# Rows read per round while backfilling version 4 (keyset pagination by id).
_BACKFILL_BATCH = 5000


def _to_v4(db: Database, migrator: SchemaMigrator) -> None:
    """Idempotency keys unique per scope, and the columns widened to what a push may
    carry.  Each part is skipped where already done, so a repeated step is harmless."""
    if "scoped_idempotency_key" not in {c.name for c in db.get_columns("runs")}:
        run_ops(
            migrator.add_column(
                "runs", "scoped_idempotency_key", CharField(max_length=64, null=True)
            )
        )
    _backfill_scoped_keys(db)
    # The global unique index goes: named after the model on a database created at
    # version 2 or 3, after the table on one upgraded from version 1.  The new index
    # gets the name a fresh database gives it.
    for prefix in ("run", "runs"):
        db.execute_sql(f"DROP INDEX IF EXISTS {prefix}_idempotency_key")
    db.execute_sql(
        "CREATE UNIQUE INDEX IF NOT EXISTS run_scoped_idempotency_key "
        "ON runs (scoped_idempotency_key)"
    )
    if isinstance(db, PostgresqlDatabase):
        _widen_postgres_columns(db)


# Columns whose PostgreSQL type version 4 widens to the model's: int4 -> BIGINT,
# REAL (4 bytes) -> DOUBLE PRECISION, the canonical repository to 511 characters.
_WIDENED_COLUMNS: dict[type[models.BaseModel], tuple[str, ...]] = {
    models.Run: (
        "repository",
        "sample_count",
        "duration_seconds",
        "cpu_seconds",
        "cpu_percent_peak",
        "cpu_percent_p95",
    ),
    models.ContainerStat: (
        *(f"cpu_cores_{key}" for key in STAT_KEYS),
        "memory_bytes_avg",
        "cpu_seconds",
        "limit_cpu_cores",
        "cpu_throttled_seconds",
        "oom_kills",
    ),
}


def _widen_postgres_columns(db: Database) -> None:
    """One ALTER TABLE per table, to the types the models declare.

    A new numeric type rewrites the table, under an exclusive lock, once per
    statement: all of a table's columns go in one statement so it is rewritten once
    (playhouse.migrate's alter_column_type is a statement per column).  A longer
    varchar needs no rewrite.  SQLite is left alone: it stores 8-byte integers and
    floats whatever the declared type, does not enforce lengths, and changing a
    declared type there rebuilds the table.
    """
    for model, names in _WIDENED_COLUMNS.items():
        clauses = []
        for name in names:
            field = model._meta.columns[name]
            ctx = db.get_sql_context()
            ctx.sql(field.ddl_datatype(ctx))
            clauses.append(f'ALTER COLUMN "{name}" TYPE {ctx.query()[0]}')
        db.execute_sql(f'ALTER TABLE "{model._meta.table_name}" ' + ", ".join(clauses))


def _backfill_scoped_keys(db: Database) -> None:
    """``scoped_idempotency_key`` of every keyed row, from its stored scope columns (the
    repository is stored canonical), as a push computes it.

    On PostgreSQL a batch is one UPDATE joined to a VALUES list: an UPDATE per row is
    a round trip each (measured, 100,000 runs of which 50,000 keyed: 26 s that way).
    SQLite runs in-process, where executemany is as fast and needs no UPDATE ... FROM
    (SQLite 3.33).
    """
    p = db.param
    select = (
        "SELECT id, organization, repository, workflow, job, idempotency_key FROM runs "
        f"WHERE idempotency_key IS NOT NULL AND scoped_idempotency_key IS NULL AND id > {p} "
        f"ORDER BY id LIMIT {_BACKFILL_BATCH}"
    )
    postgres = isinstance(db, PostgresqlDatabase)
    last = 0
    while rows := db.execute_sql(select, (last,)).fetchall():
        last = rows[-1][0]
        if not postgres:
            updates = [(scoped_idempotency_key(*row[1:]), row[0]) for row in rows]
            db.cursor().executemany(
                f"UPDATE runs SET scoped_idempotency_key = {p} WHERE id = {p}", updates
            )
            continue
        values: list[Any] = []
        for row in rows:
            values += (row[0], scoped_idempotency_key(*row[1:]))
        db.execute_sql(
            "UPDATE runs SET scoped_idempotency_key = v.k FROM (VALUES "
            + ", ".join([f"({p}::integer, {p})"] * len(rows))
            + ") AS v(id, k) WHERE runs.id = v.id",
            values,
        )


STEPS: dict[int, Callable[[Database, SchemaMigrator], None]] = {
    2: _to_v2,
    3: _to_v3,
    4: _to_v4,
}


LATEST_VERSION = max(STEPS)
