"""OpenAPI paths of the alerts API (:mod:`resmon.server.alerts_api`): rules (read with
the read token, changed with the admin token) and the states of the matched jobs."""

from __future__ import annotations

from typing import Any

from resmon.server.openapi.common import (
    UNAUTHORIZED,
    error_response,
    json_response,
    with_common,
)
from resmon.server.openapi.read_api import BAD_PARAMETER, LIMIT, UNAVAILABLE, _param

SECURITY_SCHEMES: dict[str, Any] = {
    "adminToken": {
        "type": "http",
        "scheme": "bearer",
        "description": "The server's admin token (--admin-token-file or RESMON_ADMIN_TOKEN).",
    }
}

STATES = ["normal", "cpu_alert", "mem_alert", "both_alert"]
PATTERN = {"type": "string", "minLength": 1, "maxLength": 255}
CPU_THRESHOLD = {
    "type": ["string", "null"],
    "maxLength": 64,
    "description": "A percent of the CPU limit (`90%`) or cores (`2`, `1.5 cores`, `500m`).",
    "examples": ["90%", "2 cores"],
}
MEM_THRESHOLD = {
    "type": ["string", "null"],
    "maxLength": 64,
    "description": "A percent of the memory limit (`90%`) or a size (`3.5Gi`, `512Mi`, `2G`).",
    "examples": ["90%", "3.5Gi"],
}
RULE_INPUT_PROPERTIES: dict[str, Any] = {
    "name": {"type": "string", "minLength": 1, "maxLength": 255, "description": "Unique."},
    "enabled": {"type": "boolean", "default": True},
    "evaluate_on": {
        "type": "string",
        "enum": ["runs", "samples"],
        "default": "runs",
        "description": "runs: each finished or lost run of a job (CPU p95, memory peak); "
        "samples: each live snapshot of a running job (one per batch).",
    },
    "organization": {**PATTERN, "default": "*", "description": "`*` matches any characters."},
    "repository": {
        **PATTERN,
        "maxLength": 511,
        "default": "*",
        "description": "`org/repo`, or without a `/` the name after the organization.",
    },
    "workflow": {**PATTERN, "default": "*"},
    "job": {**PATTERN, "default": "*"},
    "container": {
        "type": ["string", "null"],
        "minLength": 1,
        "maxLength": 255,
        "description": "Null: the job's own figures; a pattern: each matching container.",
    },
    "cpu_threshold": CPU_THRESHOLD,
    "mem_threshold": MEM_THRESHOLD,
    "consecutive": {
        "type": "integer",
        "minimum": 1,
        "maximum": 1000,
        "default": 3,
        "description": "Breaches in a row that start an alert; observations without one "
        "in a row that end it.",
    },
}
RULE_INPUT = {
    "type": "object",
    "properties": RULE_INPUT_PROPERTIES,
    "additionalProperties": False,
}
TIME = {"type": ["string", "null"], "format": "date-time"}
RULE = {
    "type": "object",
    "required": ["id", "name", "source", "enabled", "evaluate_on", "consecutive"],
    "properties": {
        "id": {"type": "integer"},
        **RULE_INPUT_PROPERTIES,
        "source": {"type": "string", "enum": ["file", "api"]},
        "created_at": TIME,
        "updated_at": TIME,
    },
}
NUMBER = {"type": ["number", "null"]}
STATE = {
    "type": "object",
    "required": ["id", "rule_id", "state", "organization", "repository", "workflow", "job"],
    "properties": {
        "id": {"type": "integer"},
        "rule_id": {"type": "integer"},
        "rule_name": {"type": "string"},
        "organization": {"type": "string"},
        "repository": {"type": "string"},
        "workflow": {"type": "string"},
        "job": {"type": "string"},
        "container": {"type": "string", "description": "Empty: the job's own figures."},
        "state": {"type": "string", "enum": STATES},
        "cpu_consecutive_breaches": {"type": "integer"},
        "mem_consecutive_breaches": {"type": "integer"},
        "cpu_value": {**NUMBER, "description": "The last CPU figure seen (cores)."},
        "cpu_limit": {**NUMBER, "description": "Its limit (cores), null when unknown."},
        "mem_value": {**NUMBER, "description": "The last memory figure seen (bytes)."},
        "mem_limit": {**NUMBER, "description": "Its limit (bytes), null when unknown."},
        "last_run": {"type": ["integer", "null"]},
        "last_alerted_at": {**TIME, "description": "When the state last changed."},
        "created_at": TIME,
        "updated_at": TIME,
    },
}
INVALID_RULE = json_response(
    "The rule does not check: `error` says why, `field` which part.",
    {
        "type": "object",
        "required": ["error"],
        "properties": {"error": {"type": "string"}, "field": {"type": "string"}},
    },
)
FORBIDDEN = error_response("No admin token configured on this server: rule changes are refused.")
CONFLICT = error_response("A rule of that name exists, or the rule is from the rules file.")
NO_RULE = error_response("No such rule.")
RULE_ID = {
    "name": "rule_id",
    "in": "path",
    "required": True,
    "schema": {"type": "string", "minLength": 1},
    "description": "The rule's id.",
}
READ_RESPONSES = {"400": BAD_PARAMETER, "401": UNAUTHORIZED, "503": UNAVAILABLE}
WRITE_RESPONSES = {
    "400": error_response("The body is not JSON."),
    "401": UNAUTHORIZED,
    "403": FORBIDDEN,
    "409": CONFLICT,
    "413": error_response("Body over 64 KiB."),
    "422": INVALID_RULE,
    "503": UNAVAILABLE,
}


