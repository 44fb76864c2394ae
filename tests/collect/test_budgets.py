"""`resmon collect --budget`: the expressions, the checks, and real wrapper runs with
their exit codes, workflow command lines and Markdown."""

from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path

import orjson
import pytest

from resmon.collect.budgets import (
    ABSOLUTE,
    BASELINE,
    BUDGET_EXIT_CODE,
    OF_LIMIT,
    check,
    describe,
    markdown_lines,
    parse_budget,
    workflow_command,
)
from resmon.collect.run_checks import RunChecks

GiB = 1024**3
RESMON = [sys.executable, "-m", "resmon", "collect", "--interval=0.1s", "--log-format=text"]
# A Python that holds 48 MiB for 0.6 s: a memory peak the samples and the kernel see.
HOLD_48MIB = [sys.executable, "-c", "import time; b = bytearray(48 << 20); time.sleep(0.6)"]
BUSY = "i=0; while [ $i -lt 150000 ]; do i=$((i+1)); done"


# --- the expressions ---------------------------------------------------------------


@pytest.mark.parametrize(
    ("text", "figure", "kind", "amount"),
    [
        ("memory<=90%", "memory", OF_LIMIT, 90.0),
        ("memory <= 2GiB", "memory", ABSOLUTE, 2.0 * GiB),
        ("memory<=512Mi", "memory", ABSOLUTE, 512.0 * 1024**2),
        ("memory<=1G", "memory", ABSOLUTE, 1e9),
        ("memory<=1.5GB", "memory", ABSOLUTE, 1.5e9),
        ("cpu<=1.5", "cpu", ABSOLUTE, 1.5),
        ("cpu<=500m", "cpu", ABSOLUTE, 0.5),
        ("cpu<=80%", "cpu", OF_LIMIT, 80.0),
        ("cpu-seconds<=600", "cpu-seconds", ABSOLUTE, 600.0),
        ("cpu_seconds<=10m", "cpu-seconds", ABSOLUTE, 600.0),
        ("duration<=20m", "duration", ABSOLUTE, 1200.0),
        ("duration<=1h30m", "duration", ABSOLUTE, 5400.0),
        ("memory<=baseline+25%", "memory", BASELINE, 25.0),
        ("cpu-seconds<=baseline+30%", "cpu-seconds", BASELINE, 30.0),
        ("duration<=baseline+20%", "duration", BASELINE, 20.0),
        ("duration<=baseline", "duration", BASELINE, 0.0),
        ("Memory<=90%", "memory", OF_LIMIT, 90.0),
    ],
)
def test_each_form_parses(text, figure, kind, amount):
    budget = parse_budget(text)
    assert (budget.figure, budget.kind) == (figure, kind)
    assert budget.amount == pytest.approx(amount)
    assert budget.expr == "".join(text.split())


@pytest.mark.parametrize(
    ("text", "says"),
    [
        ("memory90%", "expected FIGURE<=LIMIT"),
        ("memory<90%", "expected FIGURE<=LIMIT"),
        ("mem<=1Gi", "unknown figure 'mem'"),
        ("duration<=90%", "only memory and cpu have"),
        ("cpu-seconds<=50%", "only memory and cpu have"),
        ("memory<=90", "with a unit"),
        ("memory<=500m", "millibytes"),
        ("memory<=lots", "invalid memory quantity"),
        ("cpu<=two", "invalid CPU quantity"),
        ("duration<=soon", "invalid duration"),
        ("duration<=0", "more than 0"),
        ("memory<=0%", "more than 0"),
        ("memory<=baseline*2", "baseline+25%"),
        ("memory<=baseline+25", "baseline+25%"),
        ("", "expected FIGURE<=LIMIT"),
    ],
)
def test_a_bad_expression_says_what_is_wrong(text, says):
    with pytest.raises(ValueError, match="budget") as info:
        parse_budget(text)
    assert says in str(info.value)


# --- the checks --------------------------------------------------------------------


def summary(**job) -> dict:
    block = {
        "scope": "command",
        "cpu_cores": {"peak": 1.9, "p95": 1.2},
        "cpu_seconds": 42.0,
        "memory_bytes": {"peak": 1.5 * GiB},
        "memory_peak": {"headline": int(1.8 * GiB)},
        "limit_cpu_cores": None,
        "limit_memory_bytes": 2 * GiB,
    }
    block.update(job)
    return {"duration_seconds": 300.0, "cpu_seconds": 40.0, "job": block}


