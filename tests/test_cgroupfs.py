"""cgroupfs: v2, v1 and hybrid fixture layouts, root refusal, and the live v1 memory controller."""

from __future__ import annotations

import os
from pathlib import Path

import pytest

from resmon import procfs
from resmon.cgroupfs import (
    V1_CPU,
    V1_CPUACCT,
    V1_MEMORY,
    V2,
    CgroupFS,
    parse_cpu_max,
    parse_memory_max,
    read_container,
)

FIXTURES = Path(__file__).parent / "fixtures"
CID = "0123456789abcdef" * 4
K8S = f"/kubepods.slice/kubepods-burstable.slice/kubepods-burstable-pod1234.slice/cri-containerd-{CID}.scope"
SANDBOX_GROUP = "/process_api/ff379a803c448eb3ed260213ea3d5b72"


def test_parsers():
    assert parse_cpu_max("50000 100000\n") == 0.5
    assert parse_cpu_max("200000 100000") == 2.0
    assert parse_cpu_max("max 100000") is None
    assert parse_cpu_max("") is None
    assert parse_memory_max("268435456\n") == 268435456
    assert parse_memory_max("max\n") is None
    assert parse_memory_max("9223372036854771712") is None  # v1 "unlimited"
    assert parse_memory_max("garbage") is None


def test_layouts():
    assert CgroupFS(str(FIXTURES / "cgroup_v2")).layout == "v2"
    assert CgroupFS(str(FIXTURES / "cgroup_v1")).layout == "v1"
    assert CgroupFS(str(FIXTURES / "cgroup_hybrid")).layout == "hybrid"
    assert CgroupFS(str(FIXTURES / "nowhere")).layout == "none"
    v1 = CgroupFS(str(FIXTURES / "cgroup_v1"))
    # cpu and cpuacct co-mounted as "cpu,cpuacct".
    assert v1.mounts[V1_CPU] == v1.mounts[V1_CPUACCT] == str(FIXTURES / "cgroup_v1" / "cpu,cpuacct")


def test_v2_container():
    fs = CgroupFS(str(FIXTURES / "cgroup_v2"))
    directory = fs.directory(V2, K8S)
    assert directory is not None
    r = read_container(fs, {V2: [directory]})
    assert r.cpu_usage_usec == 5_000_000
    assert (r.nr_periods, r.nr_throttled, r.throttled_usec) == (100, 10, 250_000)
    assert r.limit_cpu_cores == 0.5
    assert (r.memory_bytes, r.memory_peak_bytes, r.limit_memory_bytes) == (
        104857600,
        209715200,
        268435456,
    )
    assert r.oom_kills == 1
    assert set(r.pressure) == {"cpu", "memory", "io"}
    assert r.pressure["memory"]["some"].avg10 == 1.5


def test_v2_unlimited_and_no_cpu_controller():
    fs = CgroupFS(str(FIXTURES / "cgroup_v2"))
    directory = fs.directory(V2, "/system.slice/docker-" + "fedcba9876543210" * 4 + ".scope")
    r = read_container(fs, {V2: [directory]})
    assert r.cpu_usage_usec == 42 and r.memory_bytes == 4096
    assert r.limit_cpu_cores is None and r.limit_memory_bytes is None
    assert r.nr_periods is None and r.oom_kills is None and r.memory_peak_bytes is None


def test_v1_container():
    fs = CgroupFS(str(FIXTURES / "cgroup_v1"))
    dirs = {h: [fs.directory(h, "/docker/abc123")] for h in (V1_MEMORY, V1_CPUACCT, V1_CPU)}
    assert all(d[0] is not None for d in dirs.values())
    r = read_container(fs, dirs)
    assert r.cpu_usage_usec == 3_000_000  # cpuacct.usage is in ns
    assert (r.nr_periods, r.nr_throttled, r.throttled_usec) == (50, 5, 100_000)
    assert r.limit_cpu_cores == 1.5
    assert (r.memory_bytes, r.memory_peak_bytes, r.limit_memory_bytes) == (
        52428800,
        73400320,
        134217728,
    )
    assert r.oom_kills == 2


def test_true_roots_are_refused_everywhere():
    for layout in ("cgroup_v2", "cgroup_v1", "cgroup_hybrid"):
        fs = CgroupFS(str(FIXTURES / layout))
        for hierarchy in fs.mounts:
            assert fs.directory(hierarchy, "/") is None, (layout, hierarchy)


