"""Reading /proc: bytes in, small tuples out.

The procfs root is a parameter everywhere (``--proc-path``) so that tests run on
fixture trees and a container can read ``/host/proc``.  Parsing follows psutil's
``_pslinux.py``: files are read as bytes, the process name is between the first
``(`` and the LAST ``)`` of ``/proc/PID/stat`` (names may hold spaces and
parentheses), and ``CLK_TCK`` and the page size are read once.

A process can exit between ``listdir`` and the read of its files: every per-PID
reader returns ``None`` for a vanished process rather than raising.

Cost matters (a sample reads every process): per sample the sampler reads only
``/proc/PID/stat``, which carries CPU times, the parent, the thread count and the
RSS in pages.  ``/proc/PID/cgroup`` is read once per process lifetime and
``/proc/PID/status`` (the costliest file to produce) is not read per sample at all.
"""

from __future__ import annotations

import logging
import os
import re
from typing import NamedTuple

log = logging.getLogger(__name__)

CLK_TCK: int = os.sysconf("SC_CLK_TCK") if hasattr(os, "sysconf") else 100
PAGE_SIZE: int = os.sysconf("SC_PAGE_SIZE") if hasattr(os, "sysconf") else 4096

# /proc/PID/stat flags bit for kernel threads (include/linux/sched.h PF_KTHREAD).
PF_KTHREAD = 0x00200000

_READ_SIZE = 65536
_VANISHED = (FileNotFoundError, ProcessLookupError, NotADirectoryError)


def read_bytes(path: str) -> bytes:
    """The whole content of a (small, procfs or cgroupfs) file, read without buffering layers."""
    fd = os.open(path, os.O_RDONLY)
    try:
        data = os.read(fd, _READ_SIZE)
        # procfs and cgroupfs produce a small file in one read; a short read is the end
        # (this saves a second system call per file, per process, per sample).
        if len(data) < _READ_SIZE:
            return data
        chunks = [data]
        while True:
            chunk = os.read(fd, _READ_SIZE)
            if not chunk:
                break
            chunks.append(chunk)
        return b"".join(chunks)
    finally:
        os.close(fd)


def _read_or_none(path: str) -> bytes | None:
    try:
        return read_bytes(path)
    except _VANISHED:
        return None
    except PermissionError:
        log.debug("no permission to read %s", path)
        return None
    except OSError as exc:
        # ESRCH and friends when a process dies mid-read.
        log.debug("cannot read %s: %s", path, exc)
        return None


# --- system-wide -------------------------------------------------------------


class CpuTimes(NamedTuple):
    """The aggregate ``cpu`` line of /proc/stat, in ticks (``CLK_TCK``)."""

    busy: int
    total: int


def parse_cpu_line(data: bytes) -> CpuTimes:
    """Busy and total ticks from /proc/stat content.

    Fields: user nice system idle iowait irq softirq steal guest guest_nice.  guest
    and guest_nice are already part of user and nice, so they are not added to the
    total again.  Idle and iowait are not busy.
    """
    for line in data.splitlines():
        if line.startswith(b"cpu "):
            fields = [int(x) for x in line.split()[1:]]
            break
    else:
        raise ValueError("no aggregate 'cpu' line in /proc/stat")
    fields = (fields + [0] * 8)[:8]
    total = sum(fields)
    idle = fields[3] + fields[4]
    return CpuTimes(busy=total - idle, total=total)


def read_cpu_times(proc_path: str = "/proc") -> CpuTimes:
    return parse_cpu_line(read_bytes(os.path.join(proc_path, "stat")))


class MemInfo(NamedTuple):
    total_bytes: int
    available_bytes: int

    @property
    def used_bytes(self) -> int:
        return max(0, self.total_bytes - self.available_bytes)


def parse_meminfo(data: bytes) -> MemInfo:
    """MemTotal and MemAvailable in bytes; kernels before 3.14 lack MemAvailable, so
    fall back to MemFree + Buffers + Cached there."""
    values: dict[bytes, int] = {}
    for line in data.splitlines():
        key, sep, rest = line.partition(b":")
        if not sep:
            continue
        parts = rest.split()
        if not parts:
            continue
        try:
            number = int(parts[0])
        except ValueError:
            continue
        unit = parts[1].lower() if len(parts) > 1 else b""
        values[key.strip()] = number * 1024 if unit == b"kb" else number
        if b"MemAvailable" in values and b"MemTotal" in values:
            break  # the first lines; the other fifty are not needed (read every sample)
    if b"MemTotal" not in values:
        raise ValueError("no MemTotal in /proc/meminfo")
    total = values[b"MemTotal"]
    if b"MemAvailable" in values:
        available = values[b"MemAvailable"]
    else:
        available = values.get(b"MemFree", 0) + values.get(b"Buffers", 0) + values.get(b"Cached", 0)
    return MemInfo(total_bytes=total, available_bytes=min(max(available, 0), total))


