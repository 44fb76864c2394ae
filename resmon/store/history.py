"""The read side: the questions people ask of stored runs, answered from indexed columns.

Used by the server's read API (:mod:`resmon.server.read_api`) and by
``resmon query --db`` alike, so both give the same answer with the same field
names.  Every function returns a plain, JSON-ready dict (times as RFC 3339 UTC).

Lists and aggregates read only the summary columns of ``runs`` and
``run_containers`` (scope, times, p95/peak), which the indexes
``(organization, repository, workflow, job, received_at)``, ``(received_at)`` and
``(name, run)`` serve; only :func:`get_run` parses a stored run summary, the one
it returns.  Works on SQLite and PostgreSQL; the one place they differ, the
calendar day of a time, is :func:`resmon.store.scope.day_of`.

The time and period a user writes (``--since 7d``, ``--period 2w``) are parsed
by :func:`resmon.store.scope.parse_window` and
:func:`~resmon.store.scope.parse_positive_period` (importable from here too): every
question takes them as text, and the CLI checks them with the same functions before
asking.
"""

from __future__ import annotations

import difflib
import logging
from datetime import UTC, date, datetime, timedelta
from typing import Any

import orjson
from peewee import fn

from resmon.store.models import ContainerStat, Run
from resmon.store.scope import (
    HistoryError,
    all_job_names,
    answer_time,
    container_exists,
    container_names,
    day_of,
    describe_job,
    job_exists,
    job_name,
    parse_positive_period,
    parse_when,
    parse_window,
    run_row,
    run_time,
    scope_fields,
    scope_where,
)
from resmon.tokens import canonical_repository

log = logging.getLogger(__name__)

DEFAULT_RUNS_LIMIT = 20
MAX_RUNS_LIMIT = 1000
DEFAULT_TREND_POINTS = 30
MAX_TREND_POINTS = 1000
DEFAULT_TOP_LIMIT = 10
MAX_JOBS = 10_000
# The rows of a list answer (jobs, runs of a job), serialised: the lists that hold
# names (each up to 255 characters, the repository 511) are cut here too, and say
# so with ``truncated``.  Trend points and top rows carry no more than one name
# each and stay far below it at their row caps.
MAX_ANSWER_BYTES = 4 * 1024 * 1024
MAX_TOP_LIMIT = 100
DEFAULT_TOP_PERIOD = "7d"
TREND_BY = ("run", "day")
TOP_METRICS = ("cpu", "memory", "duration")
SUGGESTIONS = 5
# How far a runner's clock may be ahead of the server's for its run to be counted in
# a trend by day: the start it reports is then later than its arrival.
RUN_CLOCK_AHEAD = timedelta(days=1)

RUN_COLUMNS = (
    Run.id,
    Run.organization,
    Run.repository,
    Run.workflow,
    Run.job,
    Run.run_id,
    Run.run_attempt,
    Run.received_at,
    Run.start_time,
    Run.end_time,
    Run.duration_seconds,
    Run.sample_count,
    Run.cpu_seconds,
    Run.cpu_percent_p95,
    Run.cpu_percent_peak,
    Run.mem_bytes_p95,
    Run.mem_bytes_peak,
    Run.command_container,
    Run.command_name,
)
CONTAINER_COLUMNS = tuple(
    getattr(ContainerStat, name)
    for name in (
        "name",
        "cpu_cores_p50",
        "cpu_cores_p75",
        "cpu_cores_p95",
        "cpu_cores_p99",
        "cpu_cores_peak",
        "cpu_cores_avg",
        "memory_bytes_p50",
        "memory_bytes_p75",
        "memory_bytes_p95",
        "memory_bytes_p99",
        "memory_bytes_peak",
        "memory_bytes_avg",
        "cpu_seconds",
        "limit_cpu_cores",
        "limit_memory_bytes",
        "cpu_throttled_seconds",
        "oom_kills",
    )
)


class NotFound(LookupError):
    """Nothing stored under what was asked for; ``suggestions`` are the closest names."""

    def __init__(self, message: str, suggestions: list[str] | None = None) -> None:
        super().__init__(message)
        self.message = message
        self.suggestions = suggestions or []


# --- parameters ----------------------------------------------------------------


def within_bytes(rows: list[dict[str, Any]]) -> tuple[list[dict[str, Any]], bool]:
    """The first rows whose JSON stays within :data:`MAX_ANSWER_BYTES`, and whether
    any were left out: a list's row cap alone does not bound it, since its names
    may each be hundreds of characters."""
    total = 0
    for n, row in enumerate(rows):
        total += len(orjson.dumps(row)) + 1
        if total > MAX_ANSWER_BYTES:
            return rows[:n], True
    return rows, False


