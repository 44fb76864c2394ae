"""procfs parsers: fixture trees with the nasty cases, property tests, and the live /proc."""

from __future__ import annotations

import contextlib
import os
import subprocess
import sys
import time
from pathlib import Path

import pytest
from fixtures.fakeproc import stat_line
from hypothesis import given, settings
from hypothesis import strategies as st

from resmon import procfs

FIXTURES = Path(__file__).parent / "fixtures"
PROC = str(FIXTURES / "proc")
SLEEP_PID = 12568  # a real `sleep` captured from the sandbox (hybrid cgroup host)


# --- fixture tree ------------------------------------------------------------------


def test_list_pids_ignores_non_numeric_entries():
    pids = procfs.list_pids(PROC)
    assert sorted(pids) == [1, 2, 4242, 4244, 4245, 4246, 4247, SLEEP_PID]


def test_list_pids_skips_non_ascii_digit_names(tmp_path):
    # '³' and '١٢' are str.isdigit() but int() refuses the first and reads the second
    # as 12; neither is a PID the kernel would write.
    for name in ("3", "³", "١٢", "12a", "40"):
        (tmp_path / name).mkdir()
    assert sorted(procfs.list_pids(str(tmp_path))) == [3, 40]


def test_name_with_parentheses_and_spaces():
    st_ = procfs.read_pid_stat(4242, PROC)
    assert st_ is not None
    assert st_.name == "a) (b"
    assert (st_.pid, st_.state, st_.ppid) == (4242, "R", 1)
    assert (st_.utime, st_.stime, st_.cutime, st_.cstime) == (250, 50, 30, 20)
    assert st_.total_ticks == 350 and st_.own_ticks == 300 and st_.children_ticks == 50
    assert (st_.num_threads, st_.starttime, st_.rss_pages) == (3, 5000, 2560)
    status = procfs.read_pid_status(4242, PROC)
    assert status == procfs.PidStatus("a) (b", 10240 * 1024, 19532 * 1024, 12000 * 1024, 3)
    assert procfs.read_pid_statm(4242, PROC) == procfs.PidStatm(4883, 2560)


def test_kernel_thread_has_no_rss():
    st_ = procfs.read_pid_stat(2, PROC)
    assert st_ is not None and st_.name == "kthreadd"
    assert st_.is_kernel_thread and st_.rss_pages == 0 and st_.ppid == 0
    status = procfs.read_pid_status(2, PROC)
    assert status is not None and status.name == "kthreadd"
    assert status.vm_rss_bytes is None and status.vm_size_bytes is None and status.threads == 1
    assert procfs.read_pid_statm(2, PROC) == procfs.PidStatm(0, 0)


def test_captured_real_process():
    st_ = procfs.read_pid_stat(SLEEP_PID, PROC)
    assert st_ is not None and st_.name == "sleep" and not st_.is_kernel_thread
    status = procfs.read_pid_status(SLEEP_PID, PROC)
    assert status is not None
    # stat's RSS (pages) and status's VmRSS agree on a real process, up to the
    # kernel's per-CPU RSS counter batching (read a moment apart).
    assert abs(status.vm_rss_bytes - st_.rss_pages * 4096) <= 0.25 * status.vm_rss_bytes
    assert status.threads == st_.num_threads == 1


def test_vanished_and_garbage_pids_are_none_not_errors():
    assert procfs.read_pid_stat(4245, PROC) is None  # directory without stat
    assert procfs.read_pid_stat(4247, PROC) is None  # truncated stat
    assert procfs.read_pid_stat(999999, PROC) is None  # no directory at all
    assert procfs.read_pid_status(999999, PROC) is None
    assert procfs.read_pid_statm(4245, PROC) is None
    assert procfs.read_pid_cgroup(999999, PROC) is None


