"""Steps: several ``resmon collect --step NAME -- CMD`` pushes of one job, one run.

Each step of a job is wrapped on its own (``--step build``, ``--step test``, ...) and
pushes its own run summary with ``step: {"name": NAME}``.  The server stores every
step once (``run_steps``) and keeps ONE run per (scope, run id, attempt) whose figures
are re-made from all its steps at each step push, in the step's transaction:

- start = the first step's start, end = the last step's end, duration = end - start
  (the wall time of the job, gaps between steps included);
- CPU-seconds (the run's and the job's) = the sum of the steps'; samples likewise;
- memory peak (the job's, each container's, the host's) = the largest of the steps';
- each statistic's peak is the largest of the steps' peaks (exact), its avg the
  steps' averages weighted by their sample counts (exact), and p50..p99 the largest
  of the steps' (an upper bound: percentiles of parts do not make the whole's); the
  merged summary's ``merged_from_steps`` says so;
- containers are merged by name (a step's wrapped command is its own container,
  named after the step), the top processes are the union's top.

Idempotency, as for a run: a step is stored once per ``step_key`` (scope, run id,
attempt, step name, start time) and once per scoped idempotency key, so a retried
step push is a duplicate (200) and another body for the same step a conflict (409;
the same key with another body 422).  Neither touches the run's own keys: the run's
``run_key`` is made from (scope, run id, attempt) alone, so no step push is ever the
"different body for a run already stored" of a whole-run push.  A Go-style push (no
``step``) goes the usual way (:mod:`resmon.store.write`), unchanged.

Concurrent steps of one run (two replicas, PostgreSQL) are serialised by a row lock
on the run (SELECT ... FOR UPDATE); on a SQLite file the writer lock does it.
"""

from __future__ import annotations

from datetime import UTC, datetime
from typing import Any

import orjson
from peewee import IntegrityError, PostgresqlDatabase

from resmon.schema import PushPayload, format_time, parse_time
from resmon.stats import STAT_KEYS
from resmon.store import db as dbmod
from resmon.store import live
from resmon.store.derive import derive, scoped_idempotency_key, sha256_hex
from resmon.store.events import append_event
from resmon.store.job_figures import job_columns
from resmon.store.models import ContainerStat, Run, RunRegression, RunStep, database_proxy
from resmon.store.values import bigint, name, number

# The top processes the merged summary keeps (per list), as a collector's --top would.
MERGED_TOP = 10
# Steps one run may have: each step push re-reads its run's steps, so their number
# bounds what one push costs.
MAX_STEPS_PER_RUN = 100
STEP_COLUMNS = (
    "id",
    "name",
    "start_time",
    "end_time",
    "duration_seconds",
    "sample_count",
    "cpu_seconds",
    "memory_bytes_peak",
    "memory_kind",
    "exit_code",
    "disk_read_bytes",
    "disk_write_bytes",
    "net_rx_bytes",
    "net_tx_bytes",
)
# A step's I/O columns: (column, the job block's object, its field).
IO_COLUMNS = (
    ("disk_read_bytes", "io", "read_bytes"),
    ("disk_write_bytes", "io", "write_bytes"),
    ("net_rx_bytes", "network", "rx_bytes"),
    ("net_tx_bytes", "network", "tx_bytes"),
)


class TooManySteps(Exception):
    """The run has :data:`MAX_STEPS_PER_RUN` steps already (``run_id``: its id)."""

    def __init__(self, run_id: int) -> None:
        super().__init__(f"run {run_id} has {MAX_STEPS_PER_RUN} steps already")
        self.run_id = run_id


class StepConflict(Exception):
    """The step is stored already with another summary: ``same_key`` when the
    idempotency key was used with another body (422), else the same step under
    another key or none (409).  ``run_id`` is the run the step belongs to."""

    def __init__(self, run_id: int, same_key: bool) -> None:
        what = "idempotency key already used" if same_key else "step already stored"
        super().__init__(f"{what} for run {run_id} with a different body")
        self.run_id = run_id
        self.same_key = same_key


