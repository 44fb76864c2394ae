"""Wrapper mode, `resmon collect -- CMD ARGS`, run as a user runs it (a subprocess)."""

from __future__ import annotations

import contextlib
import os
import signal
import subprocess
import sys
import time
from pathlib import Path

import orjson
import pytest

pytestmark = pytest.mark.slow

RESMON = [sys.executable, "-m", "resmon", "collect", "--interval=0.2s"]
CLK_TCK = os.sysconf("SC_CLK_TCK")


def run(
    tmp_path: Path, *args: str, timeout: float = 60, **kwargs
) -> tuple[subprocess.CompletedProcess, dict]:
    out = tmp_path / "records.jsonl"
    proc = subprocess.run(
        [*RESMON, f"--output={out}", *args], capture_output=True, timeout=timeout, **kwargs
    )
    return proc, summary_of(out)


def summary_of(path: Path) -> dict:
    lines = [orjson.loads(line) for line in path.read_bytes().splitlines() if line.strip()]
    assert lines and lines[-1]["msg"] == "run_summary", lines[-1:]
    return {k: v for k, v in lines[-1].items() if k not in ("time", "level", "msg")}


def container(summary: dict, name: str) -> dict:
    return next(c for c in summary["containers"] if c["name"] == name)


@pytest.mark.parametrize(
    ("command", "code"),
    [
        (["true"], 0),
        (["sh", "-c", "exit 3"], 3),
        (["sh", "-c", "kill -TERM $$"], 128 + 15),
        (["sh", "-c", "kill -KILL $$"], 128 + 9),
    ],
)
def test_exit_code_is_the_commands(tmp_path, command, code):
    proc, summary = run(tmp_path, "--", *command)
    assert proc.returncode == code, proc.stderr.decode()
    assert summary["command"]["name"] == os.path.basename(command[0])
    assert summary["command"]["exit_code"] == code
    assert summary["command"]["rusage_cpu_seconds"] >= 0


def test_command_not_found_is_127_with_a_message(tmp_path):
    proc = subprocess.run([*RESMON, "--", "no-such-command-xyz"], capture_output=True, timeout=30)
    assert proc.returncode == 127
    assert b"no-such-command-xyz" in proc.stderr and b"not found" in proc.stderr
    assert b"Traceback" not in proc.stderr


def test_only_the_base_name_is_recorded_unless_asked(tmp_path):
    secret = "--password=hunter2"
    proc, summary = run(tmp_path, "--", "/bin/sh", "-c", "true", secret)
    assert proc.returncode == 0
    # No rusage_maxrss_bytes: `sh -c true`'s is resmon's own peak, which the kernel
    # carries into a forked child's maxrss at exec (see test_wrapper_rusage.py).
    assert set(summary["command"]) == {
        "name",
        "container",
        "exit_code",
        "rusage_cpu_seconds",
        "sampled_cpu_seconds",
    }
    assert summary["command"]["name"] == "sh"
    assert b"hunter2" not in (tmp_path / "records.jsonl").read_bytes()
    proc, summary = run(
        tmp_path, "--record-command", "--name=build", "--", "/bin/sh", "-c", "true", secret
    )
    assert summary["command"]["argv"] == ["/bin/sh", "-c", "true", secret]
    assert container(summary, "build")


def _start_waiting_child(tmp_path: Path, handler_exit: int) -> tuple[subprocess.Popen, Path, Path]:
    marker, ready = tmp_path / "got-signal", tmp_path / "ready"
    child = (
        "import signal, sys, time\n"
        "def h(signum, frame):\n"
        f"    open({str(marker)!r}, 'w').write(signal.Signals(signum).name)\n"
        f"    sys.exit({handler_exit})\n"
        "signal.signal(signal.SIGTERM, h)\n"
        "signal.signal(signal.SIGINT, h)\n"
        f"open({str(ready)!r}, 'w').close()\n"
        "time.sleep(60)\n"
    )
    out = tmp_path / "records.jsonl"
    proc = subprocess.Popen(
        [*RESMON, f"--output={out}", "--", sys.executable, "-c", child],
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
    )
    deadline = time.monotonic() + 10
    while not ready.exists():
        assert time.monotonic() < deadline, "child did not start"
        time.sleep(0.02)
    return proc, marker, out


@pytest.mark.parametrize(("sig", "name"), [(signal.SIGTERM, "SIGTERM"), (signal.SIGINT, "SIGINT")])
def test_signals_are_forwarded_and_the_commands_exit_code_wins(tmp_path, sig, name):
    proc, marker, out = _start_waiting_child(tmp_path, handler_exit=7)
    start = time.monotonic()
    proc.send_signal(sig)
    _, err = proc.communicate(timeout=10)
    assert proc.returncode == 7, err.decode()
    assert marker.read_text() == name
    assert time.monotonic() - start < 2.0
    assert summary_of(out)["command"]["exit_code"] == 7


