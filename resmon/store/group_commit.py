"""The SQLite group commit, and INSERT statements built once per set of columns.

Shared by the write paths that store on every request: a push
(:mod:`resmon.store.write`) and a live batch (:mod:`resmon.store.live`).  The
placeholder ``RUN_PLACEHOLDER`` stands for a run's id in the statements that follow
its INSERT in one job (its containers, its event), replaced once the id is known.
"""

from __future__ import annotations

import logging
import os
import sqlite3
import threading
from dataclasses import dataclass
from typing import Any

import peewee
from peewee import Field, IntegrityError, Model, SqliteDatabase

from resmon.store import db as dbmod
from resmon.store.models import database_proxy

log = logging.getLogger("resmon.store.write")

_PEEWEE_ERRORS = peewee.__exception_wrapper__
# Stands for the run's id in a push's follow-up statements until the INSERT gives it.
RUN_PLACEHOLDER = -0x7265736D6F6E


# (database class, model, column names) -> (INSERT statement, fields in its order),
# or None where the shortcut did not reproduce peewee's own parameters.
_INSERT_TEMPLATES: dict[
    tuple[type, type[Model], tuple[str | bool, ...]], tuple[str, list[Field]] | None
] = {}


def insert_sql(
    model: type[Model], row: dict[str, Any], *, on_conflict_ignore: bool = False
) -> tuple[str, list[Any]]:
    """``model.insert(**row).sql()``, with the statement cached per set of columns
    (``on_conflict_ignore``: ``.on_conflict_ignore()``'s, for a live run's first batch).

    Generating an INSERT of 25 columns with peewee costs more CPU than the rest of a
    push's storage together (profiled under load: a quarter of the server's CPU);
    the statement only depends on the database's dialect and the columns, so it is
    built once, and each row's values are converted with the fields' own
    ``db_value``, as peewee does.  The first use of a template checks that the
    shortcut's parameters equal peewee's, and falls back to peewee if they ever
    do not.
    """
    db = database_proxy.obj
    key = (type(db), model, (*row, on_conflict_ignore))
    if key not in _INSERT_TEMPLATES:
        sql, params = _peewee_insert(model, row, on_conflict_ignore).sql()
        template = _template_from(model, sql)
        if template is not None and _params(template[1], row) != params:
            template = None
        _INSERT_TEMPLATES[key] = template
        return sql, params
    template = _INSERT_TEMPLATES[key]
    if template is None:
        return _peewee_insert(model, row, on_conflict_ignore).sql()
    return template[0], _params(template[1], row)


def _peewee_insert(model: type[Model], row: dict[str, Any], on_conflict_ignore: bool) -> Any:
    query = model.insert(**row)
    return query.on_conflict_ignore() if on_conflict_ignore else query


def _template_from(model: type[Model], sql: str) -> tuple[str, list[Field]] | None:
    # INSERT INTO "runs" ("organization", "run_attempt", ...) VALUES (?, ?, ...)
    head, sep, _ = sql.partition(") VALUES (")
    _, paren, columns = head.partition(" (")
    if not sep or not paren:
        return None
    by_column = model._meta.columns
    fields = []
    for quoted in columns.split(", "):
        f = by_column.get(quoted.strip('"`'))
        if f is None:
            return None
        fields.append(f)
    return sql, fields


def _params(fields: list[Field], row: dict[str, Any]) -> list[Any]:
    out = []
    for f in fields:
        value = row.get(f.name, _MISSING)
        if value is _MISSING:
            value = f.default() if callable(f.default) else f.default
        out.append(f.db_value(value))
    return out


_MISSING = object()


@dataclass
class _Job:
    """One push waiting for a group commit."""

    run_sql: str
    run_params: list[Any]
    containers: list[tuple[str, list[Any], int]]
    done: bool = False
    run_pk: int | None = None  # None once done: the run INSERT violated a unique constraint
    retry: bool = False  # the batch failed: store this push on its own


