"""The push's answer: the server's comparison with the job's baseline, in the Markdown
and the log, and the baseline budgets checked against it, with a real receiver."""

from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path

import orjson
import pytest
from collect_receiver import Receiver, closed_port_url

from resmon.collect.budgets import BUDGET_EXIT_CODE, check_baseline, describe, parse_budget
from resmon.collect.comparison import (
    comparison_lines,
    markdown_section,
    parse_comparison,
)

GiB = 1024**3
CI_ENV = {
    "GITHUB_REPOSITORY_OWNER": "acme",
    "GITHUB_REPOSITORY": "acme/widgets",
    "GITHUB_WORKFLOW": "ci.yml",
    "GITHUB_JOB": "build",
    "GITHUB_RUN_ID": "77",
}


def figure(name, value, median, change, regression, scope="job", container=None):
    return {
        "scope": scope,
        "container": container,
        "figure": name,
        "value": value,
        "median": median,
        "mad": median / 20,
        "change_percent": change,
        "regression": regression,
    }


def answer(*figures, runs=20) -> dict:
    return {
        "id": 1,
        "status": "created",
        "comparison": {
            "baseline_runs": runs,
            "window_days": 30,
            "figures": list(figures),
            "regressions": sum(f["regression"] for f in figures),
        },
    }


# --- reading the answer ---------------------------------------------------------------


def test_the_comparison_is_read_from_the_answer():
    got = parse_comparison(
        answer(
            figure("memory_peak_bytes", 2.1 * GiB, 1.4 * GiB, 48.0, True),
            figure("cpu_seconds", 100.0, 98.0, 2.0, False),
            figure("memory_peak_bytes", 3e8, 1e8, 200.0, True, "container", "db"),
        )
    )
    assert got is not None
    assert (got.baseline_runs, got.window_days, got.regressions) == (20, 30.0, 2)
    job_memory = got.job_figure("memory_peak_bytes")
    assert job_memory is not None and job_memory.median == 1.4 * GiB and job_memory.regression
    assert [f.container for f in got.flagged] == [None, "db"]
    assert comparison_lines(got) == [
        "memory peak 2.1 GiB, +48 % over the median of the last 20 runs (1.4 GiB)",
        "container db: memory peak 286.1 MiB, +200 % over the median of the last 20 runs "
        "(95.4 MiB)",
    ]


@pytest.mark.parametrize(
    "response",
    [
        None,
        "created",
        [],
        {"id": 1, "status": "created"},
        {"id": 1, "status": "created", "comparison": None},
        {"id": 1, "comparison": "yes"},
    ],
)
def test_an_answer_without_a_comparison_gives_none(response):
    assert parse_comparison(response) is None


def test_a_malformed_figure_is_left_out_and_odd_numbers_read_as_unknown():
    got = parse_comparison(
        {
            "comparison": {
                "baseline_runs": True,
                "figures": [
                    "memory",
                    {"scope": "job"},
                    {"scope": "pod", "figure": "cpu_seconds"},
                    {"scope": "container", "figure": "cpu_seconds"},
                    {"scope": "job", "figure": "cpu_seconds", "median": "lots", "regression": 1},
                    {"figure": "duration_seconds", "value": 10, "median": 5, "regression": True},
                ],
            }
        }
    )
    assert got is not None and got.baseline_runs is None
    assert [(f.figure, f.median, f.regression) for f in got.figures] == [
        ("cpu_seconds", None, False),
        ("duration_seconds", 5.0, True),
    ]
    assert got.regressions == 1
    # No change_percent: worked out from value and median.
    assert comparison_lines(got) == [
        "duration 10s, +100 % over the median of the job's earlier runs (5s)"
    ]


def test_the_analysis_modules_spelling_reads_the_same():
    """``metric`` for ``figure``, the stat-first names, ``change`` as a fraction, the
    scope implied by ``container`` and the runs counted per figure."""
    got = parse_comparison(
        {
            "id": 3,
            "comparison": {
                "regressions": 1,
                "figures": [
                    {
                        "container": None,
                        "metric": "memory_bytes_peak",
                        "value": 2.1 * GiB,
                        "median": 1.4 * GiB,
                        "mad": 1e8,
                        "baseline_runs": 20,
                        "change": 0.48,
                        "regression": True,
                    },
                    {"container": "db", "metric": "cpu_cores_p95", "value": 1.0, "median": 0.9},
                ],
            },
        }
    )
    assert got is not None and got.baseline_runs == 20
    memory = got.job_figure("memory_peak_bytes")
    assert memory is not None and memory.change_percent == pytest.approx(48.0)
    assert [(f.scope, f.container, f.figure) for f in got.figures] == [
        ("job", None, "memory_peak_bytes"),
        ("container", "db", "cpu_p95_cores"),
    ]
    assert comparison_lines(got) == [
        "memory peak 2.1 GiB, +48 % over the median of the last 20 runs (1.4 GiB)"
    ]