def _bounded(value: int | None, default: int, maximum: int, what: str) -> int:
    if value is None:
        return default
    if value < 1:
        raise HistoryError(f"{what} must be at least 1")
    return min(value, maximum)


def _not_found(organization: str, repository: str, workflow: str, job: str) -> NotFound:
    wanted = job_name(organization, repository, workflow, job)
    close = difflib.get_close_matches(wanted, all_job_names(), n=SUGGESTIONS, cutoff=0.4)
    return NotFound(
        f"no runs stored for {describe_job(organization, repository, workflow, job)}", close
    )


# --- the questions ---------------------------------------------------------------


def list_jobs(organization: str | None = None, repository: str | None = None) -> dict[str, Any]:
    """Every job with its run count and its last run's figures.

    ``repository`` may be ``org/repo`` or, alone or with ``organization``, the bare name.
    """
    latest = Run.select(
        Run.organization,
        Run.repository,
        Run.workflow,
        Run.job,
        fn.COUNT(Run.id).alias("run_count"),
        # Ids grow with arrival, so the largest id is the last run received; the
        # (scope, received_at) index covers this group-by without touching payloads.
        fn.MAX(Run.id).alias("last_id"),
    )
    if organization:
        latest = latest.where(Run.organization == organization)
    if repository and "/" in repository:
        latest = latest.where(Run.repository == repository)
    elif repository and organization:
        latest = latest.where(Run.repository == canonical_repository(organization, repository))
    elif repository:  # the bare name under any organization: "widgets" or "*/widgets"
        tail = fn.substr(Run.repository, fn.length(Run.repository) - len(repository))
        latest = latest.where((Run.repository == repository) | (tail == "/" + repository))
    scope = (Run.organization, Run.repository, Run.workflow, Run.job)
    groups = list(
        latest.group_by(*scope)
        .order_by(Run.repository, Run.workflow, Run.job, Run.organization)
        .limit(MAX_JOBS + 1)
        .dicts()
    )
    more = len(groups) > MAX_JOBS
    groups = groups[:MAX_JOBS]

    last: dict[int, dict[str, Any]] = {}
    ids = [g["last_id"] for g in groups]
    for chunk_start in range(0, len(ids), 500):  # stay under SQLite's bound-parameter limit
        chunk = ids[chunk_start : chunk_start + 500]
        for row in Run.select(*RUN_COLUMNS).where(Run.id.in_(chunk)).dicts():
            last[row["id"]] = row

    jobs = []
    for g in groups:
        row = last.get(g["last_id"], {})
        entry = {k: g[k] for k in ("organization", "repository", "workflow", "job", "run_count")}
        entry["last_id"] = g["last_id"]
        entry["last_run_id"] = row.get("run_id")
        entry["last_received_at"] = answer_time(row.get("received_at"))
        for key in (
            "duration_seconds",
            "cpu_seconds",
            "cpu_percent_p95",
            "cpu_percent_peak",
            "mem_bytes_p95",
            "mem_bytes_peak",
        ):
            entry[f"last_{key}"] = row.get(key)
        jobs.append(entry)
    jobs.sort(key=lambda j: (j["repository"], j["workflow"], j["job"], j["organization"]))
    jobs, cut = within_bytes(jobs)
    return {"jobs": jobs, "truncated": more or cut}


def job_runs(
    organization: str,
    repository: str,
    workflow: str,
    job: str,
    *,
    limit: int | None = None,
    since: str | None = None,
    until: str | None = None,
    now: datetime | None = None,
) -> dict[str, Any]:
    """The runs of one job, newest first, at most ``limit``; ``truncated`` says whether
    more runs match.  Raises :class:`NotFound` (with close job names) for an unknown job."""
    limit = _bounded(limit, DEFAULT_RUNS_LIMIT, MAX_RUNS_LIMIT, "limit")
    start, end = parse_window(since, until, now)
    query = Run.select(*RUN_COLUMNS).where(scope_where(organization, repository, workflow, job))
    if start is not None:
        query = query.where(Run.received_at >= start)
    if end is not None:
        query = query.where(Run.received_at < end)
    rows = list(query.order_by(Run.received_at.desc(), Run.id.desc()).limit(limit + 1).dicts())
    if not rows and not job_exists(organization, repository, workflow, job):
        raise _not_found(organization, repository, workflow, job)
    runs, cut = within_bytes([run_row(r) for r in rows[:limit]])
    return {
        **scope_fields(organization, repository, workflow, job),
        "since": answer_time(start),
        "until": answer_time(end),
        "limit": limit,
        "truncated": len(rows) > limit or cut,
        "runs": runs,
    }


