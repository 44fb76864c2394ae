"""The run accumulator: samples in, the wire contract's ``run_summary`` out.

Memory stays linear in the number of samples and small: every series is an
``array('d')`` (8 bytes a value), the top-process table only keeps processes that
are alive or still among the top N of their container (a dead process's peaks are
final, and the top N's thresholds only rise, so a dead process outside them can
never get back in), and the timeline is a fixed number of buckets that merge
pairwise when full.

Statistics (resmon.stats): peak, p99, p95, p75, p50, avg with ``sorted[int((n-1)*p)]``.
A CPU sample without a valid delta (the first, or a container first seen with old
processes) is left out of CPU statistics; its memory counts.  Containers are
summarised in name order, each over the samples it was seen in, each with ONE
definition of its memory and CPU for the whole run
(:mod:`resmon.collect.container_run`).  The job (:mod:`resmon.collect.job`) is the
command's container in wrapper mode, every container in sidecar mode; the top
process lists are the job's processes.
"""

from __future__ import annotations

from array import array
from datetime import UTC, datetime
from typing import TYPE_CHECKING, Any

from resmon.collect.container_run import (
    KIND_CGROUP,
    KIND_PSS,
    KIND_RSS,
    ContainerRun,
    readings,
)
from resmon.collect.io_run import IORun, job_io, job_network
from resmon.collect.job import SCOPE_COMMAND, SCOPE_CONTAINERS, job_block
from resmon.collect.records import format_time
from resmon.collect.samples import SOURCE_CGROUPFS, Sample, add_cgroup_counters
from resmon.stats import Series

if TYPE_CHECKING:
    from resmon.collect.tree_tracker import TreeFigures

# A timeline bucket's per-container sums and counts, by position.
_T_CPU_PROCFS, _T_CPU_CGROUP, _T_RSS, _T_PSS, _T_CGROUP = 0, 2, 4, 6, 8
_T_SLOTS = 10
_T_MEMORY = {KIND_RSS: _T_RSS, KIND_PSS: _T_PSS, KIND_CGROUP: _T_CGROUP}


class _Timeline:
    """At most ``points`` buckets of consecutive samples; when full, neighbours merge
    pairwise and each bucket covers twice as many samples from then on."""

    def __init__(self, points: int) -> None:
        self.points = max(2, points)
        self.width = 1  # samples per bucket
        # Per bucket: t of its first sample, sample count, CPU sum and count, memory sum,
        # and per container the sum and count of each definition (the _T_ slots), so
        # that a container's points use the definition its summary reports.
        self.t: list[float] = []
        self.n: list[int] = []
        self.cpu_sum: list[float] = []
        self.cpu_n: list[int] = []
        self.mem_sum: list[float] = []
        self.containers: list[dict[str, array]] = []

    def add(self, t: float, sample: Sample) -> None:
        if not self.n or self.n[-1] >= self.width:
            if len(self.n) >= self.points:
                self._merge()
            self.t.append(t)
            self.n.append(0)
            self.cpu_sum.append(0.0)
            self.cpu_n.append(0)
            self.mem_sum.append(0.0)
            self.containers.append({})
        self.n[-1] += 1
        if sample.cpu_total_percent is not None:
            self.cpu_sum[-1] += sample.cpu_total_percent
            self.cpu_n[-1] += 1
        self.mem_sum[-1] += sample.mem_used_bytes
        bucket = self.containers[-1]
        for name, c in sample.containers.items():
            acc = bucket.get(name)
            if acc is None:
                acc = bucket[name] = array("d", bytes(8 * _T_SLOTS))
            rss, pss, cgroup, cores_procfs, cores_cgroup, _ = readings(c)
            for slot, value in (
                (_T_CPU_PROCFS, cores_procfs),
                (_T_CPU_CGROUP, cores_cgroup),
                (_T_RSS, rss),
                (_T_PSS, pss),
                (_T_CGROUP, cgroup),
            ):
                if value is not None:
                    acc[slot] += value
                    acc[slot + 1] += 1

    def rename(self, old: str, new: str) -> None:
        for bucket in self.containers:
            acc = bucket.pop(old, None)
            if acc is None:
                continue
            into = bucket.get(new)
            if into is None:
                bucket[new] = acc
            else:
                for i in range(_T_SLOTS):
                    into[i] += acc[i]

    def _merge(self) -> None:
        def pairs(values: list) -> list:
            return [values[i : i + 2] for i in range(0, len(values), 2)]

        merged_containers = []
        for pair in pairs(self.containers):
            out: dict[str, array] = {}
            for bucket in pair:
                for name, acc in bucket.items():
                    into = out.get(name)
                    if into is None:
                        out[name] = array("d", acc)
                        continue
                    for i in range(_T_SLOTS):
                        into[i] += acc[i]
            merged_containers.append(out)
        self.t = [p[0] for p in pairs(self.t)]
        self.n = [sum(p) for p in pairs(self.n)]
        self.cpu_sum = [sum(p) for p in pairs(self.cpu_sum)]
        self.cpu_n = [sum(p) for p in pairs(self.cpu_n)]
        self.mem_sum = [sum(p) for p in pairs(self.mem_sum)]
        self.containers = merged_containers
        self.width *= 2

    def points_list(self, slots: dict[str, tuple[int, int]]) -> list[dict[str, Any]]:
        """The points; ``slots``: per container, its CPU and memory definitions' slots."""
        out = []
        for i, n in enumerate(self.n):
            containers = {}
            for name in sorted(self.containers[i]):
                acc = self.containers[i][name]
                cpu_slot, mem_slot = slots.get(name, (_T_CPU_PROCFS, _T_RSS))
                cpu_sum, cpu_n = acc[cpu_slot], acc[cpu_slot + 1]
                mem_sum, mem_n = acc[mem_slot], acc[mem_slot + 1]
                containers[name] = {
                    "cpu_cores": round(cpu_sum / cpu_n, 4) if cpu_n else None,
                    "memory_bytes": round(mem_sum / mem_n) if mem_n else None,
                }
            out.append(
                {
                    "t": round(self.t[i], 3),
                    "cpu_percent": (
                        round(self.cpu_sum[i] / self.cpu_n[i], 2) if self.cpu_n[i] else None
                    ),
                    "mem_used_bytes": round(self.mem_sum[i] / n),
                    "containers": containers,
                }
            )
        return out


