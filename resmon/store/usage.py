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
    combined = rollups.combined_sql(group, _COLUMNS, cover, organization, repository)
    rows: list[dict[str, Any]] = []
    if combined is not None:
        sql, params = combined
        order = ", ".join(f"q.{f}" for f in (*fields, "bucket"))
        cursor = database_proxy.execute_sql(
            f"SELECT * FROM ({sql}) q WHERE q.runs > 0 ORDER BY {order} LIMIT {MAX_USAGE_ROWS + 1}",
            params,
        )
        names = [d[0] for d in cursor.description]
        rows = [
            _row(dict(zip(names, r, strict=True)), fields, granularity) for r in cursor.fetchall()
        ]
    truncated = len(rows) > MAX_USAGE_ROWS
    rows = rows[:MAX_USAGE_ROWS]
    totals = {
        "runs": sum(r["runs"] for r in rows),
        "cpu_hours": sum(r["cpu_hours"] or 0.0 for r in rows),
        "gib_hours": sum(r["gib_hours"] or 0.0 for r in rows),
        "duration_hours": sum(r["duration_hours"] or 0.0 for r in rows),
    }
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


def _hours(value: Any) -> float | None:
    return None if value is None else float(value) / 3600


def _row(raw: dict[str, Any], fields: tuple[str, ...], granularity: str) -> dict[str, Any]:
    bucket = rollups.as_time(raw["bucket"])
    assert bucket is not None
    byte_seconds = raw["job_memory_byte_seconds"]
    peak = raw["job_memory_bytes_peak_max"]
    return {
        **{f: raw[f] for f in fields},
        "bucket": bucket.strftime("%Y-%m-%d")
        if granularity == "day"
        else bucket.strftime("%Y-%m-%dT%H:00:00Z"),
        "runs": int(raw["runs"]),
        "partial_runs": int(raw["partial_runs"]),
        "cpu_hours": _hours(raw["job_cpu_seconds_sum"]),
        "gib_hours": None if byte_seconds is None else float(byte_seconds) / GIB / 3600,
        "duration_hours": _hours(raw["duration_seconds_sum"]),
        "memory_peak_max_bytes": None if peak is None else int(peak),
        "oom_kills": int(raw["oom_kills"]),
        "cpu_throttled_seconds": float(raw["cpu_throttled_seconds"]),
    }
