"""Live runs: batches in, run states, lost runs, the live view.

A run streamed by ``resmon collect`` (``POST /api/v1/metrics/live``) is found by its
``live_key``, a hash of its scope and the collector's ``run_key`` uuid, so a run key
is per scope like an idempotency key.  States:

- ``running``: created by the first batch stored (:func:`store_batch`), which
  appends ``run_started``; each batch appends ``snapshot`` (its latest sample) and
  moves ``last_batch_at``;
- ``finished``: the final push (``POST /api/v1/metrics``) whose
  ``run_summary.collector.run_key`` names the run finishes that same row
  (:func:`finish_run`, called by :mod:`resmon.store.write`), from ``running`` or
  ``lost``, appending ``run_finished``; a batch arriving afterwards is stored, and
  changes nothing else;
- ``lost``: no batch for max(3 x its live interval, the server's floor)
  (:func:`mark_lost`): its summary is made from its stored samples
  (:func:`resmon.store.samples.partial_summary`), ``partial`` is true, ``run_lost``
  is appended.  A later batch makes it ``running`` again (the collector was only
  cut off); a final push finishes it, ``partial`` false.

Every state change is one conditional UPDATE (``WHERE state = 'running' ...``) in the
transaction that appends its event: with several workers and replicas on one
database exactly one of them wins, and the event exists iff the change was stored.
"""

from __future__ import annotations

import hashlib
import logging
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta
from typing import Any

import orjson
from peewee import SqliteDatabase

from resmon.schema import format_time
from resmon.store import db as dbmod
from resmon.store import live_ingest as ingest
from resmon.store import samples as samplemod
from resmon.store.derive import derive, sha256_hex
from resmon.store.events import append_event
from resmon.store.group_commit import insert_sql, run_grouped
from resmon.store.live_ingest import CREATED, DUPLICATE, FINISHED, LOST, RUNNING  # noqa: F401 (this module's API)
from resmon.store.models import ContainerStat, Event, Run, RunBatch, database_proxy

log = logging.getLogger(__name__)

STATES = (RUNNING, FINISHED, LOST)
DEFAULT_LIVE_INTERVAL = 15.0
DEFAULT_LOST_FLOOR = 120.0  # seconds: a run is lost after max(3 x interval, this)
LOST_INTERVALS = 3


class BatchConflict(Exception):
    """The batch's seq was stored before with other samples."""

    def __init__(self, run_id: int) -> None:
        super().__init__(f"batch already stored for run {run_id} with other samples")
        self.run_id = run_id


@dataclass(frozen=True)
class BatchResult:
    run: int
    state: str
    stored: str  # CREATED or DUPLICATE


def live_key(organization: str, repository: str, workflow: str, job: str, run_key: str) -> str:
    """SHA-256 of (scope, the collector's run_key); ``repository`` canonical."""
    return sha256_hex("\0".join(("live-v1", organization, repository, workflow, job, run_key)))


def _naive(dt: datetime) -> datetime:
    return dt.astimezone(UTC).replace(tzinfo=None)


def _scope(execution: dict[str, Any]) -> dict[str, str]:
    return {k: execution[k] for k in ("organization", "repository", "workflow", "job")}


def _snapshot(run_pk: int, host: str | None, sample: dict[str, Any]) -> dict[str, Any]:
    return {
        "run": run_pk,
        "host": host,
        "t": sample.get("t"),
        "host_stats": sample.get("host"),
        "job": sample.get("job"),
        "containers": sample.get("containers"),
    }


def store_batch(
    execution: dict[str, Any],
    run: dict[str, Any],
    seq: int,
    samples: list[dict[str, Any]],
    *,
    now: datetime | None = None,
    times: list[datetime] | None = None,
) -> BatchResult:
    """Store one validated batch once per (run, seq); see the module's docstring.

    ``execution`` is canonical (:func:`resmon.schema.validate_push`), ``run`` and
    ``samples`` validated (:mod:`resmon.server.live_wire`; ``times`` the samples'
    times it parsed, else they are parsed here).  Raises :class:`BatchConflict` for
    a seq stored before with other samples.  The statements are
    :mod:`resmon.store.live_ingest`'s; everything they need is made before the
    transaction, since on SQLite whatever runs inside it runs under the write lock."""
    job = _prepare(execution, run, seq, samples, now, times)
    db = database_proxy
    target = db.obj
    if (
        isinstance(target, SqliteDatabase)
        and str(target.database) not in ("", ":memory:")
        and not target.in_transaction()
    ):
        run_grouped(target, job)
    else:
        with dbmod.write_lock(target), db.atomic():
            job.apply(ingest.PeeweeCursor(db))
    assert job.run_pk is not None
    if job.conflict:
        raise BatchConflict(job.run_pk)
    return BatchResult(job.run_pk, job.state, job.stored)


