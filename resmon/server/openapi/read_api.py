"""OpenAPI paths of the read API (:mod:`resmon.server.read_api`).

Schemas are inline: the rows here are the read API's own (indexed columns, nullable
where a run summary may lack the figure); only the ``Error`` and ``RunSummary``
components are shared with the rest of the document.
"""

from __future__ import annotations

from typing import Any

from resmon.server.openapi.common import error_response, json_response, with_common
from resmon.server.openapi.run_context import CONTEXT_PROPERTIES, STEPS, branch_param
from resmon.server.openapi.run_states import (
    LAST_RUN_STATE_PROPERTIES,
    LIVE_RUN_PROPERTIES,
    PARTIAL_RUNS,
    RUN_STATE_PROPERTIES,
)

NUMBER = {"type": ["number", "null"]}
INTEGER = {"type": ["integer", "null"]}
TIME = {"type": ["string", "null"], "format": "date-time"}
STRING = {"type": "string"}
STEP_PROPERTIES = {
    "command_container": {
        "type": ["string", "null"],
        "maxLength": 255,
        "description": (
            "Which wrapped step of the job the run was: the container its command ran in, "
            "`resmon collect --name` (`command` by default). Null for a sidecar run and for "
            "a peer whose summary has no `command`."
        ),
    },
    "command_name": {
        "type": ["string", "null"],
        "maxLength": 255,
        "description": "The wrapped command's base name (`make`, `pytest`), or null.",
    },
}

HOST = "The host's, the whole machine the job ran on (/proc/stat, MemTotal - MemAvailable): "
JOB = (
    "The job's own processes (wrapper mode: the command's tree; sidecar: the measured containers): "
)
MEMORY_KIND = {
    "type": ["string", "null"],
    "enum": ["pss", "rss", "cgroup", "mixed", None],
    "description": (
        "What the job's memory figures measure: pss (shared pages counted once), rss "
        "(resident pages summed per process), cgroup (the container's own kernel "
        "counter), mixed (several of these)."
    ),
}
# The job's figures of a run, and where a collector that sent no `job` block gets them.
JOB_PROPERTIES = {
    "job_scope": {
        "type": ["string", "null"],
        "enum": ["command", "containers", None],
        "description": (
            "Which processes the job figures cover: command (a wrapped command's "
            "container), containers (the sum over the run's containers: a sidecar run, or "
            "a collector that sent no `job` block, such as the Go collector, where p95 "
            "and peak are the sums of the containers' own, at least those of the summed "
            "series). Null when the summary says nothing about the job."
        ),
    },
    "job_cpu_cores_p95": {**NUMBER, "description": JOB + "CPU p95, in cores (1.0 = one core)."},
    "job_cpu_cores_peak": {**NUMBER, "description": JOB + "CPU peak, in cores."},
    "job_cpu_seconds": {**NUMBER, "description": JOB + "CPU time, in seconds."},
    "job_memory_bytes_p95": {**INTEGER, "description": JOB + "memory p95, in bytes."},
    "job_memory_bytes_peak": {
        **INTEGER,
        "description": JOB + "memory peak (the headline), in bytes; what it is: job_memory_kind.",
    },
    "job_memory_kind": MEMORY_KIND,
    "job_memory_peak_low_bytes": {
        **INTEGER,
        "description": "The range the job's true memory peak lies in: its low end.",
    },
    "job_memory_peak_high_bytes": {**INTEGER, "description": "... and its high end."},
    "job_limit_cpu_cores": {**NUMBER, "description": "The job's CPU limit in cores, where known."},
    "job_limit_memory_bytes": {
        **INTEGER,
        "description": "The job's memory limit in bytes, where known.",
    },
}
HOST_PROPERTIES = {
    "cpu_percent_p95": {**NUMBER, "description": HOST + "CPU p95, percent of all its CPUs."},
    "cpu_percent_peak": {**NUMBER, "description": HOST + "CPU peak, percent of all its CPUs."},
    "mem_bytes_p95": {**INTEGER, "description": HOST + "memory used p95, in bytes."},
    "mem_bytes_peak": {**INTEGER, "description": HOST + "memory used peak, in bytes."},
}

