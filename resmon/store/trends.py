"""Is a job getting heavier?  p95 and peak per run or per day of one job.

Without a container a point carries the job's own figures (``job_*``: cores,
CPU seconds, bytes and its memory kind, the job's limits) and the host's
(``cpu_percent_*``, ``mem_bytes_*``: the whole machine); with one, that
container's cores and bytes and its limits.  Asked through
:func:`resmon.store.history.trend`.

A running run has no figures yet: it is no point.  A lost run is, with the figures
of its partial summary (what its streamed samples showed until they stopped): a
point per run says ``state`` and ``partial``, a day how many of its runs were
partial (``partial_runs``).
"""

from __future__ import annotations

import difflib
from datetime import date, datetime, timedelta
from typing import Any

from peewee import fn

from resmon.store import rollups
from resmon.store.models import ContainerStat, Run, database_proxy
from resmon.store.scope import (
    SUGGESTIONS,
    HistoryError,
    NotFound,
    answer_time,
    bounded,
    container_exists,
    container_names,
    day_of,
    describe_job,
    has_figures,
    job_exists,
    job_not_found,
    parse_window,
    partial_count,
    run_time,
    scope_fields,
    scope_where,
)

DEFAULT_TREND_POINTS = 30
MAX_TREND_POINTS = 1000
TREND_BY = ("run", "day")
# How far a runner's clock may be ahead of the server's for its run to be counted in
# a trend by day: the start it reports is then later than its arrival.
RUN_CLOCK_AHEAD = timedelta(days=1)
# The job's figures a point carries, by answer field (its memory kind apart).
JOB_TREND_COLUMNS = (
    "job_cpu_cores_p95",
    "job_cpu_cores_peak",
    "job_cpu_seconds",
    "job_memory_bytes_p95",
    "job_memory_bytes_peak",
    "job_limit_cpu_cores",
    "job_limit_memory_bytes",
)
# The host's figures a job's point carries, and a container's point's figures.
HOST_TREND_COLUMNS = ("cpu_percent_p95", "cpu_percent_peak", "mem_bytes_p95", "mem_bytes_peak")
CONTAINER_TREND_COLUMNS = (
    "cpu_cores_p95",
    "cpu_cores_peak",
    "memory_bytes_p95",
    "memory_bytes_peak",
    "limit_cpu_cores",
    "limit_memory_bytes",
)
# One day's runs may differ in memory kind: the day says "mixed" then.
_KIND_LOW, _KIND_HIGH = "job_memory_kind_min", "job_memory_kind_max"


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
    branch: str | None = None,
) -> dict[str, Any]:
    """p95 and peak of CPU and memory per run (or per UTC day) of one job, oldest first:
    the last ``limit`` points.  Without ``container`` a point has the job's own figures
    (``job_*``) and the host's (``cpu_percent_*``, ``mem_bytes_*``, the whole
    machine); with it, that container's cores and bytes (and limits).  A point per run
    names its wrapped step (``command_container``, ``command_name``).

    Per day, p95 and peak are the highest among the runs started that day (what to
    size for), ``duration_seconds`` is the mean and ``runs`` the count; a run without
    a start time counts on the day it was received.
    """
    if by not in TREND_BY:
        raise HistoryError(f"invalid grouping {by!r}: use one of {', '.join(TREND_BY)}")
    limit = bounded(limit, DEFAULT_TREND_POINTS, MAX_TREND_POINTS, "limit")
    start, end = parse_window(since, until, now)
    where = scope_where(organization, repository, workflow, job) & has_figures()
    if branch:  # the runs that built one branch (schema version 11's index)
        where &= Run.branch == branch
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

    metrics = _trend_metrics(container)
    if by == "day" and not branch:
        scope = scope_fields(organization, repository, workflow, job)
        points = _days_from_rollups(
            tuple(scope.values()), container, metrics, where, start, end, limit
        )
    else:
        points = list(_trend_query(by, metrics, container, where).limit(limit).dicts())
    points.reverse()
    if not points:
        _check_trend_target(organization, repository, workflow, job, container)
    for p in points:
        _trend_point_json(p)
    return {
        **scope_fields(organization, repository, workflow, job),
        "container": container or None,
        **({"branch": branch} if branch else {}),
        "by": by,
        "since": answer_time(start),
        "until": answer_time(end),
        "points": points,
    }


