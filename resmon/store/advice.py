"""Recommendations from stored runs: one job (and each of its containers), or the fleet.

The runs of the window (``since``, default the last 30 days; at most ``runs`` of
them, default 100, the newest) are read from indexed columns -- the job's figures
in ``runs`` (``job_*``), each container's in ``run_containers`` -- and handed, oldest
first, to :func:`resmon.analysis.recommend.recommend`.  A run was OOM-killed when
one of its containers counted an OOM kill; throttled when one counted throttled
CPU time.

Running runs are left out: they have no figures until they finish.  Lost runs
count, with their partial figures (``partial_runs`` says how many): a lost run's
memory peak is a lower bound of its true peak, so it can only hold the
recommendation up, never push it past what the job used, and the runs that get
lost are often the ones sizing is for (a pod OOM-killed or evicted with its
collector); its CPU p95 and peak are those of the samples it streamed, rates like
any run's.  (A regression baseline leaves them out: :mod:`resmon.store.baseline`.)

Used by the read API (:mod:`resmon.server.advice_api`) and ``resmon query --db``.
"""

from __future__ import annotations

from collections.abc import Iterator
from datetime import datetime
from typing import Any

from resmon.analysis.formulas import Usage
from resmon.analysis.recommend import frees, recommend
from resmon.store.models import ContainerStat, Run
from resmon.store.scope import (
    HistoryError,
    answer_time,
    bounded,
    has_figures,
    job_exists,
    job_name,
    job_not_found,
    parse_window,
    run_time,
    scope_fields,
    scope_where,
)

DEFAULT_SINCE = "30d"
DEFAULT_RUNS = 100
MAX_RUNS = 1000
DEFAULT_FLEET_LIMIT = 50
MAX_FLEET_LIMIT = 1000
# The fleet reads at most this many runs (the newest), so one question stays bounded.
MAX_FLEET_ROWS = 200_000
FLEET_ORDERS = ("free", "risk")

_RUN_COLUMNS = (
    Run.id,
    Run.organization,
    Run.repository,
    Run.workflow,
    Run.job,
    run_time().alias("at"),
    Run.job_cpu_cores_p95,
    Run.job_cpu_cores_peak,
    Run.job_memory_bytes_peak,
    Run.job_limit_cpu_cores,
    Run.job_limit_memory_bytes,
    Run.partial,
)
_CONTAINER_COLUMNS = (
    ContainerStat.run,
    ContainerStat.name,
    ContainerStat.cpu_cores_p95,
    ContainerStat.cpu_cores_peak,
    ContainerStat.memory_bytes_peak,
    ContainerStat.limit_cpu_cores,
    ContainerStat.limit_memory_bytes,
    ContainerStat.oom_kills,
    ContainerStat.cpu_throttled_seconds,
)


def _day(value: Any) -> str | None:
    if isinstance(value, datetime):
        return value.date().isoformat()
    return str(value)[:10] if value else None


def _container_usage(row: dict[str, Any], day: str | None) -> Usage:
    return Usage(
        cpu_cores_p95=row["cpu_cores_p95"],
        cpu_cores_peak=row["cpu_cores_peak"],
        memory_bytes_peak=row["memory_bytes_peak"],
        day=day,
        limit_cpu_cores=row["limit_cpu_cores"],
        limit_memory_bytes=row["limit_memory_bytes"],
        oom_killed=(row["oom_kills"] or 0) > 0,
        cpu_throttled_seconds=row["cpu_throttled_seconds"],
    )


def _job_usage(row: dict[str, Any], containers: list[dict[str, Any]]) -> Usage:
    throttled = [c["cpu_throttled_seconds"] for c in containers if c["cpu_throttled_seconds"]]
    return Usage(
        cpu_cores_p95=row["job_cpu_cores_p95"],
        cpu_cores_peak=row["job_cpu_cores_peak"],
        memory_bytes_peak=row["job_memory_bytes_peak"],
        day=_day(row["at"]),
        limit_cpu_cores=row["job_limit_cpu_cores"],
        limit_memory_bytes=row["job_limit_memory_bytes"],
        oom_killed=any((c["oom_kills"] or 0) > 0 for c in containers),
        cpu_throttled_seconds=sum(throttled) if throttled else None,
    )