def step_name(run_summary: Any) -> str | None:
    """The step a pushed summary is (``step.name``), or None for a whole run."""
    step = run_summary.get("step") if isinstance(run_summary, dict) else None
    value = step.get("name") if isinstance(step, dict) else None
    return value if isinstance(value, str) and value.strip() else None


def steps_run_key(execution: dict[str, Any], repository: str) -> str:
    """The ``run_key`` of the run that merges a job's steps: (scope, run id, attempt)."""
    parts = (
        "steps-v1",
        str(execution.get("organization", "")),
        repository,
        str(execution.get("workflow", "")),
        str(execution.get("job", "")),
        str(execution.get("run_id", "")),
        str(execution.get("run_attempt") or ""),
    )
    return sha256_hex("\0".join(parts))


def _naive(value: Any) -> datetime | None:
    try:
        return parse_time(value).replace(tzinfo=None)
    except (TypeError, ValueError):
        return None


def step_row(summary: dict[str, Any]) -> dict[str, Any]:
    """A step's own columns from its summary: its job's CPU-seconds and memory peak."""
    figures = job_columns(summary)
    command = summary.get("command") if isinstance(summary.get("command"), dict) else {}
    exit_code = command.get("exit_code")
    cpu = figures["job_cpu_seconds"]
    job = summary.get("job") if isinstance(summary.get("job"), dict) else {}
    io = {
        column: bigint(job[block].get(field)) if isinstance(job.get(block), dict) else None
        for column, block, field in IO_COLUMNS
    }
    return {
        **io,
        "name": name(step_name(summary)) or "step",
        "start_time": _naive(summary.get("start_time")),
        "end_time": _naive(summary.get("end_time")),
        "duration_seconds": number(summary.get("duration_seconds")),
        "sample_count": bigint(summary.get("sample_count")),
        "cpu_seconds": cpu if cpu is not None else number(summary.get("cpu_seconds")),
        "memory_bytes_peak": figures["job_memory_bytes_peak"],
        "memory_kind": figures["job_memory_kind"],
        "exit_code": exit_code
        if isinstance(exit_code, int)
        and not isinstance(exit_code, bool)
        and -(2**31) <= exit_code < 2**31
        else None,
    }


def store_step(
    payload: PushPayload, idempotency_key: str | None, digest: str, now: datetime
) -> tuple[int, bool]:
    """Store one step push; returns (the run's id, whether the step was new).

    Raises :class:`StepConflict` when the step is stored with another body."""
    summary = payload.run_summary
    execution = payload.execution
    repository = execution["repository"]
    scope = {
        "organization": execution["organization"],
        "repository": repository,
        "workflow": execution["workflow"],
        "job": execution["job"],
    }
    row = step_row(summary)
    start = row["start_time"].isoformat() if row["start_time"] else f"body:{digest}"
    step_key = sha256_hex(
        "\0".join(
            (
                "step-v1",
                *scope.values(),
                str(execution["run_id"]),
                str(execution.get("run_attempt") or ""),
                row["name"],
                start,
            )
        )
    )
    scoped_key = scoped_idempotency_key(*scope.values(), idempotency_key)
    received = now.astimezone(UTC).replace(tzinfo=None)
    run_key = steps_run_key(execution, repository)
    db = database_proxy
    with dbmod.write_lock(db.obj), db.atomic():
        run_pk = _run_of(run_key, execution, scope, received)
        if RunStep.select().where(RunStep.run == run_pk).count() >= MAX_STEPS_PER_RUN:
            # A retry of a stored step is still its duplicate; a new one is refused.
            if RunStep.select().where(RunStep.step_key == step_key).exists():
                return _stored_before(scoped_key, step_key, digest), False
            raise TooManySteps(run_pk)
        try:
            with db.atomic():  # a savepoint: the run row above stays
                RunStep.insert(
                    run=run_pk,
                    step_key=step_key,
                    scoped_idempotency_key=scoped_key,
                    body_sha256=digest,
                    received_at=received,
                    payload=orjson.dumps(summary).decode(),
                    **row,
                ).execute()
        except IntegrityError:
            return _stored_before(scoped_key, step_key, digest), False
        merged = merge_steps(_step_summaries(run_pk))
        _update_run(run_pk, execution, merged, received, scope, row["name"])
    return run_pk, True


