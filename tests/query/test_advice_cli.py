"""`resmon query recommend` (one job, --all, -o json|csv|yaml) and `resmon query
regressions`, on a database file with --db and against a real `resmon serve`; the
tables at 80 and 200 columns."""

from __future__ import annotations

import csv
import io
import json
import re
from datetime import UTC, datetime, timedelta

import pytest
import yaml
from query_data import GiB, MiB, push_body, run_summary
from rich.cells import cell_len
from server_proc import ServerProcess

from resmon.cli import cli
from resmon.query import render
from resmon.query.kube_yaml import cpu_quantity, memory_quantity
from resmon.schema import validate_push
from resmon.store import advice
from resmon.store import db as dbmod
from resmon.store.write import store_push

LONG = {
    "org": "platform-engineering",
    "repo": "platform-engineering/integration-test-harness",
    "workflow": "Nightly Integration / Postgres",
    "job": "integration tests (postgres-16, ubuntu-24.04)",
}
SCOPE = ["acme", "widgets", "ci.yml", "build"]
MEMORY = [900, 920, 880, 940, 910, 930, 890, 960, 905, 915, 925, 895]


def _store(run_id, builder_mem, days_ago, **scope):
    start = datetime.now(UTC) - timedelta(days=days_ago, hours=1)
    summary = run_summary(start=start, builder_mem=builder_mem)
    return store_push(
        validate_push(push_body(run_id, summary, **scope)), received_at=start + timedelta(minutes=5)
    )


@pytest.fixture
def database(tmp_path):
    path = str(tmp_path / "metrics.db")
    db = dbmod.open_database(path)
    dbmod.migrate(db)
    for n, mib in enumerate(MEMORY):
        _store(f"r{n}", mib * MiB, days_ago=len(MEMORY) - n)
        _store(f"l{n}", (mib + 3000) * MiB, days_ago=len(MEMORY) - n, **LONG)
    _store("new", 500 * MiB, days_ago=1, job="new-job")
    db.close()
    return path


def run(runner, *args, columns=200):
    return runner.invoke(cli, ["query", *args], env={"COLUMNS": str(columns)})


def test_yaml_is_a_kubernetes_resources_block_per_container(runner, database):
    result = run(runner, "recommend", *SCOPE, "--db", database, "-o", "yaml")
    assert result.exit_code == 0, result.output
    doc = yaml.safe_load(result.output)
    by_name = {c["name"]: c["resources"] for c in doc["containers"]}
    assert set(by_name) == {"builder", "db"}
    for resources in by_name.values():
        assert set(resources) <= {"requests", "limits"}
        for part in resources.values():
            assert set(part) <= {"cpu", "memory"}
            assert re.fullmatch(r"\d+m", part.get("cpu", "1m"))
            assert re.fullmatch(r"\d+(Mi|Gi)", part["memory"])
    builder = by_name["builder"]
    # Never below the largest peak (960 MiB), and request = limit for memory.
    assert int(builder["limits"]["memory"][:-2]) >= 960
    assert builder["requests"]["memory"] == builder["limits"]["memory"]


def test_quantities():
    assert cpu_quantity(1.5) == "1500m" and cpu_quantity(0.0001) == "1m"
    assert memory_quantity(GiB) == "1Gi" and memory_quantity(1.5 * GiB) == "1536Mi"
    assert memory_quantity(1000 * MiB + 1) == "1001Mi"


def test_json_and_csv_carry_the_figures(runner, database):
    body = json.loads(run(runner, "recommend", *SCOPE, "--db", database, "-o", "json").output)
    assert body["job_recommendation"]["status"] == "ok"
    rows = list(
        csv.DictReader(
            io.StringIO(run(runner, "recommend", *SCOPE, "--db", database, "-o", "csv").output)
        )
    )
    assert [r["subject"] for r in rows] == ["job", "builder", "db"]
    assert rows[1]["current_memory_limit_bytes"] == str(GiB)
    assert float(rows[0]["resmon_memory_fit_rate"]) >= 0.9
    fleet = run(runner, "recommend", "--all", "--db", database, "-o", "csv").output
    assert len(list(csv.DictReader(io.StringIO(fleet)))) == 3


def _lines_fit(text: str, width: int) -> None:
    for line in text.splitlines():
        assert cell_len(line) <= width, line


