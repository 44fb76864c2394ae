"""The read side: the questions people ask of stored runs, answered from indexed columns.

Used by the server's read API (:mod:`resmon.server.read_api`) and by
``resmon query --db`` alike, so both give the same answer with the same field
names.  Every function returns a plain, JSON-ready dict (times as RFC 3339 UTC).

Every run row carries its ``state`` (``running``: its collector is still streaming
and it has no figures yet; ``finished``; ``lost``: its batches stopped without a
final push), ``partial`` (its figures are a lost run's, from the samples it
streamed) and the runner ``host``.  The runs of a job and the jobs' last runs list
running runs as they are; trends and top leave them out and mark the partial ones.

Lists and aggregates read only the summary columns of ``runs`` and
``run_containers`` (scope, times, p95/peak), which the indexes
``(organization, repository, workflow, job, received_at)``, ``(received_at)`` and
``(name, run)`` serve; only :func:`get_run` parses a stored run summary, the one
it returns.  Works on SQLite and PostgreSQL; the one place they differ, the
calendar day of a time, is :func:`resmon.store.scope.day_of`.

Every run row carries the job's own figures (``job_*``, :mod:`resmon.store.job_figures`)
beside the host's (``cpu_percent_*``, ``mem_bytes_*``: the whole machine).  The
trend of a job is asked in :mod:`resmon.store.trends`, the ranking of jobs in
:mod:`resmon.store.ranking`; both are importable from here.

The time and period a user writes (``--since 7d``, ``--period 2w``) are parsed
by :func:`resmon.store.scope.parse_window` and
:func:`~resmon.store.scope.parse_positive_period` (importable from here too): every
question takes them as text, and the CLI checks them with the same functions before
asking.
"""

from __future__ import annotations

import logging
from datetime import datetime
from typing import Any

import orjson

from resmon.store import rollups
from resmon.store.io_columns import IO_COLUMNS
from resmon.store.job_figures import JOB_COLUMNS
from resmon.store.models import ContainerStat, Run, database_proxy
from resmon.store.ranking import TOP_METRICS, TOP_SCOPES, top
from resmon.store.run_context import CONTEXT_COLUMNS
from resmon.store.scope import (
    HistoryError,
    NotFound,
    answer_time,
    bounded,
    job_exists,
    job_not_found,
    parse_positive_period,
    parse_when,
    parse_window,
    run_row,
    scope_fields,
    scope_where,
)
from resmon.store.steps import steps_of_run
from resmon.store.trends import TREND_BY, trend

# The questions asked here and in their own modules, and what they raise, by one name.
__all__ = [
    "HistoryError",
    "NotFound",
    "TOP_METRICS",
    "TOP_SCOPES",
    "TREND_BY",
    "get_run",
    "job_runs",
    "list_jobs",
    "parse_positive_period",
    "parse_when",
    "parse_window",
    "top",
    "trend",
]

log = logging.getLogger(__name__)

DEFAULT_RUNS_LIMIT = 20
MAX_RUNS_LIMIT = 1000
MAX_JOBS = 10_000
# The rows of a list answer (jobs, runs of a job), serialised: the lists that hold
# names (each up to 255 characters, the repository 511) are cut here too, and say
# so with ``truncated``.  Trend points and top rows carry no more than one name
# each and stay far below it at their row caps.
MAX_ANSWER_BYTES = 4 * 1024 * 1024
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
    # Its state (running, finished, lost), whether its figures are a lost run's partial
    # summary, and the runner host it ran on (RUNNER_NAME, else the hostname).
    Run.state,
    Run.partial,
    Run.host,
    # The job's own figures; the cpu_percent_* and mem_bytes_* above are the host's.
    *(getattr(Run, name) for name in JOB_COLUMNS),
    # Its context: branch, commit, event, runner, pod (resmon.store.run_context).
    *(getattr(Run, name) for name in CONTEXT_COLUMNS),
    # The job's disk I/O and network (resmon.store.io_columns).
    *(getattr(Run, name) for name in IO_COLUMNS),
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


# --- the questions ---------------------------------------------------------------


def list_jobs(organization: str | None = None, repository: str | None = None) -> dict[str, Any]:
    """Every job with its run count and its last run's figures.

    ``repository`` may be ``org/repo`` or, alone or with ``organization``, the bare name.
    The counts come from the daily rollups and the runs not rolled up yet
    (:mod:`resmon.store.rollups`), not from a walk over every run: a run deleted by
    retention still counts in its job's ``run_count``.
    """
    groups, more = _job_groups(organization, repository)
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
            *JOB_COLUMNS,
            "state",
            "partial",
            "host",
        ):
            entry[f"last_{key}"] = row.get(key)
        jobs.append(entry)
    jobs.sort(key=lambda j: (j["repository"], j["workflow"], j["job"], j["organization"]))
    jobs, cut = within_bytes(jobs)
    return {"jobs": jobs, "truncated": more or cut}


