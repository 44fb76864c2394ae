"""Backtest of resmon's recommendations against CI Sizer and VPA (issue 14).

Generates job histories of known shapes (steady, noisy, growing, bimodal, rare
spikes, an OOM-killed run; 4 jobs each, 60 runs over 30 days), replays each method
with no look-ahead (:mod:`resmon.analysis.backtest`: sized from runs 1..k, checked
on run k+1) and prints per job and overall the memory fit rate, the memory waste
(limit minus peak, averaged over the runs that fitted), the CPU fit rate and waste.

Target: resmon's overall memory fit rate >= 0.97 and >= the better anchor's, with
lower memory waste than that anchor.

    .venv/bin/python bench/recommend.py
    .venv/bin/python bench/recommend.py --db metrics.db --since 90d   # every job of a database
    .venv/bin/python bench/recommend.py --json
"""

from __future__ import annotations

import argparse
import json
import random
import sys
from collections.abc import Iterator
from dataclasses import dataclass
from datetime import date, timedelta
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from resmon.analysis.backtest import Backtest, replay  # noqa: E402
from resmon.analysis.formulas import METHODS, Usage  # noqa: E402

MIB = 1024 * 1024
GIB = 1024 * MIB
RUNS = 60
DAYS = 30
PER_SHAPE = 4
FIT_TARGET = 0.97


@dataclass
class Job:
    name: str
    runs: list[Usage]


