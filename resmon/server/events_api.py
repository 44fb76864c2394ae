"""``GET /api/v1/events``: the events table as Server-Sent Events, behind the read token.

    GET /api/v1/events?organization=&repository=&workflow=&job=&kinds=a,b
        &last_event_id=&timeout_seconds=
    Last-Event-ID: 1234

Each event is ``id: <events.id>``, ``event: <kind>``, ``data: <one JSON line>``;
``: hb`` comment lines keep an idle stream alive (``serve --sse-heartbeat``).  A
client resumes after the id it got last (the ``Last-Event-ID`` header, which
EventSource sends by itself on reconnect, or ``?last_event_id=``; the header wins)
and misses none; without either it gets the events stored from now on.

The read token: ``Authorization: Bearer``, or -- for a browser's EventSource,
which cannot set headers -- the ``token`` query parameter, the
``resmon_read_token`` cookie or the web session cookie.  None is logged (request
logs carry the path only).  A token of one organisation (r1) gets that
organisation's events only, whatever the filter asks.

This thread checks the request and reserves a place; then the socket goes to the
worker's SSE loop (:mod:`resmon.server.sse`) and the thread is free.  Beyond
``serve --sse-max-subscribers`` per worker the answer is 503 with Retry-After.
Served by something other than resmon serve's workers (Flask's test client), the
answer holds the events stored after ``Last-Event-ID`` (at most 1000) and ends:
EventSource reconnects after the ``retry:`` time and resumes.
"""

from __future__ import annotations

import logging
import math

from flask import Blueprint, Response, current_app, request
from peewee import InterfaceError, OperationalError

from resmon.server import read_scope, sse
from resmon.server.api import json_response
from resmon.server.config import ServerState
from resmon.server.errors import ApiError
from resmon.server.event_feed import BATCH, EventFilter, Subscriber, format_event
from resmon.server.framing import RequestSocket
from resmon.server.read_api import text_arg
from resmon.store import events as store_events

log = logging.getLogger(__name__)

bp = Blueprint("events_api", __name__)

TOKEN_COOKIE = "resmon_read_token"
# A filter's kinds that no stored event has: the stream of another organisation.
NO_KIND = frozenset({"<none>"})
RETRY_MS = 2000
PREAMBLE = b": resmon events\nretry: %d\n\n" % RETRY_MS
MAX_EVENT_ID = 2**63 - 1
MAX_TIMEOUT_SECONDS = 86_400
FULL_RETRY_AFTER = "5"
STREAM_HEADERS = {
    "Cache-Control": "no-store",
    "X-Accel-Buffering": "no",  # nginx: pass each event on at once
}


@bp.errorhandler(OperationalError)
@bp.errorhandler(InterfaceError)
def _database_down(exc: Exception) -> Response:
    log.error("database error while reading events: %s", type(exc).__name__)
    return json_response({"error": "database unavailable, retry later"}, 503, {"Retry-After": "1"})


def _state() -> ServerState:
    return current_app.extensions["resmon"]


def _authorize() -> None:
    """The read token (the server's or an organisation's) from the header, else
    ``?token=``, else the cookie; else the web session (:mod:`resmon.server.read_scope`)."""
    read_scope.authorize_read(request.args.get("token") or request.cookies.get(TOKEN_COOKIE))


def _event_id(value: str | None, name: str) -> int | None:
    if value is None or value == "":
        return None
    if not (value.isascii() and value.isdigit()) or len(value) > 19 or int(value) > MAX_EVENT_ID:
        raise ApiError(400, f"{name} must be an event id: a whole number of at least 0")
    return int(value)


def _kinds() -> frozenset[str]:
    names: set[str] = set()
    for value in request.args.getlist("kinds"):
        names.update(k.strip() for k in value.split(",") if k.strip())
    unknown = sorted(names - set(store_events.EVENT_KINDS))
    if unknown:
        shown = ", ".join(repr(k[:40]) for k in unknown[:3])
        raise ApiError(400, f"unknown kinds {shown}: use {', '.join(store_events.EVENT_KINDS)}")
    return frozenset(names)


def _timeout() -> float | None:
    value = request.args.get("timeout_seconds")
    if value is None or value == "":
        return None
    try:
        seconds = float(value)
    except ValueError:
        seconds = math.nan
    if not 0 < seconds <= MAX_TIMEOUT_SECONDS:  # NaN fails too
        raise ApiError(
            400,
            f"timeout_seconds must be a number of seconds above 0, at most {MAX_TIMEOUT_SECONDS}",
        )
    return seconds


def _filter() -> EventFilter:
    scope = []
    for name in store_events.SCOPE_FIELDS:
        value = text_arg(name)
        if value is not None:
            scope.append((name, value))
    kinds = _kinds()
    scoped = read_scope.read_org()
    if scoped is not None:
        # A token of one organisation gets that organisation's events only; asking
        # for another's is a stream that never carries one (a kind no event has),
        # read from its own organisation's rows.
        asked = dict(scope).get("organization", scoped)
        scope = [(k, v) for k, v in scope if k != "organization"] + [("organization", scoped)]
        if asked != scoped:
            kinds = NO_KIND
    return EventFilter(scope=tuple(scope), kinds=kinds)


@bp.get("/api/v1/events")
def events() -> Response:
    _authorize()
    event_filter = _filter()
    last_id = _event_id(request.headers.get("Last-Event-ID"), "Last-Event-ID")
    if last_id is None:
        last_id = _event_id(request.args.get("last_event_id"), "last_event_id")
    timeout = _timeout()
    request_socket = request.environ.get("gunicorn.socket")
    if request.method == "HEAD":
        return _stream_response([])
    if not isinstance(request_socket, RequestSocket):
        return _stream_response([PREAMBLE, *_stored(event_filter, last_id)])
    st = _state()
    if st.draining:
        raise ApiError(503, "server stopping, reconnect", headers={"Retry-After": "1"})
    hub = sse.hub_for(current_app)
    if not hub.reserve():
        raise ApiError(
            503,
            f"too many event subscribers on this worker ({hub.max_subscribers}), retry later",
            headers={"Retry-After": FULL_RETRY_AFTER},
        )
    sub = Subscriber(event_filter, last_id)
    sub.chunked = request.environ.get("SERVER_PROTOCOL") == "HTTP/1.1"
    return _stream_response(_hand_over(hub, sub, request_socket, timeout))


def _stream_response(body) -> Response:  # type: ignore[no-untyped-def]
    response = Response(body, status=200, content_type="text/event-stream")
    response.headers.update(STREAM_HEADERS)
    return response


def _stored(event_filter: EventFilter, last_id: int | None) -> list[bytes]:
    """The events already stored after ``last_id`` (the answer outside resmon serve)."""
    if last_id is None:
        return []
    rows = store_events.events_after(
        last_id, BATCH, dict(event_filter.scope) or None, data_as_text=True
    )
    return [format_event(row) for row in rows if event_filter.matches(row)]


def _hand_over(hub: sse.Hub, sub: Subscriber, request_socket: RequestSocket, timeout):  # type: ignore[no-untyped-def]
    """The answer's body: gunicorn sends the headers with the first piece; when it asks
    for the next, the socket goes to the SSE loop and the body ends here."""
    attached = False
    try:
        yield PREAMBLE
        request_socket.detached = True
        hub.attach(sub, request_socket.raw, timeout)
        attached = True
    finally:
        if not attached:  # the client left before the first bytes went out
            hub.release()