def read_meminfo(proc_path: str = "/proc") -> MemInfo:
    return parse_meminfo(read_bytes(os.path.join(proc_path, "meminfo")))


def read_uptime(proc_path: str = "/proc") -> float | None:
    """Seconds since boot (the clock /proc/PID/stat starttime counts in); None if unreadable."""
    data = _read_or_none(os.path.join(proc_path, "uptime"))
    if not data:
        return None
    try:
        return float(data.split()[0])
    except (ValueError, IndexError):
        return None


def list_pids(proc_path: str = "/proc") -> list[int]:
    """The numeric entries of the procfs root (processes, not threads)."""
    # isdigit() alone accepts '³' (int() refuses it) and '١٢' (int() reads 12): the
    # kernel writes ASCII digits, and a --proc-path tree may hold anything.
    return [int(name) for name in os.listdir(proc_path) if name.isascii() and name.isdigit()]


# --- per process ---------------------------------------------------------------


class PidStat(NamedTuple):
    """The fields of /proc/PID/stat resmon uses.  Times are in ticks, RSS in pages."""

    pid: int
    name: str
    state: str
    ppid: int
    flags: int
    utime: int
    stime: int
    cutime: int
    cstime: int
    num_threads: int
    starttime: int
    vsize: int
    rss_pages: int

    @property
    def own_ticks(self) -> int:
        return self.utime + self.stime

    @property
    def children_ticks(self) -> int:
        return self.cutime + self.cstime

    @property
    def total_ticks(self) -> int:
        """Own time plus the time of every reaped child (see resmon.collect.sampler)."""
        return self.utime + self.stime + self.cutime + self.cstime

    @property
    def is_kernel_thread(self) -> bool:
        return bool(self.flags & PF_KTHREAD)


def parse_stat(data: bytes) -> PidStat:
    """Parse /proc/PID/stat.  The name is between the first ``(`` and the last ``)``.

    Raises ValueError on content that is not a stat line.  This runs once per process
    per sample, so it splits off only the fields it needs and builds the tuple
    positionally (both measurably cheaper at a thousand processes).
    """
    open_at = data.find(b"(")
    close_at = data.rfind(b")")
    if open_at < 0 or close_at < open_at:
        raise ValueError("not a /proc/PID/stat line: no (name)")
    # Fields after the name, numbered from 3 (state) as in proc(5); rss (24) is rest[21].
    rest = data[close_at + 2 :].split(None, 22)
    if len(rest) < 22:
        raise ValueError("not a /proc/PID/stat line: too few fields")
    cutime = int(rest[13])
    cstime = int(rest[14])
    rss = int(rest[21])
    return _new_stat(
        PidStat,
        (
            int(data[:open_at]),
            data[open_at + 1 : close_at].decode("utf-8", "replace"),
            rest[0].decode("ascii", "replace"),
            int(rest[1]),
            int(rest[6]),
            int(rest[11]),
            int(rest[12]),
            # cutime/cstime are signed in the kernel's format; never negative in practice.
            cutime if cutime > 0 else 0,
            cstime if cstime > 0 else 0,
            int(rest[17]),
            int(rest[19]),
            int(rest[20]),
            rss if rss > 0 else 0,
        ),
    )


_new_stat = tuple.__new__


def read_pid_stat(pid: int, proc_path: str = "/proc") -> PidStat | None:
    """/proc/PID/stat of a process, or None when it vanished (or the file is garbage)."""
    data = _read_or_none(f"{proc_path}/{pid}/stat")
    if not data:
        return None
    try:
        return parse_stat(data)
    except (ValueError, IndexError):
        log.debug("unparseable %s/%d/stat: %r", proc_path, pid, data[:200])
        return None


class PidStatus(NamedTuple):
    """The fields of /proc/PID/status resmon uses; memory in bytes (None for kernel threads)."""

    name: str
    vm_rss_bytes: int | None
    vm_size_bytes: int | None
    vm_hwm_bytes: int | None
    threads: int | None


# fs/proc/array.c prints Name: with seq_escape_str(ESCAPE_SPACE | ESCAPE_SPECIAL).
_STATUS_ESCAPES = {
    "n": "\n",
    "t": "\t",
    "r": "\r",
    "f": "\f",
    "v": "\v",
    "a": "\a",
    "e": "\x1b",
    "\\": "\\",
    '"': '"',
}
_STATUS_ESCAPE = re.compile(r'\\([ntrfvae\\"])')


def _unescape_status_name(raw: bytes) -> str:
    # One pass, so an escaped backslash followed by 'n' stays what it was.
    text = raw.decode("utf-8", "replace")
    return _STATUS_ESCAPE.sub(lambda m: _STATUS_ESCAPES[m.group(1)], text)