def _containers_of(ids: list[int], where: Any = None) -> dict[int, list[dict[str, Any]]]:
    out: dict[int, list[dict[str, Any]]] = {i: [] for i in ids}
    for start in range(0, len(ids), 500):
        query = ContainerStat.select(*_CONTAINER_COLUMNS).where(
            ContainerStat.run.in_(ids[start : start + 500])
        )
        if where is not None:
            query = query.where(where)
        for row in query.dicts():
            out[row["run"]].append(row)
    return out


def _window(since: str | None, until: str | None, now: datetime | None) -> tuple[Any, Any]:
    return parse_window(since or DEFAULT_SINCE, until, now)


def job_history(
    organization: str,
    repository: str,
    workflow: str,
    job: str,
    *,
    since: str | None = DEFAULT_SINCE,
    until: str | None = None,
    runs: int | None = None,
    now: datetime | None = None,
) -> tuple[list[Usage], dict[str, list[Usage]], dict[str, Any]]:
    """The job's runs and each container's, oldest first, and the window as answered
    (with ``partial_runs``: how many of the runs are lost runs' partial figures)."""
    limit = bounded(runs, DEFAULT_RUNS, MAX_RUNS, "runs")
    start, end = _window(since, until, now)
    where = scope_where(organization, repository, workflow, job) & has_figures()
    query = Run.select(*_RUN_COLUMNS).where(where)
    if start is not None:
        query = query.where(Run.received_at >= start)
    if end is not None:
        query = query.where(Run.received_at < end)
    rows = list(query.order_by(Run.received_at.desc(), Run.id.desc()).limit(limit).dicts())
    if not rows and not job_exists(organization, repository, workflow, job):
        raise job_not_found(organization, repository, workflow, job)
    rows.reverse()
    containers = _containers_of([r["id"] for r in rows])
    job_runs = [_job_usage(r, containers[r["id"]]) for r in rows]
    per_container: dict[str, list[Usage]] = {}
    for r in rows:
        for c in containers[r["id"]]:
            per_container.setdefault(c["name"], []).append(_container_usage(c, _day(r["at"])))
    window = {
        "since": answer_time(start),
        "until": answer_time(end),
        "runs_limit": limit,
        "partial_runs": sum(1 for r in rows if r["partial"]),
    }
    return job_runs, per_container, window


def recommend_job(
    organization: str,
    repository: str,
    workflow: str,
    job: str,
    *,
    since: str | None = DEFAULT_SINCE,
    until: str | None = None,
    runs: int | None = None,
    now: datetime | None = None,
) -> dict[str, Any]:
    """The recommendation for one job and each of its containers (see the module)."""
    job_runs, per_container, window = job_history(
        organization, repository, workflow, job, since=since, until=until, runs=runs, now=now
    )
    return {
        **scope_fields(organization, repository, workflow, job),
        **window,
        "job_recommendation": recommend(job_runs),
        "containers": [
            {"name": name, **recommend(history)} for name, history in sorted(per_container.items())
        ],
    }


def _fleet_rows(start: Any, end: Any) -> list[dict[str, Any]]:
    query = Run.select(*_RUN_COLUMNS).where(has_figures())
    if start is not None:
        query = query.where(Run.received_at >= start)
    if end is not None:
        query = query.where(Run.received_at < end)
    rows = list(query.order_by(Run.received_at.desc(), Run.id.desc()).limit(MAX_FLEET_ROWS).dicts())
    rows.reverse()
    return rows


Key = tuple[str, str, str, str]


def fleet_histories(
    since: str | None = DEFAULT_SINCE,
    until: str | None = None,
    runs: int | None = None,
    now: datetime | None = None,
) -> tuple[dict[Key, list[Usage]], dict[str, Any], bool]:
    """Every job's runs in the window, oldest first, at most ``runs`` each; the window;
    and whether the fleet's row cap left older runs out."""
    jobs, _, window, capped = _fleet(since, until, runs, now)
    return jobs, window, capped