SCOPE_PROPERTIES = {
    "organization": STRING,
    "repository": {**STRING, "description": "Canonical org/repo."},
    "workflow": STRING,
    "job": STRING,
}
# The job's disk I/O and network (resmon.store.io_columns; null when not measured).
IO_PROPERTIES = {
    "job_io_read_bytes": {**INTEGER, "description": "Bytes the job read from storage."},
    "job_io_write_bytes": {**INTEGER, "description": "Bytes the job wrote to storage."},
    "job_io_source": {
        "type": ["string", "null"],
        "enum": ["cgroup", "blkio", "proc", "mixed", None],
        "description": "Where the disk figures come from: the cgroup's io.stat, v1 blkio, "
        "the processes' /proc/PID/io, or several of them.",
    },
    "job_net_rx_bytes": {
        **INTEGER,
        "description": "Bytes received by the job's network namespaces, loopback apart.",
    },
    "job_net_tx_bytes": {
        **INTEGER,
        "description": "Bytes sent by the job's network namespaces, loopback apart.",
    },
}
RUN_ROW = {
    "type": "object",
    "description": (
        "A stored run's indexed columns: the job's own figures (job_*: cores, bytes) and the "
        "host's (cpu_percent_*, mem_bytes_*: the whole machine, percent and bytes)."
    ),
    "required": ["id", "run_id", "received_at"],
    "properties": {
        "id": {"type": "integer", "description": "The stored run's id (GET /api/v1/runs/{id})."},
        **SCOPE_PROPERTIES,
        "run_id": STRING,
        "run_attempt": STRING,
        "received_at": {"type": "string", "format": "date-time"},
        "start_time": TIME,
        "end_time": TIME,
        "duration_seconds": NUMBER,
        "sample_count": INTEGER,
        "cpu_seconds": {**NUMBER, "description": "The run summary's cpu_seconds, as sent."},
        **HOST_PROPERTIES,
        **STEP_PROPERTIES,
        **JOB_PROPERTIES,
        **RUN_STATE_PROPERTIES,
        **CONTEXT_PROPERTIES,
        **IO_PROPERTIES,
    },
}
CONTAINER_ROW = {
    "type": "object",
    "required": ["name"],
    "properties": {
        "name": STRING,
        **{f"cpu_cores_{k}": NUMBER for k in ("p50", "p75", "p95", "p99", "peak", "avg")},
        **{
            f"memory_bytes_{k}": (NUMBER if k == "avg" else INTEGER)
            for k in ("p50", "p75", "p95", "p99", "peak", "avg")
        },
        "cpu_seconds": NUMBER,
        "limit_cpu_cores": NUMBER,
        "limit_memory_bytes": INTEGER,
        "cpu_throttled_seconds": NUMBER,
        "oom_kills": INTEGER,
    },
}
NOT_FOUND_SUGGEST = {
    "description": "No such job, run or container; `suggestions` are the closest names.",
    "content": {
        "application/json": {
            "schema": {
                "type": "object",
                "required": ["error"],
                "properties": {
                    "error": STRING,
                    "suggestions": {"type": "array", "items": STRING},
                },
            }
        }
    },
}


def _param(name: str, description: str, schema: dict[str, Any] | None = None) -> dict[str, Any]:
    return {
        "name": name,
        "in": "query",
        "required": False,
        "description": description,
        "schema": schema or STRING,
    }


