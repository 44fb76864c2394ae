"""How exact is resmon's CPU accounting on fork-heavy CI workloads?  (issue 5)

Runs real workloads under ``resmon collect --interval N -- sh -c 'WORKLOAD; cat
/proc/$$/stat > truth'`` and compares, per workload and interval:

- truth: the wrapping shell's own utime+stime+cutime+cstime read at its end (the
  kernel's count of everything the workload ran: every reaped child's whole time
  moves into its parent's cutime+cstime);
- resmon: the run summary's ``cpu_seconds`` (what resmon prints and pushes);
- sampled: the command container's ``cpu_seconds`` in the last sample record, i.e.
  from the /proc readings alone, before the wait's rusage is applied;
- naive: the method of summing per-process utime+stime deltas over the processes
  seen alive in two consecutive samples, computed on the same samples (resmon runs
  with ``--top 1000`` so every process is in the records).  This is what a
  collector that reads only utime+stime sees (the Go collector does no better: it
  also drops a sample when a process exits).

Run by hand (a few minutes at most, two cores):

    .venv/bin/python bench/accuracy.py            # intervals 1s and 5s
    .venv/bin/python bench/accuracy.py --interval 1s

Target: resmon/truth within 0.97-1.03 for every workload at 1 s and at 5 s.
"""

from __future__ import annotations

import argparse
import os
import subprocess
import sys
import tempfile
import textwrap
import time
from pathlib import Path

import orjson

CLK_TCK = os.sysconf("SC_CLK_TCK")
ROOT = Path(__file__).resolve().parent.parent

# Each workload is a shell fragment; {dir} is a scratch directory.
SHORT_AWK = "awk 'BEGIN{for(i=0;i<300000;i++)s+=i}'"
WORKLOADS = {
    # Short processes one after another: each lives far less than an interval.
    "shell loop, 500 x awk": f"for i in $(seq 500); do {SHORT_AWK}; done",
    # A small C project built in parallel: make forks sh, gcc, cc1, as, collect2, ld.
    "make -j2, 80 C files": "make -s -j2 -C {dir}/cproj",
    # Short processes two at a time next to a long busy process.
    "mix: 400 x awk -P2 + 6 s busy": (
        f"timeout 6 sh -c 'while :; do :; done' & seq 400 | xargs -P2 -I{{}} {SHORT_AWK}; wait"
    ),
}


def make_c_project(directory: Path, files: int = 80) -> None:
    """Generated C sources that take gcc -O2 a noticeable moment each."""
    directory.mkdir(parents=True, exist_ok=True)
    objs = []
    for i in range(files):
        body = "\n".join(
            f"static double f{i}_{j}(double x) {{ double s = 0; for (int k = 0; k < {j + 3}; k++) "
            f"s += x * k / (k + {j + 1}.0); return s; }}"
            for j in range(100)
        )
        calls = " + ".join(f"f{i}_{j}(x)" for j in range(100))
        (directory / f"unit{i}.c").write_text(
            f"{body}\ndouble unit{i}(double x) {{ return {calls}; }}\n"
        )
        objs.append(f"unit{i}.o")
    decls = "\n".join(f"double unit{i}(double);" for i in range(files))
    total = " + ".join(f"unit{i}(1.0)" for i in range(files))
    (directory / "main.c").write_text(
        f'#include <stdio.h>\n{decls}\nint main(void) {{ printf("%f\\n", {total}); return 0; }}\n'
    )
    (directory / "Makefile").write_text(
        textwrap.dedent(
            f"""\
            CFLAGS = -O2
            prog: main.o {" ".join(objs)}
            \t$(CC) -o $@ $^
            %.o: %.c
            \t$(CC) $(CFLAGS) -c -o $@ $<
            clean:
            \trm -f *.o prog
            """
        )
    )


def stat_seconds(path: Path) -> float:
    fields = path.read_text().rsplit(")", 1)[1].split()
    # After the name: state(0) ppid(1) ... utime(11) stime(12) cutime(13) cstime(14)
    return sum(int(x) for x in fields[11:15]) / CLK_TCK


