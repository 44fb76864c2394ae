"""OpenAPI paths of the wire API (:mod:`resmon.server.api`): push, mint, runs of a
scope, health, readiness and this document."""

from __future__ import annotations

from typing import Any

from resmon.server.openapi.common import (
    BAD_REQUEST,
    UNAUTHORIZED,
    error_response,
    json_response,
    with_common,
)
from resmon.server.openapi.components import SCOPE_STRING

STATUS = {"$ref": "#/components/schemas/Status"}
EXPIRES_IN = {
    "type": "integer",
    "minimum": 60,
    "maximum": 3660 * 86400,
    "description": "Lifetime of the token in seconds.",
}


def paths() -> dict[str, Any]:
    return {
        "/api/v1/metrics": {"post": _push()},
        "/api/v1/token": {"post": _mint_token()},
        "/api/v1/metrics/repo/{organization}/{repository}/{workflow}/{job}": {
            "x-flask-rule": "/api/v1/metrics/repo/<path:scope>",
            "get": _runs_of_scope(),
        },
        **_health(),
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


def _push() -> dict[str, Any]:
    return {
        "operationId": "pushMetrics",
        "summary": "Push one run summary",
        "description": (
            "Stores a run once. The bearer token must be the push token of the payload's "
            "execution scope (HMAC-SHA256 over v1\\0org\\0repo\\0workflow\\0job; either "
            "repository spelling, `repo` or `org/repo`, verifies). A repeat with the same "
            "Idempotency-Key and body, or without a key the same scope, run_id, run_attempt "
            "and start_time, answers 200 with the original id. A body that nests objects or "
            "lists deeper than 64 levels, or a chunked body that cannot be read, is a 400."
        ),
        "security": [{"pushToken": []}],
        "parameters": [
            {
                "name": "Idempotency-Key",
                "in": "header",
                "required": False,
                "schema": {"type": "string", "pattern": "^[\\x21-\\x7e]{1,255}$"},
                "description": (
                    "Client-chosen key, unique per scope (organization, repository, workflow, "
                    "job); the payload field idempotency_key is the same."
                ),
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
                "201": json_response("Stored.", {"$ref": "#/components/schemas/PushResult"}),
                "200": json_response(
                    "Already stored: the original id.",
                    {"$ref": "#/components/schemas/PushResult"},
                ),
                "400": BAD_REQUEST,
                "401": UNAUTHORIZED,
                "413": error_response("Body larger than the server's --max-body."),
                "408": error_response("Body not received within the server's --io-timeout."),
                "422": error_response("Idempotency-Key already used with a different payload."),
                "409": error_response(
                    "The run (scope, run_id, run_attempt, start_time) is already stored "
                    "with a different run_summary."
                ),
                "503": error_response("Database unavailable; retry after Retry-After seconds."),
            }
        ),
    }


def _mint_token() -> dict[str, Any]:
    return {
        "operationId": "mintToken",
        "summary": "Mint the push token of a scope, or an organisation's read token",
        "description": (
            "Signs the repository exactly as given, with the first HMAC key: a v1 token "
            "(the Go receiver's, never expires), or with `expires_in` a v2 token "
            "`v2.<expiry>.<hex MAC>` refused from `expires_at` on.  A server started with "
            "--require-expiry needs `expires_in`.  With `kind: read` and `organization` "
            "alone: the r1 read token of that organisation, "
            "`r1.<expiry or 0>.<org base64url>.<hex MAC>`.  Only the server's own read "
            "token mints (an organisation's: 403)."
        ),
        "security": [{"readToken": []}],
        "requestBody": {
            "required": True,
            "content": {
                "application/json": {
                    "schema": {
                        "oneOf": [
                            {
                                "allOf": [
                                    {"$ref": "#/components/schemas/Scope"},
                                    {
                                        "type": "object",
                                        "properties": {
                                            "kind": {"const": "push"},
                                            "expires_in": EXPIRES_IN,
                                        },
                                    },
                                ]
                            },
                            {
                                "type": "object",
                                "required": ["kind", "organization"],
                                "properties": {
                                    "kind": {"const": "read"},
                                    "organization": SCOPE_STRING,
                                    "expires_in": EXPIRES_IN,
                                },
                            },
                        ]
                    }
                }
            },
        },
        "responses": with_common(
            {
                "200": json_response(
                    "The push token (or, with kind read, the read token and its organization).",
                    {
                        "type": "object",
                        "required": ["token"],
                        "properties": {
                            "organization": {"type": "string"},
                            "token": {
                                "type": "string",
                                "pattern": (
                                    "^([0-9a-f]{64}|v2\\.[1-9][0-9]{0,11}\\.[0-9a-f]{64}"
                                    "|r1\\.(0|[1-9][0-9]{0,11})\\.[A-Za-z0-9_-]{1,340}\\.[0-9a-f]{64})$"
                                ),
                            },
                            "expires_at": {
                                "type": "integer",
                                "description": "Unix seconds; only with expires_in.",
                            },
                        },
                    },
                ),
                "400": error_response(
                    "A field is missing or invalid, no HMAC key is configured, or this "
                    "server needs expires_in."
                ),
                "401": UNAUTHORIZED,
                "403": error_response(
                    "An organisation's read token: only the server's read token mints."
                ),
                "413": error_response("Body too large."),
                "408": error_response("Body not received within the server's --io-timeout."),
            }
        ),
    }


def _runs_of_scope() -> dict[str, Any]:
    path_params = [
        {"name": name, "in": "path", "required": True, "schema": {"type": "string"}}
        for name in ("organization", "repository", "workflow", "job")
    ]
    return {
        "operationId": "listRuns",
        "summary": "Runs of one job, newest first",
        "description": (
            "Exact match on the scope; the repository is `org%2Frepo`, `org/repo` as two path "
            "segments, or a bare `repo` (canonicalised to `org/repo`). Without `limit` every "
            "matching run is returned, as the Go receiver did; with it the first `limit`, and "
            "when more matched the response has `X-Resmon-Truncated: true` and "
            "`X-Total-Count`. The list is streamed (chunked transfer encoding, no "
            "Content-Length): the server reads the runs in batches of at most 4 MiB of stored "
            "summaries or 500 runs, so one answer never holds the whole list in memory. Should "
            "the database fail after the first bytes went out, the body ends early and is not "
            "valid JSON."
        ),
        "security": [{"readToken": []}],
        "parameters": [
            *path_params,
            {
                "name": "limit",
                "in": "query",
                "required": False,
                "description": "Only the newest `limit` runs (without it: every run).",
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
    }


def _health() -> dict[str, Any]:
    alive = with_common({"200": json_response("Alive.", STATUS)})
    return {
        "/health": {
            "get": {
                "operationId": "health",
                "summary": "Go-receiver compatible health check",
                "responses": alive,
            }
        },
        "/healthz": {
            "get": {
                "operationId": "healthz",
                "summary": "Liveness: the process answers (no database access)",
                "responses": alive,
            }
        },
        "/readyz": {
            "get": {
                "operationId": "readyz",
                "summary": "Readiness: database reachable and migrated, not shutting down",
                "responses": with_common(
                    {
                        "200": json_response("Ready.", STATUS),
                        "503": json_response("Not ready; reason says why.", STATUS),
                    }
                ),
            }
        },
    }
