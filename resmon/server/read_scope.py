"""Which organisation the current read request may see, and the read check that decides it.

The server's read token sees every organisation (:func:`read_org` is None); an r1
read token (:func:`resmon.tokens.read_token`, ``resmon token --read --org ORG``) or a
web session signed in with one sees only that organisation.  Every read endpoint and
page asks here before answering: a path naming another organisation answers as a job
or run that does not exist (404), a list is filtered to the organisation, and what
only the whole server may see (minting, ``/metrics``) is a 403.

:func:`authorize_read` is the check: it accepts the server's read token or an r1
token as ``Authorization: Bearer`` (or another place the endpoint allows), and on
``GET``/``HEAD`` the web session cookie (:mod:`resmon.server.session`); it records
the answer on flask's ``g``.  A request that never passed it cannot ask
:func:`read_org` (401: fail closed); outside a request (the CLI, store tests) every
organisation is visible.
"""

from __future__ import annotations

import shlex
from collections.abc import Iterable
from typing import Any

from flask import current_app, g, has_request_context, request

from resmon.server import session
from resmon.server.errors import ApiError
from resmon.tokens import bearer_from_header, check_bearer, check_read_token

_CHALLENGE = {"WWW-Authenticate": "Bearer"}
_ALL = "*"  # g.resmon_read_org for "every organisation"


def grant(organization: str | None) -> None:
    """Record that this request passed the read check: ``organization`` or None (all)."""
    g.resmon_read_org = _ALL if organization is None else organization


def token_scope(token: str) -> tuple[bool, str | None]:
    """``(valid, organization)`` for a presented token: the server's read token is
    ``(True, None)``, a valid r1 read token ``(True, org)``; anything else (a push
    token, an expired or foreign r1 token) ``(False, None)``."""
    config = current_app.extensions["resmon"].config
    if config.read_token and check_bearer(token, config.read_token):
        return True, None
    organization = check_read_token(token, config.hmac_keys, require_expiry=config.require_expiry)
    return (organization is not None), organization


def authorize_read(*more_tokens: str | None, allow_session: bool = True) -> None:
    """The read check of this request, else 401: the bearer token, then ``more_tokens``
    (e.g. the events API's ``?token=``), then -- ``GET``/``HEAD`` only, and only when
    ``allow_session`` -- the web session cookie."""
    candidates = [bearer_from_header(request.headers.get("Authorization")), *more_tokens]
    for token in candidates:
        if not token:
            continue
        valid, organization = token_scope(token)
        if valid:
            grant(organization)
            return
        break  # the first token given decides: a bad one is not retried with another
    else:
        if allow_session and request.method in ("GET", "HEAD"):
            signed = session.current()
            if signed is not None:
                grant(signed.organization)
                return
    raise ApiError(401, "unauthorized", headers=_CHALLENGE)


def read_org() -> str | None:
    """The organisation the current request is limited to, or None for all of them."""
    if not has_request_context():
        return None
    scoped = g.get("resmon_read_org")
    if scoped is None:
        # A read that skipped the read check must not see everything.
        raise ApiError(401, "unauthorized", headers=_CHALLENGE)
    return None if scoped == _ALL else scoped


def may_read(organization: str) -> bool:
    """Whether the current request may see ``organization``'s jobs and runs."""
    scoped = read_org()
    return scoped is None or scoped == organization


def visible(rows: Iterable[dict[str, Any]], key: str = "organization") -> list[dict[str, Any]]:
    """The rows the current request may see (by their ``key`` field)."""
    scoped = read_org()
    if scoped is None:
        return list(rows)
    return [row for row in rows if row.get(key) == scoped]


def require_all(what: str) -> None:
    """403 unless the request sees every organisation (``what`` names the thing refused)."""
    if read_org() is not None:
        raise ApiError(403, f"{what} needs the server's read token, not an organisation's")


def visible_suggestions(suggestions: list[str]) -> list[str]:
    """The 404 suggestions the current request may see: a job name (``ORG REPO WORKFLOW
    JOB``, shell-quoted) of another organisation is dropped; other names (containers of
    a job already found) stay."""
    scoped = read_org()
    if scoped is None:
        return suggestions
    kept = []
    for name in suggestions:
        try:
            parts = shlex.split(name)
        except ValueError:
            parts = []
        if len(parts) == 4 and parts[0] != scoped:
            continue
        kept.append(name)
    return kept
