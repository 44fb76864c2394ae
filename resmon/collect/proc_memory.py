"""Reading a process's memory high-water mark and PSS from /proc, cheaply.

``/proc/PID/status`` (VmHWM) is the costliest per-process file to produce and
``/proc/PID/smaps_rollup`` (Pss) costs the kernel a walk of the page tables (about
10 us per MiB of RSS), so these are read relative to an open /proc directory, one
read each, and only for the processes that need it (see
:mod:`resmon.collect.memory_peaks`).
"""

from __future__ import annotations

import os

# A first read this size holds the whole file but for a very long Groups: line.
_READ_SIZE = 65536


def read_at(dir_fd: int, relative: str, size: int = 4096) -> bytes:
    """One read of a small procfs file relative to an open /proc directory (the
    sampler's way: no path resolution from the root, one system call for the bytes).
    Raises OSError (FileNotFoundError when the process vanished)."""
    fd = os.open(relative, os.O_RDONLY, dir_fd=dir_fd)
    try:
        return os.read(fd, size)
    finally:
        os.close(fd)


def _kib_field(data: bytes, marker: bytes) -> int | None:
    """The ``kB`` value of the line that starts with ``marker`` (``b"\\nVmHWM:"``), in bytes."""
    at = data.find(marker)
    if at < 0:
        return None
    start = at + len(marker)
    end = data.find(b"\n", start)
    parts = data[start : end if end >= 0 else len(data)].split()
    try:
        value = int(parts[0])
    except (ValueError, IndexError):
        return None
    return value * 1024 if len(parts) > 1 and parts[1].lower() == b"kb" else value


def parse_vm_hwm(status: bytes) -> int | None:
    """VmHWM (the process's RSS high-water mark) in bytes from /proc/PID/status content;
    None for a kernel thread or a zombie, which have none."""
    return _kib_field(status, b"\nVmHWM:")


def parse_pss(smaps_rollup: bytes) -> int | None:
    """The Pss line of /proc/PID/smaps_rollup in bytes (shared pages divided among the
    processes that map them); None when the content has none."""
    return _kib_field(smaps_rollup, b"\nPss:")


# /proc/PID/status is ~1.5 KiB, smaps_rollup ~1 KiB: one read each.
_MEMORY_READ_SIZE = 4096


def read_vm_hwm_at(dir_fd: int, pid: int) -> int | None:
    """VmHWM of ``pid`` in bytes, read relative to an open /proc directory; None when it
    vanished, is unreadable, or has no high-water mark (kernel thread, zombie)."""
    try:
        data = read_at(dir_fd, f"{pid}/status", _MEMORY_READ_SIZE)
        hwm = parse_vm_hwm(data)
        if hwm is None and len(data) == _MEMORY_READ_SIZE:
            # A long Groups: line pushed it past the first read.
            fd = os.open(f"{pid}/status", os.O_RDONLY, dir_fd=dir_fd)
            try:
                chunks = [os.read(fd, _READ_SIZE)]
                while chunks[-1]:
                    chunks.append(os.read(fd, _READ_SIZE))
            finally:
                os.close(fd)
            hwm = parse_vm_hwm(b"".join(chunks))
        return hwm
    except OSError:
        return None


class PssUnreadable(Exception):
    """The kernel does not give this process's PSS to us (no permission, no
    smaps_rollup in this kernel, no Pss line)."""


def read_pss_at(dir_fd: int, pid: int) -> int | None:
    """PSS of ``pid`` in bytes from /proc/PID/smaps_rollup relative to an open /proc
    directory.  None when the process vanished (nothing to say about it); raises
    :class:`PssUnreadable` when it is there but its PSS cannot be had.

    The kernel walks the process's page tables to produce the file: about 10 us per
    MiB of RSS, so callers read it sparingly."""
    try:
        data = read_at(dir_fd, f"{pid}/smaps_rollup", _MEMORY_READ_SIZE)
    except PermissionError as exc:
        raise PssUnreadable(str(exc)) from exc
    except FileNotFoundError:
        # The process is gone, or this kernel has no smaps_rollup (before 4.14).
        try:
            os.stat(f"{pid}/stat", dir_fd=dir_fd)
        except OSError:
            return None
        raise PssUnreadable(f"{pid}/smaps_rollup: no such file") from None
    except OSError:
        return None  # ESRCH: exited mid-read
    pss = parse_pss(data)
    if pss is None:
        if not data:
            return None  # a zombie's (or an exiting process's) file is empty
        raise PssUnreadable(f"{pid}/smaps_rollup: no Pss line")
    return pss
