"""The write side: store one validated push, exactly once.

A push is one transaction (the run row and its container rows); the caller answers
2xx only after :func:`store_push` returned, that is after the commit.

Idempotency rests on two unique constraints, never on a read-then-write check
(two servers behind a load balancer may receive the same retry at once):

- ``scoped_idempotency_key``, a hash of the scope and the idempotency key
  (``Idempotency-Key`` header or the payload's ``idempotency_key``): a repeat in
  the same scope with the same canonical body is a duplicate, the same key with
  another body is a conflict (HTTP 422); the same key in another scope is
  another run, so one scope can neither block nor probe another's keys;
- ``run_key``, a hash of (scope, run_id, run_attempt, start_time): a retry of the
  same run, with no key or another one, is a duplicate if it carries the stored
  run summary and a conflict (HTTP 409) if not -- the stored run is kept, and the
  new summary is refused rather than dropped behind a 200.  Without a start time
  the body hash stands in for it, so two different runs that only share a run id
  are both kept.

On a unique violation the transaction is rolled back and the existing row looked
up; that row exists, since the violated constraint is exactly what points to it.

Live runs (:mod:`resmon.store.live`): a push whose ``run_summary.collector.run_key``
names a ``running`` or ``lost`` run of its scope finishes that row (201 ``created``,
the live run's id): the row takes the push's columns, keys and containers, and the
state ``finished``.  Once finished, the row is the push: a retry is a duplicate and
another summary for it a conflict, by the rules above (``live_key`` is a third
unique constraint pointing to the row).  A push with a run key no live run has is
stored as a new row carrying that ``live_key``, so a late batch finds it finished.
Every stored push appends ``run_finished`` in its transaction.
"""

from __future__ import annotations

import contextlib
import logging
from dataclasses import dataclass, field
from datetime import UTC, datetime
from typing import Any

import orjson
import peewee
from peewee import IntegrityError, SqliteDatabase

from resmon.schema import PushPayload, parse_time
from resmon.store import db as dbmod
from resmon.store import live, steps
from resmon.store.derive import derive, scoped_idempotency_key, sha256_hex
from resmon.store.events import event_insert
from resmon.store.group_commit import (
    RUN_PLACEHOLDER,
    insert_push_sqlite,
    insert_sql,
    with_run,
)
from resmon.store.models import ContainerStat, Run, database_proxy
from resmon.store.scope import FINISHED

log = logging.getLogger(__name__)

MAX_IDEMPOTENCY_KEY = 255
# Turns sqlite3's exceptions into peewee's (IntegrityError, OperationalError...), as
# Database.execute_sql does, for the statements run on the raw connection.
_PEEWEE_ERRORS = peewee.__exception_wrapper__
# Stands in for the run's id while container inserts are built (ids are positive).
CREATED = "created"
DUPLICATE = "duplicate"


class IdempotencyConflict(Exception):
    """The idempotency key was used before in the same scope with a different body."""

    def __init__(self, run_id: int) -> None:
        super().__init__(f"idempotency key already used for run {run_id} with a different body")
        self.run_id = run_id


class RunConflict(Exception):
    """The run (same scope, run_id, run_attempt and start_time) is already stored with
    a different run summary, under another idempotency key or none."""

    def __init__(self, run_id: int) -> None:
        super().__init__(f"run {run_id} is already stored with a different run summary")
        self.run_id = run_id


class TooManySteps(RunConflict):
    """A step push for a run that has :data:`resmon.store.steps.MAX_STEPS_PER_RUN` steps
    already (a conflict with the stored run: 409)."""

    def __init__(self, run_id: int) -> None:
        Exception.__init__(
            self, f"run {run_id} has {steps.MAX_STEPS_PER_RUN} steps already: no more are stored"
        )
        self.run_id = run_id


@dataclass(frozen=True)
class StoreResult:
    id: int
    status: str  # CREATED or DUPLICATE
    # A run stored as a new finished row by this call: its scope, received_at (naive
    # UTC) and the columns and container rows written, so that the push's answer
    # compares it with its baseline without reading it back (None otherwise).
    written: (
        tuple[tuple[str, str, str, str], datetime, dict[str, Any], list[dict[str, Any]]] | None
    ) = field(default=None, compare=False, repr=False)

    @property
    def created(self) -> bool:
        return self.status == CREATED


