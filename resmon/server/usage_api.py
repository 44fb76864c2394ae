"""Usage by period behind the read token: ``GET /api/v1/usage``.

    GET /api/v1/usage?by=org|repo|workflow|job&period=30d&granularity=day|hour
                     &organization=&repository=

CPU-hours and GiB-hours (memory peak x duration) per group and per day or hour, from
:func:`resmon.store.usage.usage` (the rollups, and the runs not rolled up yet), as
``resmon query usage --db`` gets it.  A request limited to one organisation
(:func:`resmon.server.read_scope.read_org`) sees that organisation's rows only; asking
for another's is an empty answer, as for an organisation with no runs.
"""

from __future__ import annotations

from flask import Blueprint, Response

from resmon.server import read_scope
from resmon.server.api import json_response
from resmon.server.read_api import guard_reads, text_arg
from resmon.store import usage as store_usage

bp = Blueprint("usage_api", __name__)
guard_reads(bp, "usage")


@bp.get("/api/v1/usage")
def usage() -> Response:
    organization = text_arg("organization")
    scoped = read_scope.read_org()
    empty = scoped is not None and organization is not None and organization != scoped
    body = store_usage.usage(
        text_arg("by") or "job",
        text_arg("period"),
        text_arg("granularity") or "day",
        organization=scoped or organization,
        repository=text_arg("repository"),
    )
    if empty:
        body["rows"] = []
        body["totals"] = {k: 0 if k == "runs" else 0.0 for k in body["totals"]}
        body["organization"] = organization
    headers = {"X-Resmon-Truncated": "true"} if body["truncated"] else None
    return json_response(body, 200, headers)
