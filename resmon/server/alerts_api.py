"""Alert rules and states over HTTP: reads with the read token, rule changes with
the admin token.

    GET    /api/v1/alerts/rules                every rule (a scoped read token: those
                                               whose organization pattern matches its own)
    GET    /api/v1/alerts/rules/{id}
    GET    /api/v1/alerts/states?organization=&state=&rule_id=&alerting=true&limit=
    POST   /api/v1/alerts/rules                a rule (JSON), 201       admin token
    PATCH  /api/v1/alerts/rules/{id}           the fields given         admin token
    DELETE /api/v1/alerts/rules/{id}           204                      admin token

The admin token (``serve --admin-token-file`` or ``RESMON_ADMIN_TOKEN``) is not the
read token: who may read the fleet's figures may not change what alerts whom.
Without one every change is refused (403, saying how to give one).  Rules from the
rules file (``source: file``) are changed in the file, not here (409).  A rule that
does not check is a 422 naming the field; a body that is not JSON a 400.
"""

from __future__ import annotations

import logging

from flask import Blueprint, Response, current_app, request
from peewee import InterfaceError, OperationalError

from resmon.server import read_scope
from resmon.server.api import json_response, loads_or_400, read_body, require_read_token
from resmon.server.errors import ApiError
from resmon.server.read_api import count_arg, text_arg
from resmon.store import alerts
from resmon.store.scope import NotFound
from resmon.tokens import bearer_from_header, check_bearer

log = logging.getLogger(__name__)

bp = Blueprint("alerts_api", __name__)

MAX_RULE_BODY = 64 * 1024
MAX_ID_DIGITS = 18
_WRITES = ("POST", "PATCH", "PUT", "DELETE")


def _require_admin() -> None:
    expected = current_app.extensions["resmon"].config.alerts.admin_token
    if not expected:
        raise ApiError(
            403,
            "alert rules cannot be changed on this server: start resmon serve with "
            "--admin-token-file or RESMON_ADMIN_TOKEN",
        )
    token = bearer_from_header(request.headers.get("Authorization"))
    if token is None or not check_bearer(token, expected):
        raise ApiError(401, "the admin token is required", headers={"WWW-Authenticate": "Bearer"})


@bp.before_request
def _authorize() -> None:
    """Writes: the admin token only (never the read check, which a session cookie may
    pass); reads: the read check, which also sets what organisation they may see."""
    if request.method in _WRITES:
        _require_admin()
    else:
        require_read_token()


@bp.errorhandler(NotFound)
def _not_found(exc: NotFound) -> Response:
    return json_response({"error": exc.message}, 404)


@bp.errorhandler(OperationalError)
@bp.errorhandler(InterfaceError)
def _database_down(exc: Exception) -> Response:
    log.error("database error in the alerts API: %s", type(exc).__name__)
    return json_response({"error": "database unavailable, retry later"}, 503, {"Retry-After": "1"})


def _rule_id(value: str) -> int:
    if not (value.isascii() and value.isdigit()) or len(value) > MAX_ID_DIGITS:
        raise ApiError(404, f"no alert rule {value[:40]!r}")
    return int(value)


def _invalid(exc: alerts.RuleError) -> Response:
    body = {"error": str(exc)}
    if exc.field:
        body["field"] = exc.field
    return json_response(body, 422)


def _body() -> object:
    return loads_or_400(read_body(MAX_RULE_BODY))


@bp.get("/api/v1/alerts/rules")
def list_rules() -> Response:
    return json_response({"rules": alerts.list_rules(read_scope.read_org())})


@bp.get("/api/v1/alerts/rules/<rule_id>")
def get_rule(rule_id: str) -> Response:
    return json_response(alerts.get_rule(_rule_id(rule_id), read_scope.read_org()))


@bp.get("/api/v1/alerts/states")
def list_states() -> Response:
    scoped = read_scope.read_org()
    organization = text_arg("organization")
    if scoped is not None and organization is not None and organization != scoped:
        return json_response({"states": []})
    state = text_arg("state")
    rule = text_arg("rule_id")
    alerting = (request.args.get("alerting") or "").lower()
    if alerting not in ("", "true", "false", "1", "0"):
        raise ApiError(400, "alerting must be true or false")
    try:
        states = alerts.list_states(
            organization or scoped,
            state=state,
            rule_id=None if rule is None else _rule_id(rule),
            alerting_only=alerting in ("true", "1"),
            limit=min(count_arg("limit") or 1000, alerts.MAX_STATES),
        )
    except alerts.RuleError as exc:
        raise ApiError(400, str(exc)) from None
    return json_response({"states": states})


@bp.post("/api/v1/alerts/rules")
def create_rule() -> Response:
    raw = _body()
    try:
        rule = alerts.create_rule(raw)
    except alerts.RuleError as exc:
        return _invalid(exc)
    except alerts.RuleConflict as exc:
        raise ApiError(409, str(exc)) from None
    log.info("alert rule created", extra={"rule_id": rule["id"]})
    return json_response(rule, 201)


@bp.patch("/api/v1/alerts/rules/<rule_id>")
def update_rule(rule_id: str) -> Response:
    rule_pk = _rule_id(rule_id)
    raw = _body()
    try:
        rule = alerts.update_rule(rule_pk, raw)
    except alerts.RuleError as exc:
        return _invalid(exc)
    except alerts.RuleConflict as exc:
        raise ApiError(409, str(exc)) from None
    log.info("alert rule changed", extra={"rule_id": rule_pk})
    return json_response(rule)


@bp.delete("/api/v1/alerts/rules/<rule_id>")
def delete_rule(rule_id: str) -> Response:
    rule_pk = _rule_id(rule_id)
    try:
        alerts.delete_rule(rule_pk)
    except alerts.RuleConflict as exc:
        raise ApiError(409, str(exc)) from None
    log.info("alert rule deleted", extra={"rule_id": rule_pk})
    return Response(status=204)
