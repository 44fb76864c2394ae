"""Wrapper mode's orphans: resmon as the command tree's child subreaper.

A process whose parent exits is reparented to its nearest ancestor that is a
*child subreaper* (``prctl(PR_SET_CHILD_SUBREAPER)``), else to init.  resmon
becomes one before it starts the command, so a daemon the command leaves behind,
or an immediate double fork (``(sleep 5 &)``), stays below resmon: the sampler
keeps it in the command's container (:mod:`resmon.collect.sample_groups`), and
resmon, not init, reaps it.

What that gives the run's CPU total (``cpu_seconds``, wrapper mode):

- the command's own rusage when it is reaped: its time and that of every
  descendant it (or a descendant) reaped;
- plus each orphan resmon reaped while the command ran: the rusage of that wait;
- plus each process of the tree still there when the command exited: its
  utime+stime+cutime+cstime read from /proc then (a zombie's times are final).

Reaping must never take the command itself early: the loop peeks with
``waitid(P_ALL, WNOHANG | WNOWAIT)`` and waits (``wait4``) only for a pid that is
not the command's.  The kernel lists children in fork order, so once the command
is a zombie it is what the peek sees first; what exited besides it is then read
from /proc (:meth:`Reaper.at_command_exit`) and reaped after the command.

The processes still running when the command exits are ``left_running``; resmon
names them, and with ``--kill-left-running`` ends them (SIGTERM, a short grace,
SIGKILL) and reaps them.
"""

from __future__ import annotations

import contextlib
import logging
import os
import select
import signal
import time
from collections.abc import Iterable
from dataclasses import dataclass, field
from typing import Any

from resmon import procfs
from resmon.procfs import CLK_TCK

log = logging.getLogger(__name__)

PR_SET_CHILD_SUBREAPER = 36
PR_GET_CHILD_SUBREAPER = 37
# The whole of --kill-left-running: SIGTERM, this long for them to exit, SIGKILL,
# then a little for the kernel to finish them.  GitHub Actions gives the exit path
# about 2 s after the command ends a cancelled step.
TERM_WAIT_SECONDS = 0.4
KILL_WAIT_SECONDS = 0.1
# The summary names this many (the busiest); the count and CPU total cover them all.
LISTED = 20
# The warning line names this many.
NAMED_IN_LOG = 8
# Longest chain followed down from resmon: a loop in stale parent links cannot hang us.
MAX_DEPTH = 256


def _prctl(option: int, arg: Any) -> None:
    import ctypes

    # dlopen(NULL): the interpreter's own libc, without find_library's subprocesses.
    libc = ctypes.CDLL(None, use_errno=True)
    if libc.prctl(option, arg, 0, 0, 0) != 0:
        errno = ctypes.get_errno()
        raise OSError(errno, os.strerror(errno))


def become_subreaper() -> bool | None:
    """Make this process the child subreaper of what it starts.

    Returns True when it became one, None when it already was (so :func:`stop_subreaper`
    is not for it to call), False when it cannot (logged at debug: wrapper mode goes on,
    and orphans of the command go to init)."""
    try:
        import ctypes

        was = ctypes.c_int(0)
        _prctl(PR_GET_CHILD_SUBREAPER, ctypes.byref(was))
        if was.value:
            return None
        _prctl(PR_SET_CHILD_SUBREAPER, 1)
    except (OSError, AttributeError, ImportError) as exc:
        log.debug("cannot become a child subreaper (orphans of the command go to init): %s", exc)
        return False
    return True


def stop_subreaper() -> None:
    """Leave the process as it was (a caller that runs wrapper mode in-process, a test)."""
    try:
        _prctl(PR_SET_CHILD_SUBREAPER, 0)
    except (OSError, AttributeError, ImportError) as exc:
        log.debug("cannot stop being a child subreaper: %s", exc)


@dataclass(frozen=True)
class TreeProcess:
    """A process of the command's tree, as /proc showed it."""

    pid: int
    starttime: int
    name: str
    cpu_seconds: float  # utime+stime+cutime+cstime, in seconds
    zombie: bool


@dataclass
class LeftRunning:
    """The command's tree still running when the command exited."""

    processes: list[TreeProcess]
    killed: bool = False

    @property
    def cpu_seconds(self) -> float:
        return sum(p.cpu_seconds for p in self.processes)

    def summary(self) -> dict[str, Any]:
        """``command.left_running`` of the run summary."""
        busiest = sorted(self.processes, key=lambda p: (-p.cpu_seconds, p.pid))[:LISTED]
        return {
            "count": len(self.processes),
            "processes": [
                {"pid": p.pid, "name": p.name, "cpu_seconds": round(p.cpu_seconds, 3)}
                for p in busiest
            ],
            "cpu_seconds": round(self.cpu_seconds, 3),
            "killed": self.killed,
        }

    def names(self) -> str:
        """``sleep (pid 12), awk (pid 14)``, at most NAMED_IN_LOG of them."""
        named = [f"{p.name} (pid {p.pid})" for p in self.processes[:NAMED_IN_LOG]]
        more = len(self.processes) - len(named)
        return ", ".join(named) + (f" and {more} more" if more > 0 else "")


