"""Disk I/O and network against real workloads, run as a user runs them.

On this machine cgroups are a v1/v2 hybrid whose directories are shared with other
services (the unified and blkio hierarchies sit at their roots), so a wrapped
command's disk figures come from /proc/PID/io (``io_source`` ``proc``), and its
network figures are the machine's network namespace's: other processes' loopback
traffic counts too, so the loopback test asserts at least what it sent."""

from __future__ import annotations

import json
import os
import subprocess
import sys
import time

import pytest

from resmon.collect.sampler import Sampler, SamplerConfig

RESMON = [sys.executable, "-m", "resmon", "collect"]
MiB = 1024 * 1024


def _summary(tmp_path, command: list[str], interval: str = "0.5s") -> dict:
    proc = subprocess.run(
        [*RESMON, f"--interval={interval}", f"--spool-dir={tmp_path / 'spool'}", "--", *command],
        capture_output=True,
        timeout=120,
    )
    assert proc.returncode == 0, proc.stderr.decode()[-2000:]
    records = [json.loads(line) for line in proc.stdout.splitlines() if line.startswith(b"{")]
    (summary,) = [r for r in records if r.get("msg") == "run_summary"]
    return summary


def _dd_flags(tmp_path) -> str:
    """oflag=direct where the filesystem takes O_DIRECT, else conv=fsync."""
    probe = subprocess.run(
        ["dd", "if=/dev/zero", f"of={tmp_path / 'probe'}", "bs=1M", "count=1", "oflag=direct"],
        capture_output=True,
    )
    return "oflag=direct" if probe.returncode == 0 else "conv=fsync"


def test_dd_writing_200_mib_is_counted_within_5_percent(tmp_path):
    target = tmp_path / "dd.out"
    flags = _dd_flags(tmp_path)
    summary = _summary(
        tmp_path, ["dd", "if=/dev/zero", f"of={target}", "bs=1M", "count=200", flags]
    )
    io = summary["job"]["io"]
    assert io["sources"] == ["proc"]
    assert io["write_bytes"] == pytest.approx(200 * MiB, rel=0.05), io
    (command,) = [c for c in summary["containers"] if c["name"] == "command"]
    assert command["io"]["source"] == "proc"
    assert command["io"]["write_bytes"] == io["write_bytes"]
    assert io["write_bytes_per_second"]["peak"] > 0


def test_a_writer_born_and_reaped_between_two_samples_is_counted(tmp_path):
    # Samples every 5 s: the shell is read at the start and as a zombie at the end; dd
    # lives and is reaped by it in between, never read itself.
    script = (
        f"sleep 0.3; dd if=/dev/zero of={tmp_path / 'x'} bs=1M count=20 conv=fsync 2>/dev/null;"
        " sleep 0.3"
    )
    summary = _summary(tmp_path, ["sh", "-c", script], interval="5s")
    assert summary["sample_count"] == 2
    assert summary["job"]["io"]["write_bytes"] == pytest.approx(20 * MiB, rel=0.05)


def test_a_child_of_a_measured_process_exiting_between_samples_in_sidecar_mode(tmp_path):
    sampler = Sampler(SamplerConfig(exclude_pids=frozenset()))
    sampler.sample()
    subprocess.run(
        ["dd", "if=/dev/zero", f"of={tmp_path / 'y'}", "bs=1M", "count=20", "conv=fsync"],
        capture_output=True,
        check=True,
    )
    time.sleep(0.05)
    sample = sampler.sample()
    mine = [
        c
        for c in sample.containers.values()
        if any(p.pid == os.getpid() and p.container == c.name for p in sample.processes)
    ]
    (container,) = mine
    assert container.io is not None
    # This process reaped dd: its /proc/PID/io grew by dd's 20 MiB (others in the same
    # container may have written too: at least).
    assert container.io.chosen.write_bytes >= 20 * MiB * 0.95


TRANSFER = """
import socket, threading
TOTAL = 100 * 1024 * 1024
server = socket.socket()
server.bind(("127.0.0.1", 0))
server.listen(1)
def sink():
    conn, _ = server.accept()
    got = 0
    while got < TOTAL:
        data = conn.recv(1 << 20)
        if not data:
            break
        got += len(data)
    conn.close()
t = threading.Thread(target=sink)
t.start()
client = socket.create_connection(server.getsockname())
block = b"x" * (1 << 20)
for _ in range(100):
    client.sendall(block)
client.close()
t.join()
"""


def test_a_100_mib_loopback_transfer_is_counted_on_lo(tmp_path):
    summary = _summary(tmp_path, [sys.executable, "-c", TRANSFER], interval="0.2s")
    network = summary["job"]["network"]
    assert network["namespaces"] == 1
    # Loopback is counted apart: the transfer (and whatever else used lo meanwhile).
    assert network["loopback_rx_bytes"] >= 100 * MiB
    assert network["loopback_tx_bytes"] >= 100 * MiB
    (command,) = [c for c in summary["containers"] if c["name"] == "command"]
    assert command["network"]["loopback_rx_bytes"] == network["loopback_rx_bytes"]
    assert command["network"]["namespace"]
