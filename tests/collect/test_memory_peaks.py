"""Memory peaks from the kernel's high-water marks, and PSS that counts shared pages once.

Scripted /proc trees (tests/fixtures/fakeproc.py plus the status and smaps_rollup files
written here) for the deterministic cases; a real forked Python tree on this machine's
/proc for the live one.
"""

from __future__ import annotations

import os
import signal
import subprocess
import sys
import time
from pathlib import Path

import pytest
from fixtures.fakeproc import PF_KTHREAD, FakeProc

from resmon import procfs
from resmon.collect.accumulator import RunAccumulator
from resmon.collect.sampler import Sampler, SamplerConfig

TICK = procfs.CLK_TCK
PAGE = procfs.PAGE_SIZE
MIB = 1 << 20
A = "0::/groupA\n"


def make(tmp_path: Path, **config) -> tuple[FakeProc, Sampler]:
    fp = FakeProc(tmp_path / "proc")
    fp.add(1, "init", ppid=0, cgroup="0::/\n", starttime=1)
    fp.add(2, "kthreadd", ppid=0, cgroup="0::/\n", rss=0, flags=PF_KTHREAD, starttime=1)
    config.setdefault("cgroup_path", str(tmp_path / "no-cgroupfs"))
    sampler = Sampler(SamplerConfig(proc_path=str(fp.root), **config))
    # The process memory reads the sampler's procfs root (where the sampler does not
    # hand it on, it reads /proc only if that is the sampled one).
    sampler._containers.use_proc_path(str(fp.root))
    return fp, sampler


class Clock:
    """Advances the fake /proc and the sampler's clock together; ``memory`` holds each
    process's VmHWM and PSS (bytes), written with the tree."""

    def __init__(self, fp: FakeProc, sampler: Sampler) -> None:
        self.fp, self.sampler, self.t = fp, sampler, 1000.0
        self.memory: dict[int, tuple[int | None, int | None]] = {}

    def sample(self):
        self.fp.write(TICK)
        for pid, (hwm, pss) in self.memory.items():
            d = self.fp.root / str(pid)
            if not d.is_dir():
                continue
            rss = self.fp.processes[pid].rss * PAGE
            if hwm is not None:
                (d / "status").write_text(
                    f"Name:\tp{pid}\nState:\tS (sleeping)\nVmPeak:\t  900000 kB\n"
                    f"VmHWM:\t{hwm // 1024:>8} kB\nVmRSS:\t{rss // 1024:>8} kB\nThreads:\t1\n"
                )
            if pss is not None:
                (d / "smaps_rollup").write_text(
                    "00400000-7ffd00000000 ---p 00000000 00:00 0   [rollup]\n"
                    f"Rss:    {rss // 1024} kB\nPss:    {pss // 1024} kB\n"
                    f"Pss_Anon:    {pss // 1024} kB\n"
                )
        return self.sampler.sample(now=self.t)

    def tick(self, seconds: float = 1.0) -> None:
        self.t += seconds
        self.fp.advance(seconds, TICK)


def run(acc: RunAccumulator, name: str) -> dict:
    summary = acc.run_summary()
    assert summary is not None
    return next(c for c in summary["containers"] if c["name"] == name)


