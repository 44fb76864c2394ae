"""The sampler: figures from two readings, churn-proof CPU accounting, cgroupfs, wrapper mode.

Scripted /proc trees (tests/fixtures/fakeproc.py) evolve between samples exactly as the
kernel reports process churn; live tests run real workloads on this machine's /proc.
"""

from __future__ import annotations

import os
import random
import shutil
import subprocess
import sys
import time
from pathlib import Path

import pytest
from fixtures.fakeproc import PF_KTHREAD, FakeProc, stat_line
from hypothesis import given, settings
from hypothesis import strategies as st

from resmon import procfs
from resmon.collect.containers import Limits
from resmon.collect.sampler import Sampler, SamplerConfig

FIXTURES = Path(__file__).parents[1] / "fixtures"
TICK = procfs.CLK_TCK
PAGE = procfs.PAGE_SIZE
A = "0::/groupA\n"
B = "0::/groupB\n"


def make(tmp_path: Path, **config) -> tuple[FakeProc, Sampler]:
    fp = FakeProc(tmp_path / "proc")
    fp.add(1, "init", ppid=0, cgroup="0::/\n", starttime=1)
    fp.add(2, "kthreadd", ppid=0, cgroup="0::/\n", rss=0, flags=PF_KTHREAD, starttime=1)
    config.setdefault("cgroup_path", str(tmp_path / "no-cgroupfs"))
    sampler = Sampler(SamplerConfig(proc_path=str(fp.root), **config))
    return fp, sampler


class Clock:
    """Advances the fake /proc and the sampler's clock together."""

    def __init__(self, fp: FakeProc, sampler: Sampler) -> None:
        self.fp, self.sampler, self.t = fp, sampler, 1000.0

    def sample(self):
        self.fp.write(TICK)
        return self.sampler.sample(now=self.t)

    def tick(self, seconds: float = 1.0) -> None:
        self.t += seconds
        self.fp.advance(seconds, TICK)


# --- basic figures ------------------------------------------------------------------


def test_first_sample_has_no_cpu_delta_but_memory(tmp_path):
    fp, s = make(tmp_path)
    fp.add(10, "worker", cgroup=A, rss=1000, utime=500)
    clock = Clock(fp, s)
    first = clock.sample()
    assert first.elapsed is None and first.cpu_total_percent is None
    c = first.containers["/groupA"]
    assert c.cpu_cores is None and c.cpu_seconds == 0.0
    assert c.memory_bytes == 1000 * PAGE and c.process_count == 1
    assert first.top_cpu == []
    assert [p.pid for p in first.top_mem][:1] == [10]
    assert first.processes[0].cpu_percent is None
    assert first.mem_total_bytes == 8_000_000 * 1024
    assert first.mem_used_bytes == 2_000_000 * 1024
    assert first.mem_used_percent == pytest.approx(25.0)