def _run_of(
    run_key: str, execution: dict[str, Any], scope: dict[str, str], received: datetime
) -> int:
    """The id of the run merging these steps, made on the first step, locked for the
    rest of the transaction (two replicas storing two steps at once take turns)."""
    Run.insert(
        **scope,
        run_id=execution["run_id"],
        run_attempt=str(execution.get("run_attempt") or ""),
        body_sha256="",
        run_key=run_key,
        received_at=received,
        payload="{}",
    ).on_conflict_ignore().execute()
    query = Run.select(Run.id).where(Run.run_key == run_key)
    if isinstance(database_proxy.obj, PostgresqlDatabase):
        query = query.for_update()
    return int(query.tuples().get()[0])


def _stored_before(scoped_key: str | None, step_key: str, digest: str) -> int:
    """The run of a step already stored: a duplicate, or the conflict its body makes."""
    if scoped_key:
        found = (
            RunStep.select(RunStep.run, RunStep.body_sha256)
            .where(RunStep.scoped_idempotency_key == scoped_key)
            .tuples()
            .first()
        )
        if found is not None:
            if found[1] != digest:
                raise StepConflict(int(found[0]), same_key=True)
            return int(found[0])
    found = (
        RunStep.select(RunStep.run, RunStep.body_sha256)
        .where(RunStep.step_key == step_key)
        .tuples()
        .first()
    )
    if found is None:
        raise RuntimeError("unique constraint violated but no matching step found")
    if found[1] != digest:
        raise StepConflict(int(found[0]), same_key=False)
    return int(found[0])


def _step_summaries(run_pk: int) -> list[dict[str, Any]]:
    rows = (
        RunStep.select(RunStep.payload)
        .where(RunStep.run == run_pk)
        .order_by(RunStep.start_time, RunStep.id)
        .tuples()
    )
    out = []
    for (text,) in rows:
        try:
            summary = orjson.loads(text)
        except orjson.JSONDecodeError:
            continue
        if isinstance(summary, dict):
            out.append(summary)
    return out


def _update_run(
    run_pk: int,
    execution: dict[str, Any],
    merged: dict[str, Any],
    received: datetime,
    scope: dict[str, str],
    step: str,
) -> None:
    """The run's columns, containers and a ``run_finished`` event from the merged steps."""
    body = sha256_hex(
        orjson.dumps({"execution": execution, "run_summary": merged}, option=orjson.OPT_SORT_KEYS)
    )
    derived = derive(execution, merged, body)
    columns = dict(derived.columns)
    for kept in ("run_key", "organization", "workflow", "job", "run_id", "run_attempt"):
        columns.pop(kept)
    host = (merged.get("collector") or {}).get("host")
    columns.update(
        received_at=received,
        payload=orjson.dumps(merged).decode(),
        state="finished",
        partial=False,
        host=host if isinstance(host, str) and 0 < len(host) <= 255 else None,
    )
    Run.update(**columns).where(Run.id == run_pk).execute()
    ContainerStat.delete().where(ContainerStat.run == run_pk).execute()
    # Flags of an earlier step's comparison are of figures the run no longer has: the
    # push's answer compares the run as it is now and flags it again where it must.
    RunRegression.delete().where(RunRegression.run == run_pk).execute()
    if derived.containers:
        ContainerStat.insert_many([{**c, "run": run_pk} for c in derived.containers]).execute()
    data = live.finished_data(run_pk, columns | {"run_id": execution["run_id"]})
    data.update(step=step, steps=len(merged.get("steps") or ()))
    append_event("run_finished", scope, run_pk, data, created_at=received)


