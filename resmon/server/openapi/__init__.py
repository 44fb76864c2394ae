"""The OpenAPI 3.1 document of the whole HTTP API, built as a Python dict.

``tests/test_server_openapi.py`` walks the app's URL map and fails when a route or
method is missing here, or documented but not served.  A route whose Flask rule
differs from its documented path says so with ``x-flask-rule``.

Other parts of resmon add their paths in their own marked blocks of
:func:`build_openapi` (read endpoints, /metrics).
"""

from __future__ import annotations

from copy import deepcopy
from typing import Any

from resmon import __version__
from resmon.schema import MAX_NUMBER

# Numbers of a run summary: never negative, at most schema.MAX_NUMBER (2**62).
NUMBER = {"type": "number", "minimum": 0, "maximum": MAX_NUMBER}
COUNT = {"type": "integer", "minimum": 0, "maximum": MAX_NUMBER}
STAT = {
    "type": "object",
    "description": "Statistics over the samples of a run (percentile p of n sorted values is sorted[int((n-1)*p)]).",
    "properties": {k: NUMBER for k in ("peak", "p99", "p95", "p75", "p50", "avg")},
}
SCOPE_STRING = {"type": "string", "maxLength": 255, "pattern": "^[^\\x00-\\x1f\\x7f]*$"}


def error_response(description: str) -> dict[str, Any]:
    return {
        "description": description,
        "content": {"application/json": {"schema": {"$ref": "#/components/schemas/Error"}}},
    }


def json_response(
    description: str, schema: dict[str, Any], headers: dict | None = None
) -> dict[str, Any]:
    out: dict[str, Any] = {
        "description": description,
        "content": {"application/json": {"schema": schema}},
    }
    if headers:
        out["headers"] = headers
    return out


UNAUTHORIZED = error_response("Missing or wrong bearer token.")
BAD_REQUEST = error_response("Invalid input; the error says what is wrong.")
NOT_FOUND = error_response("No such route.")
METHOD_NOT_ALLOWED = error_response("Method not allowed on this route.")


def with_common(responses: dict[str, Any]) -> dict[str, Any]:
    return {
        **responses,
        "404": NOT_FOUND,
        "405": METHOD_NOT_ALLOWED,
        # From the HTTP server itself, before any route: same JSON error body.
        "414": error_response("Request line (path and query) over 4094 bytes."),
        "431": error_response("Too many or too large request headers."),
        "500": error_response("Internal error (no details)."),
    }


