"""Run states in `resmon query`'s tables, at 80 and 200 columns: a `live` / `lost` tag
beside a run's id, the `State` line of `show`, lost runs counted in trends, top and
the fleet, the shift test in `regressions`; and end to end on a database file."""

from __future__ import annotations

import csv
import io
import re
from datetime import UTC, datetime, timedelta

import pytest
from query_data import MiB, push_body, run_summary
from rich.cells import cell_len
from rich.console import Console

from resmon.cli import cli
from resmon.query import render
from resmon.schema import format_time, validate_push
from resmon.store import baseline, live
from resmon.store import db as dbmod
from resmon.store.write import store_push

NOW = datetime(2026, 11, 20, 12, 0, tzinfo=UTC)
SCOPE = {
    "organization": "platform-engineering",
    "repository": "platform-engineering/integration-test-harness",
    "workflow": "Nightly Integration / Postgres",
    "job": "integration tests (postgres-16, ubuntu-24.04)",
}
FIGURES = {
    "duration_seconds": 627.4,
    "sample_count": 1254,
    "cpu_percent_p95": 81.0,
    "cpu_percent_peak": 97.5,
    "mem_bytes_p95": 3 * 1024**3,
    "mem_bytes_peak": 4 * 1024**3,
    "job_scope": "command",
    "job_cpu_cores_p95": 11.25,
    "job_cpu_cores_peak": 15.75,
    "job_cpu_seconds": 12345.6,
    "job_memory_bytes_p95": 900 * MiB,
    "job_memory_bytes_peak": 1000 * MiB,
    "job_memory_kind": "cgroup",
}


def row(i: int, state: str, **extra) -> dict:
    figures = {} if state == "running" else FIGURES
    return {
        **SCOPE,
        "id": 1234560 + i,
        "run_id": str(9000049 + i),
        "run_attempt": "1",
        "received_at": f"2026-11-{10 + i:02d}T10:00:00Z",
        "start_time": f"2026-11-{10 + i:02d}T09:49:33Z",
        "end_time": None if state == "running" else f"2026-11-{10 + i:02d}T10:00:00Z",
        **figures,
        "state": state,
        "partial": state == "lost",
        "host": "runner-with-a-rather-long-name-07",
        "command_container": "unit-tests-with-coverage-and-junit-report",
        "command_name": "make",
        **extra,
    }


RUNS = {
    **SCOPE,
    "limit": 20,
    "truncated": False,
    "runs": [row(3, "running"), row(2, "lost"), row(1, "finished"), row(0, "finished")],
}


def text(kind: str, body: dict, width: int, output: str = "table") -> str:
    out = io.StringIO()
    render.render(kind, body, output, Console(file=out, width=width, highlight=False), now=NOW)
    return out.getvalue()


def fits(rendered: str, width: int) -> list[str]:
    lines = rendered.splitlines()
    assert max(cell_len(line) for line in lines) <= width, rendered
    # rich never had to cut a cell at its end: only the middle of a name goes.
    assert not [line for line in lines if re.search(r"…(\s|$)", line)], rendered
    return lines


@pytest.mark.parametrize("width", [80, 200])
def test_runs_tag_live_and_lost_beside_the_id(width):
    lines = fits(text("runs", RUNS, width), width)
    tagged = {
        m.group(1): m.group(2)
        for line in lines
        for m in re.finditer(r"(\d{7}) (live|lost)\b", line)
    }
    assert tagged == {"1234563": "live", "1234562": "lost"}
    for plain in ("1234561", "1234560"):
        (line,) = [line for line in lines if plain in line]
        assert not re.search(r"\b(live|lost)\b", line)
    assert any(line.startswith("live: still running") for line in lines)
    if width == 200:
        assert "not shown at" not in "\n".join(lines)


