"""CPU figures that hold at short intervals: rates only over meaningful spans, a
short-lived process's percent over the part it lived, a mapped name for the group's
whole run, and a fork-heavy workload sampled every 100 ms against the kernel's rusage.
(A child's time counted once whichever way its reap falls between two stat reads:
test_cpu_reap_races.py.)
"""

from __future__ import annotations

import os
import subprocess
import sys
import time

import orjson
import pytest
from fixtures.cpu_sampling import TICK, Clock, make

from resmon.collect.sampler import MIN_RATE_SECONDS, MIN_RATE_TICKS, Sampler, SamplerConfig

A = "0::/groupA\n"
B = "0::/groupB\n"


# --- rates only over meaningful spans ---------------------------------------------------


def test_a_3ms_gap_gives_no_rate_and_the_next_rate_spans_both_gaps(tmp_path):
    fp, s = make(tmp_path)
    fp.add(10, "worker", cgroup=A, starttime=1)
    fp.add(11, "other", cgroup=B, starttime=1)
    clock = Clock(fp, s)
    clock.sample()
    clock.tick(1.0)
    fp.run(10, 50)
    rated = clock.sample()
    assert clock.rate_spans[-1] == pytest.approx(1.0)
    assert rated.containers["/groupA"].cpu_cores == pytest.approx(0.5)
    # 3 ms later: the worker's time grew by one tick (a tick fired while it ran).
    clock.t += 0.003
    fp.run(10, 1)
    short = clock.sample()
    assert short.elapsed == pytest.approx(0.003)
    assert clock.rate_spans[-1] is None
    assert short.cpu_total_percent is None
    assert all(p.cpu_percent is None for p in short.processes)
    assert short.top_cpu == []
    # The tick counts at once in the cumulative figure ...
    assert short.containers["/groupA"].cpu_seconds == pytest.approx(0.51)
    # ... and no container reads as more cores than it used (1 tick in 3 ms is 3.3 cores).
    for c in short.containers.values():
        assert c.cpu_cores is None or c.cpu_cores <= 1.0 + 1e-9, c
    clock.tick(1.0)
    fp.run(10, 49)
    fp.run(11, 20)
    after = clock.sample()
    assert clock.rate_spans[-1] == pytest.approx(1.003)
    worker = next(p for p in after.processes if p.pid == 10)
    other = next(p for p in after.processes if p.pid == 11)
    assert worker.cpu_percent == pytest.approx(50 / 1.003)
    assert other.cpu_percent == pytest.approx(20 / 1.003)
    assert after.cpu_total_percent is not None
    assert after.containers["/groupA"].cpu_seconds == pytest.approx(1.0)
    for c in after.containers.values():
        assert c.cpu_cores is None or c.cpu_cores <= 0.51, c


def test_gaps_merge_until_they_are_long_enough(tmp_path):
    fp, s = make(tmp_path)
    fp.add(10, "worker", cgroup=A, starttime=1)
    clock = Clock(fp, s)
    clock.sample()
    gap = (MIN_RATE_TICKS - 1) / TICK / 2  # two of these are still too short
    for _ in range(2):
        clock.t += gap
        fp.run(10, 1)
        assert all(p.cpu_percent is None for p in clock.sample().processes)
    assert clock.rate_spans == [None, None, None]
    clock.t += MIN_RATE_SECONDS
    fp.run(10, 2)
    last = clock.sample()
    span = 2 * gap + MIN_RATE_SECONDS
    assert clock.rate_spans[-1] == pytest.approx(span)
    [worker] = [p for p in last.processes if p.pid == 10]
    assert worker.cpu_percent == pytest.approx(4 * 100 / TICK / span)


def test_an_unchanged_process_after_an_unrated_sample_keeps_what_it_ran(tmp_path):
    """It ran just before the short gap's reading, then slept: its stat line is the same
    at the next reading, and its percent is still over the whole merged span."""
    fp, s = make(tmp_path)
    fp.add(10, "worker", cgroup=A, starttime=1)
    clock = Clock(fp, s)
    clock.sample()
    clock.tick(1.0)
    clock.sample()
    clock.t += 0.002
    fp.run(10, 30)
    clock.sample()
    clock.tick(1.0)
    after = clock.sample()
    [worker] = [p for p in after.processes if p.pid == 10]
    assert worker.cpu_percent == pytest.approx(30 / 1.002)
    # The next interval: it did nothing.
    clock.tick(1.0)
    [worker] = [p for p in clock.sample().processes if p.pid == 10]
    assert worker.cpu_percent == 0.0


