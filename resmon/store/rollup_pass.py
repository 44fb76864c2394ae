"""The rollups' writers: the background pass over new events, a rebuild of any range
from the runs (what :mod:`resmon.store.rollups` keeps, and why, is said there).

A pass adds the runs no rollup counts yet to their rows, :data:`RUNS_PER_ADD` runs
per short transaction.  For runs counted before it reads what the runs give for the
hours and days they touch, for up to :data:`JOBS_PER_STATEMENT` jobs of one bucket
per statement, outside any write transaction, then replaces those rollup rows in one
short transaction under the writer lock (SQLite's one writer): a push waits for a few
row writes at most.  Only one process or replica runs a pass at a time
(:mod:`resmon.server.maintenance` holds the lock); a pass is idempotent, so one that
died half-way is simply redone.
"""

from __future__ import annotations

import time
from dataclasses import dataclass
from datetime import datetime, timedelta
from typing import Any

from resmon.store import db as dbmod
from resmon.store import rollups
from resmon.store.models import database_proxy

EVENTS_PER_PASS = 2000
# Jobs recomputed by one statement and written in one transaction: short, so a push
# never waits long for the SQLite write lock behind a pass (each job's runs are found
# through the (scope, received_at) index; the rows of 32 jobs are a few ms to write).
JOBS_PER_STATEMENT = 32
# Runs added to the rollups (rollups.add_new_runs) per write transaction: about 2 ms
# of writes under the lock.
RUNS_PER_ADD = 64
# On PostgreSQL, how long a missing event id is waited for (resmon.server.event_feed).
GAP_WAIT = 5.0


def _write(fn: Any, *args: Any) -> Any:
    db = database_proxy
    with dbmod.write_lock(db.obj), db.atomic():
        return fn(*args)


def rebuild(start: datetime | None = None, end: datetime | None = None) -> int:
    """Recompute the hourly and daily rollups of the days [start, end) (widened to
    whole UTC days; None: from the first run, to the last) from the runs that remain,
    one day per transaction; returns how many days were recomputed.  Rows of days
    whose runs are all gone are emptied: rollups outlive runs only when not rebuilt."""
    db = database_proxy
    if start is None or end is None:
        row = db.execute_sql(
            "SELECT MIN(received_at), MAX(received_at) FROM runs"
            " UNION ALL SELECT MIN(bucket), MAX(bucket) FROM rollup_jobs"
        ).fetchall()
        lows = [rollups.as_time(r[0]) for r in row if r[0] is not None]
        highs = [rollups.as_time(r[1]) for r in row if r[1] is not None]
        if not lows:
            return 0
        start = start or min(t for t in lows if t is not None)
        end = end or max(t for t in highs if t is not None) + timedelta(seconds=1)
    day, last = rollups.floor_day(start), rollups.ceil_day(end)
    days = 0
    while day < last:
        following = day + timedelta(days=1)
        _write(rollups.rebuild_day, day, following)
        day, days = following, days + 1
    return days


def _readable_events(after: int, limit: int, gap_wait: float) -> tuple[list[tuple], int]:
    """Events after ``after`` that may be applied, in id order, and the new cursor.
    On PostgreSQL a missing id stops the walk until it is ``gap_wait`` seconds old
    (its transaction may still commit); SQLite commits ids in order."""
    db = database_proxy
    p = db.param
    rows = db.execute_sql(
        f"SELECT id, kind, run_pk, created_at FROM events WHERE id > {p} ORDER BY id LIMIT {p}",
        (after, limit),
    ).fetchall()
    out, last = [], after
    postgres = rollups.postgres()
    oldest_allowed = rollups.utc_now() - timedelta(seconds=gap_wait)
    for event_id, kind, run_pk, created in rows:
        if postgres and event_id != last + 1:
            created_at = rollups.as_time(created)
            if created_at is not None and created_at > oldest_allowed:
                break
        out.append((event_id, kind, run_pk))
        last = event_id
    return out, last


