"""Per-process memory between samples: VmHWM high-water marks and PSS, read cheaply.

A sampled RSS sum misses every peak between two samples and counts a page shared
after fork once per process.  For the processes of the measured containers (the
job's: wrapper mode the command's tree, sidecar mode every container) this module
keeps, per process (by ``(pid, starttime)``, pruned to the live ones):

- its ``VmHWM`` from ``/proc/PID/status``, read only when its stat line changed this
  sample: a process whose stat line did not change did not run, so its high-water
  mark cannot have moved;
- its PSS from ``/proc/PID/smaps_rollup`` (the kernel walks the page tables for it:
  about 10 us per MiB of RSS).  It is read again only when the sharing may have
  changed -- the process is new, a process of its family (parent, siblings) came or
  went, a re-read of a relative moved by more than 10 % from its estimate -- or its
  RSS moved by more than 10 % since the last read; otherwise the PSS is estimated as
  the last reading scaled by current RSS / RSS at that reading.  A sample spends at
  most ``budget_seconds`` on these reads; the ones left over are read first next
  time (in the order they became due), estimated meanwhile (a never-read one at its
  RSS, an upper figure).

Per container and sample it gives :class:`MemoryFigures`: the PSS sum (an estimate
where a process was not read this sample; None when the kernel did not give the PSS
of one of its processes), the PSS actually read this sample (summed over the
processes read together: a sound lower bound, never an estimate), the largest
high-water mark (RSS), and the sum of the high-water marks of the processes alive
at this sample or the previous one (which bounds the peak between the two from
above).
"""

from __future__ import annotations

import logging
import os
import time
from collections.abc import Callable
from dataclasses import dataclass

from resmon import procfs
from resmon.collect import proc_memory
from resmon.collect.sample_state import Key, ProcessState, SampleWork
from resmon.procfs import PAGE_SIZE

log = logging.getLogger(__name__)

# A PSS re-read is due when the RSS moved by more than this share since the last read,
# and a re-read that differs by more than it from its estimate makes the family stale.
PSS_DRIFT = 0.10
DEFAULT_BUDGET_SECONDS = 0.020


@dataclass(slots=True, frozen=True)
class MemoryFigures:
    """One container's memory figures at one sample, from its processes' own files."""

    pss_bytes: int | None = None
    hwm_bytes: int | None = None
    hwm_sum_bytes: int | None = None
    # The PSS actually read this sample (a subset of the processes, read together):
    # a sound lower bound of the container's PSS then; None when none was read.
    pss_read_bytes: int | None = None
    # The PSS sum where every process had a reading (no process at its RSS): an estimate.
    pss_estimate_bytes: int | None = None


class _Mem:
    """What is kept of one process of a measured container."""

    # (Kept small: in sidecar mode there is one per process of the machine.  The stat
    # readings are the sampler's own objects, so holding them costs a reference.)
    __slots__ = ("container", "hwm", "pss", "pss_stat", "readable", "stat")

    def __init__(self, container: str) -> None:
        self.container = container
        self.stat: procfs.PidStat | None = None  # the stat reading VmHWM was last read at
        self.hwm = 0  # 0 while it is no more than the RSS
        self.pss: int | None = None  # at the last read
        self.pss_stat: procfs.PidStat | None = None  # the stat reading at that read
        self.readable = True

    @property
    def pss_rss(self) -> int:
        """The RSS when the PSS was last read."""
        st = self.pss_stat
        return st.rss_pages * PAGE_SIZE if st is not None else 0


