"""Hourly and daily rollups per job and per container, written in the background.

A rollup row holds one job's (``rollup_jobs``) or one container's
(``rollup_containers``) runs *received* in one UTC hour or day (``span`` hour or
day, ``bucket``), or *started* on one UTC day (span ``rday``, what a trend by day
shows): the run count, the partial (lost) runs among them, sums and counts of
each figure (an average is ``_sum / _n``: ``_n`` counts the runs that had the
figure), maxima, CPU-seconds, memory peak x duration (byte-seconds, what GiB-hours
are made of), OOM kills and throttled seconds.  A run counts in the hour it was
received, as ``top`` and ``runs --since`` have always counted it.  Running runs
have no figures and are not rolled up.

Written from the runs by a pass that reads the ``run_finished`` and ``run_lost``
events after its cursor (``rollup_cursor``) in id order, with the PostgreSQL
out-of-order rule of :mod:`resmon.server.event_feed` (a missing id holds the later
ones until it commits or is :data:`GAP_WAIT` seconds old).  A run no rollup counts
yet (no ``rollup_runs`` row: the common case, a run pushed once) is *added* to the
rows of its hour, day and start day (:func:`add_new_runs`: every column is a count,
a sum, a maximum or a minimum, so adding one run equals recomputing the bucket, and
the cost follows the new runs, not the bucket's).  A run counted before has each hour
and day it falls in, or fell in, *recomputed* from the runs stored there.  So a run
counts once however often it was pushed or announced (the ledger row is written in
the transaction that adds it), a lost run finished by its final push replaces its
partial figures, and a run whose row moved to another hour (``rollup_runs``
remembers where each run was counted) leaves the old one.  The pass never runs in
a push: :mod:`resmon.server.maintenance` calls
:func:`resmon.store.rollup_pass.run_pass` every second (so the rollups lag the
runs by about a second), one process or replica at a time.

Readers (:mod:`resmon.store.ranking`, :mod:`resmon.store.usage`, the jobs list)
never wait for the pass: :func:`horizon` is the earliest hour a pending event
touches; rollup rows before it are read as they are, and runs from it on (and the
partial hours at a window's edges) are read from ``runs``, so an answer equals
what the runs give at any moment (see :func:`combined_sql`).

:func:`resmon.store.rollup_pass.rebuild` recomputes any range from the runs that remain (``resmon rollups
rebuild``): rollups outlive the runs retention deletes, and a rebuild of a range
whose runs are gone empties it.
"""

from __future__ import annotations

import logging
from collections.abc import Iterable, Sequence
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta
from typing import Any

from peewee import PostgresqlDatabase, __exception_wrapper__

from resmon.store.models import database_proxy

log = logging.getLogger(__name__)

HOUR, DAY = "hour", "day"
# The UTC day the runs *started* (their start time, else their arrival): what a trend
# by day groups by (resmon.store.trends), a spooled run on the day it ran.
RUN_DAY = "rday"
SPANS = (HOUR, DAY, RUN_DAY)
# How far a runner's clock may be ahead of the server's (as trends assume): a run
# started on a day is received at the earliest this long before the day starts.
RUN_CLOCK_AHEAD = timedelta(days=1)
CURSOR_NAME = "rollups"
# The events a rollup follows: a run got (or changed) its figures.
ROLLUP_EVENT_KINDS = ("run_finished", "run_lost")
SCOPE = ("organization", "repository", "workflow", "job")

# --- what a rollup holds ---------------------------------------------------------

# Job columns: (name, aggregate over runs ``r``, how rows of it combine).
RUNNING_SQL = "'running'"


def _oom(column: str) -> str:
    return f"COALESCE(SUM((SELECT SUM(c.{column}) FROM run_containers c WHERE c.run_id = r.id)), 0)"