def run_steps(run_pk: int) -> list[dict[str, Any]]:
    """The stored steps of a run, in the order they started (times as RFC 3339)."""
    rows = (
        RunStep.select(*(getattr(RunStep, c) for c in STEP_COLUMNS))
        .where(RunStep.run == run_pk)
        .order_by(RunStep.start_time, RunStep.id)
        .dicts()
    )
    out = []
    for row in rows:
        for key in ("start_time", "end_time"):
            if row[key] is not None:
                row[key] = format_time(row[key].replace(tzinfo=UTC))
        out.append(row)
    return out


# --- merging step summaries (pure) ----------------------------------------------


def _merge_stat(parts: list[tuple[Any, int]]) -> dict[str, float] | None:
    """One statistic from the steps' (stat, sample count): peak the largest, avg the
    weighted mean, each percentile the largest (an upper bound)."""
    stats = [(s, n) for s, n in parts if isinstance(s, dict)]
    if not stats:
        return None
    out: dict[str, float] = {}
    for key in STAT_KEYS:
        values = [number(s.get(key)) for s, _ in stats]
        values_known = [v for v in values if v is not None]
        if not values_known:
            continue
        if key == "avg":
            weights = [
                (v, max(n, 1)) for v, (_, n) in zip(values, stats, strict=True) if v is not None
            ]
            total = sum(w for _, w in weights)
            out[key] = round(sum(v * w for v, w in weights) / total, 6)
        else:
            out[key] = max(values_known)
    return out


def _count(summary: dict[str, Any]) -> int:
    return bigint(summary.get("sample_count")) or 0


def _sum(values: list[Any]) -> float | None:
    known = [number(v) for v in values]
    known = [v for v in known if v is not None]
    return round(sum(known), 6) if known else None


def _kind(kinds: set[Any]) -> Any:
    kinds.discard(None)
    return kinds.pop() if len(kinds) == 1 else ("mixed" if kinds else None)


def _merge_containers(summaries: list[dict[str, Any]]) -> list[dict[str, Any]]:
    by_name: dict[str, list[tuple[dict[str, Any], int]]] = {}
    for s in summaries:
        for c in s.get("containers") or ():
            if isinstance(c, dict) and isinstance(c.get("name"), str):
                by_name.setdefault(c["name"], []).append((c, _count(s)))
    out = []
    for container_name in sorted(by_name):
        parts = by_name[container_name]
        entry: dict[str, Any] = {"name": container_name}
        for key in ("cpu_cores", "memory_bytes"):
            stat = _merge_stat([(c.get(key), n) for c, n in parts])
            if stat is not None:
                entry[key] = stat
        for key in ("cpu_seconds", "cpu_throttled_seconds", "oom_kills"):
            total = _sum([c.get(key) for c, _ in parts])
            if total is not None:
                entry[key] = total if key != "oom_kills" else int(total)
        for key in ("limit_cpu_cores", "limit_memory_bytes"):
            values = [c.get(key) for c, _ in parts if number(c.get(key)) is not None]
            if values:
                entry[key] = values[-1]
        kind = _kind({c.get("memory_kind") for c, _ in parts})
        if kind is not None:
            entry["memory_kind"] = kind
        entry["memory_peak"] = _merge_peak([c.get("memory_peak") for c, _ in parts])
        if entry["memory_peak"] is None:
            del entry["memory_peak"]
        out.append(entry)
    return out


def _merge_peak(peaks: list[Any]) -> dict[str, Any] | None:
    """Steps run one after another: the job's peak range is the largest step's."""
    ranges = [p for p in peaks if isinstance(p, dict) and number(p.get("low")) is not None]
    if not ranges:
        return None
    top = max(ranges, key=lambda p: number(p.get("headline", p.get("low"))) or 0.0)
    return {
        "headline": top.get("headline", top.get("low")),
        "low": max(number(p.get("low")) or 0 for p in ranges),
        "high": max(number(p.get("high")) or 0 for p in ranges),
        "basis": top.get("basis"),
    }


