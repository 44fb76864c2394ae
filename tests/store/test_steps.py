"""Steps merged into one run (resmon.store.steps), on SQLite and PostgreSQL: totals that
add up, a step stored once however it is retried, conflicts, concurrent steps of one
run, and a whole-run push of the same run id beside them."""

from __future__ import annotations

import threading

import pytest
from server_proc import sample_payload

from resmon.schema import PayloadError, validate_push
from resmon.store import history
from resmon.store.models import Run, RunStep, database_proxy
from resmon.store.steps import merge_steps
from resmon.store.write import CREATED, DUPLICATE, IdempotencyConflict, RunConflict, store_push

SCOPE = ("my-org", "my-org/my-repo", "ci.yml", "build")


def _stat(peak: float, avg: float) -> dict:
    return {"peak": peak, "p99": peak, "p95": peak * 0.9, "p75": avg, "p50": avg, "avg": avg}


def step_payload(name: str, start: str, end: str, cpu: float, memory: int, n: int, **extra):
    """A wrapped step's push: its command container named after it, its job block."""
    body = sample_payload(
        "42",
        start_time=start,
        end_time=end,
        duration_seconds=60.0,
        sample_count=n,
        cpu_seconds=cpu,
        step={"name": name},
        command={"name": "sh", "container": name, "exit_code": 0},
        context={"branch": "main", "sha": "abc"},
        **extra,
    )
    body["execution"]["run_attempt"] = "1"
    body["run_summary"]["job"] = {
        "scope": "command",
        "containers": [name],
        "cpu_cores": _stat(cpu / 30, cpu / 60),
        "cpu_seconds": cpu,
        "memory_bytes": _stat(memory, memory / 2),
        "memory_kind": "pss",
        "memory_peak": {"headline": memory, "low": memory, "high": memory + 10, "basis": "x"},
    }
    return body


STEPS = [
    step_payload("build", "2026-01-02T03:00:00Z", "2026-01-02T03:01:00Z", 30.0, 500, 60),
    step_payload("test", "2026-01-02T03:01:05Z", "2026-01-02T03:02:05Z", 12.5, 900, 60),
    step_payload("package", "2026-01-02T03:02:10Z", "2026-01-02T03:03:10Z", 2.5, 300, 30),
]


def test_three_steps_make_one_run_whose_figures_add_up(database):
    ids = {store_push(validate_push(body), f"key-{i}").id for i, body in enumerate(STEPS)}
    assert len(ids) == 1
    [run_pk] = ids
    run = history.get_run(run_pk)
    assert [s["name"] for s in run["steps"]] == ["build", "test", "package"]
    assert run["job_cpu_seconds"] == pytest.approx(45.0)
    assert run["cpu_seconds"] == pytest.approx(45.0)
    assert run["job_memory_bytes_peak"] == 900
    assert run["job_memory_peak_high_bytes"] == 910
    assert run["sample_count"] == 150
    assert run["start_time"] == "2026-01-02T03:00:00Z"
    assert run["end_time"] == "2026-01-02T03:03:10Z"
    assert run["duration_seconds"] == pytest.approx(190.0)
    assert run["job_scope"] == "command" and run["job_memory_kind"] == "pss"
    assert run["branch"] == "main" and run["commit_sha"] == "abc"
    assert run["state"] == "finished"
    # The average is weighted by samples; the peak the largest.
    job = run["payload"]["job"]
    assert job["cpu_cores"]["peak"] == pytest.approx(1.0)
    assert job["memory_bytes"]["avg"] == pytest.approx((250 * 60 + 450 * 60 + 150 * 30) / 150)
    assert {c["name"] for c in run["containers"]} >= {"runner"}
    assert run["payload"]["merged_from_steps"]["steps"] == 3
    assert run["payload"]["merged_from_steps"]["steps_duration_seconds"] == 180.0
    # One run, listed once, with its steps' context.
    assert [r["id"] for r in history.job_runs(*SCOPE)["runs"]] == [run_pk]


def test_a_retried_step_is_stored_once_and_another_body_is_a_conflict(database):
    first = store_push(validate_push(STEPS[0]), "k0")
    assert first.status == CREATED
    # The same key again, another key, no key: the same step.
    for key in ("k0", "k-other", None):
        again = store_push(validate_push(STEPS[0]), key)
        assert (again.id, again.status) == (first.id, DUPLICATE)
    assert RunStep.select().count() == 1
    changed = {**STEPS[0], "run_summary": {**STEPS[0]["run_summary"], "cpu_seconds": 99.0}}
    with pytest.raises(IdempotencyConflict):
        store_push(validate_push(changed), "k0")
    with pytest.raises(RunConflict):
        store_push(validate_push(changed), "k-new")
    assert RunStep.select().count() == 1
    assert history.get_run(first.id)["job_cpu_seconds"] == pytest.approx(30.0)
    # The next step is a step, not "another body for a stored run".
    assert store_push(validate_push(STEPS[1]), "k1").status == CREATED
    assert history.get_run(first.id)["job_cpu_seconds"] == pytest.approx(42.5)


def test_a_whole_run_push_of_the_same_run_id_stays_its_own(database):
    step = store_push(validate_push(STEPS[0]), "k0")
    whole = sample_payload("42")
    whole["execution"]["run_attempt"] = "1"
    go = store_push(validate_push(whole))
    assert go.status == CREATED and go.id != step.id
    assert history.get_run(go.id)["steps"] == []
    assert Run.select().count() == 2


def test_another_attempt_is_another_run(database):
    a = store_push(validate_push(STEPS[0])).id
    retry = step_payload("build", "2026-01-02T04:00:00Z", "2026-01-02T04:01:00Z", 3.0, 5, 6)
    retry["execution"]["run_attempt"] = "2"
    b = store_push(validate_push(retry)).id
    assert a != b
    assert history.get_run(b)["run_attempt"] == "2"


