"""Rollups (resmon.store.rollups) against a recomputation from the runs, on SQLite and
PostgreSQL: after pushes, re-pushed duplicates, a lost run finished by its final push,
deleted runs, and a rebuild."""

from __future__ import annotations

from collections import defaultdict
from datetime import UTC, datetime, timedelta

from query_data import MiB, push_body, run_summary

from resmon.schema import format_time, validate_push
from resmon.store import live, rollup_pass, rollups
from resmon.store.models import ContainerStat, RollupContainer, RollupJob, Run, database_proxy
from resmon.store.write import store_push

NOW = datetime.now(UTC).replace(minute=30, second=0, microsecond=0) - timedelta(hours=1)
SCOPES = [
    ("acme", "acme/widgets", "ci.yml", "build"),
    ("acme", "acme/widgets", "ci.yml", "test"),
    ("beta", "beta/api", "nightly.yml", "e2e"),
]


def push(run_id: str, at: datetime, scope=SCOPES[0], **kw) -> int:
    org, repo, workflow, job = scope
    duration = kw.pop("duration", 200.0)
    summary = run_summary(start=at - timedelta(seconds=duration + 5), duration=duration, **kw)
    body = push_body(run_id, summary, org=org, repo=repo, workflow=workflow, job=job)
    return store_push(validate_push(body), received_at=at).id


def _naive(t: datetime) -> datetime:
    return t.replace(tzinfo=None) if t.tzinfo else t


def _bucket(span: str, run: Run) -> datetime:
    """Where a run counts: the hour or day it was received, or the day it started."""
    if span == "rday":
        return rollups.floor_day(_naive(run.start_time or run.received_at))
    received = _naive(run.received_at)
    return rollups.floor_hour(received) if span == "hour" else rollups.floor_day(received)


def expected_jobs(span: str) -> dict:
    """rollup_jobs recomputed in Python from the runs with figures."""
    groups: dict = defaultdict(list)
    for run in Run.select().where(Run.state != "running"):
        bucket = _bucket(span, run)
        groups[(bucket, run.organization, run.repository, run.workflow, run.job)].append(run)
    out = {}
    for key, runs in groups.items():
        containers = list(ContainerStat.select().where(ContainerStat.run.in_([r.id for r in runs])))

        def total(name, runs=runs):
            values = [getattr(r, name) for r in runs if getattr(r, name) is not None]
            return (round(sum(values), 3) if values else None, len(values))

        out[key] = {
            "runs": len(runs),
            "partial_runs": sum(1 for r in runs if r.partial),
            "last_run_pk": max(r.id for r in runs),
            "job_cpu_seconds": total("job_cpu_seconds"),
            "job_memory_bytes_peak": total("job_memory_bytes_peak"),
            "job_memory_bytes_peak_max": max(
                (r.job_memory_bytes_peak for r in runs if r.job_memory_bytes_peak is not None),
                default=None,
            ),
            "duration": total("duration_seconds"),
            "byte_seconds": round(
                sum(
                    r.job_memory_bytes_peak * r.duration_seconds
                    for r in runs
                    if r.job_memory_bytes_peak is not None and r.duration_seconds is not None
                )
            ),
            "oom_kills": sum(c.oom_kills or 0 for c in containers),
        }
    return out


def stored_jobs(span: str) -> dict:
    out = {}
    for row in RollupJob.select().where(RollupJob.span == span):
        key = (_naive(row.bucket), row.organization, row.repository, row.workflow, row.job)
        s = row.job_cpu_seconds_sum
        m = row.job_memory_bytes_peak_sum
        d = row.duration_seconds_sum
        out[key] = {
            "runs": row.runs,
            "partial_runs": row.partial_runs,
            "last_run_pk": row.last_run_pk,
            "job_cpu_seconds": (None if s is None else round(s, 3), row.job_cpu_seconds_n),
            "job_memory_bytes_peak": (
                None if m is None else round(m, 3),
                row.job_memory_bytes_peak_n,
            ),
            "job_memory_bytes_peak_max": row.job_memory_bytes_peak_max,
            "duration": (None if d is None else round(d, 3), row.duration_seconds_n),
            "byte_seconds": round(row.job_memory_byte_seconds or 0),
            "oom_kills": row.oom_kills,
        }
    return out


