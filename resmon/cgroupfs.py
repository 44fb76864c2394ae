"""Reading a container's own accounting from cgroupfs (v2, v1 and hybrid layouts).

The kernel's per-cgroup counters are exact where per-process sums are not (they
count every task that ran, however briefly), so where a container's cgroup
directory is readable its counters win.  Layouts (``--cgroup-path``, default
``/sys/fs/cgroup``):

- v2 (unified): ``<root>/cgroup.controllers`` exists; a process's ``0::<path>``
  is ``<root><path>``.
- v1: one directory per controller hierarchy: ``<root>/memory``, ``<root>/cpuacct``
  (or ``cpu,cpuacct``), ``<root>/cpu``.
- hybrid: v1 controllers plus the unified hierarchy at ``<root>/unified``.

The root of a hierarchy counts the whole machine, never one container: a
directory is refused when it is a hierarchy's true root (v2: it has no
``cgroup.type``, a file every non-root cgroup has; v1: it has ``release_agent``,
which only the root has).  The ``/`` of a private cgroup namespace (a container
that sees its own cgroup as ``/``) is not a true root and is accepted.
"""

from __future__ import annotations

import logging
import os
from dataclasses import dataclass, field

from resmon.procfs import Pressure, parse_pressure, read_bytes

log = logging.getLogger(__name__)

# v1 "no limit" is PAGE_COUNTER_MAX * page size (0x7ffffffffffff000 on 64-bit);
# anything this large is no limit at all.
UNLIMITED_THRESHOLD = 2**62

V2 = "v2"
V1_MEMORY = "memory"
V1_CPUACCT = "cpuacct"
V1_CPU = "cpu"
V1_BLKIO = "blkio"
HIERARCHIES = (V2, V1_MEMORY, V1_CPUACCT, V1_CPU, V1_BLKIO)

# A file that tells each v1 controller's mount apart (and proves it is mounted).
_V1_PROBE = {
    V1_MEMORY: "memory.usage_in_bytes",
    V1_CPUACCT: "cpuacct.usage",
    V1_CPU: "cpu.cfs_period_us",
    V1_BLKIO: "blkio.throttle.io_service_bytes",
}
_V1_MOUNT_NAMES = {
    V1_MEMORY: ("memory",),
    V1_CPUACCT: ("cpuacct", "cpu,cpuacct", "cpuacct,cpu"),
    V1_CPU: ("cpu", "cpu,cpuacct", "cpuacct,cpu"),
    V1_BLKIO: ("blkio",),
}


def _read_text(path: str) -> str | None:
    try:
        return read_bytes(path).decode("ascii", "replace")
    except OSError:
        return None


def _read_int(path: str) -> int | None:
    text = _read_text(path)
    if text is None:
        return None
    try:
        return int(text.strip())
    except ValueError:
        return None


def _read_keyed(path: str) -> dict[str, int]:
    """``key value`` lines (cpu.stat, memory.events, memory.oom_control)."""
    text = _read_text(path)
    out: dict[str, int] = {}
    if not text:
        return out
    for line in text.splitlines():
        parts = line.split()
        if len(parts) == 2:
            try:
                out[parts[0]] = int(parts[1])
            except ValueError:
                continue
    return out


def parse_cpu_max(text: str) -> float | None:
    """Cores from v2 ``cpu.max`` (``"50000 100000"`` -> 0.5; ``"max 100000"`` -> None)."""
    parts = text.split()
    if not parts or parts[0] == "max":
        return None
    try:
        quota = int(parts[0])
        period = int(parts[1]) if len(parts) > 1 else 100000
    except ValueError:
        return None
    if quota <= 0 or period <= 0:
        return None
    try:
        return quota / period
    except OverflowError:  # a quota of hundreds of digits: no meaningful limit
        return None


def parse_cpu_list(text: str) -> int | None:
    """How many CPUs a kernel CPU list names (``"0-3,6"`` -> 5, as in ``cpuset.cpus.effective``
    and ``/sys/devices/system/cpu/online``); None when empty or not a list."""
    count = 0
    for part in text.strip().split(","):
        if not part:
            continue
        first, sep, last = part.partition("-")
        try:
            count += int(last) - int(first) + 1 if sep else 1
        except ValueError:
            return None
    return count or None


