"""Response objects every part of the OpenAPI document builds its operations from.

Every route answers the same JSON error body (``#/components/schemas/Error``) for
a wrong method, an unknown path, a too-long request line or an internal error, so
:func:`with_common` adds those to each operation's own responses.
"""

from __future__ import annotations

from typing import Any


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
