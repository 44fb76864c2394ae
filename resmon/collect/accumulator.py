"""The run accumulator: samples in, the wire contract's ``run_summary`` out.

Memory stays linear in the number of samples and small: every series is an
``array('d')`` (8 bytes a value), the top-process table only keeps processes that
are alive or still among the top N (a dead process's peaks are final, and the top
N's thresholds only rise, so a dead process outside them can never get back in),
and the timeline is a fixed number of buckets that merge pairwise when full.

Statistics (resmon.stats): peak, p99, p95, p75, p50, avg with ``sorted[int((n-1)*p)]``.
A CPU sample without a valid delta (the first, or a container first seen with old
processes) is left out of CPU statistics; its memory counts.  Containers are
summarised in name order, each over the samples it was seen in.
"""

from __future__ import annotations

from array import array
from datetime import UTC, datetime
from typing import Any

from resmon.collect.samples import ContainerSample, Sample, add_cgroup_counters
from resmon.schema import format_time
from resmon.stats import Series


class _ContainerRun:
    __slots__ = (
        "cpu",
        "cpu_seconds",
        "cpu_throttled_seconds",
        "limit_cpu_cores",
        "limit_memory_bytes",
        "memory",
        "memory_peak_bytes",
        "oom_kills",
        "source_cpu",
        "source_memory",
        "throttled_periods_percent",
    )

    def __init__(self) -> None:
        self.cpu = Series()
        self.memory = Series()
        self.cpu_seconds = 0.0
        self.limit_cpu_cores: float | None = None
        self.limit_memory_bytes: int | None = None
        self.memory_peak_bytes: int | None = None
        self.cpu_throttled_seconds: float | None = None
        self.throttled_periods_percent: float | None = None
        self.oom_kills: int | None = None
        self.source_cpu: set[str] = set()
        self.source_memory: set[str] = set()

    def add(self, c: ContainerSample) -> None:
        if c.cpu_cores is not None:
            self.cpu.add(c.cpu_cores)
            self.source_cpu.add(c.source_cpu)
        if c.memory_bytes is not None:  # None: only zombies this sample, no reading
            self.memory.add(float(c.memory_bytes))
            self.source_memory.add(c.source_memory)
        # cpu_seconds is cumulative and never decreases; keep the largest seen.
        self.cpu_seconds = max(self.cpu_seconds, c.cpu_seconds)
        if c.limit_cpu_cores is not None:
            self.limit_cpu_cores = c.limit_cpu_cores
        if c.limit_memory_bytes is not None:
            self.limit_memory_bytes = c.limit_memory_bytes
        if c.memory_peak_bytes is not None:
            self.memory_peak_bytes = max(self.memory_peak_bytes or 0, c.memory_peak_bytes)
        if c.cpu_throttled_seconds is not None:
            self.cpu_throttled_seconds = c.cpu_throttled_seconds
        if c.throttled_periods_percent is not None:
            self.throttled_periods_percent = c.throttled_periods_percent
        if c.oom_kills is not None:
            self.oom_kills = max(self.oom_kills or 0, c.oom_kills)

    def summary(self, name: str) -> dict[str, Any]:
        memory = self.memory.summary_or_zero()
        # The kernel's high-water mark sees peaks between samples.
        if self.memory_peak_bytes is not None and self.memory_peak_bytes > memory["peak"]:
            memory["peak"] = float(self.memory_peak_bytes)
        out: dict[str, Any] = {
            "name": name,
            "cpu_cores": self.cpu.summary_or_zero(),
            "memory_bytes": memory,
            "cpu_seconds": round(self.cpu_seconds, 3),
            "limit_cpu_cores": self.limit_cpu_cores,
            "limit_memory_bytes": self.limit_memory_bytes,
        }
        add_cgroup_counters(out, self)
        return out


