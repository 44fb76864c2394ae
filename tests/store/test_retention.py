"""Retention (resmon.store.retention): old rows deleted in batches, runs with their
containers and regressions, rollups kept; events the rollup pass or the alert
evaluator still needs kept;
SQLite's space given back; one process or replica at a time (PostgreSQL: two
connections, as two replicas have)."""

from __future__ import annotations

import threading
import time
from datetime import UTC, datetime, timedelta

import orjson
from query_data import push_body, run_summary

from resmon.schema import validate_push
from resmon.store import retention, rollup_pass, rollups, usage
from resmon.store.models import (
    ContainerStat,
    Event,
    RollupContainer,
    RollupJob,
    Run,
    RunBatch,
    database_proxy,
)
from resmon.store.write import store_push

NOW = datetime.now(UTC).replace(second=0, microsecond=0)
POLICY = retention.RetentionPolicy()


def push(n: int, at: datetime) -> int:
    summary = run_summary(start=at - timedelta(seconds=205), duration=200.0)
    body = push_body(f"r{n}", summary)
    return store_push(validate_push(body), received_at=at).id


def seed() -> tuple[list[int], list[int]]:
    old = [push(n, NOW - timedelta(days=200, hours=n)) for n in range(10)]
    new = [push(100 + n, NOW - timedelta(days=n)) for n in range(5)]
    return old, new


def rollup_rows(span: str) -> list[tuple]:
    return sorted(
        (r.bucket, r.job, r.runs, r.job_cpu_seconds_sum)
        for r in RollupJob.select().where(RollupJob.span == span)
    )


def test_old_runs_go_in_batches_with_their_rows_and_rollups_stay(database):
    old, new = seed()
    rollup_pass.catch_up()
    days_before = rollup_rows("day")
    before = usage.usage("job", "365d", "day", now=NOW)
    done = retention.delete_expired(POLICY, now=NOW, runs_per_batch=3, pause=0)
    assert done.rows["runs"] == 10
    assert done.batches >= 4  # 10 runs, 3 a batch: never one long transaction
    assert sorted(r.id for r in Run.select()) == new
    assert ContainerStat.select().where(ContainerStat.run.in_(old)).count() == 0
    assert ContainerStat.select().count() == 2 * len(new)
    # Daily rollups are kept 2 years: the deleted runs still count there.
    assert rollup_rows("day") == days_before
    assert usage.usage("job", "365d", "day", now=NOW) == before
    # Hourly rollups 90 days: the old hours are gone, the recent ones stay.
    hours = RollupJob.select().where(RollupJob.span == "hour")
    assert hours.count() == 5
    assert RollupContainer.select().where(RollupContainer.span == "hour").count() == 10
    # A second pass finds nothing left to delete.
    assert retention.delete_expired(POLICY, now=NOW, pause=0).batches == 0


def test_off_keeps_everything(database):
    seed()
    rollup_pass.catch_up()
    policy = retention.RetentionPolicy(None, None, None, None, None)
    assert retention.delete_expired(policy, now=NOW, pause=0).batches == 0
    assert Run.select().count() == 15


def test_events_not_yet_rolled_up_are_kept(database):
    seed()
    later = NOW + timedelta(days=30)
    assert Event.select().count() == 15
    policy = retention.RetentionPolicy(None, None, None, None, timedelta(days=7))
    retention.delete_expired(policy, now=later, pause=0)
    assert Event.select().count() == 15  # the rollup pass has applied none of them
    rollup_pass.catch_up()
    retention.delete_expired(policy, now=later, pause=0)
    assert Event.select().count() == 0


def test_events_the_alert_evaluator_has_not_read_are_kept(database):
    from resmon.store import alert_eval
    from resmon.store.models import AlertCursor

    seed()
    rollup_pass.catch_up()
    ids = [e.id for e in Event.select(Event.id).order_by(Event.id)]
    alert_eval.start_cursor()  # made at the newest event: every one read
    AlertCursor.update(last_event_id=ids[4]).execute()  # the evaluator is behind
    later = NOW + timedelta(days=30)
    policy = retention.RetentionPolicy(None, None, None, None, timedelta(days=7))
    retention.delete_expired(policy, now=later, pause=0)
    assert [e.id for e in Event.select(Event.id).order_by(Event.id)] == ids[5:]
    AlertCursor.update(last_event_id=ids[-1]).execute()
    retention.delete_expired(policy, now=later, pause=0)
    assert Event.select().count() == 0