def _trend_metrics(container: str | None) -> dict[str, Any]:
    """The figures a trend shows, by answer field: the container's, else the job's
    and the host's."""
    if container:
        return {name: getattr(ContainerStat, name) for name in CONTAINER_TREND_COLUMNS}
    return {name: getattr(Run, name) for name in (*JOB_TREND_COLUMNS, *HOST_TREND_COLUMNS)}


def _trend_query(by: str, metrics: dict[str, Any], container: str | None, where: Any) -> Any:
    """The trend's points, newest first: one per run, or per UTC day the runs started
    with each figure's highest value, the mean duration and the run count."""
    if by == "run":
        kinds = [] if container else [Run.job_memory_kind]
        query = Run.select(
            Run.id,
            Run.run_id,
            Run.received_at,
            Run.duration_seconds,
            Run.command_container,
            Run.command_name,
            Run.state,
            Run.partial,
            Run.host,
            Run.branch,
            Run.commit_sha,
            *(col.alias(name) for name, col in metrics.items()),
            *kinds,
        )
    else:
        day = day_of(run_time())
        kinds = (
            []
            if container
            else [
                fn.MIN(Run.job_memory_kind).alias(_KIND_LOW),
                fn.MAX(Run.job_memory_kind).alias(_KIND_HIGH),
            ]
        )
        query = Run.select(
            day.alias("day"),
            fn.COUNT(Run.id).alias("runs"),
            partial_count().alias("partial_runs"),
            fn.AVG(Run.duration_seconds).alias("duration_seconds"),
            *(fn.MAX(col).alias(name) for name, col in metrics.items()),
            *kinds,
        )
    if container:
        query = query.join(ContainerStat, on=(ContainerStat.run == Run.id)).where(
            ContainerStat.name == container
        )
    query = query.where(where)
    if by == "run":
        return query.order_by(Run.received_at.desc(), Run.id.desc())
    return query.group_by(day).order_by(day.desc())


# A day's rollup column (span rday) for each figure of a trend point.
_JOB_DAY_COLUMNS = {name: f"{name}_max" for name in (*JOB_TREND_COLUMNS, *HOST_TREND_COLUMNS)}
_CONTAINER_DAY_COLUMNS = {name: f"{name}_max" for name in CONTAINER_TREND_COLUMNS}


def _days_from_rollups(
    scope: tuple[str, ...],
    container: str | None,
    metrics: dict[str, Any],
    where: Any,
    start: datetime | None,
    end: datetime | None,
    limit: int,
) -> list[dict[str, Any]]:
    """A trend's days, newest first: the whole days before the job's rollup horizon
    from its ``rday`` rollup rows (resmon.store.rollups), the partial days at the
    window's edges and the days from the horizon on from its runs, as
    :func:`_trend_query` reads them.  A day comes from one or the other, never both:
    the same points as from the runs alone, without reading a long history's runs."""
    key = (scope[0], scope[1], scope[2], scope[3])
    low = rollups.ceil_day(start) if start is not None else None
    highs = [t for t in (rollups.floor_day(end) if end else None,
                         rollups.run_day_horizon(key)) if t is not None]  # fmt: skip
    high = min(highs) if highs else None
    ranges: list[tuple[datetime | None, datetime | None]] = []
    rows: list[dict[str, Any]] = []
    if low is not None and high is not None and low >= high:
        ranges.append((start, end))
    else:
        if start is not None and low is not None and start < low:
            ranges.append((start, low))
        if high is not None:
            ranges.append((high, end))
        rows = _rollup_days(key, container, low, high, limit)
    when = run_time()
    points = list(rows)
    for first, last in ranges:
        part = where
        if first is not None:
            part &= when >= first
            if first - first.min > RUN_CLOCK_AHEAD:
                part &= Run.received_at >= first - RUN_CLOCK_AHEAD
        if last is not None:
            part &= when < last
        points += list(_trend_query("day", metrics, container, part).limit(limit).dicts())
    points.sort(key=lambda point: str(point["day"]), reverse=True)
    return points[:limit]


