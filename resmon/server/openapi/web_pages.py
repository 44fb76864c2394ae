"""The OpenAPI paths of the web pages (:mod:`resmon.web.pages`): HTML for people, not
an API, documented so that every served route is.  Each page needs a signed-in
session (or the read token as a Bearer header); without one a GET is a 303 to
``/login?next=<the page>``."""

from __future__ import annotations

from typing import Any

from resmon.server.openapi.common import with_common

HTML = {"text/html": {"schema": {"type": "string"}}}
TO_LOGIN = {
    "description": "Not signed in: to /login?next=<this page>.",
    "headers": {"Location": {"schema": {"type": "string"}}},
}


def _query(name: str, description: str, enum: list[str] | None = None) -> dict[str, Any]:
    schema: dict[str, Any] = {"type": "string"}
    if enum:
        schema["enum"] = enum
    return {
        "name": name,
        "in": "query",
        "required": False,
        "description": description,
        "schema": schema,
    }


def _page(
    operation: str, summary: str, parameters: list[dict[str, Any]] | None = None
) -> dict[str, Any]:
    return {
        "get": {
            "operationId": operation,
            "summary": summary,
            "tags": ["web"],
            "parameters": parameters or [],
            "responses": {
                **with_common(
                    {
                        "200": {"description": "The page.", "content": HTML},
                        "303": TO_LOGIN,
                        "400": {
                            "description": "A question the page cannot answer.",
                            "content": HTML,
                        },
                    }
                ),
                # The pages' own errors are pages, not JSON.
                "404": {"description": "No such job or run (an error page).", "content": HTML},
                "503": {"description": "Database unavailable (an error page).", "content": HTML},
            },
        }
    }


def paths() -> dict[str, Any]:
    scope = [
        _query("org", "Organisation."),
        _query("repo", "Repository (org/repo)."),
    ]
    job = [*scope, _query("workflow", "Workflow file."), _query("job", "Job name.")]
    return {
        "/": {
            "get": {
                "operationId": "webIndex",
                "summary": "To the jobs page",
                "tags": ["web"],
                "responses": with_common({"302": {"description": "To /jobs."}, "303": TO_LOGIN}),
            }
        },
        "/jobs": _page(
            "webJobs",
            "Every job with its last run, p95 against the limit, alerts and advice (HTML)",
            [
                *scope,
                _query("sort", "Column to sort by."),
                _query("page", "Page number, from 1."),
            ],
        ),
        "/job": _page(
            "webJob",
            "One job: history charts, recommendation, recent runs (HTML)",
            [*job, _query("branch", "Only the runs of this branch.")],
        ),
        "/runs/{run_pk}": {
            **_page("webRun", "One run: containers, timeline, processes, baseline (HTML)"),
            "parameters": [
                {
                    "name": "run_pk",
                    "in": "path",
                    "required": True,
                    "description": "The run's id (as in the read API).",
                    "schema": {"type": "string"},
                }
            ],
        },
        "/live": _page("webLive", "Running jobs, updated from the event stream (HTML)"),
        "/usage": _page(
            "webUsage",
            "CPU-hours and GiB-hours by period, and the top jobs (HTML)",
            [
                _query("by", "Group by org, repo, workflow or job."),
                _query("period", "Period to cover."),
                _query("metric", "What the top jobs are ranked by."),
            ],
        ),
        "/alerts": _page("webAlerts", "Alert rules and their states (HTML)"),
        "/assets/{filename}": {
            "x-flask-rule": "/assets/<path:filename>",
            "get": {
                "operationId": "webAsset",
                "summary": "The pages' stylesheets, scripts and vendored chart library",
                "tags": ["web"],
                "parameters": [
                    {
                        "name": "filename",
                        "in": "path",
                        "required": True,
                        "schema": {"type": "string"},
                    }
                ],
                "responses": with_common({"200": {"description": "The file."}}),
            },
        },
    }