class ProcessMemory:
    """The per-process memory state of the measured containers, between samples."""

    def __init__(
        self,
        proc_path: str = "/proc",
        budget_seconds: float = DEFAULT_BUDGET_SECONDS,
        clock: Callable[[], float] = time.perf_counter,
    ) -> None:
        self.proc_path = proc_path
        # Off: no files read, no figures (a procfs root that is not the sampler's).
        self.enabled = True
        self.budget_seconds = budget_seconds
        self._clock = clock
        self._mem: dict[Key, _Mem] = {}
        # Processes whose PSS is to be read (again): new, stale or left over, in the
        # order they became due (a dict as an ordered set: left-overs stay in front).
        self._pending: dict[Key, None] = {}
        # PSS reads made, for the benchmark and tests.
        self.pss_reads = 0
        self.hwm_reads = 0
        # This sample's PSS reads (pid -> bytes); None when a process vanished while
        # they were made (an exit moves its relatives' PSS: the sum is not one instant's).
        self._fresh: dict[int, int] | None = None

    def update(
        self,
        work: SampleWork,
        containers: dict[str, list[str]],
        measured: Callable[[str], bool],
        renamed: dict[str, str] | None = None,
    ) -> dict[str, MemoryFigures]:
        """Read what changed and return the figures of each measured container
        (``renamed``: containers renamed this sample, old name -> new)."""
        if not self.enabled:
            return {}
        groups = {g: name for name, gs in containers.items() if measured(name) for g in gs}
        mem = self._mem
        if not groups and not mem:
            return {}
        if renamed:
            for m in mem.values():
                m.container = renamed.get(m.container, m.container)
        dir_fd = -1
        try:
            dir_fd = os.open(self.proc_path, os.O_RDONLY | os.O_DIRECTORY)
        except OSError as exc:
            log.debug("cannot open %s: %s", self.proc_path, exc)
        self._fresh = {}
        try:
            self._read_hwm(work, groups, dir_fd)
            gone_hwm = self._prune(work, groups) if work.churn else {}
            if dir_fd >= 0 and self._pending:
                self._read_pss(work, groups, dir_fd)
        finally:
            if dir_fd >= 0:
                os.close(dir_fd)
        out = {
            name: self._figures(name, gs, work, gone_hwm.get(name, 0))
            for name, gs in containers.items()
            if measured(name)
        }
        self._fresh = None  # not held between samples
        return out

    # --- the steps ------------------------------------------------------------

    def _read_hwm(self, work: SampleWork, groups: dict[str, str], dir_fd: int) -> None:
        """VmHWM of the processes whose stat line changed (the others did not run)."""
        mem, current, pending = self._mem, work.current, self._pending
        for key in work.slow:
            state = current[key]
            name = groups.get(state.group)
            if name is None:
                continue
            m = mem.get(key)
            if m is None:
                m = mem[key] = _Mem(name)
                pending[key] = None
            m.container = name
            st = state.stat
            rss = st.rss_pages * PAGE_SIZE
            if m.stat is not st:
                m.stat = st
                hwm = proc_memory.read_vm_hwm_at(dir_fd, st.pid) if dir_fd >= 0 else None
                self.hwm_reads += 1
                if hwm is not None and hwm > rss and hwm > m.hwm:
                    m.hwm = hwm
                elif rss > m.hwm and m.hwm:
                    m.hwm = rss
                if m.pss is not None and abs(rss - m.pss_rss) > PSS_DRIFT * m.pss_rss:
                    pending[key] = None
            sample = state.sample
            if sample is not None and m.hwm > rss:
                # A slow process's sample is made this sample, not yet handed out.  (Left
                # None while the high-water mark is its RSS: the summary takes the RSS.)
                sample.memory_hwm_bytes = m.hwm

    def _prune(self, work: SampleWork, groups: dict[str, str]) -> dict[str, int]:
        """Forget the processes that are gone (or no longer measured); a fork or an exit
        changes the sharing of the family's pages, so their relatives' PSS is to be read
        again.  Returns, per container, the high-water marks of the processes gone since
        the previous sample (they were alive together with it)."""
        mem, current, pending = self._mem, work.current, self._pending
        gone_hwm: dict[str, int] = {}
        touched_pids: set[int] = set()  # parents whose family changed
        for key in [k for k, m in mem.items() if k not in current]:
            m = mem.pop(key)
            pending.pop(key, None)
            last = m.stat or m.pss_stat
            hwm = max(m.hwm, last.rss_pages * PAGE_SIZE if last is not None else 0)
            gone_hwm[m.container] = gone_hwm.get(m.container, 0) + hwm
            if m.stat is not None:
                touched_pids.add(m.stat.ppid)
            touched_pids.add(key[0])  # its children were reparented
        for key in [k for k in mem if groups.get(current[k].group) is None]:
            del mem[key]
            pending.pop(key, None)
        for key in work.new_stats:
            state = current.get(key)
            if state is not None and state.group in groups:
                touched_pids.add(state.ppid)
        if touched_pids:
            self._mark_families(touched_pids, work, groups)
        return gone_hwm

    def _mark_families(self, parents: set[int], work: SampleWork, groups: dict[str, str]) -> None:
        """The measured processes that are one of ``parents`` or a child of one: stale."""
        pending = self._pending
        for key, state in work.current.items():
            # (The cheap test first: this runs over every process when processes churn.)
            if (key[0] in parents or state.ppid in parents) and state.group in groups:
                pending[key] = None

    def _read_pss(self, work: SampleWork, groups: dict[str, str], dir_fd: int) -> None:
        """Read the pending PSS figures in the order they became due, within the budget."""
        mem, current, pending, clock = self._mem, work.current, self._pending, self._clock
        deadline = clock() + self.budget_seconds
        stale_next: set[int] = set()
        done: list[Key] = []
        fresh: list[Key] = []
        for key in list(pending):
            m = mem.get(key)
            if m is None:
                pending.pop(key, None)
                continue
            st = current[key].stat
            rss = st.rss_pages * PAGE_SIZE
            done.append(key)
            if not m.readable or rss == 0:
                continue  # no PSS to have; a zombie or kernel thread has none
            try:
                pss = proc_memory.read_pss_at(dir_fd, st.pid)
            except proc_memory.PssUnreadable as exc:
                log.debug("no PSS for pid %d: %s", st.pid, exc)
                m.readable = False
                continue
            self.pss_reads += 1
            if pss is None:
                self._fresh = None
            else:
                if self._fresh is not None:
                    self._fresh[st.pid] = pss
                estimate = _estimate(m, rss)
                m.pss, m.pss_stat = pss, st
                fresh.append(key)
                if estimate is not None and abs(pss - estimate) > PSS_DRIFT * max(estimate, 1):
                    stale_next.add(st.pid)
            if clock() >= deadline:
                break
        for key in done:
            pending.pop(key, None)
        if stale_next:
            # Its sharing was not what the estimate said: its relatives' PSS moved too
            # (read next time; the ones just read are fresh).
            self._mark_families(stale_next, work, groups)
            for key in fresh:
                pending.pop(key, None)
        if not pending:
            # Emptied by pops, a dict keeps its table (36 KiB once a sidecar's first
            # sample made every process of the machine due); clear() lets it go.
            pending.clear()

    def _figures(self, name: str, gs: list[str], work: SampleWork, gone_hwm: int) -> MemoryFigures:
        mem, read = self._mem, self._fresh
        pss_sum = 0
        complete = True
        hwm_max = 0
        hwm_sum = gone_hwm
        pss_read: int | None = None
        unread = False
        members: list[ProcessState] = []
        for g in gs:
            members.extend(work.group_members.get(g, ()))
        if not members:
            return MemoryFigures(hwm_sum_bytes=gone_hwm or None)
        for state in members:
            st = state.stat
            rss = st.rss_pages * PAGE_SIZE
            m = mem.get((st.pid, st.starttime))
            if m is None:  # a process of a container measured from now on
                m = mem[(st.pid, st.starttime)] = _Mem(name)
                self._pending[(st.pid, st.starttime)] = None
            hwm = m.hwm if m.hwm > rss else rss
            hwm_sum += hwm
            if hwm > hwm_max:
                hwm_max = hwm
            if not rss:
                continue
            if not m.readable:
                complete = False
                continue
            if read and st.pid in read:
                pss_read = (pss_read or 0) + read[st.pid]
            pss = _estimate(m, rss)
            if pss is None:
                unread = True
                pss_sum += rss
            else:
                pss_sum += pss
        return MemoryFigures(
            pss_bytes=pss_sum if complete else None,
            hwm_bytes=hwm_max,
            hwm_sum_bytes=hwm_sum,
            pss_read_bytes=pss_read if complete else None,
            pss_estimate_bytes=pss_sum if complete and not unread else None,
        )


def _estimate(m: _Mem, rss: int) -> int | None:
    """The process's PSS now: the last reading scaled by the RSS since; None never read."""
    if m.pss is None:
        return None
    if m.pss_rss <= 0 or rss == m.pss_rss:
        return m.pss
    return min(rss, round(m.pss * rss / m.pss_rss))