def test_a_command_that_ignores_sigterm_does_not_cost_the_summary(tmp_path):
    ready = tmp_path / "ready"
    child = (
        "import os, signal, time\n"
        "signal.signal(signal.SIGTERM, signal.SIG_IGN)\n"
        f"open({str(ready)!r}, 'w').write(str(os.getpid()))\n"
        "time.sleep(30)\n"
    )
    out, err_file = tmp_path / "records.jsonl", tmp_path / "stderr"
    with open(err_file, "wb") as err:
        # stderr to a file: the ignoring command outlives resmon and keeps its copy open.
        proc = subprocess.Popen(
            [*RESMON, f"--output={out}", "--", sys.executable, "-c", child], stderr=err
        )
    child_pid = None
    try:
        deadline = time.monotonic() + 10
        while not (ready.exists() and ready.read_text()):
            assert time.monotonic() < deadline
            time.sleep(0.02)
        child_pid = int(ready.read_text())
        start = time.monotonic()
        proc.send_signal(signal.SIGTERM)
        proc.wait(timeout=10)
        assert time.monotonic() - start < 2.0  # before CI's SIGKILL
        assert proc.returncode == 128 + 15
        assert b"did not exit after SIGTERM" in err_file.read_bytes()
        assert summary_of(out)["command"]["exit_code"] == 128 + 15
    finally:
        if child_pid is not None:
            # The command ignored SIGTERM and is now an orphan: end it, by its pid.
            with contextlib.suppress(ProcessLookupError):
                os.kill(child_pid, signal.SIGKILL)


def test_cpu_of_a_fork_heavy_command_matches_the_kernels_total(tmp_path):
    truth = tmp_path / "truth"
    # 100 short awk processes (each lives well under one 0.2 s interval), then the
    # shell's own utime+stime+cutime+cstime: the ground truth for everything it ran.
    script = (
        "for i in $(seq 100); do awk 'BEGIN{for(i=0;i<60000;i++)s+=i}'; done; "
        f"cat /proc/$$/stat > {truth}"
    )
    proc, summary = run(tmp_path, "--", "sh", "-c", script)
    assert proc.returncode == 0, proc.stderr.decode()
    fields = truth.read_text().rsplit(")", 1)[1].split()
    truth_seconds = sum(int(x) for x in fields[11:15]) / CLK_TCK
    assert truth_seconds > 0.2, truth_seconds
    command = container(summary, "command")
    assert summary["cpu_seconds"] == command["cpu_seconds"]
    assert within(command["cpu_seconds"], truth_seconds, max(0.03 * truth_seconds, 0.03)), (
        command["cpu_seconds"],
        truth_seconds,
    )
    assert command["cpu_cores"]["peak"] > 0.3
    # The readings alone, before the wait's rusage is applied, already count it: the last
    # sample reads the command as a zombie, whose cutime+cstime holds every reaped child.
    last = [orjson.loads(x) for x in (tmp_path / "records.jsonl").read_bytes().splitlines()][-2]
    assert last["msg"] == "metrics_collected"
    sampled = next(c for c in last["containers"] if c["name"] == "command")["cpu_seconds"]
    assert within(sampled, truth_seconds, max(0.03 * truth_seconds, 0.03)), (sampled, truth_seconds)
    assert within(summary["command"]["rusage_cpu_seconds"], truth_seconds, 0.03)


def within(value: float, truth: float, tolerance: float) -> bool:
    """``|value - truth| <= tolerance`` for figures in clock ticks, exact at the edge:
    0.55 - 0.52 is 0.030000000000000027 in floats (three ticks failed a 0.03 bound)."""
    return round(abs(value - truth), 9) <= tolerance


def test_waiting_for_a_command_after_forwarding_costs_no_cpu(tmp_path):
    # The command ignores SIGINT and keeps running: resmon must go back to sleeping,
    # not spin until it exits.
    ready = tmp_path / "ready"
    child = (
        "import signal, time\n"
        "signal.signal(signal.SIGINT, signal.SIG_IGN)\n"
        f"open({str(ready)!r}, 'w').close()\n"
        "time.sleep(1.5)\n"
    )
    proc = subprocess.Popen(
        [*RESMON, f"--output={tmp_path / 'r.jsonl'}", "--", sys.executable, "-c", child],
        stderr=subprocess.DEVNULL,
    )
    deadline = time.monotonic() + 10
    while not ready.exists():
        assert time.monotonic() < deadline
        time.sleep(0.02)
    proc.send_signal(signal.SIGINT)
    _, status, rusage = os.wait4(proc.pid, 0)
    proc.returncode = os.waitstatus_to_exitcode(status)
    assert proc.returncode == 0
    # resmon's own CPU over the run (start-up included), not the command's.
    assert rusage.ru_utime + rusage.ru_stime < 0.8, rusage


