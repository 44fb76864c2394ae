"""A sample's per-container figures.

A container's CPU and memory are the sums over its processes (the CPU credit of
:mod:`resmon.collect.sampler`, the RSS, and for the job's containers the PSS and the
high-water marks of :mod:`resmon.collect.memory_peaks`), and its kernel counters
where its cgroup directories are its own (:mod:`resmon.collect.kernel_counters`).
Both definitions are kept per sample (``memory_rss_bytes``, ``memory_pss_bytes``,
``memory_cgroup_bytes``, ``cpu_cores_procfs``, ``cpu_cores_cgroup``) so that the run
summary reports one for the whole run; ``memory_bytes`` / ``cpu_cores`` stay this
sample's choice (the kernel's where read).  Its limits are ``CGROUP_LIMITS`` where
set, else its cgroup's; its ``cpu_seconds`` is the running total over the run.

CPU rates: a CPU rate is taken over ``SampleWork.rate_elapsed`` (the sampler merges a
gap too short for a rate into the next one): a sample without a rate carries its
credit into the next rated one, and a rate never exceeds the CPUs the container can
use (the online CPUs, its cpuset, its CPU quota): the excess is carried into the next
rate (up to one interval's worth) and the sample counted as capped.  The running
``cpu_seconds`` totals count every credit when it comes.
"""

from __future__ import annotations

import logging
import os

from resmon import procfs
from resmon.cgroupfs import CgroupFS, online_cpus
from resmon.collect.containers import Limits
from resmon.collect.io_counters import ProcessIO
from resmon.collect.io_figures import IOFigures, NetFigures
from resmon.collect.kernel_counters import (
    NO_KERNEL_FIGURES,
    ContainerDirs,
    KernelCounters,
    KernelFigures,
    exclusive_dirs,
)
from resmon.collect.memory_peaks import DEFAULT_BUDGET_SECONDS, MemoryFigures, ProcessMemory
from resmon.collect.net_counters import NetworkCounters
from resmon.collect.sample_state import EXCLUDED, Paths, SampleWork
from resmon.collect.samples import SOURCE_CGROUPFS, SOURCE_PROCFS, ContainerSample
from resmon.procfs import CLK_TCK, PAGE_SIZE

log = logging.getLogger(__name__)

# /proc/PID/stat states of a process that has exited: zombie, dead.
_DEAD_STATES = frozenset({"Z", "X", "x"})
# The two CPU sources' slots in the per-container carries.
_PROCFS, _CGROUP = 0, 1
# A rate above the CPUs a container can use by less than a tick of credit is rounding.
_TICK = 1.0 / CLK_TCK


