"""The wire API: push, mint, query by scope, health and readiness (docs/architecture.md).

Byte-compatible with the Go receiver where the contract names bytes (status codes,
``{"id": N, "status": "created"}``, ``{"error": "invalid JSON payload"}``,
``{"token": ...}``, ``{"status": "ok"}``); resmon adds idempotency (200
``"duplicate"``, 422 on a reused key, 409 for a run already stored with another
summary), ``?limit``/``?since``/``?until`` on the runs of a scope (every run
without them, streamed as the Go receiver's list, in bounded memory), and JSON
errors for everything else.
"""

from __future__ import annotations

import errno
import logging
import re
import time
from collections.abc import Iterator
from datetime import UTC, datetime
from typing import Any
from urllib.parse import unquote, urlsplit

import orjson
from flask import Blueprint, Response, current_app, request
from peewee import InterfaceError, OperationalError

from resmon.schema import (
    PayloadError,
    format_time,
    loads,
    parse_time,
    scope_too_long,
    validate_push,
)
from resmon.server import read_scope
from resmon.server.config import ServerState
from resmon.server.errors import ApiError
from resmon.server.openapi import build_openapi
from resmon.store import baseline, write
from resmon.store import db as dbmod
from resmon.store.models import Run
from resmon.store.scope import scope_where, stream_runs
from resmon.tokens import (
    MAX_LIFETIME,
    MIN_LIFETIME,
    bearer_from_header,
    check_push_token,
    push_token,
)
from resmon.tokens import read_token as org_read_token

log = logging.getLogger(__name__)

bp = Blueprint("api", __name__)

QUERY_PREFIX = "/api/v1/metrics/repo/"
MAX_QUERY_LIMIT = 10_000
# The runs list goes out in pieces of about this size (a larger run is one piece).
STREAM_PIECE_BYTES = 256 * 1024
MINT_MAX_BODY = 64 * 1024
SCOPE_FIELDS = ("organization", "repository", "workflow", "job")
# Printable ASCII only: the key is an opaque client token (UUIDs in practice).
_IDEMPOTENCY_KEY = re.compile(r"[\x21-\x7e]{1,255}")  # write.MAX_IDEMPOTENCY_KEY
_CONTROL = re.compile(r"[\x00-\x1f\x7f]")
_BEARER_CHALLENGE = {"WWW-Authenticate": "Bearer"}


def _state() -> ServerState:
    return current_app.extensions["resmon"]


def json_response(obj: Any, status: int = 200, headers: dict[str, str] | None = None) -> Response:
    # The bytes of the app's JSON provider (resmon.server.OrjsonProvider), made
    # straight into the response: no str round trip, no status set afterwards.
    return current_app.response_class(
        orjson.dumps(obj, option=orjson.OPT_NON_STR_KEYS),
        status,
        headers,
        mimetype="application/json",
    )


def read_body(limit: int) -> bytes:
    """The request body, at most ``limit`` bytes, else 413.

    Content-Length is checked first (no reading at all), and the stream is read
    with a bound either way: a chunked body has no Content-Length, and one that
    lies about it must not make us buffer more than the limit.
    """
    environ = request.environ
    length = environ.get("CONTENT_LENGTH")
    if length and length.isdigit() and int(length) > limit:
        raise _too_large()
    # The server's own stream when it ends the body itself (gunicorn does, for a
    # Content-Length and for chunked framing alike: ``wsgi.input_terminated``), else
    # werkzeug's, which stops at the Content-Length.
    stream = environ["wsgi.input"] if environ.get("wsgi.input_terminated") else request.stream
    chunks: list[bytes] = []
    total = 0
    while True:
        try:
            chunk = stream.read(min(64 * 1024, limit + 1 - total))
        except Exception as exc:  # whatever the WSGI server raises for the client's bytes
            raise _unreadable_body(exc) from None
        if not chunk:
            break
        chunks.append(chunk)
        total += len(chunk)
        if total > limit:
            raise _too_large()
    return chunks[0] if len(chunks) == 1 else b"".join(chunks)


def _too_large() -> ApiError:
    return ApiError(413, "request body too large", outcome="too_large")


def _unreadable_body(exc: Exception) -> ApiError:
    """The answer to a body the WSGI server could not read.

    gunicorn raises its own exceptions from ``read()`` for a malformed chunked body
    (a chunk size of ``zz``, ``-5`` or ``0x5``, a missing CRLF, a bad chunk
    extension or trailer) and ``NoMoreData`` when the connection ends mid-body:
    the client's doing, so a 400, never a 500.  A socket timeout (the server's
    --io-timeout) is a 408.  The server closes the connection after either, since
    where the next request would start is unknown.
    """
    timed_out = isinstance(exc, TimeoutError) or (
        isinstance(exc, OSError) and exc.errno in (errno.EAGAIN, errno.EWOULDBLOCK, errno.ETIMEDOUT)
    )
    log.info("request body unreadable: %s", type(exc).__name__)
    if timed_out:
        return ApiError(408, "request body not received in time")
    return ApiError(
        400,
        "request body could not be read: malformed chunked encoding or the body ended early",
        outcome="rejected_input",
    )