@dataclass
class PassResult:
    events: int = 0
    runs: int = 0
    hours: int = 0  # jobs' hours recomputed
    added: int = 0  # runs added to their rows without a recomputation
    cursor: int = 0


def run_pass(
    *,
    max_events: int = EVENTS_PER_PASS,
    gap_wait: float = GAP_WAIT,
    pause: float = 0.0,
    min_bucket: datetime | None = None,
) -> PassResult:
    """Apply the events stored since the last pass: add the runs they name that no
    rollup counts yet to their rows; for the others (and for every run of a job that
    has one), recompute every hour and day the runs fall in (or fell in before); then
    move the cursor.
    Idempotent: a pass that dies half-way is redone by the next.  ``pause`` sleeps
    between write transactions (pushes go first); buckets older than ``min_bucket``
    (the runs retention) are not recomputed, their runs being partly gone."""
    db = database_proxy
    p = db.param
    start = rollups.cursor()
    events, last = _readable_events(start, max_events, gap_wait)
    result = PassResult(events=len(events), cursor=start)
    if last == start:
        return result
    pks = sorted({int(pk) for _, kind, pk in events if kind in rollups.ROLLUP_EVENT_KINDS and pk})
    oldest = rollups.floor_day(min_bucket) if min_bucket is not None else None
    # Per job: the hours it was received in (hourly and daily rows) and the days it
    # started on (rday rows), where each run is now and where it was counted before.
    touched: dict[tuple[str, ...], tuple[set[datetime], set[datetime]]] = {}
    # Runs no rollup counts yet, per job: added to their rows, not recomputed (with
    # whether their start day's row counts them).
    new: dict[tuple[str, ...], list[tuple[int, datetime, datetime, bool]]] = {}
    for at in range(0, len(pks), 500):
        part = pks[at : at + 500]
        marks = ", ".join([p] * len(part))
        rows = db.execute_sql(
            f"SELECT r.id, r.organization, r.repository, r.workflow, r.job, r.received_at, "
            f"r.state, l.received_at, COALESCE(r.start_time, r.received_at), l.run_time "
            f"FROM runs r LEFT JOIN rollup_runs l ON l.run_pk = r.id WHERE r.id IN ({marks})",
            part,
        ).fetchall()
        for pk, org, repo, workflow, job, received, state, counted, ran, ran_before in rows:
            scope = (org, repo, workflow, job)
            if state != "running":
                received_at = rollups.as_time(received)
                hour = rollups.floor_hour(received_at)  # type: ignore[arg-type]
                day = rollups.floor_day(rollups.as_time(ran))  # type: ignore[arg-type]
                if counted is None and (oldest is None or hour >= oldest):
                    rday = _counts_in_run_day(received_at, day, oldest)  # type: ignore[arg-type]
                    new.setdefault(scope, []).append((int(pk), hour, day, rday))
                    continue
                hours, days = touched.setdefault(scope, (set(), set()))
                hours.add(hour)
                days.add(day)
            else:
                hours, days = touched.setdefault(scope, (set(), set()))
            if counted is not None:
                hours.add(rollups.floor_hour(rollups.as_time(counted)))  # type: ignore[arg-type]
            if ran_before is not None:
                days.add(rollups.floor_day(rollups.as_time(ran_before)))  # type: ignore[arg-type]
        # Runs deleted since their event: the rows they were counted in stay as they are.
    result.runs = len(pks)
    added: dict[bool, list[int]] = {True: [], False: []}  # with their rday rows, without
    for scope, runs in new.items():
        if scope in touched:  # its buckets are recomputed anyway: with these runs' too
            hours, days = touched[scope]
            for _, hour, day, _ in runs:
                hours.add(hour)
                days.add(day)
        else:
            for pk, _, _, rday in runs:
                added[rday].append(pk)
    for rday, group in added.items():
        spans = rollups.SPANS if rday else (rollups.HOUR, rollups.DAY)
        group.sort()
        for at in range(0, len(group), RUNS_PER_ADD):
            _write(rollups.add_new_runs, group[at : at + RUNS_PER_ADD], spans)
            if pause:
                time.sleep(pause)
        result.added += len(group)
    for span, start, end, scopes in _buckets(touched, oldest):
        for at in range(0, len(scopes), JOBS_PER_STATEMENT):
            # Read outside the write lock (WAL readers do not wait for writers), then
            # replace the rows in one short transaction: a push waits for a few row
            # writes at most, never for the aggregations.  A run stored in between
            # has its own event after the cursor: the next pass recomputes its buckets.
            computed = rollups.compute(span, start, end, scopes[at : at + JOBS_PER_STATEMENT])
            _write(rollups.store, computed)
            if span == rollups.HOUR:
                result.hours += computed.scopes
            if pause:
                time.sleep(pause)
    added_set = {*added[True], *added[False]}
    pks = [pk for pk in pks if pk not in added_set]
    _write(_finish_pass, pks, last)
    result.cursor = last
    return result


