"""What one sample reports: the system, per process and per container figures.

:class:`Sample` is what :meth:`resmon.collect.sampler.Sampler.sample` returns; each
``record()`` is the body of a ``metrics_collected`` log record (the wire format of
one sample).  These classes hold figures only: how they are measured is in
:mod:`resmon.collect.sampler`.

The Go collector's fields
-------------------------
A ``metrics_collected`` record is a superset of the Go collector's (the Forgejo
runner resource collector): its fields come first, with its names, nesting and
units, and resmon's own keys follow unchanged, so a log pipeline built on either
keeps working.  The Go fields (:data:`GO_SAMPLE_FIELDS`):

- ``collection_time``: RFC 3339 time of the reading, UTC;
- ``total_processes``: the processes measured (resmon's own excluded), an integer;
- ``cpu``: ``{total_percent}``, the machine's busy percent 0-100 over the interval;
- ``memory``: ``{total_bytes, used_bytes, available_bytes, used_percent}``, the
  machine's (used = MemTotal - MemAvailable);
- ``top_cpu``: ``[{pid, name, cpu_percent}]`` (100 = one core);
- ``top_memory``: ``[{pid, name, rss_bytes}]``;
- ``cgroups``: ``{container name: {name, cpu: {total_ticks, used_cores,
  used_percent, limit_cores}, memory: {total_rss_bytes, used_percent, limit_bytes},
  processes}}``: CPU in cores (2.0 = two cores) and ticks (``CLK_TCK``), memory in
  bytes, percents of the limit; ``used_percent`` and the limits only where
  ``CGROUP_LIMITS`` gives a limit (Go's ``omitempty``).

Go writes numbers where resmon's own keys write ``null``: a figure without a
reading (the first sample has no CPU interval) is ``0`` in a Go field, as the Go
collector prints it; resmon's key beside it still says ``null``.  In
``--log-format text`` ``cpu``, ``memory`` and ``cgroups`` are dotted keys
(``cpu.total_percent=12.5``, ``cgroups.runner.cpu.used_cores=1.5``), as slog writes a
group, and ``top_cpu`` / ``top_memory`` are written as slog's text handler writes a
list of maps (``top_cpu="[map[cpu_percent:99.5 name:make pid:7]]"``).

Where this shape comes from: the Go source was not available to check it
against, so it is built from the evidence there is: the top-level names, nesting and
the per-list process figures (``cpu_percent`` in ``top_cpu``, ``rss_bytes`` in
``top_memory``, which points to a map built per list rather than one struct) are
the Go record's as the issue reporting the difference quotes it; the units are
those of the Go README (containers in cores, system CPU percent 0-100, process
percent 100 = one core, bytes); the names inside ``cpu``, ``memory`` and each
``cgroups`` entry follow the Go collector's metric types (``total_percent``,
``used_bytes``, ``used_cores``, ``total_rss_bytes``, ``limit_cores``, ...) without
a source to check them against, and are limited to what a sample already holds, so
the record costs no work per process beyond the top-N lists.  Left out for that reason:
the CPU split (``user_percent``, ``system_percent``, ``idle_percent``,
``iowait_percent``), ``memory.free_bytes``, ``memory.total_rss_bytes`` /
``rss_percent`` (a sum over every process each interval) and a cgroup's
``cgroup_path`` (without ``CGROUP_PROCESS_MAP`` the container's name is its path).
A container's ``total_rss_bytes`` is resmon's ``memory_bytes``: the RSS sum, or the
cgroup's own figure where ``source_memory`` is ``cgroupfs``; its ``total_ticks`` is
resmon's ``cpu_seconds`` in ticks, which counts reaped children too.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from datetime import UTC, datetime
from typing import Any, Protocol

from resmon import procfs
from resmon.collect.io_figures import IOFigures, NetFigures
from resmon.collect.records import format_time

SOURCE_PROCFS = "procfs"
SOURCE_CGROUPFS = "cgroupfs"

# The Go collector's fields of a metrics_collected record, in its order.
GO_SAMPLE_FIELDS = (
    "collection_time",
    "total_processes",
    "cpu",
    "memory",
    "top_cpu",
    "top_memory",
    "cgroups",
)


@dataclass(slots=True)
class ProcessSample:
    pid: int
    name: str
    cpu_percent: float | None  # 100 = one core, over the interval; None without a delta
    rss_bytes: int
    container: str = ""
    ppid: int = 0
    threads: int = 0
    # Its VmHWM (RSS high-water mark) where it is above its RSS, read when its stat
    # changed; the job's containers only.
    memory_hwm_bytes: int | None = None

    def record(self) -> dict[str, Any]:
        return {
            "pid": self.pid,
            "name": self.name,
            "cpu_percent": _round(self.cpu_percent, 2),
            "rss_bytes": self.rss_bytes,
            "container": self.container,
        }

    def go_cpu_record(self) -> dict[str, Any]:
        """An item of the Go record's ``top_cpu``."""
        return {
            "pid": self.pid,
            "name": self.name,
            "cpu_percent": round(self.cpu_percent or 0.0, 2),
        }

    def go_memory_record(self) -> dict[str, Any]:
        """An item of the Go record's ``top_memory``."""
        return {"pid": self.pid, "name": self.name, "rss_bytes": self.rss_bytes}


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
    # Each definition of the figures separately, so that the run summary can report one
    # for the whole run (``memory_bytes`` / ``cpu_cores`` above are this sample's choice):
    # memory as the RSS sum, the PSS sum (None: not readable for one of its processes,
    # or not measured), the cgroup's own figure (None: no directories of its own).
    memory_rss_bytes: int | None = None
    memory_pss_bytes: int | None = None
    memory_cgroup_bytes: int | None = None
    # The processes' high-water marks (measured containers): the largest VmHWM, the
    # sum over the processes alive at this sample or the previous one; the PSS read
    # this sample (summed over the processes read, no estimate: a sound lower bound).
    memory_hwm_bytes: int | None = None
    memory_hwm_sum_bytes: int | None = None
    memory_pss_read_bytes: int | None = None
    # The PSS sum where every process had been read (else None): an estimate.
    memory_pss_estimate_bytes: int | None = None
    # CPU from the processes' credit and from the kernel's counter (None: no rate), and
    # each one's running total (cpu_seconds_cgroup None: no counter read this sample).
    cpu_cores_procfs: float | None = None
    cpu_cores_cgroup: float | None = None
    cpu_seconds_procfs: float | None = None
    cpu_seconds_cgroup: float | None = None
    # That source's rate was above the CPUs the container can use, and cut to them.
    cpu_capped_procfs: bool = False
    cpu_capped_cgroup: bool = False
    # Disk I/O (resmon.collect.io_counters) and the network namespace's counters
    # (resmon.collect.net_counters) of a measured container; None: not measured.
    io: IOFigures | None = None
    net: NetFigures | None = None
    # The other containers in its network namespace (they report the same figures).
    net_shared_with: tuple[str, ...] = ()

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
        add_io_fields(out, self)
        if self.pressure:
            out["pressure"] = self.pressure
        return out

    def go_record(self) -> dict[str, Any]:
        """The container's entry in the Go record's ``cgroups``: the limits and percents
        of a limit only where a limit is known (Go's ``omitempty``)."""
        cpu: dict[str, Any] = {
            "total_ticks": round(self.cpu_seconds * procfs.CLK_TCK),
            "used_cores": round(self.cpu_cores or 0.0, 4),
        }
        if self.cpu_percent_of_limit:
            cpu["used_percent"] = round(self.cpu_percent_of_limit, 2)
        if self.limit_cpu_cores:
            cpu["limit_cores"] = self.limit_cpu_cores
        memory: dict[str, Any] = {"total_rss_bytes": self.memory_bytes or 0}
        if self.memory_percent_of_limit:
            memory["used_percent"] = round(self.memory_percent_of_limit, 2)
        if self.limit_memory_bytes:
            memory["limit_bytes"] = self.limit_memory_bytes
        return {"name": self.name, "cpu": cpu, "memory": memory, "processes": self.process_count}


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


