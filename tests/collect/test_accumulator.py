"""Run statistics: the wire contract's run_summary from samples, compactly."""

from __future__ import annotations

import os
import random
import subprocess
import sys
import time
import tracemalloc

from resmon import procfs
from resmon.collect.accumulator import RunAccumulator
from resmon.collect.sampler import Sampler, SamplerConfig
from resmon.collect.samples import ContainerSample, ProcessSample, Sample
from resmon.schema import parse_time, validate_push
from resmon.stats import STAT_KEYS


def container(
    name: str, cpu: float | None, mem: int, seconds: float = 0.0, **kw
) -> ContainerSample:
    return ContainerSample(
        name=name, cpu_cores=cpu, memory_bytes=mem, process_count=1, cpu_seconds=seconds, **kw
    )


def sample(
    t: float,
    cpu: float | None = 10.0,
    mem: int = 1000,
    containers: list[ContainerSample] = (),
    processes: list[ProcessSample] = (),
    **kw,
) -> Sample:
    return Sample(
        timestamp=t,
        elapsed=None if cpu is None else 1.0,
        cpu_total_percent=cpu,
        mem_total_bytes=4000,
        mem_used_bytes=mem,
        mem_used_percent=mem / 4000 * 100,
        cpu_seconds_total=t,
        top_cpu=[],
        top_mem=[],
        processes=list(processes),
        containers={c.name: c for c in containers},
        **kw,
    )


def test_no_samples_no_summary():
    assert RunAccumulator().run_summary() is None


def test_one_sample_every_statistic_is_the_value():
    acc = RunAccumulator()
    acc.add(sample(1_700_000_000.0, cpu=None, mem=1234, containers=[container("a", None, 77)]))
    s = acc.run_summary()
    assert s["sample_count"] == 1 and s["duration_seconds"] == 0
    assert s["mem_used_bytes"] == dict.fromkeys(STAT_KEYS, 1234.0)
    # The first sample has no CPU delta: zeros, not a made-up figure.
    assert s["cpu_total_percent"] == dict.fromkeys(STAT_KEYS, 0.0)
    assert s["containers"][0]["memory_bytes"] == dict.fromkeys(STAT_KEYS, 77.0)
    assert s["containers"][0]["cpu_cores"] == dict.fromkeys(STAT_KEYS, 0.0)


def test_design_vector_one_to_twenty():
    acc = RunAccumulator()
    for i in range(1, 21):
        acc.add(sample(1000.0 + i, cpu=float(i), mem=i))
    s = acc.run_summary()
    expected = {"peak": 20, "p99": 19, "p95": 19, "p75": 15, "p50": 10, "avg": 10.5}
    assert s["cpu_total_percent"] == expected
    assert s["mem_used_bytes"] == expected
    assert s["duration_seconds"] == 19
    assert parse_time(s["end_time"]).timestamp() == 1020.0
    assert s["start_time"].endswith("Z")


def test_containers_in_name_order_over_the_samples_they_were_seen_in():
    acc = RunAccumulator()
    acc.add(
        sample(0, cpu=None, containers=[container("zeta", None, 100), container("alpha", None, 5)])
    )
    acc.add(sample(1, containers=[container("zeta", 1.0, 300, 1.0)]))
    acc.add(
        sample(2, containers=[container("zeta", 3.0, 200, 4.0), container("alpha", 0.5, 7, 0.5)])
    )
    s = acc.run_summary()
    assert [c["name"] for c in s["containers"]] == ["alpha", "zeta"]
    alpha, zeta = s["containers"]
    # zeta: CPU over the two samples with a delta, memory over all three.
    assert zeta["cpu_cores"]["avg"] == 2.0 and zeta["cpu_cores"]["peak"] == 3.0
    assert zeta["memory_bytes"]["avg"] == 200.0 and zeta["memory_bytes"]["peak"] == 300.0
    assert zeta["cpu_seconds"] == 4.0
    assert alpha["cpu_cores"] == dict.fromkeys(STAT_KEYS, 0.5)
    assert alpha["memory_bytes"]["p50"] == 5.0
    assert s["cpu_seconds"] == 4.5  # sidecar mode: all containers