def _merge_job(summaries: list[dict[str, Any]]) -> dict[str, Any] | None:
    jobs = [(s.get("job"), _count(s)) for s in summaries if isinstance(s.get("job"), dict)]
    if not jobs:
        return None
    job: dict[str, Any] = {
        "scope": "command",
        "containers": sorted(
            {c for j, _ in jobs for c in j.get("containers") or () if isinstance(c, str)}
        ),
    }
    for key in ("cpu_cores", "memory_bytes"):
        stat = _merge_stat([(j.get(key), n) for j, n in jobs])
        if stat is not None:
            job[key] = stat
    job["cpu_seconds"] = _sum([j.get("cpu_seconds") for j, _ in jobs])
    job["memory_kind"] = _kind({j.get("memory_kind") for j, _ in jobs})
    peak = _merge_peak([j.get("memory_peak") for j, _ in jobs])
    if peak is not None:
        job["memory_peak"] = peak
        if "memory_bytes" in job and number(peak.get("headline")) is not None:
            job["memory_bytes"]["peak"] = peak["headline"]
    for key in ("limit_cpu_cores", "limit_memory_bytes"):
        values = [j.get(key) for j, _ in jobs if number(j.get(key)) is not None]
        job[key] = max(values) if values else None
    for block in ("io", "network"):
        merged = _merge_io([(j.get(block), n) for j, n in jobs])
        if merged is not None:
            job[block] = merged
    return job


def _merge_io(parts: list[tuple[Any, int]]) -> dict[str, Any] | None:
    """The steps' disk or network blocks: byte totals summed, rates merged as any
    statistic, sources and namespaces as the steps had them."""
    blocks = [(b, n) for b, n in parts if isinstance(b, dict)]
    if not blocks:
        return None
    out: dict[str, Any] = {}
    keys = {k for b, _ in blocks for k in b}
    for key in sorted(keys):
        values = [b.get(key) for b, _ in blocks]
        if key.endswith("_per_second"):
            stat = _merge_stat([(b.get(key), n) for b, n in blocks])
            if stat is not None:
                out[key] = stat
        elif key.endswith("_bytes"):
            total = _sum(values)
            if total is not None:
                out[key] = int(total)
        elif key == "sources":
            out[key] = sorted(
                {s for v in values if isinstance(v, list) for s in v if isinstance(s, str)}
            )
        elif key == "namespaces":
            known = [bigint(v) for v in values if bigint(v) is not None]
            if known:
                out[key] = max(known)
    return out


def _merge_top(summaries: list[dict[str, Any]], key: str, figure: str) -> list[dict[str, Any]]:
    best: dict[tuple[Any, Any], dict[str, Any]] = {}
    for s in summaries:
        for p in s.get(key) or ():
            if not isinstance(p, dict):
                continue
            ident = (p.get("pid"), p.get("name"))
            if ident not in best or (number(p.get(figure)) or 0.0) > (
                number(best[ident].get(figure)) or 0.0
            ):
                best[ident] = p  # one process seen by two steps is listed once
    procs = sorted(best.values(), key=lambda p: -(number(p.get(figure)) or 0.0))
    return procs[:MERGED_TOP]


def step_entry(summary: dict[str, Any]) -> dict[str, Any]:
    """A step as the merged summary lists it: its name, times and own figures."""
    row = step_row(summary)
    command = summary.get("command") if isinstance(summary.get("command"), dict) else {}
    entry: dict[str, Any] = {
        "name": row["name"],
        "start_time": summary.get("start_time"),
        "end_time": summary.get("end_time"),
        "duration_seconds": row["duration_seconds"],
        "sample_count": row["sample_count"],
        "cpu_seconds": row["cpu_seconds"],
        "memory_bytes_peak": row["memory_bytes_peak"],
        "memory_kind": row["memory_kind"],
    }
    if isinstance(command.get("name"), str):
        entry["command"] = command["name"]
    if row["exit_code"] is not None:
        entry["exit_code"] = row["exit_code"]
    # The step's disk and network bytes, where its collector measured them.
    for column, _, _ in IO_COLUMNS:
        if row[column] is not None:
            entry[column] = row[column]
    return entry