def test_forked_parent_is_its_pss_not_four_times_its_rss(tmp_path):
    """A parent that touched 300 MiB forks 3 sleeping children: each maps the same
    300 MiB (RSS 1,200 MiB summed); PSS shares it out, 300 MiB in all."""
    fp, s = make(tmp_path)
    clock = Clock(fp, s)
    acc = RunAccumulator()
    fp.add(10, "python", cgroup=A, rss=300 * MIB // PAGE)
    clock.memory[10] = (300 * MIB, 300 * MIB)
    acc.add(clock.sample())
    clock.tick()
    for pid in (11, 12, 13):
        fp.add(pid, "python", ppid=10, cgroup=A, rss=300 * MIB // PAGE)
    for pid in (10, 11, 12, 13):
        clock.memory[pid] = (300 * MIB, 75 * MIB)
    forked = clock.sample()
    acc.add(forked)
    a = forked.containers["/groupA"]
    assert a.memory_rss_bytes == 1200 * MIB
    # The parent did not run, but its family changed: its PSS was read again.
    assert a.memory_pss_bytes == 300 * MIB
    c = run(acc, "/groupA")
    assert c["memory_kind"] == "pss"
    assert c["memory_bytes"]["peak"] == 300 * MIB
    peak = c["memory_peak"]
    assert peak["kind"] == "pss" and peak["basis"] == "sampled"
    assert peak["low"] <= 300 * MIB <= peak["high"]
    assert peak["figures"]["sampled_rss"] == 1200 * MIB
    assert peak["figures"]["sampled_pss"] == 300 * MIB
    assert peak["figures"]["hwm_sum_alive_together"] == 1200 * MIB
    assert acc.sources()["/groupA"] == {"cpu": ["procfs"], "memory": ["procfs"]}


def test_pss_is_estimated_until_the_rss_moves(tmp_path):
    """PSS is re-read only for a new process, a changed family or an RSS that moved by
    more than 10 %; otherwise the last reading scaled by the RSS since."""
    fp, s = make(tmp_path)
    memory = s._containers.memory
    clock = Clock(fp, s)
    fp.add(10, "worker", cgroup=A, rss=100 * MIB // PAGE)
    fp.add(11, "worker", cgroup=A, rss=100 * MIB // PAGE, ppid=1)
    clock.memory[10] = (100 * MIB, 60 * MIB)
    clock.memory[11] = (100 * MIB, 60 * MIB)
    clock.sample()
    reads = memory.pss_reads
    clock.tick()
    fp.run(10, 5)  # runs, RSS unchanged
    same = clock.sample()
    assert memory.pss_reads == reads
    assert same.containers["/groupA"].memory_pss_bytes == 120 * MIB
    clock.tick()
    fp.processes[10].rss = 105 * MIB // PAGE  # +5 %: estimated, 60 * 105 / 100
    fp.run(10, 5)
    clock.memory[10] = (105 * MIB, 70 * MIB)
    small = clock.sample()
    assert memory.pss_reads == reads
    assert small.containers["/groupA"].memory_pss_bytes == 63 * MIB + 60 * MIB
    clock.tick()
    fp.processes[10].rss = 150 * MIB // PAGE  # +50 %: read again
    fp.run(10, 5)
    clock.memory[10] = (150 * MIB, 110 * MIB)
    moved = clock.sample()
    assert memory.pss_reads == reads + 1
    assert moved.containers["/groupA"].memory_pss_bytes == 170 * MIB


def test_pss_reads_keep_to_the_budget_and_catch_up(tmp_path):
    fp, s = make(tmp_path)
    memory = s._containers.memory
    memory.budget_seconds = 0.0  # one read a sample
    clock = Clock(fp, s)
    for pid in (10, 11, 12):
        fp.add(pid, "w", cgroup=A, rss=10 * MIB // PAGE)
        clock.memory[pid] = (10 * MIB, 4 * MIB)
    first = clock.sample()
    # One read; the two others are estimated at their RSS meanwhile.
    assert first.containers["/groupA"].memory_pss_bytes == 4 * MIB + 20 * MIB
    for _ in range(2):
        clock.tick()
        later = clock.sample()
    assert later.containers["/groupA"].memory_pss_bytes == 12 * MIB


def test_a_peak_between_samples_is_the_processes_high_water_mark(tmp_path):
    """The process grew to 500 MiB and shrank between two samples: VmHWM has it."""
    fp, s = make(tmp_path)
    memory = s._containers.memory
    clock = Clock(fp, s)
    acc = RunAccumulator()
    fp.add(10, "grow", cgroup=A, rss=2 * MIB // PAGE)
    clock.memory[10] = (2 * MIB, None)  # no smaps_rollup: RSS kind
    acc.add(clock.sample())
    clock.tick()
    fp.run(10, 90)
    clock.memory[10] = (500 * MIB, None)
    acc.add(clock.sample())
    reads = memory.hwm_reads
    clock.tick()
    clock.memory[10] = (900 * MIB, None)  # not run: its status is not read again
    acc.add(clock.sample())
    assert memory.hwm_reads == reads
    c = run(acc, "/groupA")
    assert c["memory_kind"] == "rss"
    assert c["memory_bytes"]["peak"] == 500 * MIB
    assert c["memory_bytes"]["p50"] == 2 * MIB
    peak = c["memory_peak"]
    assert peak == {
        "headline": 500 * MIB,
        "low": 500 * MIB,
        "high": 500 * MIB,
        "kind": "rss",
        "basis": "process_hwm",
        "figures": {
            "sampled_rss": 2 * MIB,
            "largest_process_hwm": 500 * MIB,
            "hwm_sum_alive_together": 500 * MIB,
        },
    }
    top = c["top_processes"]
    assert top[0]["pid"] == 10 and top[0]["memory_hwm_bytes"] == 500 * MIB


def test_high_counts_the_processes_alive_together(tmp_path):
    """Two workers alive at one sample, one gone by the next: the upper end is the sum
    of both high-water marks, the lower the larger one."""
    fp, s = make(tmp_path)
    clock = Clock(fp, s)
    acc = RunAccumulator()
    fp.add(10, "a", cgroup=A, rss=MIB // PAGE)
    fp.add(11, "b", cgroup=A, rss=MIB // PAGE)
    clock.memory[10] = (MIB, None)
    clock.memory[11] = (MIB, None)
    acc.add(clock.sample())
    clock.tick()
    fp.run(10, 10)
    fp.run(11, 10)
    clock.memory[10] = (40 * MIB, None)
    clock.memory[11] = (30 * MIB, None)
    acc.add(clock.sample())
    clock.tick()
    fp.exit_and_reap(11)
    acc.add(clock.sample())
    peak = run(acc, "/groupA")["memory_peak"]
    assert peak["low"] == 40 * MIB and peak["high"] == 70 * MIB
    assert peak["basis"] == "process_hwm"


def test_wrapper_mode_reads_only_the_commands_tree(tmp_path):
    fp, s = make(tmp_path, command_pid=30, command_name="job", exclude_pids=frozenset({29}))
    memory = s._containers.memory
    clock = Clock(fp, s)
    fp.add(29, "resmon", cgroup=A)
    fp.add(30, "make", ppid=29, cgroup=A, rss=10 * MIB // PAGE)
    fp.add(40, "neighbour", cgroup=A, rss=10 * MIB // PAGE)
    clock.memory[30] = (20 * MIB, 6 * MIB)
    clock.memory[40] = (20 * MIB, 6 * MIB)
    first = clock.sample()
    assert first.containers["job"].memory_pss_bytes == 6 * MIB
    assert first.containers["/groupA"].memory_pss_bytes is None
    assert memory.pss_reads == 1 and memory.hwm_reads == 1


def _read_tree_pss(root: int) -> tuple[int, int, list[int]]:
    """(sum of Pss, sum of Rss, pids) of ``root`` and its children, from the kernel."""
    pids = [root]
    children = Path(f"/proc/{root}/task/{root}/children").read_text().split()
    pids += [int(c) for c in children]
    pss = rss = 0
    for pid in pids:
        text = Path(f"/proc/{pid}/smaps_rollup").read_text()
        for line in text.splitlines():
            if line.startswith("Pss:"):
                pss += int(line.split()[1]) * 1024
            elif line.startswith("Rss:"):
                rss += int(line.split()[1]) * 1024
    return pss, rss, pids


LIVE_PARENT = """
import os, sys, time
block = bytearray(100 << 20)
for i in range(0, len(block), 4096):
    block[i] = 1
for _ in range(3):
    if os.fork() == 0:
        time.sleep(120)
        os._exit(0)
print("ready", flush=True)
time.sleep(120)
"""


def test_live_forked_python_tree_is_its_pss():
    """A real Python parent touches ~100 MiB and forks 3 sleeping children: the
    container's memory is the tree's PSS (what the kernel's smaps_rollup sums to),
    not ~4x that (the summed RSS)."""
    if not Path("/proc/self/smaps_rollup").exists():
        pytest.fail("this kernel has no /proc/PID/smaps_rollup")
    parent = subprocess.Popen(
        [sys.executable, "-c", LIVE_PARENT], stdout=subprocess.PIPE, start_new_session=True
    )
    try:
        assert parent.stdout is not None
        assert parent.stdout.readline().strip() == b"ready"
        sampler = Sampler(
            SamplerConfig(
                command_pid=parent.pid,
                command_name="job",
                exclude_pids=frozenset({os.getpid()}),
            )
        )
        acc = RunAccumulator()
        acc.add(sampler.sample())
        time.sleep(0.3)
        acc.add(sampler.sample())
        truth_pss, truth_rss, pids = _read_tree_pss(parent.pid)
        assert len(pids) == 4
        c = run(acc, "job")
        peak = c["memory_bytes"]["peak"]
        print(
            f"tree PSS {truth_pss / MIB:.1f} MiB, RSS {truth_rss / MIB:.1f} MiB; "
            f"resmon {c['memory_kind']} peak {peak / MIB:.1f} MiB, "
            f"range {c['memory_peak']['low'] / MIB:.1f}-{c['memory_peak']['high'] / MIB:.1f}"
        )
        assert c["memory_kind"] == "pss"
        assert truth_rss > 3 * truth_pss  # the case: shared pages counted 4 times by RSS
        assert abs(peak - truth_pss) <= 0.15 * truth_pss
        assert c["memory_peak"]["low"] <= truth_pss * 1.15
        assert c["memory_peak"]["high"] >= truth_pss
    finally:
        os.killpg(parent.pid, signal.SIGKILL)
        parent.wait()


def test_a_fixture_tree_never_reads_this_machines_proc(tmp_path):
    """The sampler hands its procfs root on: a fixture tree's memory files are read
    under the fixture (which has none here), never this machine's /proc, whose PIDs
    are other processes."""
    fp = FakeProc(tmp_path / "proc")
    fp.add(os.getpid(), "fake", cgroup=A, starttime=12345, rss=10)
    s = Sampler(SamplerConfig(proc_path=str(fp.root), cgroup_path=str(tmp_path / "none")))
    fp.write(TICK)
    first = s.sample(now=1.0)
    assert s._containers.memory.proc_path == str(fp.root)
    assert first.containers["/groupA"].memory_pss_bytes is None
    live = Sampler(SamplerConfig(exclude_pids=frozenset({os.getpid()})))
    live.sample()
    assert live._containers.memory.enabled and live._containers.memory.hwm_reads > 0