class _GroupCommit:
    """Stores the pushes of one process's threads that queue for the same SQLite
    file in one transaction (group commit).

    Every call into SQLite and every ``flock`` releases the GIL, and while the
    write lock is held each then waits for the GIL behind the worker's other
    threads (up to the switch interval): measured, the lock was held 0.13 ms at
    the median but queued writers waited tens of ms.  Here the first thread to
    get the leader mutex takes every push queued so far and stores them all
    under one lock, one BEGIN IMMEDIATE and one COMMIT; the others find theirs
    done when they get the mutex.  Each push is still answered only after the
    COMMIT that stored it.  A unique violation aborts only its own INSERT
    (SQLite's default ABORT keeps the transaction and the other rows), so that
    push is reported as a violation and looked up as before; any other error
    rolls the whole batch back and each of its pushes is stored alone.  The
    statements go straight to the sqlite3 connection (peewee's atomic() and
    execute_sql added Python work between them while the lock was held).
    """

    def __init__(self) -> None:
        self.leader = threading.Lock()
        self.guard = threading.Lock()
        self.pending: list[_Job] = []

    def submit(self, db: SqliteDatabase, job: _Job) -> None:
        with self.guard:
            self.pending.append(job)
        with self.leader:
            if job.done:
                return
            with self.guard:
                batch, self.pending = self.pending, []
            try:
                _run_batch(db, batch)
            except BaseException:
                for queued in batch:
                    queued.retry = True
                if len(batch) == 1:
                    raise
            finally:
                for queued in batch:
                    queued.done = True


_group_commits: dict[str, _GroupCommit] = {}
_group_commits_guard = threading.Lock()


def _after_fork_in_child() -> None:
    # A mutex held by a thread of the parent at the fork stays locked in the child.
    global _group_commits_guard
    _group_commits_guard = threading.Lock()
    _group_commits.clear()


os.register_at_fork(after_in_child=_after_fork_in_child)


def _run_batch(db: SqliteDatabase, batch: list[_Job]) -> None:
    conn = db.connection()
    with dbmod.write_lock(db), _PEEWEE_ERRORS:
        cursor = conn.cursor()
        cursor.execute("BEGIN IMMEDIATE")
        try:
            for job in batch:
                if not isinstance(job, _Job):
                    job.apply(cursor)  # another write sharing the commit (see run_grouped)
                    continue
                try:
                    cursor.execute(job.run_sql, job.run_params)
                except sqlite3.IntegrityError:
                    job.run_pk = None  # only this INSERT was aborted
                    continue
                run_pk = job.run_pk = cursor.lastrowid
                for sql, params, at in job.containers:
                    cursor.execute(sql, with_run(params, at, run_pk))
            cursor.execute("COMMIT")
        except BaseException:
            if conn.in_transaction:
                try:
                    cursor.execute("ROLLBACK")
                except sqlite3.Error as exc:  # the original error is the one to report
                    log.warning("rollback failed: %s", exc)
            raise


def run_grouped(db: SqliteDatabase, job: Any) -> None:
    """Run ``job.apply(cursor)`` inside this process's group commit on the SQLite file
    ``db``, with the pushes and other jobs queued meanwhile: one write lock, one
    transaction, answered after its COMMIT.  ``job`` has ``done`` and ``retry``
    attributes (False) and an ``apply`` that runs its statements on the raw sqlite3
    cursor, raises nothing it expects (a unique violation is its own to handle, e.g.
    with ``INSERT OR IGNORE``) and sets its results afresh on each call: when the
    group fails, it is applied again alone.  Used by live batches
    (:mod:`resmon.store.live`)."""
    path = os.path.abspath(str(db.database))
    group = _group_commits.get(path)
    if group is None:
        with _group_commits_guard:
            group = _group_commits.setdefault(path, _GroupCommit())
    group.submit(db, job)
    if job.retry:
        job.retry = False
        _run_batch(db, [job])


def insert_push_sqlite(
    db: SqliteDatabase,
    run_sql: str,
    run_params: list[Any],
    container_sql: list[tuple[str, list[Any], int]],
) -> int:
    """Store one push on a SQLite file through its process's group commit; returns
    the run's id or raises peewee's IntegrityError for a unique violation."""
    path = os.path.abspath(str(db.database))
    group = _group_commits.get(path)
    if group is None:
        with _group_commits_guard:
            group = _group_commits.setdefault(path, _GroupCommit())
    job = _Job(run_sql, run_params, container_sql)
    group.submit(db, job)
    if job.retry:
        job = _Job(run_sql, run_params, container_sql)
        _run_batch(db, [job])
    if job.run_pk is None:
        raise IntegrityError("unique constraint violated")
    return int(job.run_pk)


_RUN_PLACEHOLDER_TEXT = str(RUN_PLACEHOLDER)


def with_run(params: list[Any], at: int, run_pk: int) -> list[Any]:
    """A follow-up statement's parameters with the run's id in place: at ``at``, and
    in the JSON body of an event (its last parameter), where the placeholder number
    stands for it."""
    params = list(params)
    params[at] = run_pk
    last = params[-1]
    if isinstance(last, str) and _RUN_PLACEHOLDER_TEXT in last:
        params[-1] = last.replace(_RUN_PLACEHOLDER_TEXT, str(run_pk))
    return params