LIMIT = _param("limit", "At most this many rows (capped).", {"type": "integer", "minimum": 1})
SINCE = _param(
    "since",
    "Runs received at or after: a period back from now (7d, 12h) or a date/time. Must be "
    "before `until` (since=1d&until=2d is a 400).",
)
UNTIL = _param("until", "Runs received before: a period back from now or a date/time.")
SCOPE_PARAMS = [
    {"name": name, "in": "path", "required": True, "schema": {"type": "string", "minLength": 1}}
    for name in ("organization", "repository", "workflow", "job")
]
SCOPE_NOTE = (
    " The repository is `org%2Frepo` (one segment) or `org/repo` (two); a bare `repo` "
    "is taken under the organization."
)


TRUNCATED_HEADER = {
    "X-Resmon-Truncated": {
        "description": "`true` when more rows match than were returned (row or byte cap).",
        "schema": STRING,
    }
}
UNAUTHORIZED = error_response("Missing or wrong read token.")
BAD_PARAMETER = error_response("Invalid parameter; the error says which and what to use.")
UNAVAILABLE = error_response("Database unavailable; retry later (Retry-After).")
WINDOW = {"since": TIME, "until": TIME}
JOB_ROW = {
    "type": "object",
    "properties": {
        **SCOPE_PROPERTIES,
        "run_count": {"type": "integer"},
        "last_id": {"type": "integer"},
        "last_run_id": {"type": ["string", "null"]},
        "last_received_at": TIME,
        "last_duration_seconds": NUMBER,
        "last_cpu_seconds": NUMBER,
        **{f"last_{k}": v for k, v in HOST_PROPERTIES.items()},
        **{f"last_{k}": v for k, v in JOB_PROPERTIES.items()},
        **LAST_RUN_STATE_PROPERTIES,
    },
}
TREND_JOB_FIELDS = (
    "job_cpu_cores_p95",
    "job_cpu_cores_peak",
    "job_cpu_seconds",
    "job_memory_bytes_p95",
    "job_memory_bytes_peak",
    "job_memory_kind",
    "job_limit_cpu_cores",
    "job_limit_memory_bytes",
)
TREND_POINT = {
    "type": "object",
    "description": (
        "by=run: id, run_id, received_at and the run's step (command_container, "
        "command_name); by=day: day (UTC, YYYY-MM-DD: the day the runs started, or were "
        "received when a run has no start time) and runs. Without a container: "
        "the job's own figures (job_cpu_cores_p95/peak, job_cpu_seconds, "
        "job_memory_bytes_p95/peak, job_memory_kind, the job's limits) and the host's "
        "(cpu_percent_p95/peak, mem_bytes_p95/peak: the whole machine); with one: "
        "cpu_cores_p95/peak, memory_bytes_p95/peak and its limits. Per day, the highest "
        "of the day's runs (job_memory_kind mixed when they differ) and the mean duration. "
        "A running run is no point (no figures yet); a lost run is, with its partial "
        "figures: per run state and partial say so, per day partial_runs counts them."
    ),
    "properties": {
        "id": {"type": "integer"},
        "run_id": STRING,
        "received_at": TIME,
        **STEP_PROPERTIES,
        **RUN_STATE_PROPERTIES,
        "branch": CONTEXT_PROPERTIES["branch"],
        "commit_sha": CONTEXT_PROPERTIES["commit_sha"],
        "day": STRING,
        "runs": {"type": "integer"},
        "partial_runs": PARTIAL_RUNS,
        "duration_seconds": NUMBER,
        **HOST_PROPERTIES,
        **{k: v for k, v in JOB_PROPERTIES.items() if k in TREND_JOB_FIELDS},
        **{
            k: NUMBER
            for k in (
                "cpu_cores_p95",
                "cpu_cores_peak",
                "memory_bytes_p95",
                "memory_bytes_peak",
                "limit_cpu_cores",
                "limit_memory_bytes",
            )
        },
    },
}
TOP_ROW = {
    "type": "object",
    "properties": {
        **SCOPE_PROPERTIES,
        "runs": {"type": "integer", "description": "Runs with figures (running runs have none)."},
        "partial_runs": PARTIAL_RUNS,
        "job_cpu_seconds_total": {**NUMBER, "description": JOB + "CPU time of all runs."},
        "job_cpu_cores_p95_avg": {**NUMBER, "description": JOB + "mean CPU p95, in cores."},
        "job_cpu_cores_peak_max": {**NUMBER, "description": JOB + "highest CPU peak, in cores."},
        "job_memory_bytes_peak_max": {**NUMBER, "description": JOB + "highest memory peak."},
        "job_memory_bytes_p95_avg": {**NUMBER, "description": JOB + "mean memory p95."},
        "job_memory_kind": MEMORY_KIND,
        "cpu_seconds_total": {**NUMBER, "description": "The runs' summaries' cpu_seconds, summed."},
        "cpu_percent_p95_avg": {**NUMBER, "description": HOST + "mean CPU p95, percent."},
        "mem_bytes_peak_max": {**NUMBER, "description": HOST + "highest memory used."},
        "mem_bytes_p95_avg": {**NUMBER, "description": HOST + "mean memory used p95."},
        "duration_seconds_total": NUMBER,
        "duration_seconds_avg": NUMBER,
    },
}