def test_no_regression_is_one_line_and_no_baseline_yet_another():
    steady = parse_comparison(answer(figure("cpu_seconds", 100.0, 98.0, 2.0, False)))
    assert steady is not None and comparison_lines(steady) == ["no change against the last 20 runs"]
    first = parse_comparison(answer(runs=0))
    assert first is not None
    assert comparison_lines(first) == ["no baseline to compare with yet (0 earlier runs)"]
    assert markdown_section(steady, []) == (
        "#### Against the job's baseline\n\n- no change against the last 20 runs\n\n"
    )


def test_a_baseline_budget_against_the_comparison():
    comparison = parse_comparison(
        answer(figure("memory_peak_bytes", 2.1 * GiB, 1.4 * GiB, 48.0, True))
    )
    summary = {"job": {"memory_peak": {"headline": int(2.1 * GiB)}}, "duration_seconds": 60}
    result = check_baseline(parse_budget("memory<=baseline+25%"), summary, comparison, "")
    assert (result["status"], result["limit"]) == ("exceeded", round(1.4 * GiB * 1.25))
    assert describe(result) == (
        "budget memory<=baseline+25% exceeded: memory peak 2.1 GiB against 1.8 GiB "
        "(the median of the last 20 runs, 1.4 GiB, + 25 %)"
    )
    missing = check_baseline(parse_budget("duration<=baseline+20%"), summary, comparison, "")
    assert missing["status"] == "not_checked"
    assert missing["reason"] == "no baseline for the job's duration_seconds (20 earlier runs)"
    none = check_baseline(parse_budget("duration<=baseline"), summary, None, "no push")
    assert none["reason"] == "no baseline: no push"


# --- real runs with a real receiver ------------------------------------------------------


def collect(tmp_path: Path, endpoint: str, *args: str, env: dict | None = None):
    markdown = tmp_path / "summary.md"
    summary_file = tmp_path / "summary.json"
    proc = subprocess.run(
        [
            sys.executable,
            "-m",
            "resmon",
            "collect",
            "--interval=0.1s",
            "--log-format=text",
            f"--push-endpoint={endpoint}",
            "--push-timeout=5s",
            f"--spool-dir={tmp_path / 'spool'}",
            f"--output={tmp_path / 'records.log'}",
            f"--markdown-file={markdown}",
            f"--summary-file={summary_file}",
            *args,
        ],
        capture_output=True,
        timeout=60,
        env={**os.environ, **CI_ENV, **(env or {})},
    )
    text = markdown.read_text() if markdown.exists() else ""
    return proc, orjson.loads(summary_file.read_bytes()), text


def scripted(receiver: Receiver, body: dict) -> None:
    receiver.script.append((201, orjson.dumps(body), {}))


