"""What the collector costs: per sample against psutil and the raw /proc floor, and as a process.

    .venv/bin/python bench/collector.py              # about 1.5 minutes
    .venv/bin/python bench/collector.py --quick      # about 40 seconds

1. Per-sample CPU time (``time.process_time``, median of ``--reps`` rounds, the
   three methods interleaved in each round) with N extra idle processes (N = 100,
   500, 1000), all measured in this one run:

   - the raw read floor: listing /proc and reading the bytes (open, one read,
     close) of exactly the files resmon's sampler opened in a steady-state sample,
     recorded by wrapping ``os.open`` during that sample;
   - ``psutil.process_iter(['pid','name','cpu_times','memory_info','num_threads'])``
     (which gives no cgroup);
   - ``resmon.collect.sampler.Sampler.sample()`` in steady state (cgroupfs on, as ``collect``).

   Targets: resmon/psutil <= 0.3 and resmon/floor <= 1.5.
2. ``resmon collect --interval=1s`` as a process for ``--seconds`` (60) with
   ``--collect-procs`` (1000) extra processes, pushing to a small local HTTP receiver
   at the end: its CPU percent of one core (utime+stime from /proc/PID/stat over
   wall time, start-up excluded), steady-state RSS (median VmRSS over the second
   half) and peak RSS (ru_maxrss of the wait: the whole life, push included).
   Targets: < 2 % CPU, < 20 MiB steady, < 35 MiB peak.
3. A 6-hour run at 1 s in process: 21,600 synthetic samples (with process churn) fed
   to RunAccumulator; RSS and tracemalloc growth.  Target < 10 MiB.
4. ``resmon --help`` / ``resmon collect --help`` wall time (median of 7), target
   < 150 ms, and the heavy modules loaded by a real ``resmon collect`` run, with and
   without a push (flask, peewee, rich never; requests never: only through a proxy).

The idle processes are ``sleep`` children in one process group, killed on the way
out (exception, Ctrl-C, SIGTERM); they also die with this process (PR_SET_PDEATHSIG)
and would end by themselves after an hour.
"""

from __future__ import annotations

import argparse
import atexit
import contextlib
import ctypes
import gc
import os
import platform
import shutil
import signal
import statistics
import subprocess
import sys
import tempfile
import threading
import time
from collections.abc import Callable
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))

from resmon.collect.accumulator import RunAccumulator  # noqa: E402
from resmon.collect.sampler import Sampler, SamplerConfig  # noqa: E402
from resmon.collect.samples import ContainerSample, ProcessSample, Sample  # noqa: E402
from resmon.procfs import CLK_TCK  # noqa: E402

MIB = 1024 * 1024
HEAVY = ("flask", "peewee", "rich", "requests", "werkzeug", "jinja2", "psutil", "gunicorn")
RESMON = ROOT / ".venv" / "bin" / "resmon"


# --- idle processes -------------------------------------------------------------


def _die_with_parent() -> None:
    # PR_SET_PDEATHSIG = 1: a SIGKILLed benchmark leaves no sleepers behind.
    with contextlib.suppress(OSError, AttributeError):
        ctypes.CDLL(None, use_errno=True).prctl(1, signal.SIGKILL)


class IdleProcesses:
    """``sleep`` children in one process group; ``grow_to`` adds more, ``close`` kills all."""

    def __init__(self) -> None:
        self.procs: list[subprocess.Popen] = []
        self.pgid: int | None = None

    def grow_to(self, n: int) -> None:
        while len(self.procs) < n:
            p = subprocess.Popen(
                ["sleep", "3600"],
                stdin=subprocess.DEVNULL,
                stdout=subprocess.DEVNULL,
                process_group=self.pgid or 0,
                preexec_fn=_die_with_parent,
            )
            if self.pgid is None:
                self.pgid = p.pid
            self.procs.append(p)

    def close(self) -> None:
        if self.pgid is not None:
            with contextlib.suppress(ProcessLookupError):
                os.killpg(self.pgid, signal.SIGKILL)
        for p in self.procs:
            with contextlib.suppress(ProcessLookupError):
                p.kill()
            p.wait()
        self.procs.clear()
        self.pgid = None


