"""OpenAPI path of the event stream (:mod:`resmon.server.events_api`)."""

from __future__ import annotations

from typing import Any

from resmon.server.openapi.common import UNAUTHORIZED, error_response, with_common
from resmon.server.openapi.read_api import BAD_PARAMETER, _param

KINDS = ("run_started", "snapshot", "run_finished", "run_lost", "regression", "alert")

DESCRIPTION = (
    "Server-Sent Events (`text/event-stream`) from the durable events table, whichever "
    "worker or replica stored them. Each event: `id: <event id>`, `event: <kind>` "
    f"({', '.join(KINDS)}), `data: <one JSON line>` with `id`, `kind`, `created_at`, "
    "`organization`, `repository`, `workflow`, `job`, `run_pk` (the run's id, or null) and "
    "`data` (the event's body; a `snapshot`'s is `{run, host, t, job, containers}`). A "
    "comment line `: hb` comes after `serve --sse-heartbeat` seconds (15 s) without an "
    "event. Resume with the `Last-Event-ID` header (EventSource sends it when it "
    "reconnects) or `last_event_id`: the events after that id, none missed, none "
    "repeated, then the live ones; without either, the events stored from now on. The "
    "read token as a bearer header, or (a browser's EventSource cannot set headers) the "
    "`token` query parameter or the `resmon_read_token` cookie. At most "
    "`serve --sse-max-subscribers` streams per worker process (500): beyond, 503 with "
    "Retry-After. A subscriber that reads too slowly is disconnected and resumes with "
    "Last-Event-ID. The stream ends after `timeout_seconds` if given, and when the "
    "server stops (reconnect: another replica answers)."
)

EVENT_DATA = {
    "type": "object",
    "required": ["id", "kind", "created_at", "organization", "repository", "workflow", "job"],
    "properties": {
        "id": {"type": "integer"},
        "kind": {"type": "string", "enum": list(KINDS)},
        "created_at": {"type": "string", "format": "date-time"},
        "organization": {"type": "string"},
        "repository": {"type": "string"},
        "workflow": {"type": "string"},
        "job": {"type": "string"},
        "run_pk": {"type": ["integer", "null"]},
        "data": {"type": "object", "description": "The event's body (by kind)."},
    },
}
# One event of the stream, as SSE parsers see it (comments and retry: are no event).
EVENT = {
    "type": "object",
    "required": ["id", "event", "data"],
    "properties": {
        "id": {"type": "string", "pattern": "^[0-9]+$"},
        "event": {"type": "string", "enum": list(KINDS)},
        "data": {
            "type": "string",
            "contentMediaType": "application/json",
            "contentSchema": EVENT_DATA,
        },
        "retry": {"type": "integer"},
    },
}

TOKEN = {
    "name": "token",
    "in": "query",
    "required": False,
    "description": "The read token, for clients that cannot set the Authorization header.",
    "schema": {"type": "string"},
}
COOKIE = {
    "name": "resmon_read_token",
    "in": "cookie",
    "required": False,
    "description": "The read token, as a cookie (for a browser's EventSource).",
    "schema": {"type": "string"},
}
LAST_EVENT_ID = {
    "name": "Last-Event-ID",
    "in": "header",
    "required": False,
    "description": "Resume after this event id (wins over `last_event_id`).",
    "schema": {"type": "string", "pattern": "^[0-9]{1,19}$"},
}
PARAMS = [
    _param("organization", "Only events of this organization."),
    _param("repository", "Only events of this repository (the full `org/repo`)."),
    _param("workflow", "Only events of this workflow."),
    _param("job", "Only events of this job."),
    _param(
        "kinds",
        "Only these kinds, comma-separated (or the parameter repeated).",
        {"type": "string", "examples": ["run_started,run_finished,run_lost"]},
    ),
    _param(
        "last_event_id",
        "Resume after this event id (as the Last-Event-ID header).",
        {"type": "integer", "minimum": 0},
    ),
    _param(
        "timeout_seconds",
        "End the stream after this many seconds (as Kubernetes' watch timeoutSeconds).",
        {"type": "number", "exclusiveMinimum": 0, "maximum": 86400},
    ),
    TOKEN,
    COOKIE,
    LAST_EVENT_ID,
]


def paths() -> dict[str, Any]:
    return {
        "/api/v1/events": {
            "get": {
                "operationId": "events",
                "summary": "Events as Server-Sent Events",
                "description": DESCRIPTION,
                "security": [{"readToken": []}],
                "parameters": PARAMS,
                "responses": with_common(
                    {
                        "200": {
                            "description": "An event stream (chunked, open until the client "
                            "leaves, `timeout_seconds` or the server stops).",
                            "headers": {"Cache-Control": {"schema": {"type": "string"}}},
                            "content": {"text/event-stream": {"schema": EVENT}},
                        },
                        "400": BAD_PARAMETER,
                        "401": UNAUTHORIZED,
                        "503": error_response(
                            "Too many subscribers on this worker, the server is stopping, "
                            "or the database is unavailable; retry after Retry-After seconds."
                        ),
                    }
                ),
            }
        }
    }