def get_run(run_pk: int) -> dict[str, Any]:
    """One stored run: its columns, its containers, and the run summary as received."""
    row = Run.select(*RUN_COLUMNS, Run.payload).where(Run.id == run_pk).dicts().first()
    if row is None:
        raise NotFound(f"no run with id {run_pk}")
    try:
        payload = orjson.loads(row.pop("payload"))
    except orjson.JSONDecodeError:
        log.warning("run %s has an unreadable stored payload", run_pk)
        payload = {}
    containers = list(
        ContainerStat.select(*CONTAINER_COLUMNS)
        .where(ContainerStat.run == run_pk)
        .order_by(ContainerStat.name)
        .dicts()
    )
    return {**run_row(row), "containers": containers, "payload": payload}


def trend(
    organization: str,
    repository: str,
    workflow: str,
    job: str,
    *,
    container: str | None = None,
    by: str = "run",
    limit: int | None = None,
    since: str | None = None,
    until: str | None = None,
    now: datetime | None = None,
) -> dict[str, Any]:
    """p95 and peak of CPU and memory per run (or per UTC day) of one job, oldest first:
    the last ``limit`` points.  Without ``container`` the figures are the runs' system
    CPU percent and memory used; with it, that container's cores and bytes (and limits).
    A point per run names its wrapped step (``command_container``, ``command_name``).

    Per day, p95 and peak are the highest among the runs started that day (what to
    size for), ``duration_seconds`` is the mean and ``runs`` the count; a run without
    a start time counts on the day it was received.
    """
    if by not in TREND_BY:
        raise HistoryError(f"invalid grouping {by!r}: use one of {', '.join(TREND_BY)}")
    limit = _bounded(limit, DEFAULT_TREND_POINTS, MAX_TREND_POINTS, "limit")
    start, end = parse_window(since, until, now)
    where = scope_where(organization, repository, workflow, job)
    # A day is the day its runs started (scope.run_time), and so is the window:
    # runs pushed together from a spool are spread over the days they ran on, and
    # no day outside the window is shown.  Per run, the window is of arrival, as in
    # the runs list.
    when = run_time() if by == "day" else Run.received_at
    if start is not None:
        where &= when >= start
        # A run is received after it started: this bound adds nothing to the answer
        # but lets the (scope, received_at) index skip older runs.  A start within a
        # day of year 1 has nothing older to skip (and cannot go back a day).
        if by == "day" and start - start.min > RUN_CLOCK_AHEAD:
            where &= Run.received_at >= start - RUN_CLOCK_AHEAD
    if end is not None:
        where &= when < end

    query = _trend_query(by, _trend_metrics(container), container, where)
    points = list(query.limit(limit).dicts())
    points.reverse()
    if not points:
        _check_trend_target(organization, repository, workflow, job, container)
    for p in points:
        _trend_point_json(p)
    return {
        **scope_fields(organization, repository, workflow, job),
        "container": container or None,
        "by": by,
        "since": answer_time(start),
        "until": answer_time(end),
        "points": points,
    }


def _trend_metrics(container: str | None) -> dict[str, Any]:
    """The figures a trend shows, by answer field: the container's, else the run's."""
    if container:
        c = ContainerStat
        return {
            "cpu_cores_p95": c.cpu_cores_p95,
            "cpu_cores_peak": c.cpu_cores_peak,
            "memory_bytes_p95": c.memory_bytes_p95,
            "memory_bytes_peak": c.memory_bytes_peak,
            "limit_cpu_cores": c.limit_cpu_cores,
            "limit_memory_bytes": c.limit_memory_bytes,
        }
    return {
        "cpu_percent_p95": Run.cpu_percent_p95,
        "cpu_percent_peak": Run.cpu_percent_peak,
        "mem_bytes_p95": Run.mem_bytes_p95,
        "mem_bytes_peak": Run.mem_bytes_peak,
    }


def _trend_query(by: str, metrics: dict[str, Any], container: str | None, where: Any) -> Any:
    """The trend's points, newest first: one per run, or per UTC day the runs started
    with each figure's highest value, the mean duration and the run count."""
    if by == "run":
        query = Run.select(
            Run.id,
            Run.run_id,
            Run.received_at,
            Run.duration_seconds,
            Run.command_container,
            Run.command_name,
            *(col.alias(name) for name, col in metrics.items()),
        )
    else:
        day = day_of(run_time())
        query = Run.select(
            day.alias("day"),
            fn.COUNT(Run.id).alias("runs"),
            fn.AVG(Run.duration_seconds).alias("duration_seconds"),
            *(fn.MAX(col).alias(name) for name, col in metrics.items()),
        )
    if container:
        query = query.join(ContainerStat, on=(ContainerStat.run == Run.id)).where(
            ContainerStat.name == container
        )
    query = query.where(where)
    if by == "run":
        return query.order_by(Run.received_at.desc(), Run.id.desc())
    return query.group_by(day).order_by(day.desc())