def test_runs_csv_and_json_carry_state_partial_and_host():
    rows = list(csv.DictReader(io.StringIO(text("runs", RUNS, 200, "csv"))))
    assert [(r["state"], r["partial"], r["host"]) for r in rows][:2] == [
        ("running", "False", "runner-with-a-rather-long-name-07"),
        ("lost", "True", "runner-with-a-rather-long-name-07"),
    ]
    assert '"state": "running"' in text("runs", RUNS, 200, "json")


@pytest.mark.parametrize("width", [80, 200])
def test_show_has_a_state_line(width):
    running = {**row(3, "running"), "last_batch_at": "2026-11-20T11:59:40Z", "containers": []}
    running["payload"] = {"start_time": running["start_time"], "state": "running"}
    lines = fits(text("run", running, width), width)
    assert any(
        re.match(r"State\s+running \(live\), last batch 20s ago\s*$", line) for line in lines
    )
    assert any(re.match(r"Host\s+runner-with-a-rather-long-name-07\s*$", line) for line in lines)
    assert "No figures until it finishes" in "\n".join(lines)

    lost = {**row(2, "lost"), "last_batch_at": "2026-11-12T10:00:02Z", "containers": []}
    lost["payload"] = {}
    lines = fits(text("run", lost, width), width)
    shown = " ".join(" ".join(lines).split())
    assert "lost: partial summary from its streamed samples up to 2026-11-12 10:00:00 UTC" in shown
    assert any(re.match(r"State\s+lost: partial summary", line) for line in lines)

    finished = {**row(1, "finished"), "containers": [], "payload": {}}
    assert any(
        re.match(r"State\s+finished\s*$", line) for line in text("run", finished, 80).splitlines()
    )
    old = {k: v for k, v in finished.items() if k not in ("state", "partial", "host")}
    assert "State" not in text("run", old, 80)  # a server before live runs


@pytest.mark.parametrize("width", [80, 200])
def test_jobs_trend_top_and_fleet_mark_lost_runs(width):
    jobs = {
        "jobs": [
            {
                **SCOPE,
                "run_count": 12,
                "last_id": 1234563,
                "last_received_at": "2026-11-20T11:58:00Z",
                "last_state": "running",
                "last_partial": False,
            }
        ]
    }
    shown = "\n".join(fits(text("jobs", jobs, width), width))
    if width == 200:
        assert re.search(r"2m ago live", shown)
    trend = {
        **SCOPE,
        "container": None,
        "by": "run",
        "points": [row(0, "finished"), row(2, "lost")],
    }
    lines = fits(text("trend", trend, width), width)
    assert any(re.search(r"1234562 lost\b", line) for line in lines)
    days = {
        **SCOPE,
        "container": None,
        "by": "day",
        "points": [
            {"day": "2026-11-19", "runs": 3, "partial_runs": 0, **FIGURES},
            {"day": "2026-11-20", "runs": 5, "partial_runs": 1, **FIGURES},
        ],
    }
    shown = "\n".join(fits(text("trend", days, width), width))
    assert "5 (1 lost)" in shown and "3 (" not in shown
    top = {
        "metric": "cpu",
        "scope": "job",
        "since": "2026-11-13T12:00:00Z",
        "jobs": [{**SCOPE, "runs": 9, "partial_runs": 2, "job_cpu_seconds_total": 99.0}],
    }
    shown = "\n".join(fits(text("top", top, width), width))
    if width == 200:
        assert "9 (2 lost)" in shown


REGRESSIONS = {
    "runs": [
        {
            **SCOPE,
            "id": 77,
            "run_id": "9000049",
            "received_at": "2026-11-20T11:00:00Z",
            "regressions": [
                {
                    "container": None,
                    "metric": "memory_bytes_peak",
                    "value": 2 * 1024**3,
                    "median": 1024**3,
                    "mad": 1.0,
                    "change": 1.0,
                    "baseline_runs": 20,
                    "test": "shift",
                    "runs": 3,
                },
                {
                    "container": None,
                    "metric": "cpu_seconds",
                    "value": 30.0,
                    "median": 10.0,
                    "mad": 1.0,
                    "change": 2.0,
                    "baseline_runs": 20,
                    "test": "single",
                    "runs": 1,
                },
            ],
        }
    ]
}


