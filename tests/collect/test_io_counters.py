"""Disk I/O and network per container, on fixture trees: the readers (/proc/PID/io,
net/dev, io.stat, blkio, with missing files and permission errors), the per-process
sum across exits and reaps, the cgroup counter preferred where readable, and the
network read once per namespace with loopback apart."""

from __future__ import annotations

import errno
import os
from pathlib import Path

import pytest
from fixtures.fakeproc import FakeProc

from resmon import cgroupfs, procfs
from resmon.collect.accumulator import RunAccumulator
from resmon.collect.io_run import job_network
from resmon.collect.sampler import Sampler, SamplerConfig

TICK = procfs.CLK_TCK
A = "0::/groupA\n"
B = "0::/groupB\n"
MiB = 1024 * 1024

IO_FILE = (
    "rchar: {r}\nwchar: {w}\nsyscr: 1\nsyscw: 1\nread_bytes: {r}\nwrite_bytes: {w}\n"
    "cancelled_write_bytes: 0\n"
)
NET_DEV = (
    "Inter-|   Receive                                                |  Transmit\n"
    " face |bytes    packets errs drop fifo frame compressed multicast|bytes    packets "
    "errs drop fifo colls carrier compressed\n"
    "    lo: {lo}  10    0    0    0     0          0         0 {lo}  10    0    0    0     0"
    "       0          0\n"
    "  eth0: {rx}  20    0    0    0     0          0         0 {tx}  30    0    0    0     0"
    "       0          0\n"
)


# --- the readers ------------------------------------------------------------------


def test_pid_io_parsed_and_its_failures(tmp_path, monkeypatch):
    assert procfs.parse_pid_io(IO_FILE.format(r=4096, w=2 * MiB).encode()) == (4096, 2 * MiB)
    with pytest.raises(ValueError):
        procfs.parse_pid_io(b"rchar: 1\nwchar: 2\n")
    (tmp_path / "7").mkdir()
    (tmp_path / "7" / "io").write_text(IO_FILE.format(r=1, w=2))
    (tmp_path / "8").mkdir()
    (tmp_path / "8" / "io").write_text("garbage")
    assert procfs.read_pid_io(7, str(tmp_path)) == (1, 2)
    assert procfs.read_pid_io(8, str(tmp_path)) is None  # garbage
    assert procfs.read_pid_io(9, str(tmp_path)) is None  # vanished
    real_open = os.open

    def denied(path, *args, **kwargs):
        if str(path).endswith("/io"):
            raise PermissionError(errno.EACCES, "Permission denied")
        return real_open(path, *args, **kwargs)

    monkeypatch.setattr(os, "open", denied)
    assert procfs.read_pid_io(7, str(tmp_path)) == procfs.IO_UNREADABLE


def test_net_dev_parsed_with_loopback_and_odd_lines():
    data = NET_DEV.format(lo=500, rx=1000, tx=2000).encode() + b"  bad: x y\n junk\n"
    assert procfs.parse_net_dev(data) == {
        "lo": procfs.NetDev(500, 500),
        "eth0": procfs.NetDev(1000, 2000),
    }
    assert procfs.parse_net_dev(b"") == {}


def test_net_namespace_link_or_its_net_dev_file(tmp_path):
    pid = tmp_path / "5"
    (pid / "net").mkdir(parents=True)
    (pid / "net" / "dev").write_text(NET_DEV.format(lo=0, rx=0, tx=0))
    key, label = procfs.net_namespace(5, str(tmp_path))
    st = os.stat(pid / "net" / "dev")
    assert key == label == f"dev:[{st.st_dev}:{st.st_ino}]"  # no ns/net link: the file
    (pid / "ns").mkdir()
    os.symlink("net:[4026531840]", pid / "ns" / "net")
    assert procfs.net_namespace(5, str(tmp_path)) == (key, "net:[4026531840]")
    assert procfs.net_namespace(6, str(tmp_path)) is None  # vanished
    # This process's own namespace: the link and the file both readable.
    own = procfs.net_namespace(os.getpid())
    assert own is not None and own[1].startswith("net:[")


