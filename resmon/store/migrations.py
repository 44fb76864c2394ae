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
   ``idempotency_key`` keeps the key as sent, no longer unique), which wrapped step
   a run was (``command_container``, ``command_name``, backfilled from the stored
   summaries' ``command``), and columns that hold what a push may carry:
   ``sample_count`` and ``oom_kills`` BIGINT (a push of 3e9 was a 500 on
   PostgreSQL), fractions DOUBLE PRECISION instead of 4-byte REAL, the canonical
   ``repository`` up to 511 characters.  PostgreSQL only for the types: SQLite
   stores 8-byte numbers and any length whatever the declared type.
5. each run's job figures (``job_*``: CPU cores p95/peak, CPU seconds, memory
   p95/peak, its kind and range, the job's limits; :mod:`resmon.store.job_figures`),
   backfilled from the stored summaries: the ``cpu_percent_*`` / ``mem_bytes_*``
   columns are the host's, the whole machine's.
6. the regressions flagged at push (``run_regressions``).
7. live runs (:mod:`resmon.store.live`): each run's ``state`` (running, finished,
   lost) and ``partial`` flag, its collector's ``live_key``, ``host``,
   ``live_interval_seconds``, ``last_batch_at`` and latest ``snapshot``; the
   ``run_batches`` table (a run's samples, one row per batch) and the ``events``
   table (:mod:`resmon.store.events`).  Every run stored before is finished and
   complete: the two NOT NULL columns come with those defaults, which is the whole
   backfill (a catalogue change on PostgreSQL 11+, no table rewrite; an ALTER TABLE
   ADD COLUMN on SQLite, no rebuild).
8. which test flagged each regression (``run_regressions.test``: single or shift,
   ``runs``: over how many runs), NOT NULL with the defaults ``single`` and 1: every
   flag stored before the shift test was the single test's; the shift test's flags
   stored since (with the regression event, which names each figure's test) are
   backfilled from their events.

Steps 6 to 8 are in :mod:`resmon.store.migrations_recent`; 9 (rollups) in
:mod:`resmon.store.migrations_rollups`, 10 (alerts) in :mod:`resmon.store.migrations_alerts`,
11 (run context, steps) in :mod:`resmon.store.migrations_context`, 12 (I/O) in
:mod:`resmon.store.migrations_io`.
"""

from __future__ import annotations

import logging
from collections.abc import Callable, Iterator
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
from resmon.store.backfill import update_runs
from resmon.store.derive import (
    command_columns_of_text,
    derive_legacy,
    scoped_idempotency_key,
    sha256_hex,
)
from resmon.store.job_figures import JOB_COLUMNS, job_columns_of_text
from resmon.store.migrations_alerts import to_v10
from resmon.store.migrations_context import to_v11
from resmon.store.migrations_io import to_v12
from resmon.store.migrations_recent import _to_v6, _to_v7, _to_v8
from resmon.store.migrations_rollups import to_v9

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
    # Only the columns version 2 has: later steps add and backfill their own.
    present = {c.name for c in db.get_columns("runs")}
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
        columns = {
            k: v
            for k, v in derived.columns.items()
            if k in present and k not in _V4_RUN_COLUMNS and k not in JOB_COLUMNS
        }
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


# Columns version 4 adds to ``runs``, all nullable: on PostgreSQL adding them
# changes the catalogue only, and on SQLite it is an ALTER TABLE ADD COLUMN.
_V4_RUN_COLUMNS: dict[str, Any] = {
    "scoped_idempotency_key": CharField(max_length=64, null=True),
    "command_container": CharField(max_length=255, null=True),
    "command_name": CharField(max_length=255, null=True),
}


def _to_v4(db: Database, migrator: SchemaMigrator) -> None:
    """Idempotency keys unique per scope, each run's wrapped step, and the columns
    widened to what a push may carry.  Each part is skipped where already done, so a
    repeated step is harmless.

    On PostgreSQL the table is rewritten once, by the widening at the end: the new
    columns are nullable (no rewrite), and the backfill updates each run at most
    once, before the rewrite, which then writes only the runs' last versions."""
    present = {c.name for c in db.get_columns("runs")}
    missing = [name for name in _V4_RUN_COLUMNS if name not in present]
    if missing:
        run_ops(*(migrator.add_column("runs", n, _V4_RUN_COLUMNS[n]) for n in missing))
    _backfill_v4(db)
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


# A backfill batch: at most this many runs, and once the stored summaries read
# reach BACKFILL_BATCH_BYTES, no more (a batch holds at least one run).
BACKFILL_BATCH_ROWS = 5000
BACKFILL_BATCH_BYTES = 4 * 1024 * 1024


def _v4_batches(db: Database) -> Iterator[list[tuple[Any, ...]]]:
    """Every run as ``(id, organization, repository, workflow, job, key, payload)``
    in batches by id: ``key`` only where its scoped key is still missing, ``payload``
    only where its text mentions ``"command"`` (most stored summaries, a sidecar's
    or a peer's, do not, and may each be megabytes: they stay in the database).

    A scan reads up to :data:`BACKFILL_BATCH_ROWS` runs' ids and the length of the
    summaries to read, once; then those summaries are read by id, up to
    :data:`BACKFILL_BATCH_BYTES` a batch: memory stays bounded however large the
    table and its rows."""
    p = db.param
    # PostgreSQL: strpos finds the key faster than LIKE, and octet_length reads a
    # stored value's size from its header where length() would count characters.
    # SQLite: LIKE is the faster of the two there (measured), length() cheap.
    if isinstance(db, PostgresqlDatabase):
        mentions, pattern = f"strpos(payload, {p}) > 0 THEN octet_length(payload)", '"command"'
    else:
        mentions, pattern = f"payload LIKE {p} THEN length(payload)", '%"command"%'
    scan = (
        "SELECT id, organization, repository, workflow, job, "
        "CASE WHEN scoped_idempotency_key IS NULL THEN idempotency_key END, "
        f"CASE WHEN {mentions} END "
        f"FROM runs WHERE id > {p} ORDER BY id LIMIT {BACKFILL_BATCH_ROWS}"
    )
    last = 0
    while rows := db.execute_sql(scan, (pattern, last)).fetchall():
        last = rows[-1][0]
        batch: list[tuple[Any, ...]] = []
        size = 0
        for row in rows:
            batch.append(row)
            size += row[6] or 0
            if size >= BACKFILL_BATCH_BYTES:
                yield _with_payloads(db, batch)
                batch, size = [], 0
        if batch:
            yield _with_payloads(db, batch)


def _with_payloads(db: Database, rows: list[tuple[Any, ...]]) -> list[tuple[Any, ...]]:
    """Scanned rows with their last field, a summary's length or None, replaced by
    the summary itself where it has a length."""
    payloads = _payloads_by_id(db, [row[0] for row in rows if row[6] is not None])
    return [(*row[:6], payloads.get(row[0])) for row in rows]


def _payloads_by_id(db: Database, wanted: list[int]) -> dict[int, str]:
    """The stored summaries of the runs ``wanted``, by id."""
    payloads: dict[int, str] = {}
    for at in range(0, len(wanted), 500):  # SQLite's bound-parameter limit
        part = wanted[at : at + 500]
        marks = ", ".join([db.param] * len(part))
        query = f"SELECT id, payload FROM runs WHERE id IN ({marks})"
        payloads.update(db.execute_sql(query, part).fetchall())
    return payloads


def _backfill_v4(db: Database) -> int:
    """``scoped_idempotency_key`` of every keyed run, from its stored scope columns
    (the repository is stored canonical), and ``command_container`` /
    ``command_name`` from its stored summary, as a push derives them; returns how
    many runs were updated.  A run with nothing to fill is not written.

    On PostgreSQL a batch is one UPDATE joined to a VALUES list: an UPDATE per row is
    a round trip each (measured, 100,000 runs of which 50,000 keyed: 26 s that way).
    SQLite runs in-process, where executemany is as fast and needs no UPDATE ... FROM
    (SQLite 3.33).
    """
    p = db.param
    postgres = isinstance(db, PostgresqlDatabase)
    updated = 0
    for batch in _v4_batches(db):
        updates = []
        for run_pk, org, repo, workflow, job, key, payload in batch:
            scoped = scoped_idempotency_key(org, repo, workflow, job, key)
            command = command_columns_of_text(payload)
            if scoped is not None or any(command.values()):
                updates.append(
                    (run_pk, scoped, command["command_container"], command["command_name"])
                )
        updated += len(updates)
        if not updates:
            continue
        if not postgres:
            db.cursor().executemany(
                "UPDATE runs SET scoped_idempotency_key = "
                f"COALESCE({p}, scoped_idempotency_key), command_container = {p}, "
                f"command_name = {p} WHERE id = {p}",
                [(*row[1:], row[0]) for row in updates],
            )
            continue
        db.execute_sql(
            "UPDATE runs SET scoped_idempotency_key = COALESCE(v.k, runs.scoped_idempotency_key),"
            " command_container = v.c, command_name = v.n FROM (VALUES "
            + ", ".join([f"({p}::integer, {p}, {p}, {p})"] * len(updates))
            + ") AS v(id, k, c, n) WHERE runs.id = v.id",
            [value for row in updates for value in row],
        )
    return updated


def _to_v5(db: Database, migrator: SchemaMigrator) -> None:
    """The job's own figures beside the host's: the ``job_*`` columns, nullable (on
    PostgreSQL a catalogue change, no rewrite), backfilled from the stored summaries
    as a push derives them.  Columns already there are kept, so a repeated step is
    harmless."""
    present = {c.name for c in db.get_columns("runs")}
    fields = models.Run._meta.columns
    missing = [name for name in JOB_COLUMNS if name not in present]
    if missing:
        run_ops(*(migrator.add_column("runs", n, fields[n]) for n in missing))
    _backfill_v5(db)


def _payload_batches(db: Database) -> Iterator[list[tuple[int, str]]]:
    """Every run as ``(id, payload)``, by id, in batches of at most
    :data:`BACKFILL_BATCH_ROWS` runs and :data:`BACKFILL_BATCH_BYTES` of stored
    summaries (or one run): a scan reads ids and sizes, then the summaries of one
    batch are read by id, so memory stays bounded however large the table."""
    p = db.param
    size = "octet_length(payload)" if isinstance(db, PostgresqlDatabase) else "length(payload)"
    scan = f"SELECT id, {size} FROM runs WHERE id > {p} ORDER BY id LIMIT {BACKFILL_BATCH_ROWS}"
    last = 0
    while rows := db.execute_sql(scan, (last,)).fetchall():
        last = rows[-1][0]
        batch: list[int] = []
        total = 0
        for run_pk, length in rows:
            batch.append(run_pk)
            total += length or 0
            if total >= BACKFILL_BATCH_BYTES:
                yield list(_payloads_by_id(db, batch).items())
                batch, total = [], 0
        if batch:
            yield list(_payloads_by_id(db, batch).items())


# The PostgreSQL type of each job column in a VALUES list (NULLs need one).
_V5_CASTS = {
    name: "text"
    if name in ("job_scope", "job_memory_kind")
    else ("bigint" if "bytes" in name else "double precision")
    for name in JOB_COLUMNS
}


def _backfill_v5(db: Database) -> int:
    """The ``job_*`` columns of every run from its stored summary; returns how many
    runs were updated (one with nothing to fill, a summary without containers, is
    not written).  One UPDATE joined to a VALUES list per batch on PostgreSQL,
    executemany on SQLite, as :func:`_backfill_v4`."""
    names = list(JOB_COLUMNS)
    updated = 0
    for batch in _payload_batches(db):
        updates = []
        for run_pk, payload in batch:
            figures = job_columns_of_text(payload)
            if any(value is not None for value in figures.values()):
                updates.append((run_pk, *(figures[n] for n in names)))
        updated += len(updates)
        update_runs(db, names, _V5_CASTS, updates)
    return updated


STEPS: dict[int, Callable[[Database, SchemaMigrator], None]] = {
    2: _to_v2,
    3: _to_v3,
    4: _to_v4,
    5: _to_v5,
    6: _to_v6,
    7: _to_v7,
    8: _to_v8,
    9: to_v9,
    10: to_v10,
    11: to_v11,
    12: to_v12,
}


LATEST_VERSION = max(STEPS)