def _counts_in_run_day(received: datetime, run_day: datetime, oldest: datetime | None) -> bool:
    """Whether a run's start day's row counts it, as a recomputation would: not when
    that day is older than the rollups' horizon (such rows are not recomputed, their
    runs being partly gone), nor when the run was received more than a day before the
    day it says it started."""
    if oldest is not None and run_day < oldest:
        return False
    return received >= rollups.earlier(run_day, rollups.RUN_CLOCK_AHEAD)


def _buckets(
    touched: dict[tuple[str, ...], tuple[set[datetime], set[datetime]]],
    oldest: datetime | None,
) -> list[tuple[str, datetime, datetime, list[tuple[str, ...]]]]:
    """Each touched hour, day and start day from the day ``oldest`` on, with the jobs
    to recompute in it: one statement recomputes a bucket for many jobs (a pass's runs
    mostly share the current hour and day), not one per job and bucket."""
    by_bucket: dict[tuple[str, datetime], list[tuple[str, ...]]] = {}
    for scope, (hours, run_days) in touched.items():
        days = set()
        for hour in hours:
            if oldest is not None and hour < oldest:
                continue
            by_bucket.setdefault((rollups.HOUR, hour), []).append(scope)
            days.add(rollups.floor_day(hour))
        for day in days:
            by_bucket.setdefault((rollups.DAY, day), []).append(scope)
        for day in run_days:
            if oldest is None or day >= oldest:
                by_bucket.setdefault((rollups.RUN_DAY, day), []).append(scope)
    step = {rollups.HOUR: timedelta(hours=1)}
    return [
        (span, start, start + step.get(span, timedelta(days=1)), scopes)
        for (span, start), scopes in sorted(by_bucket.items())
    ]


def _finish_pass(pks: list[int], last: int) -> None:
    """Remember where each run was counted, and move the cursor."""
    db = database_proxy
    p = db.param
    for at in range(0, len(pks), 500):
        part = pks[at : at + 500]
        marks = ", ".join([p] * len(part))
        db.execute_sql(f"DELETE FROM rollup_runs WHERE run_pk IN ({marks})", part)
        db.execute_sql(
            f"{rollups.LEDGER_INSERT} WHERE r.id IN ({marks}) AND r.state <> {rollups.RUNNING_SQL}",
            part,
        )
    rollups.set_cursor(last)


def catch_up(*, max_passes: int = 1000, gap_wait: float = GAP_WAIT) -> int:
    """Run passes until no event is left to apply (tests, ``resmon rollups``); returns
    how many events were applied."""
    applied = 0
    for _ in range(max_passes):
        result = run_pass(gap_wait=gap_wait)
        applied += result.events
        if result.events == 0:
            break
    return applied