def online_cpus(sys_root: str = "/sys") -> int | None:
    """The machine's online CPUs from ``<sys_root>/devices/system/cpu/online``; None if unreadable."""
    text = _read_text(os.path.join(sys_root, "devices", "system", "cpu", "online"))
    return parse_cpu_list(text) if text else None


def parse_io_stat(data: bytes) -> tuple[int, int] | None:
    """Read and written bytes of v2 ``io.stat``, summed over its devices
    (``8:0 rbytes=1 wbytes=2 rios=...`` per line); None when no line has them."""
    read = write = 0
    found = False
    for line in data.splitlines():
        for part in line.split()[1:]:
            key, sep, value = part.partition(b"=")
            if not sep or key not in (b"rbytes", b"wbytes"):
                continue
            try:
                number = int(value)
            except ValueError:
                continue
            found = True
            if key == b"rbytes":
                read += number
            else:
                write += number
    return (read, write) if found else None


def parse_blkio_bytes(data: bytes) -> tuple[int, int] | None:
    """Read and written bytes of v1 ``blkio.throttle.io_service_bytes[_recursive]``,
    summed over its devices (``8:0 Read 123`` lines; the ``Total`` lines left out);
    None when the file has no device line (``Total 0`` alone is zero, not unknown)."""
    read = write = 0
    found = False
    for line in data.splitlines():
        parts = line.split()
        if len(parts) == 2 and parts[0] == b"Total":
            found = True
            continue
        if len(parts) != 3 or parts[1] not in (b"Read", b"Write"):
            continue
        try:
            number = int(parts[2])
        except ValueError:
            continue
        found = True
        if parts[1] == b"Read":
            read += number
        else:
            write += number
    return (read, write) if found else None


def read_io_bytes(hierarchy: str, directory: str) -> tuple[int, int] | None:
    """A cgroup directory's read and written bytes: ``io.stat`` (v2) or the blkio
    throttle counters, the recursive file first (v1); None where not readable."""
    # A file there without a device line: no I/O yet (v2 lists a device once used).
    if hierarchy == V2:
        data = _read_bytes_or_none(os.path.join(directory, "io.stat"))
        return (parse_io_stat(data) or (0, 0)) if data is not None else None
    for name in ("blkio.throttle.io_service_bytes_recursive", "blkio.throttle.io_service_bytes"):
        data = _read_bytes_or_none(os.path.join(directory, name))
        if data is not None:
            return parse_blkio_bytes(data) or (0, 0)
    return None


def parse_memory_max(text: str) -> int | None:
    """Bytes from v2 ``memory.max`` or v1 ``memory.limit_in_bytes``; None when unlimited."""
    s = text.strip()
    if not s or s == "max":
        return None
    try:
        value = int(s)
    except ValueError:
        return None
    if value <= 0 or value >= UNLIMITED_THRESHOLD:
        return None
    return value


@dataclass
class CgroupReading:
    """What one read of a container's cgroup directories gave; None where unknown.

    ``cpu_usage_usec``, ``throttled_usec``, ``nr_periods``, ``nr_throttled`` and
    ``oom_kills`` are cumulative kernel counters (since the cgroup was created).
    """

    cpu_usage_usec: int | None = None
    nr_periods: int | None = None
    nr_throttled: int | None = None
    throttled_usec: int | None = None
    memory_bytes: int | None = None
    memory_peak_bytes: int | None = None
    limit_memory_bytes: int | None = None
    limit_cpu_cores: float | None = None
    # The CPUs its cpuset lets it use (v2 cpuset.cpus.effective).
    cpuset_cpus: int | None = None
    oom_kills: int | None = None
    pressure: dict[str, dict[str, Pressure]] = field(default_factory=dict)


