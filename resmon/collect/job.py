"""The job's figures: per sample, the sum over the job's own containers.

The job is what a user sizes from, not the host: in wrapper mode the command's
container (its tree), in sidecar mode every container seen.  Each container counts
with the one definition the run summary reports for it (see
:mod:`resmon.collect.container_run`), so the sums are made when the summary is,
from the containers' aligned series.
"""

from __future__ import annotations

from array import array
from typing import Any

from resmon.collect.container_run import KIND_PSS, NAN, ContainerRun, finite
from resmon.stats import empty_stat, summarize

SCOPE_COMMAND = "command"
SCOPE_CONTAINERS = "containers"


def _sums(runs: list[ContainerRun], count: int, pick: str) -> list[float]:
    """Per sample, the sum over ``runs`` of their chosen series (``pick``: "cpu" or
    "memory"); a sample where none of them has a value is left out."""
    total = array("d", [NAN]) * count
    for run in runs:
        values = run.cpu_series() if pick == "cpu" else run.memory_series()
        for index, value in zip(run.sample_indices(), values, strict=True):
            if value == value and 0 <= index < count:
                before = total[index]
                total[index] = value if before != before else before + value
    return finite(total)


def _limit(values: list[float | int | None]) -> float | int | None:
    """The job's limit: the sum of its containers' limits when every one has one."""
    if not values or any(v is None for v in values):
        return None
    return sum(v for v in values if v is not None)


def job_block(
    runs: dict[str, ContainerRun],
    scope: str,
    count: int,
    cpu_seconds: float,
) -> dict[str, Any]:
    """The run summary's ``job``: ``runs`` are the job's containers by name."""
    names = sorted(runs)
    chosen = [runs[name] for name in names]
    memory_sums = _sums(chosen, count, "memory")
    memory = summarize(memory_sums) or empty_stat()
    kinds = {run.memory_kind for run in chosen}
    peak = _memory_peak(chosen, max(memory_sums) if memory_sums else 0.0)
    memory["peak"] = float(peak["headline"])
    return {
        "scope": scope,
        "containers": names,
        "cpu_cores": summarize(_sums(chosen, count, "cpu")) or empty_stat(),
        "cpu_seconds": round(cpu_seconds, 3),
        "memory_bytes": memory,
        "memory_kind": kinds.pop() if len(kinds) == 1 else ("mixed" if kinds else "rss"),
        "memory_peak": peak,
        "limit_cpu_cores": _limit([run.limit_cpu_cores for run in chosen]),
        "limit_memory_bytes": _limit([run.limit_memory_bytes for run in chosen]),
    }


def _memory_peak(runs: list[ContainerRun], sampled_sum: float) -> dict[str, Any]:
    """The job's memory peak range: one container's own, or for several, low = the
    larger of any container's low and the sampled sum's peak where every series is a
    reading (a PSS series holds estimates: not a bound), high = the sum of the
    containers' highs (at no instant can the job hold more than each one's most).  The
    headline is low, or the sampled sum as an estimate where it lies above low inside
    the range."""
    if len(runs) == 1:
        own = runs[0].memory_peak()
        return {key: own[key] for key in ("headline", "low", "high", "basis")}
    peaks = [run.memory_peak() for run in runs]
    read = all(run.memory_kind != KIND_PSS for run in runs)
    low, basis = (round(sampled_sum) if read else 0), "sampled"
    for peak in peaks:
        if peak["low"] > low:
            low, basis = peak["low"], peak["basis"]
    high = max(low, sum(peak["high"] for peak in peaks))
    headline = low
    if not read and low < round(sampled_sum) <= high:
        headline, basis = round(sampled_sum), "estimate"
    return {"headline": headline, "low": low, "high": high, "basis": basis}