def require_read_token(*, allow_session: bool = True) -> None:
    """The read check (:func:`resmon.server.read_scope.authorize_read`): the server's
    read token, an organisation's r1 read token, or on GET the web session; a push
    token or the HMAC key never reads or mints.  Sets the request's read scope."""
    read_scope.authorize_read(allow_session=allow_session)


# --- push ------------------------------------------------------------------


@bp.post("/api/v1/metrics")
def push_metrics() -> Response:
    st = _state()
    try:
        result = _store_push(st)
    except ApiError as exc:
        if exc.outcome:
            st.hooks.push(exc.outcome)
        raise
    st.hooks.push(result.status)
    if result.created:
        return json_response(
            _with_comparison(st, result, {"id": result.id, "status": "created"}), 201
        )
    return json_response(
        _with_comparison(st, result, {"id": result.id, "status": "duplicate"}), 200
    )


def _with_comparison(st: ServerState, result: write.StoreResult, body: dict) -> dict:
    """The push answer, plus ``comparison`` (an additive field: the Go collector
    ignores it): the run against its job's baseline (:mod:`resmon.store.baseline`).
    The run is stored whatever happens here, so a failure only leaves the field out."""
    try:
        if result.written is not None:
            comparison = baseline.compare_new_run(result.id, *result.written, st.config.baseline)
        else:
            comparison = baseline.compare_stored_run(result.id, st.config.baseline)
        if comparison is not None and result.created:
            baseline.save_flags(result.id, comparison)
    except Exception as exc:  # advice, never a reason to fail a stored push
        log.warning("comparing run %s with its baseline failed: %s", result.id, type(exc).__name__)
        return body
    # A job's first run has nothing to compare with: the answer stays the Go receiver's.
    if comparison is not None and comparison["baseline_runs"] > 0:
        body["comparison"] = comparison
    return body


def _store_push(st: ServerState) -> write.StoreResult:
    token = bearer_from_header(request.headers.get("Authorization"))
    if token is None:
        raise ApiError(
            401, "missing push token", outcome="rejected_auth", headers=_BEARER_CHALLENGE
        )
    body = read_body(st.config.max_body)
    try:
        obj = loads(body)
        payload = validate_push(obj)
    except PayloadError as exc:
        raise ApiError(400, str(exc), outcome="rejected_input") from None
    if not check_push_token(
        token, st.config.hmac_keys, *payload.scope, require_expiry=st.config.require_expiry
    ):
        raise ApiError(
            401,
            "invalid push token for this scope",
            outcome="rejected_auth",
            headers=_BEARER_CHALLENGE,
        )
    key = _idempotency_key(obj)
    try:
        return write.store_push(payload, key)
    except write.IdempotencyConflict:
        raise ApiError(
            422,
            "Idempotency-Key was already used with a different payload",
            outcome="rejected_input",
        ) from None
    except write.TooManySteps as exc:
        raise ApiError(409, str(exc), outcome="rejected_input") from None
    except write.RunConflict:
        # Another key (or none) for a run already stored: refused, not a silent 200.
        raise ApiError(
            409,
            "this run (scope, run_id, run_attempt, start_time) is already stored "
            "with a different run_summary",
            outcome="rejected_input",
        ) from None
    except (OperationalError, InterfaceError):
        # Locked past the busy timeout, or PostgreSQL unreachable: the collector
        # retries 503 with backoff, so say so instead of a bare 500.
        log.exception("database error while storing a push")
        raise ApiError(
            503, "database unavailable, retry later", headers={"Retry-After": "1"}
        ) from None


def _idempotency_key(obj: dict) -> str | None:
    header = request.headers.get("Idempotency-Key")
    field = obj.get("idempotency_key")
    if field is not None and not isinstance(field, str):
        raise ApiError(400, "idempotency_key must be a string", outcome="rejected_input")
    for value in (header, field):
        if value is not None and not _IDEMPOTENCY_KEY.fullmatch(value):
            raise ApiError(
                400,
                f"idempotency key must be 1 to {write.MAX_IDEMPOTENCY_KEY} printable ASCII characters",
                outcome="rejected_input",
            )
    if header is not None and field is not None and header != field:
        raise ApiError(
            400,
            "Idempotency-Key header and payload idempotency_key differ",
            outcome="rejected_input",
        )
    return header or field