JOB_COLUMNS: tuple[tuple[str, str, str], ...] = (
    ("runs", "COUNT(*)", "sum"),
    ("partial_runs", "COALESCE(SUM(CASE WHEN r.partial THEN 1 ELSE 0 END), 0)", "sum"),
    ("last_run_pk", "MAX(r.id)", "max"),
    ("duration_seconds_sum", "SUM(r.duration_seconds)", "sum"),
    ("duration_seconds_n", "COUNT(r.duration_seconds)", "sum"),
    ("duration_seconds_max", "MAX(r.duration_seconds)", "max"),
    ("job_cpu_seconds_sum", "SUM(r.job_cpu_seconds)", "sum"),
    ("job_cpu_seconds_n", "COUNT(r.job_cpu_seconds)", "sum"),
    ("job_cpu_cores_p95_sum", "SUM(r.job_cpu_cores_p95)", "sum"),
    ("job_cpu_cores_p95_n", "COUNT(r.job_cpu_cores_p95)", "sum"),
    ("job_cpu_cores_p95_max", "MAX(r.job_cpu_cores_p95)", "max"),
    ("job_cpu_cores_peak_max", "MAX(r.job_cpu_cores_peak)", "max"),
    ("job_memory_bytes_peak_sum", "SUM(r.job_memory_bytes_peak)", "sum"),
    ("job_memory_bytes_peak_n", "COUNT(r.job_memory_bytes_peak)", "sum"),
    ("job_memory_bytes_peak_max", "MAX(r.job_memory_bytes_peak)", "max"),
    ("job_memory_bytes_p95_sum", "SUM(r.job_memory_bytes_p95)", "sum"),
    ("job_memory_bytes_p95_n", "COUNT(r.job_memory_bytes_p95)", "sum"),
    (
        "job_memory_byte_seconds",
        "SUM(CAST(r.job_memory_bytes_peak AS DOUBLE PRECISION) * r.duration_seconds)",
        "sum",
    ),
    ("job_memory_kind_min", "MIN(r.job_memory_kind)", "min"),
    ("job_memory_kind_max", "MAX(r.job_memory_kind)", "max"),
    ("cpu_seconds_sum", "SUM(r.cpu_seconds)", "sum"),
    ("cpu_seconds_n", "COUNT(r.cpu_seconds)", "sum"),
    ("cpu_percent_p95_sum", "SUM(r.cpu_percent_p95)", "sum"),
    ("cpu_percent_p95_n", "COUNT(r.cpu_percent_p95)", "sum"),
    ("mem_bytes_peak_max", "MAX(r.mem_bytes_peak)", "max"),
    ("mem_bytes_p95_sum", "SUM(r.mem_bytes_p95)", "sum"),
    ("mem_bytes_p95_n", "COUNT(r.mem_bytes_p95)", "sum"),
    ("oom_kills", _oom("oom_kills"), "sum"),
    ("cpu_throttled_seconds", _oom("cpu_throttled_seconds"), "sum"),
    ("job_cpu_seconds_max", "MAX(r.job_cpu_seconds)", "max"),
    ("job_memory_bytes_p95_max", "MAX(r.job_memory_bytes_p95)", "max"),
    ("job_limit_cpu_cores_max", "MAX(r.job_limit_cpu_cores)", "max"),
    ("job_limit_memory_bytes_max", "MAX(r.job_limit_memory_bytes)", "max"),
    ("cpu_percent_p95_max", "MAX(r.cpu_percent_p95)", "max"),
    ("cpu_percent_peak_max", "MAX(r.cpu_percent_peak)", "max"),
    ("mem_bytes_p95_max", "MAX(r.mem_bytes_p95)", "max"),
)

# Container columns, over run_containers ``c`` joined to its run ``r``.
CONTAINER_COLUMNS: tuple[tuple[str, str, str], ...] = (
    ("runs", "COUNT(*)", "sum"),
    ("partial_runs", "COALESCE(SUM(CASE WHEN r.partial THEN 1 ELSE 0 END), 0)", "sum"),
    ("duration_seconds_sum", "SUM(r.duration_seconds)", "sum"),
    ("cpu_seconds_sum", "SUM(c.cpu_seconds)", "sum"),
    ("cpu_seconds_n", "COUNT(c.cpu_seconds)", "sum"),
    ("cpu_cores_p95_sum", "SUM(c.cpu_cores_p95)", "sum"),
    ("cpu_cores_p95_n", "COUNT(c.cpu_cores_p95)", "sum"),
    ("cpu_cores_p95_max", "MAX(c.cpu_cores_p95)", "max"),
    ("cpu_cores_peak_max", "MAX(c.cpu_cores_peak)", "max"),
    ("memory_bytes_peak_sum", "SUM(c.memory_bytes_peak)", "sum"),
    ("memory_bytes_peak_n", "COUNT(c.memory_bytes_peak)", "sum"),
    ("memory_bytes_peak_max", "MAX(c.memory_bytes_peak)", "max"),
    (
        "memory_byte_seconds",
        "SUM(CAST(c.memory_bytes_peak AS DOUBLE PRECISION) * r.duration_seconds)",
        "sum",
    ),
    ("limit_cpu_cores_max", "MAX(c.limit_cpu_cores)", "max"),
    ("limit_memory_bytes_max", "MAX(c.limit_memory_bytes)", "max"),
    ("oom_kills", "COALESCE(SUM(c.oom_kills), 0)", "sum"),
    ("cpu_throttled_seconds", "COALESCE(SUM(c.cpu_throttled_seconds), 0)", "sum"),
    ("duration_seconds_n", "COUNT(r.duration_seconds)", "sum"),
    ("memory_bytes_p95_max", "MAX(c.memory_bytes_p95)", "max"),
)