def naive_seconds(records: list[dict], container: str) -> float:
    """Sum of per-process utime+stime deltas of processes seen in consecutive samples."""
    total = 0.0
    for r in records:
        if r.get("msg") != "metrics_collected" or not r.get("elapsed_seconds"):
            continue
        for p in r.get("top_cpu_processes", []):
            if p.get("container") == container and p.get("cpu_percent") is not None:
                total += p["cpu_percent"] / 100.0 * r["elapsed_seconds"]
    return total


def run_one(name: str, fragment: str, interval: str, scratch: Path) -> dict:
    truth_file = scratch / "truth"
    truth_file.unlink(missing_ok=True)
    records_file = scratch / "records.jsonl"
    if "make" in fragment:
        subprocess.run(["make", "-s", "-C", str(scratch / "cproj"), "clean"], check=True)
    script = f"{fragment.replace('{dir}', str(scratch))}; cat /proc/$$/stat > {truth_file}"
    start = time.monotonic()
    proc = subprocess.run(
        [
            sys.executable,
            "-m",
            "resmon",
            "collect",
            f"--interval={interval}",
            "--top=1000",
            f"--output={records_file}",
            "--log-level=warning",
            "--",
            "sh",
            "-c",
            script,
        ],
        cwd=ROOT,
        stdout=subprocess.DEVNULL,
        check=False,
    )
    wall = time.monotonic() - start
    if proc.returncode != 0:
        raise SystemExit(f"{name}: resmon collect exited {proc.returncode}")
    records = [
        orjson.loads(line) for line in records_file.read_bytes().splitlines() if line.strip()
    ]
    summary = records[-1]
    assert summary["msg"] == "run_summary"
    samples = [r for r in records if r["msg"] == "metrics_collected"]
    sampled = next(c for c in samples[-1]["containers"] if c["name"] == "command")["cpu_seconds"]
    truth = stat_seconds(truth_file)
    return {
        "workload": name,
        "interval": interval,
        "wall": wall,
        "samples": len(samples),
        "truth": truth,
        "resmon": summary["cpu_seconds"],
        "sampled": sampled,
        "naive": naive_seconds(records, "command"),
    }


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument(
        "--interval", action="append", help="sampling interval(s), default 1s and 5s"
    )
    args = parser.parse_args()
    intervals = args.interval or ["1s", "5s"]
    rows = []
    with tempfile.TemporaryDirectory(prefix="resmon-accuracy-") as tmp:
        scratch = Path(tmp)
        make_c_project(scratch / "cproj")
        for interval in intervals:
            for name, fragment in WORKLOADS.items():
                rows.append(run_one(name, fragment, interval, scratch))
                r = rows[-1]
                print(
                    f"  ran {r['workload']} at {interval}: {r['wall']:.1f} s wall", file=sys.stderr
                )
    header = (
        f"{'workload':<32} {'interval':>8} {'samples':>7} {'truth s':>8} {'resmon s':>9} "
        f"{'ratio':>6} {'sampled':>8} {'ratio':>6} {'naive s':>8} {'ratio':>6}"
    )
    print(header)
    print("-" * len(header))
    ok = True
    for r in rows:
        t = r["truth"] or float("nan")
        ratio = r["resmon"] / t
        ok &= 0.97 <= ratio <= 1.03
        print(
            f"{r['workload']:<32} {r['interval']:>8} {r['samples']:>7} {r['truth']:>8.2f} "
            f"{r['resmon']:>9.2f} {ratio:>6.3f} {r['sampled']:>8.2f} {r['sampled'] / t:>6.3f} "
            f"{r['naive']:>8.2f} {r['naive'] / t:>6.3f}"
        )
    print(f"\nresmon within 0.97-1.03 of truth for every workload: {'yes' if ok else 'NO'}")
    return 0 if ok else 1


if __name__ == "__main__":
    raise SystemExit(main())
