"""Alert evaluation: events in; states, ``alert`` events and webhook deliveries out.

The evaluator reads the durable events table in id order (a background loop of
``resmon serve``, :mod:`resmon.server.alert_loop`; nothing is added to a push or a
batch) and gives each enabled rule one observation per matching event:

- ``snapshot`` (a live batch's latest sample) for rules on ``samples``: the job's
  CPU cores and memory bytes now, or each matching container's, against the limits
  the sample carries (the job's limit: its command container's in wrapper mode, else
  the sum over the containers when each has one);
- ``run_finished`` and ``run_lost`` for rules on ``runs``: the run's CPU p95 (cores)
  and memory peak (bytes), the job's (``job_*`` columns) or each matching
  container's, against its limits.  A lost run that is finished later is one run:
  observed once.

A state is per rule, job and container, not per run: the live samples of two runs of
one job at once count in one sequence, and a job's alert outlives the run that
raised it until enough later samples or runs recover it.

Each observation goes through :func:`resmon.analysis.alert_machine.observe`.  Where
the state changes, an ``alert`` event is appended and, per webhook target, a row of
the outbox (``webhook_outbox``) that :mod:`resmon.server.webhooks` delivers.

Exactly once per event: the cursor (``alert_cursor``, one row) moves from the id the
batch started at to its last id in the transaction that writes the states, events and
deliveries, by a conditional UPDATE; a reader that lost the race (another worker or
replica moved it first) writes nothing and reads again.  On PostgreSQL the
transaction also takes an advisory lock without waiting, so one replica evaluates at
a time; on SQLite the write lock serialises them.  The ids a batch covers are chosen
by the caller with the events feed's rule for ids that commit out of order
(:class:`resmon.server.event_feed.GapRule`).
"""

from __future__ import annotations

import hashlib
import logging
from collections.abc import Callable
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta
from typing import Any

import orjson
from peewee import PostgresqlDatabase

from resmon.analysis import alert_machine as machine
from resmon.schema import format_time
from resmon.store import db as dbmod
from resmon.store import events as store_events
from resmon.store.alerts import SAMPLES, matches, repository_matches, threshold_of
from resmon.store.models import (
    AlertCursor,
    AlertRule,
    AlertState,
    ContainerStat,
    Run,
    WebhookOutbox,
    database_proxy,
)

log = logging.getLogger(__name__)

CURSOR = "alerts"
INPUT_KINDS = frozenset(("snapshot", "run_finished", "run_lost"))
FORMATS = ("json", "slack")
_PG_LOCK = 0x7265736D616C  # "resmal": one evaluating replica at a time
_RUN_CACHE = 4096


@dataclass(frozen=True)
class Rule:
    id: int
    name: str
    evaluate_on: str
    organization: str
    repository: str
    workflow: str
    job: str
    container: str | None
    cpu: machine.Threshold | None
    mem: machine.Threshold | None
    consecutive: int

    def matches_scope(self, row: dict[str, Any]) -> bool:
        return (
            matches(self.organization, row["organization"])
            and repository_matches(self.repository, row["repository"])
            and matches(self.workflow, row["workflow"])
            and matches(self.job, row["job"])
        )


def load_rules() -> list[Rule]:
    """The enabled rules."""
    return [
        Rule(
            id=r.id,
            name=r.name,
            evaluate_on=r.evaluate_on,
            organization=r.organization,
            repository=r.repository,
            workflow=r.workflow,
            job=r.job,
            container=r.container,
            cpu=threshold_of(r.cpu_threshold_kind, r.cpu_threshold_value),
            mem=threshold_of(r.mem_threshold_kind, r.mem_threshold_value),
            consecutive=r.consecutive,
        )
        for r in AlertRule.select().where(AlertRule.enabled == True)  # noqa: E712
    ]


@dataclass(frozen=True)
class Figures:
    cpu: float | None
    cpu_limit: float | None
    mem: float | None
    mem_limit: float | None


@dataclass(frozen=True)
class Observation:
    rule: Rule
    row: dict[str, Any]  # the event
    container: str  # "" for the job's own figures
    figures: Figures
    key: str = ""  # target_key, made once