def _fleet(
    since: str | None, until: str | None, runs: int | None, now: datetime | None
) -> tuple[dict[Key, list[Usage]], dict[Key, int], dict[str, Any], bool]:
    """:func:`fleet_histories`, and how many of each job's runs are partial."""
    limit = bounded(runs, DEFAULT_RUNS, MAX_RUNS, "runs")
    start, end = _window(since, until, now)
    rows = _fleet_rows(start, end)
    # Only the containers that say something about the job as a whole: OOM kills, throttling.
    eventful = (ContainerStat.oom_kills > 0) | (ContainerStat.cpu_throttled_seconds > 0)
    containers = _containers_of([r["id"] for r in rows], eventful)
    jobs: dict[Key, list[Usage]] = {}
    partial: dict[Key, list[bool]] = {}
    for r in rows:
        key = (r["organization"], r["repository"], r["workflow"], r["job"])
        jobs.setdefault(key, []).append(_job_usage(r, containers[r["id"]]))
        partial.setdefault(key, []).append(bool(r["partial"]))
    for key, history in jobs.items():
        jobs[key] = history[-limit:]
    counts = {key: sum(flags[-limit:]) for key, flags in partial.items()}
    window = {"since": answer_time(start), "until": answer_time(end), "runs_limit": limit}
    return jobs, counts, window, len(rows) >= MAX_FLEET_ROWS


def _fleet_row(key: Key, history: list[Usage], partial_runs: int) -> dict[str, Any]:
    answer = recommend(history)
    freed = frees(answer)
    at_risk = answer["risk"]
    backtest = (answer.get("backtest") or {}).get("resmon") or {}
    return {
        **scope_fields(*key),
        "runs": answer["runs"],
        "partial_runs": partial_runs,
        "status": answer["status"],
        "runs_needed": answer["runs_needed"],
        "confidence": (answer.get("confidence") or {}).get("level"),
        "cpu_request_cores": answer.get("cpu_request_cores"),
        "cpu_limit_cores": answer.get("cpu_limit_cores"),
        "cpu_limit_advice": answer.get("cpu_limit_advice"),
        "memory_limit_bytes": answer.get("memory_limit_bytes"),
        "memory_peak_max_bytes": answer["memory_peak_max_bytes"],
        "current_cpu_limit_cores": answer["current"]["cpu_limit_cores"],
        "current_memory_limit_bytes": answer["current"]["memory_limit_bytes"],
        "frees_cpu_cores": freed["cpu_cores"],
        "frees_memory_bytes": freed["memory_bytes"],
        **at_risk,
        "risk_runs": sum(at_risk.values()),
        "memory_fit_rate": backtest.get("memory_fit_rate"),
    }


def recommend_fleet(
    *,
    since: str | None = DEFAULT_SINCE,
    until: str | None = None,
    runs: int | None = None,
    by: str = "free",
    limit: int | None = None,
    now: datetime | None = None,
) -> dict[str, Any]:
    """Every job with runs in the window, ranked by what following its recommendation
    would free (``by=free``: memory, then cores) or by its runs at risk (``by=risk``)."""
    if by not in FLEET_ORDERS:
        raise HistoryError(f"by: {by!r} is not one of {', '.join(FLEET_ORDERS)}")
    top = bounded(limit, DEFAULT_FLEET_LIMIT, MAX_FLEET_LIMIT, "limit")
    jobs, partial, window, capped = _fleet(since, until, runs, now)
    rows = [_fleet_row(key, history, partial[key]) for key, history in jobs.items()]

    def free_key(r: dict[str, Any]) -> tuple[Any, ...]:
        memory, cores = r["frees_memory_bytes"], r["frees_cpu_cores"]
        return (memory is None, -(memory or 0), -(cores or 0), job_name(*_scope(r)))

    def risk_key(r: dict[str, Any]) -> tuple[Any, ...]:
        return (-r["risk_runs"], -r["oom_killed_runs"], job_name(*_scope(r)))

    rows.sort(key=free_key if by == "free" else risk_key)
    return {
        **window,
        "by": by,
        "limit": top,
        "truncated": len(rows) > top or capped,
        "jobs": rows[:top],
    }


def _scope(row: dict[str, Any]) -> tuple[str, str, str, str]:
    return row["organization"], row["repository"], row["workflow"], row["job"]


def all_job_histories(
    since: str | None = DEFAULT_SINCE, limit: int | None = None
) -> Iterator[tuple[str, list[Usage]]]:
    """Every job's runs in the window, oldest first, named: what ``bench/recommend.py
    --db`` replays."""
    jobs, _, _ = fleet_histories(since, None, limit)
    for key, history in sorted(jobs.items()):
        yield job_name(*key), history
