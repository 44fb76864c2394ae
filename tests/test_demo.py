"""`make demo`'s script, run as `make demo` runs it (with this venv, so no install):
the whole loop works, and nothing is left running or on disk, also after Ctrl-C."""

from __future__ import annotations

import os
import re
import signal
import socket
import subprocess
import sys
import time
from pathlib import Path

import psutil
import pytest

ROOT = Path(__file__).resolve().parent.parent
SCRIPT = ROOT / "scripts" / "demo.sh"
ANSI = re.compile(r"\x1b\[[0-9;]*m")


def demo_env(seconds: int) -> dict[str, str]:
    return {
        **os.environ,
        "BIN": str(Path(sys.executable).parent),
        "DEMO_SECONDS": str(seconds),
        "COLUMNS": "200",
    }


def leftovers(work: str) -> list[str]:
    found = []
    for proc in psutil.process_iter(["pid", "cmdline"]):
        try:
            if any(work in part for part in proc.info["cmdline"] or ()):
                found.append(f"{proc.info['pid']}: {' '.join(proc.info['cmdline'])}")
        except (psutil.NoSuchProcess, psutil.AccessDenied):
            continue
    return found


def port_is_free(port: int) -> bool:
    with socket.socket() as s:
        # SO_REUSEADDR: a TIME_WAIT left by a closed connection (either side may
        # close first) is not a listener; bind still fails while one listens.
        s.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
        try:
            s.bind(("127.0.0.1", port))
        except OSError:
            return False
    return True


@pytest.mark.slow
def test_demo_runs_the_whole_loop_and_cleans_up():
    started = time.monotonic()
    done = subprocess.run(
        ["bash", str(SCRIPT)],
        cwd=ROOT,
        env=demo_env(4),
        capture_output=True,
        text=True,
        timeout=120,
    )
    elapsed = time.monotonic() - started
    out = ANSI.sub("", done.stdout)
    assert done.returncode == 0, out + done.stderr
    assert elapsed < 60

    work = re.search(r"database (\S+)/demo\.db", out).group(1)
    port = int(re.search(r"resmon serve on http://127\.0\.0\.1:(\d+)", out).group(1))
    # collect -> push -> query: the run is listed and shown, its container measured
    assert "run summary pushed" in done.stderr + out
    assert "Runs of demo/app · ci.yml · build" in out
    run_pk = re.search(r"==> resmon query show (\d+)", out).group(1)
    assert f"{run_pk} · run id" in out
    workload = next(line for line in out.splitlines() if re.match(r"\s*workload\s+\d", line))
    # two busy processes under a 2-core limit: well above one core at the peak
    cores = [float(x) for x in re.findall(r"\b(\d\.\d\d)\b", workload)]
    assert max(cores) > 1.0, workload
    assert "2.00" in workload and "512 MiB" in workload
    # nothing left behind
    assert not Path(work).exists()
    assert leftovers(work) == []
    assert port_is_free(port)


@pytest.mark.slow
def test_ctrl_c_mid_demo_leaves_nothing_running():
    proc = subprocess.Popen(
        ["bash", str(SCRIPT)],
        cwd=ROOT,
        env=demo_env(20),
        stdout=subprocess.PIPE,
        stderr=subprocess.STDOUT,
        text=True,
        start_new_session=True,  # its own process group, as a terminal's foreground job
    )
    work = None
    lines = []
    try:
        assert proc.stdout is not None
        for line in proc.stdout:
            lines.append(line)
            m = re.search(r"database (\S+)/demo\.db", line)
            if m:
                work = m.group(1)
            if "resmon collect --" in line:
                break
        assert work, "".join(lines)
        time.sleep(2)  # the workload is running, the server is up
        assert leftovers(work)
        os.killpg(proc.pid, signal.SIGINT)  # what Ctrl-C sends to the foreground group
        rest, _ = proc.communicate(timeout=60)
    finally:
        if proc.poll() is None:
            os.killpg(proc.pid, signal.SIGKILL)
            proc.wait()
    assert proc.returncode != 0, "".join(lines) + rest
    assert not Path(work).exists()
    assert leftovers(work) == [], "".join(lines) + rest
