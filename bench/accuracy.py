"""How exact are resmon's CPU-seconds and memory peak of a wrapped job?  (issues 5 and 12)

Each workload runs, per interval, ONCE as

    resmon collect --interval N --log-format json --summary-file F --top 1000 -o RECORDS \\
        -- python bench/accuracy_workloads/truth_wrapper.py TRUTH -- sh -c WORKLOAD

so resmon and the truth measure the same process tree in the same run. The truth wrapper
(bench/accuracy_workloads/truth_wrapper.py) is independent of resmon: a child subreaper
(PR_SET_CHILD_SUBREAPER) that reaps every process of the tree with os.wait4 and reads
RUSAGE_CHILDREN at the end, while a thread sums the tree's memory every 20 ms. resmon
wraps the wrapper, so resmon's figures include the wrapper's own small python process; the
truth columns include it too (its own CPU is RUSAGE_SELF, its RSS and PSS are read with the
tree's), so both sides measure the same processes; the line under the table gives the
wrapper's own share.

Columns:

- workload, int: the workload and resmon's ``--interval``.
- truth CPU-s: the wrapper's RUSAGE_CHILDREN utime+stime after everything was reaped
  (the kernel's count of every process of the tree, orphans included) plus its own
  RUSAGE_SELF (its 20 ms sampler).
- resmon CPU-s: the run summary's ``cpu_seconds``; ratio = resmon / truth.
- naive CPU-s: summing per-process utime+stime deltas over processes seen alive in two
  consecutive samples (a pid in the command container's ``top_cpu_processes`` of two
  consecutive ``metrics_collected`` records, percent x elapsed), computed on resmon's own
  samples. It is what a collector reading only utime+stime sees.
- true RSS / true PSS: the peak over the 20 ms samples of the tree's summed RSS
  (/proc/PID/statm) and summed PSS (/proc/PID/smaps_rollup; "-" if some process's could
  not be read). The sampler thread runs at nice -10 where allowed (on two busy cores a
  plain thread missed 250 ms), and reads a step again when the tree changed while it read
  it (a parent read before a fork and its child after it sum to 1.5 times the PSS).
- ru_maxrss: the wrapper's RUSAGE_CHILDREN ru_maxrss, the largest single process's
  high-water mark (a lower bound for the tree's peak).
- resmon peak: the command container's ``memory_peak.headline`` (else ``memory_bytes.peak``)
  and its ``kind`` (pss, rss or cgroup); low..high its ``memory_peak`` range; in: the true
  peak of the headline's kind (true PSS for pss, true RSS for rss; none for cgroup) inside
  low..high; hl/true: headline / that true peak.

A field the run summary lacks prints as "-" (and fails the target that needs it).
Memory in MiB.

Targets (printed with PASS/FAIL and the failing rows under the table):

- CPU within 2 % of truth on every row (0.98 <= resmon / truth <= 1.02);
- the true peak inside resmon's range on every row;
- the headline within 10 % of the true peak of the same kind at 1 s on every row.

Workloads (``--quick``: about a third of each): pip-wheel (``pip wheel --no-deps
--no-build-isolation --no-index`` of a generated setup.py with one C file), make-j2 (60
generated C files), py_compile-3000 (``xargs -P2 -n 40 python -m py_compile``), procs-1000
and procs-4000 (short awk processes one after another), grow-500MiB (python allocating in
20 steps, then freeing), threads (4 python threads, 80 MiB each, touched), xz-T2-100MiB
(``xz -T2 -1`` of generated text), fork-300MiB (a parent touches 300 MiB and forks 3
sleeping children: shared pages), daemon (finding 7's shape: a sleeping daemon, ``sleep
10`` here, not 30, since the truth waits for it; a busy awk orphaned by its subshell; a
second awk). All local: nothing from the network.

Run by hand (two cores: the full run takes 4-7 minutes, --quick at one interval
about 1):

    .venv/bin/python bench/accuracy.py                      # every workload at 1s, 5s, 10s
    .venv/bin/python bench/accuracy.py --quick --interval 1s
    .venv/bin/python bench/accuracy.py --workload make --workload daemon --interval 5s
    .venv/bin/python bench/accuracy.py --quick --json > rows.json

The exit code is 0 when every target passes, 1 otherwise. The pip-wheel workload needs an
interpreter with setuptools and bdist_wheel (setuptools >= 70.1, or the wheel package):
the venv's, else /usr/bin/python3's; with neither it is skipped with the reason printed.
"""

from __future__ import annotations

import argparse
import os
import shlex
import subprocess
import sys
import tempfile
import time
from dataclasses import dataclass, field
from pathlib import Path

import orjson
from accuracy_workloads import generate
from accuracy_workloads.table import print_table, targets

ROOT = Path(__file__).resolve().parent.parent
HELPERS = Path(__file__).resolve().parent / "accuracy_workloads"
PY = shlex.quote(sys.executable)
AWK = "awk 'BEGIN{for(i=0;i<20000;i++)s+=i}'"
BUSY_AWK = "awk 'BEGIN{for(i=0;i<%d;i++)s+=i}'"