def paths() -> dict[str, Any]:
    return {
        "/api/v1/jobs": _jobs(),
        "/api/v1/jobs/{organization}/{repository}/{workflow}/{job}/runs": _job_runs(),
        "/api/v1/jobs/{organization}/{repository}/{workflow}/{job}/trend": _job_trend(),
        "/api/v1/runs/{id}": _run(),
        "/api/v1/top": _top(),
    }


def _get(
    op_id: str, summary: str, description: str, params: list, ok: dict, rule: str | None = None
) -> dict[str, Any]:
    """A path item with one GET behind the read token; ``rule`` when Flask's differs."""
    item: dict[str, Any] = {"x-flask-rule": rule} if rule else {}
    return {
        **item,
        "get": {
            "operationId": op_id,
            "summary": summary,
            "description": description,
            "security": [{"readToken": []}],
            "parameters": params,
            "responses": with_common(
                {
                    "200": ok,
                    "400": BAD_PARAMETER,
                    "401": UNAUTHORIZED,
                    "404": NOT_FOUND_SUGGEST,
                    "503": UNAVAILABLE,
                }
            ),
        },
    }


def _jobs() -> dict[str, Any]:
    return _get(
        "listJobs",
        "Every job, with its run count and last run's figures",
        "Filter by organization and/or repository (`org/repo`, or the bare name). At most "
        "10,000 jobs and 4 MiB of JSON rows; `truncated` says when more matched.",
        [
            _param("organization", "Only this organization's jobs."),
            _param("repository", "Only this repository's jobs (org/repo or bare name)."),
        ],
        json_response(
            "Jobs, by repository, workflow, job.",
            {
                "type": "object",
                "required": ["jobs"],
                "properties": {
                    "jobs": {"type": "array", "items": JOB_ROW},
                    "truncated": {"type": "boolean"},
                },
            },
            TRUNCATED_HEADER,
        ),
    )


def _job_runs() -> dict[str, Any]:
    return _get(
        "listJobRuns",
        "Runs of one job, newest first",
        "Indexed columns only (no stored summaries parsed). At most `limit` runs (default "
        "20, capped at 1000) and 4 MiB of JSON rows; `truncated` says when more matched. "
        "Every run, whatever its state (running ones without figures)." + SCOPE_NOTE,
        [*SCOPE_PARAMS, LIMIT, SINCE, UNTIL, branch_param("the run's context")],
        json_response(
            "The runs; `truncated` (and the X-Resmon-Truncated header) when more match.",
            {
                "type": "object",
                "required": ["runs", "truncated", "limit"],
                "properties": {
                    **SCOPE_PROPERTIES,
                    **WINDOW,
                    "branch": STRING,
                    "limit": {"type": "integer"},
                    "truncated": {"type": "boolean"},
                    "runs": {"type": "array", "items": RUN_ROW},
                },
            },
            TRUNCATED_HEADER,
        ),
        "/api/v1/jobs/<path:scope>/runs",
    )


