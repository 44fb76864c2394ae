"""One definition per container per run, the job's figures, renames, CPU rates carried
and capped: the run summary's side of issue #12."""

from __future__ import annotations

import dataclasses
from pathlib import Path

import pytest
from fixtures.fakeproc import FakeProc, stat_line

from resmon import procfs
from resmon.collect.accumulator import RunAccumulator
from resmon.collect.sample_containers import ContainerFigures
from resmon.collect.sample_state import ProcessState, SampleWork
from resmon.collect.sampler import Sampler, SamplerConfig
from resmon.collect.samples import ContainerSample, ProcessSample, Sample
from resmon.procfs import CgroupInfo

TICK = procfs.CLK_TCK
PAGE = procfs.PAGE_SIZE
MIB = 1 << 20


def _cgroup_root(tmp_path: Path) -> Path:
    root = tmp_path / "cg"
    (root / "job").mkdir(parents=True)
    (root / "cgroup.controllers").write_text("cpu memory\n")
    (root / "job" / "cgroup.type").write_text("domain\n")
    (root / "job" / "cpu.stat").write_text("usage_usec 1000000\n")
    (root / "job" / "memory.current").write_text(f"{300 * MIB}\n")
    (root / "job" / "memory.peak").write_text(f"{300 * MIB}\n")
    return root


def _sampler(tmp_path: Path, root: Path) -> tuple[FakeProc, Sampler]:
    fp = FakeProc(tmp_path / "proc")
    fp.add(1, "init", ppid=0, cgroup="0::/\n", starttime=1)
    sampler = Sampler(
        SamplerConfig(proc_path=str(fp.root), cgroup_path=str(root), exclude_pids=frozenset({50}))
    )
    sampler._containers.use_proc_path(str(fp.root))
    return fp, sampler


