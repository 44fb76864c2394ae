"""`resmon query` shows the job's own figures by default and the machine's with
--scope host, against a real `resmon serve` and straight from its database file:
a wrapped `sleep 1` on a busy runner no longer reads as CPU p95 100 % and 1.28 GiB."""

from __future__ import annotations

import csv
import io
import json
from datetime import timedelta

import pytest
from query_data import (
    HOST_MEM,
    SLEEP_PSS,
    SLEEP_RSS,
    now_utc,
    push_body,
    run_summary,
    wrapped_sleep_summary,
)
from rich.cells import cell_len
from server_proc import ServerProcess

from resmon.cli import cli
from resmon.query.formats import fmt_bytes

ORG, REPO, WORKFLOW = "acme", "acme/widgets", "ci.yml"
SLEEP = [ORG, REPO, WORKFLOW, "sleep"]


@pytest.fixture(scope="module")
def server(tmp_path_factory):
    """Two wrapped sleeps (a collector with the job block, an older one without) and a
    heavy sidecar build whose host was idler than the sleep's."""
    with ServerProcess(tmp_path_factory.mktemp("scope") / "metrics.db") as srv:
        start = now_utc() - timedelta(minutes=30)
        for run_id, job_block in (("1", False), ("2", True)):
            summary = wrapped_sleep_summary(start=start, job_block=job_block)
            body = push_body(run_id, summary, job="sleep")
            assert srv.push(body).status_code == 201
        build = run_summary(start=start, cpu_percent=30.0, cpu_seconds=600.0)
        assert srv.push(push_body("3", build, job="build")).status_code == 201
        yield srv


@pytest.fixture(params=["server", "db"])
def source(request, server):
    if request.param == "server":
        return {"RESMON_SERVER": server.url, "RESMON_READ_TOKEN": server.read_token}, []
    return {}, ["--db", server.database]


def run(runner, source, *args, columns: int = 200) -> str:
    env, extra = source
    result = runner.invoke(cli, ["query", *args, *extra], env={"COLUMNS": str(columns), **env})
    assert result.exit_code == 0, result.output
    return result.output


def row_of(text: str, needle: str) -> str:
    return next(line for line in text.splitlines() if needle in line)


def flat(text: str) -> str:
    return " ".join(line.strip() for line in text.splitlines())


def test_runs_show_the_job_not_the_host(runner, source):
    text = run(runner, source, "runs", *SLEEP)
    newer, older = row_of(text, " 2 "), row_of(text, " 1 ")
    for row in (newer, older):
        assert "100%" not in row and "1.28 GiB" not in row, row
        assert "0.00" in row  # an idle sleep: no CPU
    assert f"{fmt_bytes(SLEEP_PSS)} pss" in newer  # the job block's PSS
    assert f"{fmt_bytes(SLEEP_RSS)} rss" in older  # the command container's RSS
    assert "job: its own processes" in flat(text)

    host = run(runner, source, "runs", *SLEEP, "--scope", "host")
    for needle in (" 2 ", " 1 "):
        row = row_of(host, needle)
        assert "100%" in row and fmt_bytes(HOST_MEM) in row and "pss" not in row
    assert "host (whole machine)" in flat(host)

    rows = list(csv.DictReader(io.StringIO(run(runner, source, "runs", *SLEEP, "-o", "csv"))))
    assert {r["job_memory_kind"] for r in rows} == {"pss", "rss"}
    assert {float(r["cpu_percent_p95"]) for r in rows} == {100.0}  # the host's, still there
    body = json.loads(run(runner, source, "runs", *SLEEP, "-o", "json"))
    by_id = {r["run_id"]: r for r in body["runs"]}
    assert by_id["2"]["job_memory_bytes_peak"] == SLEEP_PSS
    assert by_id["1"]["job_memory_bytes_peak"] == SLEEP_RSS
    assert by_id["2"]["mem_bytes_peak"] == HOST_MEM


def test_jobs_and_trend_show_the_job_by_default(runner, source):
    text = run(runner, source, "jobs")
    sleep = row_of(text, " sleep ")
    assert "100%" not in sleep and f"{fmt_bytes(SLEEP_PSS)} pss" in sleep
    assert "100%" in row_of(run(runner, source, "jobs", "--scope", "host"), " sleep ")

    text = run(runner, source, "trend", *SLEEP)
    assert f"{fmt_bytes(SLEEP_PSS)} pss" in row_of(text, " 2 ") and "100%" not in text
    host = run(runner, source, "trend", *SLEEP, "--scope", "host")
    assert "100%" in row_of(host, " 2 ") and "host (whole machine)" in flat(host)
    (day,) = json.loads(run(runner, source, "trend", *SLEEP, "--by", "day", "-o", "json"))["points"]
    assert day["job_memory_kind"] == "mixed" and day["job_memory_bytes_peak"] == SLEEP_RSS


def test_top_ranks_by_the_job(runner, source):
    """The sleeps' host was busier (100 % against 30 %), the build did the work."""
    text = run(runner, source, "top")
    assert row_of(text, " build ").split()[0] == "1" and row_of(text, " sleep ").split()[0] == "2"
    assert "the job's own figures" in text
    host = run(runner, source, "top", "--scope", "host")
    assert row_of(host, " sleep ").split()[0] == "1" and "host: the whole machine" in host
    memory = run(runner, source, "top", "--metric", "memory", "-o", "csv")
    rows = {r["job"]: r for r in csv.DictReader(io.StringIO(memory))}
    assert int(rows["sleep"]["job_memory_bytes_peak_max"]) == SLEEP_RSS
    assert int(rows["sleep"]["mem_bytes_peak_max"]) == HOST_MEM


@pytest.mark.parametrize("columns", [80, 200])
@pytest.mark.parametrize("scope", ["job", "host"])
def test_tables_fit_80_and_200_columns(runner, server, columns, scope):
    source = ({}, ["--db", server.database])
    for args in (["jobs"], ["runs", *SLEEP], ["trend", *SLEEP], ["top"]):
        text = run(runner, source, *args, "--scope", scope, columns=columns)
        assert max(cell_len(line) for line in text.splitlines()) <= columns, (args, text)
        if columns == 200:
            assert "not shown at" not in text and "…" not in text, (args, text)


def test_a_bad_scope_is_refused(runner, server):
    env = {"RESMON_SERVER": server.url, "RESMON_READ_TOKEN": server.read_token}
    result = runner.invoke(cli, ["query", "top", "--scope", "machine"], env=env)
    assert result.exit_code == 2 and "'--scope'" in result.output
    result = runner.invoke(
        cli, ["query", "trend", *SLEEP, "--container", "command", "--scope", "host"], env=env
    )
    assert result.exit_code == 2 and "--container" in result.output