def _job_trend() -> dict[str, Any]:
    return _get(
        "jobTrend",
        "p95 and peak of CPU and memory per run or per day, oldest first",
        "The last `limit` points (default 30)." + SCOPE_NOTE,
        [
            *SCOPE_PARAMS,
            _param("container", "One container's figures instead of the job's and the host's."),
            _param(
                "by",
                "Group per run or per UTC day the runs started (received, for a run "
                "without a start time); per day, `since` and `until` select by that "
                "time too.",
                {"type": "string", "enum": ["run", "day"]},
            ),
            LIMIT,
            SINCE,
            UNTIL,
            branch_param("a trend of one branch"),
        ],
        json_response(
            "The points.",
            {
                "type": "object",
                "required": ["by", "points"],
                "properties": {
                    **SCOPE_PROPERTIES,
                    **WINDOW,
                    "branch": STRING,
                    "container": {"type": ["string", "null"]},
                    "by": {"type": "string", "enum": ["run", "day"]},
                    "points": {"type": "array", "items": TREND_POINT},
                },
            },
        ),
        "/api/v1/jobs/<path:scope>/trend",
    )


def _run() -> dict[str, Any]:
    return _get(
        "getRun",
        "One stored run: columns, per-container statistics and the run summary",
        "The id is the one the push answered and the runs list shows. A running run has "
        "no figures and no containers yet, and its payload is what its first batch said "
        "(start_time, state); a lost run's payload is its partial summary.",
        [
            {
                "name": "id",
                "in": "path",
                "required": True,
                "schema": {"type": "string", "pattern": "^[0-9]+$"},
            }
        ],
        json_response(
            "The run.",
            {
                **RUN_ROW,
                "required": [*RUN_ROW["required"], "containers", "payload"],
                "properties": {
                    **RUN_ROW["properties"],
                    **LIVE_RUN_PROPERTIES,
                    "containers": {"type": "array", "items": CONTAINER_ROW},
                    "steps": STEPS,
                    "payload": {"$ref": "#/components/schemas/RunSummary"},
                },
            },
        ),
        "/api/v1/runs/<run_pk>",
    )


def _top() -> dict[str, Any]:
    return _get(
        "topJobs",
        "Jobs ranked by cost over a period",
        (
            "By the job's own figures (scope=job, the default): metric=cpu ranks by the "
            "job's total CPU time (then its mean CPU p95 in cores), memory by the highest "
            "job memory peak. By the host's, the whole machine's (scope=host): cpu by the "
            "mean host CPU p95 (then CPU time), memory by the highest host memory used. "
            "duration ranks by total run time either way. Every row carries all figures, "
            "the job's (job_*) and the host's."
        ),
        [
            _param(
                "metric",
                "What to rank by.",
                {"type": "string", "enum": ["cpu", "memory", "duration"]},
            ),
            _param(
                "scope",
                "Whose figures rank: job (the job's own processes, the default) or host (the "
                "whole machine the job ran on). Anything else is a 400.",
                {"type": "string", "enum": ["job", "host"]},
            ),
            _param(
                "period",
                "How far back from `until` (default 7d): 30m, 12h, 7d, 2w; more than 0 "
                "(period=0d is a 400).",
            ),
            UNTIL,
            LIMIT,
        ],
        json_response(
            "The ranking.",
            {
                "type": "object",
                "required": ["metric", "scope", "jobs"],
                "properties": {
                    "metric": STRING,
                    "scope": {"type": "string", "enum": ["job", "host"]},
                    "ranked_by": {
                        "type": "array",
                        "items": STRING,
                        "description": "The row fields the ranking sorts on, in order.",
                    },
                    **WINDOW,
                    "limit": {"type": "integer"},
                    "jobs": {"type": "array", "items": TOP_ROW},
                },
            },
        ),
    )