def _lines(data: bytes) -> list[bytes]:
    return [line for line in data.splitlines() if line.strip()]


def test_the_build_log_holds_the_commands_output_and_one_summary(tmp_path):
    """No -o: stdout is the job's log; per-sample records stay out of it unless asked."""
    command = ["--", "sh", "-c", "echo hi; sleep 0.7; echo bye"]
    proc = subprocess.run([*RESMON, *command], capture_output=True, timeout=60, cwd=tmp_path)
    assert proc.returncode == 0, proc.stderr.decode()
    lines = _lines(proc.stdout)
    assert lines[:2] == [b"hi", b"bye"] and len(lines) == 3, lines
    summary = orjson.loads(lines[2])
    assert summary["msg"] == "run_summary" and summary["sample_count"] >= 3
    assert b"metrics_collected" not in proc.stdout + proc.stderr
    assert os.listdir(tmp_path) == []  # and nothing written beside it

    asked = subprocess.run([*RESMON, "--samples", *command], capture_output=True, timeout=60)
    assert asked.returncode == 0, asked.stderr.decode()
    lines = _lines(asked.stdout)
    assert lines[0] == b"hi" and b"bye" in lines
    msgs = [orjson.loads(x)["msg"] for x in lines if x.startswith(b"{")]
    assert msgs[-1] == "run_summary" and set(msgs[:-1]) == {"metrics_collected"}
    assert len(msgs) - 1 == orjson.loads(lines[-1])["sample_count"] >= 3


def test_o_file_takes_the_samples_and_stdout_keeps_only_the_commands_output(tmp_path):
    out = tmp_path / "records.jsonl"
    proc = subprocess.run(
        [*RESMON, "-o", str(out), "--", "sh", "-c", "echo hi; sleep 0.5"],
        capture_output=True,
        timeout=60,
    )
    assert proc.returncode == 0, proc.stderr.decode()
    assert proc.stdout == b"hi\n"
    msgs = [orjson.loads(x)["msg"] for x in _lines(out.read_bytes())]
    assert msgs[-1] == "run_summary" and set(msgs[:-1]) == {"metrics_collected"}
    assert len(msgs) >= 3
    # --no-samples: the summary alone, in the file too.
    proc = subprocess.run(
        [*RESMON, "-o", str(out), "--no-samples", "--", "true"], capture_output=True, timeout=60
    )
    assert proc.returncode == 0 and proc.stdout == b""
    assert [orjson.loads(x)["msg"] for x in _lines(out.read_bytes())] == ["run_summary"]


@pytest.mark.parametrize(("flags", "per_sample"), [([], True), (["--no-samples"], False)])
def test_a_sidecar_prints_a_record_per_interval_as_the_go_collector(tmp_path, flags, per_sample):
    proc = subprocess.Popen(
        [*RESMON, *flags], stdout=subprocess.PIPE, stderr=subprocess.PIPE, cwd=tmp_path
    )
    time.sleep(1.0)
    proc.send_signal(signal.SIGTERM)
    out, err = proc.communicate(timeout=10)
    assert proc.returncode == 0, err.decode()
    msgs = [orjson.loads(x)["msg"] for x in _lines(out)]
    assert msgs[-1] == "run_summary"
    samples = orjson.loads(_lines(out)[-1])["sample_count"]
    assert samples >= 2
    assert msgs[:-1] == (["metrics_collected"] * samples if per_sample else [])


@pytest.mark.parametrize("log_format", ["json", "text"])
def test_the_push_log_line_carries_the_servers_answer_as_data(tmp_path, receiver, log_format):
    proc = subprocess.run(
        [
            *RESMON,
            f"--log-format={log_format}",
            f"--push-endpoint={receiver.url}",
            f"--spool-dir={tmp_path / 'spool'}",
            "--",
            "true",
        ],
        capture_output=True,
        timeout=60,
        env={**os.environ, "GITHUB_REPOSITORY": "o/r", "GITHUB_RUN_ID": "1"},
    )
    assert proc.returncode == 0, proc.stderr.decode()
    [line] = [x for x in proc.stderr.decode().splitlines() if "run summary pushed" in x]
    assert "{'id'" not in line
    if log_format == "json":
        record = orjson.loads(line)
        assert record["msg"] == f"run summary pushed to {receiver.url}"
        assert record["response"] == {"id": 1, "status": "created"}
    else:
        assert line.endswith(
            f'msg="run summary pushed to {receiver.url}" logger=resmon.collect.collector '
            "response.id=1 response.status=created"
        )