def test_io_stat_and_blkio_counters(tmp_path):
    assert cgroupfs.parse_io_stat(
        b"8:0 rbytes=100 wbytes=200 rios=1 wios=2 dbytes=0 dios=0\n"
        b"253:0 rbytes=10 wbytes=20 rios=1 wios=2\n"
    ) == (110, 220)
    assert cgroupfs.parse_io_stat(b"") is None
    assert cgroupfs.parse_blkio_bytes(
        b"8:0 Read 4096\n8:0 Write 8192\n8:0 Sync 0\n8:0 Async 0\n8:0 Discard 0\n"
        b"8:0 Total 12288\n8:16 Read 1\n8:16 Write 2\nTotal 12291\n"
    ) == (4097, 8194)
    assert cgroupfs.parse_blkio_bytes(b"Total 0\n") == (0, 0)
    v2 = tmp_path / "v2"
    v2.mkdir()
    assert cgroupfs.read_io_bytes(cgroupfs.V2, str(v2)) is None  # io controller not enabled
    (v2 / "io.stat").write_text("")
    assert cgroupfs.read_io_bytes(cgroupfs.V2, str(v2)) == (0, 0)  # enabled, no I/O yet
    (v2 / "io.stat").write_text("8:0 rbytes=5 wbytes=6 rios=1 wios=1\n")
    assert cgroupfs.read_io_bytes(cgroupfs.V2, str(v2)) == (5, 6)
    v1 = tmp_path / "v1"
    v1.mkdir()
    assert cgroupfs.read_io_bytes(cgroupfs.V1_BLKIO, str(v1)) is None
    (v1 / "blkio.throttle.io_service_bytes").write_text("8:0 Read 1\n8:0 Write 2\nTotal 3\n")
    assert cgroupfs.read_io_bytes(cgroupfs.V1_BLKIO, str(v1)) == (1, 2)
    # The recursive file (children's cgroups too) wins where it is there.
    (v1 / "blkio.throttle.io_service_bytes_recursive").write_text("8:0 Read 3\n8:0 Write 4\n")
    assert cgroupfs.read_io_bytes(cgroupfs.V1_BLKIO, str(v1)) == (3, 4)


# --- the per-process sum ----------------------------------------------------------


class IOProc:
    """A FakeProc with /proc/PID/io files; a reap adds the child's figures to its
    parent's, as the kernel's wait does."""

    def __init__(self, tmp_path: Path) -> None:
        self.fp = FakeProc(tmp_path / "proc")
        self.io: dict[int, list[int]] = {}
        self.fp.add(1, "init", ppid=0, cgroup="0::/\n", starttime=1)
        self.sampler = Sampler(
            SamplerConfig(proc_path=str(self.fp.root), cgroup_path=str(tmp_path / "none"))
        )
        self.t = 1000.0
        # Files to write once the tree is (net/dev, ns/net), before the sample reads it.
        self.files: list = []

    def add(self, pid: int, name: str, ppid: int = 1, cgroup: str = A) -> None:
        self.fp.add(pid, name, ppid=ppid, cgroup=cgroup)
        self.io[pid] = [0, 0]

    def write(self, pid: int, written: int, read: int = 0) -> None:
        self.io[pid][0] += read
        self.io[pid][1] += written
        self.fp.run(pid, 1)  # it ran: its stat line changes

    def exit_and_reap(self, pid: int) -> None:
        parent = self.fp.processes[pid].ppid
        self.fp.exit_and_reap(pid)
        child = self.io.pop(pid)
        if parent in self.io:
            self.io[parent][0] += child[0]
            self.io[parent][1] += child[1]
            self.fp.processes[parent].cutime += 1  # its stat line changes (cminflt, cutime)

    def sample(self):
        self.fp.write(TICK)
        for pid, (read, written) in self.io.items():
            (self.fp.root / str(pid) / "io").write_text(IO_FILE.format(r=read, w=written))
        for write in self.files:
            write()
        sample = self.sampler.sample(now=self.t)
        self.t += 1.0
        self.fp.advance(1.0, TICK)
        return sample


