"""What one sample reports: the system, per process and per container figures.

:class:`Sample` is what :meth:`resmon.collect.sampler.Sampler.sample` returns; each
``record()`` is the body of a ``metrics_collected`` log record (the wire format of
one sample).  These classes hold figures only: how they are measured is in
:mod:`resmon.collect.sampler`.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any, Protocol

from resmon import procfs

SOURCE_PROCFS = "procfs"
SOURCE_CGROUPFS = "cgroupfs"


@dataclass(slots=True)
class ProcessSample:
    pid: int
    name: str
    cpu_percent: float | None  # 100 = one core, over the interval; None without a delta
    rss_bytes: int
    container: str = ""
    ppid: int = 0
    threads: int = 0

    def record(self) -> dict[str, Any]:
        return {
            "pid": self.pid,
            "name": self.name,
            "cpu_percent": _round(self.cpu_percent, 2),
            "rss_bytes": self.rss_bytes,
            "container": self.container,
        }


@dataclass
class ContainerSample:
    name: str
    cpu_cores: float | None
    # None: no memory reading this sample (its processes are all zombies, no cgroupfs).
    memory_bytes: int | None
    process_count: int
    cpu_seconds: float
    cpu_percent_of_limit: float | None = None
    memory_percent_of_limit: float | None = None
    limit_cpu_cores: float | None = None
    limit_memory_bytes: int | None = None
    memory_peak_bytes: int | None = None
    cpu_throttled_seconds: float | None = None
    throttled_periods_percent: float | None = None
    oom_kills: int | None = None
    source_cpu: str = SOURCE_PROCFS
    source_memory: str = SOURCE_PROCFS
    pressure: dict[str, dict[str, dict[str, float]]] | None = None

    def record(self) -> dict[str, Any]:
        out: dict[str, Any] = {
            "name": self.name,
            "cpu_cores": _round(self.cpu_cores, 4),
            "memory_bytes": self.memory_bytes,
            "process_count": self.process_count,
            "cpu_seconds": round(self.cpu_seconds, 3),
            "cpu_percent_of_limit": _round(self.cpu_percent_of_limit, 2),
            "memory_percent_of_limit": _round(self.memory_percent_of_limit, 2),
            "limit_cpu_cores": self.limit_cpu_cores,
            "limit_memory_bytes": self.limit_memory_bytes,
            "source_cpu": self.source_cpu,
            "source_memory": self.source_memory,
        }
        add_cgroup_counters(out, self)
        if self.pressure:
            out["pressure"] = self.pressure
        return out


class CgroupCounters(Protocol):
    memory_peak_bytes: int | None
    cpu_throttled_seconds: float | None
    throttled_periods_percent: float | None
    oom_kills: int | None


def add_cgroup_counters(out: dict[str, Any], source: CgroupCounters) -> None:
    """Add the cgroup-only counters ``source`` has (memory high-water mark, throttling,
    OOM kills) to a container record or summary; a counter the cgroup did not give is
    left out rather than written as null, so procfs-only records stay as they were.

    Shared by the per-sample record and the run summary's container entry
    (``accumulator``), which carry these counters under the same names."""
    if source.memory_peak_bytes is not None:
        out["memory_peak_bytes"] = source.memory_peak_bytes
    if source.cpu_throttled_seconds is not None:
        out["cpu_throttled_seconds"] = round(source.cpu_throttled_seconds, 3)
    if source.throttled_periods_percent is not None:
        out["throttled_periods_percent"] = round(source.throttled_periods_percent, 2)
    if source.oom_kills is not None:
        out["oom_kills"] = source.oom_kills


@dataclass
class Sample:
    timestamp: float
    elapsed: float | None
    cpu_total_percent: float | None
    mem_total_bytes: int
    mem_used_bytes: int
    mem_used_percent: float
    cpu_seconds_total: float
    top_cpu: list[ProcessSample]
    top_mem: list[ProcessSample]
    processes: list[ProcessSample]
    containers: dict[str, ContainerSample]
    # Wrapper mode: the name of the command's container (its cpu_seconds is the run's scope).
    command_container: str | None = None
    pressure: dict[str, dict[str, dict[str, float]]] | None = None

    def record(self) -> dict[str, Any]:
        """The body of a ``metrics_collected`` record (the caller adds ``msg`` and ``time``)."""
        out: dict[str, Any] = {
            "elapsed_seconds": _round(self.elapsed, 3),
            "cpu_total_percent": _round(self.cpu_total_percent, 2),
            "system_cpu_seconds": round(self.cpu_seconds_total, 2),
            "mem_total_bytes": self.mem_total_bytes,
            "mem_used_bytes": self.mem_used_bytes,
            "mem_used_percent": round(self.mem_used_percent, 2),
            "process_count": len(self.processes),
            "top_cpu_processes": [p.record() for p in self.top_cpu],
            "top_mem_processes": [p.record() for p in self.top_mem],
            "containers": [self.containers[name].record() for name in sorted(self.containers)],
        }
        if self.pressure:
            out["pressure"] = self.pressure
        return out


def _round(value: float | None, digits: int) -> float | None:
    return None if value is None else round(value, digits)


def pressure_record(pressure: dict[str, dict[str, procfs.Pressure]]) -> dict:
    """PSI readings (system-wide or a cgroup's) as they appear in a record."""
    return {
        resource: {
            kind: {
                "avg10": p.avg10,
                "avg60": p.avg60,
                "avg300": p.avg300,
                "total_usec": p.total_usec,
            }
            for kind, p in kinds.items()
        }
        for resource, kinds in pressure.items()
    }