def test_memory_of_the_limit_uses_the_kernel_peak_headline():
    result = check(parse_budget("memory<=85%"), summary())
    assert result == {
        "expr": "memory<=85%",
        "figure": "memory_peak_bytes",
        "value": int(1.8 * GiB),
        "limit": round(2 * GiB * 0.85),
        "status": "exceeded",
        "reason": None,
    }
    assert check(parse_budget("memory<=95%"), summary())["status"] == "ok"
    assert describe(check(parse_budget("memory<=85%"), summary())) == (
        "budget memory<=85% exceeded: memory peak 1.8 GiB against 1.7 GiB "
        "(85 % of the job's 2.0 GiB limit)"
    )


def test_without_a_limit_a_percentage_is_not_checked_with_the_reason():
    result = check(parse_budget("memory<=90%"), summary(limit_memory_bytes=None))
    assert result["status"] == "not_checked"
    assert result["limit"] is None and result["value"] == int(1.8 * GiB)
    assert "no memory limit is known for the job" in result["reason"]
    cpu = check(parse_budget("cpu<=80%"), summary())
    assert cpu["status"] == "not_checked" and "no CPU limit" in cpu["reason"]
    assert check(parse_budget("cpu<=80%"), summary(limit_cpu_cores=1.0))["status"] == "exceeded"


def test_each_static_figure():
    s = summary()
    assert check(parse_budget("cpu<=1.5"), s)["status"] == "ok"
    assert check(parse_budget("cpu<=1"), s)["value"] == 1.2
    assert check(parse_budget("cpu<=1"), s)["status"] == "exceeded"
    assert check(parse_budget("cpu-seconds<=41"), s)["value"] == 42.0  # the job's, not the run's
    assert check(parse_budget("duration<=5m"), s)["status"] == "ok"  # equal is within
    assert check(parse_budget("duration<=4m"), s)["status"] == "exceeded"
    assert check(parse_budget("memory<=2GiB"), s)["status"] == "ok"


def test_an_older_summary_falls_back_to_the_run_figures_or_says_it_cannot():
    old = {"duration_seconds": 30.0, "cpu_seconds": 40.0}
    assert check(parse_budget("cpu-seconds<=30"), old)["value"] == 40.0
    assert check(parse_budget("duration<=20m"), old)["status"] == "ok"
    memory = check(parse_budget("memory<=1GiB"), old)
    assert memory["status"] == "not_checked"
    assert memory["reason"] == "the run summary has no memory peak for the job"


def test_workflow_commands_are_escaped_and_levelled():
    exceeded = check(parse_budget("memory<=85%"), summary())
    assert workflow_command(exceeded, fail=True) == (
        "::error title=resmon budget exceeded::budget memory<=85%25 exceeded: memory peak "
        "1.8 GiB against 1.7 GiB (85 %25 of the job's 2.0 GiB limit)"
    )
    assert workflow_command(exceeded, fail=False).startswith("::warning title=")
    unchecked = check(parse_budget("cpu<=80%"), summary())
    assert workflow_command(unchecked, fail=True).startswith(
        "::notice title=resmon budget not checked::budget cpu<=80%25 not checked: "
    )
    assert workflow_command(check(parse_budget("cpu<=2"), summary()), fail=True) is None
    hostile = {"expr": "cpu<=1", "status": "not_checked", "reason": "a\nb\r100%"}
    assert workflow_command(hostile, fail=False).endswith("not checked: a%0Ab%0D100%25")


def test_markdown_lines_escape_a_stored_reason_but_keep_the_expression_as_code():
    results = [
        check(parse_budget("memory<=85%"), summary()),
        {"expr": "cpu<=1", "status": "not_checked", "reason": "<b>|x|</b>"},
    ]
    assert markdown_lines(results) == [
        "- ❌ budget `memory<=85%` exceeded: memory peak 1.8 GiB against 1.7 GiB "
        "(85 % of the job's 2.0 GiB limit)",
        "- ➖ budget `cpu<=1` not checked: &lt;b&gt;\\|x\\|&lt;/b&gt;",
    ]


def test_fail_changes_only_a_successful_wrapped_commands_exit_code():
    checks = RunChecks([parse_budget("duration<=1m")], fail=True)
    checks.before_push(summary())
    assert checks.exit_code(0, wrapper=True) == BUDGET_EXIT_CODE
    assert checks.exit_code(1, wrapper=True) == 1
    assert checks.exit_code(0, wrapper=False) == 0  # a sidecar's exit code fails no job
    warn = RunChecks([parse_budget("duration<=1m")], fail=False)
    warn.before_push(summary())
    assert warn.exit_code(0, wrapper=True) == 0