@pytest.mark.parametrize("columns", [80, 200])
def test_tables_fit_80_and_200_columns(runner, database, columns):
    one = run(runner, "recommend", *LONG.values(), "--db", database, columns=columns)
    assert one.exit_code == 0, one.output
    _lines_fit(one.output, columns)
    assert "Backtest" in one.output and "CI Sizer" in one.output and "VPA" in one.output
    assert "builder" in one.output
    fleet = run(runner, "recommend", "--all", "--by", "risk", "--db", database, columns=columns)
    assert fleet.exit_code == 0, fleet.output
    _lines_fit(fleet.output, columns)
    assert "3 jobs by risk" in fleet.output
    if columns == 200:
        assert "integration tests (postgres-16, ubuntu-24.04)" in fleet.output


def test_a_job_with_too_few_runs_says_how_many_more(runner, database):
    result = run(runner, "recommend", "acme", "widgets", "ci.yml", "new-job", "--db", database)
    assert result.exit_code == 0, result.output
    assert "2 more needed" in result.output
    doc = yaml.safe_load(
        run(
            runner,
            "recommend",
            "acme",
            "widgets",
            "ci.yml",
            "new-job",
            "--db",
            database,
            "-o",
            "yaml",
        ).output
    )
    assert doc["containers"] == []


@pytest.mark.parametrize(
    "args",
    [
        ["recommend"],
        ["recommend", "acme", "widgets"],
        ["recommend", "--all", "acme", "widgets", "ci.yml", "build"],
        ["recommend", "--all", "-o", "yaml"],
        ["recommend", "--all", "--since", "1d", "--until", "2d"],
        ["regressions", "--since", "forever"],
    ],
)
def test_usage_errors(runner, database, args):
    result = run(runner, *args, "--db", database)
    assert result.exit_code == 2, result.output
    assert "Traceback" not in result.output


def test_an_unknown_job_suggests_close_names(runner, database):
    result = run(runner, "recommend", "acme", "widgets", "ci.yml", "biuld", "--db", database)
    assert result.exit_code == 1
    assert "closest matches" in result.output


def test_regressions_on_a_real_server(runner, tmp_path):
    with ServerProcess(tmp_path / "m.db") as server:
        start = datetime.now(UTC) - timedelta(hours=2)
        for n, mib in enumerate(MEMORY[:8]):
            body = push_body(
                f"r{n}", run_summary(start=start + timedelta(minutes=n), builder_mem=mib * MiB)
            )
            assert server.push(body).status_code == 201
        heavy = push_body(
            "heavy", run_summary(start=start + timedelta(minutes=30), builder_mem=2 * GiB)
        )
        answer = server.push(heavy).json()
        assert answer["comparison"]["regressions"] == 2
        env = {"RESMON_SERVER": server.url, "RESMON_READ_TOKEN": server.read_token, "COLUMNS": "80"}
        table = runner.invoke(cli, ["query", "regressions"], env=env)
        assert table.exit_code == 0, table.output
        _lines_fit(table.output, 80)
        assert "1 runs flagged" in table.output and "memory peak" in table.output
        rows = list(
            csv.DictReader(
                io.StringIO(
                    runner.invoke(cli, ["query", "regressions", "-o", "csv"], env=env).output
                )
            )
        )
        assert {(r["container"], r["metric"]) for r in rows} == {
            ("", "memory_bytes_peak"),
            ("builder", "memory_bytes_peak"),
        }
        rec = runner.invoke(
            cli,
            ["query", "recommend", "acme", "acme/widgets", "ci.yml", "build", "-o", "yaml"],
            env=env,
        )
        assert rec.exit_code == 0, rec.output
        assert yaml.safe_load(rec.output)["containers"]
    assert server.returncode == 0, server.stderr_text()[-2000:]
    assert "Traceback" not in server.stderr_text()


def test_render_an_empty_fleet_and_no_regressions():
    out = io.StringIO()
    console = render.make_console(file=out, width=80)
    render.render("fleet", {"jobs": [], "by": "free"}, "table", console)
    render.render("regressions", {"runs": []}, "table", console)
    assert "nothing to recommend" in out.getvalue() and "No runs flagged" in out.getvalue()


def test_all_job_histories_names_every_job(database):
    db = dbmod.open_database(database)
    try:
        names = [name for name, _ in advice.all_job_histories()]
    finally:
        db.close()
    assert len(names) == 3