# Counts that are never NULL in a rollup row, also when combined over no rows.
_COUNTS = {"runs", "partial_runs", "oom_kills", "cpu_throttled_seconds"}


def combine(columns: Iterable[tuple[str, str, str]], alias: str = "") -> list[str]:
    """``AGG(alias.name) AS name`` for each column, as rows of rollups add up."""
    prefix = f"{alias}." if alias else ""
    out = []
    for name, _, how in columns:
        expr = f"{how.upper()}({prefix}{name})"
        if name in _COUNTS or name.endswith("_n"):
            expr = f"COALESCE({expr}, 0)"
        out.append(f"{expr} AS {name}")
    return out


# --- times -----------------------------------------------------------------------


def postgres() -> bool:
    return isinstance(database_proxy.obj, PostgresqlDatabase)


def param_time(value: datetime) -> Any:
    """A naive-UTC time as a raw statement's parameter: the text peewee stores on
    SQLite (so text comparison orders it), the datetime itself on PostgreSQL."""
    return value if postgres() else str(value)


def bucket_expr(span: str, column: str) -> str:
    """The start of the hour or day of a stored time, as the bucket column holds it."""
    if postgres():
        return f"date_trunc('{span}', {column})"
    if span == HOUR:
        return f"strftime('%Y-%m-%d %H:00:00', {column})"
    return f"(date({column}) || ' 00:00:00')"


RUN_TIME_SQL = "COALESCE(r.start_time, r.received_at)"


def floor_hour(value: datetime) -> datetime:
    return value.replace(minute=0, second=0, microsecond=0)


def floor_day(value: datetime) -> datetime:
    return value.replace(hour=0, minute=0, second=0, microsecond=0)


def ceil_hour(value: datetime) -> datetime:
    floor = floor_hour(value)
    return floor if floor == value else _later(floor, timedelta(hours=1))


def ceil_day(value: datetime) -> datetime:
    floor = floor_day(value)
    return floor if floor == value else _later(floor, timedelta(days=1))


def earlier(value: datetime, step: timedelta) -> datetime:
    try:
        return value - step
    except OverflowError:  # within a day of year 1
        return datetime.min


def _later(value: datetime, step: timedelta) -> datetime:
    try:
        return value + step
    except OverflowError:  # the last hour of year 9999
        return datetime.max


def as_time(value: Any) -> datetime | None:
    """A time a raw aggregate answered (text on SQLite) as a naive datetime."""
    if value is None or isinstance(value, datetime):
        return value
    return datetime.fromisoformat(str(value))


def utc_now() -> datetime:
    return datetime.now(UTC).replace(tzinfo=None)


# --- recomputing from the runs ----------------------------------------------------


@dataclass(frozen=True)
class _Statements:
    delete_where: str
    delete_params: list[Any]
    job_select: str
    container_select: str
    params: list[Any]


def _statements(
    span: str, start: datetime, end: datetime, scopes: Sequence[tuple[str, ...]] | None
) -> _Statements:
    """The statements that recompute the ``span`` rows of [start, end) (of the jobs
    ``scopes``, or of every job) from the runs: which rows go, and the SELECTs of the
    new ones.  Their text depends only on the span, the dialect and how many jobs
    (cached); each job's runs are found through the (scope, received_at) index."""
    p = database_proxy.param
    if span == RUN_DAY:
        # By start: the (scope, received_at) index bounds it from a day before.
        params: list[Any] = [
            param_time(start),
            param_time(end),
            param_time(earlier(start, RUN_CLOCK_AHEAD)),
        ]
    else:
        params = [param_time(start), param_time(end)]
    delete_params: list[Any] = [span, param_time(start), param_time(end)]
    for scope in scopes or ():
        params += scope
        delete_params += scope
    key = (span, p, None if scopes is None else len(scopes))
    text = _STATEMENT_TEXT.get(key)
    if text is None:
        text = _STATEMENT_TEXT[key] = _statement_text(span, p, key[2])
    return _Statements(text[0], delete_params, text[1], text[2], [span, *params])