def _day(n: int) -> str:
    return (date(2026, 1, 1) + timedelta(days=n * DAYS // RUNS)).isoformat()


def _run(n: int, memory: float, cpu: float, rng: random.Random, **extra) -> Usage:
    burst = 1.0 + rng.random() * 0.5
    return Usage(
        cpu_cores_p95=max(0.01, cpu),
        cpu_cores_peak=max(0.01, cpu) * burst,
        memory_bytes_peak=max(MIB, memory),
        day=_day(n),
        **extra,
    )


def _noise(rng: random.Random, cv: float) -> float:
    return max(0.2, rng.gauss(1.0, cv))


def steady(rng: random.Random, base: float) -> list[Usage]:
    return [_run(n, base * _noise(rng, 0.02), 1.5 * _noise(rng, 0.05), rng) for n in range(RUNS)]


def noisy(rng: random.Random, base: float) -> list[Usage]:
    cv = rng.choice((0.10, 0.15, 0.20, 0.25))
    return [_run(n, base * _noise(rng, cv), 2.0 * _noise(rng, cv), rng) for n in range(RUNS)]


def growing(rng: random.Random, base: float) -> list[Usage]:
    rate = rng.choice((0.003, 0.005, 0.01, 0.015))  # per run
    return [
        _run(n, base * (1 + rate * n) * _noise(rng, 0.03), 1.0 * (1 + rate * n), rng)
        for n in range(RUNS)
    ]


def bimodal(rng: random.Random, base: float) -> list[Usage]:
    high = rng.choice((1.5, 2.0, 3.0))
    share = rng.choice((0.2, 0.3, 0.5))
    out = []
    for n in range(RUNS):
        mode = high if rng.random() < share else 1.0
        out.append(_run(n, base * mode * _noise(rng, 0.03), 1.0 * mode, rng))
    return out


def rare_spikes(rng: random.Random, base: float) -> list[Usage]:
    every = rng.choice((15, 20, 30))
    height = rng.choice((1.4, 1.8, 2.5))
    out = []
    for n in range(RUNS):
        spike = height if n % every == every // 2 else 1.0
        out.append(_run(n, base * spike * _noise(rng, 0.03), 1.2 * _noise(rng, 0.05), rng))
    return out


def oom_killed(rng: random.Random, base: float) -> list[Usage]:
    """A job at 80 % of its limit whose one run needed more and was killed at the limit."""
    limit = base / 0.8
    killed = rng.randrange(10, RUNS - 10)
    out = []
    for n in range(RUNS):
        need = base * (1.35 if n == killed else _noise(rng, 0.04))
        out.append(
            _run(
                n,
                min(need, limit),
                1.0 * _noise(rng, 0.05),
                rng,
                limit_memory_bytes=limit,
                oom_killed=need > limit,
            )
        )
    return out


SHAPES = {
    "steady": steady,
    "noisy": noisy,
    "growing": growing,
    "bimodal": bimodal,
    "rare-spikes": rare_spikes,
    "oom-killed": oom_killed,
}


def generated(seed: int) -> Iterator[Job]:
    rng = random.Random(seed)
    for shape, make in SHAPES.items():
        for i in range(PER_SHAPE):
            base = rng.choice((256 * MIB, 900 * MIB, 2 * GIB, 6 * GIB))
            yield Job(f"{shape}-{i + 1}", make(rng, base))


def from_database(target: str, since: str, limit: int) -> Iterator[Job]:
    from resmon.store import advice
    from resmon.store import db as dbmod

    database = dbmod.open_database(target)
    try:
        for name, runs in advice.all_job_histories(since=since, limit=limit):
            yield Job(name, runs)
    finally:
        database.close()


def _sum(results: list[Backtest]) -> Backtest:
    def mean_waste(attr: str, fits: str) -> float | None:
        weighted = [(getattr(b, attr), getattr(b, fits)) for b in results if getattr(b, attr)]
        total = sum(n for _, n in weighted)
        return sum(w * n for w, n in weighted) / total if total else None

    return Backtest(
        steps=sum(b.steps for b in results),
        memory_checked=sum(b.memory_checked for b in results),
        memory_fits=sum(b.memory_fits for b in results),
        memory_waste_bytes=mean_waste("memory_waste_bytes", "memory_fits"),
        cpu_checked=sum(b.cpu_checked for b in results),
        cpu_fits=sum(b.cpu_fits for b in results),
        cpu_waste_cores=mean_waste("cpu_waste_cores", "cpu_fits"),
    )


def _fmt_rate(value: float | None) -> str:
    return "   -" if value is None else f"{value:.3f}"


def _fmt_gib(value: float | None) -> str:
    return "     -" if value is None else f"{value / GIB:6.3f}"


def _fmt_cores(value: float | None) -> str:
    return "    -" if value is None else f"{value:5.2f}"


def evaluate(jobs: list[Job]) -> dict[str, dict]:
    per_job: dict[str, dict[str, Backtest]] = {}
    for job in jobs:
        per_job[job.name] = {m: replay(job.runs, fn) for m, fn in METHODS.items()}
    overall = {m: _sum([r[m] for r in per_job.values()]) for m in METHODS}
    return {"jobs": per_job, "overall": overall}


def print_table(result: dict[str, dict]) -> None:
    methods = list(METHODS)
    head = "job".ljust(28) + "".join(
        f" | {m:>8} mem fit  waste GiB  cpu fit  waste" for m in methods
    )
    print(head)
    print("-" * len(head))
    rows = [*result["jobs"].items(), ("OVERALL", result["overall"])]
    for name, by_method in rows:
        cells = []
        for m in methods:
            b = by_method[m]
            cells.append(
                f" | {'':>8} {_fmt_rate(b.memory_fit_rate):>7} {_fmt_gib(b.memory_waste_bytes):>10}"
                f"  {_fmt_rate(b.cpu_fit_rate):>7} {_fmt_cores(b.cpu_waste_cores)}"
            )
        print(name[-28:].ljust(28) + "".join(cells))


def verdict(overall: dict[str, Backtest]) -> tuple[bool, list[str]]:
    ours = overall["resmon"]
    anchors = {m: b for m, b in overall.items() if m != "resmon"}
    better = max(
        anchors,
        key=lambda m: (anchors[m].memory_fit_rate or 0, -(anchors[m].memory_waste_bytes or 0)),
    )
    anchor = anchors[better]
    checks = [
        (
            (ours.memory_fit_rate or 0) >= FIT_TARGET,
            f"resmon memory fit rate {_fmt_rate(ours.memory_fit_rate)} >= {FIT_TARGET}",
        ),
        (
            (ours.memory_fit_rate or 0) >= (anchor.memory_fit_rate or 0),
            f"resmon memory fit rate {_fmt_rate(ours.memory_fit_rate)} >= {better}'s "
            f"{_fmt_rate(anchor.memory_fit_rate)} (the better anchor)",
        ),
        (
            (ours.memory_waste_bytes or 0) < (anchor.memory_waste_bytes or 0),
            f"resmon memory waste {_fmt_gib(ours.memory_waste_bytes).strip()} GiB < {better}'s "
            f"{_fmt_gib(anchor.memory_waste_bytes).strip()} GiB",
        ),
    ]
    lines = [f"{'PASS' if ok else 'FAIL'}  {text}" for ok, text in checks]
    return all(ok for ok, _ in checks), lines


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--db", help="also every job of this database (SQLite file or URL)")
    parser.add_argument("--since", default="30d", help="with --db: the window (default 30d)")
    parser.add_argument(
        "--runs", type=int, default=100, help="with --db: at most this many runs a job"
    )
    parser.add_argument("--seed", type=int, default=14)
    parser.add_argument("--json", action="store_true", help="the figures as JSON")
    args = parser.parse_args(argv)
    sets = [("generated histories", list(generated(args.seed)))]
    if args.db:
        sets.append((f"database {args.db}", list(from_database(args.db, args.since, args.runs))))
    failed = False
    out = {}
    for title, jobs in sets:
        result = evaluate(jobs)
        ok, lines = verdict(result["overall"])
        failed |= not ok and title == "generated histories"
        if args.json:
            out[title] = {
                "jobs": {
                    j: {m: b.answer() for m, b in r.items()} for j, r in result["jobs"].items()
                },
                "overall": {m: b.answer() for m, b in result["overall"].items()},
                "verdict": lines,
            }
            continue
        print(f"\n{title}: {len(jobs)} jobs, {sum(len(j.runs) for j in jobs)} runs")
        print_table(result)
        print()
        for line in lines:
            print(line)
    if args.json:
        print(json.dumps(out, indent=2))
    return 1 if failed else 0


if __name__ == "__main__":
    sys.exit(main())
