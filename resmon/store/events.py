"""The events table: an append-only log of what happened to runs, read by the SSE
endpoint (``GET /api/v1/events``) on every worker and replica.

An event is appended in the transaction of the write that causes it
(:func:`append_event` runs on the thread's connection, inside the caller's
``atomic()``), so an event exists if and only if its cause was stored, and a rolled
back write leaves none.  Kinds: ``run_started`` (a live run's first batch),
``snapshot`` (one per batch of a running run: its latest sample), ``run_finished``
(a final push stored), ``run_lost`` (a running run's batches stopped), ``regression``
and later ``alert``.

Ids are the database's (SQLite ``AUTOINCREMENT``, PostgreSQL ``BIGSERIAL``): they
increase across the workers and replicas of one database and are never reused.  On
PostgreSQL an id becomes visible when its transaction commits, so a reader may see
id 12 before a concurrent transaction commits id 11: a reader that resumes after 12
must re-read a short window behind its last id (or wait until an id is older than a
visibility lag) to not skip 11.  SQLite has one writer at a time: ids commit in
order there.
"""

from __future__ import annotations

from datetime import UTC, datetime
from typing import Any

import orjson

from resmon.schema import format_time
from resmon.store.models import Event, database_proxy

EVENT_KINDS = ("run_started", "snapshot", "run_finished", "run_lost", "regression", "alert")
SCOPE_FIELDS = ("organization", "repository", "workflow", "job")
MAX_EVENTS_AFTER = 10_000
_COLUMNS = ("kind", "created_at", *SCOPE_FIELDS, "run_pk", "data")


def event_insert(
    kind: str,
    scope: dict[str, Any],
    run_pk: int | None,
    data: dict[str, Any] | str,
    *,
    created_at: datetime | None = None,
) -> tuple[str, list[Any]]:
    """The INSERT of one event and its parameters, for a caller that runs its
    statements on a raw cursor (the SQLite group commit of :mod:`resmon.store.write`).
    ``data`` is the body, or its JSON text when the caller has it serialised already
    (a live batch stores the same text as the run's snapshot)."""
    if kind not in EVENT_KINDS:
        raise ValueError(f"unknown event kind {kind!r}")
    when = (created_at or datetime.now(UTC)).astimezone(UTC).replace(tzinfo=None)
    params = [
        kind,
        Event.created_at.db_value(when),
        *(str(scope.get(name) or "") for name in SCOPE_FIELDS),
        run_pk,
        data
        if isinstance(data, str)
        else orjson.dumps(data, option=orjson.OPT_NON_STR_KEYS).decode(),
    ]
    return event_sql(), params


def event_sql() -> str:
    """The INSERT statement of :func:`event_insert` for the database's parameter style."""
    p = database_proxy.param
    sql = _EVENT_SQL.get(p)
    if sql is None:
        marks = ", ".join([p] * len(_COLUMNS))
        sql = _EVENT_SQL[p] = f"INSERT INTO events ({', '.join(_COLUMNS)}) VALUES ({marks})"
    return sql


_EVENT_SQL: dict[str, str] = {}


def append_event(
    kind: str,
    scope: dict[str, Any],
    run_pk: int | None,
    data: dict[str, Any],
    *,
    created_at: datetime | None = None,
) -> int:
    """Append one event on this thread's connection; returns its id.

    Call it inside the transaction of the write that causes the event: it commits
    (or rolls back) with it.  ``scope`` holds organization, repository (canonical,
    as the runs table has it), workflow and job."""
    sql, params = event_insert(kind, scope, run_pk, data, created_at=created_at)
    db = database_proxy
    if db.returning_clause:
        return int(db.execute_sql(sql + " RETURNING id", params).fetchone()[0])
    return int(db.execute_sql(sql, params).lastrowid)


def events_after(
    last_id: int,
    limit: int,
    scope_filter: dict[str, str] | None = None,
    *,
    data_as_text: bool = False,
) -> list[dict[str, Any]]:
    """Events whose id is above ``last_id``, oldest first, at most ``limit``
    (capped at :data:`MAX_EVENTS_AFTER`).

    Each is ``{id, kind, created_at (RFC 3339), organization, repository, workflow,
    job, run_pk, data}``; ``data`` is the event's body as a dict, or the stored JSON
    text with ``data_as_text`` (an SSE writer sends it as it is).  ``scope_filter``
    keeps the events whose scope fields equal the ones it gives (any of
    organization, repository, workflow, job)."""
    limit = max(0, min(int(limit), MAX_EVENTS_AFTER))
    if limit == 0:
        return []
    query = Event.select(
        Event.id,
        Event.kind,
        Event.created_at,
        *(getattr(Event, f) for f in SCOPE_FIELDS),
        Event.run_pk,
        Event.data,
    ).where(Event.id > int(last_id))
    for name, value in (scope_filter or {}).items():
        if name not in SCOPE_FIELDS:
            raise ValueError(f"unknown scope field {name!r}")
        query = query.where(getattr(Event, name) == value)
    rows = query.order_by(Event.id).limit(limit).tuples()
    out = []
    for event_id, kind, created, org, repo, workflow, job, run_pk, data in rows:
        out.append(
            {
                "id": int(event_id),
                "kind": kind,
                "created_at": format_time(_utc(created)),
                "organization": org,
                "repository": repo,
                "workflow": workflow,
                "job": job,
                "run_pk": None if run_pk is None else int(run_pk),
                "data": data if data_as_text else orjson.loads(data),
            }
        )
    return out


def latest_event_id() -> int:
    """The largest id stored, 0 without events: where a new subscriber starts."""
    row = database_proxy.execute_sql("SELECT MAX(id) FROM events").fetchone()
    return int(row[0] or 0)


def _utc(value: Any) -> datetime:
    if isinstance(value, str):  # a value peewee could not parse stays text
        value = datetime.fromisoformat(value)
    return value.replace(tzinfo=UTC) if value.tzinfo is None else value.astimezone(UTC)
