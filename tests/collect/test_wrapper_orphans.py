"""Nothing escapes the command's tree (issue #12, finding 7), run as a user runs it.

`resmon collect -- CMD` is the child subreaper of CMD's tree: a daemon CMD leaves
behind, or an immediate double fork, stays in the command's container, its CPU
counts, and what is still running when CMD exits is named in ``left_running``.

The workloads burn a fixed amount of *CPU time* (``time.process_time()``), not a
fixed number of loop iterations as the issue's awk does: on this shared 2-core
machine the same awk loop took 0.53 to 0.70 CPU-s from run to run, so two runs
could only be compared to each other through a target the kernel counts.  Every
run is also checked against its own truth, read from /proc by the command itself
just before it exits.
"""

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

from resmon import procfs

pytestmark = pytest.mark.slow

TICK = procfs.CLK_TCK
PY = sys.executable
# Burns argv[1] CPU-seconds; then, given a marker path, creates it and idles 30 s
# (a daemon left running); given "forever", burns on (a busy daemon).
BURN = (
    "import sys, time\n"
    "target = float(sys.argv[1])\n"
    "while time.process_time() < target: pass\n"
    "if len(sys.argv) > 2 and sys.argv[2] == 'forever':\n"
    "    while time.process_time() < 30: pass\n"
    "elif len(sys.argv) > 2:\n"
    "    open(sys.argv[2], 'w').close()\n"
    "    time.sleep(30)\n"
)


def resmon(tmp: Path, *args: str, timeout: float = 60) -> tuple[subprocess.CompletedProcess, dict]:
    summary, out, err = tmp / "summary.json", tmp / "stdout", tmp / "stderr"
    summary.unlink(missing_ok=True)
    # Output to files, not pipes: what the command leaves running keeps its copies
    # open, and reading a pipe to its end would wait for them.
    with open(out, "wb") as stdout, open(err, "wb") as stderr:
        proc = subprocess.run(
            [PY, "-m", "resmon", "collect", "--log-format=text", f"--summary-file={summary}"]
            + list(args),
            stdout=stdout,
            stderr=stderr,
            timeout=timeout,
        )
    proc.stdout, proc.stderr = out.read_bytes(), err.read_bytes()
    assert b"Traceback" not in proc.stderr, proc.stderr.decode()
    return proc, orjson.loads(summary.read_bytes())


def total_seconds(stat_file: Path) -> float:
    return procfs.parse_stat(stat_file.read_bytes()).total_ticks / TICK


def end_left(summary: dict) -> None:
    """The test's own cleanup: end what a run left running, by pid."""
    for p in summary["command"].get("left_running", {}).get("processes", []):
        st = procfs.read_pid_stat(p["pid"])
        if st is not None and st.name == p["name"]:
            with contextlib.suppress(ProcessLookupError):
                os.kill(p["pid"], signal.SIGKILL)


def daemon_script(tmp: Path, own_burn: float, daemon: str) -> str:
    """The issue's shape: `sleep 30 &`, a subshell that starts a burner and exits (the
    burner is orphaned), then the command's own burn; the truth is read just before
    `exit 0`: the shell's total (itself and every child it reaped) and the daemon's."""
    (tmp / "burn.py").write_text(BURN)
    return (
        f"cd {tmp}; rm -f ready daemon.pid; sleep 30 & "
        f"( {PY} burn.py {daemon} & echo $! > daemon.pid; sleep 0.2 ); "
        "while [ ! -e ready ] && [ ! -e busy ]; do sleep 0.02; done; "
        f"{PY} burn.py {own_burn}; "
        "cat /proc/$(cat daemon.pid)/stat > daemon.stat; cat /proc/$$/stat > shell.stat; exit 0"
    )


def test_a_daemon_left_behind_counts_the_same_at_1s_and_5s(tmp_path):
    """The daemon burns 0.5 CPU-s, then idles: its CPU is the same in every run, so the
    runs' totals must agree whatever the interval (the issue: 3.55 at 1 s, 0.758 at 5 s)."""
    script = daemon_script(tmp_path, 0.3, "0.5 ready")
    totals = {}
    for interval in ("1s", "5s"):
        proc, summary = resmon(tmp_path, f"--interval={interval}", "--", "sh", "-c", script)
        try:
            assert proc.returncode == 0, proc.stderr.decode()
            truth = total_seconds(tmp_path / "shell.stat") + total_seconds(tmp_path / "daemon.stat")
            command = summary["command"]
            print(f"{interval}: cpu_seconds {summary['cpu_seconds']}, truth {truth:.3f}, {command}")
            assert truth > 0.7
            assert summary["cpu_seconds"] == pytest.approx(truth, rel=0.03, abs=0.03)
            # The kernel's figures, not the larger of two: the command's rusage plus the
            # daemon's CPU so far (the sleep's is ~0).
            left = command["left_running"]
            assert summary["cpu_seconds"] == pytest.approx(
                command["rusage_cpu_seconds"] + left["cpu_seconds"], abs=0.002
            )
            assert command["rusage_cpu_seconds"] == pytest.approx(
                total_seconds(tmp_path / "shell.stat"), abs=0.03
            )
            assert "sampled_cpu_seconds" in command
            daemon_pid = int((tmp_path / "daemon.pid").read_text())
            names = {p["pid"]: p["name"] for p in left["processes"]}
            assert left["count"] == 2 and left["killed"] is False
            assert names[daemon_pid].startswith("python") and "sleep" in names.values()
            container = next(c for c in summary["containers"] if c["name"] == "command")
            assert container["cpu_seconds"] == summary["cpu_seconds"]
            assert b"left running" in proc.stderr and str(daemon_pid).encode() in proc.stderr
            totals[interval] = summary["cpu_seconds"]
        finally:
            end_left(summary)
    assert totals["1s"] == pytest.approx(totals["5s"], rel=0.05), totals


