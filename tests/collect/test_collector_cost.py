"""Regression guards for the collector's cost that time nothing (bench/collector.py times it).

A steady-state sample opens one file per process (``/proc/PID/stat``) plus a few
system files; ``/proc/PID/cgroup`` once per process lifetime; ``status`` and ``io``
only for a process whose stat line changed; ``net/dev`` once per network namespace.  An
extra per-process read would multiply the cost at a thousand processes, so the files
opened are counted by wrapping ``os.open``.  And the collector's import path stays
light: no flask, peewee or rich ever; requests only for a push through a proxy (pushes
and live batches go with http_lite); nothing the exit path alone needs (report,
budgets, comparison, spool...) before it.
"""

from __future__ import annotations

import os
import subprocess
import sys
from collections import Counter
from pathlib import Path

import pytest
from collect_receiver import Receiver
from fixtures.fakeproc import FakeProc

from resmon.collect.cpu_credit import MAX_PRESENT_CHECKS
from resmon.collect.sampler import Sampler, SamplerConfig

SYSTEM_FILES = {"uptime", "stat", "meminfo", "pressure/cpu", "pressure/memory", "pressure/io"}


class OpenRecorder:
    """Wraps os.open: every file opened or tried (absolute path, directory fds resolved)."""

    def __init__(self, monkeypatch: pytest.MonkeyPatch) -> None:
        self.files: list[str] = []
        self._dirs: dict[int, str] = {}
        real_open = os.open

        def recording_open(path, flags, mode=0o777, *, dir_fd=None):
            full = os.path.join(self._dirs[dir_fd], path) if dir_fd is not None else str(path)
            if not flags & os.O_DIRECTORY:
                self.files.append(full)  # an attempt counts, even on a missing file
            fd = real_open(path, flags, mode, dir_fd=dir_fd)
            if flags & os.O_DIRECTORY:
                self._dirs[fd] = full
            return fd

        monkeypatch.setattr(os, "open", recording_open)

    def take(self) -> list[str]:
        files, self.files = self.files, []
        return files


def per_process(files: list[str], proc: str) -> tuple[Counter, list[str]]:
    """(Counter of (pid, file name) opened under proc/PID/, the other files opened)."""
    prefix = proc.rstrip("/") + "/"
    counts: Counter = Counter()
    others = []
    for f in files:
        rel = f[len(prefix) :] if f.startswith(prefix) else None
        if rel and rel.split("/", 1)[0].isdigit():
            pid, name = rel.split("/", 1)
            counts[(int(pid), name)] += 1
        else:
            others.append(f)
    return counts, others


def split_memory_reads(counts: Counter) -> tuple[Counter, Counter]:
    """The per-process opens apart from the memory files (status for VmHWM,
    smaps_rollup for PSS), which follow their own rules (collect/memory_peaks.py), and
    the disk I/O file (io, read by the rule of status: collect/io_counters.py)."""
    memory = Counter({k: v for k, v in counts.items() if k[1] in ("status", "smaps_rollup", "io")})
    return Counter({k: v for k, v in counts.items() if k not in memory}), memory


def test_steady_state_sample_opens_one_file_per_process(tmp_path, monkeypatch):
    fp = FakeProc(tmp_path / "proc")
    for pid in range(100, 150):
        fp.add(pid, f"worker{pid}", cgroup="0::/jobs/a\n", utime=pid)
    fp.write(100)
    (fp.root / "pressure").mkdir()
    for resource in ("cpu", "memory", "io"):
        (fp.root / "pressure" / resource).write_text(
            "some avg10=0.00 avg60=0.00 avg300=0.00 total=1\n"
        )
    proc = str(fp.root)
    s = Sampler(SamplerConfig(proc_path=proc, cgroup_path=str(tmp_path / "no-cgroupfs")))
    rec = OpenRecorder(monkeypatch)

    s.sample(now=1.0)
    counts, others = per_process(rec.take(), proc)
    counts, memory = split_memory_reads(counts)
    # First sight of a process: its stat, and its cgroup once (and its memory files:
    # VmHWM from status, PSS from smaps_rollup, at most once each).
    assert set(counts) == {(p, n) for p in range(100, 150) for n in ("stat", "cgroup")}
    assert set(counts.values()) == {1} and set(memory.values()) <= {1}

    for step in range(2, 5):
        # Some processes run, one exits, one is born: still one file per live process.
        fp.run(100 + step, 7)
        fp.processes.pop(140 + step)
        fp.add(200 + step, "newborn", cgroup="0::/jobs/b\n")
        fp.write(100)
        s.sample(now=float(step))
        counts, others = per_process(rec.take(), proc)
        counts, memory = split_memory_reads(counts)
        live = set(fp.processes)
        expected = {(p, "stat") for p in live} | {(200 + step, "cgroup")}
        assert set(counts) == expected, set(counts) ^ expected
        assert set(counts.values()) == {1} and set(memory.values()) <= {1}
        # VmHWM and I/O are read only for a process whose stat line changed (it ran) or
        # is new.
        assert {p for p, n in memory if n == "status"} <= {100 + step, 200 + step}
        assert {p for p, n in memory if n == "io"} <= {100 + step, 200 + step}
        assert sorted(os.path.relpath(f, proc) for f in others) == sorted(SYSTEM_FILES)
        # The whole count, the figure an extra per-process read would change.
        assert len(counts) + len(others) == len(live) + 1 + len(SYSTEM_FILES)