def test_status_name_escapes():
    # The kernel escapes a newline and a backslash in status's Name: field.
    status = procfs.parse_status(b"Name:\ta\\nb\\\\c\nThreads:\t4\nVmRSS:\t  8 kB\n")
    assert status.name == "a\nb\\c" and status.threads == 4 and status.vm_rss_bytes == 8192
    # An escaped backslash followed by a plain 'n' is not a newline.
    assert procfs.parse_status(b"Name:\tx\\\\ny\n").name == "x\\ny"


def test_zombie_is_read_with_zero_rss():
    st_ = procfs.read_pid_stat(4246, PROC)
    assert st_ is not None and st_.state == "Z" and st_.rss_pages == 0 and st_.total_ticks == 10


def test_system_files():
    cpu = procfs.read_cpu_times(PROC)
    assert 0 < cpu.busy < cpu.total
    mem = procfs.read_meminfo(PROC)
    assert 0 < mem.used_bytes < mem.total_bytes
    assert procfs.read_uptime(PROC) > 0
    pressure = procfs.read_system_pressure(PROC)
    assert set(pressure) == {"cpu", "memory", "io"}
    assert pressure["memory"]["full"].total_usec >= 0


def test_cpu_line_busy_excludes_idle_and_iowait_and_guest():
    data = b"cpu  100 10 50 1000 40 5 5 3 20 2\ncpu0 1 1 1 1 1 1 1 1 1 1\n"
    times = procfs.parse_cpu_line(data)
    # total = user+nice+system+idle+iowait+irq+softirq+steal (guest is inside user)
    assert times.total == 100 + 10 + 50 + 1000 + 40 + 5 + 5 + 3
    assert times.busy == times.total - 1000 - 40
    # Old kernels with only four fields.
    assert procfs.parse_cpu_line(b"cpu 1 2 3 4\n") == procfs.CpuTimes(busy=6, total=10)
    with pytest.raises(ValueError):
        procfs.parse_cpu_line(b"intr 0\n")


def test_meminfo_fallback_without_memavailable():
    data = b"MemTotal: 1000 kB\nMemFree: 100 kB\nBuffers: 50 kB\nCached: 250 kB\n"
    mem = procfs.parse_meminfo(data)
    assert mem.total_bytes == 1000 * 1024 and mem.available_bytes == 400 * 1024
    assert mem.used_bytes == 600 * 1024
    with pytest.raises(ValueError):
        procfs.parse_meminfo(b"MemFree: 1 kB\n")


# --- /proc/PID/cgroup (the Go collector's cases, and hybrid hosts) ------------------------


@pytest.mark.parametrize(
    "content, expected",
    [
        ("0::/kubepods/pod-abc/container-123\n", "/kubepods/pod-abc/container-123"),
        ("0::/docker/abc123def456\n", "/docker/abc123def456"),
        (
            "12:blkio:/user.slice\n11:memory:/docker/abc123\n"
            "10:cpu,cpuacct:/docker/abc123\n9:pids:/docker/abc123\n",
            "/docker/abc123",
        ),
        ("11:memory:/docker/old-path\n0::/kubepods/new-path\n", "/kubepods/new-path"),
        ("", ""),
        ("0::/\n", "/"),
        # Hybrid host (this sandbox): the unified line is the root, memory names the group.
        (
            "9:name=systemd:/\n8:pids:/\n4:memory:/process_api/ff379a803c448eb3ed260213ea3d5b72\n"
            "2:cpuacct:/\n1:cpu:/\n0::/\n",
            "/process_api/ff379a803c448eb3ed260213ea3d5b72",
        ),
        # Hybrid with systemd: unified is specific, so it wins.
        (
            "4:memory:/system.slice\n0::/system.slice/docker-x.scope\n",
            "/system.slice/docker-x.scope",
        ),
        # All roots, v1 only.
        ("2:cpu,cpuacct:/\n1:memory:/\n", "/"),
        # Garbage lines are ignored.
        ("nonsense\n0::/a\n", "/a"),
    ],
)
def test_cgroup_path(content, expected):
    assert procfs.parse_cgroup(content.encode()).path == expected


