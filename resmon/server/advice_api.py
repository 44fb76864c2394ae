"""The advice read API, behind the read token: recommendations and regressions.

    GET /api/v1/jobs/{org}/{repo}/{workflow}/{job}/recommendation?since=30d&until=&runs=100
    GET /api/v1/recommendations?since=30d&until=&runs=100&by=free|risk&limit=50
    GET /api/v1/regressions?since=7d&until=&limit=100

Answers from :mod:`resmon.store.advice` and :mod:`resmon.store.baseline`, as
``resmon query recommend`` and ``resmon query regressions --db`` get them.  A token
of one organisation gets that organisation's rows of the fleet lists (taken from
the fleet-wide list at its maximum length, so ``truncated`` when that was cut).  The
job path is the read API's (:func:`resmon.server.read_api.job_scope`).
"""

from __future__ import annotations

import logging

from flask import Blueprint, Response

from resmon.server import read_scope
from resmon.server.api import json_response
from resmon.server.read_api import (
    count_arg,
    cut_to_scope,
    guard_reads,
    job_scope,
    scoped_limit,
    text_arg,
)
from resmon.store import advice, baseline

log = logging.getLogger(__name__)

bp = Blueprint("advice_api", __name__)


guard_reads(bp, "advice")


@bp.get("/api/v1/jobs/<path:scope>/recommendation")
def job_recommendation(scope: str) -> Response:
    org, repo, workflow, job = job_scope(scope, "recommendation")
    body = advice.recommend_job(
        org,
        repo,
        workflow,
        job,
        since=text_arg("since") or advice.DEFAULT_SINCE,
        until=text_arg("until"),
        runs=count_arg("runs"),
    )
    return json_response(body)


@bp.get("/api/v1/recommendations")
def recommendations() -> Response:
    limit = count_arg("limit")
    body = advice.recommend_fleet(
        since=text_arg("since") or advice.DEFAULT_SINCE,
        until=text_arg("until"),
        runs=count_arg("runs"),
        by=text_arg("by") or "free",
        limit=scoped_limit(limit, advice.MAX_FLEET_LIMIT),
    )
    _to_scope(body, "jobs", limit, advice.DEFAULT_FLEET_LIMIT, advice.MAX_FLEET_LIMIT)
    headers = {"X-Resmon-Truncated": "true"} if body["truncated"] else None
    return json_response(body, 200, headers)


@bp.get("/api/v1/regressions")
def regressions() -> Response:
    limit = count_arg("limit")
    body = baseline.list_regressions(
        since=text_arg("since") or "7d",
        until=text_arg("until"),
        limit=scoped_limit(limit, baseline.MAX_REGRESSIONS_LIMIT),
    )
    _to_scope(
        body, "runs", limit, baseline.DEFAULT_REGRESSIONS_LIMIT, baseline.MAX_REGRESSIONS_LIMIT
    )
    headers = {"X-Resmon-Truncated": "true"} if body["truncated"] else None
    return json_response(body, 200, headers)


def _to_scope(body: dict, key: str, limit: int | None, default: int, maximum: int) -> None:
    """A fleet-wide list cut down to the organisation the request may read: the store
    was asked for ``maximum`` rows (:func:`scoped_limit`), the organisation's first
    ``limit`` stay; ``truncated`` also when the fleet-wide list was cut."""
    if read_scope.read_org() is None:
        return
    wanted = min(limit or default, maximum)
    body[key], cut = cut_to_scope(body[key], wanted, wanted)
    body["limit"] = wanted
    body["truncated"] = cut or body["truncated"]
