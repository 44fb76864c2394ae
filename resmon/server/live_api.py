"""Live runs over HTTP (issue #15): batches in, the live view and a run's samples out.

    POST /api/v1/metrics/live              a batch, with the job's push token
    GET  /api/v1/live                      every running run, latest snapshots, hosts
    GET  /api/v1/runs/{id}/samples         a run's samples per bucket (raw|1m|5m|1h)

A batch gets the push's discipline (:mod:`resmon.server.api`): the push token of the
execution's scope, a bounded body (256 KiB: 413 beyond), every field checked
(:mod:`resmon.server.live_wire`: 400 with where), stored once per (run_key, seq)
(201 ``created``, a retry 200 ``duplicate``, the same seq with other samples 422),
503 with Retry-After when the database is unavailable.

Lost runs (:func:`resmon.store.live.mark_lost`) are looked for by a daemon thread
in each worker (``ServerConfig.live_check_period``; ``resmon serve`` turns it on)
and before the live endpoints answer, at most once a second per worker: several
workers and replicas may look at once, the conditional UPDATE lets one win.
"""

from __future__ import annotations

import logging
import os
import threading
import time
from datetime import datetime

from flask import Blueprint, Response, current_app, request
from peewee import InterfaceError, OperationalError

from resmon.schema import PayloadError, loads, parse_time
from resmon.server import read_scope
from resmon.server.api import _BEARER_CHALLENGE, json_response, read_body, require_read_token
from resmon.server.config import ServerConfig, ServerState
from resmon.server.errors import ApiError
from resmon.server.live_wire import MAX_BATCH_BYTES, validate_live_batch
from resmon.store import live, live_view
from resmon.store.models import Run
from resmon.store.samples import GRANULARITIES
from resmon.tokens import bearer_from_header, check_push_token

log = logging.getLogger(__name__)

bp = Blueprint("live_api", __name__)

MAX_PARAM = 255
READ_CHECK_SECONDS = 1.0
_SCOPE = ("organization", "repository", "workflow", "job")


def _state() -> ServerState:
    return current_app.extensions["resmon"]


@bp.errorhandler(OperationalError)
@bp.errorhandler(InterfaceError)
def _database_down(exc: Exception) -> Response:
    log.error("database error in the live API: %s", type(exc).__name__)
    return json_response({"error": "database unavailable, retry later"}, 503, {"Retry-After": "1"})


# --- batches ---------------------------------------------------------------------


@bp.post("/api/v1/metrics/live")
def post_batch() -> Response:
    st = _state()
    token = bearer_from_header(request.headers.get("Authorization"))
    if token is None:
        raise ApiError(401, "missing push token", headers=_BEARER_CHALLENGE)
    body = read_body(min(st.config.max_body, MAX_BATCH_BYTES))
    try:
        batch = validate_live_batch(loads(body))
    except PayloadError as exc:
        raise ApiError(400, str(exc)) from None
    scope = [batch.execution[k] for k in _SCOPE]
    if not check_push_token(
        token, st.config.hmac_keys, *scope, require_expiry=st.config.require_expiry
    ):
        raise ApiError(401, "invalid push token for this scope", headers=_BEARER_CHALLENGE)
    header = request.headers.get("Idempotency-Key")
    expected = f"{batch.run['run_key']}:{batch.seq}"
    if header is not None and header != expected:
        raise ApiError(400, "Idempotency-Key must be <run.run_key>:<batch.seq> of the body")
    try:
        result = live.store_batch(
            batch.execution, batch.run, batch.seq, batch.samples, times=batch.times
        )
    except live.BatchConflict:
        raise ApiError(422, "this batch seq was already stored with other samples") from None
    answer = {"run": result.run, "state": result.state, "stored": result.stored}
    return json_response(answer, 201 if result.stored == live.CREATED else 200)


# --- reads -----------------------------------------------------------------------