def _prepare(
    execution: dict[str, Any],
    run: dict[str, Any],
    seq: int,
    samples: list[dict[str, Any]],
    now: datetime | None,
    times: list[datetime] | None,
) -> ingest.BatchWrite:
    received = _naive(now or datetime.now(UTC))
    scope = _scope(execution)
    key = live_key(*scope.values(), run["run_key"])
    if times is None:
        times = [samplemod.sample_time(s) for s in samples]
    latest = samples[max(range(len(samples)), key=times.__getitem__)]
    # Serialised once: the hash (as before: of orjson's text of the samples) and the blob.
    text = orjson.dumps(samples)
    row = {
        "seq": seq,
        "first_t": _naive(min(times)),
        "last_t": _naive(max(times)),
        "sample_count": len(samples),
        "body_sha256": hashlib.sha256(text).hexdigest(),
        "samples": samplemod.encode_text(text),
        "received_at": received,
    }
    run_pk = ingest.find_run(ingest.PeeweeCursor(database_proxy), key)
    create = None if run_pk is not None else _create_statement(execution, run, key, received)
    snapshot = _snapshot(0, run.get("host"), latest)
    del snapshot["run"]
    started = _started_data(0, execution, run)
    del started["run"]
    return ingest.BatchWrite(
        live_key=key,
        run_pk=run_pk,
        create=create,
        row=row,
        received=Run.last_batch_at.db_value(received),
        snapshot_tail=orjson.dumps(snapshot).decode(),
        scope_params=[Event.created_at.db_value(received), *(str(v) for v in scope.values())],
        started_data=orjson.dumps(started).decode(),
    )


def _started_data(run_pk: int, execution: dict[str, Any], run: dict[str, Any]) -> dict[str, Any]:
    return {
        "run": run_pk,
        "run_id": execution.get("run_id"),
        "run_attempt": execution.get("run_attempt") or "",
        "host": run.get("host"),
        "start_time": run.get("start_time"),
        "live_interval_seconds": run.get("live_interval_seconds"),
        "mode": run.get("mode"),
        "command_container": run.get("command_container"),
    }


def _run_by_live_key(key: str) -> tuple[int, str] | None:
    row = Run.select(Run.id, Run.state).where(Run.live_key == key).tuples().first()
    return None if row is None else (int(row[0]), str(row[1]))


def _create_statement(
    execution: dict[str, Any], run: dict[str, Any], key: str, received: datetime
) -> tuple[str, list[Any], str]:
    """The INSERT of a first batch's run row (``ON CONFLICT DO NOTHING``: when another
    worker created it meanwhile, or the run was pushed whole, without streaming,
    under the same scope, run id, attempt and start time, that row is used), its
    parameters and the row's run key."""
    placeholder = {"start_time": run.get("start_time"), "state": RUNNING}
    derived = derive(execution, placeholder, sha256_hex(f"live\0{key}"))
    row = dict(derived.columns)
    row.update(
        repository=derived.repository,
        received_at=received,
        payload=orjson.dumps(placeholder).decode(),
        state=RUNNING,
        live_key=key,
        host=run.get("host"),
        live_interval_seconds=run.get("live_interval_seconds"),
        command_container=run.get("command_container"),
        last_batch_at=received,
    )
    statement, params = insert_sql(Run, row, on_conflict_ignore=True)
    return statement, params, row["run_key"]


# --- the final push ------------------------------------------------------------


def collector_run_key(run_summary: dict[str, Any]) -> str | None:
    """``run_summary.collector.run_key`` when it is a usable key (1 to 255 printable
    ASCII characters), else None: the summary's ``collector`` is not checked on a push."""
    collector = run_summary.get("collector")
    value = collector.get("run_key") if isinstance(collector, dict) else None
    if not isinstance(value, str) or not 0 < len(value) <= 255:
        return None
    if not (value.isascii() and value.isprintable()) or " " in value:
        return None
    return value


def finish_run(
    key: str,
    row: dict[str, Any],
    container_rows: list[dict[str, Any]],
    scope: dict[str, str],
) -> int | None:
    """Finish the running or lost run with ``live_key`` ``key`` with a final push's
    columns (``row``) and container rows; returns its id, or None when there is no
    such run or it is finished already (the caller then stores the push as any
    other).  Raises peewee's IntegrityError when the push's keys belong to another
    run (the caller answers as for any violation)."""
    found = _run_by_live_key(key)
    if found is None or found[1] == FINISHED:
        return None
    run_pk = found[0]
    columns = {k: v for k, v in row.items() if k not in ("live_key",)}
    columns.update(state=FINISHED, partial=False)
    db = database_proxy
    with dbmod.write_lock(db.obj), db.atomic():
        changed = (
            Run.update(**columns)
            .where((Run.id == run_pk) & (Run.state.in_((RUNNING, LOST))))
            .execute()
        )
        if not changed:
            return None
        ContainerStat.delete().where(ContainerStat.run == run_pk).execute()
        if container_rows:
            ContainerStat.insert_many([{**c, "run": run_pk} for c in container_rows]).execute()
        append_event("run_finished", scope, run_pk, finished_data(run_pk, row, found[1]))
    return run_pk