def test_additive_container_fields_and_kernel_peak():
    acc = RunAccumulator()
    kw = dict(limit_cpu_cores=1.5, limit_memory_bytes=1 << 30, source_memory="cgroupfs")
    acc.add(sample(0, containers=[container("c", 1.0, 500, 1.0, **kw)]))
    acc.add(
        sample(
            1,
            containers=[
                container(
                    "c",
                    1.2,
                    600,
                    2.2,
                    memory_peak_bytes=900,
                    cpu_throttled_seconds=0.3,
                    throttled_periods_percent=12.5,
                    oom_kills=1,
                    **kw,
                )
            ],
        )
    )
    (c,) = acc.run_summary()["containers"]
    assert c["limit_cpu_cores"] == 1.5 and c["limit_memory_bytes"] == 1 << 30
    assert c["cpu_throttled_seconds"] == 0.3 and c["throttled_periods_percent"] == 12.5
    assert c["oom_kills"] == 1
    # The kernel saw 900 bytes between samples: that is the peak.
    assert c["memory_bytes"]["peak"] == 900.0 and c["memory_peak_bytes"] == 900
    assert c["memory_bytes"]["p50"] == 500.0
    assert acc.sources() == {"c": {"cpu": ["procfs"], "memory": ["cgroupfs"]}}


def test_wrapper_mode_cpu_seconds_is_the_commands():
    acc = RunAccumulator()
    acc.add(
        sample(
            0,
            containers=[container("command", 0.5, 1, 2.5), container("host", 9.0, 1, 50.0)],
            command_container="command",
        )
    )
    assert acc.run_summary()["cpu_seconds"] == 2.5


def test_top_processes_keyed_by_pid_and_name():
    acc = RunAccumulator(top_n=2)
    p = ProcessSample
    acc.add(sample(0, processes=[p(1, "a", None, 100), p(2, "b", None, 50)]))
    acc.add(sample(1, processes=[p(1, "a", 50.0, 80), p(2, "b", 90.0, 60), p(3, "c", 10.0, 500)]))
    # pid 1 exec'd into another program: a new entry.
    acc.add(sample(2, processes=[p(1, "z", 70.0, 10), p(2, "b", 20.0, 40)]))
    s = acc.run_summary()
    assert s["top_cpu_processes"] == [
        {
            "pid": 2,
            "name": "b",
            "peak_cpu_percent": 90.0,
            "peak_mem_rss_bytes": 60,
            "container": "",
        },
        {
            "pid": 1,
            "name": "z",
            "peak_cpu_percent": 70.0,
            "peak_mem_rss_bytes": 10,
            "container": "",
        },
    ]
    assert s["top_mem_processes"] == [
        {
            "pid": 3,
            "name": "c",
            "peak_cpu_percent": 10.0,
            "peak_mem_rss_bytes": 500,
            "container": "",
        },
        {
            "pid": 1,
            "name": "a",
            "peak_cpu_percent": 50.0,
            "peak_mem_rss_bytes": 100,
            "container": "",
        },
    ]


def test_top_processes_exact_under_heavy_churn():
    """The table prunes dead processes outside the top N; the result equals brute force."""
    rng = random.Random(7)
    acc = RunAccumulator(top_n=5)
    brute: dict[tuple[int, str], list[float]] = {}
    next_pid = 100
    live = list(range(10, 20))
    for t in range(2000):
        live = [pid for pid in live if rng.random() > 0.2]
        while len(live) < 10:
            live.append(next_pid)
            next_pid += 1
        procs = [
            ProcessSample(pid, f"p{pid % 7}", rng.random() * 100, rng.randint(1, 10**6))
            for pid in live
        ]
        for proc in procs:
            entry = brute.setdefault((proc.pid, proc.name), [-1.0, 0.0])
            entry[0] = max(entry[0], proc.cpu_percent)
            entry[1] = max(entry[1], proc.rss_bytes)
        acc.add(sample(float(t), processes=procs))
    assert len(acc._top) < 200  # bounded by the live processes, not the ~4000 seen
    s = acc.run_summary()
    by_cpu = sorted(brute, key=lambda k: (-brute[k][0], k[0]))[:5]
    by_mem = sorted(brute, key=lambda k: (-brute[k][1], k[0]))[:5]
    assert [(p["pid"], p["name"]) for p in s["top_cpu_processes"]] == by_cpu
    assert [(p["pid"], p["name"]) for p in s["top_mem_processes"]] == by_mem
    for p in s["top_cpu_processes"] + s["top_mem_processes"]:
        peak_cpu, peak_rss = brute[(p["pid"], p["name"])]
        assert p["peak_cpu_percent"] == round(peak_cpu, 2)
        assert p["peak_mem_rss_bytes"] == peak_rss


def test_timeline_is_bounded_and_keeps_the_shape():
    acc = RunAccumulator(timeline_points=300)
    n = 1000
    for i in range(n):
        cpu = 80.0 if i < n // 2 else 20.0
        acc.add(sample(float(i), cpu=cpu, mem=1000 + i, containers=[container("c", cpu / 100, i)]))
    timeline = acc.run_summary()["timeline"]
    assert 150 <= len(timeline) <= 300
    ts = [p["t"] for p in timeline]
    assert ts[0] == 0.0 and ts == sorted(ts) and ts[-1] <= n - 1
    # Averages per bucket: the step from 80 % to 20 % survives.
    assert timeline[0]["cpu_percent"] == 80.0 and timeline[-1]["cpu_percent"] == 20.0
    assert timeline[0]["containers"]["c"]["cpu_cores"] == 0.8
    assert timeline[-1]["mem_used_bytes"] > timeline[0]["mem_used_bytes"]
    few = RunAccumulator()
    for i in range(3):
        few.add(sample(float(i), cpu=None if i == 0 else 5.0))
    points = few.run_summary()["timeline"]
    assert [p["t"] for p in points] == [0.0, 1.0, 2.0]
    assert points[0]["cpu_percent"] is None and points[1]["cpu_percent"] == 5.0