def test_namespace_root_is_accepted(tmp_path):
    # A container with its own cgroup namespace sees its cgroup as "/": that directory is
    # not the machine's root (it has cgroup.type), so its counters are the container's.
    (tmp_path / "cgroup.controllers").write_text("cpu memory\n")
    (tmp_path / "cgroup.type").write_text("domain\n")
    (tmp_path / "cpu.stat").write_text("usage_usec 7\n")
    (tmp_path / "memory.current").write_text("1234\n")
    fs = CgroupFS(str(tmp_path))
    directory = fs.directory(V2, "/")
    assert directory == str(tmp_path)
    r = read_container(fs, {V2: [directory]})
    assert (r.cpu_usage_usec, r.memory_bytes) == (7, 1234)


@pytest.mark.parametrize("path", ["/../other/cgroup", "relative", "/missing/dir", ""])
def test_unusable_paths(path):
    fs = CgroupFS(str(FIXTURES / "cgroup_v2"))
    assert fs.directory(V2, path) is None


def test_hybrid_fixture_memory_only():
    fs = CgroupFS(str(FIXTURES / "cgroup_hybrid"))
    assert fs.directory(V2, "/") is None  # unified root = the machine
    assert fs.directory(V1_CPUACCT, "/") is None
    memory = fs.directory(V1_MEMORY, SANDBOX_GROUP)
    assert memory is not None
    r = read_container(fs, {V1_MEMORY: [memory]})
    assert r.memory_bytes and r.memory_bytes > 0
    assert r.memory_peak_bytes >= r.memory_bytes
    assert r.limit_memory_bytes is None  # 9223372036854771712 = unlimited
    assert r.cpu_usage_usec is None and r.limit_cpu_cores is None


def test_counters_sum_over_several_directories(tmp_path):
    (tmp_path / "cgroup.controllers").write_text("cpu memory\n")
    for name, usage, mem in (("a", 10, 100), ("b", 5, 50)):
        d = tmp_path / name
        d.mkdir()
        (d / "cgroup.type").write_text("domain\n")
        (d / "cpu.stat").write_text(f"usage_usec {usage}\n")
        (d / "memory.current").write_text(f"{mem}\n")
        (d / "memory.peak").write_text(f"{mem * 2}\n")
        (d / "memory.max").write_text("1000\n")
    fs = CgroupFS(str(tmp_path))
    r = read_container(fs, {V2: [fs.directory(V2, "/a"), fs.directory(V2, "/b")]})
    assert (r.cpu_usage_usec, r.memory_bytes) == (15, 150)
    # A sum of peaks is not a peak, and two limits are not one.
    assert r.memory_peak_bytes is None and r.limit_memory_bytes is None


def _live_memory_path() -> str | None:
    info = procfs.read_pid_cgroup(os.getpid())
    if info is None:
        return None
    return info.v1.get("memory")


def test_live_v1_memory_controller_of_this_process():
    """On this machine (hybrid host) the v1 memory controller is readable: read our own
    cgroup and check it against what the kernel reports for our processes."""
    fs = CgroupFS("/sys/fs/cgroup")
    path = _live_memory_path()
    if fs.layout == "v2" or not path or path == "/":
        pytest.skip("this host has no v1 memory cgroup of its own for this process")
    directory = fs.directory(V1_MEMORY, path)
    assert directory is not None
    # Touch 64 MiB so the cgroup's usage must include it.  The cgroup is shared with
    # the machine's other processes, whose memory moves meanwhile (one CI run saw
    # usage grow by 35 MiB only): up to three tries, each reading before and after.
    grown = []
    for _ in range(3):
        block = bytearray()  # the previous try's block freed before the reading
        before = read_container(fs, {V1_MEMORY: [directory]}).memory_bytes
        block = bytearray(64 * 1024 * 1024)
        for i in range(0, len(block), 4096):
            block[i] = 1
        r = read_container(fs, {V1_MEMORY: [directory]})
        grown.append(r.memory_bytes - before)
        if grown[-1] >= 48 * 1024 * 1024:
            break
    assert grown[-1] >= 48 * 1024 * 1024, grown
    assert r.memory_peak_bytes >= r.memory_bytes
    rss = procfs.read_pid_stat(os.getpid()).rss_pages * procfs.PAGE_SIZE
    assert r.memory_bytes >= rss * 0.9
    assert r.oom_kills is not None and r.oom_kills >= 0
    del block
    # The machine-wide root is refused in every hierarchy this host has.
    for hierarchy in fs.mounts:
        assert fs.directory(hierarchy, "/") is None


def test_cpu_lists_and_online_cpus(tmp_path):
    from resmon.cgroupfs import online_cpus, parse_cpu_list

    assert parse_cpu_list("0-3,6\n") == 5
    assert parse_cpu_list("0\n") == 1
    assert parse_cpu_list("\n") is None and parse_cpu_list("x-y") is None
    cpu = tmp_path / "devices" / "system" / "cpu"
    cpu.mkdir(parents=True)
    (cpu / "online").write_text("0-1\n")
    assert online_cpus(str(tmp_path)) == 2
    assert online_cpus(str(tmp_path / "none")) is None