_STATEMENT_TEXT: dict[tuple[str, str, int | None], tuple[str, str, str]] = {}


def _scopes_sql(p: str, alias: str, jobs: int | None) -> str:
    """`` AND`` the row is one of ``jobs`` jobs (each one's columns equal, ORed: every
    term an index search), or nothing for every job."""
    if jobs is None:
        return ""
    one = "(" + " AND ".join(f"{alias}{name} = {p}" for name in SCOPE) + ")"
    return f" AND ({' OR '.join([one] * jobs)})"


def _statement_text(span: str, p: str, jobs: int | None) -> tuple[str, str, str]:
    if span == RUN_DAY:
        where = (
            f"{RUN_TIME_SQL} >= {p} AND {RUN_TIME_SQL} < {p} AND r.received_at >= {p} "
            f"AND r.state <> {RUNNING_SQL}"
        )
    else:
        where = f"r.received_at >= {p} AND r.received_at < {p} AND r.state <> {RUNNING_SQL}"
    where += _scopes_sql(p, "r.", jobs)
    delete_where = f"span = {p} AND bucket >= {p} AND bucket < {p}" + _scopes_sql(p, "", jobs)
    return delete_where, *_selects(span, p, where)


def _selects(span: str, p: str, where: str) -> tuple[str, str]:
    """The SELECTs of the ``span`` rollup rows of the jobs and of their containers
    that the runs ``r`` matching ``where`` give, the span a parameter."""
    bucket = (
        bucket_expr(DAY, RUN_TIME_SQL) if span == RUN_DAY else bucket_expr(span, "r.received_at")
    )
    scope_cols = ", ".join(f"r.{name}" for name in SCOPE)
    job_select = (
        f"SELECT {p}, {bucket}, {scope_cols}, "
        + ", ".join(expr for _, expr, _ in JOB_COLUMNS)
        + f" FROM runs r WHERE {where} GROUP BY {bucket}, {scope_cols}"
    )
    container_select = (
        f"SELECT {p}, {bucket}, {scope_cols}, c.name, "
        + ", ".join(expr for _, expr, _ in CONTAINER_COLUMNS)
        + f" FROM runs r JOIN run_containers c ON c.run_id = r.id WHERE {where} "
        f"GROUP BY {bucket}, {scope_cols}, c.name"
    )
    return job_select, container_select


_JOB_INSERT = (
    f"INSERT INTO rollup_jobs (span, bucket, {', '.join(SCOPE)}, "
    f"{', '.join(name for name, _, _ in JOB_COLUMNS)})"
)
_CONTAINER_INSERT = (
    f"INSERT INTO rollup_containers (span, bucket, {', '.join(SCOPE)}, name, "
    f"{', '.join(name for name, _, _ in CONTAINER_COLUMNS)})"
)
# Where the runs ``r`` (a WHERE clause follows) are counted now: the ledger's rows.
LEDGER_INSERT = (
    "INSERT INTO rollup_runs (run_pk, received_at, run_time) "
    f"SELECT r.id, r.received_at, {RUN_TIME_SQL} FROM runs r"
)


def recompute(
    span: str,
    start: datetime,
    end: datetime,
    scope: tuple[str, str, str, str] | None = None,
) -> None:
    """Replace the ``span`` rows of [start, end) (of one job, or of every job) by what
    the runs give, in place (INSERT ... SELECT).  Call inside a write transaction."""
    db = database_proxy
    st = _statements(span, start, end, None if scope is None else [scope])
    for table in ("rollup_jobs", "rollup_containers"):
        db.execute_sql(f"DELETE FROM {table} WHERE {st.delete_where}", st.delete_params)
    db.execute_sql(f"{_JOB_INSERT} {st.job_select}", st.params)
    db.execute_sql(f"{_CONTAINER_INSERT} {st.container_select}", st.params)


@dataclass
class Computed:
    """The rows a bucket's recomputation gives, read outside any write transaction."""

    statements: _Statements
    jobs: list[tuple[Any, ...]]
    containers: list[tuple[Any, ...]]
    scopes: int = 1  # how many jobs' rows were recomputed