def merge_steps(summaries: list[dict[str, Any]]) -> dict[str, Any]:
    """One run summary from its steps' (ordered by start): see the module docstring."""
    starts = [
        (parse_time(s["start_time"]), s["start_time"])
        for s in summaries
        if _naive(s.get("start_time"))
    ]
    ends = [
        (parse_time(s["end_time"]), s["end_time"]) for s in summaries if _naive(s.get("end_time"))
    ]
    merged: dict[str, Any] = {}
    if starts:
        merged["start_time"] = min(starts)[1]
    if ends:
        merged["end_time"] = max(ends)[1]
    if starts and ends:
        span = (max(ends)[0] - min(starts)[0]).total_seconds()
        merged["duration_seconds"] = round(max(0.0, span), 3)
    merged["sample_count"] = sum(_count(s) for s in summaries)
    for key in ("cpu_total_percent", "mem_used_bytes", "mem_used_percent"):
        stat = _merge_stat([(s.get(key), _count(s)) for s in summaries])
        if stat is not None:
            merged[key] = stat
    merged["top_cpu_processes"] = _merge_top(summaries, "top_cpu_processes", "peak_cpu_percent")
    merged["top_mem_processes"] = _merge_top(summaries, "top_mem_processes", "peak_mem_rss_bytes")
    merged["containers"] = _merge_containers(summaries)
    cpu = _sum([s.get("cpu_seconds") for s in summaries])
    if cpu is not None:
        merged["cpu_seconds"] = cpu
    job = _merge_job(summaries)
    if job is not None:
        merged["job"] = job
    for s in summaries:
        if isinstance(s.get("context"), dict):
            merged["context"] = s["context"]
        if isinstance(s.get("collector"), dict):
            merged["collector"] = {
                k: v
                for k, v in s["collector"].items()
                if k in ("version", "host", "interval_seconds")
            }
    merged["steps"] = [step_entry(s) for s in summaries]
    merged["merged_from_steps"] = {
        "steps": len(summaries),
        # The steps' own durations summed: duration_seconds less the gaps between them.
        "steps_duration_seconds": _sum([s.get("duration_seconds") for s in summaries]),
        "statistics": "peak: the largest of the steps'; avg: weighted by samples; "
        "p50-p99: the largest of the steps' (an upper bound)",
    }
    return merged


def steps_of_run(run_pk: int, payload: Any) -> list[dict[str, Any]]:
    """A run's steps for the read API: the stored steps of a run made of ``--step``
    pushes, else the segments its summary lists (``steps``: a sidecar's ``--mark``
    boundaries), else none.  Each has name, start_time, end_time, duration_seconds,
    cpu_seconds and memory_bytes_peak."""
    stored = run_steps(run_pk)
    if stored:
        return stored
    listed = payload.get("steps") if isinstance(payload, dict) else None
    out = []
    for item in listed if isinstance(listed, list) else ():
        if not isinstance(item, dict):
            continue
        entry: dict[str, Any] = {"name": name(item.get("name")) or "step"}
        for key in ("start_time", "end_time"):
            entry[key] = item[key] if isinstance(item.get(key), str) else None
        for key in ("duration_seconds", "cpu_seconds"):
            entry[key] = number(item.get(key))
        for key in ("sample_count", "memory_bytes_peak"):
            entry[key] = bigint(item.get(key))
        for column, _, _ in IO_COLUMNS:
            if item.get(column) is not None:
                entry[column] = bigint(item.get(column))
        out.append(entry)
    return out
