"""A container's own cgroup directories, and the kernel counters read from them.

Where a container's processes sit in cgroup directories that hold no other
visible process (none of another container, none of resmon), no nested
directory of another container, and that are not the root of a hierarchy (the
root counts the whole machine, see :mod:`resmon.cgroupfs`), the kernel's
``usage_usec`` / ``cpuacct.usage`` replaces the per-process credit and
``memory.current`` / ``memory.usage_in_bytes`` replaces the RSS sum; the figure's
``source_cpu`` / ``source_memory`` says which was used.  Note that the kernel's
memory figure includes the page cache the container caused (what its memory limit
counts), so it is usually larger than the RSS sum.  A high-water mark
(``memory.peak``, ``memory.max_usage_in_bytes``) covers the cgroup's whole life, so
it is reported as ``memory_peak_bytes`` only once it has risen during the run.

The root cgroup ``/`` (container ``host``) never uses kernel counters on a real
root.  Inside a private cgroup namespace ``/`` is the namespace's own cgroup
(resmon's container), and other containers' paths start with ``/..`` (they are
named from their ids, and their directories are not reachable).
"""

from __future__ import annotations

from dataclasses import dataclass

from resmon.cgroupfs import HIERARCHIES, V1_CPUACCT, V2, CgroupFS, read_container
from resmon.collect.samples import pressure_record

# Per container, per hierarchy: the directories whose counters are its own.
ContainerDirs = dict[str, dict[str, list[str]]]


@dataclass(slots=True, frozen=True)
class KernelFigures:
    """One reading of a container's own directories, over the run; None: not given."""

    # CPU seconds used since the previous reading; None without a comparable one.
    cpu_seconds: float | None = None
    # The CPU counter was read (this reading is a baseline when cpu_seconds is None).
    cpu_read: bool = False
    memory_bytes: int | None = None
    memory_peak_bytes: int | None = None
    limit_cpu_cores: float | None = None
    limit_memory_bytes: int | None = None
    cpuset_cpus: int | None = None
    cpu_throttled_seconds: float | None = None
    throttled_periods_percent: float | None = None
    oom_kills: int | None = None
    pressure: dict[str, dict[str, dict[str, float]]] | None = None


# A container without directories of its own: every figure comes from procfs.
NO_KERNEL_FIGURES = KernelFigures()


class KernelCounters:
    """A container's kernel counters at the previous reading, and at its first."""

    __slots__ = ("base", "cpu_dirs", "usage_usec")

    def __init__(self) -> None:
        self.cpu_dirs: tuple[str, ...] | None = None
        self.usage_usec: int | None = None
        # Baselines of cumulative counters, so figures cover the run, not the cgroup's life.
        self.base: dict[str, int] = {}

    def forget(self) -> None:
        """The directories stopped being exclusive or readable: the next time they
        are, start from a fresh reading rather than a stale one."""
        self.usage_usec = None

    def read(
        self, fs: CgroupFS, dirs: dict[str, list[str]], elapsed: float | None
    ) -> KernelFigures:
        """Read the counters: CPU as the use since the previous reading (only when that
        reading came from the same directories), the other cumulative counters since
        the first reading, so that they cover the run."""
        reading = read_container(fs, dirs)
        cpu_dirs = tuple(dirs.get(V2) or dirs.get(V1_CPUACCT) or ())
        usage = reading.cpu_usage_usec
        cpu_seconds = None
        if (
            usage is not None
            and self.usage_usec is not None
            and self.cpu_dirs == cpu_dirs
            and usage >= self.usage_usec
            and elapsed is not None
        ):
            cpu_seconds = (usage - self.usage_usec) / 1e6
        self.usage_usec, self.cpu_dirs = usage, cpu_dirs
        base = self.base
        peak = throttled_s = throttled_pct = None
        oom = None
        if reading.memory_peak_bytes is not None:
            # The high-water mark covers the cgroup's whole life: it is the
            # run's peak only once it has risen since the first reading.
            base.setdefault("memory_peak", reading.memory_peak_bytes)
            if reading.memory_peak_bytes > base["memory_peak"]:
                peak = reading.memory_peak_bytes
        if reading.throttled_usec is not None:
            base.setdefault("throttled_usec", reading.throttled_usec)
            throttled_s = max(0, reading.throttled_usec - base["throttled_usec"]) / 1e6
        if reading.nr_periods is not None and reading.nr_throttled is not None:
            base.setdefault("nr_periods", reading.nr_periods)
            base.setdefault("nr_throttled", reading.nr_throttled)
            periods = reading.nr_periods - base["nr_periods"]
            if periods > 0:
                throttled = max(0, reading.nr_throttled - base["nr_throttled"])
                throttled_pct = min(100.0, throttled / periods * 100.0)
        if reading.oom_kills is not None:
            base.setdefault("oom_kills", reading.oom_kills)
            oom = max(0, reading.oom_kills - base["oom_kills"])
        return KernelFigures(
            cpu_seconds=cpu_seconds,
            cpu_read=usage is not None,
            cpuset_cpus=reading.cpuset_cpus,
            memory_bytes=reading.memory_bytes,
            memory_peak_bytes=peak,
            limit_cpu_cores=reading.limit_cpu_cores,
            limit_memory_bytes=reading.limit_memory_bytes,
            cpu_throttled_seconds=throttled_s,
            throttled_periods_percent=throttled_pct,
            oom_kills=oom,
            pressure=pressure_record(reading.pressure) if reading.pressure else None,
        )