def finished_data(
    run_pk: int | None, row: dict[str, Any], was: str | None = None
) -> dict[str, Any]:
    """The body of a ``run_finished`` event from a stored run's columns."""
    data = {
        "run": run_pk,
        "run_id": row.get("run_id"),
        "run_attempt": row.get("run_attempt") or "",
        "host": row.get("host"),
        "duration_seconds": row.get("duration_seconds"),
        "job_cpu_seconds": row.get("job_cpu_seconds"),
        "job_cpu_cores_p95": row.get("job_cpu_cores_p95"),
        "job_memory_bytes_peak": row.get("job_memory_bytes_peak"),
        "partial": False,
    }
    if was is not None:
        data["was"] = was
    return data


# --- lost runs -----------------------------------------------------------------


def lost_after(live_interval: float | None, floor: float) -> float:
    """Seconds without a batch after which a running run is lost."""
    interval = live_interval if live_interval and live_interval > 0 else DEFAULT_LIVE_INTERVAL
    return max(LOST_INTERVALS * interval, floor)


def mark_lost(floor: float = DEFAULT_LOST_FLOOR, *, now: datetime | None = None) -> list[int]:
    """Make every running run without a batch for its timeout ``lost``, with a partial
    summary from its samples; returns the ids this call made lost (another worker
    may win a run: then it is not in the list)."""
    at = _naive(now or datetime.now(UTC))
    # The shortest timeout any run can have is the floor: only those can be due.
    due = (
        Run.select(Run.id, Run.live_interval_seconds, Run.last_batch_at)
        .where((Run.state == RUNNING) & (Run.last_batch_at < at - timedelta(seconds=floor)))
        .tuples()
    )
    lost = []
    for run_pk, interval, last in list(due):
        cutoff = at - timedelta(seconds=lost_after(interval, floor))
        if last is not None and last < cutoff and _lose(int(run_pk), cutoff, at):
            lost.append(int(run_pk))
    return lost


def _lose(run_pk: int, cutoff: datetime, at: datetime) -> bool:
    """Make one run lost if it still is running with no batch since ``cutoff``.  The
    summary is made before the transaction (reading every batch takes a while; the
    write lock is not held for it): the UPDATE's condition makes a batch stored
    meanwhile win, and the run stays running."""
    run = Run.get_or_none(Run.id == run_pk)
    if run is None or run.state != RUNNING:
        return False
    summary = samplemod.partial_summary(
        run_samples(run_pk), command_container=run.command_container, host=run.host
    )
    execution = {
        "organization": run.organization,
        "repository": run.repository,
        "workflow": run.workflow,
        "job": run.job,
        "run_id": run.run_id,
        "run_attempt": run.run_attempt,
    }
    columns: dict[str, Any] = {"state": LOST, "partial": True, "received_at": at}
    containers: list[dict[str, Any]] = []
    if summary is not None:
        # The start time of the row stays: the run key hash was made from it.
        summary["start_time"] = (
            format_time(run.start_time.replace(tzinfo=UTC))
            if (run.start_time is not None)
            else summary["start_time"]
        )
        derived = derive(execution, summary, run.body_sha256)
        keep = ("run_key", "body_sha256", "repository", "start_time", "command_container")
        columns.update({k: v for k, v in derived.columns.items() if k not in keep})
        columns["payload"] = orjson.dumps(summary).decode()
        containers = derived.containers
    db = database_proxy
    with dbmod.write_lock(db.obj), db.atomic():
        changed = (
            Run.update(**columns)
            .where(
                (Run.id == run_pk)
                & (Run.state == RUNNING)
                & (Run.last_batch_at < cutoff)
                & (Run.last_batch_at == run.last_batch_at)
            )
            .execute()
        )
        if not changed:
            return False
        ContainerStat.delete().where(ContainerStat.run == run_pk).execute()
        if containers:
            ContainerStat.insert_many([{**c, "run": run_pk} for c in containers]).execute()
        data = finished_data(run_pk, {**columns, "run_id": run.run_id, "host": run.host})
        data.update(partial=True, last_batch_at=format_time(run.last_batch_at.replace(tzinfo=UTC)))
        append_event("run_lost", execution, run_pk, data)
    log.info("run %d lost: no batch since %s", run_pk, run.last_batch_at)
    return True


def run_samples(run_pk: int) -> list[dict[str, Any]]:
    """Every stored sample of a run, batch by batch in seq order."""
    out: list[dict[str, Any]] = []
    query = RunBatch.select(RunBatch.samples).where(RunBatch.run == run_pk).order_by(RunBatch.seq)
    for (blob,) in query.tuples().iterator():
        out.extend(samplemod.decode(blob))
    return out