# --- mint ------------------------------------------------------------------


@bp.post("/api/v1/token")
def mint_token() -> Response:
    require_read_token(allow_session=False)
    read_scope.require_all("minting tokens")
    obj = loads_or_400(read_body(MINT_MAX_BODY))
    if not isinstance(obj, dict):
        raise ApiError(400, "payload must be a JSON object")
    kind = obj.get("kind", "push")
    if kind == "read":
        return _mint_read_token(obj)
    if kind != "push":
        raise ApiError(400, "invalid field: kind (push or read)")
    scope = []
    for name in SCOPE_FIELDS:
        value = obj.get(name)
        if not isinstance(value, str) or not value:
            raise ApiError(400, f"missing field: {name}")
        if scope_too_long(value) or _CONTROL.search(value):
            raise ApiError(400, f"invalid field: {name}")
        scope.append(value)
    config = _state().config
    if not config.hmac_keys:
        raise ApiError(400, "no HMAC key configured")
    expires = _expiry(obj.get("expires_in"), config.require_expiry)
    # Signs the repository exactly as given, like the Go receiver; pushes verify
    # both spellings, so either form works.  Without expires_in: v1, the Go answer.
    token = push_token(config.hmac_keys[0], *scope, expires=expires)
    return json_response(
        {"token": token} if expires is None else {"token": token, "expires_at": expires}
    )


def _mint_read_token(obj: dict) -> Response:
    """An r1 read token of ``organization`` (``kind: read``): it reads that
    organisation only; with ``expires_in`` it expires."""
    organization = obj.get("organization")
    if not isinstance(organization, str) or not organization:
        raise ApiError(400, "missing field: organization")
    if scope_too_long(organization) or _CONTROL.search(organization):
        raise ApiError(400, "invalid field: organization")
    config = _state().config
    if not config.hmac_keys:
        raise ApiError(400, "no HMAC key configured")
    expires = _expiry(obj.get("expires_in"), config.require_expiry)
    token = org_read_token(config.hmac_keys[0], organization, expires=expires)
    body: dict[str, Any] = {"token": token, "organization": organization}
    if expires is not None:
        body["expires_at"] = expires
    return json_response(body)


def _expiry(expires_in: Any, required: bool) -> int | None:
    """The Unix time a minted token expires at, from the optional ``expires_in``
    (seconds); a server with --require-expiry mints no token that never expires."""
    if expires_in is None:
        if required:
            raise ApiError(400, "this server accepts only expiring tokens: give expires_in")
        return None
    if (
        not isinstance(expires_in, int)
        or isinstance(expires_in, bool)
        or not MIN_LIFETIME <= expires_in <= MAX_LIFETIME
    ):
        raise ApiError(
            400, f"invalid field: expires_in (whole seconds, {MIN_LIFETIME} to {MAX_LIFETIME})"
        )
    return int(time.time()) + expires_in


def loads_or_400(body: bytes) -> Any:
    try:
        return loads(body)
    except PayloadError:
        raise ApiError(400, "invalid JSON payload") from None


# --- query -----------------------------------------------------------------


@bp.get("/api/v1/metrics/repo/<path:scope>")
def query_metrics(scope: str) -> Response:
    """Every run of the scope, newest first, as the Go receiver answered; ``?limit``
    takes the first N (and says when more matched).  Streamed: see :func:`_json_array`."""
    require_read_token()
    organization, repository, workflow, job = _scope_from_path(scope)
    if not read_scope.may_read(organization):
        raise ApiError(404, "not found")
    limit = _int_arg("limit", 1, MAX_QUERY_LIMIT)
    since, until = _time_arg("since"), _time_arg("until")
    where = scope_where(organization, repository, workflow, job)
    if since is not None:
        where &= Run.received_at >= since
    if until is not None:
        where &= Run.received_at < until
    headers: dict[str, str] = {}
    if limit is not None and _more_than(where, limit):
        headers["X-Resmon-Truncated"] = "true"
        headers["X-Total-Count"] = str(Run.select().where(where).count())
    runs = stream_runs(where, limit)
    # The first piece is read here, before the status line goes out: a database
    # that fails now still gets its error answer, and a list that fits in one
    # piece goes out whole, with its Content-Length, as before.
    head: list[bytes] = []
    size = 0
    for row in runs:
        head.append(_run_json(row))
        size += len(head[-1]) + 1
        if size >= STREAM_PIECE_BYTES:
            body: bytes | Iterator[bytes] = _json_array(head, runs)
            break
    else:
        body = b"[" + b",".join(head) + b"]"
    return Response(body, 200, mimetype="application/json", headers=headers)


def _more_than(where: Any, limit: int) -> bool:
    query = Run.select(Run.id).where(where).order_by(Run.received_at.desc(), Run.id.desc())
    return bool(list(query.offset(limit).limit(1).tuples()))


