"""``resmon query alerts``: rules and states from a database file or a server, as a
table at 80 and 200 columns (one line per row, nothing cut that matters), JSON and CSV."""

from __future__ import annotations

import csv
import io
import json

import pytest
from alert_helpers import run_payload
from server_proc import ServerProcess

from resmon.cli import cli
from resmon.schema import validate_push
from resmon.store import alert_eval, alerts, events
from resmon.store import db as dbmod
from resmon.store.write import store_push


@pytest.fixture
def alert_db(tmp_path):
    """A database with two rules, one alerting state and one normal."""
    path = tmp_path / "m.db"
    db = dbmod.open_database(str(path))
    dbmod.migrate(db)
    alerts.create_rule({"name": "memory near the limit", "mem_threshold": "90%", "consecutive": 2})
    alerts.create_rule(
        {
            "name": "a rule with a rather long name for narrow terminals",
            "container": "*",
            "cpu_threshold": "1.5 cores",
            "repository": "my-org/a-repository-with-a-long-name-*",
        }
    )
    alert_eval.start_cursor()
    long_repo = "my-org/a-repository-with-a-long-name-for-the-table"
    for i, (share, repo) in enumerate([(0.95, None), (0.95, None), (0.5, long_repo)], 1):
        scope = {"repository": repo} if repo else {}
        store_push(validate_push(run_payload(str(i), share, **scope)))
    alert_eval.step(lambda cursor: events.events_after(cursor, 100))
    db.close()
    return str(path)


def invoke(runner, args, width=None):
    env = {"COLUMNS": str(width)} if width else {}
    result = runner.invoke(cli, ["query", "alerts", *args], env=env)
    assert result.exit_code == 0, result.output
    return result.output


@pytest.mark.parametrize("width", [80, 200])
def test_table_fits_the_width_one_line_per_row(runner, alert_db, width):
    out = invoke(runner, ["--db", alert_db], width)
    lines = out.splitlines()
    assert all(len(line) <= width for line in lines), out
    assert "1 alerting of 3 state(s)" in out
    assert sum("mem_alert" in line for line in lines) == 1
    assert sum("normal" in line for line in lines) == 2
    assert out.index("mem_alert") < out.index("normal")
    assert "1.90 / 2.00 GiB" in out
    assert "2 rule(s)" in out and "90%" in out and "1.5 cores" in out
    if width == 200:
        assert "a rule with a rather long name for narrow terminals" in out


def test_json_and_csv(runner, alert_db):
    body = json.loads(invoke(runner, ["--db", alert_db, "-o", "json"]))
    assert sorted(s["state"] for s in body["states"]) == ["mem_alert", "normal", "normal"]
    assert len(body["rules"]) == 2
    alerting = json.loads(invoke(runner, ["--db", alert_db, "-o", "json", "--alerting"]))
    assert [s["state"] for s in alerting["states"]] == ["mem_alert"]
    rows = list(csv.DictReader(io.StringIO(invoke(runner, ["--db", alert_db, "-o", "csv"]))))
    row = next(r for r in rows if r["state"] == "mem_alert")
    assert row["mem_limit_bytes"] == str(2**31) and row["container"] == ""
    assert row["mem_value_bytes"] == str(int(0.95 * 2**31))
    rules = list(
        csv.DictReader(io.StringIO(invoke(runner, ["--db", alert_db, "-o", "csv", "--rules"])))
    )
    assert [r["mem_threshold"] for r in rules] == ["90%", ""]


def test_no_rules_says_how_to_add_one(runner, tmp_path):
    path = tmp_path / "empty.db"
    db = dbmod.open_database(str(path))
    dbmod.migrate(db)
    db.close()
    out = invoke(runner, ["--db", str(path)], 100)
    assert "no alert rules: give serve --alert-rules FILE" in out


@pytest.mark.slow
def test_from_a_server(runner, alert_db):
    with ServerProcess(alert_db) as server:
        result = runner.invoke(
            cli,
            ["query", "alerts", "--server", server.url, "-o", "json", "--org", "my-org"],
            env={"RESMON_READ_TOKEN": server.read_token},
        )
        assert result.exit_code == 0, result.output
        body = json.loads(result.output)
        assert len(body["rules"]) == 2 and len(body["states"]) == 3
        bad = runner.invoke(
            cli,
            ["query", "alerts", "--server", server.url],
            env={"RESMON_READ_TOKEN": "wrong"},
        )
        assert bad.exit_code == 1 and "rejected the read token" in bad.output