# --- a short-lived process's percent ---------------------------------------------------


@pytest.mark.parametrize("interval", [1.0, 5.0])
def test_a_process_born_in_the_interval_is_rated_over_the_part_it_lived(tmp_path, interval):
    fp, s = make(tmp_path)
    fp.add(10, "make", cgroup=A, starttime=1)
    clock = Clock(fp, s)
    clock.sample()
    clock.tick(interval)
    fp.run(10, 10)
    # cc1 started 0.2 s before this reading and has run all the time since.
    fp.add(11, "cc1", ppid=10, cgroup=A, starttime=fp.uptime_ticks - 20)
    fp.run(11, 20)
    # A process that started this very tick and already shows a tick: the floor.
    fp.add(12, "sh", ppid=10, cgroup=A, starttime=fp.uptime_ticks)
    fp.run(12, 1)
    sample = clock.sample()
    percent = {p.pid: p.cpu_percent for p in sample.processes}
    assert percent[11] == pytest.approx(100.0)
    assert percent[12] == pytest.approx(1 * 100 / TICK / MIN_RATE_SECONDS)
    assert percent[10] == pytest.approx(10 / interval)  # lived the whole interval
    assert [p.pid for p in sample.top_cpu][:2] == [11, 12]
    # The next interval, cc1 is rated over all of it.
    clock.tick(interval)
    fp.run(11, 10)
    percent = {p.pid: p.cpu_percent for p in clock.sample().processes}
    assert percent[11] == pytest.approx(10 / interval)


# --- a mapped name for the group's whole run -----------------------------------------------

DOCKER_ID = "4f1b" * 16


def test_renamed_is_set_exactly_when_a_group_gets_its_mapped_name(tmp_path):
    fp, s = make(tmp_path, process_map={"node": "runner", "gitea-runner": "forgejo"})
    fp.add(10, "bash", cgroup=A, starttime=1)
    fp.add(20, "bash", cgroup=f"0::/docker/{DOCKER_ID}\n", starttime=1)
    fp.add(21, "bash", cgroup=f"0::/system.slice/docker-{DOCKER_ID}.scope\n", starttime=1)
    clock = Clock(fp, s)
    first = clock.sample()
    assert first.renamed == {}
    assert set(first.containers) == {"/groupA", DOCKER_ID[:12], "host"}
    clock.tick()
    assert clock.sample().renamed == {}
    clock.tick()
    fp.add(11, "node", ppid=10, cgroup=A)
    fp.run(11, 5)
    renamed = clock.sample()
    assert renamed.renamed == {"/groupA": "runner"}
    assert "/groupA" not in renamed.containers
    assert {p.container for p in renamed.processes if p.pid in (10, 11)} == {"runner"}
    clock.tick()
    fp.exit_and_reap(11)
    again = clock.sample()
    assert again.renamed == {} and "runner" in again.containers
    # One of two groups carrying one name gets a mapped name: the old name stays in use,
    # so nothing is renamed (the other group's figures are still under it).
    clock.tick()
    fp.add(22, "gitea-runner", ppid=21, cgroup=f"0::/system.slice/docker-{DOCKER_ID}.scope\n")
    split = clock.sample()
    assert split.renamed == {}
    assert {"forgejo", DOCKER_ID[:12]} <= set(split.containers)
    assert clock.sample().renamed == {}


def test_a_group_absent_for_a_while_is_renamed_when_it_returns_with_its_mapped_name(tmp_path):
    fp, s = make(tmp_path, process_map={"node": "runner"})
    fp.add(10, "bash", cgroup=A, starttime=1)
    clock = Clock(fp, s)
    clock.sample()
    clock.tick()
    fp.exit_and_reap(10)
    assert "/groupA" not in clock.sample().containers
    clock.tick()
    fp.add(11, "node", cgroup=A)
    assert clock.sample().renamed == {"/groupA": "runner"}