def _sigterm_exits(signum, frame):
    raise SystemExit(128 + signum)  # so the finally blocks kill the sleepers


# --- per-sample cost ------------------------------------------------------------


def record_opened_files(sampler: Sampler) -> list[str]:
    """The files one steady-state sample opens (absolute paths), by wrapping os.open."""
    real_open = os.open
    dirs: dict[int, str] = {}
    files: list[str] = []

    def recording_open(path, flags, mode=0o777, *, dir_fd=None):
        fd = real_open(path, flags, mode, dir_fd=dir_fd)
        full = os.path.join(dirs[dir_fd], path) if dir_fd is not None else os.fsdecode(path)
        if flags & os.O_DIRECTORY:
            dirs[fd] = full
        else:
            files.append(full)
        return fd

    os.open = recording_open
    try:
        sampler.sample()
    finally:
        os.open = real_open
    return files


def make_floor(files: list[str], proc_path: str = "/proc") -> Callable[[], None]:
    """Read exactly these files as cheaply as Python can: the per-process ones relative
    to a /proc directory fd with one small read (as the sampler does), the rest whole."""
    prefix = proc_path.rstrip("/") + "/"
    per_pid = [f[len(prefix) :] for f in files if f.startswith(prefix) and f[len(prefix)].isdigit()]
    others = [f for f in files if not (f.startswith(prefix) and f[len(prefix)].isdigit())]

    def floor() -> None:
        os.listdir(proc_path)
        dir_fd = os.open(proc_path, os.O_RDONLY | os.O_DIRECTORY)
        try:
            for rel in per_pid:
                try:
                    fd = os.open(rel, os.O_RDONLY, dir_fd=dir_fd)
                except OSError:
                    continue
                try:
                    os.read(fd, 4096)
                except OSError:
                    pass
                finally:
                    os.close(fd)
        finally:
            os.close(dir_fd)
        for path in others:
            try:
                fd = os.open(path, os.O_RDONLY)
            except OSError:
                continue
            try:
                # A short read is the end of a procfs/cgroupfs file (as resmon reads them).
                if len(os.read(fd, 65536)) == 65536:
                    while os.read(fd, 65536):
                        pass
            except OSError:
                pass
            finally:
                os.close(fd)

    return floor


def per_sample(reps: int) -> dict[str, float | int]:
    import psutil

    attrs = ["pid", "name", "cpu_times", "memory_info", "num_threads"]

    def with_psutil() -> None:
        for _ in psutil.process_iter(attrs):
            pass

    sampler = Sampler(SamplerConfig(exclude_pids=frozenset({os.getpid()})))
    sampler.sample()
    sampler.sample()
    files = record_opened_files(sampler)
    floor = make_floor(files)
    with_psutil()  # psutil keeps its Process objects between calls: steady state too
    methods: dict[str, Callable[[], object]] = {
        "floor": floor,
        "psutil": with_psutil,
        "resmon": sampler.sample,
    }
    times: dict[str, list[float]] = {name: [] for name in methods}
    order = list(methods)
    for _ in range(reps):
        # As timeit does: the cyclic GC off while timing (a collection triggered by one
        # method's garbage would be charged to whichever runs next), and the order
        # rotated so that no method always runs on the caches another left behind.
        for name in order:
            gc.collect()
            gc.disable()
            try:
                t0 = time.process_time()
                methods[name]()
                times[name].append(time.process_time() - t0)
            finally:
                gc.enable()
        order.append(order.pop(0))
    out: dict[str, float | int] = {k: statistics.median(v) * 1000 for k, v in times.items()}
    out["processes"] = sum(1 for n in os.listdir("/proc") if n.isdigit())
    out["files"] = len(files)
    return out


# --- resmon collect as a process ------------------------------------------------