def expected_containers(span: str) -> dict:
    out: dict = defaultdict(lambda: [0, 0.0, None])
    query = ContainerStat.select(ContainerStat, Run).join(Run).where(Run.state != "running")
    for c in query:
        bucket = _bucket(span, c.run)
        entry = out[(bucket, c.run.organization, c.run.job, c.name)]
        entry[0] += 1
        entry[1] = round(entry[1] + (c.cpu_seconds or 0), 3)
        if c.memory_bytes_peak is not None:
            entry[2] = max(entry[2] or 0, c.memory_bytes_peak)
    return {k: tuple(v) for k, v in out.items()}


def stored_containers(span: str) -> dict:
    return {
        (_naive(r.bucket), r.organization, r.job, r.name): (
            r.runs,
            round(r.cpu_seconds_sum or 0, 3),
            r.memory_bytes_peak_max,
        )
        for r in RollupContainer.select().where(RollupContainer.span == span)
    }


def assert_rollups_match() -> None:
    for span in rollups.SPANS:
        assert stored_jobs(span) == expected_jobs(span), span
        assert stored_containers(span) == expected_containers(span), span


def seed() -> list[int]:
    ids = []
    for i in range(12):
        scope = SCOPES[i % 3]
        at = NOW - timedelta(hours=i * 7, minutes=i)
        ids.append(push(f"r{i}", at, scope, builder_mem=(500 + 10 * i) * MiB, duration=100 + i))
    return ids


def test_rollups_equal_the_runs_after_pushes(database):
    seed()
    assert RollupJob.select().count() == 0  # nothing in the push: the pass writes them
    result = rollup_pass.run_pass()
    assert result.events == 12 and result.runs == 12
    assert_rollups_match()
    assert rollups.horizon() is None
    # A second pass with nothing new changes nothing.
    assert rollup_pass.run_pass().events == 0
    assert_rollups_match()


def test_a_re_pushed_run_counts_once(database):
    seed()
    rollup_pass.run_pass()
    before = stored_jobs("day")
    # The same body again (no idempotency key: the run key makes it a duplicate).
    at = NOW - timedelta(hours=0, minutes=0)
    again = push("r0", at, SCOPES[0], builder_mem=500 * MiB, duration=100)
    assert again is not None
    rollup_pass.run_pass()
    assert stored_jobs("day") == before
    assert_rollups_match()


def test_events_applied_twice_count_once(database):
    seed()
    rollup_pass.run_pass()
    before = stored_jobs("hour")
    rollups.set_cursor(0)  # as if a pass died before moving its cursor
    rollup_pass.run_pass()
    assert stored_jobs("hour") == before


def stream(run_id: str, at: datetime, memory: int) -> int:
    execution = dict(zip(("organization", "repository", "workflow", "job"), SCOPES[0], strict=True))
    execution.update(run_id=run_id, run_attempt="")
    run = {
        "run_key": f"key-{run_id}",
        "start_time": format_time(at - timedelta(seconds=10)),
        "host": "runner-1",
        "live_interval_seconds": 15,
        "command_container": "command",
    }
    samples = [
        {
            "t": format_time(at - timedelta(seconds=10 - 2 * i)),
            "elapsed": None if i == 0 else 2.0,
            "host": {"cpu_percent": 40.0, "mem_used_bytes": 10**9, "mem_total_bytes": 4 * 10**9},
            "job": {"cpu_cores": 1.0, "memory_bytes": memory, "cpu_seconds": 2 * i},
            "containers": {
                "command": {"cpu_cores": 1.0, "memory_bytes": memory, "cpu_seconds": 2 * i}
            },
        }
        for i in range(5)
    ]
    return live.store_batch(execution, run, 0, samples, now=at).run


