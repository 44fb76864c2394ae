"""Wrapper mode's kernel figures: the wait's rusage, and resmon's own trouble kept out
of the command's exit code."""

from __future__ import annotations

import logging
import os
import subprocess
import sys

import orjson
import pytest

from resmon.collect.command_run import CommandRun
from resmon.collect.reaper import LeftRunning, TreeProcess

MIB = 1024 * 1024


def run(tmp_path, *command: str) -> dict:
    summary = tmp_path / "summary.json"
    proc = subprocess.run(
        [sys.executable, "-m", "resmon", "collect", "--interval=0.2s"]
        + [f"--summary-file={summary}", "--", *command],
        capture_output=True,
        timeout=60,
    )
    assert proc.returncode == 0, proc.stderr.decode()
    return orjson.loads(summary.read_bytes())


@pytest.mark.slow
def test_ru_maxrss_is_the_commands_peak_and_only_when_it_is_its_own(tmp_path):
    # 80 MiB held for a moment between samples: the wait's ru_maxrss still has it.
    big = run(tmp_path, sys.executable, "-c", "x = b'x' * (80 << 20); del x")
    maxrss = big["command"]["rusage_maxrss_bytes"]
    assert 80 * MIB < maxrss < 120 * MIB, maxrss
    # `true` uses well under a MiB, but the kernel carries resmon's own high-water mark
    # (the process it was forked from) into its maxrss at exec: not a figure of `true`.
    small = run(tmp_path, "true")
    assert "rusage_maxrss_bytes" not in small["command"]
    assert small["command"]["rusage_cpu_seconds"] < 0.1


class BrokenReaper:
    reaped = 0
    orphans_cpu_seconds = 0.0

    def reap_orphans(self):
        raise RuntimeError("reap broke")

    def at_command_exit(self, also=()):
        raise RuntimeError("tree broke")

    def end(self, left):
        raise RuntimeError("kill broke")


def test_reaper_trouble_is_a_log_line_not_an_exception(caplog):
    run = CommandRun(["true"], "/proc", kill_left_running=True)
    run.reaper = BrokenReaper()  # type: ignore[assignment]
    run.left = LeftRunning([TreeProcess(123456, 1, "sleep", 0.5, False)])
    with caplog.at_level(logging.DEBUG, logger="resmon.collect.collector"):
        run.reap_orphans()
        run.finish()
        run.left = None
        run.at_exit([])
    errors = [r.getMessage() for r in caplog.records if r.levelno == logging.ERROR]
    assert any("reap broke" in m for m in errors)
    assert any("kill broke" in m for m in errors)
    assert any("tree broke" in m for m in errors)
    # Still named, as not ended.
    assert any("sleep (pid 123456)" in r.getMessage() for r in caplog.records)


def test_the_cpu_total_is_rusage_plus_orphans_and_the_sampled_figure_is_kept():
    run = CommandRun(["make"], "/proc", kill_left_running=False)
    run.exit_code, run.rusage_cpu, run.rusage_maxrss = 2, 3.25, 50 * MIB

    class Counted:
        orphans_cpu_seconds = 1.5

    run.reaper = Counted()  # type: ignore[assignment]
    run.left = LeftRunning([TreeProcess(77, 1, "sleep", 0.0, False)])
    summary = {
        "cpu_seconds": 9.0,
        "containers": [{"name": "build", "cpu_seconds": 9.0}, {"name": "x", "cpu_seconds": 1}],
        "job": {"scope": "command", "cpu_seconds": 9.0},
    }
    command: dict = {}
    run.add_to_summary(summary, command, "build", sampled=4.6)
    assert summary["cpu_seconds"] == summary["job"]["cpu_seconds"] == 4.75
    assert summary["containers"] == [
        {"name": "build", "cpu_seconds": 4.75},
        {"name": "x", "cpu_seconds": 1},
    ]
    assert command == {
        "exit_code": 2,
        "rusage_cpu_seconds": 3.25,
        "sampled_cpu_seconds": 4.6,
        "rusage_maxrss_bytes": 50 * MIB,
        "left_running": {
            "count": 1,
            "processes": [{"pid": 77, "name": "sleep", "cpu_seconds": 0.0}],
            "cpu_seconds": 0.0,
            "killed": False,
        },
    }


def _is_subreaper() -> bool:
    import ctypes

    value = ctypes.c_int(0)
    assert ctypes.CDLL(None, use_errno=True).prctl(37, ctypes.byref(value), 0, 0, 0) == 0
    return bool(value.value)


@pytest.mark.slow
def test_an_in_process_run_leaves_the_process_as_it_found_it(tmp_path):
    """Collector.run in a test (or any host process) is the subreaper only for the run:
    afterwards orphans of the host's other children go where they went before."""
    from resmon.collect.collector import CollectConfig, Collector

    assert not _is_subreaper()
    config = CollectConfig(
        interval=0.1,
        command=["sh", "-c", "(sleep 20 &) ; sleep 0.3; exit 4"],  # time for the exec
        summary_file=tmp_path / "summary.json",
        kill_left_running=True,
    )
    with (tmp_path / "records.jsonl").open("wb") as out:
        assert Collector(config, out).run() == 4
    assert not _is_subreaper()
    left = orjson.loads((tmp_path / "summary.json").read_bytes())["command"]["left_running"]
    assert [p["name"] for p in left["processes"]] == ["sleep"] and left["killed"] is True
    # Ended and reaped by the run: no zombie left to this process.
    with pytest.raises(ChildProcessError):
        os.waitpid(left["processes"][0]["pid"], os.WNOHANG)