def _text_arg(name: str) -> str | None:
    value = request.args.get(name)
    if value is not None and (len(value) > MAX_PARAM or "\x00" in value):
        raise ApiError(400, f"{name} must be at most {MAX_PARAM} characters without NUL")
    return value or None


def _time_arg(name: str) -> datetime | None:
    value = _text_arg(name)
    if value is None:
        return None
    try:
        return parse_time(value)
    except (ValueError, OverflowError):
        raise ApiError(400, f"{name} must be an RFC 3339 time, e.g. 2026-01-02T03:04:05Z") from None


@bp.get("/api/v1/live")
def get_live() -> Response:
    require_read_token()
    scope = {name: value for name in _SCOPE if (value := _text_arg(name)) is not None}
    scoped = read_scope.read_org()
    if scoped is not None:
        if scope.get("organization", scoped) != scoped:
            return json_response({"runs": [], "hosts": []})  # another org: nothing to see
        scope["organization"] = scoped  # hosts too: only those the org's runs are on
    _check_on_read(_state().config)
    return json_response(live_view.live_runs(scope))


@bp.get("/api/v1/runs/<run_pk>/samples")
def get_samples(run_pk: str) -> Response:
    require_read_token()
    if not (run_pk.isascii() and run_pk.isdigit()) or len(run_pk) > 18:
        raise ApiError(404, f"no run with id {run_pk!r}: ids are the numbers `runs` lists")
    granularity = _text_arg("granularity")
    if granularity is not None and granularity not in GRANULARITIES:
        raise ApiError(400, f"granularity must be one of {', '.join(GRANULARITIES)}")
    since, until = _time_arg("since"), _time_arg("until")
    if since is not None and until is not None and since > until:
        raise ApiError(400, "since must not be after until")
    _check_on_read(_state().config)
    if read_scope.read_org() is not None:
        owner = Run.select(Run.organization).where(Run.id == int(run_pk)).scalar()
        if owner is None or not read_scope.may_read(owner):
            raise ApiError(404, f"no run with id {run_pk}")  # as for a run never stored
    body = live_view.run_history(int(run_pk), granularity, since, until)
    if body is None:
        raise ApiError(404, f"no run with id {run_pk}")
    return json_response(body)


# --- lost runs -----------------------------------------------------------------------

_last_read_check = 0.0
_checker_pid = 0
_checker_guard = threading.Lock()


def _check_on_read(config: ServerConfig) -> None:
    """mark_lost before a live read, at most once a second in this worker."""
    global _last_read_check
    now = time.monotonic()
    if now - _last_read_check < READ_CHECK_SECONDS:
        return
    _last_read_check = now
    try:
        live.mark_lost(config.live_timeout)
    except Exception as exc:  # the read answers anyway; the thread tries again
        log.warning("looking for lost runs failed: %s", type(exc).__name__)


def _ensure_checker(config: ServerConfig) -> None:
    """Start this worker process's lost-run thread once (threads do not survive
    gunicorn's fork: each worker starts its own at its first request)."""
    global _checker_pid
    if config.live_check_period <= 0 or _checker_pid == os.getpid():
        return
    with _checker_guard:
        if _checker_pid == os.getpid():
            return
        _checker_pid = os.getpid()
        threading.Thread(
            target=_check_forever, args=(config,), name="resmon-lost-runs", daemon=True
        ).start()


def _check_forever(config: ServerConfig) -> None:
    while True:
        time.sleep(config.live_check_period)
        try:
            lost = live.mark_lost(config.live_timeout)
            if lost:
                log.info("runs lost: %s", ", ".join(map(str, lost)))
        except Exception as exc:  # a database away for a while: try again next period
            log.warning("looking for lost runs failed: %s: %s", type(exc).__name__, exc)


def init_app(app) -> None:  # type: ignore[no-untyped-def]
    """Every request of a worker makes sure its lost-run thread runs."""
    config = app.extensions["resmon"].config

    @app.before_request
    def _start_checker() -> None:
        _ensure_checker(config)