def exclusive_dirs(
    fs: CgroupFS,
    group_names: dict[str, str],
    distinct: set[tuple[str, tuple[str | None, ...]]],
    excluded: str,
) -> ContainerDirs:
    """Per container, per hierarchy, the cgroup directories whose counters are its own.

    ``distinct`` is the distinct (group, cgroup path per hierarchy in HIERARCHIES
    order) pairs of the live processes, ``group_names`` each group's container, and
    the group ``excluded`` resmon's own processes, which belong to no container.

    A hierarchy is usable for a container when every one of its processes has a
    path there, no process of anyone else (another container, resmon) shares one of
    those paths or sits below one of them, and the directory is readable and not a
    hierarchy's true root.
    """
    if not fs.mounts:
        return {}
    owners: dict[tuple[str, str], set[str]] = {}
    paths_of: dict[str, dict[str, set[str | None]]] = {}
    # A group's name can change (a mapped process shows up), so names are applied
    # here rather than kept in the pairs.
    named = {
        (excluded if group == excluded else group_names.get(group), paths)
        for group, paths in distinct
    }
    mounted = [(i, h) for i, h in enumerate(HIERARCHIES) if h in fs.mounts]
    for owner, hpaths in named:
        if owner is None:
            continue
        for i, hierarchy in mounted:
            path = hpaths[i]
            paths_of.setdefault(owner, {}).setdefault(hierarchy, set()).add(path)
            if path is not None:
                owners.setdefault((hierarchy, path), set()).add(owner)
    out: ContainerDirs = {}
    for owner, per_hierarchy in paths_of.items():
        if owner == excluded:
            continue
        dirs: dict[str, list[str]] = {}
        for hierarchy, paths in per_hierarchy.items():
            if None in paths:
                continue
            concrete = sorted(p for p in paths if p is not None)
            if not _exclusive(owner, hierarchy, concrete, owners):
                continue
            # Nested paths of one container: the ancestor's counters already hold the child's.
            tops = [
                p
                for p in concrete
                if not any(q != p and (q == "/" or p.startswith(q + "/")) for q in concrete)
            ]
            found = [fs.directory(hierarchy, p) for p in tops]
            if found and all(d is not None for d in found):
                dirs[hierarchy] = [d for d in found if d is not None]
        if dirs:
            out[owner] = dirs
    return out


def _exclusive(
    owner: str, hierarchy: str, paths: list[str], owners: dict[tuple[str, str], set[str]]
) -> bool:
    for path in paths:
        if owners.get((hierarchy, path), set()) != {owner}:
            return False
    prefixes = tuple("/" if p == "/" else p + "/" for p in paths)
    for (h, other_path), who in owners.items():
        if h != hierarchy or who == {owner}:
            continue
        if other_path.startswith(prefixes):
            return False
    return True