def _number(value: Any) -> float | None:
    if isinstance(value, bool) or not isinstance(value, (int, float)):
        return None
    return float(value)


def _sum(values: list[float | None]) -> float | None:
    if not values or any(v is None for v in values):
        return None
    return float(sum(v for v in values if v is not None))


class RunFigures:
    """What an event's run gives, read once per run and kept for a while."""

    def __init__(self) -> None:
        self._command: dict[int, str | None] = {}
        self._finished: dict[int, tuple[Figures | None, dict[str, Figures]]] = {}

    def command_container(self, run_pk: int | None) -> str | None:
        if run_pk is None:
            return None
        if run_pk not in self._command:
            if len(self._command) >= _RUN_CACHE:
                self._command.clear()
            row = Run.select(Run.command_container).where(Run.id == run_pk).tuples().first()
            self._command[run_pk] = None if row is None else row[0]
        return self._command[run_pk]

    def finished(self, run_pk: int) -> tuple[Figures | None, dict[str, Figures]]:
        """The run's job figures and its containers' (CPU p95, memory peak)."""
        if run_pk not in self._finished:
            self.prefetch([run_pk])
        return self._finished.pop(run_pk, (None, {}))

    def prefetch(self, run_pks: list[int]) -> None:
        """Read the figures of these runs at once (two queries per 500 runs)."""
        for at in range(0, len(run_pks), 500):
            part = run_pks[at : at + 500]
            jobs = {
                int(pk): Figures(*(None if v is None else float(v) for v in values))
                for pk, *values in Run.select(
                    Run.id,
                    Run.job_cpu_cores_p95,
                    Run.job_limit_cpu_cores,
                    Run.job_memory_bytes_peak,
                    Run.job_limit_memory_bytes,
                )
                .where(Run.id.in_(part))
                .tuples()
            }
            containers: dict[int, dict[str, Figures]] = {pk: {} for pk in jobs}
            for pk, name, *values in (
                ContainerStat.select(
                    ContainerStat.run,
                    ContainerStat.name,
                    ContainerStat.cpu_cores_p95,
                    ContainerStat.limit_cpu_cores,
                    ContainerStat.memory_bytes_peak,
                    ContainerStat.limit_memory_bytes,
                )
                .where(ContainerStat.run.in_(part))
                .tuples()
            ):
                containers.setdefault(int(pk), {})[name] = Figures(
                    *(None if v is None else float(v) for v in values)
                )
            for pk, job in jobs.items():
                self._finished[pk] = (job, containers.get(pk, {}))


def _snapshot_figures(
    data: dict[str, Any], command: str | None
) -> tuple[Figures | None, dict[str, Figures]]:
    containers: dict[str, Figures] = {}
    raw = data.get("containers")
    for name, c in (raw if isinstance(raw, dict) else {}).items():
        if isinstance(c, dict):
            containers[str(name)] = Figures(
                _number(c.get("cpu_cores")),
                _number(c.get("limit_cpu_cores")),
                _number(c.get("memory_bytes")),
                _number(c.get("limit_memory_bytes")),
            )
    job = data.get("job")
    if not isinstance(job, dict):
        return None, containers
    mine = [containers[command]] if command in containers else list(containers.values())
    return (
        Figures(
            _number(job.get("cpu_cores")),
            _sum([f.cpu_limit for f in mine]),
            _number(job.get("memory_bytes")),
            _sum([f.mem_limit for f in mine]),
        ),
        containers,
    )


