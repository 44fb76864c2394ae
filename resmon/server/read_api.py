"""The read API for people and scripts, behind the read token.

    GET /api/v1/jobs?organization=&repository=
    GET /api/v1/jobs/{org}/{repo}/{workflow}/{job}/runs?limit=&since=&until=&branch=
    GET /api/v1/jobs/{org}/{repo}/{workflow}/{job}/trend?container=&by=run|day&limit=&since=&until=&branch=
    GET /api/v1/runs/{id}
    GET /api/v1/top?metric=cpu|memory|duration&scope=job|host&period=7d&until=&limit=

Every answer comes from :mod:`resmon.store.history` (indexed columns; only one run's
stored summary is ever parsed), exactly as ``resmon query --db`` gets it.  The
repository in a job path is ``org%2Frepo`` (one segment) or ``org/repo`` (two),
as in the wire API's query route.  A job or run that does not exist is a 404 whose
``suggestions`` lists the closest job (or container) names.

Rows carry the job's own figures (``job_*``) beside the host's (``cpu_percent_*``,
``mem_bytes_*``: the whole machine); ``top`` ranks by the job's unless
``scope=host``.
"""

from __future__ import annotations

import logging
from urllib.parse import unquote, urlsplit

from flask import Blueprint, Response, request
from peewee import InterfaceError, OperationalError

from resmon.server import read_scope
from resmon.server.api import json_response, require_read_token
from resmon.server.errors import ApiError
from resmon.store import history
from resmon.store.scope import job_not_found

log = logging.getLogger(__name__)

bp = Blueprint("read_api", __name__)

JOBS_PREFIX = "/api/v1/jobs/"
MAX_PARAM = 255
MAX_LIMIT_DIGITS = 9


def guard_reads(blueprint: Blueprint, what: str) -> None:
    """The read token before every request of ``blueprint``, and its answers for a
    question that finds nothing (404 with suggestions), a bad question (400) and a
    database that is down (503, logged as an error while reading ``what``)."""

    def authorize() -> None:
        require_read_token()

    def not_found(exc: history.NotFound) -> Response:
        suggestions = read_scope.visible_suggestions(exc.suggestions)
        return json_response({"error": exc.message, "suggestions": suggestions}, 404)

    def bad_question(exc: history.HistoryError) -> Response:
        return json_response({"error": str(exc)}, 400)

    def database_down(exc: Exception) -> Response:
        log.error("database error while reading %s: %s", what, type(exc).__name__)
        response = json_response({"error": "database unavailable, retry later"}, 503)
        response.headers["Retry-After"] = "1"
        return response

    blueprint.before_request(authorize)
    blueprint.register_error_handler(history.NotFound, not_found)
    blueprint.register_error_handler(history.HistoryError, bad_question)
    blueprint.register_error_handler(OperationalError, database_down)
    blueprint.register_error_handler(InterfaceError, database_down)


guard_reads(bp, "history")


def text_arg(name: str) -> str | None:
    value = request.args.get(name)
    if value is not None and len(value) > MAX_PARAM:
        raise ApiError(400, f"{name} is longer than {MAX_PARAM} characters")
    if value is not None and "\x00" in value:
        # PostgreSQL text cannot hold NUL (the driver refuses the query), and no
        # stored name contains one.
        raise ApiError(400, f"{name} contains a NUL character")
    return value or None


def _limit() -> int | None:
    return count_arg("limit")


def count_arg(name: str) -> int | None:
    """A count parameter (``limit``, ``runs``): a whole number of at least 1, or None."""
    value = request.args.get(name)
    if value is None or value == "":
        return None
    digits = value.lstrip("0")
    if not (value.isascii() and value.isdigit()) or not digits:
        raise ApiError(400, f"{name} must be a whole number of at least 1")
    if len(digits) > MAX_LIMIT_DIGITS:
        # Far above every cap, which applies below as to any large limit; and
        # int() refuses strings of over 4,300 digits.
        return 10**MAX_LIMIT_DIGITS
    return int(digits)


