"""`resmon query usage` and `resmon admin`: a database file with runs of two
organizations, the table at 80 and 200 columns, JSON and CSV parsed back; the same
answer from a real server; the rollups rebuilt and the file made to give space back."""

from __future__ import annotations

import csv
import io
import json
from datetime import timedelta

import pytest
from query_data import now_utc, push_body, run_summary
from server_proc import ServerProcess

from resmon.cli import cli
from resmon.schema import validate_push
from resmon.store import rollup_pass
from resmon.store.db import migrate, open_database
from resmon.store.write import store_push

RUNS = [  # org, repository, job, CPU seconds, hours ago
    ("acme", "acme/widgets", "build", 7200.0, 2),
    ("acme", "acme/widgets", "build", 3600.0, 3),
    ("acme", "acme/widgets-with-a-rather-long-repository-name", "integration-tests", 1800.0, 4),
    ("beta", "beta/api", "e2e", 900.0, 5),
]


@pytest.fixture
def database(tmp_path):
    path = str(tmp_path / "usage.db")
    db = open_database(path)
    migrate(db)
    now = now_utc()
    for i, (org, repo, job, cpu, ago) in enumerate(RUNS):
        summary = run_summary(start=now - timedelta(hours=ago), duration=3600.0, cpu_seconds=cpu)
        body = push_body(f"r{i}", summary, org=org, repo=repo, job=job)
        store_push(validate_push(body), received_at=now - timedelta(hours=ago) + timedelta(hours=1))
    rollup_pass.catch_up()
    db.close()
    return path


def usage(runner, database, *args, columns=100):
    result = runner.invoke(
        cli, ["query", "usage", "--db", database, *args], env={"COLUMNS": str(columns)}
    )
    assert result.exit_code == 0, result.output
    return result.output


def test_help_says_what_cpu_hours_and_gib_hours_are(runner):
    result = runner.invoke(cli, ["query", "usage", "--help"])
    assert result.exit_code == 0
    text = " ".join(result.output.split())
    assert "one core busy for one hour is 1 CPU-hour" in text
    assert "memory peak in GiB times its duration in hours" in text
    assert "not the integral of memory over time" in text


def test_json_has_every_figure(runner, database):
    body = json.loads(usage(runner, database, "--by", "org", "-o", "json"))
    cpu = {}
    for row in body["rows"]:
        cpu[row["organization"]] = cpu.get(row["organization"], 0) + row["cpu_hours"]
    assert cpu == pytest.approx({"acme": 3.5, "beta": 0.25})
    assert body["totals"]["runs"] == 4
    # Each run: its job memory peak (GiB) for its one hour.
    db = open_database(database)
    peaks = [p for (p,) in db.execute_sql("SELECT job_memory_bytes_peak FROM runs").fetchall()]
    db.close()
    assert len(peaks) == 4
    assert body["totals"]["gib_hours"] == pytest.approx(sum(p / 2**30 for p in peaks))


def test_csv_rows_parse_back(runner, database):
    text = usage(runner, database, "--by", "job", "--granularity", "hour", "-o", "csv")
    rows = list(csv.DictReader(io.StringIO(text)))
    assert list(rows[0])[:6] == ["organization", "repository", "workflow", "job", "bucket", "runs"]
    assert sum(float(r["cpu_hours"]) for r in rows) == pytest.approx(3.75)
    assert all(r["bucket"].endswith(":00:00Z") for r in rows)


def test_table_fits_80_and_200_columns(runner, database):
    wide = usage(runner, database, "--by", "job", columns=200)
    assert max(len(line) for line in wide.splitlines()) <= 200
    assert "widgets-with-a-rather-long-repository-name" in wide
    assert "CPU-h" in wide and "GiB-h" in wide and "Peak mem" in wide
    assert "not shown" not in wide
    narrow = usage(runner, database, "--by", "job", columns=80)
    assert max(len(line) for line in narrow.splitlines()) <= 80
    assert "CPU-h" in narrow and "GiB-h" in narrow
    assert "not shown at 80 columns" in narrow
    assert "Total: 4 runs, 3.75 CPU-hours" in " ".join(narrow.split())


def test_org_filter_and_empty_period(runner, database):
    text = usage(runner, database, "--by", "repo", "--org", "beta", "-o", "json")
    assert {r["organization"] for r in json.loads(text)["rows"]} == {"beta"}
    assert "No runs in this period." in usage(runner, database, "--org", "nobody")


def test_bad_period_is_a_usage_error(runner, database):
    result = runner.invoke(cli, ["query", "usage", "--db", database, "--period", "0d"])
    assert result.exit_code == 2 and "empty period" in result.output


def test_same_answer_from_a_server(runner, database):
    local = json.loads(usage(runner, database, "--by", "workflow", "-o", "json"))
    with ServerProcess(database) as server:
        result = runner.invoke(
            cli,
            ["query", "usage", "--by", "workflow", "-o", "json", "--server", server.url],
            env={"RESMON_READ_TOKEN": server.read_token},
        )
        assert result.exit_code == 0, result.output
    remote = json.loads(result.output)
    assert {**remote, "until": None, "since": None} == {**local, "until": None, "since": None}


def test_admin_rebuild_and_vacuum(runner, database):
    before = json.loads(usage(runner, database, "-o", "json"))
    db = open_database(database)
    db.execute_sql("DELETE FROM rollup_jobs")
    db.execute_sql("DELETE FROM rollup_containers")
    db.close()
    result = runner.invoke(cli, ["admin", "rebuild-rollups", "--db", database, "--since", "2d"])
    assert result.exit_code == 0, result.output
    assert "rebuilt the rollups of" in result.output
    after = json.loads(usage(runner, database, "-o", "json"))
    assert after["rows"] == before["rows"]
    result = runner.invoke(cli, ["admin", "vacuum", "--db", database])
    assert result.exit_code == 0, result.output
    db = open_database(database)
    assert db.execute_sql("PRAGMA auto_vacuum").fetchone()[0] == 2
    db.close()
    missing = runner.invoke(cli, ["admin", "vacuum", "--db", database + ".nope"])
    assert missing.exit_code == 1 and "no database file" in missing.output
