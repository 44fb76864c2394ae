"""The web pages: server-rendered HTML over the same store functions as the read API.

    GET /                       -> /jobs
    GET /jobs?org=&repo=&sort=&page=
    GET /job?org=&repo=&workflow=&job=&branch=
    GET /runs/<id>
    GET /live
    GET /usage?by=&period=&metric=
    GET /alerts

Every figure comes from :mod:`resmon.store.history` (jobs, runs, trends, top),
:mod:`resmon.store.advice` (recommendations), :mod:`resmon.store.baseline`
(comparisons, flagged runs), :mod:`resmon.store.usage` (CPU- and GiB-hours),
:mod:`resmon.store.alerts` (rules and states) and :mod:`resmon.store.live_view` (running runs,
samples): a page computes nothing of its own, it lays out what the read API
answers.  Every page is limited to :func:`resmon.server.read_scope.read_org`: a
job or run of another organisation is a 404 like one that does not exist, and
lists show only the organisation's jobs.

Charts get their data from ``<script type="application/json">`` blocks read by
``static/charts.js`` (uPlot); the live page updates from ``/api/v1/events`` in
``static/live.js``.  There is no inline script, so the pages run under a CSP
without ``'unsafe-inline'``; without JavaScript every page but its charts and live
updates works.
"""

from __future__ import annotations

import logging
import threading
import time
from typing import Any
from urllib.parse import urlencode

from flask import Blueprint, Response, current_app, redirect, render_template, request, url_for
from peewee import InterfaceError, OperationalError

from resmon.query.kube_yaml import resources_yaml
from resmon.server.read_scope import may_read, read_org, visible_suggestions
from resmon.store import advice, alerts, baseline, history, live_view, usage
from resmon.store.models import RunRegression
from resmon.web import charts
from resmon.web.auth import page_access

log = logging.getLogger(__name__)

bp = Blueprint(
    "web",
    __name__,
    template_folder="templates",
    static_folder="static",
    static_url_path="/assets",
)

PAGE_SIZE = 25
SPARK_RUNS = 20
HISTORY_RUNS = 100
RECENT_RUNS = 20
USAGE_ROWS = 50
MAX_PARAM = 255
MAX_PAGE = 100_000
JOB_SORTS = {
    "name": ("Name", None),
    "last": ("Last run", "last_received_at"),
    "cpu": ("CPU p95", "last_job_cpu_cores_p95"),
    "memory": ("Memory p95", "last_job_memory_bytes_p95"),
    "runs": ("Runs", "run_count"),
}
USAGE_METRICS = {"cpu": "CPU time", "memory": "Memory peak", "duration": "Run time"}
USAGE_PERIODS = ("1d", "7d", "30d", "90d")
USAGE_BY_LABELS = {
    "org": "organisation",
    "repo": "repository",
    "workflow": "workflow",
    "job": "job",
}
USAGE_TABLE_ROWS = 200
CHARTED_GROUPS = 10
ALERT_STATES_SHOWN = 500
# The jobs list's recommendation column: a job's answer is kept until the job gets a
# new run or RECOMMENDATION_TTL passes (its 30-day window moves), so a list page asks
# advice.recommend_job (about 25 ms at 100 runs: the backtest) only for jobs that
# changed.  The job page always asks afresh.
RECOMMENDATION_TTL = 600.0
MAX_CACHED_RECOMMENDATIONS = 10_000
ALERTING = ("cpu_alert", "mem_alert", "both_alert")


class PageError(Exception):
    def __init__(self, status: int, message: str) -> None:
        super().__init__(message)
        self.status = status
        self.message = message


@bp.before_request
def _access() -> Response | None:
    return page_access()


def _error_page(status: int, message: str, suggestions: list[str] | None = None) -> Response:
    body = render_template(
        "error.html", status=status, message=message, suggestions=suggestions or []
    )
    return Response(body, status, mimetype="text/html")


@bp.errorhandler(PageError)
def _page_error(exc: PageError) -> Response:
    return _error_page(exc.status, exc.message)


@bp.errorhandler(history.NotFound)
def _not_found(exc: history.NotFound) -> Response:
    return _error_page(404, exc.message, visible_suggestions(exc.suggestions))


@bp.errorhandler(history.HistoryError)
def _bad_question(exc: history.HistoryError) -> Response:
    return _error_page(400, str(exc))


@bp.errorhandler(OperationalError)
@bp.errorhandler(InterfaceError)
def _database_down(exc: Exception) -> Response:
    log.error("database error while rendering a page: %s", type(exc).__name__)
    response = _error_page(503, "The database is unavailable; retry in a moment.")
    response.headers["Retry-After"] = "1"
    return response