def job_scope(path: str, suffix: str) -> tuple[str, str, str, str]:
    """(org, repo, workflow, job) from ``/api/v1/jobs/<scope>/<suffix>``.

    WSGI servers decode %2F before routing, so the raw request URI is split first
    when the server provides it (gunicorn's RAW_URI, REQUEST_URI elsewhere): a
    workflow name with an encoded slash then stays one segment.
    """
    segments: list[str] | None = None
    raw = request.environ.get("RAW_URI") or request.environ.get("REQUEST_URI")
    if raw:
        raw_path = urlsplit(raw).path
        tail = f"/{suffix}"
        if raw_path.startswith(JOBS_PREFIX) and raw_path.endswith(tail):
            inner = raw_path[len(JOBS_PREFIX) : -len(tail)]
            segments = [unquote(s) for s in inner.split("/")]
    if segments is None:
        segments = path.split("/")
    if len(segments) == 5:
        segments = [segments[0], f"{segments[1]}/{segments[2]}", segments[3], segments[4]]
    if len(segments) != 4 or not all(segments) or any("\x00" in s for s in segments):
        # NUL: no stored name holds one, and PostgreSQL text cannot.
        raise ApiError(
            404,
            "not found: use /api/v1/jobs/{organization}/{repository}/{workflow}/{job}/" + suffix,
        )
    org, repo, workflow, job = segments
    if not read_scope.may_read(org):
        # Another organisation's job answers as one never stored (suggestions of the
        # organisation's own jobs only), so a scoped token learns nothing of it.
        raise job_not_found(org, repo, workflow, job)
    return org, repo, workflow, job


def scoped_limit(limit: int | None, maximum: int) -> int | None:
    """The limit to ask the store for: ``maximum`` for a request limited to one
    organisation (whose rows are then picked by :func:`cut_to_scope`), else ``limit``."""
    return limit if read_scope.read_org() is None else maximum


def cut_to_scope(rows: list[dict], limit: int | None, default: int) -> tuple[list[dict], bool]:
    """The rows of a ranked list the request may see, at most ``limit`` (``default``
    when not given); True when some were cut."""
    if read_scope.read_org() is None:
        return rows, False
    kept = read_scope.visible(rows)
    wanted = default if limit is None else limit
    return kept[:wanted], len(kept) > wanted


@bp.get("/api/v1/jobs")
def jobs() -> Response:
    organization = text_arg("organization")
    scoped = read_scope.read_org()
    if scoped is not None:
        if organization is not None and organization != scoped:
            return json_response({"jobs": [], "truncated": False})
        organization = scoped
    body = history.list_jobs(organization=organization, repository=text_arg("repository"))
    headers = {"X-Resmon-Truncated": "true"} if body["truncated"] else None
    return json_response(body, 200, headers)


@bp.get("/api/v1/jobs/<path:scope>/runs")
def job_runs(scope: str) -> Response:
    org, repo, workflow, job = job_scope(scope, "runs")
    body = history.job_runs(
        org,
        repo,
        workflow,
        job,
        limit=_limit(),
        since=text_arg("since"),
        until=text_arg("until"),
        branch=text_arg("branch"),
    )
    headers = {"X-Resmon-Truncated": "true"} if body["truncated"] else None
    return json_response(body, 200, headers)


@bp.get("/api/v1/jobs/<path:scope>/trend")
def job_trend(scope: str) -> Response:
    org, repo, workflow, job = job_scope(scope, "trend")
    body = history.trend(
        org,
        repo,
        workflow,
        job,
        container=text_arg("container"),
        by=text_arg("by") or "run",
        limit=_limit(),
        since=text_arg("since"),
        until=text_arg("until"),
        branch=text_arg("branch"),
    )
    return json_response(body)


@bp.get("/api/v1/runs/<run_pk>")
def run(run_pk: str) -> Response:
    # Not an <int:> rule: "/api/v1/runs/abc" gets a JSON 404 that says why.
    if not (run_pk.isascii() and run_pk.isdigit()) or len(run_pk) > 18:
        raise ApiError(404, f"no run with id {run_pk!r}: ids are the numbers `runs` lists")
    body = history.get_run(int(run_pk))
    if not read_scope.may_read(body["organization"]):
        raise history.NotFound(f"no run with id {int(run_pk)}")
    return json_response(body)


@bp.get("/api/v1/top")
def top() -> Response:
    return json_response(
        history.top(
            text_arg("metric") or "cpu",
            scope=text_arg("scope") or "job",
            period=text_arg("period"),
            until=text_arg("until"),
            limit=_limit(),
            organization=read_scope.read_org(),
        )
    )