def compute(
    span: str, start: datetime, end: datetime, scopes: Sequence[tuple[str, str, str, str]]
) -> Computed:
    """Read what the runs give for the ``span`` rows of [start, end) of the jobs
    ``scopes`` (one statement each for jobs and containers, whatever their number),
    without writing: the pass reads outside the write lock and writes with :func:`store`."""
    db = database_proxy
    st = _statements(span, start, end, scopes)
    return Computed(
        st,
        db.execute_sql(st.job_select, st.params).fetchall(),
        db.execute_sql(st.container_select, st.params).fetchall(),
        len(scopes),
    )


def store(computed: Computed) -> None:
    """Replace the rows :func:`compute` read for (inside a write transaction)."""
    db = database_proxy
    st = computed.statements
    for table in ("rollup_jobs", "rollup_containers"):
        db.execute_sql(f"DELETE FROM {table} WHERE {st.delete_where}", st.delete_params)
    for insert, rows in ((_JOB_INSERT, computed.jobs), (_CONTAINER_INSERT, computed.containers)):
        if rows:
            marks = ", ".join([db.param] * len(rows[0]))
            with __exception_wrapper__:  # sqlite3's errors as peewee's, as execute_sql
                db.cursor().executemany(f"{insert} VALUES ({marks})", [list(r) for r in rows])


# --- adding runs no rollup counts yet ---------------------------------------------

_CONFLICT_JOB = f"ON CONFLICT (span, bucket, {', '.join(SCOPE)})"
_CONFLICT_CONTAINER = f"ON CONFLICT (span, bucket, {', '.join(SCOPE)}, name)"


def _merged(name: str, how: str, table: str) -> str:
    """``name = ...``: the stored row's value (``table``) combined with the new runs'
    (``excluded``) as rows of rollups combine (:func:`combine`), NULL (no run had the
    figure) giving way to the other side."""
    old, new = f"{table}.{name}", f"excluded.{name}"
    if how == "sum":
        return f"{name} = COALESCE({old} + {new}, {old}, {new})"
    if postgres():  # GREATEST and LEAST skip NULLs
        return f"{name} = {'GREATEST' if how == 'max' else 'LEAST'}({old}, {new})"
    return f"{name} = {how.upper()}(COALESCE({old}, {new}), COALESCE({new}, {old}))"


def _added_text(p: str, runs: int) -> list[str]:
    """The statements of :func:`add_new_runs` for ``runs`` run ids: an upsert per span
    into each table, then the ledger's rows (last: the upserts read it)."""
    where = (
        f"r.id IN ({', '.join([p] * runs)}) AND r.state <> {RUNNING_SQL} "
        "AND NOT EXISTS (SELECT 1 FROM rollup_runs l WHERE l.run_pk = r.id)"
    )
    job_set = ", ".join(_merged(name, how, "rollup_jobs") for name, _, how in JOB_COLUMNS)
    container_set = ", ".join(
        _merged(name, how, "rollup_containers") for name, _, how in CONTAINER_COLUMNS
    )
    out = []
    for span in SPANS:
        job_select, container_select = _selects(span, p, where)
        out.append(f"{_JOB_INSERT} {job_select} {_CONFLICT_JOB} DO UPDATE SET {job_set}")
        out.append(
            f"{_CONTAINER_INSERT} {container_select} "
            f"{_CONFLICT_CONTAINER} DO UPDATE SET {container_set}"
        )
    out.append(f"{LEDGER_INSERT} WHERE {where}")
    return out


_ADDED_TEXT: dict[tuple[str, int], list[str]] = {}


def add_new_runs(run_pks: Sequence[int], spans: Sequence[str] = SPANS) -> None:
    """Add the runs ``run_pks`` that no rollup counts yet (no ``rollup_runs`` row; not
    running) to their rows of ``spans`` (their hour, day and start day), and record
    where they were counted.  Call inside a write transaction: the ledger, read and
    written in it, makes each run count once whoever counted it before (a pass that
    died after this, a rebuild).  A run's own figures are added, never the bucket's
    other runs re-read: the cost follows the new runs, not how many runs the buckets
    hold."""
    if not run_pks:
        return
    db = database_proxy
    key = (db.param, len(run_pks))
    texts = _ADDED_TEXT.get(key)
    if texts is None:
        texts = _ADDED_TEXT[key] = _added_text(*key)
    pks = list(run_pks)
    for at, span in enumerate(SPANS):
        if span in spans:
            db.execute_sql(texts[2 * at], [span, *pks])  # the jobs' rows
            db.execute_sql(texts[2 * at + 1], [span, *pks])  # the containers'
    db.execute_sql(texts[-1], pks)


