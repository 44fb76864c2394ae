"""Wrapper mode's command: started, reaped, and what its tree left behind.

The loop that samples it is :meth:`resmon.collect.collector.Collector._run_wrapper`;
this is the command's side of it.  resmon becomes the child subreaper of what it
starts, then starts the command; orphans of the command's tree are reaped as they
exit (:mod:`resmon.collect.reaper`).  When the command exits:

1. :meth:`CommandRun.at_exit`, the command still a zombie: the tree's processes
   still there are read from /proc (their CPU so far counts; those running are
   ``left_running``);
2. the collector's last sample (the zombie's stat still holds the command's times);
3. :meth:`CommandRun.reap`: the wait's rusage, the kernel's own total of the
   command and every descendant it reaped, and its ``ru_maxrss``;
4. :meth:`CommandRun.finish`: ``--kill-left-running`` ends what was left, exited
   orphans are reaped, and one warning line names what was left.

The run's CPU total is then the rusage plus the orphans' CPU
(:meth:`CommandRun.cpu_seconds`), whatever the interval was.
"""

from __future__ import annotations

import contextlib
import logging
import os
from typing import TYPE_CHECKING, Any

from resmon import procfs
from resmon.collect.reaper import (
    LeftRunning,
    Reaper,
    become_subreaper,
    descendants,
    stop_subreaper,
)
from resmon.collect.signals import exit_code_from_status

if TYPE_CHECKING:
    import subprocess

    from resmon.collect.accumulator import RunAccumulator
    from resmon.collect.tree_tracker import TreeFigures, TreeTracker

log = logging.getLogger("resmon.collect.collector")


