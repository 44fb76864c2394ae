"""The runs table's Branch column, and query show's context lines and step table."""

from __future__ import annotations

from io import StringIO

from rich.console import Console

from resmon.query.step_tables import context_lines, steps_table
from resmon.query.tables import runs_table


def _text(renderable, width=120) -> str:
    out = StringIO()
    Console(file=out, width=width).print(renderable)
    return out.getvalue()


def _body(**extra):
    runs = [
        {"id": 1, "run_id": "5", "received_at": "2026-11-30T10:00:00Z", "branch": "feature/x"},
        {"id": 2, "run_id": "6", "received_at": "2026-11-30T10:00:00Z", "branch": None},
    ]
    return {
        "organization": "o",
        "repository": "o/r",
        "workflow": "w",
        "job": "j",
        "runs": runs,
        **extra,
    }


def test_runs_show_their_branch_unless_the_list_is_of_one():
    assert "feature/x" in _text(runs_table(_body()))
    assert "Branch" not in _text(runs_table(_body(branch="feature/x")))
    plain = _body()
    for run in plain["runs"]:
        run["branch"] = None
    assert "Branch" not in _text(runs_table(plain))


def test_context_lines():
    run = {
        "branch": "main",
        "commit_sha": "0123456789abcdef",
        "event_name": "push",
        "runner_name": "r1",
        "runner_labels": "linux,x64",
        "pod_name": "p",
        "pod_namespace": "ci",
        "node_name": "n1",
    }
    assert context_lines(run) == [
        ("Branch", "main @ 0123456789ab (push)"),
        ("Runner", "r1 [linux,x64]"),
        ("Pod", "ci/p on node n1"),
    ]
    assert context_lines({"commit_sha": "abc"}) == [("Branch", "abc")]
    assert context_lines({"node_name": "n"}) == [("Pod", "– on node n")]
    assert context_lines({}) == []


def test_step_table_places_steps_on_the_run_timeline():
    steps = [
        {
            "name": "build",
            "start_time": "2026-01-02T03:00:00Z",
            "duration_seconds": 60,
            "cpu_seconds": 30.0,
            "memory_bytes_peak": 1048576,
        },
        {
            "name": "test",
            "start_time": "2026-01-02T03:01:05Z",
            "duration_seconds": 60,
            "cpu_seconds": 10.0,
            "memory_bytes_peak": None,
        },
    ]
    text = _text(steps_table(steps))
    assert "build" in text and "+0s" in text
    assert "+1m 05s" in text
    assert "75 %" in text and "25 %" in text
    assert "Disk" not in text
