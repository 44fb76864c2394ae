"""Disk I/O per container: the cgroup's own counters where it has them, else the sum of
its processes' /proc/PID/io, with the same care for processes that exit as CPU has.

Sources, most telling first (``io_source``):

- ``cgroup``: v2 ``io.stat`` (``rbytes``/``wbytes`` summed over its devices) of the
  container's own directories (:mod:`resmon.collect.kernel_counters` decides which
  are its own).  Exact: every task that ran in it is counted, however briefly, and
  with the memory and io controllers the kernel's writeback of its dirty pages too.
- ``blkio``: cgroup v1 ``blkio.throttle.io_service_bytes_recursive`` (``Read``,
  ``Write``).  Counted when a request is submitted, by the cgroup of the task that
  submits it: on v1 the kernel's writeback of buffered writes is submitted by the
  flusher threads and charged to the root, so only reads, direct I/O and the writes a
  process flushes itself (``fsync``, ``O_SYNC``) reach a container's figure.
- ``proc``: ``read_bytes`` / ``write_bytes`` of /proc/PID/io over the container's
  processes (a write counts when it dirties the page cache; a read when it is
  submitted to the device, so page-cache hits are not reads).

The per-process sum and exits
-----------------------------
The kernel adds a reaped child's I/O to its parent's /proc/PID/io (``wait_task_zombie``
adds the child's ``ioac`` to the parent's signal struct, which /proc/PID/io of the
process includes), as it adds a child's CPU to cutime+cstime, but with no separate
"children" field.  So the rule is CPU's (:mod:`resmon.collect.sampler`) in its
simple form:

- a process is credited the growth of its figures since its last reading; one born in
  the interval its whole figures; one first seen that is older (the first sample) is
  a baseline only, except in wrapper mode's command container, whose processes resmon
  started (the command may have written before the first sample);
- a process that disappeared keeps its last reading counted, and its reaper (its last
  known parent if alive, else the nearest live ancestor) *owes* that reading: the
  reaper's growth over the next :data:`OWED_SAMPLES` samples pays it first, so a child
  seen and then reaped is counted once, and what it did after its last reading (the
  tail) is counted through its reaper;
- a child that starts and exits between two samples is never read, and is counted
  whole through its reaper's growth.

What the sum cannot see: the tail of a process whose reaper is not among the measured
processes (resmon for a wrapped command, which is read as a zombie at the last sample
so its figures are final; a container runtime's shim for a container's init), and a
process whose reaper does not collect its figures (SIGCHLD ignored: the owed reading
then takes up to its size from the reaper's own I/O over the next samples).  Where
the cgroup's counter is readable none of this matters, which is why it is preferred.

/proc/PID/io is read only for the processes whose stat line changed this sample (one
that did not run did no I/O; a parent reaping a child changes its stat line through
cminflt and cutime), and only for the measured containers (the job's).  It needs the
right to trace the process: another user's process is unreadable, counted as such
(``io_unreadable_processes``), and the container's figure is then a lower bound.
"""

from __future__ import annotations

import logging
import os
from collections.abc import Callable

from resmon import procfs
from resmon.cgroupfs import V1_BLKIO, V2, read_io_bytes
from resmon.collect.cpu_credit import MAX_PARENT_WALK
from resmon.collect.io_figures import IO_BLKIO, IO_CGROUP, IOFigures, IOTotals
from resmon.collect.sample_state import Key, SampleWork

log = logging.getLogger(__name__)


# A process's last reading: none allowed (another user's process), none there.
UNREADABLE, NO_FILE = -1, -2

# How many samples a reaped process's last reading waits for its reaper's growth (the
# reaper's reading after the reap may come a sample later when the reap fell between
# the two reads, as in resmon.collect.cpu_credit.PENDING_SAMPLES).
OWED_SAMPLES = 3


class _Proc:
    """What is kept of one measured process: its last reading, parent and container."""

    __slots__ = ("container", "ppid", "read", "stat", "write")

    def __init__(self, container: str, ppid: int, read: int, write: int, stat: object) -> None:
        self.container = container
        self.ppid = ppid
        self.read = read  # -1: unreadable; NO_FILE: no file at the last attempt
        self.write = write
        # The sampler's stat reading this one was made at: the same object means the
        # process did not run since (a sample after the first also lists it as changed,
        # to give it a CPU percent).
        self.stat = stat