class Receiver:
    """Answers every POST with 201 and keeps the bodies' sizes."""

    def __init__(self) -> None:
        self.bodies: list[int] = []
        receiver = self

        class Handler(BaseHTTPRequestHandler):
            def log_message(self, *args):
                pass

            def do_POST(self):
                body = self.rfile.read(int(self.headers.get("Content-Length") or 0))
                receiver.bodies.append(len(body))
                answer = b'{"id": 1, "status": "created"}'
                self.send_response(201)
                self.send_header("Content-Type", "application/json")
                self.send_header("Content-Length", str(len(answer)))
                self.end_headers()
                self.wfile.write(answer)

        self.server = ThreadingHTTPServer(("127.0.0.1", 0), Handler)
        threading.Thread(target=self.server.serve_forever, daemon=True).start()
        self.url = f"http://127.0.0.1:{self.server.server_address[1]}/api/v1/metrics"

    def close(self) -> None:
        self.server.shutdown()
        self.server.server_close()


def _ticks(pid: int) -> int:
    data = Path(f"/proc/{pid}/stat").read_bytes()
    rest = data[data.rfind(b")") + 2 :].split()
    return int(rest[11]) + int(rest[12])


def _status_kib(pid: int, key: str) -> int | None:
    with contextlib.suppress(OSError):
        for line in Path(f"/proc/{pid}/status").read_text().splitlines():
            if line.startswith(key + ":"):
                return int(line.split()[1])
    return None


def collect_env(spool: str, pyc_dir: str | None) -> dict[str, str]:
    """The environment of a CI job, with bytecode cached in ``pyc_dir`` (as after a pip
    install, which compiles it) or, with None, compiled from source at every start (as
    with PYTHONDONTWRITEBYTECODE=1: the compiler's transient memory stays in the heap)."""
    env = dict(os.environ)
    env.update(
        RESMON_SPOOL_DIR=spool,
        GITHUB_REPOSITORY_OWNER="bench",
        GITHUB_REPOSITORY="bench/collector",
        GITHUB_WORKFLOW="bench",
        GITHUB_JOB="collect",
        GITHUB_RUN_ID="1",
        GITHUB_RUN_ATTEMPT="1",
    )
    env.pop("GITHUB_STEP_SUMMARY", None)
    if pyc_dir is None:
        env["PYTHONDONTWRITEBYTECODE"] = "1"
        env.pop("PYTHONPYCACHEPREFIX", None)
    else:
        env.pop("PYTHONDONTWRITEBYTECODE", None)
        env["PYTHONPYCACHEPREFIX"] = pyc_dir  # not written into the working tree
    return env


def warm_bytecode(pyc_dir: str, url: str) -> None:
    """One short run (samples, summary, push) that writes every module's bytecode."""
    with tempfile.TemporaryDirectory() as spool:
        for args in (
            ["--help"],
            [
                "collect",
                "--interval=0.1s",
                f"--push-endpoint={url}",
                "--push-token=b",
                "--",
                "true",
            ],
        ):
            subprocess.run(
                [str(RESMON), *args],
                stdout=subprocess.DEVNULL,
                stderr=subprocess.DEVNULL,
                env=collect_env(spool, pyc_dir),
                check=True,
            )