# --- real runs ----------------------------------------------------------------------


def collect(tmp_path: Path, *args: str, env: dict | None = None, timeout: float = 60):
    """``resmon collect ARGS`` as a user runs it: the process, the summary file, the Markdown."""
    summary_file, markdown = tmp_path / "summary.json", tmp_path / "summary.md"
    proc = subprocess.run(
        [
            *RESMON,
            f"--output={tmp_path / 'records.log'}",
            f"--summary-file={summary_file}",
            f"--markdown-file={markdown}",
            *args,
        ],
        capture_output=True,
        timeout=timeout,
        env={**os.environ, **(env or {})},
    )
    got = orjson.loads(summary_file.read_bytes()) if summary_file.exists() else None
    text = markdown.read_text() if markdown.exists() else ""
    return proc, got, text


def by_expr(summary: dict) -> dict[str, dict]:
    return {r["expr"]: r for r in summary["budgets"]}


@pytest.mark.slow
def test_every_static_form_on_a_real_run_fails_the_step_with_exit_3(tmp_path):
    proc, got, markdown = collect(
        tmp_path,
        "--budget=memory<=90%",
        "--budget=memory<=30%",
        "--budget=memory<=2GiB",
        "--budget=memory<=16MiB",
        "--budget=cpu<=1.5",
        "--budget=cpu<=80%",
        "--budget=cpu-seconds<=600",
        "--budget=duration<=20m",
        "--budget=duration<=100ms",
        "--budget-action=fail",
        "--",
        *HOLD_48MIB,
        env={"CGROUP_LIMITS": '{"command": {"memory": "100Mi"}}', "GITHUB_ACTIONS": "true"},
    )
    stderr = proc.stderr.decode()
    assert proc.returncode == BUDGET_EXIT_CODE, stderr
    results = by_expr(got)
    assert {expr: r["status"] for expr, r in results.items()} == {
        "memory<=90%": "ok",
        "memory<=30%": "exceeded",
        "memory<=2GiB": "ok",
        "memory<=16MiB": "exceeded",
        "cpu<=1.5": "ok",
        "cpu<=80%": "not_checked",
        "cpu-seconds<=600": "ok",
        "duration<=20m": "ok",
        "duration<=100ms": "exceeded",
    }
    assert 48 << 20 < results["memory<=2GiB"]["value"] < 100 << 20
    assert results["memory<=90%"]["limit"] == round(0.9 * (100 << 20))
    assert results["duration<=100ms"]["value"] == got["duration_seconds"]
    assert results["cpu-seconds<=600"]["value"] == got["job"]["cpu_seconds"]
    assert "no CPU limit is known" in results["cpu<=80%"]["reason"]
    # The workflow commands: an ::error per exceeded budget, a ::notice for the one not checked.
    commands = [line for line in proc.stdout.decode().splitlines() if line.startswith("::")]
    assert [c.split("::")[1].split(" ")[0] for c in commands] == [
        "error",
        "error",
        "notice",
        "error",
    ]
    assert commands[0].startswith("::error title=resmon budget exceeded::budget memory<=30%25 ")
    assert "exit code 3, the command's was 0" in stderr
    assert "budget memory<=16MiB exceeded: memory peak" in stderr
    assert "Traceback" not in stderr
    assert "**Budgets**" in markdown
    assert "- ❌ budget `memory<=16MiB` exceeded: memory peak " in markdown
    assert "- ➖ budget `cpu<=80%` not checked: no CPU limit is known" in markdown
    assert "- ✅ budget `duration<=20m` ok: duration " in markdown


@pytest.mark.slow
def test_a_failing_commands_exit_code_wins_over_the_budget(tmp_path):
    proc, got, _ = collect(
        tmp_path,
        "--budget=cpu-seconds<=0.01",
        # Not cpu (cores p95): a busy loop of under a second gives it one or two rated
        # samples, and whether they exceed 0.05 depends on the machine's load.
        "--budget=duration<=10ms",
        "--budget-action=fail",
        "--",
        "sh",
        "-c",
        f"{BUSY}; exit 5",
    )
    assert proc.returncode == 5, proc.stderr.decode()
    statuses = {r["expr"]: r["status"] for r in got["budgets"]}
    assert statuses == {"cpu-seconds<=0.01": "exceeded", "duration<=10ms": "exceeded"}
    assert b"::" not in proc.stdout  # not on GitHub or Forgejo: no workflow commands


