"""The job's own figures of a run (resmon.store.job_figures): from the summary's ``job``
block, else the wrapped command's container, else the sum over the containers; stored
by a push and backfilled by the version-5 upgrade on SQLite and PostgreSQL."""

from __future__ import annotations

import json
from datetime import UTC, datetime
from pathlib import Path

import pytest
from query_data import HOST_MEM, SLEEP_PSS, SLEEP_RSS, GiB, wrapped_sleep_summary
from server_proc import sample_payload

from resmon.schema import validate_push
from resmon.store import db as dbmod
from resmon.store import history, migrations
from resmon.store.job_figures import JOB_COLUMNS, job_columns, job_columns_of_text
from resmon.store.models import Run
from resmon.store.write import store_push

FIXTURES = Path(__file__).resolve().parent.parent / "fixtures" / "summaries"
START = datetime(2026, 11, 2, 9, 0, tzinfo=UTC)


def fixture(name: str) -> dict:
    return json.loads((FIXTURES / name).read_text())


def test_the_job_block_is_stored_as_sent():
    columns = job_columns(wrapped_sleep_summary(start=START))
    assert columns == {
        "job_scope": "command",
        "job_cpu_cores_p95": 0.0,
        "job_cpu_cores_peak": 0.01,
        "job_cpu_seconds": 0.001,
        "job_memory_bytes_p95": SLEEP_PSS,
        "job_memory_bytes_peak": SLEEP_PSS,
        "job_memory_kind": "pss",
        "job_memory_peak_low_bytes": SLEEP_PSS,
        "job_memory_peak_high_bytes": SLEEP_RSS,
        "job_limit_cpu_cores": None,
        "job_limit_memory_bytes": None,
    }


def test_an_older_wrapped_run_gets_its_command_container():
    """Without a job block: the command's container, not the host's other processes
    (eight /process_api/... containers and `host` in this wrapped make)."""
    summary = fixture("wrapper_make_summary.json")
    command = next(c for c in summary["containers"] if c["name"] == "command")
    columns = job_columns(summary)
    assert columns["job_scope"] == "command"
    assert columns["job_cpu_cores_p95"] == command["cpu_cores"]["p95"]
    assert columns["job_cpu_cores_peak"] == command["cpu_cores"]["peak"]
    assert columns["job_cpu_seconds"] == 1.638
    assert columns["job_memory_bytes_peak"] == 81088512
    assert columns["job_memory_bytes_p95"] == 60719104
    # collector.sources says procfs: summed RSS.
    assert columns["job_memory_kind"] == "rss"
    assert (columns["job_limit_cpu_cores"], columns["job_limit_memory_bytes"]) == (2.0, 2**29)
    assert columns["job_memory_peak_low_bytes"] is None  # no range measured then
    # `collect --name unit-tests`: that container is the command's.
    summary["command"]["container"] = "host"
    assert job_columns(summary)["job_memory_bytes_peak"] == 16138240


def test_a_command_never_sampled_keeps_only_its_rusage():
    summary = wrapped_sleep_summary(start=START, job_block=False)
    summary["containers"] = [c for c in summary["containers"] if c["name"] != "command"]
    columns = job_columns(summary)
    assert columns["job_scope"] == "command" and columns["job_cpu_seconds"] == 0.001
    assert columns["job_memory_bytes_peak"] is None and columns["job_cpu_cores_p95"] is None


def test_a_sidecar_or_go_run_sums_its_containers():
    """The Go collector sends neither job nor command: the sum over the containers, the
    sums of their p95 and peaks (at least those of the summed series)."""
    summary = fixture("run_summary.json")
    runner, sidecar = summary["containers"]
    columns = job_columns(summary)
    assert columns["job_scope"] == "containers"
    assert columns["job_cpu_cores_peak"] == pytest.approx(1.95 + 0.25)
    assert columns["job_cpu_cores_p95"] == pytest.approx(1.9 + 0.2)
    assert columns["job_cpu_seconds"] == pytest.approx(12.75)
    assert columns["job_memory_bytes_peak"] == 805306368 + 33554432
    # runner from its cgroup, the sidecar summed RSS
    assert columns["job_memory_kind"] == "mixed"
    # The sidecar has no limit: the job's is not known.
    assert columns["job_limit_memory_bytes"] is None
    sidecar.update(limit_memory_bytes=GiB, limit_cpu_cores=0.5)
    assert job_columns(summary)["job_limit_memory_bytes"] == 2 * GiB
    # A Go summary: one container, no sources; each container's own kind where given.
    go = sample_payload("1")["run_summary"]
    assert job_columns(go)["job_memory_kind"] == "rss"
    go["containers"][0]["memory_kind"] = "cgroup"
    go["containers"][0]["memory_peak"] = {"low": 10, "high": 30, "headline": 20}
    columns = job_columns(go)
    assert columns["job_memory_kind"] == "cgroup"
    assert (columns["job_memory_peak_low_bytes"], columns["job_memory_peak_high_bytes"]) == (
        10,
        30,
    )
    assert job_columns({"sample_count": 3}) == dict.fromkeys(JOB_COLUMNS)