def test_a_cgroup_that_stops_being_exclusive_gives_one_kind_for_the_run(tmp_path):
    """/job is the container's own for two samples, then resmon's own process joins
    it: each sample's own figure switches (cgroup 300 MiB, then RSS), the run
    reports one definition, RSS, for every sample, and one source."""
    root = _cgroup_root(tmp_path)
    fp, s = _sampler(tmp_path, root)
    fp.add(10, "job", cgroup="0::/job\n", rss=100 * MIB // PAGE)
    acc = RunAccumulator()
    t = 1000.0
    samples = []
    for step in range(4):
        if step == 2:
            fp.add(50, "resmon", cgroup="0::/job\n", rss=MIB // PAGE)
        fp.run(10, 50)
        fp.write(TICK)
        (root / "job" / "cpu.stat").write_text(f"usage_usec {1000000 + step * 500000}\n")
        samples.append(s.sample(now=t))
        acc.add(samples[-1])
        t += 1.0
        fp.advance(1.0, TICK)
    job = [x.containers["/job"] for x in samples]
    assert [c.source_memory for c in job] == ["cgroupfs", "cgroupfs", "procfs", "procfs"]
    summary = acc.run_summary()
    c = next(c for c in summary["containers"] if c["name"] == "/job")
    assert c["memory_kind"] == "rss" and c["cpu_source"] == "procfs"
    # Every sample counts as RSS: 100 MiB throughout, never the cgroup's 300 MiB.
    assert c["memory_bytes"]["p50"] == c["memory_bytes"]["avg"] == 100 * MIB
    assert c["memory_peak"]["figures"]["sampled_rss"] == 100 * MIB
    assert "sampled_cgroup" not in c["memory_peak"]["figures"]
    assert acc.sources()["/job"] == {"cpu": ["procfs"], "memory": ["procfs"]}
    points = [p["containers"]["/job"]["memory_bytes"] for p in summary["timeline"]]
    assert points == [100 * MIB] * 4


def test_an_exclusive_cgroup_is_the_kernels_figure_and_peak(tmp_path):
    root = _cgroup_root(tmp_path)
    fp, s = _sampler(tmp_path, root)
    fp.add(10, "job", cgroup="0::/job\n", rss=100 * MIB // PAGE)
    acc = RunAccumulator()
    for step in range(3):
        fp.run(10, 50)
        fp.write(TICK)
        (root / "job" / "cpu.stat").write_text(f"usage_usec {1000000 + step * 500000}\n")
        if step == 2:  # a peak between samples, in the kernel's high-water mark
            (root / "job" / "memory.peak").write_text(f"{450 * MIB}\n")
        acc.add(s.sample(now=1000.0 + step))
        fp.advance(1.0, TICK)
    summary = acc.run_summary()
    c = next(c for c in summary["containers"] if c["name"] == "/job")
    assert c["memory_kind"] == "cgroup" and c["cpu_source"] == "cgroupfs"
    assert c["cpu_seconds"] == 1.0  # the kernel's usage over the run
    assert c["cpu_cores"]["peak"] == 0.5
    peak = c["memory_peak"]
    assert peak["headline"] == peak["low"] == peak["high"] == 450 * MIB
    assert peak["basis"] == "cgroup_peak" and c["memory_bytes"]["peak"] == 450 * MIB
    assert c["memory_bytes"]["p50"] == 300 * MIB


# --- the accumulator alone ------------------------------------------------------


def container(name: str, cpu: float | None, mem: int | None, seconds: float, **kw):
    return ContainerSample(
        name=name, cpu_cores=cpu, memory_bytes=mem, process_count=1, cpu_seconds=seconds, **kw
    )


def sample(t: float, containers, processes=(), **kw) -> Sample:
    return Sample(
        timestamp=t,
        elapsed=1.0,
        cpu_total_percent=50.0,
        mem_total_bytes=8 * 1024 * MIB,
        mem_used_bytes=2 * 1024 * MIB,
        mem_used_percent=25.0,
        cpu_seconds_total=t,
        top_cpu=[],
        top_mem=[],
        processes=list(processes),
        containers={c.name: c for c in containers},
        **kw,
    )


def test_a_renamed_container_keeps_its_whole_run():
    """A group's first samples under its path, then its mapped name: the run's figures
    are the new name's, from the first sample on."""
    acc = RunAccumulator()
    path = "/system.slice/docker-abc.scope"
    p = ProcessSample(7, "postgres", 10.0, 50 * MIB, container=path)
    acc.add(sample(0, [container(path, None, 50 * MIB, 0.0)], [p]))
    acc.add(sample(1, [container(path, 0.5, 80 * MIB, 0.5)], [p]))
    q = ProcessSample(7, "postgres", 30.0, 60 * MIB, container="db")
    acc.add(sample(2, [container("db", 1.5, 60 * MIB, 2.0)], [q], renamed={path: "db"}))
    summary = acc.run_summary()
    assert [c["name"] for c in summary["containers"]] == ["db"]
    db = summary["containers"][0]
    assert db["cpu_seconds"] == 2.0
    assert db["cpu_cores"]["peak"] == 1.5 and db["cpu_cores"]["avg"] == 1.0
    assert db["memory_bytes"]["peak"] == 80 * MIB and db["memory_bytes"]["p50"] == 60 * MIB
    assert [list(p["containers"]) for p in summary["timeline"]] == [["db"]] * 3
    assert db["top_processes"][0]["pid"] == 7
    assert summary["top_cpu_processes"][0]["container"] == "db"
    assert acc.sources() == {"db": {"cpu": ["procfs"], "memory": ["procfs"]}}


def test_a_container_renamed_into_an_existing_one_is_summed_per_sample():
    acc = RunAccumulator()
    acc.add(sample(0, [container("/a", 1.0, 10, 1.0), container("runner", 2.0, 20, 2.0)]))
    acc.add(sample(1, [container("runner", 3.0, 40, 6.0)], renamed={"/a": "runner"}))
    runner = acc.run_summary()["containers"][0]
    assert runner["name"] == "runner"
    assert runner["cpu_cores"]["peak"] == 3.0 and runner["cpu_cores"]["p50"] == 3.0
    assert runner["memory_bytes"]["p50"] == 30  # 10 + 20 at the first sample
    assert runner["cpu_seconds"] == 6.0


def test_sidecar_job_is_every_container_summed_per_sample():
    acc = RunAccumulator(top_n=3)
    procs = [
        ProcessSample(1, "node", 90.0, 30 * MIB, container="runner"),
        ProcessSample(2, "postgres", 5.0, 200 * MIB, container="db"),
    ]
    acc.add(
        sample(
            0,
            [
                container("runner", 1.0, 100 * MIB, 1.0, limit_cpu_cores=2.0),
                container("db", 0.25, 200 * MIB, 0.5, limit_cpu_cores=1.0),
            ],
            procs,
        )
    )
    acc.add(
        sample(
            1,
            [
                container("runner", 2.0, 50 * MIB, 3.0, limit_cpu_cores=2.0),
                container("db", 0.5, 250 * MIB, 1.0, limit_cpu_cores=1.0),
            ],
            procs,
        )
    )
    summary = acc.run_summary()
    job = summary["job"]
    assert job["scope"] == "containers" and job["containers"] == ["db", "runner"]
    assert job["cpu_cores"]["peak"] == 2.5 and job["cpu_cores"]["p50"] == 1.25
    assert job["memory_bytes"]["peak"] == 300 * MIB and job["memory_bytes"]["p50"] == 300 * MIB
    assert job["cpu_seconds"] == summary["cpu_seconds"] == 4.0
    assert job["memory_kind"] == "rss"
    assert job["memory_peak"] == {
        "headline": 300 * MIB,
        "low": 300 * MIB,
        "high": 350 * MIB,
        "basis": "sampled",
    }
    assert job["limit_cpu_cores"] == 3.0 and job["limit_memory_bytes"] is None
    assert [(p["pid"], p["container"]) for p in summary["top_cpu_processes"]] == [
        (1, "runner"),
        (2, "db"),
    ]


def test_wrapper_job_is_the_commands_tree_with_its_rusage():
    """The command's container only: the host's processes are in no top list, the
    job's CPU is the wait's rusage plus the orphans', its memory range has ru_maxrss."""
    acc = RunAccumulator()
    mine = ProcessSample(30, "python3", 99.0, 2 * MIB, container="job")
    host = ProcessSample(900, "chromium", 150.0, 900 * MIB, container="host")
    for t in range(3):
        acc.add(
            sample(
                float(t),
                [container("job", 1.0, 2 * MIB, 1.0 + t), container("host", 3.0, GIB, 9.0)],
                [mine, host],
                command_container="job",
            )
        )
    acc.command_rusage(3.5, 518 * MIB, orphans_cpu_seconds=0.25)
    summary = acc.run_summary()
    assert [p["pid"] for p in summary["top_cpu_processes"]] == [30]
    assert [p["pid"] for p in summary["top_mem_processes"]] == [30]
    assert summary["top_mem_processes"][0]["container"] == "job"
    assert summary["cpu_seconds"] == 3.75
    job = summary["job"]
    assert job["scope"] == "command" and job["containers"] == ["job"]
    assert job["cpu_seconds"] == 3.75
    assert job["memory_peak"]["headline"] == 518 * MIB
    assert job["memory_peak"]["basis"] == "ru_maxrss"
    c = next(c for c in summary["containers"] if c["name"] == "job")
    assert c["cpu_seconds"] == 3.75
    assert c["memory_bytes"]["peak"] == 518 * MIB and c["memory_bytes"]["p50"] == 2 * MIB
    assert c["memory_peak"]["figures"]["ru_maxrss"] == 518 * MIB
    host_c = next(c for c in summary["containers"] if c["name"] == "host")
    assert "ru_maxrss" not in host_c["memory_peak"]["figures"]
    # The host's figures stay the machine's.
    assert summary["mem_used_bytes"]["peak"] == 2 * 1024 * MIB


GIB = 1024 * MIB


# --- CPU rates: carried over short gaps, capped at the CPUs a container can use ------


def _work(credit_ticks: int, rate_elapsed: float | None, elapsed: float = 1.0) -> SampleWork:
    st = procfs.parse_stat(stat_line(10, "busy", starttime=5).encode())
    state = ProcessState("/g", CgroupInfo("/g", "/g", {}), st, ("/g",))
    # Every field the figures do not read is None (the sampler's steps add fields).
    work = SampleWork(
        **{
            f.name: None
            for f in dataclasses.fields(SampleWork)
            if f.default is dataclasses.MISSING and f.default_factory is dataclasses.MISSING
        }
        | {"elapsed": elapsed, "rate_elapsed": rate_elapsed}
    )
    work.current[(10, 5)] = state
    work.group_members["/g"].append(state)
    work.group_credit["/g"] = credit_ticks
    work.group_names["/g"] = "c"
    return work


def test_a_sample_without_a_rate_carries_its_credit(tmp_path):
    figures = ContainerFigures(None, {}, None, proc_path=str(tmp_path))
    short = figures.make(_work(TICK // 2, None, elapsed=0.003))["c"]
    assert short.cpu_cores is None and short.cpu_seconds == pytest.approx(0.5)
    rated = figures.make(_work(TICK // 2, 1.003))["c"]
    assert rated.cpu_cores == pytest.approx(1.0 / 1.003)
    assert rated.cpu_seconds == pytest.approx(1.0)


def test_cores_never_exceed_the_cpus_a_container_can_use(tmp_path):
    figures = ContainerFigures(None, {}, None, proc_path=str(tmp_path))
    figures.online_cpus = 2
    burst = figures.make(_work(3 * TICK, 1.0))["c"]
    assert burst.cpu_cores == 2.0 and burst.cpu_capped_procfs
    assert burst.cpu_seconds == pytest.approx(3.0)  # every credit counts in the total
    after = figures.make(_work(0, 1.0))["c"]
    assert after.cpu_cores == pytest.approx(1.0) and not after.cpu_capped_procfs
    acc = RunAccumulator()
    for i, c in enumerate((burst, after)):
        acc.add(sample(float(i), [c]))
    summary = acc.run_summary()["containers"][0]
    assert summary["cpu_capped_samples"] == 1
    assert summary["cpu_cores"]["peak"] == 2.0 and summary["cpu_seconds"] == 3.0