def parse_status(data: bytes) -> PidStatus:
    name = ""
    fields: dict[bytes, int] = {}
    for line in data.splitlines():
        key, sep, rest = line.partition(b":")
        if not sep:
            continue
        if key == b"Name":
            # Only the tab after the colon is layout: a name may end in spaces.
            name = _unescape_status_name(rest[1:] if rest.startswith(b"\t") else rest.lstrip())
            continue
        if key in (b"VmRSS", b"VmSize", b"VmHWM", b"Threads"):
            parts = rest.split()
            if not parts:
                continue
            try:
                value = int(parts[0])
            except ValueError:
                continue
            if len(parts) > 1 and parts[1].lower() == b"kb":
                value *= 1024
            fields[key] = value
    return PidStatus(
        name=name,
        vm_rss_bytes=fields.get(b"VmRSS"),
        vm_size_bytes=fields.get(b"VmSize"),
        vm_hwm_bytes=fields.get(b"VmHWM"),
        threads=fields.get(b"Threads"),
    )


def read_pid_status(pid: int, proc_path: str = "/proc") -> PidStatus | None:
    data = _read_or_none(f"{proc_path}/{pid}/status")
    return parse_status(data) if data else None


class PidStatm(NamedTuple):
    size_pages: int
    resident_pages: int


def parse_statm(data: bytes) -> PidStatm:
    parts = data.split()
    if len(parts) < 2:
        raise ValueError("not a /proc/PID/statm line")
    return PidStatm(size_pages=int(parts[0]), resident_pages=int(parts[1]))


def read_pid_statm(pid: int, proc_path: str = "/proc") -> PidStatm | None:
    data = _read_or_none(f"{proc_path}/{pid}/statm")
    if not data:
        return None
    try:
        return parse_statm(data)
    except ValueError:
        return None


# --- /proc/PID/io and the network namespace's net/dev ---------------------------


class PidIO(NamedTuple):
    """Storage bytes of /proc/PID/io: what the process caused to be read from and
    written to block devices (``read_bytes``, ``write_bytes``, counted when a write
    dirties the page cache, not at writeback).  The kernel adds a reaped child's
    figures to its parent's, as it does its CPU time to cutime+cstime."""

    read_bytes: int
    write_bytes: int


def parse_pid_io(data: bytes) -> PidIO:
    """``read_bytes`` and ``write_bytes`` of /proc/PID/io; ValueError when either is missing."""
    read = write = None
    for line in data.splitlines():
        key, sep, value = line.partition(b":")
        if not sep:
            continue
        if key == b"read_bytes":
            read = int(value)
        elif key == b"write_bytes":
            write = int(value)
    if read is None or write is None:
        raise ValueError("no read_bytes/write_bytes in /proc/PID/io")
    return PidIO(max(0, read), max(0, write))


# /proc/PID/io needs the right to trace the process (PTRACE_MODE_READ): another
# user's process is unreadable without it, for as long as it lives.
IO_UNREADABLE = "unreadable"


def read_pid_io_at(dir_fd: int, pid: int) -> PidIO | str | None:
    """/proc/PID/io relative to an open procfs root: the figures, None when the process
    vanished (or the file is garbage), :data:`IO_UNREADABLE` without the permission."""
    try:
        fd = os.open(f"{pid}/io", os.O_RDONLY, dir_fd=dir_fd)
    except PermissionError:
        return IO_UNREADABLE
    except OSError:
        return None
    try:
        data = os.read(fd, 4096)
    except PermissionError:
        return IO_UNREADABLE
    except OSError:
        return None
    finally:
        os.close(fd)
    try:
        return parse_pid_io(data)
    except ValueError:
        return None


def read_pid_io(pid: int, proc_path: str = "/proc") -> PidIO | str | None:
    """:func:`read_pid_io_at` by path."""
    dir_fd = os.open(proc_path, os.O_RDONLY | os.O_DIRECTORY)
    try:
        return read_pid_io_at(dir_fd, pid)
    finally:
        os.close(dir_fd)


class NetDev(NamedTuple):
    """One interface's byte counters from a network namespace's /proc/PID/net/dev."""

    rx_bytes: int
    tx_bytes: int


def parse_net_dev(data: bytes) -> dict[str, NetDev]:
    """Interface name -> received and sent bytes (``face |bytes packets ...|bytes ...``:
    the first receive column and the first transmit one, the ninth field)."""
    out: dict[str, NetDev] = {}
    for line in data.splitlines()[2:]:
        name, sep, rest = line.partition(b":")
        if not sep:
            continue
        fields = rest.split()
        if len(fields) < 9:
            continue
        try:
            rx, tx = int(fields[0]), int(fields[8])
        except ValueError:
            continue
        out[name.strip().decode("utf-8", "replace")] = NetDev(max(0, rx), max(0, tx))
    return out