@pytest.mark.parametrize("width", [80, 200])
def test_regressions_say_shift_over_n_runs(width):
    shown = "\n".join(fits(text("regressions", REGRESSIONS, width), width))
    short = {"runs": [{**REGRESSIONS["runs"][0], "repository": "acme/widgets", "job": "b"}]}
    shown = "\n".join(fits(text("regressions", short, width), width))
    if width == 200:
        assert "memory peak +100% (2.00 GiB vs 1.00 GiB, shift over 3 runs)" in shown
        assert "CPU time +200% (30 vs 10)" in shown
    rows = list(csv.DictReader(io.StringIO(text("regressions", REGRESSIONS, 200, "csv"))))
    assert [(r["test"], r["runs"]) for r in rows] == [("shift", "3"), ("single", "1")]


# --- end to end, on a database file ----------------------------------------------


def _sample(start: datetime, i: int) -> dict:
    return {
        "t": format_time(start + timedelta(seconds=2 * i)),
        "elapsed": None if i == 0 else 2.0,
        "host": {"cpu_percent": 40.0, "mem_used_bytes": 10**9, "mem_total_bytes": 4 * 10**9},
        "job": {
            "cpu_cores": None if i == 0 else 1.0,
            "memory_bytes": 500 * MiB,
            "cpu_seconds": 2 * i,
        },
        "containers": {},
    }


def _stream(run_id: str, at: datetime) -> int:
    execution = {
        "organization": "acme",
        "repository": "acme/widgets",
        "workflow": "ci.yml",
        "job": "build",
        "run_id": run_id,
        "run_attempt": "",
    }
    run = {
        "run_key": f"k-{run_id}",
        "start_time": format_time(at),
        "host": "runner-3",
        "live_interval_seconds": 15,
    }
    return live.store_batch(execution, run, 0, [_sample(at, i) for i in range(4)], now=at).run


def test_runs_show_and_regressions_from_a_database_file(runner, tmp_path):
    path = str(tmp_path / "m.db")
    db = dbmod.open_database(path)
    dbmod.migrate(db)
    now = datetime.now(UTC)
    ids = []
    for n in range(6):
        at = now - timedelta(days=6 - n)
        summary = run_summary(
            start=at - timedelta(minutes=5), builder_mem=(900 + 400 * (n == 5)) * MiB
        )
        ids.append(store_push(validate_push(push_body(f"r{n}", summary)), received_at=at).id)
    lost = _stream("lost", now - timedelta(hours=3))
    assert live.mark_lost(120, now=now - timedelta(hours=2)) == [lost]
    running = _stream("live", now - timedelta(seconds=30))
    comparison = baseline.compare_stored_run(ids[-1], baseline.BaselineOptions())
    figures = [
        dict(f, test="shift", runs=3) if f["regression"] else f for f in comparison["figures"]
    ]
    assert baseline.save_flags(ids[-1], dict(comparison, figures=figures)) >= 1
    db.close()
    env = {"COLUMNS": "80"}
    result = runner.invoke(
        cli, ["query", "runs", "acme", "widgets", "ci.yml", "build", "--db", path], env=env
    )
    assert result.exit_code == 0, result.output
    assert re.search(rf"\b{running} live\b", result.output) and re.search(
        rf"\b{lost} lost\b", result.output
    )
    assert max(cell_len(line) for line in result.output.splitlines()) <= 80
    result = runner.invoke(cli, ["query", "show", str(running), "--db", path], env=env)
    assert result.exit_code == 0, result.output
    assert re.search(r"State\s+running \(live\)", result.output)
    result = runner.invoke(cli, ["query", "show", str(lost), "--db", path], env=env)
    assert "lost: partial summary from its streamed samples" in result.output
    result = runner.invoke(cli, ["query", "regressions", "--db", path], env={"COLUMNS": "200"})
    assert result.exit_code == 0, result.output
    assert "shift over 3 runs" in result.output