def descendants(
    root_pid: int, proc_path: str = "/proc", skip: Iterable[int] = ()
) -> list[TreeProcess]:
    """Every process below ``root_pid`` (its children, theirs, ...), not those in ``skip``
    (whose own children are still followed), in pid order."""
    stats: dict[int, procfs.PidStat] = {}
    children: dict[int, list[int]] = {}
    for pid in procfs.list_pids(proc_path):
        st = procfs.read_pid_stat(pid, proc_path)
        if st is None:
            continue  # gone since the listing
        stats[pid] = st
        children.setdefault(st.ppid, []).append(pid)
    skipped = set(skip)
    found: list[TreeProcess] = []
    level, seen = [root_pid], {root_pid}
    for _ in range(MAX_DEPTH):
        below = [c for pid in level for c in children.get(pid, ()) if c not in seen]
        if not below:
            break
        seen.update(below)
        for pid in below:
            st = stats[pid]
            if pid not in skipped and not st.is_kernel_thread:
                found.append(
                    TreeProcess(
                        pid, st.starttime, st.name, st.total_ticks / CLK_TCK, st.state == "Z"
                    )
                )
        level = below
    return sorted(found, key=lambda p: p.pid)


def _alive(pid: int, starttime: int, proc_path: str) -> TreeProcess | None:
    st = procfs.read_pid_stat(pid, proc_path)
    if st is None or st.starttime != starttime:
        return None
    return TreeProcess(pid, st.starttime, st.name, st.total_ticks / CLK_TCK, st.state == "Z")


@dataclass
class Reaper:
    """Reaps the orphans of the command's tree and adds up their CPU."""

    command_pid: int
    proc_path: str = "/proc"
    my_pid: int = field(default_factory=os.getpid)
    # The CPU of the tree's processes that are not the command: reaped orphans'
    # rusage, then the /proc totals of those still there at the command's exit.
    orphans_cpu_seconds: float = 0.0
    reaped: int = 0
    # Counted by at_command_exit: what is reaped later adds nothing.
    _closed: bool = False

    def reap_orphans(self) -> int:
        """Reap every exited child but the command (never the command); returns how many.

        Called on SIGCHLD wakeups while the command runs, and after it is reaped."""
        count = 0
        while True:
            try:
                info = os.waitid(os.P_ALL, 0, os.WEXITED | os.WNOHANG | os.WNOWAIT)
            except ChildProcessError:
                break  # no children at all
            if info is None or info.si_pid == 0 or info.si_pid == self.command_pid:
                break  # nothing exited, or the command did: the loop reaps it
            try:
                pid, _status, rusage = os.wait4(info.si_pid, os.WNOHANG)
            except ChildProcessError:
                continue
            if pid == 0:
                break
            count += 1
            if not self._closed:
                self.orphans_cpu_seconds += rusage.ru_utime + rusage.ru_stime
        self.reaped += count
        return count

    def at_command_exit(self, also: Iterable[int] = ()) -> LeftRunning:
        """The tree as the command exits (it is a zombie, not yet reaped): the CPU of
        every orphan still there counted, and those still running returned.

        ``also``: pids the sampler last placed in the command's tree, for a resmon that
        could not become a subreaper (its orphans went to init, not below resmon)."""
        tree = descendants(self.my_pid, self.proc_path, skip=(self.command_pid,))
        known = {p.pid for p in tree}
        for pid in also:
            if pid in known or pid in (self.command_pid, self.my_pid):
                continue
            st = procfs.read_pid_stat(pid, self.proc_path)
            if st is not None:
                tree.append(
                    TreeProcess(
                        pid, st.starttime, st.name, st.total_ticks / CLK_TCK, st.state == "Z"
                    )
                )
        self.orphans_cpu_seconds += sum(p.cpu_seconds for p in tree)
        self._closed = True
        return LeftRunning([p for p in tree if not p.zombie])

    def end(self, left: LeftRunning) -> None:
        """--kill-left-running: SIGTERM, up to TERM_WAIT_SECONDS, SIGKILL to the rest,
        then reap what is below resmon."""
        pidfds = _open_pidfds(left.processes, self.proc_path)
        _signal_all(pidfds, signal.SIGTERM)
        _wait_exited(pidfds, TERM_WAIT_SECONDS, self.reap_orphans)
        if pidfds:
            _signal_all(pidfds, signal.SIGKILL)
            _wait_exited(pidfds, KILL_WAIT_SECONDS, self.reap_orphans)
        for fd in pidfds.values():
            with contextlib.suppress(OSError):
                os.close(fd)
        left.killed = True
        self.reap_orphans()


def _open_pidfds(processes: Iterable[TreeProcess], proc_path: str) -> dict[int, int]:
    """pid -> a pidfd of that very process (its start time checked after opening), so a
    signal can never reach a process that took a reused pid."""
    fds: dict[int, int] = {}
    for p in processes:
        try:
            fd = os.pidfd_open(p.pid)
        except OSError:
            continue  # gone already
        if _alive(p.pid, p.starttime, proc_path) is None:
            os.close(fd)
            continue
        fds[p.pid] = fd
    return fds


def _signal_all(pidfds: dict[int, int], signum: int) -> None:
    for fd in pidfds.values():
        with contextlib.suppress(OSError):
            signal.pidfd_send_signal(fd, signum)


def _wait_exited(pidfds: dict[int, int], seconds: float, reap: Any) -> None:
    """Until every pidfd is readable (its process exited) or ``seconds`` pass; reaping
    meanwhile, so a parent in the tree that dies hands its children to resmon."""
    deadline = time.monotonic() + seconds
    while pidfds:
        readable, _, _ = select.select(list(pidfds.values()), [], [], 0)
        for pid, fd in list(pidfds.items()):
            if fd in readable:
                os.close(fd)
                del pidfds[pid]
        reap()
        left = deadline - time.monotonic()
        if not pidfds or left <= 0:
            return
        with contextlib.suppress(InterruptedError):
            select.select(list(pidfds.values()), [], [], min(left, 0.02))
