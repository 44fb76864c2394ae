"""Wrapper mode's fast tree tracker: the command tree's memory between samples.

A sample every second (or ten) sees the processes alive at that instant; a compiler
that lives 300 ms between two samples is never seen, and a range built from the
samples alone can be too low to hold the true peak.  resmon is the tree's child
subreaper, so the command's tree is exactly resmon's descendants: a daemon thread
walks them from resmon's own pid (``/proc/PID/task/TID/children``, every thread: an
orphan is re-parented to one of resmon's threads) every ``period`` (20 ms, backing off), reads each
process's RSS from ``/proc/PID/statm``, and its ``VmHWM`` from ``/proc/PID/status``
when its RSS moved since the last tick (a process that did not move had no new peak
but between ticks it moved back, which the next reading's VmHWM still shows).

It keeps, over its ticks (:class:`TreeFigures`):

- ``rss_peak``: the largest summed RSS of one tick (RSS read at one instant: a sound
  lower bound of the tree's RSS peak);
- ``hwm_sum``: the largest sum, over the processes alive at one tick or the one
  before it (they may have been alive together in between), of each one's largest
  RSS or VmHWM, plus one slot for a process born and gone between two ticks (the
  largest process seen at one tick only): at no instant can the tree hold more;
- ``pss_read``: the largest PSS sum of a pass that read every process of one tick
  (``/proc/PID/smaps_rollup``) with the tree unchanged meanwhile (a sound lower
  bound of the PSS peak); passes are made when the tree or its RSS changed, within
  the cost budget;
- ``pss_estimate``: the largest per-tick estimate of the PSS sum (each process's last
  PSS scaled by its RSS since), counted only at ticks where every process was read
  since the tree last changed (a fork or an exit moves the sharing).

The thread measures its own CPU time: the period backs off (up to ``max_period``)
so that walking the tree costs at most half of ``budget`` (1 %) of one core, and the
PSS passes get what the budget leaves.  resmon's own trouble here is a log line and no figures, never the
command's run.
"""

from __future__ import annotations

import logging
import os
import threading
import time
from collections.abc import Callable
from dataclasses import dataclass

from resmon.collect.proc_memory import PssUnreadable, read_at, read_pss_at, read_vm_hwm_at
from resmon.procfs import PAGE_SIZE

log = logging.getLogger(__name__)

DEFAULT_PERIOD = 0.02
MAX_PERIOD = 1.0
DEFAULT_BUDGET = 0.01  # of one core
# A PSS pass is due when the tree changed or its RSS sum moved by this share since.
PASS_DRIFT = 0.02
# Cost model of a pass before one was measured: per process, per MiB of RSS.
_PASS_COST_PER_PROCESS = 30e-6
_PASS_COST_PER_MIB = 12e-6


@dataclass(slots=True)
class TreeFigures:
    """What the tracker saw of the command's tree (bytes; None: never measured)."""

    rss_peak: int = 0
    hwm_sum: int = 0
    pss_read: int | None = None
    pss_estimate: int | None = None
    ticks: int = 0
    pss_passes: int = 0
    processes_seen: int = 0
    cpu_seconds: float = 0.0
    wall_seconds: float = 0.0

    @property
    def cost_fraction(self) -> float:
        """The tracker's CPU time as a share of one core over its life."""
        return self.cpu_seconds / self.wall_seconds if self.wall_seconds > 0 else 0.0


class _Proc:
    __slots__ = ("bound", "pss", "pss_epoch", "pss_rss", "rss", "ticks")

    def __init__(self) -> None:
        self.rss = -1  # at the last tick
        self.bound = 0  # largest RSS or VmHWM seen
        self.ticks = 0
        self.pss: int | None = None  # at the last read, with the RSS then
        self.pss_rss = 0
        self.pss_epoch = -1  # the tree's epoch at that read