def test_samples_expire_before_their_runs(database):
    from resmon.schema import format_time
    from resmon.store import live

    execution = {"organization": "acme", "repository": "acme/widgets", "workflow": "ci.yml",
                 "job": "build", "run_id": "live", "run_attempt": ""}  # fmt: skip
    at = NOW - timedelta(days=8)
    run = {"run_key": "k-live", "start_time": format_time(at), "live_interval_seconds": 15}
    sample = {"t": format_time(at), "elapsed": None, "host": {"cpu_percent": 1.0}}
    for seq in range(3):
        live.store_batch(execution, run, seq, [sample], now=at + timedelta(seconds=seq))
    recent = NOW - timedelta(hours=1)
    live.store_batch(execution, run, 3, [sample], now=recent)
    policy = retention.RetentionPolicy(timedelta(days=7), None, None, None, None)
    done = retention.delete_expired(policy, now=NOW, rows_per_batch=2, pause=0)
    assert done.rows["run_batches"] == 3
    assert [b.seq for b in RunBatch.select()] == [3]


def test_sqlite_gives_the_space_back(tmp_path):
    from resmon.store.db import migrate, open_database

    db = open_database(str(tmp_path / "space.db"))
    migrate(db)
    assert retention.ensure_incremental_vacuum(db)  # a new file: converted at once
    ids = [push(n, NOW - timedelta(days=300, minutes=n)) for n in range(200)]
    filler = orjson.dumps({"filler": "x" * 20_000}).decode()
    Run.update(payload=filler).where(Run.id.in_(ids)).execute()
    pages = db.execute_sql("PRAGMA page_count").fetchone()[0]
    done = retention.delete_expired(POLICY, now=NOW, pause=0)
    assert done.rows["runs"] == 200 and done.pages_freed > 0
    after = db.execute_sql("PRAGMA page_count").fetchone()[0]
    assert after < pages / 4, (pages, after)
    assert db.execute_sql("PRAGMA freelist_count").fetchone()[0] == 0
    db.close()


def test_a_large_file_is_not_rewritten_unasked(tmp_path, monkeypatch):
    from resmon.store.db import migrate, open_database

    db = open_database(str(tmp_path / "big.db"))
    migrate(db)
    monkeypatch.setattr(retention, "AUTO_CONVERT_BYTES", 0)
    assert not retention.ensure_incremental_vacuum(db)
    assert retention.auto_vacuum_mode(db) == 0
    assert retention.ensure_incremental_vacuum(db, force=True)
    db.close()


def test_one_retention_at_a_time_across_connections(database):
    """Two threads, each its own connection (two replicas on PostgreSQL; two
    processes' lock files on SQLite): their turns never overlap, and both get some."""
    turns: list[tuple[str, float, float]] = []
    errors: list[BaseException] = []

    def replica(name: str) -> None:
        try:
            deadline = time.monotonic() + 1.5
            while time.monotonic() < deadline:
                with retention.exclusive("retention") as mine:
                    if mine:
                        start = time.monotonic()
                        retention.delete_expired(POLICY, now=NOW, pause=0)
                        time.sleep(0.03)
                        turns.append((name, start, time.monotonic()))
                time.sleep(0.005)
        except BaseException as exc:  # noqa: BLE001 - reported below
            errors.append(exc)
        finally:
            database_proxy.close()

    threads = [threading.Thread(target=replica, args=(n,)) for n in ("a", "b")]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    assert not errors, errors
    turns.sort(key=lambda t: t[1])
    for (_, _, end), (_, start, _) in zip(turns, turns[1:], strict=False):
        assert start >= end, "two retention passes overlapped"
    assert {name for name, _, _ in turns} == {"a", "b"}
    assert rollups.cursor() == 0
