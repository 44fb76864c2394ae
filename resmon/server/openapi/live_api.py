"""OpenAPI paths of the live API (:mod:`resmon.server.live_api`): live batches in, the
live view and a run's samples out."""

from __future__ import annotations

from typing import Any

from resmon.server.openapi.common import UNAUTHORIZED, error_response, json_response, with_common
from resmon.server.openapi.read_api import NUMBER, STRING, TIME, UNAVAILABLE, _get

NULLABLE_NUMBER = {"type": ["number", "null"], "minimum": 0}
NAME = {"type": "string", "minLength": 1, "maxLength": 255}
# Disk I/O and network totals since the run's first reading (resmon.collect.io_run):
# a measured container's (network: its namespace's, loopback apart), the job's sums.
IO_FIGURES = {
    "io_read_bytes": NULLABLE_NUMBER,
    "io_write_bytes": NULLABLE_NUMBER,
    "net_rx_bytes": NULLABLE_NUMBER,
    "net_tx_bytes": NULLABLE_NUMBER,
}
HOST_FIGURES = {
    "type": ["object", "null"],
    "properties": {
        "cpu_percent": NULLABLE_NUMBER,
        "mem_used_bytes": NULLABLE_NUMBER,
        "mem_total_bytes": NULLABLE_NUMBER,
    },
}
JOB_FIGURES = {
    "type": ["object", "null"],
    "properties": {
        "cpu_cores": NULLABLE_NUMBER,
        "memory_bytes": NULLABLE_NUMBER,
        "cpu_seconds": NULLABLE_NUMBER,
        **IO_FIGURES,
    },
}
CONTAINER_FIGURES = {
    "type": "object",
    "properties": {
        "cpu_cores": NULLABLE_NUMBER,
        "memory_bytes": NULLABLE_NUMBER,
        "cpu_seconds": NULLABLE_NUMBER,
        "memory_kind": {"type": ["string", "null"], "maxLength": 16},
        "limit_cpu_cores": NULLABLE_NUMBER,
        "limit_memory_bytes": NULLABLE_NUMBER,
        **IO_FIGURES,
    },
}
SAMPLE = {
    "type": "object",
    "required": ["t"],
    "properties": {
        "t": {"type": "string", "format": "date-time"},
        "elapsed": NULLABLE_NUMBER,
        "host": HOST_FIGURES,
        "job": JOB_FIGURES,
        "containers": {
            "type": ["object", "null"],
            "maxProperties": 1000,
            "additionalProperties": CONTAINER_FIGURES,
        },
    },
}
BATCH = {
    "type": "object",
    "required": ["execution", "run", "batch"],
    "properties": {
        "execution": {"$ref": "#/components/schemas/Execution"},
        "run": {
            "type": "object",
            "required": ["run_key"],
            "properties": {
                "run_key": {
                    "type": "string",
                    "pattern": "^[\\x21-\\x7e]{1,64}$",
                    "description": "A uuid4 made once per collect run; also in the final "
                    "push's run_summary.collector.run_key.",
                },
                "start_time": {"type": ["string", "null"], "format": "date-time"},
                "host": {**NAME, "type": ["string", "null"]},
                "live_interval_seconds": {
                    "type": ["number", "null"],
                    "exclusiveMinimum": 0,
                    "maximum": 86400,
                },
                "interval_seconds": {
                    "type": ["number", "null"],
                    "exclusiveMinimum": 0,
                    "maximum": 86400,
                },
                "mode": {"type": ["string", "null"], "maxLength": 32},
                "command_container": {**NAME, "type": ["string", "null"]},
            },
        },
        "batch": {
            "type": "object",
            "required": ["seq", "samples"],
            "properties": {
                "seq": {"type": "integer", "minimum": 0, "maximum": 2**62},
                "samples": {"type": "array", "minItems": 1, "maxItems": 5000, "items": SAMPLE},
            },
        },
    },
}
SNAPSHOT = {
    "type": ["object", "null"],
    "description": "The run's latest sample: `host_stats` are the host's figures.",
    "properties": {
        "t": {"type": ["string", "null"]},
        "host_stats": HOST_FIGURES,
        "job": JOB_FIGURES,
        "containers": {"type": ["object", "null"], "additionalProperties": CONTAINER_FIGURES},
    },
}
LIVE_RUN = {
    "type": "object",
    "required": ["id", "organization", "repository", "workflow", "job", "state"],
    "properties": {
        "id": {"type": "integer"},
        "organization": STRING,
        "repository": STRING,
        "workflow": STRING,
        "job": STRING,
        "run_id": STRING,
        "run_attempt": STRING,
        "host": {"type": ["string", "null"]},
        "state": {"type": "string", "enum": ["running"]},
        "start_time": TIME,
        "last_batch_at": TIME,
        "live_interval_seconds": NUMBER,
        "command_container": {"type": ["string", "null"]},
        "snapshot": SNAPSHOT,
    },
}
LIVE_HOST = {
    "type": "object",
    "required": ["host", "runs"],
    "properties": {
        "host": {"type": ["string", "null"]},
        "t": {"type": ["string", "null"]},
        "cpu_percent": NUMBER,
        "mem_used_bytes": NUMBER,
        "mem_total_bytes": NUMBER,
        "runs": {"type": "integer", "description": "Running runs on this host."},
    },
}
AVG_MAX = {
    "type": ["object", "null"],
    "properties": {"avg": {"type": "number"}, "max": {"type": "number"}},
}
FIGURES = {"type": "object", "additionalProperties": AVG_MAX}
BUCKET = {
    "type": "object",
    "required": ["t", "samples", "host", "job", "containers"],
    "properties": {
        "t": {"type": "string", "format": "date-time", "description": "The bucket's start."},
        "samples": {"type": "integer"},
        "host": FIGURES,
        "job": FIGURES,
        "containers": {"type": "object", "additionalProperties": FIGURES},
    },
}