@pytest.mark.slow
def test_a_regression_is_appended_to_the_markdown_and_logged_and_fails_a_baseline_budget(
    tmp_path, receiver
):
    scripted(
        receiver,
        answer(
            # A memory peak far over a tiny median; a duration well within its baseline.
            figure("memory_peak_bytes", 2.1 * GiB, 1000.0, 48.0, True),
            figure("duration_seconds", 0.4, 1000.0, -99.0, False),
        ),
    )
    proc, summary, markdown = collect(
        tmp_path,
        receiver.url,
        "--budget=memory<=baseline+25%",
        "--budget=duration<=baseline+20%",
        "--budget=cpu-seconds<=baseline+30%",
        "--budget=duration<=20m",
        "--budget-action=fail",
        "--",
        "sleep",
        "0.3",
        env={"GITHUB_ACTIONS": "true"},
    )
    stderr = proc.stderr.decode()
    assert proc.returncode == BUDGET_EXIT_CODE, stderr
    [pushed] = receiver.requests
    # Only the static budget is in the summary, on disk and pushed.
    assert [r["expr"] for r in summary["budgets"]] == ["duration<=20m"]
    assert [r["expr"] for r in pushed.json()["run_summary"]["budgets"]] == ["duration<=20m"]
    # The section after the push, after the report written before it.
    report, section = markdown.split("#### Against the job's baseline\n\n")
    assert "**Budgets**" in report and "`duration<=20m` ok" in report
    lines = section.strip().splitlines()
    assert lines[0] == (
        "- ⚠️ memory peak 2.1 GiB, +48 % over the median of the last 20 runs (1000 B)"
    )
    assert lines[1].startswith("- ❌ budget `memory<=baseline+25%` exceeded: memory peak ")
    assert lines[1].endswith("against 1.2 KiB (the median of the last 20 runs, 1000 B, + 25 %)")
    assert lines[2].startswith("- ✅ budget `duration<=baseline+20%` ok: duration ")
    assert lines[3] == (
        "- ➖ budget `cpu-seconds<=baseline+30%` not checked: no baseline for the job's "
        "cpu_seconds (20 earlier runs)"
    )
    assert "regression: memory peak 2.1 GiB, +48 % over the median" in stderr
    assert "exit code 3, the command's was 0" in stderr
    commands = [x for x in proc.stdout.decode().splitlines() if x.startswith("::")]
    assert [c.split(" ")[0] for c in commands] == ["::error", "::notice"]
    assert "budget memory<=baseline+25%25 exceeded" in commands[0]


@pytest.mark.slow
def test_no_change_is_one_line(tmp_path, receiver):
    scripted(receiver, answer(figure("cpu_seconds", 0.01, 0.01, 0.0, False), runs=7))
    proc, _, markdown = collect(tmp_path, receiver.url, "--", "sleep", "0.2")
    assert proc.returncode == 0, proc.stderr.decode()
    assert markdown.endswith(
        "#### Against the job's baseline\n\n- no change against the last 7 runs\n\n"
    )
    assert b"against the job's baseline: no change against the last 7 runs" in proc.stderr


@pytest.mark.slow
def test_an_answer_without_the_field_changes_nothing(tmp_path, receiver):
    proc, _, markdown = collect(tmp_path, receiver.url, "--budget-action=fail", "--", "true")
    assert proc.returncode == 0, proc.stderr.decode()
    assert len(receiver.requests) == 1
    assert "baseline" not in markdown
    assert b"baseline" not in proc.stderr and b"budget" not in proc.stderr


@pytest.mark.slow
def test_a_baseline_budget_without_a_comparison_is_not_checked(tmp_path, receiver):
    proc, _, markdown = collect(
        tmp_path,
        receiver.url,
        "--budget=memory<=baseline+25%",
        "--budget-action=fail",
        "--",
        "true",
    )
    assert proc.returncode == 0, proc.stderr.decode()
    assert (
        "- ➖ budget `memory<=baseline+25%` not checked: no baseline: the server's answer "
        "has no comparison" in markdown
    )


@pytest.mark.slow
def test_a_push_not_answered_leaves_the_baseline_budget_not_checked(tmp_path):
    proc, summary, markdown = collect(
        tmp_path,
        closed_port_url(),
        "--push-timeout=0.3s",
        "--budget=duration<=baseline+20%",
        "--budget-action=fail",
        "--",
        "true",
    )
    assert proc.returncode == 0, proc.stderr.decode()
    assert summary["command"]["exit_code"] == 0  # on disk before the push
    assert "not checked: no baseline: the push was not answered in time" in markdown
    assert list((tmp_path / "spool").glob("*.json"))  # the run waits in the spool


@pytest.mark.slow
def test_a_failing_command_wins_over_an_exceeded_baseline_budget(tmp_path, receiver):
    scripted(receiver, answer(figure("duration_seconds", 5.0, 0.001, 500.0, True)))
    proc, _, markdown = collect(
        tmp_path,
        receiver.url,
        "--budget=duration<=baseline+20%",
        "--budget-action=fail",
        "--",
        "sh",
        "-c",
        "sleep 0.2; exit 4",
    )
    assert proc.returncode == 4, proc.stderr.decode()
    assert "- ❌ budget `duration<=baseline+20%` exceeded" in markdown