def written(sample, name: str = "/groupA") -> int:
    io = sample.containers[name].io
    assert io is not None and io.source == "proc"
    return io.proc.write_bytes


def test_a_reaped_child_is_counted_once_and_its_tail_through_its_reaper(tmp_path):
    w = IOProc(tmp_path)
    w.add(10, "sh")
    w.write(10, 5 * MiB)  # before the run's first reading: a baseline
    assert written(w.sample()) == 0
    w.add(11, "dd", ppid=10)
    w.write(11, 30 * MiB)
    second = w.sample()
    assert written(second) == 30 * MiB
    assert second.containers["/groupA"].io.proc.write_rate == pytest.approx(30 * MiB)
    w.write(11, 20 * MiB)  # the tail after its last reading
    w.exit_and_reap(11)  # the shell's figures grow by the child's whole 50 MiB
    assert written(w.sample()) == 50 * MiB


def test_a_child_born_and_reaped_between_two_samples_is_counted(tmp_path):
    w = IOProc(tmp_path)
    w.add(10, "sh")
    w.sample()
    w.add(12, "cp", ppid=10)
    w.write(12, 7 * MiB, read=3 * MiB)
    w.exit_and_reap(12)  # never read: counted through the shell
    third = w.sample()
    io = third.containers["/groupA"].io
    assert (io.proc.read_bytes, io.proc.write_bytes) == (3 * MiB, 7 * MiB)


def test_a_reap_seen_a_sample_late_is_not_counted_twice(tmp_path):
    w = IOProc(tmp_path)
    w.add(10, "sh")
    w.sample()
    w.add(11, "dd", ppid=10)
    w.write(11, 10 * MiB)
    w.sample()
    # The child is gone, but the shell's reading does not show the reap yet (its stat
    # was read before the reap): the owed reading waits for the shell's growth.
    w.fp.exit_and_reap(11)
    child = w.io.pop(11)
    assert written(w.sample()) == 10 * MiB
    w.io[10][1] += child[1]
    w.fp.processes[10].cutime += 1
    assert written(w.sample()) == 10 * MiB
    w.write(10, 1 * MiB)  # the shell's own writes count again
    assert written(w.sample()) == 11 * MiB


def test_a_process_reaped_outside_the_container_keeps_its_last_reading(tmp_path):
    w = IOProc(tmp_path)
    w.add(10, "job", cgroup=A)
    w.add(20, "shim", cgroup=B)
    w.sample()
    w.add(11, "worker", ppid=20, cgroup=A)  # its reaper is in another container
    w.write(11, 4 * MiB)
    w.sample()
    w.exit_and_reap(11)
    last = w.sample()
    assert written(last) == 4 * MiB  # kept, not taken back nor counted again
    assert written(last, "/groupB") == 0  # the shim's growth pays what it owes


def test_unreadable_processes_are_counted_as_such(tmp_path, monkeypatch):
    w = IOProc(tmp_path)
    w.add(10, "mine")
    w.add(11, "theirs")
    real = procfs.read_pid_io_at

    def read(dir_fd, pid):
        return procfs.IO_UNREADABLE if pid == 11 else real(dir_fd, pid)

    monkeypatch.setattr(procfs, "read_pid_io_at", read)
    w.sample()
    w.write(10, MiB)
    w.write(11, MiB)
    io = w.sample().containers["/groupA"].io
    assert io.proc.write_bytes == MiB and io.unreadable == 1
    assert w.sample().containers["/groupA"].record()["io_unreadable_processes"] == 1


def test_a_tree_without_io_files_gives_no_io_figures(tmp_path):
    fp = FakeProc(tmp_path / "proc")
    fp.add(10, "sh", cgroup=A)
    sampler = Sampler(SamplerConfig(proc_path=str(fp.root), cgroup_path=str(tmp_path / "none")))
    fp.write(TICK)
    sample = sampler.sample(now=1.0)
    assert sample.containers["/groupA"].io is None
    assert "io_source" not in sample.containers["/groupA"].record()


