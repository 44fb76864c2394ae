"""`resmon query live`: the table of running jobs, from a database file (--db) and as
JSON; the refreshing view redrawn a given number of times."""

from __future__ import annotations

import io
import json
import sys
from datetime import UTC, datetime, timedelta
from pathlib import Path

from rich.console import Console

sys.path.insert(0, str(Path(__file__).resolve().parents[1] / "server"))
from live_helpers import EXECUTION, batch_body, new_run_key, sample  # noqa: E402

from resmon.cli import cli  # noqa: E402
from resmon.query.live_table import live_view, watch  # noqa: E402
from resmon.schema import validate_push  # noqa: E402
from resmon.store import db as dbmod  # noqa: E402
from resmon.store import live  # noqa: E402


def _seed(path: Path) -> int:
    database = dbmod.open_database(str(path))
    dbmod.migrate(database)
    execution = validate_push({"execution": EXECUTION, "run_summary": {}}).execution
    now = datetime.now(UTC)
    samples = [sample(i, start=now - timedelta(seconds=20)) for i in range(5)]
    body = batch_body(new_run_key(), 0, samples)
    result = live.store_batch(execution, body["run"], 0, samples, now=now)
    database.close()
    return result.run


def test_once_from_a_database_file(runner, tmp_path):
    path = tmp_path / "m.db"
    run_pk = _seed(path)
    result = runner.invoke(
        cli, ["query", "live", "--once", "--db", str(path)], env={"COLUMNS": "140"}
    )
    assert result.exit_code == 0, result.output
    assert "1 running" in result.output
    assert "my-org/my-repo ci.yml build" in result.output
    assert "runner-1" in result.output and str(run_pk) in result.output
    assert "1.00" in result.output  # the job's cores
    as_json = runner.invoke(cli, ["query", "live", "-o", "json", "--db", str(path)])
    assert as_json.exit_code == 0, as_json.output
    body = json.loads(as_json.output)
    assert [r["id"] for r in body["runs"]] == [run_pk]
    assert body["hosts"][0]["host"] == "runner-1"
    other = runner.invoke(cli, ["query", "live", "--once", "--job", "other", "--db", str(path)])
    assert "no running jobs" in other.output


def test_the_view_fits_80_columns_and_redraws(tmp_path):
    body = {
        "runs": [
            {
                "id": 7,
                "repository": "my-org/" + "r" * 60,
                "workflow": "ci.yml",
                "job": "build",
                "run_id": "1",
                "run_attempt": "1",
                "host": "runner-1",
                "start_time": "2026-11-30T09:00:00Z",
                "last_batch_at": "2026-11-30T09:00:10Z",
                "snapshot": {"job": {"cpu_cores": 1.5, "memory_bytes": 2**30}, "containers": {}},
            }
        ],
        "hosts": [{"host": "runner-1", "cpu_percent": 40.0, "runs": 1}],
    }
    out = io.StringIO()
    console = Console(file=out, width=80)
    console.print(live_view(body, 80, now=datetime(2026, 11, 30, 9, 1, tzinfo=UTC)))
    text = out.getvalue()
    assert all(len(line) <= 80 for line in text.splitlines()), text
    assert "1.50" in text and "1.00 GiB" in text and "40%" in text
    calls = []
    watch(
        lambda: calls.append(1) or body,
        Console(file=io.StringIO(), width=100),
        1.0,
        rounds=3,
        sleep=lambda s: None,
    )
    assert len(calls) == 3


def test_a_server_that_cannot_be_reached_is_one_line(runner):
    result = runner.invoke(
        cli, ["query", "live", "--once", "--server", "http://127.0.0.1:9", "--read-token", "x"]
    )
    assert result.exit_code == 1
    assert "cannot reach a resmon server" in result.output and "Traceback" not in result.output