def test_cgroup_keeps_controllers():
    info = procfs.read_pid_cgroup(4242, PROC)
    assert info is not None
    assert info.unified is None
    assert info.v1["memory"] == info.v1["cpu"] == info.v1["cpuacct"] == "/docker/abc123"
    assert info.v1["blkio"] == "/user.slice"
    hybrid = procfs.read_pid_cgroup(SLEEP_PID, PROC)
    assert hybrid.unified == "/" and hybrid.v1["cpuacct"] == "/"
    assert hybrid.path == hybrid.v1["memory"] == "/process_api/ff379a803c448eb3ed260213ea3d5b72"


def test_pressure_parser():
    data = b"some avg10=1.50 avg60=0.80 avg300=0.20 total=123456\nfull avg10=0 avg60=0 avg300=0 total=7\n"
    parsed = procfs.parse_pressure(data)
    assert parsed["some"] == procfs.Pressure(1.5, 0.8, 0.2, 123456)
    assert parsed["full"].total_usec == 7
    assert procfs.parse_pressure(b"garbage\nsome avg10=x\n") == {}


# --- property tests --------------------------------------------------------------------

# The kernel's comm is up to 15 bytes of anything but NUL (prctl PR_SET_NAME); stat prints
# it raw, so ')', ' ' and even a newline are legal.
hostile_names = st.text(
    alphabet=st.sampled_from(list("()) (ab \t\n\\xyz:0123456789-_.\u00e9")), min_size=0, max_size=15
)
ticks = st.integers(min_value=0, max_value=2**40)


@settings(max_examples=300, deadline=None)
@given(
    pid=st.integers(min_value=1, max_value=4_194_304),
    name=hostile_names,
    ppid=st.integers(min_value=0, max_value=4_194_304),
    utime=ticks,
    stime=ticks,
    cutime=ticks,
    cstime=ticks,
    threads=st.integers(min_value=1, max_value=100_000),
    starttime=ticks,
    rss=st.integers(min_value=0, max_value=2**40),
    state=st.sampled_from("RSDZTtXI"),
)
def test_stat_parser_roundtrip(
    pid, name, ppid, utime, stime, cutime, cstime, threads, starttime, rss, state
):
    line = stat_line(
        pid,
        name,
        state=state,
        ppid=ppid,
        utime=utime,
        stime=stime,
        cutime=cutime,
        cstime=cstime,
        threads=threads,
        starttime=starttime,
        rss=rss,
    ).encode()
    parsed = procfs.parse_stat(line)
    assert parsed.name == name
    assert (parsed.pid, parsed.state, parsed.ppid) == (pid, state, ppid)
    assert (parsed.utime, parsed.stime, parsed.cutime, parsed.cstime) == (
        utime,
        stime,
        cutime,
        cstime,
    )
    assert (parsed.num_threads, parsed.starttime, parsed.rss_pages) == (threads, starttime, rss)


@settings(max_examples=200, deadline=None)
@given(st.binary(max_size=300))
def test_stat_parser_rejects_garbage_with_valueerror_only(data):
    with contextlib.suppress(ValueError):
        procfs.parse_stat(data)