def run_collect(
    seconds: float, variants: dict[str, str | None], settle: float = 3.0
) -> dict[str, dict[str, float | int | None]]:
    """Run one ``resmon collect`` per variant (label -> bytecode dir), at the same time,
    for ``seconds`` after ``settle``; SIGTERM; each pushes to one local receiver."""
    receiver = Receiver()
    procs: dict[str, subprocess.Popen] = {}
    results: dict[str, dict[str, float | int | None]] = {}
    with contextlib.ExitStack() as stack:
        try:
            for label, pyc_dir in variants.items():
                spool = stack.enter_context(tempfile.TemporaryDirectory())
                stderr = stack.enter_context(tempfile.TemporaryFile("w+"))
                procs[label] = subprocess.Popen(
                    [
                        str(RESMON),
                        "collect",
                        "--interval=1s",
                        f"--push-endpoint={receiver.url}",
                        "--push-token=bench",
                    ],
                    stdin=subprocess.DEVNULL,
                    stdout=subprocess.DEVNULL,
                    stderr=stderr,
                    env=collect_env(spool, pyc_dir),
                    preexec_fn=_die_with_parent,
                )
                procs[label].stderr_file = stderr  # type: ignore[attr-defined]
            time.sleep(settle)  # start-up (imports, first samples) is not steady state
            t0 = time.monotonic()
            ticks0 = {label: _ticks(p.pid) for label, p in procs.items()}
            rss: dict[str, list[int]] = {label: [] for label in procs}
            while time.monotonic() - t0 < seconds:
                time.sleep(0.5)
                for label, p in procs.items():
                    value = _status_kib(p.pid, "VmRSS")
                    if value is not None:
                        rss[label].append(value)
            t1 = time.monotonic()
            ticks1 = {label: _ticks(p.pid) for label, p in procs.items()}
            hwm = {label: _status_kib(p.pid, "VmHWM") for label, p in procs.items()}
            pushes_before = len(receiver.bodies)
            for p in procs.values():
                p.send_signal(signal.SIGTERM)
            for label, p in procs.items():
                _, status, usage = os.wait4(p.pid, 0)
                p.returncode = os.waitstatus_to_exitcode(status)
                half = rss[label][len(rss[label]) // 2 :] or [0]
                results[label] = {
                    "seconds": round(t1 - t0, 1),
                    "cpu_percent": (ticks1[label] - ticks0[label]) / CLK_TCK / (t1 - t0) * 100,
                    "total_cpu_s": usage.ru_utime + usage.ru_stime,
                    "steady_rss_mib": statistics.median(half) / 1024,
                    "hwm_before_exit_mib": (hwm[label] or 0) / 1024,
                    # KiB on Linux: the process's whole life, the push included.
                    "peak_rss_mib": usage.ru_maxrss / 1024,
                    "exit_code": p.returncode,
                }
                if p.returncode != 0:
                    p.stderr_file.seek(0)  # type: ignore[attr-defined]
                    print(f"  {label}: exited {p.returncode}:")
                    print(p.stderr_file.read()[-2000:])  # type: ignore[attr-defined]
            results["pushes"] = {
                "count": len(receiver.bodies) - pushes_before,
                "bytes": max(receiver.bodies or [0]),
            }
        finally:
            for p in procs.values():
                if p.returncode is None:
                    p.kill()
                    p.wait()
            receiver.close()
    return results


# --- six hours at 1 s -----------------------------------------------------------


def _rss_kib() -> int:
    return _status_kib(os.getpid(), "VmRSS") or 0


def six_hours(samples: int, live: int, churn: int, use_tracemalloc: bool) -> dict[str, float]:
    """Feed ``samples`` synthetic samples of ``live`` processes, ``churn`` of them
    replaced by new PIDs every sample (a CI job's short-lived compilers), to a
    RunAccumulator; return its memory growth."""
    import tracemalloc

    names = ["cc1", "make", "sh", "python3", "node", "ld", "as", "git"]
    procs = [
        ProcessSample(pid, names[pid % len(names)], 1.0, 10 * MIB, "build")
        for pid in range(1000, 1000 + live)
    ]
    next_pid = 1000 + live
    gc.collect()
    if use_tracemalloc:
        tracemalloc.start()
        before = tracemalloc.get_traced_memory()[0]
    rss_before = _rss_kib()
    acc = RunAccumulator(top_n=5)
    t = 1_700_000_000.0
    for i in range(samples):
        # Replace the oldest `churn` processes with newborns; vary the figures.
        for j in range(churn):
            procs[(i * churn + j) % live] = ProcessSample(
                next_pid,
                names[next_pid % len(names)],
                (next_pid % 97) * 1.0,
                (next_pid % 300) * MIB,
            )
            next_pid += 1
        containers = {
            name: ContainerSample(
                name=name,
                cpu_cores=(i % 13) / 10,
                memory_bytes=(200 + i % 50) * MIB,
                process_count=live // 3,
                cpu_seconds=i * 0.5,
            )
            for name in ("build", "postgres", "runner")
        }
        acc.add(
            Sample(
                timestamp=t + i,
                elapsed=1.0 if i else None,
                cpu_total_percent=float(i % 100) if i else None,
                mem_total_bytes=8192 * MIB,
                mem_used_bytes=(3000 + i % 500) * MIB,
                mem_used_percent=40.0,
                cpu_seconds_total=i * 1.2,
                top_cpu=procs[:5],
                top_mem=procs[:5],
                processes=procs,
                containers=containers,
            )
        )
    summary = acc.run_summary()
    assert summary is not None and summary["sample_count"] == samples
    out = {"rss_growth_mib": (_rss_kib() - rss_before) / 1024, "distinct_pids": next_pid - 1000}
    if use_tracemalloc:
        current, peak = tracemalloc.get_traced_memory()
        tracemalloc.stop()
        out["traced_growth_mib"] = (current - before) / MIB
        out["traced_peak_mib"] = (peak - before) / MIB
    del acc, summary
    return out


# --- start-up and imports -------------------------------------------------------


def startup_ms(args: list[str], env: dict[str, str], runs: int = 7) -> float:
    times = []
    for _ in range(runs):
        t0 = time.perf_counter()
        subprocess.run(args, stdout=subprocess.DEVNULL, check=True, env=env)
        times.append(time.perf_counter() - t0)
    return statistics.median(times) * 1000


_IMPORTS_PROBE = """
import atexit, sys
heavy = {heavy!r}
atexit.register(lambda: print("HEAVY", sorted({{m.split('.')[0] for m in sys.modules}} & set(heavy)), file=sys.stderr))
from resmon.cli import cli
cli({argv!r})
"""


def heavy_imports(push_url: str | None) -> list[str]:
    """The heavy top-level modules in sys.modules when a real ``resmon collect`` exits."""
    argv = ["collect", "--interval=0.2s"]
    if push_url:
        argv += [f"--push-endpoint={push_url}", "--push-token=bench"]
    argv += ["--", "sleep", "0.5"]
    with tempfile.TemporaryDirectory() as spool:
        run = subprocess.run(
            [sys.executable, "-c", _IMPORTS_PROBE.format(heavy=HEAVY, argv=argv)],
            capture_output=True,
            text=True,
            env=collect_env(spool, None),
            cwd=ROOT,
        )
    for line in run.stderr.splitlines():
        if line.startswith("HEAVY "):
            return eval(line[6:])  # a list literal printed by the probe above
    raise RuntimeError(f"import probe failed: {run.stderr[-500:]}")


# --- main -----------------------------------------------------------------------


def _verdict(value: float, limit: float) -> str:
    return "ok" if value <= limit else "MISSED"


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--counts", default="100,500,1000", help="extra idle processes per row")
    parser.add_argument("--reps", type=int, default=15, help="rounds per method (median)")
    parser.add_argument("--seconds", type=float, default=60.0, help="resmon collect run time")
    parser.add_argument("--collect-procs", type=int, default=1000)
    parser.add_argument("--quick", action="store_true", help="5 rounds, 15 s collect run")
    parser.add_argument("--skip-collect", action="store_true")
    parser.add_argument("--skip-per-sample", action="store_true")
    opts = parser.parse_args(argv)
    if opts.quick:
        opts.reps, opts.seconds = 5, 15.0
    counts = sorted(int(c) for c in opts.counts.split(","))

    signal.signal(signal.SIGTERM, _sigterm_exits)
    pyc_dir = tempfile.mkdtemp(prefix="resmon-bench-pyc-")
    atexit.register(shutil.rmtree, pyc_dir, True)
    receiver = Receiver()
    try:
        warm_bytecode(pyc_dir, receiver.url)
    finally:
        receiver.close()
    print(
        f"machine: {os.cpu_count()} cores, {platform.machine()}, Linux {platform.release()}, "
        f"Python {platform.python_version()}, load average {os.getloadavg()[0]:.2f}"
    )
    idle = IdleProcesses()
    try:
        print(f"\nPer-sample CPU time (ms, median of {opts.reps} rounds)")
        header = (
            f"{'extra':>6} {'procs':>6} {'files':>6} {'floor':>7} {'psutil':>7} {'resmon':>7}"
            f"  {'resmon/psutil':>13} {'resmon/floor':>12}"
        )
        print(header)
        for n in [] if opts.skip_per_sample else counts:
            idle.grow_to(n)
            time.sleep(0.5)
            r = per_sample(opts.reps)
            vs_psutil = r["resmon"] / r["psutil"]
            vs_floor = r["resmon"] / r["floor"]
            # The targets are set at 1,000 extra processes; below, the fixed per-sample
            # work (system files, cgroupfs, containers) weighs more: shown, not judged.
            judged = n >= 1000
            print(
                f"{n:>6} {r['processes']:>6} {r['files']:>6} {r['floor']:>7.2f} {r['psutil']:>7.2f}"
                f" {r['resmon']:>7.2f}  {vs_psutil:>6.2f} {_verdict(vs_psutil, 0.3) if judged else '':>6}"
                f" {vs_floor:>5.2f} {_verdict(vs_floor, 1.5) if judged else '':>6}",
                flush=True,
            )
        print("  targets at 1,000 extra processes: resmon/psutil <= 0.3, resmon/floor <= 1.5")

        if not opts.skip_collect:
            idle.grow_to(opts.collect_procs)
            print(
                f"\nresmon collect --interval=1s, {opts.seconds:.0f} s with {len(idle.procs)}"
                " extra processes, pushing to a local receiver at the end; two runs at once:",
                flush=True,
            )
            print(
                "  'installed': bytecode cached (as after pip install); 'from source':"
                " PYTHONDONTWRITEBYTECODE=1 (this sandbox's setting), every start compiles"
            )
            runs = run_collect(opts.seconds, {"installed": pyc_dir, "from source": None})
            for label in ("installed", "from source"):
                c = runs[label]
                print(
                    f"  {label:<12} CPU {c['cpu_percent']:.2f} % of one core over {c['seconds']} s"
                    f" [{_verdict(c['cpu_percent'], 2.0)}, < 2 %] (whole life, start-up and push"
                    f" included: {c['total_cpu_s']:.2f} CPU-s); RSS steady"
                    f" {c['steady_rss_mib']:.1f} MiB [{_verdict(c['steady_rss_mib'], 20)}, < 20],"
                    f" peak {c['peak_rss_mib']:.1f} MiB with the push"
                    f" [{_verdict(c['peak_rss_mib'], 35)}, < 35]; exit {c['exit_code']}"
                )
            print(
                f"  pushes received: {runs['pushes']['count']} of 2"
                f" ({runs['pushes']['bytes']:,} bytes each)"
            )
    finally:
        idle.close()

    print("\nA 6-hour run at 1 s in process (21,600 samples, 300 processes, 5 new PIDs a sample)")
    h = six_hours(21_600, live=300, churn=5, use_tracemalloc=False)
    t = six_hours(21_600, live=300, churn=5, use_tracemalloc=True)
    print(
        f"  RSS growth {h['rss_growth_mib']:.1f} MiB [{_verdict(h['rss_growth_mib'], 10)}, < 10];"
        f" tracemalloc: {t['traced_growth_mib']:.2f} MiB retained, {t['traced_peak_mib']:.2f}"
        f" MiB peak; {h['distinct_pids']:,} distinct PIDs seen"
    )

    print("\nStart-up (median of 7) and imports")
    with tempfile.TemporaryDirectory() as spool:
        for args in ([str(RESMON), "--help"], [str(RESMON), "collect", "--help"]):
            shown = " ".join(["resmon", *args[1:]])
            installed = startup_ms(args, collect_env(spool, pyc_dir))
            source = startup_ms(args, collect_env(spool, None))
            print(
                f"  {shown:<22} installed {installed:4.0f} ms [{_verdict(installed, 150)}, < 150],"
                f" from source {source:4.0f} ms"
            )
    receiver = Receiver()
    try:
        without = heavy_imports(None)
        with_push = heavy_imports(receiver.url)
    finally:
        receiver.close()
    print(f"  heavy modules after resmon collect -- CMD:           {without or 'none'}")
    print(f"  heavy modules after resmon collect --push-endpoint: {with_push or 'none'}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
