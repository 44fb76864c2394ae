"""Three ways to size a job from its runs: resmon's, CI Sizer's and Kubernetes VPA's.

Each method takes the runs of one subject (the job, or one of its containers), oldest
first, and returns a :class:`Sizing`: CPU request and limit in cores, memory request
and limit in bytes.  :mod:`resmon.analysis.backtest` replays each on the same history,
so the three are compared on the job's own runs.

- **CI Sizer**: the CPU is the highest p95 of the last 5 runs + 20 %; the memory is the
  highest peak of the last 5 runs plus a tiered margin (:data:`CI_SIZER_MEMORY_TIERS`).
- **VPA** (the recommender's formulas, with runs as samples): CPU target = P90 of the
  runs' p95 x 1.15, upper bound = P95 x 1.15 x (1 + 1/c), c the number of runs; memory
  the same over the daily peaks (the highest peak of each day), c the number of days.
  The target is the request, the upper bound the limit.
- **resmon**: memory never below the largest peak in the window, nor below what an
  OOM-killed run was killed at (it needed more), projected along the job's growth and
  given a margin that grows with the job's spread; memory request = limit.  CPU request
  at the runs' P90 p95, the limit above the highest p95 (growth and spread again).  Its
  constants are tuned on ``bench/recommend.py``'s histories.
"""

from __future__ import annotations

import math
from collections.abc import Callable, Sequence
from dataclasses import dataclass

from resmon.analysis.robust import quantile, slope, spread

MIB = 1024 * 1024
GIB = 1024 * MIB


@dataclass(frozen=True)
class Usage:
    """One run of one subject: what it used, its limits, and how it ended."""

    cpu_cores_p95: float | None = None
    cpu_cores_peak: float | None = None
    memory_bytes_peak: float | None = None
    # The UTC day the run started ('YYYY-MM-DD'), for VPA's daily peaks and the span.
    day: str | None = None
    limit_cpu_cores: float | None = None
    limit_memory_bytes: float | None = None
    oom_killed: bool = False
    cpu_throttled_seconds: float | None = None


@dataclass(frozen=True)
class Sizing:
    cpu_request: float | None = None  # cores
    cpu_limit: float | None = None
    memory_request: float | None = None  # bytes
    memory_limit: float | None = None


Method = Callable[[Sequence[Usage]], Sizing]


def cpu_values(runs: Sequence[Usage]) -> list[float]:
    return [u.cpu_cores_p95 for u in runs if u.cpu_cores_p95 is not None]


def memory_values(runs: Sequence[Usage]) -> list[float]:
    return [u.memory_bytes_peak for u in runs if u.memory_bytes_peak is not None]


def round_cores(value: float | None) -> float | None:
    """Up to the next 10 millicores (at least 10m): what a pod spec says."""
    if value is None:
        return None
    return max(10, math.ceil(value * 100 - 1e-9) * 10) / 1000


def round_bytes(value: float | None) -> float | None:
    """Up to the next MiB (at least 4 MiB)."""
    if value is None:
        return None
    return float(max(4, math.ceil(value / MIB - 1e-9)) * MIB)


# --- CI Sizer ------------------------------------------------------------------

CI_SIZER_RUNS = 5
CI_SIZER_CPU_MARGIN = 0.20
# CI Sizer's memory margin is tiered by size: small jobs get a larger share (allocator
# and runtime overhead is a larger part of them), large ones a smaller one.  Our
# reading of "peak + tiered margin": (peak up to, margin) pairs, the first that holds.
CI_SIZER_MEMORY_TIERS = ((1 * GIB, 0.30), (4 * GIB, 0.20), (math.inf, 0.10))


def ci_sizer_memory_margin(peak: float) -> float:
    return next(margin for bound, margin in CI_SIZER_MEMORY_TIERS if peak <= bound)


def ci_sizer(runs: Sequence[Usage]) -> Sizing:
    last = runs[-CI_SIZER_RUNS:]
    cpu = cpu_values(last)
    memory = memory_values(last)
    cores = max(cpu) * (1 + CI_SIZER_CPU_MARGIN) if cpu else None
    peak = max(memory) if memory else None
    limit = peak * (1 + ci_sizer_memory_margin(peak)) if peak is not None else None
    return Sizing(round_cores(cores), round_cores(cores), round_bytes(limit), round_bytes(limit))


