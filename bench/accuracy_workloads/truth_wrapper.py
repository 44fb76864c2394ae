"""The truth for bench/accuracy.py: run a command and measure its whole tree, independently.

    python truth_wrapper.py OUT.json -- CMD [ARGS...]

- Makes itself a child subreaper (prctl PR_SET_CHILD_SUBREAPER), so a process the command
  leaves behind (a daemon, a double fork) is re-parented here, not to init: the whole tree
  stays under this process until its last process ends.
- Runs CMD with subprocess and reaps every child with os.wait4 until none is left; then
  RUSAGE_CHILDREN is the kernel's count of the whole tree: utime+stime of every process
  that ran in it, and ru_maxrss, the largest single process's high-water mark.
- A sampler thread reads, every 20 ms, the resident memory of the processes below this one
  (/proc/PID/statm) and their PSS (/proc/PID/smaps_rollup, where readable), summed, and
  keeps the peak of each sum; this process's own RSS and PSS are read at the same instant
  and kept apart, so the caller can compare with a monitor that wraps this process too.

It writes OUT.json and exits with CMD's exit code (128+N if signal N ended it). It imports
nothing but the standard library and exits with os._exit, so its own CPU after the last
reading is a few milliseconds.
"""

from __future__ import annotations

import ctypes
import json
import os
import resource
import signal
import subprocess
import sys
import threading
import time

PR_SET_CHILD_SUBREAPER = 36
PAGE_SIZE = os.sysconf("SC_PAGE_SIZE")
PERIOD = 0.02
SAMPLER_NICE = -10


def read_ppid(pid: int) -> int | None:
    try:
        with open(f"/proc/{pid}/stat", "rb") as f:
            data = f.read()
    except OSError:
        return None
    # The name is between the first "(" and the last ")": it may hold spaces and ")".
    return int(data.rsplit(b")", 1)[1].split()[1])


def read_rss(pid: int) -> int | None:
    try:
        with open(f"/proc/{pid}/statm", "rb") as f:
            return int(f.read().split()[1]) * PAGE_SIZE
    except (OSError, IndexError, ValueError):
        return None


def read_pss(pid: int) -> int | None:
    """Pss of smaps_rollup in bytes; 0 for a process gone; None where we may not read it."""
    try:
        with open(f"/proc/{pid}/smaps_rollup", "rb") as f:
            data = f.read()
    except PermissionError:
        return None
    except OSError:
        return 0
    for line in data.splitlines():
        if line.startswith(b"Pss:"):
            return int(line.split()[1]) * 1024
    # A zombie's smaps_rollup is empty: it holds no memory.
    return 0


class TreeSampler(threading.Thread):
    """Every PERIOD: the summed RSS and PSS of this process's descendants; peaks kept."""

    def __init__(self, root: int) -> None:
        super().__init__(daemon=True)
        self.root = root
        self.stop = threading.Event()
        # pid -> in the tree?  A process outside the tree never enters it (only our own
        # descendants are re-parented to us), so the answer holds while the pid lives.
        self.known: dict[int, bool] = {root: True}
        with open(f"/proc/{root}/cmdline", "rb") as f:
            self.root_cmdline = f.read()
        self.ticks = 0
        self.max_gap = 0.0
        self.peak = {"rss": 0, "pss": 0, "tree_rss": 0, "tree_pss": 0}
        self.own_peak = {"rss": 0, "pss": 0}
        self.max_processes = 0
        self.pss_denied = 0
        self.nice: int | None = None
        self.reread = 0

    def classify(self, pid: int, alive: set[int], depth: int = 0) -> bool | None:
        if pid in self.known:
            return self.known[pid]
        ppid = read_ppid(pid)
        if ppid is None or depth > 64:
            return None
        if ppid == self.root:
            answer: bool | None = True
        elif ppid == 0:
            answer = False  # init, kthreadd, or a parent outside our PID namespace
        elif ppid in self.known:
            answer = self.known[ppid]
        elif ppid in alive:
            answer = self.classify(ppid, alive, depth + 1)
        else:
            # The parent is gone: the process is being re-parented; ask again next tick.
            answer = None
        if answer is not None:
            self.known[pid] = answer
        return answer

    def tree_now(self) -> list[int]:
        alive = {int(n) for n in os.listdir("/proc") if n[0] in "123456789"}
        for pid in [p for p in self.known if p not in alive and p != self.root]:
            del self.known[pid]
        return [
            pid
            for pid in alive
            if pid != self.root and self.classify(pid, alive) and not self.pre_exec(pid)
        ]

    def pre_exec(self, pid: int) -> bool:
        """A child of this wrapper between its (v)fork and its exec: it still runs the
        wrapper's image (the same argv), and its memory is the wrapper's own, already
        counted as the wrapper's (a vfork child shares it outright: counting it would
        count the wrapper twice, +7 MiB for a few microseconds)."""
        if read_ppid(pid) != self.root:
            return False
        try:
            with open(f"/proc/{pid}/cmdline", "rb") as f:
                return f.read() == self.root_cmdline
        except OSError:
            return False

    def read_pass(self, tree: list[int]) -> tuple[int, int, int, int]:
        rss = pss = 0
        for pid in tree:
            rss += read_rss(pid) or 0
            p = read_pss(pid)
            if p is None:
                self.pss_denied += 1
            pss += p or 0
        # Read with the tree at every tick: this process's PSS moves when a process that
        # shares its pages (another python) starts or ends.
        return rss, pss, read_rss(self.root) or 0, read_pss(self.root) or 0

    def tick(self) -> None:
        # The processes are read one after another: a fork or an exit in between makes the
        # PSS sum wrong (a parent read before a fork owns its pages alone, its child read
        # after owns half of them: 1.5 times the truth). A pass during which the tree
        # changed is read again (at most twice more).
        tree = self.tree_now()
        for _ in range(3):
            rss, pss, own_rss, own_pss = self.read_pass(tree)
            after = self.tree_now()
            if set(after) == set(tree):
                break
            self.reread += 1
            tree = after
        sums = {
            "rss": rss + own_rss,
            "pss": pss + own_pss,
            "tree_rss": rss,
            "tree_pss": pss,
        }
        for key, value in sums.items():
            self.peak[key] = max(self.peak[key], value)
        self.own_peak["rss"] = max(self.own_peak["rss"], own_rss)
        self.own_peak["pss"] = max(self.own_peak["pss"], own_pss)
        self.max_processes = max(self.max_processes, len(tree))
        self.ticks += 1

    def run(self) -> None:
        # On two busy cores (xz -T2 beside resmon) a plain thread waits its turn for a
        # quarter of a second; a higher priority for this thread alone (the children are
        # started by the main thread and keep its nice value) keeps the 20 ms steps.
        try:
            os.setpriority(os.PRIO_PROCESS, threading.get_native_id(), SAMPLER_NICE)
            self.nice = SAMPLER_NICE
        except OSError:
            self.nice = os.getpriority(os.PRIO_PROCESS, threading.get_native_id())
        last = time.monotonic()
        while True:
            self.tick()
            if self.stop.wait(max(0.0, PERIOD - (time.monotonic() - last))):
                return
            now = time.monotonic()
            self.max_gap = max(self.max_gap, now - last)
            last = now