def _check_trend_target(
    organization: str, repository: str, workflow: str, job: str, container: str | None
) -> None:
    """Raises :class:`NotFound` when a trend has no points because the job, or the
    container in it, was never stored (rather than no run in the period)."""
    if not job_exists(organization, repository, workflow, job):
        raise _not_found(organization, repository, workflow, job)
    if container and not container_exists(organization, repository, workflow, job, container):
        names = container_names(organization, repository, workflow, job)
        close = difflib.get_close_matches(container, names, n=SUGGESTIONS, cutoff=0.3)
        raise NotFound(
            f"no container {container!r} in any run of "
            f"{describe_job(organization, repository, workflow, job)}",
            close or names[:SUGGESTIONS],
        )


def _trend_point_json(point: dict[str, Any]) -> None:
    """A point as JSON wants it, whatever types the driver answered: RFC 3339 times,
    ``YYYY-MM-DD`` days, float durations."""
    if "received_at" in point:
        point["received_at"] = answer_time(point["received_at"])
    if "day" in point and isinstance(point["day"], (date, datetime)):
        point["day"] = point["day"].strftime("%Y-%m-%d")
    if "duration_seconds" in point and point["duration_seconds"] is not None:
        point["duration_seconds"] = float(point["duration_seconds"])


def top(
    metric: str = "cpu",
    *,
    period: str | None = None,
    until: str | None = None,
    limit: int | None = None,
    now: datetime | None = None,
) -> dict[str, Any]:
    """Jobs ranked by what they cost over a period (default the last 7 days):

    - ``cpu``: total CPU time of their runs (then mean system CPU p95, for peers that
      send no CPU time);
    - ``memory``: the highest memory peak of any run;
    - ``duration``: total run time.

    Every row carries all figures and the run count, whatever the ranking.
    """
    if metric not in TOP_METRICS:
        raise HistoryError(f"invalid metric {metric!r}: use one of {', '.join(TOP_METRICS)}")
    limit = _bounded(limit, DEFAULT_TOP_LIMIT, MAX_TOP_LIMIT, "limit")
    now = now or datetime.now(UTC)
    end = parse_when(until, now, name="until") if until else None
    reference = end.replace(tzinfo=UTC) if end else now
    length = parse_positive_period(period or DEFAULT_TOP_PERIOD, name="period")
    try:
        start = (reference - length).replace(tzinfo=None)
    except OverflowError:
        raise HistoryError(
            f"period: {period or DEFAULT_TOP_PERIOD} before {until or 'now'} "
            "reaches back before the year 1"
        ) from None

    cpu_total = fn.SUM(Run.cpu_seconds)
    cpu_p95 = fn.AVG(Run.cpu_percent_p95)
    mem_peak = fn.MAX(Run.mem_bytes_peak)
    duration_total = fn.SUM(Run.duration_seconds)
    # COALESCE: NULLs sort first in PostgreSQL's DESC and last in SQLite's; ranking
    # must not depend on the database.
    order = {
        "cpu": (fn.COALESCE(cpu_total, -1).desc(), fn.COALESCE(cpu_p95, -1).desc()),
        "memory": (fn.COALESCE(mem_peak, -1).desc(),),
        "duration": (fn.COALESCE(duration_total, -1).desc(),),
    }[metric]
    query = Run.select(
        Run.organization,
        Run.repository,
        Run.workflow,
        Run.job,
        fn.COUNT(Run.id).alias("runs"),
        cpu_total.alias("cpu_seconds_total"),
        cpu_p95.alias("cpu_percent_p95_avg"),
        mem_peak.alias("mem_bytes_peak_max"),
        fn.AVG(Run.mem_bytes_p95).alias("mem_bytes_p95_avg"),
        duration_total.alias("duration_seconds_total"),
        fn.AVG(Run.duration_seconds).alias("duration_seconds_avg"),
    ).where(Run.received_at >= start)
    if end is not None:
        query = query.where(Run.received_at < end)
    query = (
        query.group_by(Run.organization, Run.repository, Run.workflow, Run.job)
        .order_by(*order, Run.repository, Run.workflow, Run.job)
        .limit(limit)
    )
    return {
        "metric": metric,
        "since": answer_time(start),
        "until": answer_time(end),
        "limit": limit,
        "jobs": [_top_row(row) for row in query.dicts()],
    }


def _top_row(row: dict[str, Any]) -> dict[str, Any]:
    """A ranking row with numbers JSON takes: PostgreSQL answers SUM and AVG of
    integer columns with Decimal."""
    for key, value in row.items():
        if (
            key not in ("organization", "repository", "workflow", "job", "runs")
            and value is not None
        ):
            row[key] = float(value)
    if row["mem_bytes_peak_max"] is not None:
        row["mem_bytes_peak_max"] = int(row["mem_bytes_peak_max"])
    return row