def observations(
    rows: list[dict[str, Any]], rules: list[Rule], runs: RunFigures
) -> list[Observation]:
    """One observation per (event, matching rule, target), in event order."""
    out: list[Observation] = []
    wanted: list[tuple[dict[str, Any], list[Rule]]] = []
    matched: dict[tuple[str, ...], list[Rule]] = {}  # the rules of each scope, once
    for row in rows:
        kind = row["kind"]
        if kind not in INPUT_KINDS:
            continue
        on = SAMPLES if kind == "snapshot" else "runs"
        scope = (on, row["organization"], row["repository"], row["workflow"], row["job"])
        matching = matched.get(scope)
        if matching is None:
            matching = matched[scope] = [
                r for r in rules if r.evaluate_on == on and r.matches_scope(row)
            ]
        if matching:
            wanted.append((row, matching))
    runs.prefetch(
        sorted({int(r["run_pk"]) for r, _ in wanted if r["kind"] != "snapshot" and r["run_pk"]})
    )
    for row, matching in wanted:
        kind = row["kind"]
        if kind == "snapshot":
            data = row["data"] if isinstance(row["data"], dict) else orjson.loads(row["data"])
            job, containers = _snapshot_figures(data, runs.command_container(row["run_pk"]))
        elif row["run_pk"] is not None:
            job, containers = runs.finished(int(row["run_pk"]))
        else:
            continue
        for rule in matching:
            if rule.container is None:
                if job is not None:
                    out.append(Observation(rule, row, "", job, target_key(rule.id, row, "")))
                continue
            for name in sorted(containers):
                if matches(rule.container, name):
                    key = target_key(rule.id, row, name)
                    out.append(Observation(rule, row, name, containers[name], key))
    return out


def target_key(rule_id: int, row: dict[str, Any], container: str) -> str:
    parts = (str(rule_id), *(row[k] for k in store_events.SCOPE_FIELDS), container)
    return hashlib.sha256("\0".join(parts).encode()).hexdigest()


# --- the cursor -----------------------------------------------------------------


def read_cursor() -> int | None:
    row = AlertCursor.select(AlertCursor.last_event_id).where(AlertCursor.name == CURSOR).first()
    return None if row is None else int(row.last_event_id)


def start_cursor() -> int:
    """The cursor, made at the newest event if there is none yet (history is not
    evaluated: a database upgraded to alerts does not alert on its past)."""
    found = read_cursor()
    if found is not None:
        return found
    db = database_proxy
    with dbmod.write_lock(db.obj), db.atomic():
        AlertCursor.insert(
            name=CURSOR, last_event_id=store_events.latest_event_id(), updated_at=_now()
        ).on_conflict_ignore().execute()
    return read_cursor() or 0


def _now() -> datetime:
    return datetime.now(UTC).replace(tzinfo=None)


LEASE_SECONDS = 10.0


def lead(owner: str, lease: float = LEASE_SECONDS, now: datetime | None = None) -> bool:
    """Whether ``owner`` (one worker of one replica) is the one evaluating: it holds
    the cursor's lease, renewed once half of it is gone (a write every lease/2
    seconds), or takes it when it has run out (its owner stopped).  The others only
    read.  Correctness does not rest on it (the cursor's conditional UPDATE does);
    it keeps the others from evaluating the same events for nothing."""
    now = now or _now()
    start_cursor()
    row = (
        AlertCursor.select(AlertCursor.owner, AlertCursor.lease_until)
        .where(AlertCursor.name == CURSOR)
        .first()
    )
    if row is None:
        return False
    held = row.lease_until is not None and row.lease_until > now
    if held and row.owner != owner:
        return False
    if held and row.lease_until - now > timedelta(seconds=lease / 2):
        return True
    db = database_proxy
    with dbmod.write_lock(db.obj), db.atomic():
        taken = (
            AlertCursor.update(owner=owner, lease_until=now + timedelta(seconds=lease))
            .where(
                (AlertCursor.name == CURSOR)
                & (
                    (AlertCursor.owner == owner)
                    | AlertCursor.owner.is_null()
                    | AlertCursor.lease_until.is_null()
                    | (AlertCursor.lease_until <= now)
                )
            )
            .execute()
        )
    return bool(taken)


def release(owner: str) -> None:
    """Give the lease up (a worker stopping): another takes over at its next look,
    not when the lease would have run out."""
    db = database_proxy
    with dbmod.write_lock(db.obj), db.atomic():
        AlertCursor.update(owner=None, lease_until=None).where(
            (AlertCursor.name == CURSOR) & (AlertCursor.owner == owner)
        ).execute()