# The top-process table's figures, by position (_CONTAINER: an index in the names).
_PEAK_CPU, _PEAK_RSS, _HWM, _CONTAINER = 0, 1, 2, 3


class RunAccumulator:
    """Keeps what a run summary needs from every sample, compactly."""

    def __init__(self, top_n: int = 5, timeline_points: int = 300) -> None:
        self.top_n = top_n
        self.count = 0
        self.start: float | None = None
        self.end: float | None = None
        self.cpu_total = Series()
        self.mem_used = Series()
        self.mem_percent = Series()
        self.containers: dict[str, ContainerRun] = {}
        # Disk I/O and network per container (resmon.collect.io_run), where measured.
        self.io: dict[str, IORun] = {}
        self.cpu_seconds_total = 0.0
        self.command_container: str | None = None
        # (pid, name) -> [peak cpu percent (-1: none yet), peak rss, VmHWM (-1: none),
        # the container it was last seen in (an index in _names)].
        self._top: dict[tuple[int, str], array] = {}
        self._names: list[str] = []
        self._name_index: dict[str, int] = {}
        self._timeline = _Timeline(timeline_points)
        # Wrapper mode, from the wait for the command (command_rusage).
        self._rusage: tuple[float, int | None, float] | None = None
        self._tree: TreeFigures | None = None

    def add(self, sample: Sample) -> None:
        if self.start is None:
            self.start = sample.timestamp
        self.end = sample.timestamp
        index = self.count
        self.count += 1
        if sample.cpu_total_percent is not None:
            self.cpu_total.add(sample.cpu_total_percent)
        self.mem_used.add(float(sample.mem_used_bytes))
        self.mem_percent.add(sample.mem_used_percent)
        self.cpu_seconds_total = max(self.cpu_seconds_total, sample.cpu_seconds_total)
        if sample.command_container is not None:
            self.command_container = sample.command_container
        for old, new in sample.renamed.items():
            self._rename(old, new)
        for name, c in sample.containers.items():
            run = self.containers.get(name)
            if run is None:
                run = self.containers[name] = ContainerRun(index)
            run.add(c, index)
            if c.io is not None or c.net is not None:
                io_run = self.io.get(name)
                if io_run is None:
                    io_run = self.io[name] = IORun(index)
                io_run.add(c, index)
        self._add_processes(sample)
        self._timeline.add(sample.timestamp - self.start, sample)

    def _add_processes(self, sample: Sample) -> None:
        alive = set()
        top, index_of = self._top, self._name_index
        last_container, last_index = None, 0.0
        command, measured = sample.command_container, True
        for p in sample.processes:
            if p.container is not last_container:  # processes come in runs of one container
                last_container = p.container
                found = index_of.get(last_container)
                if found is None:
                    found = index_of[last_container] = len(self._names)
                    self._names.append(last_container)
                last_index = float(found)
                # Only the job's processes have their high-water marks read.
                measured = command is None or last_container == command
            key = (p.pid, p.name)
            alive.add(key)
            entry = top.get(key)
            if entry is None:
                entry = top[key] = array("d", (-1.0, 0.0, -1.0, 0.0))
            if p.cpu_percent is not None and p.cpu_percent > entry[_PEAK_CPU]:
                entry[_PEAK_CPU] = p.cpu_percent
            if p.rss_bytes > entry[_PEAK_RSS]:
                entry[_PEAK_RSS] = float(p.rss_bytes)
            hwm = p.memory_hwm_bytes
            if hwm is not None and hwm > entry[_HWM]:
                entry[_HWM] = float(hwm)
            elif hwm is None and measured and p.rss_bytes > entry[_HWM]:
                entry[_HWM] = float(p.rss_bytes)  # its high-water mark was its RSS
            entry[_CONTAINER] = last_index
        self._prune_top(alive)

    def command_rusage(
        self, cpu_seconds: float, maxrss_bytes: int | None, orphans_cpu_seconds: float = 0.0
    ) -> None:
        """Wrapper mode: the kernel's figures for the command when it was reaped (the
        wait's user+sys and ru_maxrss) and the CPU of the orphans of its tree.  The
        job's and the command container's cpu_seconds become their sum; ru_maxrss goes
        into the memory peak ranges."""
        self._rusage = (float(cpu_seconds), maxrss_bytes, float(orphans_cpu_seconds))

    def command_tree(self, figures: TreeFigures | None) -> None:
        """Wrapper mode: what the fast tree tracker saw of the command's tree between
        samples (:mod:`resmon.collect.tree_tracker`); it goes into the command
        container's memory peak range and the job's."""
        self._tree = figures

    def _rename(self, old: str, new: str) -> None:
        """A container renamed (a group got its mapped name): its figures so far are the
        new name's."""
        if old == new:
            return
        run = self.containers.pop(old, None)
        if run is not None:
            into = self.containers.get(new)
            if into is None:
                self.containers[new] = run
            else:
                into.absorb(run)
        io_run = self.io.pop(old, None)
        if io_run is not None:
            if new in self.io:
                self.io[new].absorb(io_run)
            else:
                self.io[new] = io_run
        self._timeline.rename(old, new)
        old_index = self._name_index.pop(old, None)
        if old_index is not None:
            new_index = self._name_index.get(new)
            if new_index is None:
                self._names[old_index] = new
                self._name_index[new] = old_index
            else:
                for entry in self._top.values():
                    if entry[_CONTAINER] == old_index:
                        entry[_CONTAINER] = new_index
        if self.command_container == old:
            self.command_container = new

    def _prune_top(self, alive: set[tuple[int, str]]) -> None:
        # Prune only when the table has grown well past what must be kept, so the
        # sort runs rarely; the bound stays linear in the live process count.
        if len(self._top) <= 2 * len(alive) + 4 * self.top_n + 64:
            return
        keep = set(alive)
        for keys in self._by_container().values():
            keep.update(self._ranked(keys, _PEAK_CPU)[: self.top_n])
            keep.update(self._ranked(keys, _PEAK_RSS)[: self.top_n])
        self._top = {k: v for k, v in self._top.items() if k in keep}

    def _container_of(self, key: tuple[int, str]) -> str:
        return self._names[int(self._top[key][_CONTAINER])]

    def _by_container(self) -> dict[str, list[tuple[int, str]]]:
        out: dict[str, list[tuple[int, str]]] = {}
        names = self._names
        for key, entry in self._top.items():
            out.setdefault(names[int(entry[_CONTAINER])], []).append(key)
        return out

    def _ranked(self, keys: list[tuple[int, str]], index: int) -> list[tuple[int, str]]:
        top = self._top
        candidates = [k for k in keys if index != _PEAK_CPU or top[k][_PEAK_CPU] >= 0]
        return sorted(candidates, key=lambda k: (-top[k][index], k[0]))

    def _item(self, key: tuple[int, str]) -> dict[str, Any]:
        peak_cpu, peak_rss = self._top[key][_PEAK_CPU], self._top[key][_PEAK_RSS]
        return {
            "pid": key[0],
            "name": key[1],
            "peak_cpu_percent": round(max(0.0, peak_cpu), 2),
            "peak_mem_rss_bytes": int(peak_rss),
        }

    def _process_list(self, index: int, keys: list[tuple[int, str]]) -> list[dict[str, Any]]:
        """The wire's top list by CPU or memory, over ``keys``, each with its container."""
        return [
            self._item(key) | {"container": self._container_of(key)}
            for key in self._ranked(keys, index)[: self.top_n]
        ]

    def _container_top(self, keys: list[tuple[int, str]]) -> list[dict[str, Any]]:
        """A container's top processes: the top by CPU and the top by memory taken in
        turn (the ones that matter by either), top_n at most."""
        chosen: list[tuple[int, str]] = []
        for pair in zip(self._ranked(keys, _PEAK_CPU), self._ranked(keys, _PEAK_RSS), strict=False):
            for key in pair:
                if key not in chosen and len(chosen) < self.top_n:
                    chosen.append(key)
        if len(chosen) < self.top_n:
            for key in self._ranked(keys, _PEAK_RSS):
                if key not in chosen and len(chosen) < self.top_n:
                    chosen.append(key)
        out = []
        for key in chosen:
            hwm = self._top[key][_HWM]
            out.append(self._item(key) | {"memory_hwm_bytes": int(hwm) if hwm >= 0 else None})
        return out

    def job_containers(self) -> list[str]:
        """The job's containers: the command's in wrapper mode, else every one seen."""
        if self.command_container is not None:
            return [self.command_container] if self.command_container in self.containers else []
        return sorted(self.containers)

    def cpu_seconds(self) -> float:
        """The job's CPU seconds: in wrapper mode the wait's rusage of the command plus
        its orphans' (where given), else the command container's; in sidecar mode the
        sum over every container seen (all visible processes but resmon)."""
        if self.command_container is not None:
            if self._rusage is not None:
                return self._rusage[0] + self._rusage[2]
            run = self.containers.get(self.command_container)
            return run.total_cpu_seconds() if run else 0.0
        return sum(run.total_cpu_seconds() for run in self.containers.values())

    def run_summary(self) -> dict[str, Any] | None:
        if self.count == 0 or self.start is None or self.end is None:
            return None
        command = self.containers.get(self.command_container or "")
        if command is not None and self._rusage is not None:
            command.ru_maxrss = self._rusage[1]
        if command is not None and self._tree is not None and self._tree.ticks:
            command.tree = self._tree
        by_container = self._by_container()
        containers = []
        for name in sorted(self.containers):
            entry = self.containers[name].summary(name)
            if command is not None and name == self.command_container and self._rusage:
                entry["cpu_seconds"] = round(self.cpu_seconds(), 3)
            add_cgroup_counters(entry, self.containers[name])
            self._add_io(entry, name)
            entry["top_processes"] = self._container_top(by_container.get(name, []))
            containers.append(entry)
        job_names = self.job_containers()
        # The job's processes: the command's tree in wrapper mode, else every one.
        job_keys = (
            by_container.get(self.command_container, [])
            if self.command_container is not None
            else list(self._top)
        )
        scope = SCOPE_COMMAND if self.command_container is not None else SCOPE_CONTAINERS
        cpu_seconds = self.cpu_seconds()
        job_runs = {name: self.containers[name] for name in job_names}
        job = job_block(job_runs, scope, self.count, cpu_seconds)
        job_io_runs = [self.io[name] for name in job_names if name in self.io]
        io, network = job_io(job_io_runs, self.count), job_network(job_io_runs, self.count)
        if io is not None:
            job["io"] = io
        if network is not None:
            job["network"] = network
        return {
            "start_time": format_time(datetime.fromtimestamp(self.start, UTC)),
            "end_time": format_time(datetime.fromtimestamp(self.end, UTC)),
            "duration_seconds": round(max(0.0, self.end - self.start), 3),
            "sample_count": self.count,
            "cpu_total_percent": self.cpu_total.summary_or_zero(),
            "mem_used_bytes": self.mem_used.summary_or_zero(),
            "mem_used_percent": self.mem_percent.summary_or_zero(),
            "top_cpu_processes": self._process_list(_PEAK_CPU, job_keys),
            "top_mem_processes": self._process_list(_PEAK_RSS, job_keys),
            "containers": containers,
            "cpu_seconds": round(cpu_seconds, 3),
            "job": job,
            "timeline": self._timeline.points_list(self._timeline_slots()),
        }

    def _add_io(self, entry: dict[str, Any], name: str) -> None:
        """A container's disk I/O and network blocks, where they were measured."""
        io_run = self.io.get(name)
        if io_run is None:
            return
        io, network = io_run.io_summary(), io_run.net_summary()
        if io is not None:
            entry["io"] = io
        if network is not None:
            entry["network"] = network

    def _timeline_slots(self) -> dict[str, tuple[int, int]]:
        return {
            name: (
                _T_CPU_CGROUP if run.cpu_source == SOURCE_CGROUPFS else _T_CPU_PROCFS,
                _T_MEMORY[run.memory_kind],
            )
            for name, run in self.containers.items()
        }

    def sources(self) -> dict[str, dict[str, list[str]]]:
        """Per container, the one source of its CPU and memory figures over the run (for
        the ``collector.sources`` block)."""
        out: dict[str, dict[str, list[str]]] = {
            name: {"cpu": [run.cpu_source], "memory": [run.memory_source]}
            for name, run in sorted(self.containers.items())
        }
        for name, io_run in self.io.items():
            if io_run.io_samples and name in out:
                out[name]["io"] = [io_run.source]
        return out