def test_steady_state_sample_of_the_live_machine(monkeypatch):
    """On the real /proc (with this machine's cgroupfs), with 40 extra processes: a
    process seen before costs exactly one open, of its stat; cgroupfs and system files
    grow with containers, not with processes."""
    sleepers = [subprocess.Popen(["sleep", "60"]) for _ in range(40)]
    try:
        s = Sampler(SamplerConfig(exclude_pids=frozenset({os.getpid()})))
        rec = OpenRecorder(monkeypatch)
        first = s.sample()
        previous = {p.pid for p in first.processes} | {os.getpid()}
        rec.take()
        before = {id(p) for p in first.processes}
        for _ in range(3):
            sample = s.sample()
            counts, others = per_process(rec.take(), "/proc")
            names = {name for _, name in counts}
            # The job's processes (sidecar: all) also have their VmHWM (status) and I/O
            # (io) read when their stat changed, and their PSS (smaps_rollup) when due,
            # within a budget; net/dev once per network namespace.
            assert names <= {"stat", "cgroup", "status", "smaps_rollup", "io", "net/dev"}, names
            assert sum(n for (_, name), n in counts.items() if name == "net/dev") <= 4
            # An unchanged process shares its ProcessSample with the previous Sample.
            changed = {p.pid for p in sample.processes if id(p) not in before}
            for (pid, name), n in counts.items():
                # A stat line may be read once more: the reap ledger re-checks a child
                # read before the parent that reaped it (MAX_PRESENT_CHECKS a sample).
                assert n == 1 or (name == "stat" and n == 2), (pid, name, n)
                if name == "cgroup":
                    assert pid not in previous, f"cgroup of pid {pid} read again"
                if name in ("status", "io"):
                    assert pid in changed, f"{name} of unchanged pid {pid} read"
            before = {id(p) for p in sample.processes}
            seen = {p.pid for p in sample.processes} | {os.getpid()}
            assert {p.pid for p in sleepers} <= seen
            assert all((pid, "stat") in counts for pid in seen)
            rechecks = sum(n - 1 for (_, name), n in counts.items() if name == "stat")
            assert rechecks <= MAX_PRESENT_CHECKS
            stat_opens = sum(1 for _, name in counts if name == "stat")
            # (A process may exit between its open and its read: then it is not seen.)
            assert 0 <= stat_opens - len(seen) <= 2
            containers = len(sample.containers)
            assert len(others) <= len(SYSTEM_FILES) + 12 * containers, others
            previous = seen
    finally:
        for p in sleepers:
            p.kill()
            p.wait()


# --- imports ---------------------------------------------------------------------

HEAVY = {"flask", "peewee", "rich", "requests", "werkzeug", "jinja2", "gunicorn", "psutil"}
PROBE = """
import atexit, sys
atexit.register(lambda: print("MODULES", sorted({m.split('.')[0] for m in sys.modules}),
                              file=sys.stderr))
from resmon.cli import cli
cli(sys.argv[1:])
"""


def loaded_modules(args: list[str], tmp_path: Path) -> set[str]:
    """Top-level modules loaded when a real ``resmon`` command (in-process) exits."""
    env = dict(os.environ, RESMON_SPOOL_DIR=str(tmp_path / "spool"), GITHUB_REPOSITORY="o/r")
    run = subprocess.run(
        [sys.executable, "-c", PROBE, *args], capture_output=True, text=True, env=env, timeout=60
    )
    lines = [x for x in run.stderr.splitlines() if x.startswith("MODULES ")]
    assert lines, run.stderr[-2000:]
    return set(eval(lines[-1][len("MODULES ") :]))  # a list literal printed by the probe


@pytest.mark.slow
def test_collect_imports_nothing_heavy(tmp_path):
    # --help and a whole wrapper run (samples, summary, spool, Markdown report), no push.
    help_modules = loaded_modules(["--help"], tmp_path)
    assert not help_modules & HEAVY, help_modules & HEAVY
    mods = loaded_modules(
        ["collect", "--interval=0.2s", f"--markdown-file={tmp_path / 'report.md'}", "--", "true"],
        tmp_path,
    )
    assert {"resmon", "orjson"} <= mods
    assert not mods & HEAVY, mods & HEAVY
    # OpenSSL (about 3.5 MB of RSS) has no business in a collector that does not push.
    assert not mods & {"_hashlib", "hashlib", "hmac", "ssl"}, mods & {"_hashlib", "ssl"}


