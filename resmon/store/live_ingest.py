"""One live batch's statements, as cached raw SQL on a DB-API cursor.

:func:`resmon.store.live.store_batch` prepares a :class:`BatchWrite` outside any
transaction (the samples serialised once, hashed and compressed, the snapshot's
JSON text, every parameter converted) and runs its :meth:`BatchWrite.apply` in one
transaction: on a SQLite file inside the process's group commit
(:func:`resmon.store.group_commit.run_grouped`, with the pushes and the other threads'
batches: one write lock, one BEGIN IMMEDIATE, one COMMIT), elsewhere in
``db.atomic()``.  Profiled before (SQLite, in process): building peewee queries was
two thirds of a batch's storage, and every batch took the write lock on its own.

Exactly once per (run, seq) and the conditional state change are the database's,
not a read-then-write: the run and the batch are ``INSERT ... ON CONFLICT DO
NOTHING`` (SQLite ``INSERT OR IGNORE``; a unique violation neither raises nor
aborts the transaction, so the group's other writes stand), a batch that inserted
nothing is a duplicate or a conflict by its stored hash, and ``running``/``lost``
becomes ``running`` by ``UPDATE ... WHERE state IN ('running', 'lost')``, whose row
count decides whether the events are appended, in the same transaction.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any

from resmon.store.events import event_sql
from resmon.store.models import Run, RunBatch, database_proxy

RUNNING, FINISHED, LOST = "running", "finished", "lost"
CREATED, DUPLICATE = "created", "duplicate"
_BATCH_COLUMNS = (
    "run",
    "seq",
    "first_t",
    "last_t",
    "sample_count",
    "body_sha256",
    "samples",
    "received_at",
)
_SQL: dict[tuple[str, str], str] = {}


def _q(name: str) -> str:
    return f'"{name}"'


def _templates() -> dict[str, str]:
    runs, batches = _q(Run._meta.table_name), _q(RunBatch._meta.table_name)
    columns = ", ".join(_q(getattr(RunBatch, c).column_name) for c in _BATCH_COLUMNS)
    marks = ", ".join("?" * len(_BATCH_COLUMNS))
    run_id = _q(RunBatch.run.column_name)
    return {
        "run_by_live_key": f"SELECT id FROM {runs} WHERE live_key = ?",
        "run_by_run_key": f"SELECT id FROM {runs} WHERE run_key = ?",
        "run_state": f"SELECT state FROM {runs} WHERE id = ?",
        "insert_batch": f"INSERT INTO {batches} ({columns}) VALUES ({marks}) "
        "ON CONFLICT DO NOTHING",
        "batch_hash": f"SELECT body_sha256 FROM {batches} WHERE {run_id} = ? AND seq = ?",
        "update_run": f"UPDATE {runs} SET state = ?, last_batch_at = ?, snapshot = ? "
        f"WHERE id = ? AND state IN (?, ?)",
    }


def sql(name: str) -> str:
    """A statement of this module in the bound database's parameter style (cached)."""
    param = database_proxy.param
    text = _SQL.get((name, param))
    if text is None:
        for key, template in _templates().items():
            _SQL[(key, param)] = template.replace("?", param)
        text = _SQL[(name, param)]
    return text


def batch_params(run_pk: int, row: dict[str, Any]) -> list[Any]:
    """The INSERT's parameters of one batch row, converted as peewee converts them."""
    params = []
    for name in _BATCH_COLUMNS:
        value = run_pk if name == "run" else row[name]
        params.append(getattr(RunBatch, name).db_value(value))
    return params


def find_run(cursor: Any, live_key: str) -> int | None:
    row = cursor.execute(sql("run_by_live_key"), [live_key]).fetchone()
    return None if row is None else int(row[0])


@dataclass
class BatchWrite:
    """One batch to store; :meth:`apply` fills ``run_pk``, ``state``, ``stored`` (or
    ``conflict``).  ``done``/``retry`` belong to the group commit."""

    live_key: str
    run_pk: int | None  # the run's id when it existed before the transaction
    create: tuple[str, list[Any], str] | None  # INSERT of the run, its params, run_key
    row: dict[str, Any]  # the batch row's values but the run (see batch_params)
    received: Any  # last_batch_at, converted
    snapshot_tail: str  # the snapshot's JSON text without its leading {"run":N
    scope_params: list[Any]  # an event's created_at and scope (organization ... job)
    started_data: str  # the run_started event's JSON text without its leading {"run":N
    state: str = ""
    stored: str = ""
    conflict: bool = False
    created: bool = False
    done: bool = False
    retry: bool = False
    events: list[str] = field(default_factory=list)

    def apply(self, cursor: Any) -> None:
        """The statements, on ``cursor`` (``execute(sql, params)`` returning a cursor)."""
        self.conflict = self.created = False
        self.events = []
        run_pk = self.run_pk if self.run_pk is not None else self._create(cursor)
        self.run_pk = run_pk
        inserted = cursor.execute(sql("insert_batch"), batch_params(run_pk, self.row))
        if inserted.rowcount != 1:
            found = cursor.execute(sql("batch_hash"), [run_pk, self.row["seq"]]).fetchone()
            if found is None:
                raise RuntimeError("batch insert ignored but no batch matches")
            self.conflict = found[0] != self.row["body_sha256"]
            self.state, self.stored = self._state(cursor, run_pk), DUPLICATE
            return
        self.stored = CREATED
        snapshot = _with_run(run_pk, self.snapshot_tail)
        changed = cursor.execute(
            sql("update_run"), [RUNNING, self.received, snapshot, run_pk, RUNNING, LOST]
        ).rowcount
        if not changed:
            self.state = self._state(cursor, run_pk)
            return
        self.state = RUNNING
        if self.created:
            self._event(cursor, "run_started", run_pk, _with_run(run_pk, self.started_data))
        self._event(cursor, "snapshot", run_pk, snapshot)

    def _create(self, cursor: Any) -> int:
        """The run of a first batch, or the row another write created meanwhile (or
        the run pushed whole, without streaming, under the same run key)."""
        if self.create is None:  # it existed before; deleted since: a real error
            raise RuntimeError("the live run disappeared")
        statement, params, run_key = self.create
        done = cursor.execute(statement, params)
        if done.rowcount == 1:
            self.created = True
            if database_proxy.returning_clause:
                return int(done.fetchone()[0])
            return int(done.lastrowid)
        found = find_run(cursor, self.live_key)
        if found is None:
            row = cursor.execute(sql("run_by_run_key"), [run_key]).fetchone()
            if row is None:
                raise RuntimeError("run insert ignored but no run matches")
            found = int(row[0])
        return found

    def _state(self, cursor: Any, run_pk: int) -> str:
        row = cursor.execute(sql("run_state"), [run_pk]).fetchone()
        return FINISHED if row is None else str(row[0])

    def _event(self, cursor: Any, kind: str, run_pk: int, data: str) -> None:
        cursor.execute(event_sql(), [kind, *self.scope_params, run_pk, data])
        self.events.append(kind)


def _with_run(run_pk: int, tail: str) -> str:
    # tail is '{...}' of the other fields: the run's id goes first, as before.
    return f'{{"run":{run_pk},{tail[1:]}' if len(tail) > 2 else f'{{"run":{run_pk}}}'


class PeeweeCursor:
    """``execute`` through peewee's ``execute_sql`` (its error wrapping, PostgreSQL's
    reconnect), for the writes outside the SQLite group commit."""

    def __init__(self, db: Any) -> None:
        self.db = db

    def execute(self, statement: str, params: list[Any]) -> Any:
        return self.db.execute_sql(statement, params)