def body_digest(payload: PushPayload) -> str:
    """SHA-256 of the canonical payload: key order, whitespace and the repository's
    spelling do not matter; the idempotency key itself is not part of it."""
    canonical = {"execution": payload.execution, "run_summary": payload.run_summary}
    return sha256_hex(orjson.dumps(canonical, option=orjson.OPT_SORT_KEYS))


def _finished_event(row: dict[str, Any], now: datetime) -> tuple[str, list[Any], int]:
    scope = {k: row[k] for k in ("organization", "repository", "workflow", "job")}
    data = live.finished_data(RUN_PLACEHOLDER, row)
    sql, params = event_insert("run_finished", scope, RUN_PLACEHOLDER, data, created_at=now)
    return sql, params, params.index(RUN_PLACEHOLDER)


def store_push(
    payload: PushPayload, idempotency_key: str | None = None, *, received_at: datetime | None = None
) -> StoreResult:
    """Store a validated push once; returns the run id and CREATED or DUPLICATE.

    Raises :class:`IdempotencyConflict` when the key was used with another body, and
    :class:`RunConflict` when the run is already stored with another run summary.
    """
    digest = body_digest(payload)
    now = received_at or datetime.now(UTC)
    if steps.step_name(payload.run_summary) is not None:
        # One step of a job (resmon collect --step): merged into the job's run.
        try:
            run_pk, new = steps.store_step(payload, idempotency_key, digest, now)
        except steps.StepConflict as exc:
            raise (IdempotencyConflict if exc.same_key else RunConflict)(exc.run_id) from None
        except steps.TooManySteps as exc:
            raise TooManySteps(exc.run_id) from None
        return StoreResult(id=run_pk, status=CREATED if new else DUPLICATE)
    derived = derive(payload.execution, payload.run_summary, digest)
    row = dict(derived.columns)
    # From the columns as stored, as the version-4 upgrade computes it for older rows.
    scoped_key = scoped_idempotency_key(
        row["organization"], derived.repository, row["workflow"], row["job"], idempotency_key
    )
    row.update(
        repository=derived.repository,
        idempotency_key=idempotency_key or None,
        scoped_idempotency_key=scoped_key,
        received_at=now.astimezone(UTC).replace(tzinfo=None),
        payload=orjson.dumps(payload.run_summary).decode(),
    )
    collector_key = live.collector_run_key(payload.run_summary)
    key = None
    if collector_key is not None:
        scope = {k: row[k] for k in ("organization", "repository", "workflow", "job")}
        key = row["live_key"] = live.live_key(*scope.values(), collector_key)
        host = (payload.run_summary.get("collector") or {}).get("host")
        if isinstance(host, str) and host and len(host) <= 255:
            row["host"] = host
        finished = _finish_live(key, row, derived.containers, scope)
        if finished is not None:
            return finished
    run_pk = _insert(row, derived.containers, now)
    if run_pk is not None:
        return _created(run_pk, row, derived.containers)
    if key is not None:
        # A first batch may have created the live run since the look-up above.
        finished = _finish_live(key, row, derived.containers, scope)
        if finished is not None:
            return finished
        if not _run_stored(scoped_key, derived.run_key):
            # The collector's run key names a run stored under another run id or
            # attempt (one summary pushed again for another run): this push is a run
            # of its own, stored without the key, not a duplicate of that one.
            row.pop("live_key")
            run_pk = _insert(row, derived.containers, now)
            if run_pk is not None:
                return _created(run_pk, row, derived.containers)
            key = None
    return _stored_before(payload, scoped_key, derived.run_key, digest, key)


def _created(run_pk: int, row: dict[str, Any], containers: list[dict[str, Any]]) -> StoreResult:
    scope = (row["organization"], row["repository"], row["workflow"], row["job"])
    written = (scope, row["received_at"], row, containers)
    if row.get("state", FINISHED) != FINISHED:
        written = None
    return StoreResult(id=run_pk, status=CREATED, written=written)