def _body(required: bool) -> dict[str, Any]:
    schema = RULE_INPUT if not required else {**RULE_INPUT, "required": ["name"]}
    return {"required": True, "content": {"application/json": {"schema": schema}}}


def paths() -> dict[str, Any]:
    return {
        "/api/v1/alerts/rules": {
            "get": {
                "operationId": "listAlertRules",
                "summary": "Every alert rule",
                "description": "With an organisation's read token, the rules whose "
                "organization pattern matches it.",
                "security": [{"readToken": []}],
                "responses": with_common(
                    {
                        "200": json_response(
                            "The rules, by id.",
                            {
                                "type": "object",
                                "required": ["rules"],
                                "properties": {"rules": {"type": "array", "items": RULE}},
                            },
                        ),
                        **READ_RESPONSES,
                    }
                ),
            },
            "post": {
                "operationId": "createAlertRule",
                "summary": "Create an alert rule",
                "description": "A rule needs a name and cpu_threshold, mem_threshold or both.",
                "security": [{"adminToken": []}],
                "requestBody": _body(True),
                "responses": with_common(
                    {"201": json_response("Created.", RULE), **WRITE_RESPONSES}
                ),
            },
        },
        "/api/v1/alerts/rules/{rule_id}": {
            "parameters": [RULE_ID],
            "get": {
                "operationId": "getAlertRule",
                "summary": "One alert rule",
                "security": [{"readToken": []}],
                "responses": with_common(
                    {"200": json_response("The rule.", RULE), **READ_RESPONSES, "404": NO_RULE}
                ),
            },
            "patch": {
                "operationId": "updateAlertRule",
                "summary": "Change the fields given",
                "description": "A changed scope, threshold, count, evaluate_on or enabled "
                "starts the rule's states afresh; a file rule is changed in the file (409).",
                "security": [{"adminToken": []}],
                "requestBody": _body(False),
                "responses": with_common(
                    {"200": json_response("The rule.", RULE), **WRITE_RESPONSES, "404": NO_RULE}
                ),
            },
            "delete": {
                "operationId": "deleteAlertRule",
                "summary": "Delete an API rule and its states",
                "security": [{"adminToken": []}],
                "responses": with_common(
                    {
                        "204": {"description": "Deleted."},
                        **{k: v for k, v in WRITE_RESPONSES.items() if k not in ("413", "422")},
                        "404": NO_RULE,
                    }
                ),
            },
        },
        "/api/v1/alerts/states": {
            "get": {
                "operationId": "listAlertStates",
                "summary": "The state of each rule for each matched job and container",
                "description": "The most recently changed first.  With an organisation's read "
                "token, that organisation's only.",
                "security": [{"readToken": []}],
                "parameters": [
                    _param("organization", "Only this organization's."),
                    _param("state", "Only this state.", {"type": "string", "enum": STATES}),
                    _param("rule_id", "Only this rule's."),
                    _param(
                        "alerting",
                        "true: only the states that are not normal.",
                        {"type": "string", "enum": ["true", "false"]},
                    ),
                    LIMIT,
                ],
                "responses": with_common(
                    {
                        "200": json_response(
                            "The states.",
                            {
                                "type": "object",
                                "required": ["states"],
                                "properties": {"states": {"type": "array", "items": STATE}},
                            },
                        ),
                        **READ_RESPONSES,
                    }
                ),
            },
        },
    }
