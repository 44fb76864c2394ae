"""What costs the most?  Jobs ranked over a period, by the job's own figures or the host's.

Asked through :func:`resmon.store.history.top`.  Every row carries all figures, the
job's (``job_*``) and the host's (``cpu_percent_p95_avg``, ``mem_bytes_*``: the whole
machine the runs ran on), whatever the ranking; ``scope`` only says which rank.

Running runs have no figures yet and are not counted; lost runs are, with their
partial figures (``partial_runs`` says how many of a job's runs were).
"""

from __future__ import annotations

from datetime import UTC, datetime
from typing import Any

from peewee import fn

from resmon.store.models import Run
from resmon.store.scope import (
    HistoryError,
    answer_time,
    bounded,
    has_figures,
    parse_positive_period,
    parse_when,
    partial_count,
)
from resmon.store.trends import combined_kind

DEFAULT_TOP_LIMIT = 10
MAX_TOP_LIMIT = 100
DEFAULT_TOP_PERIOD = "7d"
TOP_METRICS = ("cpu", "memory", "duration")
TOP_SCOPES = ("job", "host")
_NAMES = (
    "organization",
    "repository",
    "workflow",
    "job",
    "runs",
    "partial_runs",
    "job_memory_kind",
)


def _desc(expression: Any) -> Any:
    # COALESCE: NULLs sort first in PostgreSQL's DESC and last in SQLite's; ranking
    # must not depend on the database.
    return fn.COALESCE(expression, -1).desc()


def top(
    metric: str = "cpu",
    *,
    scope: str = "job",
    period: str | None = None,
    until: str | None = None,
    limit: int | None = None,
    now: datetime | None = None,
) -> dict[str, Any]:
    """Jobs ranked by what they cost over a period (default the last 7 days).

    ``scope="job"`` (the default) ranks by the job's own figures:

    - ``cpu``: the total CPU time of their runs (then the mean job CPU p95 in cores);
    - ``memory``: the highest job memory peak of any run;

    ``scope="host"`` by the machine's, as the runs' hosts measured them:

    - ``cpu``: the mean host CPU p95 (percent of the whole machine), then CPU time;
    - ``memory``: the highest host memory used of any run;

    and ``duration`` by the total run time either way.
    """
    if metric not in TOP_METRICS:
        raise HistoryError(f"invalid metric {metric!r}: use one of {', '.join(TOP_METRICS)}")
    if scope not in TOP_SCOPES:
        raise HistoryError(
            f"scope: invalid scope {scope!r}: use job (the job's own processes, the "
            "default) or host (the whole machine the job ran on)"
        )
    limit = bounded(limit, DEFAULT_TOP_LIMIT, MAX_TOP_LIMIT, "limit")
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

    figures = _figures()
    ranks = _RANKS.get((scope, metric), ("duration_seconds_total",))
    query = Run.select(
        Run.organization,
        Run.repository,
        Run.workflow,
        Run.job,
        fn.COUNT(Run.id).alias("runs"),
        partial_count().alias("partial_runs"),
        *(expression.alias(name) for name, expression in figures.items()),
        fn.MIN(Run.job_memory_kind).alias("kind_min"),
        fn.MAX(Run.job_memory_kind).alias("kind_max"),
    ).where((Run.received_at >= start) & has_figures())
    if end is not None:
        query = query.where(Run.received_at < end)
    query = (
        query.group_by(Run.organization, Run.repository, Run.workflow, Run.job)
        .order_by(*(_desc(figures[name]) for name in ranks), Run.repository, Run.workflow, Run.job)
        .limit(limit)
    )
    return {
        "metric": metric,
        "scope": scope,
        "ranked_by": list(ranks),
        "since": answer_time(start),
        "until": answer_time(end),
        "limit": limit,
        "jobs": [_top_row(row) for row in query.dicts()],
    }


# The fields a ranking sorts on, in order, by (scope, metric); duration ranks by the
# total run time either way.
_RANKS = {
    ("job", "cpu"): ("job_cpu_seconds_total", "job_cpu_cores_p95_avg"),
    ("job", "memory"): ("job_memory_bytes_peak_max",),
    ("host", "cpu"): ("cpu_percent_p95_avg", "cpu_seconds_total"),
    ("host", "memory"): ("mem_bytes_peak_max",),
}


def _figures() -> dict[str, Any]:
    """Every figure a ranking row carries, by its answer field."""
    return {
        "job_cpu_seconds_total": fn.SUM(Run.job_cpu_seconds),
        "job_cpu_cores_p95_avg": fn.AVG(Run.job_cpu_cores_p95),
        "job_cpu_cores_peak_max": fn.MAX(Run.job_cpu_cores_peak),
        "job_memory_bytes_peak_max": fn.MAX(Run.job_memory_bytes_peak),
        "job_memory_bytes_p95_avg": fn.AVG(Run.job_memory_bytes_p95),
        "cpu_seconds_total": fn.SUM(Run.cpu_seconds),
        "cpu_percent_p95_avg": fn.AVG(Run.cpu_percent_p95),
        "mem_bytes_peak_max": fn.MAX(Run.mem_bytes_peak),
        "mem_bytes_p95_avg": fn.AVG(Run.mem_bytes_p95),
        "duration_seconds_total": fn.SUM(Run.duration_seconds),
        "duration_seconds_avg": fn.AVG(Run.duration_seconds),
    }


def _top_row(row: dict[str, Any]) -> dict[str, Any]:
    """A ranking row with numbers JSON takes (PostgreSQL answers SUM and AVG of
    integer columns with Decimal), whole bytes for the peaks, one memory kind."""
    row["job_memory_kind"] = combined_kind(row.pop("kind_min"), row.pop("kind_max"))
    row["partial_runs"] = int(row["partial_runs"] or 0)
    for key, value in row.items():
        if key not in _NAMES and value is not None:
            row[key] = float(value)
    for key in ("mem_bytes_peak_max", "job_memory_bytes_peak_max"):
        if row[key] is not None:
            row[key] = int(row[key])
    return row
