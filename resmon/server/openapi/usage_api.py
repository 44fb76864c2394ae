"""OpenAPI path of usage by period (:mod:`resmon.server.usage_api`)."""

from __future__ import annotations

from typing import Any

from resmon.server.openapi.common import json_response, with_common
from resmon.server.openapi.read_api import (
    BAD_PARAMETER,
    TRUNCATED_HEADER,
    UNAUTHORIZED,
    UNAVAILABLE,
    _param,
)

NUMBER = {"type": ["number", "null"]}
USAGE_ROW = {
    "type": "object",
    "required": ["bucket", "runs", "cpu_hours", "gib_hours"],
    "properties": {
        "organization": {"type": "string"},
        "repository": {"type": "string", "description": "org/repo (by=repo, workflow, job)."},
        "workflow": {"type": "string"},
        "job": {"type": "string"},
        "bucket": {
            "type": "string",
            "description": "The UTC day (YYYY-MM-DD) or hour (YYYY-MM-DDTHH:00:00Z).",
        },
        "runs": {"type": "integer", "description": "Runs received then (running ones not)."},
        "partial_runs": {"type": "integer", "description": "Of which lost (partial figures)."},
        "cpu_hours": {
            **NUMBER,
            "description": "The jobs' own CPU time in hours (one core busy for an hour is 1).",
        },
        "gib_hours": {
            **NUMBER,
            "description": (
                "Each run's job memory peak in GiB times its duration in hours, summed: what "
                "a runner sized to the peak held for the run (not a memory-time integral)."
            ),
        },
        "duration_hours": {**NUMBER, "description": "The runs' wall-clock time in hours."},
        "memory_peak_max_bytes": {
            "type": ["integer", "null"],
            "description": "The highest job memory peak of a run.",
        },
        "oom_kills": {"type": "integer", "description": "OOM kills in the runs' containers."},
        "cpu_throttled_seconds": {
            "type": "number",
            "description": "CPU throttling of the runs' containers (cgroup cpu.stat), seconds.",
        },
    },
}


def paths() -> dict[str, Any]:
    return {
        "/api/v1/usage": {
            "get": {
                "operationId": "usageByPeriod",
                "summary": "CPU-hours and GiB-hours per group and per day or hour",
                "description": (
                    "For capacity planning and chargeback: per organization, repository, "
                    "workflow or job (`by`), per UTC day or hour (`granularity`), over the "
                    "`period` up to now (starting at the day or hour `period` ago). A run "
                    "counts when it was received. From the hourly and daily rollups and "
                    "the runs not rolled up yet. At most 10,000 rows; `truncated` says when "
                    "cut. A read token limited to one organisation sees its rows only."
                ),
                "security": [{"readToken": []}],
                "parameters": [
                    _param(
                        "by",
                        "Group by (default job).",
                        {"type": "string", "enum": ["org", "repo", "workflow", "job"]},
                    ),
                    _param(
                        "period",
                        "How far back (default 30d): 12h, 7d, 2w; more than 0.",
                    ),
                    _param(
                        "granularity",
                        "One row per group and UTC day (default) or hour.",
                        {"type": "string", "enum": ["day", "hour"]},
                    ),
                    _param("organization", "Only this organization's runs."),
                    _param("repository", "Only this repository's runs (org/repo or bare name)."),
                ],
                "responses": with_common(
                    {
                        "200": json_response(
                            "Rows by group, then time, and their totals.",
                            {
                                "type": "object",
                                "required": ["by", "granularity", "rows", "totals"],
                                "properties": {
                                    "by": {"type": "string"},
                                    "granularity": {"type": "string"},
                                    "period": {"type": "string"},
                                    "organization": {"type": ["string", "null"]},
                                    "repository": {"type": ["string", "null"]},
                                    "since": {"type": "string", "format": "date-time"},
                                    "until": {"type": "string", "format": "date-time"},
                                    "truncated": {"type": "boolean"},
                                    "totals": {
                                        "type": "object",
                                        "properties": {
                                            "runs": {"type": "integer"},
                                            "cpu_hours": {"type": "number"},
                                            "gib_hours": {"type": "number"},
                                            "duration_hours": {"type": "number"},
                                        },
                                    },
                                    "rows": {"type": "array", "items": USAGE_ROW},
                                },
                            },
                            TRUNCATED_HEADER,
                        ),
                        "400": BAD_PARAMETER,
                        "401": UNAUTHORIZED,
                        "503": UNAVAILABLE,
                    }
                ),
            }
        }
    }
