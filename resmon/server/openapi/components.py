"""Components of the OpenAPI document: the two bearer-token schemes and the schemas
that paths refer to by ``$ref`` (the error body, the push payload, a stored run).

The number bounds are those :mod:`resmon.schema` enforces on a push, so requests
generated from the document (tests/server/test_fuzz.py) meet the same limits.
"""

from __future__ import annotations

from typing import Any

from resmon.schema import MAX_NUMBER
from resmon.server.openapi.advice_api import COMPARISON

# Numbers of a run summary: never negative, at most schema.MAX_NUMBER (2**62).
NUMBER = {"type": "number", "minimum": 0, "maximum": MAX_NUMBER}
COUNT = {"type": "integer", "minimum": 0, "maximum": MAX_NUMBER}
STAT = {
    "type": "object",
    "description": "Statistics over the samples of a run (percentile p of n sorted values is sorted[int((n-1)*p)]).",
    "properties": {k: NUMBER for k in ("peak", "p99", "p95", "p75", "p50", "avg")},
}
SCOPE_STRING = {"type": "string", "maxLength": 255, "pattern": "^[^\\x00-\\x1f\\x7f]*$"}

SECURITY_SCHEMES: dict[str, Any] = {
    "pushToken": {
        "type": "http",
        "scheme": "bearer",
        "description": "Push token of the execution scope.",
    },
    "readToken": {
        "type": "http",
        "scheme": "bearer",
        "description": "The server's --read-token.",
    },
}

SCHEMAS: dict[str, Any] = {
    "Error": {
        "type": "object",
        "required": ["error"],
        "properties": {"error": {"type": "string"}},
    },
    "Status": {
        "type": "object",
        "required": ["status"],
        "properties": {"status": {"type": "string"}, "reason": {"type": "string"}},
    },
    "PushResult": {
        "type": "object",
        "required": ["id", "status"],
        "properties": {
            "id": {"type": "integer"},
            "status": {"type": "string", "enum": ["created", "duplicate"]},
            "comparison": {"$ref": "#/components/schemas/Comparison"},
        },
    },
    "Comparison": COMPARISON,
    "Scope": {
        "type": "object",
        "required": ["organization", "repository", "workflow", "job"],
        "properties": {
            "organization": {**SCOPE_STRING, "minLength": 1},
            "repository": {**SCOPE_STRING, "minLength": 1},
            "workflow": {**SCOPE_STRING, "minLength": 1},
            "job": {**SCOPE_STRING, "minLength": 1},
        },
    },
    "Execution": {
        "type": "object",
        "required": ["run_id"],
        "properties": {
            "organization": SCOPE_STRING,
            "repository": {
                **SCOPE_STRING,
                "description": "org/repo (a bare repo is canonicalised)",
            },
            "workflow": SCOPE_STRING,
            "job": SCOPE_STRING,
            "run_id": {**SCOPE_STRING, "minLength": 1},
            "run_attempt": SCOPE_STRING,
        },
    },
    "Stat": STAT,
    "Process": {
        "type": "object",
        "properties": {
            "pid": COUNT,
            "name": {"type": "string"},
            "peak_cpu_percent": NUMBER,
            "peak_mem_rss_bytes": NUMBER,
        },
    },
    "Container": {
        "type": "object",
        "required": ["name"],
        "properties": {
            "name": {"type": "string", "minLength": 1, "maxLength": 255},
            "cpu_cores": {"$ref": "#/components/schemas/Stat"},
            "memory_bytes": {"$ref": "#/components/schemas/Stat"},
            "cpu_seconds": NUMBER,
            "limit_cpu_cores": NUMBER,
            "limit_memory_bytes": NUMBER,
            "cpu_throttled_seconds": NUMBER,
            "oom_kills": COUNT,
        },
    },
    "RunSummary": {
        "type": "object",
        "properties": {
            "start_time": {"type": "string", "format": "date-time"},
            "end_time": {"type": "string", "format": "date-time"},
            "duration_seconds": NUMBER,
            "sample_count": COUNT,
            "cpu_seconds": NUMBER,
            "cpu_total_percent": {"$ref": "#/components/schemas/Stat"},
            "mem_used_bytes": {"$ref": "#/components/schemas/Stat"},
            "mem_used_percent": {"$ref": "#/components/schemas/Stat"},
            "top_cpu_processes": {
                "type": "array",
                "items": {"$ref": "#/components/schemas/Process"},
            },
            "top_mem_processes": {
                "type": "array",
                "items": {"$ref": "#/components/schemas/Process"},
            },
            "containers": {
                "type": "array",
                "items": {"$ref": "#/components/schemas/Container"},
            },
            "context": {
                "type": ["object", "null"],
                "description": "resmon's: the run's context (ref, branch, sha, event, "
                "run_attempt, runner_name, runner_labels, pod, namespace, node), strings.",
                "additionalProperties": {"type": ["string", "null"]},
            },
            "step": {
                "type": ["object", "null"],
                "required": ["name"],
                "description": "resmon's: this summary is one step of a job (resmon collect "
                "--step NAME); the server merges the steps of one run id and attempt into "
                "one run. start_time is then required.",
                "properties": {"name": {"type": "string", "minLength": 1, "maxLength": 255}},
            },
            "steps": {
                "type": ["array", "null"],
                "description": "resmon's: the run's steps or marked segments, in order.",
                "items": {"type": "object"},
            },
        },
    },
    "PushPayload": {
        "type": "object",
        "required": ["execution", "run_summary"],
        "properties": {
            "execution": {"$ref": "#/components/schemas/Execution"},
            "run_summary": {"$ref": "#/components/schemas/RunSummary"},
            "idempotency_key": {"type": "string", "pattern": "^[\\x21-\\x7e]{1,255}$"},
        },
    },
    "StoredRun": {
        "type": "object",
        "required": [
            "id",
            "organization",
            "repository",
            "workflow",
            "job",
            "run_id",
            "received_at",
            "payload",
        ],
        "properties": {
            "id": {"type": "integer"},
            "organization": {"type": "string"},
            "repository": {"type": "string"},
            "workflow": {"type": "string"},
            "job": {"type": "string"},
            "run_id": {"type": "string"},
            "received_at": {"type": "string", "format": "date-time"},
            "payload": {"$ref": "#/components/schemas/RunSummary"},
        },
    },
}

COMPONENTS: dict[str, Any] = {"securitySchemes": SECURITY_SCHEMES, "schemas": SCHEMAS}