def test_steps_pushed_at_once_are_all_kept(database, tmp_path):
    """Eight steps of one run from eight threads (each its own connection): one run,
    eight steps, the sum of their CPU-seconds."""
    many = [
        step_payload(f"s{i}", f"2026-01-02T05:0{i}:00Z", f"2026-01-02T05:0{i}:30Z", 1.0, i, 5)
        for i in range(8)
    ]
    barrier = threading.Barrier(len(many))
    errors: list[BaseException] = []

    def push(body):
        try:
            barrier.wait()
            store_push(validate_push(body))
        except BaseException as exc:  # noqa: BLE001 - reported below
            errors.append(exc)
        finally:
            database_proxy.close()

    threads = [threading.Thread(target=push, args=(b,)) for b in many]
    for t in threads:
        t.start()
    for t in threads:
        t.join(60)
    assert errors == []
    [run] = history.job_runs(*SCOPE)["runs"]
    assert run["job_cpu_seconds"] == pytest.approx(8.0)
    assert len(history.get_run(run["id"])["steps"]) == 8


def test_merge_keeps_what_steps_lack_out():
    merged = merge_steps([{"start_time": "2026-01-01T00:00:00Z", "step": {"name": "a"}}])
    assert merged["steps"][0]["name"] == "a"
    assert "job" not in merged and merged["sample_count"] == 0
    assert merge_steps([])["steps"] == []


@pytest.mark.parametrize(
    "step, error",
    [
        ({"name": ""}, "step.name"),
        ({"name": "a\nb"}, "control characters"),
        ({"name": "x" * 256}, "step.name"),
        ({}, "step.name"),
        ("build", "step must be an object"),
    ],
)
def test_a_step_must_be_named(step, error):
    body = sample_payload("1", step=step)
    with pytest.raises(PayloadError, match=error):
        validate_push(body)


def test_a_step_needs_a_start_time_and_context_strings():
    body = sample_payload("1", step={"name": "a"})
    del body["run_summary"]["start_time"]
    with pytest.raises(PayloadError, match="start_time is required"):
        validate_push(body)
    with pytest.raises(PayloadError, match="context.branch must be a string"):
        validate_push(sample_payload("1", context={"branch": 3}))
    with pytest.raises(PayloadError, match="steps must be a list"):
        validate_push(sample_payload("1", steps={"a": 1}))


def test_steps_carry_their_disk_and_network_bytes(database):
    rate = {"peak": 10.0, "p99": 9.0, "p95": 8.0, "p75": 5.0, "p50": 2.0, "avg": 3.0}
    for i, body in enumerate(STEPS[:2]):
        job = body["run_summary"]["job"]
        job["io"] = {
            "sources": ["io.stat"],
            "read_bytes": 100 * (i + 1),
            "write_bytes": 1000 * (i + 1),
            "read_bytes_per_second": rate,
            "write_bytes_per_second": rate,
        }
        job["network"] = {"namespaces": 1, "rx_bytes": 7 + i, "tx_bytes": 9 + i}
    try:
        run_pk = [store_push(validate_push(b)).id for b in STEPS][0]
    finally:
        for body in STEPS[:2]:
            body["run_summary"]["job"].pop("io")
            body["run_summary"]["job"].pop("network")
    run = history.get_run(run_pk)
    io = [(s["disk_read_bytes"], s["disk_write_bytes"], s["net_rx_bytes"]) for s in run["steps"]]
    assert io == [(100, 1000, 7), (200, 2000, 8), (None, None, None)]
    job = run["payload"]["job"]
    assert (job["io"]["read_bytes"], job["io"]["write_bytes"]) == (300, 3000)
    assert job["io"]["read_bytes_per_second"]["peak"] == 10.0
    assert (job["network"]["rx_bytes"], job["network"]["tx_bytes"]) == (15, 19)

    from io import StringIO

    from rich.console import Console

    from resmon.collect.report import render_markdown
    from resmon.query.tables import run_view

    text = render_markdown(run["payload"])
    assert "| build | +0s | 1m 0s | 30.00 | 500 B | 100 B / 1000 B | 7 B / 9 B |" in text
    out = StringIO()
    Console(file=out, width=140).print(run_view(run))
    shown = out.getvalue()
    assert "Steps" in shown and "package" in shown and "Disk r / w" in shown
    assert "main @ abc" in shown


def test_a_later_step_clears_the_flags_of_the_run_as_it_was(database):
    from resmon.store.models import RunRegression

    run_pk = store_push(validate_push(STEPS[0])).id
    RunRegression.insert(
        run=run_pk,
        received_at=Run.get_by_id(run_pk).received_at,
        metric="cpu_seconds",
        value=30.0,
        median=10.0,
        mad=1.0,
        baseline_runs=5,
    ).execute()
    store_push(validate_push(STEPS[1]))
    assert RunRegression.select().where(RunRegression.run == run_pk).count() == 0


def test_a_run_takes_a_bounded_number_of_steps(database, monkeypatch):
    from resmon.store import steps
    from resmon.store.write import TooManySteps

    monkeypatch.setattr(steps, "MAX_STEPS_PER_RUN", 2)
    first = store_push(validate_push(STEPS[0]), "a")
    store_push(validate_push(STEPS[1]), "b")
    with pytest.raises(TooManySteps, match="has 2 steps already"):
        store_push(validate_push(STEPS[2]), "c")
    # A retry of a stored step is still its duplicate.
    assert store_push(validate_push(STEPS[1]), "b").status == DUPLICATE
    assert store_push(validate_push(STEPS[0]), "other").status == DUPLICATE
    assert len(history.get_run(first.id)["steps"]) == 2
