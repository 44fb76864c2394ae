"""The OpenAPI paths of the web sign-in (:mod:`resmon.web.auth`): ``/login`` and
``/logout``, HTML forms for people rather than an API, documented so that every
served route is."""

from __future__ import annotations

from typing import Any

from resmon.server.openapi.common import error_response, with_common

HTML = {"text/html": {"schema": {"type": "string"}}}
SESSION_COOKIE = {
    "Set-Cookie": {
        "description": "resmon_session (signed, HttpOnly, SameSite=Strict, Secure over "
        "HTTPS) and a new resmon_csrf.",
        "schema": {"type": "string"},
    }
}
LOCATION = {"Location": {"description": "Where to go next.", "schema": {"type": "string"}}}


def _page(description: str) -> dict[str, Any]:
    return {"description": description, "content": HTML}


def paths() -> dict[str, Any]:
    return {
        "/login": {
            "get": {
                "operationId": "loginForm",
                "summary": "The sign-in form (HTML)",
                "description": "Sets the resmon_csrf cookie the form's csrf_token goes with.",
                "tags": ["web"],
                "parameters": [
                    {
                        "name": "next",
                        "in": "query",
                        "required": False,
                        "description": "The page to go to after signing in: a path of this "
                        "site; anything else goes to /.",
                        "schema": {"type": "string"},
                    }
                ],
                "responses": with_common({"200": _page("The form.")}),
            },
            "post": {
                "operationId": "login",
                "summary": "Sign in with a read token",
                "description": (
                    "The server's read token (every organisation) or an organisation's r1 "
                    "read token (`resmon token --read`).  Failed attempts are limited per "
                    "client address."
                ),
                "tags": ["web"],
                "requestBody": {
                    "required": True,
                    "content": {
                        "application/x-www-form-urlencoded": {
                            "schema": {
                                "type": "object",
                                "required": ["token", "csrf_token"],
                                "properties": {
                                    "token": {"type": "string"},
                                    "csrf_token": {"type": "string"},
                                    "next": {"type": "string"},
                                },
                            }
                        }
                    },
                },
                "responses": with_common(
                    {
                        "303": {
                            "description": "Signed in: to `next` (a path of this site) or /.",
                            "headers": {**LOCATION, **SESSION_COOKIE},
                        },
                        "401": _page("Not a read token of this server, or expired."),
                        "403": _page("CSRF token missing or wrong, or another site's Origin."),
                        "413": error_response("Form too large."),
                        "429": {
                            **_page("Too many failed sign-ins from this address."),
                            "headers": {
                                "Retry-After": {
                                    "description": "Seconds to wait.",
                                    "schema": {"type": "integer"},
                                }
                            },
                        },
                        "503": _page("This server has no read token nor HMAC key."),
                    }
                ),
            },
        },
        "/logout": {
            "post": {
                "operationId": "logout",
                "summary": "Sign out (ends the session cookie)",
                "tags": ["web"],
                "requestBody": {
                    "required": False,
                    "content": {
                        "application/x-www-form-urlencoded": {
                            "schema": {
                                "type": "object",
                                "properties": {"csrf_token": {"type": "string"}},
                            }
                        }
                    },
                },
                "responses": with_common(
                    {
                        "303": {"description": "To /login.", "headers": LOCATION},
                        "403": error_response("CSRF token missing or wrong."),
                        "413": error_response("Form too large."),
                    }
                ),
            }
        },
    }