class _Timeline:
    """At most ``points`` buckets of consecutive samples; when full, neighbours merge
    pairwise and each bucket covers twice as many samples from then on."""

    def __init__(self, points: int) -> None:
        self.points = max(2, points)
        self.width = 1  # samples per bucket
        # Per bucket: t of its first sample, sample count, CPU sum and count, memory sum,
        # and per container [cpu sum, cpu count, memory sum, memory count].
        self.t: list[float] = []
        self.n: list[int] = []
        self.cpu_sum: list[float] = []
        self.cpu_n: list[int] = []
        self.mem_sum: list[float] = []
        self.containers: list[dict[str, list[float]]] = []

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
            acc = bucket.setdefault(name, [0.0, 0.0, 0.0, 0.0])
            if c.cpu_cores is not None:
                acc[0] += c.cpu_cores
                acc[1] += 1
            if c.memory_bytes is not None:
                acc[2] += c.memory_bytes
                acc[3] += 1

    def _merge(self) -> None:
        def pairs(values: list) -> list:
            return [values[i : i + 2] for i in range(0, len(values), 2)]

        merged_containers = []
        for pair in pairs(self.containers):
            out: dict[str, list[float]] = {}
            for bucket in pair:
                for name, acc in bucket.items():
                    into = out.setdefault(name, [0.0, 0.0, 0.0, 0.0])
                    for i in range(4):
                        into[i] += acc[i]
            merged_containers.append(out)
        self.t = [p[0] for p in pairs(self.t)]
        self.n = [sum(p) for p in pairs(self.n)]
        self.cpu_sum = [sum(p) for p in pairs(self.cpu_sum)]
        self.cpu_n = [sum(p) for p in pairs(self.cpu_n)]
        self.mem_sum = [sum(p) for p in pairs(self.mem_sum)]
        self.containers = merged_containers
        self.width *= 2

    def points_list(self) -> list[dict[str, Any]]:
        out = []
        for i, n in enumerate(self.n):
            containers = {}
            for name in sorted(self.containers[i]):
                cpu_sum, cpu_n, mem_sum, mem_n = self.containers[i][name]
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
        self.containers: dict[str, _ContainerRun] = {}
        self.cpu_seconds_total = 0.0
        self.command_container: str | None = None
        # (pid, name) -> [peak cpu percent (-1: none yet), peak rss]
        self._top: dict[tuple[int, str], array] = {}
        self._timeline = _Timeline(timeline_points)

    def add(self, sample: Sample) -> None:
        if self.start is None:
            self.start = sample.timestamp
        self.end = sample.timestamp
        self.count += 1
        if sample.cpu_total_percent is not None:
            self.cpu_total.add(sample.cpu_total_percent)
        self.mem_used.add(float(sample.mem_used_bytes))
        self.mem_percent.add(sample.mem_used_percent)
        self.cpu_seconds_total = max(self.cpu_seconds_total, sample.cpu_seconds_total)
        if sample.command_container is not None:
            self.command_container = sample.command_container
        for name, c in sample.containers.items():
            run = self.containers.get(name)
            if run is None:
                run = self.containers[name] = _ContainerRun()
            run.add(c)
        alive = set()
        for p in sample.processes:
            key = (p.pid, p.name)
            alive.add(key)
            entry = self._top.get(key)
            if entry is None:
                entry = self._top[key] = array("d", (-1.0, 0.0))
            if p.cpu_percent is not None and p.cpu_percent > entry[0]:
                entry[0] = p.cpu_percent
            if p.rss_bytes > entry[1]:
                entry[1] = float(p.rss_bytes)
        self._prune_top(alive)
        self._timeline.add(sample.timestamp - self.start, sample)

    def _prune_top(self, alive: set[tuple[int, str]]) -> None:
        # Prune only when the table has grown well past what must be kept, so the
        # sort runs rarely; the bound stays linear in the live process count.
        if len(self._top) <= 2 * len(alive) + 4 * self.top_n + 64:
            return
        keep = set(alive)
        keep.update(self._ranked(0)[: self.top_n])
        keep.update(self._ranked(1)[: self.top_n])
        self._top = {k: v for k, v in self._top.items() if k in keep}

    def _ranked(self, index: int) -> list[tuple[int, str]]:
        candidates = [k for k, v in self._top.items() if index == 1 or v[0] >= 0]
        return sorted(candidates, key=lambda k: (-self._top[k][index], k[0]))

    def _process_list(self, index: int) -> list[dict[str, Any]]:
        out = []
        for pid, name in self._ranked(index)[: self.top_n]:
            peak_cpu, peak_rss = self._top[(pid, name)]
            out.append(
                {
                    "pid": pid,
                    "name": name,
                    "peak_cpu_percent": round(max(0.0, peak_cpu), 2),
                    "peak_mem_rss_bytes": int(peak_rss),
                }
            )
        return out

    def cpu_seconds(self) -> float:
        """The run's CPU seconds for the measured scope: the command's in wrapper mode,
        else the sum over every container seen (all visible processes but resmon)."""
        if self.command_container is not None:
            run = self.containers.get(self.command_container)
            return run.cpu_seconds if run else 0.0
        return sum(run.cpu_seconds for run in self.containers.values())

    def run_summary(self) -> dict[str, Any] | None:
        if self.count == 0 or self.start is None or self.end is None:
            return None
        return {
            "start_time": format_time(datetime.fromtimestamp(self.start, UTC)),
            "end_time": format_time(datetime.fromtimestamp(self.end, UTC)),
            "duration_seconds": round(max(0.0, self.end - self.start), 3),
            "sample_count": self.count,
            "cpu_total_percent": self.cpu_total.summary_or_zero(),
            "mem_used_bytes": self.mem_used.summary_or_zero(),
            "mem_used_percent": self.mem_percent.summary_or_zero(),
            "top_cpu_processes": self._process_list(0),
            "top_mem_processes": self._process_list(1),
            "containers": [self.containers[name].summary(name) for name in sorted(self.containers)],
            "cpu_seconds": round(self.cpu_seconds(), 3),
            "timeline": self._timeline.points_list(),
        }

    def sources(self) -> dict[str, dict[str, list[str]]]:
        """Per container, the sources its CPU and memory figures came from (for B's
        ``collector.sources`` block)."""
        return {
            name: {"cpu": sorted(run.source_cpu), "memory": sorted(run.source_memory)}
            for name, run in sorted(self.containers.items())
        }
