"""A sample's per-container figures.

A container's CPU and memory are the sums over its processes (the CPU credit of
:mod:`resmon.collect.sampler`, the RSS), replaced by its kernel counters where its
cgroup directories are its own (:mod:`resmon.collect.kernel_counters`); its limits
are ``CGROUP_LIMITS`` where set, else its cgroup's; its ``cpu_seconds`` is the
running total over the run.
"""

from __future__ import annotations

from resmon.cgroupfs import CgroupFS
from resmon.collect.containers import Limits
from resmon.collect.kernel_counters import (
    NO_KERNEL_FIGURES,
    ContainerDirs,
    KernelCounters,
    KernelFigures,
    exclusive_dirs,
)
from resmon.collect.sample_state import EXCLUDED, Paths, SampleWork
from resmon.collect.samples import SOURCE_CGROUPFS, SOURCE_PROCFS, ContainerSample
from resmon.procfs import CLK_TCK, PAGE_SIZE

# /proc/PID/stat states of a process that has exited: zombie, dead.
_DEAD_STATES = frozenset({"Z", "X", "x"})


class ContainerFigures:
    """Makes each sample's ContainerSamples, and keeps what spans samples: the running
    CPU totals, the kernel counters' previous readings, the containers' own directories."""

    def __init__(
        self, cgroupfs: CgroupFS | None, limits: dict[str, Limits], command: str | None
    ) -> None:
        self._cgroupfs = cgroupfs
        self._limits = limits
        # Wrapper mode: the command's container, which is there even before its processes.
        self._command = command
        self._cpu_seconds: dict[str, float] = {}
        self._kernel: dict[str, KernelCounters] = {}
        # The distinct (group, cgroup paths) pairs of the live processes; they only
        # change when processes come or go.
        self._distinct: set[tuple[str, Paths]] | None = None
        # (group names, exclusive cgroup directories per container) of the last sample.
        self._dirs_cache: tuple[dict[str, str], ContainerDirs] | None = None
        self._command_final: float | None = None

    def processes_changed(self) -> None:
        """Processes came or went: the containers' own directories are to be found again."""
        self._distinct = None

    def command_final(self, cpu_seconds: float) -> None:
        """The command's exact CPU total, for its container's next (last) sample."""
        self._command_final = cpu_seconds

    def make(self, work: SampleWork) -> dict[str, ContainerSample]:
        """Each container's figures (a container is the groups that carry one name)."""
        by_container: dict[str, list[str]] = {}
        for group, name in work.group_names.items():
            by_container.setdefault(name, []).append(group)
        if self._command is not None:
            by_container.setdefault(self._command, [])
        fs = self._cgroupfs
        dirs_by_container = self._own_dirs(fs, work) if fs is not None else {}
        return {
            name: self._container(name, groups, work, dirs_by_container.get(name))
            for name, groups in by_container.items()
        }

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
        self, name: str, groups: list[str], work: SampleWork, dirs: dict[str, list[str]] | None
    ) -> ContainerSample:
        """One container: the sums over its processes, replaced by its kernel counters
        where it has directories of its own, and its limits."""
        members = [m for g in groups for m in work.group_members.get(g, [])]
        elapsed = work.elapsed
        credit = sum(work.group_credit.get(g, 0) for g in groups) / CLK_TCK
        valid = elapsed is not None and work.invalid_groups.isdisjoint(groups)
        source_cpu = source_memory = SOURCE_PROCFS
        memory: int | None = sum(state.stat.rss_pages for state in members) * PAGE_SIZE
        if not memory and all(state.stat.state in _DEAD_STATES for state in members):
            # Only zombies (or nobody): a zombie has no RSS, so 0 would be a false
            # reading (the wrapped command read as a zombie in the last sample would
            # pull a short run's p50 down).  No memory reading; its CPU still counts.
            memory = None
        kernel = self._kernel_figures(name, dirs, elapsed)
        if kernel.cpu_seconds is not None:
            credit, valid, source_cpu = kernel.cpu_seconds, True, SOURCE_CGROUPFS
        if kernel.memory_bytes is not None:
            memory, source_memory = kernel.memory_bytes, SOURCE_CGROUPFS
        credit, cumulative = self._count_cpu_seconds(name, credit)
        limit_cpu, limit_mem = self._limits_of(name, kernel)
        cpu_cores = credit / elapsed if valid and elapsed else None
        return ContainerSample(
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
        )

    def _kernel_figures(
        self, name: str, dirs: dict[str, list[str]] | None, elapsed: float | None
    ) -> KernelFigures:
        if dirs and self._cgroupfs is not None:
            counters = self._kernel.setdefault(name, KernelCounters())
            return counters.read(self._cgroupfs, dirs, elapsed)
        if name in self._kernel:
            self._kernel[name].forget()
        return NO_KERNEL_FIGURES

    def _count_cpu_seconds(self, name: str, credit: float) -> tuple[float, float]:
        """Add this interval's CPU seconds to the container's total: the interval's and
        the total, both raised in wrapper mode to the wait's rusage total (the tail
        since the last reading) in the command container's last sample."""
        cumulative = self._cpu_seconds.get(name, 0.0) + credit
        if name == self._command and self._command_final is not None:
            if self._command_final > cumulative:
                credit += self._command_final - cumulative
                cumulative = self._command_final
            self._command_final = None
        self._cpu_seconds[name] = cumulative
        return credit, cumulative

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