class ContainerFigures:
    """Makes each sample's ContainerSamples, and keeps what spans samples: the running
    CPU totals and carried credit, the kernel counters' previous readings, the
    containers' own directories, the processes' memory (:class:`ProcessMemory`)."""

    def __init__(
        self,
        cgroupfs: CgroupFS | None,
        limits: dict[str, Limits],
        command: str | None,
        proc_path: str | None = None,
        pss_budget_seconds: float = DEFAULT_BUDGET_SECONDS,
    ) -> None:
        self._cgroupfs = cgroupfs
        self._limits = limits
        # Wrapper mode: the command's container, which is there even before its processes.
        self._command = command
        # Running totals: this sample's choice (the kernel's where read), and each source's.
        self._cpu_seconds: dict[str, float] = {}
        self._procfs_seconds: dict[str, float] = {}
        self._cgroup_seconds: dict[str, float] = {}
        # Per container, per source: credit waiting for a rate (see the module docstring).
        self._carry: dict[str, list[float]] = {}
        self._kernel: dict[str, KernelCounters] = {}
        # Per container: the CPUs its cpuset and its quota let it use, as last read.
        self._room: dict[str, tuple[int | None, float | None]] = {}
        # The distinct (group, cgroup paths) pairs of the live processes; they only
        # change when processes come or go.
        self._distinct: set[tuple[str, Paths]] | None = None
        # (group names, exclusive cgroup directories per container) of the last sample.
        self._dirs_cache: tuple[dict[str, str], ContainerDirs] | None = None
        self._command_final: float | None = None
        self._group_names: dict[str, str] = {}
        # The procfs root the processes' memory files are read under; None: not given,
        # /proc once it is shown to be the sampler's (see _check_proc_path).
        self.memory = ProcessMemory(proc_path or "/proc", pss_budget_seconds)
        # Disk I/O and the network namespaces' counters of the measured containers.
        self.io = ProcessIO(proc_path or "/proc")
        self.net = NetworkCounters(proc_path or "/proc")
        self._proc_known = proc_path is not None
        self.online_cpus = _online_cpus(proc_path or "/proc", cgroupfs)

    def use_proc_path(self, proc_path: str) -> None:
        """The procfs root the sampler reads (its processes' memory files are there)."""
        self.memory.proc_path = proc_path
        self.memory.enabled = self._proc_known = True
        self.io.proc_path = self.net.proc_path = proc_path
        self.io.enabled = self.net.enabled = True

    def _check_proc_path(self, work: SampleWork) -> None:
        """Without a procfs root given, /proc is used only if it is where the sampler's
        processes are: one of them, with its start time, is there (a sampler reading a
        fixture tree or another machine's /proc must not read this one's files)."""
        self._proc_known = True
        for pid, starttime in work.current:
            st = procfs.read_pid_stat(pid, "/proc")
            if st is None:
                continue
            self.memory.enabled = st.starttime == starttime
            break
        else:
            self.memory.enabled = False
        self.io.enabled = self.net.enabled = self.memory.enabled
        if not self.memory.enabled:
            log.debug("/proc is not the sampled procfs: no VmHWM, PSS, I/O or network reads")

    def processes_changed(self) -> None:
        """Processes came or went: the containers' own directories are to be found again."""
        self._distinct = None

    def command_final(self, cpu_seconds: float) -> None:
        """The command's exact CPU total, for its container's next (last) sample."""
        self._command_final = cpu_seconds

    def measured(self, name: str) -> bool:
        """Whether a container is the job's (its processes' PSS and VmHWM are read):
        wrapper mode the command's, sidecar mode every one."""
        return self._command is None or name == self._command

    def make(self, work: SampleWork) -> dict[str, ContainerSample]:
        """Each container's figures (a container is the groups that carry one name)."""
        by_container: dict[str, list[str]] = {}
        for group, name in work.group_names.items():
            by_container.setdefault(name, []).append(group)
        if self._command is not None:
            by_container.setdefault(self._command, [])
        renamed = self._follow_renames(work)
        if not self._proc_known and work.current:
            self._check_proc_path(work)
        fs = self._cgroupfs
        dirs_by_container = self._own_dirs(fs, work) if fs is not None else {}
        memory = self.memory.update(work, by_container, self.measured, renamed)
        if renamed:
            self.io.rename(renamed)
            self.net.rename(renamed)
        io = self.io.update(work, by_container, self.measured, dirs_by_container, self._command)
        net = self.net.update(work, by_container, self.measured)
        out = {
            name: self._container(name, groups, work, dirs_by_container.get(name), memory.get(name))
            for name, groups in by_container.items()
        }
        _add_io(out, io, net)
        return out

    def _follow_renames(self, work: SampleWork) -> dict[str, str]:
        """Containers renamed this sample (old -> new: a group got its mapped name): what
        spans samples moves to the new name.  The sampler's ``work.renamed`` where it
        says so, else the groups whose name changed and whose old name is gone."""
        names = work.group_names
        if names == self._group_names:
            return {}
        renamed = dict(getattr(work, "renamed", None) or {})
        if not renamed:
            now = set(names.values())
            for group, name in names.items():
                old = self._group_names.get(group)
                if old is not None and old != name and old not in now:
                    renamed[old] = name
        self._group_names = dict(names)
        for old, new in renamed.items():
            for totals in (self._cpu_seconds, self._procfs_seconds, self._cgroup_seconds):
                if old in totals:
                    totals[new] = totals.get(new, 0.0) + totals.pop(old)
            if old in self._carry:
                carried = self._carry.pop(old)
                into = self._carry.setdefault(new, [0.0, 0.0])
                into[_PROCFS] += carried[_PROCFS]
                into[_CGROUP] += carried[_CGROUP]
            for per_name in (self._kernel, self._room):
                if old in per_name:
                    value = per_name.pop(old)
                    per_name.setdefault(new, value)  # type: ignore[arg-type]
        return renamed

    def _own_dirs(self, fs: CgroupFS, work: SampleWork) -> ContainerDirs:
        """The containers' own cgroup directories; they only change when processes come
        or go (self._distinct is reset then) or a group gets a new name."""
        cached = self._dirs_cache
        if cached is not None and self._distinct is not None and cached[0] == work.group_names:
            return cached[1]
        if self._distinct is None:
            # Processes of one container mostly share their paths: look at each pair once.
            self._distinct = {(state.group, state.paths) for state in work.current.values()}
        dirs = exclusive_dirs(fs, work.group_names, self._distinct, EXCLUDED)
        self._dirs_cache = (dict(work.group_names), dirs)
        return dirs

    def _container(
        self,
        name: str,
        groups: list[str],
        work: SampleWork,
        dirs: dict[str, list[str]] | None,
        mem: MemoryFigures | None,
    ) -> ContainerSample:
        """One container: the sums over its processes and, where it has directories of
        its own, its kernel counters; each sample's choice the kernel's; its limits."""
        members = [m for g in groups for m in work.group_members.get(g, [])]
        credit = sum(work.group_credit.get(g, 0) for g in groups) / CLK_TCK
        valid = work.elapsed is not None and work.invalid_groups.isdisjoint(groups)
        rss: int | None = sum(state.stat.rss_pages for state in members) * PAGE_SIZE
        if not rss and all(state.stat.state in _DEAD_STATES for state in members):
            # Only zombies (or nobody): a zombie has no RSS, so 0 would be a false
            # reading (the wrapped command read as a zombie in the last sample would
            # pull a short run's p50 down).  No memory reading; its CPU still counts.
            rss = None
        kernel = self._kernel_figures(name, dirs, work.elapsed)
        room = self._cpu_room(name, kernel)
        final = self._command_final if name == self._command else None
        if final is not None:
            # Wrapper mode, the command reaped: the tail since the last reading.
            self._command_final = None
            credit += max(0.0, final - self._procfs_seconds.get(name, 0.0) - credit)
        rate_elapsed = work.rate_elapsed
        procfs_total = self._procfs_seconds[name] = self._procfs_seconds.get(name, 0.0) + credit
        cores_procfs, capped_procfs = self._rate(name, _PROCFS, credit, rate_elapsed, valid, room)
        cgroup_total = cores_cgroup = None
        capped_cgroup = False
        if kernel.cpu_read:
            kernel_credit = kernel.cpu_seconds or 0.0
            cgroup_total = self._cgroup_seconds.get(name, 0.0) + kernel_credit
            self._cgroup_seconds[name] = cgroup_total
            cores_cgroup, capped_cgroup = self._rate(
                name, _CGROUP, kernel_credit, rate_elapsed, kernel.cpu_seconds is not None, room
            )
        source_cpu = source_memory = SOURCE_PROCFS
        cpu_cores = cores_procfs
        if kernel.cpu_seconds is not None:
            credit, cpu_cores, source_cpu = kernel.cpu_seconds, cores_cgroup, SOURCE_CGROUPFS
        memory = rss
        if kernel.memory_bytes is not None:
            memory, source_memory = kernel.memory_bytes, SOURCE_CGROUPFS
        # This sample's choice, summed (the per-sample records' running total).
        cumulative = self._cpu_seconds.get(name, 0.0) + credit
        if final is not None:
            cumulative = max(cumulative, final)
        self._cpu_seconds[name] = cumulative
        limit_cpu, limit_mem = self._limits_of(name, kernel)
        out = ContainerSample(
            name=name,
            cpu_cores=cpu_cores,
            memory_bytes=memory,
            process_count=len(members),
            cpu_seconds=cumulative,
            cpu_percent_of_limit=(
                cpu_cores / limit_cpu * 100.0 if cpu_cores is not None and limit_cpu else None
            ),
            memory_percent_of_limit=(
                memory / limit_mem * 100.0 if limit_mem and memory is not None else None
            ),
            limit_cpu_cores=limit_cpu,
            limit_memory_bytes=limit_mem,
            memory_peak_bytes=kernel.memory_peak_bytes,
            cpu_throttled_seconds=kernel.cpu_throttled_seconds,
            throttled_periods_percent=kernel.throttled_periods_percent,
            oom_kills=kernel.oom_kills,
            source_cpu=source_cpu,
            source_memory=source_memory,
            pressure=kernel.pressure,
            memory_rss_bytes=rss,
            memory_cgroup_bytes=kernel.memory_bytes,
            cpu_cores_procfs=cores_procfs,
            cpu_cores_cgroup=cores_cgroup,
            cpu_seconds_procfs=procfs_total,
            cpu_seconds_cgroup=cgroup_total,
            cpu_capped_procfs=capped_procfs,
            cpu_capped_cgroup=capped_cgroup,
        )
        if mem is not None:
            out.memory_pss_bytes = mem.pss_bytes if rss is not None else None
            out.memory_hwm_bytes = mem.hwm_bytes
            out.memory_hwm_sum_bytes = mem.hwm_sum_bytes
            out.memory_pss_read_bytes = mem.pss_read_bytes if rss is not None else None
            out.memory_pss_estimate_bytes = mem.pss_estimate_bytes if rss is not None else None
        return out

    def _rate(
        self,
        name: str,
        source: int,
        credit: float,
        rate_elapsed: float | None,
        valid: bool,
        room: float | None,
    ) -> tuple[float | None, bool]:
        """Cores over the rate's span: the credit carried from samples without a rate
        plus this one's; cut to ``room`` (the excess carried, up to one span's worth).
        Returns (cores or None, whether it was cut)."""
        carry = self._carry.get(name)
        if carry is None:
            carry = self._carry[name] = [0.0, 0.0]
        if rate_elapsed is None or rate_elapsed <= 0:
            carry[source] += credit
            return None, False
        total = carry[source] + credit
        carry[source] = 0.0
        if not valid:
            return None, False
        if room is not None and total > room * rate_elapsed:
            allowed = room * rate_elapsed
            excess = total - allowed
            carry[source] = min(excess, allowed)
            return room, excess > _TICK
        return total / rate_elapsed, False

    def _cpu_room(self, name: str, kernel: KernelFigures) -> float | None:
        """The CPUs a container can use: the online CPUs, its cpuset, its CPU quota (the
        kernel's, as last read: they outlive a sample without its directories)."""
        if kernel.cpu_read:
            self._room[name] = (kernel.cpuset_cpus, kernel.limit_cpu_cores)
        cpuset, quota = self._room.get(name, (None, None))
        candidates = [float(v) for v in (self.online_cpus, cpuset, quota) if v]
        return min(candidates) if candidates else None

    def _kernel_figures(
        self, name: str, dirs: dict[str, list[str]] | None, elapsed: float | None
    ) -> KernelFigures:
        if dirs and self._cgroupfs is not None:
            counters = self._kernel.setdefault(name, KernelCounters())
            return counters.read(self._cgroupfs, dirs, elapsed)
        if name in self._kernel:
            self._kernel[name].forget()
        return NO_KERNEL_FIGURES

    def _limits_of(self, name: str, kernel: KernelFigures) -> tuple[float | None, int | None]:
        """The container's CPU and memory limits: CGROUP_LIMITS where it sets them, else
        the cgroup's own."""
        limit_cpu, limit_mem = kernel.limit_cpu_cores, kernel.limit_memory_bytes
        configured = self._limits.get(name)
        if configured is not None:
            if configured.cpu_cores is not None:
                limit_cpu = configured.cpu_cores
            if configured.memory_bytes is not None:
                limit_mem = configured.memory_bytes
        return limit_cpu, limit_mem


