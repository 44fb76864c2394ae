"""What costs the most?  Jobs ranked over a period, by the job's own figures or the host's.

Asked through :func:`resmon.store.history.top`.  Every row carries all figures, the
job's (``job_*``) and the host's (``cpu_percent_p95_avg``, ``mem_bytes_*``: the whole
machine the runs ran on), whatever the ranking; ``scope`` only says which rank.

Running runs have no figures yet and are not counted; lost runs are, with their
partial figures (``partial_runs`` says how many of a job's runs were).

Read from the hourly and daily rollups (:mod:`resmon.store.rollups`) for the whole
hours and days of the period, and from the runs for the rest: the partial hours at
its edges and the runs the background pass has not rolled up yet.  The answer is the
one the runs give (tests/store/test_rollup_reads.py); 30 days of 1,000,000 runs are
read in milliseconds instead of a walk over every run.
"""

from __future__ import annotations

from datetime import UTC, datetime
from typing import Any

from resmon.store import rollups
from resmon.store.models import database_proxy
from resmon.store.scope import (
    HistoryError,
    answer_time,
    bounded,
    parse_positive_period,
    parse_when,
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


def top(
    metric: str = "cpu",
    *,
    scope: str = "job",
    period: str | None = None,
    until: str | None = None,
    limit: int | None = None,
    now: datetime | None = None,
    organization: str | None = None,
) -> dict[str, Any]:
    """Jobs ranked by what they cost over a period (default the last 7 days), of one
    ``organization`` or of all.

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

    return {
        "metric": metric,
        "scope": scope,
        "ranked_by": list(_RANKS.get((scope, metric), ("duration_seconds_total",))),
        "since": answer_time(start),
        "until": answer_time(end),
        "limit": limit,
        "jobs": [_top_row(row) for row in _ranked(scope, metric, start, end, limit, organization)],
    }


# The fields a ranking sorts on, in order, by (scope, metric); duration ranks by the
# total run time either way.
_RANKS = {
    ("job", "cpu"): ("job_cpu_seconds_total", "job_cpu_cores_p95_avg"),
    ("job", "memory"): ("job_memory_bytes_peak_max",),
    ("host", "cpu"): ("cpu_percent_p95_avg", "cpu_seconds_total"),
    ("host", "memory"): ("mem_bytes_peak_max",),
}


def _avg(name: str) -> str:
    return f"q.{name}_sum / NULLIF(CAST(q.{name}_n AS DOUBLE PRECISION), 0)"


# Every figure a ranking row carries, by its answer field, over the combined rollup
# columns (resmon.store.rollups.JOB_COLUMNS) of a job: an average is the sum over the
# runs that had the figure divided by their count, as AVG() over the runs is.
_FIGURES = {
    "job_cpu_seconds_total": "q.job_cpu_seconds_sum",
    "job_cpu_cores_p95_avg": _avg("job_cpu_cores_p95"),
    "job_cpu_cores_peak_max": "q.job_cpu_cores_peak_max",
    "job_memory_bytes_peak_max": "q.job_memory_bytes_peak_max",
    "job_memory_bytes_p95_avg": _avg("job_memory_bytes_p95"),
    "cpu_seconds_total": "q.cpu_seconds_sum",
    "cpu_percent_p95_avg": _avg("cpu_percent_p95"),
    "mem_bytes_peak_max": "q.mem_bytes_peak_max",
    "mem_bytes_p95_avg": _avg("mem_bytes_p95"),
    "duration_seconds_total": "q.duration_seconds_sum",
    "duration_seconds_avg": _avg("duration_seconds"),
}
_GROUP = [(name, name, f"r.{name}") for name in rollups.SCOPE]
# Only the rollup columns a ranking reads: fewer sums per row (a 30-day ranking adds
# up some 13,000 rows of 200 jobs), and no OOM-kill subqueries over the runs.
_COLUMNS = tuple(
    column
    for column in rollups.JOB_COLUMNS
    if column[0] in ("runs", "partial_runs", "job_memory_kind_min", "job_memory_kind_max")
    or any(f"q.{column[0]}" in expr for expr in _FIGURES.values())
)


def _ranked(
    scope: str,
    metric: str,
    start: datetime,
    end: datetime | None,
    limit: int,
    organization: str | None,
) -> list[dict[str, Any]]:
    """The ranking's rows: the jobs' figures over [start, end) from the rollups' whole
    hours and days, and from the runs for the rest (the partial hours at the edges and
    what the background pass has not rolled up yet): the same as from the runs alone."""
    c = rollups.cover(start, end, edge=rollups.horizon())
    ranks = _RANKS.get((scope, metric), ("duration_seconds_total",))
    # COALESCE: NULLs sort first in PostgreSQL's DESC and last in SQLite's; ranking
    # must not depend on the database.
    order = ", ".join(
        [
            *(f"COALESCE({_FIGURES[name]}, -1) DESC" for name in ranks),
            "q.repository",
            "q.workflow",
            "q.job",
        ]
    )
    # Two steps: the jobs ranked on the few columns their rank reads, then every
    # figure of those ``limit`` jobs alone.  Adding up all ~30 columns of every row
    # (a 90-day ranking: 18,000 daily rows of 200 jobs) and sorting them cost 46 ms
    # at 1,000,000 runs; the two steps together take a third of that.
    needed = {"runs"} | {
        column[0]
        for column in rollups.JOB_COLUMNS
        if any(f"q.{column[0]}" in _FIGURES[name] for name in ranks)
    }
    combined = rollups.combined_sql(
        _GROUP, tuple(col for col in _COLUMNS if col[0] in needed), c, organization
    )
    if combined is None:
        return []
    inner, params = combined
    scopes = database_proxy.execute_sql(
        ", ".join(
            f"SELECT q.{name}" if i == 0 else f"q.{name}" for i, name in enumerate(rollups.SCOPE)
        )
        + f" FROM ({inner}) q WHERE q.runs > 0 ORDER BY {order} LIMIT {int(limit)}",
        params,
    ).fetchall()
    if not scopes:
        return []
    combined = rollups.combined_sql(_GROUP, _COLUMNS, c, organization, scopes=scopes)
    assert combined is not None
    inner, params = combined
    sql = (
        "SELECT "
        + ", ".join(
            [
                *(f"q.{name}" for name in rollups.SCOPE),
                "q.runs",
                "q.partial_runs",
                *(f"{expr} AS {name}" for name, expr in _FIGURES.items()),
                "q.job_memory_kind_min AS kind_min",
                "q.job_memory_kind_max AS kind_max",
            ]
        )
        + f" FROM ({inner}) q WHERE q.runs > 0 ORDER BY {order}"
    )
    cursor = database_proxy.execute_sql(sql, params)
    names = [d[0] for d in cursor.description]
    return [dict(zip(names, row, strict=True)) for row in cursor.fetchall()]


def _top_row(row: dict[str, Any]) -> dict[str, Any]:
    """A ranking row with numbers JSON takes (PostgreSQL answers SUM and AVG of
    integer columns with Decimal), whole bytes for the peaks, one memory kind."""
    row["job_memory_kind"] = combined_kind(row.pop("kind_min"), row.pop("kind_max"))
    # PostgreSQL sums counts as numeric (Decimal): whole numbers, as JSON wants them.
    row["runs"] = int(row["runs"] or 0)
    row["partial_runs"] = int(row["partial_runs"] or 0)
    for key, value in row.items():
        if key not in _NAMES and value is not None:
            row[key] = float(value)
    for key in ("mem_bytes_peak_max", "job_memory_bytes_peak_max"):
        if row[key] is not None:
            row[key] = int(row[key])
    return row