def test_memory_of_a_six_hour_run_at_one_second():
    """21,600 samples of 4 containers: the retained memory stays a few MiB (8 bytes a
    value per series) however many samples come."""
    names = ["runner", "postgres", "redis", "sidecar"]
    procs = [ProcessSample(pid, f"proc{pid}", 1.0, 1000 * pid) for pid in range(1, 40)]
    acc = RunAccumulator()
    tracemalloc.start()
    try:
        base = tracemalloc.get_traced_memory()[0]
        for i in range(21_600):
            containers = [container(n, 0.5 + (i % 7) / 10, 10**8 + i, float(i)) for n in names]
            acc.add(
                sample(
                    float(i),
                    cpu=float(i % 100),
                    mem=10**9 + i,
                    containers=containers,
                    processes=procs,
                )
            )
        grown = tracemalloc.get_traced_memory()[0] - base
    finally:
        tracemalloc.stop()
    values = 21_600 * (3 + 2 * len(names))  # series values kept
    print(
        f"6 h at 1 s, 4 containers: {grown / 2**20:.2f} MiB retained ({grown / values:.1f} B/value)"
    )
    assert grown < 3 * 2**20
    summary = acc.run_summary()
    assert len(summary["timeline"]) <= 300 and summary["sample_count"] == 21_600


def _own_seconds(pid: int) -> float:
    st = procfs.read_pid_stat(pid)
    assert st is not None
    return st.own_ticks / procfs.CLK_TCK


def test_summary_is_a_valid_push_from_a_real_run():
    """A busy child's peak in the run summary is what the kernel gave it.  The machine
    is shared (other processes may be busier), so the child's expected figure comes
    from its own /proc stat read around each sample, not from a fixed ranking."""
    child = subprocess.Popen(
        [sys.executable, "-c", "import time\nt=time.time()+10\nwhile time.time()<t: pass"]
    )
    given: list[float] = []  # the child's CPU percent over each window, from the kernel
    try:
        sampler = Sampler(SamplerConfig(exclude_pids=frozenset({os.getpid()}), top_n=3))
        acc = RunAccumulator(top_n=3)
        every = RunAccumulator(top_n=100_000)  # the same samples, every process ranked
        first_cpu = None
        t0 = c0 = 0.0
        for i in range(3):
            if i:
                time.sleep(0.3)
                # Read just after the previous sample and just before this one: a window
                # inside the sampler's own, so a floor for what it must report.
                t1, c1 = time.monotonic(), _own_seconds(child.pid)
                given.append((c1 - c0) / (t1 - t0) * 100)
            sample = sampler.sample()
            t0, c0 = time.monotonic(), _own_seconds(child.pid)
            first_cpu = c0 if first_cpu is None else first_cpu
            acc.add(sample)
            every.add(sample)
        last_cpu = c0
    finally:
        child.kill()
        child.wait()
    summary = acc.run_summary()
    payload = validate_push(
        {
            "execution": {
                "organization": "o",
                "repository": "o/r",
                "workflow": "w",
                "job": "j",
                "run_id": "1",
            },
            "run_summary": summary,
        }
    )
    assert payload.run_summary["sample_count"] == 3
    assert len(summary["top_cpu_processes"]) == 3
    assert len(summary["top_mem_processes"]) == 3
    ranked = every.run_summary()["top_cpu_processes"]
    # The top 3 are the first 3 of the full ranking, whoever they are on this machine.
    assert summary["top_cpu_processes"] == ranked[:3]
    [mine] = [p for p in ranked if p["pid"] == child.pid]
    expected = max(given)
    print(f"busy child: peak {mine['peak_cpu_percent']} %, kernel windows {given}")
    assert expected > 0.0
    # Each sampler window holds the test's window and ~10 ms more: a tick or two apart.
    assert mine["peak_cpu_percent"] >= expected - 10.0
    assert mine["peak_cpu_percent"] <= min(105.0, expected * 1.3 + 10.0)
    # The whole run's CPU seconds hold at least the child's own over the sampled span.
    assert summary["cpu_seconds"] >= (last_cpu - first_cpu) - 2 / procfs.CLK_TCK