def test_the_cgroups_io_stat_is_preferred_and_the_summary_says_so(tmp_path):
    root = tmp_path / "cgroup"
    (root / "groupA").mkdir(parents=True)
    (root / "cgroup.controllers").write_text("cpu io memory\n")
    (root / "groupA" / "cgroup.type").write_text("domain\n")
    io_stat = root / "groupA" / "io.stat"
    io_stat.write_text("8:0 rbytes=1000 wbytes=5000 rios=1 wios=1\n")
    w = IOProc(tmp_path)
    w.sampler = Sampler(SamplerConfig(proc_path=str(w.fp.root), cgroup_path=str(root)))
    w.add(10, "db")
    acc = RunAccumulator()
    acc.add(w.sample())
    w.write(10, 3 * MiB)
    io_stat.write_text(f"8:0 rbytes=1000 wbytes={5000 + 4 * MiB} rios=1 wios=9\n")
    second = w.sample()
    acc.add(second)
    io = second.containers["/groupA"].io
    assert io.source == "cgroup" and io.kernel.write_bytes == 4 * MiB
    assert io.proc.write_bytes == 3 * MiB  # kept beside it
    record = second.containers["/groupA"].record()
    assert (record["io_source"], record["io_write_bytes"]) == ("cgroup", 4 * MiB)
    summary = acc.run_summary()
    (entry,) = [c for c in summary["containers"] if c["name"] == "/groupA"]
    assert entry["io"]["source"] == "cgroup" and entry["io"]["write_bytes"] == 4 * MiB
    assert summary["job"]["io"]["write_bytes"] >= 4 * MiB
    # The counter missing at one sample: the processes' sum for the whole run.
    io_stat.unlink()
    w.write(10, MiB)
    acc.add(w.sample())
    (entry,) = [c for c in acc.run_summary()["containers"] if c["name"] == "/groupA"]
    assert entry["io"]["source"] == "proc" and entry["io"]["write_bytes"] == 4 * MiB


# --- the network -------------------------------------------------------------------


def test_network_read_once_per_namespace_loopback_apart(tmp_path, monkeypatch):
    w = IOProc(tmp_path)
    w.add(10, "app", cgroup=A)
    w.add(20, "sidecar", cgroup=B)
    reads: list[int] = []
    real = procfs.read_net_dev

    def counted(pid, proc_path="/proc"):
        reads.append(pid)
        return real(pid, proc_path)

    monkeypatch.setattr(procfs, "read_net_dev", counted)
    dev = {"lo": 1000, "rx": 5000, "tx": 7000}

    def write_net():
        for pid in (10, 20):  # one pod: one namespace, two containers
            d = w.fp.root / str(pid) / "net"
            d.mkdir(exist_ok=True)
            (d / "dev").write_text(NET_DEV.format(**dev))
            ns = w.fp.root / str(pid) / "ns"
            ns.mkdir(exist_ok=True)
            if not (ns / "net").is_symlink():
                os.symlink("net:[4026532000]", ns / "net")

    real_ns = procfs.net_namespace

    def one_key(pid, proc_path):
        found = real_ns(pid, proc_path)
        return None if found is None else ("ns-1", found[1])

    # Both files share one key, as one namespace's do.
    monkeypatch.setattr(procfs, "net_namespace", one_key)

    w.files.append(write_net)
    acc = RunAccumulator()
    acc.add(w.sample())
    assert len(reads) == 1
    dev.update(lo=1000 + 100 * MiB, rx=5000 + 2 * MiB, tx=7000 + MiB)
    second = w.sample()
    acc.add(second)
    assert len(reads) == 2  # one read per sample for the namespace, not per container
    a, b = second.containers["/groupA"], second.containers["/groupB"]
    assert a.net == b.net and a.net.namespace == "net:[4026532000]"
    assert (a.net.rx_bytes, a.net.tx_bytes) == (2 * MiB, MiB)
    assert (a.net.loopback_rx_bytes, a.net.loopback_tx_bytes) == (100 * MiB, 100 * MiB)
    assert a.net_shared_with == ("/groupB",) and b.net_shared_with == ("/groupA",)
    summary = acc.run_summary()
    assert summary["job"]["network"]["namespaces"] == 1
    assert summary["job"]["network"]["rx_bytes"] == 2 * MiB  # the namespace once
    (entry,) = [c for c in summary["containers"] if c["name"] == "/groupA"]
    assert entry["network"]["shared_with"] == ["/groupB"]
    assert entry["network"]["rx_bytes_per_second"]["peak"] == pytest.approx(2 * MiB)