# --- one batch ------------------------------------------------------------------

_STATE_COLUMNS = (
    "state",
    "cpu_consecutive_breaches",
    "mem_consecutive_breaches",
    "cpu_consecutive_clear",
    "mem_consecutive_clear",
    "cpu_value",
    "cpu_limit",
    "mem_value",
    "mem_limit",
    "last_run",
    "last_alerted_at",
    "updated_at",
)


_LOADED = (
    AlertState.id,
    AlertState.target_key,
    AlertState.state,
    AlertState.cpu_consecutive_breaches,
    AlertState.mem_consecutive_breaches,
    AlertState.cpu_consecutive_clear,
    AlertState.mem_consecutive_clear,
    AlertState.last_run,
    AlertState.last_alerted_at,
    AlertState.updated_at,
)
_NAMES = tuple(f.name for f in _LOADED)


def _load_states(keys: list[str]) -> dict[str, dict[str, Any]]:
    found: dict[str, dict[str, Any]] = {}
    for at in range(0, len(keys), 500):
        part = keys[at : at + 500]
        query = AlertState.select(*_LOADED).where(AlertState.target_key.in_(part)).tuples()
        for values in query:
            found[values[1]] = dict(zip(_NAMES, values, strict=True))
    return found


def _counters(s: dict[str, Any]) -> machine.Counters:
    state = s["state"]
    return machine.Counters(
        cpu_alert=state in (machine.CPU_ALERT, machine.BOTH_ALERT),
        mem_alert=state in (machine.MEM_ALERT, machine.BOTH_ALERT),
        cpu_breaches=s["cpu_consecutive_breaches"],
        mem_breaches=s["mem_consecutive_breaches"],
        cpu_clear=s["cpu_consecutive_clear"],
        mem_clear=s["mem_consecutive_clear"],
    )


@dataclass
class Change:
    """A state change: the body of its ``alert`` event."""

    row: dict[str, Any]
    data: dict[str, Any]


# A transaction writes at most about this many states and alerts (with an outbox row
# per target each): on SQLite it holds the write lock that pushes wait for, so a storm
# of changes goes out in several short transactions, not one long one.
MAX_WRITES = 100
# A state whose counts did not change is written again (its last figures, updated_at)
# at most this often: a fleet of jobs far from their limits costs no write per run.
STATE_REFRESH = timedelta(seconds=60)


def evaluate(
    rows: list[dict[str, Any]],
    start: int,
    *,
    rules: list[Rule] | None = None,
    targets: tuple[str, ...] = (),
    body_format: str = "json",
    runs: RunFigures | None = None,
    now: datetime | None = None,
    max_writes: int = MAX_WRITES,
) -> tuple[int, list[dict[str, Any]]] | None:
    """Evaluate the events ``rows`` (ids above ``start``, in order) and move the cursor
    from ``start`` to the last one, in transactions of about ``max_writes`` states and
    alerts each; returns (the last id evaluated, the alert events appended as ``{id,
    kind, ...}``), or None when the cursor was not at ``start`` (another reader was
    first).  Another reader first in a later transaction ends it there."""
    now = now or _now()
    rules = load_rules() if rules is None else rules
    found = observations(rows, rules, runs or RunFigures())
    keys = sorted({o.key for o in found})
    states = _load_states(keys)
    dirty: dict[str, dict[str, Any]] = {}
    changes: list[Change] = []
    appended: list[dict[str, Any]] = []
    cursor = start
    for index, o in enumerate(found):
        next_event = index and o.row["id"] != found[index - 1].row["id"]
        if next_event and len(dirty) + len(changes) >= max_writes:
            end = found[index - 1].row["id"]  # a transaction's worth: commit it
            done = _store(cursor, end, dirty, changes, targets, body_format, now)
            if done is None:
                return None if cursor == start else (cursor, appended)
            appended += done
            cursor, dirty, changes = end, {}, []
        _observe(o, states, dirty, changes, now)
    end = rows[-1]["id"]
    done = _store(cursor, end, dirty, changes, targets, body_format, now)
    if done is None:
        return None if cursor == start else (cursor, appended)
    return end, appended + done