def build_openapi() -> dict[str, Any]:
    """A fresh copy of the document (callers may change it)."""
    paths: dict[str, Any] = {
        "/api/v1/metrics": {
            "post": {
                "operationId": "pushMetrics",
                "summary": "Push one run summary",
                "description": (
                    "Stores a run once. The bearer token must be the push token of the payload's "
                    "execution scope (HMAC-SHA256 over v1\\0org\\0repo\\0workflow\\0job; either "
                    "repository spelling, `repo` or `org/repo`, verifies). A repeat with the same "
                    "Idempotency-Key and body, or without a key the same scope, run_id, run_attempt "
                    "and start_time, answers 200 with the original id."
                ),
                "security": [{"pushToken": []}],
                "parameters": [
                    {
                        "name": "Idempotency-Key",
                        "in": "header",
                        "required": False,
                        "schema": {"type": "string", "pattern": "^[\\x21-\\x7e]{1,255}$"},
                        "description": "Client-chosen key; the payload field idempotency_key is the same.",
                    }
                ],
                "requestBody": {
                    "required": True,
                    "content": {
                        "application/json": {"schema": {"$ref": "#/components/schemas/PushPayload"}}
                    },
                },
                "responses": with_common(
                    {
                        "201": json_response(
                            "Stored.", {"$ref": "#/components/schemas/PushResult"}
                        ),
                        "200": json_response(
                            "Already stored: the original id.",
                            {"$ref": "#/components/schemas/PushResult"},
                        ),
                        "400": BAD_REQUEST,
                        "401": UNAUTHORIZED,
                        "413": error_response("Body larger than the server's --max-body."),
                        "408": error_response(
                            "Body not received within the server's --io-timeout."
                        ),
                        "422": error_response(
                            "Idempotency-Key already used with a different payload."
                        ),
                        "503": error_response(
                            "Database unavailable; retry after Retry-After seconds."
                        ),
                    }
                ),
            }
        },
        "/api/v1/token": {
            "post": {
                "operationId": "mintToken",
                "summary": "Mint the push token of a scope",
                "description": "Signs the repository exactly as given, with the first --hmac-key.",
                "security": [{"readToken": []}],
                "requestBody": {
                    "required": True,
                    "content": {
                        "application/json": {"schema": {"$ref": "#/components/schemas/Scope"}}
                    },
                },
                "responses": with_common(
                    {
                        "200": json_response(
                            "The push token.",
                            {
                                "type": "object",
                                "required": ["token"],
                                "properties": {
                                    "token": {"type": "string", "pattern": "^[0-9a-f]{64}$"}
                                },
                            },
                        ),
                        "400": error_response(
                            "A field is missing or invalid, or no HMAC key is configured."
                        ),
                        "401": UNAUTHORIZED,
                        "413": error_response("Body too large."),
                        "408": error_response(
                            "Body not received within the server's --io-timeout."
                        ),
                    }
                ),
            }
        },
        "/api/v1/metrics/repo/{organization}/{repository}/{workflow}/{job}": {
            "x-flask-rule": "/api/v1/metrics/repo/<path:scope>",
            "get": {
                "operationId": "listRuns",
                "summary": "Runs of one job, newest first",
                "description": (
                    "Exact match on the scope; the repository is `org%2Frepo`, `org/repo` as two path "
                    "segments, or a bare `repo` (canonicalised to `org/repo`). Without `limit` at most "
                    "the server's cap (default 1000) rows are returned; when rows were cut off the "
                    "response has `X-Resmon-Truncated: true` and `X-Total-Count`."
                ),
                "security": [{"readToken": []}],
                "parameters": [
                    {
                        "name": "organization",
                        "in": "path",
                        "required": True,
                        "schema": {"type": "string"},
                    },
                    {
                        "name": "repository",
                        "in": "path",
                        "required": True,
                        "schema": {"type": "string"},
                    },
                    {
                        "name": "workflow",
                        "in": "path",
                        "required": True,
                        "schema": {"type": "string"},
                    },
                    {"name": "job", "in": "path", "required": True, "schema": {"type": "string"}},
                    {
                        "name": "limit",
                        "in": "query",
                        "required": False,
                        "schema": {"type": "integer", "minimum": 1, "maximum": 10000},
                    },
                    {
                        "name": "since",
                        "in": "query",
                        "required": False,
                        "description": "Only runs received at or after this RFC 3339 time.",
                        "schema": {"type": "string", "format": "date-time"},
                    },
                    {
                        "name": "until",
                        "in": "query",
                        "required": False,
                        "description": "Only runs received before this RFC 3339 time.",
                        "schema": {"type": "string", "format": "date-time"},
                    },
                ],
                "responses": with_common(
                    {
                        "200": json_response(
                            "Stored runs, newest first.",
                            {"type": "array", "items": {"$ref": "#/components/schemas/StoredRun"}},
                            headers={
                                "X-Resmon-Truncated": {
                                    "description": "`true` when more rows matched than were returned.",
                                    "schema": {"type": "string", "enum": ["true"]},
                                },
                                "X-Total-Count": {
                                    "description": "Rows that matched, when truncated.",
                                    "schema": {"type": "integer"},
                                },
                            },
                        ),
                        "400": BAD_REQUEST,
                        "401": UNAUTHORIZED,
                    }
                ),
            },
        },
        "/health": {
            "get": {
                "operationId": "health",
                "summary": "Go-receiver compatible health check",
                "responses": with_common(
                    {"200": json_response("Alive.", {"$ref": "#/components/schemas/Status"})}
                ),
            }
        },
        "/healthz": {
            "get": {
                "operationId": "healthz",
                "summary": "Liveness: the process answers (no database access)",
                "responses": with_common(
                    {"200": json_response("Alive.", {"$ref": "#/components/schemas/Status"})}
                ),
            }
        },
        "/readyz": {
            "get": {
                "operationId": "readyz",
                "summary": "Readiness: database reachable and migrated, not shutting down",
                "responses": with_common(
                    {
                        "200": json_response("Ready.", {"$ref": "#/components/schemas/Status"}),
                        "503": json_response(
                            "Not ready; reason says why.", {"$ref": "#/components/schemas/Status"}
                        ),
                    }
                ),
            }
        },
        "/api/v1/openapi.json": {
            "get": {
                "operationId": "openapi",
                "summary": "This document",
                "responses": with_common(
                    {"200": json_response("OpenAPI 3.1 document.", {"type": "object"})}
                ),
            }
        },
    }

    # --- read endpoints (resmon.server.read_api) ---------------------------
    from resmon.server.openapi.read_api import read_paths

    paths.update(read_paths())
    # --- end read endpoints --------------------------------------------------

    # --- metrics (/metrics) --------------------------------------------------
    paths["/metrics"] = {
        "get": {
            "operationId": "metrics",
            "summary": "Prometheus metrics",
            "description": (
                "Prometheus text exposition (OpenMetrics when the Accept header asks for it). "
                "No authentication, as Prometheus expects: no label names an organization, "
                "repository, job, run or token. With `resmon serve --metrics-addr` the metrics "
                "are served on that listener only and this path answers 404."
            ),
            "responses": with_common(
                {
                    "200": {
                        "description": "Metrics of every worker process, added up.",
                        "content": {
                            "text/plain": {"schema": {"type": "string"}},
                            "application/openmetrics-text": {"schema": {"type": "string"}},
                        },
                    }
                }
            ),
        }
    }
    # --- end metrics -----------------------------------------------------------

    return {
        "openapi": "3.1.0",
        "info": {
            "title": "resmon",
            "version": __version__,
            "description": (
                "Receiver of CI job resource summaries, wire-compatible with the Forgejo runner "
                "resource collector's receiver."
            ),
        },
        "paths": paths,
        "components": deepcopy(COMPONENTS),
    }


COMPONENTS: dict[str, Any] = {
    "securitySchemes": {
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
    },
    "schemas": {
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
            },
        },
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
    },
}