class TreeTracker:
    """Tracks the descendants of ``root`` (resmon's own pid; resmon is not counted)."""

    def __init__(
        self,
        root: int,
        proc_path: str = "/proc",
        period: float = DEFAULT_PERIOD,
        budget: float = DEFAULT_BUDGET,
        max_period: float = MAX_PERIOD,
        cpu_clock: Callable[[], float] = time.thread_time,
        clock: Callable[[], float] = time.monotonic,
    ) -> None:
        self.root = root
        self.proc_path = proc_path
        self.period = period
        self.budget = budget
        self.max_period = max_period
        self._cpu_clock = cpu_clock
        self._clock = clock
        self.figures = TreeFigures()
        self._procs: dict[int, _Proc] = {}
        self._prev: frozenset[int] = frozenset()
        self._epoch = 0  # bumped whenever the set of processes changes
        self._short_max = 0  # the largest process seen at one tick only
        self._pass_rss = -1  # the RSS sum at the last PSS pass
        self._pass_cost: float | None = None
        self._last_pass = 0.0
        self._pss_ok = True
        self._stop = threading.Event()
        self._thread: threading.Thread | None = None
        self._dir_fd = -1
        self._started = 0.0

    # --- the thread -------------------------------------------------------------

    def start(self) -> None:
        self._dir_fd = os.open(self.proc_path, os.O_RDONLY | os.O_DIRECTORY)
        self._started = self._clock()
        self._thread = threading.Thread(target=self._run, name="resmon-tree", daemon=True)
        self._thread.start()

    def stop(self) -> TreeFigures:
        """Stop the thread and return the figures."""
        self._stop.set()
        if self._thread is not None:
            self._thread.join(2.0)
        if self._thread is None or not self._thread.is_alive():
            self._close()
        self.figures.wall_seconds = max(0.0, self._clock() - self._started)
        return self.figures

    def _close(self) -> None:
        if self._dir_fd >= 0:
            os.close(self._dir_fd)
            self._dir_fd = -1

    def _run(self) -> None:
        try:
            while True:
                cpu = self._cpu_clock()
                self._last_pass = 0.0
                self.tick()
                cost = self._cpu_clock() - cpu
                self.figures.cpu_seconds += cost
                # The walk alone sets the pace (half the budget); the PSS passes get
                # what the budget leaves (see _pass_due).
                walk = max(0.0, cost - self._last_pass)
                wait = min(self.max_period, max(self.period, 2 * walk / self.budget))
                if self._stop.wait(wait):
                    return
        except Exception as exc:  # resmon's trouble: no figures, never the command's run
            log.error("the tree tracker failed, stopped: %s: %s", type(exc).__name__, exc)
            log.debug("tree tracker failed", exc_info=exc)
            self.figures.ticks = 0

    # --- one tick -----------------------------------------------------------------

    def tick(self) -> None:
        """Read the tree once (callable directly: tests, the last reading)."""
        if self._dir_fd < 0:
            self._dir_fd = os.open(self.proc_path, os.O_RDONLY | os.O_DIRECTORY)
        pids = self._tree()
        procs, fig = self._procs, self.figures
        now: dict[int, int] = {}
        for pid in pids:
            rss = self._rss(pid)
            if rss is None:
                continue
            p = procs.get(pid)
            if p is None:
                p = procs[pid] = _Proc()
                fig.processes_seen += 1
            if rss != p.rss:
                hwm = read_vm_hwm_at(self._dir_fd, pid) if rss else None
                p.bound = max(p.bound, rss, hwm or 0)
                p.rss = rss
            p.ticks += 1
            now[pid] = rss
        alive = frozenset(now)
        if alive != self._prev:
            self._epoch += 1
        fig.ticks += 1
        total = sum(now.values())
        fig.rss_peak = max(fig.rss_peak, total)
        hwm_sum = sum(procs[pid].bound for pid in alive | self._prev if pid in procs)
        fig.hwm_sum = max(fig.hwm_sum, hwm_sum + self._short_max)
        self._forget(alive)
        self._prev = alive
        if self._pss_ok and self._pass_due(now, total):
            self._pss_pass(now, total)
        self._estimate(now)

    def _tree(self) -> list[int]:
        """The descendants of the root, each once."""
        out: list[int] = []
        todo = [self.root]
        seen = {self.root}
        fd = self._dir_fd
        while todo:
            pid = todo.pop()
            try:
                tids = os.listdir(f"{self.proc_path}/{pid}/task")
            except OSError:
                continue
            for tid in tids:
                try:
                    data = read_at(fd, f"{pid}/task/{tid}/children", 65536)
                except OSError:
                    continue
                for child in data.split():
                    c = int(child)
                    if c not in seen:
                        seen.add(c)
                        out.append(c)
                        todo.append(c)
        return out

    def _rss(self, pid: int) -> int | None:
        try:
            data = read_at(self._dir_fd, f"{pid}/statm", 256)
            return int(data.split()[1]) * PAGE_SIZE
        except (OSError, IndexError, ValueError):
            return None

    def _forget(self, alive: frozenset[int]) -> None:
        """Processes gone since the last tick: their bound is final."""
        procs = self._procs
        for pid in self._prev - alive:
            p = procs.pop(pid, None)
            if p is not None and p.ticks <= 1:
                self._short_max = max(self._short_max, p.bound)

    # --- PSS ------------------------------------------------------------------------

    def _pass_due(self, now: dict[int, int], total: int) -> bool:
        procs = self._procs
        changed = any(procs[pid].pss_epoch != self._epoch for pid in now if now[pid])
        moved = self._pass_rss < 0 or abs(total - self._pass_rss) > PASS_DRIFT * self._pass_rss
        if not (changed or moved):
            return False
        cost = self._pass_cost
        if cost is None:
            cost = len(now) * _PASS_COST_PER_PROCESS + total / (1 << 20) * _PASS_COST_PER_MIB
        elapsed = max(self._clock() - self._started, self.period)
        return self.figures.cpu_seconds + cost <= self.budget * elapsed

    def _pss_pass(self, now: dict[int, int], total: int) -> None:
        """Read every process's PSS; the sum counts as read at one instant when no
        process of the tick went while it was read."""
        cpu = self._cpu_clock()
        procs, fd, epoch = self._procs, self._dir_fd, self._epoch
        pss_sum, complete = 0, True
        for pid, rss in now.items():
            if not rss:
                continue
            try:
                pss = read_pss_at(fd, pid)
            except PssUnreadable as exc:
                log.debug("no PSS for pid %d: %s; the tracker reads none", pid, exc)
                self._pss_ok = False
                return
            if pss is None:
                complete = False
                continue
            p = procs[pid]
            p.pss, p.pss_rss, p.pss_epoch = pss, rss, epoch
            pss_sum += pss
        # An exit while the pass read moves the sharing of those read before it.
        if complete and all(self._rss(pid) for pid, rss in now.items() if rss):
            fig = self.figures
            fig.pss_read = max(fig.pss_read or 0, pss_sum)
            fig.pss_passes += 1
        self._pass_rss = total
        self._pass_cost = self._last_pass = self._cpu_clock() - cpu

    def _estimate(self, now: dict[int, int]) -> None:
        """The tick's PSS estimate, where every process was read since the tree changed."""
        procs, epoch = self._procs, self._epoch
        est = 0
        for pid, rss in now.items():
            if not rss:
                continue
            p = procs[pid]
            if p.pss is None or p.pss_epoch != epoch:
                return
            if rss == p.pss_rss or not p.pss_rss:
                est += p.pss
            else:
                est += min(rss, round(p.pss * rss / p.pss_rss))
        fig = self.figures
        fig.pss_estimate = max(fig.pss_estimate or 0, est)