# --- VPA -------------------------------------------------------------------------

VPA_MARGIN = 1.15


def _vpa(values: list[float]) -> tuple[float | None, float | None]:
    """(target, upper bound) of VPA's recommender over ``values`` as its samples."""
    if not values:
        return None, None
    c = len(values)
    target = quantile(values, 0.90) * VPA_MARGIN
    upper = quantile(values, 0.95) * VPA_MARGIN * (1 + 1 / c)
    return target, upper


def daily_peaks(runs: Sequence[Usage]) -> list[float]:
    """The highest memory peak of each day, in day order (runs without a day: each its own)."""
    days: dict[str, float] = {}
    for n, u in enumerate(runs):
        if u.memory_bytes_peak is None:
            continue
        key = u.day or f"run {n}"
        days[key] = max(days.get(key, 0.0), u.memory_bytes_peak)
    return list(days.values())


def vpa(runs: Sequence[Usage]) -> Sizing:
    cpu_target, cpu_upper = _vpa(cpu_values(runs))
    memory_target, memory_upper = _vpa(daily_peaks(runs))
    return Sizing(
        round_cores(cpu_target),
        round_cores(cpu_upper),
        round_bytes(memory_target),
        round_bytes(memory_upper),
    )


# --- resmon ------------------------------------------------------------------------

# Memory margin over the largest peak: MEMORY_MARGIN_BASE, plus MEMORY_SPREAD_FACTOR
# times the job's robust spread (1.4826 MAD / median of the peaks), at most
# MEMORY_MARGIN_MAX.  A steady job gets a small margin, a noisy one what its noise needs.
# Tuned on bench/recommend.py's histories (seeds 1-5 and 14): 0.07 and 0.1 keep the
# memory fit rate at or above VPA's and CI Sizer's with 4-21 % less waste than the better.
MEMORY_MARGIN_BASE = 0.07
MEMORY_SPREAD_FACTOR = 0.1
MEMORY_MARGIN_MAX = 0.3
# An OOM-killed run's peak is its limit, not its need: it needed at least this much more.
OOM_HEADROOM = 0.25
# A growing job: the peaks' Theil-Sen slope, projected this many runs ahead.
GROWTH_RUNS = 5
GROWTH_WINDOW = 20  # over the last this many runs
CPU_REQUEST_QUANTILE = 0.90
CPU_MARGIN_BASE = 0.10
CPU_SPREAD_FACTOR = 1.0
CPU_MARGIN_MAX = 0.5


def _growth(values: list[float]) -> float:
    """How much higher the next runs may go if the job keeps growing (0 if it does not)."""
    recent = values[-GROWTH_WINDOW:]
    if len(recent) < 4:
        return 0.0
    step = slope(recent)
    return max(0.0, step) * GROWTH_RUNS


def resmon_memory(runs: Sequence[Usage]) -> float | None:
    peaks = memory_values(runs)
    if not peaks:
        return None
    needed = max(peaks)
    for u in runs:
        if u.oom_killed and u.limit_memory_bytes:
            needed = max(needed, u.limit_memory_bytes * (1 + OOM_HEADROOM))
    margin = min(MEMORY_MARGIN_MAX, MEMORY_MARGIN_BASE + MEMORY_SPREAD_FACTOR * spread(peaks))
    projected = peaks[-1] + _growth(peaks)
    return max(needed, projected) * (1 + margin)


def resmon_cpu(runs: Sequence[Usage]) -> tuple[float | None, float | None]:
    """(request, limit) in cores."""
    values = cpu_values(runs)
    if not values:
        return None, None
    margin = min(CPU_MARGIN_MAX, CPU_MARGIN_BASE + CPU_SPREAD_FACTOR * spread(values))
    request = quantile(values, CPU_REQUEST_QUANTILE)
    limit = max(max(values), values[-1] + _growth(values)) * (1 + margin)
    return request, limit


def resmon(runs: Sequence[Usage]) -> Sizing:
    request, limit = resmon_cpu(runs)
    memory = round_bytes(resmon_memory(runs))
    return Sizing(round_cores(request), round_cores(limit), memory, memory)


METHODS: dict[str, Method] = {"resmon": resmon, "ci_sizer": ci_sizer, "vpa": vpa}