class CgroupFS:
    """The cgroupfs mounted at ``root``: finds hierarchies once, reads directories on demand."""

    def __init__(self, root: str = "/sys/fs/cgroup") -> None:
        self.root = root
        self.mounts: dict[str, str] = {}
        if os.path.exists(os.path.join(root, "cgroup.controllers")):
            self.mounts[V2] = root
        elif os.path.exists(os.path.join(root, "unified", "cgroup.controllers")):
            self.mounts[V2] = os.path.join(root, "unified")
        for hierarchy, names in _V1_MOUNT_NAMES.items():
            for name in names:
                candidate = os.path.join(root, name)
                if os.path.exists(os.path.join(candidate, _V1_PROBE[hierarchy])):
                    self.mounts[hierarchy] = candidate
                    break
        log.debug("cgroupfs hierarchies under %s: %s", root, self.mounts)

    @property
    def layout(self) -> str:
        """``v2``, ``v1``, ``hybrid`` or ``none``."""
        v1 = any(h in self.mounts for h in (V1_MEMORY, V1_CPUACCT, V1_CPU))
        if V2 in self.mounts:
            return "hybrid" if v1 else "v2"
        return "v1" if v1 else "none"

    def directory(self, hierarchy: str, path: str) -> str | None:
        """The directory of ``path`` in ``hierarchy`` if it exists and is not a true root."""
        mount = self.mounts.get(hierarchy)
        if mount is None or not path.startswith("/") or "/.." in path or "\\" in path:
            return None
        directory = mount if path == "/" else mount + path.rstrip("/")
        if not os.path.isdir(directory):
            return None
        if path == "/" and self.is_true_root(hierarchy, directory):
            return None
        return directory

    @staticmethod
    def is_true_root(hierarchy: str, directory: str) -> bool:
        if hierarchy == V2:
            return not os.path.exists(os.path.join(directory, "cgroup.type"))
        return os.path.exists(os.path.join(directory, "release_agent")) or os.path.exists(
            os.path.join(directory, "cgroup.sane_behavior")
        )

    # --- reading --------------------------------------------------------------

    def read_v2(self, directory: str, reading: CgroupReading, *, memory: bool, cpu: bool) -> None:
        if cpu:
            stat = _read_keyed(os.path.join(directory, "cpu.stat"))
            reading.cpu_usage_usec = stat.get("usage_usec")
            reading.nr_periods = stat.get("nr_periods")
            reading.nr_throttled = stat.get("nr_throttled")
            reading.throttled_usec = stat.get("throttled_usec")
            text = _read_text(os.path.join(directory, "cpu.max"))
            if text is not None:
                reading.limit_cpu_cores = parse_cpu_max(text)
            text = _read_text(os.path.join(directory, "cpuset.cpus.effective"))
            if text is not None:
                reading.cpuset_cpus = parse_cpu_list(text)
        if memory:
            reading.memory_bytes = _read_int(os.path.join(directory, "memory.current"))
            reading.memory_peak_bytes = _read_int(os.path.join(directory, "memory.peak"))
            text = _read_text(os.path.join(directory, "memory.max"))
            if text is not None:
                reading.limit_memory_bytes = parse_memory_max(text)
            events = _read_keyed(os.path.join(directory, "memory.events"))
            if "oom_kill" in events:
                reading.oom_kills = events["oom_kill"]
        for resource in ("cpu", "memory", "io"):
            text_bytes = _read_bytes_or_none(os.path.join(directory, f"{resource}.pressure"))
            if text_bytes:
                parsed = parse_pressure(text_bytes)
                if parsed:
                    reading.pressure[resource] = parsed

    def read_v1_memory(self, directory: str, reading: CgroupReading) -> None:
        reading.memory_bytes = _read_int(os.path.join(directory, "memory.usage_in_bytes"))
        reading.memory_peak_bytes = _read_int(os.path.join(directory, "memory.max_usage_in_bytes"))
        text = _read_text(os.path.join(directory, "memory.limit_in_bytes"))
        if text is not None:
            reading.limit_memory_bytes = parse_memory_max(text)
        oom = _read_keyed(os.path.join(directory, "memory.oom_control"))
        if "oom_kill" in oom:
            reading.oom_kills = oom["oom_kill"]

    def read_v1_cpuacct(self, directory: str, reading: CgroupReading) -> None:
        usage_ns = _read_int(os.path.join(directory, "cpuacct.usage"))
        reading.cpu_usage_usec = None if usage_ns is None else usage_ns // 1000

    def read_v1_cpu(self, directory: str, reading: CgroupReading) -> None:
        stat = _read_keyed(os.path.join(directory, "cpu.stat"))
        reading.nr_periods = stat.get("nr_periods")
        reading.nr_throttled = stat.get("nr_throttled")
        throttled_ns = stat.get("throttled_time")
        reading.throttled_usec = None if throttled_ns is None else throttled_ns // 1000
        quota = _read_int(os.path.join(directory, "cpu.cfs_quota_us"))
        period = _read_int(os.path.join(directory, "cpu.cfs_period_us"))
        if quota is not None and period and quota > 0:
            reading.limit_cpu_cores = parse_cpu_max(f"{quota} {period}")


