"""Every error is JSON: ``{"error": "<what went wrong>"}``, never a traceback.

HTTP errors (404, 405, 413, ...) keep their status and say what happened in a
short fixed phrase; a value the database refuses is a 400; anything unexpected is
logged with its traceback and answered with a 500 that carries no detail.
"""

from __future__ import annotations

import logging

from flask import Flask, Response, current_app
from peewee import DataError
from werkzeug.exceptions import HTTPException

log = logging.getLogger(__name__)


class ApiError(Exception):
    """An error with a status and a message meant for the client."""

    def __init__(
        self, status: int, message: str, *, outcome: str | None = None, headers: dict | None = None
    ) -> None:
        super().__init__(message)
        self.status = status
        self.message = message
        # The push outcome this error counts as (see resmon.server.config.Hooks), if any.
        self.outcome = outcome
        self.headers = headers or {}


def error_response(status: int, message: str, headers: dict | None = None) -> Response:
    response = current_app.json.response({"error": message})
    response.status_code = status
    for key, value in (headers or {}).items():
        response.headers[key] = value
    return response


# Short fixed phrases: werkzeug's descriptions are prose written for HTML pages.
_PHRASES = {
    400: "bad request",
    401: "unauthorized",
    404: "not found",
    405: "method not allowed",
    413: "request body too large",
    415: "unsupported media type",
}


def register_error_handlers(app: Flask) -> None:
    @app.errorhandler(ApiError)
    def _api_error(exc: ApiError) -> Response:
        return error_response(exc.status, exc.message, exc.headers)

    @app.errorhandler(HTTPException)
    def _http_error(exc: HTTPException) -> Response:
        status = exc.code or 500
        response = error_response(status, _PHRASES.get(status, exc.name.lower()))
        if status == 405 and exc.valid_methods:  # type: ignore[attr-defined]
            response.headers["Allow"] = ", ".join(sorted(exc.valid_methods))  # type: ignore[attr-defined]
        return response

    @app.errorhandler(DataError)
    def _unstorable(exc: DataError) -> Response:
        # A value the database refuses (out of range, too long, a NUL in text) that
        # the request's checks let through: the request's data, so a 400 the
        # collector does not retry forever.  Logged with its traceback, since a
        # check is missing.
        log.exception("the database refused a value of the request")
        return error_response(400, "a value of the request does not fit the database")

    @app.errorhandler(Exception)
    def _unexpected(exc: Exception) -> Response:
        log.exception("unhandled error")
        return error_response(500, "internal server error")
