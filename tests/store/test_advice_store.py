"""The advice questions on a real database: the version-6 table of flagged runs, a
job's history as the recommendation reads it, and the fleet."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta

from query_data import MiB, push_body, run_summary

from resmon.schema import validate_push
from resmon.store import advice, baseline, events
from resmon.store import db as dbmod
from resmon.store.models import RunRegression
from resmon.store.write import store_push


def store(run_id, builder_mem, days_ago, job="build", oom=False):
    start = datetime.now(UTC) - timedelta(days=days_ago, hours=1)
    summary = run_summary(start=start, builder_mem=builder_mem)
    if oom:
        summary["containers"][0]["oom_kills"] = 1
    payload = validate_push(push_body(run_id, summary, job=job))
    return store_push(payload, received_at=start + timedelta(minutes=5)).id


def test_version_5_gets_the_table_of_flagged_runs(database):
    database.execute_sql("DROP TABLE run_regressions")
    database.execute_sql("UPDATE schema_version SET version = 5")
    assert dbmod.migrate(database) == (5, dbmod.LATEST_VERSION)
    assert RunRegression.select().count() == 0


def test_a_jobs_history_is_oldest_first_with_its_containers_and_oom_kills(database):
    for n in range(5):
        store(f"r{n}", (900 + n) * MiB, days_ago=10 - n, oom=(n == 2))
    job_runs, containers, window = advice.job_history(
        "acme", "widgets", "ci.yml", "build", since="30d", runs=4
    )
    # The newest 4 of 5, oldest first.
    assert [u.memory_bytes_peak for u in job_runs] == [(1000 + n) * MiB for n in range(1, 5)]
    assert [u.oom_killed for u in job_runs] == [False, True, False, False]
    assert set(containers) == {"builder", "db"}
    assert containers["builder"][0].limit_memory_bytes == 1024 * MiB
    assert window["runs_limit"] == 4
    days = [u.day for u in job_runs]
    assert days == sorted(days) and len(set(days)) == 4


def test_the_fleet_ranks_by_risk_and_what_it_frees(database):
    for n in range(4):
        store(f"a{n}", 900 * MiB, days_ago=4 - n, job="build", oom=(n == 1))
        store(f"b{n}", 100 * MiB, days_ago=4 - n, job="lint")
    store("c0", 100 * MiB, days_ago=1, job="docs")
    by_risk = advice.recommend_fleet(by="risk")
    assert [j["job"] for j in by_risk["jobs"]][0] == "build"
    assert by_risk["jobs"][0]["oom_killed_runs"] == 1
    docs = next(j for j in by_risk["jobs"] if j["job"] == "docs")
    assert docs["status"] == "insufficient_runs" and docs["runs_needed"] == 2


def test_flags_are_saved_once_and_listed(database):
    ids = [store(f"r{n}", 900 * MiB, days_ago=8 - n) for n in range(7)]
    heavy = store("heavy", 2000 * MiB, days_ago=0)
    comparison = baseline.compare_stored_run(heavy, baseline.BaselineOptions())
    assert comparison["baseline_runs"] == len(ids)
    assert baseline.save_flags(heavy, comparison) == comparison["regressions"] == 2
    listed = baseline.list_regressions(since="1d")
    assert [r["run_id"] for r in listed["runs"]] == ["heavy"]
    assert baseline.list_regressions(since="1d", until="12h")["runs"] == []


def test_flags_append_a_regression_event_in_their_transaction(database):
    for n in range(7):
        store(f"r{n}", 900 * MiB, days_ago=8 - n)
    heavy = store("heavy", 2000 * MiB, days_ago=0)
    comparison = baseline.compare_stored_run(heavy, baseline.BaselineOptions())
    before = events.latest_event_id()
    baseline.save_flags(heavy, comparison)
    (event,) = [e for e in events.events_after(before, 10) if e["kind"] == "regression"]
    assert (event["job"], event["run_pk"], event["repository"]) == ("build", heavy, "acme/widgets")
    assert event["data"]["run"] == heavy and event["data"]["run_id"] == "heavy"
    figures = {
        (f["container"], f["metric"], f["test"], f["runs"]) for f in event["data"]["regressions"]
    }
    assert figures == {
        (None, "memory_bytes_peak", "single", 1),
        ("builder", "memory_bytes_peak", "single", 1),
    }
    # No flags: no event.
    quiet = store("quiet", 900 * MiB, days_ago=0)
    last = events.latest_event_id()
    assert (
        baseline.save_flags(quiet, baseline.compare_stored_run(quiet, baseline.BaselineOptions()))
        == 0
    )
    assert events.latest_event_id() == last


def test_a_new_runs_comparison_from_what_it_wrote_equals_the_one_read_back(database):
    """The push answer compares the run it has just stored from the columns and
    container rows it wrote; reading the run back gives the same comparison (here with
    regressions flagged, on the job and on a container)."""
    for n in range(7):
        store(f"r{n}", (900 + 3 * n) * MiB, days_ago=8 - n)
    start = datetime.now(UTC) - timedelta(hours=1)
    payload = validate_push(push_body("heavy", run_summary(start=start, builder_mem=2000 * MiB)))
    result = store_push(payload, received_at=start + timedelta(minutes=5))
    assert result.created and result.written is not None
    options = baseline.BaselineOptions()
    from_memory = baseline.compare_new_run(result.id, *result.written, options)
    read_back = baseline.compare_stored_run(result.id, options)
    assert from_memory == read_back
    assert from_memory["baseline_runs"] == 7 and from_memory["regressions"] == 2
    # A duplicate writes nothing: its answer reads the stored run.
    again = store_push(payload, received_at=start + timedelta(minutes=6))
    assert not again.created and again.written is None