def _rate(value: float | None) -> float | None:
    return None if value is None else round(value, 1)


def add_io_fields(out: dict[str, Any], c: ContainerSample) -> None:
    """A measured container's disk I/O (this sample's source: ``io_source``) and its
    network namespace's figures, in its record; left out where not measured, so the
    records of before stay as they were.  Totals are since the run's first reading."""
    io = c.io
    chosen = io.chosen if io is not None else None
    if io is not None and chosen is not None:
        out["io_source"] = io.source
        out["io_read_bytes"] = chosen.read_bytes
        out["io_write_bytes"] = chosen.write_bytes
        out["io_read_bytes_per_second"] = _rate(chosen.read_rate)
        out["io_write_bytes_per_second"] = _rate(chosen.write_rate)
        if io.unreadable:
            out["io_unreadable_processes"] = io.unreadable
    net = c.net
    if net is not None:
        out["net_namespace"] = net.namespace
        out["net_rx_bytes"] = net.rx_bytes
        out["net_tx_bytes"] = net.tx_bytes
        out["net_rx_bytes_per_second"] = _rate(net.rx_rate)
        out["net_tx_bytes_per_second"] = _rate(net.tx_rate)
        out["net_loopback_rx_bytes"] = net.loopback_rx_bytes
        out["net_loopback_tx_bytes"] = net.loopback_tx_bytes
        # (Which containers share the namespace is said once, in the run summary.)


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
    # Containers renamed this sample (old name -> new name): a group got its mapped
    # name; the run's figures under the old name belong to the new one.
    renamed: dict[str, str] = field(default_factory=dict)

    def record(self) -> dict[str, Any]:
        """The body of a ``metrics_collected`` record (the caller adds ``msg`` and ``time``):
        the Go collector's fields, then resmon's (see the module docstring)."""
        containers = [self.containers[name] for name in sorted(self.containers)]
        out = self._go_fields(containers)
        out |= {
            "elapsed_seconds": _round(self.elapsed, 3),
            "cpu_total_percent": _round(self.cpu_total_percent, 2),
            "system_cpu_seconds": round(self.cpu_seconds_total, 2),
            "mem_total_bytes": self.mem_total_bytes,
            "mem_used_bytes": self.mem_used_bytes,
            "mem_used_percent": round(self.mem_used_percent, 2),
            "process_count": len(self.processes),
            "top_cpu_processes": [p.record() for p in self.top_cpu],
            "top_mem_processes": [p.record() for p in self.top_mem],
            "containers": [c.record() for c in containers],
        }
        if self.pressure:
            out["pressure"] = self.pressure
        return out

    def _go_fields(self, containers: list[ContainerSample]) -> dict[str, Any]:
        """The Go record's fields, in its order; numbers where resmon's keys have null."""
        total, used = self.mem_total_bytes, self.mem_used_bytes
        return {
            "collection_time": format_time(datetime.fromtimestamp(self.timestamp, UTC)),
            "total_processes": len(self.processes),
            "cpu": {"total_percent": round(self.cpu_total_percent or 0.0, 2)},
            "memory": {
                "total_bytes": total,
                "used_bytes": used,
                "available_bytes": max(0, total - used),
                "used_percent": round(self.mem_used_percent, 2),
            },
            "top_cpu": [p.go_cpu_record() for p in self.top_cpu],
            "top_memory": [p.go_memory_record() for p in self.top_mem],
            "cgroups": {c.name: c.go_record() for c in containers},
        }


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
