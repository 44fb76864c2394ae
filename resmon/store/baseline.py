"""Regressions at push time: a stored run against its job's baseline, and the runs flagged.

:func:`compare_stored_run` reads the run's figures and those of the job's previous
runs in the window (received before it, at most ``runs`` of them, newest first: one
indexed query each, the containers joined), and compares them with
:func:`resmon.analysis.regressions.compare_run`; :func:`compare_new_run` does the
same for a run the push has just written, from the columns it wrote (the previous
runs' query only).  :func:`save_flags` keeps the
figures that are regressions (``run_regressions``), which :func:`list_regressions`
answers for ``resmon query regressions`` and ``GET /api/v1/regressions``, each
figure with the test that flagged it (``single``: the run alone; ``shift``: the
median of the last ``runs`` runs, :mod:`resmon.analysis.regressions`).

A baseline is of whole runs: ``finished`` ones.  A running run has no figures yet
(and would take a place among the newest ``runs``); a lost run's figures are a
partial summary of a run cut short -- its CPU-seconds and duration stop where its
samples did, its memory peak is a lower bound -- and counting them would pull the
median down and flag the next whole run.  Lost runs are rare, so leaving them out
costs a baseline little.  Only a finished run is compared (a lost run completed by
its final push is finished, and is).  Recommendations do count lost runs
(:mod:`resmon.store.advice`): for sizing, a lower bound of a peak is still
evidence.  "Before" is by arrival, ``(received_at, id)``: a live run's id is given
by its first batch, earlier than the runs of the job that finished while it ran.
"""

from __future__ import annotations

from dataclasses import dataclass
from datetime import datetime, timedelta
from typing import Any

from resmon.analysis.regressions import Thresholds, compare_run
from resmon.store import db as dbmod
from resmon.store import events
from resmon.store.models import Run, RunRegression, database_proxy
from resmon.store.scope import FINISHED, answer_time, bounded, parse_window

DEFAULT_BASELINE_RUNS = 20
DEFAULT_BASELINE_WINDOW = timedelta(days=30)
DEFAULT_REGRESSIONS_LIMIT = 100
MAX_REGRESSIONS_LIMIT = 1000


@dataclass(frozen=True)
class BaselineOptions:
    """How ``resmon serve`` compares a pushed run (``--baseline-runs`` 0: not at all)."""

    runs: int = DEFAULT_BASELINE_RUNS
    window: timedelta = DEFAULT_BASELINE_WINDOW
    thresholds: Thresholds = Thresholds()


# The figures compared, as columns of ``runs`` and ``run_containers``.
_JOB_FIGURES = ("job_cpu_seconds", "job_cpu_cores_p95", "job_memory_bytes_peak", "duration_seconds")
_CONTAINER_FIGURES = ("cpu_seconds", "cpu_cores_p95", "memory_bytes_peak")
_SCOPE = (Run.organization, Run.repository, Run.workflow, Run.job)
# A flagged figure as the regression event carries it.
_EVENT_FIGURE = (
    "scope",
    "container",
    "metric",
    "value",
    "median",
    "change",
    "test",
    "runs",
    "shift",
)


def _statements(p: str) -> tuple[str, str]:
    """The two SELECTs of a comparison, written out (peewee's query building cost more
    than the queries: profiled, 3.4 ms of a push against 1.5 without), each run with
    its containers' figures joined: one row per (run, container), a run without
    containers once, its container columns NULL."""
    figures = ", ".join(_JOB_FIGURES)
    containers = ", ".join(f"c.{name}" for name in _CONTAINER_FIGURES)
    own = (
        f"SELECT r.id, r.received_at, {', '.join(f'r.{f}' for f in _JOB_FIGURES)}, "
        f"r.organization, r.repository, r.workflow, r.job, r.state, c.name, {containers} "
        f"FROM runs r LEFT JOIN run_containers c ON c.run_id = r.id WHERE r.id = {p}"
    )
    previous = (
        f"SELECT p.id, p.received_at, {', '.join(f'p.{f}' for f in _JOB_FIGURES)}, "
        f"c.name, {containers} FROM ("
        f"SELECT id, received_at, {figures} FROM runs WHERE organization = {p} "
        f"AND repository = {p} AND workflow = {p} AND job = {p} AND received_at >= {p} "
        f"AND received_at <= {p} AND (received_at < {p} OR id < {p}) AND state = '{FINISHED}' "
        f"ORDER BY received_at DESC, id DESC LIMIT {p}) p "
        f"LEFT JOIN run_containers c ON c.run_id = p.id ORDER BY p.received_at DESC, p.id DESC"
    )
    return own, previous


