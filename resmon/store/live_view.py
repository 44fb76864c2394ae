"""The questions about live runs: what runs now (the live view) and a run's samples
as history at a granularity.  Plain arguments in, plain dicts out, so ``resmon query
--db`` asks them without HTTP as the read API does."""

from __future__ import annotations

from datetime import UTC, datetime
from typing import Any

import orjson

from resmon.schema import format_time
from resmon.store import samples as samplemod
from resmon.store.live import RUNNING
from resmon.store.models import Run, RunBatch

MAX_BUCKETS = 20_000
_SCOPE = ("organization", "repository", "workflow", "job")


def _utc(value: Any) -> datetime | None:
    if value is None:
        return None
    if isinstance(value, str):
        value = datetime.fromisoformat(value)
    return value.replace(tzinfo=UTC) if value.tzinfo is None else value.astimezone(UTC)


def _time(value: Any) -> str | None:
    dt = _utc(value)
    return None if dt is None else format_time(dt)


def live_runs(scope_filter: dict[str, str] | None = None) -> dict[str, Any]:
    """Every running run (oldest start first) with its latest snapshot, and the
    latest host figures per runner host among them.

    ``{"runs": [{id, organization, repository, workflow, job, run_id, run_attempt,
    host, state, start_time, last_batch_at, live_interval_seconds, command_container,
    snapshot: {t, host_stats, job, containers} | None}], "hosts": [{host, t,
    cpu_percent, mem_used_bytes, mem_total_bytes, runs}]}``"""
    query = Run.select(
        Run.id,
        *(getattr(Run, f) for f in _SCOPE),
        Run.run_id,
        Run.run_attempt,
        Run.host,
        Run.start_time,
        Run.last_batch_at,
        Run.live_interval_seconds,
        Run.command_container,
        Run.snapshot,
    ).where(Run.state == RUNNING)
    for name, value in (scope_filter or {}).items():
        query = query.where(getattr(Run, name) == value)
    runs = []
    hosts: dict[str, dict[str, Any]] = {}
    for row in query.order_by(Run.start_time, Run.id).tuples():
        run_pk, org, repo, workflow, job, run_id, attempt, host, start, last, interval = row[:11]
        command_container, snapshot_text = row[11], row[12]
        snapshot = _snapshot(snapshot_text)
        runs.append(
            {
                "id": run_pk,
                "organization": org,
                "repository": repo,
                "workflow": workflow,
                "job": job,
                "run_id": run_id,
                "run_attempt": attempt,
                "host": host,
                "state": RUNNING,
                "start_time": _time(start),
                "last_batch_at": _time(last),
                "live_interval_seconds": interval,
                "command_container": command_container,
                "snapshot": snapshot,
            }
        )
        _add_host(hosts, host, snapshot)
    return {"runs": runs, "hosts": [hosts[name] for name in sorted(hosts)]}


def _snapshot(text: str | None) -> dict[str, Any] | None:
    if not text:
        return None
    try:
        snapshot = orjson.loads(text)
    except orjson.JSONDecodeError:
        return None
    if not isinstance(snapshot, dict):
        return None
    return {k: snapshot.get(k) for k in ("t", "host_stats", "job", "containers")}


def _add_host(hosts: dict[str, dict[str, Any]], host: str | None, snap: dict | None) -> None:
    name = host or ""
    entry = hosts.setdefault(
        name,
        {
            "host": host,
            "t": None,
            "cpu_percent": None,
            "mem_used_bytes": None,
            "mem_total_bytes": None,
            "runs": 0,
        },
    )
    entry["runs"] += 1
    if snap is None or not isinstance(snap.get("host_stats"), dict) or not snap.get("t"):
        return
    if entry["t"] is not None and str(snap["t"]) <= str(entry["t"]):
        return
    stats = snap["host_stats"]
    entry.update(
        t=snap["t"],
        cpu_percent=stats.get("cpu_percent"),
        mem_used_bytes=stats.get("mem_used_bytes"),
        mem_total_bytes=stats.get("mem_total_bytes"),
    )


def run_history(
    run_pk: int,
    granularity: str | None = None,
    since: datetime | None = None,
    until: datetime | None = None,
) -> dict[str, Any] | None:
    """A run's stored samples per bucket (:func:`resmon.store.samples.history`); None
    when there is no such run.  Without ``granularity`` it is chosen from the range
    (``since``/``until``, by default the run's first and last sample)."""
    run = Run.select(Run.id, Run.state, Run.partial).where(Run.id == run_pk).tuples().first()
    if run is None:
        return None
    span = (
        RunBatch.select(RunBatch.first_t, RunBatch.last_t)
        .where(RunBatch.run == run_pk)
        .order_by(RunBatch.seq)
    )
    firsts = list(span.tuples())
    lo = min((_utc(f) for f, _ in firsts), default=None)
    hi = max((_utc(last) for _, last in firsts), default=None)
    start = since or lo
    end = until or hi
    chosen = granularity
    if chosen is None:
        chosen = (
            samplemod.choose_granularity(start, end) if start and end and start <= end else "raw"
        )
    query = RunBatch.select(RunBatch.samples).where(RunBatch.run == run_pk)
    if since is not None:
        query = query.where(RunBatch.last_t >= since.replace(tzinfo=None))
    if until is not None:
        query = query.where(RunBatch.first_t < until.replace(tzinfo=None))
    stored: list[dict[str, Any]] = []
    for (blob,) in query.order_by(RunBatch.seq).tuples().iterator():
        stored.extend(samplemod.decode(blob))
    buckets = samplemod.history(stored, chosen, since, until)
    truncated = len(buckets) > MAX_BUCKETS
    return {
        "run": run_pk,
        "state": run[1],
        "partial": bool(run[2]),
        "granularity": chosen,
        "since": _time(start),
        "until": _time(end),
        "truncated": truncated,
        "buckets": buckets[-MAX_BUCKETS:] if truncated else buckets,
    }
