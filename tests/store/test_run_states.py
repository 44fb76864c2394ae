"""Run states in the read questions, on SQLite and PostgreSQL: every row says its run's
state, partial flag and host; running runs (no figures yet) stay out of trends, top,
recommendations and baselines; lost runs (partial figures) count in trends, top and
recommendations, marked, and stay out of regression baselines."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta

import pytest
from query_data import MiB, push_body, run_summary

from resmon.schema import format_time, validate_push
from resmon.store import advice, baseline, history, live
from resmon.store.write import store_push

SCOPE = ("acme", "acme/widgets", "ci.yml", "build")
NOW = datetime.now(UTC).replace(microsecond=0)


def push(run_id: str, at: datetime, builder_mem: int = 900 * MiB, duration: float = 200.0) -> int:
    summary = run_summary(
        start=at - timedelta(seconds=duration + 5), builder_mem=builder_mem, duration=duration
    )
    return store_push(validate_push(push_body(run_id, summary)), received_at=at).id


def sample(start: datetime, i: int, memory: int) -> dict:
    """The i-th live sample of a run busy on one core, one every 2 seconds."""
    return {
        "t": format_time(start + timedelta(seconds=2 * i)),
        "elapsed": None if i == 0 else 2.0,
        "host": {"cpu_percent": 40.0, "mem_used_bytes": 10**9, "mem_total_bytes": 4 * 10**9},
        "job": {"cpu_cores": None if i == 0 else 1.0, "memory_bytes": memory, "cpu_seconds": 2 * i},
        "containers": {
            "command": {
                "cpu_cores": None if i == 0 else 1.0,
                "memory_bytes": memory,
                "cpu_seconds": 2 * i,
                "memory_kind": "pss",
            }
        },
    }


def stream(run_id: str, at: datetime, memory: int = 700 * MiB, host: str = "runner-7") -> int:
    """A live run of the job with one batch of 5 samples received at ``at``: running."""
    execution = dict(zip(("organization", "repository", "workflow", "job"), SCOPE, strict=True))
    execution.update(run_id=run_id, run_attempt="")
    run = {
        "run_key": f"key-{run_id}",
        "start_time": format_time(at - timedelta(seconds=10)),
        "host": host,
        "live_interval_seconds": 15,
        "command_container": "command",
    }
    samples = [sample(at - timedelta(seconds=10), i, memory) for i in range(5)]
    return live.store_batch(execution, run, 0, samples, now=at).run


def lose(run_pk: int, at: datetime) -> None:
    assert live.mark_lost(120, now=at) == [run_pk]


def test_rows_carry_state_partial_and_host(database):
    done = push("1", NOW - timedelta(hours=3))
    lost = stream("2", NOW - timedelta(hours=2))
    lose(lost, NOW - timedelta(hours=1))
    running = stream("3", NOW - timedelta(minutes=1), host="runner-9")
    runs = {r["id"]: r for r in history.job_runs(*SCOPE)["runs"]}
    assert [
        (runs[i]["state"], runs[i]["partial"], runs[i]["host"]) for i in (done, lost, running)
    ] == [
        ("finished", False, None),
        ("lost", True, "runner-7"),
        ("running", False, "runner-9"),
    ]
    assert runs[running]["job_memory_bytes_peak"] is None  # no figures until it finishes
    (job,) = history.list_jobs()["jobs"]
    assert (job["last_id"], job["last_state"], job["last_partial"], job["last_host"]) == (
        running,
        "running",
        False,
        "runner-9",
    )
    one = history.get_run(lost)
    assert (one["state"], one["partial"], one["live_interval_seconds"]) == ("lost", True, 15.0)
    assert one["last_batch_at"] == format_time(NOW - timedelta(hours=2))
    assert one["end_time"] == format_time(NOW - timedelta(hours=2, seconds=2))
    assert history.get_run(done)["last_batch_at"] is None


def test_trends_and_top_leave_running_runs_out_and_mark_lost_ones(database):
    done = push("1", NOW - timedelta(days=1))
    lost = stream("2", NOW - timedelta(hours=2))
    lose(lost, NOW - timedelta(hours=1))
    stream("3", NOW - timedelta(minutes=1))
    points = history.trend(*SCOPE)["points"]
    assert [(p["id"], p["state"], p["partial"]) for p in points] == [
        (done, "finished", False),
        (lost, "lost", True),
    ]
    assert points[1]["job_memory_bytes_peak"] == 700 * MiB
    container = history.trend(*SCOPE, container="command")["points"]
    assert [(p["id"], p["partial"]) for p in container] == [(lost, True)]
    days = history.trend(*SCOPE, by="day")["points"]
    assert sum(d["runs"] for d in days) == 2 and sum(d["partial_runs"] for d in days) == 1
    assert all(isinstance(d["partial_runs"], int) for d in days)
    (row,) = history.top("memory")["jobs"]
    assert (row["runs"], row["partial_runs"]) == (2, 1)
    assert row["job_memory_bytes_peak_max"] >= 700 * MiB


def test_a_job_with_only_a_running_run_has_no_points_and_no_ranking(database):
    stream("1", NOW - timedelta(minutes=1))
    assert history.trend(*SCOPE)["points"] == []
    assert history.trend(*SCOPE, by="day")["points"] == []
    assert history.top("cpu")["jobs"] == []


def test_recommendations_count_lost_runs_not_running_ones(database):
    for n in range(3):
        push(f"r{n}", NOW - timedelta(days=5 - n), builder_mem=500 * MiB)
    lost = stream("lost", NOW - timedelta(hours=2), memory=2000 * MiB)
    lose(lost, NOW - timedelta(hours=1))
    stream("live", NOW - timedelta(minutes=1), memory=4000 * MiB)
    job_runs, containers, window = advice.job_history(*SCOPE)
    assert len(job_runs) == 4 and window["partial_runs"] == 1
    # The lost run's peak (a lower bound) holds the memory up; the running one is not read.
    assert max(u.memory_bytes_peak for u in job_runs) == 2000 * MiB
    answer = advice.recommend_job(*SCOPE)
    assert answer["partial_runs"] == 1 and answer["job_recommendation"]["runs"] == 4
    assert answer["job_recommendation"]["memory_limit_bytes"] >= 2000 * MiB
    (row,) = advice.recommend_fleet()["jobs"]
    assert (row["runs"], row["partial_runs"]) == (4, 1)
    assert row["memory_peak_max_bytes"] == 2000 * MiB


def test_a_baseline_is_of_finished_runs_only(database):
    for n in range(5):
        push(f"r{n}", NOW - timedelta(days=6 - n))
    # A lost run cut short early and a running one, both received before the next push.
    lost = stream("lost", NOW - timedelta(hours=3), memory=50 * MiB)
    lose(lost, NOW - timedelta(hours=2))
    stream("live", NOW - timedelta(minutes=10))
    pushed = push("next", NOW - timedelta(minutes=1))
    comparison = baseline.compare_stored_run(pushed, baseline.BaselineOptions(runs=5))
    assert comparison["baseline_runs"] == 5  # the five finished runs, not the lost or live one
    memory = next(f for f in comparison["figures"] if f["metric"] == "memory_bytes_peak")
    assert memory["regression"] is False
    # Neither a lost nor a running run is compared.
    assert baseline.compare_stored_run(lost, baseline.BaselineOptions()) is None


def test_a_live_run_finished_late_gets_the_runs_received_before_it(database):
    # Its id comes from its first batch, before the finished runs received meanwhile.
    early = stream("slow", NOW - timedelta(days=3))
    for n in range(5):
        push(f"r{n}", NOW - timedelta(days=2, hours=-n))
    summary = run_summary(start=NOW - timedelta(days=3))
    summary["collector"] = {"run_key": "key-slow"}
    body = push_body("slow", summary)
    body["execution"]["run_attempt"] = ""
    stored = store_push(validate_push(body), received_at=NOW - timedelta(hours=1))
    assert stored.id == early
    comparison = baseline.compare_stored_run(early, baseline.BaselineOptions())
    assert comparison is not None and comparison["baseline_runs"] == 5


def test_flags_keep_the_test_that_flagged_them(database):
    ids = [push(f"r{n}", NOW - timedelta(days=8 - n)) for n in range(7)]
    heavy = push("heavy", NOW - timedelta(hours=1), builder_mem=2000 * MiB)
    comparison = baseline.compare_stored_run(heavy, baseline.BaselineOptions())
    assert baseline.save_flags(heavy, comparison) == 2
    shift = dict(comparison, figures=[dict(f, test="shift", runs=3) for f in comparison["figures"]])
    assert baseline.save_flags(ids[-1], shift) == 2
    listed = {r["run_id"]: r["regressions"] for r in baseline.list_regressions(since="30d")["runs"]}
    assert {(f["test"], f["runs"]) for f in listed["heavy"]} == {("single", 1)}
    assert {(f["test"], f["runs"]) for f in listed["r6"]} == {("shift", 3)}


@pytest.mark.parametrize("state", ["running", "lost"])
def test_a_run_that_is_not_finished_is_not_compared(database, state):
    for n in range(5):
        push(f"r{n}", NOW - timedelta(days=6 - n))
    run_pk = stream("x", NOW - timedelta(hours=2))
    if state == "lost":
        lose(run_pk, NOW - timedelta(hours=1))
    assert baseline.compare_stored_run(run_pk, baseline.BaselineOptions()) is None