@pytest.mark.parametrize(
    "value", ["a\x00b", "x" * 300, -1, 2**64, 1e308, float("nan"), True, None, [], {}, [[[]]]]
)
def test_what_a_peer_may_send_in_the_job_block_never_fails(value):
    summary = wrapped_sleep_summary(start=START)
    job = summary["job"]
    for key in ("scope", "cpu_seconds", "memory_kind", "limit_memory_bytes"):
        job[key] = value
    job["cpu_cores"] = {"p95": value, "peak": value}
    job["memory_peak"] = value
    columns = job_columns(summary)
    assert columns["job_scope"] is None and columns["job_memory_kind"] is None
    # A number a column holds is kept (a double holds 2**64), anything else is NULL.
    assert columns["job_cpu_seconds"] in (None, float(value) if value in (-1, 2**64, 1e308) else 0)
    assert columns["job_limit_memory_bytes"] == (-1 if value == -1 and value is not True else None)
    summary["job"] = value
    job_columns(summary)
    summary["command"] = value
    summary["containers"] = value if isinstance(value, list) else [value]
    job_columns(summary)
    assert job_columns_of_text("not json") == dict.fromkeys(JOB_COLUMNS)
    assert job_columns_of_text(json.dumps(summary)) is not None


def test_a_push_stores_the_job_figures_beside_the_host(database):
    with_job = store_push(
        validate_push({**sample_payload("1"), "run_summary": wrapped_sleep_summary(start=START)})
    )
    older = store_push(
        validate_push(
            {
                **sample_payload("2"),
                "run_summary": wrapped_sleep_summary(start=START, job_block=False),
            }
        )
    )
    runs = {
        r["id"]: r for r in history.job_runs("my-org", "my-org/my-repo", "ci.yml", "build")["runs"]
    }
    for run_pk, kind, peak in ((with_job.id, "pss", SLEEP_PSS), (older.id, "rss", SLEEP_RSS)):
        row = runs[run_pk]
        # The host: the whole machine at 100 % and 1.28 GiB ...
        assert row["cpu_percent_p95"] == 100.0 and row["mem_bytes_peak"] == HOST_MEM
        # ... the job: an idle sleep.
        assert row["job_cpu_cores_p95"] == 0.0 and row["job_cpu_seconds"] < 0.01
        assert (row["job_memory_bytes_peak"], row["job_memory_kind"]) == (peak, kind)


def _as_version_4(db) -> None:
    """The database as resmon's version 4 left it: no job columns."""
    for name in JOB_COLUMNS:
        db.execute_sql(f'ALTER TABLE runs DROP COLUMN "{name}"')
    db.execute_sql("UPDATE schema_version SET version = 4")


def test_version_4_runs_get_their_job_figures(database, monkeypatch):
    """The upgrade fills every stored run's job figures as a push derives them, in
    batches (here of 2 runs, each summary alone past the byte budget)."""
    db = database
    summaries = [
        wrapped_sleep_summary(start=START),
        wrapped_sleep_summary(start=START, job_block=False),
        fixture("run_summary.json"),
        fixture("wrapper_make_summary.json"),
        sample_payload("x")["run_summary"],
        {"sample_count": 3},
    ]
    for n, summary in enumerate(summaries):
        store_push(validate_push({**sample_payload(str(n)), "run_summary": summary}))
    expected = {r.id: {n: getattr(r, n) for n in JOB_COLUMNS} for r in Run.select()}
    assert expected[1]["job_memory_kind"] == "pss" and expected[6]["job_scope"] is None
    _as_version_4(db)
    assert dbmod.schema_version(db) == 4
    monkeypatch.setattr(migrations, "BACKFILL_BATCH_ROWS", 2)
    monkeypatch.setattr(migrations, "BACKFILL_BATCH_BYTES", 1)

    assert dbmod.migrate(db) == (4, dbmod.LATEST_VERSION)
    upgraded = {r.id: {n: getattr(r, n) for n in JOB_COLUMNS} for r in Run.select()}
    assert upgraded == expected
    assert dbmod.migrate(db) == (dbmod.LATEST_VERSION,) * 2
    # Fresh and upgraded databases declare the same columns.
    assert [c.name for c in db.get_columns("runs")][-len(JOB_COLUMNS) :] == list(JOB_COLUMNS)