def test_an_interface_that_comes_or_resets_counts_from_zero(tmp_path):
    w = IOProc(tmp_path)
    w.add(10, "app")
    d = w.fp.root / "10" / "net"
    content = [""]

    def write(text: str) -> None:
        content[0] = text

    def put() -> None:
        d.mkdir(exist_ok=True)
        (d / "dev").write_text(content[0])

    w.files.append(put)

    header = "".join(NET_DEV.splitlines(keepends=True)[:2])

    def line(name: str, rx: int, tx: int) -> str:
        return f"  {name}: {rx} 1 0 0 0 0 0 0 {tx} 1 0 0 0 0 0 0\n"

    write(header + line("eth0", 100, 100))
    w.sample()
    write(header + line("eth0", 150, 120) + line("veth1", 40, 10))  # a new interface
    assert w.sample().containers["/groupA"].net.rx_bytes == 50 + 40
    write(header + line("eth0", 30, 5) + line("veth1", 60, 10))  # eth0 recreated
    net = w.sample().containers["/groupA"].net
    assert (net.rx_bytes, net.tx_bytes) == (50 + 40 + 30 + 20, 20 + 10 + 5)


def test_a_container_without_net_dev_has_no_network_figures(tmp_path):
    w = IOProc(tmp_path)
    w.add(10, "app")
    sample = w.sample()
    assert sample.containers["/groupA"].net is None
    assert job_network([], 1) is None


def test_the_blkio_counter_of_a_v1_container(tmp_path):
    root = tmp_path / "cgroup"
    blkio = root / "blkio"
    (blkio / "groupA").mkdir(parents=True)
    (blkio / "release_agent").write_text("")  # the hierarchy's root (the machine)
    (blkio / "blkio.throttle.io_service_bytes").write_text("Total 0\n")
    counter = blkio / "groupA" / "blkio.throttle.io_service_bytes_recursive"
    counter.write_text("8:0 Read 0\n8:0 Write 0\nTotal 0\n")
    w = IOProc(tmp_path)
    w.sampler = Sampler(SamplerConfig(proc_path=str(w.fp.root), cgroup_path=str(root)))
    w.add(10, "db", cgroup="5:blkio:/groupA\n")
    w.sample()
    counter.write_text(f"8:0 Read {MiB}\n8:0 Write {2 * MiB}\nTotal {3 * MiB}\n")
    w.write(10, MiB)  # a buffered write the v1 counter does not see
    io = w.sample().containers["/groupA"].io
    assert io.source == "blkio"
    assert (io.kernel.read_bytes, io.kernel.write_bytes) == (MiB, 2 * MiB)
    assert io.proc.write_bytes == MiB


def test_io_follows_a_container_renamed_by_the_process_map(tmp_path):
    w = IOProc(tmp_path)
    w.sampler = Sampler(
        SamplerConfig(
            proc_path=str(w.fp.root),
            cgroup_path=str(tmp_path / "none"),
            process_map={"postgres": "db"},
        )
    )
    w.add(10, "sh")
    acc = RunAccumulator()
    acc.add(w.sample())
    w.write(10, 3 * MiB)
    acc.add(w.sample())
    w.add(11, "postgres", ppid=10)  # the mapped process: the group is "db" from now on
    w.write(11, 2 * MiB)
    renamed = w.sample()
    acc.add(renamed)
    assert renamed.renamed == {"/groupA": "db"}
    assert renamed.containers["db"].io.proc.write_bytes == 5 * MiB
    (entry,) = [c for c in acc.run_summary()["containers"] if c["name"] == "db"]
    assert entry["io"]["write_bytes"] == 5 * MiB