def _arg(name: str) -> str | None:
    value = request.args.get(name)
    if value is not None and (len(value) > MAX_PARAM or "\x00" in value):
        raise PageError(400, f"{name} must be at most {MAX_PARAM} characters without NUL")
    return value or None


def _page() -> int:
    value = request.args.get("page") or "1"
    if not (value.isascii() and value.isdigit()) or not 1 <= int(value[:7]) <= MAX_PAGE:
        raise PageError(400, "page must be a whole number of at least 1")
    return int(value)


def _choice(name: str, choices: Any, default: str) -> str:
    value = _arg(name) or default
    if value not in choices:
        raise PageError(400, f"{name} must be one of {', '.join(choices)}")
    return value


def job_url(row: dict[str, Any]) -> str:
    query = {k: row[k] for k in ("organization", "repository", "workflow", "job")}
    return url_for(
        "web.job",
        org=query["organization"],
        repo=query["repository"],
        workflow=query["workflow"],
        job=query["job"],
    )


def _no_such_job(org: str, repo: str, workflow: str, job: str) -> PageError:
    return PageError(404, f"no job {repo} · {workflow} · {job} in {org}")


@bp.app_template_global()
def page_url(**changes: Any) -> str:
    """This page's URL with some query parameters changed (None removes one)."""
    args = {k: v for k, v in request.args.items()}
    for key, value in changes.items():
        if value is None:
            args.pop(key, None)
        else:
            args[key] = str(value)
    return request.path + ("?" + urlencode(args) if args else "")


@bp.app_template_global()
def link_to_job(row: dict[str, Any]) -> str:
    return job_url(row)


# --- pages ---------------------------------------------------------------------------


@bp.get("/")
def index() -> Response:
    return redirect(url_for("web.jobs"))