@settings(max_examples=200, deadline=None)
@given(
    total=st.integers(min_value=1, max_value=2**44),
    available=st.integers(min_value=0, max_value=2**44),
    noise=st.lists(
        st.tuples(st.from_regex(r"[A-Za-z_()]{1,20}", fullmatch=True), st.integers(0, 2**40)),
        max_size=10,
    ),
)
def test_meminfo_property(total, available, noise):
    lines = [f"{k}: {v} kB" for k, v in noise if k not in ("MemTotal", "MemAvailable")]
    lines.insert(len(lines) // 2, f"MemTotal:  {total} kB")
    lines.append(f"MemAvailable: {available} kB")
    lines.append("HugePages_Total:       0")
    mem = procfs.parse_meminfo("\n".join(lines).encode())
    assert mem.total_bytes == total * 1024
    assert mem.available_bytes == min(available, total) * 1024
    assert 0 <= mem.used_bytes <= mem.total_bytes


cgroup_path = st.lists(st.from_regex(r"[a-z0-9._-]{1,12}", fullmatch=True), max_size=5).map(
    lambda parts: "/" + "/".join(parts)
)


@settings(max_examples=300, deadline=None)
@given(
    unified=st.one_of(st.none(), cgroup_path),
    v1=st.dictionaries(
        st.sampled_from(["memory", "cpu,cpuacct", "pids", "blkio", "name=systemd"]),
        cgroup_path,
        max_size=5,
    ),
    order=st.randoms(),
)
def test_cgroup_property(unified, v1, order):
    lines = [f"{i + 1}:{c}:{p}" for i, (c, p) in enumerate(v1.items())]
    if unified is not None:
        lines.append(f"0::{unified}")
    order.shuffle(lines)
    info = procfs.parse_cgroup(("\n".join(lines) + "\n").encode())
    assert info.unified == unified
    memory = v1.get("memory")
    cpu = v1.get("cpu,cpuacct")
    if unified is not None and unified != "/":
        assert info.path == unified
    elif memory is not None and memory != "/":
        assert info.path == memory
    elif cpu is not None and cpu != "/":
        assert info.path == cpu
    elif not lines:
        assert info.path == ""
    else:
        # Whatever is chosen is one of the paths the file names.
        assert info.path in {*v1.values(), unified, "/"}
    assert info.path == "" or info.path.startswith("/")


# --- live /proc --------------------------------------------------------------------------


def test_live_self():
    me = procfs.read_pid_stat(os.getpid())
    assert me is not None and me.pid == os.getpid() and me.ppid == os.getppid()
    status = procfs.read_pid_status(os.getpid())
    assert status is not None and status.vm_rss_bytes > 0
    assert abs(status.vm_rss_bytes - me.rss_pages * procfs.PAGE_SIZE) < 50 * 1024 * 1024
    assert procfs.read_pid_cgroup(os.getpid()).path != ""
    assert os.getpid() in procfs.list_pids()
    assert os.sysconf("SC_CLK_TCK") == procfs.CLK_TCK


def test_live_reaped_child_moves_into_cutime():
    """The kernel rule the churn-proof accounting rests on, checked on this machine."""
    before = procfs.read_pid_stat(os.getpid())
    child = subprocess.run(
        [
            sys.executable,
            "-c",
            "import time\nt=time.process_time()\nwhile time.process_time()-t<0.3: pass",
        ],
        check=True,
    )
    assert child.returncode == 0
    after = procfs.read_pid_stat(os.getpid())
    gained = (after.children_ticks - before.children_ticks) / procfs.CLK_TCK
    assert 0.25 <= gained <= 0.6


def test_live_vanished_process_is_skipped():
    proc = subprocess.Popen([sys.executable, "-c", "pass"])
    proc.wait()
    time.sleep(0.05)
    assert procfs.read_pid_stat(proc.pid) is None
    assert procfs.read_pid_cgroup(proc.pid) is None


def test_live_process_with_a_hostile_name():
    """A real process renames itself (its kernel comm) to 'a) (b) c' and is read right."""
    code = (
        "import sys, time\n"
        "open('/proc/self/comm', 'w').write('a) (b) c')\n"
        "print('ready', flush=True)\n"
        "time.sleep(10)\n"
    )
    child = subprocess.Popen([sys.executable, "-c", code], stdout=subprocess.PIPE)
    try:
        assert child.stdout.readline().strip() == b"ready"
        st_ = procfs.read_pid_stat(child.pid)
        assert st_ is not None
        assert st_.name == "a) (b) c" and st_.ppid == os.getpid() and st_.num_threads >= 1
        assert procfs.read_pid_status(child.pid).name == "a) (b) c"
    finally:
        child.kill()
        child.wait()