def _json_array(head: list[bytes], rest: Iterator[tuple[Any, ...]]) -> Iterator[bytes]:
    """The runs as a JSON array: ``head`` (runs already serialised), then the
    rest, in pieces of about ``STREAM_PIECE_BYTES``.

    Each run is serialised on its own, its stored summary spliced in as the JSON
    text it is (not parsed), so the worker holds one batch of runs
    (:func:`resmon.store.scope.stream_runs`) and one piece, never the whole list.
    Should the database fail once the answer has begun, the error is logged and
    the body ends there, unterminated, so that no client takes it for the whole
    list.
    """
    yield b"[" + b",".join(head)
    pieces: list[bytes] = []
    size = 0
    try:
        for row in rest:
            text = _run_json(row)
            pieces += (b",", text)
            size += len(text) + 1
            if size >= STREAM_PIECE_BYTES:
                yield b"".join(pieces)
                pieces, size = [], 0
    except Exception as exc:  # the status line is sent: end the body instead of answering
        log.error("runs list ended early: %s: %s", type(exc).__name__, exc)
        yield b"".join(pieces)
        return
    pieces.append(b"]")
    yield b"".join(pieces)


def _run_json(row: tuple[Any, ...]) -> bytes:
    run_pk, organization, repository, workflow, job, run_id, received, payload = row
    return orjson.dumps(
        {
            "id": run_pk,
            "organization": organization,
            "repository": repository,
            "workflow": workflow,
            "job": job,
            "run_id": run_id,
            "received_at": format_time(_as_utc(received)),
            # Stored as the JSON text received: spliced in, not re-parsed.
            "payload": orjson.Fragment(payload or "null"),
        }
    )


def _scope_from_path(scope: str) -> tuple[str, str, str, str]:
    """(org, repo, workflow, job) from the path, the repository either ``org%2Frepo``
    (one segment) or ``org/repo`` (two).

    WSGI servers decode %2F in PATH_INFO, so the raw request URI (gunicorn's
    RAW_URI, REQUEST_URI elsewhere) is split first and each segment decoded after;
    that keeps a workflow name with an encoded slash in one piece too.
    """
    segments: list[str] | None = None
    raw = request.environ.get("RAW_URI") or request.environ.get("REQUEST_URI")
    if raw:
        raw_path = urlsplit(raw).path
        if raw_path.startswith(QUERY_PREFIX):
            segments = [unquote(s) for s in raw_path[len(QUERY_PREFIX) :].split("/")]
    if segments is None:
        segments = scope.split("/")
    if len(segments) == 5:
        segments = [segments[0], f"{segments[1]}/{segments[2]}", segments[3], segments[4]]
    if len(segments) != 4 or not all(segments) or any("\x00" in s for s in segments):
        # NUL: no stored name holds one, and PostgreSQL text cannot.
        raise ApiError(404, "not found")
    org, repo, workflow, job = segments
    return org, repo, workflow, job


def _int_arg(name: str, low: int, high: int) -> int | None:
    value = request.args.get(name)
    if value is None:
        return None
    # The length first: int() refuses strings of over 4,300 digits.
    digits = value.lstrip("0")
    if (
        not (value.isascii() and value.isdigit())
        or len(digits) > len(str(high))
        or not low <= int(digits or "0") <= high
    ):
        raise ApiError(400, f"{name} must be a whole number from {low} to {high}")
    return int(digits)


def _time_arg(name: str) -> datetime | None:
    value = request.args.get(name)
    if value is None:
        return None
    try:
        return parse_time(value).replace(tzinfo=None)
    except ValueError:
        raise ApiError(400, f"{name} must be an RFC 3339 time, e.g. 2026-01-02T03:04:05Z") from None


def _as_utc(value: Any) -> datetime:
    if isinstance(value, str):  # a value peewee could not parse stays text
        value = datetime.fromisoformat(value)
    return value.replace(tzinfo=UTC) if value.tzinfo is None else value


# --- health ----------------------------------------------------------------


@bp.get("/health")
def health() -> Response:
    return json_response({"status": "ok"})


@bp.get("/healthz")
def healthz() -> Response:
    # Liveness: the process answers; no database access on purpose.
    return json_response({"status": "ok"})


@bp.get("/readyz")
def readyz() -> Response:
    st = _state()
    if st.draining:
        return json_response({"status": "unavailable", "reason": "shutting down"}, 503)
    reason = dbmod.check_ready(st.database)
    if reason:
        return json_response({"status": "unavailable", "reason": reason}, 503)
    return json_response({"status": "ready"})


@bp.get("/api/v1/openapi.json")
def openapi() -> Response:
    return json_response(build_openapi())