@pytest.mark.slow
def test_warn_keeps_the_exit_code_and_says_warning_on_forgejo(tmp_path):
    proc, got, _ = collect(
        tmp_path,
        "--budget=duration<=10ms",
        "--",
        "sleep",
        "0.3",
        env={"GITEA_ACTIONS": "true"},
    )
    assert proc.returncode == 0, proc.stderr.decode()
    assert got["budgets"][0]["status"] == "exceeded"
    [line] = [x for x in proc.stdout.decode().splitlines() if x.startswith("::")]
    assert line.startswith("::warning title=resmon budget exceeded::budget duration<=10ms ")


@pytest.mark.slow
def test_a_budget_not_checked_never_fails_the_step(tmp_path):
    proc, got, _ = collect(
        tmp_path, "--budget=memory<=90%", "--budget-action=fail", "--", "sleep", "0.3"
    )
    assert proc.returncode == 0, proc.stderr.decode()
    [result] = got["budgets"]
    assert result["status"] == "not_checked"
    assert result["reason"].startswith("no memory limit is known for the job")
    assert b"budget memory<=90% not checked: no memory limit" in proc.stderr


@pytest.mark.slow
def test_budgets_from_the_environment_one_a_line_or_semicolon_separated(tmp_path):
    proc, got, _ = collect(
        tmp_path,
        "--",
        "sleep",
        "0.3",
        env={
            "RESMON_BUDGET": "duration<=20m\ncpu-seconds <= 600; memory<=1KiB\n",
            "RESMON_BUDGET_ACTION": "fail",
        },
    )
    assert proc.returncode == BUDGET_EXIT_CODE, proc.stderr.decode()
    assert {r["expr"]: r["status"] for r in got["budgets"]} == {
        "duration<=20m": "ok",
        "cpu-seconds<=600": "ok",
        "memory<=1KiB": "exceeded",
    }


@pytest.mark.slow
@pytest.mark.parametrize(
    ("args", "env", "says"),
    [
        (["--budget=memory<=ninety%"], {}, "budget 'memory<=ninety%'"),
        ([], {"RESMON_BUDGET": "duration<=20m;duration<=50%"}, "(from RESMON_BUDGET)"),
        (["--budget-action=explode", "--budget=duration<=1m"], {}, "--budget-action"),
    ],
)
def test_a_bad_budget_is_a_usage_error_before_the_command_starts(tmp_path, args, env, says):
    marker = tmp_path / "started"
    proc, got, _ = collect(tmp_path, *args, "--", "touch", str(marker), env=env)
    assert proc.returncode == 2
    stderr = proc.stderr.decode()
    assert says in stderr and "Traceback" not in stderr
    assert not marker.exists() and got is None


def test_help_documents_the_budget_exit_code(runner):
    from resmon.cli import cli

    result = runner.invoke(cli, ["collect", "--help"], terminal_width=100)
    assert result.exit_code == 0, result.output
    text = " ".join(result.output.split())
    assert "--budget EXPR" in text and "RESMON_BUDGET" in text
    assert "3 when --budget-action fail and a budget was exceeded while CMD exited 0" in text


@pytest.mark.slow
def test_a_sidecar_checks_its_budgets_on_sigterm_and_still_exits_0(tmp_path):
    import signal
    import time

    summary_file = tmp_path / "summary.json"
    proc = subprocess.Popen(
        [
            *RESMON,
            f"--output={tmp_path / 'records.log'}",
            f"--summary-file={summary_file}",
            "--budget=duration<=10ms",
            "--budget=duration<=20m",
            "--budget-action=fail",
        ],
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        env={**os.environ, "FORGEJO_ACTIONS": "true"},
    )
    time.sleep(0.5)
    proc.send_signal(signal.SIGTERM)
    stdout, stderr = proc.communicate(timeout=30)
    assert proc.returncode == 0, stderr.decode()
    got = orjson.loads(summary_file.read_bytes())
    assert [r["status"] for r in got["budgets"]] == ["exceeded", "ok"]
    assert got["budgets"][0]["figure"] == "duration_seconds"
    assert b"changes the exit code in wrapper mode only: exit code 0" in stderr
    assert stdout.decode().startswith("::error title=resmon budget exceeded::budget duration")