class CommandRun:
    """One wrapped command; every method but :meth:`start` keeps resmon's own trouble
    to a log line (the command's exit code is the run's, whatever happens here)."""

    def __init__(self, argv: list[str], proc_path: str, kill_left_running: bool) -> None:
        self.argv = argv
        self.proc_path = proc_path
        self.kill_left_running = kill_left_running
        self.popen: subprocess.Popen[bytes] | None = None
        self.reaper: Reaper | None = None
        # True: resmon became the subreaper (and stops at finish); None: it already was.
        self.subreaper: bool | None = False
        self.exit_code: int | None = None
        self.rusage_cpu: float | None = None
        self.rusage_maxrss: int | None = None
        # resmon's own memory high-water mark once the command is started (see reap).
        self.forker_hwm: int | None = None
        self.left: LeftRunning | None = None
        # The fast tree tracker while the command runs, then its figures.
        self.tracker: TreeTracker | None = None
        self.tree: TreeFigures | None = None

    @property
    def pid(self) -> int:
        assert self.popen is not None
        return self.popen.pid

    def start(self) -> int | None:
        """Start the command: None, or the exit code when it cannot be started."""
        import subprocess

        argv = self.argv
        # Before the command exists: its orphans must find resmon as their reaper.
        self.subreaper = become_subreaper()
        try:
            self.popen = subprocess.Popen(argv)
        except FileNotFoundError:
            log.error("cannot run %r: command not found", argv[0])
            return 127
        except PermissionError:
            log.error("cannot run %r: permission denied", argv[0])
            return 126
        except OSError as exc:
            log.error("cannot run %r: %s", argv[0], exc)
            return 126
        self.reaper = Reaper(self.popen.pid, self.proc_path)
        self._start_tracker()
        with contextlib.suppress(OSError, ValueError):
            own = procfs.read_pid_status(os.getpid(), "/proc")
            self.forker_hwm = own.vm_hwm_bytes if own is not None else None
        return None

    def _start_tracker(self) -> None:
        """The fast tree tracker (resmon's descendants are the command's tree)."""
        from resmon.collect.tree_tracker import TreeTracker

        try:
            tracker = TreeTracker(os.getpid(), self.proc_path)
            tracker.start()
            self.tracker = tracker
        except Exception as exc:  # no tracker: the samples' figures only
            log.warning("cannot track the command's tree between samples: %s", exc)

    def stop_tracker(self) -> None:
        """Stop the tree tracker; its figures are in ``tree``."""
        tracker, self.tracker = self.tracker, None
        if tracker is None:
            return
        try:
            figures = tracker.stop()
        except Exception as exc:
            _unexpected("stopping the tree tracker", exc)
            return
        self.tree = figures
        log.debug(
            "tree tracker: %d ticks, %d PSS passes, %d processes, %.3f CPU-s (%.2f %% of a core)",
            figures.ticks,
            figures.pss_passes,
            figures.processes_seen,
            figures.cpu_seconds,
            figures.cost_fraction * 100,
        )

    def exited(self) -> bool:
        """True once the command has exited (WNOWAIT: not reaped yet, so no pid reuse races)."""
        try:
            info = os.waitid(os.P_PID, self.pid, os.WEXITED | os.WNOHANG | os.WNOWAIT)
        except ChildProcessError:
            return True
        return info is not None

    def reap_orphans(self) -> None:
        """On SIGCHLD: reap the tree's orphans that exited, never the command."""
        if self.reaper is None:
            return
        try:
            self.reaper.reap_orphans()
        except Exception as exc:
            _unexpected("reaping orphans of the command", exc)

    def at_exit(self, sampled_tree: list[int]) -> None:
        """The command has exited and is not reaped yet: what its tree left, now.

        ``sampled_tree``: the pids the last sample placed in the command's container,
        the only trace of orphans when resmon could not become their subreaper."""
        if self.reaper is None:
            return
        try:
            self.left = self.reaper.at_command_exit(
                () if self.subreaper is not False else sampled_tree
            )
        except Exception as exc:
            _unexpected("reading what the command left running", exc)

    def reap(self) -> None:
        """Wait for the command: its exit code and the kernel's rusage."""
        self.stop_tracker()
        try:
            _, status, rusage = os.wait4(self.pid, 0)
        except ChildProcessError:
            return
        self.exit_code = exit_code_from_status(status)
        # The kernel's own total for the command and every descendant it reaped: exact.
        self.rusage_cpu = rusage.ru_utime + rusage.ru_stime
        maxrss = rusage.ru_maxrss * 1024  # KiB on Linux
        # At exec the kernel folds the old memory's high-water mark, resmon's own (the
        # command is forked from it), into the command's maxrss: `true` shows resmon's
        # ~20 MiB.  Only a larger figure is the command tree's own peak.
        if self.forker_hwm is None or maxrss > self.forker_hwm:
            self.rusage_maxrss = maxrss
        else:
            log.debug(
                "the command's ru_maxrss (%d bytes) is no more than resmon's own peak when it "
                "started the command (%d): not the command's, left out",
                maxrss,
                self.forker_hwm,
            )
        assert self.popen is not None
        self.popen.returncode = os.waitstatus_to_exitcode(status)  # Popen must not wait again

    def abandoned(self) -> None:
        """The command did not exit after SIGTERM: resmon finishes without it.  Its tree,
        the command included, is what is left running."""
        self.stop_tracker()
        try:
            tree = descendants(os.getpid(), self.proc_path)
            self.left = LeftRunning([p for p in tree if not p.zombie])
        except Exception as exc:
            _unexpected("reading what the command left running", exc)

    def finish(self) -> None:
        """End what was left (--kill-left-running), reap exited orphans, and name what was
        left in one warning line."""
        left, reaper = self.left, self.reaper
        try:
            if left is not None and left.processes and self.kill_left_running and reaper:
                reaper.end(left)
            if reaper is not None:
                reaper.reap_orphans()
        except Exception as exc:
            _unexpected("ending what the command left running", exc)
        if self.subreaper:
            stop_subreaper()
            self.subreaper = False
        if reaper is not None and reaper.reaped:
            log.debug(
                "reaped %d orphans of the command's tree; their CPU and that of the tree's "
                "processes still there at its exit: %.3f s",
                reaper.reaped,
                reaper.orphans_cpu_seconds,
            )
        if left is None or not left.processes:
            return
        n = len(left.processes)
        what = f"{n} process{'es' if n != 1 else ''} of the command's tree"
        if left.killed:
            log.warning("%s left running, ended (--kill-left-running): %s", what, left.names())
        else:
            log.warning(
                "%s left running, not waited for (--kill-left-running ends them): %s",
                what,
                left.names(),
            )

    def hand_over(self, accumulator: RunAccumulator) -> None:
        """Give the accumulator the tree tracker's figures and the reaped command's
        kernel figures (before its run_summary)."""
        try:
            accumulator.command_tree(self.tree)
            if self.rusage_cpu is not None:
                accumulator.command_rusage(
                    self.rusage_cpu, self.rusage_maxrss, self.orphans_cpu_seconds
                )
        except Exception as exc:  # resmon's own trouble never costs the summary
            _unexpected("adding the command's figures", exc)

    @property
    def orphans_cpu_seconds(self) -> float:
        return self.reaper.orphans_cpu_seconds if self.reaper is not None else 0.0

    def cpu_seconds(self) -> float | None:
        """The job's CPU total: the command's rusage plus its orphans' CPU (None when the
        command was not reaped)."""
        if self.rusage_cpu is None:
            return None
        return self.rusage_cpu + self.orphans_cpu_seconds

    def add_to_summary(
        self, summary: dict[str, Any], command: dict[str, Any], name: str, sampled: float | None
    ) -> None:
        """The wrapper-mode figures: ``command`` fields, and the CPU total in the command's
        container, the run and the job."""
        if self.exit_code is not None:
            command["exit_code"] = self.exit_code
        total = self.cpu_seconds()
        if self.rusage_cpu is not None and total is not None:
            command["rusage_cpu_seconds"] = round(self.rusage_cpu, 3)
            if sampled is not None:
                command["sampled_cpu_seconds"] = round(sampled, 3)
            if self.rusage_maxrss is not None:
                command["rusage_maxrss_bytes"] = self.rusage_maxrss
            total = round(total, 3)
            for c in summary.get("containers", []):
                if c.get("name") == name:
                    c["cpu_seconds"] = total
            summary["cpu_seconds"] = total
            job = summary.get("job")
            if isinstance(job, dict) and job.get("scope", "command") == "command":
                job["cpu_seconds"] = total
        if self.left is not None and self.left.processes:
            command["left_running"] = self.left.summary()


def _unexpected(what: str, exc: Exception) -> None:
    """A bug, not a condition of the run: one error line; the traceback at debug."""
    log.error("%s failed unexpectedly, skipped: %s: %s", what, type(exc).__name__, exc)
    log.debug("%s failed", what, exc_info=exc)