def _rollup_days(
    scope: tuple[str, str, str, str],
    container: str | None,
    low: datetime | None,
    high: datetime | None,
    limit: int,
) -> list[dict[str, Any]]:
    """The newest ``limit`` days in [low, high) of the job's (or its container's)
    rday rows, as trend points."""
    db = database_proxy
    p = db.param
    table = "rollup_containers" if container else "rollup_jobs"
    figures = _CONTAINER_DAY_COLUMNS if container else _JOB_DAY_COLUMNS
    columns = [f"{column} AS {name}" for name, column in figures.items()]
    if not container:
        columns += [
            f"job_memory_kind_min AS {_KIND_LOW}",
            f"job_memory_kind_max AS {_KIND_HIGH}",
        ]
    conditions = [f"span = {p}", *(f"{name} = {p}" for name in rollups.SCOPE)]
    params: list[Any] = [rollups.RUN_DAY, *scope]
    if container:
        conditions.append(f"name = {p}")
        params.append(container)
    if low is not None:
        conditions.append(f"bucket >= {p}")
        params.append(rollups.param_time(low))
    if high is not None:
        conditions.append(f"bucket < {p}")
        params.append(rollups.param_time(high))
    cursor = db.execute_sql(
        "SELECT bucket, runs, partial_runs, duration_seconds_sum, duration_seconds_n, "
        + ", ".join(columns)
        + f" FROM {table} WHERE {' AND '.join(conditions)} ORDER BY bucket DESC "
        f"LIMIT {int(limit)}",
        params,
    )
    names = [d[0] for d in cursor.description]
    points = []
    for values in cursor.fetchall():
        row = dict(zip(names, values, strict=True))
        day = rollups.as_time(row.pop("bucket"))
        total, count = row.pop("duration_seconds_sum"), row.pop("duration_seconds_n")
        points.append(
            {
                "day": day.strftime("%Y-%m-%d") if day else None,
                "runs": int(row.pop("runs")),
                "partial_runs": int(row.pop("partial_runs")),
                "duration_seconds": float(total) / count if count and total is not None else None,
                **row,
            }
        )
    return points


def _check_trend_target(
    organization: str, repository: str, workflow: str, job: str, container: str | None
) -> None:
    """Raises :class:`NotFound` when a trend has no points because the job, or the
    container in it, was never stored (rather than no run in the period)."""
    if not job_exists(organization, repository, workflow, job):
        raise job_not_found(organization, repository, workflow, job)
    if container and not container_exists(organization, repository, workflow, job, container):
        names = container_names(organization, repository, workflow, job)
        close = difflib.get_close_matches(container, names, n=SUGGESTIONS, cutoff=0.3)
        raise NotFound(
            f"no container {container!r} in any run of "
            f"{describe_job(organization, repository, workflow, job)}",
            close or names[:SUGGESTIONS],
        )


def combined_kind(low: Any, high: Any) -> str | None:
    """The memory kind of several runs from the least and greatest of theirs."""
    if low is None or high is None:
        return low or high
    return str(low) if low == high else "mixed"


def _trend_point_json(point: dict[str, Any]) -> None:
    """A point as JSON wants it, whatever types the driver answered: RFC 3339 times,
    ``YYYY-MM-DD`` days, float durations (PostgreSQL's AVG is a Decimal), and per
    day one memory kind."""
    if "received_at" in point:
        point["received_at"] = answer_time(point["received_at"])
    if "day" in point and isinstance(point["day"], (date, datetime)):
        point["day"] = point["day"].strftime("%Y-%m-%d")
    if "partial_runs" in point:
        point["partial_runs"] = int(point["partial_runs"] or 0)
    if "duration_seconds" in point and point["duration_seconds"] is not None:
        point["duration_seconds"] = float(point["duration_seconds"])
    if _KIND_LOW in point:
        point["job_memory_kind"] = combined_kind(point.pop(_KIND_LOW), point.pop(_KIND_HIGH))