def test_a_lost_run_finished_later_replaces_its_partial_figures(database):
    seed()
    lost_at = NOW - timedelta(hours=3)
    run_pk = stream("live1", lost_at - timedelta(minutes=5), 700 * MiB)
    rollup_pass.run_pass()  # a running run: not rolled up
    assert_rollups_match()
    assert live.mark_lost(120, now=lost_at) == [run_pk]
    rollup_pass.run_pass()
    assert_rollups_match()
    lost_hour = rollups.floor_hour(lost_at.replace(tzinfo=None))
    row = RollupJob.get(
        (RollupJob.span == "hour") & (RollupJob.bucket == lost_hour) & (RollupJob.job == "build")
    )
    assert row.partial_runs == 1
    # The final push arrives now: the run leaves the hour it was lost in.
    summary = run_summary(start=lost_at - timedelta(minutes=5), builder_mem=900 * MiB)
    summary["collector"] = {"run_key": "key-live1"}
    body = push_body("live1", summary)
    assert store_push(validate_push(body), received_at=NOW).id == run_pk
    assert rollups.horizon() is not None
    rollup_pass.run_pass()
    assert_rollups_match()
    gone = RollupJob.select().where(
        (RollupJob.span == "hour") & (RollupJob.bucket == lost_hour) & (RollupJob.job == "build")
    )
    assert all(r.partial_runs == 0 for r in gone)
    assert sum(r.runs for r in RollupJob.select().where(RollupJob.span == "day")) == 13


def test_rollups_outlive_deleted_runs_and_rebuild_recomputes(database):
    ids = seed()
    rollup_pass.run_pass()
    before = stored_jobs("day")
    Run.delete().where(Run.id.in_(ids[:4])).execute()
    rollup_pass.run_pass()
    assert stored_jobs("day") == before  # deleting runs changes no rollup
    # A rebuild of everything is a recomputation from the runs that remain.
    assert rollup_pass.rebuild() > 0
    assert_rollups_match()
    assert stored_jobs("day") != before


def test_rebuild_of_a_range_matches_the_runs(database):
    seed()
    rollup_pass.run_pass()
    RollupJob.delete().execute()
    RollupContainer.delete().execute()
    start = NOW - timedelta(days=10)
    rollup_pass.rebuild(start.replace(tzinfo=None), NOW.replace(tzinfo=None) + timedelta(hours=2))
    assert_rollups_match()


def test_migrated_database_has_the_rollups_of_its_runs(database):
    seed()
    # As a database at version 8 would be migrated: the step builds them from the runs.
    from peewee import PostgresqlDatabase
    from playhouse.migrate import PostgresqlMigrator, SqliteMigrator

    from resmon.store.migrations_rollups import to_v9

    db = database_proxy.obj
    migrator = PostgresqlMigrator(db) if isinstance(db, PostgresqlDatabase) else SqliteMigrator(db)
    with db.atomic():
        to_v9(db, migrator)
    assert_rollups_match()
    assert rollups.horizon() is None
    with db.atomic():
        to_v9(db, migrator)  # repeatable
    assert_rollups_match()