_COUNT_COLUMNS = tuple(c for c in rollups.JOB_COLUMNS if c[0] in ("runs", "last_run_pk"))


def _job_groups(
    organization: str | None, repository: str | None
) -> tuple[list[dict[str, Any]], bool]:
    """Every job's run count and last run id (its largest: ids grow with arrival), in
    the list's order, at most MAX_JOBS, and whether there were more: the runs with
    figures from the rollups (and the runs not rolled up yet), the running ones from
    the runs (the partial index on running runs)."""
    counts: dict[tuple[str, ...], list[int]] = {}
    group = [(name, name, f"r.{name}") for name in rollups.SCOPE]
    cover = rollups.cover(None, None, edge=rollups.horizon())
    combined = rollups.combined_sql(
        group, _COUNT_COLUMNS, cover, organization, repository, by_scope_index=True
    )
    db = database_proxy
    if combined is not None:
        for org, repo, workflow, job, runs, last in db.execute_sql(*combined).fetchall():
            if runs:
                counts[(org, repo, workflow, job)] = [int(runs), int(last)]
    # The running runs through their partial index (a handful; filtered here: a
    # filter in the statement would have the planner walk a scope index instead).
    running = db.execute_sql(
        "SELECT organization, repository, workflow, job, id FROM runs "
        "WHERE state = 'running' AND last_batch_at IS NOT NULL"
    ).fetchall()
    for org, repo, workflow, job, run_pk in running:
        if not rollups.scope_matches(org, repo, organization, repository):
            continue
        entry = counts.setdefault((org, repo, workflow, job), [0, 0])
        entry[0] += 1
        entry[1] = max(entry[1], int(run_pk))
    ordered = sorted(counts.items(), key=lambda kv: (kv[0][1], kv[0][2], kv[0][3], kv[0][0]))
    groups = [
        {
            "organization": k[0],
            "repository": k[1],
            "workflow": k[2],
            "job": k[3],
            "run_count": v[0],
            "last_id": v[1],
        }
        for k, v in ordered[:MAX_JOBS]
    ]
    return groups, len(ordered) > MAX_JOBS


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
    branch: str | None = None,
) -> dict[str, Any]:
    """The runs of one job, newest first, at most ``limit``; ``truncated`` says whether
    more runs match; ``branch``: only the runs that built that branch.  Raises
    :class:`NotFound` (with close job names) for an unknown job."""
    limit = bounded(limit, DEFAULT_RUNS_LIMIT, MAX_RUNS_LIMIT, "limit")
    start, end = parse_window(since, until, now)
    query = Run.select(*RUN_COLUMNS).where(scope_where(organization, repository, workflow, job))
    if branch:
        query = query.where(Run.branch == branch)
    if start is not None:
        query = query.where(Run.received_at >= start)
    if end is not None:
        query = query.where(Run.received_at < end)
    rows = list(query.order_by(Run.received_at.desc(), Run.id.desc()).limit(limit + 1).dicts())
    if not rows and not job_exists(organization, repository, workflow, job):
        raise job_not_found(organization, repository, workflow, job)
    runs, cut = within_bytes([run_row(r) for r in rows[:limit]])
    return {
        **scope_fields(organization, repository, workflow, job),
        "since": answer_time(start),
        "until": answer_time(end),
        "limit": limit,
        **({"branch": branch} if branch else {}),
        "truncated": len(rows) > limit or cut,
        "runs": runs,
    }


def get_run(run_pk: int) -> dict[str, Any]:
    """One stored run: its columns, its containers, and the run summary as received;
    a live run's ``live_interval_seconds`` and ``last_batch_at`` too (None for a run
    pushed whole).  A running run has no figures yet and its ``payload`` is the
    placeholder its first batch stored; a lost one's is its partial summary."""
    row = (
        Run.select(*RUN_COLUMNS, Run.live_interval_seconds, Run.last_batch_at, Run.payload)
        .where(Run.id == run_pk)
        .dicts()
        .first()
    )
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
    return {
        **run_row(row),
        "containers": containers,
        "steps": steps_of_run(run_pk, payload),
        "payload": payload,
    }