def reap_all(command_pid: int) -> int:
    """Wait for every child (the command and any orphan re-parented here) until none is left."""
    exit_code = 0
    while True:
        try:
            pid, status, _ = os.wait4(-1, 0)
        except ChildProcessError:
            return exit_code
        except InterruptedError:
            continue
        if pid == command_pid:
            exit_code = (
                128 + os.WTERMSIG(status) if os.WIFSIGNALED(status) else os.WEXITSTATUS(status)
            )


def main(argv: list[str]) -> None:
    if len(argv) < 3 or argv[1] != "--":
        sys.stderr.write(__doc__.split("\n\n")[1] + "\n")
        os._exit(2)
    out, command = argv[0], argv[2:]
    libc = ctypes.CDLL(None, use_errno=True)
    if libc.prctl(PR_SET_CHILD_SUBREAPER, 1, 0, 0, 0) != 0:
        sys.stderr.write(f"prctl(PR_SET_CHILD_SUBREAPER): errno {ctypes.get_errno()}\n")
    sampler = TreeSampler(os.getpid())
    sampler.start()
    start = time.monotonic()
    proc = subprocess.Popen(command)
    for signum in (signal.SIGINT, signal.SIGTERM):
        signal.signal(signum, lambda s, _f: os.kill(proc.pid, s))
    exit_code = reap_all(proc.pid)
    wall = time.monotonic() - start
    sampler.stop.set()
    sampler.join()
    children = resource.getrusage(resource.RUSAGE_CHILDREN)
    own = resource.getrusage(resource.RUSAGE_SELF)
    result = {
        "exit_code": exit_code,
        "wall_seconds": wall,
        "tree_cpu_seconds": children.ru_utime + children.ru_stime,
        "tree_ru_maxrss_bytes": children.ru_maxrss * 1024,
        "wrapper_cpu_seconds": own.ru_utime + own.ru_stime,
        "wrapper_maxrss_bytes": own.ru_maxrss * 1024,
        "sampler": {
            "period_seconds": PERIOD,
            "nice": sampler.nice,
            "reread_passes": sampler.reread,
            "ticks": sampler.ticks,
            "max_gap_seconds": sampler.max_gap,
            "max_processes": sampler.max_processes,
            "pss_denied": sampler.pss_denied,
            # With this process included (what a monitor wrapping it measures) ...
            "rss_peak_bytes": sampler.peak["rss"],
            "pss_peak_bytes": sampler.peak["pss"],
            # ... and the command's tree alone, and this process alone.
            "tree_rss_peak_bytes": sampler.peak["tree_rss"],
            "tree_pss_peak_bytes": sampler.peak["tree_pss"],
            "wrapper_rss_peak_bytes": sampler.own_peak["rss"],
            "wrapper_pss_peak_bytes": sampler.own_peak["pss"],
        },
    }
    with open(out, "w") as f:
        json.dump(result, f)
    sys.stdout.flush()
    os._exit(exit_code)


if __name__ == "__main__":
    main(sys.argv[1:])