_SQL: dict[str, tuple[str, str]] = {}


def _sql(param: str) -> tuple[str, str]:
    """:func:`_statements` for the dialect whose placeholder is ``param``, made once."""
    statements = _SQL.get(param)
    if statements is None:
        statements = _SQL[param] = _statements(param)
    return statements


def _runs(rows: list[tuple[Any, ...]], at: int) -> list[dict[str, Any]]:
    """The runs of joined rows, in their order: each one's figures and ``containers``
    (name -> figures); the container columns start at ``at``."""
    runs: list[dict[str, Any]] = []
    last = None
    containers: dict[str, Any] = {}
    for row in rows:
        if row[0] != last:
            last = row[0]
            containers = {}
            runs.append(
                {
                    "id": row[0],
                    "received_at": row[1],
                    "cpu_seconds": row[2],
                    "cpu_cores_p95": row[3],
                    "memory_bytes_peak": row[4],
                    "duration_seconds": row[5],
                    "containers": containers,
                }
            )
        name = row[at]
        if name is not None:
            containers[name] = {
                "cpu_seconds": row[at + 1],
                "cpu_cores_p95": row[at + 2],
                "memory_bytes_peak": row[at + 3],
            }
    return runs


def compare_stored_run(run_pk: int, options: BaselineOptions) -> dict[str, Any] | None:
    """The comparison of stored run ``run_pk`` with the job's runs received before it
    (within ``options.window`` of it, at most ``options.runs``); None when the
    comparison is off or the run is not there."""
    if options.runs < 1:
        return None
    db = database_proxy.obj
    own_rows = db.execute_sql(_sql(db.param)[0], (run_pk,)).fetchall()
    if not own_rows or own_rows[0][10] != FINISHED:
        return None
    own = own_rows[0]
    at = Run.received_at.python_value(own[1])
    if isinstance(at, str):  # a stored time peewee's formats do not read: no window
        return None
    return _compare(_runs(own_rows, 11)[0], own[6:10], at, options)


def compare_new_run(
    run_pk: int,
    scope: tuple[str, str, str, str],
    received_at: datetime,
    columns: dict[str, Any],
    containers: list[dict[str, Any]],
    options: BaselineOptions,
) -> dict[str, Any] | None:
    """:func:`compare_stored_run` of a run this process has just stored as a finished
    run, from the columns and container rows it wrote (``received_at`` as stored:
    naive UTC), without reading them back: one SELECT, the previous runs'."""
    if options.runs < 1:
        return None
    current = {
        "id": run_pk,
        "received_at": received_at,
        **{figure: columns.get(f"job_{figure}") for figure in _JOB_FIGURES_OF_RUN},
        "duration_seconds": columns.get("duration_seconds"),
        "containers": {
            c["name"]: {name: c.get(name) for name in _CONTAINER_FIGURES} for c in containers
        },
    }
    return _compare(current, scope, received_at, options)


# The run's own figures among _JOB_FIGURES, as a comparison names them.
_JOB_FIGURES_OF_RUN = ("cpu_seconds", "cpu_cores_p95", "memory_bytes_peak")