# --- live: a fork-heavy Python workload against the kernel's rusage ---------------------

WORKLOAD = """
import multiprocessing as mp, time

def burn(seconds):
    end = time.process_time() + seconds
    while time.process_time() < end:
        pass

if __name__ == "__main__":
    ctx = mp.get_context("fork")
    for i in range(24):
        workers = [ctx.Process(target=burn, args=(0.02 + 0.03 * ((i + j) % 3),)) for j in range(2)]
        for w in workers:
            w.start()
        burn(0.005)
        for w in workers:
            w.join()
    with ctx.Pool(2, maxtasksperchild=1) as pool:
        pool.map(burn, [0.02 + 0.01 * (k % 4) for k in range(16)])
"""


def _within(sampled: float, truth: float) -> bool:
    return abs(sampled - truth) <= 0.02 * truth + 2 / TICK


@pytest.mark.slow
def test_live_fork_workload_sampled_every_100ms_matches_the_wait_rusage(tmp_path):
    """Sampled by the Sampler itself every 100 ms, the command read last as a zombie (its
    cutime+cstime then holds every child), before the wait's rusage is applied."""
    script = tmp_path / "workload.py"
    script.write_text(WORKLOAD)
    child = subprocess.Popen([sys.executable, str(script)])
    s = Sampler(
        SamplerConfig(
            command_pid=child.pid, command_name="cmd", exclude_pids=frozenset({os.getpid()})
        )
    )
    seen = [s.sample().containers["cmd"].cpu_seconds]
    while os.waitid(os.P_PID, child.pid, os.WEXITED | os.WNOHANG | os.WNOWAIT) is None:
        time.sleep(0.1)
        seen.append(s.sample().containers["cmd"].cpu_seconds)
    seen.append(s.sample().containers["cmd"].cpu_seconds)  # the zombie
    _, status, rusage = os.wait4(child.pid, 0)
    child.returncode = os.waitstatus_to_exitcode(status)
    truth = rusage.ru_utime + rusage.ru_stime
    print(f"fork workload: rusage {truth:.3f} s, sampled {seen[-1]:.3f} s, {len(seen)} samples")
    assert child.returncode == 0
    assert truth > 1.0
    assert seen == sorted(seen)
    assert _within(seen[-1], truth), (seen[-1], truth)


@pytest.mark.slow
def test_live_resmon_collect_at_100ms_matches_the_wait_rusage(tmp_path):
    script = tmp_path / "workload.py"
    script.write_text(WORKLOAD)
    out = tmp_path / "records.jsonl"
    proc = subprocess.run(
        [sys.executable, "-m", "resmon", "collect", "--interval=100ms", "--samples"]
        + [f"--output={out}", "--", sys.executable, str(script)],
        capture_output=True,
        timeout=120,
    )
    assert proc.returncode == 0, proc.stderr.decode()
    records = [orjson.loads(line) for line in out.read_bytes().splitlines() if line.strip()]
    summary = records[-1]
    assert summary["msg"] == "run_summary"
    truth = summary["command"]["rusage_cpu_seconds"]
    samples = [r for r in records if r["msg"] == "metrics_collected"]
    series = [
        next(c for c in r["containers"] if c["name"] == "command")["cpu_seconds"] for r in samples
    ]
    sampled = summary["command"].get("sampled_cpu_seconds", series[-1])
    print(f"resmon collect: rusage {truth:.3f} s, sampled {sampled:.3f} s, {len(samples)} samples")
    assert truth > 1.0
    assert series == sorted(series)
    assert _within(series[-1], truth), (series[-1], truth)
    assert _within(sampled, truth), (sampled, truth)
    # No container reads as more cores than the machine has (plus a tick's worth).
    cpus = os.cpu_count() or 1
    for r in samples:
        for c in r["containers"]:
            cores = c.get("cpu_cores")
            assert cores is None or cores <= cpus + 0.1, (r["elapsed_seconds"], c)