def read_net_dev(pid: int, proc_path: str = "/proc") -> dict[str, NetDev] | None:
    """The interfaces of the network namespace ``pid`` is in; None when it vanished."""
    data = _read_or_none(f"{proc_path}/{pid}/net/dev")
    if data is None:
        return None
    return parse_net_dev(data)


def net_namespace(pid: int, proc_path: str = "/proc") -> tuple[str, str] | None:
    """The network namespace ``pid`` is in: ``(key, label)``.  The key is the device and
    inode of its net/dev file (each namespace has its own, and reading it needs no
    permission, so every namespace gets a key of one kind); the label is the
    /proc/PID/ns/net link (``net:[inode]``) where readable (it needs the right to trace
    the process), else the key.  None when the process vanished."""
    try:
        st = os.stat(f"{proc_path}/{pid}/net/dev")
    except OSError:
        return None
    key = f"dev:[{st.st_dev}:{st.st_ino}]"
    try:
        return key, os.readlink(f"{proc_path}/{pid}/ns/net")
    except OSError:
        return key, key


# --- /proc/PID/cgroup ------------------------------------------------------------

# Which v1 hierarchy names a container, most telling first.  The memory controller
# is the one container runtimes always place a container in (and the one readable
# on hybrid hosts such as this project's sandbox); cpu/cpuacct next.
V1_PREFERENCE = ("memory", "cpu", "cpuacct", "pids", "blkio", "cpuset", "devices", "freezer")


class CgroupInfo(NamedTuple):
    """A process's cgroup membership.

    ``path`` is the one that identifies the container: the unified (v2) path unless it
    is the root while a v1 controller names something more specific (hybrid hosts),
    in which case that v1 path (memory first, see ``V1_PREFERENCE``).  ``unified`` is
    the ``0::`` path or None; ``v1`` maps each v1 controller to its path.
    """

    path: str
    unified: str | None
    v1: dict[str, str]


def parse_cgroup(data: bytes | str) -> CgroupInfo:
    text = data.decode("utf-8", "replace") if isinstance(data, bytes) else data
    unified: str | None = None
    v1: dict[str, str] = {}
    for line in text.splitlines():
        parts = line.split(":", 2)
        if len(parts) != 3:
            continue
        hierarchy, controllers, path = parts
        path = path.strip()
        if hierarchy == "0" and controllers == "":
            unified = path
            continue
        for controller in controllers.split(","):
            if controller:
                v1[controller] = path
    chosen = unified
    if not chosen or chosen == "/":
        for controller in V1_PREFERENCE:
            candidate = v1.get(controller)
            if candidate and candidate != "/":
                chosen = candidate
                break
    if not chosen:
        chosen = "/" if (unified is not None or v1) else ""
    return CgroupInfo(path=chosen, unified=unified, v1=v1)


def read_pid_cgroup_bytes(pid: int, proc_path: str = "/proc") -> bytes | None:
    """The raw /proc/PID/cgroup, or None when the process vanished.  Processes of one
    container have the same bytes, so a caller can parse each distinct content once."""
    return _read_or_none(f"{proc_path}/{pid}/cgroup")


def read_pid_cgroup(pid: int, proc_path: str = "/proc") -> CgroupInfo | None:
    data = read_pid_cgroup_bytes(pid, proc_path)
    if data is None:
        return None
    return parse_cgroup(data)


class Pressure(NamedTuple):
    """One line of a PSI file: the averages in percent and the total stall in microseconds."""

    avg10: float
    avg60: float
    avg300: float
    total_usec: int


def parse_pressure(data: bytes) -> dict[str, Pressure]:
    """``{"some": Pressure, "full": Pressure}`` from /proc/pressure/* or a cgroup's *.pressure."""
    out: dict[str, Pressure] = {}
    for line in data.splitlines():
        parts = line.split()
        if not parts or parts[0] not in (b"some", b"full"):
            continue
        values: dict[bytes, bytes] = {}
        for part in parts[1:]:
            key, _, value = part.partition(b"=")
            values[key] = value
        try:
            out[parts[0].decode()] = Pressure(
                avg10=float(values[b"avg10"]),
                avg60=float(values[b"avg60"]),
                avg300=float(values[b"avg300"]),
                total_usec=int(values[b"total"]),
            )
        except (KeyError, ValueError):
            continue
    return out


def read_system_pressure(proc_path: str = "/proc") -> dict[str, dict[str, Pressure]]:
    """PSI for cpu, memory and io where the kernel offers it (empty otherwise)."""
    out: dict[str, dict[str, Pressure]] = {}
    for resource in ("cpu", "memory", "io"):
        data = _read_or_none(os.path.join(proc_path, "pressure", resource))
        if data:
            parsed = parse_pressure(data)
            if parsed:
                out[resource] = parsed
    return out