def _observe(
    o: Observation,
    states: dict[str, dict[str, Any]],
    dirty: dict[str, dict[str, Any]],
    changes: list[Change],
    now: datetime,
) -> None:
    """One observation through the state machine: its state updated in ``states``,
    marked in ``dirty`` when it is to be written, a change appended to ``changes``."""
    key = o.key
    s = states.get(key)
    if s is None:
        s = states[key] = {
            "id": None,
            "rule": o.rule.id,
            "target_key": key,
            **{k: o.row[k] for k in store_events.SCOPE_FIELDS},
            "container": o.container,
            "state": machine.NORMAL,
            "cpu_consecutive_breaches": 0,
            "mem_consecutive_breaches": 0,
            "cpu_consecutive_clear": 0,
            "mem_consecutive_clear": 0,
            "last_run": None,
            "last_alerted_at": None,
            "created_at": now,
            "updated_at": None,
        }
    run_pk = o.row["run_pk"]
    if o.rule.evaluate_on != SAMPLES and run_pk is not None and s["last_run"] == run_pk:
        return  # a lost run finished later: observed once
    f = o.figures
    cpu_hit = machine.breach(f.cpu, f.cpu_limit, o.rule.cpu)
    mem_hit = machine.breach(f.mem, f.mem_limit, o.rule.mem)
    written = s["updated_at"]
    if (
        not cpu_hit
        and not mem_hit
        and s["id"] is not None
        and s["state"] == machine.NORMAL
        and not (s["cpu_consecutive_breaches"] or s["mem_consecutive_breaches"])
        and written is not None
        and now - written < STATE_REFRESH
        and key not in dirty
    ):
        # Normal and staying so (most observations): nothing to count, nothing to write.
        return
    before = _counters(s)
    after = machine.observe(
        before,
        cpu_hit,
        mem_hit,
        o.rule.consecutive,
    )
    s.update(
        state=after.state,
        cpu_consecutive_breaches=after.cpu_breaches,
        mem_consecutive_breaches=after.mem_breaches,
        cpu_consecutive_clear=after.cpu_clear,
        mem_consecutive_clear=after.mem_clear,
        cpu_value=f.cpu,
        cpu_limit=f.cpu_limit,
        mem_value=f.mem,
        mem_limit=f.mem_limit,
        last_run=run_pk,
    )
    if after.state != before.state:
        s["last_alerted_at"] = now
        changes.append(Change(o.row, _alert_data(o, before.state, after)))
    if after != before or s["id"] is None or written is None or now - written >= STATE_REFRESH:
        s["updated_at"] = now
        dirty[key] = s


def _alert_data(o: Observation, previous: str, after: machine.Counters) -> dict[str, Any]:
    f = o.figures

    def part(value, limit, threshold, breaches):  # type: ignore[no-untyped-def]
        return {
            "value": value,
            "limit": limit,
            "threshold": None if threshold is None else threshold.text(),
            "breaches": breaches,
        }

    return {
        "rule_id": o.rule.id,
        "rule": o.rule.name,
        "container": o.container or None,
        "state": after.state,
        "previous": previous,
        "evaluate_on": o.rule.evaluate_on,
        "consecutive": o.rule.consecutive,
        "run": o.row["run_pk"],
        "cpu": part(f.cpu, f.cpu_limit, o.rule.cpu, after.cpu_breaches),
        "mem": part(f.mem, f.mem_limit, o.rule.mem, after.mem_breaches),
    }