def test_busy_process_and_system_cpu(tmp_path):
    fp, s = make(tmp_path, top_n=2)
    fp.add(10, "busy", cgroup=A, rss=200)
    fp.add(11, "idle", cgroup=A)
    fp.add(12, "other", cgroup=B, rss=5000)
    clock = Clock(fp, s)
    clock.sample()
    clock.tick(1.0)
    fp.run(10, TICK)  # one full core for the second
    fp.run(12, TICK // 4)
    second = clock.sample()
    assert second.elapsed == pytest.approx(1.0)
    busy = next(p for p in second.processes if p.pid == 10)
    assert busy.cpu_percent == pytest.approx(100.0)
    assert [p.pid for p in second.top_cpu] == [10, 12]
    assert [p.pid for p in second.top_mem] == [12, 10]
    assert second.containers["/groupA"].cpu_cores == pytest.approx(1.0)
    assert second.containers["/groupA"].process_count == 2
    assert second.containers["/groupB"].cpu_cores == pytest.approx(0.25)
    # System: busy 125 ticks out of 125 + 2 cores * 100 idle ticks.
    assert second.cpu_total_percent == pytest.approx(125 / 325 * 100)
    assert second.cpu_seconds_total == pytest.approx(1.25)
    host = second.containers["host"]
    assert host.process_count == 2 and host.memory_bytes == 100 * PAGE  # kthreadd: no RSS


def test_record_shape(tmp_path):
    fp, s = make(tmp_path, top_n=1)
    fp.add(10, "a) (b", cgroup=A)
    clock = Clock(fp, s)
    clock.sample()
    clock.tick()
    fp.run(10, 50)
    record = clock.sample().record()
    assert "msg" not in record and "time" not in record
    assert record["cpu_total_percent"] > 0
    assert record["top_cpu_processes"] == [
        {
            "pid": 10,
            "name": "a) (b",
            "cpu_percent": 50.0,
            "rss_bytes": 100 * PAGE,
            "container": "/groupA",
        }
    ]
    names = [c["name"] for c in record["containers"]]
    assert names == sorted(names) == ["/groupA", "host"]
    a = record["containers"][0]
    assert a["cpu_cores"] == 0.5 and a["cpu_seconds"] == 0.5
    assert a["source_cpu"] == a["source_memory"] == "procfs"
    assert "pressure" not in record  # this tree has no /proc/pressure (PSI off)
    assert record["system_cpu_seconds"] == 0.5


def test_vanished_pid_and_garbage_are_skipped(tmp_path):
    fp, s = make(tmp_path)
    fp.add(10, "ok", cgroup=A)
    fp.write(TICK)
    (fp.root / "77").mkdir()  # listed, but no stat: vanished between listdir and read
    (fp.root / "78").mkdir()
    (fp.root / "78" / "stat").write_text("78 (half")
    sample = s.sample(now=1.0)
    assert sorted(p.pid for p in sample.processes) == [1, 2, 10]


def test_unicode_digit_entries_are_not_processes(tmp_path):
    # str.isdigit() accepts '³' and '١٢'; a --proc-path tree with such an entry (and a
    # well-formed stat in it) must not crash the collector nor count as a process.
    fp, s = make(tmp_path)
    fp.add(10, "ok", cgroup=A)
    fp.write(TICK)
    for name in ("³", "١٢"):
        (fp.root / name).mkdir()
        (fp.root / name / "stat").write_text(stat_line(12, "odd"))
    sample = s.sample(now=1.0)
    assert sorted(p.pid for p in sample.processes) == [1, 2, 10]


def test_exclude_pids_are_counted_nowhere(tmp_path):
    fp, s = make(tmp_path, exclude_pids=frozenset({50}))
    fp.add(50, "resmon", cgroup=A, rss=99999)
    fp.add(10, "work", cgroup=A)
    clock = Clock(fp, s)
    clock.sample()
    clock.tick()
    fp.run(50, 80)
    fp.run(10, 10)
    sample = clock.sample()
    assert 50 not in {p.pid for p in sample.processes}
    assert 50 not in {p.pid for p in sample.top_mem}
    a = sample.containers["/groupA"]
    assert a.process_count == 1 and a.cpu_seconds == pytest.approx(0.1)
    assert a.memory_bytes == 100 * PAGE


# --- churn-proof accounting -------------------------------------------------------------


def test_reaped_child_in_group_is_counted_once(tmp_path):
    fp, s = make(tmp_path)
    fp.add(10, "sh", cgroup=A)
    clock = Clock(fp, s)
    clock.sample()
    clock.tick()
    fp.add(11, "cc", ppid=10, cgroup=A)
    fp.run(11, 30)
    second = clock.sample()
    assert second.containers["/groupA"].cpu_seconds == pytest.approx(0.3)
    clock.tick()
    fp.run(11, 20)
    fp.exit_and_reap(11)  # the shell's cutime grows by the child's whole 50 ticks
    # A child born, run and reaped between two samples: never seen, still counted.
    fp.add(12, "awk", ppid=10, cgroup=A)
    fp.run(12, 40)
    fp.exit_and_reap(12)
    third = clock.sample()
    a = third.containers["/groupA"]
    assert a.cpu_seconds == pytest.approx(0.3 + 0.2 + 0.4)
    assert a.cpu_cores == pytest.approx(0.6)
    assert a.process_count == 1


def test_reaper_outside_the_group_keeps_last_observed_time(tmp_path):
    fp, s = make(tmp_path)
    fp.add(20, "job", ppid=1, cgroup=B)
    clock = Clock(fp, s)
    clock.sample()
    clock.tick()
    fp.run(20, 50)
    second = clock.sample()
    assert second.containers["/groupB"].cpu_seconds == pytest.approx(0.5)
    clock.tick()
    fp.run(20, 10)
    fp.exit_and_reap(20)  # reaped by init, in another group ("host")
    third = clock.sample()
    assert "/groupB" not in third.containers  # no live process left this sample
    # init's cutime grew by 60 ticks: only the 10 never seen in group B go to host.
    assert third.containers["host"].cpu_seconds == pytest.approx(0.1)
    # B reappears later: its cumulative total did not go backwards.
    clock.tick()
    fp.add(21, "job2", ppid=1, cgroup=B)
    fp.run(21, 5)
    fourth = clock.sample()
    assert fourth.containers["/groupB"].cpu_seconds == pytest.approx(0.55)


def test_parent_ignoring_sigchld_does_not_make_time_disappear(tmp_path):
    fp, s = make(tmp_path)
    fp.add(10, "server", cgroup=A)
    fp.add(11, "handler", ppid=10, cgroup=A)
    clock = Clock(fp, s)
    clock.sample()
    clock.tick()
    fp.run(11, 70)
    clock.sample()
    clock.tick()
    del fp.processes[11]  # auto-reaped: the parent's cutime does not grow
    third = clock.sample()
    assert third.containers["/groupA"].cpu_seconds == pytest.approx(0.7)
    assert third.containers["/groupA"].cpu_cores == pytest.approx(0.0)


def test_parent_and_orphaned_child_die_in_one_interval(tmp_path):
    """P dies first (reaped by G); C, orphaned to init, dies next: no double count."""
    fp, s = make(tmp_path)
    fp.add(10, "G", ppid=1, cgroup=A)
    fp.add(11, "P", ppid=10, cgroup=A)
    fp.add(12, "C", ppid=11, cgroup=A)
    clock = Clock(fp, s)
    clock.sample()
    clock.tick()
    fp.run(11, 10)
    fp.run(12, 40)
    clock.sample()
    clock.tick()
    fp.run(11, 5)
    fp.exit_and_reap(11)  # G's cutime += 15; C's parent becomes init
    fp.run(12, 7)
    fp.exit_and_reap(12)  # init's cutime += 47
    third = clock.sample()
    total = sum(c.cpu_seconds for c in third.containers.values())
    assert total == pytest.approx((10 + 40 + 5 + 7) / TICK)
    assert third.containers["/groupA"].cpu_seconds >= 0.5


def test_naive_sum_would_lose_short_processes(tmp_path):
    """150 short processes between samples: the naive utime+stime sum sees nothing."""
    fp, s = make(tmp_path)
    fp.add(10, "sh", cgroup=A)
    clock = Clock(fp, s)
    clock.sample()
    for _ in range(3):
        clock.tick()
        for i in range(50):
            fp.add(100 + i, "awk", ppid=10, cgroup=A)
            fp.run(100 + i, 1)
            fp.exit_and_reap(100 + i)
        sample = clock.sample()
    assert sample.containers["/groupA"].cpu_seconds == pytest.approx(150 / TICK)


@settings(max_examples=60, deadline=None)
@given(seed=st.integers(0, 2**32 - 1), steps=st.integers(5, 40))
def test_random_churn_is_monotone_and_exact(tmp_path_factory, seed, steps):
    """Random fork/run/exit/reap with samples in between: every container's cpu_seconds
    never decreases, and the total over all containers is exactly the CPU run since the
    first sample (every reaper is a visible ancestor here, so nothing may be lost or
    counted twice)."""
    rng = random.Random(seed)
    fp, s = make(tmp_path_factory.mktemp("churn"))
    groups = ["0::/g1\n", "0::/g2\n", "0::/g3\n"]
    next_pid = 10
    for cg in groups:
        fp.add(next_pid, "root", ppid=1, cgroup=cg)
        next_pid += 1
    clock = Clock(fp, s)
    clock.sample()
    truth = 0
    last: dict[str, float] = {}
    for _ in range(steps):
        clock.tick()
        for _ in range(rng.randint(0, 8)):
            live = [p for p in fp.processes.values() if p.pid > 2]
            op = rng.random()
            if op < 0.35 or not live:
                parent = rng.choice(live) if live else fp.processes[1]
                cg = parent.cgroup if rng.random() < 0.9 else rng.choice(groups)
                fp.add(next_pid, "p", ppid=parent.pid, cgroup=cg)
                next_pid += 1
            elif op < 0.75:
                victim = rng.choice(live)
                ticks = rng.randint(0, 30)
                fp.run(victim.pid, ticks)
                truth += ticks
            else:
                fp.exit_and_reap(rng.choice(live).pid)
        if rng.random() < 0.7:
            sample = clock.sample()
            for name, c in sample.containers.items():
                assert c.cpu_seconds >= last.get(name, 0.0) - 1e-9, name
                assert c.cpu_cores is None or c.cpu_cores >= 0
                last[name] = c.cpu_seconds
    clock.tick()
    sample = clock.sample()
    for name, c in sample.containers.items():
        last[name] = c.cpu_seconds
    assert sum(last.values()) == pytest.approx(truth / TICK)


# --- containers: naming, limits -----------------------------------------------------------


def test_process_map_names_the_whole_cgroup(tmp_path):
    fp, s = make(
        tmp_path,
        process_map={"node": "runner", "resource-collector": "collector"},
        limits={"runner": Limits(cpu_cores=2.0, memory_bytes=1000 * PAGE)},
    )
    fp.add(10, "bash", cgroup=A, rss=300)
    fp.add(11, "node", ppid=10, cgroup=A, rss=200)
    fp.add(12, "resource-collec", cgroup=B)  # the kernel's 15-character comm
    clock = Clock(fp, s)
    clock.sample()
    clock.tick()
    fp.run(10, 100)
    fp.run(11, 100)
    sample = clock.sample()
    assert set(sample.containers) == {"runner", "collector", "host"}
    runner = sample.containers["runner"]
    assert runner.process_count == 2 and runner.memory_bytes == 500 * PAGE
    assert runner.cpu_cores == pytest.approx(2.0)
    assert runner.limit_cpu_cores == 2.0 and runner.cpu_percent_of_limit == pytest.approx(100.0)
    assert runner.memory_percent_of_limit == pytest.approx(50.0)
    assert {p.container for p in sample.processes if p.pid in (10, 11)} == {"runner"}
    # The name sticks when the mapped process goes away.
    clock.tick()
    fp.exit_and_reap(11)
    assert "runner" in clock.sample().containers


# --- wrapper mode ------------------------------------------------------------------------


def test_command_tree_is_its_own_container(tmp_path):
    fp, s = make(tmp_path, command_pid=30, command_name="make", exclude_pids=frozenset({29}))
    fp.add(29, "resmon", ppid=1, cgroup=A)
    fp.add(30, "make", ppid=29, cgroup=A)
    fp.add(40, "neighbour", ppid=1, cgroup=A)
    clock = Clock(fp, s)
    first = clock.sample()
    assert first.command_container == "make"
    assert first.containers["make"].process_count == 1
    clock.tick()
    fp.add(31, "cc", ppid=30, cgroup=A)
    fp.add(32, "cc1", ppid=31, cgroup=A)
    fp.run(32, 60)
    fp.run(40, 10)
    second = clock.sample()
    assert second.containers["make"].process_count == 3
    assert second.containers["make"].cpu_seconds == pytest.approx(0.6)
    assert second.containers["/groupA"].process_count == 1  # the neighbour only
    # cc exits; cc1 is orphaned to init but stays in the command's container.
    clock.tick()
    fp.exit_and_reap(31)
    fp.run(32, 20)
    third = clock.sample()
    assert third.containers["make"].process_count == 2
    assert third.containers["make"].cpu_seconds == pytest.approx(0.8)
    # The command exits and resmon reaps it: the last sample gets the exact total.
    clock.tick()
    fp.run(32, 5)
    fp.exit_and_reap(32)
    fp.run(30, 3)
    fp.exit_and_reap(30)
    s.final_command_sample(0.95)
    last = clock.sample()
    make_c = last.containers["make"]
    assert make_c.process_count == 0
    assert make_c.cpu_seconds == pytest.approx(0.95)
    assert make_c.cpu_cores == pytest.approx(0.15)


def test_a_container_of_zombies_has_no_memory_reading_but_its_cpu_counts(tmp_path):
    """The wrapped command read as a zombie (before it is reaped) has no RSS: 0 would be
    a false memory reading that pulls a short run's statistics down."""
    from resmon.collect.accumulator import RunAccumulator

    fp, s = make(tmp_path, command_pid=30, command_name="cmd", exclude_pids=frozenset({29}))
    fp.add(29, "resmon", ppid=1, cgroup=A)
    fp.add(30, "cmd", ppid=29, cgroup=A, rss=500)
    fp.add(31, "worker", ppid=30, cgroup=A, rss=300)
    clock = Clock(fp, s)
    acc = RunAccumulator()
    acc.add(clock.sample())
    clock.tick()
    fp.run(30, 50)
    second = clock.sample()
    acc.add(second)
    assert second.containers["cmd"].memory_bytes == 800 * PAGE
    # The worker exits (reaped by the command); the command is a zombie.
    clock.tick()
    fp.run(31, 20)
    fp.exit_and_reap(31)
    fp.run(30, 10)
    cmd = fp.processes[30]
    cmd.state, cmd.rss = "Z", 0
    last = clock.sample()
    acc.add(last)
    c = last.containers["cmd"]
    assert c.process_count == 1
    assert c.memory_bytes is None and c.memory_percent_of_limit is None
    assert c.cpu_cores == pytest.approx(0.3)  # its CPU still counts, the reaped worker's too
    assert c.cpu_seconds == pytest.approx(0.8)
    assert c.record()["memory_bytes"] is None
    summary = acc.run_summary()
    [run] = [x for x in summary["containers"] if x["name"] == "cmd"]
    # Memory statistics over the two live readings only; CPU over both intervals.
    assert run["memory_bytes"]["p50"] == run["memory_bytes"]["peak"] == 800 * PAGE
    assert run["cpu_cores"]["peak"] == pytest.approx(0.5)
    assert run["cpu_seconds"] == pytest.approx(0.8)
    assert summary["timeline"][-1]["containers"]["cmd"]["memory_bytes"] is None


def test_a_zombie_beside_a_live_process_is_just_zero_rss(tmp_path):
    fp, s = make(tmp_path)
    fp.add(10, "parent", cgroup=A, rss=400)
    fp.add(11, "defunct", ppid=10, cgroup=A, rss=0, state="Z")
    sample = Clock(fp, s).sample()
    assert sample.containers["/groupA"].memory_bytes == 400 * PAGE


def test_final_command_sample_needs_wrapper_mode(tmp_path):
    _, s = make(tmp_path)
    with pytest.raises(ValueError):
        s.final_command_sample(1.0)


# --- cgroupfs ------------------------------------------------------------------------------


def _copy_tree(src: Path, dst: Path) -> Path:
    shutil.copytree(src, dst)
    return dst


def test_static_fixture_tree_with_v1_cgroupfs(tmp_path):
    cg = _copy_tree(FIXTURES / "cgroup_v1", tmp_path / "cg")
    s = Sampler(SamplerConfig(proc_path=str(FIXTURES / "proc"), cgroup_path=str(cg)))
    first = s.sample(now=1.0)
    pids = sorted(p.pid for p in first.processes)
    assert pids == [1, 2, 4242, 4244, 4246, 12568]  # 4245 and 4247 skipped
    docker = first.containers["/docker/abc123"]  # "a) (b" and its zombie child
    assert docker.process_count == 2
    assert docker.source_memory == "cgroupfs" and docker.memory_bytes == 52428800
    assert docker.limit_cpu_cores == 1.5 and docker.limit_memory_bytes == 134217728
    assert docker.cpu_cores is None
    (cg / "cpu,cpuacct/docker/abc123/cpuacct.usage").write_text("3750000000\n")
    (cg / "cpu,cpuacct/docker/abc123/cpu.stat").write_text(
        "nr_periods 60\nnr_throttled 9\nthrottled_time 400000000\n"
    )
    (cg / "memory/docker/abc123/memory.max_usage_in_bytes").write_text("99999999\n")
    (cg / "memory/docker/abc123/memory.oom_control").write_text("oom_kill 3\n")
    second = s.sample(now=2.5)
    docker = second.containers["/docker/abc123"]
    assert docker.source_cpu == "cgroupfs"
    assert docker.cpu_seconds == pytest.approx(0.75)
    assert docker.cpu_cores == pytest.approx(0.5)
    assert docker.cpu_percent_of_limit == pytest.approx(0.5 / 1.5 * 100)
    assert docker.cpu_throttled_seconds == pytest.approx(0.3)
    assert docker.throttled_periods_percent == pytest.approx(40.0)
    assert docker.oom_kills == 1
    assert docker.memory_peak_bytes == 99999999  # the high-water mark rose during the run
    # The v2 process has no v1 directory here, and the root is never a container's.
    assert second.containers["0123456789ab"].source_memory == "procfs"
    host = second.containers["host"]
    assert host.source_cpu == host.source_memory == "procfs"


def test_static_fixture_tree_with_v2_cgroupfs(tmp_path):
    cg = _copy_tree(FIXTURES / "cgroup_v2", tmp_path / "cg")
    s = Sampler(
        SamplerConfig(
            proc_path=str(FIXTURES / "proc"),
            cgroup_path=str(cg),
            limits={"0123456789ab": Limits(cpu_cores=4.0)},
        )
    )
    s.sample(now=1.0)
    k8s = next(cg.glob("kubepods.slice/*/*/cri-containerd-*.scope"))
    # 1 CPU-s in 2 s: the container's quota (cpu.max 50000 100000) is half a core.
    (k8s / "cpu.stat").write_text(
        "usage_usec 6000000\nnr_periods 120\nnr_throttled 15\nthrottled_usec 450000\n"
    )
    second = s.sample(now=3.0)
    node = second.containers["0123456789ab"]
    assert node.source_cpu == node.source_memory == "cgroupfs"
    assert node.cpu_cores == pytest.approx(0.5) and not node.cpu_capped_cgroup
    assert node.memory_bytes == 104857600
    # CGROUP_LIMITS names the CPU; memory.max supplies the memory limit.
    assert node.limit_cpu_cores == 4.0 and node.limit_memory_bytes == 268435456
    assert node.memory_percent_of_limit == pytest.approx(104857600 / 268435456 * 100)
    assert node.cpu_throttled_seconds == pytest.approx(0.2)
    assert node.throttled_periods_percent == pytest.approx(25.0)
    assert node.oom_kills == 0
    assert node.memory_peak_bytes is None  # memory.peak did not rise during the run
    assert node.pressure["memory"]["some"]["avg10"] == 1.5
    record = second.record()
    assert record["pressure"]["cpu"]["some"]["total_usec"] >= 0  # /proc/pressure of the tree


def test_static_fixture_tree_with_hybrid_cgroupfs():
    s = Sampler(
        SamplerConfig(proc_path=str(FIXTURES / "proc"), cgroup_path=str(FIXTURES / "cgroup_hybrid"))
    )
    s.sample(now=1.0)
    second = s.sample(now=2.0)
    sandbox = second.containers["/process_api/ff379a803c448eb3ed260213ea3d5b72"]
    # Memory from the v1 memory controller; CPU has only the machine's root: procfs.
    assert sandbox.source_memory == "cgroupfs" and sandbox.source_cpu == "procfs"
    assert sandbox.memory_bytes == int(
        (
            FIXTURES
            / "cgroup_hybrid/memory/process_api/ff379a803c448eb3ed260213ea3d5b72/memory.usage_in_bytes"
        )
        .read_text()
        .strip()
    )
    assert sandbox.cpu_cores == 0.0


def test_cgroup_shared_with_resmon_or_the_command_is_not_used(tmp_path):
    root = tmp_path / "cg"
    (root / "job").mkdir(parents=True)
    (root / "cgroup.controllers").write_text("cpu memory\n")
    (root / "job" / "cgroup.type").write_text("domain\n")
    (root / "job" / "cpu.stat").write_text("usage_usec 100\n")
    (root / "job" / "memory.current").write_text("123456789\n")
    fp, s = make(tmp_path, cgroup_path=str(root), exclude_pids=frozenset({50}))
    fp.add(10, "job", cgroup="0::/job\n")
    clock = Clock(fp, s)
    only_job = clock.sample()
    assert only_job.containers["/job"].source_memory == "cgroupfs"
    clock.tick()
    fp.add(50, "resmon", cgroup="0::/job\n")  # resmon now shares the cgroup
    shared = clock.sample()
    job = shared.containers["/job"]
    assert job.source_memory == "procfs" and job.memory_bytes == 100 * PAGE


def test_nested_cgroup_of_another_container_blocks_the_parent(tmp_path):
    root = tmp_path / "cg"
    for d in ("pod", "pod/sidecar"):
        (root / d).mkdir(parents=True)
        (root / d / "cgroup.type").write_text("domain\n")
        (root / d / "memory.current").write_text("1000000\n")
    (root / "cgroup.controllers").write_text("memory\n")
    fp, s = make(tmp_path, cgroup_path=str(root), process_map={"side": "sidecar"})
    fp.add(10, "main", cgroup="0::/pod\n")
    fp.add(11, "side", cgroup="0::/pod/sidecar\n")
    sample = Clock(fp, s).sample()
    assert sample.containers["/pod"].source_memory == "procfs"
    assert sample.containers["sidecar"].source_memory == "cgroupfs"


# --- live /proc --------------------------------------------------------------------------

BUSY = "import time\nend = time.time() + 20\nwhile time.time() < end: pass\n"
# Burns a fixed amount of CPU time, however loaded the machine is.
BURN = "import time\nwhile time.process_time() < {seconds}: pass\n"


def _cpu_seconds_of(pid: int) -> float:
    return procfs.read_pid_stat(pid).own_ticks / TICK


def test_live_busy_child_is_near_one_core():
    """A busy loop is near 100 % (one core) when it gets a core.  The machine is shared,
    so the figure is checked against the CPU time the kernel gave the child over the
    same window, and must be near 100 % whenever that was."""
    child = subprocess.Popen([sys.executable, "-c", BUSY])
    try:
        s = Sampler(SamplerConfig(exclude_pids=frozenset({os.getpid()})))
        time.sleep(0.2)
        s.sample()
        t0, c0 = time.monotonic(), _cpu_seconds_of(child.pid)
        time.sleep(0.5)
        sample = s.sample()
        t1, c1 = time.monotonic(), _cpu_seconds_of(child.pid)
        given = (c1 - c0) / (t1 - t0) * 100
        me = next(p for p in sample.processes if p.pid == child.pid)
        print(f"busy child: resmon {me.cpu_percent:.1f} %, kernel over the window {given:.1f} %")
        assert me.cpu_percent == pytest.approx(given, abs=12.0)
        assert me.cpu_percent <= 105.0
        if given >= 90.0:
            assert me.cpu_percent >= 80.0
        assert me.cpu_percent >= 25.0  # even on a busy two-core machine
        assert me.rss_bytes > 1_000_000
        assert os.getpid() not in {p.pid for p in sample.processes}
        assert sample.cpu_total_percent is not None and sample.cpu_total_percent > 25.0
    finally:
        child.kill()
        child.wait()


def test_live_sample_on_this_machine_uses_cgroupfs_only_where_exclusive():
    s = Sampler(SamplerConfig(exclude_pids=frozenset({os.getpid()})))
    s.sample()
    sample = s.sample()
    mine = procfs.read_pid_cgroup(os.getpid())
    for c in sample.containers.values():
        assert c.memory_bytes >= 0 and c.cpu_seconds >= 0
    host = sample.containers.get("host")
    if host is not None:
        # The root cgroup is the whole machine: never a container's counters.
        assert host.source_cpu == host.source_memory == "procfs"
    # Our own cgroup holds resmon (this test process): its kernel counters are refused.
    own = [c for c in sample.containers.values() if c.name == mine.path]
    for c in own:
        assert c.source_memory == "procfs"


SHELL_LOOP = """
i=0
while [ $i -lt 30 ]; do
  awk 'BEGIN { for (i = 0; i < 500000; i++) s += i }'
  i=$((i + 1))
done
cat /proc/$$/stat > "$1"
"""


@pytest.mark.slow
def test_live_shell_loop_of_short_processes_is_counted(tmp_path):
    """Every awk lives far less than the interval; the naive sum would see ~nothing."""
    truth_file = tmp_path / "shell.stat"
    shell = subprocess.Popen(["sh", "-c", SHELL_LOOP, "sh", str(truth_file)])
    s = Sampler(
        SamplerConfig(
            command_pid=shell.pid, command_name="loop", exclude_pids=frozenset({os.getpid()})
        )
    )
    s.sample()
    history = []
    while shell.poll() is None:
        time.sleep(0.25)
        history.append(s.sample().containers["loop"].cpu_seconds)
    # The shell has been reaped by us (outside every group): its last reading stays.
    final = s.sample().containers["loop"].cpu_seconds
    st_ = procfs.parse_stat(truth_file.read_bytes())
    truth = st_.total_ticks / TICK
    print(f"shell loop: truth {truth:.2f} s, resmon {final:.2f} s")
    assert history == sorted(history)
    assert truth > 0.3
    # Lost at most the tail after the last reading (one interval's worth of one core).
    assert truth - 0.3 <= final <= truth + 0.05


@pytest.mark.slow
def test_live_orphan_whose_reaper_is_outside_stays_counted(tmp_path):
    """The command backgrounds a busy child and exits: the child is orphaned (reaped by
    init, outside the group); the group's CPU stays monotone and keeps its time.

    The machine is shared, so the figure is checked against the CPU time the kernel
    gave the orphan: read just before each sample (so at most what the sampler then
    saw), and as the orphan's own total when it exits."""
    done = tmp_path / "orphan.cpu"
    burn = (
        "import time\nwhile time.process_time() < 0.8: pass\n"
        f"open({str(done)!r}, 'w').write(str(time.process_time()))\n"
    )
    shell = subprocess.Popen(["sh", "-c", f'{sys.executable} -c "{burn}" & sleep 0.4'])
    s = Sampler(
        SamplerConfig(
            command_pid=shell.pid, command_name="cmd", exclude_pids=frozenset({os.getpid()})
        )
    )
    s.sample()
    history, orphan_seen = [], False
    orphan: int | None = None
    seen_cpu = 0.0  # the orphan's CPU seconds when the sampler last saw it alive
    deadline = time.time() + 30
    while time.time() < deadline:
        time.sleep(0.1)
        shell.poll()
        before = procfs.read_pid_stat(orphan) if orphan is not None else None
        sample = s.sample()
        c = sample.containers["cmd"]
        history.append(c.cpu_seconds)
        pythons = [p for p in sample.processes if p.container == "cmd" and p.name != "sh"]
        if pythons:
            orphan = pythons[0].pid
            if before is not None and before.pid == orphan:
                seen_cpu = before.own_ticks / TICK
        if pythons and any(p.ppid != shell.pid for p in pythons):
            orphan_seen = True
        if shell.returncode is not None and not pythons and c.process_count == 0:
            break
    assert orphan_seen, "the busy child should have been seen after its parent exited"
    assert history == sorted(history)
    truth = float(done.read_text())  # the orphan's whole CPU time, as it exited
    print(f"orphan: burned {truth:.2f} s, last seen at {seen_cpu:.2f} s, cmd {history[-1]:.2f} s")
    assert truth >= 0.8 and seen_cpu > 0.0
    # Everything observed before its last sighting stays counted after it is gone
    # (lost: only its tail after that reading) ...
    assert history[-1] >= seen_cpu - 1 / TICK
    # ... and nothing is counted twice (the shell and its sleep add a few ticks at most).
    assert history[-1] <= truth + 0.1


def test_live_v1_memory_controller_feeds_the_container():
    """This machine is a hybrid host whose v1 memory controller is readable.  With no
    PID excluded, the cgroup holding this test holds only its own session's processes,
    so the sampler takes that container's memory from memory.usage_in_bytes, and sees
    64 MiB touched between two samples."""
    from resmon.cgroupfs import V1_MEMORY, CgroupFS

    fs = CgroupFS("/sys/fs/cgroup")
    mine = procfs.read_pid_cgroup(os.getpid())
    path = mine.v1.get("memory")
    if V1_MEMORY not in fs.mounts or not path or path == "/" or mine.path != path:
        pytest.skip("needs a v1 memory cgroup of its own (hybrid or v1 host)")
    usage_file = Path(fs.directory(V1_MEMORY, path)) / "memory.usage_in_bytes"
    s = Sampler(SamplerConfig())
    first = s.sample().containers[path]
    assert first.source_memory == "cgroupfs"
    block = bytearray(64 * 1024 * 1024)
    for i in range(0, len(block), 4096):
        block[i] = 1
    second = s.sample().containers[path]
    direct = int(usage_file.read_text())
    assert second.source_memory == "cgroupfs"
    assert second.memory_bytes >= first.memory_bytes + 48 * 1024 * 1024
    assert abs(second.memory_bytes - direct) <= 16 * 1024 * 1024
    # CPU: this cgroup has only the machine's root in the cpu hierarchies: procfs.
    assert second.source_cpu == "procfs"
    del block