def test_a_busy_daemon_counts_to_the_commands_exit_and_is_ended_when_asked(tmp_path):
    """The issue's daemon still burns when the command exits: its CPU counts up to then;
    --kill-left-running ends it (and the sleep), within the exit path's budget."""
    (tmp_path / "busy").touch()  # the command does not wait for a marker
    script = daemon_script(tmp_path, 0.4, "0 forever")
    start = time.monotonic()
    proc, summary = resmon(
        tmp_path, "--interval=5s", "--kill-left-running", "--", "sh", "-c", script
    )
    elapsed = time.monotonic() - start
    assert proc.returncode == 0, proc.stderr.decode()
    daemon = procfs.parse_stat((tmp_path / "daemon.stat").read_bytes())
    truth = total_seconds(tmp_path / "shell.stat") + daemon.total_ticks / TICK
    command = summary["command"]
    print(f"cpu_seconds {summary['cpu_seconds']}, truth {truth:.3f}, {elapsed:.2f} s, {command}")
    # The daemon's /proc figure is read a few ms after the command's `cat`: a little more.
    assert truth - 0.01 <= summary["cpu_seconds"] <= truth * 1.03 + 0.05
    left = command["left_running"]
    assert left["killed"] is True and left["count"] == 2
    assert {p["pid"] for p in left["processes"]} >= {daemon.pid}
    # Ended and reaped: gone, not a zombie left to init.
    st = procfs.read_pid_stat(daemon.pid)
    assert st is None or st.starttime != daemon.starttime
    assert b"ended (--kill-left-running)" in proc.stderr
    assert elapsed < 0.4 + 1.0 + 5, elapsed  # the command's ~1 s, start-up, one 5 s tick at most


def test_an_immediate_double_fork_is_named(tmp_path):
    for interval in ("1s", "5s"):
        proc, summary = resmon(
            tmp_path, f"--interval={interval}", "--", "sh", "-c", "(sleep 5 &) ; exit 0"
        )
        try:
            assert proc.returncode == 0, proc.stderr.decode()
            left = summary["command"]["left_running"]
            assert [p["name"] for p in left["processes"]] == ["sleep"], left
            assert left["count"] == 1 and left["killed"] is False
            pid = left["processes"][0]["pid"]
            assert f"sleep (pid {pid})".encode() in proc.stderr
            # Not ended: it is still running after resmon exited.
            assert procfs.read_pid_stat(pid) is not None
        finally:
            end_left(summary)


def test_kill_left_running_ends_a_process_that_ignores_sigterm(tmp_path):
    """SIGTERM, a short grace, then SIGKILL; the command's exit code is kept."""
    script = "sh -c 'trap \"\" TERM; sleep 40' & sleep 0.3; exit 3"
    start = time.monotonic()
    proc, summary = resmon(
        tmp_path, "--interval=1s", "--kill-left-running", "--", "sh", "-c", script
    )
    assert proc.returncode == 3, proc.stderr.decode()
    assert time.monotonic() - start < 3.0
    left = summary["command"]["left_running"]
    assert left["killed"] is True and sorted(p["name"] for p in left["processes"]) == [
        "sh",
        "sleep",
    ]
    for p in left["processes"]:
        assert procfs.read_pid_stat(p["pid"]) is None, p
    assert summary["command"]["exit_code"] == 3


def test_orphans_that_exit_first_are_reaped_and_their_cpu_counted(tmp_path):
    """Orphans that exit while the command runs are resmon's to reap (never the command
    itself, whose exit code and rusage stay its own); their rusage adds to the total."""
    (tmp_path / "burn.py").write_text(BURN)
    script = (
        f"cd {tmp_path}; for i in 1 2 3 4 5 6; do ( sleep 0.05 & ); done; "
        f"( {PY} -c 'import os, resource, time\n"
        "while time.process_time() < 0.4: pass\n"
        "u = resource.getrusage(resource.RUSAGE_SELF)\n"
        'open("orphan.cpu", "w").write(str(u.ru_utime + u.ru_stime))\n'
        # No interpreter shutdown after the reading: its CPU would be in the reaped
        # total but not in the truth (the total was 33 ms over in one CI run).
        "os._exit(0)' & ); "
        "sleep 1.2; cat /proc/$$/stat > shell.stat; exit 7"
    )
    proc, summary = resmon(tmp_path, "--interval=5s", "--log-level=debug", "--", "sh", "-c", script)
    assert proc.returncode == 7, proc.stderr.decode()
    command = summary["command"]
    assert command["exit_code"] == 7
    assert "left_running" not in command
    orphan = float((tmp_path / "orphan.cpu").read_text())
    truth = total_seconds(tmp_path / "shell.stat") + orphan
    assert orphan >= 0.4
    assert summary["cpu_seconds"] == pytest.approx(truth, rel=0.03, abs=0.03)
    assert command["rusage_cpu_seconds"] < 0.3  # the orphan is not the command's
    assert b"reaped 7 orphans" in proc.stderr, proc.stderr.decode()[-2000:]