def _store(
    start: int,
    end: int,
    dirty: dict[str, dict[str, Any]],
    changes: list[Change],
    targets: tuple[str, ...],
    body_format: str,
    now: datetime,
) -> list[dict[str, Any]] | None:
    db = database_proxy
    appended: list[dict[str, Any]] = []
    with dbmod.write_lock(db.obj), db.atomic():
        if isinstance(db.obj, PostgresqlDatabase):
            got = db.execute_sql("SELECT pg_try_advisory_xact_lock(%s)", (_PG_LOCK,)).fetchone()
            if not got[0]:
                return None
        moved = (
            AlertCursor.update(last_event_id=end, updated_at=now)
            .where((AlertCursor.name == CURSOR) & (AlertCursor.last_event_id == start))
            .execute()
        )
        if not moved:
            return None
        for s in dirty.values():
            if s["id"] is None:
                row = {k: v for k, v in s.items() if k != "id"}
                s["id"] = AlertState.insert(**row).execute()
            else:
                AlertState.update(**{k: s[k] for k in _STATE_COLUMNS}).where(
                    AlertState.id == s["id"]
                ).execute()
        for change in changes:
            scope = {k: change.row[k] for k in store_events.SCOPE_FIELDS}
            event_id = store_events.append_event(
                "alert", scope, change.row["run_pk"], change.data, created_at=now
            )
            event = {
                "id": event_id,
                "kind": "alert",
                "created_at": format_time(now.replace(tzinfo=UTC)),
                **scope,
                "run_pk": change.row["run_pk"],
                "data": change.data,
            }
            appended.append(event)
            body = webhook_body(event, body_format)
            for target in targets:
                WebhookOutbox.insert(
                    event_id=event_id,
                    target=target,
                    body=body,
                    attempts=0,
                    next_attempt_at=now,
                    created_at=now,
                ).execute()
    return appended


# --- webhook bodies -------------------------------------------------------------


def _quantity(value: float | None, kind: str) -> str:
    if value is None:
        return "?"
    if kind == "cpu":
        return f"{value:.2f} cores"
    for unit, size in (("TiB", 2**40), ("GiB", 2**30), ("MiB", 2**20)):
        if value >= size:
            return f"{value / size:.2f} {unit}"
    return f"{value:.0f} bytes"


def alert_text(event: dict[str, Any]) -> str:
    """One line for a chat room: what changed, where, and the figures that did it."""
    d = event["data"]
    where = f"{event['repository']} {event['workflow']} / {event['job']}"
    if d.get("container"):
        where += f" container {d['container']}"
    parts = []
    for kind, label in (("cpu", "CPU"), ("mem", "memory")):
        p = d[kind]
        if p["threshold"] is None:
            continue
        text = f"{label} {_quantity(p['value'], kind)}"
        if p["limit"] is not None:
            text += f" of {_quantity(p['limit'], kind)}"
        parts.append(f"{text} (threshold {p['threshold']}, {p['breaches']} in a row)")
    what = "samples" if d["evaluate_on"] == SAMPLES else "runs"
    return (
        f"resmon alert: {where}: {d['previous']} -> {d['state']} "
        f"(rule {d['rule']!r}, {d['consecutive']} {what}): " + "; ".join(parts)
    )


def webhook_body(event: dict[str, Any], body_format: str) -> str:
    """The JSON text a webhook receives: the event as SSE carries it, or for ``slack``
    a Slack/Mattermost incoming-webhook message ``{"text": ...}``."""
    if body_format == "slack":
        return orjson.dumps({"text": alert_text(event)}).decode()
    return orjson.dumps(event, option=orjson.OPT_NON_STR_KEYS).decode()


# --- a loop's step (for the server's background thread and for tests) ----------


def step(
    read_rows: Callable[[int], list[dict[str, Any]]],
    *,
    targets: tuple[str, ...] = (),
    body_format: str = "json",
    runs: RunFigures | None = None,
) -> tuple[int, list[dict[str, Any]] | None]:
    """Read from the cursor (``read_rows(cursor)``: the events ready to evaluate, in
    order) and evaluate them; returns (events evaluated, alert events), or (events read,
    None) when another reader was first."""
    start = start_cursor()
    rows = read_rows(start)
    if not rows:
        return 0, []
    done = evaluate(rows, start, targets=targets, body_format=body_format, runs=runs)
    if done is None:
        return len(rows), None
    end, appended = done
    return sum(1 for r in rows if r["id"] <= end), appended