def rebuild_day(day: datetime, following: datetime) -> None:
    """Recompute one day's rollups and where its runs were counted (in a transaction)."""
    db = database_proxy
    p = db.param
    recompute(HOUR, day, following)
    recompute(DAY, day, following)
    recompute(RUN_DAY, day, following)
    window = [param_time(day), param_time(following)]
    db.execute_sql(
        f"DELETE FROM rollup_runs WHERE received_at >= {p} AND received_at < {p}", window
    )
    # The runs received that day, and those started that day but received later (the
    # day's rday row counts them): each is counted now, so a pass still to apply its
    # event recomputes its buckets instead of adding it (add_new_runs) a second time.
    db.execute_sql(
        f"{LEDGER_INSERT} WHERE ((r.received_at >= {p} AND r.received_at < {p}) OR ({RUN_TIME_SQL} >= {p} "
        f"AND {RUN_TIME_SQL} < {p} AND r.received_at >= {p})) AND r.state <> {RUNNING_SQL} "
        "AND r.id NOT IN (SELECT run_pk FROM rollup_runs)",
        [*window, *window, param_time(earlier(day, RUN_CLOCK_AHEAD))],
    )


# --- the pass ---------------------------------------------------------------------


def cursor() -> int:
    row = database_proxy.execute_sql(
        f"SELECT last_event_id FROM rollup_cursor WHERE name = {database_proxy.param}",
        (CURSOR_NAME,),
    ).fetchone()
    return int(row[0]) if row else 0


def set_cursor(value: int) -> None:
    db = database_proxy
    p = db.param
    now = param_time(utc_now())
    changed = db.execute_sql(
        f"UPDATE rollup_cursor SET last_event_id = {p}, updated_at = {p} WHERE name = {p}",
        (value, now, CURSOR_NAME),
    ).rowcount
    if not changed:
        db.execute_sql(
            f"INSERT INTO rollup_cursor (name, last_event_id, updated_at) VALUES ({p}, {p}, {p})",
            (CURSOR_NAME, value, now),
        )


def set_cursor_to_latest() -> None:
    """Every event stored so far counts as applied (after a rebuild of everything)."""
    row = database_proxy.execute_sql("SELECT MAX(id) FROM events").fetchone()
    set_cursor(int(row[0] or 0))


# --- what a reader may take from the rollups --------------------------------------


def horizon() -> datetime | None:
    """The start of the earliest hour a pending event touches (where its run is now,
    or where it was counted before), or None when no event waits: rollup rows before
    it are complete; from it on, a reader reads the runs."""
    db = database_proxy
    p = db.param
    kinds = ", ".join(f"'{k}'" for k in ROLLUP_EVENT_KINDS)
    row = db.execute_sql(
        "SELECT MIN(r.received_at), MIN(l.received_at), COUNT(*) FROM events e "
        "LEFT JOIN runs r ON r.id = e.run_pk LEFT JOIN rollup_runs l ON l.run_pk = e.run_pk "
        f"WHERE e.id > {p} AND e.kind IN ({kinds})",
        (cursor(),),
    ).fetchone()
    return _earliest(row, floor_hour)


def run_day_horizon(scope: tuple[str, str, str, str]) -> datetime | None:
    """:func:`horizon` for one job's ``rday`` rows: the start of the earliest day a
    pending event of the job touches (the day its run started, or the one it was
    counted in before), or None when none waits."""
    db = database_proxy
    p = db.param
    kinds = ", ".join(f"'{k}'" for k in ROLLUP_EVENT_KINDS)
    row = db.execute_sql(
        f"SELECT MIN({RUN_TIME_SQL}), MIN(l.run_time), COUNT(*) FROM events e "
        "LEFT JOIN runs r ON r.id = e.run_pk LEFT JOIN rollup_runs l ON l.run_pk = e.run_pk "
        f"WHERE e.id > {p} AND e.kind IN ({kinds}) AND e.organization = {p} "
        f"AND e.repository = {p} AND e.workflow = {p} AND e.job = {p}",
        (cursor(), *scope),
    ).fetchone()
    return _earliest(row, floor_day)


