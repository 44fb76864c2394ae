"""Usage by period, for capacity planning and chargeback: CPU-hours and GiB-hours per
organization, repository, workflow or job, per UTC day or hour.

- ``cpu_hours``: the CPU time the jobs' own processes used (the runs' job CPU
  seconds, :mod:`resmon.store.job_figures`) / 3600.  One core busy for an hour is 1.
- ``gib_hours``: each run's job memory peak (GiB) x its duration (hours), summed.  A
  reservation-style figure: what a runner sized to the run's peak held for the whole
  run, not the integral of memory over time (which the summaries do not carry); a
  run without a memory peak or a duration adds nothing.
- ``duration_hours``: the runs' wall-clock time; ``memory_peak_max_bytes``: the
  highest job memory peak of a run; ``oom_kills`` and ``cpu_throttled_seconds``: the
  runs' containers'.

A run counts in the day (hour) it was received, as ``top`` counts it.  The period
starts at the beginning of the day (hour) ``period`` ago and ends now.  Read from
the rollups (:mod:`resmon.store.rollups`) and the runs not rolled up yet: the same
figures as from the runs alone.  Hourly rollups are kept 90 days by default: an
hourly answer reaches back no further than they do.  Running runs have no figures
and are not counted.
"""

from __future__ import annotations

from datetime import UTC, datetime
from typing import Any

from resmon.store import rollups
from resmon.store.models import database_proxy
from resmon.store.scope import HistoryError, answer_time, parse_positive_period

USAGE_BY: dict[str, tuple[str, ...]] = {
    "org": ("organization",),
    "repo": ("organization", "repository"),
    "workflow": ("organization", "repository", "workflow"),
    "job": rollups.SCOPE,
}
USAGE_GRANULARITIES = ("day", "hour")
DEFAULT_USAGE_PERIOD = "30d"
MAX_USAGE_ROWS = 10_000
GIB = 2**30
_COLUMNS = tuple(
    c
    for c in rollups.JOB_COLUMNS
    if c[0]
    in (
        "runs",
        "partial_runs",
        "duration_seconds_sum",
        "job_cpu_seconds_sum",
        "job_memory_bytes_peak_max",
        "job_memory_byte_seconds",
        "oom_kills",
        "cpu_throttled_seconds",
    )
)


def usage(
    by: str = "job",
    period: str | None = None,
    granularity: str = "day",
    *,
    organization: str | None = None,
    repository: str | None = None,
    now: datetime | None = None,
) -> dict[str, Any]:
    """CPU-hours and GiB-hours per group (``by``: org, repo, workflow or job) and per
    day or hour (``granularity``) over ``period`` (default 30d), of one organization
    and repository (``org/repo`` or the bare name) or of all; rows ordered by group,
    then time, at most :data:`MAX_USAGE_ROWS` (``truncated`` says when cut)."""
    if by not in USAGE_BY:
        raise HistoryError(f"by: invalid grouping {by!r}: use one of {', '.join(USAGE_BY)}")
    if granularity not in USAGE_GRANULARITIES:
        raise HistoryError(f"granularity: invalid granularity {granularity!r}: use day or hour")
    length = parse_positive_period(period or DEFAULT_USAGE_PERIOD, name="period")
    now = (now or datetime.now(UTC)).astimezone(UTC).replace(tzinfo=None)
    floor = rollups.floor_day if granularity == "day" else rollups.floor_hour
    try:
        start = floor(now - length)
    except OverflowError:
        raise HistoryError(f"period: {period} reaches back before the year 1") from None
    fields = USAGE_BY[by]
    group = [(f, f, f"r.{f}") for f in fields]
    group.append(
        (
            "bucket",
            rollups.bucket_expr(granularity, "bucket"),
            rollups.bucket_expr(granularity, "r.received_at"),
        )
    )
    cover = rollups.cover(start, None, edge=rollups.horizon(), use_days=granularity == "day")
    # Each answer field is computed in SQL (bucket text, hours, whole counts) in the
    # statement that groups, whose order the ORDER BY reuses: a row is a dict of
    # what the cursor gives, no Python per field (usage by job over 30 days at
    # 1,000,000 runs answers 6,000 rows).
    keys = ", ".join(f"t.{f}" for f in (*fields, "bucket"))
    combined = rollups.combined_sql(
        group,
        _COLUMNS,
        cover,
        organization,
        repository,
        select=_answer_columns(fields, granularity),
        tail=f"HAVING SUM(t.runs) > 0 ORDER BY {keys} LIMIT {MAX_USAGE_ROWS + 1}",
    )
    rows: list[dict[str, Any]] = []
    if combined is not None:
        cursor = database_proxy.execute_sql(*combined)
        names = [d[0] for d in cursor.description]
        rows = [dict(zip(names, r, strict=True)) for r in cursor.fetchall()]
    truncated = len(rows) > MAX_USAGE_ROWS
    rows = rows[:MAX_USAGE_ROWS]
    runs, cpu, gib, duration = 0, 0.0, 0.0, 0.0
    for r in rows:
        runs += r["runs"]
        cpu += r["cpu_hours"] or 0.0
        gib += r["gib_hours"] or 0.0
        duration += r["duration_hours"] or 0.0
    totals = {"runs": runs, "cpu_hours": cpu, "gib_hours": gib, "duration_hours": duration}
    return {
        "by": by,
        "granularity": granularity,
        "period": (period or DEFAULT_USAGE_PERIOD).strip(),
        "organization": organization,
        "repository": repository,
        "since": answer_time(start),
        "until": answer_time(now),
        "truncated": truncated,
        "totals": totals,
        "rows": rows,
    }


def _answer_columns(fields: tuple[str, ...], granularity: str) -> list[str]:
    """The answer row's fields, in answer order, over the rows ``t`` a group adds up
    (:func:`resmon.store.rollups.combined_sql`): the bucket as text, hours as floats,
    counts as integers (PostgreSQL sums integers as numeric)."""
    if rollups.postgres():
        form = "YYYY-MM-DD" if granularity == "day" else 'YYYY-MM-DD"T"HH24":00:00Z"'
        bucket = f"to_char(t.bucket, '{form}')"
    else:
        form = "%Y-%m-%d" if granularity == "day" else "%Y-%m-%dT%H:00:00Z"
        bucket = f"strftime('{form}', t.bucket)"
    real = "DOUBLE PRECISION"
    hour = f"CAST(3600 AS {real})"
    return [
        *(f"t.{f} AS {f}" for f in fields),
        f"{bucket} AS bucket",
        "CAST(SUM(t.runs) AS BIGINT) AS runs",
        "CAST(COALESCE(SUM(t.partial_runs), 0) AS BIGINT) AS partial_runs",
        f"SUM(t.job_cpu_seconds_sum) / {hour} AS cpu_hours",
        f"SUM(t.job_memory_byte_seconds) / CAST({GIB} AS {real}) / {hour} AS gib_hours",
        f"SUM(t.duration_seconds_sum) / {hour} AS duration_hours",
        "CAST(MAX(t.job_memory_bytes_peak_max) AS BIGINT) AS memory_peak_max_bytes",
        "CAST(COALESCE(SUM(t.oom_kills), 0) AS BIGINT) AS oom_kills",
        f"CAST(COALESCE(SUM(t.cpu_throttled_seconds), 0) AS {real}) AS cpu_throttled_seconds",
    ]