def _compare(
    current: dict[str, Any], scope: Any, at: datetime, options: BaselineOptions
) -> dict[str, Any]:
    db = database_proxy.obj
    params = (*scope, at - options.window, at, at, current["id"], options.runs)
    previous = _runs(db.execute_sql(_sql(db.param)[1], params).fetchall(), 6)
    comparison = compare_run(current, previous, options.thresholds)
    first = Run.received_at.python_value(previous[-1]["received_at"]) if previous else None
    return {
        **comparison,
        "window_days": options.window.total_seconds() / 86400,
        "baseline_since": answer_time(first),
    }


def save_flags(run_pk: int, comparison: dict[str, Any] | None) -> int:
    """Store the comparison's regressions of run ``run_pk``; returns how many.

    In the same transaction, a ``regression`` event (:mod:`resmon.store.events`) with
    the run's id and its flagged figures, each with the test that flagged it."""
    if not comparison or not comparison.get("regressions"):
        return 0
    run = (
        Run.select(Run.received_at, Run.run_id, Run.run_attempt, *_SCOPE)
        .where(Run.id == run_pk)
        .dicts()
        .get()
    )
    flagged = [f for f in comparison["figures"] if f["regression"]]
    rows = [
        {
            "run": run_pk,
            "received_at": run["received_at"],
            **{k: f[k] for k in ("container", "metric", "value", "median", "mad")},
            **{k: f[k] for k in ("baseline_runs", "change")},
            "test": f.get("test") or "single",
            "runs": f.get("runs") or 1,
        }
        for f in flagged
    ]
    event = {  # as a run_finished event names its run
        "run": run_pk,
        "run_id": run["run_id"],
        "run_attempt": run["run_attempt"] or "",
        "regressions": [{k: f.get(k) for k in _EVENT_FIGURE} for f in flagged],
    }
    with dbmod.write_lock(database_proxy.obj), database_proxy.atomic():
        RunRegression.insert_many(rows).execute()
        events.append_event("regression", run, run_pk, event)
    return len(rows)


def list_regressions(
    since: str | None = "7d",
    until: str | None = None,
    limit: int | None = None,
    now: datetime | None = None,
) -> dict[str, Any]:
    """The runs flagged at push in the window, newest first, each with its flagged
    figures and the test that flagged each (``test`` single or shift, over ``runs``
    runs); at most ``limit`` runs (``truncated`` when more were flagged)."""
    limit = bounded(limit, DEFAULT_REGRESSIONS_LIMIT, MAX_REGRESSIONS_LIMIT, "limit")
    start, end = parse_window(since, until, now)
    flagged = RunRegression.select(RunRegression.run).distinct()
    if start is not None:
        flagged = flagged.where(RunRegression.received_at >= start)
    if end is not None:
        flagged = flagged.where(RunRegression.received_at < end)
    run_columns = (
        Run.id,
        Run.organization,
        Run.repository,
        Run.workflow,
        Run.job,
        Run.run_id,
        Run.run_attempt,
        Run.received_at,
        Run.start_time,
    )
    rows = list(
        Run.select(*run_columns)
        .where(Run.id.in_(flagged))
        .order_by(Run.received_at.desc(), Run.id.desc())
        .limit(limit + 1)
        .dicts()
    )
    runs = rows[:limit]
    figures: dict[int, list[dict[str, Any]]] = {r["id"]: [] for r in runs}
    if runs:
        query = (
            RunRegression.select()
            .where(RunRegression.run.in_(list(figures)))
            .order_by(RunRegression.id)
            .dicts()
        )
        for f in query:
            figures[f["run"]].append(
                {k: f[k] for k in ("container", "metric", "value", "median", "mad", "change")}
                | {k: f[k] for k in ("baseline_runs", "test", "runs")}
            )
    answer = []
    for r in runs:
        r["received_at"] = answer_time(r["received_at"])
        r["start_time"] = answer_time(r["start_time"])
        answer.append({**r, "regressions": figures[r["id"]]})
    return {
        "since": answer_time(start),
        "until": answer_time(end),
        "limit": limit,
        "truncated": len(rows) > limit,
        "runs": answer,
    }