def _earliest(row: Any, floor: Any) -> datetime | None:
    """The earlier of a horizon query's two times (MIN over the pending events' runs
    now, and where they were counted before), floored; None when no event waits."""
    if not row or not row[2]:
        return None
    times = [as_time(t) for t in row[:2] if t is not None]
    if not times:
        return None
    return floor(min(t for t in times if t is not None))


@dataclass(frozen=True)
class Cover:
    """Which rows answer a window [start, end) (None: unbounded): rollup rows of whole
    days (when ``days``: [day_from, day_to)) and hours inside it and before the
    horizon, and the runs of the rest."""

    days: bool
    day_from: datetime | None
    day_to: datetime | None
    hours: tuple[tuple[datetime | None, datetime | None], ...]
    runs: tuple[tuple[datetime | None, datetime | None], ...]


def cover(
    start: datetime | None,
    end: datetime | None,
    *,
    edge: datetime | None,
    use_days: bool = True,
) -> Cover:
    """How a window is answered, given the horizon ``edge`` (None: nothing pending)."""
    low = ceil_hour(start) if start is not None else None
    high_candidates = [t for t in (floor_hour(end) if end else None, edge) if t is not None]
    high = min(high_candidates) if high_candidates else None
    if low is not None and high is not None and low >= high:
        return Cover(False, None, None, (), ((start, end),))
    runs: list[tuple[datetime | None, datetime | None]] = []
    if start is not None and low is not None and start < low:
        runs.append((start, low))
    if high is not None:
        runs.append((high, end))
    if not use_days:
        return Cover(False, None, None, ((low, high),), tuple(runs))
    d1 = ceil_day(low) if low is not None else None
    d2 = floor_day(high) if high is not None else None
    if d1 is not None and d2 is not None and d1 >= d2:
        return Cover(False, None, None, ((low, high),), tuple(runs))
    hours = []
    if low is not None and d1 is not None and low < d1:
        hours.append((low, d1))
    if high is not None and d2 is not None and d2 < high:
        hours.append((d2, high))
    return Cover(True, d1, d2, tuple(hours), tuple(runs))


def _range(column: str, low: datetime | None, high: datetime | None) -> tuple[str, list[Any]]:
    p = database_proxy.param
    parts, params = [], []
    if low is not None:
        parts.append(f"{column} >= {p}")
        params.append(param_time(low))
    if high is not None:
        parts.append(f"{column} < {p}")
        params.append(param_time(high))
    return (" AND ".join(parts) or "1 = 1"), params


def rollup_where(c: Cover, alias: str = "") -> tuple[str, list[Any]] | None:
    """The condition on a rollup table's rows a cover takes, or None for none."""
    prefix = f"{alias}." if alias else ""
    p = database_proxy.param
    parts, params = [], []
    if c.days:
        sql, ps = _range(f"{prefix}bucket", c.day_from, c.day_to)
        parts.append(f"({prefix}span = {p} AND {sql})")
        params += [DAY, *ps]
    for low, high in c.hours:
        if low is not None and high is not None and low >= high:
            continue
        sql, ps = _range(f"{prefix}bucket", low, high)
        parts.append(f"({prefix}span = {p} AND {sql})")
        params += [HOUR, *ps]
    if not parts:
        return None
    return "(" + " OR ".join(parts) + ")", params


def runs_where(c: Cover, alias: str = "r") -> tuple[str, list[Any]] | None:
    """The condition on ``runs`` a cover reads (the runs of the window not covered)."""
    parts, params = [], []
    for low, high in c.runs:
        sql, ps = _range(f"{alias}.received_at", low, high)
        parts.append(f"({sql})")
        params += ps
    if not parts:
        return None
    return "(" + " OR ".join(parts) + ")", params


def scope_filter(
    alias: str, organization: str | None, repository: str | None
) -> tuple[str, list[Any]]:
    """The organization and repository filter of the jobs list and usage, on any table
    with the scope columns: ``repository`` is ``org/repo``, or the bare name (with
    ``organization``: that org's; alone: under any organization)."""
    from resmon.tokens import canonical_repository

    p = database_proxy.param
    a = f"{alias}." if alias else ""
    parts, params = [], []
    if organization:
        parts.append(f"{a}organization = {p}")
        params.append(organization)
    if repository and "/" in repository:
        parts.append(f"{a}repository = {p}")
        params.append(repository)
    elif repository and organization:
        parts.append(f"{a}repository = {p}")
        params.append(canonical_repository(organization, repository))
    elif repository:
        n = len(repository)
        parts.append(
            f"({a}repository = {p} OR substr({a}repository, length({a}repository) - {n}) = {p})"
        )
        params += [repository, "/" + repository]
    return (" AND ".join(parts) or "1 = 1"), params