def test_a_pass_over_more_jobs_than_one_statement_takes_equals_the_runs(database):
    """One statement recomputes a bucket for up to JOBS_PER_STATEMENT jobs: 70 jobs
    in the same hour and day take three statements each, and every job's rows equal
    what its runs give; a job the pass did not touch keeps its rows."""
    untouched = ("zeta", "zeta/app", "ci.yml", "build")
    push("z0", NOW - timedelta(minutes=20), untouched, builder_mem=700 * MiB)
    rollup_pass.run_pass()
    kept = {k: v for k, v in stored_jobs("hour").items() if k[1] == "zeta"}
    assert kept
    jobs = [("acme", "acme/widgets", "ci.yml", f"job-{n}") for n in range(70)]
    assert len(jobs) > 2 * rollup_pass.JOBS_PER_STATEMENT
    for n, scope in enumerate(jobs):
        push(f"a{n}", NOW - timedelta(minutes=n % 25), scope, builder_mem=(400 + n) * MiB)
        if n % 3 == 0:
            push(f"b{n}", NOW - timedelta(minutes=n % 25, seconds=30), scope, duration=90)
    before = rollups.cursor()
    result = rollup_pass.run_pass()
    # New runs are added to their rows (RUNS_PER_ADD per transaction), none recomputed.
    assert result.runs == 70 + 24 and result.added == 94 and result.hours == 0
    assert rollup_pass.RUNS_PER_ADD < 94
    assert_rollups_match()
    assert {k: v for k, v in stored_jobs("hour").items() if k[1] == "zeta"} == kept
    # Their events applied again (counted runs): every bucket of theirs is recomputed.
    rollups.set_cursor(before)
    result = rollup_pass.run_pass()
    assert result.runs == 94 and result.added == 0 and result.hours == 70
    assert_rollups_match()
    assert {k: v for k, v in stored_jobs("hour").items() if k[1] == "zeta"} == kept


def test_runs_added_pass_by_pass_equal_the_runs(database):
    """A pass after each push: each run is added to rows that already count others
    (sums, counts, maxima and minima combined), with NULL figures on either side."""
    for i in range(9):
        scope = SCOPES[i % 2]
        at = NOW - timedelta(minutes=50 - i)
        cpu = None if i % 3 == 0 else 300.0 - 10 * i
        push(
            f"p{i}",
            at,
            scope,
            duration=100 + 7 * i,
            builder_mem=(900 - 50 * i) * MiB,
            cpu_seconds=cpu,
        )
        result = rollup_pass.run_pass()
        assert (result.added, result.hours) == (1, 0)
        assert_rollups_match()
    row = RollupJob.get((RollupJob.span == "hour") & (RollupJob.job == "build"))
    assert row.runs == 5 and row.cpu_seconds_n == 3  # two runs without CPU-seconds


def test_a_rebuild_before_the_pass_counts_a_run_once(database):
    """A run started the day before it was received is in that day's rday row; a
    rebuild of that day counts it there before the pass applies its event, and the
    pass then recomputes its buckets instead of adding it again."""
    at = NOW.replace(hour=0, minute=30)
    push("late", at, SCOPES[0], duration=7200)  # started the previous UTC day
    day = rollups.floor_day(at.replace(tzinfo=None)) - timedelta(days=1)
    rollup_pass.rebuild(day, day + timedelta(days=1))
    result = rollup_pass.run_pass()
    assert result.added == 0
    assert_rollups_match()


def test_a_run_added_outside_its_start_days_row(database):
    """Added as a recomputation counts it: in its hour and day, and not in the row of
    a start day older than the rollups' horizon, nor of a start day it was received
    more than a day before (a clock ahead)."""
    push("old", NOW, SCOPES[0], duration=5 * 86400 - 10)
    push("ahead", NOW, SCOPES[1], duration=100)  # started "now", as pushed below
    ahead = Run.get(Run.run_id == "ahead")
    Run.update(start_time=(NOW + timedelta(days=3)).replace(tzinfo=None)).where(
        Run.id == ahead.id
    ).execute()
    result = rollup_pass.run_pass(min_bucket=(NOW - timedelta(days=2)).replace(tzinfo=None))
    assert (result.added, result.hours) == (2, 0)
    for span in ("hour", "day"):
        assert stored_jobs(span) == expected_jobs(span)
    assert RollupJob.select().where(RollupJob.span == "rday").count() == 0