def _add_io(
    out: dict[str, ContainerSample], io: dict[str, IOFigures], net: dict[str, NetFigures]
) -> None:
    """Each container's disk I/O and network figures; containers in one network
    namespace name each other (``net_shared_with``)."""
    for name, figures in io.items():
        if name in out:
            out[name].io = figures
    if not net:
        return
    by_namespace: dict[str, list[str]] = {}
    for name, figures in net.items():
        if name in out:
            out[name].net = figures
            by_namespace.setdefault(figures.namespace, []).append(name)
    for names in by_namespace.values():
        if len(names) > 1:
            for name in names:
                out[name].net_shared_with = tuple(sorted(n for n in names if n != name))


def _online_cpus(proc_path: str, cgroupfs: CgroupFS | None) -> int | None:
    """The machine's online CPUs: /sys/devices/system/cpu/online under the sysfs root the
    cgroupfs root is in (``/sys/fs/cgroup`` -> ``/sys``; ``/host/sys/fs/cgroup`` ->
    ``/host/sys``), else, reading this machine's /proc, the CPUs resmon may run on."""
    root = cgroupfs.root.rstrip("/") if cgroupfs is not None else ""
    sys_root = root[: -len("/fs/cgroup")] if root.endswith("/fs/cgroup") else None
    if sys_root is None and proc_path.rstrip("/") == "/proc":
        sys_root = "/sys"
    count = online_cpus(sys_root) if sys_root else None
    if count is None and proc_path.rstrip("/") == "/proc" and hasattr(os, "sched_getaffinity"):
        count = len(os.sched_getaffinity(0))
    return count or os.cpu_count()