def _read_bytes_or_none(path: str) -> bytes | None:
    try:
        return read_bytes(path)
    except OSError:
        return None


def _sum(values: list[int | None]) -> int | None:
    if not values or any(v is None for v in values):
        return None
    return sum(v for v in values if v is not None)


def _single(values: list, default=None):
    return values[0] if len(values) == 1 else default


def _v2_if(
    readings_v2: list[CgroupReading], field: str, fallback: list[CgroupReading]
) -> list[CgroupReading]:
    """The v2 readings when every one of them has ``field`` (its controller is enabled),
    else the v1 controller's readings."""
    if readings_v2 and all(getattr(r, field) is not None for r in readings_v2):
        return readings_v2
    return fallback


def read_container(fs: CgroupFS, dirs: dict[str, list[str]]) -> CgroupReading:
    """Read a container's counters: CPU and memory from v2 where the container has a v2
    directory, else from the v1 controllers.  Counters are summed over the directories
    (a container can span cgroups); limits and pressure only come from a single one."""
    out = CgroupReading()
    v2_dirs = dirs.get(V2, [])
    readings_v2 = []
    for directory in v2_dirs:
        r = CgroupReading()
        fs.read_v2(directory, r, memory=True, cpu=True)
        readings_v2.append(r)
    mem_dirs = dirs.get(V1_MEMORY, [])
    readings_mem = []
    for directory in mem_dirs:
        r = CgroupReading()
        fs.read_v1_memory(directory, r)
        readings_mem.append(r)
    readings_acct = []
    for directory in dirs.get(V1_CPUACCT, []):
        r = CgroupReading()
        fs.read_v1_cpuacct(directory, r)
        readings_acct.append(r)
    readings_cpu = []
    for directory in dirs.get(V1_CPU, []):
        r = CgroupReading()
        fs.read_v1_cpu(directory, r)
        readings_cpu.append(r)

    # CPU usage: v2 cpu.stat usage_usec exists in every v2 cgroup; v1 needs cpuacct.
    cpu_src = _v2_if(readings_v2, "cpu_usage_usec", readings_acct)
    out.cpu_usage_usec = _sum([r.cpu_usage_usec for r in cpu_src])
    # Throttling and the CPU limit: v2 when its cpu controller is enabled, else v1 cpu.
    thr_src = _v2_if(readings_v2, "nr_periods", readings_cpu)
    out.nr_periods = _sum([r.nr_periods for r in thr_src])
    out.nr_throttled = _sum([r.nr_throttled for r in thr_src])
    out.throttled_usec = _sum([r.throttled_usec for r in thr_src])
    lim_src = (
        readings_v2
        if readings_v2 and any(os.path.exists(os.path.join(d, "cpu.max")) for d in v2_dirs)
        else readings_cpu
    )
    out.limit_cpu_cores = _single([r.limit_cpu_cores for r in lim_src])
    out.cpuset_cpus = _single([r.cpuset_cpus for r in readings_v2])
    # Memory: v2 when its memory controller is enabled (memory.current exists), else v1.
    mem_src = _v2_if(readings_v2, "memory_bytes", readings_mem)
    out.memory_bytes = _sum([r.memory_bytes for r in mem_src])
    peaks = [r.memory_peak_bytes for r in mem_src]
    out.memory_peak_bytes = _sum(peaks) if len(peaks) == 1 else None
    out.limit_memory_bytes = _single([r.limit_memory_bytes for r in mem_src])
    out.oom_kills = _sum([r.oom_kills for r in mem_src])
    if len(readings_v2) == 1:
        out.pressure = readings_v2[0].pressure
    return out