@dataclass
class Workload:
    key: str
    command: str  # a shell fragment, run in the scratch directory
    setup: list = field(default_factory=list)  # callables (scratch) -> None, once
    reset: str = ""  # a shell fragment run before each run, outside the measurement
    skip: str = ""  # why it cannot run here


def workloads(quick: bool) -> list[Workload]:
    q = 3 if quick else 1  # quick variants do about a third of the work
    alloc = f"{PY} {shlex.quote(str(HELPERS / 'alloc.py'))}"
    wheel_py, why = generate.wheel_python()
    pip = Workload(
        "pip-wheel",
        f"cd ext && {shlex.quote(wheel_py or 'python3')} -m pip wheel -q --no-deps "
        "--no-build-isolation --no-index -w ../dist .",
        setup=[lambda d: generate.make_c_extension(d / "ext")],
        reset="rm -rf dist ext/build ext/*.egg-info",
        skip="" if wheel_py else f"no interpreter with setuptools and bdist_wheel ({why})",
    )
    files = 3000 // q
    return [
        pip,
        Workload(
            "make-j2",
            "make -s -j2 -C cproj >/dev/null",
            setup=[lambda d: generate.make_c_project(d / "cproj", 60 // q)],
            reset="make -s -C cproj clean",
        ),
        Workload(
            f"py_compile-{files}",
            f"find pyfiles -name '*.py' | xargs -P2 -n 40 {PY} -m py_compile",
            setup=[lambda d: generate.make_py_files(d / "pyfiles", files)],
            reset="rm -rf pyfiles/__pycache__",
        ),
        Workload(f"procs-{1000 // q}", f"for i in $(seq {1000 // q}); do {AWK}; done"),
        Workload(f"procs-{4000 // q}", f"for i in $(seq {4000 // q}); do {AWK}; done"),
        Workload(f"grow-{500 // q}MiB", f"{alloc} grow {500 // q}"),
        Workload("threads", f"{alloc} threads 4 {80 // q}"),
        Workload(
            f"xz-T2-{100 // q}MiB",
            "xz -T2 -1 -c xzdata > /dev/null",
            setup=[lambda d: generate.make_text(d / "xzdata", 100 // q)],
        ),
        Workload(f"fork-{300 // q}MiB", f"{alloc} fork {300 // q} 3"),
        Workload(
            "daemon",
            # Finding 7's shape: a sleeping daemon, and a busy process orphaned by a
            # subshell that exits before it (re-parented to the subreaper).
            f"sleep {10 // q} & ( {BUSY_AWK % (120_000_000 // q)} & sleep 2 ); "
            f"{BUSY_AWK % (40_000_000 // q)}; exit 0",
        ),
    ]


def naive_seconds(records: list[dict], container: str) -> float:
    """utime+stime deltas of processes seen in two consecutive samples, summed."""
    total = 0.0
    seen: set[int] = set()
    for r in records:
        if r.get("msg") != "metrics_collected":
            continue
        procs = [p for p in r.get("top_cpu_processes") or [] if p.get("container") == container]
        elapsed = r.get("elapsed_seconds")
        for p in procs:
            if p.get("pid") in seen and elapsed and p.get("cpu_percent") is not None:
                total += p["cpu_percent"] / 100.0 * elapsed
        seen = {p.get("pid") for p in procs}
    return total


def load_json(path: Path) -> dict | None:
    try:
        return orjson.loads(path.read_bytes())
    except (OSError, orjson.JSONDecodeError):
        return None


def load_records(path: Path) -> list[dict]:
    try:
        lines = path.read_bytes().splitlines()
    except OSError:
        return []
    out = []
    for line in lines:
        try:
            out.append(orjson.loads(line))
        except orjson.JSONDecodeError:
            continue
    return out


def resmon_figures(summary: dict | None) -> dict:
    """The command container's figures from a run summary; None where a field is missing."""
    summary = summary or {}
    containers = summary.get("containers") or []
    box = next((c for c in containers if c.get("name") == "command"), {})
    peak = box.get("memory_peak") or {}
    command = summary.get("command") or {}
    return {
        "cpu_seconds": summary.get("cpu_seconds"),
        "sampled_cpu_seconds": command.get("sampled_cpu_seconds"),
        "rusage_maxrss_bytes": command.get("rusage_maxrss_bytes"),
        "left_running": command.get("left_running"),
        "samples": summary.get("sample_count"),
        "cpu_source": box.get("cpu_source"),
        "headline": peak.get("headline", (box.get("memory_bytes") or {}).get("peak")),
        "kind": peak.get("kind", box.get("memory_kind")),
        "low": peak.get("low"),
        "high": peak.get("high"),
        "basis": peak.get("basis"),
        "figures": peak.get("figures"),
    }


def compare(row: dict) -> None:
    """The derived columns: ratios and the same-kind truth."""
    truth, res = row["truth"], row["resmon"]
    cpu = res["cpu_seconds"]
    row["cpu_ratio"] = (
        cpu / truth["cpu_seconds"] if cpu is not None and truth["cpu_seconds"] else None
    )
    same = {"pss": truth["pss_peak"], "rss": truth["rss_peak"]}.get(res["kind"] or "")
    row["true_same_kind"] = same
    low, high, headline = res["low"], res["high"], res["headline"]
    row["in_range"] = None if same is None or low is None or high is None else low <= same <= high
    row["headline_ratio"] = headline / same if headline is not None and same else None


def truth_figures(truth: dict | None) -> dict:
    truth = truth or {}
    sampler = truth.get("sampler") or {}
    tree_cpu, own_cpu = truth.get("tree_cpu_seconds"), truth.get("wrapper_cpu_seconds")
    return {
        "cpu_seconds": None if tree_cpu is None else tree_cpu + (own_cpu or 0.0),
        "tree_cpu_seconds": tree_cpu,
        "wrapper_cpu_seconds": own_cpu,
        "rss_peak": sampler.get("rss_peak_bytes"),
        "pss_peak": None if sampler.get("pss_denied", 1) else sampler.get("pss_peak_bytes"),
        "ru_maxrss": truth.get("tree_ru_maxrss_bytes"),
        "sampler": sampler,
        "exit_code": truth.get("exit_code"),
    }


def run_one(work: Workload, interval: str, scratch: Path) -> dict:
    if work.reset:
        subprocess.run(["sh", "-c", work.reset], cwd=scratch, check=False)
    out = scratch / "out"
    out.mkdir(exist_ok=True)
    for name in ("summary.json", "records.jsonl", "truth.json"):
        (out / name).unlink(missing_ok=True)
    env = {k: v for k, v in os.environ.items() if not k.startswith(("RESMON_", "GITHUB_"))}
    env["PYTHONPATH"] = str(ROOT)
    argv = [
        sys.executable, "-m", "resmon", "collect", f"--interval={interval}",
        "--log-format=json", f"--summary-file={out / 'summary.json'}", "--top=1000",
        f"--output={out / 'records.jsonl'}", "--log-level=error",
        f"--spool-dir={out / 'spool'}", "--",
        sys.executable, str(HELPERS / "truth_wrapper.py"), str(out / "truth.json"), "--",
        "sh", "-c", work.command,
    ]  # fmt: skip
    start = time.monotonic()
    done = subprocess.run(argv, cwd=scratch, env=env, stdout=subprocess.DEVNULL, check=False)
    row = {
        "workload": work.key,
        "interval": interval,
        "wall_seconds": time.monotonic() - start,
        "exit_code": done.returncode,
        "truth": truth_figures(load_json(out / "truth.json")),
        "resmon": resmon_figures(load_json(out / "summary.json")),
        "naive_cpu_seconds": naive_seconds(load_records(out / "records.jsonl"), "command"),
    }
    compare(row)
    return row


def select(all_work: list[Workload], names: list[str] | None) -> list[Workload]:
    if not names:
        return all_work
    chosen = [w for w in all_work if any(n.lower() in w.key.lower() for n in names)]
    if not chosen:
        raise SystemExit(f"no workload matches {names}; there are {[w.key for w in all_work]}")
    return chosen


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--interval", action="append", help="1s, 5s, 10s unless given")
    parser.add_argument("--workload", action="append", help="by name (a part of it will do)")
    parser.add_argument("--quick", action="store_true", help="about a third of each workload")
    parser.add_argument("--json", action="store_true", help="the rows as JSON on stdout")
    args = parser.parse_args()
    intervals = args.interval or ["1s", "5s", "10s"]
    chosen = select(workloads(args.quick), args.workload)
    rows: list[dict] = []
    skipped: list[str] = []
    with tempfile.TemporaryDirectory(prefix="resmon-accuracy-") as tmp:
        scratch = Path(tmp)
        for work in chosen:
            if work.skip:
                skipped.append(f"{work.key}: skipped, {work.skip}")
                print(skipped[-1], file=sys.stderr)
                continue
            for make in work.setup:
                make(scratch)
            for interval in intervals:
                rows.append(run_one(work, interval, scratch))
                r = rows[-1]
                print(
                    f"  {work.key} at {interval}: {r['wall_seconds']:.1f} s wall, "
                    f"exit {r['exit_code']}",
                    file=sys.stderr,
                    flush=True,
                )
    verdicts = targets(rows)
    if args.json:
        sys.stdout.buffer.write(
            orjson.dumps({"rows": rows, "targets": verdicts, "skipped": skipped},
                         option=orjson.OPT_INDENT_2) + b"\n"
        )  # fmt: skip
    else:
        print_table(rows, verdicts, skipped)
    return 0 if all(v["pass"] for v in verdicts) else 1


if __name__ == "__main__":
    raise SystemExit(main())