def paths() -> dict[str, Any]:
    return {
        "/api/v1/metrics/live": {"post": _post_batch()},
        "/api/v1/live": _live(),
        "/api/v1/runs/{id}/samples": _samples(),
    }


def _post_batch() -> dict[str, Any]:
    stored = {
        "type": "object",
        "required": ["run", "state", "stored"],
        "properties": {
            "run": {"type": "integer"},
            "state": {"type": "string", "enum": ["running", "finished", "lost"]},
            "stored": {"type": "string", "enum": ["created", "duplicate"]},
        },
    }
    return {
        "operationId": "pushLiveBatch",
        "summary": "A batch of a running job's samples",
        "description": (
            "Sent by `resmon collect` every --live-interval with the job's push token and "
            "`Idempotency-Key: <run_key>:<seq>`. The first batch of a run_key creates the "
            "run as `running`; each batch is stored once per (run, seq). A running run "
            "without a batch for max(3 x live_interval_seconds, `serve --live-timeout`) "
            "becomes `lost` with a partial summary from its samples. A batch for a finished "
            "run is stored and changes nothing else. At most 256 KiB."
        ),
        "security": [{"pushToken": []}],
        "requestBody": {"required": True, "content": {"application/json": {"schema": BATCH}}},
        "responses": with_common(
            {
                "201": json_response("Stored.", stored),
                "200": json_response("Stored before (a retried batch): nothing changed.", stored),
                "400": error_response("Invalid batch; the error says where."),
                "401": UNAUTHORIZED,
                "408": error_response("Body not received within the server's --io-timeout."),
                "413": error_response("Body over 256 KiB (or the server's --max-body)."),
                "422": error_response("This seq was stored before with other samples."),
                "503": UNAVAILABLE,
            }
        ),
    }


def _scope_param(name: str) -> dict[str, Any]:
    return {
        "name": name,
        "in": "query",
        "required": False,
        "description": f"Only runs of this {name} (exact).",
        "schema": {"type": "string", "maxLength": 255},
    }


def _live() -> dict[str, Any]:
    body = {
        "type": "object",
        "required": ["runs", "hosts"],
        "properties": {
            "runs": {"type": "array", "items": LIVE_RUN},
            "hosts": {"type": "array", "items": LIVE_HOST},
        },
    }
    return _get(
        "getLive",
        "Every running run, its latest snapshot, and each runner host's latest figures",
        "Runs whose collector streams batches and that are neither finished nor lost, "
        "oldest first, with the latest sample of the job, of each container and of the "
        "host; `hosts` has the latest CPU and memory of each runner host among them.",
        [_scope_param(n) for n in ("organization", "repository", "workflow", "job")],
        json_response("The running runs.", body),
    )


def _samples() -> dict[str, Any]:
    body = {
        "type": "object",
        "required": ["run", "state", "granularity", "buckets"],
        "properties": {
            "run": {"type": "integer"},
            "state": {"type": "string", "enum": ["running", "finished", "lost"]},
            "partial": {"type": "boolean"},
            "granularity": {"type": "string", "enum": ["raw", "1m", "5m", "1h"]},
            "since": TIME,
            "until": TIME,
            "truncated": {"type": "boolean", "description": "Only the last 20,000 buckets."},
            "buckets": {"type": "array", "items": BUCKET},
        },
    }
    time = {"type": "string", "format": "date-time"}
    return _get(
        "getRunSamples",
        "A run's streamed samples, per bucket: average and maximum",
        "Per bucket the average and maximum of the host's CPU percent and memory used, and "
        "of the job's and each container's CPU cores and memory bytes. Without "
        "`granularity` it is chosen from the range (by default the run's first to last "
        "sample): raw up to 1 h, 1m up to 6 h, 5m up to 24 h, 1h beyond. A run pushed "
        "without streaming has no buckets.",
        [
            {
                "name": "id",
                "in": "path",
                "required": True,
                "schema": {"type": "string", "pattern": "^[0-9]+$"},
            },
            {
                "name": "granularity",
                "in": "query",
                "required": False,
                "schema": {"type": "string", "enum": ["raw", "1m", "5m", "1h"]},
            },
            {"name": "since", "in": "query", "required": False, "schema": time},
            {"name": "until", "in": "query", "required": False, "schema": time},
        ],
        json_response("The buckets, oldest first.", body),
        "/api/v1/runs/<run_pk>/samples",
    )