class _Kernel:
    """A container's cgroup I/O counter at the previous reading."""

    __slots__ = ("dirs", "read", "source", "total_read", "total_write", "write")

    def __init__(self) -> None:
        self.dirs: tuple[str, ...] | None = None
        self.source: str | None = None
        self.read = self.write = 0
        self.total_read = self.total_write = 0


class ProcessIO:
    """Per-container disk I/O between samples."""

    def __init__(self, proc_path: str = "/proc") -> None:
        self.proc_path = proc_path
        self.enabled = True
        self._procs: dict[Key, _Proc] = {}
        # Reaper -> [read, write, samples left] it owes for the processes it reaped.
        self._owed: dict[Key, list[int]] = {}
        # Per container: the processes' running totals.
        self._totals: dict[str, list[int]] = {}
        self._kernel: dict[str, _Kernel] = {}
        # The containers one of whose processes had a /proc/PID/io (readable or not):
        # a procfs tree without the files gives no figures rather than zeros.
        self._seen: set[str] = set()
        self.io_reads = 0

    def rename(self, renamed: dict[str, str]) -> None:
        for old, new in renamed.items():
            if old in self._totals:
                into = self._totals.setdefault(new, [0, 0])
                moved = self._totals.pop(old)
                into[0] += moved[0]
                into[1] += moved[1]
            if old in self._kernel:
                self._kernel.setdefault(new, self._kernel.pop(old))
            if old in self._seen:
                self._seen.discard(old)
                self._seen.add(new)
        for p in self._procs.values():
            p.container = renamed.get(p.container, p.container)

    def update(
        self,
        work: SampleWork,
        containers: dict[str, list[str]],
        measured: Callable[[str], bool],
        dirs_by_container: dict[str, dict[str, list[str]]],
        command: str | None = None,
    ) -> dict[str, IOFigures]:
        """Read what changed; each measured container's figures.  ``command``: wrapper
        mode's container, whose processes resmon started, so even a first reading at
        the first sample counts whole (not a baseline)."""
        if not self.enabled:
            return {}
        groups = {g: name for name, gs in containers.items() if measured(name) for g in gs}
        credit: dict[str, list[int]] = {}
        unreadable: dict[str, int] = {}
        if work.churn:
            self._gone(work)
        self._read(work, groups, credit, command)
        for p in self._procs.values():
            if p.read == UNREADABLE:
                unreadable[p.container] = unreadable.get(p.container, 0) + 1
        self._expire_owed()
        elapsed = work.elapsed
        out: dict[str, IOFigures] = {}
        for name in containers:
            if not measured(name):
                continue
            got = credit.get(name, (0, 0))
            totals = self._totals.setdefault(name, [0, 0])
            totals[0] += got[0]
            totals[1] += got[1]
            proc = IOTotals(
                totals[0],
                totals[1],
                got[0] / elapsed if elapsed else None,
                got[1] / elapsed if elapsed else None,
            )
            kernel, source = self._kernel_figures(name, dirs_by_container.get(name), elapsed)
            if kernel is None and name not in self._seen:
                continue
            out[name] = IOFigures(proc, kernel, source, unreadable.get(name, 0))
        return out

    # --- the processes -----------------------------------------------------------

    def _gone(self, work: SampleWork) -> None:
        """Processes that disappeared: their last reading stays counted, and their
        reaper owes it (paid from the reaper's growth)."""
        current, procs = work.current, self._procs
        gone = [key for key in procs if key not in current]
        if not gone:
            return
        by_pid = {key[0]: key for key in procs}
        for key in gone:
            p = procs[key]
            if p.read < 0 or (p.read == 0 and p.write == 0):
                continue
            reaper = self._reaper(key, p, by_pid, current)
            if reaper is not None:
                owed = self._owed.get(reaper)
                if owed is None:
                    self._owed[reaper] = [p.read, p.write, OWED_SAMPLES]
                else:
                    owed[0] += p.read
                    owed[1] += p.write
                    owed[2] = OWED_SAMPLES
        for key in gone:
            del procs[key]
            self._owed.pop(key, None)

    def _reaper(self, key: Key, p: _Proc, by_pid: dict[int, Key], current: dict) -> Key | None:
        """The nearest live measured ancestor (the parent, else the parent's reaper...)."""
        node = p
        for _ in range(MAX_PARENT_WALK):
            parent = by_pid.get(node.ppid)
            if parent is None or parent == key:
                return None
            if parent in current:
                return parent
            node = self._procs[parent]
        return None

    def _read(
        self,
        work: SampleWork,
        groups: dict[str, str],
        credit: dict[str, list[int]],
        command: str | None,
    ) -> None:
        procs, current, owed_by = self._procs, work.current, self._owed
        born_after = work.born_after
        dir_fd = -1
        try:
            for key in work.slow:
                state = current.get(key)
                if state is None:
                    continue
                name = groups.get(state.group)
                if name is None:
                    continue
                p = procs.get(key)
                if p is not None and (p.read == UNREADABLE or p.stat is state.stat):
                    p.container = name
                    continue  # unreadable for its whole life, or it did not run
                if dir_fd < 0:
                    dir_fd = os.open(self.proc_path, os.O_RDONLY | os.O_DIRECTORY)
                reading = procfs.read_pid_io_at(dir_fd, key[0])
                self.io_reads += 1
                if reading is None:
                    # Vanished meanwhile (its last reading stays), or no such file (a
                    # kernel without I/O accounting, a fixture tree): tried again only
                    # once it has run.
                    if p is None:
                        procs[key] = _Proc(name, state.ppid, NO_FILE, NO_FILE, state.stat)
                    else:
                        p.stat = state.stat
                    continue
                self._seen.add(name)
                if reading == procfs.IO_UNREADABLE:
                    procs[key] = _Proc(name, state.ppid, UNREADABLE, UNREADABLE, state.stat)
                    continue
                assert isinstance(reading, procfs.PidIO)
                read, write = reading
                if p is None or p.read == NO_FILE:
                    procs[key] = _Proc(name, state.ppid, read, write, state.stat)
                    if name != command and (
                        born_after is None or state.stat.starttime < born_after
                    ):
                        continue  # older than the run's first reading: a baseline
                    d_read, d_write = read, write
                else:
                    d_read, d_write = max(0, read - p.read), max(0, write - p.write)
                    p.read, p.write, p.ppid, p.container = read, write, state.ppid, name
                    p.stat = state.stat
                owed = owed_by.get(key)
                if owed is not None and (d_read or d_write):
                    pay = min(d_read, owed[0])
                    d_read -= pay
                    owed[0] -= pay
                    pay = min(d_write, owed[1])
                    d_write -= pay
                    owed[1] -= pay
                if d_read or d_write:
                    got = credit.setdefault(name, [0, 0])
                    got[0] += d_read
                    got[1] += d_write
        except OSError as exc:
            log.debug("cannot open %s: %s", self.proc_path, exc)
        finally:
            if dir_fd >= 0:
                os.close(dir_fd)

    def _expire_owed(self) -> None:
        owed_by = self._owed
        for key in list(owed_by):
            owed = owed_by[key]
            owed[2] -= 1
            if owed[2] <= 0 or (owed[0] == 0 and owed[1] == 0):
                del owed_by[key]

    # --- the cgroup's counter ------------------------------------------------------

    def _kernel_figures(
        self, name: str, dirs: dict[str, list[str]] | None, elapsed: float | None
    ) -> tuple[IOTotals | None, str | None]:
        """The container's own cgroup counter: the use since the previous reading from
        the same directories (a first reading, or one from other directories, is a
        baseline), summed over its directories; v2 io.stat first, else v1 blkio."""
        state = self._kernel.get(name)
        reading = None
        source = None
        used: tuple[str, ...] = ()
        for hierarchy, src in ((V2, IO_CGROUP), (V1_BLKIO, IO_BLKIO)):
            paths = dirs.get(hierarchy) if dirs else None
            if not paths:
                continue
            values = [read_io_bytes(hierarchy, d) for d in paths]
            if all(v is not None for v in values):
                reading = (sum(v[0] for v in values), sum(v[1] for v in values))  # type: ignore[index]
                source, used = src, tuple(paths)
                break
        if reading is None:
            if state is not None:
                state.dirs = None  # start again from a fresh reading next time
            return None, None
        if state is None:
            state = self._kernel[name] = _Kernel()
        d_read = d_write = 0
        comparable = state.dirs == used and reading[0] >= state.read and reading[1] >= state.write
        if comparable:
            d_read, d_write = reading[0] - state.read, reading[1] - state.write
            state.total_read += d_read
            state.total_write += d_write
        state.dirs, state.source = used, source
        state.read, state.write = reading
        rated = comparable and elapsed
        return (
            IOTotals(
                state.total_read,
                state.total_write,
                d_read / elapsed if rated else None,  # type: ignore[operator]
                d_write / elapsed if rated else None,  # type: ignore[operator]
            ),
            source,
        )