def test_live_samples_carry_io_totals_and_count_a_namespace_once(tmp_path):
    from resmon.collect.live_samples import SampleCompactor

    w = IOProc(tmp_path)
    w.add(10, "app", cgroup=A)
    w.add(20, "sidecar", cgroup=B)
    for pid in (10, 20):
        d = w.fp.root / str(pid) / "net"
        w.files.append(
            lambda d=d: (d.mkdir(exist_ok=True), (d / "dev").write_text(NET_DEV.format(**dev)))
        )
    dev = {"lo": 0, "rx": 0, "tx": 0}
    compactor = SampleCompactor()
    compactor.compact(w.sample())
    w.write(10, 2 * MiB)
    w.write(20, MiB)
    dev.update(rx=3 * MiB, tx=MiB)
    live = compactor.compact(w.sample())
    a, b = live["containers"]["/groupA"], live["containers"]["/groupB"]
    assert (a["io_write_bytes"], b["io_write_bytes"]) == (2 * MiB, MiB)
    # Two files of one fixture tree are two namespaces here; each container its own.
    assert (a["net_rx_bytes"], b["net_rx_bytes"]) == (3 * MiB, 3 * MiB)
    job = live["job"]
    assert job["io_write_bytes"] == 3 * MiB
    assert job["net_rx_bytes"] == 6 * MiB
    memories = [c["memory_bytes"] for c in live["containers"].values() if c["memory_bytes"]]
    assert job["memory_bytes"] == sum(memories)  # not overwritten by the I/O sums


FIXTURES = Path(__file__).parents[1] / "fixtures"
DOCKER_SCOPE = (
    "system.slice/docker-fedcba9876543210fedcba9876543210fedcba9876543210fedcba9876543210.scope"
)


def test_the_static_fixture_trees():
    proc = str(FIXTURES / "proc")
    # Captured from a shell after its dd child wrote 1 MiB with fsync and was reaped:
    # the child's writes are in the shell's /proc/PID/io.
    assert procfs.read_pid_io(12568, proc) == (0, 1073152)
    assert procfs.read_pid_io(4242, proc) is None  # no io file
    lo = procfs.read_net_dev(12568, proc)["lo"]
    assert lo.rx_bytes == lo.tx_bytes == 4243593527
    assert procfs.read_net_dev(4242, proc) is None  # no net/dev
    v2 = FIXTURES / "cgroup_v2" / DOCKER_SCOPE
    assert cgroupfs.read_io_bytes(cgroupfs.V2, str(v2)) == (1482752 + 4096, 4194304 + 65536)
    v1 = cgroupfs.CgroupFS(str(FIXTURES / "cgroup_v1"))
    assert v1.mounts[cgroupfs.V1_BLKIO] == str(FIXTURES / "cgroup_v1" / "blkio")
    assert v1.directory(cgroupfs.V1_BLKIO, "/") is None  # the hierarchy's root: the machine
    docker = v1.directory(cgroupfs.V1_BLKIO, "/docker/abc123")
    assert cgroupfs.read_io_bytes(cgroupfs.V1_BLKIO, docker) == (1482752, 4194304)
    assert v1.directory(cgroupfs.V1_BLKIO, "/user.slice") is None  # not there


def test_a_sample_of_the_static_tree_reads_what_it_has(tmp_path):
    s = Sampler(
        SamplerConfig(proc_path=str(FIXTURES / "proc"), cgroup_path=str(FIXTURES / "cgroup_v1"))
    )
    first = s.sample(now=1.0)
    (sleep,) = [c for c in first.containers.values() if c.name.startswith("/process_api/")]
    # Older than the first reading: a baseline, nothing counted.
    assert sleep.io is not None and sleep.io.proc.write_bytes == 0
    assert sleep.net is not None and sleep.net.loopback_rx_bytes == 0
    # 4242's container (v1 blkio at /user.slice, which is not there): no io file, no
    # cgroup counter, so no disk figures rather than zeros.
    assert first.containers["/docker/abc123"].io is None