@bp.get("/jobs")
def jobs() -> str:
    org, repo = _arg("org"), _arg("repo")
    sort = _choice("sort", JOB_SORTS, "name")
    page = _page()
    scoped = read_org()
    if scoped is not None and org is not None and org != scoped:
        rows: list[dict[str, Any]] = []
        truncated = False
    else:
        answer = history.list_jobs(organization=scoped or org, repository=repo)
        rows, truncated = answer["jobs"], answer["truncated"]
    key = JOB_SORTS[sort][1]
    if key is not None:
        present = [r for r in rows if r.get(key) is not None]
        absent = [r for r in rows if r.get(key) is None]
        rows = sorted(present, key=lambda r: r[key], reverse=True) + absent
    pages = max(1, -(-len(rows) // PAGE_SIZE))
    shown = rows[(page - 1) * PAGE_SIZE : page * PAGE_SIZE]
    for row in shown:
        scope = (row["organization"], row["repository"], row["workflow"], row["job"])
        points = history.trend(*scope, limit=SPARK_RUNS)["points"]
        row["spark_cpu"] = [p.get("job_cpu_cores_p95") for p in points]
        row["spark_memory"] = [p.get("job_memory_bytes_p95") for p in points]
        row["recommendation"] = _list_recommendation(scope, row["last_id"])
    states: dict[tuple[str, str, str, str], list[dict[str, Any]]] = {}
    for state in alerts.list_states(scoped):
        key = (state["organization"], state["repository"], state["workflow"], state["job"])
        states.setdefault(key, []).append(state)
    return render_template(
        "jobs.html",
        jobs=shown,
        total=len(rows),
        truncated=truncated,
        page=page,
        pages=pages,
        sort=sort,
        sorts=JOB_SORTS,
        org=org,
        repo=repo,
        scoped=scoped,
        alert_states=states,
        alerting=ALERTING,
    )


_cache_lock = threading.Lock()


def _list_recommendation(scope: tuple[str, str, str, str], last_id: int) -> dict[str, Any]:
    """The job's recommendation as :func:`advice.recommend_job` answers it, from this
    worker's cache while the job's last run and the time allow (see RECOMMENDATION_TTL)."""
    cache = current_app.extensions.setdefault("resmon_web_recommendations", {})
    now = time.monotonic()
    with _cache_lock:
        hit = cache.get(scope)
    if hit is not None and hit[1] == last_id and now - hit[0] < RECOMMENDATION_TTL:
        return hit[2]
    answer = advice.recommend_job(*scope)["job_recommendation"]
    with _cache_lock:
        if len(cache) >= MAX_CACHED_RECOMMENDATIONS:
            cache.clear()
        cache[scope] = (now, last_id, answer)
    return answer


@bp.get("/job")
def job() -> str:
    names = [_arg(k) for k in ("org", "repo", "workflow", "job")]
    if not all(names):
        raise PageError(400, "a job is named by org, repo, workflow and job")
    org, repo, workflow, name = (str(n) for n in names)
    if not may_read(org):
        raise _no_such_job(org, repo, workflow, name)
    branch = _arg("branch")
    runs = history.job_runs(org, repo, workflow, name, limit=RECENT_RUNS, branch=branch)
    trend = history.trend(org, repo, workflow, name, limit=HISTORY_RUNS, branch=branch)
    recommendation = advice.recommend_job(org, repo, workflow, name)
    ids = [p["id"] for p in trend["points"]] + [r["id"] for r in runs["runs"]]
    flagged = _flagged(ids)
    return render_template(
        "job.html",
        scope=runs,
        runs=runs,
        trend=trend,
        charts=charts.job_charts(trend["points"], flagged),
        flagged=flagged,
        recommendation=recommendation,
        yaml=resources_yaml(recommendation),
        branch=branch,
        branches=sorted({r["branch"] for r in runs["runs"] if r.get("branch")}),
    )


def _flagged(run_ids: list[int]) -> dict[int, list[dict[str, Any]]]:
    """The figures flagged as regressions when each of these runs was pushed."""
    out: dict[int, list[dict[str, Any]]] = {}
    ids = sorted(set(run_ids))
    for start in range(0, len(ids), 500):
        query = (
            RunRegression.select(
                RunRegression.run,
                RunRegression.container,
                RunRegression.metric,
                RunRegression.value,
                RunRegression.median,
                RunRegression.change,
                RunRegression.test,
            )
            .where(RunRegression.run.in_(ids[start : start + 500]))
            .order_by(RunRegression.id)
            .dicts()
        )
        for row in query:
            out.setdefault(row["run"], []).append(row)
    return out


@bp.get("/runs/<run_pk>")
def run(run_pk: str) -> str:
    if not (run_pk.isascii() and run_pk.isdigit()) or len(run_pk) > 18:
        raise PageError(404, f"no run with id {run_pk!r}: ids are the numbers the pages link")
    found = history.get_run(int(run_pk))
    if not may_read(found["organization"]):
        raise PageError(404, f"no run with id {run_pk}")
    payload = found.get("payload") or {}
    timeline = payload.get("timeline") if isinstance(payload, dict) else None
    samples = None
    if found["state"] != "finished" or not isinstance(timeline, list) or len(timeline) < 2:
        samples = live_view.run_history(found["id"])
    config = current_app.extensions["resmon"].config
    comparison = baseline.compare_stored_run(found["id"], config.baseline)
    return render_template(
        "run.html",
        run=found,
        payload=payload if isinstance(payload, dict) else {},
        granularity=samples["granularity"] if samples and samples["buckets"] else "summary",
        charts=charts.run_charts(found, timeline, samples),
        comparison=comparison,
        flagged=_flagged([found["id"]]).get(found["id"], []),
    )


@bp.get("/live")
def live() -> str:
    scoped = read_org()
    answer = live_view.live_runs({"organization": scoped} if scoped is not None else None)
    return render_template("live.html", live=answer)


@bp.get("/usage")
def usage_page() -> str:
    metric = _choice("metric", USAGE_METRICS, "cpu")
    period = _choice("period", USAGE_PERIODS, "7d")
    by = _choice("by", usage.USAGE_BY, "repo")
    scoped = read_org()
    granularity = "hour" if period == "1d" else "day"
    used = usage.usage(by, period, granularity, organization=scoped)
    top = history.top(metric, period=period, limit=USAGE_ROWS, organization=scoped)
    return render_template(
        "usage.html",
        top=top,
        rows=top["jobs"],
        usage=used,
        usage_rows=used["rows"][:USAGE_TABLE_ROWS],
        charts=charts.usage_charts(used, usage.USAGE_BY[by], CHARTED_GROUPS),
        charted_groups=CHARTED_GROUPS,
        by=by,
        by_choices=USAGE_BY_LABELS,
        metric=metric,
        metrics=USAGE_METRICS,
        period=period,
        periods=USAGE_PERIODS,
    )


def _alerting_first(states: list[dict[str, Any]]) -> list[dict[str, Any]]:
    """The states as the store gave them (the most recently changed first), those that
    alert before those that do not."""
    return [s for s in states if s["state"] in ALERTING] + [
        s for s in states if s["state"] not in ALERTING
    ]


@bp.get("/alerts")
def alerts_page() -> str:
    scoped = read_org()
    return render_template(
        "alerts.html",
        summary=alerts.summary(scoped),
        rules=alerts.list_rules(scoped),
        states=_alerting_first(alerts.list_states(scoped, limit=ALERT_STATES_SHOWN)),
        limit=ALERT_STATES_SHOWN,
        alerting=ALERTING,
    )