@pytest.mark.slow
@pytest.mark.parametrize("proxy", [False, True], ids=["direct", "through-a-proxy"])
def test_collect_imports_requests_only_through_a_proxy(tmp_path, monkeypatch, proxy):
    """The final push goes with http_lite; requests only for a URL behind a proxy (the
    receiver stands in for the proxy: http.server takes the absolute-form target)."""
    receiver = Receiver().start()
    for name in ("NO_PROXY", "no_proxy", "HTTP_PROXY", "http_proxy", "ALL_PROXY", "all_proxy"):
        monkeypatch.delenv(name, raising=False)
    if proxy:
        monkeypatch.setenv("HTTP_PROXY", receiver.url.split("/api/")[0])
    try:
        mods = loaded_modules(
            [
                "collect",
                "--interval=0.2s",
                f"--push-endpoint={receiver.url}",
                "--push-token=t",
                "--",
                "true",
            ],
            tmp_path,
        )
    finally:
        receiver.stop()
    assert len(receiver.requests) == 1
    assert ("requests" in mods) == proxy
    assert not mods & (HEAVY - {"requests"}), mods & HEAVY
    if not proxy:
        assert not mods & {"email", "ssl", "_ssl"}, mods & {"email", "ssl"}


# What a sampling (and streaming) sidecar must not hold before its exit path: requests
# (16 MiB), http.client and email (6 MiB), OpenSSL for an http URL, and the modules only
# the exit path or wrapper mode use.
NOT_WHILE_SAMPLING = {
    "requests",
    "urllib3",
    "http.client",
    "email",
    "ssl",
    "_ssl",
    "socket",  # http_lite uses _socket; the wrapper's enums cost 0.6 MiB
    "encodings.idna",
    "unicodedata",
    "resmon.collect.report",
    "resmon.collect.report_charts",
    "resmon.collect.budgets",
    "resmon.collect.comparison",
    "resmon.collect.human_units",
    "resmon.collect.run_checks",
    "resmon.collect.spool",
    "resmon.collect.command_run",
    "resmon.collect.reaper",
    "resmon.collect.tree_tracker",
    # The wire's validation is the exit path's (the payload); the records format times
    # themselves.
    "resmon.schema",
    "resmon.tokens",
    # Imported by gettext for click's texts while the options are parsed, then dropped.
    "locale",
}
STEADY_PROBE = """
import os, signal, sys, threading, time
def steady():
    time.sleep(float(os.environ["PROBE_AT"]))
    print("STEADY", sorted(sys.modules), file=sys.stderr, flush=True)
    os.kill(os.getpid(), signal.SIGTERM)
threading.Thread(target=steady, daemon=True).start()
from resmon.cli import cli
cli(sys.argv[1:])
"""


def steady_modules(args: list[str], tmp_path: Path, at: float = 2.0) -> set[str]:
    """Every module loaded ``at`` seconds into a real sidecar run (then SIGTERM)."""
    env = dict(
        os.environ,
        RESMON_SPOOL_DIR=str(tmp_path / "spool"),
        GITHUB_REPOSITORY="o/r",
        PROBE_AT=str(at),
    )
    run = subprocess.run(
        [sys.executable, "-c", STEADY_PROBE, "collect", "--interval=0.2s", "--no-samples", *args],
        capture_output=True,
        text=True,
        env=env,
        timeout=60,
    )
    lines = [x for x in run.stderr.splitlines() if x.startswith("STEADY ")]
    assert lines, run.stderr[-2000:]
    return set(eval(lines[-1][len("STEADY ") :]))  # a list literal printed by the probe


@pytest.mark.slow
@pytest.mark.parametrize("live", [True, False], ids=["streaming", "no-live"])
def test_a_sampling_sidecar_holds_nothing_the_exit_path_alone_needs(tmp_path, live):
    receiver = Receiver().start()
    try:
        args = [f"--push-endpoint={receiver.url}", "--push-token=t", "--live-interval=0.3s"]
        mods = steady_modules([*args, *([] if live else ["--no-live"])], tmp_path)
    finally:
        receiver.stop()
    assert {"resmon.collect.sampler", "resmon.collect.accumulator"} <= mods
    held = mods & NOT_WHILE_SAMPLING
    assert not held, held
    assert not {m for m in mods if m.split(".")[0] in HEAVY}
    if live:
        # The sender ran before the snapshot, with http_lite; batches arrived.
        assert {"resmon.collect.live", "resmon.collect.http_lite"} <= mods
        assert len(receiver.live_requests) >= 2
    else:
        assert not mods & {"resmon.collect.live", "resmon.collect.push", "resmon.collect.http_lite"}
        assert receiver.live_requests == []
    assert len(receiver.requests) == 1  # the final push