def _insert(row: dict[str, Any], containers: list[dict[str, Any]], now: datetime) -> int | None:
    """The run, its containers and its ``run_finished`` event in one transaction; the
    run's id, or None when a unique constraint refused the run (rolled back)."""
    db = database_proxy
    # The SQL is built before the transaction: peewee's query building is most of
    # a push's database time, and on SQLite the write lock is held from BEGIN to
    # COMMIT, so everything done inside it is done by one writer at a time.
    run_sql, run_params = insert_sql(Run, row)
    container_sql: list[tuple[str, list[Any], int]] = []
    for container in containers:
        sql, params = insert_sql(ContainerStat, {**container, "run": RUN_PLACEHOLDER})
        container_sql.append((sql, params, params.index(RUN_PLACEHOLDER)))
    container_sql.append(_finished_event(row, now))
    try:
        target = db.obj
        # A file, outside any caller's transaction: the group commit, whose leader
        # writes the others' pushes on its own connection (an in-memory database is
        # one per connection, so it keeps the plain transaction).
        if (
            isinstance(target, SqliteDatabase)
            and str(target.database) not in ("", ":memory:")
            and not target.in_transaction()
        ):
            return insert_push_sqlite(target, run_sql, run_params, container_sql)
        with dbmod.write_lock(target), db.atomic():
            cursor = db.execute_sql(run_sql, run_params)
            run_pk = cursor.fetchone()[0] if db.returning_clause else cursor.lastrowid
            for sql, params, at in container_sql:
                db.execute_sql(sql, with_run(params, at, run_pk))
        return int(run_pk)
    except IntegrityError:
        return None  # rolled back; the caller finds the row the constraint points to


def _run_stored(scoped_key: str | None, run_key: str) -> bool:
    """Whether the push's own keys (its idempotency key in its scope, its run) point
    to a stored run."""
    if scoped_key and _id_and_body(Run.scoped_idempotency_key == scoped_key) is not None:
        return True
    return _id_and_body(Run.run_key == run_key) is not None


def _finish_live(
    key: str, row: dict[str, Any], containers: list[dict[str, Any]], scope: dict[str, str]
) -> StoreResult | None:
    """The push stored by finishing the live run ``key`` names, or None (no such run
    running or lost, or the push's keys point to another run: stored as any push)."""
    try:
        run_pk = live.finish_run(key, row, containers, scope)
    except IntegrityError:
        return None
    return None if run_pk is None else StoreResult(id=run_pk, status=CREATED)


def _stored_before(
    payload: PushPayload,
    scoped_key: str | None,
    run_key: str,
    digest: str,
    live_key: str | None = None,
) -> StoreResult:
    """The answer for a push whose INSERT violated a unique constraint: a duplicate of
    the row it points to, or the conflict that row's body makes."""
    if scoped_key:
        existing = _id_and_body(Run.scoped_idempotency_key == scoped_key)
        if existing is not None:
            if existing[1] != digest:
                raise IdempotencyConflict(existing[0])
            return StoreResult(id=existing[0], status=DUPLICATE)
    existing = _id_and_body(Run.run_key == run_key)
    if existing is None and live_key is not None:
        existing = _id_and_body(Run.live_key == live_key)
    if existing is None:
        # Neither constraint explains the violation: a real error, not a duplicate.
        raise RuntimeError("unique constraint violated but no matching run found")
    if existing[1] != digest and not _same_run_summary(existing[0], payload.run_summary):
        raise RunConflict(existing[0])
    return StoreResult(id=existing[0], status=DUPLICATE)


def _id_and_body(where: Any) -> tuple[int, str] | None:
    # Only the two columns: the payload of a large run is not read to answer a retry.
    row = Run.select(Run.id, Run.body_sha256).where(where).tuples().first()
    return None if row is None else (int(row[0]), str(row[1]))


def _same_run_summary(run_pk: int, summary: dict[str, Any]) -> bool:
    """Whether the stored run's summary is ``summary``, its times compared as instants.

    Only the run summary is stored (the execution's extra fields are not), so only it
    can be lost.  A body digest differs for the same run when its start time is
    written another way (``Z`` or ``+00:00``, with or without fractions: one run
    key) or when the run was stored before digests covered today's execution
    fields (a version-1 row, digested in the upgrade); neither loses anything.
    """
    row = Run.select(Run.payload).where(Run.id == run_pk).tuples().first()
    if row is None:
        return False
    try:
        stored = orjson.loads(row[0])
    except orjson.JSONDecodeError:
        return False
    return _as_instants(stored) == _as_instants(summary)


def _as_instants(summary: Any) -> Any:
    if not isinstance(summary, dict):
        return summary
    out = dict(summary)
    for key in ("start_time", "end_time"):
        with contextlib.suppress(TypeError, ValueError):
            out[key] = parse_time(out.get(key))
    return out