def scope_matches(org: str, repo: str, organization: str | None, repository: str | None) -> bool:
    """:func:`scope_filter` on one row's organization and repository."""
    from resmon.tokens import canonical_repository

    if organization and org != organization:
        return False
    if repository and "/" in repository:
        return repo == repository
    if repository and organization:
        return repo == canonical_repository(organization, repository)
    if repository:
        return repo == repository or repo.endswith("/" + repository)
    return True


def _scopes_filter(alias: str, scopes: list[tuple[Any, ...]]) -> tuple[str, list[Any]]:
    """The rows of these jobs (organization, repository, workflow, job) only."""
    if not scopes:
        return "1 = 0", []
    p = database_proxy.param
    a = f"{alias}." if alias else ""
    row = "(" + ", ".join([p] * len(SCOPE)) + ")"
    columns = ", ".join(f"{a}{name}" for name in SCOPE)
    values = ", ".join([row] * len(scopes))
    return f"({columns}) IN (VALUES {values})", [v for scope in scopes for v in scope]


def combined_sql(
    group: list[tuple[str, str, str]],
    columns: tuple[tuple[str, str, str], ...],
    c: Cover,
    organization: str | None = None,
    repository: str | None = None,
    *,
    by_scope_index: bool = False,
    scopes: list[tuple[Any, ...]] | None = None,
    select: list[str] | None = None,
    tail: str = "",
) -> tuple[str, list[Any]] | None:
    """One query over the rollup rows a cover takes and the runs it reads, grouped by
    ``group`` (``(answer name, expression over a rollup row, expression over runs r)``),
    each of ``columns`` combined: the answer is the same as from the runs alone.
    ``organization`` and ``repository`` filter as :func:`scope_filter` does;
    ``by_scope_index`` lets SQLite group the rollup rows in the order of the covering
    (span, scope) index (the jobs list: every daily row, no period)."""
    parts: list[str] = []
    params: list[Any] = []
    names = [name for name, _, _ in columns]
    group_names = [g[0] for g in group]
    rw = rollup_where(c)
    if rw is not None:
        fsql, fparams = scope_filter("", organization, repository)
        if scopes is not None:
            ssql, sparams = _scopes_filter("", scopes)
            fsql, fparams = f"{fsql} AND {ssql}", fparams + sparams
        part = (
            "SELECT "
            + ", ".join([f"{g[1]} AS {g[0]}" for g in group] + names)
            + f" FROM rollup_jobs WHERE {rw[0]} AND {fsql}"
        )
        if not (by_scope_index or postgres()):
            # SQLite: a subquery with a LIMIT is not flattened into the grouping, so
            # the (span, bucket) range is read, never every row of a span in scope
            # order (the covering index only the jobs list wants: ``by_scope_index``).
            # An hour's usage by org at 1,000,000 runs: 956 ms -> a few ms.
            part = f"SELECT * FROM ({part} LIMIT -1) rollup_rows"
        parts.append(part)
        params += rw[1] + fparams
    runs = runs_where(c)
    if runs is not None:
        filters = scope_filter("r", organization, repository)
        if scopes is not None:
            ssql, sparams = _scopes_filter("r", scopes)
            filters = (f"{filters[0]} AND {ssql}", filters[1] + sparams)
        gexprs = [g[2] for g in group]
        parts.append(
            "SELECT "
            + ", ".join(
                [f"{g[2]} AS {g[0]}" for g in group]
                + [f"{expr} AS {name}" for name, expr, _ in columns]
            )
            + f" FROM runs r WHERE {runs[0]} AND r.state <> {RUNNING_SQL} AND {filters[0]}"
            + (f" GROUP BY {', '.join(gexprs)}" if gexprs else "")
        )
        params += runs[1] + filters[1]
    if not parts:
        return None
    inner = " UNION ALL ".join(parts)
    sql = (
        "SELECT "
        + ", ".join(select or [*(f"t.{g}" for g in group_names), *combine(columns, "t")])
        + f" FROM ({inner}) t"
        + (f" GROUP BY {', '.join('t.' + g for g in group_names)}" if group_names else "")
        + (f" {tail}" if tail else "")
    )
    return sql, params
